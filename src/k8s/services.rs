//! What the leader wants in Kubernetes, as plain data: the two role Services' manifests and
//! each pod's role. Pure functions (no client, no I/O), so the rules are unit-tested here and
//! [`super::client`] only sends them.

use serde_json::{json, Value};

use crate::literals::{REDIS_PORT, SENTINEL_PORT};

/// The label Juju puts on every pod of an application (and its StatefulSet selector).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The role label the leader keeps on each unit's pod: `primary` or `replica`.
pub const ROLE_LABEL: &str = "redis-k8s.io/role";
/// The server-side-apply field manager of everything this charm writes.
pub const FIELD_MANAGER: &str = "redis-k8s";

/// A pod's replication role, as its [`ROLE_LABEL`] value and its Service's name suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }

    /// The Service selecting pods of this role: `<app>-primary`, `<app>-replicas`.
    pub fn service_name(self, app: &str) -> String {
        match self {
            Role::Primary => format!("{app}-primary"),
            Role::Replica => format!("{app}-replicas"),
        }
    }
}

/// The object whose deletion takes the Services along: the StatefulSet Juju creates for a
/// sidecar application (named after the app, in the model's namespace). Juju's
/// `remove-application` deletes that StatefulSet (and its own `<app>` Service by name) but
/// knows nothing of the Services this charm adds, so without an owner reference they would
/// outlive the application; with one, Kubernetes' garbage collector deletes them after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The StatefulSet's name (the app's name).
    pub name: String,
    /// Its `metadata.uid`: an owner reference names one incarnation, so a StatefulSet
    /// re-created under the same name is a different owner.
    pub uid: String,
}

/// The `metadata.ownerReferences` entry naming `owner`.
///
/// `controller: false`: the StatefulSet controller does not manage Services, and a
/// controller reference claims exactly that (there may be only one, and tools adopt or
/// refuse objects by it). `blockOwnerDeletion: false`: the Services must never hold up the
/// app's removal (foreground deletion waits for blocking dependents), and setting it needs
/// `delete` permission on the StatefulSet, which the `OwnerReferencesPermissionEnforcement`
/// admission plugin checks (422 otherwise) and a narrower trust may not grant.
pub fn owner_reference(owner: &Owner) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": owner.name,
        "uid": owner.uid,
        "controller": false,
        "blockOwnerDeletion": false,
    })
}

/// The Service manifest applied for `role`: a ClusterIP Service selecting the app's pods
/// that carry the role label, with the redis and sentinel ports, owned by `owner` when it is
/// known. Every port names `protocol: TCP` although it is the default: server-side apply on
/// Kubernetes 1.20 rejects ports without it (the protocol is part of the ports list's merge
/// key). Without an owner the manifest has no `ownerReferences` at all, so server-side apply
/// drops the entry this field manager set before (the caller only passes `None` when the
/// StatefulSet is gone or unreadable for good, see [`super::client`]).
pub fn service_manifest(app: &str, namespace: &str, role: Role, owner: Option<&Owner>) -> Value {
    let port = |name: &str, port: u16| json!({"name": name, "port": port, "targetPort": port, "protocol": "TCP"});
    let mut metadata = json!({
        "name": role.service_name(app),
        "namespace": namespace,
        "labels": {
            NAME_LABEL: app,
            "app.kubernetes.io/managed-by": FIELD_MANAGER,
        },
    });
    if let Some(owner) = owner {
        metadata["ownerReferences"] = json!([owner_reference(owner)]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": { NAME_LABEL: app, ROLE_LABEL: role.label() },
            "ports": [port("redis", REDIS_PORT), port("sentinel", SENTINEL_PORT)],
        },
    })
}

/// The partial Pod applied to set a pod's role label; it owns only that one label.
pub fn pod_label_manifest(pod: &str, namespace: &str, role: Role) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod,
            "namespace": namespace,
            "labels": { ROLE_LABEL: role.label() },
        },
    })
}

/// The pod of the unit whose FQDN (or bare pod name) is `host`:
/// `<app>-<n>.<app>-endpoints.<model>.svc.<domain>` → `<app>-<n>`. `None` for anything
/// else (an IP address, another application's pod, junk), so a `leader-host` that cannot be
/// mapped never relabels pods.
pub fn pod_of_host(app: &str, host: &str) -> Option<String> {
    let first = host.split('.').next()?;
    is_unit_pod(app, first).then(|| first.to_string())
}

