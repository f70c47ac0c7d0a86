//! End to end: the primary's pod is killed (a crash: no `stop`, processes SIGKILLed) under a
//! steady write load, on the local model with real redis-server and redis-sentinel
//! processes. Counts the acknowledged writes the new primary does not have and the outage,
//! and prints them (the figures are measurements, not pass/fail thresholds).
//!
//! What must hold, and is asserted: Sentinel promotes a replica; writes resume on it; the
//! old pod comes back as a replica (one primary); and any lost write was acknowledged in the
//! last `min-replicas-max-lag` seconds before the kill: replication is asynchronous, so a
//! crash can lose what the replicas had not received yet, but `min-replicas-to-write 1`
//! (automatic with three units) makes the primary refuse writes once no replica has
//! acknowledged within that lag, which bounds the window. The run also changes Sentinel's
//! down-after time by config and checks that the running sentinels took it (`SENTINEL SET`).

mod common;

use std::time::{Duration, Instant};

use common::{members, Model, Writer, APP};

const KEY: &str = "crash-writes";
/// `min-replicas-max-lag` as the charm sets it by default (seconds).
const MAX_LAG: Duration = Duration::from_secs(10);

#[test]
fn a_crashed_primary_loses_only_the_last_unreplicated_writes() {
    let m = Model::new("crash").with_subnet("127.0.88");
    m.deploy_charm(3, 5, &[]);
    let (old_primary, paddr) = m.wait_roles(2, None, 60);
    let pw = m.password();
    let spw = m.sentinel_password();

    // A running sentinel takes a new down-after time at once (it owns its config file).
    m.ok(&[
        "config",
        APP,
        "sentinel-down-after-milliseconds=2000",
        "--wait",
        "--timeout",
        "120",
    ]);
    for (unit, addr, _) in m.roles() {
        common::eventually(
            &format!("{unit}'s sentinel uses down-after 2000"),
            30,
            || {
                redis_k8s::sentinel::Sentinel::master_info(&addr, &spw, APP)
                    .map(|i| i.get("down-after-milliseconds").map(String::as_str) == Some("2000"))
                    .unwrap_or(false)
            },
        );
    }
    // Sentinel can only promote a replica it knows: the sentinels started before the other
    // units joined learn them from the primary's INFO (every 10 s).
    for (unit, addr, _) in m.roles() {
        common::eventually(
            &format!("{unit}'s sentinel knows both replicas"),
            60,
            || {
                redis_k8s::sentinel::Sentinel::master_info(&addr, &spw, APP)
                    .map(|i| i.get("num-slaves").map(String::as_str) == Some("2"))
                    .unwrap_or(false)
            },
        );
    }

    // Steady state: both replicas have finished their initial sync and the primary requires
    // one of them for a write (automatic with three units, turned on as soon as a replica
    // reports its link up; tests/e2e_min_replicas.rs). Until then a crash can lose
    // everything written (the charm keeps a primary without an online replica writable).
    common::eventually("both replicas online", 60, || {
        common::redis(&paddr, 6379, Some(&pw), &[&["INFO", "replication"]])
            .and_then(|r| r.first().map(common::Resp::text))
            .is_some_and(|t| t.matches("state=online").count() == 2)
    });
    common::eventually("min-replicas-to-write 1 on the primary", 60, || {
        common::redis(&paddr, 6379, Some(&pw), &[&["CONFIG", "GET", "min-replicas-to-write"]])
            .and_then(|r| r.into_iter().next())
            .is_some_and(|r| matches!(r, common::Resp::Array(a) if a.get(1).map(common::Resp::text).as_deref() == Some("1")))
    });
    let sentinels: Vec<String> = m.roles().into_iter().map(|r| r.1).collect();
    let writer = Writer::start(&paddr, &pw, sentinels, &spw, KEY, m.hosts_file());
    assert!(writer.more(10_000, 30), "writes not acknowledged");
    let t_kill = Instant::now();
    m.ok(&["kill-pod", &old_primary]);
    let killed = Instant::now();
    let (new_primary, naddr) = m.wait_new_primary(&old_primary, 90);
    let promoted = Instant::now();
    assert!(
        writer.more(500, 60),
        "writes did not resume on the new primary\n{}\n{}",
        m.redis_views(&pw, &spw),
        m.logs_tail(40)
    );
    let report = writer.finish();

    let held = members(&naddr, &pw, KEY).expect("SMEMBERS on the new primary");
    let missing = report.missing_from(&held);
    let first_after = report
        .first_ack_after(killed)
        .expect("an acknowledged write after the kill");
    let acked_before = report.ack_times.iter().filter(|t| **t < killed).count();
    eprintln!(
        "crash: {} writes acknowledged before the kill, {} lost ({:.3}%); outage {} ms \
         (kill to first acknowledged write on {new_primary}), roles settled after {} ms; \
         longest gap {} ms; {} failed attempts",
        acked_before,
        missing.len(),
        100.0 * missing.len() as f64 / acked_before.max(1) as f64,
        (first_after - t_kill).as_millis(),
        (promoted - t_kill).as_millis(),
        report.longest_gap.as_millis(),
        report.failed
    );
    // Every lost write was acknowledged by the old primary shortly before it died.
    for id in &missing {
        let i = report.acked.iter().position(|a| a == id).unwrap_or(0);
        let at = report.ack_times[i];
        assert!(
            at < killed && at + MAX_LAG >= t_kill,
            "write {id} lost although acknowledged {:?} before the kill",
            t_kill.saturating_duration_since(at)
        );
    }
    // The old pod comes back as a replica of the new primary: one primary.
    m.ok(&["wait", "--timeout", "180"]);
    let (again, _) = m.wait_roles(2, None, 90);
    assert_eq!(
        again, new_primary,
        "the restarted pod took the primary back"
    );
}
