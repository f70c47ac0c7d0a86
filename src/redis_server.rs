//! The redis container: `redis.conf`, the `redis` layer, and the unit's replication role.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::charm::{own_address, Outcome, RedisK8sCharm};
use crate::literals::*;
use crate::ops::framework::{EventHandle, Framework, HandlerError, HandlerResult};
use crate::ops::pebble::{Layer, Pebble, PebbleError};
use crate::peers::{ReplicaLink, KEY_REPLICA_LINK};
use crate::redis_client::RedisConn;
use crate::sentinel::{current_primary, pebble_outcome, write_config};
use crate::templates;

/// The `redis` layer: Redis (the command names only the config file; passwords stay in
/// it), its health check and the metrics exporter, for a Redis reachable at `host` (our own
/// address). Nothing secret goes in.
pub fn redis_layer(host: &str) -> Layer {
    redis_layer_tls(host, "", None)
}

/// [`redis_layer`] with TLS on when `tls` is given ([`crate::tls`]): the service carries the
/// certificate fingerprint (a change restarts Redis), the check speaks TLS, and the exporter
/// scrapes `rediss://<fqdn>:6379`.
pub fn redis_layer_tls(host: &str, fqdn: &str, tls: Option<&crate::tls::TlsMaterial>) -> Layer {
    use crate::tls::REDIS_TLS_PATHS;
    let mut layer = crate::workload::redis_user_layer(
        REDIS_SERVICE,
        "Redis",
        format!("redis-server {REDIS_CONFIG_PATH}"),
    );
    if let Some(s) = layer.services.get_mut(REDIS_SERVICE) {
        crate::tls::mark_service(s, tls);
    }
    let check = crate::workload::server_check(host, REDIS_PORT);
    let check = match tls {
        Some(_) => crate::tls::tls_check(check, &REDIS_TLS_PATHS),
        None => check,
    };
    layer
        .checks
        .insert(crate::health::REDIS_CHECK.into(), check);
    let exporter = match tls {
        Some(_) => crate::health::exporter_service_for(
            host,
            &crate::health::exporter_tls_target(fqdn),
            Some(&REDIS_TLS_PATHS),
        ),
        None => crate::health::exporter_service(host),
    };
    layer
        .services
        .insert(crate::health::EXPORTER_SERVICE.into(), exporter);
    layer
}

/// Template inputs of `redis.conf.j2`.
#[derive(Serialize)]
pub struct RedisConfig<'a> {
    pub bind: &'a str,
    pub hostname: &'a str,
    pub redis_port: u16,
    pub data_dir: &'a str,
    pub log_file: &'a str,
    pub log_level: &'a str,
    pub appendonly: bool,
    pub save: String,
    pub maxmemory: u64,
    pub maxmemory_policy: &'a str,
    /// SHA-256 of every password the `default` user accepts (two during a rotation).
    pub admin_hashes: Vec<String>,
    /// `allow-no-auth`: the `default` user takes any password.
    pub no_auth: bool,
    /// The admin password in use, for replication (`masterauth`).
    pub masterauth: Option<&'a str>,
    pub replicaof: Option<&'a str>,
    pub min_replicas_to_write: u64,
    pub min_replicas_max_lag: u64,
    /// The TLS files in the redis container when TLS is on ([`crate::tls`]).
    pub tls: Option<crate::tls::TlsPaths>,
}

pub fn on_pebble_ready(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    ev: &mut EventHandle,
) -> HandlerResult {
    let outcome = converge(charm, fw)?;
    let defer = charm.report(outcome);
    crate::client_relation::publish(charm, fw)?;
    if defer {
        ev.defer();
    }
    Ok(())
}

/// How long a hook waits for a replication link that is not syncing yet (a replica retries
/// its primary once a second; a primary's replica connects within that).
const LINK_CONNECT_WAIT: Duration = Duration::from_secs(2);
/// How long a hook waits for an initial sync that is under way: Redis's diskless sync waits
/// 5 s for more replicas before it sends (`repl-diskless-sync-delay`), then the data set.
const LINK_SYNC_WAIT: Duration = Duration::from_secs(10);

/// Make the redis container run Redis with the right config and role.
pub fn converge(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
) -> Result<Outcome, HandlerError> {
    converge_pass(charm, fw, false)
}

