//! redis-k8s: a Juju Kubernetes charm for Redis with Sentinel HA, in one Rust binary.
//!
//! - [`ops`]: the charm runtime (context, hook tools, framework, Pebble). Knows nothing of Redis.
//! - [`charm`] wires the Redis charm's modules: [`redis_server`] (the redis container),
//!   [`sentinel`] (the `Sentinel` object), [`client_relation`], [`actions`], [`config`],
//!   [`peers`] (peer databag, passwords, pod names), [`primary`] (who is primary),
//!   [`redis_client`] (short-timeout Redis calls), [`templates`].
//! - [`sim`]: the local model that runs any sidecar charm against real processes.

pub mod actions;
pub mod charm;
pub mod client_relation;
pub mod config;
pub mod dashboards;
pub mod health;
pub mod k8s;
pub mod literals;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod passwords;
pub mod peers;
pub mod primary;
pub mod redis_client;
pub mod redis_server;
pub mod sentinel;
pub mod sim;
pub mod switchover;
pub mod templates;
pub mod tls;
pub mod witness;
pub mod workload;
