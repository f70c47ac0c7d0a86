//! Services: really starting the plan's commands, supervising them (restart with backoff on
//! exit), and stopping them (SIGTERM, SIGKILL after `kill-delay`). State names and the
//! okay-delay rule follow Pebble's service manager.

use super::changes::{log_line, Status};
use super::{sys, users, Inner, Shared};
use crate::ops::pebble::{parse_go_duration, Plan, Service, ServiceInfo};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// A service that exits sooner than this after starting makes its start fail (Pebble: 1 s).
pub const OKAY_DELAY: Duration = Duration::from_secs(1);
const DEFAULT_BACKOFF_DELAY: Duration = Duration::from_millis(500);
const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;
const DEFAULT_BACKOFF_LIMIT: Duration = Duration::from_secs(30);
const DEFAULT_KILL_DELAY: Duration = Duration::from_secs(5);
/// How long a process may take to die after SIGKILL before a stop is reported as failed.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Lines of recent output kept per service (shown when a start fails).
const KEEP_LINES: usize = 100;
/// Lines of output quoted in a failed start's task log.
const QUOTE_LINES: usize = 20;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Pebble's internal service states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SvcState {
    #[default]
    Initial,
    Starting,
    Running,
    Terminating,
    Killing,
    Stopped,
    Backoff,
    Exited,
}

impl SvcState {
    /// What `GET /v1/services` reports as `current`.
    pub fn current(&self) -> &'static str {
        match self {
            SvcState::Starting | SvcState::Running | SvcState::Terminating | SvcState::Killing => {
                "active"
            }
            SvcState::Backoff => "backoff",
            SvcState::Exited => "error",
            SvcState::Initial | SvcState::Stopped => "inactive",
        }
    }

    fn is_up(&self) -> bool {
        matches!(self, SvcState::Starting | SvcState::Running)
    }
}

/// Runtime record of one service.
#[derive(Debug, Default)]
pub struct ServiceRt {
    pub state: SvcState,
    pub since: Option<SystemTime>,
    /// The definition the current (or last) process was started with.
    pub config: Option<Service>,
    /// Pid (and process group) of the running process.
    pub pid: Option<i32>,
    /// Bumped at every spawn and forced stop, so stale exits and restart timers are ignored.
    pub generation: u64,
    /// Receives the exit code of the current process.
    pub exit_rx: Option<watch::Receiver<Option<i32>>>,
    /// Recent output lines.
    pub logs: VecDeque<String>,
    pub backoff_count: u32,
    pub started: Option<Instant>,
}

impl ServiceRt {
    fn set_state(&mut self, s: SvcState) {
        self.state = s;
        self.since = Some(SystemTime::now());
    }
}

/// What a start or stop task produced: log lines and, on failure, the error.
#[derive(Debug, Default, Clone)]
pub struct TaskOutcome {
    pub logs: Vec<String>,
    pub err: Option<String>,
}

/// Split a Pebble `command` like a shell would, without running a shell: whitespace splits,
/// quotes group, backslash escapes. Pebble's `[ default args ]` brackets are dropped (their
/// content is kept: the defaults apply when no args are given at run time).
pub fn shell_words(cmd: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => {
                            return Err(format!(
                                "cannot parse service command {cmd:?}: unterminated quote"
                            ))
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => {
                                return Err(format!(
                                    "cannot parse service command {cmd:?}: unterminated quote"
                                ))
                            }
                        },
                        Some(c) => cur.push(c),
                        None => {
                            return Err(format!(
                                "cannot parse service command {cmd:?}: unterminated quote"
                            ))
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(n) => cur.push(n),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    // Pebble's "[ default args ]" syntax.
    words.retain(|w| w != "[" && w != "]");
    if words.is_empty() {
        return Err(format!(
            "cannot parse service command {cmd:?}: empty command"
        ));
    }
    Ok(words)
}

fn dur(s: &Option<String>, default: Duration) -> Duration {
    s.as_deref().and_then(parse_go_duration).unwrap_or(default)
}

/// Quote for `/bin/sh` (single quotes).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn find_in_path(exe: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':').filter(|d| !d.is_empty()).find_map(|d| {
        let p = Path::new(d).join(exe);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
    })
}

