//! Replication as part of "settled": `juju-local deploy --wait` (and `wait --replicated`) on an
//! application with a `redis` container does not report the model settled while a replica is
//! still in its initial sync or behind its primary.
//!
//! Why: hooks going idle does not mean the data is replicated. A replica's hook waits a
//! bounded time for its first full sync (the primary's diskless sync first waits 5 s for more
//! replicas, and a replica that arrives during a transfer waits for the next one), so a
//! deploy can settle while a replica has no data yet. Sentinel may promote such a replica
//! (one that never had a link reports no "link down since" age), and a write made right after
//! `deploy --wait` and then lost with the primary's pod is gone: what `scripts/demo` once
//! showed. An operator's "deployed" should mean "replicated".
//!
//! What is required, per Redis that answers `INFO replication` (asked over TLS with the app's
//! CA when `enable-tls` is on, as `status` does; one that does not answer, or refuses the
//! password, is left to the hooks and their status: a hung server must not hold `wait` until
//! its timeout):
//! * a replica: `master_link_status:up`;
//! * a primary: every replica it lists is `state=online` with an acknowledged offset at or past
//!   the primary's own `master_repl_offset` when this wait first saw that primary (per
//!   replication id, so a restarted primary with a new history starts afresh). Replicas
//!   acknowledge once a second, so this costs at most about a second once the links are up.
//!
//! Why not every `--wait` (config, relate, scale, kill-pod, refresh) and plain `wait`: those
//! keep their meaning, "the hooks are done", which the end-to-end tests rely on to observe
//! states while a replica resyncs. One of them (tests/e2e_two_units.rs, a pod returning after
//! a kill) failed 2 runs in 4 when plain `wait` also waited for the resync: in those runs
//! Sentinel moved the primary back to the returning pod right after its full sync began, and
//! the test, now looking later, saw it. That failback is a finding of its own, not something
//! `wait` should hide or provoke.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::redis_client::RedisConn;

/// The Redis port of every unit (the charm's `REDIS_PORT`).
const REDIS_PORT: u16 = 6379;
/// Connect/read timeout of one probe: a dead or hung server is skipped, not waited for.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What one wait remembers between polls: each primary's offset (by unit and replication id)
/// when first seen, which its replicas must reach.
#[derive(Debug, Default)]
pub struct CatchUp {
    targets: BTreeMap<(String, String), u64>,
}

impl CatchUp {
    /// Ask every `(unit, address)`'s Redis (`password`: the app's admin password) and return
    /// why replication is not settled yet, one line per reason; empty when it is.
    pub fn lagging(&mut self, units: &[(String, String)], password: Option<&str>) -> Vec<String> {
        units
            .iter()
            .filter_map(|(unit, addr)| {
                let info =
                    RedisConn::connect_with_timeout(addr, REDIS_PORT, password, PROBE_TIMEOUT)
                        .and_then(|mut c| c.info("replication"))
                        .ok()?;
                Some(self.assess(unit, &info))
            })
            .flatten()
            .collect()
    }

    /// The reasons one unit's `INFO replication` gives (empty: nothing to wait for).
    pub fn assess(&mut self, unit: &str, info: &BTreeMap<String, String>) -> Vec<String> {
        let get = |k: &str| info.get(k).map(String::as_str);
        match get("role") {
            Some("slave") if get("master_link_status") != Some("up") => {
                let what = if get("master_sync_in_progress") == Some("1") {
                    "initial sync in progress"
                } else {
                    "link down"
                };
                vec![format!("{unit} replica: {what}")]
            }
            Some("master") => {
                let own: u64 = get("master_repl_offset")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let replid = get("master_replid").unwrap_or_default().to_string();
                let target = *self
                    .targets
                    .entry((unit.to_string(), replid))
                    .or_insert(own);
                info.iter()
                    .filter(|(k, _)| is_replica_line(k))
                    .filter_map(|(_, v)| replica_behind(v, target))
                    .map(|why| format!("{unit} primary: {why}"))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// `slave0`, `slave1`, ... (not `slave_read_repl_offset` and the like).
fn is_replica_line(key: &str) -> bool {
    key.strip_prefix("slave")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why a primary's `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line is not caught up with
/// `target`, or `None` when it is.
fn replica_behind(line: &str, target: u64) -> Option<String> {
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let ip = field("ip").unwrap_or("?");
    let state = field("state").unwrap_or("?");
    if state != "online" {
        return Some(format!("replica {ip} {state}"));
    }
    let offset: u64 = field("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    (offset < target).then(|| format!("replica {ip} at offset {offset} of {target}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_client::parse_info;

    #[test]
    fn a_replica_counts_once_its_link_is_up() {
        let mut c = CatchUp::default();
        let syncing = parse_info(
            "role:slave\nmaster_host:a\nmaster_link_status:down\nmaster_sync_in_progress:1\n",
        );
        assert_eq!(
            c.assess("app/1", &syncing),
            ["app/1 replica: initial sync in progress"]
        );
        let down = parse_info("role:slave\nmaster_link_status:down\nmaster_sync_in_progress:0\n");
        assert_eq!(c.assess("app/1", &down), ["app/1 replica: link down"]);
        let up = parse_info("role:slave\nmaster_link_status:up\n");
        assert!(c.assess("app/1", &up).is_empty());
    }

    #[test]
    fn a_primary_waits_for_online_replicas_at_its_first_seen_offset() {
        let mut c = CatchUp::default();
        let first = parse_info(
            "role:master\nconnected_slaves:2\n\
             slave0:ip=10.0.0.2,port=6379,state=online,offset=90,lag=0\n\
             slave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\n\
             slave_read_repl_offset:100\n\
             master_replid:r1\nmaster_repl_offset:100\n",
        );
        assert_eq!(
            c.assess("app/0", &first),
            [
                "app/0 primary: replica 10.0.0.2 at offset 90 of 100",
                "app/0 primary: replica 10.0.0.3 wait_bgsave"
            ]
        );
        // Both online and past the first-seen offset, though the primary has moved on since
        // (its pings): caught up.
        let later = parse_info(
            "role:master\n\
             slave0:ip=10.0.0.2,port=6379,state=online,offset=100,lag=0\n\
             slave1:ip=10.0.0.3,port=6379,state=online,offset=114,lag=1\n\
             master_replid:r1\nmaster_repl_offset:128\n",
        );
        assert!(c.assess("app/0", &later).is_empty());
        // A new history (restarted primary): its own offset is the new target.
        let restarted = parse_info(
            "role:master\nslave0:ip=10.0.0.2,port=6379,state=online,offset=7,lag=0\n\
             master_replid:r2\nmaster_repl_offset:9\n",
        );
        assert_eq!(
            c.assess("app/0", &restarted),
            ["app/0 primary: replica 10.0.0.2 at offset 7 of 9"]
        );
    }

    #[test]
    fn a_lone_primary_or_an_unknown_role_needs_nothing() {
        let mut c = CatchUp::default();
        let alone = parse_info("role:master\nconnected_slaves:0\nmaster_repl_offset:0\n");
        assert!(c.assess("app/0", &alone).is_empty());
        assert!(c.assess("app/0", &BTreeMap::new()).is_empty());
    }

    #[test]
    fn an_unreachable_redis_is_left_to_the_hooks() {
        let mut c = CatchUp::default();
        let units = [("app/0".to_string(), "127.0.250.250".to_string())];
        assert!(c.lagging(&units, None).is_empty());
    }
}
