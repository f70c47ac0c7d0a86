//! The two-unit witness: a third sentinel that lets a two-unit deployment fail over.
//!
//! With two units there are two sentinels, and a dead primary's pod takes its sentinel with
//! it: the survivor is one of two voters and cannot win the majority Sentinel needs to
//! authorise a failover. So when exactly two units are planned, the REPLICA's unit runs a
//! second sentinel, the witness (Pebble service [`WITNESS_SERVICE`] in the sentinel
//! container, port [`WITNESS_PORT`], config [`WITNESS_CONFIG_PATH`]), and the replica's pod
//! holds two of three voters (quorum 2): the primary's death is a failover, the replica's
//! death needs none.
//!
//! The witness's run id ([`witness_id`]) belongs to the APP, not to a unit. When it moves
//! (after a failover the new primary stops it, the new replica starts it) the other
//! sentinels see the same run id at a new address, switch the address
//! (`+sentinel-address-switch`) and keep counting three voters: no `SENTINEL RESET`.
//!
//! Never two witnesses with one id: the primary's unit stops its witness first and says so
//! in its peer unit databag (`witness: stopped`); a replica starts one only when no other
//! unit's databag says `witness: running`.
//!
//! The witness's service is `startup: disabled`, so the sentinel container's `replan`
//! never starts it behind the charm's back; the charm starts and stops it explicitly.
//!
//! Its Pebble check [`WITNESS_CHECK`] (`sentinel-witness-up`) is the unit sentinel's probe
//! on port 26380 ([`crate::workload::server_check`], so TLS wraps it like the others), also
//! `startup: disabled`: started right after the service and stopped right before it (a
//! witness stopped on purpose is not a failing check), and started on a running witness
//! whose plan predates it. Its failures and recoveries arrive as the sentinel container's
//! `pebble-check-failed` / `-recovered` and are reported like `sentinel-up`
//! ([`crate::health`]).

use std::collections::BTreeMap;

use crate::charm::{own_address, RedisK8sCharm, Topology};
use crate::literals::*;
use crate::ops::framework::{Framework, HandlerError};
use crate::ops::pebble::{Check, CheckAction, Layer, Pebble, PebbleError, ServiceAction};
use crate::primary::SentinelView;
use crate::redis_client::{value_to_string, RedisConn};
use crate::sentinel::{sentinel_id, KnownPeers, KnownSentinel, Sentinel};

/// The witness's Pebble service (and layer label) in the sentinel container.
pub const WITNESS_SERVICE: &str = "sentinel-witness";
/// The witness listens next to the unit's sentinel (26379).
pub const WITNESS_PORT: u16 = 26380;
/// Its own config file (Sentinel rewrites it), 0600 like `sentinel.conf`.
pub const WITNESS_CONFIG_PATH: &str = "/etc/redis-server/sentinel-witness.conf";
/// Peer UNIT databag key: `running` or `stopped`.
pub const KEY_WITNESS: &str = "witness";
/// Only this many planned units get a witness.
pub const WITNESS_UNITS: usize = 2;
/// The witness's Pebble check (in the sentinel container, next to `sentinel-up`).
pub const WITNESS_CHECK: &str = "sentinel-witness-up";

/// The witness's run id: stable for the app in its model, whichever unit runs it.
pub fn witness_id(model: &str, app: &str) -> String {
    sentinel_id(model, &format!("{app}/witness"))
}

/// The witness's check on `host` (the unit's own address, where it listens): the probe
/// every server here gets, `startup: disabled` (see the module doc).
pub fn witness_check(host: &str) -> Check {
    Check {
        startup: Some("disabled".into()),
        ..crate::workload::server_check(host, WITNESS_PORT)
    }
}

/// The witness's layer: one service and its check, both `startup: disabled` (started
/// explicitly, see the module doc). No secrets: the command names the config file only.
pub fn witness_layer(host: &str) -> Layer {
    let mut layer = crate::workload::redis_user_layer(
        WITNESS_SERVICE,
        "Sentinel witness",
        format!("redis-server {WITNESS_CONFIG_PATH} --sentinel"),
    );
    if let Some(s) = layer.services.get_mut(WITNESS_SERVICE) {
        s.startup = Some("disabled".into());
    }
    layer
        .checks
        .insert(WITNESS_CHECK.into(), witness_check(host));
    layer
}

