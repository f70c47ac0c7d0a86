//! The only place that talks to the Kubernetes API (kube). The charm is synchronous, so each
//! call builds a current-thread tokio runtime for its few requests; every request has short
//! timeouts and the whole reconcile a deadline, so an API that hangs cannot stall a hook.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config};

use super::services::{
    pod_label_manifest, roles_for, service_manifest, Owner, Role, FIELD_MANAGER, NAME_LABEL,
    ROLE_LABEL,
};
use super::{Applied, Desired, K8sError};

/// Connect / read / write timeout of each request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of one whole reconcile (a handful of requests).
const RECONCILE_DEADLINE: Duration = Duration::from_secs(20);

/// Where the API's address and credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiSource {
    /// `KUBECONFIG` names a kubeconfig (tests, a charm run outside the cluster).
    Kubeconfig,
    /// In a pod: `KUBERNETES_SERVICE_HOST`/`_PORT` and the service account token under
    /// `/var/run/secrets/kubernetes.io/serviceaccount` (what `juju trust` empowers).
    InCluster,
}

impl ApiSource {
    /// The API this process can reach, decided from two environment variables only (no file
    /// or network access), so asking costs nothing in the local model, which has neither.
    /// `~/.kube/config` is deliberately not consulted: a developer's cluster must not be
    /// written to by a local-model run.
    pub fn from_env() -> Option<ApiSource> {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        if set("KUBECONFIG") {
            Some(ApiSource::Kubeconfig)
        } else if set("KUBERNETES_SERVICE_HOST") {
            Some(ApiSource::InCluster)
        } else {
            None
        }
    }
}

/// Apply both role Services and, when the primary's pod is known, the role label of every
/// unit pod of the app; see [`super::reconcile`].
pub fn reconcile(source: ApiSource, desired: &Desired) -> Result<Applied, K8sError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match tokio::time::timeout(RECONCILE_DEADLINE, reconcile_async(source, desired)).await {
            Ok(result) => result,
            Err(_) => Err(K8sError::Unreachable(format!(
                "no answer within {}s",
                RECONCILE_DEADLINE.as_secs()
            ))),
        }
    })
}

async fn client(source: ApiSource) -> Result<Client, K8sError> {
    let mut config = match source {
        ApiSource::Kubeconfig => Config::from_kubeconfig(&KubeConfigOptions::default())
            .await
            .map_err(|e| K8sError::Config(e.to_string()))?,
        ApiSource::InCluster => Config::incluster().map_err(|e| K8sError::Config(e.to_string()))?,
    };
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    Client::try_from(config).map_err(|e| K8sError::Config(e.to_string()))
}

/// Sort a kube error into what the charm does about it: 401/403 means missing trust (say
/// so, keep working), other API answers and transport failures are retried next hook.
fn classify(what: &str, e: kube::Error) -> K8sError {
    match e {
        kube::Error::Api(resp) if resp.code == 401 || resp.code == 403 => K8sError::Forbidden {
            code: resp.code,
            reason: resp.message,
        },
        kube::Error::Api(resp) => K8sError::Api {
            what: what.to_string(),
            code: resp.code,
            message: resp.message,
        },
        other => K8sError::Unreachable(format!("{what}: {other}")),
    }
}

/// What the app's StatefulSet (the Services' owner) looks like to us.
#[derive(Debug)]
enum OwnerLookup {
    /// It exists and is not being deleted.
    Live(Owner),
    /// Not found, or deleting: the application is being removed (Juju deletes the
    /// StatefulSet on `remove-application`; it always exists while the app does).
    Gone(&'static str),
    /// We may not read it (401/403): a trust narrower than `--scope=cluster`.
    Unreadable(String),
}

/// Read the StatefulSet named after the app. Transport failures and other API errors are
/// returned (the hook retries) rather than treated as "no owner", so a passing glitch never
/// strips the owner reference from Services that have it.
async fn lookup_owner(client: &Client, ns: &str, app: &str) -> Result<OwnerLookup, K8sError> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    match sets.get_opt(app).await {
        Ok(None) => Ok(OwnerLookup::Gone("not found")),
        Ok(Some(set)) if set.metadata.deletion_timestamp.is_some() => {
            Ok(OwnerLookup::Gone("being deleted"))
        }
        Ok(Some(set)) => match set.metadata.uid {
            Some(uid) if !uid.is_empty() => Ok(OwnerLookup::Live(Owner {
                name: app.to_string(),
                uid,
            })),
            _ => Ok(OwnerLookup::Unreadable("it has no uid".to_string())),
        },
        Err(e) => match classify(&format!("statefulset {app}"), e) {
            K8sError::Forbidden { code, reason } => {
                Ok(OwnerLookup::Unreadable(format!("HTTP {code}: {reason}")))
            }
            other => Err(other),
        },
    }
}

async fn reconcile_async(source: ApiSource, desired: &Desired) -> Result<Applied, K8sError> {
    let client = client(source).await?;
    let ns = desired.namespace.as_str();
    let app = desired.app.as_str();
    // Forced: this charm is the only rightful owner of these fields (a hand edit is undone).
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Applied::default();

    // The Services' owner. A missing or deleting StatefulSet means the app is going away:
    // applying then would (re)create Services after the garbage collector removed them, with
    // nothing left to own them, so they are left alone. An unreadable one (narrow RBAC) gets
    // Services without an owner: they work, but outlive the app.
    let owner = match lookup_owner(&client, ns, app).await? {
        OwnerLookup::Live(owner) => Some(owner),
        OwnerLookup::Gone(why) => {
            tracing::warn!(
                statefulset = app,
                why,
                "k8s services not applied: the application's StatefulSet is {why} \
                 (the application is being removed)"
            );
            None
        }
        OwnerLookup::Unreadable(why) => {
            tracing::warn!(
                statefulset = app,
                why = %why,
                "cannot read the application's StatefulSet: k8s services applied without an \
                 owner reference, so they will outlive `juju remove-application`"
            );
            applied.services_unowned = true;
            None
        }
    };
    if owner.is_some() || applied.services_unowned {
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        for role in [Role::Primary, Role::Replica] {
            let name = role.service_name(app);
            let manifest = service_manifest(app, ns, role, owner.as_ref());
            services
                .patch(&name, &params, &Patch::Apply(&manifest))
                .await
                .map_err(|e| classify(&format!("service {name}"), e))?;
            applied.services.push(name);
        }
    }

    let Some(primary) = desired.primary_pod.as_deref() else {
        return Ok(applied);
    };
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("{NAME_LABEL}={app}")))
        .await
        .map_err(|e| classify("pods", e))?;
    let current: Vec<(String, Option<String>)> = list
        .items
        .iter()
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            let role = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ROLE_LABEL).cloned());
            Some((name, role))
        })
        .collect();
    let mut wanted = roles_for(app, primary, current.iter().map(|(n, _)| n.as_str()));
    applied.pods = wanted.len();
    // Demote before promoting: during a switch `<app>-primary` briefly has no endpoint
    // (clients retry) rather than also the old, now read-only primary (writes refused).
    wanted.sort_by_key(|(_, role)| *role != Role::Replica);
    for (pod, role) in wanted {
        let have = current
            .iter()
            .find(|(n, _)| n == pod)
            .and_then(|(_, r)| r.as_deref());
        if have == Some(role.label()) {
            continue;
        }
        let manifest = pod_label_manifest(pod, ns, role);
        pods.patch(pod, &params, &Patch::Apply(&manifest))
            .await
            .map_err(|e| classify(&format!("pod {pod}"), e))?;
        applied.relabelled.push((pod.to_string(), role));
    }
    Ok(applied)
}
