//! Scenario tests of health (state in, event, state out on the in-memory hook tools and
//! Pebble): the checks and the exporter in the layers pushed to Pebble, the exporter's
//! password file, the check-failed / check-recovered handlers and the status they leave.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redis_k8s::health::{EXPORTER_PASSWORD_PATH, EXPORTER_SERVICE, REDIS_CHECK, SENTINEL_CHECK};
use redis_k8s::ops::hookcmds::{StatusName, StatusValue};
use redis_k8s::ops::pebble::Pebble;
use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::{MemoryPebble, MemoryPebbleProvider};
use redis_k8s::ops::testing::world::World;

mod scenario_support;
use scenario_support::*;

/// A deployed unit: passwords recorded, both containers converged.
fn deployed<'p>(w: &Arc<Mutex<World>>, pebble: &'p MemoryPebbleProvider) -> Scenario<'p> {
    let mut s = scenario(w, U0, pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "redis-pebble-ready");
    run(&mut s, "sentinel-pebble-ready");
    s
}

/// Run `<container>-pebble-check-<kind>` for `check` the way Juju 3.6 does (the harness
/// has no check fields, so the workload and check variables are added here); commits on
/// success like a hook's exit code. Returns whether the dispatch succeeded.
fn check_hook(s: &mut Scenario<'_>, container: &str, kind: &str, check: &str) -> bool {
    run_with_env(
        s,
        &format!("{container}-pebble-check-{kind}"),
        &[
            ("JUJU_WORKLOAD_NAME", container),
            ("JUJU_PEBBLE_CHECK_NAME", check),
        ],
    )
}

/// Every password the unit knows (from the password action, which reads them wherever they
/// are kept).
fn passwords(w: &Arc<Mutex<World>>) -> Vec<String> {
    let mut out: Vec<String> = bag(w, APP)
        .into_iter()
        .filter(|(k, _)| k.ends_with("password"))
        .map(|(_, v)| v)
        .collect();
    let w = w.lock().unwrap();
    for sid in w.secret_ids(Some(APP)) {
        if let Some(c) = w.secret_content(&sid) {
            out.extend(
                c.into_iter()
                    .filter(|(k, _)| k.contains("password"))
                    .map(|(_, v)| v),
            );
        }
    }
    out.retain(|p| p.len() >= 16);
    assert!(!out.is_empty(), "no password recorded");
    out
}

#[test]
fn the_layers_carry_password_free_checks_and_the_exporter() {
    let w = world(1);
    let pebble = containers();
    deployed(&w, &pebble);
    let redis = pebble.get("redis");
    let plan = redis.plan();

    let check = &plan.checks[REDIS_CHECK];
    assert_eq!(check.level.as_deref(), Some("ready"));
    assert_eq!(check.threshold, Some(3));
    let exec = check.exec.as_ref().expect("an exec check");
    assert!(
        exec.command.starts_with("redis-cli -h ") && exec.command.ends_with(" -p 6379 QUIT"),
        "{}",
        exec.command
    );
    assert!(exec.environment.is_empty());
    // No automatic restart on a failing check: Sentinel owns failover.
    assert!(plan
        .services
        .values()
        .all(|s| s.on_check_failure.is_empty()));

    let exporter = &plan.services[EXPORTER_SERVICE];
    let cmd = exporter.command.as_deref().unwrap();
    assert!(
        cmd.starts_with("/bin/redis_exporter --redis.addr=redis://"),
        "{cmd}"
    );
    assert!(cmd.contains(&format!("--redis.password-file={EXPORTER_PASSWORD_PATH}")));
    assert!(cmd.contains(":9121"), "{cmd}");
    assert!(
        exporter.environment.is_empty(),
        "{:?}",
        exporter.environment
    );
    assert_eq!(exporter.user.as_deref(), Some("redis"));
    // Started by the charm after Redis, never by a replan that could fail because of it.
    assert_eq!(exporter.startup.as_deref(), Some("disabled"));
    assert_eq!(
        redis.service_state(EXPORTER_SERVICE).as_deref(),
        Some("active")
    );
    assert_eq!(redis.service_state("redis").as_deref(), Some("active"));

    // The password is in the 0600 redis-owned file, keyed by the scraped URI; in no plan.
    let file = redis.file(EXPORTER_PASSWORD_PATH).expect("password file");
    assert_eq!(
        (file.permissions, file.user.as_str(), file.group.as_str()),
        (0o600, "redis", "redis")
    );
    let map: BTreeMap<String, String> = serde_json::from_slice(&file.content).unwrap();
    let target = cmd
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--redis.addr="))
        .unwrap();
    let pw = &map[target];
    assert!(passwords(&w).contains(pw));
    let sentinel = pebble.get("sentinel");
    for p in passwords(&w) {
        assert!(!plan.to_yaml().contains(&p));
        assert!(!sentinel.plan().to_yaml().contains(&p));
    }

    let splan = sentinel.plan();
    let scheck = &splan.checks[SENTINEL_CHECK];
    assert!(scheck
        .exec
        .as_ref()
        .is_some_and(|e| e.command.ends_with(" -p 26379 QUIT")));
    assert_eq!(scheck.level.as_deref(), Some("ready"));
    assert!(!splan.services.contains_key(EXPORTER_SERVICE));
}

