//! The local model: a charm-agnostic stand-in for Juju + Kubernetes that runs any sidecar
//! charm's real `dispatch` against real processes.
//!
//! A model is a directory (see [`layout`]) and a daemon process ([`daemon`]) that owns the
//! in-memory [`crate::ops::testing::world::World`], the unit-agent socket the hook tools talk
//! to, one Pebble-API server per unit per container, and one hook queue per unit. The
//! `juju-local` CLI ([`crate::sim::cli`]) sends it requests over `D/control.sock`
//! ([`proto`]).
//!
//! What it reproduces from Juju (contract §1): the hook environment and process setup
//! ([`hook`]), the lifecycle orderings (deploy, scale up/down, pod replacement, relate,
//! config), one hook at a time per unit, commit-on-success with `-relation-changed` fanned
//! out to the units that can see a changed bag, and a failed hook blocking its unit's queue
//! while it is retried with backoff.

pub mod backends;
pub mod charm;
pub mod daemon;
pub mod hook;
pub mod layout;
pub mod proto;
pub mod replication;
pub mod status;
pub mod unit;
mod world_ext;

pub use daemon::{Daemon, ModelOptions};
pub use layout::ModelDir;
