//! Scenario tests (state in, event, state out) for the handler branches the other scenario
//! files do not cover; the audit that maps each `(event, handler)` of
//! `RedisK8sCharm::register` and its branches to a test is `docs/handlers.md`.
//!
//! Redis-dependent branches run against real `redis-server` / `redis-sentinel` /
//! `prometheus-redis-exporter` processes on 127.0.93.x, each killed by a drop guard.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::health::{EXPORTER_PASSWORD_PATH, EXPORTER_SERVICE};
use redis_k8s::ops::hookcmds::{StatusName, StatusValue};
use redis_k8s::ops::testing::world::HookInfo;

mod scenario_support;
use scenario_support::*;

// ----- task: the exporter scrapes in both auth modes -------------------------------------

/// The exporter service and password file the charm produced, run for real against a real
/// redis-server started from the charm's redis.conf: `redis_up 1` with `allow-no-auth`
/// (a `nopass` default user refuses the one-argument AUTH) and without it.
fn exporter_scrapes(no_auth: bool, host: &str) {
    const EXPORTER: &str = "/usr/bin/prometheus-redis-exporter";
    if !Path::new(EXPORTER).exists() {
        eprintln!("skipping: {EXPORTER} not installed");
        return;
    }
    let w = world(1);
    set_config(&w, &[("allow-no-auth", serde_json::Value::Bool(no_auth))]);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "redis-pebble-ready");
    let redis = pebble.get("redis");
    let conf = redis.file(CONF).expect("redis.conf pushed").text();
    assert_eq!(
        conf.contains("user default on nopass"),
        no_auth,
        "the rendered default user: {conf}"
    );
    let plan = redis.plan();
    let cmd = plan.services[EXPORTER_SERVICE]
        .command
        .clone()
        .expect("exporter command");
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let target = words
        .iter()
        .find_map(|w| w.strip_prefix("--redis.addr="))
        .expect("--redis.addr")
        .to_string();
    let file = redis
        .file(EXPORTER_PASSWORD_PATH)
        .expect("exporter password file")
        .text();
    let map: BTreeMap<String, String> = serde_json::from_str(&file).unwrap();
    assert!(map.contains_key(&target), "{file}");

    // The same command and file, moved onto our scratch address and paths.
    let dir = tempfile::tempdir().unwrap();
    let _redis = redis_from_rendered(&conf, host, dir.path());
    let our_target = format!("redis://{host}:6379");
    let pw_file = dir.path().join("exporter-password.json");
    std::fs::write(
        &pw_file,
        file.replace(&target, &our_target).replace("\\/", "/"),
    )
    .unwrap();
    let args = rewrite_prefixed(
        words[1..].iter().copied(),
        &[
            ("--redis.addr=", format!("--redis.addr={our_target}")),
            (
                "--redis.password-file=",
                format!("--redis.password-file={}", pw_file.display()),
            ),
            (
                "--web.listen-address=",
                format!("--web.listen-address={host}:9121"),
            ),
        ],
    );
    let _exporter = spawn(EXPORTER, &args);
    wait_port(host, 9121);
    let metrics = scrape(host, 9121);
    assert!(
        metrics.lines().any(|l| l == "redis_up 1"),
        "no_auth={no_auth}: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("redis_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Its INFO came through: the real server's role.
    assert!(
        metrics.contains("redis_instance_info{"),
        "no instance info scraped"
    );
}

#[test]
fn exporter_scrapes_with_allow_no_auth() {
    exporter_scrapes(true, "127.0.93.1");
}

#[test]
fn exporter_scrapes_with_passwords() {
    exporter_scrapes(false, "127.0.93.2");
}

// ----- task: a non-leader that cannot read the passwords secret ---------------------------

