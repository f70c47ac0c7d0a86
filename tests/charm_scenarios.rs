//! Scenario tests of the redis-k8s charm on the in-memory hook tools and Pebble: state in,
//! event, state out. They assert what was pushed to Pebble, what the databags hold, and the
//! status; real-process behaviour is covered by the dispatch and local-model tests.

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::ops::hookcmds::{StatusName, StatusValue};
use redis_k8s::ops::testing::world::HookInfo;

mod scenario_support;
use scenario_support::*;

#[test]
fn sentinel_waits_for_the_databag_then_the_leader_fills_it_and_the_deferred_event_succeeds() {
    let w = world(3);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);

    let r = s
        .run::<RedisK8sCharm>("hooks/sentinel-pebble-ready", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none());
    assert_eq!(
        status(&w, U0),
        StatusValue::waiting("Databag has not been populated")
    );
    assert_eq!(s.state.stored.notices.len(), 1);
    assert_eq!(
        s.state.stored.notices[0].observer_path,
        "RedisK8sCharm/Sentinel[sentinel]"
    );
    assert!(pebble.get("sentinel").file(SENTINEL_CONF).is_none());

    run(&mut s, "leader-elected");
    let peer = bag(&w, APP);
    assert_eq!(peer["leader-host"], FQDN0);
    assert!(
        !peer.contains_key("redis-password") && !peer.contains_key("sentinel-password"),
        "no plain passwords in peer data: {peer:?}"
    );
    let bag = passwords_secret(&w);
    assert_eq!(bag["redis-password"].len(), 32);
    assert_eq!(bag["sentinel-password"].len(), 32);
    assert_ne!(bag["redis-password"], bag["sentinel-password"]);
    // The deferred sentinel-pebble-ready ran first in leader-elected (before the databag was
    // committed) and is still queued; a later event finally succeeds.
    assert_eq!(s.state.stored.notices.len(), 1);

    let r = s
        .run::<RedisK8sCharm>("hooks/config-changed", HookInfo::default())
        .unwrap();
    assert!(
        r.emitted[0].starts_with("RedisK8sCharm/on/sentinel_pebble_ready["),
        "{:?}",
        r.emitted
    );
    assert!(s.state.stored.notices.is_empty());
    let sentinel = pebble.get("sentinel");
    let conf = sentinel.file(SENTINEL_CONF).expect("pushed").text();
    let file = sentinel.file(SENTINEL_CONF).unwrap();
    assert_eq!(
        (file.permissions, file.user.as_str(), file.group.as_str()),
        (0o600, "redis", "redis")
    );
    let dir = sentinel.file("/etc/redis-server").unwrap();
    assert!(dir.is_dir && dir.permissions == 0o750 && dir.user == "redis");
    assert!(
        conf.contains(&format!("sentinel monitor redis-k8s {FQDN0} 6379 2\n")),
        "{conf}"
    );
    let monitor = conf.find("\nsentinel monitor ").unwrap();
    assert!(conf.find("resolve-hostnames yes").unwrap() < monitor);
    assert!(conf.find("announce-hostnames yes").unwrap() < monitor);
    let sentinel_hash = redis_k8s::passwords::sha256::hex(bag["sentinel-password"].as_bytes());
    assert!(
        conf.contains(&format!("user default on #{sentinel_hash} ~* &* +@all\n")),
        "{conf}"
    );
    assert!(!conf.contains("requirepass"));
    assert!(conf.contains(&format!(
        "sentinel sentinel-pass {}\n",
        bag["sentinel-password"]
    )));
    assert!(conf.contains(&format!(
        "sentinel auth-pass redis-k8s {}\n",
        bag["redis-password"]
    )));
    assert!(conf.contains("sentinel down-after-milliseconds redis-k8s 5000\n"));
    let plan = sentinel.plan();
    let svc = &plan.services["sentinel"];
    assert_eq!(
        svc.command.as_deref(),
        Some("redis-server /etc/redis-server/sentinel.conf --sentinel")
    );
    assert_eq!(
        (
            svc.user.as_deref(),
            svc.group.as_deref(),
            svc.startup.as_deref()
        ),
        (Some("redis"), Some("redis"), Some("enabled"))
    );
    assert_eq!(
        sentinel.service_state("sentinel").as_deref(),
        Some("active")
    );
    let plan_yaml = plan.to_yaml();
    assert!(
        !plan_yaml.contains(&bag["sentinel-password"])
            && !plan_yaml.contains(&bag["redis-password"])
    );
    assert_eq!(status(&w, U0).status, StatusName::Active);
}

#[test]
fn sentinel_waits_for_pebble_and_defers() {
    let w = world(1);
    let pebble = containers();
    pebble.get("sentinel").set_can_connect(false);
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "sentinel-pebble-ready");
    assert_eq!(
        status(&w, U0),
        StatusValue::waiting("Waiting for Pebble in sentinel container")
    );
    assert_eq!(s.state.stored.notices.len(), 1);
}

#[test]
fn leader_keeps_existing_passwords_like_a_refreshed_python_deployment() {
    let w = world(1);
    set_bag(
        &w,
        APP,
        &[
            ("redis-password", "py-admin-pass"),
            ("sentinel-password", "py-sentinel-pass"),
        ],
    );
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    let peer = bag(&w, APP);
    assert_eq!(peer["leader-host"], FQDN0);
    assert!(!peer.contains_key("redis-password"), "{peer:?}");
    let bag = passwords_secret(&w);
    assert_eq!(bag["redis-password"], "py-admin-pass");
    assert_eq!(bag["sentinel-password"], "py-sentinel-pass");
}

