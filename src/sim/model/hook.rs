//! Running one hook or action the way the Juju unit agent does (contract §1.2–1.3): the exact
//! environment (nothing inherited but what Juju sets), cwd = charm dir, stdin = /dev/null,
//! stdout/stderr appended line by line to the unit log, and, as root, a private mount
//! namespace in which `/charm/containers` is the unit's containers dir and `/etc/hosts` the
//! model's hosts file, so the charm finds `/charm/containers/<c>/pebble.socket` and resolves
//! pod names exactly as in a sidecar pod.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

/// The relation a relation hook is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationRef {
    pub endpoint: String,
    pub id: u32,
}

/// A Pebble custom notice a hook is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRef {
    pub id: String,
    pub notice_type: String,
    pub key: String,
}

/// A storage instance a storage hook is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageRef {
    /// `<name>/<n>`.
    pub id: String,
    /// Where the charm container sees it (`/var/lib/juju/storage/<name>/<n>`).
    pub location: String,
    pub kind: String,
}

/// A secret a secret hook is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// `secret:<id>`.
    pub id: String,
    pub label: Option<String>,
    /// Only for secret-remove and secret-expired.
    pub revision: Option<u64>,
}

/// One queued hook: the name plus every per-kind detail that becomes an env variable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HookSpec {
    pub name: String,
    pub relation: Option<RelationRef>,
    pub remote_unit: Option<String>,
    pub remote_app: Option<String>,
    pub departing_unit: Option<String>,
    pub workload: Option<String>,
    pub notice: Option<NoticeRef>,
    /// The Pebble check of a `-pebble-check-failed` / `-recovered` hook.
    #[serde(default)]
    pub check: Option<String>,
    pub storage: Option<StorageRef>,
    pub secret: Option<SecretRef>,
}

impl HookSpec {
    /// A plain hook (`install`, `start`, ...).
    pub fn plain(name: &str) -> HookSpec {
        HookSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// A relation hook `<endpoint>-relation-<kind>`.
    pub fn relation(
        endpoint: &str,
        id: u32,
        kind: &str,
        remote_app: &str,
        remote_unit: Option<&str>,
    ) -> HookSpec {
        HookSpec {
            name: format!("{endpoint}-relation-{kind}"),
            relation: Some(RelationRef {
                endpoint: endpoint.to_string(),
                id,
            }),
            remote_app: Some(remote_app.to_string()),
            remote_unit: remote_unit.map(str::to_string),
            ..Default::default()
        }
    }

    /// A workload hook `<container>-pebble-<suffix>`.
    pub fn workload(container: &str, suffix: &str) -> HookSpec {
        HookSpec {
            name: format!("{container}-pebble-{suffix}"),
            workload: Some(container.to_string()),
            ..Default::default()
        }
    }
}

/// An action invocation queued on a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    pub id: u64,
    pub name: String,
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// Model-wide and unit-wide facts that go into every hook's environment.
#[derive(Debug, Clone)]
pub struct HookEnv {
    pub unit: String,
    pub model_name: String,
    pub model_uuid: String,
    pub juju_version: String,
    pub charm_dir: PathBuf,
    pub tools_dir: PathBuf,
    pub agent_socket: PathBuf,
    pub api_address: String,
    /// Where the charm finds `<c>/pebble.socket` when no mount namespace is used.
    pub containers_dir: Option<PathBuf>,
}

/// The complete environment of one dispatch (contract §1.3), and nothing else.
pub fn environment(
    env: &HookEnv,
    context_id: &str,
    hook: Option<&HookSpec>,
    action: Option<&ActionSpec>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        vars.insert(k.to_string(), v);
    };
    let charm = env.charm_dir.display().to_string();
    set(
        "PATH",
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", env.tools_dir.display()),
    );
    set("JUJU_CHARM_DIR", charm.clone());
    set("CHARM_DIR", charm);
    set("JUJU_CONTEXT_ID", context_id.to_string());
    set(
        "JUJU_AGENT_SOCKET_ADDRESS",
        env.agent_socket.display().to_string(),
    );
    set("JUJU_AGENT_SOCKET_NETWORK", "unix".into());
    set("JUJU_UNIT_NAME", env.unit.clone());
    set("JUJU_MODEL_NAME", env.model_name.clone());
    set("JUJU_MODEL_UUID", env.model_uuid.clone());
    set("JUJU_VERSION", env.juju_version.clone());
    set("JUJU_API_ADDRESSES", env.api_address.clone());
    set("JUJU_MACHINE_ID", String::new());
    set("JUJU_AVAILABILITY_ZONE", String::new());
    set("JUJU_CHARM_HTTP_PROXY", String::new());
    set("JUJU_CHARM_HTTPS_PROXY", String::new());
    set("JUJU_CHARM_FTP_PROXY", String::new());
    set("JUJU_CHARM_NO_PROXY", String::new());
    set("APT_LISTCHANGES_FRONTEND", "none".into());
    set("DEBIAN_FRONTEND", "noninteractive".into());
    set("LANG", "C.UTF-8".into());
    if let Some(dir) = &env.containers_dir {
        set("CHARM_CONTAINERS_DIR", dir.display().to_string());
    }
    if let Some(a) = action {
        set("JUJU_DISPATCH_PATH", format!("actions/{}", a.name));
        set("JUJU_HOOK_NAME", String::new());
        set("JUJU_ACTION_NAME", a.name.clone());
        set("JUJU_ACTION_UUID", a.id.to_string());
        set("JUJU_ACTION_TAG", format!("action-{}", a.id));
    }
    if let Some(h) = hook {
        set("JUJU_DISPATCH_PATH", format!("hooks/{}", h.name));
        set("JUJU_HOOK_NAME", h.name.clone());
        if let Some(r) = &h.relation {
            set("JUJU_RELATION", r.endpoint.clone());
            set("JUJU_RELATION_ID", format!("{}:{}", r.endpoint, r.id));
            set("JUJU_REMOTE_APP", h.remote_app.clone().unwrap_or_default());
            set(
                "JUJU_REMOTE_UNIT",
                h.remote_unit.clone().unwrap_or_default(),
            );
            if let Some(d) = &h.departing_unit {
                set("JUJU_DEPARTING_UNIT", d.clone());
            }
        }
        if let Some(w) = &h.workload {
            set("JUJU_WORKLOAD_NAME", w.clone());
        }
        if let Some(c) = &h.check {
            set("JUJU_PEBBLE_CHECK_NAME", c.clone());
        }
        if let Some(n) = &h.notice {
            set("JUJU_NOTICE_ID", n.id.clone());
            set("JUJU_NOTICE_TYPE", n.notice_type.clone());
            set("JUJU_NOTICE_KEY", n.key.clone());
        }
        if let Some(s) = &h.storage {
            set("JUJU_STORAGE_ID", s.id.clone());
            set("JUJU_STORAGE_LOCATION", s.location.clone());
            set("JUJU_STORAGE_KIND", s.kind.clone());
        }
        if let Some(s) = &h.secret {
            set("JUJU_SECRET_ID", s.id.clone());
            set("JUJU_SECRET_LABEL", s.label.clone().unwrap_or_default());
            if let Some(r) = s.revision {
                set("JUJU_SECRET_REVISION", r.to_string());
            }
        }
    }
    vars
}

