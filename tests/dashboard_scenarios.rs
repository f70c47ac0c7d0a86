//! The `grafana-dashboard` relation (grafana_dashboard provider): the `dashboards` app key as
//! Canonical's `grafana_dashboard` library (LIBPATCH 46) writes it, who writes it and when,
//! that CPython's own `lzma`/`base64`/`json` decode it back to our dashboard, that the
//! dashboard's uids are the library's `hashlib.shake_256` values, and that every panel query
//! is valid for the Juju topology dropdowns Grafana injects and names only metrics a real
//! `prometheus-redis-exporter` exports from a real primary and replica. See
//! `src/dashboards.rs`.

mod cos_support;
mod scenario_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cos_support::*;
use redis_k8s::dashboards::{DASHBOARDS, KEY_DASHBOARDS};
use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, World};
use scenario_support::*;

const GRAFANA: &str = "grafana";
/// The dashboard file, as the charm embeds it.
const DASHBOARD: &str = include_str!("../src/grafana_dashboards/redis.json");
/// The variables Grafana's consumer adds (`TOPOLOGY_TEMPLATE_DROPDOWNS`) plus Grafana's own.
const VARIABLES: &[&str] = &[
    "juju_model",
    "juju_model_uuid",
    "juju_application",
    "juju_unit",
    "__rate_interval",
];
/// What every selector must carry so the dropdowns filter it even without `cos-tool`.
const TOPOLOGY_MATCHERS: &[&str] = &[
    r#"juju_model=~"$juju_model""#,
    r#"juju_model_uuid=~"$juju_model_uuid""#,
    r#"juju_application=~"$juju_application""#,
    r#"juju_unit=~"$juju_unit""#,
];

/// Add a one-unit Grafana (requires `grafana_dashboard` on `grafana-dashboard`) related to
/// the charm's `grafana-dashboard`; returns the relation id.
fn add_grafana(w: &Arc<Mutex<World>>) -> u32 {
    let meta = CharmMeta::from_yaml(
        "name: grafana-k8s\nrequires:\n  grafana-dashboard:\n    interface: grafana_dashboard\n",
        "",
        "",
    )
    .unwrap();
    let mut wl = w.lock().unwrap();
    wl.add_app(GRAFANA, meta).unwrap();
    wl.add_unit(GRAFANA).unwrap();
    wl.add_relation((APP, "grafana-dashboard"), (GRAFANA, "grafana-dashboard"))
        .unwrap()
}

fn grafana_hook(event: &str, rel: u32) -> HookInfo {
    let remote_unit = (event != "created").then(|| format!("{GRAFANA}/0"));
    HookInfo {
        hook_name: format!("grafana-dashboard-relation-{event}"),
        relation_id: Some(rel),
        remote_unit,
        remote_app: Some(GRAFANA.into()),
        ..HookInfo::default()
    }
}

fn app_bag(w: &Arc<Mutex<World>>, rel: u32) -> BTreeMap<String, String> {
    w.lock().unwrap().relation_data(rel, APP)
}

/// The `dashboards` value in the app bag, parsed.
fn published(w: &Arc<Mutex<World>>, rel: u32) -> serde_json::Value {
    let bag = app_bag(w, rel);
    let raw = bag.get(KEY_DASHBOARDS).expect("a dashboards key");
    serde_json::from_str(raw).expect("dashboards is JSON")
}

/// Our dashboard as the library sends it: the file plus nothing (it already has its Path40
/// uid and `charm:` tag).
fn expected_dashboard() -> serde_json::Value {
    serde_json::from_str(DASHBOARD).unwrap()
}

/// Decode the whole `dashboards` value with CPython exactly as the consumer does
/// (`json.loads`, then `lzma.decompress(base64.b64decode(content)).decode()` and `json.loads`
/// per template); returns `{template id: dashboard}`.
fn python_decode(value: &str) -> serde_json::Value {
    let script = "import base64, json, lzma, sys\n\
                  data = json.loads(sys.stdin.read())\n\
                  out = {k: json.loads(lzma.decompress(base64.b64decode(t['content'].encode('utf-8'))).decode())\n\
                         for k, t in data['templates'].items()}\n\
                  sys.stdout.write(json.dumps(out))\n";
    serde_json::from_str(&cos_support::python(script, value)).unwrap()
}