#[test]
fn update_status_on_a_non_leader_names_an_unreadable_passwords_secret() {
    let w = world(2);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    run(&mut s1, "config-changed");
    assert_eq!(
        status(&w, U1).status,
        StatusName::Active,
        "{:?}",
        status(&w, U1)
    );

    // The reference now names a secret this unit cannot read (removed, or never granted).
    set_bag(
        &w,
        APP,
        &[("passwords-secret", "secret:d0000000000000000000")],
    );
    run(&mut s1, "update-status");
    assert_eq!(
        status(&w, U1),
        StatusValue::waiting("Waiting for passwords: cannot read the passwords secret (not found)")
    );
    // Nothing was rewritten with a made-up password, and update-status is never deferred.
    assert!(s1.state.stored.notices.is_empty());
    assert_eq!(
        bag(&w, APP)["passwords-secret"],
        "secret:d0000000000000000000"
    );
}

// ----- task: a stalled rotation is in the leader's status ----------------------------------

#[test]
fn a_rotation_waiting_for_a_unit_names_it_in_the_leaders_status() {
    let w = world(3);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    run(&mut s0, "config-changed");
    assert_eq!(status(&w, U0), StatusValue::active("primary"));

    run_action_ok(
        &mut s0,
        "set-password",
        &[("password", "a-new-admin-password")],
    );
    // The leader and unit 1 applied phase add; unit 2 never does (its hooks fail, say).
    set_bag(&w, U0, &[("password-rotation-ack", "1:add")]);
    set_bag(&w, U1, &[("password-rotation-ack", "1:add")]);
    run_hook(&mut s0, peer_changed(&w, U1));
    let rotation: serde_json::Value =
        serde_json::from_str(&bag(&w, APP)["password-rotation"]).unwrap();
    assert_eq!(rotation["phase"], "add", "held back by unit 2");
    assert_eq!(
        status(&w, U0),
        StatusValue::active("primary; password rotation waiting for redis-k8s/2 (phase add)")
    );

    // Unit 2 catches up: the rotation moves on to the switch, which nobody applied yet.
    set_bag(&w, U2, &[("password-rotation-ack", "1:add")]);
    run_hook(&mut s0, peer_changed(&w, U2));
    let rotation: serde_json::Value =
        serde_json::from_str(&bag(&w, APP)["password-rotation"]).unwrap();
    assert_eq!(rotation["phase"], "switch");
    assert_eq!(
        status(&w, U0),
        StatusValue::active(
            "primary; password rotation waiting for redis-k8s/0, redis-k8s/1, redis-k8s/2 \
             (phase switch)"
        )
    );

    // All applied the switch; the grace period holds the drop back, and nobody is waited for.
    for u in [U0, U1, U2] {
        set_bag(&w, u, &[("password-rotation-ack", "1:switch")]);
    }
    run(&mut s0, "config-changed");
    assert_eq!(status(&w, U0), StatusValue::active("primary"));
    // A phase stuck for a quarter of an hour says so.
    let mut rotation: serde_json::Value =
        serde_json::from_str(&bag(&w, APP)["password-rotation"]).unwrap();
    assert_eq!(rotation["phase"], "switch");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    rotation["since"] = serde_json::json!(now - 905);
    set_bag(&w, APP, &[("password-rotation", &rotation.to_string())]);
    set_bag(&w, U2, &[("password-rotation-ack", "1:add")]);
    run(&mut s0, "config-changed");
    assert_eq!(
        status(&w, U0),
        StatusValue::active(
            "primary; password rotation waiting for redis-k8s/2 (phase switch, for 15m)"
        )
    );
    // A non-leader never reports the leader's bookkeeping.
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    set_bag(&w, U1, &[("password-rotation-ack", "")]);
    run(&mut s1, "config-changed");
    assert!(
        !status(&w, U1).message.contains("rotation"),
        "{:?}",
        status(&w, U1)
    );
}

// ----- real Redis and Sentinel behind the units' names -------------------------------------

