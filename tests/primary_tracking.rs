//! Scenario tests of event-driven primary tracking: Sentinel's `client-reconfig-script` in
//! `sentinel.conf`, the script itself in the sentinel container, and the
//! `sentinel-pebble-custom-notice` handler (state in, event, state out). The real switch of
//! primary, end to end, is `tests/e2e_primary_tracking.rs`.

use std::sync::{Arc, Mutex};

use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::World;

mod scenario_support;
use scenario_support::*;

const KEY: &str = "redis-k8s.charm/primary-changed";

/// Three units (unit 0 leads) and a client app related on `redis`.
fn three_units_and_a_client() -> (Arc<Mutex<World>>, u32) {
    let w = world(3);
    let rel = add_client(&w);
    (w, rel)
}

/// Leader elected, both workloads converged, the client relation published.
fn deployed<'p>(w: &Arc<Mutex<World>>, rel: u32, pebble: &'p MemoryPebbleProvider) -> Scenario<'p> {
    let mut s = scenario(w, U0, pebble);
    for hook in ["leader-elected", "config-changed", "sentinel-pebble-ready"] {
        run(&mut s, hook);
    }
    let hook = client_hook("joined", rel, Some("client/0"));
    run_hook(&mut s, hook);
    s
}

/// Run `sentinel-pebble-custom-notice` with `key` the way Juju would (the harness has no
/// notice fields, so the notice variables are added to its environment here); commits on
/// success like a hook's exit code. Returns whether the dispatch succeeded.
fn notice(s: &mut Scenario<'_>, key: &str) -> bool {
    run_with_env(
        s,
        "sentinel-pebble-custom-notice",
        &[
            ("JUJU_NOTICE_ID", "7"),
            ("JUJU_NOTICE_TYPE", "custom"),
            ("JUJU_NOTICE_KEY", key),
        ],
    )
}

#[test]
fn sentinel_conf_names_the_reconfig_script_after_monitor_and_the_script_is_pushed_0750() {
    let (w, rel) = three_units_and_a_client();
    let pebble = containers();
    deployed(&w, rel, &pebble);
    let sentinel = pebble.get("sentinel");
    let conf = sentinel
        .file(SENTINEL_CONF)
        .expect("sentinel.conf pushed")
        .text();
    let line = "\nsentinel client-reconfig-script redis-k8s /etc/redis-server/notify-primary.sh\n";
    let script_at = conf.find(line).unwrap_or_else(|| panic!("{conf}"));
    let monitor_at = conf
        .find("\nsentinel monitor redis-k8s ")
        .expect("monitor line");
    assert!(monitor_at < script_at, "{conf}");
    assert_eq!(conf.matches("client-reconfig-script").count(), 1, "{conf}");

    let script = sentinel
        .file("/etc/redis-server/notify-primary.sh")
        .expect("script pushed");
    assert_eq!(
        (
            script.permissions,
            script.user.as_str(),
            script.group.as_str()
        ),
        (0o750, "redis", "redis")
    );
    let text = script.text();
    assert_eq!(text, redis_k8s::sentinel::notify_primary_script());
    assert!(text.starts_with("#!/bin/sh\n"));
    assert!(text.contains("${PEBBLE_BIN:-/charm/bin/pebble}"));
    assert!(text.contains(&format!("notify {KEY} \"to=$6\"")));
    // The script reaches Pebble inside the pod, and never fails sentinel's retry logic.
    assert!(text.contains("/charm/container/pebble.socket"));
    assert!(text.trim_end().ends_with("exit 0"));
    // The sentinel service only starts after both files are there.
    let calls = sentinel.calls();
    let pos = |needle: &str| calls.iter().position(|c| c.contains(needle));
    let replan = pos("replan").expect("replanned");
    assert!(
        pos("notify-primary.sh").expect("pushed") < replan,
        "{calls:?}"
    );
    assert!(pos("sentinel.conf").expect("pushed") < replan, "{calls:?}");
}

