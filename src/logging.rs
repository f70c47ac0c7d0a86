//! The `logging` relation (interface `loki_push_api`, requirer side): Redis and Sentinel logs
//! go to Loki through Pebble's own log forwarding, as Canonical's
//! `charms.loki_k8s.v1.loki_push_api` `LogForwarder` sets it up, instead of the Python
//! charm's `LogProxyConsumer`, which downloads promtail from GitHub at runtime (fails in
//! air-gapped sites) and never collected Sentinel's logs.
//!
//! # What goes into Pebble
//! Every unit (not only the leader: each pod's Pebble forwards its own services) adds, in both
//! workload containers, the layer `<container>-log-forwarding` (combined), with one log target
//! per Loki unit, named after that unit (`loki/0`), exactly as the library builds it:
//! `override: replace`, `type: loki`, `location: <the unit's push URL>`, `services: [all]`,
//! and the labels `product: Juju`, `charm`, `juju_model`, `juju_model_uuid`,
//! `juju_application`, `juju_unit` (Pebble adds `pebble_service` itself). A Loki unit that
//! is gone (departed, relation broken) gets `services: [-all]`, `location: (removed)` and no
//! labels: Pebble cannot delete a plan entry, so the target is switched off in place (the
//! library's `disable_inactive_endpoints`). Nothing secret is in a target; the layer is only
//! sent when it would change the plan.
//!
//! The push URL is each Loki unit's databag key `endpoint`, JSON `{"url": "..."}`. Unlike the
//! library, which drops a whole relation when one unit's data is missing or unreadable (and so
//! switches off its healthy units too), a unit whose `endpoint` is missing, not JSON, without a
//! string `url`, or not an `http(s)://` URL is logged and skipped on its own. The requirer
//! writes nothing into the relation (`LogForwarder` does not; the Python charm's leader wrote
//! `metadata` and empty `alert_rules`, which a refreshed unit leaves as they were).
//!
//! Differences from the library that fix its gaps: when the last Loki goes away (relation
//! broken, no endpoint left) the targets are switched off (the library returns early and keeps
//! forwarding to the departed Loki); and a restarted container (`<c>-pebble-ready`, whose
//! Pebble starts with an empty plan) and upgrade-charm get the targets back at once rather
//! than at the next relation event.
//!
//! # Redis's log file
//! Pebble forwards what services write to stdout/stderr. Sentinel logs to stdout already (no
//! `logfile` in sentinel.conf). redis-server logs to `/var/log/redis/redis-server.log`
//! (parity with the Python charm: operators and tooling read that file), and Redis writes to
//! one place only. Switching it to stdout would lose the file, and changing its command or
//! config would restart it (a restart of the primary is a failover). So the redis container
//! gets one more service, [`REDIS_LOG_SERVICE`]: `tail -n 0 -F <log file>` as the `redis`
//! user, whose output Pebble forwards like any service's. It is `startup: disabled` (a replan
//! never starts it, so a broken tail can never fail the replan that starts Redis) and started
//! by this module only while a Loki endpoint exists, stopped when the last one goes. `-F`
//! follows the file across rotation and waits for it to appear; `-n 0` sends only new lines,
//! so a restarted tail does not resend the whole file (lines written while it was down are
//! not sent: the file still has them). Redis itself is never touched.
//!
//! Assumption: the image has `tail`. The charmed-redis rock is built on `base: ubuntu@22.04`
//! (not `bare`), whose base layer has coreutils; if `tail` were missing, starting the service
//! fails, which is logged, and the other services' logs are still forwarded.
//!
//! # Events
//! `logging` relation-joined/changed/departed/broken and upgrade-charm converge both
//! containers; `<container>-pebble-ready` converges that container. Outside `logging` events,
//! with no Loki endpoint, nothing is asked of Pebble (a charm without the relation pays one
//! `relation-ids`). A container whose Pebble does not answer, or refuses, defers the event.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::charm::RedisK8sCharm;
use crate::literals::{LOG_FILE, REDIS_CONTAINER, REDIS_USER, SENTINEL_CONTAINER};
use crate::ops::context::JujuContext;
use crate::ops::framework::{EventHandle, Framework, HandlerResult};
use crate::ops::hookcmds::HookError;
use crate::ops::pebble::{Layer, LogTarget, Pebble, PebbleError, Plan, Service, ServiceAction};

