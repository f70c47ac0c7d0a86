//! Scenario tests of the two-unit witness sentinel ([`redis_k8s::witness`]): state in, hook,
//! state out (Pebble plan and files, peer unit databag).
//!
//! The witness decision reads the unit's own Redis role from the real server, so the
//! two-unit tests run a real redis-server behind each unit's pod name: the test re-runs
//! itself in a private mount namespace whose `/etc/hosts` maps the pod names to
//! 127.0.99.x (as tests/handler_scenarios.rs does). Processes die with Drop guards.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::{MemoryPebble, MemoryPebbleProvider};
use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, World};
use redis_k8s::sentinel::sentinel_id;
use redis_k8s::witness::{witness_id, WITNESS_CHECK, WITNESS_CONFIG_PATH, WITNESS_SERVICE};

const APP: &str = "redis-k8s";
const U0: &str = "redis-k8s/0";
const U1: &str = "redis-k8s/1";
const SENTINEL_CONF: &str = "/etc/redis-server/sentinel.conf";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn world(n: usize) -> Arc<Mutex<World>> {
    let mut w = World::new("scn");
    w.add_app(APP, CharmMeta::load(repo()).expect("charm metadata"))
        .unwrap();
    for _ in 0..n {
        w.add_unit(APP).unwrap();
    }
    w.set_leader(U0);
    Arc::new(Mutex::new(w))
}

fn run(s: &mut Scenario<'_>, hook: &str) {
    let r = s
        .run::<RedisK8sCharm>(&format!("hooks/{hook}"), HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "{hook}: {:?}", r.error);
}

fn fqdn(n: u8) -> String {
    format!("{APP}-{n}.{APP}-endpoints.scn.svc.cluster.local")
}

fn addr(n: u8) -> String {
    format!("127.0.99.{}", n + 1)
}

fn peer_id(w: &Arc<Mutex<World>>) -> u32 {
    w.lock()
        .unwrap()
        .peer_relation_id(APP, "redis-peers")
        .expect("peer relation")
}

fn bag(w: &Arc<Mutex<World>>, owner: &str) -> BTreeMap<String, String> {
    let id = peer_id(w);
    w.lock().unwrap().relation_data(id, owner)
}

fn set_bag(w: &Arc<Mutex<World>>, owner: &str, key: &str, value: &str) {
    let id = peer_id(w);
    let mut wl = w.lock().unwrap();
    let mut data = wl.relation_data(id, owner);
    data.insert(key.into(), value.into());
    wl.set_relation_data(id, owner, data);
}

fn admin_password(w: &Arc<Mutex<World>>) -> String {
    let uri = bag(w, APP)["passwords-secret"].clone();
    w.lock().unwrap().secret_content(&uri).expect("the secret")["redis-password"].clone()
}

fn witness_planned(p: &MemoryPebble) -> bool {
    p.plan().services.contains_key(WITNESS_SERVICE)
}

/// The witness check's status in `p` (`up`, `down`, `inactive`); panics when not planned.
fn check_status(p: &MemoryPebble) -> String {
    use redis_k8s::ops::pebble::Pebble;
    let checks = p.checks(None, &[WITNESS_CHECK]).expect("checks");
    assert_eq!(checks.len(), 1, "{checks:?}");
    checks[0].status.clone()
}

