//! End to end: a two-unit deployment fails over thanks to the witness sentinel
//! ([`redis_k8s::witness`]), on the local model with real redis-server and sentinel
//! processes and the real `redis-k8s` dispatch.
//!
//! Two units, down-after 2 s: the replica's unit runs the witness (26380) and every sentinel
//! counts two others; kill the primary's pod → the replica becomes primary, the peer
//! `leader-host` names it, the old pod comes back as a replica and the witness moves to it;
//! then kill the new primary → it fails over back.

mod common;

use common::{eventually, fqdn_of, get, redis, Model, APP};
use redis_k8s::sentinel::Sentinel;
use redis_k8s::witness::WITNESS_PORT;

const MODEL: &str = "two";
const SUBNET: &str = "127.0.79";

/// `SENTINEL MASTER` fields of the sentinel at `addr:port`.
fn master_field(addr: &str, port: u16, spw: &str, key: &str) -> Option<String> {
    let r = redis(addr, port, Some(spw), &[&["SENTINEL", "MASTER", APP]])?;
    let common::Resp::Array(fields) = &r[0] else {
        return None;
    };
    fields
        .chunks(2)
        .find(|c| c[0].text() == key)
        .map(|c| c[1].text())
}

/// Does anything listen on `addr:port`?
fn listens(addr: &str, port: u16) -> bool {
    std::net::TcpStream::connect((addr, port)).is_ok()
}

/// The witness runs on `replica` (and not on `primary`), and all three sentinels know the
/// two others and the one replica, with down-after 2000.
fn witness_settled_on(m: &Model, replica: &str, primary: &str, spw: &str) -> bool {
    let _ = m;
    if listens(primary, WITNESS_PORT) || !listens(replica, WITNESS_PORT) {
        return false;
    }
    [(primary, 26379), (replica, 26379), (replica, WITNESS_PORT)]
        .iter()
        .all(|(a, p)| {
            master_field(a, *p, spw, "num-other-sentinels").as_deref() == Some("2")
                && master_field(a, *p, spw, "num-slaves").as_deref() == Some("1")
            // The config change after deploy reached every sentinel, the witness included.
            && master_field(a, *p, spw, "down-after-milliseconds").as_deref() == Some("2000")
        })
}

