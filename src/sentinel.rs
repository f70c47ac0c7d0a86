//! The `Sentinel` object (handle `RedisK8sCharm/Sentinel[sentinel]`): the sentinel
//! container's layer and `sentinel.conf`, quorum, and the charm's questions to Sentinel.
//!
//! Follows the seed tutorial's path (can-connect → databag → render → push → layer → replan,
//! deferring when it cannot finish) with two fixes: the hostname options precede
//! `sentinel monitor` (a real sentinel rejects a hostname primary otherwise), and once
//! sentinel runs the charm no longer overwrites the file sentinel rewrites itself.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::charm::{own_address, Outcome, RedisK8sCharm};
use crate::literals::*;
use crate::ops::framework::{EventHandle, Framework, HandlerError, HandlerResult};
use crate::ops::pebble::{Layer, MakeDirOptions, Pebble, PebbleError, PushOptions, Service};
use crate::primary::{ask_sentinels, SentinelView};
use crate::redis_client::{RedisCallError, RedisConn};
use crate::templates;

/// Marker for the Sentinel object; its state lives in the framework.
#[derive(Debug, Default)]
pub struct Sentinel;

impl Sentinel {
    /// floor(planned units / 2) + 1, as the Python charm.
    pub fn expected_quorum(planned_units: usize) -> usize {
        planned_units / 2 + 1
    }

    /// `SENTINEL CKQUORUM <name>` on a sentinel: can it reach a majority?
    pub fn in_majority(host: &str, password: &str, name: &str) -> Result<bool, RedisCallError> {
        RedisConn::connect(host, SENTINEL_PORT, Some(password))?.sentinel_ckquorum(name)
    }

    /// `SENTINEL MASTER <name>` as a map (`ip`, `port`, `flags`, `num-slaves`, `quorum`, ...).
    pub fn master_info(
        host: &str,
        password: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, RedisCallError> {
        RedisConn::connect(host, SENTINEL_PORT, Some(password))?.sentinel_master(name)
    }
}

/// The `sentinel` layer: no secrets, only the config file path.
pub fn sentinel_layer() -> Layer {
    let mut layer = Layer {
        summary: Some("Sentinel layer".into()),
        description: Some("Sentinel layer".into()),
        ..Layer::default()
    };
    layer.services.insert(
        SENTINEL_SERVICE.into(),
        Service {
            r#override: Some("replace".into()),
            summary: Some("Sentinel service".into()),
            command: Some(format!("redis-server {SENTINEL_CONFIG_PATH} --sentinel")),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            startup: Some("enabled".into()),
            ..Service::default()
        },
    );
    layer
}

/// Template inputs of `sentinel.conf.j2`.
#[derive(Serialize)]
pub struct SentinelConfig<'a> {
    pub hostname: &'a str,
    pub bind: &'a str,
    pub master_name: &'a str,
    pub sentinel_port: u16,
    pub redis_master: &'a str,
    pub redis_port: u16,
    pub quorum: usize,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    pub master_password: Option<&'a str>,
    pub sentinel_password: &'a str,
    pub log_level: &'a str,
}

/// `sentinel_pebble_ready`: converge; defer when it could not finish.
pub fn on_pebble_ready(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    ev: &mut EventHandle,
) -> HandlerResult {
    let outcome = converge(charm, fw)?;
    if charm.report(outcome) {
        ev.defer();
    }
    Ok(())
}

/// A Pebble failure as a waiting outcome (logged; never a panic or a traceback).
pub fn pebble_outcome(container: &str, e: &PebbleError) -> Outcome {
    tracing::warn!(%container, error = %e, "Pebble request failed");
    if e.is_connection() {
        Outcome::Waiting(format!("Waiting for Pebble in {container} container"))
    } else if matches!(e, PebbleError::ChangeFailed { .. }) {
        Outcome::Waiting(format!(
            "{container} service failed to start; see the unit log"
        ))
    } else {
        Outcome::Waiting(format!(
            "Pebble in {container} container refused a request; see the unit log"
        ))
    }
}

/// The primary this unit should follow: the other units' sentinels if a majority of those
/// that answer agree, else the recorded `leader-host`. `None` while they disagree.
pub fn current_primary(
    charm: &mut RedisK8sCharm,
    fw: &Framework<'_>,
) -> Result<Option<String>, HandlerError> {
    let topo = charm.topology(fw)?.clone();
    let recorded = topo.peer.leader_host.clone();
    let Some(password) = topo.peer.sentinel_password.as_deref() else {
        return Ok(recorded);
    };
    if topo.peer_fqdns.is_empty() {
        return Ok(recorded);
    }
    Ok(
        match ask_sentinels(&topo.peer_fqdns, &fw.ctx.app_name, password) {
            SentinelView::Agreed(host) => Some(host),
            SentinelView::Unreachable => recorded,
            SentinelView::Disagree(votes) => {
                tracing::warn!(?votes, "sentinels disagree about the primary");
                None
            }
        },
    )
}

