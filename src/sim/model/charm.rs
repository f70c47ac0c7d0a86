//! What the model needs to know about a charm, read from its `metadata.yaml`,
//! `config.yaml` and `actions.yaml` (or `charmcraft.yaml`): endpoints, containers, storage,
//! config defaults and action schemas.
//!
//! The model reads these files itself (rather than through the in-memory world) because it
//! needs a few facts the world does not: which endpoint of which interface to pair in
//! `relate`, which storage is mounted where in which container, and how to validate and
//! default action parameters the way the Juju controller does before the unit sees them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A charm directory that cannot be used, or a request it cannot satisfy. One line each.
#[derive(Debug, thiserror::Error)]
pub enum CharmError {
    #[error("{0} is not a charm directory: it has no metadata.yaml")]
    NotACharm(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("action \"{action}\" is not defined by charm \"{charm}\" (defined: {defined})")]
    UnknownAction {
        charm: String,
        action: String,
        defined: String,
    },
    #[error("invalid parameter {0:?}: expected key=value")]
    MalformedParam(String),
    #[error("action \"{action}\": {message}")]
    InvalidParams { action: String, message: String },
}

/// The role an endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Peer,
    Provides,
    Requires,
}

/// One endpoint of the charm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub interface: String,
    pub role: Role,
}

/// A storage mount inside a workload container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub storage: String,
    pub location: String,
}

/// A workload container and its storage mounts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    pub name: String,
    pub mounts: Vec<Mount>,
}

/// The facts about a charm that the model acts on.
#[derive(Debug, Clone)]
pub struct CharmInfo {
    pub dir: PathBuf,
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub containers: Vec<Container>,
    /// Storage names with their kind (`filesystem` or `block`).
    pub storage: BTreeMap<String, String>,
    /// Action name → JSON-schema-ish spec (`params`, `required`, `additionalProperties`).
    pub actions: BTreeMap<String, serde_yaml::Value>,
    /// Config option name → declared type.
    pub config_types: BTreeMap<String, String>,
}

