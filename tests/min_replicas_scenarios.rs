//! Scenario tests (state in, event, state out) of min-replicas without delay, against real
//! Redis processes behind the pod names (see tests/real_units): a replica that converges
//! with its link up records `replica-link` in its peer unit databag; the primary's unit,
//! woken by that `redis-peers-relation-changed`, turns `min-replicas-to-write` on (runtime
//! `CONFIG SET` and the rendered redis.conf) without waiting for update-status. Junk in a
//! peer's record changes nothing.

mod real_units;
mod scenario_support;

use real_units::{
    bag, fqdn, min_replicas_to_write, run, skip_unless_in_hosts_namespace_at, unit, Deployment, APP,
};
use redis_k8s::ops::testing::world::HookInfo;

const NET: &str = "92";

fn peer_changed(d: &Deployment, remote: u8) -> HookInfo {
    let id =
        d.w.lock()
            .expect("world")
            .peer_relation_id(APP, "redis-peers")
            .expect("peer relation");
    HookInfo {
        hook_name: "redis-peers-relation-changed".into(),
        relation_id: Some(id),
        remote_unit: Some(unit(remote)),
        remote_app: Some(APP.into()),
        ..HookInfo::default()
    }
}

fn rendered_min_replicas(d: &Deployment, n: u8) -> String {
    d.units[n as usize]
        .redis_conf()
        .lines()
        .find_map(|l| l.strip_prefix("min-replicas-to-write "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no min-replicas-to-write in unit {n}'s redis.conf"))
}

#[test]
fn a_replica_in_sync_turns_min_replicas_on_at_the_primary_at_once() {
    if skip_unless_in_hosts_namespace_at(
        "a_replica_in_sync_turns_min_replicas_on_at_the_primary_at_once",
        NET,
        10,
    ) {
        return;
    }
    // Three units (automatic min-replicas is 1 with a replica in sync); the primary rendered
    // its config before any replica existed: 0.
    let mut d = Deployment::new(3, NET, 10);
    assert_eq!(rendered_min_replicas(&d, 0), "0");
    d.start_redis(0);
    assert_eq!(
        min_replicas_to_write(&d.addr(0), &d.password).as_deref(),
        Some("0")
    );

    // Junk in a peer's record: the primary's hook succeeds and keeps 0 (no replica online).
    {
        let mut w = d.w.lock().expect("world");
        let id = w
            .peer_relation_id(APP, "redis-peers")
            .expect("peer relation");
        let mut b = w.relation_data(id, &unit(2));
        b.insert("replica-link".into(), "up not a host! x y".into());
        w.set_relation_data(id, &unit(2), b);
    }
    run(
        &mut d.units[0].scenario(&d.w),
        "redis-peers-relation-changed",
        peer_changed(&d, 2),
    );
    assert_eq!(rendered_min_replicas(&d, 0), "0");
    assert_eq!(
        min_replicas_to_write(&d.addr(0), &d.password).as_deref(),
        Some("0")
    );

    // Unit 1's Redis syncs; its next hook records the link in its unit databag.
    d.start_redis(1);
    d.wait_replica_in_sync(1);
    run(
        &mut d.units[1].scenario(&d.w),
        "config-changed",
        HookInfo::default(),
    );
    let run_id = real_units::call(&d.addr(1), 6379, &d.password, &["INFO", "server"])
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.trim_end().strip_prefix("run_id:").map(str::to_string))
        })
        .expect("run_id");
    assert_eq!(
        bag(&d.w, &unit(1)).get("replica-link").map(String::as_str),
        Some(format!("up {} {run_id}", fqdn(0)).as_str()),
        "{:?}",
        bag(&d.w, &unit(1))
    );
    // Nothing else has touched the primary yet.
    assert_eq!(
        min_replicas_to_write(&d.addr(0), &d.password).as_deref(),
        Some("0")
    );

    // That change wakes the primary's unit: min-replicas on at runtime and in the file.
    run(
        &mut d.units[0].scenario(&d.w),
        "redis-peers-relation-changed",
        peer_changed(&d, 1),
    );
    assert_eq!(
        min_replicas_to_write(&d.addr(0), &d.password).as_deref(),
        Some("1")
    );
    assert_eq!(rendered_min_replicas(&d, 0), "1");
    // The primary records no link of its own.
    assert!(!bag(&d.w, &unit(0)).contains_key("replica-link"));

    // An unchanged link is not rewritten (no relation-changed storm).
    let mut s1 = d.units[1].scenario(&d.w);
    let r = s1
        .run::<redis_k8s::charm::RedisK8sCharm>("hooks/update-status", HookInfo::default())
        .expect("update-status");
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(
        !r.session.calls().iter().any(|c| c == "relation-set"),
        "{:?}",
        r.session.calls()
    );
}
