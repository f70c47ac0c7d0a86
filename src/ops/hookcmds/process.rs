//! The production [`super::HookTools`]: spawns the hook tools Juju puts on `PATH`.
