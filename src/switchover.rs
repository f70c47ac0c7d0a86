//! Planned switchover: a primary that is going away hands over first.
//!
//! The departing unit (not only the leader) takes part: if its Redis is the primary and has
//! replicas, it pauses writes (`CLIENT PAUSE WRITE`) so nothing acknowledged is lost, waits
//! until a replica has every byte, asks its own sentinel to `SENTINEL FAILOVER` (a forced
//! failover needs no quorum, so it works even when the remaining sentinels could not agree),
//! and waits until its Redis has become a replica of the new primary.

use std::time::{Duration, Instant};

use crate::charm::{own_address, Topology};
use crate::literals::{REDIS_PORT, SENTINEL_PORT};
use crate::redis_client::{value_to_string, RedisCallError, RedisConn};

/// How a step-down ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDown {
    /// The given host was not the primary: nothing to do.
    NotPrimary,
    /// No replica to hand over to.
    NoReplica,
    /// The named target is not an online replica of the primary.
    TargetNotReplica,
    /// Another unit is now primary; writes were paused for `paused`.
    HandedOver {
        new_primary: String,
        paused: Duration,
    },
    /// The failover did not finish in time; sentinel will complete it.
    TimedOut,
}

/// Replica priority given to the chosen target and to the other replicas while a targeted
/// switchover runs (sentinel promotes the lowest non-zero priority).
const TARGET_PRIORITY: &str = "1";
const OTHER_PRIORITY: &str = "100";

