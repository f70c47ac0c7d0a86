//! `RedisK8sCharm`: thin wiring of the charm's objects onto the framework.
//!
//! Each concern lives in its own module (`redis_server`, `sentinel`, `client_relation`,
//! `actions`); this struct registers their handlers, holds what one hook learned (the
//! derived [`Topology`] and the outcomes to report), and reports status once, at
//! collect-status.

use std::cell::OnceCell;

use crate::config::{CharmConfig, ConfigError};
use crate::literals::*;
use crate::ops::framework::{handle_path, Charm, EventHandle, Framework, HandlerResult, Observers};
use crate::ops::hookcmds::{HookError, StatusName, StatusValue};
use crate::peers::{unit_fqdn, PeerAppData};
use crate::sentinel::Sentinel;
use crate::{actions, client_relation, redis_server, sentinel};

/// How a convergence step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Done, with a message for the active status (e.g. the replication role).
    Active(String),
    /// Could not finish yet; the event is deferred.
    Waiting(String),
    /// Needs an operator; not deferred (a config change will come).
    Blocked(String),
}

/// What a hook derives once from the model: names, addresses, the peer databag.
#[derive(Debug, Clone)]
pub struct Topology {
    pub fqdn: String,
    /// `bind` directive value for Redis and Sentinel.
    pub bind: String,
    pub peer_relation: Option<u32>,
    pub peer: PeerAppData,
    /// FQDNs of the other units in the peer relation.
    pub peer_fqdns: Vec<String>,
}

/// The charm.
#[derive(Default)]
pub struct RedisK8sCharm {
    pub sentinel: Sentinel,
    config: OnceCell<Result<CharmConfig, ConfigError>>,
    /// This hook's TLS for the charm's own connections (see [`crate::tls`]), installed with
    /// the config and restored when the charm is dropped at the end of the hook.
    tls_guard: OnceCell<crate::redis_client::TlsGuard>,
    topology: Option<Topology>,
    /// Unit statuses produced by this hook's handlers, reported at collect-status.
    outcomes: Vec<StatusValue>,
    /// The role the redis path converged to in this hook (from the sentinels' view), which
    /// beats the recorded `leader-host` for the status message.
    pub converged_role: Option<&'static str>,
    /// Passwords this hook wrote to the secret (read back from here until the hook commits).
    pub written_passwords: Option<crate::passwords::Written>,
    /// What this hook learnt about health; builds the active status at collect-status.
    pub health: crate::health::HealthState,
}

pub const ROOT: &str = "RedisK8sCharm";

impl Charm for RedisK8sCharm {
    const HANDLE_KIND: &'static str = ROOT;

