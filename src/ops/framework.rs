//! The framework: handle paths, observers, emit/defer/re-emit, stored state, collect-status,
//! and commit-on-success, following ops's semantics (contract section 3) so that a charm
//! author who knows ops finds the same behaviour.
//!
//! One dispatch is [`run`]: load storage → re-emit deferred notices in their original order →
//! emit the Juju event → collect statuses (app on the leader, then unit) → save storage.
//! Any handler error aborts the run before the save, so deferrals and stored state of a
//! failed hook are rolled back, exactly as ops's uncommitted SQLite transaction.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::context::{Event, JujuContext};
use super::hookcmds::{HookError, HookTools, StatusName, StatusValue};
use super::model::Model;
use super::pebble::{Pebble, PebbleProvider};

/// An event's saved data (ops's `snapshot()`): what a deferred event needs to run again.
pub type Snapshot = BTreeMap<String, serde_json::Value>;

/// A deferred (event, observer) pair, as ops stores it in its `notice` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRow {
    pub event_path: String,
    pub observer_path: String,
    pub method_name: String,
}

/// Everything the framework persists between dispatches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredData {
    pub event_count: u64,
    /// handle path → data: event snapshots and `StoredStateData[...]` objects.
    pub snapshots: BTreeMap<String, serde_json::Value>,
    pub notices: Vec<NoticeRow>,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot read unit state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write unit state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt unit state {what}: {message}")]
    Corrupt { what: String, message: String },
    #[error(transparent)]
    Hook(#[from] HookError),
}

/// Where [`StoredData`] lives. `save` is called only when the hook succeeded.
pub trait Storage {
    fn load(&self) -> Result<StoredData, StorageError>;
    fn save(&self, data: &StoredData) -> Result<(), StorageError>;
}

/// A JSON file in the charm dir (mode 0600, written atomically). Like ops's
/// `.unit-state.db`, it is lost when the pod is replaced.
#[derive(Debug, Clone)]
pub struct FileStorage {
    path: PathBuf,
}

/// The state file's name in the charm dir.
pub const STATE_FILE: &str = ".unit-state.json";

impl FileStorage {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
    pub fn in_charm_dir(dir: &Path) -> Self {
        Self::new(dir.join(STATE_FILE))
    }
}

impl Storage for FileStorage {
    fn load(&self) -> Result<StoredData, StorageError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                what: self.path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoredData::default()),
            Err(source) => Err(StorageError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn save(&self, data: &StoredData) -> Result<(), StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(data).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| StorageError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Controller-side storage through `state-get`/`state-set` (survives pod replacement).
/// Layout as ops's JujuStorage: one key per snapshot (YAML text), `#notices#` for the queue;
/// our event counter lives under `#event_count#`.
pub struct JujuStorage<'a> {
    tools: &'a dyn HookTools,
    loaded: std::cell::RefCell<BTreeMap<String, String>>,
}

const NOTICES_KEY: &str = "#notices#";
const COUNT_KEY: &str = "#event_count#";

impl<'a> JujuStorage<'a> {
    pub fn new(tools: &'a dyn HookTools) -> Self {
        Self {
            tools,
            loaded: Default::default(),
        }
    }

    fn encode(data: &StoredData) -> Result<BTreeMap<String, String>, StorageError> {
        let corrupt = |e: serde_yaml::Error| StorageError::Corrupt {
            what: "state".into(),
            message: e.to_string(),
        };
        let mut out = BTreeMap::new();
        for (k, v) in &data.snapshots {
            out.insert(k.clone(), serde_yaml::to_string(v).map_err(corrupt)?);
        }
        if !data.notices.is_empty() {
            let rows: Vec<[&str; 3]> = data
                .notices
                .iter()
                .map(|n| [&*n.event_path, &*n.observer_path, &*n.method_name])
                .collect();
            out.insert(
                NOTICES_KEY.into(),
                serde_yaml::to_string(&rows).map_err(corrupt)?,
            );
        }
        out.insert(COUNT_KEY.into(), data.event_count.to_string());
        Ok(out)
    }
}