/// The script really records the notice, with the new primary as data, and exits 0 even
/// when Pebble cannot be reached.
#[test]
fn the_script_calls_pebble_notify_and_always_exits_zero() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("notify-primary.sh");
    std::fs::write(&script, redis_k8s::sentinel::notify_primary_script()).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("calls");
    let fake = dir.path().join("pebble");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$PEBBLE_SOCKET $*\" >> '{}'\nexit 3\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = [
        "redis-k8s",
        "leader",
        "start",
        "a.svc",
        "6379",
        "b.svc",
        "6379",
    ];
    let status = std::process::Command::new(&script)
        .args(args)
        .env("PEBBLE_BIN", &fake)
        .env_remove("PEBBLE_SOCKET")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "a failing pebble must not fail the script"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("/charm/container/pebble.socket notify {KEY} to=b.svc\n")
    );
    // No pebble binary at all: still exit 0.
    let status = std::process::Command::new(&script)
        .args(args)
        .env("PEBBLE_BIN", dir.path().join("missing"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn leader_notice_with_sentinel_unreachable_keeps_the_relation_data_and_does_not_crash() {
    let (w, rel) = three_units_and_a_client();
    let pebble = containers();
    let mut s = deployed(&w, rel, &pebble);
    assert_eq!(bag(&w, APP)["leader-host"], FQDN0);
    // A recorded primary that differs from what anyone says: nothing may overwrite it while
    // no sentinel answers (the scenario's hosts do not resolve, so no sentinel is reachable).
    let stale = fqdn(2);
    set_bag(&w, APP, &[("leader-host", &stale)]);
    let client_before = w.lock().unwrap().relation_data(rel, APP);
    assert_eq!(client_before["leader-host"], FQDN0);
    pebble.get("sentinel").clear_calls();

    assert!(notice(&mut s, KEY), "the hook must succeed");
    assert_eq!(bag(&w, APP)["leader-host"], stale, "peer leader-host kept");
    // The client relation follows the peer record (nothing new was learnt from sentinel).
    assert_eq!(
        w.lock().unwrap().relation_data(rel, APP)["leader-host"],
        stale
    );
    // The sentinel container was not touched (its config belongs to sentinel now).
    assert_no_push_or_replan(&pebble, "sentinel");
}

#[test]
fn other_notice_keys_are_ignored() {
    let (w, rel) = three_units_and_a_client();
    let pebble = containers();
    let mut s = deployed(&w, rel, &pebble);
    let peer_before = bag(&w, APP);
    let client_before = w.lock().unwrap().relation_data(rel, APP);
    pebble.get("redis").clear_calls();
    pebble.get("sentinel").clear_calls();
    assert!(notice(&mut s, "example.com/something-else"));
    assert_eq!(bag(&w, APP), peer_before);
    assert_eq!(w.lock().unwrap().relation_data(rel, APP), client_before);
    assert!(pebble.get("redis").calls().is_empty());
    assert!(pebble.get("sentinel").calls().is_empty());
    assert!(s.state.stored.notices.is_empty(), "not deferred");
}

#[test]
fn a_notice_on_a_non_leader_converges_redis_without_touching_app_data() {
    let (w, rel) = three_units_and_a_client();
    let pebble0 = containers();
    deployed(&w, rel, &pebble0);
    let peer_before = bag(&w, APP);
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    run(&mut s1, "config-changed");
    pebble1.get("redis").clear_calls();
    assert!(notice(&mut s1, KEY));
    assert_eq!(bag(&w, APP), peer_before);
    // Unit 1 follows the recorded primary (no sentinel answers here): its redis.conf names it.
    let conf = pebble1.get("redis").file(CONF).expect("redis.conf").text();
    assert!(conf.contains(&format!("replicaof {FQDN0} 6379")), "{conf}");
    assert!(pebble1
        .get("redis")
        .calls()
        .iter()
        .any(|c| c.contains("redis.conf")));
}
