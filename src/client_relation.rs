//! The `redis` interface for client charms (Python charm compatible): each unit publishes
//! `hostname` (its address) and `port`; the leader publishes `leader-host` (the primary).
//!
//! Credentials: the leader also grants an app-owned secret (label `redis-client`, keys
//! `username` and `password`) to every client relation and publishes its URI as
//! `secret-user` in the relation's app databag (the data-platform convention). The secret
//! follows the admin password in use, so a `set-password` rotation updates it at its switch
//! phase (the client gets `secret-changed`). The grant is revoked when the relation breaks.

use std::collections::BTreeMap;

use crate::charm::{own_address, RedisK8sCharm, Topology};
use crate::literals::*;
use crate::ops::framework::{EventHandle, Framework, HandlerError, HandlerResult};
use crate::ops::hookcmds::{HookError, SecretOptions, SecretQuery};
use crate::passwords::{CLIENT_SECRET_LABEL, CLIENT_USERNAME, KEY_CLIENT_SECRET, KEY_SECRET_USER};

/// Write our data into every `redis` relation (only keys that changed are sent).
pub fn publish(charm: &mut RedisK8sCharm, fw: &mut Framework<'_>) -> Result<(), HandlerError> {
    let ids = fw.model().relation_ids(CLIENT_RELATION)?;
    if ids.is_empty() {
        return Ok(());
    }
    let topo = charm.topology(fw)?.clone();
    let leader = fw.model().is_leader()?;
    let secret = if leader {
        client_secret(charm, fw, &topo)?
    } else {
        None
    };
    let mut unit = BTreeMap::new();
    unit.insert(KEY_HOSTNAME.to_string(), own_address(&topo));
    unit.insert(KEY_PORT.to_string(), REDIS_PORT.to_string());
    for id in ids {
        fw.model().update_relation_data(id, false, &unit)?;
        if !leader {
            continue;
        }
        let mut app = BTreeMap::new();
        if let Some(primary) = topo.peer.leader_host.as_ref() {
            app.insert(KEY_LEADER_HOST.to_string(), primary.clone());
        }
        if let Some(uri) = &secret {
            let published = fw.model().relation_data(id, &fw.ctx.app_name, true)?;
            if published.get(KEY_SECRET_USER) != Some(uri) {
                fw.tools().secret_grant(uri, id, None)?;
                tracing::info!(relation = id, "granted the client secret");
            }
            app.insert(KEY_SECRET_USER.to_string(), uri.clone());
        }
        fw.model().update_relation_data(id, true, &app)?;
    }
    Ok(())
}

fn client_content(password: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("username".to_string(), CLIENT_USERNAME.to_string()),
        ("password".to_string(), password.to_string()),
    ])
}

/// Leader: the client secret's URI, created on first use and kept equal to the admin
/// password in use. `None` while the passwords are unknown.
fn client_secret(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    topo: &Topology,
) -> Result<Option<String>, HandlerError> {
    let (Some(admin), Some(rel)) = (topo.peer.admin_password(), topo.peer_relation) else {
        return Ok(None);
    };
    // Only a secret-backed password is handed out (the leader migrates plain keys first).
    if topo.peer.passwords.is_none() {
        return Ok(None);
    }
    let want = client_content(admin);
    let tools = fw.tools();
    if let Some(uri) = &topo.peer.client_secret {
        let query = SecretQuery {
            peek: true,
            ..SecretQuery::by_id(uri.clone())
        };
        match tools.secret_get(&query) {
            Ok(have) if have == want => return Ok(Some(uri.clone())),
            Ok(_) => {
                tools.secret_set(uri, Some(&want), &SecretOptions::default())?;
                tracing::info!("client secret follows the admin password");
                return Ok(Some(uri.clone()));
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!("the client secret is gone; creating a new one");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let uri = match tools.secret_info_get(&SecretQuery::by_label(CLIENT_SECRET_LABEL)) {
        Ok(info) => {
            let uri = format!("secret:{}", info.id);
            tools.secret_set(&uri, Some(&want), &SecretOptions::default())?;
            uri
        }
        Err(e) if e.is_not_found() => tools.secret_add(
            &want,
            &SecretOptions {
                label: Some(CLIENT_SECRET_LABEL.into()),
                description: Some("redis-k8s credentials for client applications".into()),
                ..SecretOptions::default()
            },
        )?,
        Err(e) => return Err(e.into()),
    };
    let mut changes = BTreeMap::new();
    changes.insert(KEY_CLIENT_SECRET.to_string(), uri.clone());
    fw.model().update_relation_data(rel, true, &changes)?;
    charm.invalidate_topology();
    Ok(Some(uri))
}

/// `redis-relation-broken`: the leader revokes the client secret from the relation.
pub fn on_broken(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    ev: &mut EventHandle,
) -> HandlerResult {
    if !fw.model().is_leader()? {
        return Ok(());
    }
    let Some(rel) = ev.relation_id() else {
        return Ok(());
    };
    let topo = charm.topology(fw)?.clone();
    if let Some(uri) = &topo.peer.client_secret {
        match fw.tools().secret_revoke(uri, Some(rel), None, None) {
            Ok(()) => tracing::info!(relation = rel, "revoked the client secret"),
            // The relation (and with it the grant) may already be gone.
            Err(e @ (HookError::RelationNotFound { .. } | HookError::NotFound { .. })) => {
                tracing::debug!(error = %e, "nothing to revoke")
            }
            Err(e) => tracing::warn!(error = %e, "could not revoke the client secret"),
        }
    }
    Ok(())
}