impl Storage for JujuStorage<'_> {
    fn load(&self) -> Result<StoredData, StorageError> {
        let raw = self.tools.state_get()?;
        let mut data = StoredData::default();
        for (k, v) in &raw {
            let corrupt = |e: serde_yaml::Error| StorageError::Corrupt {
                what: k.clone(),
                message: e.to_string(),
            };
            match k.as_str() {
                NOTICES_KEY => {
                    let rows: Vec<[String; 3]> = serde_yaml::from_str(v).map_err(corrupt)?;
                    data.notices = rows
                        .into_iter()
                        .map(|[event_path, observer_path, method_name]| NoticeRow {
                            event_path,
                            observer_path,
                            method_name,
                        })
                        .collect();
                }
                COUNT_KEY => data.event_count = v.trim().parse().unwrap_or(0),
                _ => {
                    data.snapshots
                        .insert(k.clone(), serde_yaml::from_str(v).map_err(corrupt)?);
                }
            }
        }
        *self.loaded.borrow_mut() = raw;
        Ok(data)
    }

    fn save(&self, data: &StoredData) -> Result<(), StorageError> {
        let new = Self::encode(data)?;
        let old = self.loaded.borrow().clone();
        let changed: BTreeMap<String, String> = new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !changed.is_empty() {
            self.tools.state_set(&changed)?;
        }
        for k in old.keys().filter(|k| !new.contains_key(*k)) {
            self.tools.state_delete(k)?;
        }
        *self.loaded.borrow_mut() = new;
        Ok(())
    }
}

/// A handle path segment: `kind` or `kind[key]`, joined under `parent` with `/`.
pub fn handle_path(parent: Option<&str>, kind: &str, key: Option<&str>) -> String {
    let seg = match key {
        Some(k) => format!("{kind}[{k}]"),
        None => kind.to_string(),
    };
    match parent {
        Some(p) if !p.is_empty() => format!("{p}/{seg}"),
        _ => seg,
    }
}

/// The part of an event path before `[` (`RedisK8sCharm/on/config_changed`).
fn event_path_prefix(path: &str) -> &str {
    path.split_once('[').map(|(p, _)| p).unwrap_or(path)
}

/// One event delivery to one observer.
#[derive(Debug, Clone)]
pub struct EventHandle {
    pub kind: String,
    pub path: String,
    pub snapshot: Snapshot,
    /// True when this is a re-emission of a deferred notice.
    pub redelivered: bool,
    deferrable: bool,
    deferred: bool,
}

impl EventHandle {
    /// Ask to run this handler again at the start of the next dispatch.
    pub fn defer(&mut self) {
        self.deferred = true;
    }
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }
    fn str_field(&self, key: &str) -> Option<&str> {
        self.snapshot.get(key).and_then(|v| v.as_str())
    }
    pub fn relation_id(&self) -> Option<u32> {
        self.snapshot
            .get("relation_id")
            .and_then(|v| v.as_u64())
            .map(|v| v as u32)
    }
    pub fn relation_name(&self) -> Option<&str> {
        self.str_field("relation_name")
    }
    pub fn remote_unit(&self) -> Option<&str> {
        self.str_field("unit_name")
    }
    pub fn remote_app(&self) -> Option<&str> {
        self.str_field("app_name")
    }
    pub fn departing_unit(&self) -> Option<&str> {
        self.str_field("departing_unit")
    }
    pub fn container(&self) -> Option<&str> {
        self.str_field("container_name")
    }
    pub fn notice_key(&self) -> Option<&str> {
        self.str_field("notice_key")
    }
    pub fn notice_id(&self) -> Option<&str> {
        self.str_field("notice_id")
    }
    pub fn check_name(&self) -> Option<&str> {
        self.str_field("check_name")
    }
    pub fn secret_id(&self) -> Option<&str> {
        self.str_field("id")
    }
    pub fn secret_label(&self) -> Option<&str> {
        self.str_field("label")
    }
}

/// The snapshot ops would save for the current Juju event (contract 3.3 table).
pub fn event_snapshot(ctx: &JujuContext) -> Snapshot {
    let mut s = Snapshot::new();
    let mut put = |k: &str, v: serde_json::Value| {
        s.insert(k.to_string(), v);
    };
    if let Some(rel) = &ctx.relation {
        put("relation_name", rel.endpoint.clone().into());
        put("relation_id", rel.id.into());
        if let Some(app) = &rel.remote_app {
            put("app_name", app.clone().into());
        }
        if let Some(unit) = &rel.remote_unit {
            put("unit_name", unit.clone().into());
        }
        if let Some(d) = &rel.departing_unit {
            put("departing_unit", d.clone().into());
        }
    }
    if let Some(st) = &ctx.storage {
        put("storage_name", st.name.clone().into());
        put("storage_index", st.index.into());
        if let Some(loc) = &st.location {
            put("storage_location", loc.clone().into());
        }
    }
    if matches!(
        ctx.event,
        Event::PebbleReady { .. }
            | Event::PebbleCustomNotice { .. }
            | Event::PebbleCheckFailed { .. }
            | Event::PebbleCheckRecovered { .. }
    ) {
        if let Some(w) = &ctx.workload {
            put("container_name", w.clone().into());
        }
    }
    if let Some(n) = &ctx.notice {
        put("notice_id", n.id.clone().into());
        put("notice_type", n.notice_type.clone().into());
        put("notice_key", n.key.clone().into());
    }
    if let Some(c) = &ctx.check_name {
        put("check_name", c.clone().into());
    }
    if let Some(sec) = &ctx.secret {
        put("id", sec.id.clone().into());
        put(
            "label",
            sec.label
                .clone()
                .map(serde_json::Value::from)
                .unwrap_or(serde_json::Value::Null),
        );
        if let Some(r) = sec.revision {
            put("revision", r.into());
        }
    }
    if let Some(a) = &ctx.action {
        put("id", a.id.clone().into());
    }
    s
}