/// update-status and check-service on a one-unit deployment whose Redis and Sentinel really
/// run (from the files the charm pushed): the status names role, replication and quorum;
/// Redis gone → waiting, and check-service says so; back → active again.
#[test]
fn update_status_and_check_service_against_real_redis_and_sentinel() {
    if skip_unless_in_hosts_namespace(
        "update_status_and_check_service_against_real_redis_and_sentinel",
        10,
    ) {
        return;
    }
    let host = unit_addr(10, 0);
    let w = world(1);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "redis-pebble-ready");
    run(&mut s, "sentinel-pebble-ready");
    let conf = pebble.get("redis").file(CONF).unwrap().text();
    assert!(conf.contains(&format!("bind {host}\n")), "{conf}");
    let sconf = pebble.get("sentinel").file(SENTINEL_CONF).unwrap().text();

    // Nothing answers yet: update-status waits for Redis (no crash, no defer).
    run(&mut s, "update-status");
    assert_eq!(status(&w, U0), StatusValue::waiting("Waiting for Redis..."));
    assert!(s.state.stored.notices.is_empty());
    let r = run_action(&mut s, "check-service", &[]);
    assert_eq!(
        r.session.action_results()["result"],
        "Service is not running"
    );

    let dir = tempfile::tempdir().unwrap();
    let redis = redis_from_rendered(&conf, &host, dir.path());
    let _sentinel = sentinel_from_rendered(&sconf, &host, dir.path());
    run(&mut s, "update-status");
    assert_eq!(
        status(&w, U0),
        StatusValue::active("primary, no replica online, sentinel quorum ok")
    );
    let r = run_action(&mut s, "check-service", &[]);
    assert_eq!(r.session.action_results()["result"], "Service is running");
    assert!(
        w.lock()
            .unwrap()
            .app_version(APP)
            .starts_with(|c: char| c.is_ascii_digit()),
        "check-service records the Redis version"
    );
    // The leader's record still names itself.
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(0));

    drop(redis);
    run(&mut s, "update-status");
    assert_eq!(status(&w, U0), StatusValue::waiting("Waiting for Redis..."));
}

/// A (re)starting unit asks the other units' sentinels who the primary is before it takes a
/// role: when they name another unit, it becomes that unit's replica even though
/// `leader-host` still names itself (no second primary); when they disagree, it waits
/// ("Failover in progress") and defers; when none answers, the record decides.
#[test]
fn a_starting_unit_follows_the_sentinels_majority_and_waits_while_they_disagree() {
    if skip_unless_in_hosts_namespace(
        "a_starting_unit_follows_the_sentinels_majority_and_waits_while_they_disagree",
        20,
    ) {
        return;
    }
    let w = world(3);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(0));
    let spw = secret_value(&w, "sentinel-password");
    let dir = tempfile::tempdir().unwrap();

    // No sentinel answers: the recorded primary (this unit).
    run(&mut s, "redis-pebble-ready");
    let conf = pebble.get("redis").file(CONF).unwrap().text();
    assert!(!conf.contains("\nreplicaof "), "{conf}");

    // Both other sentinels say unit 1 is primary (unit 0 restarted after a failover).
    let s1 = plain_sentinel(&unit_addr(20, 1), &fqdn(1), &spw, dir.path());
    let s2 = plain_sentinel(&unit_addr(20, 2), &fqdn(1), &spw, dir.path());
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    s.state.stored = Default::default();
    run(&mut s, "redis-pebble-ready");
    let conf = pebble.get("redis").file(CONF).unwrap().text();
    assert!(
        conf.contains(&format!("\nreplicaof {} 6379\n", fqdn(1))),
        "{conf}"
    );
    assert!(s.state.stored.notices.is_empty());
    assert_eq!(status(&w, U0), StatusValue::active("replica"));

    // They disagree (one says unit 2): wait, defer, and push nothing new.
    drop(s2);
    let _s2 = plain_sentinel(&unit_addr(20, 2), &fqdn(2), &spw, dir.path());
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "redis-pebble-ready");
    assert_eq!(status(&w, U0), StatusValue::waiting("Failover in progress"));
    assert_eq!(s.state.stored.notices.len(), 1, "deferred");
    assert!(pebble.get("redis").file(CONF).is_none());
    // The sentinel path waits the same way.
    run(&mut s, "sentinel-pebble-ready");
    assert_eq!(status(&w, U0).status, StatusName::Waiting);
    assert!(pebble.get("sentinel").file(SENTINEL_CONF).is_none());
    drop(s1);
}

