//! Planned switchover: a primary that is going away hands over first.
//!
//! The departing unit (not only the leader) takes part: if its Redis is the primary and has
//! replicas, it pauses writes (`CLIENT PAUSE WRITE`) so nothing acknowledged is lost, waits
//! until a replica has every byte, asks its own sentinel to `SENTINEL FAILOVER` (a forced
//! failover needs no quorum, so it works even when the remaining sentinels could not agree),
//! and waits until its Redis has become a replica of the new primary.
//!
//! # `stop`
//! On Kubernetes `stop` runs whenever the pod goes: scale-down, `kubectl delete pod`, node
//! drain, and every pod of a `juju refresh` (a StatefulSet rolling update, highest ordinal
//! first). The services are still up while it runs, and the pod dies when the grace period
//! ends whatever the hook is doing. [`on_stop`] therefore hands the primary role over with the
//! same planned switchover, inside a budget ([`STOP_BUDGET`]) well under Kubernetes' default
//! 30 s grace period; a replica or a sole unit has nothing to hand over. `stop` cannot be
//! deferred (contract §3), so every wait is bounded and a failure is logged, never raised:
//! when the handover does not happen, Sentinel fails over after the pod is gone, as for a
//! crash.

use std::time::{Duration, Instant};

use crate::charm::{own_address, RedisK8sCharm, Topology};
use crate::literals::{REDIS_PORT, SENTINEL_PORT};
use crate::ops::framework::{EventHandle, Framework, HandlerResult};
use crate::redis_client::{value_to_string, RedisCallError, RedisConn};

/// Everything `stop` may spend on a handover (Kubernetes' default grace period is 30 s).
pub const STOP_BUDGET: Duration = Duration::from_secs(20);
/// Longest write pause of a handover in `stop`.
pub const STOP_PAUSE: Duration = Duration::from_secs(5);
/// After the handover, how long `stop` waits for its own sentinel to finish reconfiguring the
/// other replicas (it runs the failover; when it dies mid-way the others finish it later).
const STOP_SETTLE: Duration = Duration::from_secs(5);
/// Longest wait before the pause for Sentinel to consider a replica promotable (a replica
/// that just came back is skipped by `SENTINEL FAILOVER` until Sentinel has pinged it).
const CANDIDATE_WAIT: Duration = Duration::from_secs(10);

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
/// failover. Writes are paused for at most `pause`; the whole step-down takes at most 30 s.
pub fn step_down(
    topo: &Topology,
    app: &str,
    primary: &str,
    target: Option<&str>,
    pause: Duration,
) -> Result<StepDown, RedisCallError> {
    step_down_within(topo, app, primary, target, pause, Duration::from_secs(30))
}

