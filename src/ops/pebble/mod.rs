//! Pebble: the types of its HTTP API (shared by our client and the local model's server), the
//! [`Pebble`] trait charm code talks to, and the real client over the unix socket.
//!
//! The socket of container `C` is `/charm/containers/C/pebble.socket`; `CHARM_CONTAINERS_DIR`
//! replaces the `/charm/containers` part for local runs.

pub mod client;
pub mod multipart;
pub mod plan;
pub mod types;

pub use client::PebbleClient;
pub use types::*;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where container sockets live in a Juju pod, unless `CHARM_CONTAINERS_DIR` says otherwise.
pub const DEFAULT_CONTAINERS_DIR: &str = "/charm/containers";

/// The socket path of a container's Pebble.
pub fn socket_path(container: &str) -> PathBuf {
    let base = std::env::var_os("CHARM_CONTAINERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTAINERS_DIR));
    base.join(container).join("pebble.socket")
}

/// What can go wrong talking to Pebble.
#[derive(Debug, thiserror::Error)]
pub enum PebbleError {
    /// The socket is missing or refuses connections: the container is not up (yet).
    #[error("cannot connect to Pebble at {socket}: {message}")]
    Connection { socket: String, message: String },
    /// Pebble answered with an error envelope.
    #[error("Pebble API error {status_code} ({kind}): {message}")]
    Api {
        status_code: u16,
        /// `not-found`, `permission-denied`, `generic-file-error`, ... or empty.
        kind: String,
        message: String,
    },
    /// A file operation failed for one path (inside an HTTP 200 response).
    #[error("Pebble file error on {path} ({kind}): {message}")]
    Path {
        path: String,
        kind: String,
        message: String,
    },
    /// A change finished with an error; `logs` are its tasks' logs.
    #[error("Pebble change {change_id} failed: {err}{}", if logs.is_empty() { String::new() } else { format!("\n{}", logs.join("\n")) })]
    ChangeFailed {
        change_id: String,
        err: String,
        logs: Vec<String>,
    },
    /// Waiting for a change (or a request) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The response could not be understood.
    #[error("Pebble protocol error: {0}")]
    Protocol(String),
}

impl PebbleError {
    pub fn is_connection(&self) -> bool {
        matches!(self, PebbleError::Connection { .. })
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, PebbleError::Api { kind, .. } | PebbleError::Path { kind, .. } if kind == "not-found")
    }
}

pub type PebbleResult<T> = Result<T, PebbleError>;

/// Options for [`Pebble::push`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptions {
    pub make_dirs: bool,
    /// Unix permission bits, e.g. `0o640`.
    pub permissions: Option<u32>,
    pub user: Option<String>,
    pub user_id: Option<u32>,
    pub group: Option<String>,
    pub group_id: Option<u32>,
}

/// Options for [`Pebble::make_dir`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MakeDirOptions {
    pub make_parents: bool,
    pub permissions: Option<u32>,
    pub user: Option<String>,
    pub user_id: Option<u32>,
    pub group: Option<String>,
    pub group_id: Option<u32>,
}

/// Query for [`Pebble::notices`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticesQuery {
    pub types: Vec<String>,
    pub keys: Vec<String>,
    /// RFC3339 timestamp.
    pub after: Option<String>,
    /// `users=all` (admin only).
    pub all_users: bool,
}

/// Every Pebble endpoint a charm needs (all but exec). One request each, no caching:
/// callers decide what they need to ask.
pub trait Pebble {
    fn system_info(&self) -> PebbleResult<SystemInfo>;
    /// ops's `can_connect()`: system-info answers.
    fn can_connect(&self) -> bool {
        self.system_info().is_ok()
    }
    fn health(&self, level: Option<CheckLevel>, names: &[&str]) -> PebbleResult<bool>;

    fn add_layer(&self, label: &str, layer: &Layer, combine: bool) -> PebbleResult<()>;
    fn get_plan(&self) -> PebbleResult<Plan>;

    fn services(&self, names: &[&str]) -> PebbleResult<Vec<ServiceInfo>>;
    /// POST /v1/services; returns the change id. `names` must be empty for replan/autostart.
    fn service_action(&self, action: ServiceAction, names: &[&str]) -> PebbleResult<String>;
    fn send_signal(&self, signal: &str, services: &[&str]) -> PebbleResult<()>;

    fn changes(&self, select: ChangeSelect, service: Option<&str>) -> PebbleResult<Vec<Change>>;
    fn change(&self, id: &str) -> PebbleResult<Change>;
    /// Wait for a change to be ready (ops's sliced wait); `Timeout` when it is not in time.
    fn wait_change(&self, id: &str, timeout: Duration) -> PebbleResult<Change>;
    fn abort_change(&self, id: &str) -> PebbleResult<Change>;

    fn push(&self, path: &str, content: &[u8], opts: &PushOptions) -> PebbleResult<()>;
    fn pull(&self, path: &str) -> PebbleResult<Vec<u8>>;
    fn list_files(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> PebbleResult<Vec<FileInfo>>;
    fn make_dir(&self, path: &str, opts: &MakeDirOptions) -> PebbleResult<()>;
    fn remove_path(&self, path: &str, recursive: bool) -> PebbleResult<()>;

    fn checks(&self, level: Option<CheckLevel>, names: &[&str]) -> PebbleResult<Vec<CheckInfo>>;
    /// POST /v1/checks start|stop; returns the names that changed.
    fn check_action(&self, action: CheckAction, names: &[&str]) -> PebbleResult<Vec<String>>;

    /// Record a custom notice; returns its id.
    fn notify(
        &self,
        key: &str,
        data: &BTreeMap<String, String>,
        repeat_after: Option<Duration>,
    ) -> PebbleResult<String>;
    fn notices(&self, query: &NoticesQuery) -> PebbleResult<Vec<Notice>>;
    fn notice(&self, id: &str) -> PebbleResult<Notice>;

    // ---- conveniences built on the above ------------------------------------------------

    /// Run a service action and wait for its change; a failed change is an error with logs.
    fn service_action_and_wait(
        &self,
        action: ServiceAction,
        names: &[&str],
        timeout: Duration,
    ) -> PebbleResult<Change> {
        let id = self.service_action(action, names)?;
        let change = self.wait_change(&id, timeout)?;
        change.into_result()
    }

    fn replan(&self, timeout: Duration) -> PebbleResult<Change> {
        self.service_action_and_wait(ServiceAction::Replan, &[], timeout)
    }

    /// Does this path exist? (list with `itself=true`; not-found → false).
    fn exists(&self, path: &str) -> PebbleResult<bool> {
        match self.list_files(path, None, true) {
            Ok(v) => Ok(!v.is_empty()),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Hands out a [`Pebble`] per container: the real socket clients in production,
/// in-memory ones in tests.
pub trait PebbleProvider {
    fn container(&self, name: &str) -> Box<dyn Pebble + '_>;
}

/// The production provider: a [`PebbleClient`] on each container's socket.
#[derive(Debug, Default, Clone)]
pub struct SocketPebbleProvider;

impl PebbleProvider for SocketPebbleProvider {
    fn container(&self, name: &str) -> Box<dyn Pebble + '_> {
        Box::new(PebbleClient::new(socket_path(name)))
    }
}
