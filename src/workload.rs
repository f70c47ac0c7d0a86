//! What the two workload containers share: a one-service layer run as the `redis` user, its
//! health check, and directories owned by `redis`. One place, so the redis and sentinel paths
//! cannot drift.

use crate::literals::REDIS_USER;
use crate::ops::pebble::{Check, ExecCheck, Layer, MakeDirOptions, Plan, Service};

/// How often a liveness probe runs, how long it may take, and how many failures in a row
/// make the check `down`: a hung server is reported within about 15 s, and one slow answer
/// (a big `KEYS`, a fork on a busy host) does not flap the status.
pub const CHECK_PERIOD: &str = "5s";
pub const CHECK_TIMEOUT: &str = "3s";
pub const CHECK_THRESHOLD: u32 = 3;

/// A layer with one `startup: enabled` service running `command` as redis:redis. `what` names
/// it in the summaries ("Redis" → "Redis layer", "Redis service"). No secrets go in here:
/// commands name config files only.
pub fn redis_user_layer(service: &str, what: &str, command: String) -> Layer {
    let mut layer = Layer {
        summary: Some(format!("{what} layer")),
        description: Some(format!("{what} layer")),
        ..Layer::default()
    };
    layer.services.insert(
        service.into(),
        Service {
            r#override: Some("replace".into()),
            summary: Some(format!("{what} service")),
            command: Some(command),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            startup: Some("enabled".into()),
            ..Service::default()
        },
    );
    layer
}

/// The health check of a Redis or Sentinel server listening on `host:port`: an `exec` of
/// `redis-cli -h <host> -p <port> QUIT`.
///
/// Why this probe:
/// - A `tcp` check would stay green on a hung server (a stopped or wedged process still has
///   its socket accepting connections into the backlog); this one needs the event loop to
///   answer, and fails on a timeout.
/// - `QUIT` is answered `+OK` before authentication, so the probe needs no password at all:
///   none in argv, in the plan or in a file a probe must read. (`PING` without a password
///   gets `NOAUTH`, whose exit code differs between redis-cli versions.)
///
/// Level `ready`, not `alive`: Juju points the pod's readiness probe at Pebble's
/// `level=ready` health and its liveness probe at `level=alive`. A hung server should take
/// the pod out of Service endpoints (clients stop reaching it) while Sentinel decides about
/// failover; a kubelet restart on top (liveness) could loop while a large dataset loads.
/// No `on-check-failure` either, for the same reason: Sentinel owns failover, and a Pebble
/// restart of a slow but live primary would drop its clients and unsynced writes (a crashed
/// process is already restarted by the service's default `on-failure: restart`).
pub fn server_check(host: &str, port: u16) -> Check {
    Check {
        r#override: Some("replace".into()),
        level: Some("ready".into()),
        period: Some(CHECK_PERIOD.into()),
        timeout: Some(CHECK_TIMEOUT.into()),
        threshold: Some(CHECK_THRESHOLD),
        exec: Some(ExecCheck {
            command: format!("redis-cli -h {host} -p {port} QUIT"),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            ..ExecCheck::default()
        }),
        ..Check::default()
    }
}

/// Whether every service and check of `layer` is in `plan` exactly as the layer has it
/// (then adding the layer again would change nothing).
pub fn layer_applied(plan: &Plan, layer: &Layer) -> bool {
    layer
        .services
        .iter()
        .all(|(name, s)| plan.services.get(name) == Some(s))
        && layer
            .checks
            .iter()
            .all(|(name, c)| plan.checks.get(name) == Some(c))
}

/// `make-dirs` options for a redis-owned directory with `mode` (parents created as needed).
pub fn redis_dir(mode: u32) -> MakeDirOptions {
    MakeDirOptions {
        make_parents: true,
        permissions: Some(mode),
        user: Some(REDIS_USER.into()),
        group: Some(REDIS_USER.into()),
        ..MakeDirOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_probes_the_given_server_without_a_password() {
        let c = server_check("10.1.2.3", 26379);
        let exec = c.exec.as_ref().expect("exec check");
        assert_eq!(exec.command, "redis-cli -h 10.1.2.3 -p 26379 QUIT");
        assert!(exec.environment.is_empty());
        assert_eq!(c.level.as_deref(), Some("ready"));
        assert_eq!(c.threshold, Some(3));
    }

    #[test]
    fn a_layer_is_applied_only_when_services_and_checks_match() {
        let mut layer = redis_user_layer("redis", "Redis", "redis-server x".into());
        let mut plan = Plan {
            services: layer.services.clone(),
            ..Plan::default()
        };
        assert!(layer_applied(&plan, &layer));
        layer
            .checks
            .insert("redis-up".into(), server_check("h", 6379));
        assert!(!layer_applied(&plan, &layer));
        plan.checks = layer.checks.clone();
        assert!(layer_applied(&plan, &layer));
        plan.checks
            .insert("redis-up".into(), server_check("other", 6379));
        assert!(!layer_applied(&plan, &layer));
    }
}
