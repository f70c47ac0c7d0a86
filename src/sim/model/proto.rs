//! The control protocol between the `juju-local` CLI and a model's daemon: one JSON request
//! per connection on `D/control.sock`, answered by zero or more `progress` lines and one final
//! `ok` or `error` line (newline-delimited JSON), so long operations can report as they go.

use serde::{Deserialize, Serialize};

/// A CLI request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Ping,
    Deploy {
        charm_dir: String,
        app: Option<String>,
        units: u32,
        config: Vec<String>,
        resources: Vec<String>,
        dispatch: Option<String>,
    },
    Scale {
        app: String,
        units: u32,
    },
    KillPod {
        unit: String,
        down_for_ms: u64,
        /// Delete the pod gracefully: `stop` runs first, for at most this long.
        #[serde(default)]
        grace_ms: Option<u64>,
    },
    /// `juju refresh`: a rolling replacement of the application's pods, highest ordinal
    /// first, optionally with a new charm directory (and dispatch).
    Refresh {
        app: String,
        charm_dir: Option<String>,
        dispatch: Option<String>,
        grace_ms: u64,
    },
    Relate {
        a: String,
        b: String,
    },
    Config {
        app: String,
        settings: Vec<String>,
    },
    /// `juju attach-resource`: replace file resources (`name=path`); every unit then runs
    /// upgrade-charm, as Juju does.
    AttachResource {
        app: String,
        resources: Vec<String>,
    },
    Run {
        unit: String,
        action: String,
        params: Vec<String>,
    },
    Status,
    /// Like `juju show-unit`: the unit's relations and their data.
    ShowUnit {
        unit: String,
    },
    Wait {
        timeout_secs: u64,
        /// Also wait until every Redis replica is in sync ([`super::replication`]).
        #[serde(default)]
        replicated: bool,
    },
    Shutdown,
}

/// One line of a reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    Progress(String),
    Ok(serde_json::Value),
    Error(String),
}

/// What `run` returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionOutcome {
    pub id: u64,
    pub unit: String,
    /// `completed` or `failed`.
    pub status: String,
    pub message: Option<String>,
    /// Results as set by `action-set` (flat dotted keys), plus `return-code`, `stdout`, `stderr`.
    pub results: std::collections::BTreeMap<String, String>,
    pub logs: Vec<String>,
}
