//! What the model needs from a charm's `metadata.yaml`, `config.yaml` and `actions.yaml`.
//!
//! Only the three Juju files are read (what Juju itself reads from a packed charm); a charm
//! directory that only has `charmcraft.yaml` must be packed (or have those files generated)
//! first.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The charm's metadata could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Juju refuses to run a charm without `metadata.yaml`.
    #[error("no metadata.yaml in {}", .0.display())]
    NoMetadata(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// One `config.yaml` option.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigOption {
    /// `string`, `int`, `float`, `boolean` or `secret`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub description: String,
}

/// One `actions.yaml` action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionMeta {
    /// JSON-schema `properties` of the parameters (name → schema, maybe with `default`).
    #[serde(default)]
    pub params: serde_json::Value,
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// The parts of a charm's metadata the model and the hook tools use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CharmMeta {
    pub name: String,
    /// endpoint → interface
    pub peers: BTreeMap<String, String>,
    pub provides: BTreeMap<String, String>,
    pub requires: BTreeMap<String, String>,
    pub containers: Vec<String>,
    /// storage name → location (the mount path in the workload container)
    pub storage: BTreeMap<String, String>,
    pub config: BTreeMap<String, ConfigOption>,
    pub actions: BTreeMap<String, ActionMeta>,
}

#[derive(Deserialize, Default)]
struct RawMetadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    peers: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    provides: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    requires: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    containers: BTreeMap<String, RawContainer>,
    #[serde(default)]
    storage: BTreeMap<String, RawStorage>,
}

/// `ep: {interface: x}` or the short form `ep: x`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawEndpoint {
    Short(String),
    Long { interface: String },
}

impl RawEndpoint {
    fn interface(self) -> String {
        match self {
            RawEndpoint::Short(s) => s,
            RawEndpoint::Long { interface } => interface,
        }
    }
}

#[derive(Deserialize, Default)]
struct RawContainer {
    #[serde(default)]
    mounts: Vec<RawMount>,
}

#[derive(Deserialize)]
struct RawMount {
    #[serde(default)]
    storage: String,
    #[serde(default)]
    location: String,
}

#[derive(Deserialize, Default)]
struct RawStorage {
    #[serde(default)]
    location: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    options: BTreeMap<String, ConfigOption>,
}

fn read_optional(path: &Path) -> Result<Option<String>, MetaError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MetaError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    text: &str,
) -> Result<T, MetaError> {
    // An empty file is valid YAML `null`: treat it as an empty document.
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml::from_str(text).map_err(|e| MetaError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl CharmMeta {
    /// Read `metadata.yaml` (required), `config.yaml` and `actions.yaml` (optional) from a
    /// charm directory.
    pub fn load(charm_dir: &Path) -> Result<CharmMeta, MetaError> {
        let md_path = charm_dir.join("metadata.yaml");
        let md_text = read_optional(&md_path)?
            .ok_or_else(|| MetaError::NoMetadata(charm_dir.to_path_buf()))?;
        let cfg_path = charm_dir.join("config.yaml");
        let act_path = charm_dir.join("actions.yaml");
        let config: String = read_optional(&cfg_path)?.unwrap_or_default();
        let actions: String = read_optional(&act_path)?.unwrap_or_default();
        CharmMeta::from_yaml(&md_text, &config, &actions).map_err(|(which, message)| {
            let path = match which {
                0 => md_path,
                1 => cfg_path,
                _ => act_path,
            };
            MetaError::Parse { path, message }
        })
    }

    /// Parse the three documents (empty strings for absent files). The error says which
    /// document failed (0 metadata, 1 config, 2 actions) and why.
    pub fn from_yaml(
        metadata: &str,
        config: &str,
        actions: &str,
    ) -> Result<CharmMeta, (u8, String)> {
        let md: RawMetadata =
            parse(Path::new("metadata.yaml"), metadata).map_err(|e| (0, e.to_string()))?;
        let cfg: RawConfig =
            parse(Path::new("config.yaml"), config).map_err(|e| (1, e.to_string()))?;
        let acts: BTreeMap<String, ActionMeta> = parse::<
            Option<BTreeMap<String, Option<ActionMeta>>>,
        >(Path::new("actions.yaml"), actions)
        .map_err(|e| (2, e.to_string()))?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
        // A storage's location is where the workload container mounts it, if one does.
        let mut mounts: BTreeMap<String, String> = BTreeMap::new();
        for c in md.containers.values() {
            for m in &c.mounts {
                if !m.storage.is_empty() && !m.location.is_empty() {
                    mounts
                        .entry(m.storage.clone())
                        .or_insert(m.location.clone());
                }
            }
        }
        let storage = md
            .storage
            .into_iter()
            .map(|(name, s)| {
                let location = mounts
                    .get(&name)
                    .cloned()
                    .or(s.location)
                    .unwrap_or_else(|| format!("/var/lib/juju/storage/{name}/0"));
                (name, location)
            })
            .collect();
        let ifaces = |m: BTreeMap<String, RawEndpoint>| {
            m.into_iter()
                .map(|(k, v)| (k, v.interface()))
                .collect::<BTreeMap<_, _>>()
        };
        Ok(CharmMeta {
            name: md.name,
            peers: ifaces(md.peers),
            provides: ifaces(md.provides),
            requires: ifaces(md.requires),
            containers: md.containers.keys().cloned().collect(),
            storage,
            config: cfg.options,
            actions: acts,
        })
    }

    /// Every relation endpoint name (peers, provides, requires).
    pub fn endpoints(&self) -> impl Iterator<Item = &String> {
        self.peers
            .keys()
            .chain(self.provides.keys())
            .chain(self.requires.keys())
    }
}
