//! Actions: `check-service`, `get-initial-admin-password`, `get-sentinel-password`,
//! `set-password`, `switchover`. The two get-* actions are the only place a password leaves
//! the charm; `set-password` reports the rotation it started, never a password.

use std::collections::BTreeMap;

use crate::charm::{own_address, RedisK8sCharm};
use crate::literals::*;
use crate::ops::framework::{EventHandle, Framework, HandlerResult};
use crate::redis_client::RedisConn;

fn result(fw: &Framework<'_>, key: &str, value: &str) -> HandlerResult {
    let mut r = BTreeMap::new();
    r.insert(key.to_string(), value.to_string());
    fw.tools().action_set(&r)?;
    Ok(())
}

fn password_action(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    key: &str,
    pick: fn(&crate::peers::PeerAppData) -> Option<&str>,
) -> HandlerResult {
    let topo = charm.topology(fw)?.clone();
    match (pick(&topo.peer), &topo.peer.password_problem) {
        (Some(pw), _) => result(fw, key, pw),
        (None, Some(problem)) => {
            fw.tools().action_fail(problem)?;
            Ok(())
        }
        (None, None) => {
            fw.tools()
                .action_fail("the password has not been generated yet (no leader elected?)")?;
            Ok(())
        }
    }
}

/// `set-password [username=admin|sentinel] [password=...]`: start a rotation on the leader
/// (see [`crate::passwords`]). `set-password force=true` instead moves a stalled rotation
/// on without the units that do not acknowledge ([`crate::passwords::force_rotation`]).
/// The results name the rotation (and the units forced past), never a password.
pub fn set_password(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _: &mut EventHandle,
) -> HandlerResult {
    use crate::passwords::User;
    if !fw.model().is_leader()? {
        fw.tools().action_fail(
            "set-password must run on the leader unit (juju run <app>/leader set-password)",
        )?;
        return Ok(());
    }
    let params = fw.tools().action_get()?;
    match params.get("force") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => {}
        Some(serde_json::Value::Bool(true)) => {
            if !matches!(params.get("password"), None | Some(serde_json::Value::Null)) {
                fw.tools().action_fail(
                    "force moves the running rotation on and takes no password; run \
                     set-password without force to start a new rotation",
                )?;
                return Ok(());
            }
            return force_rotation(charm, fw);
        }
        Some(_) => {
            fw.tools().action_fail("force must be a boolean")?;
            return Ok(());
        }
    }
    let user = match params.get("username") {
        None | Some(serde_json::Value::Null) => User::Admin,
        Some(serde_json::Value::String(u)) => match User::parse(u) {
            Some(u) => u,
            None => {
                fw.tools()
                    .action_fail(&format!("unknown username {u:?}: use admin or sentinel"))?;
                return Ok(());
            }
        },
        Some(_) => {
            fw.tools()
                .action_fail("username must be a string: admin or sentinel")?;
            return Ok(());
        }
    };
    let new = match params.get("password") {
        None | Some(serde_json::Value::Null) => crate::peers::generate_password()?,
        Some(serde_json::Value::String(p)) => p.clone(),
        Some(_) => {
            fw.tools().action_fail("password must be a string")?;
            return Ok(());
        }
    };
    match crate::passwords::set_password(charm, fw, user, &new)? {
        Ok(rot) => {
            let mut r = BTreeMap::new();
            r.insert("username".to_string(), user.as_str().to_string());
            r.insert("generation".to_string(), rot.generation.to_string());
            r.insert(
                "result".to_string(),
                format!(
                    "rotation started: every unit accepts both passwords, then switches; the \
                     old {} password is refused password-rotation-grace seconds later",
                    user.as_str()
                ),
            );
            fw.tools().action_set(&r)?;
        }
        Err(msg) => fw.tools().action_fail(&msg)?,
    }
    Ok(())
}

/// `set-password force=true`: the rotation's user and generation, the phase it is in now,
/// and the units no longer waited for (`excused`).
fn force_rotation(charm: &mut RedisK8sCharm, fw: &mut Framework<'_>) -> HandlerResult {
    match crate::passwords::force_rotation(charm, fw)? {
        Ok(forced) => {
            let rot = &forced.rotation;
            let mut r = BTreeMap::new();
            r.insert("username".to_string(), rot.user.as_str().to_string());
            r.insert("generation".to_string(), rot.generation.to_string());
            r.insert("phase".to_string(), rot.phase.as_str().to_string());
            r.insert("excused".to_string(), forced.excused.join(","));
            r.insert(
                "result".to_string(),
                format!(
                    "rotation forced past {} (no longer waited for); now in phase {}. They \
                     apply the current passwords when they come back",
                    forced.excused.join(", "),
                    rot.phase.as_str()
                ),
            );
            fw.tools().action_set(&r)?;
        }
        Err(msg) => fw.tools().action_fail(&msg)?,
    }
    Ok(())
}

pub fn get_admin_password(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _: &mut EventHandle,
) -> HandlerResult {
    password_action(charm, fw, KEY_REDIS_PASSWORD, |p| p.admin_password())
}