/// Evaluate a Python expression (with `hashlib` and `uuid` imported) and return it printed.
fn python(expr: &str) -> String {
    cos_support::python(&format!("import hashlib, uuid\nprint({expr})"), "")
        .trim()
        .to_string()
}

/// The leader writes exactly one app key, `dashboards`, with the library's shape; CPython
/// decodes its content back to our dashboard; the same and the other triggering hooks
/// write nothing more (the uuid stays, so no relation-changed reaches Grafana for nothing).
#[test]
fn the_leader_publishes_the_dashboard_that_python_decodes_and_then_writes_nothing() {
    let w = world(1);
    let rel = add_grafana(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, grafana_hook("created", rel));

    let bag = app_bag(&w, rel);
    assert_eq!(bag.keys().collect::<Vec<_>>(), [KEY_DASHBOARDS], "{bag:?}");
    let raw = bag[KEY_DASHBOARDS].clone();
    let v = published(&w, rel);
    let uuid = w.lock().unwrap().model_uuid.clone();
    let template = &v["templates"]["file:redis"];
    assert_eq!(
        v["templates"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["file:redis"]
    );
    assert_eq!(template["charm"], "redis-k8s");
    assert_eq!(
        template["juju_topology"],
        serde_json::json!({"model": "scn", "model_uuid": uuid, "application": APP, "unit": U0})
    );
    assert_eq!(template["inject_dropdowns"], true);
    assert_eq!(template["dashboard_alt_uid"], DASHBOARDS[0].alt_uid);
    // The uuid is `str(uuid.uuid4())`: Python parses it as a version 4 UUID.
    let id = v["uuid"].as_str().unwrap();
    assert_eq!(python(&format!("uuid.UUID('{id}').version")), "4");
    // Python's `json.dumps` layout (the library's string for this data).
    assert!(
        raw.starts_with(r#"{"templates": {"file:redis": {"charm": "redis-k8s", "content": ""#),
        "{raw}"
    );
    assert!(raw.ends_with(&format!(r#""uuid": "{id}"}}"#)), "{raw}");

    // What Grafana gets out of it is our dashboard, decoded by CPython's lzma and base64.
    let decoded = python_decode(&raw);
    assert_eq!(decoded["file:redis"], expected_dashboard());

    // Nothing changed: nothing is written, whatever the trigger.
    let calls = run_hook(&mut s, grafana_hook("changed", rel))
        .session
        .calls();
    assert!(!calls.iter().any(|c| c == "relation-set"), "{calls:?}");
    for hook in ["config-changed", "upgrade-charm", "leader-elected"] {
        run(&mut s, hook);
        assert_eq!(app_bag(&w, rel)[KEY_DASHBOARDS], raw, "{hook} rewrote it");
    }
}

/// A non-leader writes nothing, on any trigger; when it is elected it publishes with itself
/// as the topology's unit (a new value, so Grafana hears of it).
#[test]
fn a_non_leader_writes_nothing_until_it_is_elected() {
    let w = world(2);
    let rel = add_grafana(&w);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run_hook(&mut s0, grafana_hook("created", rel));
    let before = app_bag(&w, rel)[KEY_DASHBOARDS].clone();

    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    // Someone else's stale value: a non-leader must not repair it either.
    w.lock().unwrap().set_relation_data(
        rel,
        APP,
        BTreeMap::from([(KEY_DASHBOARDS.into(), "{}".into())]),
    );
    for event in ["created", "changed"] {
        let calls = run_hook(&mut s1, grafana_hook(event, rel)).session.calls();
        assert!(!calls.iter().any(|c| c == "relation-set"), "{calls:?}");
    }
    run(&mut s1, "config-changed");
    run(&mut s1, "upgrade-charm");
    assert_eq!(app_bag(&w, rel)[KEY_DASHBOARDS], "{}");

    w.lock().unwrap().set_leader(U1);
    run(&mut s1, "leader-elected");
    let v = published(&w, rel);
    assert_eq!(v["templates"]["file:redis"]["juju_topology"]["unit"], U1);
    let old: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert_ne!(v["uuid"], old["uuid"]);
    let decoded = python_decode(&app_bag(&w, rel)[KEY_DASHBOARDS]);
    assert_eq!(decoded["file:redis"], expected_dashboard());
}

/// After a refresh from the Python charm, upgrade-charm replaces its two third-party
/// dashboards with ours.
#[test]
fn upgrade_charm_replaces_the_python_charms_dashboards() {
    let w = world(1);
    let rel = add_grafana(&w);
    let python_value = r#"{"templates": {"file:helm-exporter": {"charm": "redis-k8s", "content": "/Td6WFoAAATm1rRGAgAhARYAAAB0L+Wj4AAJAAddAD2IiWfbXgAAAGsvxwEs+AwAASMKOqmc3B+2830BAAAAAARZWg==", "juju_topology": {}, "inject_dropdowns": true}, "file:redis-exporter": {"charm": "redis-k8s", "content": "x", "juju_topology": {}, "inject_dropdowns": true}}, "uuid": "9c1e4fd0-5b4e-4f0e-9b43-0a6c1e1f7d11"}"#;
    w.lock().unwrap().set_relation_data(
        rel,
        APP,
        BTreeMap::from([(KEY_DASHBOARDS.into(), python_value.into())]),
    );
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "upgrade-charm");
    let v = published(&w, rel);
    assert_eq!(
        v["templates"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["file:redis"]
    );
    assert_ne!(v["uuid"], "9c1e4fd0-5b4e-4f0e-9b43-0a6c1e1f7d11");
}

/// Grafana's answer (`event` with errors) is read on relation-changed without failing the
/// hook or writing anything back.
#[test]
fn grafanas_error_answer_does_not_fail_the_hook() {
    let w = world(1);
    let rel = add_grafana(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run_hook(&mut s, grafana_hook("created", rel));
    let raw = app_bag(&w, rel)[KEY_DASHBOARDS].clone();
    w.lock().unwrap().set_relation_data(
        rel,
        GRAFANA,
        BTreeMap::from([(
            "event".into(),
            r#"{"errors": [{"dashboard_id": "file:redis", "error": "bad"}]}"#.into(),
        )]),
    );
    let calls = run_hook(&mut s, grafana_hook("changed", rel))
        .session
        .calls();
    assert!(!calls.iter().any(|c| c == "relation-set"), "{calls:?}");
    assert_eq!(app_bag(&w, rel)[KEY_DASHBOARDS], raw);
}

/// The uid and the alternative uid are what cosl's `DashboardPath40UID.generate` and the
/// library's `_generate_alt_uid` compute with `hashlib.shake_256`.
#[test]
fn the_uids_are_the_librarys_shake_256_values() {
    for d in DASHBOARDS {
        let dash: serde_json::Value = serde_json::from_str(d.json).unwrap();
        assert_eq!(
            dash["uid"].as_str().unwrap(),
            python(&format!(
                "hashlib.shake_256('redis-k8s-{}'.encode('utf-8')).hexdigest(20)",
                d.path
            ))
        );
        assert_eq!(
            d.alt_uid,
            python(&format!(
                "hashlib.shake_256('redis-k8s-file:{}'.encode('utf-8')).hexdigest(8)",
                d.stem
            ))
        );
        assert_eq!(d.path, format!("src/grafana_dashboards/{}.json", d.stem));
        assert!(repo().join(d.path).is_file());
    }
}

// ----- the dashboard itself -----------------------------------------------------------------

/// Every (panel title, expr) of the dashboard.
fn queries(dash: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// PromQL functions and aggregations the queries may call.
const FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "irate",
    "delta",
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "topk",
    "time",
    "abs",
    "clamp_min",
];
/// Keywords followed by a label list in parentheses.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const BINARY_KEYWORDS: &[&str] = &["and", "or", "unless", "bool"];

/// The metric selectors of a PromQL expression: (metric name, matcher text). Panics on an
/// identifier that is neither a known function/keyword nor a metric with matchers.
fn selectors(expr: &str) -> Vec<(String, String)> {
    let b = expr.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let close = |open: usize, c: u8| {
        let mut j = open + 1;
        let mut in_str = false;
        while j < b.len() {
            match b[j] {
                b'"' => in_str = !in_str,
                x if x == c && !in_str => return j,
                _ => {}
            }
            j += 1;
        }
        panic!("unclosed {} in {expr}", c as char);
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let ident = &expr[start..i];
            let next = skip_ws(i);
            if LABEL_LIST_KEYWORDS.contains(&ident) {
                assert_eq!(b.get(next), Some(&b'('), "{ident} without labels: {expr}");
                i = close(next, b')') + 1;
            } else if FUNCTIONS.contains(&ident) || BINARY_KEYWORDS.contains(&ident) {
                // a call or an operator
            } else {
                assert_eq!(
                    b.get(next),
                    Some(&b'{'),
                    "{ident} is not a selector with matchers: {expr}"
                );
                let end = close(next, b'}');
                out.push((ident.to_string(), expr[next + 1..end].to_string()));
                i = end + 1;
            }
        } else if c == b'[' {
            i = close(i, b']') + 1;
        } else if c == b'"' {
            i = close(i, b'"') + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// `$name` and `${name}` references in a string.
fn variables(s: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = s.as_bytes();
    for (i, _) in s.match_indices('$') {
        let mut j = i + 1;
        let braced = b.get(j) == Some(&b'{');
        if braced {
            j += 1;
        }
        let start = j;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        out.insert(s[start..j].to_string());
    }
    out
}

/// The structure Grafana's consumer relies on: no `templating` of ours (its dropdowns are
/// inserted, never duplicated), no `__inputs`, every panel at top level on
/// `${prometheusds}`, unique ids, a 24-column grid, and queries that use only the injected
/// variables and carry all four topology matchers.
#[test]
fn the_dashboard_is_valid_for_the_librarys_consumer() {
    let dash = expected_dashboard();
    assert!(
        dash.get("templating").is_none(),
        "the consumer adds the dropdowns"
    );
    assert!(dash.get("__inputs").is_none());
    assert_eq!(dash["title"], "Redis");
    let ds = serde_json::json!({"type": "prometheus", "uid": "${prometheusds}"});
    let mut ids = BTreeSet::new();
    let mut exprs = 0;
    for p in dash["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24 && g["h"].as_u64().unwrap() > 0, "{title}: {g}");
        if p["type"] == "row" {
            assert_eq!(p["collapsed"], false, "{title}");
            assert_eq!(p["panels"], serde_json::json!([]), "{title}");
            continue;
        }
        assert!(
            ["timeseries", "stat", "gauge", "table"].contains(&p["type"].as_str().unwrap()),
            "{title}"
        );
        assert_eq!(p["datasource"], ds, "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}");
        for t in targets {
            assert_eq!(t["datasource"], ds, "{title}");
            let expr = t["expr"].as_str().unwrap();
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for v in variables(expr).into_iter().chain(variables(legend)) {
                assert!(VARIABLES.contains(&v.as_str()), "{title}: ${v}");
            }
            let sels = selectors(expr);
            assert!(!sels.is_empty(), "{title}: no metric in {expr}");
            for (metric, matchers) in sels {
                for m in TOPOLOGY_MATCHERS {
                    assert!(matchers.contains(m), "{title}: {metric} lacks {m}");
                }
            }
            exprs += 1;
        }
    }
    assert!(exprs >= 25, "{exprs}");
    // What the decoded content carries is this JSON (the tag is already in the file).
    assert!(dash["tags"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("charm: redis-k8s")));
}

#[test]
fn the_selector_parser_sees_every_metric() {
    let got = selectors(
        r#"sum by (cmd) (rate(a_b{x="}[y"}[$__rate_interval])) / on (j) group_right () c{y="1"} > 0"#,
    );
    assert_eq!(
        got,
        [
            ("a_b".to_string(), r#"x="}[y""#.to_string()),
            ("c".to_string(), r#"y="1""#.to_string())
        ]
    );
    assert!(std::panic::catch_unwind(|| selectors("rate(bare[5m])")).is_err());
}

// ----- against a real exporter --------------------------------------------------------------

/// Every metric a panel queries is one that `prometheus-redis-exporter` exports from a real
/// primary (AOF on, a connected replica, keys with and without TTL, hits and misses) and a
/// real replica: the union of both scrapes.
#[test]
fn every_panel_metric_is_exported_by_a_real_exporter() {
    if !Path::new(EXPORTER).exists() {
        eprintln!("skipping: {EXPORTER} not installed");
        return;
    }
    let fleet = Fleet::start("127.0.96");
    let mut exported = BTreeSet::new();
    for host in &fleet.hosts {
        let body = scrape(host, 9121);
        assert!(body.lines().any(|l| l == "redis_up 1"), "{host}: not up");
        exported.extend(metric_names(&body));
    }
    assert!(
        exported.contains("redis_connected_slave_offset_bytes"),
        "the primary did not list its replica"
    );

    let dash = expected_dashboard();
    let mut used = BTreeSet::new();
    for (title, expr) in queries(&dash) {
        for (metric, _) in selectors(&expr) {
            assert!(
                exported.contains(&metric),
                "{title}: {metric} is not exported (exported: {exported:?})"
            );
            used.insert(metric);
        }
    }
    // The areas the dashboard covers.
    for m in [
        "redis_up",
        "redis_instance_info",
        "redis_connected_slaves",
        "redis_master_repl_offset",
        "redis_connected_slave_offset_bytes",
        "redis_commands_processed_total",
        "redis_keyspace_hits_total",
        "redis_memory_used_bytes",
        "redis_mem_fragmentation_ratio",
        "redis_memory_max_bytes",
        "redis_evicted_keys_total",
        "redis_connected_clients",
        "redis_db_keys",
        "redis_aof_enabled",
        "redis_rdb_last_bgsave_status",
    ] {
        assert!(used.contains(m), "no panel shows {m}");
    }
}

/// A real Prometheus scrapes the two exporters with the Juju topology labels the
/// prometheus_scrape relation gives them; every panel query, with the dropdowns set to "All"
/// (`.*`) and `$__rate_interval` to a minute, parses and returns at least one series, and
/// the unit dropdown narrows the per-unit panels to that unit. Skipped without
/// `/usr/bin/prometheus` (Debian's `prometheus` package).
#[test]
fn every_panel_query_returns_data_from_a_real_prometheus() {
    if !Path::new(EXPORTER).exists() || !Path::new(PROMETHEUS).exists() {
        eprintln!("skipping: {EXPORTER} or {PROMETHEUS} not installed");
        return;
    }
    let mut fleet = Fleet::start("127.0.97");
    let prometheus = Prometheus::start(&fleet, "127.0.97.3", None);
    let prom_addr = prometheus.addr.as_str();
    // Three scrapes of both targets, with lookups between them (the hit ratio is a rate).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        fleet.lookups();
        let r = try_prom_query(prom_addr, "count_over_time(redis_up[1m])").unwrap_or_default();
        let counts: Vec<f64> = r["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["value"][1].as_str()?.parse().ok())
            .collect();
        if counts.len() == 2 && counts.iter().all(|c| *c >= 3.0) {
            break;
        }
        assert!(Instant::now() < deadline, "never scraped: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }

    let dash = expected_dashboard();
    for (title, expr) in queries(&dash) {
        let all = expr
            .replace("$juju_model_uuid", ".*")
            .replace("$juju_model", ".*")
            .replace("$juju_application", ".*")
            .replace("$juju_unit", ".*")
            .replace("$__rate_interval", "1m");
        let r = prom_query(prom_addr, &all);
        assert_eq!(r["status"], "success", "{title}: {all}: {r}");
        let series = r["data"]["result"].as_array().unwrap();
        assert!(!series.is_empty(), "{title}: no data for {all}");
        // Picking one unit leaves only that unit's series where the panel shows units.
        let one = all.replace(r#"juju_unit=~".*""#, &format!(r#"juju_unit=~"{APP}/1""#));
        let r = prom_query(prom_addr, &one);
        for s in r["data"]["result"].as_array().unwrap() {
            if let Some(unit) = s["metric"].get("juju_unit") {
                assert_eq!(unit, &format!("{APP}/1"), "{title}: {one}");
            }
        }
    }
}
