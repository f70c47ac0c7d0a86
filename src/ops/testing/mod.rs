//! In-memory hook tools and Pebble: the test doubles, and the state the local model serves.
//!
//! - [`world`]: a whole Juju model in memory (apps, units, relations, secrets, statuses) and a
//!   per-hook [`world::Session`] that implements [`crate::ops::hookcmds::HookTools`] with Juju's
//!   access rules and commit-on-success.
//! - [`pebble`]: an in-memory [`crate::ops::pebble::Pebble`] per container.

pub mod harness;
pub mod pebble;
pub mod world;
