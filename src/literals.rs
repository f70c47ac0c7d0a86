//! Names, ports and paths that existing deployments and client charms depend on. They match
//! Canonical's Python redis-k8s charm; change one only with a migration.

pub const PEER_RELATION: &str = "redis-peers";
pub const CLIENT_RELATION: &str = "redis";
pub const REDIS_CONTAINER: &str = "redis";
pub const SENTINEL_CONTAINER: &str = "sentinel";
pub const REDIS_SERVICE: &str = "redis";
pub const SENTINEL_SERVICE: &str = "sentinel";

pub const REDIS_PORT: u16 = 6379;
pub const SENTINEL_PORT: u16 = 26379;
pub const EXPORTER_PORT: u16 = 9121;

pub const CONFIG_DIR: &str = "/etc/redis-server";
pub const REDIS_CONFIG_PATH: &str = "/etc/redis-server/redis.conf";
pub const SENTINEL_CONFIG_PATH: &str = "/etc/redis-server/sentinel.conf";
/// Sentinel's `client-reconfig-script` in the sentinel container: records
/// [`PRIMARY_CHANGED_NOTICE`] on every switch of primary.
pub const NOTIFY_PRIMARY_SCRIPT_PATH: &str = "/etc/redis-server/notify-primary.sh";
/// The Pebble custom notice key of a switch of primary (Pebble's `example.com/path` form).
pub const PRIMARY_CHANGED_NOTICE: &str = "redis-k8s.charm/primary-changed";
/// Where Juju puts the pebble binary in every workload container.
pub const CHARM_PEBBLE_BIN: &str = "/charm/bin/pebble";
pub const DATA_DIR: &str = "/var/lib/redis";
pub const LOG_DIR: &str = "/var/log/redis";
pub const LOG_FILE: &str = "/var/log/redis/redis-server.log";
pub const REDIS_USER: &str = "redis";

/// Peer app databag keys (Python charm compatible).
pub const KEY_REDIS_PASSWORD: &str = "redis-password";
pub const KEY_SENTINEL_PASSWORD: &str = "sentinel-password";
pub const KEY_LEADER_HOST: &str = "leader-host";
pub const KEY_ENABLE_PASSWORD: &str = "enable-password";
/// Client relation keys.
pub const KEY_HOSTNAME: &str = "hostname";
pub const KEY_PORT: &str = "port";

/// Short socket timeout for our own Redis and Sentinel calls: a hook must never hang on an
/// unreachable peer (the Python charm uses 1 s too).
pub const SOCKET_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);
/// How long to wait for a Pebble replan.
pub const REPLAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
