//! The model daemon: one background process per model that owns the [`World`], the unit-agent
//! socket, every unit's Pebble servers and hook queue, the update-status timer and the notice
//! poller, and answers the CLI on `D/control.sock`.
//!
//! Threads, not tasks: a unit's worker spends its life waiting for a child process, and
//! blocking code keeps the hook path easy to follow (one worker per unit, like Juju's uniter).
//! Lock order: `inner` before a unit's queue; the world lock is only ever held briefly and
//! never while taking another lock.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::backends::{Agent, Pebble, PebbleSpec};
use super::charm::{parse_scalar, CharmInfo, Role};
use super::hook::{
    self, log_line, ActionSpec, HookEnv, HookOutcome, HookSpec, Isolation, SecretRef, StorageRef,
};
use super::layout::{render_hosts, write_in_place, ModelDir};
use super::proto::{ActionOutcome, Reply, Request};
use super::replication::CatchUp;
use super::status::{redis_role, redis_role_tls, AppLine, RelationLine, Snapshot, UnitLine};
use super::unit::{Step, UnitRt};
use crate::ops::testing::world::{ActionInvocation, CharmMeta, HookInfo, Session, World};

/// Graceful pod deletion and `refresh` (a rolling update): operations on the daemon's state.
#[path = "refresh.rs"]
mod refresh;

/// How the daemon was started (persisted in `D/model.json` for the CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelOptions {
    pub name: String,
    /// Absolute model directory.
    pub dir: PathBuf,
    /// `127.A.B`: units get `127.A.B.1`, `.2`, ...
    pub subnet: String,
    pub juju_version: String,
    pub update_status_interval_secs: u64,
    /// Cap of the failed-hook retry backoff (1 s, 2 s, 4 s, ... up to this).
    pub retry_cap_secs: u64,
}

/// A request failed: one line for the operator.
type OpResult<T> = Result<T, String>;

struct AppRt {
    charm: CharmInfo,
    /// The binary or script installed as each unit's `dispatch`.
    dispatch: PathBuf,
}

#[derive(Default)]
struct Inner {
    apps: BTreeMap<String, AppRt>,
    units: BTreeMap<String, Arc<UnitRt>>,
    /// (receiver, relation id, remote unit): `-joined` was queued, so `-changed` may follow.
    joined: BTreeSet<(String, u32, String)>,
    next_host: u32,
    /// (unit, secret id) → the revision it was last told about.
    secret_notified: BTreeMap<(String, String), u64>,
}

/// The daemon.
pub struct Daemon {
    opts: ModelOptions,
    layout: ModelDir,
    world: Arc<Mutex<World>>,
    agent: Agent,
    inner: Mutex<Inner>,
    shutdown: AtomicBool,
    /// Background operations (scale-down, kill-pod) in flight: the model is not settled.
    busy: AtomicUsize,
    next_action: AtomicU64,
    next_context: AtomicU64,
    as_root: bool,
    tool_binary: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unit_index(unit: &str) -> u32 {
    unit.rsplit_once('/')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

fn app_of(unit: &str) -> &str {
    unit.split_once('/').map_or(unit, |(a, _)| a)
}

/// Files and directories of a charm source dir that are not part of the charm.
const NOT_CHARM: &[&str] = &[
    "target",
    ".git",
    ".juju-local",
    "tests",
    "benches",
    "docs",
    "scripts",
    "shared",
    "build",
    "node_modules",
    ".tox",
    ".github",
];

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(target, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Install a charm into a unit's charm dir: the charm's files (not build trees) and
/// `dispatch` (a symlink to the binary when the source has no `dispatch` of its own).
fn install_charm(src: &Path, dispatch: &Path, dest: &Path) -> std::io::Result<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if NOT_CHARM.contains(&name_s.as_ref()) || name_s.starts_with(".unit-state") {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&entry.path(), &dest.join(&name))?;
        } else if name_s == "dispatch" {
            // Installed below.
        } else if ty.is_symlink() {
            // Kept as a link, as copy_tree does below the top level: a charm's `venv ->
            // /somewhere/venv` must not be followed (fs::copy fails on a directory).
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, dest.join(&name))?;
        } else {
            std::fs::copy(entry.path(), dest.join(&name))?;
        }
    }
    let target = dest.join("dispatch");
    if dispatch.starts_with(src) && dispatch.file_name().is_some_and(|n| n == "dispatch") {
        std::fs::copy(dispatch, &target)?;
    } else {
        std::os::unix::fs::symlink(dispatch, &target)?;
    }
    Ok(())
}

/// Where a charm's dispatch comes from: `--dispatch`, the charm's own `dispatch`, or the
/// charm's Cargo build output named after the charm (the newest of release and debug).
pub fn resolve_dispatch(charm: &CharmInfo, explicit: Option<&str>) -> OpResult<PathBuf> {
    if let Some(p) = explicit {
        let p = std::fs::canonicalize(p).map_err(|e| format!("dispatch {p}: {e}"))?;
        return Ok(p);
    }
    let own = charm.dir.join("dispatch");
    if own.is_file() {
        return Ok(own);
    }
    // The most recently built profile wins, so a stale release binary never shadows a
    // fresh debug build (or the reverse).
    let newest = ["release", "debug"]
        .iter()
        .map(|profile| charm.dir.join("target").join(profile).join(&charm.name))
        .filter_map(|bin| Some((std::fs::metadata(&bin).ok()?.modified().ok()?, bin)))
        .max_by_key(|(mtime, _)| *mtime);
    if let Some((_, bin)) = newest {
        return Ok(bin);
    }
    Err(format!(
        "charm {} has no dispatch and no built binary target/{{release,debug}}/{}: build it \
         (cargo build --release) or pass --dispatch <binary>",
        charm.dir.display(),
        charm.name
    ))
}

