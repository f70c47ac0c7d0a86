//! Health: the Pebble checks' hooks, the metrics exporter, and the unit status an operator
//! reads.
//!
//! # Checks and their hooks
//! Both layers carry a check ([`REDIS_CHECK`], [`SENTINEL_CHECK`]; see
//! [`crate::workload::server_check`]). When Pebble turns one `down` or back `up`, Juju (3.6+)
//! runs `<container>-pebble-check-failed` / `-recovered`: [`on_check_failed`] makes the status
//! say which check fails at once; [`on_check_recovered`] converges the container again (a
//! restarted server gets its role back) and the status returns to the active message. On older
//! Juju the same status comes at update-status, which also asks Pebble for down checks.
//!
//! # Exporter
//! The redis layer runs `redis_exporter` (the Python charm's service name and the image's
//! `/bin/redis_exporter`) on port 9121. Its password is read from a JSON file
//! ([`EXPORTER_PASSWORD_PATH`], 0600, owned by redis: `--redis.password-file`, a map from
//! the scraped URI to its password; checked with Debian's 1.45, the image has 1.60), never
//! from argv or the plan's environment (the Python charm put it in the environment). It logs
//! in as `default` (`--redis.user`), which works with and without `allow-no-auth` (see
//! [`exporter_service`]). The exporter runs as redis and listens on our own address. The
//! service is `startup: disabled` and started by the charm after Redis: a missing or failing
//! exporter never fails a replan, so it can never keep Redis from starting or fail a hook.
//!
//! # Status
//! A converging hook reports [`Outcome::Done`]; at collect-status [`active_status`] turns that
//! into one message built from at most one `INFO replication` (own Redis) and one Sentinel
//! connection (`SENTINEL MASTER` + `SENTINEL CKQUORUM` on our own sentinel), e.g.
//! `replica, link up, sentinel quorum ok` or `primary, 2 replicas online, failover in
//! progress`. The pure builders ([`replication_summary`], [`sentinel_summary`]) are unit
//! tested; the message changes only when the state does, so an unchanged status costs no
//! `status-set`.

use std::collections::BTreeMap;

use crate::charm::{own_address, Outcome, RedisK8sCharm};
use crate::literals::*;
use crate::ops::framework::{EventHandle, Framework, HandlerError, HandlerResult};
use crate::ops::hookcmds::StatusValue;
use crate::ops::pebble::{Pebble, PebbleError, PushOptions, Service, ServiceAction};
use crate::redis_client::{RedisCallError, RedisConn};

/// The redis container's check.
pub const REDIS_CHECK: &str = "redis-up";
/// The sentinel container's check.
pub const SENTINEL_CHECK: &str = "sentinel-up";
/// The exporter's Pebble service (the Python charm's name).
pub const EXPORTER_SERVICE: &str = "redis_exporter";
/// Where the charmed-redis image has the exporter.
pub const EXPORTER_BIN: &str = "/bin/redis_exporter";
/// The exporter's password file: `{"redis://<host>:6379": "<password>"}`, 0600, redis.
pub const EXPORTER_PASSWORD_PATH: &str = "/etc/redis-server/exporter-password.json";
/// A replica whose last I/O with its primary is older than this is reported as lagging: the
/// primary pings its replicas every 10 s (`repl-ping-replica-period`), so anything below is
/// an idle link, not lag.
pub const REPLICA_IO_LAG_SECONDS: u64 = 11;
/// A replica whose last acknowledgement is older than this (seconds) is reported by the
/// primary as lagging (replicas acknowledge every second).
pub const REPLICA_ACK_LAG_SECONDS: u64 = 2;

/// What this hook learnt about health, so each probe runs at most once per hook.
#[derive(Debug, Default, Clone)]
pub struct HealthState {
    /// A handler reported [`Outcome::Done`]: the status is [`active_status`]'s message.
    pub active: bool,
    /// Checks found down (container, check); `None` until asked.
    failing: Option<Vec<(String, String)>>,
    /// Own Redis's `INFO replication`; `Some(None)` when it did not answer.
    info: Option<Option<BTreeMap<String, String>>>,
    /// The leader's note on a password rotation that waits for units to acknowledge its
    /// phase (set by [`crate::passwords`] each time it looks), appended to the active status.
    pub rotation_note: Option<String>,
}

// ----- checks -------------------------------------------------------------------------