pub fn get_sentinel_password(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _: &mut EventHandle,
) -> HandlerResult {
    password_action(charm, fw, KEY_SENTINEL_PASSWORD, |p| {
        p.sentinel_password.as_deref()
    })
}

/// `INFO server` on our Redis: "Service is running" or "Service is not running".
pub fn check_service(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _: &mut EventHandle,
) -> HandlerResult {
    let topo = charm.topology(fw)?.clone();
    let info = RedisConn::connect(&own_address(&topo), REDIS_PORT, topo.peer.admin_password())
        .and_then(|mut c| c.info("server"));
    match info {
        Ok(info) => {
            if let Some(v) = info.get("redis_version") {
                fw.tools().application_version_set(v)?;
            }
            result(fw, "result", "Service is running")
        }
        Err(e) => {
            tracing::warn!(error = %e, "check-service: Redis not answering");
            result(fw, "result", "Service is not running")
        }
    }
}

/// The primary as this unit's sentinel sees it, else the recorded `leader-host`.
fn find_primary(topo: &crate::charm::Topology, app: &str) -> Option<String> {
    let from_sentinel = RedisConn::connect(
        &own_address(topo),
        SENTINEL_PORT,
        topo.peer.sentinel_password.as_deref(),
    )
    .and_then(|mut s| s.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", app]));
    match from_sentinel {
        Ok(redis::Value::Array(items)) if !items.is_empty() => {
            Some(crate::redis_client::value_to_string(&items[0]))
        }
        Ok(_) => topo.peer.leader_host.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "switchover: own sentinel not answering; using leader-host");
            topo.peer.leader_host.clone()
        }
    }
}

/// `switchover [unit=<app>/<n>]`: a planned move of the primary role, run on any unit.
pub fn switchover(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    _: &mut EventHandle,
) -> HandlerResult {
    use crate::switchover::{step_down, StepDown};
    let topo = charm.topology(fw)?.clone();
    let app = fw.ctx.app_name.clone();
    let params = fw.tools().action_get()?;
    let target = match params.get("unit") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(u)) if !u.is_empty() => {
            let known = u.rsplit_once('/').is_some_and(|(a, n)| {
                a == app && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
            });
            let domain = charm
                .config(fw)
                .map(|c| c.cluster_domain.clone())
                .unwrap_or_else(|_| "cluster.local".into());
            let fqdn = crate::peers::unit_fqdn(u, &fw.ctx.model_name, &domain);
            if !known || (fqdn != topo.fqdn && !topo.peer_fqdns.contains(&fqdn)) {
                fw.tools()
                    .action_fail(&format!("unknown unit {u:?}: not a unit of {app}"))?;
                return Ok(());
            }
            Some((u.clone(), fqdn))
        }
        Some(other) => {
            fw.tools().action_fail(&format!(
                "unit must be a unit name like {app}/1, got {other}"
            ))?;
            return Ok(());
        }
    };
    let Some(primary) = find_primary(&topo, &app) else {
        fw.tools()
            .action_fail("no primary known yet (peer data not populated)")?;
        return Ok(());
    };
    if let Some((u, fqdn)) = &target {
        if *fqdn == primary {
            fw.tools()
                .action_fail(&format!("{u} is already the primary"))?;
            return Ok(());
        }
    }
    // The primary's own address when it is this unit (the FQDN may not resolve to a bound
    // address everywhere), else its FQDN.
    let host = if primary == topo.fqdn {
        own_address(&topo)
    } else {
        primary.clone()
    };
    let outcome = step_down(
        &topo,
        &app,
        &host,
        target.as_ref().map(|t| t.1.as_str()),
        std::time::Duration::from_secs(10),
    );
    let fail = |fw: &Framework<'_>, msg: String| -> HandlerResult {
        fw.tools().action_fail(&msg)?;
        Ok(())
    };
    match outcome {
        Ok(StepDown::HandedOver {
            new_primary,
            paused,
        }) => {
            if let Some((u, fqdn)) = &target {
                if new_primary != *fqdn {
                    return fail(
                        fw,
                        format!(
                            "sentinel promoted {new_primary}, not {u}; the primary moved anyway"
                        ),
                    );
                }
            }
            let mut r = BTreeMap::new();
            r.insert("old-primary".to_string(), primary);
            r.insert("new-primary".to_string(), new_primary);
            r.insert("paused-ms".to_string(), paused.as_millis().to_string());
            fw.tools().action_set(&r)?;
            Ok(())
        }
        Ok(StepDown::NotPrimary) => fail(
            fw,
            format!("{primary} is no longer the primary (a failover is running?); try again"),
        ),
        Ok(StepDown::NoReplica) => fail(fw, "no replica to hand the primary role to".into()),
        Ok(StepDown::TargetNotReplica) => fail(
            fw,
            format!(
                "{} is not an online replica of {primary}",
                target.map(|t| t.0).unwrap_or_default()
            ),
        ),
        Ok(StepDown::TimedOut) => fail(
            fw,
            "the switchover did not finish in time; sentinel may still complete it".into(),
        ),
        Err(e) => fail(fw, format!("switchover failed: {e}")),
    }
}
