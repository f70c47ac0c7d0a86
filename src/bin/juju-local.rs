//! `juju-local`: the local model's CLI and, when invoked through a hook-tool symlink
//! (`relation-get`, `status-set`, ...), the hook tool itself, and as `pebble`, the pods'
//! `/charm/bin/pebble`.

fn main() {
    if let Some(code) = redis_k8s::sim::pebble_cli::pebble_main_if_pebble() {
        std::process::exit(code)
    }
    if let Some(code) = redis_k8s::sim::agent::tool_main_if_tool() {
        std::process::exit(code)
    }
    redis_k8s::sim::cli::main();
}