fn read_yaml(path: &Path) -> Result<Option<serde_yaml::Value>, CharmError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str(&text)
            .map(Some)
            .map_err(|e| CharmError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CharmError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn as_map(v: Option<&serde_yaml::Value>) -> Vec<(String, serde_yaml::Value)> {
    v.and_then(|v| v.as_mapping())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

impl CharmInfo {
    /// Read a charm directory. `metadata.yaml` must exist (Juju refuses a charm without it);
    /// `config.yaml`/`actions.yaml` are optional, and their keys may also live in
    /// `charmcraft.yaml`.
    pub fn load(dir: &Path) -> Result<CharmInfo, CharmError> {
        let meta_path = dir.join("metadata.yaml");
        let meta =
            read_yaml(&meta_path)?.ok_or_else(|| CharmError::NotACharm(dir.to_path_buf()))?;
        let craft = read_yaml(&dir.join("charmcraft.yaml"))?.unwrap_or_default();
        let name = meta
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| CharmError::Parse {
                path: meta_path.clone(),
                message: "no `name`".into(),
            })?
            .to_string();
        let mut endpoints = Vec::new();
        for (key, role) in [
            ("peers", Role::Peer),
            ("provides", Role::Provides),
            ("requires", Role::Requires),
        ] {
            for (ep, spec) in as_map(meta.get(key)) {
                let interface = spec
                    .get("interface")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                endpoints.push(Endpoint {
                    name: ep,
                    interface,
                    role,
                });
            }
        }
        let mut containers = Vec::new();
        for (cname, spec) in as_map(meta.get("containers")) {
            let mounts = spec
                .get("mounts")
                .and_then(|m| m.as_sequence())
                .map(|seq| {
                    seq.iter()
                        .filter_map(|m| {
                            let storage = m.get("storage")?.as_str()?.to_string();
                            let location = m.get("location")?.as_str()?.to_string();
                            Some(Mount { storage, location })
                        })
                        .collect()
                })
                .unwrap_or_default();
            containers.push(Container {
                name: cname,
                mounts,
            });
        }
        let storage = as_map(meta.get("storage"))
            .into_iter()
            .map(|(n, spec)| {
                let kind = spec
                    .get("type")
                    .and_then(|v| v.as_str())
                    .unwrap_or("filesystem")
                    .to_string();
                (n, kind)
            })
            .collect();
        let actions_doc = read_yaml(&dir.join("actions.yaml"))?;
        let actions_src = actions_doc.as_ref().or_else(|| craft.get("actions"));
        let actions = as_map(actions_src).into_iter().collect();
        let config_doc = read_yaml(&dir.join("config.yaml"))?;
        let options = config_doc
            .as_ref()
            .or_else(|| craft.get("config"))
            .and_then(|c| c.get("options"));
        let config_types = as_map(options)
            .into_iter()
            .map(|(k, spec)| {
                let ty = spec
                    .get("type")
                    .and_then(|v| v.as_str())
                    .unwrap_or("string")
                    .to_string();
                (k, ty)
            })
            .collect();
        Ok(CharmInfo {
            dir: dir.to_path_buf(),
            name,
            endpoints,
            containers,
            storage,
            actions,
            config_types,
        })
    }

    /// The endpoint named `name`, if the charm declares it.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Peer endpoints (each gets one relation per application at deploy time).
    pub fn peers(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.role == Role::Peer)
    }

    /// Check an action exists and turn CLI `key=value` words into Juju's params object:
    /// values are YAML scalars (so `n=3` is an integer, `flag=true` a boolean, `s=abc` a
    /// string), dotted keys nest, declared types are checked, `required` is enforced and
    /// defaults are filled in, as the controller does before the unit sees the action.
    pub fn action_params(
        &self,
        action: &str,
        words: &[String],
    ) -> Result<serde_json::Map<String, Value>, CharmError> {
        let spec = self
            .actions
            .get(action)
            .ok_or_else(|| CharmError::UnknownAction {
                charm: self.name.clone(),
                action: action.to_string(),
                defined: if self.actions.is_empty() {
                    "none".to_string()
                } else {
                    self.actions.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
        let invalid = |message: String| CharmError::InvalidParams {
            action: action.to_string(),
            message,
        };
        let mut params = serde_json::Map::new();
        for word in words {
            let (key, raw) = word
                .split_once('=')
                .filter(|(k, _)| !k.is_empty() && !k.starts_with('.') && !k.ends_with('.'))
                .ok_or_else(|| CharmError::MalformedParam(word.clone()))?;
            let value = parse_scalar(raw);
            let mut parts = key.split('.').peekable();
            let mut cur = &mut params;
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    cur.insert(part.to_string(), value.clone());
                    break;
                }
                let entry = cur
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Default::default()));
                if !entry.is_object() {
                    *entry = Value::Object(Default::default());
                }
                match entry.as_object_mut() {
                    Some(obj) => cur = obj,
                    None => return Err(CharmError::MalformedParam(word.clone())),
                }
            }
        }
        let declared = as_map(spec.get("params"));
        let declared_map: BTreeMap<String, serde_yaml::Value> = declared.into_iter().collect();
        let additional = spec
            .get("additionalProperties")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        for (key, value) in params.iter_mut() {
            match declared_map.get(key) {
                None if !additional => {
                    return Err(invalid(format!("unknown parameter \"{key}\"")));
                }
                None => {}
                Some(pspec) => {
                    let ty = pspec.get("type").and_then(|t| t.as_str()).unwrap_or("");
                    *value = coerce(key, ty, value.clone()).map_err(&invalid)?;
                }
            }
        }
        let required: Vec<String> = spec
            .get("required")
            .and_then(|r| r.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for key in required {
            if !params.contains_key(&key) {
                return Err(invalid(format!("missing required parameter \"{key}\"")));
            }
        }
        for (key, pspec) in &declared_map {
            if params.contains_key(key) {
                continue;
            }
            if let Some(default) = pspec.get("default") {
                if let Ok(v) = serde_json::to_value(default) {
                    params.insert(key.clone(), v);
                }
            }
        }
        Ok(params)
    }
}