// ----- in-memory branches ---------------------------------------------------------------

/// leader-elected on a unit that is not the leader (Juju runs it on every unit after an
/// election): nothing is written, no secret is created.
#[test]
fn leader_elected_on_a_non_leader_changes_nothing() {
    let w = world(2);
    let pebble = containers();
    let mut s1 = scenario(&w, U1, &pebble);
    let r = s1
        .run::<RedisK8sCharm>("hooks/leader-elected", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(bag(&w, APP).is_empty(), "{:?}", bag(&w, APP));
    assert!(w.lock().unwrap().secret_ids(Some(APP)).is_empty());
    assert!(s1.state.stored.notices.is_empty());
    assert!(!r
        .session
        .calls()
        .iter()
        .any(|c| c == "relation-set" || c == "secret-add"));
}

/// redis-pebble-ready before the leader filled the peer data, or with junk in it: Waiting,
/// deferred, nothing pushed; the deferred event succeeds once the data is there.
#[test]
fn redis_pebble_ready_waits_for_usable_peer_data_and_defers() {
    let w = world(2);
    let pebble = containers();
    let mut s1 = scenario(&w, U1, &pebble);
    run(&mut s1, "redis-pebble-ready");
    assert_eq!(
        status(&w, U1),
        StatusValue::waiting("Waiting for peer data to be updated")
    );
    assert_eq!(s1.state.stored.notices.len(), 1);
    assert!(pebble.get("redis").file(CONF).is_none());
    assert!(pebble.get("redis").plan().services.is_empty());

    // Junk: a leader-host that is no host name, an unparsable rotation record, stray keys.
    set_bag(
        &w,
        APP,
        &[
            ("leader-host", "not a host!"),
            ("password-rotation", "{junk"),
            ("whatever", "x"),
        ],
    );
    run(&mut s1, "update-status");
    assert_eq!(
        status(&w, U1),
        StatusValue::waiting("Waiting for peer data to be updated")
    );
    assert!(pebble.get("redis").file(CONF).is_none());

    // The leader repairs it; the next hook re-runs the deferred pebble-ready first.
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    set_bag(&w, APP, &[("leader-host", ""), ("password-rotation", "")]);
    run(&mut s0, "leader-elected");
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(0));
    run(&mut s1, "update-status");
    assert!(s1.state.stored.notices.is_empty(), "the deferred event ran");
    let conf = pebble.get("redis").file(CONF).expect("redis.conf").text();
    assert!(
        conf.contains(&format!("\nreplicaof {} 6379\n", fqdn(0))),
        "{conf}"
    );
}

/// redis-pebble-ready whose Pebble stops answering right after the event: Waiting naming
/// the container, deferred, no error (no crash loop).
#[test]
fn redis_pebble_ready_with_pebble_gone_waits_and_defers() {
    let w = world(1);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    pebble.get("redis").set_can_connect(false);
    run(&mut s, "redis-pebble-ready");
    assert_eq!(
        status(&w, U0),
        StatusValue::waiting("Waiting for Pebble in redis container")
    );
    assert_eq!(s.state.stored.notices.len(), 1);
    // config-changed asks Pebble first and waits the same way.
    run(&mut s, "config-changed");
    assert_eq!(status(&w, U0).status, StatusName::Waiting);
    assert!(
        status(&w, U0).message.contains("Pebble"),
        "{:?}",
        status(&w, U0)
    );
    pebble.get("redis").set_can_connect(true);
    run(&mut s, "update-status");
    assert!(s.state.stored.notices.is_empty(), "the deferred events ran");
    assert!(pebble.get("redis").file(CONF).is_some());
}

