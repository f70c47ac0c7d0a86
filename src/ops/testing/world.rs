//! In-memory Juju model. (being written)
