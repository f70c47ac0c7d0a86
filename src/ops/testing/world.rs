//! An in-memory Juju model: applications, units, relations and their databags, secrets,
//! statuses, unit state, ports and resources.
//!
//! It serves two masters, so it follows the runtime contract (sections 1.5 and 2) rather
//! than being merely convenient:
//! - charm unit tests build a [`World`], open a [`Session`] for one unit and one hook, hand it
//!   to the charm as its [`crate::ops::hookcmds::HookTools`] and then inspect the world;
//! - the local model (`juju-local`) keeps one [`World`] per model and serves it to the real hook
//!   processes through [`crate::sim::hooktools`] and [`crate::sim::agent`].
//!
//! A [`Session`] buffers what Juju buffers (relation-set, state-set/delete, open/close-port,
//! secret changes) and applies it only on [`Session::commit`], which the caller invokes when the
//! hook exited 0; what Juju applies immediately (status, logs, action results) goes straight
//! through. [`World`] methods are the *operator's* and the *test's* view: they bypass the
//! per-unit access rules.

mod meta;
mod session;
#[cfg(test)]
mod tests;

pub use meta::{ActionMeta, CharmMeta, ConfigOption, MetaError};
pub use session::Session;

use crate::ops::hookcmds::{Port, StatusName, StatusValue};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The world rejected an operator/test operation, or a session's commit failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WorldError {
    /// No application of that name was deployed.
    #[error("application {0:?} not found")]
    UnknownApp(String),
    /// No unit of that name exists (or it was removed).
    #[error("unit {0:?} not found")]
    UnknownUnit(String),
    /// `add_app` with a name already in use.
    #[error("application {0:?} already exists")]
    AppExists(String),
    /// The application's charm has no such relation endpoint.
    #[error("application {app:?} has no endpoint {endpoint:?}")]
    UnknownEndpoint { app: String, endpoint: String },
    /// The two endpoints cannot be related (interface or role mismatch, already related).
    #[error("cannot relate {a} and {b}: {why}")]
    CannotRelate { a: String, b: String, why: String },
    /// A config value is not an option of the charm or has the wrong type.
    #[error("invalid config for {app:?}: option {key:?}: {why}")]
    InvalidConfig {
        app: String,
        key: String,
        why: String,
    },
    /// Applying a session's buffered changes failed; nothing was applied.
    #[error("committing requested changes failed: {0}")]
    Commit(String),
}

/// What a hook is about: the parts of the hook environment the tools need for defaults and
/// rules (`-r` defaults to the hook's relation, relation-get's member to the remote unit,
/// action tools need an action, storage-get's `-s` defaults to the hook's storage).
#[derive(Debug, Clone, Default)]
pub struct HookInfo {
    /// `JUJU_HOOK_NAME` (empty for actions).
    pub hook_name: String,
    pub relation_id: Option<u32>,
    pub remote_unit: Option<String>,
    pub remote_app: Option<String>,
    /// Set in `-relation-departed`: excluded from `relation-list`.
    pub departing_unit: Option<String>,
    pub action: Option<ActionInvocation>,
    /// `<name>/<n>` in storage hooks.
    pub storage_id: Option<String>,
}

/// The action being run, with the parameters the operator passed (defaults are filled from
/// the charm's actions schema by `action-get`, as Juju does).
#[derive(Debug, Clone, Default)]
pub struct ActionInvocation {
    pub name: String,
    pub params: BTreeMap<String, serde_json::Value>,
}

/// One relation as an application sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationView {
    pub id: u32,
    /// This application's endpoint.
    pub endpoint: String,
    pub interface: String,
    /// The other side (this application itself for a peer relation).
    pub remote_app: String,
    /// Units of the remote application (all units of the app for a peer relation).
    pub remote_units: Vec<String>,
    pub peer: bool,
}

/// One end of a relation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndRef {
    pub app: String,
    pub endpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RelationState {
    pub id: u32,
    pub a: EndRef,
    /// Equal to `a` for a peer relation.
    pub b: EndRef,
    pub interface: String,
    /// owner (unit or app name) → bag
    pub data: BTreeMap<String, BTreeMap<String, String>>,
}

impl RelationState {
    pub fn peer(&self) -> bool {
        self.a == self.b
    }

