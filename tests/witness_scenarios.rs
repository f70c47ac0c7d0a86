//! Scenario tests of the two-unit witness sentinel ([`redis_k8s::witness`]): state in, hook,
//! state out (Pebble plan and files, peer unit databag).
//!
//! The witness decision reads the unit's own Redis role from the real server, so the
//! two-unit tests run a real redis-server behind each unit's pod name: the test re-runs
//! itself in a private mount namespace whose `/etc/hosts` maps the pod names to
//! 127.0.99.x (scenario_support's namespace helpers). Processes die with Drop guards.

mod scenario_support;

use std::path::Path;

use redis_k8s::ops::testing::pebble::MemoryPebble;
use redis_k8s::sentinel::sentinel_id;
use redis_k8s::witness::{witness_id, WITNESS_CHECK, WITNESS_CONFIG_PATH, WITNESS_SERVICE};
use scenario_support::{
    addr_in, bag, containers, fqdn, redis_server, run, scenario, secret_value, set_bag,
    skip_unless_in_hosts_namespace_at, world, Proc, APP, SENTINEL_CONF, U0, U1,
};

/// This file's network for the pod names' addresses: unit `n` is 127.0.99.<n + 1>.
const NET: &str = "99";

fn addr(n: u8) -> String {
    addr_in(NET, 1, n)
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

/// A real redis-server on `host` with the app's admin password, a replica of `replicaof`
/// when given; its data in a directory of its own under `dir`.
fn redis(dir: &Path, host: &str, password: &str, replicaof: Option<&str>) -> Proc {
    redis_server(host, Some(password), replicaof, &dir.join(host))
}

/// Two units, unit 0 primary: the replica's unit (1) renders the witness into its
/// sentinel.conf, waits while unit 0's databag says its witness runs, and starts the
/// witness (its own 0600 conf on 26380 under the app's id, service `startup: disabled`)
/// once unit 0 says `witness: stopped`. The primary's unit (0) never plans one and
/// records `witness: stopped`.
#[test]
fn a_two_unit_replica_runs_the_witness_once_the_primary_side_says_stopped() {
    if skip_unless_in_hosts_namespace_at(
        "a_two_unit_replica_runs_the_witness_once_the_primary_side_says_stopped",
        NET,
        1,
    ) {
        return;
    }
    let w = world(2);
    let p0 = containers();
    let mut s0 = scenario(&w, U0, &p0);
    run(&mut s0, "leader-elected");
    let pw = secret_value(&w, "redis-password");
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
    set_bag(&w, U0, &[("witness", "running")]);
    let p1 = containers();
    let mut s1 = scenario(&w, U1, &p1);
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
    set_bag(&w, U0, &[("witness", "stopped")]);
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
    let p0 = containers();
    let mut s0 = scenario(&w, U0, &p0);
    run(&mut s0, "leader-elected");
    let p1 = containers();
    let mut s1 = scenario(&w, U1, &p1);
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
    let p0 = containers();
    let mut s0 = scenario(&w, U0, &p0);
    run(&mut s0, "leader-elected");
    let p1 = containers();
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
    set_bag(&w, U1, &[("witness", "running")]);
    let mut s1 = scenario(&w, U1, &p1);
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