/// Hand the primary role of the Redis at `primary` (a host name or address) over to a
/// replica, optionally the replica announced as `target`. The sentinel on this unit runs the
/// failover. Writes are paused for at most `pause`.
pub fn step_down(
    topo: &Topology,
    app: &str,
    primary: &str,
    target: Option<&str>,
    pause: Duration,
) -> Result<StepDown, RedisCallError> {
    let pw = topo.peer.admin_password();
    let mut redis = RedisConn::connect(primary, REDIS_PORT, pw)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // With no replica connected at all after a few seconds, there is nobody to hand over to.
    let no_replica_deadline = Instant::now() + Duration::from_secs(5);
    // A replica that is still (re)syncing cannot be promoted: wait for one to be online.
    let replicas = loop {
        let info = redis.info("replication")?;
        if info.get("role").map(String::as_str) != Some("master") {
            return Ok(StepDown::NotPrimary);
        }
        let online: Vec<String> = online_replicas(&info)
            .filter_map(|l| field(l, "ip"))
            .collect();
        match target {
            Some(t) if online.iter().any(|h| h == t) => break online,
            None if !online.is_empty() => break online,
            _ => {}
        }
        if Instant::now() > no_replica_deadline {
            if target.is_some() {
                return Ok(StepDown::TargetNotReplica);
            }
            if info.get("connected_slaves").map(String::as_str) == Some("0") {
                return Ok(StepDown::NoReplica);
            }
        }
        if Instant::now() > deadline {
            return Ok(StepDown::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let sentinel_pw = topo.peer.sentinel_password.as_deref();
    let sentinel_host = own_address(topo);
    let mut sentinel = RedisConn::connect(&sentinel_host, SENTINEL_PORT, sentinel_pw)?;
    // A target: make it the only best candidate, and wait until sentinel has seen that
    // (it refreshes replica INFO every 10 s) before writes are paused.
    let mut restore = Vec::new();
    if let Some(t) = target {
        for host in &replicas {
            let want = if host == t {
                TARGET_PRIORITY
            } else {
                OTHER_PRIORITY
            };
            let mut c = RedisConn::connect(host, REDIS_PORT, pw)?;
            let before = crate::redis_client::value_to_map(&c.command(&[
                "CONFIG",
                "GET",
                "replica-priority",
            ])?);
            if let Some(old) = before.get("replica-priority") {
                restore.push((host.clone(), old.clone()));
            }
            c.command(&["CONFIG", "SET", "replica-priority", want])?;
        }
        let seen_deadline = Instant::now() + Duration::from_secs(15);
        while !sentinel_sees_priorities(&mut sentinel, app, t)? {
            if Instant::now() > seen_deadline {
                restore_priorities(&restore, pw);
                return Ok(StepDown::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let result = pause_and_failover(
        &mut redis,
        &mut sentinel,
        primary,
        pw,
        app,
        target,
        &replicas,
        pause,
        deadline,
    );
    restore_priorities(&restore, pw);
    result
}

/// The value of `key` in a `slaveN:ip=..,port=..,state=..` line.
fn field(line: &str, key: &str) -> Option<String> {
    line.split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// Whether sentinel's view of the replicas has the target at the target priority and every
/// other replica at another one.
fn sentinel_sees_priorities(
    sentinel: &mut RedisConn,
    app: &str,
    target: &str,
) -> Result<bool, RedisCallError> {
    let reply = sentinel.command(&["SENTINEL", "REPLICAS", app])?;
    let redis::Value::Array(items) = reply else {
        return Ok(false);
    };
    let mut target_seen = false;
    for item in &items {
        let r = crate::redis_client::value_to_map(item);
        let prio = r.get("slave-priority").map(String::as_str);
        if r.get("ip").map(String::as_str) == Some(target) {
            target_seen = prio == Some(TARGET_PRIORITY);
            if !target_seen {
                return Ok(false);
            }
        } else if prio == Some(TARGET_PRIORITY) {
            return Ok(false);
        }
    }
    Ok(target_seen)
}

/// Put back the replica priorities a targeted switchover changed (best effort: a replica
/// that cannot be reached keeps its file config, which never had the temporary value).
fn restore_priorities(restore: &[(String, String)], pw: Option<&str>) {
    for (host, old) in restore {
        let r = RedisConn::connect(host, REDIS_PORT, pw)
            .and_then(|mut c| c.command(&["CONFIG", "SET", "replica-priority", old]));
        if let Err(e) = r {
            tracing::warn!(error = %e, %host, "could not restore replica-priority");
        }
    }
}

/// Pause writes, wait until a replica (the target, if any) has every byte, `SENTINEL
/// FAILOVER`, wait until sentinel names the new primary, and make the old one its replica.
#[allow(clippy::too_many_arguments)]
fn pause_and_failover(
    redis: &mut RedisConn,
    sentinel: &mut RedisConn,
    primary: &str,
    pw: Option<&str>,
    app: &str,
    target: Option<&str>,
    replicas: &[String],
    pause: Duration,
    deadline: Instant,
) -> Result<StepDown, RedisCallError> {
    // Stop new writes, then wait until an online replica has acknowledged everything.
    redis.command(&["CLIENT", "PAUSE", &pause.as_millis().to_string(), "WRITE"])?;
    let paused_at = Instant::now();
    let sync_deadline = Instant::now() + pause.min(Duration::from_secs(5));
    while Instant::now() < sync_deadline {
        let info = redis.info("replication")?;
        let offset = info.get("master_repl_offset").cloned().unwrap_or_default();
        if online_replicas(&info).any(|line| {
            field(line, "offset").as_deref() == Some(offset.as_str())
                && target.is_none_or(|t| field(line, "ip").as_deref() == Some(t))
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Sentinel may still be noticing the replica (NOGOODSLAVE) or finishing a failover
    // (INPROG): retry until the deadline.
    loop {
        match sentinel.command(&["SENTINEL", "FAILOVER", app]) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "sentinel failover not accepted yet; retrying");
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => {
                let _ = redis.command(&["CLIENT", "UNPAUSE"]);
                return Err(e);
            }
        }
    }
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        // Sentinel names the promoted replica first; it only demotes the old primary seconds
        // later (after its next INFO and a settle delay), by which time our pause would have
        // run out and the old primary would take writes a replica can never see. So demote it
        // ourselves, still paused, to the primary sentinel now names.
        let promoted = sentinel
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", app])
            .ok()
            .and_then(|v| match v {
                redis::Value::Array(items) => items.first().map(value_to_string),
                _ => None,
            })
            .filter(|h| replicas.contains(h));
        if let Some(new_primary) = promoted {
            let demoted = RedisConn::connect(primary, REDIS_PORT, pw).and_then(|mut c| {
                c.command(&["REPLICAOF", &new_primary, &REDIS_PORT.to_string()])?;
                c.command(&["CLIENT", "UNPAUSE"])
            });
            if let Err(e) = &demoted {
                tracing::warn!(error = %e, "could not demote the old primary; sentinel will");
            }
            return Ok(StepDown::HandedOver {
                new_primary,
                paused: paused_at.elapsed(),
            });
        }
        let Ok(info) =
            RedisConn::connect(primary, REDIS_PORT, pw).and_then(|mut c| c.info("replication"))
        else {
            continue;
        };
        if info.get("role").map(String::as_str) == Some("slave") {
            let _ = RedisConn::connect(primary, REDIS_PORT, pw)
                .and_then(|mut c| c.command(&["CLIENT", "UNPAUSE"]));
            return Ok(StepDown::HandedOver {
                new_primary: info.get("master_host").cloned().unwrap_or_default(),
                paused: paused_at.elapsed(),
            });
        }
    }
    let _ = redis.command(&["CLIENT", "UNPAUSE"]);
    Ok(StepDown::TimedOut)
}

/// The `slaveN:` lines of `INFO replication` whose state is `online`.
fn online_replicas(
    info: &std::collections::BTreeMap<String, String>,
) -> impl Iterator<Item = &String> {
    info.iter()
        .filter(|(k, _)| k.starts_with("slave") && k[5..].chars().all(|c| c.is_ascii_digit()))
        .map(|(_, v)| v)
        .filter(|v| v.split(',').any(|kv| kv == "state=online"))
}

/// After a unit left: forget it in our own sentinel (`SENTINEL RESET`), unless a failover
/// is running, and set the quorum for the new size.
pub fn forget_departed(topo: &Topology, app: &str, quorum: usize) {
    let host = own_address(topo);
    let result = RedisConn::connect(&host, SENTINEL_PORT, topo.peer.sentinel_password.as_deref())
        .and_then(|mut s| {
            let info = s.sentinel_master(app)?;
            let flags = info.get("flags").cloned().unwrap_or_default();
            if flags.contains("failover") || flags.contains("o_down") {
                tracing::info!(%flags, "failover running; not resetting sentinel");
                return Ok(());
            }
            s.command(&["SENTINEL", "SET", app, "quorum", &quorum.to_string()])?;
            s.command(&["SENTINEL", "RESET", app])?;
            tracing::info!(quorum, "sentinel reset after a unit departed");
            Ok(())
        });
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not reset sentinel after a departure");
    }
}