/// The checks that are `down` in both containers (a container whose Pebble does not answer
/// counts as none: its absence is reported by the converging paths).
pub fn failing_checks(fw: &Framework<'_>) -> Vec<(String, String)> {
    checks_down(fw).0
}

/// The checks that are `down`, and the containers whose Pebble could not be asked.
fn checks_down(fw: &Framework<'_>) -> (Vec<(String, String)>, Vec<&'static str>) {
    let mut down = Vec::new();
    let mut unreachable = Vec::new();
    for container in [REDIS_CONTAINER, SENTINEL_CONTAINER] {
        match fw.container(container).checks(None, &[]) {
            Ok(checks) => down.extend(
                checks
                    .into_iter()
                    .filter(|c| c.status == "down")
                    .map(|c| (container.to_string(), c.name)),
            ),
            Err(e) => {
                tracing::debug!(%container, error = %e, "cannot list checks");
                unreachable.push(container);
            }
        }
    }
    (down, unreachable)
}

/// The status message for failing checks: `redis check failing: redis-up`.
pub fn failing_message(failing: &[(String, String)]) -> String {
    failing
        .iter()
        .map(|(container, check)| format!("{container} check failing: {check}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn failing_cached(charm: &mut RedisK8sCharm, fw: &Framework<'_>) -> Vec<(String, String)> {
    charm
        .health
        .failing
        .get_or_insert_with(|| failing_checks(fw))
        .clone()
}

/// `<container>-pebble-check-failed`: the status names the check at once. The event is
/// never deferred (a later run would report a state that has moved on); Pebble's current
/// view decides, and if Pebble cannot be asked, the event's check is reported.
pub fn on_check_failed(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    ev: &mut EventHandle,
) -> HandlerResult {
    let container = ev.container().unwrap_or_default().to_string();
    let check = ev.check_name().unwrap_or_default().to_string();
    tracing::warn!(%container, %check, "Pebble check failing");
    let (mut failing, unreachable) = checks_down(fw);
    if unreachable.contains(&container.as_str()) {
        failing.push((container, check));
    }
    charm.health.failing = Some(failing);
    charm.report(Outcome::Done);
    Ok(())
}

/// `<container>-pebble-check-recovered`: converge that container again (Pebble may have
/// restarted the server; it gets its role and settings back), then the normal status.
pub fn on_check_recovered(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    ev: &mut EventHandle,
) -> HandlerResult {
    let container = ev.container().unwrap_or_default().to_string();
    tracing::info!(%container, check = ?ev.check_name(), "Pebble check recovered");
    if charm.config(fw).is_err() {
        return Ok(());
    }
    let outcome = if container == SENTINEL_CONTAINER {
        crate::sentinel::converge(charm, fw)?
    } else {
        crate::redis_server::converge(charm, fw)?
    };
    if charm.report(outcome) {
        ev.defer();
    }
    Ok(())
}

// ----- exporter -----------------------------------------------------------------------

/// The `redis_exporter` service: scrapes the Redis at `host:6379`, listens on `host:9121`,
/// reads the password from [`EXPORTER_PASSWORD_PATH`]. `startup: disabled`: see the module
/// doc; [`ensure_exporter`] starts it.
///
/// `--redis.user=default`: without a user name the exporter (redigo) sends the one-argument
/// `AUTH <password>`, which Redis refuses when the `default` user is `nopass`
/// (`allow-no-auth`: "AUTH <password> called without any password configured"), and
/// `redis_up` drops to 0. `AUTH default <password>` is accepted both by a `nopass` default
/// user (any password) and by one with the admin password hashes, so one command serves both
/// modes and turning `allow-no-auth` on or off needs no exporter restart.
pub fn exporter_service(host: &str) -> Service {
    exporter_service_for(host, &exporter_target(host), None)
}

/// [`exporter_service`] scraping `target`; with TLS ([`crate::tls`]) it verifies the server
/// against the CA and presents the unit's certificate (the exporter, in Go, also checks the
/// name: `target` is then [`exporter_tls_target`]).
pub fn exporter_service_for(
    host: &str,
    target: &str,
    tls: Option<&crate::tls::TlsPaths>,
) -> Service {
    let tls_args = tls
        .map(|t| {
            format!(
                " --tls-ca-cert-file={} --tls-client-cert-file={} --tls-client-key-file={}",
                t.ca, t.cert, t.key
            )
        })
        .unwrap_or_default();
    Service {
        r#override: Some("replace".into()),
        summary: Some("Redis metric exporter".into()),
        command: Some(format!(
            "{EXPORTER_BIN} --redis.addr={target} --redis.user=default \
             --redis.password-file={EXPORTER_PASSWORD_PATH}{tls_args} \
             --web.listen-address={host}:{EXPORTER_PORT}"
        )),
        user: Some(REDIS_USER.into()),
        group: Some(REDIS_USER.into()),
        startup: Some("disabled".into()),
        ..Service::default()
    }
}

/// The URI the exporter scrapes, which is also the key of its password file.
pub fn exporter_target(host: &str) -> String {
    format!("redis://{host}:{REDIS_PORT}")
}

/// The URI the exporter scrapes with TLS: the unit's FQDN, the name a certificate for the
/// pods carries (the exporter verifies it; see [`crate::tls`]).
pub fn exporter_tls_target(fqdn: &str) -> String {
    format!("rediss://{fqdn}:{REDIS_PORT}")
}

/// The password file's content: the exporter looks the password up by the scraped URI.
/// No password (auth off): an empty map, and the exporter connects without one.
pub fn exporter_password_file(host: &str, password: Option<&str>) -> String {
    exporter_password_file_for(&exporter_target(host), password)
}

/// [`exporter_password_file`] for a scraped URI.
pub fn exporter_password_file_for(target: &str, password: Option<&str>) -> String {
    let mut map = serde_json::Map::new();
    if let Some(pw) = password {
        map.insert(target.to_string(), pw.into());
    }
    serde_json::Value::Object(map).to_string()
}

/// Push the exporter's password file (0600, redis) when its content differs; returns
/// whether it changed (the exporter reads it only at start, so then it must restart).
pub fn push_exporter_password(
    pebble: &dyn Pebble,
    host: &str,
    password: Option<&str>,
) -> Result<bool, PebbleError> {
    push_exporter_password_for(pebble, &exporter_target(host), password)
}

/// [`push_exporter_password`] for a scraped URI.
pub fn push_exporter_password_for(
    pebble: &dyn Pebble,
    target: &str,
    password: Option<&str>,
) -> Result<bool, PebbleError> {
    let want = exporter_password_file_for(target, password);
    if pebble
        .pull(EXPORTER_PASSWORD_PATH)
        .is_ok_and(|have| have == want.as_bytes())
    {
        return Ok(false);
    }
    pebble.push(
        EXPORTER_PASSWORD_PATH,
        want.as_bytes(),
        &PushOptions {
            permissions: Some(0o600),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            ..PushOptions::default()
        },
    )?;
    Ok(true)
}

/// Make the exporter run (restart it when its command or password changed). Failures are
/// logged, never returned: metrics must not hold up Redis or the hook (an image without
/// the binary answers the start with an error, and that is all).
pub fn ensure_exporter(pebble: &dyn Pebble, restart: bool) {
    let running = pebble
        .services(&[EXPORTER_SERVICE])
        .map(|s| s.iter().any(|i| i.is_running()))
        .unwrap_or(false);
    let action = match (running, restart) {
        (false, _) => ServiceAction::Start,
        (true, true) => ServiceAction::Restart,
        (true, false) => return,
    };
    match pebble.service_action_and_wait(action, &[EXPORTER_SERVICE], REPLAN_TIMEOUT) {
        Ok(_) => tracing::info!(?action, "redis_exporter"),
        Err(e) => tracing::warn!(error = %e, "redis_exporter could not start; metrics unavailable"),
    }
}

// ----- status -------------------------------------------------------------------------

/// update-status (and the custom-notice hook): is Redis answering? Failing checks first
/// (they say more than a timeout), then own Redis's `INFO replication`, kept for the status
/// message. `Done` means healthy: the message is built at collect-status.
pub fn assess(charm: &mut RedisK8sCharm, fw: &Framework<'_>) -> Result<Outcome, HandlerError> {
    let failing = failing_cached(charm, fw);
    if !failing.is_empty() {
        return Ok(Outcome::Waiting(failing_message(&failing)));
    }
    let topo = charm.topology(fw)?.clone();
    if !topo.peer.is_populated() {
        // A passwords secret that cannot be read is the reason, not a late leader: say so,
        // as the converging paths do.
        return Ok(Outcome::Waiting(
            topo.peer
                .waiting_message("Waiting for peer data to be updated"),
        ));
    }
    Ok(match info_cached(charm, &topo) {
        Some(_) => Outcome::Done,
        None => Outcome::Waiting("Waiting for Redis...".into()),
    })
}

fn info_cached(
    charm: &mut RedisK8sCharm,
    topo: &crate::charm::Topology,
) -> Option<BTreeMap<String, String>> {
    charm
        .health
        .info
        .get_or_insert_with(|| {
            RedisConn::connect(&own_address(topo), REDIS_PORT, topo.peer.admin_password())
                .and_then(|mut c| c.info("replication"))
                .map_err(|e| tracing::debug!(error = %e, "own Redis not answering INFO"))
                .ok()
        })
        .clone()
}

/// The status of a hook whose handlers reported [`Outcome::Done`]: failing checks
/// (waiting), else `active` with the role, replication and Sentinel's view. When our Redis
/// does not answer (it may be starting), the role this hook converged to, as before.
pub fn active_status(charm: &mut RedisK8sCharm, fw: &Framework<'_>) -> StatusValue {
    let failing = failing_cached(charm, fw);
    if !failing.is_empty() {
        return StatusValue::waiting(failing_message(&failing));
    }
    let topo = charm.topology(fw).ok().cloned();
    // After the topology is known: the recorded primary names the role in hooks that did
    // not converge.
    let fallback = charm.role_message().to_string();
    let note = charm.health.rotation_note.clone();
    let active = |msg: String| StatusValue::active(with_note(msg, note.as_deref()));
    let Some(topo) = topo.filter(|t| t.peer.is_populated()) else {
        return active(fallback);
    };
    let Some(info) = info_cached(charm, &topo) else {
        return active(fallback);
    };
    let mut parts = vec![replication_summary(&info).unwrap_or(fallback)];
    if let Some(pw) = topo.peer.sentinel_password.as_deref() {
        let view = ask_own_sentinel(&own_address(&topo), pw, &fw.ctx.app_name);
        parts.push(sentinel_summary(&view));
    }
    active(
        parts
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// `message; note` (or just one of them).
fn with_note(message: String, note: Option<&str>) -> String {
    match (message.is_empty(), note) {
        (_, None) => message,
        (true, Some(n)) => n.to_string(),
        (false, Some(n)) => format!("{message}; {n}"),
    }
}

/// A phase that has waited this long (seconds) gets its age in the note: the units are
/// stuck, not merely between two hooks.
pub const ROTATION_STALL_SECONDS: u64 = 120;

/// The leader's note while a password rotation waits for units to apply a phase, e.g.
/// `password rotation waiting for redis-k8s/2 (phase switch)`, or once it has waited
/// [`ROTATION_STALL_SECONDS`], `... (phase switch, for 15m)`: a unit whose workloads cannot
/// take the new passwords holds the rotation back (the old password stays accepted), and the
/// operator must see which one rather than find it in the leader's log.
pub fn rotation_waiting_note(units: &[String], phase: &str, waited_secs: u64) -> String {
    let age = if waited_secs >= ROTATION_STALL_SECONDS {
        format!(", for {}m", waited_secs / 60)
    } else {
        String::new()
    };
    format!(
        "password rotation waiting for {} (phase {phase}{age})",
        units.join(", ")
    )
}

/// The role and replication state from `INFO replication`, e.g. `primary, 2 replicas
/// online`, `replica, link up`, `replica, link down for 12s`. `None` for an unknown role.
pub fn replication_summary(info: &BTreeMap<String, String>) -> Option<String> {
    let num = |k: &str| info.get(k).and_then(|v| v.trim().parse::<u64>().ok());
    match info.get("role").map(String::as_str) {
        Some("master") => {
            let replicas: Vec<BTreeMap<&str, &str>> = info
                .iter()
                .filter(|(k, _)| {
                    k.strip_prefix("slave")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .map(|(_, v)| v.split(',').filter_map(|kv| kv.split_once('=')).collect())
                .collect();
            let online: Vec<&BTreeMap<&str, &str>> = replicas
                .iter()
                .filter(|r| r.get("state") == Some(&"online"))
                .collect();
            let mut msg = match online.len() {
                0 => "primary, no replica online".to_string(),
                1 => "primary, 1 replica online".to_string(),
                n => format!("primary, {n} replicas online"),
            };
            if online.len() < replicas.len() {
                msg.push_str(&format!(" of {}", replicas.len()));
            }
            let max_lag = online
                .iter()
                .filter_map(|r| r.get("lag").and_then(|l| l.parse::<u64>().ok()))
                .max()
                .unwrap_or(0);
            if max_lag > REPLICA_ACK_LAG_SECONDS {
                msg.push_str(&format!(", replica lag {max_lag}s"));
            }
            Some(msg)
        }
        Some("slave") => {
            let link = info.get("master_link_status").map(String::as_str);
            Some(if num("master_sync_in_progress") == Some(1) {
                "replica, initial sync in progress".to_string()
            } else if link == Some("up") {
                match num("master_last_io_seconds_ago") {
                    Some(s) if s >= REPLICA_IO_LAG_SECONDS => {
                        format!("replica, link up, last I/O {s}s ago")
                    }
                    _ => "replica, link up".to_string(),
                }
            } else {
                match num("master_link_down_since_seconds") {
                    Some(s) => format!("replica, link down for {s}s"),
                    None => format!("replica, link {}", link.unwrap_or("unknown")),
                }
            })
        }
        _ => None,
    }
}

/// What our own sentinel says about the monitored primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelHealth {
    /// `SENTINEL CKQUORUM` answer and whether `SENTINEL MASTER` flags `failover_in_progress`.
    Answered { quorum: bool, failover: bool },
    /// Our sentinel answered with an error (e.g. it does not monitor the app yet).
    NotReady,
    /// Our sentinel did not answer.
    Unreachable,
}

/// One connection to our own sentinel: `SENTINEL MASTER` then `SENTINEL CKQUORUM`.
pub fn ask_own_sentinel(host: &str, password: &str, app: &str) -> SentinelHealth {
    let answer = RedisConn::connect(host, SENTINEL_PORT, Some(password)).and_then(|mut c| {
        let master = c.sentinel_master(app)?;
        let quorum = c.sentinel_ckquorum(app)?;
        Ok::<_, RedisCallError>((master, quorum))
    });
    match answer {
        Ok((master, quorum)) => SentinelHealth::Answered {
            quorum,
            failover: master
                .get("flags")
                .is_some_and(|f| f.split(',').any(|f| f == "failover_in_progress")),
        },
        Err(e @ RedisCallError::Command { .. }) => {
            tracing::debug!(error = %e, "own sentinel refused the question");
            SentinelHealth::NotReady
        }
        Err(e) => {
            tracing::debug!(error = %e, "own sentinel not answering");
            SentinelHealth::Unreachable
        }
    }
}

/// `sentinel quorum ok`, `no sentinel quorum`, `failover in progress`, `sentinel not ready`,
/// `sentinel unreachable`.
pub fn sentinel_summary(view: &SentinelHealth) -> String {
    match view {
        SentinelHealth::Answered { failover: true, .. } => "failover in progress".into(),
        SentinelHealth::Answered { quorum: true, .. } => "sentinel quorum ok".into(),
        SentinelHealth::Answered { quorum: false, .. } => "no sentinel quorum".into(),
        SentinelHealth::NotReady => "sentinel not ready".into(),
        SentinelHealth::Unreachable => "sentinel unreachable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_client::parse_info;

    #[test]
    fn a_primary_counts_online_replicas_and_reports_lag() {
        let info = parse_info(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
             slave0:ip=10.0.0.2,port=6379,state=online,offset=100,lag=0\r\n\
             slave1:ip=10.0.0.3,port=6379,state=online,offset=90,lag=1\r\n\
             master_repl_offset:100\r\n",
        );
        assert_eq!(
            replication_summary(&info).as_deref(),
            Some("primary, 2 replicas online")
        );
        let info = parse_info(
            "role:master\nslave0:ip=a,port=6379,state=online,offset=1,lag=7\n\
             slave1:ip=b,port=6379,state=wait_bgsave,offset=0,lag=0\n",
        );
        assert_eq!(
            replication_summary(&info).as_deref(),
            Some("primary, 1 replica online of 2, replica lag 7s")
        );
        assert_eq!(
            replication_summary(&parse_info("role:master\nconnected_slaves:0\n")).as_deref(),
            Some("primary, no replica online")
        );
    }

    #[test]
    fn a_replica_reports_its_link() {
        let up = parse_info(
            "role:slave\nmaster_host:a\nmaster_link_status:up\nmaster_last_io_seconds_ago:3\n\
             master_sync_in_progress:0\n",
        );
        assert_eq!(
            replication_summary(&up).as_deref(),
            Some("replica, link up")
        );
        let stale = parse_info(
            "role:slave\nmaster_link_status:up\nmaster_last_io_seconds_ago:40\n\
             master_sync_in_progress:0\n",
        );
        assert_eq!(
            replication_summary(&stale).as_deref(),
            Some("replica, link up, last I/O 40s ago")
        );
        let down = parse_info(
            "role:slave\nmaster_link_status:down\nmaster_last_io_seconds_ago:-1\n\
             master_sync_in_progress:0\nmaster_link_down_since_seconds:12\n",
        );
        assert_eq!(
            replication_summary(&down).as_deref(),
            Some("replica, link down for 12s")
        );
        let syncing =
            parse_info("role:slave\nmaster_link_status:down\nmaster_sync_in_progress:1\n");
        assert_eq!(
            replication_summary(&syncing).as_deref(),
            Some("replica, initial sync in progress")
        );
        assert_eq!(
            replication_summary(&parse_info("role:slave\n")).as_deref(),
            Some("replica, link unknown")
        );
    }

    #[test]
    fn junk_info_has_no_summary() {
        assert_eq!(replication_summary(&parse_info("role:sentinel\n")), None);
        assert_eq!(replication_summary(&BTreeMap::new()), None);
        // A `slave_*` key that is not a replica line is not counted.
        let info = parse_info("role:master\nslave_read_repl_offset:5\nslavex:junk\n");
        assert_eq!(
            replication_summary(&info).as_deref(),
            Some("primary, no replica online")
        );
    }

    #[test]
    fn sentinel_view_wording() {
        let s = |quorum, failover| sentinel_summary(&SentinelHealth::Answered { quorum, failover });
        assert_eq!(s(true, false), "sentinel quorum ok");
        assert_eq!(s(false, false), "no sentinel quorum");
        assert_eq!(s(true, true), "failover in progress");
        assert_eq!(s(false, true), "failover in progress");
        assert_eq!(
            sentinel_summary(&SentinelHealth::Unreachable),
            "sentinel unreachable"
        );
        assert_eq!(
            sentinel_summary(&SentinelHealth::NotReady),
            "sentinel not ready"
        );
    }

    #[test]
    fn a_stalled_rotation_note_says_for_how_long() {
        let units = vec!["redis-k8s/1".to_string(), "redis-k8s/2".to_string()];
        assert_eq!(
            rotation_waiting_note(&units, "add", 5),
            "password rotation waiting for redis-k8s/1, redis-k8s/2 (phase add)"
        );
        assert_eq!(
            rotation_waiting_note(&units[1..], "switch", 905),
            "password rotation waiting for redis-k8s/2 (phase switch, for 15m)"
        );
    }

    #[test]
    fn failing_checks_are_named_with_their_container() {
        let f = vec![
            ("redis".to_string(), REDIS_CHECK.to_string()),
            ("sentinel".to_string(), SENTINEL_CHECK.to_string()),
        ];
        assert_eq!(
            failing_message(&f),
            "redis check failing: redis-up, sentinel check failing: sentinel-up"
        );
    }

    #[test]
    fn the_exporter_reads_its_password_from_a_file_never_argv() {
        let svc = exporter_service("10.0.0.5");
        let cmd = svc.command.as_deref().unwrap_or_default();
        assert_eq!(
            cmd,
            "/bin/redis_exporter --redis.addr=redis://10.0.0.5:6379 --redis.user=default \
             --redis.password-file=/etc/redis-server/exporter-password.json \
             --web.listen-address=10.0.0.5:9121"
        );
        assert!(svc.environment.is_empty());
        assert_eq!(svc.startup.as_deref(), Some("disabled"));
        let file = exporter_password_file("10.0.0.5", Some("s3cr\"et"));
        let parsed: BTreeMap<String, String> = serde_json::from_str(&file).expect("json");
        assert_eq!(parsed["redis://10.0.0.5:6379"], "s3cr\"et");
        assert_eq!(exporter_password_file("h", None), "{}");
    }
}