    fn register(o: &mut Observers<Self>) {
        let root = o.root().to_string();
        let peer = PEER_RELATION.replace('-', "_");
        o.observe("leader_elected", &root, "_leader_elected", |c, fw, ev| {
            c.on_leader_elected(fw, ev)
        });
        o.observe(
            "redis_pebble_ready",
            &root,
            "_redis_pebble_ready",
            redis_server::on_pebble_ready,
        );
        o.observe("config_changed", &root, "_config_changed", |c, fw, ev| {
            c.on_config_changed(fw, ev)
        });
        o.observe("upgrade_charm", &root, "_upgrade_charm", |c, fw, ev| {
            c.on_config_changed(fw, ev)
        });
        o.observe("update_status", &root, "_update_status", |c, fw, ev| {
            c.on_update_status(fw, ev)
        });
        o.observe(
            &format!("{peer}_relation_changed"),
            &root,
            "_peer_relation_changed",
            |c, fw, ev| c.on_peer_changed(fw, ev),
        );
        o.observe(
            &format!("{peer}_relation_departed"),
            &root,
            "_peer_relation_departed",
            |c, fw, ev| c.on_peer_departed(fw, ev),
        );
        for kind in [
            "redis_relation_created",
            "redis_relation_joined",
            "redis_relation_changed",
        ] {
            o.observe(kind, &root, "_on_redis_relation", |c, fw, _| {
                client_relation::publish(c, fw)
            });
        }
        // The prometheus_scrape provider (crate::metrics): scrape job, topology, addresses.
        for kind in [
            "metrics_endpoint_relation_joined",
            "metrics_endpoint_relation_changed",
            "leader_elected",
            "config_changed",
            "upgrade_charm",
        ] {
            o.observe(
                kind,
                &root,
                "_set_scrape_job_spec",
                crate::metrics::on_event,
            );
        }
        // The grafana_dashboard provider (crate::dashboards): the leader's `dashboards` key.
        for kind in [
            "grafana_dashboard_relation_created",
            "leader_elected",
            "config_changed",
            "upgrade_charm",
        ] {
            o.observe(
                kind,
                &root,
                "_update_all_dashboards_from_dir",
                crate::dashboards::on_event,
            );
        }
        o.observe(
            "grafana_dashboard_relation_changed",
            &root,
            "_on_grafana_dashboard_relation_changed",
            crate::dashboards::on_relation_changed,
        );
        o.observe(
            "check_service_action",
            &root,
            "_check_service",
            actions::check_service,
        );
        o.observe(
            "get_initial_admin_password_action",
            &root,
            "_get_password",
            actions::get_admin_password,
        );
        o.observe(
            "get_sentinel_password_action",
            &root,
            "_get_sentinel_password",
            actions::get_sentinel_password,
        );
        o.observe(
            "set_password_action",
            &root,
            "_set_password",
            actions::set_password,
        );
        o.observe(
            "redis_relation_broken",
            &root,
            "_on_redis_relation_broken",
            client_relation::on_broken,
        );
        o.observe(
            "switchover_action",
            &root,
            "_switchover",
            actions::switchover,
        );
        // The pod is going (scale-down, deletion, refresh): a primary hands over first.
        o.observe("stop", &root, "_on_stop", crate::switchover::on_stop);
        o.observe(
            "collect_unit_status",
            &root,
            "_on_collect_unit_status",
            |c, fw, _| {
                c.collect_unit_status(fw);
                Ok(())
            },
        );
        // Pebble checks going down / back up (Juju 3.6+); see crate::health.
        for c in [REDIS_CONTAINER, SENTINEL_CONTAINER] {
            o.observe(
                &format!("{c}_pebble_check_failed"),
                &root,
                "_on_check_failed",
                crate::health::on_check_failed,
            );
            o.observe(
                &format!("{c}_pebble_check_recovered"),
                &root,
                "_on_check_recovered",
                crate::health::on_check_recovered,
            );
        }
        let sentinel_path = handle_path(Some(&root), "Sentinel", Some("sentinel"));
        o.observe(
            "sentinel_pebble_ready",
            &sentinel_path,
            "_sentinel_pebble_ready",
            sentinel::on_pebble_ready,
        );
        // Sentinel's client-reconfig-script records a notice on every switch of primary.
        o.observe(
            "sentinel_pebble_custom_notice",
            &sentinel_path,
            "_on_primary_changed",
            sentinel::on_custom_notice,
        );
        // After a failover the new primary's unit stops its witness (crate::witness).
        o.observe(
            "sentinel_pebble_custom_notice",
            &root,
            "_witness_on_primary_changed",
            |c, fw, ev| match ev.notice_key() {
                Some(PRIMARY_CHANGED_NOTICE) => crate::witness::converge(c, fw),
                _ => Ok(()),
            },
        );
        // After it: the leader mirrors the new primary into the k8s Services' pod labels.
        o.observe(
            "sentinel_pebble_custom_notice",
            &root,
            "_k8s_on_primary_changed",
            |c, fw, ev| match ev.notice_key() {
                Some(PRIMARY_CHANGED_NOTICE) => crate::k8s::sync(c, fw),
                _ => Ok(()),
            },
        );
        // Pebble log forwarding to Loki in both containers (crate::logging); after the
        // pebble-ready handlers, so a restarted container gets its targets back.
        for kind in [
            "logging_relation_joined",
            "logging_relation_changed",
            "logging_relation_departed",
            "logging_relation_broken",
            "upgrade_charm",
            "redis_pebble_ready",
            "sentinel_pebble_ready",
        ] {
            o.observe(kind, &root, "_update_logging", crate::logging::on_event);
        }
    }
}