/// The relation endpoint, as in `metadata.yaml` (and the library's default).
pub const LOGGING_RELATION: &str = "logging";
/// The Loki unit databag key holding `{"url": "<push API URL>"}`.
pub const KEY_ENDPOINT: &str = "endpoint";
/// The redis container's service that copies the Redis log file to its stdout.
pub const REDIS_LOG_SERVICE: &str = "redis-log";
/// The location the library gives a switched-off target.
pub const REMOVED_LOCATION: &str = "(removed)";
/// The `product` label the library puts on every target.
pub const PRODUCT_LABEL: &str = "Juju";
/// How long starting or stopping the tail service may take (Pebble's okay-delay is 1 s).
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest push URL accepted from relation data.
const MAX_URL_LEN: usize = 2048;

/// The label of the layer this module adds in `container` (the library's name).
pub fn layer_label(container: &str) -> String {
    format!("{container}-log-forwarding")
}

/// Why a Loki unit's `endpoint` is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("no \"endpoint\" key")]
    Missing,
    #[error("\"endpoint\" is not JSON: {0}")]
    NotJson(String),
    #[error("\"endpoint\" has no string \"url\"")]
    NoUrl,
    #[error("\"url\" is not an http(s) URL without spaces (at most {MAX_URL_LEN} bytes)")]
    BadUrl,
}

/// The push URL in a Loki unit's `endpoint` value.
pub fn parse_endpoint(raw: &str) -> Result<String, EndpointError> {
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| EndpointError::NotJson(e.to_string()))?;
    let url = v
        .get("url")
        .and_then(|u| u.as_str())
        .ok_or(EndpointError::NoUrl)?;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or(EndpointError::BadUrl)?;
    if rest.is_empty()
        || url.len() > MAX_URL_LEN
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(EndpointError::BadUrl);
    }
    Ok(url.to_string())
}

/// Every usable Loki push URL, by Loki unit name, over all `logging` relations (the broken
/// one is already hidden by the model). Unusable units are logged and skipped.
pub fn endpoints(fw: &Framework<'_>) -> Result<BTreeMap<String, String>, HookError> {
    let mut out = BTreeMap::new();
    for id in fw.model().relation_ids(LOGGING_RELATION)? {
        for unit in fw.model().relation_units(id)? {
            let bag = fw.model().relation_data(id, &unit, false)?;
            let parsed = bag
                .get(KEY_ENDPOINT)
                .ok_or(EndpointError::Missing)
                .and_then(|raw| parse_endpoint(raw));
            match parsed {
                Ok(url) => {
                    out.insert(unit, url);
                }
                Err(e) => {
                    tracing::warn!(relation = id, unit = %unit, error = %e, "ignoring a Loki unit's endpoint")
                }
            }
        }
    }
    Ok(out)
}

/// The labels of every forwarded line: the library's set, from the Juju topology.
pub fn topology_labels(ctx: &JujuContext) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("product".to_string(), PRODUCT_LABEL.to_string()),
        ("charm".to_string(), crate::metrics::CHARM_NAME.to_string()),
        ("juju_model".to_string(), ctx.model_name.clone()),
        ("juju_model_uuid".to_string(), ctx.model_uuid.clone()),
        ("juju_application".to_string(), ctx.app_name.clone()),
        ("juju_unit".to_string(), ctx.unit_name.clone()),
    ])
}

/// A target forwarding every service of the container to `location`.
pub fn enabled_target(location: &str, labels: &BTreeMap<String, String>) -> LogTarget {
    LogTarget {
        r#override: Some("replace".into()),
        target_type: Some("loki".into()),
        location: Some(location.into()),
        services: vec!["all".into()],
        labels: labels.clone(),
    }
}

/// A switched-off target (what the library writes for a Loki unit that is gone).
pub fn disabled_target() -> LogTarget {
    LogTarget {
        r#override: Some("replace".into()),
        target_type: Some("loki".into()),
        location: Some(REMOVED_LOCATION.into()),
        services: vec!["-all".into()],
        labels: BTreeMap::new(),
    }
}

/// The redis container's `tail` of the Redis log file (see the module doc).
pub fn redis_log_service() -> Service {
    Service {
        r#override: Some("replace".into()),
        summary: Some("Redis log file to stdout, for Pebble log forwarding".into()),
        command: Some(format!("tail -n 0 -F {LOG_FILE}")),
        startup: Some("disabled".into()),
        user: Some(REDIS_USER.into()),
        group: Some(REDIS_USER.into()),
        ..Service::default()
    }
}

/// A target as the plan has it, compared without `override` (a combined plan need not
/// keep it).
fn same_target(planned: Option<&serde_yaml::Value>, wanted: &LogTarget) -> bool {
    let Some(mut have) = planned.and_then(LogTarget::from_value) else {
        return false;
    };
    have.r#override = wanted.r#override.clone();
    have == *wanted
}