/// What a handler may fail with: anything; the hook then exits non-zero and Juju retries.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub type HandlerResult = Result<(), HandlerError>;
/// A handler: a plain function over the charm, so deferred notices can name it again.
pub type Handler<C> = fn(&mut C, &mut Framework<'_>, &mut EventHandle) -> HandlerResult;

struct Observer<C> {
    emitter: String,
    kind: String,
    observer_path: String,
    method: &'static str,
    handler: Handler<C>,
}

/// The observer registry a charm fills in [`Charm::register`].
pub struct Observers<C> {
    root: String,
    list: Vec<Observer<C>>,
}

impl<C> Observers<C> {
    fn new(root: &str) -> Self {
        Self {
            root: root.to_string(),
            list: Vec::new(),
        }
    }

    /// The charm's own handle path (`RedisK8sCharm`).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Observe a Juju (or framework) event of kind `kind` (`sentinel_pebble_ready`,
    /// `collect_unit_status`) emitted by the charm, with the handler identified by
    /// `(observer_path, method)` as ops identifies bound methods.
    pub fn observe(
        &mut self,
        kind: &str,
        observer_path: &str,
        method: &'static str,
        handler: Handler<C>,
    ) {
        self.list.push(Observer {
            emitter: self.root.clone(),
            kind: kind.to_string(),
            observer_path: observer_path.to_string(),
            method,
            handler,
        });
    }
}

/// A charm: a root object and its observers.
pub trait Charm: Sized {
    /// The root handle kind: ops uses the class name (`RedisK8sCharm`).
    const HANDLE_KIND: &'static str;
    fn register(observers: &mut Observers<Self>);
}

/// Framework failures (handler errors included): the hook exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("handler {observer}.{method} failed on {event}: {source}")]
    Handler {
        observer: String,
        method: String,
        event: String,
        source: HandlerError,
    },
    #[error("{0} cannot be deferred")]
    NotDeferrable(String),
    #[error("cannot set status: {0}")]
    Status(HookError),
}

/// The per-dispatch runtime handed to every handler.
pub struct Framework<'a> {
    pub ctx: &'a JujuContext,
    model: Model<'a>,
    pebble: &'a dyn PebbleProvider,
    data: StoredData,
    collecting: Option<Vec<StatusValue>>,
    /// Event paths emitted in this dispatch, in order (for tests and debugging).
    pub emitted: Vec<String>,
}

impl<'a> Framework<'a> {
    pub fn new(
        ctx: &'a JujuContext,
        tools: &'a dyn HookTools,
        pebble: &'a dyn PebbleProvider,
        data: StoredData,
    ) -> Self {
        Self {
            ctx,
            model: Model::new(tools, ctx),
            pebble,
            data,
            collecting: None,
            emitted: Vec::new(),
        }
    }

    pub fn model(&self) -> &Model<'a> {
        &self.model
    }

    pub fn tools(&self) -> &'a dyn HookTools {
        self.model.tools()
    }

    /// The Pebble client of a workload container.
    pub fn container(&self, name: &str) -> Box<dyn Pebble + 'a> {
        self.pebble.container(name)
    }

    /// Add a status during `collect_unit_status` / `collect_app_status`. Outside those
    /// events it is ignored (with a debug line), as status belongs to collect-status.
    pub fn add_status(&mut self, status: StatusValue) {
        match &mut self.collecting {
            Some(list) if status.status.settable() => list.push(status),
            Some(_) => tracing::warn!(status = status.status.as_str(), "status not settable"),
            None => tracing::debug!("add_status outside collect-status ignored"),
        }
    }

    /// Read a stored-state object (`<owner>/StoredStateData[<attr>]`), default if absent.
    pub fn stored<T: DeserializeOwned + Default>(&self, owner: &str, attr: &str) -> T {
        let path = handle_path(Some(owner), "StoredStateData", Some(attr));
        self.data
            .snapshots
            .get(&path)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Write a stored-state object; saved only if the hook succeeds.
    pub fn set_stored<T: Serialize>(&mut self, owner: &str, attr: &str, value: &T) {
        let path = handle_path(Some(owner), "StoredStateData", Some(attr));
        match serde_json::to_value(value) {
            Ok(v) => {
                self.data.snapshots.insert(path, v);
            }
            Err(e) => tracing::error!(%path, error = %e, "stored state not serialisable"),
        }
    }

    /// The persisted data (for tests and storage).
    pub fn data(&self) -> &StoredData {
        &self.data
    }

    pub fn into_data(self) -> StoredData {
        self.data
    }

    fn next_event_path(&mut self, emitter: &str, kind: &str) -> String {
        self.data.event_count += 1;
        format!("{emitter}/on/{kind}[{}]", self.data.event_count)
    }
}