impl RedisK8sCharm {
    /// The validated config, read once per hook.
    pub fn config(&self, fw: &Framework<'_>) -> Result<&CharmConfig, ConfigError> {
        self.config
            .get_or_init(|| {
                let cfg = match fw.model().config() {
                    Ok(map) => CharmConfig::from_map(map),
                    Err(e) => Err(ConfigError {
                        option: "(all)",
                        reason: format!("cannot read config: {e}"),
                    }),
                };
                // With enable-tls, the certificates belong to the config (crate::tls).
                let cfg = cfg.and_then(|mut c| {
                    if c.enable_tls {
                        let tls = crate::tls::load(fw.tools()).map_err(|e| ConfigError {
                            option: crate::config::TLS_RESOURCES,
                            reason: e.to_string(),
                        })?;
                        c.tls = Some(tls);
                    }
                    Ok(c)
                });
                let client = cfg
                    .as_ref()
                    .ok()
                    .and_then(|c| c.tls.as_ref())
                    .map(|t| t.client());
                let _ = self.tls_guard.set(crate::redis_client::use_tls(client));
                cfg
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Names, addresses and the peer databag, derived once per hook.
    pub fn topology(&mut self, fw: &Framework<'_>) -> Result<&Topology, HookError> {
        if self.topology.is_none() {
            let domain = self
                .config(fw)
                .map(|c| c.cluster_domain.clone())
                .unwrap_or_else(|_| "cluster.local".into());
            let ctx = fw.ctx;
            let fqdn = unit_fqdn(&ctx.unit_name, &ctx.model_name, &domain);
            let peer_relation = fw.model().relation_id(PEER_RELATION)?;
            let (peer, peer_fqdns) = match peer_relation {
                Some(id) => {
                    let bag = fw.model().relation_data(id, &ctx.app_name, true)?;
                    let units = fw.model().relation_units(id)?;
                    let fqdns = units
                        .iter()
                        .filter(|u| *u != &ctx.unit_name)
                        .map(|u| unit_fqdn(u, &ctx.model_name, &domain))
                        .collect();
                    let mut peer = PeerAppData::from_bag(&bag);
                    crate::passwords::resolve(
                        fw.tools(),
                        &mut peer,
                        self.written_passwords.as_ref(),
                    );
                    (peer, fqdns)
                }
                None => (PeerAppData::default(), Vec::new()),
            };
            self.topology = Some(Topology {
                bind: bind_address(&fqdn),
                fqdn,
                peer_relation,
                peer,
                peer_fqdns,
            });
        }
        Ok(self.topology.as_ref().expect("just set"))
    }

    /// Forget the derived topology (after this hook changed the peer databag).
    pub fn invalidate_topology(&mut self) {
        self.topology = None;
    }

    /// Record an outcome for collect-status; returns whether the event should be deferred.
    pub fn report(&mut self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Done => {
                // The message (role, replication, sentinel) is built once, at collect-status.
                self.health.active = true;
                false
            }
            Outcome::Active(msg) => {
                self.outcomes.push(StatusValue::active(msg));
                false
            }
            Outcome::Waiting(msg) => {
                self.outcomes.push(StatusValue::waiting(msg));
                true
            }
            Outcome::Blocked(msg) => {
                self.outcomes.push(StatusValue::blocked(msg));
                false
            }
        }
    }

    /// Report a non-`Done` outcome (a `Done` adds nothing); returns whether to defer.
    pub fn report_problem(&mut self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Done => false,
            other => self.report(other),
        }
    }

    /// Converge both workloads: the same path whatever the trigger.
    fn converge_all(&mut self, fw: &mut Framework<'_>, ev: &mut EventHandle) -> HandlerResult {
        let defer_passwords = if fw.model().is_leader()? {
            let step = crate::passwords::leader_step(self, fw)?;
            self.report_problem(step)
        } else {
            false
        };
        let redis = redis_server::converge(self, fw)?;
        let sentinel = sentinel::converge(self, fw)?;
        let defer_redis = self.report(redis);
        let defer_sentinel = self.report(sentinel);
        // Two units: the replica's second sentinel (see crate::witness).
        crate::witness::converge(self, fw)?;
        crate::passwords::apply_and_ack(self, fw, false)?;
        if fw.model().is_leader()? {
            // This unit's own acknowledgement may complete a rotation phase.
            crate::passwords::leader_step(self, fw)?;
            crate::passwords::apply_and_ack(self, fw, false)?;
        }
        client_relation::publish(self, fw)?;
        if defer_passwords || defer_redis || defer_sentinel {
            ev.defer();
        }
        Ok(())
    }

    /// The leader makes sure the passwords (in their secret, see [`crate::passwords`]) and
    /// the first primary are recorded.
    fn on_leader_elected(&mut self, fw: &mut Framework<'_>, ev: &mut EventHandle) -> HandlerResult {
        if !fw.model().is_leader()? {
            return Ok(());
        }
        let step = crate::passwords::leader_step(self, fw)?;
        if self.report_problem(step) {
            ev.defer();
            return Ok(());
        }
        let topo = self.topology(fw)?.clone();
        let Some(rel) = topo.peer_relation else {
            return Ok(());
        };
        let mut changes = std::collections::BTreeMap::new();
        if topo.peer.leader_host.is_none() {
            changes.insert(KEY_LEADER_HOST.to_string(), topo.fqdn.clone());
        } else {
            // A leader change: the record may be stale, refresh it from the sentinels.
            sentinel::refresh_leader_host(self, fw)?;
        }
        if fw.model().update_relation_data(rel, true, &changes)? {
            tracing::info!(keys = ?changes.keys().collect::<Vec<_>>(), "recorded peer app data");
            self.invalidate_topology();
        }
        crate::k8s::sync(self, fw)
    }

    fn on_config_changed(&mut self, fw: &mut Framework<'_>, ev: &mut EventHandle) -> HandlerResult {
        if let Err(e) = self.config(fw) {
            tracing::warn!(error = %e, "config invalid; not applying");
            return Ok(());
        }
        // Also upgrade-charm, which Juju runs when a pod is replaced: a leader whose pod
        // came back must not keep publishing itself as primary after a failover.
        if fw.model().is_leader()? {
            sentinel::refresh_leader_host(self, fw)?;
        }
        self.converge_all(fw, ev)?;
        crate::k8s::sync(self, fw)
    }

    fn on_peer_changed(&mut self, fw: &mut Framework<'_>, ev: &mut EventHandle) -> HandlerResult {
        if self.config(fw).is_err() {
            return Ok(());
        }
        if fw.model().is_leader()? {
            sentinel::refresh_leader_host(self, fw)?;
        }
        self.converge_all(fw, ev)?;
        crate::k8s::sync(self, fw)
    }

    /// A unit leaves. The departing unit hands over the primary role itself; the others
    /// forget it in their sentinel and converge.
    fn on_peer_departed(&mut self, fw: &mut Framework<'_>, ev: &mut EventHandle) -> HandlerResult {
        let topo = self.topology(fw)?.clone();
        if ev.departing_unit() == Some(fw.ctx.unit_name.as_str()) {
            match crate::switchover::step_down(
                &topo,
                &fw.ctx.app_name,
                &own_address(&topo),
                None,
                std::time::Duration::from_secs(10),
            ) {
                Ok(outcome) => tracing::info!(?outcome, "leaving: primary role"),
                Err(e) => {
                    tracing::warn!(error = %e, "leaving: could not hand over the primary role")
                }
            }
            return Ok(());
        }
        let quorum = Sentinel::expected_quorum(fw.model().planned_units()?);
        crate::switchover::forget_departed(&topo, &fw.ctx.app_name, quorum);
        self.on_peer_changed(fw, ev)
    }

    /// Health, and the leader's periodic refresh of `leader-host`: the fallback of the
    /// event-driven primary tracking ([`sentinel::on_custom_notice`]) on Juju before 3.6.25,
    /// which does not deliver the `redis` user's notices, and after a lost notice.
    fn on_update_status(&mut self, fw: &mut Framework<'_>, _ev: &mut EventHandle) -> HandlerResult {
        if self.config(fw).is_err() {
            return Ok(());
        }
        if fw.model().is_leader()? {
            // Also where a rotation's grace period ends.
            let step = crate::passwords::leader_step(self, fw)?;
            self.report_problem(step);
            sentinel::refresh_leader_host(self, fw)?;
            crate::k8s::sync(self, fw)?;
        } else {
            crate::k8s::forget_note(fw);
        }
        crate::passwords::apply_and_ack(self, fw, false)?;
        if fw.model().is_leader()? {
            client_relation::publish(self, fw)?;
        }
        redis_server::refresh_min_replicas(self, fw)?;
        crate::witness::converge(self, fw)?;
        let health = redis_server::health(self, fw)?;
        self.report(health);
        Ok(())
    }

    /// The active message: the role this hook converged to, so converging hooks and
    /// update-status agree and an unchanged status costs no `status-set`.
    pub fn role_message(&self) -> &'static str {
        if let Some(role) = self.converged_role {
            return role;
        }
        match &self.topology {
            Some(t) if t.peer.leader_host.as_deref() == Some(t.fqdn.as_str()) => "primary",
            Some(t) if t.peer.is_populated() => "replica",
            _ => "",
        }
    }

