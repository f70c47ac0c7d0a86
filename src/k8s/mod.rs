//! Kubernetes Services for plain clients: with `juju trust`, the leader keeps
//! `<app>-primary` and `<app>-replicas` (ClusterIP Services on 6379 and 26379) and a
//! [`ROLE_LABEL`] (`redis-k8s.io/role=primary|replica`) on each unit's pod, so a client that
//! knows nothing of Sentinel reaches the primary by a stable name. Everything is server-side
//! apply with the field manager [`FIELD_MANAGER`], so repeating it is harmless. The Services
//! carry an owner reference to the app's StatefulSet (which Juju creates and deletes), so
//! `juju remove-application` takes them along ([`services::owner_reference`]).
//!
//! The primary is the peer data's `leader-host` (the pod FQDN the leader keeps current from
//! Sentinel); this module never decides who is primary, it only mirrors that record.
//!
//! Without trust (the API answers 401/403) the charm works as before and the leader's active
//! status says `k8s services off: run `juju trust <app> --scope=cluster``. Without any API
//! (not in a pod and no `KUBECONFIG`: the local model) nothing is attempted and nothing is
//! said, at the cost of two environment lookups. Other failures are logged and retried on the
//! next hook (update-status at the latest).
//!
//! Layout: [`services`] is the desired state as plain data (unit-tested), [`client`] the
//! only code that uses kube; no kube type leaves this module.

pub mod client;
pub mod services;

pub use client::ApiSource;
pub use services::{Owner, Role, FIELD_MANAGER, NAME_LABEL, ROLE_LABEL};

use crate::charm::{RedisK8sCharm, ROOT};
use crate::ops::framework::{Framework, HandlerResult};

/// Why the Services or labels could not be written.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The API refused our credentials: the app is not trusted (`juju trust`).
    #[error("the Kubernetes API refused access (HTTP {code}): {reason}")]
    Forbidden { code: u16, reason: String },
    /// The kubeconfig or in-cluster credentials could not be loaded.
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    /// The API answered with another error.
    #[error("Kubernetes API error on {what} (HTTP {code}): {message}")]
    Api {
        what: String,
        code: u16,
        message: String,
    },
    /// No answer (connection refused, TLS failure, timeout).
    #[error("Kubernetes API unreachable: {0}")]
    Unreachable(String),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl K8sError {
    /// The charm lacks the permission (rather than the API being down): reported in the
    /// status until an operator runs `juju trust`.
    pub fn is_trust_missing(&self) -> bool {
        matches!(self, K8sError::Forbidden { .. })
    }
}

/// What the leader wants in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub app: String,
    /// The model's namespace (Juju names it after the model).
    pub namespace: String,
    /// The primary's pod; `None` (no or an unmappable `leader-host`) leaves pod labels as
    /// they are, so an unknown primary never labels every pod a replica.
    pub primary_pod: Option<String>,
}

impl Desired {
    /// From the app, the model and the peer data's `leader-host`.
    pub fn new(app: &str, model: &str, leader_host: Option<&str>) -> Desired {
        Desired {
            app: app.to_string(),
            namespace: model.to_string(),
            primary_pod: leader_host.and_then(|h| services::pod_of_host(app, h)),
        }
    }
}

/// What one reconcile wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Services applied: both, or none while the app's StatefulSet is missing or being
    /// deleted (the application is being removed; see [`client`]).
    pub services: Vec<String>,
    /// The Services were applied without an owner reference because the StatefulSet could
    /// not be read (401/403 on it): they will outlive the application.
    pub services_unowned: bool,
    /// Unit pods (`<app>-<n>`) found; 0 when the primary's pod is unknown (not listed).
    pub pods: usize,
    /// Pods whose role label was (re)written, with the new role.
    pub relabelled: Vec<(String, Role)>,
}

/// Apply the two Services and the pods' role labels through the API `source`.
pub fn reconcile(source: ApiSource, desired: &Desired) -> Result<Applied, K8sError> {
    client::reconcile(source, desired)
}

/// Stored-state attribute (under the charm root) holding the leader's k8s status note.
const NOTE_ATTR: &str = "k8s_note";

/// The status note for an untrusted app.
pub fn trust_note(app: &str) -> String {
    format!("k8s services off: run `juju trust {app} --scope=cluster`")
}

/// Leader only: bring the Services and pod labels in line with `leader-host`. Never fails
/// the hook for a Kubernetes problem: missing trust becomes a status note (kept in stored
/// state so every hook reports it the same way), anything else is logged and retried next
/// hook. Call it after `leader-host` was (re)written.
pub fn sync(charm: &mut RedisK8sCharm, fw: &mut Framework<'_>) -> HandlerResult {
    let Some(source) = ApiSource::from_env() else {
        return Ok(());
    };
    if !fw.model().is_leader()? {
        return Ok(());
    }
    let topo = charm.topology(fw)?;
    let desired = Desired::new(
        &fw.ctx.app_name,
        &fw.ctx.model_name,
        topo.peer.leader_host.as_deref(),
    );
    let previous: Option<String> = fw.stored(ROOT, NOTE_ATTR);
    let note = match reconcile(source, &desired) {
        Ok(applied) => {
            if applied.relabelled.is_empty() {
                tracing::debug!(?applied, "k8s services current");
            } else {
                tracing::info!(relabelled = ?applied.relabelled, "k8s pod roles updated");
            }
            None
        }
        Err(e) if e.is_trust_missing() => {
            tracing::warn!(error = %e, "k8s services off: the app is not trusted");
            Some(trust_note(&fw.ctx.app_name))
        }
        Err(e) => {
            tracing::warn!(error = %e, "k8s services not updated; retrying next hook");
            previous.clone()
        }
    };
    if note != previous {
        fw.set_stored(ROOT, NOTE_ATTR, &note);
    }
    Ok(())
}

/// A non-leader forgets a note it recorded while it led.
pub fn forget_note(fw: &mut Framework<'_>) {
    if fw.stored::<Option<String>>(ROOT, NOTE_ATTR).is_some() {
        fw.set_stored(ROOT, NOTE_ATTR, &None::<String>);
    }
}

/// The note to append to the leader's active status, if any.
pub fn status_note(fw: &Framework<'_>) -> Option<String> {
    fw.stored(ROOT, NOTE_ATTR)
}
