//! The `Sentinel` object (handle `RedisK8sCharm/Sentinel[sentinel]`): the sentinel
//! container's layer and `sentinel.conf`, quorum, and the charm's questions to Sentinel.
//!
//! Follows the seed tutorial's path (can-connect → databag → render → push → layer → replan,
//! deferring when it cannot finish) with two fixes: the hostname options precede
//! `sentinel monitor` (a real sentinel rejects a hostname primary otherwise), and once
//! sentinel runs the charm no longer overwrites the file sentinel rewrites itself.
//!
//! # Event-driven primary tracking
//! `sentinel.conf` names a `client-reconfig-script` ([`NOTIFY_PRIMARY_SCRIPT_PATH`], pushed
//! with the config) that Sentinel runs on every sentinel after a switch of primary. It records
//! the Pebble custom notice [`PRIMARY_CHANGED_NOTICE`]; Juju turns it into a
//! `sentinel-pebble-custom-notice` hook, where [`on_custom_notice`] makes the leader update
//! `leader-host` in the peer and client relation data at once, instead of at the next
//! update-status.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::charm::{own_address, Outcome, RedisK8sCharm};
use crate::client_relation;
use crate::literals::*;
use crate::ops::framework::{EventHandle, Framework, HandlerError, HandlerResult};
use crate::ops::pebble::{Layer, Pebble, PebbleError, PushOptions};
use crate::primary::{ask_sentinels, SentinelView};
use crate::redis_client::{value_to_string, RedisCallError, RedisConn};
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

/// The `sentinel` layer: no secrets, only the config file path; and the health check of
/// the sentinel at `host` (our own address).
pub fn sentinel_layer(host: &str) -> Layer {
    sentinel_layer_tls(host, None)
}

/// [`sentinel_layer`] with TLS on when `tls` is given ([`crate::tls`]): the service carries
/// the certificate fingerprint (turning TLS on or off restarts Sentinel with a fresh
/// config) and the check speaks TLS.
pub fn sentinel_layer_tls(host: &str, tls: Option<&crate::tls::TlsMaterial>) -> Layer {
    let mut layer = crate::workload::redis_user_layer(
        SENTINEL_SERVICE,
        "Sentinel",
        format!("redis-server {SENTINEL_CONFIG_PATH} --sentinel"),
    );
    if let Some(s) = layer.services.get_mut(SENTINEL_SERVICE) {
        crate::tls::mark_service(s, tls);
    }
    let check = crate::workload::server_check(host, SENTINEL_PORT);
    let check = match tls {
        Some(_) => crate::tls::tls_check(check, &crate::tls::SENTINEL_TLS_PATHS),
        None => check,
    };
    layer
        .checks
        .insert(crate::health::SENTINEL_CHECK.into(), check);
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

/// What the charm renders `sentinel.conf.j2` with: the template inputs plus the
/// `client-reconfig-script` path (optional in the template, so the file can be rendered for a
/// sentinel that has no script installed).
#[derive(Serialize)]
struct SentinelConfFile<'a> {
    #[serde(flatten)]
    config: SentinelConfig<'a>,
    client_reconfig_script: &'a str,
    /// SHA-256 of every password Sentinel's `default` user accepts (two during a rotation).
    sentinel_hashes: Vec<String>,
    /// `sentinel myid` and the `known-replica` / `known-sentinel` lines.
    #[serde(flatten)]
    peers: KnownPeers,
    /// The TLS files in the sentinel container when TLS is on ([`crate::tls`]).
    tls: Option<crate::tls::TlsPaths>,
}

