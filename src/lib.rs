//! redis-k8s: a Juju Kubernetes charm for Redis with Sentinel HA, in one Rust binary.
//!
//! - [`ops`]: the charm runtime (context, hook tools, framework, Pebble). Knows nothing of Redis.
//! - [`charm`] and its modules: the Redis charm itself.
//! - [`sim`]: the local model that runs any sidecar charm against real processes.

pub mod ops;
pub mod sim;
