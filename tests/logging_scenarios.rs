//! The `logging` relation (loki_push_api requirer): the Pebble log targets `LogForwarder`
//! would add, in both containers, on every unit; switched off when Loki units go; junk
//! endpoint data ignored; Pebble unreachable → deferred. See `src/logging.rs`.

mod scenario_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redis_k8s::ops::pebble::LogTarget;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, World};
use scenario_support::*;

const LOKI: &str = "loki";
const URL0: &str = "http://loki-0.loki-endpoints.cos.svc.cluster.local:3100/loki/api/v1/push";
const URL1: &str = "http://loki-1.loki-endpoints.cos.svc.cluster.local:3100/loki/api/v1/push";

/// A Loki app with `n` units related to the charm's `logging`; returns the relation id.
fn add_loki(w: &Arc<Mutex<World>>, n: usize) -> u32 {
    let meta = CharmMeta::from_yaml(
        "name: loki-k8s\nprovides:\n  logging:\n    interface: loki_push_api\n",
        "",
        "",
    )
    .unwrap();
    let mut wl = w.lock().unwrap();
    wl.add_app(LOKI, meta).unwrap();
    for _ in 0..n {
        wl.add_unit(LOKI).unwrap();
    }
    wl.add_relation((APP, "logging"), (LOKI, "logging"))
        .unwrap()
}

/// What a Loki unit publishes (`LokiPushApiProvider`): `endpoint` = `{"url": ...}`.
fn publish(w: &Arc<Mutex<World>>, rel: u32, unit: &str, endpoint: &str) {
    let data = BTreeMap::from([("endpoint".to_string(), endpoint.to_string())]);
    w.lock().unwrap().set_relation_data(rel, unit, data);
}

fn endpoint(url: &str) -> String {
    serde_json::json!({ "url": url }).to_string()
}

fn logging_hook(event: &str, rel: u32, remote: Option<&str>) -> HookInfo {
    HookInfo {
        hook_name: format!("logging-relation-{event}"),
        relation_id: Some(rel),
        remote_unit: remote.map(str::to_string),
        remote_app: Some(LOKI.into()),
        departing_unit: (event == "departed").then(|| remote.unwrap_or_default().to_string()),
        ..HookInfo::default()
    }
}

/// The labels every target of `unit` carries: the library's, from the Juju topology.
fn labels(w: &Arc<Mutex<World>>, unit: &str) -> BTreeMap<String, String> {
    let uuid = w.lock().unwrap().model_uuid.clone();
    BTreeMap::from([
        ("product".to_string(), "Juju".to_string()),
        ("charm".to_string(), "redis-k8s".to_string()),
        ("juju_model".to_string(), "scn".to_string()),
        ("juju_model_uuid".to_string(), uuid),
        ("juju_application".to_string(), APP.to_string()),
        ("juju_unit".to_string(), unit.to_string()),
    ])
}

fn enabled(url: &str, labels: &BTreeMap<String, String>) -> LogTarget {
    LogTarget {
        r#override: Some("replace".into()),
        target_type: Some("loki".into()),
        location: Some(url.into()),
        services: vec!["all".into()],
        labels: labels.clone(),
    }
}

fn disabled() -> LogTarget {
    LogTarget {
        r#override: Some("replace".into()),
        target_type: Some("loki".into()),
        location: Some("(removed)".into()),
        services: vec!["-all".into()],
        labels: BTreeMap::new(),
    }
}

/// The container's log targets, typed.
fn targets(pebble: &MemoryPebbleProvider, container: &str) -> BTreeMap<String, LogTarget> {
    pebble
        .get(container)
        .plan()
        .log_targets
        .iter()
        .map(|(k, v)| (k.clone(), LogTarget::from_value(v).expect("a log target")))
        .collect()
}

