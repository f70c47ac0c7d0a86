//! The charm runtime: what Python `ops` is to Python charms, small and exact.
//!
//! Nothing in here knows about Redis; it could become its own crate.

pub mod context;
pub mod hookcmds;
pub mod pebble;
pub mod testing;
pub mod framework;
pub mod model;
