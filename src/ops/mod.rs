//! The charm runtime: what Python `ops` is to Python charms, small and exact.
//!
//! Nothing in here knows about Redis; it could become its own crate.

pub mod b64;
pub mod context;
pub mod framework;
pub mod hookcmds;
pub mod model;
pub mod pebble;
pub mod testing;