/// A name `hostname` accepts: letters, digits, `-` and `.`, at most 64 bytes.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Create `root/<d>` (owned like the host's `/<d>` when that exists, as an image would have
/// it) and the host mountpoint `/<d>`.
fn prepare_bind_dir(root: &Path, dir: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let rel = dir.trim_start_matches('/');
    let inside = root.join(rel);
    if !inside.exists() {
        std::fs::create_dir_all(&inside)?;
        if let Ok(host) = std::fs::metadata(Path::new("/").join(rel)) {
            let _ = std::os::unix::fs::chown(&inside, Some(host.uid()), Some(host.gid()));
            let _ = std::fs::set_permissions(
                &inside,
                std::os::unix::fs::PermissionsExt::from_mode(host.mode() & 0o7777),
            );
        }
    }
    std::fs::create_dir_all(Path::new("/").join(rel))?;
    Ok(inside)
}

/// Build the command line for one service (or an exec check), per the daemon's privileges.
pub(super) fn build_command(
    shared: &Shared,
    name: &str,
    cfg: &Service,
) -> Result<tokio::process::Command, String> {
    let mut argv = shell_words(cfg.command.as_deref().unwrap_or(""))?;
    // An executable only the image has (the container root's copy, often a link to a host
    // stand-in such as Debian's exporter for the image's `/bin/redis_exporter`) runs from
    // there: the host path does not exist in the service's mount namespace.
    if let Some(exe) = argv.first_mut() {
        if exe.starts_with('/') && !Path::new(exe.as_str()).exists() {
            if let Some(p) = super::files::host_path(&shared.cfg.root, exe)
                .ok()
                .and_then(|p| std::fs::canonicalize(p).ok())
            {
                *exe = p.to_string_lossy().into_owned();
            }
        }
    }
    let (uid, gid) = if shared.is_root {
        users::resolve(
            cfg.user.as_deref(),
            cfg.user_id,
            cfg.group.as_deref(),
            cfg.group_id,
        )
        .map_err(|e| format!("cannot start service: {e}"))?
    } else {
        (None, None)
    };
    let user_entry = uid.and_then(users::user_by_uid);

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), DEFAULT_PATH.into());
    env.insert("JUJU_CONTAINER_NAME".into(), shared.cfg.container.clone());
    let socket =
        std::path::absolute(&shared.cfg.socket).unwrap_or_else(|_| shared.cfg.socket.clone());
    let pod_socket = shared.use_namespaces && shared.cfg.container_dir.is_some();
    let socket_var = if pod_socket {
        // The container dir is bound there (below), as in a Juju pod.
        format!("{}/pebble.socket", super::POD_CONTAINER_DIR)
    } else {
        socket.to_string_lossy().into_owned()
    };
    env.insert("PEBBLE_SOCKET".into(), socket_var);
    if let Some(u) = &user_entry {
        env.insert("HOME".into(), u.home.clone());
        env.insert("USER".into(), u.name.clone());
    } else if uid.is_none() {
        env.insert("HOME".into(), "/root".into());
        env.insert("USER".into(), "root".into());
    }
    env.extend(shared.cfg.env.clone());
    env.extend(cfg.environment.clone());

    // The executable must exist before we go through unshare/setpriv, to fail like Pebble.
    let exe = &argv[0];
    let path_var = env.get("PATH").cloned().unwrap_or_default();
    let found = if exe.contains('/') {
        let host_view = Path::new(exe).exists();
        let root_view = super::files::host_path(&shared.cfg.root, exe).is_ok_and(|p| p.exists());
        host_view || root_view
    } else {
        find_in_path(exe, &path_var).is_some()
    };
    if !found {
        return Err(format!(
            "cannot start service: exec: {exe:?}: executable file not found in $PATH"
        ));
    }

    let mut setpriv: Vec<String> = Vec::new();
    let have_setpriv = find_in_path("setpriv", DEFAULT_PATH).is_some();
    if have_setpriv {
        setpriv.push("setpriv".into());
        if let Some(u) = uid {
            setpriv.push(format!("--reuid={u}"));
            setpriv.push(format!("--regid={}", gid.unwrap_or(u)));
            setpriv.push(
                if user_entry.is_some() {
                    "--init-groups"
                } else {
                    "--clear-groups"
                }
                .into(),
            );
        } else if let Some(g) = gid {
            setpriv.push(format!("--regid={g}"));
            setpriv.push("--clear-groups".into());
        }
        // Die with the daemon, whatever happens to it.
        setpriv.push("--pdeathsig=SIGKILL".into());
        setpriv.push("--".into());
    }

    let wd = cfg.working_dir.clone().filter(|w| !w.is_empty());
    let mut cmd = if shared.use_namespaces {
        let mut script = String::from("set -e\n");
        for d in shared.cfg.bind_dirs() {
            let inside = prepare_bind_dir(&shared.cfg.root, &d)
                .map_err(|e| format!("cannot start service: cannot prepare {d}: {e}"))?;
            script.push_str(&format!(
                "mount --bind {} {}\n",
                sh_quote(&inside.to_string_lossy()),
                sh_quote(&format!("/{}", d.trim_start_matches('/')))
            ));
        }
        let pod_dirs = [
            (&shared.cfg.container_dir, super::POD_CONTAINER_DIR),
            (&shared.cfg.charm_bin_dir, super::POD_CHARM_BIN_DIR),
        ];
        for (host_dir, mountpoint) in pod_dirs {
            let Some(host_dir) = host_dir else { continue };
            std::fs::create_dir_all(mountpoint).map_err(|e| {
                format!("cannot start service: cannot create mountpoint {mountpoint}: {e}")
            })?;
            let host_dir = std::path::absolute(host_dir).unwrap_or_else(|_| host_dir.clone());
            script.push_str(&format!(
                "mount --bind {} {}\n",
                sh_quote(&host_dir.to_string_lossy()),
                sh_quote(mountpoint)
            ));
        }
        if let Some(h) = &shared.cfg.hosts_file {
            script.push_str(&format!(
                "mount --bind {} /etc/hosts\n",
                sh_quote(&h.to_string_lossy())
            ));
        }
        // A pod's containers share the pod's hostname: give services the one the model set.
        let hostname = shared
            .cfg
            .env
            .get("HOSTNAME")
            .filter(|h| valid_hostname(h))
            .cloned();
        if let Some(h) = &hostname {
            script.push_str(&format!("hostname {}\n", sh_quote(h)));
        }
        if let Some(w) = &wd {
            script.push_str(&format!("cd {}\n", sh_quote(w)));
        }
        let mut exec = String::from("exec ");
        for s in &setpriv {
            exec.push_str(&sh_quote(s));
            exec.push(' ');
        }
        exec.push_str("\"$@\"\n");
        script.push_str(&exec);
        let mut c = tokio::process::Command::new("unshare");
        if hostname.is_some() {
            c.arg("--uts");
        }
        c.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            &script,
            "sh",
        ]);
        c.args(&argv);
        c
    } else {
        let mut full = setpriv.clone();
        full.extend(argv.iter().cloned());
        let mut c = tokio::process::Command::new(&full[0]);
        c.args(&full[1..]);
        if let Some(w) = &wd {
            let host = Path::new(w);
            if host.is_dir() {
                c.current_dir(host);
            } else if let Ok(p) = super::files::host_path(&shared.cfg.root, w) {
                c.current_dir(p);
            }
        }
        c
    };
    cmd.env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let _ = name;
    Ok(cmd)
}

