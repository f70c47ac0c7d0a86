//! Scenario tests (state in, event, state out) for the handler branches the other scenario
//! files do not cover; the audit that maps each `(event, handler)` of
//! `RedisK8sCharm::register` and its branches to a test is `docs/handlers.md`.
//!
//! Redis-dependent branches run against real `redis-server` / `redis-sentinel` /
//! `prometheus-redis-exporter` processes on 127.0.93.x, each killed by a drop guard.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::health::{EXPORTER_PASSWORD_PATH, EXPORTER_SERVICE};
use redis_k8s::ops::hookcmds::{StatusName, StatusValue};
use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, World};

const APP: &str = "redis-k8s";
const CONF: &str = "/etc/redis-server/redis.conf";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `n` units of the app; unit 0 leads.
fn world(n: usize) -> Arc<Mutex<World>> {
    let mut w = World::new("scn");
    w.add_app(APP, CharmMeta::load(repo()).expect("charm metadata"))
        .unwrap();
    for _ in 0..n {
        w.add_unit(APP).unwrap();
    }
    w.set_leader("redis-k8s/0");
    Arc::new(Mutex::new(w))
}

fn set_config(w: &Arc<Mutex<World>>, pairs: &[(&str, serde_json::Value)]) {
    let mut w = w.lock().unwrap();
    let mut cfg = w.config(APP);
    for (k, v) in pairs {
        cfg.insert(k.to_string(), v.clone());
    }
    w.set_config(APP, cfg).unwrap();
}

fn status(w: &Arc<Mutex<World>>, unit: &str) -> StatusValue {
    w.lock().unwrap().unit_status(unit)
}

/// Run `hook` (no relation) and check that the dispatch succeeded.
fn run(s: &mut Scenario<'_>, hook: &str) {
    let r = s
        .run::<RedisK8sCharm>(&format!("hooks/{hook}"), HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "{hook}: {:?}", r.error);
}

// ----- real processes -------------------------------------------------------------------

/// A process killed (and reaped) when dropped, whatever the test did.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[String]) -> Proc {
    Proc(
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}")),
    )
}

fn wait_port(host: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{host}:{port} never listened");
}

/// Start a real redis-server from a redis.conf the charm rendered, moved onto `host` and a
/// scratch directory (the container paths do not exist here).
fn redis_from_rendered(conf: &str, host: &str, dir: &Path) -> Proc {
    let adapted: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("bind ") {
                format!("bind {host}")
            } else if l.starts_with("dir ") {
                format!("dir {}", dir.display())
            } else if l.starts_with("logfile ") {
                "logfile \"\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("redis.conf");
    std::fs::write(&path, adapted + "\n").unwrap();
    let p = spawn("redis-server", &[path.display().to_string()]);
    wait_port(host, 6379);
    p
}

/// One HTTP GET of `/metrics`; the body.
fn scrape(host: &str, port: u16) -> String {
    let mut s = std::net::TcpStream::connect((host, port)).expect("exporter listens");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

// ----- task: the exporter scrapes in both auth modes -------------------------------------

/// The exporter service and password file the charm produced, run for real against a real
/// redis-server started from the charm's redis.conf: `redis_up 1` with `allow-no-auth`
/// (a `nopass` default user refuses the one-argument AUTH) and without it.
fn exporter_scrapes(no_auth: bool, host: &str) {
    const EXPORTER: &str = "/usr/bin/prometheus-redis-exporter";
    if !Path::new(EXPORTER).exists() {
        eprintln!("skipping: {EXPORTER} not installed");
        return;
    }
    let w = world(1);
    set_config(&w, &[("allow-no-auth", serde_json::Value::Bool(no_auth))]);
    let pebble = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s = Scenario::new(w.clone(), "redis-k8s/0", repo(), &pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "redis-pebble-ready");
    let redis = pebble.get("redis");
    let conf = redis.file(CONF).expect("redis.conf pushed").text();
    assert_eq!(
        conf.contains("user default on nopass"),
        no_auth,
        "the rendered default user: {conf}"
    );
    let plan = redis.plan();
    let cmd = plan.services[EXPORTER_SERVICE]
        .command
        .clone()
        .expect("exporter command");
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let target = words
        .iter()
        .find_map(|w| w.strip_prefix("--redis.addr="))
        .expect("--redis.addr")
        .to_string();
    let file = redis
        .file(EXPORTER_PASSWORD_PATH)
        .expect("exporter password file")
        .text();
    let map: BTreeMap<String, String> = serde_json::from_str(&file).unwrap();
    assert!(map.contains_key(&target), "{file}");

    // The same command and file, moved onto our scratch address and paths.
    let dir = tempfile::tempdir().unwrap();
    let _redis = redis_from_rendered(&conf, host, dir.path());
    let our_target = format!("redis://{host}:6379");
    let pw_file = dir.path().join("exporter-password.json");
    std::fs::write(
        &pw_file,
        file.replace(&target, &our_target).replace("\\/", "/"),
    )
    .unwrap();
    let args: Vec<String> = words[1..]
        .iter()
        .map(|w| {
            if w.starts_with("--redis.addr=") {
                format!("--redis.addr={our_target}")
            } else if w.starts_with("--redis.password-file=") {
                format!("--redis.password-file={}", pw_file.display())
            } else if w.starts_with("--web.listen-address=") {
                format!("--web.listen-address={host}:9121")
            } else {
                w.to_string()
            }
        })
        .collect();
    let _exporter = spawn(EXPORTER, &args);
    wait_port(host, 9121);
    let metrics = scrape(host, 9121);
    assert!(
        metrics.lines().any(|l| l == "redis_up 1"),
        "no_auth={no_auth}: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("redis_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Its INFO came through: the real server's role.
    assert!(
        metrics.contains("redis_instance_info{"),
        "no instance info scraped"
    );
}

#[test]
fn exporter_scrapes_with_allow_no_auth() {
    exporter_scrapes(true, "127.0.93.1");
}

#[test]
fn exporter_scrapes_with_passwords() {
    exporter_scrapes(false, "127.0.93.2");
}
