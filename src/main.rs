//! The charm's `dispatch`: Juju runs it for every hook and action, with the context in
//! `JUJU_*` variables and the hook tools on `PATH`. Thin: parse the context, run one
//! dispatch through the framework, save state only on success, map errors to an exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::ops::context::JujuContext;
use redis_k8s::ops::framework::{dispatch, FileStorage, Framework, Storage};
use redis_k8s::ops::hookcmds::process::ProcessHookTools;
use redis_k8s::ops::hookcmds::{HookTools, LogLevel};
use redis_k8s::ops::pebble::SocketPebbleProvider;

/// Juju runs this binary as `dispatch` with no arguments; the options exist for people.
#[derive(Parser)]
#[command(
    version,
    about = "The redis-k8s charm. Juju runs it as `dispatch`; it reads JUJU_* variables."
)]
struct Cli {}

fn main() -> ExitCode {
    let _ = Cli::parse();
    init_tracing();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line on stderr (Juju logs it at WARNING); no backtrace, no panic.
            eprintln!("ERROR {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let ctx = JujuContext::from_env().context("invalid Juju hook context")?;
    let tools = ProcessHookTools::new();
    let pebble = SocketPebbleProvider;
    let storage = FileStorage::in_charm_dir(&ctx.charm_dir);
    let data = storage.load()?;
    let mut fw = Framework::new(&ctx, &tools, &pebble, data);
    let mut charm = RedisK8sCharm::default();
    if let Err(e) = dispatch(&mut charm, &mut fw) {
        let _ = tools.juju_log(
            LogLevel::Error,
            &format!("{} failed: {e}", ctx.dispatch_path),
        );
        return Err(e.into());
    }
    storage.save(fw.data())?;
    tracing::debug!(events = ?fw.emitted, "dispatch done");
    Ok(())
}

/// Juju keeps a hook's stdout as DEBUG and stderr as WARNING in the unit log, so logging
/// costs no hook-tool call: info and debug go to stdout, warnings and errors to stderr.
fn init_tracing() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let level = if std::env::var_os("JUJU_DEBUG").is_some() {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let writer = std::io::stderr
        .with_max_level(tracing::Level::WARN)
        .or_else(std::io::stdout.with_max_level(level));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(level)
        .init();
}