/// Append one service output line to the log file and the service's recent lines.
fn record_line(shared: &Shared, name: &str, line: &str) {
    let stamped = format!(
        "{} [{}] {}\n",
        super::time::rfc3339(SystemTime::now()),
        name,
        line
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(shared.cfg.log_path())
    {
        let _ = f.write_all(stamped.as_bytes());
    }
    let mut guard = shared.lock();
    let inner = &mut *guard;
    inner
        .logfwd
        .line(&inner.plan, name, line, SystemTime::now());
    if let Some(s) = inner.services.get_mut(name) {
        s.logs.push_back(line.to_string());
        while s.logs.len() > KEEP_LINES {
            s.logs.pop_front();
        }
    }
}

async fn pump<R: AsyncRead + Unpin>(shared: Arc<Shared>, name: String, r: R) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while buf.last() == Some(&b'\n') || buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                record_line(&shared, &name, &String::from_utf8_lossy(&buf));
            }
        }
    }
}

/// Spawn the service's process (lock held) and its supervisor tasks; returns the generation
/// and a receiver of its exit code.
fn spawn_locked(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    name: &str,
    cfg: &Service,
    state: SvcState,
) -> Result<(u64, watch::Receiver<Option<i32>>), String> {
    let mut cmd = build_command(shared, name, cfg)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start service: {e}"))?;
    let pid = child.id().map(|p| p as i32);
    let svc = inner.services.entry(name.to_string()).or_default();
    svc.generation += 1;
    let gen = svc.generation;
    svc.pid = pid;
    svc.set_state(state);
    svc.config = Some(cfg.clone());
    svc.started = Some(Instant::now());
    svc.logs.clear();
    let (tx, rx) = watch::channel(None);
    svc.exit_rx = Some(rx.clone());

    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(shared.clone(), name.to_string(), out)));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(shared.clone(), name.to_string(), err)));
    }
    let shared2 = shared.clone();
    let name2 = name.to_string();
    tokio::spawn(async move {
        use std::os::unix::process::ExitStatusExt;
        let code = match child.wait().await {
            Ok(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
            Err(_) => -1,
        };
        // Like Pebble, take the rest of the process group down with the leader.
        if let Some(p) = pid {
            let _ = sys::kill_group(p, sys::SIGKILL);
        }
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_millis(500), p).await;
        }
        let _ = tx.send(Some(code));
        on_exit(&shared2, &name2, gen, code);
    });
    Ok((gen, rx))
}

