//! The `metrics-endpoint` relation (prometheus_scrape provider): the exact databag strings
//! Canonical's `prometheus_scrape` library (LIBPATCH 47, as vendored by the Python charm)
//! writes, who writes them, and on which events. See `src/metrics.rs`.

mod scenario_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, World};
use scenario_support::*;

const PROM: &str = "prometheus";
const JOBS: &str = r#"[{"metrics_path": "/metrics", "static_configs": [{"targets": ["*:9121"]}]}]"#;

/// Add a one-unit Prometheus (requires `prometheus_scrape` on `metrics-endpoint`) related
/// to the charm's `metrics-endpoint`; returns the relation id.
fn add_prometheus(w: &Arc<Mutex<World>>) -> u32 {
    let meta = CharmMeta::from_yaml(
        "name: prometheus-k8s\nrequires:\n  metrics-endpoint:\n    interface: prometheus_scrape\n",
        "",
        "",
    )
    .unwrap();
    let mut wl = w.lock().unwrap();
    wl.add_app(PROM, meta).unwrap();
    wl.add_unit(PROM).unwrap();
    wl.add_relation((APP, "metrics-endpoint"), (PROM, "metrics-endpoint"))
        .unwrap()
}

fn metrics_hook(event: &str, rel: u32) -> HookInfo {
    HookInfo {
        hook_name: format!("metrics-endpoint-relation-{event}"),
        relation_id: Some(rel),
        remote_unit: Some(format!("{PROM}/0")),
        remote_app: Some(PROM.into()),
        ..HookInfo::default()
    }
}

fn data(w: &Arc<Mutex<World>>, rel: u32, owner: &str) -> BTreeMap<String, String> {
    w.lock().unwrap().relation_data(rel, owner)
}

/// The leader's app bag, as `set_scrape_job_spec` leaves it, for `unit` as the writer.
fn expected_app_bag(w: &Arc<Mutex<World>>, unit: &str) -> BTreeMap<String, String> {
    let uuid = w.lock().unwrap().model_uuid.clone();
    BTreeMap::from([
        ("scrape_jobs".to_string(), JOBS.to_string()),
        (
            "scrape_metadata".to_string(),
            format!(
                r#"{{"model": "scn", "model_uuid": "{uuid}", "application": "redis-k8s", "unit": "{unit}", "charm_name": "redis-k8s"}}"#
            ),
        ),
        ("alert_rules".to_string(), "{}".to_string()),
    ])
}

/// The unit bag's scrape keys (Juju itself puts `ingress-address` and the like there too).
fn scrape_keys(bag: BTreeMap<String, String>) -> BTreeMap<String, String> {
    bag.into_iter()
        .filter(|(k, _)| k.starts_with("prometheus_scrape_"))
        .collect()
}

fn expected_unit_bag(address: &str, unit: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "prometheus_scrape_unit_address".to_string(),
            address.to_string(),
        ),
        ("prometheus_scrape_unit_name".to_string(), unit.to_string()),
    ])
}

/// The leader writes exactly the library's three app keys (Python `json.dumps` strings, the
/// `*` wildcard kept for Prometheus to expand) and its two unit keys; the same hook again
/// sends nothing.
#[test]
fn the_leader_publishes_the_librarys_scrape_job_topology_and_empty_alert_rules() {
    let w = world(1);
    let rel = add_prometheus(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, metrics_hook("joined", rel));

    assert_eq!(data(&w, rel, APP), expected_app_bag(&w, U0));
    // What a consumer parses: one job, the exporter port on every unit, the default path.
    let jobs: serde_json::Value = serde_json::from_str(&data(&w, rel, APP)["scrape_jobs"]).unwrap();
    assert_eq!(
        jobs,
        serde_json::json!([{"metrics_path": "/metrics", "static_configs": [{"targets": ["*:9121"]}]}])
    );
    let unit = scrape_keys(data(&w, rel, U0));
    assert_eq!(
        unit.keys().collect::<Vec<_>>(),
        [
            "prometheus_scrape_unit_address",
            "prometheus_scrape_unit_name"
        ]
    );
    assert_eq!(unit["prometheus_scrape_unit_name"], U0);
    assert!(!unit["prometheus_scrape_unit_address"].is_empty());

    // Nothing changed: nothing is sent.
    let r = run_hook(&mut s, metrics_hook("changed", rel));
    let calls = r.session.calls();
    assert!(!calls.iter().any(|c| c == "relation-set"), "{calls:?}");
}

/// A non-leader writes only its unit keys; when it becomes the leader, leader-elected adds
/// the app keys with itself as the topology's unit.
#[test]
fn a_non_leader_publishes_only_its_unit_keys_until_it_is_elected() {
    let w = world(2);
    let rel = add_prometheus(&w);
    let pebble = containers();
    let mut s = scenario(&w, U1, &pebble);
    run_hook(&mut s, metrics_hook("joined", rel));

    assert_eq!(data(&w, rel, APP), BTreeMap::new());
    let unit = scrape_keys(data(&w, rel, U1));
    assert_eq!(unit["prometheus_scrape_unit_name"], U1);
    assert_eq!(
        unit,
        expected_unit_bag(&unit["prometheus_scrape_unit_address"], U1)
    );
    assert_eq!(scrape_keys(data(&w, rel, U0)), BTreeMap::new());

    w.lock().unwrap().set_leader(U1);
    run(&mut s, "leader-elected");
    assert_eq!(data(&w, rel, APP), expected_app_bag(&w, U1));
}

/// upgrade-charm (Juju runs it on a replaced pod) puts back what changed: a stale address
/// and path, a stale job.
#[test]
fn upgrade_charm_repairs_stale_scrape_data() {
    let w = world(1);
    let rel = add_prometheus(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    let good_unit = data(&w, rel, U0);
    assert_eq!(scrape_keys(good_unit.clone()).len(), 2, "{good_unit:?}");
    {
        let mut wl = w.lock().unwrap();
        let mut unit = good_unit.clone();
        unit.insert("prometheus_scrape_unit_address".into(), "10.9.9.9".into());
        unit.insert("prometheus_scrape_unit_path".into(), "/old".into());
        wl.set_relation_data(rel, U0, unit);
        let mut app = wl.relation_data(rel, APP);
        app.insert("scrape_jobs".into(), "[]".into());
        wl.set_relation_data(rel, APP, app);
    }
    run(&mut s, "upgrade-charm");
    assert_eq!(data(&w, rel, U0), good_unit);
    assert_eq!(data(&w, rel, APP), expected_app_bag(&w, U0));
}

/// In a pod, the unit's name resolves to its IP: the scrape address is that IP, the same
/// value the `redis` client relation publishes as `hostname`.
#[test]
fn the_scrape_address_is_the_pod_ip_the_client_relation_publishes() {
    if skip_unless_in_hosts_namespace(
        "the_scrape_address_is_the_pod_ip_the_client_relation_publishes",
        200,
    ) {
        return;
    }
    let w = world(1);
    let rel = add_prometheus(&w);
    let client = add_client(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    run_hook(&mut s, metrics_hook("joined", rel));
    run_hook(&mut s, client_hook("joined", client, Some("client/0")));

    let ip = unit_addr(200, 0);
    assert_eq!(scrape_keys(data(&w, rel, U0)), expected_unit_bag(&ip, U0));
    assert_eq!(data(&w, client, U0)["hostname"], ip);
}
