//! The local model's Pebble daemon, spoken to in raw HTTP over its unix socket (no dependency
//! on our own Pebble client): envelopes, layers and plan, real services (replan starts
//! `sleep 60`, stop kills it, a failing start carries its output), the files API with modes,
//! owners and per-path errors, notices, mount-namespace views as root, and a real redis-server.

use redis_k8s::sim::pebble_server::{PebbleServer, PebbleServerConfig};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---- a tiny HTTP client ---------------------------------------------------------------------

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_response<R: BufRead>(r: &mut R) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).expect("header");
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header colon");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("length"))
        .expect("Content-Length");
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    Resp {
        status,
        headers,
        body,
    }
}

fn raw(sock: &Path, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(&mut BufReader::new(s))
}

fn get(sock: &Path, path: &str) -> Resp {
    raw(sock, "GET", path, &[("Accept", "application/json")], b"")
}

fn post(sock: &Path, path: &str, body: Value) -> Resp {
    raw(
        sock,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn add_layer(sock: &Path, label: &str, yaml: &str, combine: bool) -> Resp {
    post(
        sock,
        "/v1/layers",
        json!({"action": "add", "label": label, "format": "yaml", "layer": yaml, "combine": combine}),
    )
}

/// POST a service action and wait for its change; returns the change.
fn service_action(sock: &Path, action: &str, services: &[&str]) -> Value {
    let r = post(
        sock,
        "/v1/services",
        json!({"action": action, "services": services}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["type"], "async");
    let id = v["change"].as_str().expect("change id").to_string();
    wait_change(sock, &id)
}

fn wait_change(sock: &Path, id: &str) -> Value {
    let r = get(sock, &format!("/v1/changes/{id}/wait?timeout=30s"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["result"].clone()
}

fn multipart_write(sock: &Path, meta: Value, files: &[(&str, &[u8])]) -> Resp {
    let boundary = "0123456789abcdef0123456789abcdef";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
        )
        .as_bytes(),
    );
    for (path, data) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    raw(
        sock,
        "POST",
        "/v1/files",
        &[
            (
                "Content-Type",
                &format!("multipart/form-data; boundary=\"{boundary}\""),
            ),
            ("Accept", "application/json"),
        ],
        &body,
    )
}

fn push(sock: &Path, path: &str, content: &[u8], extra: Value) {
    let mut spec = json!({"path": path, "make-dirs": true});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let r = multipart_write(
        sock,
        json!({"action": "write", "files": [spec]}),
        &[(path, content)],
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert!(v["result"][0].get("error").is_none(), "push failed: {v}");
}

// ---- fixtures -------------------------------------------------------------------------------

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

struct Fixture {
    server: Option<PebbleServer>,
    sock: PathBuf,
    root: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Self::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut PebbleServerConfig)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = PebbleServerConfig {
            socket: dir.path().join("sock/pebble.socket"),
            root: dir.path().join("root"),
            container: "redis".into(),
            log_file: Some(dir.path().join("services.log")),
            ..PebbleServerConfig::default()
        };
        tweak(&mut cfg);
        let server = PebbleServer::start(cfg.clone()).expect("server starts");
        Fixture {
            sock: server.socket().to_path_buf(),
            server: Some(server),
            root: cfg.root,
            log: cfg.log_file.unwrap(),
            _dir: dir,
        }
    }

    fn server(&self) -> &PebbleServer {
        self.server.as_ref().unwrap()
    }

    fn pid(&self, svc: &str) -> Option<i32> {
        self.server().service_pids().get(svc).copied()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn services(sock: &Path) -> Value {
    get(sock, "/v1/services").json()["result"].clone()
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn envelopes_are_pebbles_sync_async_and_error_shapes() {
    let f = Fixture::new();
    let r = get(&f.sock, "/v1/system-info");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        body.starts_with(r#"{"type":"sync","status-code":200,"status":"OK","result":{"#),
        "{body}"
    );
    assert!(r.json()["result"]["version"]
        .as_str()
        .unwrap()
        .starts_with("v1."));

    let r = get(&f.sock, "/v1/changes/42");
    assert_eq!(r.status, 404);
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["status-code"], 404);
    assert_eq!(v["result"]["message"], "cannot find change with id \"42\"");
    let r = get(&f.sock, "/v1/changes/42/wait?timeout=1s");
    assert_eq!(r.status, 404);

    // A replan with nothing to do: an async change, already Done.
    let r = post(
        &f.sock,
        "/v1/services",
        json!({"action": "replan", "services": []}),
    );
    assert_eq!(r.status, 202);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(body.contains(r#""result":null"#), "{body}");
    let v = r.json();
    assert_eq!(v["status"], "Accepted");
    let ch = wait_change(&f.sock, v["change"].as_str().unwrap());
    assert_eq!(ch["status"], "Done");
    assert_eq!(ch["summary"], "Replan - no services");
    assert_eq!(ch["ready"], true);

    let r = post(&f.sock, "/v1/services", json!({"action": "autostart"}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["result"]["kind"], "no-default-services");

    // Keep-alive: two requests on one connection.
    let mut s = UnixStream::connect(&f.sock).unwrap();
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /v1/checks HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut rd = BufReader::new(s);
    let one = read_response(&mut rd);
    assert_eq!(one.json()["result"]["healthy"], true);
    let two = read_response(&mut rd);
    assert_eq!(two.json()["result"], json!([]));
    assert!(f.server().request_count() >= 7);
}

#[test]
fn layers_combine_validate_and_show_in_the_plan() {
    let f = Fixture::new();
    let r = add_layer(
        &f.sock,
        "base",
        "services:\n  x:\n    command: sleep 1\n",
        false,
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["result"]["message"],
        "layer \"base\" must define \"override\" for service \"x\""
    );
    let base = "summary: base\nservices:\n  x:\n    override: replace\n    command: sleep 10\n    environment: {A: '1'}\n";
    let r = add_layer(&f.sock, "base", base, false);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["result"], true);
    let r = add_layer(&f.sock, "base", base, false);
    assert_eq!(r.status, 400);
    assert!(r.json()["result"]["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    let more = "services:\n  x:\n    override: merge\n    environment: {B: '2'}\nchecks:\n  up:\n    override: replace\n    period: 1h\n    tcp: {port: 1}\n";
    assert_eq!(add_layer(&f.sock, "base", more, true).status, 200);

    let r = get(&f.sock, "/v1/plan?format=yaml");
    assert_eq!(r.status, 200);
    let yaml = r.json()["result"]
        .as_str()
        .expect("plan is a YAML string")
        .to_string();
    let plan: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(plan["services"]["x"]["command"], "sleep 10");
    assert_eq!(plan["services"]["x"]["environment"]["A"], "1");
    assert_eq!(plan["services"]["x"]["environment"]["B"], "2");
    assert_eq!(
        plan["checks"]["up"]["threshold"], 3,
        "default threshold is written into the plan"
    );
    // Checks start when their layer is added.
    let checks = get(&f.sock, "/v1/checks").json()["result"].clone();
    assert_eq!(checks[0]["name"], "up");
    assert_eq!(checks[0]["status"], "up");
    assert!(checks[0]["change-id"].is_string());
    assert_eq!(get(&f.sock, "/v1/plan").status, 400);
    // Adding a layer starts no service.
    assert_eq!(services(&f.sock)[0]["current"], "inactive");
}

#[test]
fn replan_really_starts_the_service_and_stop_kills_it() {
    let f = Fixture::new();
    let layer = "services:\n  snooze:\n    override: replace\n    command: sleep 60\n    startup: enabled\n    kill-delay: 2s\n";
    assert_eq!(add_layer(&f.sock, "l", layer, true).status, 200);
    let t0 = Instant::now();
    let ch = service_action(&f.sock, "replan", &[]);
    assert_eq!(ch["status"], "Done", "{ch}");
    assert_eq!(ch["summary"], "Replan service \"snooze\"");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "start waits out the okay-delay"
    );
    let pid = f.pid("snooze").expect("running pid");
    assert!(alive(pid));
    assert!(cmdline(pid).starts_with("sleep 60"), "{}", cmdline(pid));
    let svc = services(&f.sock);
    assert_eq!(svc[0]["name"], "snooze");
    assert_eq!(svc[0]["startup"], "enabled");
    assert_eq!(svc[0]["current"], "active");

    // Nothing changed: nothing to do.
    let ch = service_action(&f.sock, "replan", &[]);
    assert_eq!(ch["summary"], "Replan - no services");
    assert_eq!(f.pid("snooze"), Some(pid));

    // A changed definition is restarted by replan.
    let layer2 = layer.replace("sleep 60", "sleep 61");
    assert_eq!(add_layer(&f.sock, "l", &layer2, true).status, 200);
    let ch = service_action(&f.sock, "replan", &[]);
    assert_eq!(ch["status"], "Done");
    let kinds: Vec<&str> = ch["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["stop", "start"]);
    let pid2 = f.pid("snooze").expect("restarted");
    assert_ne!(pid, pid2);
    eventually("old process gone", Duration::from_secs(5), || !alive(pid));
    assert!(cmdline(pid2).starts_with("sleep 61"));

    let ch = service_action(&f.sock, "stop", &["snooze"]);
    assert_eq!(ch["status"], "Done", "{ch}");
    eventually("stopped process gone", Duration::from_secs(5), || {
        !alive(pid2)
    });
    assert_eq!(services(&f.sock)[0]["current"], "inactive");
    let changes = get(&f.sock, "/v1/changes?select=all&for=snooze").json()["result"].clone();
    assert!(changes.as_array().unwrap().len() >= 3);
}

#[test]
fn a_service_that_exits_quickly_fails_its_start_with_its_output() {
    let f = Fixture::new();
    let layer = "services:\n  bad:\n    override: replace\n    command: sh -c 'echo boom-output-123; exit 3'\n";
    assert_eq!(add_layer(&f.sock, "l", layer, false).status, 200);
    let ch = service_action(&f.sock, "start", &["bad"]);
    assert_eq!(ch["status"], "Error");
    let err = ch["err"].as_str().unwrap();
    assert!(
        err.starts_with("cannot perform the following tasks:\n- Start service \"bad\""),
        "{err}"
    );
    assert!(err.contains("exited quickly with code 3"), "{err}");
    let logs = ch["tasks"][0]["log"].to_string();
    assert!(logs.contains("boom-output-123"), "{logs}");
    assert_eq!(services(&f.sock)[0]["current"], "error");
    assert!(
        f.log_text().contains("[bad] boom-output-123"),
        "{}",
        f.log_text()
    );

    // An unknown executable fails up front, like Pebble.
    let layer = "services:\n  bad:\n    override: replace\n    command: /no/such/binary-xyz\n";
    assert_eq!(add_layer(&f.sock, "l", layer, true).status, 200);
    let ch = service_action(&f.sock, "start", &["bad"]);
    assert!(
        ch["err"]
            .as_str()
            .unwrap()
            .contains("executable file not found"),
        "{ch}"
    );
}

#[test]
fn a_crashing_service_is_restarted_with_backoff_and_kill_services_stops_that() {
    let f = Fixture::new();
    let layer = "services:\n  flaky:\n    override: replace\n    command: sh -c 'sleep 1.3; exit 1'\n    backoff-delay: 200ms\n";
    assert_eq!(add_layer(&f.sock, "l", layer, false).status, 200);
    let ch = service_action(&f.sock, "start", &["flaky"]);
    assert_eq!(ch["status"], "Done", "{ch}");
    let first = f.pid("flaky").unwrap();
    eventually("a restart with a new pid", Duration::from_secs(6), || {
        f.pid("flaky").is_some_and(|p| p != first)
    });
    assert!(f.log_text().contains("restarting in"), "{}", f.log_text());

    let pid = f.pid("flaky").unwrap();
    f.server().kill_services();
    eventually("killed", Duration::from_secs(3), || !alive(pid));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(f.pid("flaky"), None, "no restart after kill_services");
    assert_eq!(services(&f.sock)[0]["current"], "inactive");
}

#[test]
fn files_are_written_listed_and_read_with_modes_owners_and_per_path_errors() {
    let f = Fixture::new();
    let root_user = is_root();
    let mut extra = json!({"permissions": "600"});
    if root_user {
        extra = json!({"permissions": "600", "user": "redis", "group": "redis"});
    }
    push(
        &f.sock,
        "/etc/redis-server/redis.conf",
        b"port 6379\n",
        extra,
    );
    let host = f.root.join("etc/redis-server/redis.conf");
    assert_eq!(std::fs::read(&host).unwrap(), b"port 6379\n");
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let r = get(&f.sock, "/v1/files?action=list&path=/etc/redis-server");
    assert_eq!(r.status, 200);
    let list = r.json()["result"].clone();
    assert_eq!(list[0]["path"], "/etc/redis-server/redis.conf");
    assert_eq!(list[0]["name"], "redis.conf");
    assert_eq!(list[0]["type"], "file");
    assert_eq!(list[0]["size"], 10);
    assert_eq!(list[0]["permissions"], "600");
    if root_user {
        let uid = std::process::Command::new("id")
            .args(["-u", "redis"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
        assert_eq!(meta.uid(), uid);
        assert_eq!(list[0]["user"], "redis");
        assert_eq!(list[0]["group"], "redis");
    }
    let r = get(
        &f.sock,
        "/v1/files?action=list&path=/etc&pattern=redis-*&itself=false",
    );
    assert_eq!(r.json()["result"][0]["type"], "directory");
    let r = get(&f.sock, "/v1/files?action=list&path=/etc/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["result"]["kind"], "not-found");
    let r = get(&f.sock, "/v1/files?action=list&path=etc");
    assert_eq!(r.status, 400);
    assert!(r.json()["result"].get("kind").is_none());

    // Read: multipart with the file and a final response part.
    let r = raw(
        &f.sock,
        "GET",
        "/v1/files?action=read&path=/etc/redis-server/redis.conf&path=/etc/missing.conf",
        &[("Accept", "multipart/form-data")],
        b"",
    );
    assert_eq!(r.status, 200);
    let ct = r.header("Content-Type").unwrap().to_string();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert!(body.contains("name=\"files\"; filename=\"/etc/redis-server/redis.conf\"\r\nContent-Type: application/octet-stream\r\n\r\nport 6379\n\r\n"), "{body}");
    let resp_json = body
        .split("name=\"response\"")
        .nth(1)
        .and_then(|s| s.split("\r\n\r\n").nth(1))
        .and_then(|s| s.split("\r\n--").next())
        .unwrap();
    let v: Value = serde_json::from_str(resp_json).unwrap();
    assert_eq!(v["type"], "sync");
    assert_eq!(v["result"][0]["path"], "/etc/redis-server/redis.conf");
    assert!(v["result"][0].get("error").is_none());
    assert_eq!(v["result"][1]["error"]["kind"], "not-found");
    let r = get(
        &f.sock,
        "/v1/files?action=read&path=/etc/redis-server/redis.conf",
    );
    assert_eq!(r.status, 400, "read needs Accept: multipart/form-data");

    // Per-path errors inside an HTTP 200.
    let r = multipart_write(
        &f.sock,
        json!({"action": "write", "files": [
            {"path": "/nope/x.conf"},
            {"path": "/etc/ok.conf"},
            {"path": "/etc/no-content.conf"},
            {"path": "/etc/who.conf", "user": "no-such-user-xyz"}
        ]}),
        &[
            ("/nope/x.conf", b"x"),
            ("/etc/ok.conf", b"ok"),
            ("/etc/who.conf", b"w"),
        ],
    );
    assert_eq!(r.status, 200);
    let v = r.json()["result"].clone();
    assert_eq!(v[0]["error"]["kind"], "not-found");
    let msg = v[0]["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("open /nope/x.conf.") && msg.ends_with("~: no such file or directory"),
        "{msg}"
    );
    assert!(v[1].get("error").is_none());
    assert_eq!(
        v[2]["error"]["message"],
        "no file content for path \"/etc/no-content.conf\""
    );
    assert_eq!(
        v[3]["error"]["message"],
        "cannot look up user and group: user: unknown user no-such-user-xyz"
    );
    assert_eq!(std::fs::read(f.root.join("etc/ok.conf")).unwrap(), b"ok");
    assert_eq!(
        std::fs::metadata(f.root.join("etc/ok.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    // make-dirs and remove (JSON); JSON write is refused.
    let r = post(
        &f.sock,
        "/v1/files",
        json!({"action": "make-dirs", "dirs": [
            {"path": "/var/lib/redis/a/b", "make-parents": true, "permissions": "750"},
            {"path": "/etc"},
            {"path": "/x/y"}
        ]}),
    );
    let v = r.json()["result"].clone();
    assert!(v[0].get("error").is_none(), "{v}");
    assert_eq!(
        std::fs::metadata(f.root.join("var/lib/redis/a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    assert_eq!(v[1]["error"]["message"], "mkdir /etc: file exists");
    assert_eq!(v[1]["error"]["kind"], "generic-file-error");
    assert_eq!(
        v[2]["error"]["message"],
        "mkdir /x/y.mkdir-new: no such file or directory"
    );
    let r = post(
        &f.sock,
        "/v1/files",
        json!({"action": "remove", "paths": [
            {"path": "/var/lib/redis"},
            {"path": "/var/lib/redis", "recursive": true},
            {"path": "/gone"}
        ]}),
    );
    let v = r.json()["result"].clone();
    assert_eq!(
        v[0]["error"]["message"],
        "remove /var/lib/redis: directory not empty"
    );
    assert!(v[1].get("error").is_none());
    assert_eq!(v[2]["error"]["kind"], "not-found");
    assert!(!f.root.join("var/lib/redis").exists());
    let r = post(
        &f.sock,
        "/v1/files",
        json!({"action": "write", "files": []}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["result"]["message"],
        "must use multipart with \"write\" action"
    );
}

#[test]
fn notices_dedup_by_key_and_validate_keys() {
    let f = Fixture::new();
    let add = |key: &str, data: Value| {
        post(
            &f.sock,
            "/v1/notices",
            json!({"action": "add", "type": "custom", "key": key, "data": data}),
        )
    };
    let r = add("canonical.com/redis/switch", json!({"primary": "redis-1"}));
    assert_eq!(r.status, 200);
    let id = r.json()["result"]["id"].as_str().unwrap().to_string();
    let r = add("canonical.com/redis/switch", json!({"primary": "redis-2"}));
    assert_eq!(r.json()["result"]["id"], id.as_str());
    add("example.com/other", json!({}));
    let r = add("not-a-key", json!({}));
    assert_eq!(r.status, 400);
    let r = post(
        &f.sock,
        "/v1/notices",
        json!({"action": "add", "type": "warning", "key": "example.com/x"}),
    );
    assert_eq!(r.status, 400);

    let r = get(
        &f.sock,
        "/v1/notices?types=custom&keys=canonical.com/redis/switch",
    );
    let v = r.json()["result"].clone();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["occurrences"], 2);
    assert_eq!(v[0]["last-data"]["primary"], "redis-2");
    assert_eq!(v[0]["type"], "custom");
    let r = get(&f.sock, &format!("/v1/notices/{id}"));
    assert_eq!(r.json()["result"]["key"], "canonical.com/redis/switch");
    assert_eq!(get(&f.sock, "/v1/notices/999").status, 404);
    let all = get(&f.sock, "/v1/notices?users=all").json()["result"].clone();
    assert_eq!(all.as_array().unwrap().len(), 2);

    let after = v[0]["last-repeated"].as_str().unwrap().to_string();
    let r = get(
        &f.sock,
        &format!("/v1/notices?keys=canonical.com/redis/switch&after={after}"),
    );
    assert_eq!(r.json()["result"], json!([]));

    // The model's view: by id, and as a cursor that also sees repeats.
    let by_id = f.server().notices_after(0);
    assert_eq!(by_id.len(), 2);
    let (seen, cursor) = f.server().custom_notices_since(0);
    assert_eq!(seen.len(), 2);
    add("canonical.com/redis/switch", json!({"primary": "redis-3"}));
    let (again, _) = f.server().custom_notices_since(cursor);
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].last_data.get("primary").map(String::as_str),
        Some("redis-3")
    );

    // Long poll: returns as soon as a matching notice arrives.
    let sock = f.sock.clone();
    let waiter = std::thread::spawn(move || {
        get(&sock, "/v1/notices?keys=example.com/late&timeout=10s").json()["result"].clone()
    });
    std::thread::sleep(Duration::from_millis(200));
    add("example.com/late", json!({}));
    let got = waiter.join().unwrap();
    assert_eq!(got[0]["key"], "example.com/late");
}

#[test]
fn as_root_a_service_sees_the_containers_directories_and_hosts_file() {
    if !is_root() {
        eprintln!("skipped: needs root for mount namespaces");
        return;
    }
    let hosts_dir = tempfile::tempdir().unwrap();
    let hosts = hosts_dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.88 redis-k8s-0.redis-k8s-endpoints.test.svc.cluster.local\n",
    )
    .unwrap();
    let hosts2 = hosts.clone();
    let f = Fixture::with(move |c| {
        c.hosts_file = Some(hosts2);
        c.env.insert("HOSTNAME".into(), "redis-k8s-0".into());
    });
    let marker = format!("marker-{}", std::process::id());
    push(
        &f.sock,
        "/etc/redis-server/x.conf",
        marker.as_bytes(),
        json!({}),
    );
    let layer = "services:\n  look:\n    override: replace\n    command: sh -c 'cat /etc/redis-server/x.conf; echo; echo uid=$(id -u); echo host=$(hostname); grep -c redis-k8s-endpoints /etc/hosts; exec sleep 60'\n    user: redis\n";
    assert_eq!(add_layer(&f.sock, "l", layer, false).status, 200);
    let ch = service_action(&f.sock, "start", &["look"]);
    assert_eq!(ch["status"], "Done", "{ch}");
    eventually("service output", Duration::from_secs(5), || {
        f.log_text().contains("[look] 1")
    });
    let log = f.log_text();
    assert!(log.contains(&format!("[look] {marker}")), "{log}");
    let uid = std::process::Command::new("id")
        .args(["-u", "redis"])
        .output()
        .unwrap();
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
    assert!(log.contains(&format!("[look] uid={uid}")), "{log}");
    assert!(log.contains("[look] host=redis-k8s-0"), "{log}");
    // The host's own /etc/redis-server was not touched.
    assert!(!Path::new("/etc/redis-server/x.conf").exists());
    let pid = f.pid("look").unwrap();
    drop(f);
    assert!(!alive(pid), "shutdown left the service running");
}

#[test]
fn a_real_redis_server_runs_with_a_pushed_config_and_nothing_survives_shutdown() {
    if !Path::new("/usr/bin/redis-server").exists() {
        eprintln!("skipped: no redis-server");
        return;
    }
    let mut f = Fixture::new();
    let conf = "bind 127.0.0.77\nport 6399\ndaemonize no\nprotected-mode no\nsave \"\"\nappendonly no\ndir /var/lib/redis\n";
    let owner = if is_root() {
        json!({"permissions": "640", "user": "redis", "group": "redis"})
    } else {
        json!({"permissions": "640"})
    };
    push(
        &f.sock,
        "/etc/redis-server/redis.conf",
        conf.as_bytes(),
        owner,
    );
    let conf_path = if is_root() {
        "/etc/redis-server/redis.conf".to_string()
    } else {
        // Without mount namespaces services see host paths.
        f.root
            .join("etc/redis-server/redis.conf")
            .to_string_lossy()
            .into_owned()
    };
    let user = if is_root() {
        "    user: redis\n    group: redis\n"
    } else {
        ""
    };
    if is_root() {
        // The data dir must belong to redis, as in the rock.
        let r = post(
            &f.sock,
            "/v1/files",
            json!({"action": "make-dirs", "dirs": [
                {"path": "/var/lib/redis", "make-parents": true, "user": "redis", "group": "redis"}
            ]}),
        );
        assert!(r.json()["result"][0].get("error").is_none());
    }
    let layer = format!(
        "services:\n  redis:\n    override: replace\n    command: redis-server {conf_path}\n    startup: enabled\n{user}"
    );
    assert_eq!(add_layer(&f.sock, "redis", &layer, true).status, 200);
    let ch = service_action(&f.sock, "replan", &[]);
    assert_eq!(ch["status"], "Done", "{ch}\n{}", f.log_text());
    let pid = f.pid("redis").expect("redis pid");

    let client = redis::Client::open("redis://127.0.0.77:6399/").unwrap();
    let mut con = None;
    eventually("redis answers", Duration::from_secs(5), || {
        con = client.get_connection().ok();
        con.is_some()
    });
    let pong: String = redis::cmd("PING").query(con.as_mut().unwrap()).unwrap();
    assert_eq!(pong, "PONG");
    drop(con);

    f.server.take().unwrap().shutdown();
    assert!(!alive(pid), "redis-server survived the daemon");
    assert!(!f.sock.exists(), "socket removed");
    assert!(std::net::TcpStream::connect("127.0.0.77:6399").is_err());
}

#[test]
fn a_failing_check_goes_down_makes_health_502_and_recovers() {
    let f = Fixture::new();
    // A port with nothing listening (grab a free one, then close it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let layer = format!(
        "checks:\n  db:\n    override: replace\n    level: ready\n    period: 100ms\n    timeout: 50ms\n    threshold: 2\n    tcp: {{port: {port}, host: 127.0.0.1}}\n"
    );
    assert_eq!(add_layer(&f.sock, "c", &layer, false).status, 200);
    eventually("check down", Duration::from_secs(5), || {
        get(&f.sock, "/v1/checks").json()["result"][0]["status"] == "down"
    });
    let r = get(&f.sock, "/v1/health?level=ready");
    assert_eq!(r.status, 502);
    let v = r.json();
    assert_eq!(v["type"], "sync");
    assert_eq!(v["result"]["healthy"], false);
    assert_eq!(get(&f.sock, "/v1/health?level=alive").status, 200);
    let events = f.server().check_events();
    assert_eq!(events.len(), 1);
    assert!(events[0].failed);
    assert_eq!(events[0].check, "db");

    let _listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    eventually("check up", Duration::from_secs(5), || {
        get(&f.sock, "/v1/checks").json()["result"][0]["status"] == "up"
    });
    assert_eq!(get(&f.sock, "/v1/health").status, 200);
    let events = f.server().check_events();
    assert!(!events.last().unwrap().failed);

    let r = post(
        &f.sock,
        "/v1/checks",
        json!({"action": "stop", "checks": ["db"]}),
    );
    assert_eq!(r.json()["result"]["changed"], json!(["db"]));
    assert_eq!(
        get(&f.sock, "/v1/checks").json()["result"][0]["status"],
        "inactive"
    );
}

#[test]
fn the_socket_is_open_to_other_users_and_several_servers_share_a_process() {
    let a = Fixture::new();
    let b = Fixture::new();
    let mode = std::fs::metadata(&a.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    assert_eq!(get(&a.sock, "/v1/system-info").status, 200);
    assert_eq!(get(&b.sock, "/v1/system-info").status, 200);
    assert_eq!(a.server().request_count(), 1);
}

#[test]
fn a_non_root_caller_may_record_notices_but_not_use_admin_endpoints() {
    if !is_root() || !Path::new("/usr/bin/curl").exists() {
        eprintln!("skipped: needs root and curl");
        return;
    }
    let f = Fixture::new();
    // Let the redis user reach the socket.
    let mut p = f.sock.parent().unwrap().to_path_buf();
    while p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p = p.parent().unwrap().to_path_buf();
    }
    let curl_as_redis = |args: &[&str]| -> Value {
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=redis",
                "--regid=redis",
                "--clear-groups",
                "--",
                "curl",
                "-s",
            ])
            .arg("--unix-socket")
            .arg(&f.sock)
            .args(args)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    let v = curl_as_redis(&[
        "-X",
        "POST",
        "-d",
        r#"{"action":"add","type":"custom","key":"canonical.com/redis/from-redis"}"#,
        "http://localhost/v1/notices",
    ]);
    assert_eq!(v["status-code"], 200, "{v}");
    let v = curl_as_redis(&["http://localhost/v1/plan?format=yaml"]);
    assert_eq!(v["status-code"], 401);
    assert_eq!(v["result"]["message"], "access denied");

    // Root sees another user's notice only with users=all.
    let own = get(&f.sock, "/v1/notices").json()["result"].clone();
    assert_eq!(own, json!([]));
    let all = get(&f.sock, "/v1/notices?users=all").json()["result"].clone();
    assert_eq!(all[0]["key"], "canonical.com/redis/from-redis");
    assert!(all[0]["user-id"].as_u64().is_some_and(|u| u != 0));
    assert_eq!(f.server().notices_after(0).len(), 1);
}

#[test]
fn signals_reach_the_service_and_a_stubborn_one_is_killed_after_kill_delay() {
    let f = Fixture::new();
    let layer = "services:\n  stubborn:\n    override: replace\n    command: sh -c 'trap \"echo got-hup\" HUP; trap \"\" TERM; while true; do sleep 0.1; done'\n    kill-delay: 500ms\n";
    assert_eq!(add_layer(&f.sock, "l", layer, false).status, 200);
    assert_eq!(
        service_action(&f.sock, "start", &["stubborn"])["status"],
        "Done"
    );
    let r = post(
        &f.sock,
        "/v1/signals",
        json!({"signal": "SIGHUP", "services": ["stubborn"]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"], true);
    eventually("trap output", Duration::from_secs(5), || {
        f.log_text().contains("[stubborn] got-hup")
    });
    let r = post(
        &f.sock,
        "/v1/signals",
        json!({"signal": "SIGNOPE", "services": ["stubborn"]}),
    );
    assert_eq!(r.status, 400);

    let pid = f.pid("stubborn").unwrap();
    let t0 = Instant::now();
    let ch = service_action(&f.sock, "stop", &["stubborn"]);
    assert_eq!(ch["status"], "Done", "{ch}");
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "waited for kill-delay"
    );
    assert!(
        ch["tasks"][0]["log"].to_string().contains("SIGKILL"),
        "{ch}"
    );
    eventually("killed", Duration::from_secs(3), || !alive(pid));
    let r = post(
        &f.sock,
        "/v1/signals",
        json!({"signal": "SIGHUP", "services": ["stubborn"]}),
    );
    assert_eq!(r.status, 400, "not running");
}

#[test]
fn aborting_a_change_holds_the_tasks_not_yet_started() {
    let f = Fixture::new();
    let layer = "services:\n  first:\n    override: replace\n    command: sleep 60\n  second:\n    override: replace\n    command: sleep 60\n    after: [first]\n";
    assert_eq!(add_layer(&f.sock, "l", layer, false).status, 200);
    let r = post(
        &f.sock,
        "/v1/services",
        json!({"action": "start", "services": ["first", "second"]}),
    );
    let id = r.json()["change"].as_str().unwrap().to_string();
    let r = post(
        &f.sock,
        &format!("/v1/changes/{id}"),
        json!({"action": "abort"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ch = wait_change(&f.sock, &id);
    assert_eq!(ch["tasks"][1]["summary"], "Start service \"second\"");
    assert_eq!(ch["tasks"][1]["status"], "Hold");
    assert!(f.pid("second").is_none());
    let r = post(
        &f.sock,
        &format!("/v1/changes/{id}"),
        json!({"action": "abort"}),
    );
    assert_eq!(r.status, 400, "nothing pending");
}

#[test]
fn a_client_expecting_100_continue_is_told_to_go_on() {
    let f = Fixture::new();
    let body = json!({"action": "add", "type": "custom", "key": "example.com/big", "data": {"k": "v".repeat(2000)}}).to_string();
    let mut s = UnixStream::connect(&f.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/notices HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    rd.read_line(&mut line).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let r = read_response(&mut rd);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["id"], "1");
}
