//! The `grafana-dashboard` relation (interface `grafana_dashboard`, provider side): what
//! Canonical's `charms.grafana_k8s.v0.grafana_dashboard` library's `GrafanaDashboardProvider`
//! writes, matched against **LIBPATCH 46** (with cosl's `LZMABase64` and
//! `DashboardPath40UID`). The Python charm vendored LIBPATCH 35; the consumer side of every
//! grafana-k8s revision reads the same `dashboards` key and ignores the fields it does not
//! know.
//!
//! ## Wire format
//! The leader writes one key in its app databag, `dashboards`, whose value is
//! `json.dumps({"templates": {...}, "uuid": str(uuid4())})` (Python's default separators, so
//! the string is the one the library would produce for the same data). Each template, keyed
//! `file:<file stem>` (`load_dashboards_from_dir`), is `_content_to_dashboard_object`:
//! - `charm`: `charm.meta.name` (`redis-k8s`);
//! - `content`: `LZMABase64.compress(json.dumps(dashboard))`, i.e.
//!   `base64(lzma.compress(utf8))`: an XZ container (CRC64 check, LZMA2), standard base64
//!   with padding. Before compressing, the library gives the dashboard a `uid` (when it is not
//!   already a valid "Path40" uid: 40 hex digits of
//!   `shake_256("<charm>-src/grafana_dashboards/<file>")`) and a `charm: <charm>` tag; our
//!   file already carries both (the uid is checked against Python's `hashlib` in the tests,
//!   the tag is added here if it were ever missing);
//! - `juju_topology`: `{"model", "model_uuid", "application", "unit"}` of the writing unit
//!   (`inject_dropdowns` is true, so it is not emptied);
//! - `inject_dropdowns`: `true`;
//! - `dashboard_alt_uid`: `shake_256("<charm>-file:<stem>").hexdigest(8)`, which Grafana only
//!   uses for a dashboard without a uid. SHAKE-256 is not in `ring`, and the input is fixed at
//!   build time, so the value is a constant checked against Python's `hashlib` in the tests.
//!
//! ## What Grafana does with it
//! The consumer (`GrafanaDashboardConsumer`) decompresses the content; because our dashboard
//! has no `templating` section it inserts its own variables in order: `juju_model`,
//! `juju_model_uuid`, `juju_application`, `juju_unit` (each `label_values(up{..},<label>)`
//! on `${prometheusds}`), then the `prometheusds` and `lokids` datasource variables. A
//! dashboard that defined variables of the same names, not byte-for-byte equal to the
//! library's, would get them twice; so ours defines none and only *uses* them. Every query
//! carries the four `juju_*=~"$juju_*"` matchers itself, so the panels filter by the
//! dropdowns even on a Grafana without `cos-tool` (which would otherwise inject them); every
//! panel's datasource is `{"type": "prometheus", "uid": "${prometheusds}"}`. No panel sits in
//! a collapsed row, because the consumer only rewrites top-level panels.
//!
//! If Grafana cannot decode a dashboard it answers in its app databag with
//! `event = {"errors": [{"dashboard_id", "error"}]}`; the leader logs that on
//! relation-changed (the library emits `dashboard_status_changed`, which the Python charm did
//! not observe).
//!
//! ## When
//! As the library: leader-elected, upgrade-charm and config-changed rescan and write on the
//! leader; relation-created writes on the leader; relation-changed reads Grafana's answer (and
//! here also re-publishes, which repairs a databag edited by hand). Non-leaders write nothing.
//!
//! ## Churn
//! The library writes a fresh `uuid4` on every one of those events ("if we don't have some
//! pseudo-random value, this never makes it across"), so every config-changed or
//! upgrade-charm costs a `relation-set` and wakes every related Grafana for nothing. We
//! compare the `templates` already in the databag with ours and write (with a new random
//! uuid, so the value still always differs when we do write) only when they differ: after a
//! refresh from the Python charm (its two third-party dashboards are replaced by ours), when
//! the dashboard changes, or when leadership moves (`juju_topology.unit` names the writer).
//! The compression is deterministic, so the same dashboard gives the same content.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde::Serialize;

use crate::charm::RedisK8sCharm;
use crate::metrics::CHARM_NAME;
use crate::ops::b64;
use crate::ops::framework::{EventHandle, Framework, HandlerResult};
use crate::ops::hookcmds::HookError;

/// The relation endpoint, as in `metadata.yaml` (and the library's default name).
pub const DASHBOARD_RELATION: &str = "grafana-dashboard";
/// The app databag key the leader writes.
pub const KEY_DASHBOARDS: &str = "dashboards";
/// The key Grafana's leader answers with when a dashboard cannot be used.
pub const KEY_EVENT: &str = "event";
/// The tag the library adds to every dashboard (`_add_tags`).
pub const CHARM_TAG: &str = "charm: redis-k8s";