#[test]
fn redis_layer_and_config_keep_the_password_in_the_file_and_replicas_follow_the_leader() {
    let w = world(2);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    run(&mut s0, "redis-pebble-ready");
    let bag = passwords_secret(&w);
    let redis = pebble0.get("redis");
    let conf = redis.file(CONF).expect("redis.conf").text();
    let hash = redis_k8s::passwords::sha256::hex(bag["redis-password"].as_bytes());
    assert!(
        conf.contains(&format!("user default on #{hash} ~* &* +@all\n")),
        "{conf}"
    );
    assert!(conf.contains(&format!("masterauth {}\n", bag["redis-password"])));
    assert!(!conf.contains("requirepass"));
    assert!(conf.contains("appendonly yes\n"));
    // A fresh (root-owned or absent) volume: Redis gets a redis-owned subdirectory.
    assert!(conf.contains("dir /var/lib/redis/data\n"), "{conf}");
    let data = redis.file("/var/lib/redis/data").expect("data dir");
    assert!(data.is_dir && data.user == "redis" && data.permissions == 0o770);
    assert!(
        !conf.contains("replicaof"),
        "the leader's unit starts as primary:\n{conf}"
    );
    let plan = redis.plan();
    assert_eq!(
        plan.services["redis"].command.as_deref(),
        Some("redis-server /etc/redis-server/redis.conf")
    );
    assert!(!plan.to_yaml().contains(&bag["redis-password"]));
    assert_eq!(redis.service_state("redis").as_deref(), Some("active"));
    assert_eq!(redis.file(CONF).unwrap().permissions, 0o600);

    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    run(&mut s1, "redis-pebble-ready");
    let conf1 = pebble1.get("redis").file(CONF).unwrap().text();
    assert!(
        conf1.contains(&format!("replicaof {FQDN0} 6379\n")),
        "{conf1}"
    );

    // A second pebble-ready with nothing changed does not add a layer or replan again.
    let before = redis.calls().len();
    run(&mut s0, "redis-pebble-ready");
    let new_calls: Vec<String> = redis.calls()[before..].to_vec();
    assert!(
        !new_calls
            .iter()
            .any(|c| c.starts_with("add_layer") || c.starts_with("replan")),
        "{new_calls:?}"
    );
}

#[test]
fn invalid_config_blocks_naming_the_option_and_pushes_nothing() {
    let w = world(1);
    set_config(&w, &[("maxmemory-policy", "sometimes".into())]);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    let r = s
        .run::<RedisK8sCharm>("hooks/config-changed", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "invalid config is not a hook error");
    let st = status(&w, U0);
    assert_eq!(st.status, StatusName::Blocked);
    assert!(st.message.contains("maxmemory-policy"), "{}", st.message);
    assert!(pebble.get("redis").file(CONF).is_none());
}

#[test]
fn password_actions_return_the_peer_passwords() {
    let w = world(1);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    let bag = passwords_secret(&w);
    for (action, key) in [
        ("get-initial-admin-password", "redis-password"),
        ("get-sentinel-password", "sentinel-password"),
    ] {
        let hook = scenario_support::action(action, &[]);
        let r = s
            .run::<RedisK8sCharm>(&format!("actions/{action}"), hook)
            .unwrap();
        assert!(r.error.is_none());
        assert_eq!(r.session.action_results()[key], bag[key]);
    }
}

#[test]
fn client_relation_gets_host_port_and_the_primary() {
    let w = world(1);
    let rel = add_client(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    let hook = client_hook("joined", rel, Some("client/0"));
    run_hook(&mut s, hook);
    let wl = w.lock().unwrap();
    let unit = wl.relation_data(rel, U0);
    assert_eq!(unit["port"], "6379");
    assert!(!unit["hostname"].is_empty());
    assert_eq!(wl.relation_data(rel, APP)["leader-host"], FQDN0);
}

#[test]
fn hooks_make_no_call_whose_answer_is_already_known() {
    let w = world(1);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    // install has no handler: no config-get, no is-leader (nobody collects app status).
    let r = s
        .run::<RedisK8sCharm>("hooks/install", HookInfo::default())
        .unwrap();
    assert!(r.session.calls().is_empty(), "{:?}", r.session.calls());

    run(&mut s, "leader-elected");
    // In its own pebble-ready, Pebble is known to be up: no system-info request.
    let sentinel = pebble.get("sentinel");
    sentinel.clear_calls();
    let hook = HookInfo {
        hook_name: "sentinel-pebble-ready".into(),
        ..HookInfo::default()
    };
    let r = run_hook(&mut s, hook);
    assert!(
        !sentinel.calls().iter().any(|c| c.contains("system")),
        "{:?}",
        sentinel.calls()
    );
    // Config and the peer databag are read once.
    let calls = r.session.calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "config-get").count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "relation-get").count(),
        1,
        "{calls:?}"
    );
    // The converged status names the role; setting the same status again is skipped.
    assert_eq!(status(&w, U0), StatusValue::active("primary"));
    let r = s
        .run::<RedisK8sCharm>("hooks/config-changed", HookInfo::default())
        .unwrap();
    assert!(
        !r.session.calls().iter().any(|c| c == "status-set"),
        "{:?}",
        r.session.calls()
    );
}
