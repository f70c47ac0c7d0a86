//! The hook context: every `JUJU_*` variable Juju sets, parsed once into typed fields.
//!
//! Juju runs `dispatch` with `JUJU_DISPATCH_PATH` naming the hook (`hooks/<name>`) or action
//! (`actions/<name>`), plus per-kind variables (relation, workload, secret, storage, action).
//! Everything downstream reads this struct, never the environment, so tests can build one
//! from a map and the real binary pays the parsing cost exactly once.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A required variable was missing or malformed. One line, meant for an operator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    /// A variable the contract requires for this kind of event is absent.
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    /// A variable is present but cannot be parsed.
    #[error("invalid value for {name}: {value:?} ({why})")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Which Juju event this dispatch is for, from `JUJU_DISPATCH_PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Install,
    Start,
    Stop,
    Remove,
    ConfigChanged,
    UpgradeCharm,
    UpdateStatus,
    LeaderElected,
    LeaderSettingsChanged,
    LeaderDeposed,
    CollectMetrics,
    MeterStatusChanged,
    PreSeriesUpgrade,
    PostSeriesUpgrade,
    RelationCreated {
        endpoint: String,
    },
    RelationJoined {
        endpoint: String,
    },
    RelationChanged {
        endpoint: String,
    },
    RelationDeparted {
        endpoint: String,
    },
    RelationBroken {
        endpoint: String,
    },
    StorageAttached {
        storage: String,
    },
    StorageDetaching {
        storage: String,
    },
    PebbleReady {
        container: String,
    },
    PebbleCustomNotice {
        container: String,
    },
    PebbleCheckFailed {
        container: String,
    },
    PebbleCheckRecovered {
        container: String,
    },
    SecretChanged,
    SecretRotate,
    SecretExpired,
    SecretRemove,
    Action {
        name: String,
    },
    /// A path we do not recognise: logged and ignored (exit 0), so a newer Juju's new
    /// hook never puts the unit into error.
    Unknown {
        path: String,
    },
}

const PLAIN_HOOKS: &[(&str, Event)] = &[
    ("install", Event::Install),
    ("start", Event::Start),
    ("stop", Event::Stop),
    ("remove", Event::Remove),
    ("config-changed", Event::ConfigChanged),
    ("upgrade-charm", Event::UpgradeCharm),
    ("update-status", Event::UpdateStatus),
    ("leader-elected", Event::LeaderElected),
    ("leader-settings-changed", Event::LeaderSettingsChanged),
    ("leader-deposed", Event::LeaderDeposed),
    ("collect-metrics", Event::CollectMetrics),
    ("meter-status-changed", Event::MeterStatusChanged),
    ("pre-series-upgrade", Event::PreSeriesUpgrade),
    ("post-series-upgrade", Event::PostSeriesUpgrade),
    ("secret-changed", Event::SecretChanged),
    ("secret-rotate", Event::SecretRotate),
    ("secret-expired", Event::SecretExpired),
    ("secret-remove", Event::SecretRemove),
];

impl Event {
    /// Parse a dispatch path (`hooks/x`, `actions/y`). Never fails: unknown paths become
    /// [`Event::Unknown`].
    pub fn from_dispatch_path(path: &str) -> Event {
        let unknown = || Event::Unknown {
            path: path.to_string(),
        };
        let Some((dir, name)) = path.rsplit_once('/') else {
            return unknown();
        };
        let dir = dir.rsplit('/').next().unwrap_or(dir);
        if name.is_empty() {
            return unknown();
        }
        match dir {
            "actions" => Event::Action {
                name: name.to_string(),
            },
            "hooks" => Self::from_hook_name(name).unwrap_or_else(unknown),
            _ => unknown(),
        }
    }