/// One dashboard shipped in `src/grafana_dashboards/`, embedded at build time.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinDashboard {
    /// The file name without `.json`: the template id is `file:<stem>`.
    pub stem: &'static str,
    /// The path relative to the charm root, as the library hashes it for the uid.
    pub path: &'static str,
    /// The dashboard JSON.
    pub json: &'static str,
    /// `shake_256("redis-k8s-file:<stem>").hexdigest(8)` (see the module doc).
    pub alt_uid: &'static str,
}

/// The dashboards we publish.
pub const DASHBOARDS: &[BuiltinDashboard] = &[BuiltinDashboard {
    stem: "redis",
    path: "src/grafana_dashboards/redis.json",
    json: include_str!("grafana_dashboards/redis.json"),
    alt_uid: "3569fdc43ab3bc69",
}];

/// Why the dashboards could not be published.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error("dashboard {0}: {1}")]
    Json(&'static str, serde_json::Error),
    #[error("dashboard {0} is not a JSON object")]
    NotAnObject(&'static str),
    #[error("dashboard {0}: the uid is not 40 hex digits (the library would replace it)")]
    BadUid(&'static str),
    #[error("cannot compress dashboard {0}: {1}")]
    Compress(&'static str, std::io::Error),
    #[error("cannot serialize the dashboards: {0}")]
    Serialize(serde_json::Error),
    #[error("no random bytes for the uuid")]
    Random,
}

/// The Juju topology of the writing unit, in the library's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JujuTopology {
    pub model: String,
    pub model_uuid: String,
    pub application: String,
    pub unit: String,
}

/// One entry of `templates`, fields in `_content_to_dashboard_object`'s order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    pub charm: String,
    pub content: String,
    pub juju_topology: JujuTopology,
    pub inject_dropdowns: bool,
    pub dashboard_alt_uid: String,
}

/// The whole `dashboards` value.
#[derive(Debug, Serialize)]
struct Dashboards<'a> {
    templates: &'a BTreeMap<String, Template>,
    uuid: &'a str,
}

/// `cosl.DashboardPath40UID.is_valid`: 40 characters that unhexlify.
pub fn is_path40_uid(uid: &str) -> bool {
    uid.len() == 40 && uid.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The dashboard as the library sends it: the file's JSON with the uid kept (it is a valid
/// Path40 uid) and the `charm:` tag present, serialized as Python's `json.dumps`.
pub fn dashboard_json(d: &BuiltinDashboard) -> Result<String, DashboardError> {
    let mut value: serde_json::Value =
        serde_json::from_str(d.json).map_err(|e| DashboardError::Json(d.stem, e))?;
    let obj = value
        .as_object_mut()
        .ok_or(DashboardError::NotAnObject(d.stem))?;
    if !obj
        .get("uid")
        .and_then(|u| u.as_str())
        .is_some_and(is_path40_uid)
    {
        return Err(DashboardError::BadUid(d.stem));
    }
    let tags = obj
        .entry("tags")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(tags) = tags.as_array_mut() {
        let tagged = tags
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.starts_with("charm: ")));
        if !tagged {
            tags.push(serde_json::Value::String(CHARM_TAG.to_string()));
        }
    }
    py_dumps(&value).map_err(DashboardError::Serialize)
}

/// `LZMABase64.compress`: XZ (LZMA2, CRC64 check, like Python's `lzma.compress`), then
/// standard base64. The dictionary is sized to the input instead of preset 6's 8 MiB: the
/// output is as small for a dashboard of tens of kilobytes, and the encoder does not
/// allocate and clear the large match-finder tables in every hook.
pub fn lzma_base64(data: &[u8]) -> std::io::Result<String> {
    let mut options = lzma_rust2::XzOptions::with_preset(6);
    let want = u32::try_from(data.len())
        .unwrap_or(u32::MAX)
        .next_power_of_two();
    options.lzma_options.dict_size = want.clamp(1 << 16, options.lzma_options.dict_size);
    let mut writer = lzma_rust2::XzWriter::new(Vec::new(), options)?;
    writer.write_all(data)?;
    Ok(b64::encode(&writer.finish()?))
}

/// Every built-in dashboard as the `templates` map, for `topology` as the writer.
pub fn templates(topology: &JujuTopology) -> Result<BTreeMap<String, Template>, DashboardError> {
    DASHBOARDS
        .iter()
        .map(|d| {
            let json = dashboard_json(d)?;
            let content =
                lzma_base64(json.as_bytes()).map_err(|e| DashboardError::Compress(d.stem, e))?;
            Ok((
                format!("file:{}", d.stem),
                Template {
                    charm: CHARM_NAME.to_string(),
                    content,
                    juju_topology: topology.clone(),
                    inject_dropdowns: true,
                    dashboard_alt_uid: d.alt_uid.to_string(),
                },
            ))
        })
        .collect()
}