fn on_exit(shared: &Arc<Shared>, name: &str, gen: u64, code: i32) {
    let mut inner = shared.lock();
    let Some(svc) = inner.services.get_mut(name) else {
        return;
    };
    if svc.generation != gen {
        return;
    }
    svc.pid = None;
    match svc.state {
        SvcState::Starting => svc.set_state(SvcState::Exited),
        SvcState::Terminating | SvcState::Killing => svc.set_state(SvcState::Stopped),
        SvcState::Running => {
            let cfg = svc.config.clone().unwrap_or_default();
            let action = if code == 0 {
                cfg.on_success.as_deref().unwrap_or("restart").to_string()
            } else {
                cfg.on_failure.as_deref().unwrap_or("restart").to_string()
            };
            if action == "restart" && !shared.shutting_down.load(Ordering::SeqCst) {
                let limit = dur(&cfg.backoff_limit, DEFAULT_BACKOFF_LIMIT);
                if svc.started.is_some_and(|s| s.elapsed() >= limit) {
                    svc.backoff_count = 0;
                }
                let base = dur(&cfg.backoff_delay, DEFAULT_BACKOFF_DELAY);
                let factor = cfg
                    .backoff_factor
                    .unwrap_or(DEFAULT_BACKOFF_FACTOR)
                    .max(1.0);
                let delay = base
                    .mul_f64(factor.powi(svc.backoff_count.min(64) as i32))
                    .min(limit);
                svc.backoff_count = svc.backoff_count.saturating_add(1);
                svc.set_state(SvcState::Backoff);
                drop(inner);
                record_line(
                    shared,
                    "pebble",
                    &format!(
                        "Service {name:?} exited with code {code}; restarting in {}",
                        super::notices::go_duration_string(delay)
                    ),
                );
                let shared = shared.clone();
                let name = name.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    restart_after_backoff(&shared, &name, gen);
                });
                return;
            }
            svc.set_state(SvcState::Exited);
            drop(inner);
            record_line(
                shared,
                "pebble",
                &format!(
                    "Service {name:?} exited with code {code} (action {action:?}: not restarting)"
                ),
            );
        }
        _ => {}
    }
}

