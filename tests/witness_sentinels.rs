//! The two-unit witness with real redis-server and redis-sentinel processes (no model):
//! unit A (127.0.95.1) and unit B (127.0.95.2) each run Redis and a sentinel; the replica's
//! unit also runs the witness sentinel on 26380 under the app's stable id
//! ([`redis_k8s::witness::witness_id`]). Every config is rendered from the charm's template.
//!
//! What it proves:
//! - the replica's pod holds two of three voters: killing the primary's Redis and sentinel
//!   (its pod) fails over to the replica;
//! - the witness moves (stopped on the new primary's unit, started with the same `myid` on
//!   the other unit's address) and the others switch its address: still three sentinels
//!   (`SENTINEL SENTINELS` names two others, no stale entry; `CKQUORUM` reports 3 usable),
//!   no `SENTINEL RESET`;
//! - a later failover, the other way, still works.
//!
//! Processes are killed by Drop guards.

mod scenario_support;

use std::path::Path;
use std::time::{Duration, Instant};

use redis_k8s::redis_client::{value_to_map, value_to_string, RedisConn};
use redis_k8s::sentinel::{sentinel_id, KnownPeers, KnownSentinel};
use redis_k8s::witness::{witness_id, WITNESS_PORT};
use scenario_support::{
    eventually_some as eventually, redis_server, render_sentinel_template, sentinel_from_conf,
    Proc, APP,
};

const MODEL: &str = "wit";
const SPW: &str = "sentinel-pw";
const A: &str = "127.0.95.1";
const B: &str = "127.0.95.2";

fn unit_of(host: &str) -> &'static str {
    if host == A {
        "redis-k8s/0"
    } else {
        "redis-k8s/1"
    }
}

fn other(host: &str) -> &'static str {
    if host == A {
        B
    } else {
        A
    }
}

/// The unit's Redis on `host` (no password), a replica of `replicaof` when given.
fn start_redis(dir: &Path, host: &str, replicaof: Option<&str>) -> Proc {
    redis_server(host, None, replicaof, &dir.join(format!("redis-{host}")))
}

/// The sentinel peers as the charm renders them with two units: the other unit's sentinel,
/// and the witness on the replica's host (for a unit sentinel); both unit sentinels (for
/// the witness).
fn peers(host: &str, primary: &str, witness: bool) -> KnownPeers {
    let replica = other(primary);
    let unit = |h: &str| KnownSentinel {
        host: h.to_string(),
        port: 26379,
        id: sentinel_id(MODEL, unit_of(h)),
    };
    if witness {
        KnownPeers {
            myid: witness_id(MODEL, APP),
            known_replicas: vec![replica.to_string()],
            known_sentinels: vec![unit(A), unit(B)],
        }
    } else {
        KnownPeers {
            myid: sentinel_id(MODEL, unit_of(host)),
            known_replicas: vec![replica.to_string()],
            known_sentinels: vec![
                unit(other(host)),
                KnownSentinel {
                    host: replica.to_string(),
                    port: WITNESS_PORT,
                    id: witness_id(MODEL, APP),
                },
            ],
        }
    }
}

/// A unit sentinel (26379) or the witness (26380) on `host`, from the charm's template.
fn start_sentinel(dir: &Path, host: &str, primary: &str, witness: bool) -> Proc {
    let port = if witness { WITNESS_PORT } else { 26379 };
    let conf = render_sentinel_template(host, port, primary, SPW, peers(host, primary, witness));
    sentinel_from_conf(
        &conf,
        host,
        port,
        &dir.join(format!("sentinel-{host}-{port}.conf")),
    )
}

fn sentinel(host: &str, port: u16) -> Option<RedisConn> {
    RedisConn::connect(host, port, Some(SPW)).ok()
}

/// The other sentinels `host:port` knows: (ip, port, runid, flags).
fn others(host: &str, port: u16) -> Option<Vec<(String, String, String, String)>> {
    let mut c = sentinel(host, port)?;
    match c.command(&["SENTINEL", "SENTINELS", APP]).ok()? {
        redis::Value::Array(items) => Some(
            items
                .iter()
                .map(value_to_map)
                .map(|m| {
                    let g = |k: &str| m.get(k).cloned().unwrap_or_default();
                    (g("ip"), g("port"), g("runid"), g("flags"))
                })
                .collect(),
        ),
        _ => None,
    }
}

fn primary_of(host: &str, port: u16) -> Option<String> {
    let mut c = sentinel(host, port)?;
    match c
        .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", APP])
        .ok()?
    {
        redis::Value::Array(items) if !items.is_empty() => Some(value_to_string(&items[0])),
        _ => None,
    }
}

fn role(host: &str) -> Option<String> {
    let mut c = RedisConn::connect(host, 6379, None).ok()?;
    let info = c.info("replication").ok()?;
    info.get("role").cloned()
}

