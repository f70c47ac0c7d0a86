//! The local model's Pebble daemon: a server that speaks the real Pebble HTTP API on a unix
//! socket and really runs the services of its plan.
//!
//! It serves two masters: the runtime's tests (our Pebble client is tested against it) and the
//! local model, where each simulated unit has one per container and redis-server and
//! redis-sentinel really run under it.
//!
//! # Layout
//! - `http`: just enough HTTP/1.1 (and multipart) for Pebble's API.
//! - `api`: the endpoints, with Pebble's envelopes, error texts and kinds.
//! - `services`: starting, supervising (restart with backoff) and stopping processes.
//! - `checks`: tcp/http/exec health checks, started when a layer adds them.
//! - `files`: the files API on the container root (`/x` in the container is `root/x`).
//! - `changes`, `notices`: in-memory changes/tasks and notices.
//! - `logfwd`: service output to the plan's `type: loki` log targets.
//!
//! # Container paths
//! When the daemon runs as root, each service starts in a private mount namespace where every
//! configured bind directory `root/<d>` is bind-mounted over `/<d>` and `hosts_file` over
//! `/etc/hosts` (and, when `env` has `HOSTNAME`, in a UTS namespace with that hostname, as
//! the containers of a pod share its name), then drops to the service's user with `setpriv`.
//! Not as root, services run in the host's view of the filesystem, as the daemon's user (the
//! plan's `user` is ignored), and see host paths: a config pushed to `/etc/x` lives at
//! `root/etc/x`. With [`PebbleServerConfig::container_dir`] and
//! [`PebbleServerConfig::charm_bin_dir`] set, namespaced services also see the pod's
//! `/charm/container/pebble.socket` and `/charm/bin/pebble`, so a service (say, Sentinel's
//! client-reconfig-script) can record a notice with `pebble notify` as it would in Juju.
//!
//! # Lifetimes
//! Services are process-group leaders, are started with a parent-death signal (`setpriv
//! --pdeathsig`), and are stopped (SIGTERM, then SIGKILL after `kill-delay`) when the server
//! shuts down or is dropped, so no service outlives its daemon.

mod api;
mod changes;
mod checks;
mod files;
mod http;
mod logfwd;
mod notices;
mod services;
mod sys;
mod time;
mod users;

use crate::ops::pebble::{Layer, Notice, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::sync::watch;

pub use checks::CheckEvent;

/// Container directories mapped into a service's view when none are configured: where the
/// redis rock keeps its config, data and logs.
pub const DEFAULT_BIND_DIRS: &[&str] = &["/etc/redis-server", "/var/lib/redis", "/var/log/redis"];

/// The version `/v1/system-info` reports (the Pebble release this server imitates).
pub const PEBBLE_VERSION: &str = "v1.32.1";

/// How to run one container's Pebble.
#[derive(Debug, Clone, Default)]
pub struct PebbleServerConfig {
    /// Unix socket to listen on (parent directories are created).
    pub socket: PathBuf,
    /// The container's filesystem root: container path `/x` is `root/x`.
    pub root: PathBuf,
    /// Container name (for logs and `JUJU_CONTAINER_NAME` in services' environment).
    pub container: String,
    /// If set, bind-mounted over `/etc/hosts` for services (pod DNS).
    pub hosts_file: Option<PathBuf>,
    /// Container directories mapped into services' view; [`DEFAULT_BIND_DIRS`] if empty.
    pub bind_dirs: Vec<String>,
    /// Extra environment for services.
    pub env: BTreeMap<String, String>,
    /// Where service stdout/stderr go (appended); else `root/var/log/pebble-services.log`.
    pub log_file: Option<PathBuf>,
    /// The unit's container directory (the one holding `socket`), bound over
    /// [`POD_CONTAINER_DIR`] for services when they run in mount namespaces, and then
    /// `PEBBLE_SOCKET` names the socket there, as in a Juju pod. Services running as a
    /// non-root user reach Pebble even when the model dir's parents are not traversable.
    pub container_dir: Option<PathBuf>,
    /// A directory holding a `pebble` executable, bound over [`POD_CHARM_BIN_DIR`] for
    /// services in mount namespaces (Juju puts its pebble binary at `/charm/bin/pebble` in
    /// every workload container). It must be traversable and executable by services' users.
    pub charm_bin_dir: Option<PathBuf>,
}

/// Where a Juju pod mounts the container's Pebble socket directory, in every workload container.
pub const POD_CONTAINER_DIR: &str = "/charm/container";
/// Where a Juju pod has its `pebble` binary, in every workload container.
pub const POD_CHARM_BIN_DIR: &str = "/charm/bin";

impl PebbleServerConfig {
    fn bind_dirs(&self) -> Vec<String> {
        if self.bind_dirs.is_empty() {
            DEFAULT_BIND_DIRS.iter().map(|s| s.to_string()).collect()
        } else {
            self.bind_dirs.clone()
        }
    }

    /// The file service output is appended to.
    pub fn log_path(&self) -> PathBuf {
        self.log_file
            .clone()
            .unwrap_or_else(|| self.root.join("var/log/pebble-services.log"))
    }
}

/// Everything mutable, behind one lock (never held across an await).
#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub layers: Vec<(String, Layer)>,
    pub plan: Plan,
    pub changes: changes::ChangeStore,
    pub notices: notices::NoticeStore,
    pub services: BTreeMap<String, services::ServiceRt>,
    pub checks: BTreeMap<String, checks::CheckRt>,
    pub check_events: Vec<CheckEvent>,
    /// The loki log targets' forwarders (see `logfwd`).
    pub logfwd: logfwd::Forwarding,
}