/// Parse a CLI value as a YAML scalar, as `juju run` does (falls back to the raw string).
pub fn parse_scalar(raw: &str) -> Value {
    if raw.is_empty() {
        return Value::String(String::new());
    }
    match serde_yaml::from_str::<serde_yaml::Value>(raw) {
        Ok(v @ (serde_yaml::Value::Bool(_) | serde_yaml::Value::Number(_))) => {
            serde_json::to_value(v).unwrap_or_else(|_| Value::String(raw.to_string()))
        }
        Ok(serde_yaml::Value::String(s)) => Value::String(s),
        _ => Value::String(raw.to_string()),
    }
}

/// Check (and where unambiguous convert) a value against a declared JSON-schema type.
fn coerce(key: &str, ty: &str, value: Value) -> Result<Value, String> {
    let bad = |v: &Value| format!("parameter \"{key}\" must be of type {ty}, got {v}");
    match (ty, &value) {
        ("" | "object" | "array", _) => Ok(value),
        ("string", Value::String(_)) => Ok(value),
        // `juju run unit act name=123` with a string param: Juju sends "123".
        ("string", Value::Number(n)) => Ok(Value::String(n.to_string())),
        ("string", Value::Bool(b)) => Ok(Value::String(b.to_string())),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(value),
        ("number", Value::Number(_)) => Ok(value),
        ("boolean", Value::Bool(_)) => Ok(value),
        _ => Err(bad(&value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charm(dir: &Path) -> CharmInfo {
        std::fs::write(
            dir.join("metadata.yaml"),
            "name: t\npeers:\n  p:\n    interface: pi\nprovides:\n  db:\n    interface: redis\n\
             containers:\n  w:\n    mounts:\n      - storage: data\n        location: /var/lib/w\n\
             storage:\n  data:\n    type: filesystem\n    location: /var/lib/w\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("actions.yaml"),
            "act:\n  params:\n    n:\n      type: integer\n    s:\n      type: string\n    \
             d:\n      type: string\n      default: dflt\n  required: [n]\n  additionalProperties: false\n",
        )
        .unwrap();
        CharmInfo::load(dir).unwrap()
    }

    #[test]
    fn loads_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let c = charm(tmp.path());
        assert_eq!(c.name, "t");
        assert_eq!(
            c.peers().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["p"]
        );
        assert_eq!(c.endpoint("db").map(|e| e.role), Some(Role::Provides));
        assert_eq!(c.containers[0].mounts[0].location, "/var/lib/w");
        assert_eq!(
            c.storage.get("data").map(String::as_str),
            Some("filesystem")
        );
    }

    #[test]
    fn no_metadata_is_one_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = CharmInfo::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CharmError::NotACharm(_)));
        assert!(err.to_string().contains("no metadata.yaml"));
    }

    #[test]
    fn action_params_are_typed_validated_and_defaulted() {
        let tmp = tempfile::tempdir().unwrap();
        let c = charm(tmp.path());
        let p = c
            .action_params("act", &["n=3".into(), "s=42".into()])
            .unwrap();
        assert_eq!(p["n"], serde_json::json!(3));
        assert_eq!(p["s"], serde_json::json!("42"));
        assert_eq!(p["d"], serde_json::json!("dflt"));
        assert!(matches!(
            c.action_params("nope", &[]),
            Err(CharmError::UnknownAction { .. })
        ));
        assert!(matches!(
            c.action_params("act", &["n3".into()]),
            Err(CharmError::MalformedParam(_))
        ));
        assert!(matches!(
            c.action_params("act", &["s=x".into()]),
            Err(CharmError::InvalidParams { .. })
        ));
        assert!(matches!(
            c.action_params("act", &["n=x".into()]),
            Err(CharmError::InvalidParams { .. })
        ));
        assert!(matches!(
            c.action_params("act", &["n=1".into(), "zz=1".into()]),
            Err(CharmError::InvalidParams { .. })
        ));
    }
}
