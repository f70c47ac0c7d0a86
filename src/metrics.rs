//! The `metrics-endpoint` relation (interface `prometheus_scrape`, provider side): what
//! Canonical's `charms.prometheus_k8s.v0.prometheus_scrape` library's
//! `MetricsEndpointProvider` writes for the Python redis-k8s charm, which vendors LIBPATCH 47
//! and declares one job, `static_configs.targets = ["*:9121"]`.
//!
//! - Every unit, in its unit databag (the library's `_set_unit_ip`):
//!   `prometheus_scrape_unit_address` (this unit's address: the same one the `redis` client
//!   relation publishes as `hostname`, the pod IP where the pod name resolves) and
//!   `prometheus_scrape_unit_name` (the unit name). The library also writes
//!   `prometheus_scrape_unit_path = ""`, which ops turns into "delete the key"; we send the
//!   same empty value, so a stale path is removed and none is ever shown.
//! - The leader, in the app databag (`set_scrape_job_spec`): `scrape_metadata` (the Juju
//!   topology, `JujuTopology.as_dict()`), `scrape_jobs` (the job after the library's
//!   `sanitize_scrape_config`, i.e. with its `metrics_path: /metrics` default; the `*` host is
//!   left for Prometheus to expand with each unit's address) and `alert_rules` (the rule
//!   files of `src/prometheus_alert_rules/`, as the library's `AlertRules(topology).as_dict()`
//!   renders them: see [`alert_rules`]; the Python charm shipped none and sent `{}`).
//!
//! The values are byte-for-byte what Python's `json.dumps` produces (`", "` and `": "`
//! separators, non-ASCII escaped, insertion order), so a unit refreshed from the Python charm
//! finds its data unchanged and no `relation-changed` reaches Prometheus for nothing.
//! Only keys whose value changes are sent ([`crate::ops::model`] diffs against the bag).

use std::collections::BTreeMap;

use crate::charm::{own_address, RedisK8sCharm};
use crate::literals::EXPORTER_PORT;
use crate::ops::framework::{EventHandle, Framework, HandlerResult};
use crate::ops::hookcmds::HookError;

/// What publishing can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Rules(#[from] AlertRulesError),
}

/// An embedded rule file the charm cannot render (a packaging defect: the unit tests render
/// every file, so a released charm never meets it).
#[derive(Debug, thiserror::Error)]
pub enum AlertRulesError {
    #[error("alert rule file {file}: invalid YAML: {source}")]
    Yaml {
        file: &'static str,
        source: serde_yaml::Error,
    },
    #[error("alert rule file {file}: {reason}")]
    Format { file: &'static str, reason: String },
}

/// The relation endpoint, as in `metadata.yaml` (and the library's default name).
pub const METRICS_RELATION: &str = "metrics-endpoint";
/// `charm.meta.name` as the Python charm reports it in `scrape_metadata.charm_name`: the
/// `name` of `metadata.yaml`.
pub const CHARM_NAME: &str = "redis-k8s";

/// App databag keys (leader only).
pub const KEY_SCRAPE_JOBS: &str = "scrape_jobs";
pub const KEY_SCRAPE_METADATA: &str = "scrape_metadata";
pub const KEY_ALERT_RULES: &str = "alert_rules";
/// Unit databag keys.
pub const KEY_UNIT_ADDRESS: &str = "prometheus_scrape_unit_address";
pub const KEY_UNIT_NAME: &str = "prometheus_scrape_unit_name";
pub const KEY_UNIT_PATH: &str = "prometheus_scrape_unit_path";

/// `alert_rules` when a charm ships none: `json.dumps(AlertRules(...).as_dict())` of an
/// empty rule set (what the Python charm sent).
pub const NO_ALERT_RULES: &str = "{}";

/// One rule file of `src/prometheus_alert_rules/`, embedded in the binary (a Rust charm has
/// no `src/` directory at run time to glob).
#[derive(Debug, Clone, Copy)]
pub struct RuleFile {
    /// The file name, as in the charm's source tree.
    pub name: &'static str,
    /// Its text: the official Prometheus rule file format (`groups:`).
    pub text: &'static str,
}

/// Our alert rule files, in the order the library reads them (`sorted()` paths).
pub const ALERT_RULE_FILES: &[RuleFile] = &[
    RuleFile {
        name: "availability.rules",
        text: include_str!("prometheus_alert_rules/availability.rules"),
    },
    RuleFile {
        name: "resources.rules",
        text: include_str!("prometheus_alert_rules/resources.rules"),
    },
];

/// Where an expression wants the application's topology matchers (the library's
/// placeholder).
pub const TOPOLOGY_PLACEHOLDER: &str = "%%juju_topology%%";

/// A JSON value whose objects keep their insertion order, serialized as Python's
/// `json.dumps` does with its defaults. `serde_json` (without `preserve_order`) would sort
/// the keys and print compact separators, which is valid JSON but not the same string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyJson {
    Str(String),
    List(Vec<PyJson>),
    Object(Vec<(String, PyJson)>),
}