fn restart_after_backoff(shared: &Arc<Shared>, name: &str, gen: u64) {
    if shared.shutting_down.load(Ordering::SeqCst) {
        return;
    }
    let mut inner = shared.lock();
    let ok = inner
        .services
        .get(name)
        .is_some_and(|s| s.generation == gen && s.state == SvcState::Backoff);
    if !ok {
        return;
    }
    let Some(cfg) = inner.plan.services.get(name).cloned() else {
        if let Some(s) = inner.services.get_mut(name) {
            s.set_state(SvcState::Stopped);
        }
        return;
    };
    // Keep the backoff count across the respawn.
    let count = inner
        .services
        .get(name)
        .map(|s| s.backoff_count)
        .unwrap_or(0);
    let res = spawn_locked(shared, &mut inner, name, &cfg, SvcState::Running);
    if let Some(s) = inner.services.get_mut(name) {
        s.backoff_count = count;
        if res.is_err() {
            s.set_state(SvcState::Exited);
        }
    }
}

/// Start one service and wait out the okay-delay. Already running: a no-op with a log line.
pub async fn start_service(shared: &Arc<Shared>, name: &str) -> TaskOutcome {
    let (gen, mut rx) = {
        let mut inner = shared.lock();
        if shared.shutting_down.load(Ordering::SeqCst) {
            return TaskOutcome {
                err: Some("cannot start service: daemon is shutting down".into()),
                ..TaskOutcome::default()
            };
        }
        let Some(cfg) = inner.plan.services.get(name).cloned() else {
            return TaskOutcome {
                err: Some(format!("service {name:?} does not exist")),
                ..TaskOutcome::default()
            };
        };
        match inner.services.get(name).map(|s| s.state) {
            Some(SvcState::Starting) | Some(SvcState::Running) => {
                return TaskOutcome {
                    logs: vec![log_line(
                        "INFO",
                        &format!("Service {name:?} already started."),
                    )],
                    err: None,
                }
            }
            Some(SvcState::Terminating) | Some(SvcState::Killing) => {
                return TaskOutcome {
                    err: Some(format!(
                        "cannot start service {name:?} while it is stopping"
                    )),
                    ..TaskOutcome::default()
                }
            }
            _ => {}
        }
        if let Some(s) = inner.services.get_mut(name) {
            s.backoff_count = 0;
        }
        match spawn_locked(shared, &mut inner, name, &cfg, SvcState::Starting) {
            Ok(x) => x,
            Err(e) => {
                let s = inner.services.entry(name.to_string()).or_default();
                s.set_state(SvcState::Exited);
                return TaskOutcome {
                    logs: vec![log_line("ERROR", &e)],
                    err: Some(e),
                };
            }
        }
    };
    tokio::select! {
        _ = tokio::time::sleep(OKAY_DELAY) => {
            let mut inner = shared.lock();
            if let Some(s) = inner.services.get_mut(name) {
                if s.generation == gen && s.state == SvcState::Starting {
                    s.set_state(SvcState::Running);
                }
            }
            TaskOutcome::default()
        }
        r = rx.wait_for(|v| v.is_some()) => {
            let code = r.ok().and_then(|v| *v).unwrap_or(-1);
            let lines: Vec<String> = {
                let inner = shared.lock();
                inner.services.get(name).map(|s| {
                    let n = s.logs.len();
                    s.logs.iter().skip(n.saturating_sub(QUOTE_LINES)).cloned().collect()
                }).unwrap_or_default()
            };
            let err = format!("cannot start service: exited quickly with code {code}");
            let mut logs = Vec::new();
            if !lines.is_empty() {
                let quoted: Vec<String> = lines.iter().map(|l| format!("    {l}")).collect();
                logs.push(log_line("INFO", &format!("Most recent service output:\n{}", quoted.join("\n"))));
            }
            logs.push(log_line("ERROR", &err));
            TaskOutcome { logs, err: Some(err) }
        }
    }
}

