//! The `metrics-endpoint` relation (prometheus_scrape provider): the exact databag strings
//! Canonical's `prometheus_scrape` library (LIBPATCH 47, as vendored by the Python charm)
//! writes, who writes them, and on which events; the alert rules it carries: the library's
//! rendering (checked against CPython's `yaml`/`json`), accepted by `promtool check rules`
//! as prometheus-k8s writes them to disk, and every rule proven by `promtool test rules`
//! (`tests/cos_support/alert_rules_test.yaml`) to fire after its `for` and stay silent
//! otherwise. See `src/metrics.rs`.

mod cos_support;
mod scenario_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cos_support::*;
use redis_k8s::metrics::{alert_rules, ALERT_RULE_FILES};
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
        (
            "alert_rules".to_string(),
            alert_rules("scn", &uuid, APP).unwrap().dumps(),
        ),
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
fn the_leader_publishes_the_librarys_scrape_job_topology_and_alert_rules() {
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

// ----- alert rules --------------------------------------------------------------------------

const PROMTOOL: &str = "/usr/bin/promtool";
/// The topology of `tests/cos_support/alert_rules_test.yaml`.
const LAB_MODEL: &str = "lab";
const LAB_UUID: &str = "0a1b2c3d-0000-4000-8000-000000000000";

/// The databag's `alert_rules` holds our two groups, named as the library names them, with
/// every rule labelled with the topology (the rule's own `severity` kept first) and its
/// expression bound to this application.
#[test]
fn the_leader_publishes_topology_labelled_alert_groups() {
    let w = world(1);
    let rel = add_prometheus(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, metrics_hook("joined", rel));
    let uuid = w.lock().unwrap().model_uuid.clone();
    let raw = data(&w, rel, APP)["alert_rules"].clone();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let groups = v["groups"].as_array().unwrap();
    let short = &uuid[..8];
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("scn_{short}_redis_k8s_availability_alerts"),
            format!("scn_{short}_redis_k8s_resources_alerts")
        ]
    );
    let mut alerts = Vec::new();
    for rule in groups.iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        let name = rule["alert"].as_str().unwrap();
        alerts.push(name.to_string());
        let labels = rule["labels"].as_object().unwrap();
        assert_eq!(
            labels.keys().collect::<Vec<_>>(),
            [
                "juju_application",
                "juju_charm",
                "juju_model",
                "juju_model_uuid",
                "severity"
            ],
            "{name}"
        );
        assert_eq!(labels["juju_model"], "scn");
        assert_eq!(labels["juju_model_uuid"], uuid.as_str());
        assert_eq!(labels["juju_application"], APP);
        assert_eq!(labels["juju_charm"], "redis-k8s");
        assert!(
            ["critical", "warning"].contains(&labels["severity"].as_str().unwrap()),
            "{name}"
        );
        let expr = rule["expr"].as_str().unwrap();
        assert!(!expr.contains("%%"), "{name}: {expr}");
        // Every selector (a `{`) carries the three matchers cos-tool would inject.
        let selectors = expr.matches('{').count();
        assert!(selectors > 0, "{name}: {expr}");
        let bound =
            format!(r#"{{juju_model="scn",juju_model_uuid="{uuid}",juju_application="{APP}""#);
        assert_eq!(expr.matches(&bound).count(), selectors, "{name}: {expr}");
        assert!(!rule["annotations"]["summary"].as_str().unwrap().is_empty());
    }
    // The library's order: the rule's own labels, then the topology's.
    let in_order = format!(
        r#""labels": {{"severity": "[a-z]+", "juju_model": "scn", "juju_model_uuid": "{uuid}", "juju_application": "{APP}", "juju_charm": "redis-k8s"}}"#
    );
    let ordered = raw
        .match_indices(r#""labels": {"#)
        .filter(|(i, _)| {
            let rest = &raw[*i..];
            let end = rest.find('}').unwrap() + 1;
            let got = &rest[..end];
            let sev = got.split('"').nth(5).unwrap_or("");
            got == in_order.replace("[a-z]+", sev)
        })
        .count();
    assert_eq!(ordered, alerts.len(), "{raw}");
    assert_eq!(
        alerts,
        [
            "RedisDown",
            "RedisExporterDown",
            "RedisNoPrimary",
            "RedisMoreThanOnePrimary",
            "RedisReplicaLinkDown",
            "RedisReplicationLagHigh",
            "RedisMemoryNearMaxmemory",
            "RedisEvictionsHappening",
            "RedisRejectedConnections",
            "RedisTooManyClients",
            "RedisAofLastWriteFailed",
            "RedisRdbLastSaveFailed"
        ]
    );
}

