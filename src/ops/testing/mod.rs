//! In-memory hook tools and Pebble for tests (and the local model's state).
