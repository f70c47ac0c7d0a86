//! The `juju-local` command line: a Juju-like CLI over a local model.
//!
//! Every command is a separate process; the model lives in a directory and a daemon (started
//! by the first `deploy`) that the commands talk to over `D/control.sock`. Errors are one
//! `ERROR ...` line on stderr and exit status 1, like `juju`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::sim::model::charm::CharmInfo;
use crate::sim::model::daemon::resolve_dispatch;
use crate::sim::model::layout::{check_subnet, default_model_dir, default_subnet, ModelDir};
use crate::sim::model::proto::{ActionOutcome, Reply, Request};
use crate::sim::model::status::Snapshot;
use crate::sim::model::{Daemon, ModelOptions};

/// A CLI failure: the one line printed after `ERROR`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Op(String),
    #[error("no model at {0} (deploy something first)")]
    NoModel(PathBuf),
    #[error("the model daemon at {dir} is not responding: {why}")]
    Daemon { dir: PathBuf, why: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type CliResult<T> = Result<T, CliError>;

/// Run a sidecar charm locally, the way Juju on Kubernetes would.
#[derive(Debug, Parser)]
#[command(name = "juju-local", version, about)]
pub struct Cli {
    /// Model name (default: `local`, or the model directory's name).
    #[arg(short = 'm', long, global = true)]
    pub model: Option<String>,
    /// Model directory (default: $JUJU_LOCAL_DIR, else ./.juju-local/<model>).
    #[arg(long, global = true)]
    pub model_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Deploy a charm directory as an application (starts the model if needed).
    Deploy {
        charm_dir: PathBuf,
        /// Application name (default: the charm's name).
        #[arg(long)]
        app: Option<String>,
        /// Number of units.
        #[arg(short = 'n', long = "num-units", default_value_t = 1)]
        units: u32,
        /// Config option `key=value` (repeatable).
        #[arg(long = "config")]
        config: Vec<String>,
        /// File resource `name=path` (repeatable).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// The charm's dispatch (default: the charm dir's `dispatch`, or its Cargo build
        /// `target/{release,debug}/<charm name>`).
        #[arg(long)]
        dispatch: Option<String>,
        /// Loopback /24 for this model's units, like `127.0.12` (default: from the model name).
        #[arg(long)]
        subnet: Option<String>,
        /// JUJU_VERSION the hooks see.
        #[arg(long, default_value = "3.6.25")]
        juju_version: String,
        /// Seconds between update-status hooks.
        #[arg(long, default_value_t = 60)]
        update_status_interval: u64,
        /// Cap in seconds of the retry backoff of a failed hook.
        #[arg(long, default_value_t = 30)]
        retry_cap: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Change the number of units of an application.
    Scale {
        app: String,
        units: u32,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Kill a unit's pod (services, Pebble, hook in flight) and bring a new one up.
    KillPod {
        unit: String,
        /// Seconds the pod stays down before its replacement starts (a Kubernetes pod
        /// replacement takes a while; Sentinel needs down-after plus an election to fail over).
        #[arg(long, default_value_t = 15.0)]
        down_for: f64,
        /// Delete the pod as Kubernetes does: the charm's `stop` hook runs first (services
        /// still up), for at most --grace seconds, then the pod dies.
        #[arg(long)]
        graceful: bool,
        /// The grace period (terminationGracePeriodSeconds) with --graceful.
        #[arg(long, default_value_t = 30.0)]
        grace: f64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Refresh an application (`juju refresh`): replace its pods one at a time, highest
    /// ordinal first; each old pod runs `stop` (within --grace seconds) before it dies, each
    /// new one runs upgrade-charm, config-changed, start and pebble-ready, and the next pod
    /// goes only once this one is back and idle.
    Refresh {
        app: String,
        /// A new charm directory (same charm name); default: the deployed one again.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The new charm's dispatch (with --path; default as for deploy).
        #[arg(long)]
        dispatch: Option<String>,
        /// Grace period of each old pod (terminationGracePeriodSeconds).
        #[arg(long, default_value_t = 30.0)]
        grace: f64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Relate two applications: `app1[:endpoint] app2[:endpoint]`.
    #[command(alias = "integrate")]
    Relate {
        a: String,
        b: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show (no settings) or set an application's config.
    Config {
        app: String,
        settings: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Replace file resources (`name=path`, repeatable); every unit runs upgrade-charm.
    AttachResource {
        app: String,
        resources: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Run an action on a unit: `run app/0 action key=value ...`.
    Run {
        unit: String,
        action: String,
        params: Vec<String>,
    },
    /// Show the model.
    Status {
        /// `tabular` or `json`.
        #[arg(long, default_value = "tabular")]
        format: String,
    },
    /// Show a unit's relations and their data (like `juju show-unit`).
    ShowUnit { unit: String },
    /// Show a unit's log (hooks' output, juju-log) or a container's service log.
    Logs {
        unit: String,
        /// Last N lines.
        #[arg(short = 'n', long, default_value_t = 200)]
        lines: usize,
        /// Show this container's Pebble/service log instead.
        #[arg(long)]
        container: Option<String>,
    },
    /// Block until every unit is idle and none is in error.
    Wait {
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Also until every Redis replica has its link up and has caught up with its primary
        /// (what `deploy --wait` waits for).
        #[arg(long)]
        replicated: bool,
    },
    /// Stop everything and remove the model directory.
    Down,
    /// (internal) Run the model daemon in the foreground.
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        subnet: String,
        #[arg(long)]
        juju_version: String,
        #[arg(long)]
        update_status_interval: u64,
        #[arg(long)]
        retry_cap: u64,
    },
}

/// `--wait` and its timeout.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Block until the model settles (all queues idle, no unit in error; for `deploy`, also
    /// every Redis replica in sync with its primary).
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// A grace period in seconds as milliseconds (0 to 3600 s).
fn grace_ms(grace: f64) -> CliResult<u64> {
    if !(0.0..=3600.0).contains(&grace) {
        return Err(CliError::Op(format!(
            "--grace must be between 0 and 3600 seconds, got {grace}"
        )));
    }
    Ok((grace * 1000.0) as u64)
}

/// Entry point of the `juju-local` binary (after the hook-tool check): exits the process.
pub fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ERROR {e}");
            1
        }
    };
    std::process::exit(code);
}

/// A model's identity on the CLI side.
struct Target {
    name: String,
    dir: ModelDir,
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "local".into()
    } else {
        s
    }
}

fn target(cli: &Cli) -> CliResult<Target> {
    let env_dir = std::env::var_os("JUJU_LOCAL_DIR").map(PathBuf::from);
    let dir = match (&cli.model_dir, env_dir, &cli.model) {
        (Some(d), _, _) => d.clone(),
        (None, Some(d), _) => d,
        (None, None, m) => default_model_dir(m.as_deref().unwrap_or("local")),
    };
    let name = match &cli.model {
        Some(m) => sanitize(m),
        None => dir
            .file_name()
            .map(|n| sanitize(&n.to_string_lossy()))
            .unwrap_or_else(|| "local".into()),
    };
    // Absolute, so the daemon, hooks and services agree whatever their cwd.
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir()?.join(dir)
    };
    Ok(Target {
        name,
        dir: ModelDir::new(dir),
    })
}

fn connect(dir: &ModelDir) -> Option<UnixStream> {
    UnixStream::connect(dir.control_socket()).ok()
}

/// Send one request and stream its reply; progress lines go to stderr.
fn request(dir: &ModelDir, req: &Request) -> CliResult<serde_json::Value> {
    let mut stream = connect(dir).ok_or_else(|| {
        if dir.root.exists() {
            CliError::Daemon {
                dir: dir.root.clone(),
                why: "cannot connect to its control socket".into(),
            }
        } else {
            CliError::NoModel(dir.root.clone())
        }
    })?;
    let text = serde_json::to_string(req).map_err(|e| CliError::Op(e.to_string()))?;
    writeln!(stream, "{text}")?;
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let line = line?;
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Progress(p)) => eprintln!("{p}"),
            Ok(Reply::Ok(v)) => return Ok(v),
            Ok(Reply::Error(e)) => return Err(CliError::Op(e)),
            Err(e) => {
                return Err(CliError::Daemon {
                    dir: dir.root.clone(),
                    why: format!("bad reply: {e}"),
                })
            }
        }
    }
    Err(CliError::Daemon {
        dir: dir.root.clone(),
        why: "it closed the connection without answering (see daemon.log)".into(),
    })
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Start the model daemon detached (own process group, output to `D/daemon.log`) and wait
/// until it answers.
fn start_daemon(
    t: &Target,
    subnet: &str,
    juju_version: &str,
    interval: u64,
    retry_cap: u64,
) -> CliResult<()> {
    std::fs::create_dir_all(&t.dir.root)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(t.dir.daemon_log())?;
    let exe = std::env::current_exe()?;
    // Detach: its own session (setsid) when available, else at least its own process group,
    // so the terminal's signals and hangups of the CLI never reach the model.
    let setsid = Path::new("/usr/bin/setsid");
    let mut cmd = if setsid.exists() {
        let mut c = Command::new(setsid);
        c.arg(exe);
        c
    } else {
        let mut c = Command::new(exe);
        c.process_group(0);
        c
    };
    let mut child = cmd
        .arg("--model")
        .arg(&t.name)
        .arg("--model-dir")
        .arg(&t.dir.root)
        .arg("daemon")
        .args(["--subnet", subnet, "--juju-version", juju_version])
        .args(["--update-status-interval", &interval.to_string()])
        .args(["--retry-cap", &retry_cap.to_string()])
        .env("JUJU_LOCAL_MODEL_DIR", &t.dir.root)
        .current_dir(&t.dir.root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if connect(&t.dir).is_some() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::Daemon {
                dir: t.dir.root.clone(),
                why: format!("it exited ({status}): {}", tail(&t.dir.daemon_log(), 5)),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CliError::Daemon {
                dir: t.dir.root.clone(),
                why: "it did not start within 15s".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--wait`: until the model settles; `replicated` (deploy: "deployed" means "replicated")
/// also until every Redis replica is in sync.
fn wait_if(dir: &ModelDir, w: &WaitArgs, replicated: bool) -> CliResult<()> {
    if w.wait {
        request(
            dir,
            &Request::Wait {
                timeout_secs: w.timeout,
                replicated,
            },
        )?;
    }
    Ok(())
}

fn run(cli: Cli) -> CliResult<i32> {
    let t = target(&cli)?;
    match cli.command {
        Cmd::Daemon {
            subnet,
            juju_version,
            update_status_interval,
            retry_cap,
        } => {
            let opts = ModelOptions {
                name: t.name.clone(),
                dir: t.dir.root.clone(),
                subnet: check_subnet(&subnet).map_err(CliError::Op)?,
                juju_version,
                update_status_interval_secs: update_status_interval,
                retry_cap_secs: retry_cap,
            };
            Daemon::run(opts).map_err(CliError::Op)?;
            Ok(0)
        }
        Cmd::Deploy {
            charm_dir,
            app,
            units,
            config,
            resources,
            dispatch,
            subnet,
            juju_version,
            update_status_interval,
            retry_cap,
            wait,
        } => {
            // Check what can be checked before anything starts running.
            let charm = CharmInfo::load(&charm_dir).map_err(|e| CliError::Op(e.to_string()))?;
            let resolved = resolve_dispatch(&charm, dispatch.as_deref()).map_err(CliError::Op)?;
            // The daemon runs in the model dir: a relative `--dispatch` means the caller's cwd.
            let dispatch = dispatch.map(|_| resolved.display().to_string());
            let subnet = match subnet {
                Some(s) => check_subnet(&s).map_err(CliError::Op)?,
                None => default_subnet(&t.name),
            };
            let started = if connect(&t.dir).is_none() {
                eprintln!(
                    "starting model {} in {} (units at {}.N)",
                    t.name,
                    t.dir.root.display(),
                    subnet
                );
                start_daemon(
                    &t,
                    &subnet,
                    &juju_version,
                    update_status_interval,
                    retry_cap,
                )?;
                true
            } else {
                false
            };
            let req = Request::Deploy {
                charm_dir: std::fs::canonicalize(&charm_dir)?.display().to_string(),
                app: app.or(Some(charm.name)),
                units,
                config,
                resources,
                dispatch,
            };
            match request(&t.dir, &req) {
                Ok(_) => {}
                Err(e) => {
                    if started {
                        // Nothing may be left running after a failed first deploy.
                        let _ = down(&t, true);
                    }
                    return Err(e);
                }
            }
            wait_if(&t.dir, &wait, true)?;
            Ok(0)
        }
        Cmd::Scale { app, units, wait } => {
            request(&t.dir, &Request::Scale { app, units })?;
            wait_if(&t.dir, &wait, false)?;
            Ok(0)
        }
        Cmd::KillPod {
            unit,
            down_for,
            graceful,
            grace,
            wait,
        } => {
            if !(0.0..=3600.0).contains(&down_for) {
                return Err(CliError::Op(format!(
                    "--down-for must be between 0 and 3600 seconds, got {down_for}"
                )));
            }
            let grace_ms = if graceful {
                Some(grace_ms(grace)?)
            } else {
                None
            };
            request(
                &t.dir,
                &Request::KillPod {
                    unit,
                    down_for_ms: (down_for * 1000.0) as u64,
                    grace_ms,
                },
            )?;
            wait_if(&t.dir, &wait, false)?;
            Ok(0)
        }
        Cmd::Refresh {
            app,
            path,
            dispatch,
            grace,
            wait,
        } => {
            let grace_ms = grace_ms(grace)?;
            let (charm_dir, dispatch) = match &path {
                Some(dir) => {
                    let charm = CharmInfo::load(dir).map_err(|e| CliError::Op(e.to_string()))?;
                    let resolved =
                        resolve_dispatch(&charm, dispatch.as_deref()).map_err(CliError::Op)?;
                    (
                        Some(std::fs::canonicalize(dir)?.display().to_string()),
                        // Resolved here: the daemon runs in the model dir, not the caller's cwd.
                        dispatch.map(|_| resolved.display().to_string()),
                    )
                }
                None if dispatch.is_some() => {
                    return Err(CliError::Op("--dispatch needs --path".into()))
                }
                None => (None, None),
            };
            request(
                &t.dir,
                &Request::Refresh {
                    app,
                    charm_dir,
                    dispatch,
                    grace_ms,
                },
            )?;
            wait_if(&t.dir, &wait, false)?;
            Ok(0)
        }
        Cmd::Relate { a, b, wait } => {
            request(&t.dir, &Request::Relate { a, b })?;
            wait_if(&t.dir, &wait, false)?;
            Ok(0)
        }
        Cmd::Config {
            app,
            settings,
            wait,
        } => {
            let show = settings.is_empty();
            let v = request(&t.dir, &Request::Config { app, settings })?;
            if show {
                print!("{}", serde_yaml::to_string(&v).unwrap_or_default());
            }
            wait_if(&t.dir, &wait, false)?;
            Ok(0)
        }
        Cmd::AttachResource {
            app,
            resources,
            wait,
        } => {
            request(&t.dir, &Request::AttachResource { app, resources })?;
            wait_if(&t.dir, &wait, false)?;
            Ok(0)
        }
        Cmd::Run {
            unit,
            action,
            params,
        } => {
            let v = request(
                &t.dir,
                &Request::Run {
                    unit,
                    action,
                    params,
                },
            )?;
            let outcome: ActionOutcome =
                serde_json::from_value(v).map_err(|e| CliError::Op(e.to_string()))?;
            print_action(&outcome);
            if outcome.status == "completed" {
                Ok(0)
            } else {
                eprintln!(
                    "ERROR action {} failed: {}",
                    outcome.id,
                    outcome.message.as_deref().unwrap_or("failed")
                );
                Ok(1)
            }
        }
        Cmd::Status { format } => {
            let (snap, live) = match connect(&t.dir) {
                Some(_) => {
                    let v = request(&t.dir, &Request::Status)?;
                    let s: Snapshot =
                        serde_json::from_value(v).map_err(|e| CliError::Op(e.to_string()))?;
                    (s, true)
                }
                None => {
                    let text = std::fs::read_to_string(t.dir.status_file())
                        .map_err(|_| CliError::NoModel(t.dir.root.clone()))?;
                    let s: Snapshot =
                        serde_json::from_str(&text).map_err(|e| CliError::Op(e.to_string()))?;
                    (s, false)
                }
            };
            match format.as_str() {
                "json" => println!(
                    "{}",
                    serde_json::to_string_pretty(&snap).map_err(|e| CliError::Op(e.to_string()))?
                ),
                "tabular" => print!("{}", snap.render()),
                other => return Err(CliError::Op(format!("unknown format {other:?}"))),
            }
            if !live {
                eprintln!("(the model daemon is not running: last known status)");
            }
            Ok(0)
        }
        Cmd::ShowUnit { unit } => {
            let v = request(&t.dir, &Request::ShowUnit { unit })?;
            print!("{}", serde_yaml::to_string(&v).unwrap_or_default());
            Ok(0)
        }
        Cmd::Logs {
            unit,
            lines,
            container,
        } => {
            let ud = t.dir.unit(&unit);
            if !t.dir.root.exists() {
                return Err(CliError::NoModel(t.dir.root.clone()));
            }
            if !ud.root.exists() {
                return Err(CliError::Op(format!("unit \"{unit}\" not found")));
            }
            let path = match &container {
                Some(c) => ud.pebble_log(c),
                None => ud.log(),
            };
            if !path.exists() {
                return Err(CliError::Op(format!("no log at {}", path.display())));
            }
            println!("{}", tail(&path, lines));
            Ok(0)
        }
        Cmd::Wait {
            timeout,
            replicated,
        } => {
            request(
                &t.dir,
                &Request::Wait {
                    timeout_secs: timeout,
                    replicated,
                },
            )?;
            Ok(0)
        }
        Cmd::Down => {
            down(&t, false)?;
            Ok(0)
        }
    }
}

/// Nest flat dotted result keys (`a.b=1`) into a YAML mapping, like `juju run` shows them.
fn nest(results: &std::collections::BTreeMap<String, String>) -> serde_yaml::Value {
    let mut root = serde_yaml::Mapping::new();
    for (k, v) in results {
        if matches!(k.as_str(), "stdout" | "stderr" | "return-code") {
            continue;
        }
        let parts: Vec<&str> = k.split('.').collect();
        let mut cur = &mut root;
        for (i, p) in parts.iter().enumerate() {
            let key = serde_yaml::Value::String(p.to_string());
            if i + 1 == parts.len() {
                cur.insert(key, serde_yaml::Value::String(v.clone()));
            } else {
                let entry = cur
                    .entry(key)
                    .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
                if !entry.is_mapping() {
                    *entry = serde_yaml::Value::Mapping(Default::default());
                }
                match entry.as_mapping_mut() {
                    Some(m) => cur = m,
                    None => break,
                }
            }
        }
    }
    serde_yaml::Value::Mapping(root)
}

fn print_action(o: &ActionOutcome) {
    eprintln!();
    eprintln!("Waiting for task {}...", o.id);
    for l in &o.logs {
        eprintln!("{l}");
    }
    let nested = nest(&o.results);
    if nested.as_mapping().is_some_and(|m| !m.is_empty()) {
        print!("{}", serde_yaml::to_string(&nested).unwrap_or_default());
    }
    if let Some(out) = o.results.get("stdout") {
        print!("{out}");
    }
    if let Some(err) = o.results.get("stderr") {
        eprint!("{err}");
    }
}

/// Processes that belong to a model: anything whose environment names the model dir
/// (services inherit `JUJU_LOCAL_MODEL_DIR`) or whose command line runs from its units.
fn model_processes(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let env_marker = format!("JUJU_LOCAL_MODEL_DIR={}", dir.display());
    let units_marker = format!("{}/units/", dir.display());
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let in_env = environ
            .split(|b| *b == 0)
            .any(|v| v == env_marker.as_bytes());
        let in_cmd = String::from_utf8_lossy(&cmdline).contains(&units_marker);
        if in_env || in_cmd {
            pids.push(pid);
        }
    }
    pids
}

/// Stop the daemon (it kills hooks, services and Pebble servers), sweep anything left, and
/// remove the model directory. Idempotent.
fn down(t: &Target, quiet: bool) -> CliResult<()> {
    if !t.dir.root.exists() {
        if !quiet {
            eprintln!("no model at {}", t.dir.root.display());
        }
        return Ok(());
    }
    if connect(&t.dir).is_some() {
        let _ = request(&t.dir, &Request::Shutdown);
    }
    let pid: Option<u32> = std::fs::read_to_string(t.dir.daemon_pid())
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Some(p) = pid {
        let alive = std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .map(|c| c.contains("juju-local") || c.contains("daemon"))
            .unwrap_or(false)
            && !std::fs::read_to_string(format!("/proc/{p}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        if !alive || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3 {
        let left = model_processes(&t.dir.root);
        if left.is_empty() {
            break;
        }
        for p in left {
            crate::sim::model::hook::kill_pid(p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&t.dir.root)?;
    if !quiet {
        eprintln!("model {} removed", t.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let cli = Cli::try_parse_from([
            "juju-local",
            "--model",
            "m",
            "deploy",
            "./c",
            "-n",
            "3",
            "--config",
            "a=1",
            "--wait",
        ])
        .unwrap();
        match cli.command {
            Cmd::Deploy {
                units,
                config,
                wait,
                ..
            } => {
                assert_eq!(units, 3);
                assert_eq!(config, ["a=1"]);
                assert!(wait.wait);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["juju-local", "run", "a/0"]).is_err());
    }

    #[test]
    fn parses_attach_resource_and_deploy_resources() {
        let cli = Cli::try_parse_from([
            "juju-local",
            "attach-resource",
            "redis-k8s",
            "cert-file=/tmp/c",
            "ca-cert-file=/tmp/a",
            "--wait",
        ])
        .unwrap();
        match cli.command {
            Cmd::AttachResource {
                app,
                resources,
                wait,
            } => {
                assert_eq!(app, "redis-k8s");
                assert_eq!(resources, ["cert-file=/tmp/c", "ca-cert-file=/tmp/a"]);
                assert!(wait.wait);
            }
            _ => panic!("not attach-resource"),
        }
        let cli =
            Cli::try_parse_from(["juju-local", "deploy", "./c", "--resource", "k=/tmp/k"]).unwrap();
        match cli.command {
            Cmd::Deploy { resources, .. } => assert_eq!(resources, ["k=/tmp/k"]),
            _ => panic!("not deploy"),
        }
    }

    #[test]
    fn nests_dotted_results() {
        let r = std::collections::BTreeMap::from([
            ("a.b".to_string(), "1".to_string()),
            ("c".to_string(), "x".to_string()),
            ("stdout".to_string(), "hidden".to_string()),
        ]);
        let y = serde_yaml::to_string(&nest(&r)).unwrap();
        assert_eq!(y, "a:\n  b: '1'\nc: x\n");
    }

    #[test]
    fn model_names_are_sanitized() {
        assert_eq!(sanitize("My_Model"), "my-model");
        assert_eq!(sanitize("__"), "local");
    }
}