/// What a freshly started sentinel is told about its peers, so it can fail over at once.
///
/// A sentinel started with only `sentinel monitor` learns the replicas from the primary's
/// `INFO` (every 10 s) and the other sentinels from their hello messages on the primary
/// (every 2 s). A primary that dies before that leaves it unable to reach `ODOWN` (it knows
/// no other sentinel to ask) or to pick a replica, and the failover waits for the primary's
/// return. So the charm names them in `sentinel.conf`: `known-replica` for every unit that is
/// not the primary, and `known-sentinel` for every other unit with that unit's run id, which
/// it can name because every sentinel's `myid` is derived from its unit ([`sentinel_id`]).
/// A sentinel whose pod is replaced keeps its id, so the others never collect stale
/// entries for it (which would count as voters that never vote). Redis 7.0.15 accepts a
/// known peer whose name does not resolve yet and keeps retrying it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KnownPeers {
    /// This sentinel's run id (40 hex digits).
    pub myid: String,
    /// Host names of the primary's replicas.
    pub known_replicas: Vec<String>,
    /// The other sentinels.
    pub known_sentinels: Vec<KnownSentinel>,
}

/// Another sentinel: its host name, port and run id (a unit's sentinel on
/// [`SENTINEL_PORT`], the two-unit witness on [`crate::witness::WITNESS_PORT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownSentinel {
    pub host: String,
    pub port: u16,
    pub id: String,
}

impl KnownPeers {
    /// The peers of `own_unit` among `units` (every unit of the app, ours included) when
    /// `primary` is the primary's host; `fqdn` names a unit's pod.
    pub fn new(
        model: &str,
        own_unit: &str,
        units: &[String],
        primary: &str,
        fqdn: impl Fn(&str) -> String,
    ) -> KnownPeers {
        let mut known_replicas = Vec::new();
        let mut known_sentinels = Vec::new();
        let mut names: Vec<&str> = units.iter().map(String::as_str).collect();
        if !names.contains(&own_unit) {
            names.push(own_unit);
        }
        names.sort_by_key(|u| unit_number(u));
        names.dedup();
        for unit in names {
            let host = fqdn(unit);
            if host != primary {
                known_replicas.push(host.clone());
            }
            if unit != own_unit {
                known_sentinels.push(KnownSentinel {
                    host,
                    port: SENTINEL_PORT,
                    id: sentinel_id(model, unit),
                });
            }
        }
        KnownPeers {
            myid: sentinel_id(model, own_unit),
            known_replicas,
            known_sentinels,
        }
    }
}

fn unit_number(unit: &str) -> u64 {
    unit.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The run id of `unit`'s sentinel in `model`: SHA-1 of `<model>/<unit>` in hex (Sentinel
/// wants 40 hex digits). Deterministic, so peers can name it in `known-sentinel` lines.
/// SHA-1 only derives an identifier here, nothing secret; the digest is `ring`'s (legacy
/// SHA-1 kept exactly for uses like this), and the value must never change: deployed
/// sentinels are known to each other by it.
pub fn sentinel_id(model: &str, unit: &str) -> String {
    ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{model}/{unit}").as_bytes(),
    )
    .as_ref()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect()
}

/// The `client-reconfig-script` (POSIX sh). Sentinel runs it as `redis` with
/// `<master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>` on every sentinel
/// after a switch of primary. It records [`PRIMARY_CHANGED_NOTICE`] (with the new primary as
/// `to`) through the pebble binary Juju mounts into every workload container, and always exits
/// 0: Sentinel retries a failing script, and a retry would not fix a missing Pebble.
pub fn notify_primary_script() -> String {
    format!(
        r#"#!/bin/sh
# Installed by the redis-k8s charm as Sentinel's client-reconfig-script. Sentinel runs it
# after every switch of primary with:
#   <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>
# It records a Pebble custom notice so the charm updates the relation data at once.
# It always exits 0: Sentinel retries a script that fails.
PEBBLE_SOCKET="${{PEBBLE_SOCKET:-/charm/container/pebble.socket}}"
export PEBBLE_SOCKET
pebble="${{PEBBLE_BIN:-{bin}}}"
if [ -n "$6" ]; then
    "$pebble" notify {key} "to=$6" >/dev/null || :
else
    "$pebble" notify {key} >/dev/null || :
fi
exit 0
"#,
        bin = CHARM_PEBBLE_BIN,
        key = PRIMARY_CHANGED_NOTICE,
    )
}

