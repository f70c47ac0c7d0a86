//! What the two workload containers share: a one-service layer run as the `redis` user, and
//! directories owned by `redis`. One place, so the redis and sentinel paths cannot drift.

use crate::literals::REDIS_USER;
use crate::ops::pebble::{Layer, MakeDirOptions, Service};

/// A layer with one `startup: enabled` service running `command` as redis:redis. `what` names
/// it in the summaries ("Redis" → "Redis layer", "Redis service"). No secrets go in here:
/// commands name config files only.
pub fn redis_user_layer(service: &str, what: &str, command: String) -> Layer {
    let mut layer = Layer {
        summary: Some(format!("{what} layer")),
        description: Some(format!("{what} layer")),
        ..Layer::default()
    };
    layer.services.insert(
        service.into(),
        Service {
            r#override: Some("replace".into()),
            summary: Some(format!("{what} service")),
            command: Some(command),
            user: Some(REDIS_USER.into()),
            group: Some(REDIS_USER.into()),
            startup: Some("enabled".into()),
            ..Service::default()
        },
    );
    layer
}

/// `make-dirs` options for a redis-owned directory with `mode` (parents created as needed).
pub fn redis_dir(mode: u32) -> MakeDirOptions {
    MakeDirOptions {
        make_parents: true,
        permissions: Some(mode),
        user: Some(REDIS_USER.into()),
        group: Some(REDIS_USER.into()),
        ..MakeDirOptions::default()
    }
}