impl PyJson {
    fn str(s: &str) -> Self {
        PyJson::Str(s.to_string())
    }

    fn object(pairs: Vec<(&str, PyJson)>) -> Self {
        PyJson::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// `json.dumps(value)` with Python's defaults (`ensure_ascii=True`, separators
    /// `(", ", ": ")`, no sorting).
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            PyJson::Str(s) => write_py_string(s, out),
            PyJson::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            PyJson::Object(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_py_string(k, out);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string as Python's `ensure_ascii` encoder writes it: printable ASCII as is (but
/// `"` and `\`), the five short escapes, everything else as `\uXXXX` (UTF-16 surrogate pairs
/// above the BMP).
fn write_py_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// The Python charm's job, `{"static_configs": [{"targets": ["*:9121"]}]}`, after the
/// library's `sanitize_scrape_config` (`DEFAULT_JOB.copy()` updated with the job: the default
/// `metrics_path` first, then `static_configs` in the default's position).
pub fn scrape_jobs() -> PyJson {
    PyJson::List(vec![PyJson::object(vec![
        ("metrics_path", PyJson::str("/metrics")),
        (
            "static_configs",
            PyJson::List(vec![PyJson::object(vec![(
                "targets",
                PyJson::List(vec![PyJson::Str(format!("*:{EXPORTER_PORT}"))]),
            )])]),
        ),
    ])])
}

/// `JujuTopology.from_charm(charm).as_dict()` (cos-lib): model, model_uuid, application,
/// unit, charm_name, in that order. The unit is the leader that wrote it, as in Python.
pub fn scrape_metadata(model: &str, model_uuid: &str, app: &str, unit: &str) -> PyJson {
    PyJson::object(vec![
        ("model", PyJson::str(model)),
        ("model_uuid", PyJson::str(model_uuid)),
        ("application", PyJson::str(app)),
        ("unit", PyJson::str(unit)),
        ("charm_name", PyJson::str(CHARM_NAME)),
    ])
}

/// `JujuTopology.identifier` (cos-lib): `<model>_<first 8 chars of the uuid>_<application>`,
/// `/` replaced by `_`.
pub fn topology_identifier(model: &str, model_uuid: &str, app: &str) -> String {
    let short: String = model_uuid.chars().take(8).collect();
    format!("{model}_{short}_{app}").replace('/', "_")
}

/// The library's `_sanitize_metric_name`: every character outside `[a-zA-Z0-9_:]` becomes
/// `_` (so `redis-k8s` appears as `redis_k8s` in group names).
fn sanitize_group_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A PromQL string literal (double quotes, `\` and `"` escaped).
fn promql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `alert_rules` value: cos-lib `AlertRules(query_type="promql",
/// topology=JujuTopology.from_charm(charm))` after `add_path("src/prometheus_alert_rules")`,
/// then `as_dict()`:
///
/// - each file's groups, in file order, renamed `<identifier>_<group name>_alerts` and
///   sanitized (the library's `_from_file`/`_from_dict`; our files use the official format
///   and name their group after the file's stem);
/// - each rule's `labels` extended, after its own labels and without overriding them, with
///   the topology's `label_matcher_dict`: `juju_model`, `juju_model_uuid`,
///   `juju_application`, `juju_charm`;
/// - each expression's `%%juju_topology%%` replaced by the matchers
///   `juju_model="..",juju_model_uuid="..",juju_application=".."`. The library strips the
///   placeholder and asks `cos-tool` to inject those three matchers into every selector;
///   without `cos-tool` (not in a charm's venv by default) it leaves the expression
///   unmatched and a rule would count every application's series. Writing the placeholder
///   where each selector's matchers go gives the expression cos-tool would produce, with or
///   without it; prometheus-k8s re-injecting the same matchers on its side changes nothing.
pub fn alert_rules(model: &str, model_uuid: &str, app: &str) -> Result<PyJson, AlertRulesError> {
    render_alert_rules(ALERT_RULE_FILES, model, model_uuid, app)
}

/// [`alert_rules`] over any set of files (the tests feed it broken ones).
fn render_alert_rules(
    files: &[RuleFile],
    model: &str,
    model_uuid: &str,
    app: &str,
) -> Result<PyJson, AlertRulesError> {
    let identifier = topology_identifier(model, model_uuid, app);
    let topology_labels = [
        ("juju_model", model),
        ("juju_model_uuid", model_uuid),
        ("juju_application", app),
        ("juju_charm", CHARM_NAME),
    ];
    let matchers = topology_labels[..3]
        .iter()
        .map(|(k, v)| format!("{k}={}", promql_string(v)))
        .collect::<Vec<_>>()
        .join(",");
    let mut groups = Vec::new();
    for file in files {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(file.text).map_err(|source| AlertRulesError::Yaml {
                file: file.name,
                source,
            })?;
        let format = |reason: &str| AlertRulesError::Format {
            file: file.name,
            reason: reason.to_string(),
        };
        let file_groups = doc
            .get("groups")
            .and_then(|g| g.as_sequence())
            .ok_or_else(|| format("no `groups` list"))?;
        for group in file_groups {
            let PyJson::Object(mut group) = to_py_json(group).map_err(|r| format(&r))? else {
                return Err(format("a group is not a mapping"));
            };
            let mut has_rules = false;
            for (key, value) in group.iter_mut() {
                match (key.as_str(), value) {
                    ("name", PyJson::Str(name)) => {
                        *name = sanitize_group_name(&format!("{identifier}_{name}_alerts"));
                    }
                    ("rules", PyJson::List(rules)) => {
                        has_rules = true;
                        for rule in rules.iter_mut() {
                            label_rule(rule, &topology_labels, &matchers)
                                .map_err(|r| format(&r))?;
                        }
                    }
                    _ => {}
                }
            }
            if !has_rules || !group.iter().any(|(k, _)| k == "name") {
                return Err(format("a group needs a `name` and a `rules` list"));
            }
            groups.push(PyJson::Object(group));
        }
    }
    Ok(if groups.is_empty() {
        PyJson::Object(vec![])
    } else {
        PyJson::object(vec![("groups", PyJson::List(groups))])
    })
}

/// Add the topology labels a rule lacks (a `labels` mapping appended when it has none) and
/// put the matchers in its expression.
fn label_rule(
    rule: &mut PyJson,
    topology_labels: &[(&str, &str)],
    matchers: &str,
) -> Result<(), String> {
    let PyJson::Object(fields) = rule else {
        return Err("a rule is not a mapping".into());
    };
    if !fields.iter().any(|(k, _)| k == "labels") {
        fields.push(("labels".into(), PyJson::Object(vec![])));
    }
    let mut has_expr = false;
    for (key, value) in fields.iter_mut() {
        match (key.as_str(), value) {
            ("labels", PyJson::Object(labels)) => {
                for (k, v) in topology_labels {
                    if !labels.iter().any(|(have, _)| have == k) {
                        labels.push((k.to_string(), PyJson::str(v)));
                    }
                }
            }
            ("labels", _) => return Err("`labels` is not a mapping".into()),
            ("expr", PyJson::Str(expr)) => {
                has_expr = true;
                *expr = expr.replace(TOPOLOGY_PLACEHOLDER, matchers);
            }
            _ => {}
        }
    }
    if has_expr {
        Ok(())
    } else {
        Err("a rule without a string `expr`".into())
    }
}

/// `yaml.safe_load` output as `json.dumps` sees it, for the subset our rule files use:
/// strings, lists and string-keyed mappings (in file order). Anything else (a number, a
/// boolean, null) is refused rather than rendered differently from Python: quote it.
fn to_py_json(v: &serde_yaml::Value) -> Result<PyJson, String> {
    match v {
        serde_yaml::Value::String(s) => Ok(PyJson::Str(s.clone())),
        serde_yaml::Value::Sequence(items) => items
            .iter()
            .map(to_py_json)
            .collect::<Result<_, _>>()
            .map(PyJson::List),
        serde_yaml::Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| match k {
                serde_yaml::Value::String(k) => Ok((k.clone(), to_py_json(v)?)),
                other => Err(format!("a non-string key: {other:?}")),
            })
            .collect::<Result<_, _>>()
            .map(PyJson::Object),
        other => Err(format!(
            "a value that is not a string, list or mapping (quote it): {other:?}"
        )),
    }
}

/// The leader's app databag for every `metrics-endpoint` relation.
pub fn app_data(
    model: &str,
    model_uuid: &str,
    app: &str,
    unit: &str,
) -> Result<BTreeMap<String, String>, AlertRulesError> {
    Ok(BTreeMap::from([
        (
            KEY_SCRAPE_METADATA.to_string(),
            scrape_metadata(model, model_uuid, app, unit).dumps(),
        ),
        (KEY_SCRAPE_JOBS.to_string(), scrape_jobs().dumps()),
        (
            KEY_ALERT_RULES.to_string(),
            alert_rules(model, model_uuid, app)?.dumps(),
        ),
    ]))
}

/// Every unit's own databag. The empty path deletes a stale key and is otherwise not sent.
pub fn unit_data(address: &str, unit: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (KEY_UNIT_ADDRESS.to_string(), address.to_string()),
        (KEY_UNIT_PATH.to_string(), String::new()),
        (KEY_UNIT_NAME.to_string(), unit.to_string()),
    ])
}

/// Write our data into every `metrics-endpoint` relation: the unit keys on every unit, the
/// app keys on the leader. Returns whether anything was sent. No relation: no further call.
pub fn publish(charm: &mut RedisK8sCharm, fw: &mut Framework<'_>) -> Result<bool, MetricsError> {
    let ids = fw.model().relation_ids(METRICS_RELATION)?;
    if ids.is_empty() {
        return Ok(false);
    }
    let address = own_address(charm.topology(fw)?);
    let ctx = fw.ctx;
    let unit = unit_data(&address, &ctx.unit_name);
    let app = if fw.model().is_leader()? {
        Some(app_data(
            &ctx.model_name,
            &ctx.model_uuid,
            &ctx.app_name,
            &ctx.unit_name,
        )?)
    } else {
        None
    };
    let mut changed = false;
    for id in ids {
        changed |= fw.model().update_relation_data(id, false, &unit)?;
        if let Some(app) = &app {
            changed |= fw.model().update_relation_data(id, true, app)?;
        }
    }
    if changed {
        tracing::info!(address = %address, "published the metrics endpoint");
    }
    Ok(changed)
}

/// Handler for the events that (re)publish the scrape data: `metrics-endpoint`
/// relation-joined/changed, leader-elected, config-changed and upgrade-charm (a replaced
/// pod comes back with a new IP and Juju runs upgrade-charm on it).
pub fn on_event(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _ev: &mut EventHandle,
) -> HandlerResult {
    publish(charm, fw)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings checked against CPython 3's `json.dumps`.
    #[test]
    fn dumps_matches_python_json_dumps() {
        let v = PyJson::object(vec![
            (
                "a",
                PyJson::List(vec![PyJson::str("\u{e9}\"\n\u{7f}\u{1F600}/\u{1}")]),
            ),
            ("b", PyJson::Object(vec![])),
        ]);
        assert_eq!(
            v.dumps(),
            r#"{"a": ["\u00e9\"\n\u007f\ud83d\ude00/\u0001"], "b": {}}"#
        );
        assert_eq!(PyJson::List(vec![]).dumps(), "[]");
        assert_eq!(
            PyJson::str("a\\b\tc\rd\u{8}\u{c}").dumps(),
            r#""a\\b\tc\rd\b\f""#
        );
    }

    #[test]
    fn the_job_and_metadata_are_the_librarys_strings() {
        assert_eq!(
            scrape_jobs().dumps(),
            r#"[{"metrics_path": "/metrics", "static_configs": [{"targets": ["*:9121"]}]}]"#
        );
        assert_eq!(
            scrape_metadata("m", "0a1b", "redis-k8s", "redis-k8s/0").dumps(),
            r#"{"model": "m", "model_uuid": "0a1b", "application": "redis-k8s", "unit": "redis-k8s/0", "charm_name": "redis-k8s"}"#
        );
        // Valid JSON for any consumer.
        let parsed: serde_json::Value = serde_json::from_str(&scrape_jobs().dumps()).unwrap();
        assert_eq!(parsed[0]["static_configs"][0]["targets"][0], "*:9121");
    }

    #[test]
    fn identifier_and_group_names_are_the_librarys() {
        assert_eq!(
            topology_identifier("prod", "0a1b2c3d-0000-4000-8000-000000000000", "redis-k8s"),
            "prod_0a1b2c3d_redis-k8s"
        );
        assert_eq!(topology_identifier("m", "0a1b", "a/b"), "m_0a1b_a_b");
        assert_eq!(
            sanitize_group_name("m-1_0a1b_r.k8s:x_alerts"),
            "m_1_0a1b_r_k8s:x_alerts"
        );
    }

    fn render(text: &'static str) -> Result<String, AlertRulesError> {
        render_alert_rules(
            &[RuleFile {
                name: "t.rules",
                text,
            }],
            "m",
            "u-1",
            "app",
        )
        .map(|v| v.dumps())
    }

    /// A rule without labels gets the topology's; a rule's own `juju_*` label wins; an
    /// expression without the placeholder is left alone; no files, no groups: `{}`.
    #[test]
    fn labels_are_added_not_overridden() {
        let out = render(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: 'x{%%juju_topology%%} > 1'\n  - alert: B\n    expr: y > 1\n    labels:\n      juju_model: mine\n",
        )
        .unwrap();
        assert_eq!(
            out,
            r#"{"groups": [{"name": "m_u_1_app_g_alerts", "rules": [{"alert": "A", "expr": "x{juju_model=\"m\",juju_model_uuid=\"u-1\",juju_application=\"app\"} > 1", "labels": {"juju_model": "m", "juju_model_uuid": "u-1", "juju_application": "app", "juju_charm": "redis-k8s"}}, {"alert": "B", "expr": "y > 1", "labels": {"juju_model": "mine", "juju_model_uuid": "u-1", "juju_application": "app", "juju_charm": "redis-k8s"}}]}]}"#
        );
        assert_eq!(
            render_alert_rules(&[], "m", "u", "a").unwrap().dumps(),
            NO_ALERT_RULES
        );
        assert_eq!(promql_string("a\"b\\c"), r#""a\"b\\c""#);
    }

    /// A broken file is an error naming it, never a panic or a silently different value
    /// (an unquoted number would dump differently from Python).
    #[test]
    fn broken_rule_files_are_errors() {
        for (text, want) in [
            ("groups: [", "invalid YAML"),
            ("rules: []", "no `groups` list"),
            (
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    for: 5\n",
                "quote it",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: A\n",
                "without a string `expr`",
            ),
            ("groups:\n- name: g\n", "needs a `name` and a `rules` list"),
            ("groups:\n- rules: []\n", "needs a `name`"),
            (
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x\n    labels: [a]\n",
                "not a mapping",
            ),
        ] {
            let err = render(text).unwrap_err().to_string();
            assert!(err.starts_with("alert rule file t.rules: "), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    /// Our own files render (the charm never meets an error at run time).
    #[test]
    fn our_rule_files_render() {
        let v = alert_rules("m", "0a1b2c3d-e", "redis-k8s").unwrap().dumps();
        let parsed: serde_json::Value = serde_json::from_str(&v).unwrap();
        assert_eq!(
            parsed["groups"].as_array().map(Vec::len),
            Some(ALERT_RULE_FILES.len())
        );
        assert!(!v.contains(TOPOLOGY_PLACEHOLDER));
    }

    #[test]
    fn charm_name_is_the_metadata_name() {
        let meta = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("metadata.yaml"),
        )
        .unwrap();
        let meta: serde_yaml::Value = serde_yaml::from_str(&meta).unwrap();
        assert_eq!(meta["name"].as_str(), Some(CHARM_NAME));
        assert_eq!(
            meta["provides"][METRICS_RELATION]["interface"].as_str(),
            Some("prometheus_scrape")
        );
    }
}