/// Parse `key=value` config words against the charm's option types.
pub fn parse_config(charm: &CharmInfo, words: &[String]) -> OpResult<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("invalid config setting {w:?}: expected key=value"))?;
        let ty = charm
            .config_types
            .get(k)
            .ok_or_else(|| format!("unknown config option {k:?} for charm {}", charm.name))?;
        let value = match ty.as_str() {
            "string" | "secret" => Value::String(v.to_string()),
            _ => match parse_scalar(v) {
                Value::String(_) => {
                    return Err(format!("config option {k:?} expects {ty}, got {v:?}"));
                }
                other => other,
            },
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// Empty a directory tree except the given paths (and the directories leading to them): a
/// new pod's container filesystem, with its storage mounts kept.
fn wipe_except(dir: &Path, keep: &[PathBuf]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if keep.contains(&path) {
            continue;
        }
        let is_dir = path.symlink_metadata()?.is_dir();
        if is_dir && keep.iter().any(|k| k.starts_with(&path)) {
            wipe_except(&path, keep)?;
        } else if is_dir {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Remove a unix socket left by a dead process (so `bind` succeeds).
fn clear_socket(path: &Path) {
    if path.exists() && UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

impl Daemon {
    /// Run a model daemon until `Shutdown`. Returns only on a startup error.
    pub fn run(opts: ModelOptions) -> OpResult<()> {
        let layout = ModelDir::new(&opts.dir);
        std::fs::create_dir_all(layout.root.join("units"))
            .map_err(|e| format!("cannot create {}: {e}", layout.root.display()))?;
        let control = layout.control_socket();
        if UnixStream::connect(&control).is_ok() {
            return Err(format!(
                "a daemon is already running for {}",
                layout.root.display()
            ));
        }
        clear_socket(&control);
        clear_socket(&layout.agent_socket());
        let _ = std::fs::write(layout.daemon_pid(), std::process::id().to_string());
        let model_json = serde_json::to_string_pretty(&opts).map_err(|e| e.to_string())?;
        std::fs::write(layout.model_file(), model_json)
            .map_err(|e| format!("cannot write model file: {e}"))?;
        write_in_place(&layout.hosts_file(), &render_hosts(&opts.name, &[]))
            .map_err(|e| format!("cannot write hosts file: {e}"))?;
        let as_root = hook::running_as_root();
        if as_root {
            std::fs::create_dir_all(hook::POD_CONTAINERS_DIR)
                .map_err(|e| format!("cannot create {}: {e}", hook::POD_CONTAINERS_DIR))?;
        }
        let agent = Agent::start(layout.agent_socket())
            .map_err(|e| format!("cannot start the agent socket: {e}"))?;
        let listener = UnixListener::bind(&control)
            .map_err(|e| format!("cannot listen on {}: {e}", control.display()))?;
        let tool_binary =
            std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        super::backends::install_pebble_tool(&tool_binary, &layout.charm_bin())
            .map_err(|e| format!("cannot install the pods' pebble: {e}"))?;
        let world = World::new(&opts.name);
        let daemon = Arc::new(Daemon {
            layout,
            world: Arc::new(Mutex::new(world)),
            agent,
            inner: Mutex::new(Inner {
                next_host: 1,
                ..Inner::default()
            }),
            shutdown: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            next_action: AtomicU64::new(1),
            next_context: AtomicU64::new(1),
            as_root,
            tool_binary,
            opts,
        });
        daemon.log(&format!(
            "model {} up (subnet {}, root: {})",
            daemon.opts.name, daemon.opts.subnet, as_root
        ));
        {
            let d = daemon.clone();
            std::thread::spawn(move || d.update_status_timer());
            let d = daemon.clone();
            std::thread::spawn(move || d.notice_poller());
        }
        daemon.persist();
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    let d = daemon.clone();
                    std::thread::spawn(move || d.serve(stream));
                }
                Err(e) => daemon.log(&format!("accept failed: {e}")),
            }
        }
        Ok(())
    }

    fn log(&self, msg: &str) {
        // daemon.log is this process's stderr.
        eprintln!("{} {msg}", hook::clock());
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    fn unit_rt(&self, unit: &str) -> OpResult<Arc<UnitRt>> {
        lock(&self.inner)
            .units
            .get(unit)
            .cloned()
            .ok_or_else(|| format!("unit \"{unit}\" not found"))
    }

    fn all_units(&self) -> Vec<Arc<UnitRt>> {
        lock(&self.inner).units.values().cloned().collect()
    }

    // ----- control socket -------------------------------------------------------------

    fn serve(self: Arc<Self>, stream: UnixStream) {
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut line = String::new();
        if BufReader::new(read_half).read_line(&mut line).is_err() {
            return;
        }
        let out = Mutex::new(stream);
        let send = |r: Reply| {
            if let Ok(text) = serde_json::to_string(&r) {
                let mut s = lock(&out);
                let _ = writeln!(s, "{text}");
            }
        };
        let progress = |msg: String| send(Reply::Progress(msg));
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                send(Reply::Error(format!("bad request: {e}")));
                return;
            }
        };
        let shutting_down = matches!(req, Request::Shutdown);
        let result = self.handle(req, &progress);
        match result {
            Ok(v) => send(Reply::Ok(v)),
            Err(e) => send(Reply::Error(e)),
        }
        if shutting_down {
            drop(out);
            self.teardown();
            std::process::exit(0);
        }
    }

    fn handle(self: &Arc<Self>, req: Request, progress: &dyn Fn(String)) -> OpResult<Value> {
        match req {
            Request::Ping => Ok(json!({"model": self.opts.name})),
            Request::Deploy {
                charm_dir,
                app,
                units,
                config,
                resources,
                dispatch,
            } => self.deploy(
                &charm_dir,
                app.as_deref(),
                units,
                &config,
                &resources,
                dispatch.as_deref(),
                progress,
            ),
            Request::Scale { app, units } => self.scale(&app, units, progress),
            Request::KillPod {
                unit,
                down_for_ms,
                grace_ms: None,
            } => self.kill_pod(&unit, Duration::from_millis(down_for_ms), progress),
            Request::KillPod {
                unit,
                down_for_ms,
                grace_ms: Some(grace),
            } => self.delete_pod(
                &unit,
                Duration::from_millis(grace),
                Duration::from_millis(down_for_ms),
                progress,
            ),
            Request::Refresh {
                app,
                charm_dir,
                dispatch,
                grace_ms,
            } => self.refresh(
                &app,
                charm_dir.as_deref(),
                dispatch.as_deref(),
                Duration::from_millis(grace_ms),
                progress,
            ),
            Request::Relate { a, b } => self.relate(&a, &b, progress),
            Request::Config { app, settings } => self.config(&app, &settings),
            Request::AttachResource { app, resources } => self.attach_resource(&app, &resources),
            Request::Run {
                unit,
                action,
                params,
            } => self.run_action(&unit, &action, &params, progress),
            Request::ShowUnit { unit } => self.show_unit(&unit),
            Request::Status => serde_json::to_value(self.snapshot(true)).map_err(|e| e.to_string()),
            Request::Wait {
                timeout_secs,
                replicated,
            } => self.wait_settled(Duration::from_secs(timeout_secs), replicated, progress),
            Request::Shutdown => Ok(json!({})),
        }
    }

    // ----- operations -----------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn deploy(
        self: &Arc<Self>,
        charm_dir: &str,
        app: Option<&str>,
        units: u32,
        config: &[String],
        resources: &[String],
        dispatch: Option<&str>,
        progress: &dyn Fn(String),
    ) -> OpResult<Value> {
        let dir = std::fs::canonicalize(charm_dir)
            .map_err(|e| format!("charm directory {charm_dir}: {e}"))?;
        let charm = CharmInfo::load(&dir).map_err(|e| e.to_string())?;
        let meta = CharmMeta::load(&dir).map_err(|e| e.to_string())?;
        let app = app.unwrap_or(&charm.name).to_string();
        if lock(&self.inner).apps.contains_key(&app) {
            return Err(format!("application \"{app}\" already exists"));
        }
        let dispatch = resolve_dispatch(&charm, dispatch)?;
        let settings = parse_config(&charm, config)?;
        let res = parse_resources(resources)?;
        {
            let mut w = self.world();
            w.add_app(&app, meta).map_err(|e| e.to_string())?;
            w.set_config(&app, settings).map_err(|e| e.to_string())?;
            for (name, path) in res {
                w.set_resource(&app, &name, path)
                    .map_err(|e| e.to_string())?;
            }
        }
        progress(format!(
            "deploying {app} ({} unit{}) from {}",
            units,
            if units == 1 { "" } else { "s" },
            dir.display()
        ));
        lock(&self.inner)
            .apps
            .insert(app.clone(), AppRt { charm, dispatch });
        let added = self.add_units(&app, units, progress)?;
        Ok(json!({"application": app, "units": added}))
    }

    /// Create pods for `n` new units and queue their deploy sequence, then the relation
    /// joins with every unit already there.
    fn add_units(
        self: &Arc<Self>,
        app: &str,
        n: u32,
        progress: &dyn Fn(String),
    ) -> OpResult<Vec<String>> {
        let mut new = Vec::new();
        for _ in 0..n {
            let rt = self.create_unit(app)?;
            progress(format!("{} is at {}", rt.name, rt.address));
            new.push(rt);
        }
        {
            let mut w = self.world();
            if w.leader(app).is_none() {
                if let Some(first) = new.first() {
                    w.set_leader(&first.name);
                }
            }
        }
        for rt in &new {
            self.queue_install(rt);
        }
        for rt in &new {
            self.queue_joins(rt);
        }
        self.persist();
        Ok(new.iter().map(|r| r.name.clone()).collect())
    }

    fn create_unit(self: &Arc<Self>, app: &str) -> OpResult<Arc<UnitRt>> {
        let (charm_dir, dispatch, charm) = {
            let inner = lock(&self.inner);
            let a = inner
                .apps
                .get(app)
                .ok_or_else(|| format!("application \"{app}\" not found"))?;
            (a.charm.dir.clone(), a.dispatch.clone(), a.charm.clone())
        };
        let name = self.world().add_unit(app).map_err(|e| e.to_string())?;
        let address = {
            let mut inner = lock(&self.inner);
            let host = inner.next_host;
            inner.next_host += 1;
            format!("{}.{}", self.opts.subnet, host)
        };
        if address
            .rsplit('.')
            .next()
            .and_then(|h| h.parse::<u8>().ok())
            .is_none()
        {
            let _ = self.world().remove_unit(&name);
            return Err(format!("no addresses left in {}.0/24", self.opts.subnet));
        }
        self.world().set_unit_address(&name, &address);
        let dir = self.layout.unit(&name);
        let setup = || -> std::io::Result<hook::UnitLog> {
            std::fs::create_dir_all(&dir.root)?;
            // Juju mounts /charm/containers even for a charm without workload containers.
            std::fs::create_dir_all(dir.containers())?;
            install_charm(&charm_dir, &dispatch, &dir.charm())?;
            std::fs::create_dir_all(dir.tools())?;
            for tool in crate::sim::hooktools::TOOL_NAMES {
                let link = dir.tools().join(tool);
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&self.tool_binary, &link)?;
            }
            for c in &charm.containers {
                std::fs::create_dir_all(dir.container_root(&c.name))?;
            }
            hook::open_log(&dir.log())
        };
        let log = match setup() {
            Ok(l) => l,
            Err(e) => {
                let _ = self.world().remove_unit(&name);
                return Err(format!("cannot set up unit {name}: {e}"));
            }
        };
        let rt = Arc::new(UnitRt::new(&name, &address, dir, log));
        lock(&self.inner).units.insert(name.clone(), rt.clone());
        self.write_hosts();
        if let Err(e) = self.start_pod(&rt) {
            self.forget_unit(&rt);
            return Err(format!("cannot start the pod of {name}: {e}"));
        }
        let d = self.clone();
        let w = rt.clone();
        std::thread::Builder::new()
            .name(format!("uniter-{name}"))
            .spawn(move || d.worker(w))
            .map_err(|e| format!("cannot start the agent of {name}: {e}"))?;
        Ok(rt)
    }

    /// The charm metadata of a unit's application.
    fn charm_of(&self, app: &str) -> Option<CharmInfo> {
        lock(&self.inner).apps.get(app).map(|a| a.charm.clone())
    }

    /// Start one Pebble server per container (the pod's containers coming up).
    fn start_pod(&self, rt: &UnitRt) -> std::io::Result<()> {
        let Some(charm) = self.charm_of(&rt.app) else {
            return Ok(());
        };
        let mut started = BTreeMap::new();
        for c in &charm.containers {
            let root = rt.dir.container_root(&c.name);
            std::fs::create_dir_all(&root)?;
            super::layout::install_image_binaries(&root)?;
            let socket = rt.dir.pebble_socket(&c.name);
            let _ = std::fs::remove_file(&socket);
            // Storage is a real directory at its mount point in the container root (Pebble's
            // files API and the services' bind mounts both need a directory, not a link);
            // a pod kill wipes the root around it, so it outlives the pod.
            let mut bind_dirs: Vec<String> = crate::sim::pebble_server::DEFAULT_BIND_DIRS
                .iter()
                .map(|d| d.to_string())
                .collect();
            for m in &c.mounts {
                std::fs::create_dir_all(root.join(m.location.trim_start_matches('/')))?;
                if !bind_dirs.contains(&m.location) {
                    bind_dirs.push(m.location.clone());
                }
            }
            let env = BTreeMap::from([
                // PEBBLE_SOCKET is the Pebble server's: /charm/container/pebble.socket when
                // services run in the pod's mount namespace (container_dir below).
                ("JUJU_CONTAINER_NAME".to_string(), c.name.clone()),
                (
                    "JUJU_LOCAL_MODEL_DIR".to_string(),
                    self.layout.root.display().to_string(),
                ),
                ("HOSTNAME".to_string(), rt.name.replace('/', "-")),
                (
                    "PATH".to_string(),
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                ),
            ]);
            let spec = PebbleSpec {
                socket,
                root,
                container: c.name.clone(),
                hosts_file: self.layout.hosts_file(),
                bind_dirs,
                env,
                log_file: rt.dir.pebble_log(&c.name),
                container_dir: Some(rt.dir.container(&c.name)),
                charm_bin_dir: Some(self.layout.charm_bin()),
            };
            match Pebble::start(spec) {
                Ok(p) => {
                    started.insert(c.name.clone(), p);
                }
                Err(e) => {
                    for (_, p) in started {
                        p.kill();
                    }
                    return Err(e);
                }
            }
        }
        *lock(&rt.pebbles) = started;
        lock(&rt.notice_cursor).clear();
        lock(&rt.check_cursor).clear();
        Ok(())
    }

    fn stop_pod(&self, rt: &UnitRt) {
        let pebbles = std::mem::take(&mut *lock(&rt.pebbles));
        for (_, p) in pebbles {
            p.kill();
        }
    }

    /// install → relation-created → leader-elected → config-changed → start →
    /// storage-attached → pebble-ready (contract 1.4).
    fn queue_install(&self, rt: &UnitRt) {
        let (relations, leader) = {
            let w = self.world();
            (w.relations_of(&rt.app), w.is_leader(&rt.name))
        };
        rt.enqueue(HookSpec::plain("install"));
        let mut rels = relations.clone();
        rels.sort_by_key(|r| (!r.peer, r.id));
        for r in &rels {
            rt.enqueue(HookSpec::relation(
                &r.endpoint,
                r.id,
                "created",
                &r.remote_app,
                None,
            ));
        }
        if leader {
            rt.enqueue(HookSpec::plain("leader-elected"));
        } else if !self.opts.juju_version.starts_with("4.") {
            rt.enqueue(HookSpec::plain("leader-settings-changed"));
        }
        rt.enqueue(HookSpec::plain("config-changed"));
        rt.enqueue(HookSpec::plain("start"));
        self.queue_pod_ready(rt, true);
    }

    /// storage-attached (new pods only) and each container's pebble-ready.
    fn queue_pod_ready(&self, rt: &UnitRt, storage: bool) {
        let Some(charm) = self.charm_of(&rt.app) else {
            return;
        };
        if storage {
            for (name, kind) in &charm.storage {
                let n = unit_index(&rt.name);
                let mut h = HookSpec::plain(&format!("{name}-storage-attached"));
                h.storage = Some(StorageRef {
                    id: format!("{name}/{n}"),
                    location: format!("/var/lib/juju/storage/{name}/{n}"),
                    kind: kind.clone(),
                });
                rt.enqueue(h);
            }
        }
        for c in &charm.containers {
            rt.enqueue(HookSpec::workload(&c.name, "ready"));
        }
    }

    /// `-joined` then `-changed`, both ways, between `rt` and every unit it can see.
    fn queue_joins(&self, rt: &UnitRt) {
        let relations = self.world().relations_of(&rt.app);
        for r in relations {
            for other in &r.remote_units {
                if *other == rt.name || self.world().unit_dying(other) {
                    continue;
                }
                let their_ep = self
                    .endpoint_of(app_of(other), r.id)
                    .unwrap_or(r.endpoint.clone());
                self.join(&rt.name, r.id, &r.endpoint, &r.remote_app, other);
                self.join(other, r.id, &their_ep, &rt.app, &rt.name);
            }
        }
    }

    fn endpoint_of(&self, app: &str, rel: u32) -> Option<String> {
        self.world()
            .relations_of(app)
            .into_iter()
            .find(|r| r.id == rel)
            .map(|r| r.endpoint)
    }

    fn join(&self, receiver: &str, rel: u32, endpoint: &str, remote_app: &str, remote: &str) {
        let rt = {
            let mut inner = lock(&self.inner);
            if !inner
                .joined
                .insert((receiver.to_string(), rel, remote.to_string()))
            {
                return;
            }
            inner.units.get(receiver).cloned()
        };
        if let Some(rt) = rt {
            rt.enqueue(HookSpec::relation(
                endpoint,
                rel,
                "joined",
                remote_app,
                Some(remote),
            ));
            rt.enqueue(HookSpec::relation(
                endpoint,
                rel,
                "changed",
                remote_app,
                Some(remote),
            ));
        }
    }

    fn relate(self: &Arc<Self>, a: &str, b: &str, progress: &dyn Fn(String)) -> OpResult<Value> {
        let (ea, eb) = self.resolve_endpoints(a, b)?;
        let id = self
            .world()
            .add_relation((&ea.0, &ea.1), (&eb.0, &eb.1))
            .map_err(|e| e.to_string())?;
        progress(format!(
            "related {}:{} and {}:{} (relation {id})",
            ea.0, ea.1, eb.0, eb.1
        ));
        let units_a = self.world().units(&ea.0);
        let units_b = self.world().units(&eb.0);
        for (units, (_, ep), (remote_app, _)) in [(&units_a, &ea, &eb), (&units_b, &eb, &ea)] {
            for u in units {
                if let Ok(rt) = self.unit_rt(u) {
                    rt.enqueue(HookSpec::relation(ep, id, "created", remote_app, None));
                }
            }
        }
        for ua in &units_a {
            for ub in &units_b {
                self.join(ua, id, &ea.1, &eb.0, ub);
                self.join(ub, id, &eb.1, &ea.0, ua);
            }
        }
        self.persist();
        Ok(json!({"relation-id": id}))
    }

    /// `app:ep` or `app` on each side; bare names pick the one provides/requires pair with
    /// a common interface.
    fn resolve_endpoints(
        &self,
        a: &str,
        b: &str,
    ) -> OpResult<((String, String), (String, String))> {
        let split = |s: &str| -> (String, Option<String>) {
            match s.split_once(':') {
                Some((app, ep)) => (app.to_string(), Some(ep.to_string())),
                None => (s.to_string(), None),
            }
        };
        let (app_a, ep_a) = split(a);
        let (app_b, ep_b) = split(b);
        let ca = self
            .charm_of(&app_a)
            .ok_or_else(|| format!("application \"{app_a}\" not found"))?;
        let cb = self
            .charm_of(&app_b)
            .ok_or_else(|| format!("application \"{app_b}\" not found"))?;
        let mut pairs = Vec::new();
        for x in ca.endpoints.iter().filter(|e| e.role != Role::Peer) {
            for y in cb.endpoints.iter().filter(|e| e.role != Role::Peer) {
                let roles_ok = matches!(
                    (x.role, y.role),
                    (Role::Provides, Role::Requires) | (Role::Requires, Role::Provides)
                );
                if roles_ok
                    && x.interface == y.interface
                    && ep_a.as_ref().is_none_or(|e| *e == x.name)
                    && ep_b.as_ref().is_none_or(|e| *e == y.name)
                {
                    pairs.push((x.name.clone(), y.name.clone()));
                }
            }
        }
        match pairs.len() {
            1 => {
                let (x, y) = pairs.remove(0);
                Ok(((app_a, x), (app_b, y)))
            }
            0 => Err(format!("no matching endpoints between {a} and {b}")),
            _ => Err(format!(
                "ambiguous relation between {a} and {b}: {}; name the endpoints (app:endpoint)",
                pairs
                    .iter()
                    .map(|(x, y)| format!("{app_a}:{x} {app_b}:{y}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn config(&self, app: &str, settings: &[String]) -> OpResult<Value> {
        let charm = self
            .charm_of(app)
            .ok_or_else(|| format!("application \"{app}\" not found"))?;
        if settings.is_empty() {
            let cfg = self.world().config(app);
            return serde_json::to_value(cfg).map_err(|e| e.to_string());
        }
        let values = parse_config(&charm, settings)?;
        self.world()
            .set_config(app, values)
            .map_err(|e| e.to_string())?;
        for u in self.world().units(app) {
            if let Ok(rt) = self.unit_rt(&u) {
                rt.enqueue(HookSpec::plain("config-changed"));
            }
        }
        Ok(json!({}))
    }

    /// `attach-resource`: the new files replace the old ones, then upgrade-charm on every
    /// unit (Juju's behaviour; the charm re-reads its resources there).
    fn attach_resource(&self, app: &str, resources: &[String]) -> OpResult<Value> {
        if self.charm_of(app).is_none() {
            return Err(format!("application \"{app}\" not found"));
        }
        if resources.is_empty() {
            return Err("no resources given: expected name=path".into());
        }
        let res = parse_resources(resources)?;
        {
            let mut w = self.world();
            for (name, path) in res {
                w.set_resource(app, &name, path)
                    .map_err(|e| e.to_string())?;
            }
        }
        for u in self.world().units(app) {
            if let Ok(rt) = self.unit_rt(&u) {
                rt.enqueue(HookSpec::plain("upgrade-charm"));
            }
        }
        Ok(json!({}))
    }

    fn scale(self: &Arc<Self>, app: &str, n: u32, progress: &dyn Fn(String)) -> OpResult<Value> {
        if !lock(&self.inner).apps.contains_key(app) {
            return Err(format!("application \"{app}\" not found"));
        }
        let live: Vec<String> = {
            let w = self.world();
            w.units(app)
                .into_iter()
                .filter(|u| !w.unit_dying(u))
                .collect()
        };
        let current = live.len() as u32;
        if n > current {
            let added = self.add_units(app, n - current, progress)?;
            return Ok(json!({"added": added}));
        }
        let mut going: Vec<String> = live;
        going.sort_by_key(|u| std::cmp::Reverse(unit_index(u)));
        going.truncate((current - n) as usize);
        for u in &going {
            progress(format!("removing {u}"));
        }
        self.busy.fetch_add(1, Ordering::SeqCst);
        let d = self.clone();
        let list = going.clone();
        std::thread::spawn(move || {
            for u in list {
                d.remove_unit(&u);
            }
            d.busy.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(json!({"removing": going}))
    }

    /// Take a unit away the way Juju does on scale-down, and wait until it is gone.
    fn remove_unit(self: &Arc<Self>, unit: &str) {
        let Ok(rt) = self.unit_rt(unit) else { return };
        self.world().set_unit_dying(unit);
        rt.q().dying = true;
        let relations = self.world().relations_of(&rt.app);
        for r in &relations {
            for other in &r.remote_units {
                if other == unit {
                    continue;
                }
                let their_ep = self
                    .endpoint_of(app_of(other), r.id)
                    .unwrap_or(r.endpoint.clone());
                if let Ok(ort) = self.unit_rt(other) {
                    let mut h =
                        HookSpec::relation(&their_ep, r.id, "departed", &rt.app, Some(unit));
                    h.departing_unit = Some(unit.to_string());
                    ort.enqueue(h);
                }
                let mut h =
                    HookSpec::relation(&r.endpoint, r.id, "departed", &r.remote_app, Some(other));
                h.departing_unit = Some(unit.to_string());
                rt.enqueue(h);
                let mut inner = lock(&self.inner);
                inner
                    .joined
                    .remove(&(other.clone(), r.id, unit.to_string()));
                inner
                    .joined
                    .remove(&(unit.to_string(), r.id, other.clone()));
            }
        }
        rt.enqueue(HookSpec::plain("stop"));
        for r in relations.iter().filter(|r| !r.peer) {
            rt.enqueue(HookSpec::relation(
                &r.endpoint,
                r.id,
                "broken",
                &r.remote_app,
                None,
            ));
        }
        if let Some(charm) = self.charm_of(&rt.app) {
            for (name, kind) in &charm.storage {
                let n = unit_index(unit);
                let mut h = HookSpec::plain(&format!("{name}-storage-detaching"));
                h.storage = Some(StorageRef {
                    id: format!("{name}/{n}"),
                    location: format!("/var/lib/juju/storage/{name}/{n}"),
                    kind: kind.clone(),
                });
                rt.enqueue(h);
            }
        }
        rt.enqueue(HookSpec::plain("remove"));
        rt.push(Step::Finalize);
        // Wait for the unit to be gone (its queue may be blocked by a failing hook: give up
        // waiting after a while, the worker keeps going on its own).
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline && !self.shutdown.load(Ordering::SeqCst) {
            if !lock(&self.inner).units.contains_key(unit) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The unit's last step: wait for the others' departed hooks, stop the pod, forget it,
    /// and hand leadership on if it had it.
    fn finalize(self: &Arc<Self>, rt: &Arc<UnitRt>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let pending = self.all_units().iter().any(|o| {
                o.name != rt.name
                    && o.q().items.iter().any(
                        |s| matches!(s, Step::Hook(h) if h.remote_unit.as_deref() == Some(&rt.name)),
                    )
            });
            if !pending {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop_pod(rt);
        let was_leader = self.world().is_leader(&rt.name);
        self.forget_unit(rt);
        let _ = std::fs::remove_dir_all(&rt.dir.root);
        log_line(&rt.log, "INFO", "juju.worker.uniter", "unit removed");
        if was_leader {
            let next = self.world().units(&rt.app).into_iter().next();
            if let Some(next) = next {
                self.world().set_leader(&next);
                if let Ok(nrt) = self.unit_rt(&next) {
                    nrt.enqueue(HookSpec::plain("leader-elected"));
                }
            }
        }
        self.persist();
    }

    fn forget_unit(&self, rt: &UnitRt) {
        let _ = self.world().remove_unit(&rt.name);
        {
            let mut inner = lock(&self.inner);
            inner.units.remove(&rt.name);
            inner
                .joined
                .retain(|(a, _, b)| *a != rt.name && *b != rt.name);
            inner.secret_notified.retain(|(u, _), _| *u != rt.name);
        }
        {
            let mut q = rt.q();
            q.finished = true;
            q.items.clear();
        }
        rt.wake.notify_all();
        self.write_hosts();
    }

    fn kill_pod(
        self: &Arc<Self>,
        unit: &str,
        down_for: Duration,
        progress: &dyn Fn(String),
    ) -> OpResult<Value> {
        let rt = self.unit_rt(unit)?;
        if rt.q().dying {
            return Err(format!("unit \"{unit}\" is being removed"));
        }
        // The pod dies: its processes, its in-flight hook, its pending non-relation work.
        let pid = {
            let mut q = rt.q();
            q.generation += 1;
            q.paused = true;
            let old = std::mem::take(&mut q.items);
            for step in old {
                match step {
                    Step::Hook(h) if h.relation.is_some() || h.name == "leader-elected" => {
                        q.items.push_back(Step::Hook(h))
                    }
                    Step::Action(a, tx) => {
                        let _ = tx.send(ActionOutcome {
                            id: a.id,
                            unit: unit.to_string(),
                            status: "failed".into(),
                            message: Some("the unit's pod was killed".into()),
                            results: BTreeMap::new(),
                            logs: Vec::new(),
                        });
                    }
                    _ => {}
                }
            }
            q.error = None;
            q.pid.take()
        };
        rt.wake.notify_all();
        if let Some(pid) = pid {
            hook::kill_pid(pid);
        }
        self.stop_pod(&rt);
        log_line(&rt.log, "INFO", "juju.worker.uniter", "pod killed");
        progress(format!("killed the pod of {unit}"));
        let charm = self.charm_of(&rt.app);
        if let Some(charm) = &charm {
            for c in &charm.containers {
                let root = rt.dir.container_root(&c.name);
                let keep: Vec<PathBuf> = c
                    .mounts
                    .iter()
                    .map(|m| root.join(m.location.trim_start_matches('/')))
                    .collect();
                if let Err(e) = wipe_except(&root, &keep) {
                    log_line(
                        &rt.log,
                        "ERROR",
                        "juju.worker.uniter",
                        &format!("cannot wipe {}: {e}", root.display()),
                    );
                }
            }
        }
        // The charm dir lives on the pod's emptyDir: a new pod gets a fresh one.
        let (src, dispatch) = {
            let inner = lock(&self.inner);
            match inner.apps.get(&rt.app) {
                Some(a) => (a.charm.dir.clone(), a.dispatch.clone()),
                None => return Err(format!("application \"{}\" not found", rt.app)),
            }
        };
        install_charm(&src, &dispatch, &rt.dir.charm())
            .map_err(|e| format!("cannot reinstall the charm of {unit}: {e}"))?;
        self.busy.fetch_add(1, Ordering::SeqCst);
        let d = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(down_for);
            if let Err(e) = d.start_pod(&rt) {
                log_line(
                    &rt.log,
                    "ERROR",
                    "juju.worker.uniter",
                    &format!("cannot restart the pod: {e}"),
                );
            }
            log_line(&rt.log, "INFO", "juju.worker.uniter", "pod restarted");
            {
                let mut q = rt.q();
                let kept = std::mem::take(&mut q.items);
                for name in ["upgrade-charm", "config-changed", "start"] {
                    q.items.push_back(Step::Hook(HookSpec::plain(name)));
                }
                if let Some(charm) = &charm {
                    for c in &charm.containers {
                        q.items
                            .push_back(Step::Hook(HookSpec::workload(&c.name, "ready")));
                    }
                }
                q.items.extend(kept);
                q.paused = false;
            }
            rt.wake.notify_all();
            d.busy.fetch_sub(1, Ordering::SeqCst);
            d.persist();
        });
        Ok(json!({"unit": unit}))
    }

    fn run_action(
        &self,
        unit: &str,
        action: &str,
        words: &[String],
        progress: &dyn Fn(String),
    ) -> OpResult<Value> {
        let rt = self.unit_rt(unit)?;
        let charm = self
            .charm_of(&rt.app)
            .ok_or_else(|| format!("application \"{}\" not found", rt.app))?;
        let params = charm
            .action_params(action, words)
            .map_err(|e| e.to_string())?;
        let id = self.next_action.fetch_add(1, Ordering::SeqCst);
        progress(format!("Running operation {id} with 1 task"));
        progress(format!("  - task {id} on unit-{}", unit.replace('/', "-")));
        let (tx, rx) = mpsc::channel();
        rt.push(Step::Action(
            ActionSpec {
                id,
                name: action.to_string(),
                params,
            },
            tx,
        ));
        let outcome = rx
            .recv()
            .map_err(|_| format!("unit {unit} went away before running the action"))?;
        serde_json::to_value(outcome).map_err(|e| e.to_string())
    }

    /// Until no hook is queued or running and no unit is in error; with `replicated`, also
    /// until every Redis replica is in sync ([`CatchUp`]).
    fn wait_settled(
        &self,
        timeout: Duration,
        replicated: bool,
        progress: &dyn Fn(String),
    ) -> OpResult<Value> {
        let deadline = Instant::now() + timeout;
        let mut last_report = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        let mut catch_up = CatchUp::default();
        loop {
            let units = self.all_units();
            let busy = self.busy.load(Ordering::SeqCst);
            let mut unsettled: Vec<String> = units
                .iter()
                .filter(|u| !u.idle())
                .map(|u| {
                    let q = u.q();
                    match (&q.error, q.paused, q.items.front()) {
                        (Some(h), _, _) => format!("{} error in \"{h}\"", u.name),
                        (_, true, _) => format!("{} pod down", u.name),
                        (_, _, Some(s)) => format!("{} running {}", u.name, s.label()),
                        _ => format!("{} busy", u.name),
                    }
                })
                .collect();
            if replicated && unsettled.is_empty() && busy == 0 {
                // Hooks idle: then the data must be replicated too (see `replication`).
                unsettled = self.replication_lagging(&units, &mut catch_up);
            }
            if unsettled.is_empty() && busy == 0 {
                // Idle for a moment: a just-finished hook may have queued more on others.
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(300) {
                    return Ok(json!({"settled": true}));
                }
            } else {
                quiet_since = None;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {}s waiting for the model to settle: {}",
                    timeout.as_secs(),
                    if unsettled.is_empty() {
                        "an operation is still in progress".to_string()
                    } else {
                        unsettled.join("; ")
                    }
                ));
            }
            if last_report.elapsed() >= Duration::from_secs(5) && !unsettled.is_empty() {
                progress(format!("waiting: {}", unsettled.join("; ")));
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Why the Redis applications' replication is not settled yet ([`CatchUp::lagging`]),
    /// asking the units of every application with a `redis` container.
    fn replication_lagging(&self, units: &[Arc<UnitRt>], catch_up: &mut CatchUp) -> Vec<String> {
        let mut by_app: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
        for rt in units {
            let has_redis = self
                .charm_of(&rt.app)
                .is_some_and(|c| c.containers.iter().any(|c| c.name == "redis"));
            if has_redis {
                by_app
                    .entry(rt.app.as_str())
                    .or_default()
                    .push((rt.name.clone(), rt.address.clone()));
            }
        }
        let mut lagging = Vec::new();
        for (app, members) in by_app {
            // With enable-tls the servers speak TLS only: ask them as `status` does.
            let _tls = self
                .tls_ca(app)
                .map(|ca_pem| crate::redis_client::use_tls(Some(crate::tls::ClientTls { ca_pem })));
            lagging.extend(catch_up.lagging(&members, self.redis_password(app).as_deref()));
        }
        lagging
    }

    /// What `juju show-unit` shows: leadership, address, status and, per relation, the
    /// committed data of both applications and of every unit in it.
    fn show_unit(&self, unit: &str) -> OpResult<Value> {
        let rt = self.unit_rt(unit)?;
        let w = self.world();
        let mut relations = Vec::new();
        for r in w.relations_of(&rt.app) {
            let mut units = serde_json::Map::new();
            let mut members: Vec<String> = w.units(&rt.app);
            if !r.peer {
                members.extend(r.remote_units.iter().cloned());
            }
            for u in members {
                units.insert(u.clone(), json!(w.relation_data(r.id, &u)));
            }
            relations.push(json!({
                "relation-id": r.id,
                "endpoint": r.endpoint,
                "interface": r.interface,
                "remote-application": r.remote_app,
                "application-data": w.relation_data(r.id, &rt.app),
                "remote-application-data": if r.peer { json!({}) } else { json!(w.relation_data(r.id, &r.remote_app)) },
                "units": units,
            }));
        }
        let st = w.unit_status(unit);
        Ok(json!({
            unit: {
                "leader": w.is_leader(unit),
                "address": rt.address,
                "workload-status": {"current": st.status.as_str(), "message": st.message},
                "relation-info": relations,
            }
        }))
    }

    // ----- the unit agent -------------------------------------------------------------

    fn hook_env(&self, rt: &UnitRt) -> HookEnv {
        HookEnv {
            unit: rt.name.clone(),
            model_name: self.opts.name.clone(),
            model_uuid: self.world().model_uuid.clone(),
            juju_version: self.opts.juju_version.clone(),
            charm_dir: rt.dir.charm(),
            tools_dir: rt.dir.tools(),
            agent_socket: self.layout.agent_socket(),
            api_address: format!("{}.254:17070", self.opts.subnet),
            containers_dir: (!self.as_root).then(|| rt.dir.containers()),
        }
    }

    fn worker(self: Arc<Self>, rt: Arc<UnitRt>) {
        loop {
            let (step, generation) = {
                let mut q = rt.q();
                loop {
                    if q.finished || self.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    if !q.paused && !q.items.is_empty() {
                        break;
                    }
                    q = match rt.wake.wait_timeout(q, Duration::from_millis(500)) {
                        Ok((g, _)) => g,
                        Err(e) => e.into_inner().0,
                    };
                }
                q.running = true;
                let step = match q.items.front() {
                    Some(Step::Hook(h)) => Step::Hook(h.clone()),
                    Some(Step::Action(a, tx)) => Step::Action(a.clone(), tx.clone()),
                    Some(Step::Finalize) | None => Step::Finalize,
                };
                (step, q.generation)
            };
            match step {
                Step::Hook(h) => self.run_hook(&rt, h, generation),
                Step::Action(a, tx) => self.run_action_step(&rt, a, tx, generation),
                Step::Finalize => {
                    self.finalize(&rt);
                    return;
                }
            }
        }
    }

    /// Execute one dispatch; the session is registered with the agent while it runs.
    fn execute(
        &self,
        rt: &UnitRt,
        hook: Option<&HookSpec>,
        action: Option<&ActionSpec>,
        generation: u64,
    ) -> Result<(HookOutcome, Arc<Session>), String> {
        let label = hook
            .map(|h| h.name.clone())
            .or_else(|| action.map(|a| a.name.clone()))
            .unwrap_or_default();
        let ctx = format!(
            "{}-{}-{}",
            rt.name,
            label,
            self.next_context.fetch_add(1, Ordering::SeqCst)
        );
        let info = HookInfo {
            hook_name: hook.map(|h| h.name.clone()).unwrap_or_default(),
            relation_id: hook.and_then(|h| h.relation.as_ref().map(|r| r.id)),
            remote_unit: hook.and_then(|h| h.remote_unit.clone()),
            remote_app: hook.and_then(|h| h.remote_app.clone()),
            departing_unit: hook.and_then(|h| h.departing_unit.clone()),
            action: action.map(|a| ActionInvocation {
                name: a.name.clone(),
                params: a.params.clone().into_iter().collect(),
            }),
            storage_id: hook.and_then(|h| h.storage.as_ref().map(|s| s.id.clone())),
        };
        let session = Arc::new(World::session(&self.world, &rt.name, info));
        self.agent.register(&ctx, session.clone());
        let env = self.hook_env(rt);
        let vars = hook::environment(&env, &ctx, hook, action);
        let logger = format!("unit.{}.{}", rt.name, label);
        let isolation = if self.as_root {
            Isolation::Namespace {
                containers_dir: rt.dir.containers(),
                hosts_file: self.layout.hosts_file(),
            }
        } else {
            Isolation::None
        };
        let dispatch = rt.dir.charm().join("dispatch");
        let spawned = hook::spawn(
            &dispatch,
            &rt.dir.charm(),
            &vars,
            &isolation,
            &rt.log,
            &logger,
        );
        let running = match spawned {
            Ok(r) => r,
            Err(e) => {
                self.agent.unregister(&ctx);
                return Err(format!("cannot run {}: {e}", dispatch.display()));
            }
        };
        {
            let mut q = rt.q();
            q.pid = Some(running.pid());
            if q.generation != generation {
                hook::kill_pid(running.pid());
            }
        }
        let outcome = running.wait();
        rt.q().pid = None;
        self.agent.unregister(&ctx);
        for (level, msg) in session.logs() {
            log_line(
                &rt.log,
                level.as_str(),
                &format!("unit.{}.juju-log", rt.name),
                &msg,
            );
        }
        outcome
            .map(|o| (o, session))
            .map_err(|e| format!("waiting for {label}: {e}"))
    }

    fn run_hook(self: &Arc<Self>, rt: &Arc<UnitRt>, h: HookSpec, generation: u64) {
        let mut attempt: u32 = 0;
        loop {
            let result = self.execute(rt, Some(&h), None, generation);
            if rt.q().generation != generation {
                if let Ok((_, s)) = &result {
                    s.discard();
                }
                rt.q().running = false;
                return;
            }
            let failure = match &result {
                Ok((outcome, session)) if outcome.success() => match session.commit() {
                    Ok(()) => None,
                    Err(e) => Some(e.to_string()),
                },
                Ok((outcome, session)) => {
                    session.discard();
                    Some(match outcome.code {
                        Some(c) => format!("exit status {c}"),
                        None => "terminated".to_string(),
                    })
                }
                Err(e) => Some(e.clone()),
            };
            match failure {
                None => {
                    log_line(
                        &rt.log,
                        "INFO",
                        "juju.worker.uniter.operation",
                        &format!(
                            "ran \"{}\" hook (via hook dispatching script: dispatch)",
                            h.name
                        ),
                    );
                    {
                        let mut q = rt.q();
                        q.items.pop_front();
                        q.running = false;
                        q.error = None;
                        if h.name == "start" {
                            q.started = true;
                        }
                    }
                    if let Ok((_, session)) = &result {
                        self.after_commit(rt, session);
                    }
                    self.persist();
                    return;
                }
                Some(why) => {
                    let delay = Duration::from_secs(
                        (1u64 << attempt.min(16)).min(self.opts.retry_cap_secs.max(1)),
                    );
                    log_line(
                        &rt.log,
                        "ERROR",
                        "juju.worker.uniter",
                        &format!(
                            "hook \"{}\" failed: {why}; retrying in {}s",
                            h.name,
                            delay.as_secs()
                        ),
                    );
                    rt.q().error = Some(h.name.clone());
                    self.persist();
                    rt.sleep_interruptibly(delay, generation);
                    let q = rt.q();
                    if q.generation != generation || q.finished {
                        drop(q);
                        rt.q().running = false;
                        return;
                    }
                    attempt += 1;
                }
            }
        }
    }

    fn run_action_step(
        self: &Arc<Self>,
        rt: &Arc<UnitRt>,
        a: ActionSpec,
        tx: mpsc::Sender<ActionOutcome>,
        generation: u64,
    ) {
        let result = self.execute(rt, None, Some(&a), generation);
        let mut outcome = ActionOutcome {
            id: a.id,
            unit: rt.name.clone(),
            status: "completed".into(),
            message: None,
            results: BTreeMap::new(),
            logs: Vec::new(),
        };
        match &result {
            Ok((out, session)) => {
                outcome.results = session.action_results();
                outcome.logs = session.action_logs();
                outcome
                    .results
                    .insert("return-code".into(), out.code.unwrap_or(-1).to_string());
                if !out.stdout.is_empty() {
                    outcome.results.insert("stdout".into(), out.stdout.clone());
                }
                if !out.stderr.is_empty() {
                    outcome.results.insert("stderr".into(), out.stderr.clone());
                }
                if out.success() {
                    if let Err(e) = session.commit() {
                        outcome.status = "failed".into();
                        outcome.message = Some(format!("committing requested changes failed: {e}"));
                    } else {
                        self.after_commit(rt, session);
                    }
                    if let Some(msg) = session.action_failure() {
                        outcome.status = "failed".into();
                        outcome.message = Some(msg);
                    }
                } else {
                    session.discard();
                    outcome.status = "failed".into();
                    outcome.message = Some(match out.code {
                        Some(c) => format!("exit status {c}"),
                        None => "terminated".into(),
                    });
                }
            }
            Err(e) => {
                outcome.status = "failed".into();
                outcome.message = Some(e.clone());
            }
        }
        {
            let mut q = rt.q();
            if q.generation == generation {
                q.items.pop_front();
            }
            q.running = false;
        }
        let _ = tx.send(outcome);
        self.persist();
    }

    /// After a commit: the other units that can see a changed bag get `-relation-changed`;
    /// consumers of a secret with a new revision get `secret-changed`.
    fn after_commit(&self, rt: &UnitRt, session: &Session) {
        for (rel, owner) in session.changed_relations() {
            let Some(view) = self
                .world()
                .relations_of(&rt.app)
                .into_iter()
                .find(|r| r.id == rel)
            else {
                continue;
            };
            // An app-bag change is reported as coming from the writing unit, so the
            // receiving charm always has a JUJU_REMOTE_UNIT to attribute it to.
            let remote_unit = if owner.contains('/') {
                owner.clone()
            } else {
                rt.name.clone()
            };
            for receiver in &view.remote_units {
                if *receiver == rt.name {
                    continue;
                }
                let seen = lock(&self.inner).joined.contains(&(
                    receiver.clone(),
                    rel,
                    remote_unit.clone(),
                ));
                if !seen {
                    continue;
                }
                let ep = if view.peer {
                    view.endpoint.clone()
                } else {
                    match self.endpoint_of(app_of(receiver), rel) {
                        Some(ep) => ep,
                        None => continue,
                    }
                };
                if let Ok(rrt) = self.unit_rt(receiver) {
                    rrt.enqueue(HookSpec::relation(
                        &ep,
                        rel,
                        "changed",
                        &rt.app,
                        Some(&remote_unit),
                    ));
                }
            }
        }
        for id in session.changed_secrets() {
            let (consumers, latest) = {
                let w = self.world();
                (w.secret_consumers(&id), w.secret_revision(&id).unwrap_or(0))
            };
            for (unit, pinned, label) in consumers {
                if app_of(&unit) == rt.app || pinned >= latest {
                    continue;
                }
                let key = (unit.clone(), id.clone());
                {
                    let mut inner = lock(&self.inner);
                    if inner.secret_notified.get(&key) == Some(&latest) {
                        continue;
                    }
                    inner.secret_notified.insert(key, latest);
                }
                if let Ok(urt) = self.unit_rt(&unit) {
                    let mut h = HookSpec::plain("secret-changed");
                    h.secret = Some(SecretRef {
                        id: format!("secret:{}", crate::ops::testing::world::bare_secret_id(&id)),
                        label,
                        revision: None,
                    });
                    urt.enqueue(h);
                }
            }
        }
    }

    // ----- timers -----------------------------------------------------------------------

    fn update_status_timer(self: Arc<Self>) {
        let every = Duration::from_secs(self.opts.update_status_interval_secs.max(1));
        loop {
            std::thread::sleep(every);
            if self.shutdown.load(Ordering::SeqCst) {
                return;
            }
            for rt in self.all_units() {
                let ok = {
                    let q = rt.q();
                    q.started && !q.paused && !q.dying
                };
                if ok {
                    rt.enqueue(HookSpec::plain("update-status"));
                }
            }
        }
    }

    /// Also turns Pebble check transitions into `<container>-pebble-check-failed` and
    /// `-recovered` hooks (with `JUJU_PEBBLE_CHECK_NAME`) on Juju 3.6 and later.
    ///
    /// Turn new custom notices into `<container>-pebble-custom-notice` hooks. Like Juju's
    /// notice watcher, a model whose JUJU_VERSION is before 3.6.25 (4.0.13) sees only the
    /// notices recorded by the agent's own uid (the charm's) and public ones: a notice
    /// recorded by a service running as another user never becomes a hook there (contract
    /// addenda 10).
    fn notice_poller(self: Arc<Self>) {
        let all_users = crate::ops::context::JujuVersion::parse(&self.opts.juju_version)
            .is_none_or(|v| v.notices_from_all_users());
        let own_uid = own_uid();
        let check_hooks = has_check_hooks(&self.opts.juju_version);
        loop {
            std::thread::sleep(Duration::from_millis(250));
            if self.shutdown.load(Ordering::SeqCst) {
                return;
            }
            for rt in self.all_units() {
                let mut found = Vec::new();
                {
                    let pebbles = lock(&rt.pebbles);
                    let mut cursor = lock(&rt.notice_cursor);
                    for (c, p) in pebbles.iter() {
                        let since = cursor.get(c).copied().unwrap_or(0);
                        let (notices, next) = p.custom_notices_since(since);
                        cursor.insert(c.clone(), next);
                        for n in notices {
                            if all_users || n.user_id.is_none() || n.user_id == own_uid {
                                found.push((c.clone(), n));
                            }
                        }
                    }
                }
                if check_hooks {
                    for (c, check, failed) in new_check_events(&rt) {
                        let kind = if failed {
                            "check-failed"
                        } else {
                            "check-recovered"
                        };
                        let mut h = HookSpec::workload(&c, kind);
                        h.check = Some(check);
                        rt.enqueue(h);
                    }
                }
                for (c, n) in found {
                    let mut h = HookSpec::workload(&c, "custom-notice");
                    h.notice = Some(hook::NoticeRef {
                        id: n.id,
                        notice_type: n.notice_type,
                        key: n.key,
                    });
                    rt.enqueue(h);
                }
            }
        }
    }

    // ----- status ---------------------------------------------------------------------

    fn write_hosts(&self) {
        let units: Vec<(String, String)> = self
            .all_units()
            .iter()
            .map(|u| (u.name.clone(), u.address.clone()))
            .collect();
        if let Err(e) = write_in_place(
            &self.layout.hosts_file(),
            &render_hosts(&self.opts.name, &units),
        ) {
            self.log(&format!("cannot write the hosts file: {e}"));
        }
    }

    /// The admin password of a Redis app, from the peer app bag or an app-owned secret.
    /// The CA of an app with `enable-tls=true` (its `ca-cert-file` resource), to ask its
    /// TLS-only servers their role.
    fn tls_ca(&self, app: &str) -> Option<Vec<u8>> {
        let w = self.world();
        if w.config(app).get("enable-tls") != Some(&Value::Bool(true)) {
            return None;
        }
        std::fs::read(w.resource(app, crate::tls::CA_RESOURCE)?).ok()
    }

    fn redis_password(&self, app: &str) -> Option<String> {
        let w = self.world();
        for r in w.relations_of(app).into_iter().filter(|r| r.peer) {
            if let Some(p) = w.relation_data(r.id, app).get("redis-password") {
                return Some(p.clone());
            }
        }
        w.secret_ids(Some(app))
            .iter()
            .filter_map(|id| w.secret_content(id))
            .find_map(|c| c.get("redis-password").cloned())
    }

    fn snapshot(&self, probe: bool) -> Snapshot {
        let units = self.all_units();
        let mut snap = Snapshot {
            model: self.opts.name.clone(),
            subnet: self.opts.subnet.clone(),
            juju_version: self.opts.juju_version.clone(),
            ..Snapshot::default()
        };
        let apps: Vec<(String, CharmInfo)> = lock(&self.inner)
            .apps
            .iter()
            .map(|(k, v)| (k.clone(), v.charm.clone()))
            .collect();
        for (app, charm) in &apps {
            let (st, version, scale, rels) = {
                let w = self.world();
                (
                    w.app_status(app),
                    w.app_version(app),
                    w.units(app).len(),
                    w.relations_of(app),
                )
            };
            snap.apps.push(AppLine {
                name: app.clone(),
                charm: charm.name.clone(),
                scale,
                status: st.status.as_str().to_string(),
                message: st.message.clone(),
                version,
            });
            for r in rels {
                let (mine, theirs) = (format!("{app}:{}", r.endpoint), r.remote_app.clone());
                let their_ep = self.endpoint_of(&theirs, r.id).unwrap_or_default();
                let theirs = format!("{theirs}:{their_ep}");
                let provider_is_me = charm
                    .endpoint(&r.endpoint)
                    .is_some_and(|e| e.role != Role::Requires);
                if r.peer || provider_is_me {
                    snap.relations.push(RelationLine {
                        id: r.id,
                        provider: mine.clone(),
                        requirer: if r.peer { mine } else { theirs },
                        interface: r.interface.clone(),
                        kind: if r.peer {
                            "peer".into()
                        } else {
                            "regular".into()
                        },
                    });
                }
            }
        }
        snap.relations.sort_by_key(|r| r.id);
        for rt in units {
            let (st, leader) = {
                let w = self.world();
                (w.unit_status(&rt.name), w.is_leader(&rt.name))
            };
            let (agent, error, queued) = {
                let q = rt.q();
                let agent = if q.error.is_some() {
                    "error"
                } else if q.paused {
                    "lost"
                } else if q.dying {
                    "dying"
                } else if q.running {
                    "executing"
                } else if !q.started {
                    "allocating"
                } else {
                    "idle"
                };
                (agent.to_string(), q.error.clone(), q.items.len())
            };
            let (workload, message) = match &error {
                Some(h) => ("error".to_string(), format!("hook failed: \"{h}\"")),
                None => (st.status.as_str().to_string(), st.message.clone()),
            };
            let has_redis = self
                .charm_of(&rt.app)
                .is_some_and(|c| c.containers.iter().any(|c| c.name == "redis"));
            let role = if probe && has_redis {
                let pw = self.redis_password(&rt.app);
                match self.tls_ca(&rt.app) {
                    Some(ca) => redis_role_tls(&rt.address, 6379, pw.as_deref(), ca),
                    None => redis_role(&rt.address, 6379, pw.as_deref()),
                }
            } else {
                String::new()
            };
            snap.units.push(UnitLine {
                name: rt.name.clone(),
                workload,
                agent,
                address: rt.address.clone(),
                leader,
                message,
                role,
                queued,
            });
        }
        snap.units
            .sort_by_key(|u| (app_of(&u.name).to_string(), unit_index(&u.name)));
        snap
    }

    /// Write `D/status.json` (no probes, no secrets) for when the daemon is gone.
    fn persist(&self) {
        let snap = self.snapshot(false);
        if let Ok(text) = serde_json::to_string_pretty(&snap) {
            let tmp = self.layout.root.join("status.json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, self.layout.status_file());
            }
        }
    }

    /// Stop everything: hooks, services, Pebble servers.
    fn teardown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for rt in self.all_units() {
            let pid = {
                let mut q = rt.q();
                q.finished = true;
                q.generation += 1;
                q.pid.take()
            };
            rt.wake.notify_all();
            if let Some(pid) = pid {
                hook::kill_pid(pid);
            }
            self.stop_pod(&rt);
        }
        let _ = std::fs::remove_file(self.layout.control_socket());
        let _ = std::fs::remove_file(self.layout.agent_socket());
        self.log("model down");
    }
}

/// This process's effective uid (the owner of `/proc/self`), without libc.
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// `<container>-pebble-check-failed` / `-recovered` exist from Juju 3.6 on (an unparsable
/// version is taken as current).
fn has_check_hooks(juju_version: &str) -> bool {
    use crate::ops::context::JujuVersion;
    JujuVersion::parse(juju_version).is_none_or(|v| v >= JujuVersion::new(3, 6, 0))
}

/// Check transitions of a unit's containers not yet turned into hooks: (container, check,
/// failed), oldest first per container.
fn new_check_events(rt: &UnitRt) -> Vec<(String, String, bool)> {
    let pebbles = lock(&rt.pebbles);
    let mut cursor = lock(&rt.check_cursor);
    let mut found = Vec::new();
    for (c, p) in pebbles.iter() {
        let since = cursor.get(c).copied().unwrap_or(0);
        let (events, next) = p.check_events_since(since);
        cursor.insert(c.clone(), next);
        found.extend(
            events
                .into_iter()
                .map(|(check, failed)| (c.clone(), check, failed)),
        );
    }
    found
}

/// `name=path` resource arguments, each path made absolute (it must exist): `resource-get`
/// answers that path.
fn parse_resources(resources: &[String]) -> OpResult<Vec<(String, std::path::PathBuf)>> {
    let mut res = Vec::new();
    for r in resources {
        let (name, path) = r
            .split_once('=')
            .ok_or_else(|| format!("invalid resource {r:?}: expected name=path"))?;
        let path =
            std::fs::canonicalize(path).map_err(|e| format!("resource {name}: {path}: {e}"))?;
        res.push((name.to_string(), path));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_hooks_come_from_juju_3_6() {
        assert!(!has_check_hooks("3.5.7"));
        assert!(!has_check_hooks("2.9.50"));
        assert!(has_check_hooks("3.6.0"));
        assert!(has_check_hooks("3.6.25"));
        assert!(has_check_hooks("4.0.1"));
    }

    #[test]
    fn wipe_keeps_storage_and_removes_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("var/lib/redis")).unwrap();
        std::fs::write(root.join("var/lib/redis/dump.rdb"), "data").unwrap();
        std::fs::create_dir_all(root.join("var/log")).unwrap();
        std::fs::write(root.join("var/log/x"), "").unwrap();
        std::fs::create_dir_all(root.join("etc/redis")).unwrap();
        std::fs::write(root.join("top"), "").unwrap();
        wipe_except(root, &[root.join("var/lib/redis")]).unwrap();
        assert!(root.join("var/lib/redis/dump.rdb").exists());
        assert!(!root.join("var/log").exists());
        assert!(!root.join("etc").exists());
        assert!(!root.join("top").exists());
    }

    #[test]
    fn install_charm_keeps_top_level_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dest, venv) = (
            tmp.path().join("src"),
            tmp.path().join("dest"),
            tmp.path().join("venv"),
        );
        std::fs::create_dir_all(src.join("lib")).unwrap();
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(src.join("metadata.yaml"), "name: c\n").unwrap();
        std::fs::write(src.join("dispatch"), "#!/bin/sh\n").unwrap();
        std::fs::write(src.join("lib/x.py"), "").unwrap();
        std::os::unix::fs::symlink(&venv, src.join("venv")).unwrap();
        install_charm(&src, &src.join("dispatch"), &dest).unwrap();
        assert_eq!(std::fs::read_link(dest.join("venv")).unwrap(), venv);
        assert!(dest.join("venv/bin").is_dir());
        assert!(dest.join("lib/x.py").is_file());
        assert_eq!(
            std::fs::read_to_string(dest.join("dispatch")).unwrap(),
            "#!/bin/sh\n"
        );
    }

    #[test]
    fn config_words_are_typed_by_the_charm() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("metadata.yaml"), "name: c\n").unwrap();
        std::fs::write(
            tmp.path().join("config.yaml"),
            "options:\n  n:\n    type: int\n  s:\n    type: string\n  b:\n    type: boolean\n",
        )
        .unwrap();
        let charm = CharmInfo::load(tmp.path()).unwrap();
        let v = parse_config(&charm, &["n=3".into(), "s=007".into(), "b=true".into()]).unwrap();
        assert_eq!(v["n"], json!(3));
        assert_eq!(v["s"], json!("007"));
        assert_eq!(v["b"], json!(true));
        assert!(parse_config(&charm, &["n=x".into()]).is_err());
        assert!(parse_config(&charm, &["zz=1".into()]).is_err());
        assert!(parse_config(&charm, &["n".into()]).is_err());
    }
}
