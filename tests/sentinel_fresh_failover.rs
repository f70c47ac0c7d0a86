//! A freshly started set of real sentinels fails over a primary that is already dead, thanks
//! to the `sentinel myid` / `known-replica` / `known-sentinel` lines the charm renders
//! (templates/sentinel.conf.j2, [`redis_k8s::sentinel::KnownPeers`]).
//!
//! A sentinel started with only `sentinel monitor` learns the replicas from the primary's
//! `INFO` and the other sentinels from hello messages published on the primary: with the
//! primary gone it learns neither, cannot reach `ODOWN` and never fails over. This is what a
//! pod replacement does when the primary dies around the same time (a refresh, a node
//! drain, a crash during a rolling restart). The control case shows that window is real.
//!
//! Real redis-server and redis-sentinel processes on loopback addresses of their own,
//! killed by Drop guards.

mod scenario_support;

use std::path::Path;
use std::time::{Duration, Instant};

use redis_k8s::redis_client::{value_to_string, RedisConn};
use redis_k8s::sentinel::{sentinel_id, KnownPeers};
use scenario_support::{
    eventually_some as eventually, redis_server, render_sentinel_template, sentinel_from_conf,
    Proc, APP,
};

const SPW: &str = "sentinel-pw";

fn addr(subnet: &str, n: usize) -> String {
    format!("{subnet}.{}", n + 1)
}

/// Unit `n`'s Redis (no password), a replica of unit 0's unless it is unit 0.
fn start_redis(dir: &Path, subnet: &str, n: usize) -> Proc {
    let primary = addr(subnet, 0);
    let replicaof = (n > 0).then_some(primary.as_str());
    redis_server(
        &addr(subnet, n),
        None,
        replicaof,
        &dir.join(format!("redis-{n}")),
    )
}

/// Render the charm's template for unit `n` of three, with or without the peer lines.
fn render(subnet: &str, n: usize, with_peers: bool) -> String {
    let units: Vec<String> = (0..3).map(|i| format!("{APP}/{i}")).collect();
    let own = addr(subnet, n);
    let primary = addr(subnet, 0);
    let peers = if with_peers {
        KnownPeers::new("fresh", &units[n], &units, &primary, |u| {
            let i: usize = u.rsplit('/').next().unwrap().parse().unwrap();
            addr(subnet, i)
        })
    } else {
        KnownPeers::default()
    };
    render_sentinel_template(&own, 26379, &primary, SPW, peers)
}

fn start_sentinel(dir: &Path, subnet: &str, n: usize, with_peers: bool) -> Proc {
    sentinel_from_conf(
        &render(subnet, n, with_peers),
        &addr(subnet, n),
        26379,
        &dir.join(format!("sentinel-{n}.conf")),
    )
}

fn role(a: &str) -> Option<String> {
    let mut c = RedisConn::connect(a, 6379, None).ok()?;
    match c.command(&["ROLE"]).ok()? {
        redis::Value::Array(items) if !items.is_empty() => Some(value_to_string(&items[0])),
        _ => None,
    }
}

fn primary_per_sentinel(a: &str) -> Option<String> {
    let mut c = RedisConn::connect(a, 26379, Some(SPW)).ok()?;
    match c
        .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", APP])
        .ok()?
    {
        redis::Value::Array(items) if !items.is_empty() => Some(value_to_string(&items[0])),
        _ => None,
    }
}

/// Three Redis (unit 0 primary), replication up, then the primary dies, then three fresh
/// sentinels start. Returns the guards (sentinels, surviving replicas).
fn primary_dies_then_sentinels_start(
    dir: &Path,
    subnet: &str,
    with_peers: bool,
) -> (Vec<Proc>, Vec<Proc>) {
    let mut redis: Vec<Proc> = (0..3).map(|n| start_redis(dir, subnet, n)).collect();
    for n in 1..3 {
        eventually("replication up", Duration::from_secs(20), || {
            let mut c = RedisConn::connect(&addr(subnet, n), 6379, None).ok()?;
            let info = c.info("replication").ok()?;
            (info.get("master_link_status").map(String::as_str) == Some("up")).then_some(())
        });
    }
    drop(redis.remove(0));
    let sentinels: Vec<Proc> = (0..3)
        .map(|n| start_sentinel(dir, subnet, n, with_peers))
        .collect();
    for n in 0..3 {
        eventually("sentinel answers", Duration::from_secs(10), || {
            primary_per_sentinel(&addr(subnet, n))
        });
    }
    (sentinels, redis)
}