/// The peer app data's `leader-host` as `unit` sees it.
fn peer_leader_host(m: &Model, unit: &str) -> String {
    let shown: serde_yaml::Value = match serde_yaml::from_str(&m.ok(&["show-unit", unit])) {
        Ok(v) => v,
        Err(_) => return String::new(),
    };
    shown[unit]["relation-info"]
        .as_sequence()
        .and_then(|r| r.iter().find(|r| r["endpoint"] == "redis-peers"))
        .and_then(|r| r["application-data"]["leader-host"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The unit (and address) that is primary and is not `old`, once there is one.
fn new_primary(m: &Model, old: &str, secs: u64) -> (String, String) {
    let mut found = None;
    eventually(&format!("a primary other than {old}"), secs, || {
        found = m
            .roles()
            .into_iter()
            .find(|r| r.2 == "primary" && r.0 != old)
            .map(|r| (r.0, r.1));
        found.is_some()
    });
    found.unwrap_or_default()
}

/// Kill the primary's pod; the replica takes over, the pod comes back as a replica and the
/// witness moves to it. Returns the new primary (unit, address).
fn kill_primary_and_fail_over(
    m: &Model,
    primary: &str,
    paddr: &str,
    pw: &str,
    spw: &str,
) -> (String, String) {
    let t0 = std::time::Instant::now();
    m.ok(&["kill-pod", primary]);
    let (newp, naddr) = new_primary(m, primary, 90);
    eprintln!(
        "two units: {primary}'s pod killed, {newp} primary after {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(get(&naddr, pw, "two-key"), "v1");
    eventually("the peer leader-host names the new primary", 120, || {
        let h = peer_leader_host(m, &newp);
        h == fqdn_of(&newp, MODEL) || h == naddr
    });
    m.ok(&["wait", "--timeout", "120"]);
    let (again, _) = m.wait_roles(1, None, 90);
    assert_eq!(
        again, newp,
        "the returning pod must not take the primary back"
    );
    eventually("the witness moved to the old primary's pod", 120, || {
        witness_settled_on(m, paddr, &naddr, spw)
    });
    eprintln!(
        "two units: witness on {primary} and 3 sentinels {} ms after the kill",
        t0.elapsed().as_millis()
    );
    (newp, naddr)
}

/// Deploy two units on `m`'s subnet (update-status every `update_status_secs`), set the
/// sentinels' down-after to 2 s plus `config` (`key=value`), and wait until the witness
/// runs on the replica's pod with 3 sentinels. Returns (primary unit, primary address,
/// replica address, sentinel password).
fn deploy_with_the_witness(
    m: &Model,
    update_status_secs: u64,
    config: &[&str],
) -> (String, String, String, String) {
    m.deploy_charm(2, update_status_secs, &[]);
    let mut args = vec!["config", APP, "sentinel-down-after-milliseconds=2000"];
    args.extend_from_slice(config);
    args.extend(["--wait", "--timeout", "120"]);
    m.ok(&args);
    let (primary, paddr) = m.wait_roles(1, None, 60);
    let spw = m.sentinel_password();
    let (_, raddr) = m.a_replica();
    eventually(
        "the witness runs on the replica's pod; 3 sentinels",
        120,
        || witness_settled_on(m, &raddr, &paddr, &spw),
    );
    (primary, paddr, raddr, spw)
}

#[test]
fn two_units_fail_over_with_the_witness() {
    let m = Model::new(MODEL).with_subnet(SUBNET);
    let (primary, paddr, raddr, spw) = deploy_with_the_witness(&m, 5, &[]);
    let pw = m.password();
    for (a, p) in [(&paddr, 26379), (&raddr, 26379), (&raddr, WITNESS_PORT)] {
        assert_eq!(master_field(a, p, &spw, "quorum").as_deref(), Some("2"));
    }
    let set = redis(&paddr, 6379, Some(&pw), &[&["SET", "two-key", "v1"]]).expect("set");
    assert_eq!(set[0], common::Resp::Simple("OK".into()));
    eventually("replicated", 20, || get(&raddr, &pw, "two-key") == "v1");

    let (newp, naddr) = kill_primary_and_fail_over(&m, &primary, &paddr, &pw, &spw);
    assert_ne!(newp, primary);
    // And back: the new primary's pod dies; the old one (now with the witness) takes over.
    let (back, _) = kill_primary_and_fail_over(&m, &newp, &naddr, &pw, &spw);
    assert_eq!(back, primary);
    assert!(Sentinel::in_majority(&paddr, &spw, APP).unwrap_or(false));
}

/// Scale-down from two units to one, in the harder order: unit 1 (the one removed) is the
/// primary, so the survivor runs the witness. The removed unit hands the primary role over
/// as it stops, the survivor stops its witness, and its sentinel forgets both the removed
/// unit's sentinel and the witness: no other sentinel counted, quorum 1, nothing listening
/// on the witness's port, the data still there. (Kept short: a fresh model, default
/// down-after.)
#[test]
fn scaling_two_units_to_one_forgets_the_witness() {
    const MODEL: &str = "twoscale";
    const SUBNET: &str = "127.0.78";
    let t0 = std::time::Instant::now();
    let m = Model::new(MODEL).with_subnet(SUBNET);
    m.deploy_charm(2, 5, &[]);
    let (primary, _) = m.wait_roles(1, None, 60);
    let pw = m.password();
    let spw = m.sentinel_password();
    // Unit 1 primary, unit 0 (the survivor) the replica with the witness.
    if primary != "redis-k8s/1" {
        m.ok(&["run", "redis-k8s/0", "switchover", "unit=redis-k8s/1"]);
    }
    let (primary, paddr) = m.wait_roles(1, None, 60);
    assert_eq!(primary, "redis-k8s/1");
    let (_, raddr) = m.a_replica();
    eventually(
        "the witness runs on the replica's pod; 3 sentinels",
        120,
        || {
            listens(&raddr, WITNESS_PORT)
                && master_field(&paddr, 26379, &spw, "num-other-sentinels").as_deref() == Some("2")
        },
    );
    let set = redis(&paddr, 6379, Some(&pw), &[&["SET", "scale-key", "v1"]]).expect("set");
    assert_eq!(set[0], common::Resp::Simple("OK".into()));
    eventually("replicated", 20, || get(&raddr, &pw, "scale-key") == "v1");
    eprintln!(
        "two→one: two units and the witness after {} ms",
        t0.elapsed().as_millis()
    );

    m.ok(&["scale", APP, "1", "--wait", "--timeout", "120"]);
    let (survivor, saddr) = m.wait_roles(0, None, 60);
    assert_eq!(survivor, "redis-k8s/0");
    assert_eq!(saddr, raddr, "the former replica");
    eprintln!(
        "two→one: scaled to {survivor} after {} ms",
        t0.elapsed().as_millis()
    );
    eventually(
        "the survivor's sentinel counts no other sentinel, quorum 1, no witness",
        60,
        || {
            master_field(&saddr, 26379, &spw, "num-other-sentinels").as_deref() == Some("0")
                && master_field(&saddr, 26379, &spw, "quorum").as_deref() == Some("1")
                && !listens(&paddr, WITNESS_PORT)
                && !listens(&raddr, WITNESS_PORT)
        },
    );
    assert_eq!(get(&saddr, &pw, "scale-key"), "v1");
    // It stays that way (a stale entry would come back from a hello within seconds).
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(
        master_field(&saddr, 26379, &spw, "num-other-sentinels").as_deref(),
        Some("0")
    );
    eprintln!("two→one: clean after {} ms", t0.elapsed().as_millis());
}

/// The rotation phase in the peer app data, as `unit` sees it (`""` without a rotation).
fn rotation_phase(m: &Model, unit: &str) -> String {
    let shown = m.show(unit);
    let raw = shown[unit]["relation-info"]
        .as_sequence()
        .and_then(|r| r.iter().find(|r| r["endpoint"] == "redis-peers"))
        .and_then(|r| r["application-data"]["password-rotation"].as_str())
        .unwrap_or("{}")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    v["phase"].as_str().unwrap_or("").to_string()
}

/// `flags` of every entry of `SENTINEL SENTINELS` at `addr:port`.
fn other_sentinel_flags(addr: &str, port: u16, spw: &str) -> Vec<String> {
    let Some(r) = redis(addr, port, Some(spw), &[&["SENTINEL", "SENTINELS", APP]]) else {
        return vec!["<no answer>".into()];
    };
    let common::Resp::Array(entries) = &r[0] else {
        return vec!["<not an array>".into()];
    };
    entries
        .iter()
        .map(|e| match e {
            common::Resp::Array(fields) => fields
                .chunks(2)
                .find(|c| c[0].text() == "flags")
                .map(|c| c[1].text())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .collect()
}

/// Both password rotations reach the witness: after the sentinel rotation it accepts only
/// the new sentinel password and still counts (and is counted by) the two unit sentinels
/// with no `s_down`; after the admin rotation it still reaches Redis (`auth-pass`): no
/// `s_down` on the primary in its view. Without this the two-unit deployment would lose
/// the witness's vote (and could see a false failover) after any rotation.
#[test]
fn password_rotations_reach_the_witness() {
    const MODEL: &str = "twopw";
    const SUBNET: &str = "127.0.74";
    let t0 = std::time::Instant::now();
    let m = Model::new(MODEL).with_subnet(SUBNET);
    let (primary, paddr, raddr, old_spw) =
        deploy_with_the_witness(&m, 3, &["password-rotation-grace=0"]);
    // The deploy elects unit 0 the leader.
    let leader = "redis-k8s/0".to_string();
    let sentinels = [(&paddr, 26379), (&raddr, 26379), (&raddr, WITNESS_PORT)];
    let healthy = |spw: &str| {
        sentinels.iter().all(|(a, p)| {
            let flags = other_sentinel_flags(a, *p, spw);
            flags.len() == 2
                && flags.iter().all(|f| f == "sentinel")
                && master_field(a, *p, spw, "flags").as_deref() == Some("master")
        })
    };

    // The sentinel password.
    m.ok(&[
        "run",
        &leader,
        "set-password",
        "username=sentinel",
        "password=witness-sees-this-sentinel-pw",
    ]);
    eventually("the sentinel rotation finishes", 60, || {
        rotation_phase(&m, &leader) == "done"
    });
    let new_spw = "witness-sees-this-sentinel-pw";
    let auth_ok = |pw: &str| {
        redis(&raddr, WITNESS_PORT, None, &[&["AUTH", pw]])
            .is_some_and(|r| r[0] == common::Resp::Simple("OK".into()))
    };
    assert!(
        auth_ok(new_spw),
        "the witness accepts the new sentinel password"
    );
    assert!(
        !auth_ok(&old_spw),
        "the witness refuses the old sentinel password"
    );
    // Longer than down-after: a sentinel that could not authenticate would be s_down.
    std::thread::sleep(std::time::Duration::from_secs(4));
    eventually(
        "all three sentinels see each other and the primary, no s_down",
        20,
        || healthy(new_spw),
    );
    eprintln!(
        "two units: sentinel rotation reached the witness after {} ms",
        t0.elapsed().as_millis()
    );

    // The admin password: the witness's auth-pass to Redis.
    m.ok(&[
        "run",
        &leader,
        "set-password",
        "username=admin",
        "password=witness-sees-this-admin-pw",
    ]);
    eventually("the admin rotation finishes", 60, || {
        rotation_phase(&m, &leader) == "done"
    });
    std::thread::sleep(std::time::Duration::from_secs(4));
    eventually(
        "the witness still reaches the primary, no s_down",
        20,
        || healthy(new_spw),
    );
    assert_eq!(m.wait_roles(1, None, 30).0, primary, "no failover");
    eprintln!(
        "two units: admin rotation reached the witness after {} ms",
        t0.elapsed().as_millis()
    );
}
