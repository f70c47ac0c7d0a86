//! The redis container: `redis.conf`, the `redis` layer, and the unit's replication role.

use serde::Serialize;

use crate::charm::{own_address, Outcome, RedisK8sCharm};
use crate::literals::*;
use crate::ops::framework::{EventHandle, Framework, HandlerError, HandlerResult};
use crate::ops::pebble::{Layer, Pebble, PebbleError};
use crate::redis_client::RedisConn;
use crate::sentinel::{current_primary, pebble_outcome, write_config};
use crate::templates;

/// The `redis` layer: Redis (the command names only the config file; passwords stay in
/// it), its health check and the metrics exporter, for a Redis reachable at `host` (our own
/// address). Nothing secret goes in.
pub fn redis_layer(host: &str) -> Layer {
    let mut layer = crate::workload::redis_user_layer(
        REDIS_SERVICE,
        "Redis",
        format!("redis-server {REDIS_CONFIG_PATH}"),
    );
    layer.checks.insert(
        crate::health::REDIS_CHECK.into(),
        crate::workload::server_check(host, REDIS_PORT),
    );
    layer.services.insert(
        crate::health::EXPORTER_SERVICE.into(),
        crate::health::exporter_service(host),
    );
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

/// Make the redis container run Redis with the right config and role.
pub fn converge(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
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
    let min_replicas = (
        cfg.min_replicas_to_write(
            fw.model().planned_units()?,
            replicaof.is_none() && primary_without_replica(&topo),
        ),
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
        },
    )?;
    let log_dir = pebble.make_dir(LOG_DIR, &crate::workload::redis_dir(0o770));
    if let Err(e) = log_dir {
        return Ok(pebble_outcome(REDIS_CONTAINER, &e));
    }
    if let Err(e) = write_config(&*pebble, REDIS_CONFIG_PATH, &rendered) {
        return Ok(pebble_outcome(REDIS_CONTAINER, &e));
    }
    let host = own_address(&topo);
    let exporter_password =
        crate::health::push_exporter_password(&*pebble, &host, topo.peer.admin_password());
    let exporter_password_changed = match exporter_password {
        Ok(changed) => changed,
        Err(e) => return Ok(pebble_outcome(REDIS_CONTAINER, &e)),
    };
    let layer = redis_layer(&host);
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
        follow_primary_at_runtime(&topo, replicaof);
        apply_min_replicas(&topo, min_replicas);
        crate::health::ensure_exporter(&*pebble, exporter_changed);
        return Ok(Outcome::Done);
    }
    if let Err(e) = pebble.replan(REPLAN_TIMEOUT) {
        return Ok(pebble_outcome(REDIS_CONTAINER, &e));
    }
    crate::health::ensure_exporter(&*pebble, exporter_changed);
    Ok(Outcome::Done)
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
/// restart (the config file pushed above keeps the role across restarts).
fn follow_primary_at_runtime(topo: &crate::charm::Topology, replicaof: Option<&str>) {
    let Some(primary) = replicaof else { return };
    let host = own_address(topo);
    let result =
        RedisConn::connect(&host, REDIS_PORT, topo.peer.admin_password()).and_then(|mut c| {
            let info = c.info("replication")?;
            let following = info.get("master_host").map(String::as_str);
            if info.get("role").map(String::as_str) == Some("master") || following != Some(primary)
            {
                c.command(&["REPLICAOF", primary, &REDIS_PORT.to_string()])?;
                tracing::info!(%primary, "now replicating from the primary");
            }
            Ok(())
        });
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not check replication role");
    }
}

/// Whether our own Redis is a primary with no replica in sync (`state=online`), or is not
/// running (a first start: it has no replica yet either).
fn primary_without_replica(topo: &crate::charm::Topology) -> bool {
    RedisConn::connect(&own_address(topo), REDIS_PORT, topo.peer.admin_password())
        .and_then(|mut c| c.info("replication"))
        .map(|info| {
            info.get("role").map(String::as_str) == Some("master")
                && !info
                    .iter()
                    .any(|(k, v)| k.starts_with("slave") && v.contains("state=online"))
        })
        .unwrap_or(true)
}

/// update-status: bring the running Redis's min-replicas settings up to date (the automatic
/// value turns on once a fresh primary has a replica in sync). Config errors are reported
/// elsewhere.
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
    Ok(())
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