/// [`witness_layer`] with TLS on when `tls` is given ([`crate::tls`]): the service carries
/// the certificate fingerprint and its checks speak TLS.
pub fn witness_layer_tls(host: &str, tls: Option<&crate::tls::TlsMaterial>) -> Layer {
    let mut layer = witness_layer(host);
    if let Some(s) = layer.services.get_mut(WITNESS_SERVICE) {
        crate::tls::mark_service(s, tls);
    }
    if tls.is_some() {
        for check in layer.checks.values_mut() {
            *check = crate::tls::tls_check(check.clone(), &crate::tls::SENTINEL_TLS_PATHS);
        }
    }
    layer
}

/// A running witness whose service predates a TLS change (on/off, a new certificate) still
/// listens the old way: stopped here, so the decision below starts it with a fresh config.
fn stop_if_tls_changed(
    pebble: &dyn Pebble,
    host: &str,
    tls: Option<&crate::tls::TlsMaterial>,
) -> bool {
    let want = witness_layer_tls(host, tls);
    let stale = pebble
        .get_plan()
        .is_ok_and(|plan| plan.services.get(WITNESS_SERVICE) != want.services.get(WITNESS_SERVICE));
    if !stale {
        return false;
    }
    match stop(pebble) {
        Ok(()) => {
            tracing::info!("stopped the witness sentinel: TLS changed");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not stop the witness sentinel after a TLS change");
            false
        }
    }
}

/// This unit's Redis role, as its own server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    /// A replica of this primary host.
    Replica(String),
}

/// What the other units' databags say about their witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerWitness {
    /// Some other unit says `witness: running` (or an unknown value: assume it runs).
    Running,
    /// No other unit runs one (`stopped`, or no key: a unit that never ran one).
    Stopped,
}

/// What to do with this unit's witness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    /// Leave it as it is (running or not).
    Keep,
}

/// The facts one decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub planned_units: usize,
    /// `None` when the local Redis does not answer: then nothing changes.
    pub role: Option<Role>,
    pub running: bool,
    pub peers: PeerWitness,
    /// The local sentinels agree that this unit is the primary and no failover is running
    /// (only then may a primary's witness go: it may be the failover's leader).
    pub primary_settled: bool,
}

/// The witness rule (see the module doc).
pub fn decide(f: &Facts) -> Action {
    if f.planned_units != WITNESS_UNITS {
        return if f.running {
            Action::Stop
        } else {
            Action::Keep
        };
    }
    match (&f.role, f.running) {
        (Some(Role::Primary), true) if f.primary_settled => Action::Stop,
        (Some(Role::Replica(_)), false) if f.peers == PeerWitness::Stopped => Action::Start,
        _ => Action::Keep,
    }
}

/// Add the witness to a unit sentinel's `known-sentinel` lines when two units are planned:
/// it runs on the unit that is not the primary.
pub fn add_known_witness(
    fw: &Framework<'_>,
    peers: &mut KnownPeers,
    primary: &str,
    domain: &str,
) -> Result<(), HandlerError> {
    if fw.model().planned_units()? != WITNESS_UNITS {
        return Ok(());
    }
    let model = &fw.ctx.model_name;
    let mut units = match fw.model().relation_id(PEER_RELATION)? {
        Some(id) => fw.model().relation_units(id)?,
        None => Vec::new(),
    };
    units.push(fw.ctx.unit_name.clone());
    let hosts: Vec<String> = units
        .iter()
        .map(|u| crate::peers::unit_fqdn(u, model, domain))
        .filter(|h| h != primary)
        .collect();
    if let [host] = hosts.as_slice() {
        peers.known_sentinels.push(KnownSentinel {
            host: host.clone(),
            port: WITNESS_PORT,
            id: witness_id(model, &fw.ctx.app_name),
        });
    }
    Ok(())
}

/// The peers a freshly started witness on this unit is told about: both units' sentinels
/// (ours included), the replicas, and its own stable id.
pub fn witness_peers(fw: &Framework<'_>, topo: &Topology, unit_peers: KnownPeers) -> KnownPeers {
    let mut peers = unit_peers;
    peers.known_sentinels.push(KnownSentinel {
        host: topo.fqdn.clone(),
        port: SENTINEL_PORT,
        id: peers.myid.clone(),
    });
    peers.myid = witness_id(&fw.ctx.model_name, &fw.ctx.app_name);
    peers
}