struct Proc(std::process::Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real redis-server on `host` with the app's admin password (in a 0600 file, not argv),
/// a replica of `replicaof` when given.
fn redis(dir: &Path, host: &str, password: &str, replicaof: Option<&str>) -> Proc {
    let mut conf = format!(
        "bind {host}\nport 6379\nsave \"\"\nappendonly no\ndir {}\nrequirepass {password}\n\
         masterauth {password}\n",
        dir.display()
    );
    if let Some(p) = replicaof {
        conf.push_str(&format!("replicaof {p} 6379\n"));
    }
    let path = dir.join(format!("redis-{host}.conf"));
    std::fs::write(&path, conf).unwrap();
    let p = Proc(
        std::process::Command::new("redis-server")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect((host, 6379)).is_err() {
        assert!(Instant::now() < deadline, "{host}:6379 never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Re-run `test` in a private mount namespace whose /etc/hosts maps the pod names of units
/// 0 and 1 to 127.0.99.1 and .2. `true` in the parent (the child passed), `false` in the
/// child (go on with the body).
fn in_hosts_namespace(test: &str) -> bool {
    if std::env::var_os("WITNESS_SCENARIOS_NS").is_some() {
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let mut text = "127.0.0.1 localhost\n".to_string();
    for n in 0..2 {
        text.push_str(&format!("{} {}\n", addr(n), fqdn(n)));
    }
    std::fs::write(&hosts, text).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("mount --bind \"$HOSTS_FILE\" /etc/hosts && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("HOSTS_FILE", &hosts)
        .env("WITNESS_SCENARIOS_NS", "1")
        .output()
        .expect("unshare (util-linux) runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} in its namespace:\n{text}"
    );
    true
}

/// Two units, unit 0 primary: the replica's unit (1) renders the witness into its
/// sentinel.conf, waits while unit 0's databag says its witness runs, and starts the
/// witness (its own 0600 conf on 26380 under the app's id, service `startup: disabled`)
/// once unit 0 says `witness: stopped`. The primary's unit (0) never plans one and
/// records `witness: stopped`.
#[test]
fn a_two_unit_replica_runs_the_witness_once_the_primary_side_says_stopped() {
    if !root() {
        eprintln!("skipping: needs root for a mount namespace");
        return;
    }
    if in_hosts_namespace("a_two_unit_replica_runs_the_witness_once_the_primary_side_says_stopped")
    {
        return;
    }
    let w = world(2);
    let p0 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s0 = Scenario::new(w.clone(), U0, repo(), &p0);
    run(&mut s0, "leader-elected");
    let pw = admin_password(&w);
    let dir = tempfile::tempdir().unwrap();
    let _r0 = redis(dir.path(), &addr(0), &pw, None);
    let _r1 = redis(dir.path(), &addr(1), &pw, Some(&addr(0)));

    // The primary's unit: no witness, and it says so.
    run(&mut s0, "config-changed");
    assert!(!witness_planned(&p0.get("sentinel")));
    assert_eq!(
        bag(&w, U0).get("witness").map(String::as_str),
        Some("stopped")
    );
    // Its sentinel knows the witness on the replica's host.
    let wid = witness_id("scn", APP);
    let conf0 = p0.get("sentinel").file(SENTINEL_CONF).unwrap().text();
    let line = format!("sentinel known-sentinel {APP} {} 26380 {wid}", fqdn(1));
    assert!(conf0.lines().any(|l| l == line), "no {line:?} in\n{conf0}");

    // The replica's unit, while unit 0 claims a running witness: it waits.
    set_bag(&w, U0, "witness", "running");
    let p1 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s1 = Scenario::new(w.clone(), U1, repo(), &p1);
    run(&mut s1, "config-changed");
    let sent1 = p1.get("sentinel");
    assert_ne!(
        sent1.service_state(WITNESS_SERVICE).as_deref(),
        Some("active")
    );
    assert!(sent1.file(WITNESS_CONFIG_PATH).is_none());
    assert_eq!(
        bag(&w, U1).get("witness").map(String::as_str),
        Some("stopped")
    );
    let conf1 = sent1.file(SENTINEL_CONF).unwrap().text();
    assert!(conf1.lines().any(|l| l == line), "no {line:?} in\n{conf1}");

    // Unit 0 says stopped: the replica starts the witness.
    set_bag(&w, U0, "witness", "stopped");
    run(&mut s1, "config-changed");
    let plan = sent1.plan();
    let svc = &plan.services[WITNESS_SERVICE];
    assert_eq!(
        svc.startup.as_deref(),
        Some("disabled"),
        "replan must not start it"
    );
    assert_eq!(
        svc.command.as_deref(),
        Some("redis-server /etc/redis-server/sentinel-witness.conf --sentinel")
    );
    assert_eq!(
        sent1.service_state(WITNESS_SERVICE).as_deref(),
        Some("active")
    );
    let f = sent1
        .file(WITNESS_CONFIG_PATH)
        .expect("witness conf pushed");
    assert_eq!(f.permissions, 0o600);
    assert_eq!(f.user, "redis");
    let wconf = f.text();
    assert!(wconf.contains("\nport 26380\n"), "{wconf}");
    assert!(wconf.contains(&format!("sentinel myid {wid}\n")), "{wconf}");
    for (n, unit) in [(0u8, U0), (1, U1)] {
        let l = format!(
            "sentinel known-sentinel {APP} {} 26379 {}",
            fqdn(n),
            sentinel_id("scn", unit)
        );
        assert!(wconf.lines().any(|x| x == l), "no {l:?} in\n{wconf}");
    }
    assert!(
        wconf.contains(&format!("sentinel monitor {APP} {} 6379 2", fqdn(0))),
        "{wconf}"
    );
    assert_eq!(
        bag(&w, U1).get("witness").map(String::as_str),
        Some("running")
    );
    // Its check probes it on its own port (the unit sentinel's probe, next port), started
    // with it.
    let check = &plan.checks[WITNESS_CHECK];
    let unit_probe = plan.checks["sentinel-up"]
        .exec
        .as_ref()
        .unwrap()
        .command
        .clone();
    assert!(unit_probe.ends_with(" -p 26379 QUIT"), "{unit_probe}");
    assert_eq!(
        check.exec.as_ref().map(|e| e.command.clone()),
        Some(unit_probe.replace(" -p 26379 ", " -p 26380 "))
    );
    assert_eq!(check.level.as_deref(), Some("ready"));
    assert_eq!(check.startup.as_deref(), Some("disabled"));
    assert_eq!(check_status(&sent1), "up");

    // Another hook keeps it as it is.
    run(&mut s1, "update-status");
    assert_eq!(
        sent1.service_state(WITNESS_SERVICE).as_deref(),
        Some("active")
    );
    assert_eq!(
        bag(&w, U1).get("witness").map(String::as_str),
        Some("running")
    );
}

/// Three units: nobody runs a witness, nobody renders one, nobody records the key.
#[test]
fn three_units_have_no_witness() {
    let w = world(3);
    let p0 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s0 = Scenario::new(w.clone(), U0, repo(), &p0);
    run(&mut s0, "leader-elected");
    let p1 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s1 = Scenario::new(w.clone(), U1, repo(), &p1);
    run(&mut s1, "config-changed");
    run(&mut s1, "update-status");
    let sent = p1.get("sentinel");
    assert!(!witness_planned(&sent));
    let conf = sent.file(SENTINEL_CONF).unwrap().text();
    assert!(!conf.contains(" 26380 "), "{conf}");
    assert!(!bag(&w, U1).contains_key("witness"));
}

/// After a scale-up from two to three units, a unit that still runs the witness stops it,
/// removes its config and records `witness: stopped`.
#[test]
fn a_running_witness_is_stopped_after_a_scale_up() {
    use redis_k8s::ops::pebble::{CheckAction, Pebble, ServiceAction};
    let w = world(3);
    let p0 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s0 = Scenario::new(w.clone(), U0, repo(), &p0);
    run(&mut s0, "leader-elected");
    let p1 = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let sent = p1.get("sentinel");
    sent.add_layer(
        WITNESS_SERVICE,
        &redis_k8s::witness::witness_layer("127.0.0.1"),
        true,
    )
    .unwrap();
    sent.check_action(CheckAction::Start, &[WITNESS_CHECK])
        .unwrap();
    sent.seed_file(WITNESS_CONFIG_PATH, b"port 26380\n");
    sent.service_action(ServiceAction::Start, &[WITNESS_SERVICE])
        .unwrap();
    sent.set_service_state(WITNESS_SERVICE, "active");
    set_bag(&w, U1, "witness", "running");
    let mut s1 = Scenario::new(w.clone(), U1, repo(), &p1);
    run(&mut s1, "config-changed");
    assert_ne!(
        sent.service_state(WITNESS_SERVICE).as_deref(),
        Some("active")
    );
    assert!(sent.file(WITNESS_CONFIG_PATH).is_none());
    assert_eq!(
        bag(&w, U1).get("witness").map(String::as_str),
        Some("stopped")
    );
    // Its check is stopped with it: a witness stopped on purpose is no failing check.
    assert_eq!(check_status(&sent), "inactive");
}