/// Run the deferred notices, then the event, then collect-status. The caller saves
/// [`Framework::data`] to storage only when this returns `Ok`.
pub fn dispatch<C: Charm>(charm: &mut C, fw: &mut Framework<'_>) -> Result<(), FrameworkError> {
    let mut observers = Observers::new(C::HANDLE_KIND);
    C::register(&mut observers);
    let event = fw.ctx.event.clone();
    if event.restricted() {
        return Ok(());
    }
    reemit(charm, fw, &observers)?;
    if let Event::Unknown { path } = &event {
        tracing::info!(%path, "unknown event: nothing to do");
    } else {
        let snapshot = event_snapshot(fw.ctx);
        emit(
            charm,
            fw,
            &observers,
            &event.kind(),
            snapshot,
            event.deferrable(),
        )?;
    }
    collect_status(charm, fw, &observers)
}

/// Emit an event to its observers (ops's `_emit`), with the dedupe rule.
fn emit<C: Charm>(
    charm: &mut C,
    fw: &mut Framework<'_>,
    observers: &Observers<C>,
    kind: &str,
    snapshot: Snapshot,
    deferrable: bool,
) -> Result<(), FrameworkError> {
    let root = observers.root.clone();
    let path = fw.next_event_path(&root, kind);
    fw.emitted.push(path.clone());
    let prefix = event_path_prefix(&path).to_string();
    let mut queued = Vec::new();
    for obs in observers
        .list
        .iter()
        .filter(|o| o.emitter == root && o.kind == kind)
    {
        let duplicate = fw.data.notices.iter().any(|n| {
            n.observer_path == obs.observer_path
                && n.method_name == obs.method
                && event_path_prefix(&n.event_path) == prefix
                && fw.data.snapshots.get(&n.event_path)
                    == Some(&serde_json::to_value(&snapshot).unwrap_or_default())
        });
        if duplicate {
            tracing::debug!(observer = %obs.observer_path, method = obs.method, "skipping duplicate of a deferred event");
            continue;
        }
        if queued.is_empty() {
            fw.data.snapshots.insert(
                path.clone(),
                serde_json::to_value(&snapshot).unwrap_or_default(),
            );
        }
        let row = NoticeRow {
            event_path: path.clone(),
            observer_path: obs.observer_path.clone(),
            method_name: obs.method.to_string(),
        };
        fw.data.notices.push(row.clone());
        queued.push(row);
    }
    for row in queued {
        let obs = find_observer(observers, &row).expect("queued from this registry");
        let mut ev = EventHandle {
            kind: kind.to_string(),
            path: path.clone(),
            snapshot: snapshot.clone(),
            redelivered: false,
            deferrable,
            deferred: false,
        };
        run_notice(charm, fw, obs, &row, &mut ev)?;
    }
    drop_snapshot_if_done(fw, &path);
    Ok(())
}

fn find_observer<'o, C>(observers: &'o Observers<C>, row: &NoticeRow) -> Option<&'o Observer<C>> {
    observers
        .list
        .iter()
        .find(|o| o.observer_path == row.observer_path && o.method == row.method_name)
}

fn run_notice<C: Charm>(
    charm: &mut C,
    fw: &mut Framework<'_>,
    obs: &Observer<C>,
    row: &NoticeRow,
    ev: &mut EventHandle,
) -> Result<(), FrameworkError> {
    (obs.handler)(charm, fw, ev).map_err(|source| FrameworkError::Handler {
        observer: obs.observer_path.clone(),
        method: obs.method.to_string(),
        event: row.event_path.clone(),
        source,
    })?;
    if ev.deferred {
        if !ev.deferrable {
            return Err(FrameworkError::NotDeferrable(ev.kind.clone()));
        }
        tracing::debug!(event = %row.event_path, observer = %row.observer_path, "deferred");
    } else if let Some(pos) = fw.data.notices.iter().position(|n| n == row) {
        fw.data.notices.remove(pos);
    }
    Ok(())
}