/// Both Loki units become one target each, in both containers, on a non-leader too; the
/// redis container also runs the tail of the Redis log file, and nothing else is touched.
#[test]
fn every_loki_unit_is_a_target_in_both_containers_and_the_redis_log_is_tailed() {
    let w = world(2);
    let rel = add_loki(&w, 2);
    publish(&w, rel, "loki/0", &endpoint(URL0));
    publish(&w, rel, "loki/1", &endpoint(URL1));
    let pebble = containers();
    let mut s = scenario(&w, U1, &pebble);
    run_hook(&mut s, logging_hook("joined", rel, Some("loki/0")));

    let l = labels(&w, U1);
    let expected = BTreeMap::from([
        ("loki/0".to_string(), enabled(URL0, &l)),
        ("loki/1".to_string(), enabled(URL1, &l)),
    ]);
    for c in ["redis", "sentinel"] {
        assert_eq!(targets(&pebble, c), expected, "{c}");
        let layers = pebble.get(c).layers();
        assert_eq!(layers.len(), 1, "{c}: {layers:?}");
        assert_eq!(layers[0].0, format!("{c}-log-forwarding"));
        // No replan: Redis and Sentinel are not restarted by log forwarding.
        let calls = pebble.get(c).calls();
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("replan") || c.starts_with("restart")),
            "{calls:?}"
        );
    }
    let redis_plan = pebble.get("redis").plan();
    let tail = &redis_plan.services["redis-log"];
    assert_eq!(
        tail.command.as_deref(),
        Some("tail -n 0 -F /var/log/redis/redis-server.log")
    );
    assert_eq!(tail.startup.as_deref(), Some("disabled"));
    assert_eq!(tail.user.as_deref(), Some("redis"));
    assert_eq!(
        pebble.get("redis").service_state("redis-log").as_deref(),
        Some("active")
    );
    assert!(pebble.get("sentinel").plan().services.is_empty());
    // Nothing secret in the plans, and the requirer writes nothing into the relation.
    for c in ["redis", "sentinel"] {
        let yaml = pebble.get(c).plan().to_yaml();
        assert!(!yaml.to_lowercase().contains("password"), "{yaml}");
    }
    assert!(w
        .lock()
        .unwrap()
        .relation_data(rel, U1)
        .keys()
        .all(|k| k != "endpoint"));
    assert!(w.lock().unwrap().relation_data(rel, APP).is_empty());

    // The same data again: no layer is added, the tail is not started again.
    pebble.get("redis").clear_calls();
    pebble.get("sentinel").clear_calls();
    run_hook(&mut s, logging_hook("changed", rel, Some("loki/1")));
    for c in ["redis", "sentinel"] {
        let calls = pebble.get(c).calls();
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("add_layer") || c.starts_with("start")),
            "{c}: {calls:?}"
        );
    }

    // A Loki unit moves: its target follows, the other stays, the tail keeps running.
    let moved = "http://10.1.2.3:3100/loki/api/v1/push";
    publish(&w, rel, "loki/0", &endpoint(moved));
    run_hook(&mut s, logging_hook("changed", rel, Some("loki/0")));
    for c in ["redis", "sentinel"] {
        assert_eq!(
            targets(&pebble, c),
            BTreeMap::from([
                ("loki/0".to_string(), enabled(moved, &l)),
                ("loki/1".to_string(), enabled(URL1, &l)),
            ]),
            "{c}"
        );
    }
    assert!(!pebble
        .get("redis")
        .calls()
        .iter()
        .any(|c| c.starts_with("stop")));
}

/// A departed Loki unit's target is switched off in place (Pebble cannot delete it); when the
/// relation is gone the last one is too and the tail stops; then nothing more is sent.
#[test]
fn departed_units_and_a_broken_relation_switch_targets_off_and_stop_the_tail() {
    let w = world(1);
    let rel = add_loki(&w, 2);
    publish(&w, rel, "loki/0", &endpoint(URL0));
    publish(&w, rel, "loki/1", &endpoint(URL1));
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, logging_hook("changed", rel, Some("loki/0")));
    let l = labels(&w, U0);

    w.lock().unwrap().remove_unit("loki/1").unwrap();
    run_hook(&mut s, logging_hook("departed", rel, Some("loki/1")));
    let expected = BTreeMap::from([
        ("loki/0".to_string(), enabled(URL0, &l)),
        ("loki/1".to_string(), disabled()),
    ]);
    for c in ["redis", "sentinel"] {
        assert_eq!(targets(&pebble, c), expected, "{c}");
    }
    assert_eq!(
        pebble.get("redis").service_state("redis-log").as_deref(),
        Some("active")
    );

    run_hook(&mut s, logging_hook("broken", rel, None));
    let all_off = BTreeMap::from([
        ("loki/0".to_string(), disabled()),
        ("loki/1".to_string(), disabled()),
    ]);
    for c in ["redis", "sentinel"] {
        assert_eq!(targets(&pebble, c), all_off, "{c}");
    }
    assert_eq!(
        pebble.get("redis").service_state("redis-log").as_deref(),
        Some("inactive")
    );
    assert!(s.state.stored.notices.is_empty(), "nothing deferred");

    // Gone for good: later hooks add nothing and start nothing.
    w.lock().unwrap().remove_relation(rel);
    pebble.get("redis").clear_calls();
    pebble.get("sentinel").clear_calls();
    run(&mut s, "upgrade-charm");
    for c in ["redis", "sentinel"] {
        assert!(
            !pebble
                .get(c)
                .calls()
                .iter()
                .any(|call| call.starts_with("add_layer redis-log")
                    || call == "start redis-log"
                    || call.starts_with(&format!("add_layer {c}-log-forwarding"))),
            "{c}: {:?}",
            pebble.get(c).calls()
        );
    }
    assert_eq!(
        pebble.get("redis").service_state("redis-log").as_deref(),
        Some("inactive")
    );
}

