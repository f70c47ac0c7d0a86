//! Helpers shared by the end-to-end tests: the `juju-local` CLI wrapper (a model in a temp dir,
//! torn down on drop whatever happened), a small RESP client that speaks to the real
//! redis-server/redis-sentinel processes without going through the library under test, and
//! polling helpers.
//!
//! Each test file includes this with `mod common;`; not every file uses every helper, hence
//! the `dead_code` allowance.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `juju-local` binary built for this test run.
pub const JL: &str = env!("CARGO_BIN_EXE_juju-local");
/// The charm's dispatch binary built for this test run.
pub const CHARM_BIN: &str = env!("CARGO_BIN_EXE_redis-k8s");
/// The repository root (the charm directory).
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The charm's application name.
pub const APP: &str = "redis-k8s";

/// A local model in a temp dir. `down` runs on drop, so every process the model started goes
/// even when the test panics.
pub struct Model {
    /// Holds the temp dir (model dir, scratch charms) alive for the test's duration.
    pub tmp: tempfile::TempDir,
    /// The model directory (`--model-dir`).
    pub dir: PathBuf,
    /// The model's name: its directory's name, which is what FQDNs use.
    pub name: String,
    /// The `127.A.B` subnet given to `deploy --subnet`, when the test chose one.
    pub subnet: String,
    /// `--model <name>` passed on every call, when set.
    model_flag: Option<String>,
    /// The working directory of every call (relative `--dispatch` paths resolve against it).
    cwd: Option<PathBuf>,
    /// Extra `juju-local` commands whose output is appended to a failure message.
    diagnostics: Vec<Vec<String>>,
}

impl Model {
    /// A model named `name` in a fresh temp dir (nothing runs until the first `deploy`).
    pub fn new(name: &str) -> Model {
        let tmp = tempfile::tempdir().expect("tempdir");
        Model {
            dir: tmp.path().join(name),
            tmp,
            name: name.to_string(),
            subnet: String::new(),
            model_flag: None,
            cwd: None,
            diagnostics: vec![vec!["status".to_string()]],
        }
    }

    /// Record the subnet the test deploys with (for [`Model::addr`]).
    pub fn with_subnet(mut self, subnet: &str) -> Model {
        self.subnet = subnet.to_string();
        self
    }

    /// `deploy` the charm from this repository (dispatch: the built `redis-k8s`) with `units`
    /// units on the model's subnet (set by [`Model::with_subnet`]; panics without one), its
    /// `update-status` every `update_status_secs`, with `extra` flags (`--config k=v`, ...),
    /// waiting up to 180 s until it is deployed and replicated. The output.
    pub fn deploy_charm(&self, units: usize, update_status_secs: u64, extra: &[&str]) -> String {
        assert!(!self.subnet.is_empty(), "deploy_charm needs with_subnet");
        let units = units.to_string();
        let interval = update_status_secs.to_string();
        let mut args = vec![
            "deploy",
            ROOT,
            "-n",
            &units,
            "--dispatch",
            CHARM_BIN,
            "--subnet",
            &self.subnet,
            "--update-status-interval",
            &interval,
        ];
        args.extend_from_slice(extra);
        args.extend(["--wait", "--timeout", "180"]);
        self.ok(&args)
    }

    /// `deploy` the client charm in `dir` (one unit, app `client`, its `redis` interface
    /// endpoint) and relate it to the app, waiting up to 60 s for each.
    pub fn deploy_client(&self, dir: &Path) {
        let dir = dir.to_str().expect("a UTF-8 scratch path");
        self.ok(&["deploy", dir, "--wait", "--timeout", "60"]);
        self.ok(&["relate", APP, "client", "--wait", "--timeout", "60"]);
    }

    /// Pass `--model <name>` on every call.
    pub fn with_model_flag(mut self) -> Model {
        self.model_flag = Some(self.name.clone());
        self
    }

    /// Run every call from `cwd`.
    pub fn with_cwd(mut self, cwd: &Path) -> Model {
        self.cwd = Some(cwd.to_path_buf());
        self
    }

