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
use crate::redis_client::{RedisCallError, RedisConn};

/// How a step-down ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDown {
    /// We were not the primary: nothing to do.
    NotPrimary,
    /// No replica to hand over to.
    NoReplica,
    /// Another unit is now primary.
    HandedOver { new_primary: String },
    /// The failover did not finish in time; sentinel will complete it.
    TimedOut,
}

/// Hand the primary role over if we hold it. Writes are paused for at most `pause`.
pub fn step_down(topo: &Topology, app: &str, pause: Duration) -> Result<StepDown, RedisCallError> {
    let host = own_address(topo);
    let pw = topo.peer.admin_password();
    let mut redis = RedisConn::connect(&host, REDIS_PORT, pw)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // With no replica connected at all after a few seconds, there is nobody to hand over to.
    let no_replica_deadline = Instant::now() + Duration::from_secs(5);
    // A replica that is still (re)syncing cannot be promoted: wait for one to be online.
    loop {
        let info = redis.info("replication")?;
        if info.get("role").map(String::as_str) != Some("master") {
            return Ok(StepDown::NotPrimary);
        }
        if online_replicas(&info).next().is_some() {
            break;
        }
        if info.get("connected_slaves").map(String::as_str) == Some("0")
            && Instant::now() > no_replica_deadline
        {
            return Ok(StepDown::NoReplica);
        }
        if Instant::now() > deadline {
            return Ok(StepDown::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stop new writes, then wait until an online replica has acknowledged everything.
    redis.command(&["CLIENT", "PAUSE", &pause.as_millis().to_string(), "WRITE"])?;
    let sync_deadline = Instant::now() + pause.min(Duration::from_secs(5));
    while Instant::now() < sync_deadline {
        let info = redis.info("replication")?;
        let offset = info.get("master_repl_offset").cloned().unwrap_or_default();
        if online_replicas(&info)
            .any(|line| line.split(',').any(|kv| kv == format!("offset={offset}")))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sentinel_pw = topo.peer.sentinel_password.as_deref();
    let mut sentinel = RedisConn::connect(&host, SENTINEL_PORT, sentinel_pw)?;
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
        let Ok(info) =
            RedisConn::connect(&host, REDIS_PORT, pw).and_then(|mut c| c.info("replication"))
        else {
            continue;
        };
        if info.get("role").map(String::as_str) == Some("slave") {
            let _ = RedisConn::connect(&host, REDIS_PORT, pw)
                .and_then(|mut c| c.command(&["CLIENT", "UNPAUSE"]));
            return Ok(StepDown::HandedOver {
                new_primary: info.get("master_host").cloned().unwrap_or_default(),
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