/// Endpoint data that is missing, not JSON, without a `url`, or not an http(s) URL is
/// skipped per unit; the good unit is still forwarded to, and the hook succeeds.
#[test]
fn junk_endpoint_data_is_ignored_per_unit() {
    let w = world(1);
    let rel = add_loki(&w, 5);
    publish(&w, rel, "loki/0", &endpoint(URL0));
    publish(&w, rel, "loki/1", "not json {");
    publish(&w, rel, "loki/2", r#"{"uri": "http://x"}"#);
    publish(&w, rel, "loki/3", &endpoint("ftp://loki/push"));
    // loki/4 has published nothing yet.
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, logging_hook("changed", rel, Some("loki/1")));
    let l = labels(&w, U0);
    for c in ["redis", "sentinel"] {
        assert_eq!(
            targets(&pebble, c),
            BTreeMap::from([("loki/0".to_string(), enabled(URL0, &l))]),
            "{c}"
        );
    }
    assert!(s.state.stored.notices.is_empty());

    // Only junk: no targets, no tail, nothing added at all.
    let w = world(1);
    let rel = add_loki(&w, 1);
    publish(&w, rel, "loki/0", r#"{"url": ["http://x"]}"#);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, logging_hook("changed", rel, Some("loki/0")));
    for c in ["redis", "sentinel"] {
        assert!(pebble.get(c).layers().is_empty(), "{c}");
    }
}

/// Pebble not answering: the relation event is deferred (not failed), and done once it
/// answers. A restarted container (empty plan) gets its targets back at pebble-ready.
#[test]
fn unreachable_pebble_defers_and_a_restarted_container_gets_its_targets_back() {
    let w = world(1);
    let rel = add_loki(&w, 1);
    publish(&w, rel, "loki/0", &endpoint(URL0));
    let pebble = containers();
    pebble.get("sentinel").set_can_connect(false);
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, logging_hook("joined", rel, Some("loki/0")));
    assert_eq!(s.state.stored.notices.len(), 1, "deferred");
    assert_eq!(targets(&pebble, "redis").len(), 1);

    pebble.get("sentinel").set_can_connect(true);
    run(&mut s, "update-status");
    assert!(
        !s.state
            .stored
            .notices
            .iter()
            .any(|n| n.event_path.contains("logging")),
        "{:?}",
        s.state.stored.notices
    );
    let l = labels(&w, U0);
    assert_eq!(
        targets(&pebble, "sentinel"),
        BTreeMap::from([("loki/0".to_string(), enabled(URL0, &l))])
    );

    // The redis container restarts: a fresh Pebble, an empty plan, then pebble-ready.
    pebble.insert(
        "redis",
        redis_k8s::ops::testing::pebble::MemoryPebble::new(),
    );
    run(&mut s, "redis-pebble-ready");
    assert_eq!(
        targets(&pebble, "redis"),
        BTreeMap::from([("loki/0".to_string(), enabled(URL0, &l))])
    );
    assert_eq!(
        pebble.get("redis").service_state("redis-log").as_deref(),
        Some("active")
    );
}
