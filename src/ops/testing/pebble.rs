//! In-memory Pebble: a faithful [`Pebble`] for charm unit tests.
//!
//! It keeps what a container's Pebble keeps (labelled layers and their combined plan, service
//! states, a filesystem, changes, checks, notices) and answers with the same errors real Pebble
//! gives (per-path file errors with their kinds, 400 on a duplicate layer label, 404 on an unknown
//! change). Every call is recorded so a test can assert what a hook did, e.g. that it did not
//! replan when nothing changed.
//!
//! Clones share state: a test keeps one handle while the charm uses another.

use crate::ops::pebble::plan::{self, AddLayerError};
use crate::ops::pebble::{
    Change, ChangeSelect, CheckAction, CheckInfo, CheckLevel, FileInfo, Layer, MakeDirOptions,
    Notice, NoticesQuery, Pebble, PebbleError, PebbleProvider, PebbleResult, Plan, PushOptions,
    Service, ServiceAction, ServiceInfo, SystemInfo, Task,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One filesystem entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFile {
    pub is_dir: bool,
    /// Empty for directories.
    pub content: Vec<u8>,
    /// Unix permission bits, e.g. `0o640`.
    pub permissions: u32,
    pub user: String,
    pub user_id: Option<u32>,
    pub group: String,
    pub group_id: Option<u32>,
    pub last_modified: String,
}

impl MemoryFile {
    /// The content as text (lossy), for assertions on config files.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }
}

/// Who a new file or directory belongs to, as the request asked.
struct Owner<'a> {
    user: Option<&'a str>,
    user_id: Option<u32>,
    group: Option<&'a str>,
    group_id: Option<u32>,
}

