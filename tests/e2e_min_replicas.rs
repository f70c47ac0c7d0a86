//! End to end on the local model: a fresh three-unit deployment has `min-replicas-to-write 1`
//! on its primary as soon as the deploy has settled, without an update-status (the interval
//! is an hour, so none runs during the test). Before this, a fresh primary kept 0 until the
//! next update-status, and a crash in that window lost every acknowledged write.
//!
//! The path under test: a replica whose link comes up records `replica-link` in its peer unit
//! databag; the primary's unit gets `redis-peers-relation-changed` and applies the setting
//! (`CONFIG SET` and redis.conf). See docs/ha.md.

mod common;

use std::time::Instant;

use common::{Model, APP};

fn config_get(addr: &str, pw: &str, name: &str) -> Option<String> {
    common::redis(addr, 6379, Some(pw), &[&["CONFIG", "GET", name]])
        .and_then(|r| r.into_iter().next())
        .and_then(|r| match r {
            common::Resp::Array(a) => a.get(1).map(common::Resp::text),
            _ => None,
        })
}

#[test]
fn a_fresh_primary_requires_a_replica_once_deploy_settles() {
    let m = Model::new("minrep").with_subnet("127.0.76");
    let t0 = Instant::now();
    m.deploy_charm(3, 3600, &[]);
    m.ok(&["wait", "--timeout", "120"]);
    if std::env::var_os("E2E_KEEP_LOGS").is_some() {
        eprintln!("{}", m.logs_tail(400));
    }
    let settled = t0.elapsed();
    let (primary, paddr) = m.wait_roles(2, None, 60);
    let pw = m.password();
    let value = config_get(&paddr, &pw, "min-replicas-to-write");
    let views = m.redis_views(&pw, &m.sentinel_password());
    eprintln!(
        "min-replicas: deploy settled after {} ms; {primary}'s min-replicas-to-write {value:?}",
        settled.as_millis()
    );
    assert_eq!(
        value.as_deref(),
        Some("1"),
        "{primary} does not require a replica after deploy settled\n{views}\n{}",
        m.logs_tail(60)
    );
    // The replicas stay writable-by-replication only; they carry the same setting in their
    // file, so a promoted replica requires a replica too.
    for (unit, addr, _) in m.roles() {
        if unit != primary {
            assert_eq!(
                config_get(&addr, &pw, "min-replicas-to-write").as_deref(),
                Some("1"),
                "{unit}"
            );
        }
    }
    // The primary's own redis.conf holds it too, so a restart keeps it.
    let n = primary.rsplit('/').next().unwrap_or("0");
    let path = m
        .dir
        .join("units")
        .join(format!("{APP}-{n}"))
        .join("containers/redis/root/etc/redis-server/redis.conf");
    let conf = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        conf.contains("\nmin-replicas-to-write 1\n"),
        "{primary}'s redis.conf: {conf}"
    );
}