/// update-status with an invalid config: blocked naming the option, nothing converged or
/// written (Juju sends config-changed when the operator fixes it).
#[test]
fn update_status_with_invalid_config_blocks_and_touches_nothing() {
    let w = world(1);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "config-changed");
    let before = bag(&w, APP);
    let conf = pebble.get("redis").file(CONF).unwrap().text();
    set_config(
        &w,
        &[("sentinel-down-after-milliseconds", serde_json::json!(-5))],
    );
    pebble.get("redis").clear_calls();
    run(&mut s, "update-status");
    let st = status(&w, U0);
    assert_eq!(st.status, StatusName::Blocked, "{st:?}");
    assert!(
        st.message.contains("sentinel-down-after-milliseconds"),
        "{st:?}"
    );
    assert_eq!(bag(&w, APP), before);
    assert_eq!(pebble.get("redis").file(CONF).unwrap().text(), conf);
    assert_no_push_or_replan(&pebble, "redis");
    assert!(s.state.stored.notices.is_empty());
}

/// upgrade-charm converges like config-changed: a pod that came back with an empty Pebble
/// plan (a refresh replaces the pod) gets its files, layers and services again.
#[test]
fn upgrade_charm_converges_both_containers_again() {
    let w = world(1);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "config-changed");
    // The new pod: fresh containers.
    pebble.insert(
        "redis",
        redis_k8s::ops::testing::pebble::MemoryPebble::new(),
    );
    pebble.insert(
        "sentinel",
        redis_k8s::ops::testing::pebble::MemoryPebble::new(),
    );
    run(&mut s, "upgrade-charm");
    for (c, svc, file) in [
        ("redis", "redis", CONF),
        ("sentinel", "sentinel", SENTINEL_CONF),
    ] {
        let p = pebble.get(c);
        assert!(p.file(file).is_some(), "{c}: {file}");
        assert_eq!(p.service_state(svc).as_deref(), Some("active"), "{c}");
    }
    assert_eq!(status(&w, U0), StatusValue::active("primary"));
    assert!(s.state.stored.notices.is_empty());
}

/// redis-peers-relation-departed: the departing unit itself returns quickly (its hand-over
/// is best effort; nothing to hand over when no Redis answers) and writes nothing; a staying
/// unit converges with the smaller topology.
#[test]
fn peer_departed_on_the_departing_and_on_a_staying_unit() {
    let w = world(3);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    run(&mut s0, "config-changed");
    let pebble2 = containers();
    let mut s2 = scenario(&w, U2, &pebble2);
    run(&mut s2, "config-changed");
    let before = bag(&w, APP);
    let departed = |unit: &str| HookInfo {
        hook_name: "redis-peers-relation-departed".into(),
        relation_id: Some(peer_id(&w)),
        remote_unit: Some(unit.into()),
        remote_app: Some(APP.into()),
        departing_unit: Some(U2.into()),
        ..HookInfo::default()
    };
    let t = Instant::now();
    let r = run_hook(&mut s2, departed(U0));
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(!r.session.calls().iter().any(|c| c == "relation-set"));
    assert_eq!(bag(&w, APP), before);

    run_hook(&mut s0, departed(U2));
    assert_eq!(status(&w, U0), StatusValue::active("primary"));
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(0));
    assert!(s0.state.stored.notices.is_empty());
}