/// Is `pod` the name of one of `app`'s unit pods (`<app>-<n>`)?
pub fn is_unit_pod(app: &str, pod: &str) -> bool {
    pod.strip_prefix(app)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The role each of `pods` should carry when `primary` is the primary's pod: the primary,
/// and every other unit pod of `app` a replica. Pods that are not unit pods are left out.
pub fn roles_for<'a>(
    app: &str,
    primary: &str,
    pods: impl IntoIterator<Item = &'a str>,
) -> Vec<(&'a str, Role)> {
    pods.into_iter()
        .filter(|p| is_unit_pod(app, p))
        .map(|p| {
            let role = if p == primary {
                Role::Primary
            } else {
                Role::Replica
            };
            (p, role)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_select_the_role_and_name_every_port_tcp() {
        let s = service_manifest("redis-k8s", "prod", Role::Replica, None);
        assert_eq!(s["metadata"]["name"], "redis-k8s-replicas");
        assert_eq!(s["metadata"]["namespace"], "prod");
        assert_eq!(s["spec"]["selector"][NAME_LABEL], "redis-k8s");
        assert_eq!(s["spec"]["selector"][ROLE_LABEL], "replica");
        let ports = s["spec"]["ports"].as_array().unwrap();
        let numbers: Vec<_> = ports.iter().map(|p| p["port"].as_u64().unwrap()).collect();
        assert_eq!(numbers, vec![6379, 26379]);
        assert!(ports.iter().all(|p| p["protocol"] == "TCP"));
        assert!(ports.iter().all(|p| p["targetPort"] == p["port"]));
        let p = service_manifest("redis-k8s", "prod", Role::Primary, None);
        assert_eq!(p["metadata"]["name"], "redis-k8s-primary");
        assert_eq!(p["spec"]["selector"][ROLE_LABEL], "primary");
        assert!(p["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn services_name_the_statefulset_as_a_non_controller_non_blocking_owner() {
        let owner = Owner {
            name: "redis-k8s".into(),
            uid: "0c1d-uid".into(),
        };
        let s = service_manifest("redis-k8s", "prod", Role::Primary, Some(&owner));
        assert_eq!(
            s["metadata"]["ownerReferences"],
            json!([{
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": "redis-k8s",
                "uid": "0c1d-uid",
                "controller": false,
                "blockOwnerDeletion": false,
            }])
        );
    }

    #[test]
    fn the_pod_patch_owns_only_the_role_label() {
        let p = pod_label_manifest("redis-k8s-1", "prod", Role::Primary);
        assert_eq!(p["metadata"]["labels"].as_object().unwrap().len(), 1);
        assert_eq!(p["metadata"]["labels"][ROLE_LABEL], "primary");
        assert!(p.get("spec").is_none());
    }

    #[test]
    fn hosts_map_to_unit_pods_only() {
        let fqdn = "redis-k8s-2.redis-k8s-endpoints.prod.svc.cluster.local";
        assert_eq!(
            pod_of_host("redis-k8s", fqdn).as_deref(),
            Some("redis-k8s-2")
        );
        assert_eq!(
            pod_of_host("redis-k8s", "redis-k8s-10").as_deref(),
            Some("redis-k8s-10")
        );
        assert_eq!(pod_of_host("redis-k8s", "10.1.2.3"), None);
        assert_eq!(pod_of_host("redis-k8s", "other-0.other-endpoints"), None);
        assert_eq!(
            pod_of_host("redis", "redis-k8s-0.redis-k8s-endpoints"),
            None
        );
        assert_eq!(pod_of_host("redis-k8s", "redis-k8s-.x"), None);
        assert_eq!(pod_of_host("redis-k8s", ""), None);
    }

    #[test]
    fn one_primary_the_rest_replicas_and_strangers_ignored() {
        let pods = [
            "redis-k8s-0",
            "redis-k8s-1",
            "redis-k8s-2",
            "redis-k8s-operator-0",
        ];
        let roles = roles_for("redis-k8s", "redis-k8s-1", pods);
        assert_eq!(
            roles,
            vec![
                ("redis-k8s-0", Role::Replica),
                ("redis-k8s-1", Role::Primary),
                ("redis-k8s-2", Role::Replica),
            ]
        );
    }
}