/// Converge this unit's witness: start, stop or keep it ([`decide`]) and record the result
/// in the peer unit databag. Problems are logged, never fatal: the next hook retries
/// (update-status, the peer's databag change), and the unit's own sentinel does not
/// depend on the witness.
pub fn converge(charm: &mut RedisK8sCharm, fw: &mut Framework<'_>) -> Result<(), HandlerError> {
    let Ok(cfg) = charm.config(fw).cloned() else {
        return Ok(());
    };
    let topo = charm.topology(fw)?.clone();
    let Some(rel) = topo.peer_relation else {
        return Ok(());
    };
    if !topo.peer.is_populated() {
        return Ok(());
    }
    let pebble = fw.container(SENTINEL_CONTAINER);
    let running = match pebble.services(&[WITNESS_SERVICE]) {
        Ok(s) => s.iter().any(|i| i.is_running()),
        Err(e) => {
            tracing::debug!(error = %e, "sentinel Pebble not reachable; witness unchanged");
            return Ok(());
        }
    };
    let host = own_address(&topo);
    let running = running && !stop_if_tls_changed(&*pebble, &host, cfg.tls.as_ref());
    let planned_units = fw.model().planned_units()?;
    if planned_units != WITNESS_UNITS && !running {
        // The common case (one unit, three or more): nothing to ask, nothing to record.
        return Ok(());
    }
    let role = local_role(&topo);
    let primary_settled = matches!(role, Some(Role::Primary))
        && running
        && settled_as_primary(&topo, &fw.ctx.app_name);
    let facts = Facts {
        planned_units,
        role,
        running,
        peers: peer_witness(fw, rel)?,
        primary_settled,
    };
    let action = decide(&facts);
    let now_running = match action {
        Action::Keep => {
            if running {
                ensure_check(&*pebble, &host, cfg.tls.as_ref());
                // It owns its config file: config changes reach it only at runtime.
                crate::sentinel::keep_runtime_settings_on(
                    fw,
                    &topo,
                    planned_units,
                    &cfg,
                    WITNESS_PORT,
                );
            }
            running
        }
        Action::Stop => match stop(&*pebble) {
            Ok(()) => {
                tracing::info!(planned_units, "stopped the witness sentinel");
                if planned_units > WITNESS_UNITS {
                    // Scaled up: the others forget the witness's entry (one at a time).
                    let quorum = Sentinel::expected_quorum(planned_units);
                    crate::switchover::forget_departed(&topo, &fw.ctx.app_name, quorum);
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not stop the witness sentinel");
                true
            }
        },
        Action::Start => {
            let Some(Role::Replica(primary)) = &facts.role else {
                return Ok(());
            };
            let peers = crate::sentinel::known_peers(fw, &topo, primary, &cfg.cluster_domain)?;
            let peers = witness_peers(fw, &topo, peers);
            let quorum = Sentinel::expected_quorum(planned_units);
            let conf = crate::sentinel::render_conf(
                fw,
                &topo,
                &cfg,
                primary,
                WITNESS_PORT,
                quorum,
                peers,
            )?;
            match start(&*pebble, &conf, &host, cfg.tls.as_ref()) {
                Ok(()) => {
                    tracing::info!(%primary, "started the witness sentinel");
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the witness sentinel");
                    false
                }
            }
        }
    };
    if action == Action::Keep && facts.planned_units == WITNESS_UNITS && !running {
        if let Some(Role::Replica(_)) = facts.role {
            tracing::info!("witness waits until the other unit's witness is stopped");
        }
    }
    let state = if now_running { "running" } else { "stopped" };
    let changes = BTreeMap::from([(KEY_WITNESS.to_string(), state.to_string())]);
    fw.model().update_relation_data(rel, false, &changes)?;
    Ok(())
}

/// Push the config, add the layer, start the service, then its check.
fn start(
    pebble: &dyn Pebble,
    conf: &str,
    host: &str,
    tls: Option<&crate::tls::TlsMaterial>,
) -> Result<(), PebbleError> {
    crate::sentinel::write_config(pebble, WITNESS_CONFIG_PATH, conf)?;
    crate::sentinel::push_notify_script(pebble)?;
    pebble.add_layer(WITNESS_SERVICE, &witness_layer_tls(host, tls), true)?;
    pebble.service_action_and_wait(ServiceAction::Start, &[WITNESS_SERVICE], REPLAN_TIMEOUT)?;
    start_check(pebble);
    Ok(())
}

/// Start the witness's check. Best effort: a check that cannot be started leaves the
/// witness itself running (the next hook tries again, see [`ensure_check`]).
fn start_check(pebble: &dyn Pebble) {
    if let Err(e) = pebble.check_action(CheckAction::Start, &[WITNESS_CHECK]) {
        tracing::warn!(error = %e, "could not start the witness's check");
    }
}

/// A running witness has its check in the plan, as wanted, and started: a witness started
/// by an earlier charm version had none, and a changed check (TLS on or off) is put back.
/// Costs one plan and one checks query, in two-unit deployments only.
fn ensure_check(pebble: &dyn Pebble, host: &str, tls: Option<&crate::tls::TlsMaterial>) {
    let want = witness_layer_tls(host, tls);
    let planned = pebble
        .get_plan()
        .is_ok_and(|plan| plan.checks.get(WITNESS_CHECK) == want.checks.get(WITNESS_CHECK));
    if !planned {
        // The service definition is the running one (a TLS change stopped it above), so
        // this only adds or replaces the check.
        if let Err(e) = pebble.add_layer(WITNESS_SERVICE, &want, true) {
            tracing::warn!(error = %e, "could not add the witness's check");
            return;
        }
        tracing::info!("added the witness's check");
    }
    let inactive = match pebble.checks(None, &[WITNESS_CHECK]) {
        Ok(checks) => checks.iter().all(|c| c.status == "inactive"),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the witness's check");
            return;
        }
    };
    if inactive {
        start_check(pebble);
    }
}