    /// Parse a hook name (`sentinel-pebble-ready`, `redis-peers-relation-changed`).
    pub fn from_hook_name(name: &str) -> Option<Event> {
        if let Some((_, ev)) = PLAIN_HOOKS.iter().find(|(n, _)| *n == name) {
            return Some(ev.clone());
        }
        type Ctor = fn(String) -> Event;
        let suffixes: &[(&str, Ctor)] = &[
            ("-relation-created", |endpoint| Event::RelationCreated {
                endpoint,
            }),
            ("-relation-joined", |endpoint| Event::RelationJoined {
                endpoint,
            }),
            ("-relation-changed", |endpoint| Event::RelationChanged {
                endpoint,
            }),
            ("-relation-departed", |endpoint| Event::RelationDeparted {
                endpoint,
            }),
            ("-relation-broken", |endpoint| Event::RelationBroken {
                endpoint,
            }),
            ("-storage-attached", |storage| Event::StorageAttached {
                storage,
            }),
            ("-storage-detaching", |storage| Event::StorageDetaching {
                storage,
            }),
            ("-pebble-ready", |container| Event::PebbleReady {
                container,
            }),
            ("-pebble-custom-notice", |container| {
                Event::PebbleCustomNotice { container }
            }),
            ("-pebble-check-failed", |container| {
                Event::PebbleCheckFailed { container }
            }),
            ("-pebble-check-recovered", |container| {
                Event::PebbleCheckRecovered { container }
            }),
        ];
        suffixes.iter().find_map(|(suffix, ctor)| {
            name.strip_suffix(suffix)
                .filter(|prefix| !prefix.is_empty())
                .map(|prefix| ctor(prefix.to_string()))
        })
    }

    /// The ops event kind: the hook name with `-` → `_`, actions suffixed `_action`
    /// (`sentinel_pebble_ready`, `get_password_action`). Handle paths and observer
    /// registrations use this string, as ops does.
    pub fn kind(&self) -> String {
        let plain = |name: &str| name.replace('-', "_");
        match self {
            Event::RelationCreated { endpoint } => format!("{}_relation_created", plain(endpoint)),
            Event::RelationJoined { endpoint } => format!("{}_relation_joined", plain(endpoint)),
            Event::RelationChanged { endpoint } => format!("{}_relation_changed", plain(endpoint)),
            Event::RelationDeparted { endpoint } => {
                format!("{}_relation_departed", plain(endpoint))
            }
            Event::RelationBroken { endpoint } => format!("{}_relation_broken", plain(endpoint)),
            Event::StorageAttached { storage } => format!("{}_storage_attached", plain(storage)),
            Event::StorageDetaching { storage } => format!("{}_storage_detaching", plain(storage)),
            Event::PebbleReady { container } => format!("{}_pebble_ready", plain(container)),
            Event::PebbleCustomNotice { container } => {
                format!("{}_pebble_custom_notice", plain(container))
            }
            Event::PebbleCheckFailed { container } => {
                format!("{}_pebble_check_failed", plain(container))
            }
            Event::PebbleCheckRecovered { container } => {
                format!("{}_pebble_check_recovered", plain(container))
            }
            Event::Action { name } => format!("{}_action", plain(name)),
            Event::Unknown { path } => format!("unknown[{path}]"),
            other => {
                let (name, _) = PLAIN_HOOKS
                    .iter()
                    .find(|(_, ev)| ev == other)
                    .expect("every plain event is in PLAIN_HOOKS");
                plain(name)
            }
        }
    }

    /// Events that ops refuses to defer (actions, stop, remove).
    pub fn deferrable(&self) -> bool {
        !matches!(self, Event::Action { .. } | Event::Stop | Event::Remove)
    }

    /// Restricted contexts (no re-emission, no collect-status), as in ops.
    pub fn restricted(&self) -> bool {
        matches!(self, Event::CollectMetrics | Event::MeterStatusChanged)
    }
}

/// Relation hook variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationContext {
    pub endpoint: String,
    pub id: u32,
    pub remote_app: Option<String>,
    pub remote_unit: Option<String>,
    pub departing_unit: Option<String>,
}

/// Action variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionContext {
    pub name: String,
    pub id: String,
}

/// Custom-notice variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeContext {
    pub id: String,
    pub notice_type: String,
    pub key: String,
}

/// Secret hook variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretContext {
    pub id: String,
    pub label: Option<String>,
    pub revision: Option<u64>,
}

/// Storage hook variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageContext {
    /// `database/0` → (`database`, 0).
    pub name: String,
    pub index: u32,
    pub location: Option<String>,
    pub kind: Option<String>,
}

/// Everything Juju told this process, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JujuContext {
    pub dispatch_path: String,
    pub event: Event,
    /// `JUJU_HOOK_NAME`; empty for actions.
    pub hook_name: String,
    pub unit_name: String,
    pub app_name: String,
    pub unit_number: u32,
    pub model_name: String,
    pub model_uuid: String,
    pub version: JujuVersion,
    pub charm_dir: PathBuf,
    pub relation: Option<RelationContext>,
    pub action: Option<ActionContext>,
    pub workload: Option<String>,
    pub notice: Option<NoticeContext>,
    pub check_name: Option<String>,
    pub secret: Option<SecretContext>,
    pub storage: Option<StorageContext>,
    pub availability_zone: Option<String>,
    pub api_addresses: Vec<String>,
    pub machine_id: Option<String>,
    pub principal_unit: Option<String>,
    /// `JUJU_DEBUG` present: mirror logs to stderr.
    pub debug: bool,
    pub debug_at: Vec<String>,
}