    /// Append the output of `juju-local <args>` to failure messages.
    pub fn with_diagnostic(mut self, args: &[&str]) -> Model {
        self.diagnostics
            .push(args.iter().map(|a| a.to_string()).collect());
        self
    }

    /// The temp dir holding the model dir; scratch charms go here.
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// Run `juju-local` against this model.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.run(self.cwd.as_deref(), args)
    }

    /// Run `juju-local` against this model from `cwd`.
    pub fn cmd_in(&self, cwd: &Path, args: &[&str]) -> Output {
        self.run(Some(cwd), args)
    }

    fn run(&self, cwd: Option<&Path>, args: &[&str]) -> Output {
        let mut c = Command::new(JL);
        if let Some(name) = &self.model_flag {
            c.arg("--model").arg(name);
        }
        c.arg("--model-dir").arg(&self.dir).args(args);
        if let Some(cwd) = cwd {
            c.current_dir(cwd);
        }
        c.env_remove("JUJU_LOCAL_DIR")
            .output()
            .expect("run juju-local")
    }

    /// What to show when a call failed: the diagnostics commands and the daemon log's end.
    pub fn failure_context(&self) -> String {
        let mut s = String::new();
        for d in &self.diagnostics {
            let args: Vec<&str> = d.iter().map(String::as_str).collect();
            let out = self.cmd(&args);
            s.push_str(&format!(
                "juju-local {}:\n{}{}\n",
                d.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(40);
        s.push_str(&format!(
            "daemon log (end):\n{}\n",
            lines[from..].join("\n")
        ));
        s
    }

    /// Require success of an already-run call; returns its stdout.
    pub fn check(&self, args: &[&str], out: Output) -> String {
        assert!(
            out.status.success(),
            "juju-local {args:?} failed:\nstdout: {}\nstderr: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.failure_context()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        self.check(args, out)
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            !out.status.success(),
            "juju-local {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `status --format json`.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--format", "json"])).expect("status json")
    }

    /// One unit's line of `status --format json` (`Null` when there is no such unit).
    pub fn unit_line(&self, unit: &str) -> serde_json::Value {
        self.status_json()["units"]
            .as_array()
            .and_then(|us| us.iter().find(|u| u["name"] == unit).cloned())
            .unwrap_or_default()
    }

    /// (unit, address, role) per unit of the redis app, as `status` reports them.
    pub fn roles(&self) -> Vec<(String, String, String)> {
        let st = self.status_json();
        st["units"]
            .as_array()
            .map(|units| {
                units
                    .iter()
                    .filter(|u| u["name"].as_str().unwrap_or("").starts_with(APP))
                    .map(|u| {
                        (
                            u["name"].as_str().unwrap_or("").to_string(),
                            u["address"].as_str().unwrap_or("").to_string(),
                            u["role"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A replica's (unit, address), as `status` shows them now; panics when there is none.
    pub fn a_replica(&self) -> (String, String) {
        self.roles()
            .into_iter()
            .find(|r| r.2 == "replica")
            .map(|r| (r.0, r.1))
            .expect("a replica")
    }

    /// Wait until exactly one unit is primary, it is not `old`, and at least one unit is its
    /// replica; returns the primary's (unit, address). Unlike [`Model::wait_roles`] with an
    /// exact replica count, this does not miss a failover whose killed pod is already back
    /// as a replica by the time the roles are polled (seen under CI load).
    pub fn wait_new_primary(&self, old: &str, secs: u64) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let roles = self.roles();
            let primaries: Vec<_> = roles.iter().filter(|r| r.2 == "primary").collect();
            let n_rep = roles.iter().filter(|r| r.2 == "replica").count();
            if primaries.len() == 1 && n_rep >= 1 && primaries[0].0 != old {
                return (primaries[0].0.clone(), primaries[0].1.clone());
            }
            assert!(
                Instant::now() < deadline,
                "no new primary (not {old}): {roles:?}\n{}",
                String::from_utf8_lossy(&self.cmd(&["status"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until exactly one unit is primary and `replicas` are replicas, the primary not
    /// being `not`; returns the primary's (unit, address).
    pub fn wait_roles(&self, replicas: usize, not: Option<&str>, secs: u64) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let roles = self.roles();
            let primaries: Vec<_> = roles.iter().filter(|r| r.2 == "primary").collect();
            let n_rep = roles.iter().filter(|r| r.2 == "replica").count();
            if primaries.len() == 1 && n_rep == replicas && Some(primaries[0].0.as_str()) != not {
                return (primaries[0].0.clone(), primaries[0].1.clone());
            }
            assert!(
                Instant::now() < deadline,
                "roles never settled (want 1 primary, {replicas} replicas, not {not:?}): {roles:?}\n{}",
                String::from_utf8_lossy(&self.cmd(&["status"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Run `action` on `unit` and return result `key`.
    pub fn action_value(&self, unit: &str, action: &str, key: &str) -> String {
        let out = self.ok(&["run", unit, action]);
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|p| p.trim().trim_matches('\'').to_string())
            .unwrap_or_else(|| panic!("{key} in the results of {action}: {out}"))
    }

    /// The admin password (`get-initial-admin-password` on unit 0).
    pub fn password(&self) -> String {
        self.action_value(
            &format!("{APP}/0"),
            "get-initial-admin-password",
            "redis-password",
        )
    }

    /// The sentinel password (`get-sentinel-password` on unit 0).
    pub fn sentinel_password(&self) -> String {
        self.action_value(
            &format!("{APP}/0"),
            "get-sentinel-password",
            "sentinel-password",
        )
    }

    /// `show-unit <unit>` as YAML.
    pub fn show(&self, unit: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&self.ok(&["show-unit", unit])).expect("show-unit yaml")
    }

    /// `leader-host` in the app data of `endpoint` as `unit` sees it (its own app's data or
    /// the remote app's).
    pub fn leader_host(&self, unit: &str, endpoint: &str) -> String {
        let shown = self.show(unit);
        let rel = shown[unit]["relation-info"]
            .as_sequence()
            .and_then(|r| r.iter().find(|r| r["endpoint"] == endpoint))
            .cloned()
            .unwrap_or_default();
        rel["application-data"]["leader-host"]
            .as_str()
            .or_else(|| rel["remote-application-data"]["leader-host"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Whether `unit` holds leadership.
    pub fn is_leader(&self, unit: &str) -> bool {
        self.show(unit)[unit]["leader"].as_bool() == Some(true)
    }

    /// Unit `n`'s address on the model's subnet (needs [`Model::with_subnet`]).
    pub fn addr(&self, n: usize) -> String {
        format!("{}.{}", self.subnet, n + 1)
    }

    /// Unit `n`'s pod FQDN in this model.
    pub fn fqdn(&self, n: usize) -> String {
        fqdn_of(&format!("{APP}/{n}"), &self.name)
    }

    /// The last `n` lines of every unit's log and of the daemon log, for failure messages.
    pub fn logs_tail(&self, n: usize) -> String {
        let mut s = String::new();
        let mut files = vec![self.dir.join("daemon.log")];
        if let Ok(units) = std::fs::read_dir(self.dir.join("units")) {
            let mut dirs: Vec<PathBuf> = units.filter_map(|e| e.ok().map(|e| e.path())).collect();
            dirs.sort();
            files.extend(dirs.iter().map(|d| d.join("unit.log")));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            s.push_str(&format!(
                "--- {}\n{}\n",
                f.display(),
                lines[from..].join("\n")
            ));
        }
        s
    }

    /// What every unit's Redis (`INFO replication`) and Sentinel (`SENTINEL MASTER`) say, for
    /// failure messages.
    pub fn redis_views(&self, pw: &str, spw: &str) -> String {
        let mut s = String::new();
        for (unit, addr, _) in self.roles() {
            let repl = redis(&addr, 6379, Some(pw), &[&["INFO", "replication"]])
                .and_then(|r| r.first().map(Resp::text))
                .unwrap_or_else(|| "(no answer)".into());
            let repl: Vec<&str> = repl
                .lines()
                .filter(|l| {
                    [
                        "role",
                        "master_host",
                        "master_link_status",
                        "connected_slaves",
                        "slave",
                    ]
                    .iter()
                    .any(|k| l.starts_with(k))
                })
                .collect();
            let sentinel = redis(&addr, 26379, Some(spw), &[&["SENTINEL", "MASTER", APP]])
                .and_then(|r| r.into_iter().next())
                .map(|r| match r {
                    Resp::Array(items) => items
                        .chunks(2)
                        .filter(|c| {
                            c.len() == 2
                                && [
                                    "ip",
                                    "flags",
                                    "num-slaves",
                                    "num-other-sentinels",
                                    "config-epoch",
                                ]
                                .contains(&c[0].text().as_str())
                        })
                        .map(|c| format!("{}={}", c[0].text(), c[1].text()))
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => format!("{other:?}"),
                })
                .unwrap_or_else(|| "(no answer)".into());
            s.push_str(&format!(
                "{unit} {addr}: redis [{}] sentinel [{sentinel}]\n",
                repl.join(" ")
            ));
        }
        s
    }

    /// The model's hosts file (the pods' /etc/hosts).
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// A unit's directory in the model (`units/<app>-<n>`).
    pub fn unit_dir(&self, unit: &str) -> PathBuf {
        self.dir.join("units").join(unit.replace('/', "-"))
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep the logs of a failed test (the model dir goes with `down`).
            let dest = std::env::temp_dir().join(format!("e2e-failed-{}", self.name));
            let _ = std::fs::remove_dir_all(&dest);
            copy_logs(&self.dir, &dest, 0);
            eprintln!("logs of the failed model copied to {}", dest.display());
        }
        let _ = self.cmd(&["down"]);
    }
}

/// Copy every `*.log` file under `from` to the same place under `to`.
fn copy_logs(from: &Path, to: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ty) = e.file_type() else { continue };
        if ty.is_dir() && depth < 9 {
            copy_logs(&path, &to.join(e.file_name()), depth + 1);
        } else if ty.is_file() && path.extension().is_some_and(|x| x == "log") {
            let _ = std::fs::create_dir_all(to);
            let _ = std::fs::copy(&path, to.join(e.file_name()));
        }
    }
}

/// A unit's pod FQDN (`<app>-<n>.<app>-endpoints.<model>.svc.cluster.local`).
pub fn fqdn_of(unit: &str, model: &str) -> String {
    let host = unit.replace('/', "-");
    let app = unit.split('/').next().unwrap_or(APP);
    format!("{host}.{app}-endpoints.{model}.svc.cluster.local")
}

/// A charm that only requires the `redis` interface (the client side of the relation) and
/// whose hooks do nothing.
pub fn client_charm(dir: &Path) {
    client_charm_with(dir, "#!/bin/sh\nexit 0\n");
}

/// A client charm (app `client`, requiring the `redis` interface on its `redis` endpoint)
/// in `dir` whose executable `dispatch` is `script`.
pub fn client_charm_with(dir: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("metadata.yaml"),
        "name: client\nrequires:\n  redis:\n    interface: redis\n",
    )
    .unwrap();
    let d = dir.join("dispatch");
    std::fs::write(&d, script).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Poll `f` until it holds; panics with `what` after `secs`.
pub fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Poll `f` until it returns `Ok`; panics with `what` and the last reason after `secs`.
pub fn eventually_ok(what: &str, secs: u64, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(()) => return,
            Err(why) => assert!(Instant::now() < deadline, "timed out: {what}: {why}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A RESP reply (enough of it for these checks).
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

impl Resp {
    /// The reply as text: strings and errors as is, integers in decimal, the rest empty.
    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) | Resp::Error(s) | Resp::Bulk(Some(s)) => s.clone(),
            Resp::Int(i) => i.to_string(),
            _ => String::new(),
        }
    }
}

/// Parse one reply from `buf` at `pos`, advancing `pos`; `None` when incomplete.
pub fn parse(buf: &[u8], pos: &mut usize) -> Option<Resp> {
    let end = buf.get(*pos..)?.windows(2).position(|w| w == b"\r\n")? + *pos;
    let line = String::from_utf8_lossy(&buf[*pos + 1..end]).to_string();
    let kind = buf[*pos];
    *pos = end + 2;
    Some(match kind {
        b'+' => Resp::Simple(line),
        b'-' => Resp::Error(line),
        b':' => Resp::Int(line.parse().ok()?),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let n = n as usize;
                if buf.len() < *pos + n + 2 {
                    return None;
                }
                let s = String::from_utf8_lossy(&buf[*pos..*pos + n]).to_string();
                *pos += n + 2;
                Resp::Bulk(Some(s))
            }
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(parse(buf, pos)?);
            }
            Resp::Array(items)
        }
        _ => return None,
    })
}

/// Encode one command as a RESP array of bulk strings.
fn encode(cmd: &[&str]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", cmd.len()).into_bytes();
    for a in cmd {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req
}

/// Run commands on one connection (optionally AUTH first) and return every reply.
pub fn redis(addr: &str, port: u16, password: Option<&str>, cmds: &[&[&str]]) -> Option<Vec<Resp>> {
    let sock = format!("{addr}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut all: Vec<Vec<&str>> = Vec::new();
    if let Some(p) = password {
        all.push(vec!["AUTH", p]);
    }
    all.extend(cmds.iter().map(|c| c.to_vec()));
    let mut req = Vec::new();
    for c in &all {
        req.extend_from_slice(&encode(c));
    }
    s.write_all(&req).ok()?;
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    while replies.len() < all.len() {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        let mut parsed = Vec::new();
        while pos < buf.len() {
            match parse(&buf, &mut pos) {
                Some(r) => parsed.push(r),
                None => break,
            }
        }
        if parsed.len() >= all.len() {
            replies = parsed;
        }
    }
    if password.is_some() {
        replies.remove(0);
    }
    Some(replies)
}

/// `GET key` on a unit's Redis ("" when it does not answer or the key is missing).
pub fn get(addr: &str, pw: &str, key: &str) -> String {
    redis(addr, 6379, Some(pw), &[&["GET", key]])
        .and_then(|r| r.first().map(Resp::text))
        .unwrap_or_default()
}

/// One client connection that sends a command and reads its whole reply.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connect and AUTH. The read timeout (15 s) is longer than the charm's write pause, so a
    /// paused write is waited for, not abandoned.
    pub fn open(addr: &str, port: u16, password: &str) -> Option<Conn> {
        Conn::open_with(addr, port, password, Duration::from_secs(15))
    }

    /// Connect and AUTH with a chosen read timeout.
    pub fn open_with(
        addr: &str,
        port: u16,
        password: &str,
        read_timeout: Duration,
    ) -> Option<Conn> {
        let sock = format!("{addr}:{port}").parse().ok()?;
        let s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(read_timeout)).ok()?;
        let mut c = Conn { s, buf: Vec::new() };
        match c.call(&["AUTH", password])? {
            Resp::Simple(_) => Some(c),
            _ => None,
        }
    }

    /// Send one command and read its reply; `None` when the connection failed.
    pub fn call(&mut self, cmd: &[&str]) -> Option<Resp> {
        self.s.write_all(&encode(cmd)).ok()?;
        let mut chunk = [0u8; 4096];
        loop {
            let mut pos = 0;
            if !self.buf.is_empty() {
                if let Some(r) = parse(&self.buf, &mut pos) {
                    self.buf.drain(..pos);
                    return Some(r);
                }
            }
            let n = self.s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The primary's address per the sentinel at `sentinel_addr`, resolved to an IPv4 address.
pub fn primary_from_sentinel(sentinel_addr: &str, sentinel_pw: &str) -> Option<String> {
    let host = primary_name_from_sentinel(sentinel_addr, sentinel_pw)?;
    use std::net::ToSocketAddrs;
    (host.as_str(), 0)
        .to_socket_addrs()
        .ok()?
        .find(|a| a.is_ipv4())
        .map(|a| a.ip().to_string())
}

/// The primary's host name as the sentinel at `sentinel_addr` names it.
pub fn primary_name_from_sentinel(sentinel_addr: &str, sentinel_pw: &str) -> Option<String> {
    let mut c = Conn::open_with(sentinel_addr, 26379, sentinel_pw, Duration::from_secs(2))?;
    let r = c.call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", APP])?;
    let Resp::Array(items) = r else { return None };
    Some(items.first()?.text())
}

/// A pod name's address per the model's hosts file (what the pods' /etc/hosts says; the
/// test process itself cannot resolve pod names). An address is returned as is.
pub fn resolve_in(hosts: &Path, name: &str) -> Option<String> {
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some(name.to_string());
    }
    let text = std::fs::read_to_string(hosts).ok()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut words = l.split_whitespace();
        let addr = words.next()?;
        words.any(|w| w == name).then(|| addr.to_string())
    })
}

/// What a [`Writer`] saw.
#[derive(Debug, Clone, Default)]
pub struct WriteReport {
    /// The member ids whose `SADD` was acknowledged, in order.
    pub acked: Vec<u64>,
    /// Writes that got an error or no reply.
    pub failed: u64,
    /// The longest time between two acknowledged writes.
    pub longest_gap: std::time::Duration,
    /// When each acknowledged write's reply arrived.
    pub ack_times: Vec<Instant>,
}

impl WriteReport {
    /// The first acknowledgement after `t`, if any.
    pub fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.ack_times.iter().copied().find(|a| *a > t)
    }

    /// The acknowledged ids missing from `members`.
    pub fn missing_from(&self, members: &std::collections::BTreeSet<u64>) -> Vec<u64> {
        self.acked
            .iter()
            .copied()
            .filter(|i| !members.contains(i))
            .collect()
    }
}

/// A steady writer: `SADD <key> <i>` with i = 0, 1, 2, ... on one connection to the primary,
/// recording which ids were acknowledged. On an error or a dropped connection it asks the
/// sentinels (any that answers) for the primary and reconnects, as a Sentinel-aware client
/// does. An id is never retried, so "acknowledged" means the primary said so exactly once.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    handle: Option<std::thread::JoinHandle<WriteReport>>,
}

impl Writer {
    /// Start writing to `primary`; `sentinels` are the addresses to ask after a failure,
    /// `hosts` the model's hosts file to resolve the names they answer with.
    pub fn start(
        primary: &str,
        pw: &str,
        sentinels: Vec<String>,
        spw: &str,
        key: &str,
        hosts: PathBuf,
    ) -> Writer {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let (mut addr, pw, spw, key) = (
            primary.to_string(),
            pw.to_string(),
            spw.to_string(),
            key.to_string(),
        );
        let handle = std::thread::spawn(move || {
            let mut report = WriteReport::default();
            let mut conn: Option<Conn> = None;
            let mut next: u64 = 0;
            let mut last_ack: Option<Instant> = None;
            while !stop2.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = Conn::open(&addr, 6379, &pw);
                }
                let id = next;
                next += 1;
                let reply = conn
                    .as_mut()
                    .and_then(|c| c.call(&["SADD", &key, &id.to_string()]));
                match reply {
                    Some(Resp::Int(_)) => {
                        let now = Instant::now();
                        if let Some(prev) = last_ack {
                            report.longest_gap = report.longest_gap.max(now - prev);
                        }
                        last_ack = Some(now);
                        report.acked.push(id);
                        report.ack_times.push(now);
                        acked2.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        // READONLY, NOREPLICAS or a dropped connection: find the primary.
                        report.failed += 1;
                        conn = None;
                        if let Some(a) = sentinels
                            .iter()
                            .find_map(|s| resolve_in(&hosts, &primary_name_from_sentinel(s, &spw)?))
                        {
                            addr = a;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            report
        });
        Writer {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait until `n` more writes are acknowledged; `false` after `secs`.
    pub fn more(&self, n: u64, secs: u64) -> bool {
        let want = self.acked() + n;
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.acked() < want {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stop and return what was seen.
    pub fn finish(mut self) -> WriteReport {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle
            .take()
            .map(|h| h.join().expect("writer thread"))
            .unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `SMEMBERS key` on the Redis at `addr` as numbers (`None` when it does not answer).
pub fn members(addr: &str, pw: &str, key: &str) -> Option<std::collections::BTreeSet<u64>> {
    let mut c = Conn::open(addr, 6379, pw)?;
    match c.call(&["SMEMBERS", key])? {
        Resp::Array(items) => Some(items.iter().filter_map(|i| i.text().parse().ok()).collect()),
        _ => None,
    }
}
