//! The local model: runs any sidecar charm the way Juju would, against real processes.
//!
//! - [`pebble_server`]: a Pebble-API daemon per container that really runs its plan's services.
//! - [`hooktools`]: the hook tools' command lines (argv in, stdout/stderr/exit code out) over a
//!   [`crate::ops::testing::world::Session`].
//! - [`agent`]: the unit agent socket the multi-call hook-tool binary talks to.
//! - [`pebble_cli`]: the same binary as the pods' `/charm/bin/pebble` (`pebble notify`).
//! - [`model`], [`cli`]: the model's lifecycle and the `juju-local` command line.

pub mod agent;
pub mod cli;
pub mod hooktools;
pub mod model;
pub mod pebble_cli;
pub mod pebble_server;