/// The string is what the library sends: CPython's `yaml.safe_load` of our files, the
/// library's group renaming and label update, `%%juju_topology%%` bound to the three
/// matchers, and `json.dumps`: byte for byte.
#[test]
fn alert_rules_are_byte_for_byte_what_the_library_dumps() {
    let script = r#"
import json, re, sys, yaml
model, uuid, app, charm = sys.argv[1:5]
identifier = "_".join([model, uuid[:8], app]).replace("/", "_")
labels = {"juju_model": model, "juju_model_uuid": uuid, "juju_application": app, "juju_charm": charm}
matchers = ",".join('%s="%s"' % (k, v) for k, v in list(labels.items())[:3])
groups = []
for path in sys.argv[5:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    for group in doc["groups"]:
        name = "_".join(filter(None, [identifier, group["name"], "alerts"]))
        group["name"] = "".join(c if re.match(r"[a-zA-Z0-9_:]", c) else "_" for c in name)
        for rule in group["rules"]:
            rule.setdefault("labels", {})
            for k, v in labels.items():
                rule["labels"].setdefault(k, v)
            rule["expr"] = rule["expr"].replace("%%juju_topology%%", matchers)
        groups.append(group)
sys.stdout.write(json.dumps({"groups": groups} if groups else {}))
"#;
    let dir = repo().join("src/prometheus_alert_rules");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    // Every file in the directory is embedded, in the library's (sorted) order.
    assert_eq!(
        files
            .iter()
            .map(|f| Path::new(f).file_name().unwrap().to_str().unwrap())
            .collect::<Vec<_>>(),
        ALERT_RULE_FILES.iter().map(|f| f.name).collect::<Vec<_>>()
    );
    for (model, uuid, app) in [
        ("scn", "5a3c9f0e-1b2d-4c3e-8f4a-6b7c8d9e0f1a", APP),
        ("prod-eu", "0a1b2c3d-0000-4000-8000-000000000000", "cache-2"),
    ] {
        let mut args = vec![
            "-c".to_string(),
            script.to_string(),
            model.into(),
            uuid.into(),
            app.into(),
            "redis-k8s".into(),
        ];
        args.extend(files.iter().cloned());
        let out = Command::new("python3").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            alert_rules(model, uuid, app).unwrap().dumps(),
            String::from_utf8(out.stdout).unwrap(),
            "{model} {app}"
        );
    }
}

/// The rules as prometheus-k8s writes them to disk (`yaml.safe_dump` of the relation's
/// `alert_rules` into `<identifier>.rules`), in `dir`; with the annotations removed when
/// `annotations` is false (for `promtool test rules`, whose alerts would otherwise have to
/// spell out every rendered annotation).
fn write_rules_file(dir: &Path, file: &str, annotations: bool) -> std::path::PathBuf {
    write_rules(dir, file, LAB_MODEL, LAB_UUID, annotations, false)
}

/// [`write_rules_file`] for any model uuid (the model is `scn` or `lab`), optionally with
/// every `for` set to `0s` (a test-only derivation: a real Prometheus then fires as soon as
/// an expression holds, instead of after minutes).
fn write_rules(
    dir: &Path,
    file: &str,
    model: &str,
    uuid: &str,
    annotations: bool,
    zero_for: bool,
) -> std::path::PathBuf {
    let raw = alert_rules(model, uuid, APP).unwrap().dumps();
    let script = format!(
        "import json, sys, yaml\n\
         rules = json.loads(sys.stdin.read())\n\
         for r in [r for g in rules['groups'] for r in g['rules']]:\n    \
             if not {keep}: r.pop('annotations', None)\n    \
             if {zero}: r['for'] = '0s'\n\
         sys.stdout.write(yaml.safe_dump(rules))\n",
        keep = if annotations { "True" } else { "False" },
        zero = if zero_for { "True" } else { "False" },
    );
    let path = dir.join(file);
    std::fs::write(&path, cos_support::python(&script, &raw)).unwrap();
    path
}