/// [`converge`]; `again` is the second pass after a fresh primary found its replica in sync
/// (it then only re-renders and applies min-replicas, never starts Redis again).
fn converge_pass(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    again: bool,
) -> Result<Outcome, HandlerError> {
    let cfg = match charm.config(fw) {
        Ok(c) => c.clone(),
        Err(e) => return Ok(Outcome::Blocked(e.to_string())),
    };
    let pebble = fw.container(REDIS_CONTAINER);
    // In this container's own pebble-ready, Pebble has just said it is up: don't ask again.
    if !crate::sentinel::is_ready_event_of(fw, REDIS_CONTAINER) && pebble.system_info().is_err() {
        return Ok(Outcome::Waiting(
            "Waiting for Pebble in workload container".into(),
        ));
    }
    let topo = charm.topology(fw)?.clone();
    if !topo.peer.is_populated() {
        return Ok(Outcome::Waiting(
            topo.peer
                .waiting_message("Waiting for peer data to be updated"),
        ));
    }
    let Some(primary) = current_primary(charm, fw)? else {
        return Ok(Outcome::Waiting("Failover in progress".into()));
    };
    let replicaof = (primary != topo.fqdn).then_some(primary.as_str());
    charm.converged_role = Some(if replicaof.is_some() {
        "replica"
    } else {
        "primary"
    });
    let planned = fw.model().planned_units()?;
    // Whether an online replica changes the automatic min-replicas-to-write (>= 3 units).
    let replica_matters =
        cfg.min_replicas_to_write(planned, false) != cfg.min_replicas_to_write(planned, true);
    let mut alone = replicaof.is_none() && primary_without_replica(&topo);
    if alone && replica_matters {
        // A replica that just said (in its unit databag) it is in sync, or one syncing now:
        // worth a bounded wait, so min-replicas goes on in this hook.
        let connect = if event_announces_replica(fw, &topo)? {
            LINK_CONNECT_WAIT
        } else {
            Duration::ZERO
        };
        alone = !wait_online_replica(&topo, connect);
    }
    let min_replicas = (
        cfg.min_replicas_to_write(planned, alone),
        cfg.min_replicas_max_lag,
    );
    let data_dir = match data_dir(&*pebble) {
        Ok(d) => d,
        Err(e) => return Ok(pebble_outcome(REDIS_CONTAINER, &e)),
    };
    let save = cfg
        .save
        .iter()
        .map(|(s, c)| format!("{s} {c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let rendered = templates::render(
        &fw.ctx.charm_dir,
        "redis.conf",
        RedisConfig {
            bind: &topo.bind,
            hostname: &topo.fqdn,
            redis_port: REDIS_PORT,
            data_dir: &data_dir,
            log_file: LOG_FILE,
            log_level: cfg.log_level.as_str(),
            appendonly: cfg.appendonly,
            save,
            maxmemory: cfg.maxmemory,
            maxmemory_policy: cfg.maxmemory_policy,
            admin_hashes: topo
                .peer
                .passwords
                .as_ref()
                .map(|p| p.admin.hashes())
                .or_else(|| {
                    topo.peer
                        .admin_password()
                        .map(|p| vec![crate::passwords::sha256::hex(p.as_bytes())])
                })
                .unwrap_or_default(),
            no_auth: cfg.allow_no_auth,
            masterauth: topo.peer.admin_password(),
            replicaof,
            min_replicas_to_write: min_replicas.0,
            min_replicas_max_lag: min_replicas.1,
            tls: cfg.tls.as_ref().map(|_| crate::tls::REDIS_TLS_PATHS),
        },
    )?;
    let log_dir = pebble.make_dir(LOG_DIR, &crate::workload::redis_dir(0o770));
    if let Err(e) = log_dir {
        return Ok(pebble_outcome(REDIS_CONTAINER, &e));
    }
    if let Err(e) = write_config(&*pebble, REDIS_CONFIG_PATH, &rendered) {
        return Ok(pebble_outcome(REDIS_CONTAINER, &e));
    }
    // Before Redis (re)starts with a config that names them.
    if let Some(tls) = cfg.tls.as_ref() {
        if let Err(e) = crate::tls::push(&*pebble, &crate::tls::REDIS_TLS_PATHS, tls) {
            return Ok(pebble_outcome(REDIS_CONTAINER, &e));
        }
    }
    let host = own_address(&topo);
    let exporter_target = match cfg.tls {
        Some(_) => crate::health::exporter_tls_target(&topo.fqdn),
        None => crate::health::exporter_target(&host),
    };
    let exporter_password = crate::health::push_exporter_password_for(
        &*pebble,
        &exporter_target,
        topo.peer.admin_password(),
    );
    let exporter_password_changed = match exporter_password {
        Ok(changed) => changed,
        Err(e) => return Ok(pebble_outcome(REDIS_CONTAINER, &e)),
    };
    let layer = redis_layer_tls(&host, &topo.fqdn, cfg.tls.as_ref());
    let plan = match pebble.get_plan() {
        Ok(p) => p,
        Err(e) => return Ok(pebble_outcome(REDIS_CONTAINER, &e)),
    };
    let planned = plan.services.get(REDIS_SERVICE) == layer.services.get(REDIS_SERVICE);
    let exporter_changed = exporter_password_changed
        || plan.services.get(crate::health::EXPORTER_SERVICE)
            != layer.services.get(crate::health::EXPORTER_SERVICE);
    let running = planned
        && pebble
            .services(&[REDIS_SERVICE])
            .map(|s| s.iter().any(|i| i.is_running()))
            .unwrap_or(false);
    // A new check or exporter definition is added without touching a running Redis (only a
    // replan would restart it, and only when its own service changed).
    if !crate::workload::layer_applied(&plan, &layer) {
        if let Err(e) = pebble.add_layer(REDIS_SERVICE, &layer, true) {
            return Ok(pebble_outcome(REDIS_CONTAINER, &e));
        }
    }
    if running {
        let repointed = follow_primary_at_runtime(&topo, replicaof);
        apply_min_replicas(&topo, min_replicas);
        crate::health::ensure_exporter(&*pebble, exporter_changed);
        drop(pebble);
        record_replica_link(fw, &topo, repointed)?;
        return Ok(Outcome::Done);
    }
    if let Err(e) = pebble.replan(REPLAN_TIMEOUT) {
        return Ok(pebble_outcome(REDIS_CONTAINER, &e));
    }
    crate::health::ensure_exporter(&*pebble, exporter_changed);
    drop(pebble);
    if replicaof.is_none() && alone && replica_matters && !again {
        // A fresh primary whose replicas started first: they connect within a second. Once
        // one is in sync, render and apply min-replicas again rather than wait for the next
        // hook (none may come before update-status).
        if peer_follows_us(fw, &topo)? && wait_online_replica(&topo, LINK_CONNECT_WAIT) {
            return converge_pass(charm, fw, true);
        }
    }
    record_replica_link(fw, &topo, true)?;
    Ok(Outcome::Done)
}

/// The remote unit of this peer `-relation-changed` says its link to us is up.
fn event_announces_replica(
    fw: &Framework<'_>,
    topo: &crate::charm::Topology,
) -> Result<bool, HandlerError> {
    let Some(rel) = fw.ctx.relation.as_ref() else {
        return Ok(false);
    };
    let (Some(id), Some(remote)) = (topo.peer_relation, rel.remote_unit.as_deref()) else {
        return Ok(false);
    };
    if rel.id != id {
        return Ok(false);
    }
    let bag = fw.model().relation_data(id, remote, false)?;
    Ok(bag
        .get(KEY_REPLICA_LINK)
        .and_then(|v| ReplicaLink::parse(v))
        .is_some_and(|l| l.up && l.primary == topo.fqdn))
}

/// Some peer unit's databag says it replicates (or tries to) from us.
fn peer_follows_us(
    fw: &Framework<'_>,
    topo: &crate::charm::Topology,
) -> Result<bool, HandlerError> {
    let Some(id) = topo.peer_relation else {
        return Ok(false);
    };
    for unit in fw.model().relation_units(id)? {
        let bag = fw.model().relation_data(id, &unit, false)?;
        let link = bag
            .get(KEY_REPLICA_LINK)
            .and_then(|v| ReplicaLink::parse(v));
        if link.is_some_and(|l| l.primary == topo.fqdn) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Poll our own Redis every 100 ms until it is a primary with a replica `state=online`: for
/// at most `connect` while no replica is syncing, and up to [`LINK_SYNC_WAIT`] while one is
/// (`wait_bgsave`, `send_bulk`). False at once when Redis does not answer.
fn wait_online_replica(topo: &crate::charm::Topology, connect: Duration) -> bool {
    let start = Instant::now();
    let Ok(mut c) = RedisConn::connect(&own_address(topo), REDIS_PORT, topo.peer.admin_password())
    else {
        return false;
    };
    loop {
        let info = match c.info("replication") {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read replication state");
                return false;
            }
        };
        if has_online_replica(&info) {
            return true;
        }
        let syncing = info.get("role").map(String::as_str) == Some("master")
            && info.iter().any(|(k, v)| {
                k.starts_with("slave") && v.contains("state=") && !v.contains("state=online")
            });
        let limit = if syncing { LINK_SYNC_WAIT } else { connect };
        if start.elapsed() >= limit {
            if syncing || !connect.is_zero() {
                tracing::info!("no replica in sync yet; min-replicas stays off for now");
            }
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_online_replica(info: &std::collections::BTreeMap<String, String>) -> bool {
    info.get("role").map(String::as_str) == Some("master")
        && info
            .iter()
            .any(|(k, v)| k.starts_with("slave") && v.contains("state=online"))
}

/// Record this unit's replication link in its peer unit databag ([`KEY_REPLICA_LINK`]) when
/// it changed: `up` once a replica is in sync, which fires `-relation-changed` on the
/// primary's unit so it turns min-replicas on at once. `wait`: Redis was just started or
/// re-pointed, so give it [`LINK_CONNECT_WAIT`] to connect and [`LINK_SYNC_WAIT`] to finish
/// an initial sync first. A primary clears the key. Nothing is written when Redis cannot be
/// asked.
pub fn record_replica_link(
    fw: &Framework<'_>,
    topo: &crate::charm::Topology,
    wait: bool,
) -> HandlerResult {
    let Some(id) = topo.peer_relation else {
        return Ok(());
    };
    let start = Instant::now();
    let (connect, sync) = if wait {
        (LINK_CONNECT_WAIT, LINK_SYNC_WAIT)
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    let observed = RedisConn::connect(&own_address(topo), REDIS_PORT, topo.peer.admin_password())
        .and_then(|mut c| {
            let run_id = c.info("server")?.get("run_id").cloned().unwrap_or_default();
            loop {
                let info = c.info("replication")?;
                if info.get("role").map(String::as_str) != Some("slave") {
                    return Ok(None);
                }
                let up = info.get("master_link_status").map(String::as_str) == Some("up");
                // A first sync is under way also while `master_sync_in_progress` is still 0:
                // during the primary's `repl-diskless-sync-delay` (5 s) the replica waits for
                // the `+FULLRESYNC` answer, and INFO only shows that it has never had a link
                // since it started (`master_link_down_since_seconds:-1`). Giving up after the
                // short connect wait then recorded `down` with no later hook to correct it,
                // so min-replicas stayed off until update-status.
                let syncing = info.get("master_sync_in_progress").map(String::as_str) == Some("1")
                    || info
                        .get("master_link_down_since_seconds")
                        .map(String::as_str)
                        == Some("-1");
                if up || start.elapsed() >= if syncing { sync } else { connect } {
                    return Ok(Some(ReplicaLink {
                        up,
                        primary: info.get("master_host").cloned().unwrap_or_default(),
                        run_id,
                    }));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    let value = match observed {
        Ok(Some(link)) if !link.primary.is_empty() && !link.run_id.is_empty() => link.to_value(),
        Ok(Some(_)) => return Ok(()),
        Ok(None) => String::new(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the replication link");
            return Ok(());
        }
    };
    let changes = std::collections::BTreeMap::from([(KEY_REPLICA_LINK.to_string(), value)]);
    if fw.model().update_relation_data(id, false, &changes)? {
        tracing::info!(link = %changes[KEY_REPLICA_LINK], "recorded the replication link");
    }
    Ok(())
}

/// Where Redis keeps its data. The storage mount `/var/lib/redis` is used directly when
/// it belongs to redis (the image's directory, or a deployment refreshed from the Python
/// charm, which chowned it); a fresh volume is root-owned and Pebble cannot chown an existing
/// directory, so then Redis gets `/var/lib/redis/data`, created owned by redis.
pub fn data_dir(pebble: &dyn Pebble) -> Result<String, PebbleError> {
    let top = pebble
        .list_files(DATA_DIR, None, true)
        .ok()
        .and_then(|v| v.into_iter().next());
    if top.as_ref().and_then(|f| f.user.as_deref()) == Some(REDIS_USER) {
        return Ok(DATA_DIR.to_string());
    }
    let sub = format!("{DATA_DIR}/data");
    pebble.make_dir(&sub, &crate::workload::redis_dir(0o770))?;
    Ok(sub)
}

/// A running replica that should follow another primary does so by `REPLICAOF`, without a
/// restart (the config file pushed above keeps the role across restarts). Returns whether
/// it re-pointed Redis (a new initial sync is under way).
fn follow_primary_at_runtime(topo: &crate::charm::Topology, replicaof: Option<&str>) -> bool {
    let Some(primary) = replicaof else {
        return false;
    };
    let host = own_address(topo);
    let result =
        RedisConn::connect(&host, REDIS_PORT, topo.peer.admin_password()).and_then(|mut c| {
            let info = c.info("replication")?;
            let following = info.get("master_host").map(String::as_str);
            if info.get("role").map(String::as_str) == Some("master") || following != Some(primary)
            {
                c.command(&["REPLICAOF", primary, &REDIS_PORT.to_string()])?;
                tracing::info!(%primary, "now replicating from the primary");
                return Ok(true);
            }
            Ok(false)
        });
    result.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "could not check replication role");
        false
    })
}

/// Whether our own Redis is a primary with no replica in sync (`state=online`), or is not
/// running (a first start: it has no replica yet either).
fn primary_without_replica(topo: &crate::charm::Topology) -> bool {
    RedisConn::connect(&own_address(topo), REDIS_PORT, topo.peer.admin_password())
        .and_then(|mut c| c.info("replication"))
        .map(|info| {
            info.get("role").map(String::as_str) == Some("master") && !has_online_replica(&info)
        })
        .unwrap_or(true)
}

/// update-status: bring the running Redis's min-replicas settings up to date, and record a
/// replica's link ([`record_replica_link`]); the fallback of the event-driven path (a
/// replica's link record wakes the primary's unit). Config errors are reported elsewhere.
pub fn refresh_min_replicas(charm: &mut RedisK8sCharm, fw: &Framework<'_>) -> HandlerResult {
    let Ok(cfg) = charm.config(fw).cloned() else {
        return Ok(());
    };
    let topo = charm.topology(fw)?.clone();
    if !topo.peer.is_populated() {
        return Ok(());
    }
    let alone = primary_without_replica(&topo);
    let to_write = cfg.min_replicas_to_write(fw.model().planned_units()?, alone);
    apply_min_replicas(&topo, (to_write, cfg.min_replicas_max_lag));
    // A replica's link may have come up or gone down since its last hook.
    record_replica_link(fw, &topo, false)
}

/// Apply `min-replicas-to-write` / `min-replicas-max-lag` to the running Redis when they
/// differ (the rendered file holds them for the next start); no restart needed.
fn apply_min_replicas(topo: &crate::charm::Topology, (to_write, max_lag): (u64, u64)) {
    let host = own_address(topo);
    let result =
        RedisConn::connect(&host, REDIS_PORT, topo.peer.admin_password()).and_then(|mut c| {
            for (name, want) in [
                ("min-replicas-to-write", to_write),
                ("min-replicas-max-lag", max_lag),
            ] {
                let current =
                    crate::redis_client::value_to_map(&c.command(&["CONFIG", "GET", name])?);
                if current.get(name).map(String::as_str) != Some(want.to_string().as_str()) {
                    c.command(&["CONFIG", "SET", name, &want.to_string()])?;
                    tracing::info!(option = name, value = want, "applied at runtime");
                }
            }
            Ok(())
        });
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not apply min-replicas settings");
    }
}

/// update-status: is Redis answering (and are its checks up)? The role and replication
/// state go into the active message at collect-status ([`crate::health`]).
pub fn health(charm: &mut RedisK8sCharm, fw: &mut Framework<'_>) -> Result<Outcome, HandlerError> {
    crate::health::assess(charm, fw)
}