impl<'a> Owner<'a> {
    const ROOT: Owner<'static> = Owner {
        user: None,
        user_id: None,
        group: None,
        group_id: None,
    };
    fn of_push(o: &'a PushOptions) -> Self {
        Owner {
            user: o.user.as_deref(),
            user_id: o.user_id,
            group: o.group.as_deref(),
            group_id: o.group_id,
        }
    }
    fn of_make_dir(o: &'a MakeDirOptions) -> Self {
        Owner {
            user: o.user.as_deref(),
            user_id: o.user_id,
            group: o.group.as_deref(),
            group_id: o.group_id,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct ServiceState {
    current: String,
    since: Option<String>,
    /// The plan entry the running process was started from (to detect changed definitions).
    started_with: Option<Service>,
}

#[derive(Debug, Clone)]
struct CheckState {
    status: String,
    successes: u64,
    failures: u64,
}

#[derive(Debug)]
struct State {
    can_connect: bool,
    boot_id: String,
    layers: Vec<(String, Layer)>,
    services: BTreeMap<String, ServiceState>,
    /// Services whose next starts fail, with the reason (test knob).
    failing: BTreeMap<String, String>,
    files: BTreeMap<String, MemoryFile>,
    changes: BTreeMap<u64, (Change, Vec<String>)>,
    next_change: u64,
    checks: BTreeMap<String, CheckState>,
    notices: Vec<Notice>,
    next_notice: u64,
    calls: Vec<String>,
    last_time: u128,
}

/// Directories every container image has; pushing into them needs no `make_dirs`.
const SKELETON: &[&str] = &[
    "/",
    "/bin",
    "/etc",
    "/home",
    "/opt",
    "/root",
    "/run",
    "/srv",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/local",
    "/usr/local/bin",
    "/var",
    "/var/lib",
    "/var/log",
];

impl State {
    fn new() -> State {
        let mut s = State {
            can_connect: true,
            boot_id: "00000000-0000-4000-8000-000000000000".into(),
            layers: Vec::new(),
            services: BTreeMap::new(),
            failing: BTreeMap::new(),
            files: BTreeMap::new(),
            changes: BTreeMap::new(),
            next_change: 1,
            checks: BTreeMap::new(),
            notices: Vec::new(),
            next_notice: 1,
            calls: Vec::new(),
            last_time: 0,
        };
        for d in SKELETON {
            let dir = s.new_entry(true, Vec::new(), 0o755, &Owner::ROOT);
            s.files.insert((*d).to_string(), dir);
        }
        s
    }

    /// RFC 3339 UTC with nanoseconds, strictly increasing so notices order by time.
    fn now(&mut self) -> String {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let t = real.max(self.last_time + 1);
        self.last_time = t;
        rfc3339(t)
    }

    fn new_entry(
        &mut self,
        is_dir: bool,
        content: Vec<u8>,
        permissions: u32,
        owner: &Owner<'_>,
    ) -> MemoryFile {
        let user = owner.user.unwrap_or("root").to_string();
        // With only a user, the group is that user's primary group (we assume same name).
        let group = owner
            .group
            .map(str::to_string)
            .unwrap_or_else(|| user.clone());
        let default_id = |name: &str, id: Option<u32>| id.or((name == "root").then_some(0));
        MemoryFile {
            is_dir,
            content,
            permissions,
            user_id: default_id(&user, owner.user_id),
            group_id: default_id(&group, owner.group_id),
            user,
            group,
            last_modified: self.now(),
        }
    }

    fn plan(&self) -> Plan {
        plan::combine_plan(&self.layers)
    }

    /// Record a finished change and return its id.
    fn finish_change(
        &mut self,
        kind: &str,
        summary: String,
        tasks: Vec<(String, String, Option<String>)>,
        services: Vec<String>,
    ) -> String {
        let id = self.next_change;
        self.next_change += 1;
        let now = self.now();
        let mut err_lines = Vec::new();
        let tasks: Vec<Task> = tasks
            .into_iter()
            .enumerate()
            .map(|(i, (task_kind, task_summary, error))| {
                let status = if error.is_some() { "Error" } else { "Done" };
                let log = match &error {
                    Some(e) => {
                        err_lines.push(format!("- {task_summary} ({e})"));
                        vec![format!("{now} ERROR {e}")]
                    }
                    None => Vec::new(),
                };
                Task {
                    id: format!("{id}{i}"),
                    kind: task_kind,
                    summary: task_summary,
                    status: status.into(),
                    log,
                    progress: crate::ops::pebble::TaskProgress {
                        label: String::new(),
                        done: 1,
                        total: 1,
                    },
                    spawn_time: now.clone(),
                    ready_time: Some(now.clone()),
                    data: None,
                }
            })
            .collect();
        let err = (!err_lines.is_empty()).then(|| {
            format!(
                "cannot perform the following tasks:\n{}",
                err_lines.join("\n")
            )
        });
        let change = Change {
            id: id.to_string(),
            kind: kind.into(),
            summary,
            status: if err.is_some() { "Error" } else { "Done" }.into(),
            ready: true,
            err,
            spawn_time: now.clone(),
            ready_time: Some(now),
            tasks,
            data: None,
        };
        self.changes.insert(id, (change, services));
        id.to_string()
    }

    fn start_service(&mut self, name: &str, plan: &Plan) -> Option<String> {
        let now = self.now();
        let def = plan.services.get(name).cloned();
        let failure = self.failing.get(name).cloned();
        let st = self.services.entry(name.to_string()).or_default();
        st.since = Some(now);
        match failure {
            Some(reason) => {
                st.current = "error".into();
                st.started_with = None;
                Some(reason)
            }
            None => {
                st.current = "active".into();
                st.started_with = def;
                None
            }
        }
    }

    fn stop_service(&mut self, name: &str) {
        let now = self.now();
        let st = self.services.entry(name.to_string()).or_default();
        st.current = "inactive".into();
        st.since = Some(now);
        st.started_with = None;
    }

    fn is_active(&self, name: &str) -> bool {
        self.services
            .get(name)
            .is_some_and(|s| s.current == "active")
    }

    /// Bring check states in line with the plan: new checks start (at layer-add time, as
    /// real Pebble does); removed ones disappear.
    fn sync_checks(&mut self) {
        let plan = self.plan();
        self.checks.retain(|name, _| plan.checks.contains_key(name));
        for (name, chk) in &plan.checks {
            self.checks.entry(name.clone()).or_insert_with(|| {
                let enabled = chk.startup.as_deref() != Some("disabled");
                CheckState {
                    status: if enabled { "up" } else { "inactive" }.into(),
                    successes: 0,
                    failures: 0,
                }
            });
        }
    }
}

/// Pebble's change summary: `Start service "a"`, `Start service "a" and 2 more`,
/// `Replan - no services`.
fn summary(verb: &str, names: &[String]) -> String {
    match names {
        [] => format!("{verb} - no services"),
        [one] => format!("{verb} service {one:?}"),
        [first, rest @ ..] => format!("{verb} service {first:?} and {} more", rest.len()),
    }
}

fn api(status_code: u16, kind: &str, message: impl Into<String>) -> PebbleError {
    PebbleError::Api {
        status_code,
        kind: kind.into(),
        message: message.into(),
    }
}

fn path_err(path: &str, kind: &str, message: impl Into<String>) -> PebbleError {
    PebbleError::Path {
        path: path.into(),
        kind: kind.into(),
        message: message.into(),
    }
}

/// Normalise an absolute path (`//a/b/` → `/a/b`); `None` for relative paths.
fn clean(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn base_name(path: &str) -> &str {
    if path == "/" {
        return "/";
    }
    path.rsplit('/').next().unwrap_or(path)
}

fn is_child(dir: &str, path: &str) -> bool {
    parent(path) == Some(dir) && path != dir
}

fn is_under(dir: &str, path: &str) -> bool {
    path != dir && (dir == "/" || path.starts_with(&format!("{dir}/")))
}

/// Shell-style glob on a file name: `*`, `?`, `[abc]`/`[a-z]`/`[!x]`.
fn glob(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, chars consumed including ']').
        let mut i = 0;
        let negate = matches!(p.first(), Some('!') | Some('^'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let start = i;
        while i < p.len() {
            if p[i] == ']' && i > start {
                return Some((matched != negate, i + 1));
            }
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                if p[i] <= c && c <= p[i + 2] {
                    matched = true;
                }
                i += 3;
            } else {
                if p[i] == c {
                    matched = true;
                }
                i += 1;
            }
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (
                n.first(),
                class(&p[1..], n.first().copied().unwrap_or('\0')),
            ) {
                (Some(_), Some((true, used))) => go(&p[1 + used..], &n[1..]),
                (Some(c), None) => *c == '[' && go(&p[1..], &n[1..]),
                _ => false,
            },
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// Pebble's custom notice key rule: `domain.tld/path`, lower case, ≤ 256 chars.
fn valid_custom_key(key: &str) -> bool {
    fn word(s: &str) -> bool {
        // [a-z0-9]+(-[a-z0-9]+)*
        !s.is_empty()
            && s.split('-').all(|w| {
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    }
    if key.len() > 256 {
        return false;
    }
    let Some((domain, path)) = key.split_once('/') else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| word(l)) && path.split('/').all(word)
}

fn rfc3339(nanos: u128) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let frac = (nanos % 1_000_000_000) as u32;
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
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// An in-memory container Pebble. `Clone` shares the state.
#[derive(Debug, Clone)]
pub struct MemoryPebble {
    state: Arc<Mutex<State>>,
}

impl Default for MemoryPebble {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPebble {
    /// A connectable Pebble with an empty plan and a basic directory skeleton
    /// (`/etc`, `/tmp`, `/var/lib`, ...).
    pub fn new() -> MemoryPebble {
        MemoryPebble {
            state: Arc::new(Mutex::new(State::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Log the call, then fail with `Connection` if the container is "down".
    fn enter(&self, call: String) -> PebbleResult<MutexGuard<'_, State>> {
        let mut st = self.lock();
        st.calls.push(call);
        if !st.can_connect {
            return Err(PebbleError::Connection {
                socket: "memory".into(),
                message: "socket not found (container restarted?)".into(),
            });
        }
        Ok(st)
    }

    // ---- test knobs and accessors -----------------------------------------------------------

    /// Make every call fail with `PebbleError::Connection` (container not up) or succeed again.
    pub fn set_can_connect(&self, can_connect: bool) {
        self.lock().can_connect = can_connect;
    }

    /// Every call so far, e.g. `add_layer sentinel`, `replan`, `push /etc/x.conf`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// The combined plan.
    pub fn plan(&self) -> Plan {
        self.lock().plan()
    }

    /// The labelled layers, in order.
    pub fn layers(&self) -> Vec<(String, Layer)> {
        self.lock().layers.clone()
    }

    pub fn file(&self, path: &str) -> Option<MemoryFile> {
        let path = clean(path)?;
        self.lock().files.get(&path).cloned()
    }

    /// Paths of all entries (files and directories), sorted.
    pub fn paths(&self) -> Vec<String> {
        self.lock().files.keys().cloned().collect()
    }

    /// `active`, `inactive`, `error`, ... for a service in the plan; `None` if it is not.
    pub fn service_state(&self, name: &str) -> Option<String> {
        let st = self.lock();
        if !st.plan().services.contains_key(name) {
            return None;
        }
        Some(
            st.services
                .get(name)
                .map(|s| s.current.clone())
                .unwrap_or_else(|| "inactive".into()),
        )
    }

    /// Put a file in place as the image would have it (parents created, owned by root).
    pub fn seed_file(&self, path: &str, content: &[u8]) {
        let Some(path) = clean(path) else { return };
        let mut st = self.lock();
        let mut dirs = Vec::new();
        let mut p = parent(&path);
        while let Some(d) = p {
            if !st.files.contains_key(d) {
                dirs.push(d.to_string());
            }
            p = parent(d);
        }
        for d in dirs {
            let e = st.new_entry(true, Vec::new(), 0o755, &Owner::ROOT);
            st.files.insert(d, e);
        }
        let e = st.new_entry(false, content.to_vec(), 0o644, &Owner::ROOT);
        st.files.insert(path, e);
    }

    /// Make the next starts of `service` fail (`Some(reason)`) or succeed again (`None`).
    pub fn set_service_start_failure(&self, service: &str, reason: Option<&str>) {
        let mut st = self.lock();
        match reason {
            Some(r) => st.failing.insert(service.into(), r.into()),
            None => st.failing.remove(service),
        };
    }

    /// Simulate a service dying (e.g. the process crashed): current becomes `state`.
    pub fn set_service_state(&self, service: &str, state: &str) {
        let mut st = self.lock();
        let now = st.now();
        let s = st.services.entry(service.into()).or_default();
        s.current = state.into();
        s.since = Some(now);
        if state != "active" {
            s.started_with = None;
        }
    }

    /// Set a check's status (`up` / `down`), as its probe would.
    pub fn set_check_status(&self, check: &str, status: &str) {
        let mut st = self.lock();
        st.sync_checks();
        if let Some(c) = st.checks.get_mut(check) {
            c.status = status.into();
            if status == "down" {
                c.failures += 1;
            } else {
                c.successes += 1;
                c.failures = 0;
            }
        }
    }

    /// All notices recorded so far.
    pub fn all_notices(&self) -> Vec<Notice> {
        self.lock().notices.clone()
    }

    // ---- service actions --------------------------------------------------------------------

    /// Expand `requires` and order by `after`/`before`, as Pebble's start order does.
    fn start_order(plan: &Plan, names: &[String]) -> Vec<String> {
        let mut set: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = names.to_vec();
        while let Some(n) = todo.pop() {
            if set.insert(n.clone()) {
                if let Some(s) = plan.services.get(&n) {
                    todo.extend(s.requires.iter().cloned());
                }
            }
        }
        let deps = |n: &str| -> Vec<String> {
            let mut d: Vec<String> = plan
                .services
                .get(n)
                .map(|s| s.after.clone())
                .unwrap_or_default();
            for (other, s) in &plan.services {
                if s.before.iter().any(|b| b == n) {
                    d.push(other.clone());
                }
            }
            d
        };
        let mut out: Vec<String> = Vec::new();
        let mut remaining: Vec<String> = set.into_iter().collect();
        while !remaining.is_empty() {
            let pos = remaining
                .iter()
                .position(|n| deps(n).iter().all(|d| !remaining.contains(d) || d == n))
                .unwrap_or(0); // a loop: fall back to name order
            out.push(remaining.remove(pos));
        }
        out
    }

    fn do_service_action(
        st: &mut State,
        action: ServiceAction,
        names: &[&str],
    ) -> PebbleResult<String> {
        let plan = st.plan();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        for n in &names {
            if !plan.services.contains_key(n) {
                return Err(api(400, "", format!("service {n:?} does not exist")));
            }
        }
        match action {
            ServiceAction::Replan | ServiceAction::Autostart if !names.is_empty() => {
                return Err(api(
                    400,
                    "",
                    format!("{} accepts no service names", action.as_str()),
                ));
            }
            ServiceAction::Start | ServiceAction::Stop | ServiceAction::Restart
                if names.is_empty() =>
            {
                return Err(api(
                    400,
                    "",
                    format!("must specify services for action {:?}", action.as_str()),
                ));
            }
            _ => {}
        }
        let enabled: Vec<String> = plan
            .services
            .iter()
            .filter(|(_, s)| s.startup.as_deref() == Some("enabled"))
            .map(|(n, _)| n.clone())
            .collect();
        let mut tasks = Vec::new();
        let (verb, kind, affected) = match action {
            ServiceAction::Start | ServiceAction::Autostart => {
                let wanted = if action == ServiceAction::Autostart {
                    if enabled.is_empty() {
                        return Err(api(400, "no-default-services", "no default services"));
                    }
                    enabled
                } else {
                    names
                };
                let order = Self::start_order(&plan, &wanted);
                let to_start: Vec<String> =
                    order.into_iter().filter(|n| !st.is_active(n)).collect();
                for n in &to_start {
                    let err = st.start_service(n, &plan);
                    tasks.push(("start".into(), format!("Start service {n:?}"), err));
                }
                let verb = if action == ServiceAction::Start {
                    "Start"
                } else {
                    "Autostart"
                };
                (verb, action.as_str(), to_start)
            }
            ServiceAction::Stop => {
                let mut order = Self::start_order(&plan, &names);
                order.reverse();
                let to_stop: Vec<String> = order
                    .into_iter()
                    .filter(|n| names.contains(n) && st.is_active(n))
                    .collect();
                for n in &to_stop {
                    st.stop_service(n);
                    tasks.push(("stop".into(), format!("Stop service {n:?}"), None));
                }
                ("Stop", "stop", to_stop)
            }
            ServiceAction::Restart => {
                let order = Self::start_order(&plan, &names);
                for n in order.iter().rev() {
                    if names.contains(n) && st.is_active(n) {
                        st.stop_service(n);
                        tasks.push(("stop".into(), format!("Stop service {n:?}"), None));
                    }
                }
                for n in &order {
                    if !st.is_active(n) {
                        let err = st.start_service(n, &plan);
                        tasks.push(("start".into(), format!("Start service {n:?}"), err));
                    }
                }
                ("Restart", "restart", names)
            }
            ServiceAction::Replan => {
                // Stop running services whose definition changed, then start them and every
                // startup-enabled service that is not running.
                let changed: Vec<String> = st
                    .services
                    .iter()
                    .filter(|(n, s)| {
                        s.current == "active" && s.started_with.as_ref() != plan.services.get(*n)
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in &changed {
                    st.stop_service(n);
                    tasks.push(("stop".into(), format!("Stop service {n:?}"), None));
                }
                let mut wanted = enabled;
                wanted.extend(changed.iter().cloned());
                let order = Self::start_order(&plan, &wanted);
                let to_start: Vec<String> =
                    order.into_iter().filter(|n| !st.is_active(n)).collect();
                for n in &to_start {
                    let err = st.start_service(n, &plan);
                    tasks.push(("start".into(), format!("Start service {n:?}"), err));
                }
                st.sync_checks();
                ("Replan", "replan", to_start)
            }
        };
        Ok(st.finish_change(kind, summary(verb, &affected), tasks, affected))
    }

    // ---- files ------------------------------------------------------------------------------

    fn file_info(path: &str, f: &MemoryFile) -> FileInfo {
        FileInfo {
            path: path.to_string(),
            name: base_name(path).to_string(),
            file_type: if f.is_dir { "directory" } else { "file" }.into(),
            size: (!f.is_dir).then_some(f.content.len() as u64),
            permissions: format!("{:03o}", f.permissions & 0o777),
            last_modified: f.last_modified.clone(),
            user_id: f.user_id,
            user: Some(f.user.clone()),
            group_id: f.group_id,
            group: Some(f.group.clone()),
        }
    }

    /// `mkdir -p` of `dir`'s missing ancestors and itself, owned as asked.
    fn make_parents(
        st: &mut State,
        dir: &str,
        perm: u32,
        owner: &Owner<'_>,
        original: &str,
    ) -> PebbleResult<()> {
        let mut chain = Vec::new();
        let mut p = Some(dir);
        while let Some(d) = p {
            match st.files.get(d) {
                Some(f) if f.is_dir => break,
                Some(_) => {
                    return Err(path_err(
                        original,
                        "generic-file-error",
                        format!("mkdir {d}: not a directory"),
                    ))
                }
                None => chain.push(d.to_string()),
            }
            p = parent(d);
        }
        for d in chain.into_iter().rev() {
            let e = st.new_entry(true, Vec::new(), perm, owner);
            st.files.insert(d, e);
        }
        Ok(())
    }
}

impl Pebble for MemoryPebble {
    fn system_info(&self) -> PebbleResult<SystemInfo> {
        let st = self.enter("system_info".into())?;
        Ok(SystemInfo {
            boot_id: st.boot_id.clone(),
            version: "v1.32.1-memory".into(),
            http_address: None,
        })
    }

    fn health(&self, level: Option<CheckLevel>, names: &[&str]) -> PebbleResult<bool> {
        let mut st = self.enter("health".into())?;
        st.sync_checks();
        let plan = st.plan();
        let healthy = plan.checks.iter().all(|(name, chk)| {
            let level_matches = match (level, chk.level.as_deref()) {
                (None, _) | (_, None) => true,
                // Ready implies alive: the ready level includes alive checks.
                (Some(CheckLevel::Ready), Some(_)) => true,
                (Some(CheckLevel::Alive), Some(l)) => l == "alive",
            };
            let selected = names.is_empty() || names.contains(&name.as_str());
            !(level_matches && selected)
                || st.checks.get(name).map(|c| c.status.as_str()) != Some("down")
        });
        Ok(healthy)
    }

    fn add_layer(&self, label: &str, layer: &Layer, combine: bool) -> PebbleResult<()> {
        let mut st = self.enter(format!("add_layer {label}"))?;
        let mut layers = st.layers.clone();
        plan::add_layer(&mut layers, label, layer, combine).map_err(|e| match e {
            AddLayerError::Exists(_) => api(400, "", format!("layer {label:?} already exists")),
            AddLayerError::Invalid(e) => api(400, "", e.to_string()),
        })?;
        let combined = plan::combine_plan(&layers);
        plan::validate_plan(&combined).map_err(|e| api(400, "", e.to_string()))?;
        st.layers = layers;
        st.sync_checks();
        Ok(())
    }

    fn get_plan(&self) -> PebbleResult<Plan> {
        let st = self.enter("get_plan".into())?;
        Ok(st.plan())
    }

    fn services(&self, names: &[&str]) -> PebbleResult<Vec<ServiceInfo>> {
        let st = self.enter(
            format!("services {}", names.join(" "))
                .trim_end()
                .to_string(),
        )?;
        let plan = st.plan();
        Ok(plan
            .services
            .iter()
            .filter(|(n, _)| names.is_empty() || names.contains(&n.as_str()))
            .map(|(n, s)| {
                let state = st.services.get(n);
                ServiceInfo {
                    name: n.clone(),
                    startup: s.startup.clone().unwrap_or_else(|| "disabled".into()),
                    current: state
                        .map(|x| x.current.clone())
                        .unwrap_or_else(|| "inactive".into()),
                    current_since: state.and_then(|x| x.since.clone()),
                }
            })
            .collect())
    }

    fn service_action(&self, action: ServiceAction, names: &[&str]) -> PebbleResult<String> {
        let call = format!("{} {}", action.as_str(), names.join(" "));
        let mut st = self.enter(call.trim_end().to_string())?;
        Self::do_service_action(&mut st, action, names)
    }

    fn send_signal(&self, signal: &str, services: &[&str]) -> PebbleResult<()> {
        let st = self.enter(format!("send_signal {signal} {}", services.join(" ")))?;
        if services.is_empty() {
            return Err(api(400, "", "must specify services"));
        }
        for s in services {
            if !st.is_active(s) {
                return Err(api(
                    500,
                    "",
                    format!("cannot send signal to {s:?}: service is not running"),
                ));
            }
        }
        Ok(())
    }

    fn changes(&self, select: ChangeSelect, service: Option<&str>) -> PebbleResult<Vec<Change>> {
        let st = self.enter("changes".into())?;
        Ok(st
            .changes
            .values()
            .filter(|(c, _)| match select {
                ChangeSelect::All => true,
                ChangeSelect::Ready => c.ready,
                ChangeSelect::InProgress => !c.ready,
            })
            .filter(|(_, svcs)| service.is_none_or_contained(svcs))
            .map(|(c, _)| c.clone())
            .collect())
    }

    fn change(&self, id: &str) -> PebbleResult<Change> {
        let st = self.enter(format!("change {id}"))?;
        id.parse::<u64>()
            .ok()
            .and_then(|n| st.changes.get(&n))
            .map(|(c, _)| c.clone())
            .ok_or_else(|| api(404, "", format!("cannot find change with id {id:?}")))
    }

    fn wait_change(&self, id: &str, _timeout: Duration) -> PebbleResult<Change> {
        let st = self.enter(format!("wait_change {id}"))?;
        // Every in-memory change is finished by the time its id is handed out.
        id.parse::<u64>()
            .ok()
            .and_then(|n| st.changes.get(&n))
            .map(|(c, _)| c.clone())
            .ok_or_else(|| api(404, "", format!("cannot find change with id {id:?}")))
    }

    fn abort_change(&self, id: &str) -> PebbleResult<Change> {
        let st = self.enter(format!("abort_change {id}"))?;
        match id.parse::<u64>().ok().and_then(|n| st.changes.get(&n)) {
            None => Err(api(404, "", format!("cannot find change with id {id:?}"))),
            Some((c, _)) if c.ready => Err(api(
                400,
                "",
                format!("cannot abort change {id} with nothing pending"),
            )),
            Some((c, _)) => Ok(c.clone()),
        }
    }

    fn push(&self, path: &str, content: &[u8], opts: &PushOptions) -> PebbleResult<()> {
        let mut st = self.enter(format!("push {path}"))?;
        let Some(clean_path) = clean(path) else {
            return Err(path_err(
                path,
                "generic-file-error",
                format!("paths must be absolute, got {path:?}"),
            ));
        };
        if let Some(p) = opts.permissions {
            if p > 0o777 {
                return Err(path_err(
                    path,
                    "generic-file-error",
                    format!("permissions {p:o} are not three octal digits"),
                ));
            }
        }
        let dir = parent(&clean_path).unwrap_or("/").to_string();
        match st.files.get(&dir) {
            Some(d) if d.is_dir => {}
            Some(_) => {
                return Err(path_err(
                    path,
                    "generic-file-error",
                    format!("open {clean_path}.memory~: not a directory"),
                ))
            }
            None if opts.make_dirs => {
                Self::make_parents(&mut st, &dir, 0o755, &Owner::of_push(opts), path)?;
            }
            None => {
                return Err(path_err(
                    path,
                    "not-found",
                    format!("open {clean_path}.memory~: no such file or directory"),
                ))
            }
        }
        if st.files.get(&clean_path).is_some_and(|f| f.is_dir) {
            return Err(path_err(
                path,
                "generic-file-error",
                format!("rename {clean_path}.memory~ {clean_path}: file exists"),
            ));
        }
        let e = st.new_entry(
            false,
            content.to_vec(),
            opts.permissions.unwrap_or(0o644),
            &Owner::of_push(opts),
        );
        st.files.insert(clean_path, e);
        Ok(())
    }

    fn pull(&self, path: &str) -> PebbleResult<Vec<u8>> {
        let st = self.enter(format!("pull {path}"))?;
        let Some(p) = clean(path) else {
            return Err(path_err(
                path,
                "generic-file-error",
                format!("paths must be absolute, got {path:?}"),
            ));
        };
        match st.files.get(&p) {
            None => Err(path_err(
                path,
                "not-found",
                format!("stat {p}: no such file or directory"),
            )),
            Some(f) if f.is_dir => Err(path_err(
                path,
                "generic-file-error",
                format!("can only read a regular file: {p:?}"),
            )),
            Some(f) => Ok(f.content.clone()),
        }
    }

    fn list_files(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> PebbleResult<Vec<FileInfo>> {
        let st = self.enter(format!("list {path}"))?;
        let Some(p) = clean(path) else {
            return Err(api(
                400,
                "",
                format!("paths must be absolute, got {path:?}"),
            ));
        };
        let Some(f) = st.files.get(&p) else {
            return Err(api(
                404,
                "not-found",
                format!("stat {p}: no such file or directory"),
            ));
        };
        if !f.is_dir || itself {
            return Ok(vec![Self::file_info(&p, f)]);
        }
        Ok(st
            .files
            .iter()
            .filter(|(q, _)| is_child(&p, q))
            .filter(|(q, _)| pattern.is_none_or_glob(base_name(q)))
            .map(|(q, f)| Self::file_info(q, f))
            .collect())
    }

    fn make_dir(&self, path: &str, opts: &MakeDirOptions) -> PebbleResult<()> {
        let mut st = self.enter(format!("make_dir {path}"))?;
        let Some(p) = clean(path) else {
            return Err(path_err(
                path,
                "generic-file-error",
                format!("paths must be absolute, got {path:?}"),
            ));
        };
        let perm = opts.permissions.unwrap_or(0o755);
        match st.files.get(&p) {
            Some(f) if f.is_dir && opts.make_parents => return Ok(()),
            Some(_) => {
                return Err(path_err(
                    path,
                    "generic-file-error",
                    format!("mkdir {p}: file exists"),
                ))
            }
            None => {}
        }
        let dir_parent = parent(&p).unwrap_or("/").to_string();
        if opts.make_parents {
            Self::make_parents(&mut st, &p, perm, &Owner::of_make_dir(opts), path)
        } else {
            match st.files.get(&dir_parent) {
                Some(d) if d.is_dir => {
                    let e = st.new_entry(true, Vec::new(), perm, &Owner::of_make_dir(opts));
                    st.files.insert(p, e);
                    Ok(())
                }
                Some(_) => Err(path_err(
                    path,
                    "generic-file-error",
                    format!("mkdir {p}.mkdir-new: not a directory"),
                )),
                None => Err(path_err(
                    path,
                    "not-found",
                    format!("mkdir {p}.mkdir-new: no such file or directory"),
                )),
            }
        }
    }

    fn remove_path(&self, path: &str, recursive: bool) -> PebbleResult<()> {
        let mut st = self.enter(format!("remove {path}"))?;
        let Some(p) = clean(path) else {
            return Err(path_err(
                path,
                "generic-file-error",
                format!("paths must be absolute, got {path:?}"),
            ));
        };
        if !st.files.contains_key(&p) {
            return if recursive {
                Ok(())
            } else {
                Err(path_err(
                    path,
                    "not-found",
                    format!("remove {p}: no such file or directory"),
                ))
            };
        }
        let has_children = st.files.keys().any(|q| is_under(&p, q));
        if has_children && !recursive {
            return Err(path_err(
                path,
                "generic-file-error",
                format!("remove {p}: directory not empty"),
            ));
        }
        st.files.retain(|q, _| !is_under(&p, q));
        if p != "/" {
            st.files.remove(&p);
        }
        Ok(())
    }

    fn checks(&self, level: Option<CheckLevel>, names: &[&str]) -> PebbleResult<Vec<CheckInfo>> {
        let mut st = self.enter("checks".into())?;
        st.sync_checks();
        let plan = st.plan();
        Ok(plan
            .checks
            .iter()
            .filter(|(n, _)| names.is_empty() || names.contains(&n.as_str()))
            .filter(|(_, c)| match (level, c.level.as_deref()) {
                (None, _) => true,
                (Some(CheckLevel::Alive), l) => l == Some("alive"),
                (Some(CheckLevel::Ready), l) => l == Some("ready"),
            })
            .map(|(n, c)| {
                let s = st.checks.get(n);
                CheckInfo {
                    name: n.clone(),
                    level: c.level.clone(),
                    startup: c.startup.clone().unwrap_or_else(|| "enabled".into()),
                    status: s.map(|s| s.status.clone()).unwrap_or_else(|| "up".into()),
                    successes: s.map(|s| s.successes).unwrap_or(0),
                    failures: s.map(|s| s.failures).unwrap_or(0),
                    threshold: c.threshold.unwrap_or(3),
                    change_id: None,
                }
            })
            .collect())
    }

    fn check_action(&self, action: CheckAction, names: &[&str]) -> PebbleResult<Vec<String>> {
        let verb = match action {
            CheckAction::Start => "start",
            CheckAction::Stop => "stop",
        };
        let mut st = self.enter(format!("check_action {verb} {}", names.join(" ")))?;
        st.sync_checks();
        if names.is_empty() {
            return Err(api(400, "", "must specify checks"));
        }
        for n in names {
            if !st.checks.contains_key(*n) {
                return Err(api(400, "", format!("cannot find checks: {n}")));
            }
        }
        let mut changed = Vec::new();
        for n in names {
            if let Some(c) = st.checks.get_mut(*n) {
                let inactive = c.status == "inactive";
                match action {
                    CheckAction::Start if inactive => c.status = "up".into(),
                    CheckAction::Stop if !inactive => c.status = "inactive".into(),
                    _ => continue,
                }
                changed.push(n.to_string());
            }
        }
        Ok(changed)
    }

    fn notify(
        &self,
        key: &str,
        data: &BTreeMap<String, String>,
        repeat_after: Option<Duration>,
    ) -> PebbleResult<String> {
        let mut st = self.enter(format!("notify {key}"))?;
        if !valid_custom_key(key) {
            return Err(api(
                400,
                "",
                format!("invalid key {key:?}: must be in \"example.com/path\" format"),
            ));
        }
        let now = st.now();
        let repeat = repeat_after.map(crate::ops::pebble::go_duration);
        if let Some(n) = st
            .notices
            .iter_mut()
            .find(|n| n.notice_type == "custom" && n.key == key)
        {
            n.occurrences += 1;
            n.last_occurred = now.clone();
            n.last_data = data.clone();
            // Repeated (re-delivered) only when repeat-after has elapsed; we treat any
            // occurrence without repeat-after as a repeat, like Pebble.
            let due = match repeat_after {
                None => true,
                Some(r) => {
                    let last = parse_rfc3339_nanos(&n.last_repeated).unwrap_or(0);
                    let now_n = parse_rfc3339_nanos(&now).unwrap_or(u128::MAX);
                    now_n.saturating_sub(last) >= r.as_nanos()
                }
            };
            if due {
                n.last_repeated = now;
            }
            n.repeat_after = repeat;
            return Ok(n.id.clone());
        }
        let id = st.next_notice.to_string();
        st.next_notice += 1;
        st.notices.push(Notice {
            id: id.clone(),
            user_id: Some(0),
            notice_type: "custom".into(),
            key: key.into(),
            first_occurred: now.clone(),
            last_occurred: now.clone(),
            last_repeated: now,
            occurrences: 1,
            last_data: data.clone(),
            repeat_after: repeat,
            expire_after: Some("168h0m0s".into()),
        });
        Ok(id)
    }

    fn notices(&self, query: &NoticesQuery) -> PebbleResult<Vec<Notice>> {
        let st = self.enter("notices".into())?;
        let mut out: Vec<Notice> = st
            .notices
            .iter()
            .filter(|n| query.types.is_empty() || query.types.contains(&n.notice_type))
            .filter(|n| query.keys.is_empty() || query.keys.contains(&n.key))
            .filter(|n| query.after.as_deref().is_none_or_before(&n.last_repeated))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.last_repeated.cmp(&b.last_repeated));
        Ok(out)
    }

    fn notice(&self, id: &str) -> PebbleResult<Notice> {
        let st = self.enter(format!("notice {id}"))?;
        st.notices
            .iter()
            .find(|n| n.id == id)
            .cloned()
            .ok_or_else(|| api(404, "", format!("cannot find notice with ID {id:?}")))
    }
}

/// Parse our own RFC 3339 output back to nanoseconds since the epoch.
fn parse_rfc3339_nanos(s: &str) -> Option<u128> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // days-from-civil (Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let frac: String = format!("{frac:0<9}").chars().take(9).collect();
    let nanos: u128 = frac.parse().ok()?;
    Some(u128::try_from(secs).ok()? * 1_000_000_000 + nanos)
}

/// Small helpers for optional filters (kept out of the MSRV-sensitive std `is_none_or`).
trait OptFilter {
    fn is_none_or_contained(&self, list: &[String]) -> bool;
}
impl OptFilter for Option<&str> {
    fn is_none_or_contained(&self, list: &[String]) -> bool {
        self.is_none_or(|s| list.iter().any(|x| x == s))
    }
}
trait OptGlob {
    fn is_none_or_glob(&self, name: &str) -> bool;
}
impl OptGlob for Option<&str> {
    fn is_none_or_glob(&self, name: &str) -> bool {
        self.is_none_or(|p| glob(p, name))
    }
}
trait OptAfter {
    fn is_none_or_before(&self, t: &str) -> bool;
}
impl OptAfter for Option<&str> {
    fn is_none_or_before(&self, t: &str) -> bool {
        self.is_none_or(
            |after| match (parse_rfc3339_nanos(after), parse_rfc3339_nanos(t)) {
                (Some(a), Some(b)) => b > a,
                _ => t > after,
            },
        )
    }
}

/// A [`PebbleProvider`] over in-memory containers. Clones share the containers.
#[derive(Debug, Clone, Default)]
pub struct MemoryPebbleProvider {
    containers: Arc<Mutex<BTreeMap<String, MemoryPebble>>>,
}

impl MemoryPebbleProvider {
    /// One connectable [`MemoryPebble`] per container name.
    pub fn new(names: &[&str]) -> MemoryPebbleProvider {
        let p = MemoryPebbleProvider::default();
        for n in names {
            p.insert(n, MemoryPebble::new());
        }
        p
    }

    pub fn insert(&self, name: &str, pebble: MemoryPebble) {
        self.map().insert(name.to_string(), pebble);
    }

    /// The container's Pebble (shared state). An unknown container behaves like one whose
    /// socket is missing: it is created unconnectable.
    pub fn get(&self, name: &str) -> MemoryPebble {
        self.map()
            .entry(name.to_string())
            .or_insert_with(|| {
                let p = MemoryPebble::new();
                p.set_can_connect(false);
                p
            })
            .clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, MemoryPebble>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PebbleProvider for MemoryPebbleProvider {
    fn container(&self, name: &str) -> Box<dyn Pebble + '_> {
        Box::new(self.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn layer(svc: &str, command: &str, startup: &str) -> Layer {
        let mut l = Layer::default();
        l.services.insert(
            svc.into(),
            Service {
                r#override: Some("replace".into()),
                command: Some(command.into()),
                startup: Some(startup.into()),
                ..Service::default()
            },
        );
        l
    }

    #[test]
    fn disconnected_pebble_fails_every_call_with_connection_and_logs_it() {
        let p = MemoryPebble::new();
        p.set_can_connect(false);
        assert!(!p.can_connect());
        assert!(p
            .push("/etc/x", b"x", &PushOptions::default())
            .unwrap_err()
            .is_connection());
        assert!(p.replan(T).unwrap_err().is_connection());
        assert!(p.file("/etc/x").is_none());
        assert_eq!(p.calls(), vec!["system_info", "push /etc/x", "replan"]);
        p.set_can_connect(true);
        assert!(p.can_connect());
    }

    #[test]
    fn layers_combine_by_label_and_duplicate_without_combine_is_400() {
        let p = MemoryPebble::new();
        p.add_layer("redis", &layer("redis", "redis-server a", "enabled"), false)
            .unwrap();
        let err = p
            .add_layer("redis", &layer("redis", "redis-server b", "enabled"), false)
            .unwrap_err();
        assert!(matches!(
            err,
            PebbleError::Api {
                status_code: 400,
                ..
            }
        ));
        p.add_layer("redis", &layer("redis", "redis-server c", "enabled"), true)
            .unwrap();
        assert_eq!(p.layers().len(), 1);
        assert_eq!(
            p.get_plan().unwrap().services["redis"].command.as_deref(),
            Some("redis-server c")
        );
        let mut bad = Layer::default();
        bad.services.insert("x".into(), Service::default());
        assert!(p.add_layer("bad", &bad, true).is_err());
        assert!(!p.plan().services.contains_key("x"));
    }

    #[test]
    fn replan_starts_enabled_services_and_restarts_only_changed_ones() {
        let p = MemoryPebble::new();
        p.add_layer("l", &layer("redis", "redis-server", "enabled"), true)
            .unwrap();
        p.add_layer("m", &layer("other", "sleep 1", "disabled"), true)
            .unwrap();
        let c = p.replan(T).unwrap();
        assert_eq!(c.summary, "Replan service \"redis\"");
        assert_eq!(p.service_state("redis").as_deref(), Some("active"));
        assert_eq!(p.service_state("other").as_deref(), Some("inactive"));
        assert_eq!(p.service_state("nope"), None);

        // Nothing changed: nothing to do.
        let c = p.replan(T).unwrap();
        assert_eq!(c.summary, "Replan - no services");
        assert!(c.tasks.is_empty());

        // Changed definition: stopped and started again.
        p.add_layer(
            "l",
            &layer("redis", "redis-server --port 1", "enabled"),
            true,
        )
        .unwrap();
        let c = p.replan(T).unwrap();
        let kinds: Vec<&str> = c.tasks.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds, vec!["stop", "start"]);
        assert_eq!(p.service_state("redis").as_deref(), Some("active"));
    }

    #[test]
    fn start_stop_restart_change_service_state_with_pebble_summaries() {
        let p = MemoryPebble::new();
        p.add_layer("l", &layer("a", "x", "disabled"), true)
            .unwrap();
        p.add_layer("l2", &layer("b", "y", "disabled"), true)
            .unwrap();
        let c = p
            .service_action_and_wait(ServiceAction::Start, &["a", "b"], T)
            .unwrap();
        assert_eq!(c.summary, "Start service \"a\" and 1 more");
        assert!(c.ready);
        assert_eq!(c.status, "Done");
        let infos = p.services(&["a"]).unwrap();
        assert_eq!(infos.len(), 1);
        assert!(infos[0].is_running());
        p.service_action_and_wait(ServiceAction::Stop, &["a"], T)
            .unwrap();
        assert_eq!(p.service_state("a").as_deref(), Some("inactive"));
        assert_eq!(p.service_state("b").as_deref(), Some("active"));
        let c = p
            .service_action_and_wait(ServiceAction::Restart, &["b"], T)
            .unwrap();
        assert_eq!(c.summary, "Restart service \"b\"");
        assert_eq!(c.tasks.len(), 2);
        let err = p
            .service_action(ServiceAction::Start, &["zzz"])
            .unwrap_err();
        assert!(matches!(
            err,
            PebbleError::Api {
                status_code: 400,
                ..
            }
        ));
        let err = p.service_action(ServiceAction::Autostart, &[]).unwrap_err();
        assert!(matches!(err, PebbleError::Api { ref kind, .. } if kind == "no-default-services"));
    }

    #[test]
    fn failing_start_gives_a_failed_change_with_logs() {
        let p = MemoryPebble::new();
        p.add_layer("l", &layer("a", "false", "enabled"), true)
            .unwrap();
        p.set_service_start_failure("a", Some("exited quickly with code 1"));
        match p.replan(T).unwrap_err() {
            PebbleError::ChangeFailed { err, logs, .. } => {
                assert!(err.contains("Start service \"a\""), "{err}");
                assert!(logs[0].contains("exited quickly"));
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(p.service_state("a").as_deref(), Some("error"));
    }

    #[test]
    fn changes_are_queryable_and_unknown_ids_404() {
        let p = MemoryPebble::new();
        p.add_layer("l", &layer("a", "x", "enabled"), true).unwrap();
        let id = p.service_action(ServiceAction::Replan, &[]).unwrap();
        assert_eq!(p.change(&id).unwrap().kind, "replan");
        assert_eq!(p.wait_change(&id, T).unwrap().id, id);
        assert_eq!(p.changes(ChangeSelect::All, Some("a")).unwrap().len(), 1);
        assert!(p
            .changes(ChangeSelect::InProgress, None)
            .unwrap()
            .is_empty());
        assert!(matches!(
            p.wait_change("999", T).unwrap_err(),
            PebbleError::Api {
                status_code: 404,
                ..
            }
        ));
        assert!(matches!(
            p.abort_change(&id).unwrap_err(),
            PebbleError::Api {
                status_code: 400,
                ..
            }
        ));
    }

    #[test]
    fn push_needs_an_existing_parent_unless_make_dirs() {
        let p = MemoryPebble::new();
        let err = p
            .push(
                "/etc/redis-server/sentinel.conf",
                b"x",
                &PushOptions::default(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, PebbleError::Path { kind, path, .. } if kind == "not-found" && path == "/etc/redis-server/sentinel.conf")
        );
        assert!(p.file("/etc/redis-server").is_none());
        let opts = PushOptions {
            make_dirs: true,
            permissions: Some(0o600),
            user: Some("redis".into()),
            ..PushOptions::default()
        };
        p.push("/etc/redis-server/sentinel.conf", b"port 26379\n", &opts)
            .unwrap();
        let f = p.file("/etc/redis-server/sentinel.conf").unwrap();
        assert_eq!(f.text(), "port 26379\n");
        assert_eq!(f.permissions, 0o600);
        assert_eq!((f.user.as_str(), f.group.as_str()), ("redis", "redis"));
        let d = p.file("/etc/redis-server").unwrap();
        assert!(d.is_dir);
        assert_eq!(d.permissions, 0o755);
        assert_eq!(
            p.pull("/etc/redis-server/sentinel.conf").unwrap(),
            b"port 26379\n"
        );
        assert!(p.exists("/etc/redis-server/sentinel.conf").unwrap());
        assert!(!p.exists("/etc/nothing").unwrap());
        assert!(p
            .calls()
            .contains(&"push /etc/redis-server/sentinel.conf".to_string()));
    }

    #[test]
    fn pull_of_missing_or_directory_is_a_path_error() {
        let p = MemoryPebble::new();
        assert!(p.pull("/etc/missing").unwrap_err().is_not_found());
        assert!(matches!(
            p.pull("/etc").unwrap_err(),
            PebbleError::Path { ref kind, .. } if kind == "generic-file-error"
        ));
    }

    #[test]
    fn list_files_children_pattern_and_itself() {
        let p = MemoryPebble::new();
        p.seed_file("/etc/redis/a.conf", b"1");
        p.seed_file("/etc/redis/b.txt", b"22");
        p.seed_file("/etc/redis/sub/c.conf", b"333");
        let names: Vec<String> = p
            .list_files("/etc/redis", None, false)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, vec!["a.conf", "b.txt", "sub"]);
        let conf = p.list_files("/etc/redis", Some("*.conf"), false).unwrap();
        assert_eq!(conf.len(), 1);
        assert_eq!(conf[0].size, Some(1));
        assert_eq!(conf[0].permissions, "644");
        let me = p.list_files("/etc/redis", None, true).unwrap();
        assert_eq!(me[0].file_type, "directory");
        assert!(matches!(
            p.list_files("/nope", None, false).unwrap_err(),
            PebbleError::Api { status_code: 404, ref kind, .. } if kind == "not-found"
        ));
        assert!(matches!(
            p.list_files("relative", None, false).unwrap_err(),
            PebbleError::Api {
                status_code: 400,
                ..
            }
        ));
    }

    #[test]
    fn make_dir_rules_match_pebble() {
        let p = MemoryPebble::new();
        let plain = MakeDirOptions::default();
        assert!(matches!(
            p.make_dir("/a/b", &plain).unwrap_err(),
            PebbleError::Path { ref kind, .. } if kind == "not-found"
        ));
        let parents = MakeDirOptions {
            make_parents: true,
            permissions: Some(0o700),
            ..MakeDirOptions::default()
        };
        p.make_dir("/a/b", &parents).unwrap();
        assert_eq!(p.file("/a").unwrap().permissions, 0o700);
        p.make_dir("/a/b", &parents).unwrap();
        assert!(matches!(
            p.make_dir("/a/b", &plain).unwrap_err(),
            PebbleError::Path { ref kind, .. } if kind == "generic-file-error"
        ));
    }

    #[test]
    fn remove_rules_match_pebble() {
        let p = MemoryPebble::new();
        p.seed_file("/data/x/y", b"1");
        assert!(matches!(
            p.remove_path("/data/x", false).unwrap_err(),
            PebbleError::Path { ref kind, .. } if kind == "generic-file-error"
        ));
        assert!(p
            .remove_path("/data/missing", false)
            .unwrap_err()
            .is_not_found());
        p.remove_path("/data/missing", true).unwrap();
        p.remove_path("/data/x", true).unwrap();
        assert!(p.file("/data/x/y").is_none());
        assert!(p.file("/data/x").is_none());
        assert!(p.file("/data").is_some());
    }

    #[test]
    fn notify_dedups_by_key_and_counts_occurrences() {
        let p = MemoryPebble::new();
        let mut data = BTreeMap::new();
        data.insert("primary".to_string(), "10.0.0.1".to_string());
        let id1 = p.notify("redis.io/primary-changed", &data, None).unwrap();
        data.insert("primary".to_string(), "10.0.0.2".to_string());
        let id2 = p.notify("redis.io/primary-changed", &data, None).unwrap();
        assert_eq!(id1, id2);
        p.notify("redis.io/other", &BTreeMap::new(), None).unwrap();
        let q = NoticesQuery {
            keys: vec!["redis.io/primary-changed".into()],
            ..NoticesQuery::default()
        };
        let n = p.notices(&q).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].occurrences, 2);
        assert_eq!(n[0].last_data["primary"], "10.0.0.2");
        assert_eq!(p.notice(&id1).unwrap().key, "redis.io/primary-changed");
        assert!(matches!(
            p.notice("77").unwrap_err(),
            PebbleError::Api {
                status_code: 404,
                ..
            }
        ));
        assert!(p.notify("NotAKey", &BTreeMap::new(), None).is_err());
        // `after` filters by last-repeated time.
        let all = p.notices(&NoticesQuery::default()).unwrap();
        assert_eq!(all.len(), 2);
        let after = NoticesQuery {
            after: Some(all[0].last_repeated.clone()),
            ..NoticesQuery::default()
        };
        assert_eq!(p.notices(&after).unwrap().len(), 1);
    }

    #[test]
    fn checks_and_health_follow_check_status() {
        let p = MemoryPebble::new();
        let mut l = Layer::default();
        l.checks.insert(
            "alive".into(),
            crate::ops::pebble::Check {
                r#override: Some("replace".into()),
                level: Some("alive".into()),
                tcp: Some(crate::ops::pebble::TcpCheck {
                    port: 6379,
                    host: None,
                }),
                ..Default::default()
            },
        );
        p.add_layer("c", &l, true).unwrap();
        assert!(p.health(None, &[]).unwrap());
        p.set_check_status("alive", "down");
        assert!(!p.health(Some(CheckLevel::Alive), &[]).unwrap());
        let checks = p.checks(None, &[]).unwrap();
        assert_eq!(checks[0].status, "down");
        assert_eq!(checks[0].threshold, 3);
        assert_eq!(
            p.check_action(CheckAction::Stop, &["alive"]).unwrap(),
            vec!["alive"]
        );
        assert!(p
            .check_action(CheckAction::Stop, &["alive"])
            .unwrap()
            .is_empty());
        assert!(p.health(None, &[]).unwrap());
    }

    #[test]
    fn provider_shares_state_and_unknown_containers_cannot_connect() {
        let provider = MemoryPebbleProvider::new(&["redis", "sentinel"]);
        let handle = provider.get("redis");
        provider
            .container("redis")
            .push("/etc/x", b"1", &PushOptions::default())
            .unwrap();
        assert_eq!(handle.file("/etc/x").unwrap().content, b"1");
        assert!(provider.get("sentinel").file("/etc/x").is_none());
        assert!(!provider.container("nope").can_connect());
        assert!(provider.clone().get("redis").file("/etc/x").is_some());
    }

    #[test]
    fn helpers_glob_keys_and_times() {
        assert!(glob("*.conf", "redis.conf"));
        assert!(!glob("*.conf", "redis.txt"));
        assert!(glob("r?dis[0-9]", "redis7"));
        assert!(!glob("[!r]*", "redis"));
        assert!(valid_custom_key("canonical.com/redis/primary"));
        assert!(!valid_custom_key("canonical/redis"));
        assert!(!valid_custom_key("Canonical.com/x"));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        let t = 1_700_000_000_123_456_789u128;
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_rfc3339_nanos(&rfc3339(t)), Some(t));
        assert_eq!(clean("//a/./b/../c/").as_deref(), Some("/a/c"));
        assert_eq!(clean("rel"), None);
    }
}