/// How to isolate the hook process.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// Run as root inside a private mount namespace with these bind mounts.
    Namespace {
        containers_dir: PathBuf,
        hosts_file: PathBuf,
    },
    /// Run directly (not root): the charm uses `CHARM_CONTAINERS_DIR`.
    None,
}

/// Mount point of the unit's containers dir inside the hook's namespace.
pub const POD_CONTAINERS_DIR: &str = "/charm/containers";

/// A shared, append-only unit log.
pub type UnitLog = Arc<Mutex<std::fs::File>>;

/// Open (append) a unit log.
pub fn open_log(path: &Path) -> std::io::Result<UnitLog> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(Arc::new(Mutex::new(f)))
}

/// Append one line to a unit log, formatted like `juju debug-log`.
pub fn log_line(log: &UnitLog, level: &str, logger: &str, line: &str) {
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(f, "{} {level} {logger} {line}", clock());
    }
}

/// UTC wall-clock `HH:MM:SS.mmm` (no date crate needed for a log prefix).
pub fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        now.subsec_millis()
    )
}

/// A dispatch process in flight.
pub struct RunningHook {
    child: Child,
    readers: Vec<JoinHandle<String>>,
}

/// How a dispatch process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    /// Exit code, or `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl HookOutcome {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Keep at most this much of a stream for action results (the log gets everything).
const CAPTURE_LIMIT: usize = 64 * 1024;

fn pump(
    stream: impl Read + Send + 'static,
    log: UnitLog,
    level: &'static str,
    logger: String,
) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut captured = String::new();
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches('\n');
                    log_line(&log, level, &logger, line);
                    if captured.len() < CAPTURE_LIMIT {
                        captured.push_str(line);
                        captured.push('\n');
                    }
                }
            }
        }
        captured
    })
}