/// The `dashboards` value: `json.dumps({"templates": ..., "uuid": ...})`.
pub fn dashboards_value(
    templates: &BTreeMap<String, Template>,
    uuid: &str,
) -> Result<String, DashboardError> {
    py_dumps(&Dashboards { templates, uuid }).map_err(DashboardError::Serialize)
}

/// Whether a `dashboards` value already carries exactly these templates (whatever its uuid).
pub fn carries(current: &str, templates: &BTreeMap<String, Template>) -> bool {
    let Ok(current) = serde_json::from_str::<serde_json::Value>(current) else {
        return false;
    };
    match (current.get("templates"), serde_json::to_value(templates)) {
        (Some(have), Ok(want)) => *have == want,
        _ => false,
    }
}

/// A random (version 4) UUID, formatted as Python's `str(uuid.uuid4())`.
pub fn uuid4() -> Result<String, DashboardError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| DashboardError::Random)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Write the dashboards into every `grafana-dashboard` relation whose databag does not carry
/// them yet. Leader only; no relation, or not the leader: nothing is computed or sent.
/// Returns whether anything was written.
pub fn publish(fw: &mut Framework<'_>) -> Result<bool, DashboardError> {
    let ids = fw.model().relation_ids(DASHBOARD_RELATION)?;
    if ids.is_empty() || !fw.model().is_leader()? {
        return Ok(false);
    }
    let ctx = fw.ctx;
    let topology = JujuTopology {
        model: ctx.model_name.clone(),
        model_uuid: ctx.model_uuid.clone(),
        application: ctx.app_name.clone(),
        unit: ctx.unit_name.clone(),
    };
    let templates = templates(&topology)?;
    let mut value = None;
    let mut changed = false;
    for id in ids {
        let bag = fw.model().relation_data(id, &ctx.app_name, true)?;
        if bag
            .get(KEY_DASHBOARDS)
            .is_some_and(|current| carries(current, &templates))
        {
            continue;
        }
        let value = match &value {
            Some(v) => v,
            None => value.insert(dashboards_value(&templates, &uuid4()?)?),
        };
        let update = BTreeMap::from([(KEY_DASHBOARDS.to_string(), value.clone())]);
        changed |= fw.model().update_relation_data(id, true, &update)?;
    }
    if changed {
        tracing::info!(
            dashboards = DASHBOARDS.len(),
            "published the Grafana dashboards"
        );
    }
    Ok(changed)
}

/// What Grafana's leader said about our dashboards (`event` in its app databag): `None` when
/// it said nothing or all is well, else the errors, one `"<id>: <error>"` each.
pub fn grafana_errors(event: &str) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(event).ok()?;
    let valid = value.get("valid").and_then(|v| v.as_bool()).unwrap_or(true);
    let errors: Vec<String> = value
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let id = e
                        .get("dashboard_id")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?");
                    let msg = e.get("error").and_then(|v| v.as_str()).unwrap_or("");
                    format!("{id}: {msg}")
                })
                .collect()
        })
        .unwrap_or_default();
    if valid && errors.is_empty() {
        None
    } else if errors.is_empty() {
        Some(vec!["invalid".to_string()])
    } else {
        Some(errors)
    }
}

/// Handler for leader-elected, config-changed, upgrade-charm and `grafana-dashboard`
/// relation-created: (re)publish.
pub fn on_event(
    _charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _ev: &mut EventHandle,
) -> HandlerResult {
    publish(fw)?;
    Ok(())
}

/// Handler for `grafana-dashboard` relation-changed: re-publish if the data is stale, and
/// log what Grafana answered (leader only, as the library).
pub fn on_relation_changed(
    _charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _ev: &mut EventHandle,
) -> HandlerResult {
    publish(fw)?;
    let ctx = fw.ctx;
    let (Some(rel), Some(remote_app)) = (
        ctx.relation.as_ref(),
        ctx.relation.as_ref().and_then(|r| r.remote_app.as_ref()),
    ) else {
        return Ok(());
    };
    if !fw.model().is_leader()? {
        return Ok(());
    }
    let bag = fw.model().relation_data(rel.id, remote_app, true)?;
    if let Some(errors) = bag.get(KEY_EVENT).and_then(|e| grafana_errors(e)) {
        tracing::warn!(
            grafana = %remote_app,
            errors = %errors.join("; "),
            "Grafana refused our dashboards"
        );
    }
    Ok(())
}

