//! The hook tools, 1:1: one trait method per tool in the runtime contract.
//!
//! [`HookTools`] is implemented by [`process::ProcessHookTools`] (spawns the real tools Juju puts
//! on `PATH`, always asking for JSON, passing data and secret content on stdin or in files, never
//! in argv) and by the in-memory [`crate::ops::testing::World`] unit view used by tests and the
//! local model. Higher layers (`ops::model`) add caching; this layer adds none.

pub mod process;
pub mod types;

pub use types::*;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A hook tool failed. Variants follow how ops classifies `ERROR ...` texts.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HookError {
    /// `... not found` (secrets, keys, storage).
    #[error("{tool}: not found: {message}")]
    NotFound { tool: String, message: String },
    /// `permission denied` / `access denied`.
    #[error("{tool}: permission denied: {message}")]
    PermissionDenied { tool: String, message: String },
    /// `not the leader` / `cannot write relation settings`: the call needs leadership.
    #[error("{tool}: not the leader: {message}")]
    NotLeader { tool: String, message: String },
    /// `relation not found` or an unknown relation id.
    #[error("{tool}: relation not found: {message}")]
    RelationNotFound { tool: String, message: String },
    /// Exit 2: the arguments were rejected.
    #[error("{tool}: invalid arguments: {message}")]
    Usage { tool: String, message: String },
    /// Any other non-zero exit.
    #[error("{tool} failed (exit {code}): {message}")]
    Failed {
        tool: String,
        code: i32,
        message: String,
    },
    /// The tool could not be started at all (not on PATH, ...).
    #[error("cannot run {tool}: {message}")]
    Spawn { tool: String, message: String },
    /// The tool succeeded but printed something we cannot parse.
    #[error("{tool}: unexpected output: {message}")]
    BadOutput { tool: String, message: String },
}

impl HookError {
    /// Classify a failed tool run the way ops does (by stderr text, then exit code).
    pub fn classify(tool: &str, code: i32, stderr: &str) -> HookError {
        let message = stderr
            .lines()
            .map(|l| l.trim().strip_prefix("ERROR ").unwrap_or(l.trim()))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let lower = message.to_ascii_lowercase();
        let tool = tool.to_string();
        if lower.contains("relation not found")
            || (code == 2 && lower.contains("relation") && lower.contains("not"))
        {
            HookError::RelationNotFound { tool, message }
        } else if lower.contains("not the leader")
            || lower.contains("cannot write relation settings")
        {
            HookError::NotLeader { tool, message }
        } else if lower.contains("permission denied") || lower.contains("access denied") {
            HookError::PermissionDenied { tool, message }
        } else if lower.contains("not found") {
            HookError::NotFound { tool, message }
        } else if code == 2 {
            HookError::Usage { tool, message }
        } else {
            HookError::Failed {
                tool,
                code,
                message,
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, HookError::NotFound { .. })
    }
}

pub type HookResult<T> = Result<T, HookError>;

/// Every hook tool of the contract. Relation ids are the integer after `<endpoint>:`.
/// Implementations must be usable through `&self` (the process one is stateless; in-memory
/// ones use interior mutability) so the framework and charm code can share one.
pub trait HookTools {
    // ---- logging and status -------------------------------------------------------------
    fn juju_log(&self, level: LogLevel, message: &str) -> HookResult<()>;
    fn status_set(&self, status: &StatusValue, application: bool) -> HookResult<()>;
    fn status_get(&self) -> HookResult<StatusValue>;
    fn app_status_get(&self) -> HookResult<AppStatus>;
    fn application_version_set(&self, version: &str) -> HookResult<()>;

    // ---- leadership, config, goal state -------------------------------------------------
    fn is_leader(&self) -> HookResult<bool>;
    /// `config-get --all`: every option, unset ones as `null`.
    fn config_get(&self) -> HookResult<BTreeMap<String, serde_json::Value>>;
    fn goal_state(&self) -> HookResult<GoalState>;

    // ---- relations ----------------------------------------------------------------------
    fn relation_ids(&self, endpoint: &str) -> HookResult<Vec<u32>>;
    /// Remote units in scope.
    fn relation_list(&self, relation_id: u32) -> HookResult<Vec<String>>;
    /// `relation-list --app`: the remote application's name.
    fn relation_list_app(&self, relation_id: u32) -> HookResult<Option<String>>;
    /// `relation-get - <member>` (`app`: `--app`, member is then an app name).
    fn relation_get(
        &self,
        relation_id: u32,
        member: &str,
        app: bool,
    ) -> HookResult<BTreeMap<String, String>>;
    /// `relation-set --file -` (values `""` delete keys). Committed when the hook succeeds.
    fn relation_set(
        &self,
        relation_id: u32,
        data: &BTreeMap<String, String>,
        app: bool,
    ) -> HookResult<()>;
    fn relation_model_get(&self, relation_id: u32) -> HookResult<String>;
    fn network_get(&self, binding: &str, relation_id: Option<u32>) -> HookResult<NetworkInfo>;

    // ---- actions ------------------------------------------------------------------------
    fn action_get(&self) -> HookResult<BTreeMap<String, serde_json::Value>>;
    /// Flat dotted keys (`a.b=c`), as action-set takes them.
    fn action_set(&self, results: &BTreeMap<String, String>) -> HookResult<()>;
    fn action_fail(&self, message: &str) -> HookResult<()>;
    fn action_log(&self, message: &str) -> HookResult<()>;

    // ---- unit state (server side) -------------------------------------------------------
    fn state_get(&self) -> HookResult<BTreeMap<String, String>>;
    fn state_set(&self, data: &BTreeMap<String, String>) -> HookResult<()>;
    fn state_delete(&self, key: &str) -> HookResult<()>;

    // ---- ports --------------------------------------------------------------------------
    fn open_port(&self, port: &Port) -> HookResult<()>;
    fn close_port(&self, port: &Port) -> HookResult<()>;
    fn opened_ports(&self) -> HookResult<Vec<Port>>;

    // ---- storage and resources ----------------------------------------------------------
    fn storage_list(&self, name: Option<&str>) -> HookResult<Vec<String>>;
    fn storage_get(&self, id: Option<&str>) -> HookResult<StorageInfo>;
    fn resource_get(&self, name: &str) -> HookResult<PathBuf>;

    // ---- secrets ------------------------------------------------------------------------
    /// Returns the new secret's URI. Content goes through files, never argv.
    fn secret_add(
        &self,
        content: &BTreeMap<String, String>,
        opts: &SecretOptions,
    ) -> HookResult<String>;
    fn secret_get(&self, query: &SecretQuery) -> HookResult<BTreeMap<String, String>>;
    fn secret_info_get(&self, query: &SecretQuery) -> HookResult<SecretInfo>;
    /// New revision when `content` is given; metadata only otherwise.
    fn secret_set(
        &self,
        id: &str,
        content: Option<&BTreeMap<String, String>>,
        opts: &SecretOptions,
    ) -> HookResult<()>;
    fn secret_remove(&self, id: &str, revision: Option<u64>) -> HookResult<()>;
    fn secret_grant(&self, id: &str, relation_id: u32, unit: Option<&str>) -> HookResult<()>;
    fn secret_revoke(
        &self,
        id: &str,
        relation_id: Option<u32>,
        app: Option<&str>,
        unit: Option<&str>,
    ) -> HookResult<()>;
    fn secret_ids(&self) -> HookResult<Vec<String>>;
}