/// Push [`notify_primary_script`] to [`NOTIFY_PRIMARY_SCRIPT_PATH`] (0750, redis: Sentinel
/// runs it as redis and refuses a script it cannot execute). The config dir must exist.
pub fn push_notify_script(pebble: &dyn Pebble) -> Result<(), PebbleError> {
    pebble.push(
        NOTIFY_PRIMARY_SCRIPT_PATH,
        notify_primary_script().as_bytes(),
        &PushOptions {
            permissions: Some(0o750),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            ..PushOptions::default()
        },
    )
}

/// `sentinel_pebble_custom_notice`: on [`PRIMARY_CHANGED_NOTICE`] (Sentinel switched the
/// primary) the leader records the new primary in the peer and client relation data at once,
/// and every unit converges its Redis role (a replica follows by `REPLICAOF` at runtime).
/// Other notice keys are ignored.
///
/// Juju version: the notice is recorded by the `redis` user (Sentinel runs the script).
/// Juju delivers notices of non-root users only from 3.6.25 / 4.0.13
/// ([`crate::ops::context::JujuVersion::notices_from_all_users`]); the charm assumes only
/// `juju >= 3.4` (custom notices), so on older Juju this hook never comes and the leader
/// catches up at update-status (`RedisK8sCharm::on_update_status`), the fallback that also
/// covers a lost notice.
pub fn on_custom_notice(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    ev: &mut EventHandle,
) -> HandlerResult {
    if ev.notice_key() != Some(PRIMARY_CHANGED_NOTICE) {
        tracing::debug!(key = ?ev.notice_key(), "ignoring custom notice");
        return Ok(());
    }
    if charm.config(fw).is_err() {
        return Ok(());
    }
    if fw.model().is_leader()? {
        refresh_leader_host(charm, fw)?;
        client_relation::publish(charm, fw)?;
    }
    match crate::redis_server::converge(charm, fw)? {
        // The status says the role right away (a health answer never defers the event).
        Outcome::Done => {
            let health = crate::redis_server::health(charm, fw)?;
            charm.report(health);
        }
        other => {
            if charm.report(other) {
                ev.defer();
            }
        }
    }
    Ok(())
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

/// Is this dispatch the pebble-ready of `container`? Then its Pebble is known to be up.
/// (A deferred pebble-ready re-run in another hook still checks.)
pub fn is_ready_event_of(fw: &Framework<'_>, container: &str) -> bool {
    matches!(&fw.ctx.event, crate::ops::context::Event::PebbleReady { container: c } if c == container)
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
    // Two units: the witness votes too (see crate::witness::ask_with_witness).
    let view = if fw.model().planned_units()? == crate::witness::WITNESS_UNITS {
        crate::witness::ask_with_witness(&topo, &fw.ctx.app_name, password)
    } else {
        ask_sentinels(&topo.peer_fqdns, &fw.ctx.app_name, password)
    };
    Ok(match view {
        SentinelView::Agreed(host) => Some(host),
        // No other sentinel answers: the other pods are gone (and, with two units, the
        // witness on this pod was just stopped because this unit became primary). Our own
        // sentinel's view then beats the recorded `leader-host`, which the leader may not
        // have been alive to update: following the record here once demoted a primary that
        // Sentinel had promoted a second earlier back to a replica of the dead pod. A fresh
        // pod's own sentinel starts from the recorded primary (or is not running yet), so a
        // restarted unit still follows the record.
        SentinelView::Unreachable => {
            match crate::primary::ask_sentinels(&[own_address(&topo)], &fw.ctx.app_name, password) {
                SentinelView::Agreed(host) => Some(host),
                _ => recorded,
            }
        }
        SentinelView::Disagree(votes) => {
            tracing::warn!(?votes, "sentinels disagree about the primary");
            None
        }
    })
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
    let known_up = is_ready_event_of(fw, SENTINEL_CONTAINER);
    if let Err(e) = (!known_up).then(|| pebble.system_info()).transpose() {
        tracing::debug!(error = %e, "sentinel Pebble not reachable");
        return Ok(Outcome::Waiting(
            "Waiting for Pebble in sentinel container".into(),
        ));
    }
    let topo = charm.topology(fw)?.clone();
    if !topo.peer.is_populated() {
        return Ok(Outcome::Waiting(
            topo.peer.waiting_message("Databag has not been populated"),
        ));
    }
    let layer = sentinel_layer_tls(&own_address(&topo), cfg.tls.as_ref());
    // Sentinel needs the files too (its own port and its links are TLS).
    if let Some(tls) = cfg.tls.as_ref() {
        if let Err(e) = crate::tls::push(&*pebble, &crate::tls::SENTINEL_TLS_PATHS, tls) {
            return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
        }
    }
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
            // A new or changed check only: add it without touching the running sentinel.
            if !crate::workload::layer_applied(&plan, &layer) {
                if let Err(e) = pebble.add_layer(SENTINEL_SERVICE, &layer, true) {
                    return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
                }
            }
            // Sentinel owns its config file now (it rewrites it); keep its settings current
            // at runtime. (The peer lines need no update: a running sentinel learns new
            // replicas from INFO and new sentinels from their hellos.)
            keep_runtime_settings(fw, &topo, fw.model().planned_units()?, &cfg);
            return Ok(Outcome::Done);
        }
    }
    let Some(primary) = current_primary(charm, fw)? else {
        return Ok(Outcome::Waiting("Failover in progress".into()));
    };
    let quorum = Sentinel::expected_quorum(fw.model().planned_units()?);
    if !fw.ctx.version.notices_from_all_users() {
        tracing::info!(
            juju = %fw.ctx.version,
            "Juju before 3.6.25 does not deliver Sentinel's notices; leader-host follows a \
             failover at update-status"
        );
    }
    let mut peers = known_peers(fw, &topo, &primary, &cfg.cluster_domain)?;
    crate::witness::add_known_witness(fw, &mut peers, &primary, &cfg.cluster_domain)?;
    let rendered = render_conf(fw, &topo, &cfg, &primary, SENTINEL_PORT, quorum, peers)?;
    if let Err(e) = write_config(&*pebble, SENTINEL_CONFIG_PATH, &rendered) {
        return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
    }
    // Before sentinel starts: it refuses a config whose script is missing.
    if let Err(e) = push_notify_script(&*pebble) {
        return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
    }
    if !crate::workload::layer_applied(&plan, &layer) {
        if let Err(e) = pebble.add_layer(SENTINEL_SERVICE, &layer, true) {
            return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
        }
    }
    if let Err(e) = pebble.replan(REPLAN_TIMEOUT) {
        return Ok(pebble_outcome(SENTINEL_CONTAINER, &e));
    }
    Ok(Outcome::Done)
}