#[test]
fn fresh_sentinels_that_know_their_peers_fail_over_a_dead_primary() {
    let dir = tempfile::tempdir().unwrap();
    let subnet = "127.0.96";
    let t0 = Instant::now();
    let (_sentinels, _replicas) = primary_dies_then_sentinels_start(dir.path(), subnet, true);
    // Each sentinel runs under the id its peers know it by.
    for n in 0..3 {
        let mut c = RedisConn::connect(&addr(subnet, n), 26379, Some(SPW)).unwrap();
        let id = c.command_string(&["SENTINEL", "MYID"]).unwrap();
        assert_eq!(id, sentinel_id("fresh", &format!("{APP}/{n}")));
    }
    let replicas = [addr(subnet, 1), addr(subnet, 2)];
    let new = eventually(
        "the sentinels promote a replica",
        Duration::from_secs(30),
        || {
            let views: Vec<Option<String>> = (1..3)
                .map(|n| primary_per_sentinel(&addr(subnet, n)))
                .collect();
            let first = views[0].clone()?;
            (replicas.contains(&first) && views.iter().all(|v| v.as_ref() == Some(&first)))
                .then_some(first)
        },
    );
    eventually(
        "the promoted replica is primary",
        Duration::from_secs(10),
        || (role(&new).as_deref() == Some("master")).then_some(()),
    );
    let other = replicas.iter().find(|r| **r != new).unwrap().clone();
    eventually(
        "the other replica follows it",
        Duration::from_secs(20),
        || {
            let mut c = RedisConn::connect(&other, 6379, None).ok()?;
            let info = c.info("replication").ok()?;
            (info.get("master_host") == Some(&new)
                && info.get("master_link_status").map(String::as_str) == Some("up"))
            .then_some(())
        },
    );
    eprintln!(
        "fresh sentinels: failover of a dead primary done {} ms after the kill",
        t0.elapsed().as_millis()
    );
}

#[test]
fn fresh_sentinels_without_the_peer_lines_never_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let subnet = "127.0.97";
    let (_sentinels, _replicas) = primary_dies_then_sentinels_start(dir.path(), subnet, false);
    // Long enough for the other test's failover (down-after 1 s, a few seconds' election).
    std::thread::sleep(Duration::from_secs(10));
    for n in 0..3 {
        assert_eq!(
            primary_per_sentinel(&addr(subnet, n)).as_deref(),
            Some(addr(subnet, 0).as_str()),
            "a sentinel that knows no peer cannot fail over"
        );
    }
    for n in 1..3 {
        assert_eq!(role(&addr(subnet, n)).as_deref(), Some("slave"));
    }
}

/// The charm renders the lines: unit 1 of three (unit 0 primary) names itself and unit 2 as
/// replicas and the sentinels of units 0 and 2 by their ids, under its own id.
#[test]
fn the_charm_renders_its_peers_into_sentinel_conf() {
    use scenario_support::{containers, fqdn, run, scenario, world, SENTINEL_CONF, U0, U1};

    let w = world(3);
    let leader = containers();
    run(&mut scenario(&w, U0, &leader), "leader-elected");
    let pebble = containers();
    run(&mut scenario(&w, U1, &pebble), "sentinel-pebble-ready");
    let conf = pebble
        .get("sentinel")
        .file(SENTINEL_CONF)
        .map(|f| f.text())
        .expect("sentinel.conf pushed");
    let want = [
        format!("sentinel myid {}", sentinel_id("scn", "redis-k8s/1")),
        format!("sentinel known-replica {APP} {} 6379", fqdn(1)),
        format!("sentinel known-replica {APP} {} 6379", fqdn(2)),
        format!(
            "sentinel known-sentinel {APP} {} 26379 {}",
            fqdn(0),
            sentinel_id("scn", "redis-k8s/0")
        ),
        format!(
            "sentinel known-sentinel {APP} {} 26379 {}",
            fqdn(2),
            sentinel_id("scn", "redis-k8s/2")
        ),
    ];
    for line in &want {
        assert!(conf.lines().any(|l| l == line), "no {line:?} in\n{conf}");
    }
    assert!(
        !conf.contains(&format!("known-replica {APP} {} ", fqdn(0))),
        "the primary is not a replica:\n{conf}"
    );
    let monitor = conf.find("sentinel monitor").unwrap();
    assert!(conf.find("known-replica").unwrap() > monitor, "{conf}");
}
