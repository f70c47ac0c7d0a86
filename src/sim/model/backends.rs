//! The model's seams to the parts it runs: the unit-agent socket ([`crate::sim::agent`]) and
//! the Pebble-API servers ([`crate::sim::pebble_server`]). Kept in one place so the rest of the
//! model speaks in its own terms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ops::testing::world::Session;
use crate::sim::agent::AgentServer;
use crate::sim::pebble_server::{PebbleServer, PebbleServerConfig};

/// The unit agents' socket: hook tools reach a hook's [`Session`] through it.
pub struct Agent {
    server: AgentServer,
}

impl Agent {
    pub fn start(socket: PathBuf) -> std::io::Result<Agent> {
        Ok(Agent {
            server: AgentServer::start(&socket)?,
        })
    }
    pub fn register(&self, context_id: &str, session: Arc<Session>) {
        self.server.register(context_id, session);
    }
    pub fn unregister(&self, context_id: &str) {
        self.server.unregister(context_id);
    }
}

/// What a container's Pebble server needs.
pub struct PebbleSpec {
    pub socket: PathBuf,
    pub root: PathBuf,
    pub container: String,
    pub hosts_file: PathBuf,
    /// Container directories services see (the container root's copies bound over them).
    pub bind_dirs: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub log_file: PathBuf,
    /// The unit's container dir (holding `socket`): the pod's `/charm/container`.
    pub container_dir: Option<PathBuf>,
    /// The pods' `/charm/bin` (see [`install_pebble_tool`]).
    pub charm_bin_dir: Option<PathBuf>,
}

/// Put `pebble` into `bin_dir` (0755): the multi-call `tool_binary`, which answers as pebble
/// under that name. Services running as a non-root user execute it through the
/// `/charm/bin` bind mount, so it must not live where they cannot reach: a hard link when
/// the binary is world-executable and on the same filesystem, else a copy. Replaced
/// atomically (a running service may be executing the old one).
pub fn install_pebble_tool(tool_binary: &Path, bin_dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin_dir)?;
    std::fs::set_permissions(bin_dir, std::fs::Permissions::from_mode(0o755))?;
    let dest = bin_dir.join("pebble");
    let tmp = bin_dir.join(".pebble.tmp");
    let _ = std::fs::remove_file(&tmp);
    let world_exec = std::fs::metadata(tool_binary)?.permissions().mode() & 0o005 == 0o005;
    if !(world_exec && std::fs::hard_link(tool_binary, &tmp).is_ok()) {
        std::fs::copy(tool_binary, &tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// A custom notice seen on a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenNotice {
    pub id: String,
    pub notice_type: String,
    pub key: String,
    /// The uid that recorded it (`None`: public, recorded by Pebble itself).
    pub user_id: Option<u32>,
}

/// One container's Pebble server.
pub struct Pebble {
    server: PebbleServer,
}

impl Pebble {
    pub fn start(spec: PebbleSpec) -> std::io::Result<Pebble> {
        let server = PebbleServer::start(PebbleServerConfig {
            socket: spec.socket,
            root: spec.root,
            container: spec.container,
            hosts_file: Some(spec.hosts_file),
            bind_dirs: spec.bind_dirs,
            env: spec.env,
            log_file: Some(spec.log_file),
            container_dir: spec.container_dir,
            charm_bin_dir: spec.charm_bin_dir,
        })?;
        Ok(Pebble { server })
    }

    /// Kill every service process at once (a pod dying), then stop serving.
    pub fn kill(self) {
        self.server.kill_services();
        self.server.shutdown();
    }

    /// Check transitions after the first `cursor` ones (start at 0): (check name, failed),
    /// oldest first, and the next cursor.
    pub fn check_events_since(&self, cursor: usize) -> (Vec<(String, bool)>, usize) {
        let events = self.server.check_events();
        let next = events.len();
        let new = events
            .into_iter()
            .skip(cursor)
            .map(|e| (e.check, e.failed))
            .collect();
        (new, next)
    }

    /// Custom notices recorded or repeated after `cursor` (start at 0), and the next cursor.
    pub fn custom_notices_since(&self, cursor: u64) -> (Vec<SeenNotice>, u64) {
        let (notices, next) = self.server.custom_notices_since(cursor);
        let seen = notices
            .into_iter()
            .map(|n| SeenNotice {
                id: n.id,
                notice_type: n.notice_type,
                key: n.key,
                user_id: n.user_id,
            })
            .collect();
        (seen, next)
    }
}