/// Render `sentinel.conf.j2` for a sentinel of this unit on `port`, run id and peers from
/// `peers`: the unit's own sentinel and the two-unit witness ([`crate::witness`]) share it,
/// so they differ only in port and id.
pub fn render_conf(
    fw: &Framework<'_>,
    topo: &crate::charm::Topology,
    cfg: &crate::config::CharmConfig,
    primary: &str,
    port: u16,
    quorum: usize,
    peers: KnownPeers,
) -> Result<String, HandlerError> {
    let config = SentinelConfig {
        hostname: &topo.fqdn,
        bind: &topo.bind,
        master_name: &fw.ctx.app_name,
        sentinel_port: port,
        redis_master: primary,
        redis_port: REDIS_PORT,
        quorum,
        down_after_ms: cfg.down_after_ms,
        failover_timeout_ms: cfg.failover_timeout_ms,
        master_password: topo.peer.admin_password(),
        sentinel_password: topo.peer.sentinel_password.as_deref().unwrap_or_default(),
        log_level: cfg.log_level.as_str(),
    };
    Ok(templates::render(
        &fw.ctx.charm_dir,
        "sentinel.conf",
        SentinelConfFile {
            config,
            client_reconfig_script: NOTIFY_PRIMARY_SCRIPT_PATH,
            sentinel_hashes: sentinel_hashes(&topo.peer),
            peers,
            tls: cfg.tls.as_ref().map(|_| crate::tls::SENTINEL_TLS_PATHS),
        },
    )?)
}