#[test]
fn a_missing_exporter_does_not_hold_up_redis_or_the_hook() {
    let w = world(1);
    let pebble = containers();
    pebble.get("redis").set_service_start_failure(
        EXPORTER_SERVICE,
        Some("cannot start service: exec: \"/bin/redis_exporter\": executable file not found in $PATH"),
    );
    let mut s = deployed(&w, &pebble);
    let redis = pebble.get("redis");
    assert_eq!(redis.service_state("redis").as_deref(), Some("active"));
    assert_ne!(
        redis.service_state(EXPORTER_SERVICE).as_deref(),
        Some("active")
    );
    assert_eq!(
        status(&w, U0).status,
        StatusName::Active,
        "{:?}",
        status(&w, U0)
    );
    // Nothing deferred for it, and the next hook simply tries again.
    assert!(s.state.stored.notices.is_empty());
    redis.set_service_start_failure(EXPORTER_SERVICE, None);
    run(&mut s, "config-changed");
    assert_eq!(
        redis.service_state(EXPORTER_SERVICE).as_deref(),
        Some("active")
    );
}

#[test]
fn an_existing_sentinel_gets_its_check_without_a_restart_or_a_config_rewrite() {
    let w = world(1);
    let pebble = containers();
    let mut s = deployed(&w, &pebble);
    let sentinel = pebble.get("sentinel");
    // As a deployment of the previous revision left it: the same service, no check.
    let mut old = sentinel.plan();
    old.checks.clear();
    old.services.get_mut("sentinel").unwrap().r#override = Some("replace".into());
    let fresh = MemoryPebble::new();
    fresh.add_layer("sentinel", &old, true).unwrap();
    fresh.replan(std::time::Duration::from_secs(5)).unwrap();
    let conf = "# rewritten by sentinel\n";
    fresh.seed_file(SENTINEL_CONF, conf.as_bytes());
    pebble.insert("sentinel", fresh);
    let sentinel = pebble.get("sentinel");
    assert!(sentinel.plan().checks.is_empty());
    sentinel.clear_calls();

    run(&mut s, "config-changed");
    let calls = sentinel.calls();
    assert!(
        sentinel.plan().checks.contains_key(SENTINEL_CHECK),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("replan") || c.starts_with("push") || c.contains("restart")),
        "{calls:?}"
    );
    assert_eq!(sentinel.file(SENTINEL_CONF).unwrap().text(), conf);
}