    fn collect_unit_status(&mut self, fw: &mut Framework<'_>) {
        // Only a hook that used the config reports on it (config-changed always follows a
        // config change), so hooks that never read it (install, actions) cost no config-get.
        if let Some(Err(e)) = self.config.get() {
            fw.add_status(StatusValue::blocked(e.to_string()));
        }
        let outcomes = std::mem::take(&mut self.outcomes);
        // The leader's note that the k8s Services are off (no `juju trust`), if any.
        let k8s_note = crate::k8s::status_note(fw);
        let with_note = |mut s: StatusValue| {
            if let (StatusName::Active, Some(note)) = (&s.status, &k8s_note) {
                s.message = match s.message.as_str() {
                    "" => note.clone(),
                    m => format!("{m}; {note}"),
                };
            }
            s
        };
        // Only worth probing when nothing more important is reported anyway.
        if self.health.active && outcomes.iter().all(|s| s.status == StatusName::Active) {
            let status = crate::health::active_status(self, fw);
            fw.add_status(with_note(status));
        }
        for s in outcomes {
            fw.add_status(with_note(s));
        }
    }
}

/// What Redis and Sentinel bind to: the pod's address (and loopback when that is not
/// loopback itself). Resolving our own pod name gives the pod IP in Kubernetes and the
/// unit's 127.0.0.x address in the local model, so one rule serves both.
pub fn bind_address(fqdn: &str) -> String {
    use std::net::ToSocketAddrs;
    match (fqdn, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()))
    {
        Some(addr) if addr.ip().is_loopback() => addr.ip().to_string(),
        Some(addr) => format!("{} 127.0.0.1", addr.ip()),
        None => "0.0.0.0".to_string(),
    }
}

/// Our own address for the charm's client connections (the first bind address).
pub fn own_address(topo: &Topology) -> String {
    topo.bind
        .split_whitespace()
        .next()
        .filter(|a| *a != "0.0.0.0")
        .unwrap_or("127.0.0.1")
        .to_string()
}