/// Start `dispatch` for one hook or action.
pub fn spawn(
    dispatch: &Path,
    charm_dir: &Path,
    vars: &BTreeMap<String, String>,
    isolation: &Isolation,
    log: &UnitLog,
    logger: &str,
) -> std::io::Result<RunningHook> {
    let mut cmd = match isolation {
        Isolation::Namespace {
            containers_dir,
            hosts_file,
        } => {
            let mut c = Command::new("/usr/bin/unshare");
            c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                .arg(format!(
                    "mount --bind \"$1\" {POD_CONTAINERS_DIR} && mount --bind \"$2\" /etc/hosts \
                     && exec \"$3\""
                ))
                .arg("sh")
                .arg(containers_dir)
                .arg(hosts_file)
                .arg(dispatch);
            c
        }
        Isolation::None => Command::new(dispatch),
    };
    cmd.current_dir(charm_dir)
        .env_clear()
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(pump(out, log.clone(), "DEBUG", logger.to_string()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(pump(err, log.clone(), "WARNING", logger.to_string()));
    }
    Ok(RunningHook { child, readers })
}

impl RunningHook {
    /// The process id (the dispatch's own: `unshare` and `sh` exec into it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the process and its output streams.
    pub fn wait(mut self) -> std::io::Result<HookOutcome> {
        let status = self.child.wait()?;
        let mut texts = self
            .readers
            .into_iter()
            .map(|r| r.join().unwrap_or_default());
        let stdout = texts.next().unwrap_or_default();
        let stderr = texts.next().unwrap_or_default();
        Ok(HookOutcome {
            code: status.code(),
            stdout,
            stderr,
        })
    }
}

/// Send SIGKILL to a process by id (a pod kill kills the hook in flight too).
pub fn kill_pid(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether this process runs as root (then hooks get a mount namespace).
pub fn running_as_root() -> bool {
    // /proc/self/status "Uid:\t<real>\t<effective>..."; no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HookEnv {
        HookEnv {
            unit: "a/0".into(),
            model_name: "m".into(),
            model_uuid: "u".into(),
            juju_version: "3.6.25".into(),
            charm_dir: "/c".into(),
            tools_dir: "/t".into(),
            agent_socket: "/s".into(),
            api_address: "127.0.0.1:17070".into(),
            containers_dir: None,
        }
    }

    #[test]
    fn relation_hook_env() {
        let mut h = HookSpec::relation("db", 3, "departed", "b", Some("b/1"));
        h.departing_unit = Some("b/1".into());
        let v = environment(&env(), "ctx", Some(&h), None);
        assert_eq!(v["JUJU_DISPATCH_PATH"], "hooks/db-relation-departed");
        assert_eq!(v["JUJU_HOOK_NAME"], "db-relation-departed");
        assert_eq!(v["JUJU_RELATION_ID"], "db:3");
        assert_eq!(v["JUJU_REMOTE_UNIT"], "b/1");
        assert_eq!(v["JUJU_DEPARTING_UNIT"], "b/1");
        assert_eq!(v["PATH"], "/t:/usr/sbin:/usr/bin:/sbin:/bin");
        assert_eq!(v["JUJU_MACHINE_ID"], "");
        assert!(!v.contains_key("HOME"));
        assert!(!v.contains_key("CHARM_CONTAINERS_DIR"));
    }

    #[test]
    fn action_env_has_empty_hook_name() {
        let a = ActionSpec {
            id: 7,
            name: "do-it".into(),
            params: Default::default(),
        };
        let v = environment(&env(), "ctx", None, Some(&a));
        assert_eq!(v["JUJU_DISPATCH_PATH"], "actions/do-it");
        assert_eq!(v["JUJU_HOOK_NAME"], "");
        assert_eq!(v["JUJU_ACTION_UUID"], "7");
    }

    #[test]
    fn runs_with_exact_env_and_logs_output() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("dispatch");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"out $JUJU_DISPATCH_PATH $HOME\"\necho err >&2\nexit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = open_log(&tmp.path().join("unit.log")).unwrap();
        let vars = environment(&env(), "c", Some(&HookSpec::plain("install")), None);
        let run = spawn(
            &script,
            tmp.path(),
            &vars,
            &Isolation::None,
            &log,
            "unit.a/0.install",
        )
        .unwrap();
        let out = run.wait().unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out hooks/install \n");
        let text = std::fs::read_to_string(tmp.path().join("unit.log")).unwrap();
        assert!(text.contains("DEBUG unit.a/0.install out hooks/install"));
        assert!(text.contains("WARNING unit.a/0.install err"));
    }
}