#[test]
fn a_failed_check_names_itself_in_the_status_and_is_not_deferred() {
    let w = world(1);
    let pebble = containers();
    let mut s = deployed(&w, &pebble);
    assert_eq!(status(&w, U0).status, StatusName::Active);

    pebble.get("redis").set_check_status(REDIS_CHECK, "down");
    assert!(check_hook(&mut s, "redis", "failed", REDIS_CHECK));
    assert_eq!(
        status(&w, U0),
        StatusValue::waiting("redis check failing: redis-up")
    );
    assert!(s.state.stored.notices.is_empty(), "never deferred");

    // Both down: both named (the sentinel's own hook).
    pebble
        .get("sentinel")
        .set_check_status(SENTINEL_CHECK, "down");
    assert!(check_hook(&mut s, "sentinel", "failed", SENTINEL_CHECK));
    assert_eq!(
        status(&w, U0),
        StatusValue::waiting("redis check failing: redis-up, sentinel check failing: sentinel-up")
    );

    // update-status keeps saying so (Pebble's view, not a memory of the hook).
    run(&mut s, "update-status");
    assert_eq!(
        status(&w, U0).message,
        "redis check failing: redis-up, sentinel check failing: sentinel-up"
    );
}

#[test]
fn a_failed_check_is_reported_even_when_pebble_cannot_be_asked() {
    let w = world(1);
    let pebble = containers();
    let mut s = deployed(&w, &pebble);
    pebble.get("sentinel").set_can_connect(false);
    assert!(check_hook(&mut s, "sentinel", "failed", SENTINEL_CHECK));
    assert_eq!(
        status(&w, U0),
        StatusValue::waiting("sentinel check failing: sentinel-up")
    );
}

#[test]
fn a_failed_hook_for_a_check_that_is_up_again_reports_the_current_state() {
    let w = world(1);
    let pebble = containers();
    let mut s = deployed(&w, &pebble);
    // The check flapped back before the hook ran: Pebble's current view wins.
    assert!(check_hook(&mut s, "redis", "failed", REDIS_CHECK));
    assert_eq!(status(&w, U0), StatusValue::active("primary"));
}

#[test]
fn a_recovered_check_converges_again_and_restores_the_active_status() {
    let w = world(1);
    let pebble = containers();
    let mut s = deployed(&w, &pebble);
    let redis = pebble.get("redis");
    redis.set_check_status(REDIS_CHECK, "down");
    assert!(check_hook(&mut s, "redis", "failed", REDIS_CHECK));
    assert_eq!(status(&w, U0).status, StatusName::Waiting);

    // Redis died meanwhile (Pebble gave up restarting it); the check comes back up.
    redis.set_service_state("redis", "error");
    redis.set_service_state(EXPORTER_SERVICE, "inactive");
    redis.set_check_status(REDIS_CHECK, "up");
    redis.clear_calls();
    assert!(check_hook(&mut s, "redis", "recovered", REDIS_CHECK));
    assert_eq!(redis.service_state("redis").as_deref(), Some("active"));
    assert_eq!(
        redis.service_state(EXPORTER_SERVICE).as_deref(),
        Some("active")
    );
    assert!(redis.calls().iter().any(|c| c.starts_with("replan")));
    // No real Redis answers in a scenario: the role this hook converged to.
    assert_eq!(status(&w, U0), StatusValue::active("primary"));
    assert!(s.state.stored.notices.is_empty());
}