/// State shared by the API handlers, service supervisors and the [`PebbleServer`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: PebbleServerConfig,
    pub inner: Mutex<Inner>,
    /// Bumped whenever a change or task is updated (wakes `/wait`).
    pub change_tx: watch::Sender<u64>,
    /// Bumped whenever a notice is recorded (wakes long-polling `/v1/notices`).
    pub notice_tx: watch::Sender<u64>,
    pub requests: AtomicU64,
    pub boot_id: String,
    /// Root, with working mount namespaces: services get the container's directories.
    pub use_namespaces: bool,
    pub is_root: bool,
    /// Set once shutdown began: no more starts or restarts.
    pub shutting_down: AtomicBool,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves data that is still usable for our purposes.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn changes_updated(&self) {
        self.change_tx.send_modify(|v| *v += 1);
    }

    pub fn notices_updated(&self) {
        self.notice_tx.send_modify(|v| *v += 1);
    }
}

/// A running Pebble daemon for one container. Dropping it shuts it down.
#[derive(Debug)]
pub struct PebbleServer {
    shared: Arc<Shared>,
    socket: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
    shutdown_tx: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Can this process make private mount namespaces (root in a VM or privileged container)?
fn namespaces_work() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| sys::random_hex(32))
}

impl PebbleServer {
    /// Start serving; returns once the socket accepts connections. The server runs on its
    /// own thread with its own single-threaded tokio runtime, so several servers can live in
    /// one process.
    pub fn start(mut cfg: PebbleServerConfig) -> std::io::Result<PebbleServer> {
        // Services and mount commands run elsewhere: make the paths absolute.
        cfg.root = std::path::absolute(&cfg.root)?;
        if let Some(parent) = cfg.socket.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::create_dir_all(&cfg.root)?;
        if let Some(parent) = cfg.log_path().parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::remove_file(&cfg.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = std::os::unix::net::UnixListener::bind(&cfg.socket)?;
        listener.set_nonblocking(true)?;
        // Like Pebble: anyone may connect (non-root callers get "user" access), so a service
        // running as `redis` can record notices.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o666))?;
        }
        let is_root = sys::euid() == 0;
        let use_namespaces = is_root && namespaces_work();
        if is_root && !use_namespaces {
            tracing::warn!(
                container = %cfg.container,
                "cannot create mount namespaces: services will see host paths"
            );
        }
        let (change_tx, _) = watch::channel(0);
        let (notice_tx, _) = watch::channel(0);
        let socket = cfg.socket.clone();
        let shared = Arc::new(Shared {
            cfg,
            inner: Mutex::new(Inner::default()),
            change_tx,
            notice_tx,
            requests: AtomicU64::new(0),
            boot_id: boot_id(),
            use_namespaces,
            is_root,
            shutting_down: AtomicBool::new(false),
        });
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("pebble-{}", thread_shared.cfg.container))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(api::serve(thread_shared, listener, shutdown_rx, ready_tx));
                // Dropping the runtime cancels connection handlers still waiting.
                drop(rt);
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                let _ = std::fs::remove_file(&socket);
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                let _ = std::fs::remove_file(&socket);
                return Err(std::io::Error::other(
                    "Pebble server thread died while starting",
                ));
            }
        }
        Ok(PebbleServer {
            shared,
            socket,
            thread: Some(thread),
            shutdown_tx: Some(shutdown_tx),
        })
    }

    /// The socket the server listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &PebbleServerConfig {
        &self.shared.cfg
    }

    /// HTTP requests served so far (for benchmarks).
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// SIGKILL every running service, as when a pod dies, without restarting them. The API
    /// keeps answering; services show `inactive`.
    pub fn kill_services(&self) {
        services::kill_all(&self.shared);
    }

    /// Custom notices (of any user) whose id is above `after_id`. A key recorded again keeps
    /// its id, so use [`PebbleServer::custom_notices_since`] to see repeats as well.
    pub fn notices_after(&self, after_id: u64) -> Vec<Notice> {
        self.shared.lock().notices.custom_after_id(after_id)
    }

    /// Custom notices (of any user) recorded or repeated after `cursor` (start from 0), and
    /// the cursor to pass next time. Each returned notice is one occurrence Juju would turn
    /// into a `<container>-pebble-custom-notice` hook.
    pub fn custom_notices_since(&self, cursor: u64) -> (Vec<Notice>, u64) {
        self.shared.lock().notices.custom_since(cursor)
    }

    /// Every check up/down transition so far, oldest first (for `-pebble-check-failed` and
    /// `-pebble-check-recovered` hooks).
    pub fn check_events(&self) -> Vec<CheckEvent> {
        self.shared.lock().check_events.clone()
    }

    /// The current combined plan.
    pub fn plan(&self) -> Plan {
        self.shared.lock().plan.clone()
    }

    /// Pids of the services' running processes, by service name.
    pub fn service_pids(&self) -> BTreeMap<String, i32> {
        self.shared
            .lock()
            .services
            .iter()
            .filter_map(|(n, s)| s.pid.map(|p| (n.clone(), p)))
            .collect()
    }

    /// Stop services (SIGTERM, then SIGKILL after their kill-delay), close and remove the
    /// socket.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Whatever the thread managed, nothing may outlive the server.
        services::kill_all(&self.shared);
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for PebbleServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run one server in the foreground until SIGTERM or SIGINT, then shut it down (for a
/// stand-alone `pebble`-like process per container).
pub fn run_daemon(cfg: PebbleServerConfig) -> std::io::Result<()> {
    let server = PebbleServer::start(cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<(), std::io::Error>(())
    })?;
    server.shutdown();
    Ok(())
}

/// Current time, for records.
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}