/// Make the sentinel container run sentinel with the right config.
pub fn converge(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
) -> Result<Outcome, HandlerError> {
    let cfg = match charm.config(fw) {
        Ok(c) => c.clone(),
        Err(e) => return Ok(Outcome::Blocked(e.to_string())),
    };
    let pebble = fw.container(SENTINEL_CONTAINER);
    if let Err(e) = pebble.system_info() {
        tracing::debug!(error = %e, "sentinel Pebble not reachable");
        return Ok(Outcome::Waiting(
            "Waiting for Pebble in sentinel container".into(),
        ));
    }
    let topo = charm.topology(fw)?.clone();
    if !topo.peer.is_populated() {
        return Ok(Outcome::Waiting("Databag has not been populated".into()));
    }
    let layer = sentinel_layer();
    let plan = match pebble.get_plan() {
        Ok(p) => p,
        Err(e) => return Ok(pebble_outcome(SENTINEL_CONTAINER, &e)),
    };
    let planned = plan.services.get(SENTINEL_SERVICE) == layer.services.get(SENTINEL_SERVICE);
    if planned {
        let running = pebble
            .services(&[SENTINEL_SERVICE])
            .map(|s| s.iter().any(|i| i.is_running()))
            .unwrap_or(false);
        if running {
            // Sentinel owns its config file now (it rewrites it); keep quorum current at runtime.
            keep_quorum_current(fw, &topo, fw.model().planned_units()?);
            return Ok(Outcome::Done);
        }
    }
    let Some(primary) = current_primary(charm, fw)? else {
        return Ok(Outcome::Waiting("Failover in progress".into()));
    };
    let quorum = Sentinel::expected_quorum(fw.model().planned_units()?);
    let rendered = templates::render(
        &fw.ctx.charm_dir,
        "sentinel.conf",
        SentinelConfig {
            hostname: &topo.fqdn,
            bind: &topo.bind,
            master_name: &fw.ctx.app_name,
            sentinel_port: SENTINEL_PORT,
            redis_master: &primary,
            redis_port: REDIS_PORT,
            quorum,
            down_after_ms: cfg.down_after_ms,
            failover_timeout_ms: cfg.failover_timeout_ms,
            master_password: topo.peer.admin_password(),
            sentinel_password: topo.peer.sentinel_password.as_deref().unwrap_or_default(),
            log_level: cfg.log_level.as_str(),
        },
    )?;
    if let Err(e) = write_config(&*pebble, SENTINEL_CONFIG_PATH, &rendered) {
        return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
    }
    if !planned {
        if let Err(e) = pebble.add_layer(SENTINEL_SERVICE, &layer, true) {
            return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
        }
    }
    if let Err(e) = pebble.replan(REPLAN_TIMEOUT) {
        return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
    }
    Ok(Outcome::Done)
}

/// Create `/etc/redis-server` (0750, redis) and push a config file (0600, redis): the file
/// holds passwords, so nobody but redis reads it.
pub fn write_config(pebble: &dyn Pebble, path: &str, content: &str) -> Result<(), PebbleError> {
    pebble.make_dir(
        CONFIG_DIR,
        &MakeDirOptions {
            make_parents: true,
            permissions: Some(0o750),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            ..MakeDirOptions::default()
        },
    )?;
    pebble.push(
        path,
        content.as_bytes(),
        &PushOptions {
            permissions: Some(0o600),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            ..PushOptions::default()
        },
    )
}

/// `SENTINEL SET <app> quorum N` on our own sentinel when it differs.
fn keep_quorum_current(fw: &Framework<'_>, topo: &crate::charm::Topology, planned: usize) {
    let Some(password) = topo.peer.sentinel_password.as_deref() else {
        return;
    };
    let want = Sentinel::expected_quorum(planned).to_string();
    let host = own_address(topo);
    let app = &fw.ctx.app_name;
    let result = RedisConn::connect(&host, SENTINEL_PORT, Some(password)).and_then(|mut c| {
        let info = c.sentinel_master(app)?;
        if info.get("quorum") != Some(&want) {
            c.command(&["SENTINEL", "SET", app, "quorum", &want])?;
            tracing::info!(quorum = %want, "updated sentinel quorum");
        }
        Ok(())
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not check sentinel quorum");
    }
}

/// Leader: record the primary that our sentinel reports in `leader-host` (peer app data),
/// unless sentinel reports it down or a failover is running.
pub fn refresh_leader_host(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
) -> Result<(), HandlerError> {
    let topo = charm.topology(fw)?.clone();
    let (Some(rel), Some(password)) = (topo.peer_relation, topo.peer.sentinel_password.as_deref())
    else {
        return Ok(());
    };
    let info = match Sentinel::master_info(&own_address(&topo), password, &fw.ctx.app_name) {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "local sentinel not answering; keeping leader-host");
            return Ok(());
        }
    };
    let flags = info.get("flags").cloned().unwrap_or_default();
    if flags.contains("s_down")
        || flags.contains("o_down")
        || flags.contains("failover_in_progress")
    {
        tracing::info!(%flags, "primary not settled; keeping leader-host");
        return Ok(());
    }
    let Some(ip) = info.get("ip").filter(|h| crate::peers::is_hostname(h)) else {
        return Ok(());
    };
    if topo.peer.leader_host.as_deref() != Some(ip.as_str()) {
        let mut changes = BTreeMap::new();
        changes.insert(KEY_LEADER_HOST.to_string(), ip.clone());
        fw.model().update_relation_data(rel, true, &changes)?;
        tracing::info!(primary = %ip, "primary changed; updated leader-host");
        charm.invalidate_topology();
    }
    Ok(())
}