/// A Juju agent version (`3.6.4`, `4.0.13`, `3.6-beta1` → 3.6.0), for feature gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct JujuVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl JujuVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor_raw = parts.next().unwrap_or("0");
        let minor = minor_raw
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        let patch = parts
            .next()
            .map(|p| {
                p.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }

    /// Juju delivers custom notices from any uid (`users=all`) only from 3.6.25 / 4.0.13.
    pub fn notices_from_all_users(&self) -> bool {
        (self.major == 3 && *self >= Self::new(3, 6, 25))
            || (self.major == 4 && *self >= Self::new(4, 0, 13))
            || self.major > 4
    }
}

impl std::fmt::Display for JujuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl JujuContext {
    /// Parse the process environment.
    pub fn from_env() -> Result<Self, ContextError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Parse from a map (tests, the local model).
    pub fn from_map(vars: &BTreeMap<String, String>) -> Result<Self, ContextError> {
        Self::from_lookup(|k| vars.get(k).cloned())
    }

    /// Parse from any lookup function; the one implementation behind the two above.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ContextError> {
        let required = |name: &'static str| get(name).ok_or(ContextError::Missing(name));
        let non_empty = |name: &'static str| get(name).filter(|v| !v.is_empty());
        let non_empty_required =
            |name: &'static str| non_empty(name).ok_or(ContextError::Missing(name));

        let dispatch_path = non_empty_required("JUJU_DISPATCH_PATH")?;
        let event = Event::from_dispatch_path(&dispatch_path);
        let unit_name = non_empty_required("JUJU_UNIT_NAME")?;
        let (app_name, unit_number) =
            split_unit_name(&unit_name).ok_or_else(|| ContextError::Invalid {
                name: "JUJU_UNIT_NAME",
                value: unit_name.clone(),
                why: "expected <app>/<number>",
            })?;
        let model_name = non_empty_required("JUJU_MODEL_NAME")?;
        let model_uuid = non_empty_required("JUJU_MODEL_UUID")?;
        let version_raw = non_empty_required("JUJU_VERSION")?;
        let version = JujuVersion::parse(&version_raw).ok_or(ContextError::Invalid {
            name: "JUJU_VERSION",
            value: version_raw.clone(),
            why: "expected a version like 3.6.4",
        })?;
        let charm_dir = non_empty("JUJU_CHARM_DIR")
            .or_else(|| non_empty("CHARM_DIR"))
            .map(PathBuf::from)
            .or_else(|| std::env::current_dir().ok())
            .ok_or(ContextError::Missing("JUJU_CHARM_DIR"))?;
        // ops requires JUJU_HOOK_NAME to be present everywhere; it is empty for actions.
        let hook_name = match &event {
            Event::Action { .. } => get("JUJU_HOOK_NAME").unwrap_or_default(),
            _ => required("JUJU_HOOK_NAME")?,
        };

