//! Scenario tests of the `stop` handler (state in, event, state out) against real Redis and
//! Sentinel: unit 0's Redis is the primary, unit 1's its replica, each unit's sentinel runs
//! from the sentinel.conf the charm pushed (see tests/real_units). Outcomes are read from the
//! real processes:
//!
//! - the primary's stop hands over: the former replica is `role:master`, the old primary is
//!   its replica, and (unit 0 leads) `leader-host` names the new primary;
//! - a replica's stop changes no role;
//! - a sole unit's stop does not even connect to its Redis.
//!
//! The charm finds its own address and its peers by pod name, so each test runs again in a
//! private mount namespace whose `/etc/hosts` resolves the pod names (needs root; skipped
//! otherwise). The full handover under a write load is in tests/e2e_refresh.rs.

mod real_units;
mod scenario_support;

use std::time::{Duration, Instant};

use real_units::{bag, fqdn, replication, run, skip_unless_in_hosts_namespace_at, Deployment, APP};
use redis_k8s::ops::testing::world::HookInfo;

const NET: &str = "91";

/// Run `stop` on unit `n` and check it stays within its budget.
fn stop(d: &Deployment, n: u8) {
    let mut s = d.units[n as usize].scenario(&d.w);
    let t0 = Instant::now();
    run(&mut s, "stop", HookInfo::default());
    assert!(
        t0.elapsed() < redis_k8s::switchover::STOP_BUDGET + Duration::from_secs(8),
        "stop took {:?}",
        t0.elapsed()
    );
}

/// Roles of the two units' real Redis: (role, master_host) each.
fn roles(d: &Deployment) -> Vec<(Option<String>, Option<String>)> {
    (0..2)
        .map(|n| {
            let host = d.addr(n);
            (
                replication(&host, &d.password, "role"),
                replication(&host, &d.password, "master_host"),
            )
        })
        .collect()
}

#[test]
fn the_primary_with_peers_hands_over_before_its_pod_goes() {
    if skip_unless_in_hosts_namespace_at(
        "the_primary_with_peers_hands_over_before_its_pod_goes",
        NET,
        10,
    ) {
        return;
    }
    let mut d = Deployment::new(2, NET, 10);
    d.start_redis(0);
    d.start_redis(1);
    d.start_sentinel(0);
    d.start_sentinel(1);
    d.wait_replica_in_sync(1);
    d.wait_sentinel_knows_replica(0, 1);

    stop(&d, 0);

    let (new, old) = (d.addr(1), d.addr(0));
    assert_eq!(
        replication(&new, &d.password, "role").as_deref(),
        Some("master"),
        "the former replica was promoted: {:?}",
        roles(&d)
    );
    real_units::eventually("the old primary follows the new one", 10, || {
        let role = replication(&old, &d.password, "role");
        let master = replication(&old, &d.password, "master_host");
        if role.as_deref() == Some("slave") && master.as_deref() == Some(fqdn(1).as_str()) {
            Ok(())
        } else {
            Err(format!("{:?}", roles(&d)))
        }
    });
    // The leader records the new primary itself (its pod may be down when the notice comes).
    assert_eq!(
        bag(&d.w, APP).get("leader-host").map(String::as_str),
        Some(fqdn(1).as_str()),
        "{:?}",
        bag(&d.w, APP)
    );
}

#[test]
fn a_replica_stops_without_changing_roles() {
    if skip_unless_in_hosts_namespace_at("a_replica_stops_without_changing_roles", NET, 20) {
        return;
    }
    let mut d = Deployment::new(2, NET, 20);
    d.start_redis(0);
    d.start_redis(1);
    d.start_sentinel(0);
    d.start_sentinel(1);
    d.wait_replica_in_sync(1);
    d.wait_sentinel_knows_replica(1, 1);
    let paused_before = client_pauses(&d, 0);

    stop(&d, 1);

    let expected = vec![
        (Some("master".to_string()), None),
        (Some("slave".to_string()), Some(fqdn(0))),
    ];
    assert_eq!(roles(&d), expected);
    // Writes were never paused on the primary, and it still takes them.
    assert_eq!(client_pauses(&d, 0), paused_before, "CLIENT PAUSE was sent");
    assert_eq!(
        real_units::call(&d.addr(0), 6379, &d.password, &["SET", "k", "v"]).as_deref(),
        Some("OK")
    );
    d.wait_replica_in_sync(1);
    assert_eq!(
        bag(&d.w, APP).get("leader-host").map(String::as_str),
        Some(fqdn(0).as_str())
    );
}

#[test]
fn a_sole_unit_stops_without_touching_redis() {
    if skip_unless_in_hosts_namespace_at("a_sole_unit_stops_without_touching_redis", NET, 30) {
        return;
    }
    let mut d = Deployment::new(1, NET, 30);
    // No sentinel: nothing but the charm and this test would connect to Redis.
    d.start_redis(0);
    let connections = || {
        real_units::call(&d.addr(0), 6379, &d.password, &["INFO", "stats"])
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.trim_end()
                        .strip_prefix("total_connections_received:")
                        .and_then(|v| v.parse::<u64>().ok())
                })
            })
            .expect("INFO stats")
    };
    let before = connections();

    stop(&d, 0);

    // Only our own INFO connection since: the charm never connected.
    assert_eq!(connections(), before + 1, "stop connected to Redis");
    assert_eq!(
        replication(&d.addr(0), &d.password, "role").as_deref(),
        Some("master")
    );
    assert_eq!(
        bag(&d.w, APP).get("leader-host").map(String::as_str),
        Some(fqdn(0).as_str())
    );
}

/// How many `CLIENT PAUSE` calls unit `n`'s Redis has served (`INFO commandstats`).
fn client_pauses(d: &Deployment, n: u8) -> u64 {
    real_units::call(&d.addr(n), 6379, &d.password, &["INFO", "commandstats"])
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("cmdstat_client|pause:calls=")
                    .and_then(|r| r.split(',').next())
                    .and_then(|v| v.parse().ok())
            })
        })
        .unwrap_or(0)
}
