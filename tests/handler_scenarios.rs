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

// ----- helpers on the peer relation -------------------------------------------------------

const U0: &str = "redis-k8s/0";
const U1: &str = "redis-k8s/1";
const U2: &str = "redis-k8s/2";
const FQDN0: &str = "redis-k8s-0.redis-k8s-endpoints.scn.svc.cluster.local";

fn peer_id(w: &Arc<Mutex<World>>) -> u32 {
    w.lock()
        .unwrap()
        .peer_relation_id(APP, "redis-peers")
        .unwrap()
}

fn bag(w: &Arc<Mutex<World>>, owner: &str) -> BTreeMap<String, String> {
    let id = peer_id(w);
    w.lock().unwrap().relation_data(id, owner)
}

fn set_bag(w: &Arc<Mutex<World>>, owner: &str, pairs: &[(&str, &str)]) {
    let id = peer_id(w);
    let mut wl = w.lock().unwrap();
    let mut data = wl.relation_data(id, owner);
    for (k, v) in pairs {
        if v.is_empty() {
            data.remove(*k);
        } else {
            data.insert(k.to_string(), v.to_string());
        }
    }
    wl.set_relation_data(id, owner, data);
}

fn peer_changed(w: &Arc<Mutex<World>>, remote: &str) -> HookInfo {
    HookInfo {
        hook_name: "redis-peers-relation-changed".into(),
        relation_id: Some(peer_id(w)),
        remote_unit: Some(remote.into()),
        remote_app: Some(APP.into()),
        ..HookInfo::default()
    }
}

fn action(name: &str, params: &[(&str, &str)]) -> HookInfo {
    HookInfo {
        action: Some(redis_k8s::ops::testing::world::ActionInvocation {
            name: name.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect(),
        }),
        ..HookInfo::default()
    }
}

// ----- task: a non-leader that cannot read the passwords secret ---------------------------

#[test]
fn update_status_on_a_non_leader_names_an_unreadable_passwords_secret() {
    let w = world(2);
    let pebble0 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s0 = Scenario::new(w.clone(), U0, repo(), &pebble0);
    run(&mut s0, "leader-elected");
    let pebble1 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s1 = Scenario::new(w.clone(), U1, repo(), &pebble1);
    run(&mut s1, "config-changed");
    assert_eq!(
        status(&w, U1).status,
        StatusName::Active,
        "{:?}",
        status(&w, U1)
    );

    // The reference now names a secret this unit cannot read (removed, or never granted).
    set_bag(
        &w,
        APP,
        &[("passwords-secret", "secret:d0000000000000000000")],
    );
    run(&mut s1, "update-status");
    assert_eq!(
        status(&w, U1),
        StatusValue::waiting("Waiting for passwords: cannot read the passwords secret (not found)")
    );
    // Nothing was rewritten with a made-up password, and update-status is never deferred.
    assert!(s1.state.stored.notices.is_empty());
    assert_eq!(
        bag(&w, APP)["passwords-secret"],
        "secret:d0000000000000000000"
    );
}

// ----- task: a stalled rotation is in the leader's status ----------------------------------

#[test]
fn a_rotation_waiting_for_a_unit_names_it_in_the_leaders_status() {
    let w = world(3);
    let pebble0 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s0 = Scenario::new(w.clone(), U0, repo(), &pebble0);
    run(&mut s0, "leader-elected");
    run(&mut s0, "config-changed");
    assert_eq!(status(&w, U0), StatusValue::active("primary"));

    let r = s0
        .run::<RedisK8sCharm>(
            "actions/set-password",
            action("set-password", &[("password", "a-new-admin-password")]),
        )
        .unwrap();
    assert!(
        r.session.action_failure().is_none(),
        "{:?}",
        r.session.action_failure()
    );
    // The leader and unit 1 applied phase add; unit 2 never does (its hooks fail, say).
    set_bag(&w, U0, &[("password-rotation-ack", "1:add")]);
    set_bag(&w, U1, &[("password-rotation-ack", "1:add")]);
    let r = s0
        .run::<RedisK8sCharm>("hooks/redis-peers-relation-changed", peer_changed(&w, U1))
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    let rotation: serde_json::Value =
        serde_json::from_str(&bag(&w, APP)["password-rotation"]).unwrap();
    assert_eq!(rotation["phase"], "add", "held back by unit 2");
    assert_eq!(
        status(&w, U0),
        StatusValue::active("primary; password rotation waiting for redis-k8s/2 (phase add)")
    );

    // Unit 2 catches up: the rotation moves on to the switch, which nobody applied yet.
    set_bag(&w, U2, &[("password-rotation-ack", "1:add")]);
    let r = s0
        .run::<RedisK8sCharm>("hooks/redis-peers-relation-changed", peer_changed(&w, U2))
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    let rotation: serde_json::Value =
        serde_json::from_str(&bag(&w, APP)["password-rotation"]).unwrap();
    assert_eq!(rotation["phase"], "switch");
    assert_eq!(
        status(&w, U0),
        StatusValue::active(
            "primary; password rotation waiting for redis-k8s/0, redis-k8s/1, redis-k8s/2 \
             (phase switch)"
        )
    );

    // All applied the switch; the grace period holds the drop back, and nobody is waited for.
    for u in [U0, U1, U2] {
        set_bag(&w, u, &[("password-rotation-ack", "1:switch")]);
    }
    run(&mut s0, "config-changed");
    assert_eq!(status(&w, U0), StatusValue::active("primary"));
    // A non-leader never reports the leader's bookkeeping.
    let pebble1 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s1 = Scenario::new(w.clone(), U1, repo(), &pebble1);
    set_bag(&w, U1, &[("password-rotation-ack", "")]);
    run(&mut s1, "config-changed");
    assert!(
        !status(&w, U1).message.contains("rotation"),
        "{:?}",
        status(&w, U1)
    );
}
