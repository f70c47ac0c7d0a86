//! The local model: runs any sidecar charm the way Juju would, against real processes.