/// Stop one service: SIGTERM to its process group, SIGKILL after its kill-delay.
pub async fn stop_service(shared: &Arc<Shared>, name: &str) -> TaskOutcome {
    let (mut rx, pid, kill_delay) = {
        let mut inner = shared.lock();
        let Some(svc) = inner.services.get_mut(name) else {
            return TaskOutcome::default();
        };
        match svc.state {
            SvcState::Backoff => {
                svc.generation += 1;
                svc.set_state(SvcState::Stopped);
                return TaskOutcome::default();
            }
            SvcState::Starting | SvcState::Running => {
                svc.set_state(SvcState::Terminating);
                if let Some(p) = svc.pid {
                    let _ = sys::kill_group(p, sys::SIGTERM);
                }
            }
            SvcState::Terminating | SvcState::Killing => {}
            _ => return TaskOutcome::default(),
        }
        let Some(rx) = svc.exit_rx.clone() else {
            svc.set_state(SvcState::Stopped);
            return TaskOutcome::default();
        };
        let kd = dur(
            &svc.config.as_ref().and_then(|c| c.kill_delay.clone()),
            DEFAULT_KILL_DELAY,
        );
        (rx, svc.pid, kd)
    };
    if tokio::time::timeout(kill_delay, rx.wait_for(|v| v.is_some()))
        .await
        .is_ok()
    {
        return TaskOutcome::default();
    }
    {
        let mut inner = shared.lock();
        if let Some(svc) = inner.services.get_mut(name) {
            if svc.state == SvcState::Terminating {
                svc.set_state(SvcState::Killing);
            }
        }
    }
    if let Some(p) = pid {
        let _ = sys::kill_group(p, sys::SIGKILL);
    }
    let logs = vec![log_line(
        "INFO",
        &format!("Service {name:?} did not stop after SIGTERM; sent SIGKILL."),
    )];
    if tokio::time::timeout(KILL_WAIT, rx.wait_for(|v| v.is_some()))
        .await
        .is_ok()
    {
        return TaskOutcome { logs, err: None };
    }
    TaskOutcome {
        logs,
        err: Some("process still running after SIGKILL".into()),
    }
}

/// SIGKILL every service's process group at once and forget them (a pod dying; also the
/// last resort at shutdown). No restart follows.
pub fn kill_all(shared: &Shared) {
    let mut inner = shared.lock();
    for svc in inner.services.values_mut() {
        if let Some(p) = svc.pid.take() {
            let _ = sys::kill_group(p, sys::SIGKILL);
        }
        svc.generation += 1;
        if !matches!(svc.state, SvcState::Initial | SvcState::Exited) {
            svc.set_state(SvcState::Stopped);
        }
    }
}

/// Stop every service gracefully, concurrently (daemon shutdown).
pub async fn stop_all(shared: &Arc<Shared>) {
    shared.shutting_down.store(true, Ordering::SeqCst);
    let names: Vec<String> = shared
        .lock()
        .services
        .iter()
        .filter(|(_, s)| s.pid.is_some() || s.state == SvcState::Backoff)
        .map(|(n, _)| n.clone())
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for n in names {
        let shared = shared.clone();
        set.spawn(async move { stop_service(&shared, &n).await });
    }
    while set.join_next().await.is_some() {}
}

/// `GET /v1/services` entries for the plan's services (all, or those named).
pub fn infos(inner: &Inner, names: &[String]) -> Vec<ServiceInfo> {
    inner
        .plan
        .services
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
        .map(|(n, cfg)| {
            let rt = inner.services.get(n);
            ServiceInfo {
                name: n.clone(),
                startup: cfg.startup.clone().unwrap_or_else(|| "disabled".into()),
                current: rt.map(|s| s.state.current()).unwrap_or("inactive").into(),
                current_since: rt.and_then(|s| s.since).map(super::time::rfc3339),
            }
        })
        .collect()
}

/// The named services plus everything they `require`, in waves: each wave can start
/// concurrently once the previous ones are up (`after`/`before` ordering).
pub fn start_waves(plan: &Plan, names: &[String]) -> Result<Vec<Vec<String>>, String> {
    let mut set = BTreeSet::new();
    let mut stack: Vec<String> = names.to_vec();
    while let Some(n) = stack.pop() {
        let Some(svc) = plan.services.get(&n) else {
            return Err(format!("service {n:?} does not exist"));
        };
        if set.insert(n.clone()) {
            stack.extend(svc.requires.iter().cloned());
        }
    }
    order_waves(plan, &set)
}