/// What to add to `container`'s plan so it forwards to exactly `endpoints`; `None` when the
/// plan already does.
pub fn desired_layer(
    container: &str,
    plan: &Plan,
    endpoints: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Option<Layer> {
    let mut layer = Layer {
        summary: Some("Log forwarding to Loki".into()),
        description: Some("Pebble log targets from the logging relation".into()),
        ..Layer::default()
    };
    for (unit, url) in endpoints {
        let target = enabled_target(url, labels);
        if !same_target(plan.log_targets.get(unit), &target) {
            layer.log_targets.insert(unit.clone(), target.to_value());
        }
    }
    for (name, value) in &plan.log_targets {
        if endpoints.contains_key(name) {
            continue;
        }
        let off =
            LogTarget::from_value(value).is_some_and(|t| t.services.iter().any(|s| s == "-all"));
        if !off {
            layer
                .log_targets
                .insert(name.clone(), disabled_target().to_value());
        }
    }
    if container == REDIS_CONTAINER
        && (!endpoints.is_empty() || plan.services.contains_key(REDIS_LOG_SERVICE))
    {
        let svc = redis_log_service();
        if plan.services.get(REDIS_LOG_SERVICE) != Some(&svc) {
            layer.services.insert(REDIS_LOG_SERVICE.into(), svc);
        }
    }
    (!layer.log_targets.is_empty() || !layer.services.is_empty()).then_some(layer)
}

/// Bring one container's log targets (and, in the redis container, the tail service) in
/// line with `endpoints`. Returns whether the layer changed.
pub fn apply(
    pebble: &dyn Pebble,
    container: &str,
    endpoints: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> Result<bool, PebbleError> {
    let plan = pebble.get_plan()?;
    let layer = desired_layer(container, &plan, endpoints, labels);
    if let Some(layer) = &layer {
        pebble.add_layer(&layer_label(container), layer, true)?;
        tracing::info!(
            container,
            targets = ?layer.log_targets.keys().collect::<Vec<_>>(),
            "updated the Pebble log targets"
        );
    }
    let has_tail = plan.services.contains_key(REDIS_LOG_SERVICE)
        || layer
            .as_ref()
            .is_some_and(|l| l.services.contains_key(REDIS_LOG_SERVICE));
    if container == REDIS_CONTAINER && has_tail {
        let running = pebble
            .services(&[REDIS_LOG_SERVICE])?
            .iter()
            .any(|s| s.is_running());
        let action = match (endpoints.is_empty(), running) {
            (false, false) => Some(ServiceAction::Start),
            (true, true) => Some(ServiceAction::Stop),
            _ => None,
        };
        if let Some(action) = action {
            match pebble.service_action_and_wait(action, &[REDIS_LOG_SERVICE], SERVICE_TIMEOUT) {
                Ok(_) => tracing::info!(action = action.as_str(), "redis log forwarding service"),
                // A failed start (no `tail` in the image?) must not fail the hook: the other
                // services' logs are still forwarded.
                Err(e @ PebbleError::ChangeFailed { .. }) => tracing::warn!(
                    action = action.as_str(),
                    error = %e,
                    "could not change the redis log forwarding service"
                ),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(layer.is_some())
}

/// Handler for `logging` relation-joined/changed/departed/broken, upgrade-charm and both
/// containers' pebble-ready: converge the log targets of the affected containers.
pub fn on_event(
    _charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    ev: &mut EventHandle,
) -> HandlerResult {
    let containers: Vec<&str> = match ev.container() {
        Some(c) if c == REDIS_CONTAINER => vec![REDIS_CONTAINER],
        Some(c) if c == SENTINEL_CONTAINER => vec![SENTINEL_CONTAINER],
        Some(_) => return Ok(()),
        None => vec![REDIS_CONTAINER, SENTINEL_CONTAINER],
    };
    let endpoints = endpoints(fw)?;
    // A relation event may have removed a target that is still in a plan; otherwise, with
    // no endpoint there is nothing to switch off (a restarted container comes back with an
    // empty plan), so an unrelated charm pays no Pebble call here.
    let must_reach = !endpoints.is_empty() || ev.relation_name() == Some(LOGGING_RELATION);
    if !must_reach {
        return Ok(());
    }
    let labels = topology_labels(fw.ctx);
    let mut defer = false;
    for c in containers {
        let pebble = fw.container(c);
        match apply(&*pebble, c, &endpoints, &labels) {
            Ok(_) => {}
            Err(e) if e.is_connection() => {
                tracing::info!(container = c, error = %e, "Pebble not reachable for log forwarding");
                defer = true;
            }
            Err(e) => {
                tracing::warn!(container = c, error = %e, "could not update log forwarding");
                defer = true;
            }
        }
    }
    if defer {
        ev.defer();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("juju_unit".to_string(), "redis-k8s/0".to_string())])
    }

    #[test]
    fn endpoints_parse_or_say_why_not() {
        assert_eq!(
            parse_endpoint(r#"{"url": "http://loki-0.loki:3100/loki/api/v1/push"}"#),
            Ok("http://loki-0.loki:3100/loki/api/v1/push".to_string())
        );
        assert!(parse_endpoint(r#"{"url": "https://l/x"}"#).is_ok());
        assert!(matches!(
            parse_endpoint("not json"),
            Err(EndpointError::NotJson(_))
        ));
        assert_eq!(
            parse_endpoint(r#"{"uri": "http://x"}"#),
            Err(EndpointError::NoUrl)
        );
        assert_eq!(parse_endpoint(r#"{"url": 3}"#), Err(EndpointError::NoUrl));
        assert_eq!(parse_endpoint(r#"["http://x"]"#), Err(EndpointError::NoUrl));
        for bad in ["ftp://x", "http://", "http://a b", "http://a\nb", "/loki"] {
            let raw = serde_json::json!({ "url": bad }).to_string();
            assert_eq!(parse_endpoint(&raw), Err(EndpointError::BadUrl), "{bad:?}");
        }
    }

    #[test]
    fn logs_to_reads_services_left_to_right_like_pebble() {
        let t = |s: &[&str]| LogTarget {
            services: s.iter().map(|x| x.to_string()).collect(),
            ..LogTarget::default()
        };
        assert!(t(&["all"]).logs_to("redis"));
        assert!(!t(&["-all"]).logs_to("redis"));
        assert!(!t(&[]).logs_to("redis"));
        assert!(!t(&["all", "-redis"]).logs_to("redis"));
        assert!(t(&["all", "-redis"]).logs_to("sentinel"));
        assert!(t(&["-all", "redis"]).logs_to("redis"));
        assert!(!t(&["redis", "-all"]).logs_to("redis"));
    }

    #[test]
    fn a_new_endpoint_adds_a_target_and_the_tail_in_the_redis_container_only() {
        let eps = BTreeMap::from([("loki/0".to_string(), "http://l:3100/p".to_string())]);
        let layer = desired_layer(REDIS_CONTAINER, &Plan::default(), &eps, &labels()).unwrap();
        let t = LogTarget::from_value(&layer.log_targets["loki/0"]).unwrap();
        assert_eq!(t, enabled_target("http://l:3100/p", &labels()));
        assert_eq!(layer.services[REDIS_LOG_SERVICE], redis_log_service());
        let layer = desired_layer(SENTINEL_CONTAINER, &Plan::default(), &eps, &labels()).unwrap();
        assert!(layer.services.is_empty());
        assert_eq!(layer.log_targets.len(), 1);
    }

    #[test]
    fn an_applied_plan_needs_nothing_and_a_gone_unit_is_switched_off_once() {
        let eps = BTreeMap::from([("loki/0".to_string(), "http://l:3100/p".to_string())]);
        let mut plan = Plan::default();
        let layer = desired_layer(REDIS_CONTAINER, &plan, &eps, &labels()).unwrap();
        crate::ops::pebble::plan::merge_layer(&mut plan, &layer);
        assert_eq!(desired_layer(REDIS_CONTAINER, &plan, &eps, &labels()), None);

        let none = BTreeMap::new();
        let off = desired_layer(REDIS_CONTAINER, &plan, &none, &labels()).unwrap();
        assert_eq!(
            LogTarget::from_value(&off.log_targets["loki/0"]).unwrap(),
            disabled_target()
        );
        // The tail's definition is unchanged (it is stopped, not redefined).
        assert!(off.services.is_empty());
        crate::ops::pebble::plan::merge_layer(&mut plan, &off);
        assert_eq!(
            desired_layer(REDIS_CONTAINER, &plan, &none, &labels()),
            None
        );
    }

    #[test]
    fn the_tail_follows_the_parity_log_file_as_redis() {
        let s = redis_log_service();
        assert_eq!(
            s.command.as_deref(),
            Some("tail -n 0 -F /var/log/redis/redis-server.log")
        );
        assert_eq!(s.startup.as_deref(), Some("disabled"));
        assert_eq!(s.user.as_deref(), Some("redis"));
    }
}