/// switchover with a malformed `unit`, or before any primary is known: the action fails
/// with a message and nothing moves.
#[test]
fn switchover_refuses_a_malformed_unit_and_an_unknown_primary() {
    let w = world(2);
    let pebble = containers();
    let mut s1 = scenario(&w, U1, &pebble);
    let r = run_action(&mut s1, "switchover", &[]);
    assert_eq!(
        r.session.action_failure().as_deref(),
        Some("no primary known yet (peer data not populated)")
    );
    let bad = HookInfo {
        action: Some(redis_k8s::ops::testing::world::ActionInvocation {
            name: "switchover".into(),
            params: BTreeMap::from([("unit".to_string(), serde_json::json!("postgresql/0"))]),
        }),
        ..HookInfo::default()
    };
    let r = s1.run::<RedisK8sCharm>("actions/switchover", bad).unwrap();
    assert_eq!(
        r.session.action_failure().as_deref(),
        Some("unknown unit \"postgresql/0\": not a unit of redis-k8s")
    );
    assert!(r.session.action_results().is_empty());
    assert!(bag(&w, APP).is_empty());
}

/// redis-relation-broken on a non-leader: the leader owns the client secret; nothing here.
#[test]
fn client_relation_broken_on_a_non_leader_does_nothing() {
    let w = world(2);
    let rel = add_client(&w);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    run(&mut s0, "config-changed");
    let secrets = w.lock().unwrap().secret_ids(Some(APP));
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    let hook = client_hook("broken", rel, None);
    let r = run_hook(&mut s1, hook);
    assert!(!r
        .session
        .calls()
        .iter()
        .any(|c| c.starts_with("secret-") && c != "secret-get"));
    assert_eq!(w.lock().unwrap().secret_ids(Some(APP)), secrets);
}

/// The leader's `leader-host` follows its own sentinel (the update-status fallback of the
/// event-driven tracking, and a new leader's first look): a settled primary elsewhere is
/// recorded; a primary the sentinel sees down, with no failover, leaves the record alone.
#[test]
fn the_leader_records_the_primary_its_sentinel_reports_only_when_settled() {
    if skip_unless_in_hosts_namespace(
        "the_leader_records_the_primary_its_sentinel_reports_only_when_settled",
        30,
    ) {
        return;
    }
    let w = world(2);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(0));
    let spw = secret_value(&w, "sentinel-password");
    let dir = tempfile::tempdir().unwrap();
    let addr1 = unit_addr(30, 1);
    // Unit 1's Redis (no password: all the sentinel needs is its PONG) and our own sentinel,
    // which says unit 1 is primary.
    let redis1 = plain_redis(&addr1, None, dir.path());
    let _sentinel = plain_sentinel(&unit_addr(30, 0), &fqdn(1), &spw, dir.path());

    run(&mut s, "update-status");
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(1));

    // A new leader's leader-elected takes the sentinel's view over a stale record.
    set_bag(&w, APP, &[("leader-host", &fqdn(0))]);
    run(&mut s, "leader-elected");
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(1));

    // Unit 1's Redis dies; no failover (quorum 2, one sentinel): the sentinel flags it down
    // and the leader keeps whatever is recorded rather than publish a dead or guessed host.
    drop(redis1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flags =
            redis_k8s::redis_client::RedisConn::connect(&unit_addr(30, 0), 26379, Some(&spw))
                .and_then(|mut c| c.sentinel_master(APP))
                .ok()
                .and_then(|m| m.get("flags").cloned())
                .unwrap_or_default();
        if flags.contains("s_down") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sentinel never saw the primary down: {flags}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    set_bag(&w, APP, &[("leader-host", &fqdn(0))]);
    run(&mut s, "update-status");
    assert_eq!(bag(&w, APP)["leader-host"], fqdn(0));
}

