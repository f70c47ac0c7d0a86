//! In-memory Pebble. (being written)