/// Kahn's algorithm over `after`/`before` restricted to `set`, grouped by depth.
fn order_waves(plan: &Plan, set: &BTreeSet<String>) -> Result<Vec<Vec<String>>, String> {
    let mut preds: BTreeMap<&str, BTreeSet<&str>> =
        set.iter().map(|n| (n.as_str(), BTreeSet::new())).collect();
    for n in set {
        let svc = &plan.services[n];
        for a in &svc.after {
            if set.contains(a) {
                preds.entry(n.as_str()).or_default().insert(a.as_str());
            }
        }
        for b in &svc.before {
            if set.contains(b) {
                preds.entry(b.as_str()).or_default().insert(n.as_str());
            }
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut waves = Vec::new();
    while done.len() < set.len() {
        let wave: Vec<&str> = preds
            .iter()
            .filter(|(n, p)| !done.contains(*n) && p.iter().all(|x| done.contains(x)))
            .map(|(n, _)| *n)
            .collect();
        if wave.is_empty() {
            let left: Vec<&str> = preds
                .keys()
                .filter(|n| !done.contains(*n))
                .copied()
                .collect();
            return Err(format!(
                "services in before/after loop: {}",
                left.join(", ")
            ));
        }
        done.extend(wave.iter().copied());
        waves.push(wave.into_iter().map(str::to_string).collect());
    }
    Ok(waves)
}

/// Stop order: the reverse of the start order of `names` (dependents first).
pub fn stop_order(plan: &Plan, names: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = names
        .iter()
        .filter(|n| plan.services.contains_key(*n))
        .cloned()
        .collect();
    let mut order: Vec<String> = order_waves(plan, &set)
        .map(|w| w.into_iter().flatten().collect())
        .unwrap_or_else(|_| set.iter().cloned().collect());
    // Services no longer in the plan can be stopped in any order, first.
    let mut gone: Vec<String> = names
        .iter()
        .filter(|n| !plan.services.contains_key(*n))
        .cloned()
        .collect();
    order.reverse();
    gone.extend(order);
    gone
}

/// What a replan does: stop running services whose definition changed (or vanished), and
/// start `startup: enabled` services that are not up, plus the ones just stopped.
pub fn replan_sets(inner: &Inner) -> (Vec<String>, Vec<String>) {
    let mut stop = Vec::new();
    for (name, rt) in &inner.services {
        if !(rt.state.is_up() || rt.state == SvcState::Backoff) {
            continue;
        }
        if inner.plan.services.get(name) != rt.config.as_ref() {
            stop.push(name.clone());
        }
    }
    let mut start = Vec::new();
    for (name, cfg) in &inner.plan.services {
        let up = inner.services.get(name).is_some_and(|s| s.state.is_up());
        let enabled = cfg.startup.as_deref() == Some("enabled");
        if stop.contains(name) || (enabled && !up) {
            start.push(name.clone());
        }
    }
    (stop, start)
}

/// Is this service up (starting or running)?
pub fn is_up(inner: &Inner, name: &str) -> bool {
    inner.services.get(name).is_some_and(|s| s.state.is_up())
}

/// Create a change with stop tasks (in order) then start tasks (in waves), run it in the
/// background, and return its id.
pub fn submit_change(
    shared: &Arc<Shared>,
    kind: &str,
    summary: &str,
    services: &[String],
    stops: Vec<String>,
    waves: Vec<Vec<String>>,
) -> u64 {
    let (id, stop_tasks, wave_tasks) = {
        let mut inner = shared.lock();
        let id = inner.changes.new_change(kind, summary, services);
        let stop_tasks: Vec<(u64, String)> = stops
            .into_iter()
            .map(|n| {
                (
                    inner
                        .changes
                        .add_task(id, "stop", &format!("Stop service {n:?}")),
                    n,
                )
            })
            .collect();
        let wave_tasks: Vec<Vec<(u64, String)>> = waves
            .into_iter()
            .map(|w| {
                w.into_iter()
                    .map(|n| {
                        (
                            inner
                                .changes
                                .add_task(id, "start", &format!("Start service {n:?}")),
                            n,
                        )
                    })
                    .collect()
            })
            .collect();
        if let Some(c) = inner.changes.get_mut(id) {
            super::changes::ChangeStore::stamp(c);
        }
        (id, stop_tasks, wave_tasks)
    };
    shared.changes_updated();
    let shared = shared.clone();
    tokio::spawn(async move {
        run_change(shared, id, stop_tasks, wave_tasks).await;
    });
    id
}

fn aborted(shared: &Shared, change: u64) -> bool {
    shared.lock().changes.get(change).is_some_and(|c| c.aborted)
}

fn set_task(shared: &Shared, change: u64, task: u64, status: Status, out: TaskOutcome) {
    shared
        .lock()
        .changes
        .set_task(change, task, status, out.err, out.logs);
    shared.changes_updated();
}

async fn run_change(
    shared: Arc<Shared>,
    change: u64,
    stops: Vec<(u64, String)>,
    waves: Vec<Vec<(u64, String)>>,
) {
    for (task, name) in stops {
        if aborted(&shared, change) {
            set_task(&shared, change, task, Status::Hold, TaskOutcome::default());
            continue;
        }
        set_task(&shared, change, task, Status::Doing, TaskOutcome::default());
        let out = stop_service(&shared, &name).await;
        let st = if out.err.is_some() {
            Status::Error
        } else {
            Status::Done
        };
        set_task(&shared, change, task, st, out);
    }
    for wave in waves {
        let mut set = tokio::task::JoinSet::new();
        for (task, name) in wave {
            if aborted(&shared, change) {
                set_task(&shared, change, task, Status::Hold, TaskOutcome::default());
                continue;
            }
            set_task(&shared, change, task, Status::Doing, TaskOutcome::default());
            let shared = shared.clone();
            set.spawn(async move { (task, start_service(&shared, &name).await) });
        }
        while let Some(r) = set.join_next().await {
            if let Ok((task, out)) = r {
                let st = if out.err.is_some() {
                    Status::Error
                } else {
                    Status::Done
                };
                set_task(&shared, change, task, st, out);
            }
        }
    }
}

/// Restart a service outside any change (on-check-failure: restart).
pub async fn restart_quietly(shared: &Arc<Shared>, name: &str) {
    let _ = stop_service(shared, name).await;
    let _ = start_service(shared, name).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell_without_one() {
        assert_eq!(
            shell_words("redis-server /etc/redis-server/redis.conf").unwrap(),
            vec!["redis-server", "/etc/redis-server/redis.conf"]
        );
        assert_eq!(
            shell_words(r#"sh -c 'echo "a b"; exit 3' x\ y"#).unwrap(),
            vec!["sh", "-c", "echo \"a b\"; exit 3", "x y"]
        );
        assert_eq!(
            shell_words("cmd [ --default ]").unwrap(),
            vec!["cmd", "--default"]
        );
        assert!(shell_words("'open").is_err());
        assert!(shell_words("   ").is_err());
    }

    fn svc(after: &[&str], requires: &[&str]) -> Service {
        Service {
            command: Some("x".into()),
            after: after.iter().map(|s| s.to_string()).collect(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
            ..Service::default()
        }
    }

    #[test]
    fn start_waves_follow_after_and_pull_in_requires() {
        let mut plan = Plan::default();
        plan.services.insert("a".into(), svc(&[], &[]));
        plan.services.insert("b".into(), svc(&["a"], &["a"]));
        plan.services.insert("c".into(), svc(&[], &[]));
        let waves = start_waves(&plan, &["b".into(), "c".into()]).unwrap();
        assert_eq!(
            waves,
            vec![
                vec!["a".to_string(), "c".to_string()],
                vec!["b".to_string()]
            ]
        );
        assert_eq!(stop_order(&plan, &["a".into(), "b".into()]), vec!["b", "a"]);
        plan.services.insert("a".into(), svc(&["b"], &[]));
        assert!(start_waves(&plan, &["b".into()])
            .unwrap_err()
            .contains("loop"));
        assert!(start_waves(&plan, &["zz".into()]).is_err());
    }
}