        let relation = match &event {
            Event::RelationCreated { endpoint }
            | Event::RelationJoined { endpoint }
            | Event::RelationChanged { endpoint }
            | Event::RelationDeparted { endpoint }
            | Event::RelationBroken { endpoint } => {
                let raw_id = non_empty_required("JUJU_RELATION_ID")?;
                let id = raw_id
                    .rsplit(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or(ContextError::Invalid {
                        name: "JUJU_RELATION_ID",
                        value: raw_id.clone(),
                        why: "expected <endpoint>:<number>",
                    })?;
                let remote_unit = non_empty("JUJU_REMOTE_UNIT");
                let needs_unit = matches!(
                    event,
                    Event::RelationJoined { .. }
                        | Event::RelationChanged { .. }
                        | Event::RelationDeparted { .. }
                );
                if needs_unit && remote_unit.is_none() {
                    return Err(ContextError::Missing("JUJU_REMOTE_UNIT"));
                }
                let remote_app = non_empty("JUJU_REMOTE_APP").or_else(|| {
                    remote_unit
                        .as_deref()
                        .and_then(split_unit_name)
                        .map(|(app, _)| app)
                });
                let departing_unit = non_empty("JUJU_DEPARTING_UNIT");
                if matches!(event, Event::RelationDeparted { .. }) && departing_unit.is_none() {
                    return Err(ContextError::Missing("JUJU_DEPARTING_UNIT"));
                }
                Some(RelationContext {
                    endpoint: non_empty("JUJU_RELATION").unwrap_or_else(|| endpoint.clone()),
                    id,
                    remote_app,
                    remote_unit,
                    departing_unit,
                })
            }
            _ => None,
        };

        let action = match &event {
            Event::Action { .. } => Some(ActionContext {
                name: non_empty_required("JUJU_ACTION_NAME")?,
                id: non_empty_required("JUJU_ACTION_UUID")?,
            }),
            _ => None,
        };

        let workload = match &event {
            Event::PebbleReady { .. }
            | Event::PebbleCustomNotice { .. }
            | Event::PebbleCheckFailed { .. }
            | Event::PebbleCheckRecovered { .. } => Some(non_empty_required("JUJU_WORKLOAD_NAME")?),
            _ => non_empty("JUJU_WORKLOAD_NAME"),
        };

        let notice = match &event {
            Event::PebbleCustomNotice { .. } => Some(NoticeContext {
                id: non_empty_required("JUJU_NOTICE_ID")?,
                notice_type: non_empty_required("JUJU_NOTICE_TYPE")?,
                key: non_empty_required("JUJU_NOTICE_KEY")?,
            }),
            _ => None,
        };

        let check_name = match &event {
            Event::PebbleCheckFailed { .. } | Event::PebbleCheckRecovered { .. } => {
                Some(non_empty_required("JUJU_PEBBLE_CHECK_NAME")?)
            }
            _ => None,
        };

        let secret = match &event {
            Event::SecretChanged
            | Event::SecretRotate
            | Event::SecretExpired
            | Event::SecretRemove => {
                let revision = match non_empty("JUJU_SECRET_REVISION") {
                    Some(raw) => Some(raw.parse().map_err(|_| ContextError::Invalid {
                        name: "JUJU_SECRET_REVISION",
                        value: raw.clone(),
                        why: "expected an integer",
                    })?),
                    None => None,
                };
                if matches!(event, Event::SecretExpired | Event::SecretRemove) && revision.is_none()
                {
                    return Err(ContextError::Missing("JUJU_SECRET_REVISION"));
                }
                Some(SecretContext {
                    id: non_empty_required("JUJU_SECRET_ID")?,
                    label: non_empty("JUJU_SECRET_LABEL"),
                    revision,
                })
            }
            _ => None,
        };

        let storage = match &event {
            Event::StorageAttached { .. } | Event::StorageDetaching { .. } => {
                let raw = non_empty_required("JUJU_STORAGE_ID")?;
                let (name, index) = raw
                    .rsplit_once('/')
                    .and_then(|(n, i)| Some((n.to_string(), i.parse().ok()?)))
                    .ok_or(ContextError::Invalid {
                        name: "JUJU_STORAGE_ID",
                        value: raw.clone(),
                        why: "expected <name>/<number>",
                    })?;
                Some(StorageContext {
                    name,
                    index,
                    location: non_empty("JUJU_STORAGE_LOCATION"),
                    kind: non_empty("JUJU_STORAGE_KIND"),
                })
            }
            _ => None,
        };

        Ok(JujuContext {
            dispatch_path,
            event,
            hook_name,
            unit_name,
            app_name,
            unit_number,
            model_name,
            model_uuid,
            version,
            charm_dir,
            relation,
            action,
            workload,
            notice,
            check_name,
            secret,
            storage,
            availability_zone: non_empty("JUJU_AVAILABILITY_ZONE"),
            api_addresses: get("JUJU_API_ADDRESSES")
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            machine_id: non_empty("JUJU_MACHINE_ID"),
            principal_unit: non_empty("JUJU_PRINCIPAL_UNIT"),
            debug: get("JUJU_DEBUG").is_some(),
            debug_at: non_empty("JUJU_DEBUG_AT")
                .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default(),
        })
    }
}

/// `redis-k8s/3` → (`redis-k8s`, 3).
pub fn split_unit_name(unit: &str) -> Option<(String, u32)> {
    let (app, n) = unit.rsplit_once('/')?;
    if app.is_empty() {
        return None;
    }
    Some((app.to_string(), n.parse().ok()?))
}
