//! The model's seams to the parts it runs: the unit-agent socket ([`crate::sim::agent`]) and
//! the Pebble-API servers ([`crate::sim::pebble_server`]). Kept in one place so the rest of the
//! model speaks in its own terms.

use std::collections::BTreeMap;
use std::path::PathBuf;
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
}

/// A custom notice seen on a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenNotice {
    pub id: String,
    pub notice_type: String,
    pub key: String,
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
        })?;
        Ok(Pebble { server })
    }

    /// Kill every service process at once (a pod dying), then stop serving.
    pub fn kill(self) {
        self.server.kill_services();
        self.server.shutdown();
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
            })
            .collect();
        (seen, next)
    }
}
