//! Scenario tests (in-memory hook tools and Pebble) for bounded write loss
//! (`min-replicas-to-write` / `min-replicas-max-lag` in redis.conf) and the `switchover`
//! action's input checks. The switchover itself runs against real processes in
//! `tests/e2e_switchover.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redis_k8s::ops::hookcmds::StatusName;
use redis_k8s::ops::testing::world::World;

mod scenario_support;
use scenario_support::*;

/// redis.conf as unit 0 (the leader) renders it; see [`rendered_conf_of`].
fn rendered_conf(w: &Arc<Mutex<World>>) -> Option<String> {
    rendered_conf_of(w, U0)
}

/// redis.conf as `unit` renders it after unit 0's leader-elected and its own
/// redis-pebble-ready (each on fresh containers); `None` when nothing was pushed.
fn rendered_conf_of(w: &Arc<Mutex<World>>, unit: &str) -> Option<String> {
    let leader = containers();
    run(&mut scenario(w, U0, &leader), "leader-elected");
    let pebble = containers();
    let mut s = scenario(w, unit, &pebble);
    run(&mut s, "redis-pebble-ready");
    pebble.get("redis").file(CONF).map(|f| f.text())
}

/// Whether `conf` has exactly this line.
fn has_line(conf: &str, line: &str) -> bool {
    conf.lines().any(|l| l == line)
}

#[test]
fn min_replicas_is_off_with_one_unit() {
    let conf = rendered_conf(&world(1)).expect("redis.conf");
    assert!(has_line(&conf, "min-replicas-to-write 0"), "{conf}");
    assert!(has_line(&conf, "min-replicas-max-lag 10"), "{conf}");
}

#[test]
fn min_replicas_is_one_with_three_units() {
    let w = world(3);
    // A replica renders it, so it holds once the replica is promoted.
    let conf = rendered_conf_of(&w, U1).expect("redis.conf");
    assert!(
        has_line(&conf, &format!("replicaof {FQDN0} 6379")),
        "{conf}"
    );
    assert!(has_line(&conf, "min-replicas-to-write 1"), "{conf}");
    assert!(has_line(&conf, "min-replicas-max-lag 10"), "{conf}");
    // The first primary starts writable (no replica can be in sync before it runs); its
    // next converge or update-status turns it on.
    let conf0 = rendered_conf_of(&w, U0).expect("redis.conf");
    assert!(has_line(&conf0, "min-replicas-to-write 0"), "{conf0}");
}

#[test]
fn explicit_min_replicas_overrides_the_topology() {
    let w = world(1);
    set_config(
        &w,
        &[
            ("min-replicas-to-write", 2.into()),
            ("min-replicas-max-lag", 4.into()),
        ],
    );
    let conf = rendered_conf(&w).expect("redis.conf");
    assert!(has_line(&conf, "min-replicas-to-write 2"), "{conf}");
    assert!(has_line(&conf, "min-replicas-max-lag 4"), "{conf}");
}

#[test]
fn invalid_min_replicas_blocks_naming_the_option() {
    for (option, value) in [("min-replicas-to-write", -5), ("min-replicas-max-lag", 0)] {
        let w = world(1);
        set_config(&w, &[(option, value.into())]);
        let pebble = containers();
        let mut s = scenario(&w, U0, &pebble);
        run(&mut s, "leader-elected");
        run(&mut s, "config-changed");
        let st = status(&w, U0);
        assert_eq!(st.status, StatusName::Blocked);
        assert!(st.message.contains(option), "{}", st.message);
        assert!(pebble.get("redis").file(CONF).is_none());
    }
}

fn run_switchover(unit: &str) -> (Option<String>, BTreeMap<String, String>) {
    let w = world(3);
    let pebble = containers();
    let mut s = scenario(&w, U1, &pebble);
    // Peer data as the leader would have recorded it.
    set_bag(
        &w,
        APP,
        &[
            ("redis-password", &"a".repeat(32)),
            ("sentinel-password", &"b".repeat(32)),
            ("leader-host", FQDN0),
        ],
    );
    let r = run_action(&mut s, "switchover", &[("unit", unit)]);
    assert!(r.error.is_none(), "{:?}", r.error);
    (r.session.action_failure(), r.session.action_results())
}

#[test]
fn switchover_to_an_unknown_unit_fails_naming_it() {
    for unit in ["redis-k8s/7", "other/1", "nonsense"] {
        let (failure, results) = run_switchover(unit);
        let msg = failure.expect("the action fails");
        assert!(msg.contains(unit) && msg.contains("unknown unit"), "{msg}");
        assert!(results.is_empty());
    }
}

#[test]
fn switchover_to_the_current_primary_fails() {
    let (failure, _) = run_switchover(U0);
    let msg = failure.expect("the action fails");
    assert!(msg.contains("already the primary"), "{msg}");
}