/// redis-peers-relation-changed on a non-leader whose app data holds junk (a leader-host
/// that is no host name, a rotation record that is no JSON) and no passwords: both
/// workloads wait, the event is deferred, nothing is pushed, and the hook succeeds.
#[test]
fn peer_changed_with_junk_app_data_waits_and_defers_on_a_non_leader() {
    let w = world(2);
    set_bag(
        &w,
        APP,
        &[
            ("leader-host", "$(reboot)"),
            ("password-rotation", "[1,2"),
            ("passwords-secret", "not a uri"),
        ],
    );
    let pebble = containers();
    let mut s1 = scenario(&w, U1, &pebble);
    let r = run_hook(&mut s1, peer_changed(&w, U0));
    let st = status(&w, U1);
    assert_eq!(st.status, StatusName::Waiting, "{st:?}");
    assert!(
        st.message == "Waiting for peer data to be updated"
            || st.message == "Databag has not been populated",
        "{st:?}"
    );
    assert_eq!(s1.state.stored.notices.len(), 1, "deferred");
    for c in ["redis", "sentinel"] {
        assert!(pebble.get(c).plan().services.is_empty(), "{c}");
    }
    assert!(!r.session.calls().iter().any(|c| c == "relation-set"));
}

/// A running Redis that should be a replica (it came up as a primary, or the primary moved)
/// follows the recorded primary by `REPLICAOF` at runtime on the next converging hook,
/// without a restart; update-status then reports the live link. Real Redis for both units,
/// started from the files the charm pushed.
#[test]
fn a_running_stale_primary_becomes_a_replica_at_runtime_without_a_restart() {
    if skip_unless_in_hosts_namespace(
        "a_running_stale_primary_becomes_a_replica_at_runtime_without_a_restart",
        40,
    ) {
        return;
    }
    use redis_k8s::redis_client::RedisConn;
    let w = world(2);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    run(&mut s0, "config-changed");
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    run(&mut s1, "config-changed");
    let conf1 = pebble1.get("redis").file(CONF).unwrap().text();
    assert!(
        conf1.contains(&format!("\nreplicaof {} 6379\n", fqdn(0))),
        "{conf1}"
    );

    let pw = secret_value(&w, "redis-password");
    let (addr0, addr1) = (unit_addr(40, 0), unit_addr(40, 1));
    let dir0 = tempfile::tempdir().unwrap();
    let dir1 = tempfile::tempdir().unwrap();
    let _redis0 = redis_from_rendered(
        &pebble0.get("redis").file(CONF).unwrap().text(),
        &addr0,
        dir0.path(),
    );
    // Unit 1's Redis runs as a primary (say it started from an older file).
    let stale: String = conf1
        .lines()
        .filter(|l| !l.starts_with("replicaof "))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut redis1 = redis_from_rendered(&stale, &addr1, dir1.path());
    // A just-started (or just re-pointed) server may refuse a moment (loading, restarting
    // the link): retry briefly; a server that keeps refusing still fails the test.
    let role = |addr: &str| {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match RedisConn::connect(addr, 6379, Some(&pw)).and_then(|mut c| c.info("replication"))
            {
                Ok(info) => break info,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("INFO replication on {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("INFO replication on {addr}: {e}"),
            }
        }
    };
    assert_eq!(role(&addr1)["role"], "master");

    run_hook(&mut s1, peer_changed(&w, U0));
    let info = role(&addr1);
    assert_eq!(info["role"], "slave");
    assert_eq!(info["master_host"], fqdn(0));
    assert!(redis1.0.try_wait().unwrap().is_none(), "not restarted");
    let deadline = Instant::now() + Duration::from_secs(10);
    while role(&addr1).get("master_link_status").map(String::as_str) != Some("up") {
        assert!(
            Instant::now() < deadline,
            "the replica never linked: {:?}",
            role(&addr1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run(&mut s1, "update-status");
    assert_eq!(
        status(&w, U1),
        StatusValue::active("replica, link up, sentinel unreachable")
    );
    // And the primary sees it.
    run(&mut s0, "update-status");
    assert!(
        status(&w, U0)
            .message
            .starts_with("primary, 1 replica online"),
        "{:?}",
        status(&w, U0)
    );
}