#[test]
fn the_exporter_password_file_is_rewritten_and_the_exporter_restarted_only_on_change() {
    let pebble = MemoryPebble::new();
    let p: &dyn Pebble = &pebble;
    p.make_dir("/etc/redis-server", &redis_k8s::workload::redis_dir(0o750))
        .unwrap();
    assert!(redis_k8s::health::push_exporter_password(p, "10.0.0.1", Some("a")).unwrap());
    assert!(!redis_k8s::health::push_exporter_password(p, "10.0.0.1", Some("a")).unwrap());
    assert!(redis_k8s::health::push_exporter_password(p, "10.0.0.1", Some("b")).unwrap());
    assert!(redis_k8s::health::push_exporter_password(p, "10.0.0.2", Some("b")).unwrap());
    let file = pebble.file(EXPORTER_PASSWORD_PATH).unwrap();
    assert_eq!(file.text(), r#"{"redis://10.0.0.2:6379":"b"}"#);

    let mut layer = redis_k8s::ops::pebble::Layer::default();
    layer.services.insert(
        EXPORTER_SERVICE.into(),
        redis_k8s::health::exporter_service("10.0.0.2"),
    );
    pebble.add_layer("redis", &layer, true).unwrap();
    pebble.set_service_start_failure(EXPORTER_SERVICE, None);
    redis_k8s::health::ensure_exporter(p, false);
    assert_eq!(
        pebble.service_state(EXPORTER_SERVICE).as_deref(),
        Some("active")
    );
    pebble.clear_calls();
    redis_k8s::health::ensure_exporter(p, false);
    assert!(
        !pebble.calls().iter().any(|c| c.contains("start")),
        "{:?}",
        pebble.calls()
    );
    redis_k8s::health::ensure_exporter(p, true);
    assert!(
        pebble.calls().iter().any(|c| c.contains("restart")),
        "{:?}",
        pebble.calls()
    );
}

#[test]
fn check_hooks_are_registered_for_both_containers() {
    let w = world(1);
    let pebble = containers();
    let mut s = deployed(&w, &pebble);
    for c in ["redis", "sentinel"] {
        let check = if c == "redis" {
            REDIS_CHECK
        } else {
            SENTINEL_CHECK
        };
        pebble.get(c).set_check_status(check, "down");
        assert!(check_hook(&mut s, c, "failed", check));
        assert!(
            status(&w, U0)
                .message
                .contains(&format!("{c} check failing: {check}")),
            "{:?}",
            status(&w, U0)
        );
        pebble.get(c).set_check_status(check, "up");
        assert!(check_hook(&mut s, c, "recovered", check));
        assert_eq!(
            status(&w, U0).status,
            StatusName::Active,
            "{:?}",
            status(&w, U0)
        );
    }
}

/// The status builders against real processes: our own sentinel unreachable, answering
/// but not monitoring the app yet, and monitoring it with its quorum; and a real primary's
/// `INFO replication`.
#[test]
fn sentinel_and_replication_views_from_real_processes() {
    use redis_k8s::health::{ask_own_sentinel, replication_summary, SentinelHealth};
    use redis_k8s::redis_client::RedisConn;
    let host = "127.0.98.1";
    assert_eq!(
        ask_own_sentinel(host, "spw", APP),
        SentinelHealth::Unreachable
    );

    let dir = tempfile::tempdir().unwrap();
    let _redis = plain_redis(host, Some("rpw"), dir.path());
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "bind {host}\nport 26379\nrequirepass spw\ndir {}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let _sentinel = spawn("redis-server", &[conf.to_str().unwrap(), "--sentinel"]);
    wait_port(host, 26379);

    assert_eq!(ask_own_sentinel(host, "spw", APP), SentinelHealth::NotReady);
    assert_eq!(
        ask_own_sentinel(host, "wrong", APP),
        SentinelHealth::Unreachable,
        "a refused login is not an answer"
    );

    let mut s = RedisConn::connect(host, 26379, Some("spw")).unwrap();
    s.command(&["SENTINEL", "MONITOR", APP, host, "6379", "1"])
        .unwrap();
    s.command(&["SENTINEL", "SET", APP, "auth-pass", "rpw"])
        .unwrap();
    assert_eq!(
        ask_own_sentinel(host, "spw", APP),
        SentinelHealth::Answered {
            quorum: true,
            failover: false
        }
    );
    // A quorum no sentinel set can reach.
    s.command(&["SENTINEL", "SET", APP, "quorum", "3"]).unwrap();
    assert_eq!(
        ask_own_sentinel(host, "spw", APP),
        SentinelHealth::Answered {
            quorum: false,
            failover: false
        }
    );

    let info = RedisConn::connect(host, 6379, Some("rpw"))
        .unwrap()
        .info("replication")
        .unwrap();
    assert_eq!(
        replication_summary(&info).as_deref(),
        Some("primary, no replica online")
    );
}

/// The two-unit witness's check (`sentinel-witness-up`): a running witness whose plan
/// predates it gets it (started), its failure is named in the status like the others and
/// its recovery clears it, and it is stopped with the witness (after a scale-up), so a
/// witness stopped on purpose never reads as a failing check.
#[test]
fn the_witness_check_is_added_reported_and_stopped_with_the_witness() {
    use redis_k8s::ops::pebble::ServiceAction;
    use redis_k8s::witness::{witness_layer, WITNESS_CHECK, WITNESS_CONFIG_PATH, WITNESS_SERVICE};
    let w = world(2);
    let pebble0 = containers();
    let _s0 = deployed(&w, &pebble0);
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    run(&mut s1, "redis-pebble-ready");
    run(&mut s1, "sentinel-pebble-ready");
    // A witness started by the previous charm version: its layer has no check.
    let sent = pebble1.get("sentinel");
    let mut old = witness_layer("127.0.0.1");
    old.checks.clear();
    sent.add_layer(WITNESS_SERVICE, &old, true).unwrap();
    sent.seed_file(WITNESS_CONFIG_PATH, b"port 26380\n");
    sent.service_action(ServiceAction::Start, &[WITNESS_SERVICE])
        .unwrap();
    sent.set_service_state(WITNESS_SERVICE, "active");
    set_bag(&w, U1, &[("witness", "running")]);
    let witness_check = |p: &MemoryPebble| {
        let c = p.checks(None, &[WITNESS_CHECK]).unwrap();
        c.first().map(|c| c.status.clone())
    };
    assert_eq!(witness_check(&sent), None);

    run(&mut s1, "update-status");
    assert_eq!(
        witness_check(&sent).as_deref(),
        Some("up"),
        "added and started"
    );
    let probe = sent.plan().checks[WITNESS_CHECK]
        .exec
        .as_ref()
        .unwrap()
        .command
        .clone();
    assert!(
        probe.starts_with("redis-cli -h ") && probe.ends_with(" -p 26380 QUIT"),
        "{probe}"
    );
    assert_eq!(
        sent.service_state(WITNESS_SERVICE).as_deref(),
        Some("active"),
        "the witness kept running"
    );
    let before = status(&w, U1);
    assert!(!before.message.contains("failing"), "{before:?}");

    // It fails: named at once, and update-status keeps saying so.
    sent.set_check_status(WITNESS_CHECK, "down");
    assert!(check_hook(&mut s1, "sentinel", "failed", WITNESS_CHECK));
    assert_eq!(
        status(&w, U1),
        StatusValue::waiting("sentinel check failing: sentinel-witness-up")
    );
    run(&mut s1, "update-status");
    assert_eq!(
        status(&w, U1).message,
        "sentinel check failing: sentinel-witness-up"
    );
    // A down check is running: it is not restarted behind Pebble's back.
    assert_eq!(witness_check(&sent).as_deref(), Some("down"));

    // It recovers: the status is the normal one again.
    sent.set_check_status(WITNESS_CHECK, "up");
    assert!(check_hook(&mut s1, "sentinel", "recovered", WITNESS_CHECK));
    let after = status(&w, U1);
    assert!(!after.message.contains("check failing"), "{after:?}");
    assert_ne!(after.status, StatusName::Blocked, "{after:?}");

    // A third unit: the witness goes, and its check with it.
    w.lock().unwrap().add_unit(APP).unwrap();
    run(&mut s1, "update-status");
    assert_ne!(
        sent.service_state(WITNESS_SERVICE).as_deref(),
        Some("active")
    );
    assert_eq!(witness_check(&sent).as_deref(), Some("inactive"));
    assert!(!status(&w, U1).message.contains("failing"));
}