/// [`step_down`] that gives up after `budget` (the failover may still complete: Sentinel
/// finishes what it started).
pub fn step_down_within(
    topo: &Topology,
    app: &str,
    primary: &str,
    target: Option<&str>,
    pause: Duration,
    budget: Duration,
) -> Result<StepDown, RedisCallError> {
    let pw = topo.peer.admin_password();
    let mut redis = RedisConn::connect(primary, REDIS_PORT, pw)?;
    let deadline = Instant::now() + budget;
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
    // Writes are paused from here on: first let Sentinel see a promotable replica, so the
    // pause is not spent on NOGOODSLAVE retries.
    let candidate_deadline = (Instant::now() + CANDIDATE_WAIT).min(deadline);
    loop {
        match sentinel_has_candidate(&mut sentinel, app, &replicas, target) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "cannot ask sentinel about the replicas"),
        }
        if Instant::now() >= candidate_deadline {
            tracing::info!("sentinel does not list a promotable replica yet; trying anyway");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let result = pause_and_failover(
        &mut redis,
        &mut sentinel,
        (&sentinel_host, sentinel_pw),
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

/// Whether `SENTINEL REPLICAS` lists one of `replicas` (the target, when there is one) as
/// Sentinel's failover would accept it: not down or disconnected, answering pings, with a
/// working link to the primary and a non-zero priority.
fn sentinel_has_candidate(
    sentinel: &mut RedisConn,
    app: &str,
    replicas: &[String],
    target: Option<&str>,
) -> Result<bool, RedisCallError> {
    let reply = sentinel.command(&["SENTINEL", "REPLICAS", app])?;
    let redis::Value::Array(items) = reply else {
        return Ok(false);
    };
    Ok(items.iter().any(|item| {
        let r = crate::redis_client::value_to_map(item);
        let get = |k: &str| r.get(k).map(String::as_str).unwrap_or_default();
        let ip = get("ip");
        let wanted = match target {
            Some(t) => ip == t,
            None => replicas.iter().any(|h| h == ip),
        };
        is_promotable(
            get("flags"),
            get("last-ok-ping-reply"),
            get("master-link-status"),
            get("slave-priority"),
        ) && wanted
    }))
}

/// Sentinel's own candidate rules (`sentinelSelectSlave`) as far as they can change within
/// a few seconds: flags without down/disconnected, a ping answered within 5 s, the link to
/// the primary up, priority not 0.
pub fn is_promotable(flags: &str, last_ok_ping_ms: &str, link: &str, priority: &str) -> bool {
    let bad = ["s_down", "o_down", "disconnected"];
    !flags.split(',').any(|f| bad.contains(&f))
        && last_ok_ping_ms.parse::<u64>().is_ok_and(|ms| ms < 5000)
        && link == "ok"
        && priority != "0"
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
    (sentinel_host, sentinel_pw): (&str, Option<&str>),
    primary: &str,
    pw: Option<&str>,
    app: &str,
    target: Option<&str>,
    replicas: &[String],
    pause: Duration,
    deadline: Instant,
) -> Result<StepDown, RedisCallError> {
    // Stop new writes, then wait until the online replicas (the target, if any) have
    // acknowledged everything: Sentinel picks by priority and its own, possibly seconds old,
    // view of the offsets, so every replica it may pick must be complete.
    let pause_ms = pause.as_millis().to_string();
    redis.command(&["CLIENT", "PAUSE", &pause_ms, "WRITE"])?;
    let paused_at = Instant::now();
    let paused_until = paused_at + pause;
    let sync_deadline = Instant::now() + pause.min(Duration::from_secs(5));
    while Instant::now() < sync_deadline {
        let info = redis.info("replication")?;
        let offset = info.get("master_repl_offset").cloned().unwrap_or_default();
        let in_sync = |line: &String| field(line, "offset").as_deref() == Some(offset.as_str());
        let done = match target {
            Some(t) => online_replicas(&info)
                .any(|line| field(line, "ip").as_deref() == Some(t) && in_sync(line)),
            None => online_replicas(&info).all(in_sync) && online_replicas(&info).count() > 0,
        };
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Sentinel may still be noticing the replica (NOGOODSLAVE) or finishing a failover
    // (INPROG): retry while writes are still paused. Once the pause has run out, writes a
    // replica never saw could be acknowledged before a promotion: give up instead.
    let margin = Duration::from_millis(500);
    loop {
        match sentinel.command(&["SENTINEL", "FAILOVER", app]) {
            Ok(_) => break,
            Err(e) if Instant::now() + margin < paused_until.min(deadline) => {
                tracing::debug!(error = %e, "sentinel failover not accepted yet; retrying");
                std::thread::sleep(Duration::from_millis(300));
                if let Ok(c) = RedisConn::connect(sentinel_host, SENTINEL_PORT, sentinel_pw) {
                    *sentinel = c;
                }
            }
            Err(e) => {
                let _ = redis.command(&["CLIENT", "UNPAUSE"]);
                return Err(e);
            }
        }
    }
    // The failover is under way: keep writes paused until the old primary is demoted (a
    // write it took now could never reach the promoted replica), up to the deadline.
    let mut paused_until = paused_until;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if paused_until < Instant::now() + Duration::from_secs(1) {
            let extend = RedisConn::connect(primary, REDIS_PORT, pw)
                .and_then(|mut c| c.command(&["CLIENT", "PAUSE", &pause_ms, "WRITE"]));
            match extend {
                Ok(_) => paused_until = Instant::now() + pause,
                Err(e) => tracing::debug!(error = %e, "could not extend the write pause"),
            }
        }
        // Sentinel names the promoted replica first; it only demotes the old primary seconds
        // later (after its next INFO and a settle delay), by which time our pause would have
        // run out and the old primary would take writes a replica can never see. So demote it
        // ourselves, still paused, to the primary sentinel now names. A fresh connection
        // each time: one that timed out may be out of step with its replies.
        let promoted = RedisConn::connect(sentinel_host, SENTINEL_PORT, sentinel_pw)
            .and_then(|mut c| c.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", app]))
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
    let _ = RedisConn::connect(primary, REDIS_PORT, pw)
        .and_then(|mut c| c.command(&["CLIENT", "UNPAUSE"]));
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

/// `stop`: the pod is going (scale-down, deletion, a refresh's rolling update). If this
/// unit's Redis is the primary and another unit can take over, hand the role over (paused
/// writes, `SENTINEL FAILOVER`, demotion) before the pod dies; the leader then records the
/// new primary itself, as its pod may be down when Sentinel's notice comes. A replica's or
/// a sole unit's stop does nothing. Bounded by [`STOP_BUDGET`]; never fails the hook.
pub fn on_stop(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _ev: &mut EventHandle,
) -> HandlerResult {
    let topo = charm.topology(fw)?.clone();
    if topo.peer_fqdns.is_empty() {
        tracing::info!("stop: no other unit to hand over to");
        return Ok(());
    }
    if !topo.peer.is_populated() {
        tracing::info!("stop: peer data not populated; nothing to hand over");
        return Ok(());
    }
    let app = fw.ctx.app_name.clone();
    let own = own_address(&topo);
    let started = Instant::now();
    let outcome = step_down_within(&topo, &app, &own, None, STOP_PAUSE, STOP_BUDGET);
    match &outcome {
        Ok(StepDown::HandedOver {
            new_primary,
            paused,
        }) => {
            tracing::info!(
                %new_primary,
                paused_ms = paused.as_millis() as u64,
                took_ms = started.elapsed().as_millis() as u64,
                "stop: handed the primary role over"
            );
            wait_failover_end(&topo, &app, STOP_SETTLE);
            if fw.model().is_leader()? {
                charm.invalidate_topology();
                crate::sentinel::refresh_leader_host(charm, fw)?;
                crate::client_relation::publish(charm, fw)?;
            }
        }
        Ok(StepDown::NotPrimary) => tracing::info!("stop: a replica; nothing to hand over"),
        Ok(other) => tracing::warn!(outcome = ?other, "stop: the primary role was not handed over"),
        Err(e) => tracing::warn!(error = %e, "stop: could not hand the primary role over"),
    }
    Ok(())
}

/// Wait (at most `max`) until our sentinel no longer reports a failover in progress, so the
/// sentinel that ran the failover has reconfigured the other replicas before its pod dies.
fn wait_failover_end(topo: &Topology, app: &str, max: Duration) {
    let deadline = Instant::now() + max;
    let pw = topo.peer.sentinel_password.as_deref();
    let host = own_address(topo);
    while Instant::now() < deadline {
        let flags = RedisConn::connect(&host, SENTINEL_PORT, pw)
            .and_then(|mut s| s.sentinel_master(app))
            .map(|info| info.get("flags").cloned().unwrap_or_default());
        match flags {
            Ok(f) if !f.contains("failover") => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "stop: sentinel not answering");
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotable_follows_sentinels_rules() {
        assert!(is_promotable("slave", "120", "ok", "100"));
        assert!(!is_promotable("s_down,slave", "120", "ok", "100"));
        assert!(!is_promotable("slave,disconnected", "120", "ok", "100"));
        assert!(!is_promotable("slave", "6000", "ok", "100"));
        assert!(!is_promotable("slave", "", "ok", "100"));
        assert!(!is_promotable("slave", "10", "err", "100"));
        assert!(!is_promotable("slave", "10", "ok", "0"));
    }

    #[test]
    fn replica_lines_are_read() {
        let line = "ip=a.svc,port=6379,state=online,offset=10,lag=0";
        assert_eq!(field(line, "ip").as_deref(), Some("a.svc"));
        assert_eq!(field(line, "offset").as_deref(), Some("10"));
        assert_eq!(field(line, "nope"), None);
    }
}
