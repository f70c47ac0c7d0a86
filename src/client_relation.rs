//! The `redis` interface for client charms (Python charm compatible): each unit publishes
//! `hostname` (its address) and `port`; the leader publishes `leader-host` (the primary).

use std::collections::BTreeMap;

use crate::charm::{own_address, RedisK8sCharm};
use crate::literals::*;
use crate::ops::framework::{Framework, HandlerError};

/// Write our data into every `redis` relation (only keys that changed are sent).
pub fn publish(charm: &mut RedisK8sCharm, fw: &mut Framework<'_>) -> Result<(), HandlerError> {
    let ids = fw.model().relation_ids(CLIENT_RELATION)?;
    if ids.is_empty() {
        return Ok(());
    }
    let topo = charm.topology(fw)?.clone();
    let leader = fw.model().is_leader()?;
    let mut unit = BTreeMap::new();
    unit.insert(KEY_HOSTNAME.to_string(), own_address(&topo));
    unit.insert(KEY_PORT.to_string(), REDIS_PORT.to_string());
    for id in ids {
        fw.model().update_relation_data(id, false, &unit)?;
        if let (true, Some(primary)) = (leader, topo.peer.leader_host.as_ref()) {
            let mut app = BTreeMap::new();
            app.insert(KEY_LEADER_HOST.to_string(), primary.clone());
            fw.model().update_relation_data(id, true, &app)?;
        }
    }
    Ok(())
}
