//! Scenario runs: one event in, a [`World`] and stored state in, the world and stored state
//! out — the whole dispatch (re-emit, handlers, collect-status, commit-on-success) on the
//! in-memory hook tools and Pebble, in-process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::ops::context::{ContextError, JujuContext};
use crate::ops::framework::{dispatch, Charm, Framework, FrameworkError, StoredData};
use crate::ops::pebble::PebbleProvider;

use super::world::{HookInfo, Session, World};

/// One unit's persistent, local state across scenario runs (ops's `.unit-state.db`).
#[derive(Debug, Clone, Default)]
pub struct UnitState {
    pub stored: StoredData,
}

/// What a run produced.
pub struct RunResult {
    pub session: Session,
    /// Event paths emitted, re-emissions included, in order.
    pub emitted: Vec<String>,
    pub error: Option<FrameworkError>,
}

/// Everything needed to run hooks for a unit in-process.
pub struct Scenario<'p> {
    pub world: Arc<Mutex<World>>,
    pub unit: String,
    pub charm_dir: PathBuf,
    pub pebble: &'p dyn PebbleProvider,
    pub juju_version: String,
    pub state: UnitState,
}

impl<'p> Scenario<'p> {
    pub fn new(
        world: Arc<Mutex<World>>,
        unit: &str,
        charm_dir: &Path,
        pebble: &'p dyn PebbleProvider,
    ) -> Self {
        Self {
            world,
            unit: unit.to_string(),
            charm_dir: charm_dir.to_path_buf(),
            pebble,
            juju_version: "3.6.25".into(),
            state: UnitState::default(),
        }
    }

    /// The `JUJU_*` environment Juju would set for this hook.
    pub fn env(&self, dispatch_path: &str, hook: &HookInfo) -> BTreeMap<String, String> {
        let world = self.world.lock().expect("world lock");
        let mut env = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_string(), v.to_string());
        };
        set("JUJU_DISPATCH_PATH", dispatch_path);
        let hook_name = dispatch_path.strip_prefix("hooks/").unwrap_or("");
        set("JUJU_HOOK_NAME", hook_name);
        set("JUJU_UNIT_NAME", &self.unit);
        set("JUJU_MODEL_NAME", &world.model_name);
        set("JUJU_MODEL_UUID", &world.model_uuid);
        set("JUJU_VERSION", &self.juju_version);
        set("JUJU_CHARM_DIR", &self.charm_dir.display().to_string());
        if let Some(id) = hook.relation_id {
            let endpoint = hook_name.split("-relation-").next().unwrap_or_default();
            set("JUJU_RELATION", endpoint);
            set("JUJU_RELATION_ID", &format!("{endpoint}:{id}"));
            set("JUJU_REMOTE_APP", hook.remote_app.as_deref().unwrap_or(""));
            set(
                "JUJU_REMOTE_UNIT",
                hook.remote_unit.as_deref().unwrap_or(""),
            );
            if let Some(d) = &hook.departing_unit {
                set("JUJU_DEPARTING_UNIT", d);
            }
        }
        if let Some(container) = ["-pebble-ready", "-pebble-custom-notice"]
            .iter()
            .find_map(|s| hook_name.strip_suffix(s))
        {
            set("JUJU_WORKLOAD_NAME", container);
        }
        if let Some(action) = &hook.action {
            set("JUJU_ACTION_NAME", &action.name);
            set("JUJU_ACTION_UUID", "1");
        }
        env
    }

    /// Run one event through charm `C`; commit the session and keep stored state only if
    /// the dispatch succeeded, exactly as a real hook exit code decides.
    pub fn run<C: Charm + Default>(
        &mut self,
        dispatch_path: &str,
        hook: HookInfo,
    ) -> Result<RunResult, ContextError> {
        let env = self.env(dispatch_path, &hook);
        let ctx = JujuContext::from_map(&env)?;
        let session = World::session(&self.world, &self.unit, hook);
        let mut fw = Framework::new(&ctx, &session, self.pebble, self.state.stored.clone());
        let mut charm = C::default();
        let outcome = dispatch(&mut charm, &mut fw);
        let emitted = fw.emitted.clone();
        let data = fw.into_data();
        let error = match outcome {
            Ok(()) => {
                self.state.stored = data;
                session.commit().expect("commit");
                None
            }
            Err(e) => {
                session.discard();
                Some(e)
            }
        };
        Ok(RunResult {
            session,
            emitted,
            error,
        })
    }
}