/// `json.dumps(value)` with Python's defaults: `", "` and `": "` separators, everything
/// outside printable ASCII escaped as `\uXXXX` (`ensure_ascii`), keys in serialization order.
pub fn py_dumps<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    value.serialize(&mut ser)?;
    // The formatter writes only ASCII.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The formatting half of Python's `json.dumps` (serde_json already escapes `"`, `\` and
/// control characters the same way, with lowercase hex).
struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> JujuTopology {
        JujuTopology {
            model: "m".into(),
            model_uuid: "0a1b".into(),
            application: "redis-k8s".into(),
            unit: "redis-k8s/0".into(),
        }
    }

    /// Strings checked against CPython 3's `json.dumps`.
    #[test]
    fn py_dumps_matches_python_json_dumps() {
        let v = serde_json::json!({"a": ["\u{e9}\"\n\u{7f}\u{1F600}/\u{1}", 1, 0.8, true, null], "b": {}});
        assert_eq!(
            py_dumps(&v).unwrap(),
            r#"{"a": ["\u00e9\"\n\u007f\ud83d\ude00/\u0001", 1, 0.8, true, null], "b": {}}"#
        );
        assert_eq!(py_dumps(&serde_json::json!([])).unwrap(), "[]");
    }

    #[test]
    fn the_value_has_the_librarys_shape_and_field_order() {
        let t = templates(&topology()).unwrap();
        let v = dashboards_value(&t, "u").unwrap();
        let content = &t["file:redis"].content;
        assert_eq!(
            v,
            format!(
                r#"{{"templates": {{"file:redis": {{"charm": "redis-k8s", "content": "{content}", "juju_topology": {{"model": "m", "model_uuid": "0a1b", "application": "redis-k8s", "unit": "redis-k8s/0"}}, "inject_dropdowns": true, "dashboard_alt_uid": "3569fdc43ab3bc69"}}}}, "uuid": "u"}}"#
            )
        );
        assert!(carries(&v, &t));
        let mut other = topology();
        other.unit = "redis-k8s/1".into();
        assert!(!carries(&v, &templates(&other).unwrap()));
        assert!(!carries("not json", &t));
        assert!(!carries(r#"{"uuid": "x"}"#, &t));
    }

    #[test]
    fn content_is_an_xz_stream_and_deterministic() {
        let a = lzma_base64(b"hello hello hello hello").unwrap();
        let raw = b64::decode(&a).unwrap();
        // XZ magic and footer magic.
        assert_eq!(&raw[..6], b"\xfd7zXZ\x00");
        assert_eq!(&raw[raw.len() - 2..], b"YZ");
        assert_eq!(a, lzma_base64(b"hello hello hello hello").unwrap());
        // Real compression, not stored chunks: the dashboard shrinks several times.
        let json = dashboard_json(&DASHBOARDS[0]).unwrap();
        let packed = lzma_base64(json.as_bytes()).unwrap();
        assert!(
            packed.len() * 4 < json.len(),
            "{} -> {}",
            json.len(),
            packed.len()
        );
    }

    #[test]
    fn the_dashboard_keeps_its_uid_and_has_the_charm_tag() {
        let json = dashboard_json(&DASHBOARDS[0]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(is_path40_uid(v["uid"].as_str().unwrap()));
        let tags: Vec<&str> = v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t.as_str())
            .collect();
        assert_eq!(
            tags.iter().filter(|t| t.starts_with("charm: ")).count(),
            1,
            "{tags:?}"
        );
        assert!(tags.contains(&CHARM_TAG));
        assert!(!is_path40_uid("82590d17bcee83e9a279ebdd2581f0df949283dz"));
        assert!(!is_path40_uid("82590d17"));
    }

    #[test]
    fn uuid4_is_a_random_version_4_uuid() {
        let a = uuid4().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{a}");
        assert_ne!(a, uuid4().unwrap());
    }

    #[test]
    fn grafana_answers_are_read_as_the_library_reads_them() {
        assert_eq!(grafana_errors("{}"), None);
        assert_eq!(grafana_errors(r#"{"valid": true, "errors": []}"#), None);
        assert_eq!(
            grafana_errors(
                r#"{"errors": [{"dashboard_id": "file:redis", "error": "Input format was not recognized"}]}"#
            ),
            Some(vec![
                "file:redis: Input format was not recognized".to_string()
            ])
        );
        assert_eq!(
            grafana_errors(r#"{"valid": false}"#),
            Some(vec!["invalid".to_string()])
        );
        assert_eq!(grafana_errors("garbage"), None);
    }

    #[test]
    fn the_relation_is_the_metadata_provider_endpoint() {
        let meta = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("metadata.yaml"),
        )
        .unwrap();
        let meta: serde_yaml::Value = serde_yaml::from_str(&meta).unwrap();
        assert_eq!(
            meta["provides"][DASHBOARD_RELATION]["interface"].as_str(),
            Some("grafana_dashboard")
        );
    }
}
