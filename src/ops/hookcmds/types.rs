//! Plain data exchanged with the hook tools (JSON shapes of the contract).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }

    /// loggo's parsing: unknown levels become INFO.
    pub fn parse(s: &str) -> LogLevel {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => LogLevel::Trace,
            "DEBUG" => LogLevel::Debug,
            "WARNING" | "WARN" => LogLevel::Warning,
            "ERROR" => LogLevel::Error,
            "CRITICAL" => LogLevel::Critical,
            _ => LogLevel::Info,
        }
    }
}

/// The workload status names. Only the first four may be set by a charm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusName {
    Active,
    Blocked,
    Maintenance,
    Waiting,
    Error,
    Unknown,
}

impl StatusName {
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusName::Active => "active",
            StatusName::Blocked => "blocked",
            StatusName::Maintenance => "maintenance",
            StatusName::Waiting => "waiting",
            StatusName::Error => "error",
            StatusName::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<StatusName> {
        Some(match s {
            "active" => StatusName::Active,
            "blocked" => StatusName::Blocked,
            "maintenance" => StatusName::Maintenance,
            "waiting" => StatusName::Waiting,
            "error" => StatusName::Error,
            "unknown" => StatusName::Unknown,
            _ => return None,
        })
    }

    /// ops's collect-status priority: error > blocked > maintenance > waiting > active.
    pub fn priority(&self) -> u8 {
        match self {
            StatusName::Error => 5,
            StatusName::Blocked => 4,
            StatusName::Maintenance => 3,
            StatusName::Waiting => 2,
            StatusName::Active => 1,
            StatusName::Unknown => 0,
        }
    }

    pub fn settable(&self) -> bool {
        matches!(
            self,
            StatusName::Active
                | StatusName::Blocked
                | StatusName::Maintenance
                | StatusName::Waiting
        )
    }
}

/// A status and its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusValue {
    pub status: StatusName,
    #[serde(default)]
    pub message: String,
}

impl StatusValue {
    pub fn new(status: StatusName, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn active(message: impl Into<String>) -> Self {
        Self::new(StatusName::Active, message)
    }
    pub fn waiting(message: impl Into<String>) -> Self {
        Self::new(StatusName::Waiting, message)
    }
    pub fn blocked(message: impl Into<String>) -> Self {
        Self::new(StatusName::Blocked, message)
    }
    pub fn maintenance(message: impl Into<String>) -> Self {
        Self::new(StatusName::Maintenance, message)
    }
}

/// `status-get --application --include-data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub status: StatusValue,
    pub units: BTreeMap<String, StatusValue>,
}

/// `goal-state --format=json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalState {
    #[serde(default)]
    pub units: BTreeMap<String, GoalStatus>,
    /// endpoint → (app or unit → status)
    #[serde(default)]
    pub relations: BTreeMap<String, BTreeMap<String, GoalStatus>>,
}

impl GoalState {
    /// ops's `planned_units()`: units that are not dying.
    pub fn planned_units(&self) -> usize {
        self.units.values().filter(|u| u.status != "dying").count()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalStatus {
    pub status: String,
    #[serde(default)]
    pub since: Option<String>,
}

/// `network-get --format=json <binding>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    #[serde(rename = "bind-addresses", default)]
    pub bind_addresses: Vec<BindAddress>,
    #[serde(rename = "egress-subnets", default)]
    pub egress_subnets: Vec<String>,
    #[serde(rename = "ingress-addresses", default)]
    pub ingress_addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindAddress {
    #[serde(rename = "mac-address", default)]
    pub mac_address: String,
    #[serde(rename = "interface-name", default)]
    pub interface_name: String,
    #[serde(default)]
    pub addresses: Vec<InterfaceAddress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    #[serde(default)]
    pub hostname: String,
    /// Old Juju said `address`.
    #[serde(alias = "address", default)]
    pub value: String,
    #[serde(default)]
    pub cidr: String,
}

/// A port as open-port takes it: `6379/tcp`, `icmp`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Port {
    pub protocol: String,
    pub number: Option<u16>,
}

impl Port {
    pub fn tcp(number: u16) -> Port {
        Port {
            protocol: "tcp".into(),
            number: Some(number),
        }
    }

    /// `6379/tcp`, `53/udp`, `icmp`, `8080` (tcp by default).
    pub fn parse(s: &str) -> Option<Port> {
        let s = s.trim();
        if s == "icmp" {
            return Some(Port {
                protocol: "icmp".into(),
                number: None,
            });
        }
        let (num, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        if !matches!(proto, "tcp" | "udp") {
            return None;
        }
        Some(Port {
            protocol: proto.into(),
            number: Some(num.parse().ok()?),
        })
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.number {
            Some(n) => write!(f, "{}/{}", n, self.protocol),
            None => write!(f, "{}", self.protocol),
        }
    }
}

/// `storage-get --format=json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    pub kind: String,
    pub location: String,
}

/// Options for secret-add / secret-set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretOptions {
    pub label: Option<String>,
    pub description: Option<String>,
    /// RFC3339 time or Go duration.
    pub expire: Option<String>,
    /// never|hourly|daily|weekly|monthly|quarterly|yearly
    pub rotate: Option<String>,
    /// `application` (default) or `unit`.
    pub owner: Option<String>,
}

/// How to address a secret and which revision to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretQuery {
    pub id: Option<String>,
    pub label: Option<String>,
    pub peek: bool,
    pub refresh: bool,
}

impl SecretQuery {
    pub fn by_id(id: impl Into<String>) -> Self {
        Self {
            id: Some(id.into()),
            ..Self::default()
        }
    }
    pub fn by_label(label: impl Into<String>) -> Self {
        Self {
            label: Some(label.into()),
            ..Self::default()
        }
    }
}

/// `secret-info-get --format=json` (one entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// The bare id (no `secret:` prefix), as the JSON object key.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub rotation: Option<String>,
    #[serde(default)]
    pub expiry: Option<String>,
}