fn replication_up(replica: &str, primary: &str) -> Option<()> {
    let mut c = RedisConn::connect(replica, 6379, None).ok()?;
    let info = c.info("replication").ok()?;
    (info.get("master_host").map(String::as_str) == Some(primary)
        && info.get("master_link_status").map(String::as_str) == Some("up"))
    .then_some(())
}

/// `host:port` knows exactly the two expected other sentinels (at their addresses, not
/// down) and its CKQUORUM counts 3 usable sentinels.
fn knows_three(host: &str, port: u16, want: &[(&str, u16, String)]) -> Option<()> {
    let seen = others(host, port)?;
    if seen.len() != want.len() {
        return None;
    }
    for (h, p, id) in want {
        let found = seen.iter().any(|(ip, pt, rid, flags)| {
            ip == h && *pt == p.to_string() && rid == id && !flags.contains("down")
        });
        if !found {
            return None;
        }
    }
    let ck = sentinel(host, port)?
        .command_string(&["SENTINEL", "CKQUORUM", APP])
        .ok()?;
    ck.contains("3 usable").then_some(())
}

#[test]
fn the_witness_moves_under_its_id_and_two_units_fail_over_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sa, sb, w) = (
        sentinel_id(MODEL, "redis-k8s/0"),
        sentinel_id(MODEL, "redis-k8s/1"),
        witness_id(MODEL, APP),
    );
    // A primary, B replica; the witness on B.
    let redis_a = start_redis(d, A, None);
    let _redis_b = start_redis(d, B, Some(A));
    eventually("replication up", Duration::from_secs(20), || {
        replication_up(B, A)
    });
    let sent_a = start_sentinel(d, A, A, false);
    let sent_b = start_sentinel(d, B, A, false);
    let wit = start_sentinel(d, B, A, true);
    let t = Duration::from_secs(20);
    eventually("A's sentinel knows B's and the witness on B", t, || {
        knows_three(
            A,
            26379,
            &[(B, 26379, sb.clone()), (B, WITNESS_PORT, w.clone())],
        )
    });
    eventually("the witness knows both unit sentinels", t, || {
        knows_three(
            B,
            WITNESS_PORT,
            &[(A, 26379, sa.clone()), (B, 26379, sb.clone())],
        )
    });

    // A's pod dies: its Redis and sentinel. B's sentinel and the witness are 2 of 3.
    let t0 = Instant::now();
    drop(redis_a);
    drop(sent_a);
    eventually("B's sentinels promote B", Duration::from_secs(30), || {
        (primary_of(B, 26379).as_deref() == Some(B)
            && primary_of(B, WITNESS_PORT).as_deref() == Some(B)
            && role(B).as_deref() == Some("master"))
        .then_some(())
    });
    eprintln!(
        "two units: A's pod died, B primary after {} ms",
        t0.elapsed().as_millis()
    );

    // The witness moves: stopped on B (now primary) first, then A's pod comes back as a
    // replica of B with its sentinel, and the witness starts on A under the same id.
    drop(wit);
    let _redis_a2 = start_redis(d, A, Some(B));
    eventually("A replicates B", Duration::from_secs(20), || {
        replication_up(A, B)
    });
    let _sent_a2 = start_sentinel(d, A, B, false);
    let _wit_a = start_sentinel(d, A, B, true);
    let t1 = Instant::now();
    eventually(
        "B's sentinel sees the witness at A's address, still three sentinels",
        Duration::from_secs(30),
        || {
            knows_three(
                B,
                26379,
                &[(A, 26379, sa.clone()), (A, WITNESS_PORT, w.clone())],
            )
        },
    );
    eprintln!(
        "witness address switch seen after {} ms",
        t1.elapsed().as_millis()
    );
    eventually("the moved witness knows both unit sentinels", t, || {
        knows_three(
            A,
            WITNESS_PORT,
            &[(A, 26379, sa.clone()), (B, 26379, sb.clone())],
        )
    });
    eventually("A's sentinel knows B's and the witness", t, || {
        knows_three(
            A,
            26379,
            &[(B, 26379, sb.clone()), (A, WITNESS_PORT, w.clone())],
        )
    });

    // B's pod dies now: A's sentinel and the witness fail over back to A.
    let t2 = Instant::now();
    drop(_redis_b);
    drop(sent_b);
    eventually("A's sentinels promote A", Duration::from_secs(30), || {
        (primary_of(A, 26379).as_deref() == Some(A)
            && primary_of(A, WITNESS_PORT).as_deref() == Some(A)
            && role(A).as_deref() == Some("master"))
        .then_some(())
    });
    eprintln!(
        "two units: B's pod died, A primary after {} ms",
        t2.elapsed().as_millis()
    );
}