fn drop_snapshot_if_done(fw: &mut Framework<'_>, path: &str) {
    if !fw.data.notices.iter().any(|n| n.event_path == path) {
        fw.data.snapshots.remove(path);
    }
}

/// Re-run every deferred notice in insertion order (ops's `reemit`).
fn reemit<C: Charm>(
    charm: &mut C,
    fw: &mut Framework<'_>,
    observers: &Observers<C>,
) -> Result<(), FrameworkError> {
    let pending = fw.data.notices.clone();
    for row in pending {
        let Some(snapshot_value) = fw.data.snapshots.get(&row.event_path).cloned() else {
            tracing::warn!(event = %row.event_path, "deferred event has no snapshot; dropping");
            fw.data.notices.retain(|n| n != &row);
            continue;
        };
        let Some(obs) = find_observer(observers, &row) else {
            tracing::warn!(observer = %row.observer_path, method = %row.method_name, "observer of a deferred event is gone; dropping");
            fw.data.notices.retain(|n| n != &row);
            drop_snapshot_if_done(fw, &row.event_path);
            continue;
        };
        let snapshot: Snapshot = serde_json::from_value(snapshot_value).unwrap_or_default();
        let kind = event_path_prefix(&row.event_path)
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        // A relation event whose relation is gone cannot run again: ops would crash; we drop.
        if let (Some(id), Some(endpoint)) = (
            snapshot.get("relation_id").and_then(|v| v.as_u64()),
            snapshot.get("relation_name").and_then(|v| v.as_str()),
        ) {
            let alive = fw
                .model()
                .relation_ids(endpoint)
                .map(|ids| ids.contains(&(id as u32)))
                .unwrap_or(true);
            if !alive {
                tracing::info!(event = %row.event_path, "relation of a deferred event is gone; dropping");
                fw.data.notices.retain(|n| n != &row);
                drop_snapshot_if_done(fw, &row.event_path);
                continue;
            }
        }
        fw.emitted.push(row.event_path.clone());
        let mut ev = EventHandle {
            kind,
            path: row.event_path.clone(),
            snapshot,
            redelivered: true,
            deferrable: true,
            deferred: false,
        };
        run_notice(charm, fw, obs, &row, &mut ev)?;
        drop_snapshot_if_done(fw, &row.event_path);
    }
    Ok(())
}

/// The last statuses we set, so an unchanged status costs no `status-set`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct LastStatus {
    unit: Option<StatusValue>,
    app: Option<StatusValue>,
}

/// Collect statuses (app on the leader, then unit) and set the most important of each.
fn collect_status<C: Charm>(
    charm: &mut C,
    fw: &mut Framework<'_>,
    observers: &Observers<C>,
) -> Result<(), FrameworkError> {
    let mut last: LastStatus = fw.stored("", "_status");
    // Without app-status observers there is nothing to collect for the app: skip is-leader.
    let wants_app = observers
        .list
        .iter()
        .any(|o| o.kind == "collect_app_status");
    let leader = wants_app && fw.model().is_leader().map_err(FrameworkError::Status)?;
    let targets: &[(&str, bool)] = if leader {
        &[("collect_app_status", true), ("collect_unit_status", false)]
    } else {
        &[("collect_unit_status", false)]
    };
    for (kind, app) in targets {
        fw.collecting = Some(Vec::new());
        let result = emit(charm, fw, observers, kind, Snapshot::new(), false);
        let statuses = fw.collecting.take().unwrap_or_default();
        result?;
        let Some(best) = pick_status(&statuses) else {
            continue;
        };
        let slot = if *app { &mut last.app } else { &mut last.unit };
        if slot.as_ref() != Some(best) {
            fw.tools()
                .status_set(best, *app)
                .map_err(FrameworkError::Status)?;
            *slot = Some(best.clone());
        }
    }
    fw.set_stored("", "_status", &last);
    Ok(())
}

/// ops's rule: highest priority wins, the first added among equals.
pub fn pick_status(statuses: &[StatusValue]) -> Option<&StatusValue> {
    let mut best: Option<&StatusValue> = None;
    for s in statuses {
        if best.is_none_or(|b| s.status.priority() > b.status.priority()) {
            best = Some(s);
        }
    }
    best
}

/// Priority helper kept public for charm code that summarises several statuses.
pub fn priority(status: StatusName) -> u8 {
    status.priority()
}