/// The hashes of every password Sentinel accepts: from the secret, or the plain password
/// before the migration.
fn sentinel_hashes(peer: &crate::peers::PeerAppData) -> Vec<String> {
    match (&peer.passwords, &peer.sentinel_password) {
        (Some(p), _) => p.sentinel.hashes(),
        (None, Some(p)) => vec![crate::passwords::sha256::hex(p.as_bytes())],
        (None, None) => Vec::new(),
    }
}

/// Create `/etc/redis-server` (0750, redis) and push a config file (0600, redis): the file
/// holds passwords, so nobody but redis reads it.
pub fn write_config(pebble: &dyn Pebble, path: &str, content: &str) -> Result<(), PebbleError> {
    pebble.make_dir(CONFIG_DIR, &crate::workload::redis_dir(0o750))?;
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

/// The peers this unit's fresh sentinel is told about ([`KnownPeers`]).
pub(crate) fn known_peers(
    fw: &Framework<'_>,
    topo: &crate::charm::Topology,
    primary: &str,
    domain: &str,
) -> Result<KnownPeers, HandlerError> {
    let units = match topo.peer_relation {
        Some(id) => fw.model().relation_units(id)?,
        None => Vec::new(),
    };
    let model = &fw.ctx.model_name;
    Ok(KnownPeers::new(
        model,
        &fw.ctx.unit_name,
        &units,
        primary,
        |u| crate::peers::unit_fqdn(u, model, domain),
    ))
}

/// Keep a running sentinel's settings current: `SENTINEL SET <app>` for the quorum (it
/// follows the planned units) and the down-after and failover timeouts (config options),
/// where they differ. Sentinel owns its config file once it runs (it rewrites it), so a
/// changed value reaches a running sentinel only this way; `SENTINEL SET` also persists it.
fn keep_runtime_settings(
    fw: &Framework<'_>,
    topo: &crate::charm::Topology,
    planned: usize,
    cfg: &crate::config::CharmConfig,
) {
    keep_runtime_settings_on(fw, topo, planned, cfg, SENTINEL_PORT);
}

/// [`keep_runtime_settings`] for this unit's sentinel on `port` (the unit's, or the
/// two-unit witness's).
pub(crate) fn keep_runtime_settings_on(
    fw: &Framework<'_>,
    topo: &crate::charm::Topology,
    planned: usize,
    cfg: &crate::config::CharmConfig,
    port: u16,
) {
    let Some(password) = topo.peer.sentinel_password.as_deref() else {
        return;
    };
    let want = [
        ("quorum", Sentinel::expected_quorum(planned).to_string()),
        ("down-after-milliseconds", cfg.down_after_ms.to_string()),
        ("failover-timeout", cfg.failover_timeout_ms.to_string()),
    ];
    let host = own_address(topo);
    let app = &fw.ctx.app_name;
    let result = RedisConn::connect(&host, port, Some(password)).and_then(|mut c| {
        let info = c.sentinel_master(app)?;
        for (key, value) in &want {
            if info.get(*key) != Some(value) {
                c.command(&["SENTINEL", "SET", app, key, value])?;
                tracing::info!(%key, %value, "updated a running sentinel");
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        tracing::debug!(error = %e, "could not check the sentinel's settings");
    }
}

/// Leader: record the primary that our sentinel reports in `leader-host` (peer app data),
/// unless it is not settled (see [`publishable_primary`]).
pub fn refresh_leader_host(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
) -> Result<(), HandlerError> {
    let topo = charm.topology(fw)?.clone();
    let (Some(rel), Some(password)) = (topo.peer_relation, topo.peer.sentinel_password.as_deref())
    else {
        return Ok(());
    };
    let app = fw.ctx.app_name.clone();
    let asked =
        RedisConn::connect(&own_address(&topo), SENTINEL_PORT, Some(password)).and_then(|mut c| {
            let info = c.sentinel_master(&app)?;
            // Only during a failover does the current address differ from `ip`.
            let current = if flags_of(&info).contains(&"failover_in_progress") {
                match c.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &app])? {
                    redis::Value::Array(items) if !items.is_empty() => {
                        Some(value_to_string(&items[0]))
                    }
                    _ => None,
                }
            } else {
                None
            };
            Ok((info, current))
        });
    let (info, current) = match asked {
        Ok(answer) => answer,
        Err(e) => {
            tracing::debug!(error = %e, "local sentinel not answering; keeping leader-host");
            return Ok(());
        }
    };
    let Some(primary) = publishable_primary(&info, current.as_deref()) else {
        tracing::info!(flags = ?info.get("flags"), "primary not settled; keeping leader-host");
        return Ok(());
    };
    if topo.peer.leader_host.as_deref() != Some(primary.as_str()) {
        let mut changes = BTreeMap::new();
        changes.insert(KEY_LEADER_HOST.to_string(), primary.clone());
        fw.model().update_relation_data(rel, true, &changes)?;
        tracing::info!(%primary, "primary changed; updated leader-host");
        charm.invalidate_topology();
    }
    Ok(())
}

fn flags_of(info: &BTreeMap<String, String>) -> Vec<&str> {
    info.get("flags")
        .map(|f| f.split(',').collect())
        .unwrap_or_default()
}

/// The primary to publish, from our sentinel's `SENTINEL MASTER` answer and, during a
/// failover, its `SENTINEL GET-MASTER-ADDR-BY-NAME` answer (`current`).
///
/// - No failover, primary up: its address.
/// - Primary subjectively or objectively down, no failover: nothing (keep the record).
/// - Failover running: Sentinel answers GET-MASTER-ADDR-BY-NAME with the promoted replica
///   once it has turned primary (state reconf-slaves and later), which is when the failover
///   leader runs the client-reconfig-script; from then on the switch cannot be undone, so
///   that address is published. Before the promotion it still names the old primary:
///   nothing.
///
/// Only hostnames are published (Sentinel announces hostnames here).
pub fn publishable_primary(
    info: &BTreeMap<String, String>,
    current: Option<&str>,
) -> Option<String> {
    let flags = flags_of(info);
    let ip = info.get("ip").map(String::as_str);
    let host = if flags.contains(&"failover_in_progress") {
        current.filter(|c| Some(*c) != ip)?
    } else if flags.contains(&"s_down") || flags.contains(&"o_down") {
        return None;
    } else {
        ip?
    };
    crate::peers::is_hostname(host).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ip: &str, flags: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("ip".to_string(), ip.to_string()),
            ("flags".to_string(), flags.to_string()),
        ])
    }

    #[test]
    fn a_settled_primary_is_published() {
        assert_eq!(
            publishable_primary(&info("a.svc", "master"), None).as_deref(),
            Some("a.svc")
        );
    }

    #[test]
    fn a_down_primary_without_failover_is_not() {
        assert_eq!(
            publishable_primary(&info("a.svc", "master,s_down"), None),
            None
        );
        assert_eq!(
            publishable_primary(&info("a.svc", "master,s_down,o_down"), None),
            None
        );
    }

    #[test]
    fn during_a_failover_only_a_promoted_replica_is_published() {
        let failing = info("a.svc", "master,s_down,o_down,failover_in_progress");
        assert_eq!(publishable_primary(&failing, Some("a.svc")), None);
        assert_eq!(publishable_primary(&failing, None), None);
        assert_eq!(
            publishable_primary(&failing, Some("b.svc")).as_deref(),
            Some("b.svc")
        );
    }

    #[test]
    fn junk_is_not_published() {
        assert_eq!(publishable_primary(&info("a b", "master"), None), None);
        assert_eq!(publishable_primary(&BTreeMap::new(), None), None);
    }

    #[test]
    fn sentinel_ids_are_pinned() {
        // Deployed sentinels know each other by these ids (`known-sentinel` lines): the
        // derivation must never change. Values from `printf 'm/redis-k8s/0' | sha1sum`.
        assert_eq!(
            sentinel_id("m", "redis-k8s/0"),
            "217082086a3fe534ff0eae3b1c0969a8bb6ab91f"
        );
        assert_eq!(
            sentinel_id("test-model", "redis-k8s/2"),
            "bfa57a77aae851401669403e0388bb28baafd5bb"
        );
    }

    #[test]
    fn sentinel_ids_are_40_hex_and_differ_per_unit_and_model() {
        let a = sentinel_id("m", "redis-k8s/0");
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, sentinel_id("m", "redis-k8s/0"));
        assert_ne!(a, sentinel_id("m", "redis-k8s/1"));
        assert_ne!(a, sentinel_id("n", "redis-k8s/0"));
    }

    #[test]
    fn known_peers_name_every_replica_and_every_other_sentinel() {
        let units: Vec<String> = ["redis-k8s/2", "redis-k8s/0", "redis-k8s/1"]
            .iter()
            .map(|u| u.to_string())
            .collect();
        let fqdn = |u: &str| format!("{}.x", u.replace('/', "-"));
        let p = KnownPeers::new("m", "redis-k8s/1", &units, "redis-k8s-0.x", fqdn);
        assert_eq!(p.myid, sentinel_id("m", "redis-k8s/1"));
        assert_eq!(p.known_replicas, ["redis-k8s-1.x", "redis-k8s-2.x"]);
        let s: Vec<(&str, &str)> = p
            .known_sentinels
            .iter()
            .map(|k| (k.host.as_str(), k.id.as_str()))
            .collect();
        let (id0, id2) = (
            sentinel_id("m", "redis-k8s/0"),
            sentinel_id("m", "redis-k8s/2"),
        );
        assert_eq!(
            s,
            [
                ("redis-k8s-0.x", id0.as_str()),
                ("redis-k8s-2.x", id2.as_str())
            ]
        );
        // relation-list leaves our own unit out: it is still a replica to name.
        let others: Vec<String> = vec!["redis-k8s/0".into()];
        let p = KnownPeers::new("m", "redis-k8s/1", &others, "redis-k8s-0.x", fqdn);
        assert_eq!(p.known_replicas, ["redis-k8s-1.x"]);
        assert_eq!(p.known_sentinels.len(), 1);
        // A sole unit that is the primary: nothing to name.
        let p = KnownPeers::new("m", "redis-k8s/0", &[], "redis-k8s-0.x", fqdn);
        assert!(p.known_replicas.is_empty() && p.known_sentinels.is_empty());
    }

    #[test]
    fn the_script_notifies_and_always_succeeds() {
        let s = notify_primary_script();
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("${PEBBLE_BIN:-/charm/bin/pebble}"));
        assert!(s.contains("notify redis-k8s.charm/primary-changed \"to=$6\""));
        assert!(s.trim_end().ends_with("exit 0"));
    }
}
