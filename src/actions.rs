//! Actions: `check-service`, `get-initial-admin-password`, `get-sentinel-password`.
//! The password actions are the only place a password leaves the charm.

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
    match pick(&topo.peer) {
        Some(pw) => result(fw, key, pw),
        None => {
            fw.tools()
                .action_fail("the password has not been generated yet (no leader elected?)")?;
            Ok(())
        }
    }
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