    /// This app's end and the other end, if `app` takes part.
    pub fn ends_for(&self, app: &str) -> Option<(&EndRef, &EndRef)> {
        if self.a.app == app {
            Some((&self.a, &self.b))
        } else if self.b.app == app {
            Some((&self.b, &self.a))
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AppState {
    pub meta: CharmMeta,
    /// Only values the operator set; defaults come from `meta`.
    pub config: BTreeMap<String, serde_json::Value>,
    pub leader: Option<String>,
    pub status: StatusValue,
    pub status_history: Vec<StatusValue>,
    pub next_unit: u32,
    pub version: String,
    pub leader_settings: BTreeMap<String, String>,
    pub resources: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UnitState {
    pub app: String,
    pub address: String,
    pub status: StatusValue,
    pub status_history: Vec<StatusValue>,
    pub dying: bool,
    pub state: BTreeMap<String, String>,
    pub ports: BTreeSet<Port>,
}

/// A consumer's view of a secret: the revision it is pinned to and its own label.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Consumer {
    pub revision: u64,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Grant {
    pub relation_id: u32,
    /// An application name, or a unit name for a unit-only grant.
    pub grantee: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecretState {
    /// Bare id (no `secret:` prefix).
    pub id: String,
    pub owner_app: String,
    /// `Some` for a unit-owned secret.
    pub owner_unit: Option<String>,
    pub label: Option<String>,
    pub description: Option<String>,
    pub expire: Option<String>,
    pub rotate: Option<String>,
    pub revisions: BTreeMap<u64, BTreeMap<String, String>>,
    pub latest: u64,
    pub grants: Vec<Grant>,
    /// consumer unit → pin
    pub consumers: BTreeMap<String, Consumer>,
}

impl SecretState {
    /// May `unit` (of `app`, leader or not) change, grant, remove or inspect this secret?
    pub fn manageable_by(&self, unit: &str, app: &str, leader: bool) -> bool {
        match &self.owner_unit {
            Some(u) => u == unit,
            None => self.owner_app == app && leader,
        }
    }

    /// Is `unit` on the owning side (always reads the latest revision)?
    pub fn owned_by(&self, unit: &str, app: &str) -> bool {
        match &self.owner_unit {
            Some(u) => u == unit,
            None => self.owner_app == app,
        }
    }

    pub fn granted_to(&self, unit: &str, app: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.grantee == unit || g.grantee == app)
    }
}

/// A whole model in memory. Serialisable so the local model can persist it between commands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct World {
    pub model_name: String,
    pub model_uuid: String,
    pub(crate) apps: BTreeMap<String, AppState>,
    pub(crate) units: BTreeMap<String, UnitState>,
    pub(crate) relations: BTreeMap<u32, RelationState>,
    pub(crate) secrets: BTreeMap<String, SecretState>,
    next_relation_id: u32,
    next_address: u32,
}

fn unknown_status() -> StatusValue {
    StatusValue::new(StatusName::Unknown, "")
}

/// The app part of `app/N` (the whole string if there is no `/`).
pub(crate) fn app_of(unit: &str) -> &str {
    unit.split_once('/').map(|(a, _)| a).unwrap_or(unit)
}

/// `127.0.0.10`, `127.0.0.11`, ... then into the next octets: each unit its own loopback.
fn loopback(k: u32) -> String {
    format!("127.{}.{}.{}", (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff)
}

/// Juju sets these in every unit bag when the unit enters a relation's scope.
fn juju_unit_keys(address: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("private-address".to_string(), address.to_string()),
        ("ingress-address".to_string(), address.to_string()),
        ("egress-subnets".to_string(), format!("{address}/32")),
    ])
}

/// A process-unique random 64-bit value (std's hasher keys are random per process, and
/// each `RandomState` differs), good enough for ids in a test model.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// A new secret id: 20 characters of Juju's xid alphabet (`0-9a-v`).
pub(crate) fn new_secret_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let (a, b) = (random_u64(), random_u64());
    (0..20)
        .map(|i| {
            let bits = if i < 12 {
                a >> (i * 5)
            } else {
                b >> ((i - 12) * 5)
            };
            ALPHABET[(bits & 31) as usize] as char
        })
        .collect()
}

fn new_uuid() -> String {
    let (a, b) = (random_u64(), random_u64());
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Strip `secret:` / `secret://<model>/` prefixes: the bare id used as the map key.
pub fn bare_secret_id(id: &str) -> String {
    let id = id.trim();
    if let Some(rest) = id.strip_prefix("secret://") {
        rest.rsplit('/').next().unwrap_or(rest).to_string()
    } else if let Some(rest) = id.strip_prefix("secret:") {
        rest.to_string()
    } else {
        id.to_string()
    }
}

/// Juju's timestamp format in goal-state (`2024-01-01 10:00:00Z`).
pub(crate) fn juju_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

impl World {
    /// An empty model with a fresh UUID.
    pub fn new(model_name: &str) -> World {
        World {
            model_name: model_name.to_string(),
            model_uuid: new_uuid(),
            next_relation_id: 0,
            next_address: 10,
            ..World::default()
        }
    }

    /// Deploy an application (no units yet) and create its peer relations.
    pub fn add_app(&mut self, app: &str, meta: CharmMeta) -> Result<(), WorldError> {
        if self.apps.contains_key(app) {
            return Err(WorldError::AppExists(app.to_string()));
        }
        let peers = meta.peers.clone();
        self.apps.insert(
            app.to_string(),
            AppState {
                meta,
                config: BTreeMap::new(),
                leader: None,
                status: unknown_status(),
                status_history: Vec::new(),
                next_unit: 0,
                version: String::new(),
                leader_settings: BTreeMap::new(),
                resources: BTreeMap::new(),
            },
        );
        for (endpoint, interface) in peers {
            let end = EndRef {
                app: app.to_string(),
                endpoint,
            };
            let id = self.alloc_relation_id();
            let mut data = BTreeMap::new();
            data.insert(app.to_string(), BTreeMap::new());
            self.relations.insert(
                id,
                RelationState {
                    id,
                    a: end.clone(),
                    b: end,
                    interface,
                    data,
                },
            );
        }
        Ok(())
    }

    fn alloc_relation_id(&mut self) -> u32 {
        let id = self.next_relation_id;
        self.next_relation_id += 1;
        id
    }

    /// Add a unit `app/N` (N never reused), with its own loopback address, joined to every
    /// relation of its application.
    pub fn add_unit(&mut self, app: &str) -> Result<String, WorldError> {
        let state = self
            .apps
            .get_mut(app)
            .ok_or_else(|| WorldError::UnknownApp(app.to_string()))?;
        let unit = format!("{app}/{}", state.next_unit);
        state.next_unit += 1;
        if self.next_address < 10 {
            self.next_address = 10;
        }
        let address = loopback(self.next_address);
        self.next_address += 1;
        for rel in self.relations.values_mut() {
            if rel.ends_for(app).is_some() {
                rel.data.insert(unit.clone(), juju_unit_keys(&address));
            }
        }
        self.units.insert(
            unit.clone(),
            UnitState {
                app: app.to_string(),
                address,
                status: unknown_status(),
                status_history: Vec::new(),
                dying: false,
                state: BTreeMap::new(),
                ports: BTreeSet::new(),
            },
        );
        Ok(unit)
    }

    /// Remove a unit: it leaves every relation (its bags go), loses leadership and its
    /// secret pins; unit-owned secrets go with it.
    pub fn remove_unit(&mut self, unit: &str) -> Result<(), WorldError> {
        let state = self
            .units
            .remove(unit)
            .ok_or_else(|| WorldError::UnknownUnit(unit.to_string()))?;
        for rel in self.relations.values_mut() {
            rel.data.remove(unit);
        }
        if let Some(app) = self.apps.get_mut(&state.app) {
            if app.leader.as_deref() == Some(unit) {
                app.leader = None;
            }
        }
        self.secrets
            .retain(|_, s| s.owner_unit.as_deref() != Some(unit));
        for s in self.secrets.values_mut() {
            s.consumers.remove(unit);
            s.grants.retain(|g| g.grantee != unit);
        }
        Ok(())
    }

    /// Mark a unit as going away: goal-state shows it as `dying`.
    pub fn set_unit_dying(&mut self, unit: &str) {
        if let Some(u) = self.units.get_mut(unit) {
            u.dying = true;
        }
    }

    /// Make `unit` the leader of its application (the previous leader, if any, stops being it).
    pub fn set_leader(&mut self, unit: &str) {
        let app = app_of(unit).to_string();
        if self.units.contains_key(unit) {
            if let Some(a) = self.apps.get_mut(&app) {
                a.leader = Some(unit.to_string());
            }
        }
    }

    pub fn leader(&self, app: &str) -> Option<String> {
        self.apps.get(app).and_then(|a| a.leader.clone())
    }

    pub fn is_leader(&self, unit: &str) -> bool {
        self.leader(app_of(unit)).as_deref() == Some(unit)
    }

    pub fn meta(&self, app: &str) -> Option<&CharmMeta> {
        self.apps.get(app).map(|a| &a.meta)
    }

    pub fn apps(&self) -> Vec<String> {
        self.apps.keys().cloned().collect()
    }

    /// `juju config app k=v`: values are checked against the charm's option types; `null`
    /// resets an option to its default.
    pub fn set_config(
        &mut self,
        app: &str,
        values: BTreeMap<String, serde_json::Value>,
    ) -> Result<(), WorldError> {
        let state = self
            .apps
            .get_mut(app)
            .ok_or_else(|| WorldError::UnknownApp(app.to_string()))?;
        let mut checked = Vec::with_capacity(values.len());
        for (key, value) in values {
            let bad = |why: &str| WorldError::InvalidConfig {
                app: app.to_string(),
                key: key.clone(),
                why: why.to_string(),
            };
            let option = state
                .meta
                .config
                .get(&key)
                .ok_or_else(|| bad("unknown option"))?;
            let ok = match (&value, option.kind.as_str()) {
                (serde_json::Value::Null, _) => true,
                (serde_json::Value::String(_), "string" | "secret") => true,
                (serde_json::Value::Number(n), "int") => n.is_i64() || n.is_u64(),
                (serde_json::Value::Number(_), "float") => true,
                (serde_json::Value::Bool(_), "boolean") => true,
                _ => false,
            };
            if !ok {
                return Err(bad(&format!("expected {}, got {value}", option.kind)));
            }
            checked.push((key, value));
        }
        for (key, value) in checked {
            if value.is_null() {
                state.config.remove(&key);
            } else {
                state.config.insert(key, value);
            }
        }
        Ok(())
    }

    /// Every option: the set value, else the default, else `null` (`config-get --all`).
    pub fn config(&self, app: &str) -> BTreeMap<String, serde_json::Value> {
        let Some(state) = self.apps.get(app) else {
            return BTreeMap::new();
        };
        state
            .meta
            .config
            .iter()
            .map(|(k, opt)| {
                let v = state
                    .config
                    .get(k)
                    .cloned()
                    .or_else(|| opt.default.clone())
                    .unwrap_or(serde_json::Value::Null);
                (k.clone(), v)
            })
            .collect()
    }

    fn endpoint_role(meta: &CharmMeta, endpoint: &str) -> Option<(&'static str, String)> {
        if let Some(i) = meta.provides.get(endpoint) {
            Some(("provides", i.clone()))
        } else if let Some(i) = meta.requires.get(endpoint) {
            Some(("requires", i.clone()))
        } else {
            meta.peers.get(endpoint).map(|i| ("peers", i.clone()))
        }
    }

    /// `juju integrate a:ep b:ep`: a provider and a requirer of the same interface.
    /// Every existing unit of both apps enters scope (its Juju-set keys appear in its bag).
    pub fn add_relation(&mut self, a: (&str, &str), b: (&str, &str)) -> Result<u32, WorldError> {
        let role = |(app, ep): (&str, &str)| -> Result<(&'static str, String), WorldError> {
            let meta = self
                .meta(app)
                .ok_or_else(|| WorldError::UnknownApp(app.to_string()))?;
            Self::endpoint_role(meta, ep).ok_or_else(|| WorldError::UnknownEndpoint {
                app: app.to_string(),
                endpoint: ep.to_string(),
            })
        };
        let (ra, ia) = role(a)?;
        let (rb, ib) = role(b)?;
        let cannot = |why: &str| WorldError::CannotRelate {
            a: format!("{}:{}", a.0, a.1),
            b: format!("{}:{}", b.0, b.1),
            why: why.to_string(),
        };
        if ia != ib {
            return Err(cannot(&format!("interfaces differ ({ia} vs {ib})")));
        }
        if !matches!(
            (ra, rb),
            ("provides", "requires") | ("requires", "provides")
        ) {
            return Err(cannot("one side must provide and the other require"));
        }
        let ea = EndRef {
            app: a.0.to_string(),
            endpoint: a.1.to_string(),
        };
        let eb = EndRef {
            app: b.0.to_string(),
            endpoint: b.1.to_string(),
        };
        if self
            .relations
            .values()
            .any(|r| (r.a == ea && r.b == eb) || (r.a == eb && r.b == ea))
        {
            return Err(cannot("already related"));
        }
        let mut data = BTreeMap::new();
        data.insert(ea.app.clone(), BTreeMap::new());
        data.insert(eb.app.clone(), BTreeMap::new());
        for (name, u) in &self.units {
            if u.app == ea.app || u.app == eb.app {
                data.insert(name.clone(), juju_unit_keys(&u.address));
            }
        }
        let id = self.alloc_relation_id();
        self.relations.insert(
            id,
            RelationState {
                id,
                a: ea,
                b: eb,
                interface: ia,
                data,
            },
        );
        Ok(id)
    }

    /// `juju remove-relation`: the relation, its data and the secret grants made over it go.
    pub fn remove_relation(&mut self, id: u32) {
        self.relations.remove(&id);
        for s in self.secrets.values_mut() {
            s.grants.retain(|g| g.relation_id != id);
        }
    }

    pub fn peer_relation_id(&self, app: &str, endpoint: &str) -> Option<u32> {
        self.relations
            .values()
            .find(|r| r.peer() && r.a.app == app && r.a.endpoint == endpoint)
            .map(|r| r.id)
    }

    /// The relations `app` takes part in, by id.
    pub fn relations_of(&self, app: &str) -> Vec<RelationView> {
        self.relations
            .values()
            .filter_map(|r| {
                let (mine, other) = r.ends_for(app)?;
                Some(RelationView {
                    id: r.id,
                    endpoint: mine.endpoint.clone(),
                    interface: r.interface.clone(),
                    remote_app: other.app.clone(),
                    remote_units: self.units(&other.app),
                    peer: r.peer(),
                })
            })
            .collect()
    }

    /// A committed bag (unit or app name as owner); empty when absent.
    pub fn relation_data(&self, id: u32, owner: &str) -> BTreeMap<String, String> {
        self.relations
            .get(&id)
            .and_then(|r| r.data.get(owner))
            .cloned()
            .unwrap_or_default()
    }

    /// Test setup: replace a bag wholesale, bypassing every rule.
    pub fn set_relation_data(&mut self, id: u32, owner: &str, data: BTreeMap<String, String>) {
        if let Some(r) = self.relations.get_mut(&id) {
            r.data.insert(owner.to_string(), data);
        }
    }

    pub fn unit_status(&self, unit: &str) -> StatusValue {
        self.units
            .get(unit)
            .map(|u| u.status.clone())
            .unwrap_or_else(unknown_status)
    }

    pub fn app_status(&self, app: &str) -> StatusValue {
        self.apps
            .get(app)
            .map(|a| a.status.clone())
            .unwrap_or_else(unknown_status)
    }

    /// Every status-set on the unit, oldest first.
    pub fn status_history(&self, unit: &str) -> Vec<StatusValue> {
        self.units
            .get(unit)
            .map(|u| u.status_history.clone())
            .unwrap_or_default()
    }

    pub fn app_status_history(&self, app: &str) -> Vec<StatusValue> {
        self.apps
            .get(app)
            .map(|a| a.status_history.clone())
            .unwrap_or_default()
    }

    /// Test/operator setup: set a unit's status directly.
    pub fn set_unit_status(&mut self, unit: &str, status: StatusValue) {
        if let Some(u) = self.units.get_mut(unit) {
            u.status_history.push(status.clone());
            u.status = status;
        }
    }

    /// The workload version set with `application-version-set`.
    pub fn app_version(&self, app: &str) -> String {
        self.apps
            .get(app)
            .map(|a| a.version.clone())
            .unwrap_or_default()
    }

    /// The unit's loopback address (empty for an unknown unit).
    pub fn unit_address(&self, unit: &str) -> String {
        self.units
            .get(unit)
            .map(|u| u.address.clone())
            .unwrap_or_default()
    }

    /// Units of `app`, in numeric order (`app/2` before `app/10`).
    pub fn units(&self, app: &str) -> Vec<String> {
        let mut units: Vec<String> = self
            .units
            .iter()
            .filter(|(_, u)| u.app == app)
            .map(|(n, _)| n.clone())
            .collect();
        units.sort_by_key(|u| {
            u.rsplit_once('/')
                .and_then(|(_, n)| n.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        });
        units
    }

    pub fn unit_exists(&self, unit: &str) -> bool {
        self.units.contains_key(unit)
    }

    pub fn unit_dying(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(|u| u.dying)
    }

    /// The committed `state-get` store of a unit.
    pub fn unit_state(&self, unit: &str) -> BTreeMap<String, String> {
        self.units
            .get(unit)
            .map(|u| u.state.clone())
            .unwrap_or_default()
    }

    /// Committed open ports of a unit.
    pub fn opened_ports(&self, unit: &str) -> Vec<Port> {
        self.units
            .get(unit)
            .map(|u| u.ports.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Leader settings (`leader-get`).
    pub fn leader_settings(&self, app: &str) -> BTreeMap<String, String> {
        self.apps
            .get(app)
            .map(|a| a.leader_settings.clone())
            .unwrap_or_default()
    }

    /// Register a `type: file` resource so `resource-get` finds it.
    pub fn set_resource(
        &mut self,
        app: &str,
        name: &str,
        path: impl Into<PathBuf>,
    ) -> Result<(), WorldError> {
        let state = self
            .apps
            .get_mut(app)
            .ok_or_else(|| WorldError::UnknownApp(app.to_string()))?;
        state.resources.insert(name.to_string(), path.into());
        Ok(())
    }

    /// The path registered for a `type: file` resource ([`World::set_resource`]).
    pub fn resource(&self, app: &str, name: &str) -> Option<PathBuf> {
        self.apps.get(app)?.resources.get(name).cloned()
    }

    fn find_secret(&self, id_or_label: &str) -> Option<&SecretState> {
        self.secrets.get(&bare_secret_id(id_or_label)).or_else(|| {
            self.secrets
                .values()
                .find(|s| s.label.as_deref() == Some(id_or_label))
        })
    }

    /// The latest committed content of a secret, by URI, bare id or owner label.
    pub fn secret_content(&self, id_or_label: &str) -> Option<BTreeMap<String, String>> {
        let s = self.find_secret(id_or_label)?;
        s.revisions.get(&s.latest).cloned()
    }

    /// The latest revision number of a secret.
    pub fn secret_revision(&self, id_or_label: &str) -> Option<u64> {
        self.find_secret(id_or_label).map(|s| s.latest)
    }

    /// The `secret:<id>` URIs of all secrets, optionally only those owned by `app`
    /// (application- or unit-owned).
    pub fn secret_ids(&self, app: Option<&str>) -> Vec<String> {
        self.secrets
            .values()
            .filter(|s| app.is_none_or(|a| s.owner_app == a))
            .map(|s| format!("secret:{}", s.id))
            .collect()
    }

    /// Units that read the secret and the revision each is pinned to, with its label:
    /// whom the model sends `secret-changed` after a new revision.
    pub fn secret_consumers(&self, id: &str) -> Vec<(String, u64, Option<String>)> {
        self.secrets
            .get(&bare_secret_id(id))
            .map(|s| {
                s.consumers
                    .iter()
                    .map(|(u, c)| (u.clone(), c.revision, c.label.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Test/operator setup: create a secret directly (committed, revision 1). `owner` is an
    /// application name (app-owned) or a unit name (unit-owned). Returns its `secret:` URI.
    pub fn add_secret(
        &mut self,
        owner: &str,
        content: BTreeMap<String, String>,
        label: Option<&str>,
    ) -> String {
        let id = new_secret_id();
        let (owner_app, owner_unit) = if owner.contains('/') {
            (app_of(owner).to_string(), Some(owner.to_string()))
        } else {
            (owner.to_string(), None)
        };
        self.secrets.insert(
            id.clone(),
            SecretState {
                id: id.clone(),
                owner_app,
                owner_unit,
                label: label.map(str::to_string),
                description: None,
                expire: None,
                rotate: None,
                revisions: BTreeMap::from([(1, content)]),
                latest: 1,
                grants: Vec::new(),
                consumers: BTreeMap::new(),
            },
        );
        format!("secret:{id}")
    }

    /// Test/operator setup: grant a secret to an application (or unit) over a relation.
    pub fn grant_secret(&mut self, id: &str, relation_id: u32, grantee: &str) {
        if let Some(s) = self.secrets.get_mut(&bare_secret_id(id)) {
            s.grants.push(Grant {
                relation_id,
                grantee: grantee.to_string(),
            });
        }
    }

    /// Open a per-hook session for `unit`. Each session owns its pending changes; commit it
    /// when the hook exits 0, discard it (or just drop it) otherwise.
    pub fn session(world: &Arc<Mutex<World>>, unit: &str, hook: HookInfo) -> Session {
        Session::new(Arc::clone(world), unit, hook)
    }
}
