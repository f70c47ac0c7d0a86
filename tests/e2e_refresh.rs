//! End to end: `juju refresh` on the local model with real redis-server and redis-sentinel
//! processes, under a steady write load. The refresh is a StatefulSet rolling update
//! (highest ordinal first, one pod at a time, each old pod's `stop` hook runs with its
//! services up): the primary's `stop` hands the role over with a planned switchover, so no
//! acknowledged write is lost, every unit comes back, there is exactly one primary, and the
//! relation data names it.

mod common;

use std::time::Instant;

use common::{client_charm, Model, Writer, APP, CHARM_BIN};

const KEY: &str = "refresh-writes";

/// `SMEMBERS key` as numbers, read with the `redis` crate (a linear parser): the writer
/// acknowledges 130k-340k ids here, and `common::members`' client re-parses its whole buffer
/// after every 4 KiB read, which on a reply of 4 MB took 102 s of the test's 152 s (debug
/// build; 2.6 s this way).
fn all_members(addr: &str, pw: &str, key: &str) -> std::collections::BTreeSet<u64> {
    use redis::IntoConnectionInfo;
    let info = redis::ConnectionAddr::Tcp(addr.to_string(), 6379)
        .into_connection_info()
        .expect("connection info")
        .set_redis_settings(
            redis::RedisConnectionInfo::default()
                .set_username("default")
                .set_password(pw),
        );
    let mut conn = redis::Client::open(info)
        .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(5)))
        .expect("connect to the primary");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("read timeout");
    redis::cmd("SMEMBERS")
        .arg(key)
        .query::<std::collections::BTreeSet<u64>>(&mut conn)
        .expect("SMEMBERS on the primary")
}

/// Every sentinel knows `n` replicas (it learns them from the primary's INFO every 10 s).
fn wait_sentinels_know(m: &Model, spw: &str, n: usize) {
    for (unit, addr, _) in m.roles() {
        common::eventually(&format!("{unit}'s sentinel knows {n} replicas"), 60, || {
            redis_k8s::sentinel::Sentinel::master_info(&addr, spw, APP)
                .map(|i| i.get("num-slaves").map(String::as_str) == Some(&n.to_string()))
                .unwrap_or(false)
        });
    }
}

#[test]
fn refresh_rolls_every_pod_and_loses_no_acknowledged_write() {
    let t_start = Instant::now();
    let m = Model::new("refresh").with_subnet("127.0.87");
    m.ok(&[
        "deploy",
        common::ROOT,
        "-n",
        "3",
        "--dispatch",
        CHARM_BIN,
        "--subnet",
        "127.0.87",
        // Only the charm's own paths (stop, Sentinel's notice) may update the relation data.
        "--update-status-interval",
        "3600",
        "--wait",
        "--timeout",
        "180",
    ]);
    let (old_primary, paddr) = m.wait_roles(2, None, 60);
    let pw = m.password();
    let spw = m.sentinel_password();
    let client = m.scratch().join("client");
    client_charm(&client);
    m.ok(&[
        "deploy",
        client.to_str().unwrap(),
        "--wait",
        "--timeout",
        "60",
    ]);
    m.ok(&["relate", APP, "client", "--wait", "--timeout", "60"]);
    wait_sentinels_know(&m, &spw, 2);

    eprintln!("refresh: set up in {} ms", t_start.elapsed().as_millis());
    let sentinels: Vec<String> = m.roles().into_iter().map(|r| r.1).collect();
    let writer = Writer::start(&paddr, &pw, sentinels, &spw, KEY, m.hosts_file());
    assert!(writer.more(50, 10), "no writes acknowledged");
    let t0 = Instant::now();
    m.ok(&["refresh", APP, "--wait", "--timeout", "400"]);
    let took = t0.elapsed();
    assert!(
        writer.more(50, 20),
        "writes did not resume after the refresh\n{}\n{}\n{}",
        m.redis_views(&pw, &spw),
        m.failure_context(),
        m.logs_tail(60)
    );
    let report = writer.finish();

    // Exactly one primary, two replicas, and it holds every acknowledged write.
    let (primary, naddr) = m.wait_roles(2, None, 60);
    let t_members = Instant::now();
    let held = all_members(&naddr, &pw, KEY);
    eprintln!(
        "refresh: SMEMBERS of {} ids read in {} ms",
        held.len(),
        t_members.elapsed().as_millis()
    );
    let missing = report.missing_from(&held);
    eprintln!(
        "refresh: {} acknowledged writes, {} failed attempts, longest gap between acks {} ms, \
         refresh took {} ms; primary {old_primary} -> {primary}; missing {}",
        report.acked.len(),
        report.failed,
        report.longest_gap.as_millis(),
        took.as_millis(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    // Every pod was replaced, highest ordinal first, each after its stop hook, and each new
    // pod ran upgrade-charm.
    let daemon_log = std::fs::read_to_string(m.dir.join("daemon.log")).unwrap_or_default();
    let order: Vec<&str> = daemon_log
        .lines()
        .filter_map(|l| l.split("refresh: replacing the pod of ").nth(1))
        .collect();
    assert_eq!(
        order,
        [format!("{APP}/2"), format!("{APP}/1"), format!("{APP}/0")],
        "{daemon_log}"
    );
    for n in 0..3 {
        let unit = format!("{APP}/{n}");
        let log = std::fs::read_to_string(m.unit_dir(&unit).join("unit.log")).unwrap_or_default();
        let stop = log
            .find("pod terminating: running \"stop\"")
            .unwrap_or_else(|| panic!("{unit} never got stop:\n{log}"));
        let upgrade = log
            .rfind("ran \"upgrade-charm\" hook")
            .unwrap_or_else(|| panic!("{unit} never ran upgrade-charm:\n{log}"));
        assert!(stop < upgrade, "{unit}: upgrade-charm before stop\n{log}");
        if unit == old_primary {
            assert!(
                log.contains("stop: handed the primary role over"),
                "the primary's stop did not hand over:\n{log}"
            );
        }
    }
    // The relation data names the primary (the leader's record and what the client sees).
    let n: usize = primary
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("unit number");
    let leader = (0..3)
        .map(|i| format!("{APP}/{i}"))
        .find(|u| m.is_leader(u))
        .expect("a leader");
    common::eventually("relation data names the primary", 30, || {
        m.leader_host(&leader, "redis-peers") == m.fqdn(n)
            && m.leader_host("client/0", "redis") == m.fqdn(n)
    });
    eprintln!("refresh: whole test {} ms", t_start.elapsed().as_millis());
}
