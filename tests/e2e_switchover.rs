//! End to end: the `switchover` action on the local model with real redis-server and
//! redis-sentinel processes, under a steady write load: the named replica becomes primary
//! and no acknowledged write is lost.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{primary_name_from_sentinel, resolve_in, Conn, Model, Resp, APP};

const KEY: &str = "switchover-counter";

/// Planned switchover to a named replica under a steady INCR load: the replica is promoted
/// and the counter on the new primary holds every acknowledged increment.
#[test]
fn switchover_to_a_named_replica_loses_no_acknowledged_write() {
    let m = Model::new("sw").with_subnet("127.0.83");
    m.deploy_charm(3, 5, &[]);
    let (old_primary, paddr) = m.wait_roles(2, None, 60);
    let pw = m.action_value(
        &format!("{APP}/0"),
        "get-initial-admin-password",
        "redis-password",
    );
    let spw = m.action_value(
        &format!("{APP}/0"),
        "get-sentinel-password",
        "sentinel-password",
    );
    let roles = m.roles();
    let replicas: Vec<&(String, String, String)> =
        roles.iter().filter(|r| r.2 == "replica").collect();
    let (target, taddr) = (replicas[0].0.clone(), replicas[0].1.clone());
    // The writer follows the primary through a sentinel on the unit that stays a replica.
    let watcher = replicas[1].1.clone();

    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, pw, spw) = (acked.clone(), stop.clone(), pw.clone(), spw.clone());
        // The sentinel names the primary by its pod name, which only the model's hosts file
        // resolves (this process has no pod DNS).
        let hosts = m.hosts_file();
        let mut addr = paddr.clone();
        std::thread::spawn(move || {
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = Conn::open(&addr, 6379, &pw);
                }
                let reply = conn.as_mut().and_then(|c| c.call(&["INCR", KEY]));
                match reply {
                    Some(Resp::Int(_)) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        // READONLY or a dropped connection: ask the sentinel who leads now.
                        conn = None;
                        if let Some(a) = primary_name_from_sentinel(&watcher, &spw)
                            .and_then(|name| resolve_in(&hosts, &name))
                        {
                            addr = a;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        })
    };
    // Let some writes land before the switch.
    let t0 = Instant::now();
    while acked.load(Ordering::SeqCst) < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no writes acknowledged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Run on the replica that stays one: the action reaches the primary by its host name.
    let runner = replicas[1].0.clone();
    let out = m.ok(&["run", &runner, "switchover", &format!("unit={target}")]);
    assert!(out.contains("new-primary:"), "{out}");
    assert!(!out.contains(&pw), "the action printed a password");
    let paused_ms: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("paused-ms:"))
        .and_then(|v| v.trim().trim_matches('\'').parse().ok())
        .unwrap_or_else(|| panic!("paused-ms in {out}"));
    assert!(paused_ms < 5000, "writes paused too long: {out}");
    // Keep writing on the new primary (the writer found it through the sentinel), then stop.
    let at_switch = acked.load(Ordering::SeqCst);
    let t1 = Instant::now();
    while acked.load(Ordering::SeqCst) < at_switch + 50 {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "writes did not resume on the new primary"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.load(Ordering::SeqCst);

    let (newp, naddr) = m.wait_roles(2, None, 60);
    assert_eq!(newp, target, "the named unit is not the primary: {out}");
    assert!(
        out.contains(&format!("old-primary: {}", old_primary.replace('/', "-"))),
        "{out}"
    );
    assert_eq!(naddr, taddr);
    let mut c = Conn::open(&naddr, 6379, &pw).expect("connect to the new primary");
    let value: u64 = c
        .call(&["GET", KEY])
        .map(|r| r.text())
        .and_then(|t| t.parse().ok())
        .expect("counter on the new primary");
    assert!(
        value >= acked,
        "acknowledged writes lost: counter {value} < {acked} acknowledged\n{out}"
    );
    // Bounded write loss with three units: the new primary needs one replica to write.
    let r = c
        .call(&["CONFIG", "GET", "min-replicas-to-write"])
        .expect("reply");
    let Resp::Array(items) = r else {
        panic!("{r:?}")
    };
    assert_eq!(items[1].text(), "1");
    // The replicas' priorities were restored.
    for (_, addr, _) in m.roles() {
        let mut c = Conn::open(&addr, 6379, &pw).expect("connect");
        let r = c
            .call(&["CONFIG", "GET", "replica-priority"])
            .expect("reply");
        let Resp::Array(items) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            items[1].text(),
            "100",
            "replica-priority not restored on {addr}"
        );
    }
    eprintln!("switchover: {acked} acknowledged INCRs, counter {value}; {out}");
}