/// Stop the check (a stopped witness is not a failure), then the service, and remove its
/// config (a later start renders a fresh one).
fn stop(pebble: &dyn Pebble) -> Result<(), PebbleError> {
    if let Err(e) = pebble.check_action(CheckAction::Stop, &[WITNESS_CHECK]) {
        // A witness started by an earlier charm version has no check: nothing to stop.
        tracing::debug!(error = %e, "witness check not stopped");
    }
    pebble.service_action_and_wait(ServiceAction::Stop, &[WITNESS_SERVICE], REPLAN_TIMEOUT)?;
    match pebble.remove_path(WITNESS_CONFIG_PATH, false) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// The local Redis's role (`INFO replication`), `None` when it does not answer.
fn local_role(topo: &Topology) -> Option<Role> {
    let info = RedisConn::connect(&own_address(topo), REDIS_PORT, topo.peer.admin_password())
        .and_then(|mut c| c.info("replication"));
    match info {
        Ok(info) => match info.get("role").map(String::as_str) {
            Some("master") => Some(Role::Primary),
            Some("slave") => info.get("master_host").cloned().map(Role::Replica),
            _ => None,
        },
        Err(e) => {
            tracing::debug!(error = %e, "local redis not answering; witness unchanged");
            None
        }
    }
}

/// Do this unit's sentinels (the unit's, and the witness if it answers) name us as the
/// primary, with no failover running?
fn settled_as_primary(topo: &Topology, app: &str) -> bool {
    let Some(password) = topo.peer.sentinel_password.as_deref() else {
        return false;
    };
    let host = own_address(topo);
    let view = |port: u16| {
        RedisConn::connect(&host, port, Some(password)).and_then(|mut c| c.sentinel_master(app))
    };
    let names_us = |info: &BTreeMap<String, String>| {
        info.get("ip") == Some(&topo.fqdn)
            && !info
                .get("flags")
                .is_some_and(|f| f.contains("failover_in_progress"))
    };
    let unit_ok = matches!(view(SENTINEL_PORT), Ok(info) if names_us(&info));
    let witness_ok = match view(WITNESS_PORT) {
        Ok(info) => names_us(&info),
        Err(_) => true,
    };
    unit_ok && witness_ok
}

/// Who the primary is, asked of the other units' sentinels AND the witness (wherever it
/// runs: on our own pod or a peer's), a strict majority of the answers deciding.
///
/// With two units the other unit's sentinel alone is not enough: after the primary's pod
/// died it is gone with it, and the fallback (the recorded `leader-host`, which the dead
/// leader cannot update) would make the freshly promoted replica follow the dead primary
/// again. The witness took part in that failover and names the new primary.
pub fn ask_with_witness(topo: &Topology, app: &str, password: &str) -> SentinelView {
    let mut targets: Vec<(String, u16)> = topo
        .peer_fqdns
        .iter()
        .map(|h| (h.clone(), SENTINEL_PORT))
        .collect();
    targets.push((own_address(topo), WITNESS_PORT));
    targets.extend(topo.peer_fqdns.iter().map(|h| (h.clone(), WITNESS_PORT)));
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    let mut answered = 0usize;
    for (host, port) in &targets {
        let answer = RedisConn::connect(host, *port, Some(password))
            .and_then(|mut c| c.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", app]));
        match answer {
            Ok(redis::Value::Array(items)) if !items.is_empty() => {
                answered += 1;
                *votes.entry(value_to_string(&items[0])).or_default() += 1;
            }
            Ok(_) => answered += 1,
            Err(e) => tracing::debug!(%host, port, error = %e, "sentinel did not answer"),
        }
    }
    crate::primary::decide(votes, answered)
}

/// Whether any other unit's databag says its witness runs.
fn peer_witness(fw: &Framework<'_>, rel: u32) -> Result<PeerWitness, HandlerError> {
    for unit in fw.model().relation_units(rel)? {
        if unit == fw.ctx.unit_name {
            continue;
        }
        let bag = fw.model().relation_data(rel, &unit, false)?;
        match bag.get(KEY_WITNESS).map(String::as_str) {
            None | Some("stopped") | Some("") => {}
            Some(_) => return Ok(PeerWitness::Running),
        }
    }
    Ok(PeerWitness::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(planned: usize, role: Option<Role>, running: bool) -> Facts {
        Facts {
            planned_units: planned,
            role,
            running,
            peers: PeerWitness::Stopped,
            primary_settled: true,
        }
    }

    fn replica() -> Option<Role> {
        Some(Role::Replica("p".into()))
    }

    #[test]
    fn only_a_two_unit_replica_starts_one() {
        assert_eq!(decide(&facts(2, replica(), false)), Action::Start);
        assert_eq!(decide(&facts(2, replica(), true)), Action::Keep);
        assert_eq!(decide(&facts(2, Some(Role::Primary), false)), Action::Keep);
        assert_eq!(decide(&facts(1, replica(), false)), Action::Keep);
        assert_eq!(decide(&facts(3, replica(), false)), Action::Keep);
        assert_eq!(decide(&facts(2, None, false)), Action::Keep);
    }

    #[test]
    fn a_replica_waits_while_the_peer_runs_one() {
        let mut f = facts(2, replica(), false);
        f.peers = PeerWitness::Running;
        assert_eq!(decide(&f), Action::Keep);
    }

    #[test]
    fn a_primary_stops_its_witness_once_settled() {
        let mut f = facts(2, Some(Role::Primary), true);
        assert_eq!(decide(&f), Action::Stop);
        f.primary_settled = false;
        assert_eq!(decide(&f), Action::Keep);
    }

    #[test]
    fn other_sizes_stop_it_whatever_the_role() {
        assert_eq!(decide(&facts(3, replica(), true)), Action::Stop);
        assert_eq!(decide(&facts(1, Some(Role::Primary), true)), Action::Stop);
        assert_eq!(decide(&facts(3, None, true)), Action::Stop);
    }

    #[test]
    fn the_id_is_per_app_and_not_a_units() {
        let id = witness_id("m", "redis-k8s");
        assert_eq!(id.len(), 40);
        assert_eq!(id, witness_id("m", "redis-k8s"));
        assert_ne!(id, witness_id("m", "other"));
        assert_ne!(id, sentinel_id("m", "redis-k8s/0"));
        assert_ne!(id, sentinel_id("m", "redis-k8s/1"));
    }

    #[test]
    fn the_layer_is_disabled_and_names_only_the_file() {
        let l = witness_layer("10.1.2.3");
        let s = &l.services[WITNESS_SERVICE];
        assert_eq!(s.startup.as_deref(), Some("disabled"));
        assert_eq!(
            s.command.as_deref(),
            Some("redis-server /etc/redis-server/sentinel-witness.conf --sentinel")
        );
        // The check: the same probe as sentinel-up, on the witness's port, started and
        // stopped with the service.
        let c = &l.checks[WITNESS_CHECK];
        assert_eq!(c.startup.as_deref(), Some("disabled"));
        let unit = crate::workload::server_check("10.1.2.3", WITNESS_PORT);
        assert_eq!(c.level, unit.level);
        assert_eq!(c.exec, unit.exec);
        assert_eq!(
            c.exec.as_ref().map(|e| e.command.as_str()),
            Some("redis-cli -h 10.1.2.3 -p 26380 QUIT")
        );
        assert_eq!(l.checks.len(), 1);
    }
}