/// `promtool check rules` accepts what prometheus-k8s would load: valid PromQL, durations
/// and annotation templates, unique group names.
#[test]
fn promtool_accepts_the_rules_as_prometheus_writes_them() {
    if !Path::new(PROMTOOL).exists() {
        eprintln!("skipping: {PROMTOOL} not installed (Debian's prometheus package)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_rules_file(dir.path(), "lab_0a1b2c3d_redis-k8s.rules", true);
    let out = Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 12 rules found"), "{text}");
}

/// Every rule fires after its `for` on the condition it names, stays silent while healthy,
/// and ignores another application's series: `promtool test rules` with
/// `tests/cos_support/alert_rules_test.yaml`.
#[test]
fn promtool_unit_tests_prove_every_rule() {
    if !Path::new(PROMTOOL).exists() {
        eprintln!("skipping: {PROMTOOL} not installed (Debian's prometheus package)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_rules_file(dir.path(), "rules.yaml", false);
    let tests = dir.path().join("alert_rules_test.yaml");
    std::fs::copy(
        repo().join("tests/cos_support/alert_rules_test.yaml"),
        &tests,
    )
    .unwrap();
    // Every rule has a test block.
    let text = std::fs::read_to_string(&tests).unwrap();
    let raw = alert_rules(LAB_MODEL, LAB_UUID, APP).unwrap().dumps();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    for rule in v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let name = rule["alert"].as_str().unwrap();
        assert!(
            text.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - exp_labels"
            )),
            "no firing test for {name}"
        );
        assert!(
            text.contains(&format!("alertname: {name}\n        exp_alerts: []")),
            "no silent test for {name}"
        );
    }
    let out = Command::new(PROMTOOL)
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Identifiers directly followed by `{` in a PromQL expression: the metrics it selects
/// (every selector of ours carries the topology matchers, so none is bare).
fn selected_metrics(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    for (i, _) in expr.match_indices('{') {
        let mut j = i;
        while j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_' || b[j - 1] == b':') {
            j -= 1;
        }
        if j < i {
            out.push(expr[j..i].to_string());
        }
    }
    out
}

/// The alerts firing in `prom` now: (alertname, juju_unit or "") pairs.
fn firing(prom: &Prometheus) -> Vec<(String, String)> {
    let Ok(v) = prom.get("/api/v1/alerts") else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            let l = &a["labels"];
            (
                l["alertname"].as_str().unwrap_or("").to_string(),
                l["juju_unit"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A real Prometheus scraping real exporters of a real primary and replica, with our rules
/// loaded as prometheus-k8s writes them (every `for` set to 0s): every rule evaluates
/// without error and only names metrics the exporters export; nothing fires while the pair
/// is healthy; killing the primary's redis-server fires RedisDown for it, RedisNoPrimary
/// and RedisReplicaLinkDown for the replica; killing the replica's then fires RedisDown for
/// it too. Skipped without `/usr/bin/prometheus` and the exporter.
#[test]
fn a_real_prometheus_fires_the_rules_when_redis_servers_die() {
    if !Path::new(EXPORTER).exists() || !Path::new(PROMETHEUS).exists() {
        eprintln!("skipping: {EXPORTER} or {PROMETHEUS} not installed");
        return;
    }
    let mut fleet = Fleet::start("127.0.94");
    // Every metric a rule selects is exported by one of the two (`up` is Prometheus's own).
    let mut exported = std::collections::BTreeSet::from(["up".to_string()]);
    for host in &fleet.hosts {
        exported.extend(metric_names(&scrape(host, 9121)));
    }
    let raw = alert_rules("scn", PROM_MODEL_UUID, APP).unwrap().dumps();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    for rule in v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        let expr = rule["expr"].as_str().unwrap();
        let metrics = selected_metrics(expr);
        assert!(!metrics.is_empty(), "{expr}");
        for m in metrics {
            assert!(
                exported.contains(&m),
                "{}: {m} is not exported",
                rule["alert"]
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(
        dir.path(),
        "scn_0a1b_redis-k8s.rules",
        "scn",
        PROM_MODEL_UUID,
        true,
        true,
    );
    let prom = Prometheus::start(&fleet, "127.0.94.3", Some(&rules));
    // Both targets scraped a few times and every rule evaluated, healthy.
    wait_for_within(
        "scrapes and rule evaluations",
        Duration::from_secs(30),
        || {
            fleet.lookups();
            let scraped = prom
                .try_query("count_over_time(redis_up[1m]) >= 3")
                .map(|r| r["data"]["result"].as_array().map_or(0, |a| a.len()) == 2)
                .unwrap_or(false);
            let rules = prom.get("/api/v1/rules").unwrap_or_default();
            let all: Vec<&serde_json::Value> = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            scraped
                && all.len() == 12
                && all.iter().all(|r| {
                    r["health"] == "ok"
                        && r["lastEvaluation"]
                            .as_str()
                            .is_some_and(|t| !t.starts_with("0001"))
                })
        },
    );
    let rules = prom.get("/api/v1/rules").unwrap();
    let groups: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        [
            "scn_0a1b_redis_k8s_availability_alerts",
            "scn_0a1b_redis_k8s_resources_alerts"
        ]
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(firing(&prom), [], "alerts on a healthy primary and replica");

    let (u0, u1) = (format!("{APP}/0"), format!("{APP}/1"));
    fleet.kill_redis(0);
    let want = vec![
        ("RedisDown".to_string(), u0.clone()),
        ("RedisNoPrimary".to_string(), String::new()),
        ("RedisReplicaLinkDown".to_string(), u1.clone()),
    ];
    wait_for_within("the primary's alerts", Duration::from_secs(30), || {
        firing(&prom) == want
    });

    fleet.kill_redis(1);
    wait_for_within("the replica's RedisDown", Duration::from_secs(30), || {
        firing(&prom)
            == vec![
                ("RedisDown".to_string(), u0.clone()),
                ("RedisDown".to_string(), u1.clone()),
                ("RedisNoPrimary".to_string(), String::new()),
            ]
    });
}
