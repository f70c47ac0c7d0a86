//! `cargo bench --bench hooks`: what a redis-k8s hook costs, next to a Python ops charm
//! doing the same work, the charm's footprint, and failover timing on the local model.
//! See docs/benchmarks.md. Not a test: it asserts nothing about time.
//!
//! Options (after `--`): `--runs N` (hook runs per event, default 20), `--failover-runs N`
//! (kills per down-after setting, default 3; 0 skips failover), `--down-for S` (seconds a
//! killed pod stays down, default 15), `--no-baseline`, `--no-footprint`, `--out FILE`
//! (default `target/bench/hooks.json`).
//!
//! Needs root: the hooks run in a private mount namespace (the bench re-executes itself
//! under `unshare --mount`) where `/etc/hosts` names the pods and `/charm/containers` is the
//! measured unit's containers dir, as in a sidecar pod.

mod baseline;
mod cluster;
mod failover;
mod footprint;
mod hooks;
mod rusage;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::Serialize;

const CHARM_BIN: &str = env!("CARGO_BIN_EXE_redis-k8s");
const JUJU_LOCAL: &str = env!("CARGO_BIN_EXE_juju-local");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug, Clone)]
struct Args {
    runs: usize,
    failover_runs: usize,
    down_for: f64,
    baseline: bool,
    footprint: bool,
    out: PathBuf,
    /// Internal: run the hook part only and write its JSON here.
    inner: Option<PathBuf>,
    venv: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        runs: 20,
        failover_runs: 3,
        down_for: 15.0,
        baseline: true,
        footprint: true,
        out: target_dir().join("bench/hooks.json"),
        inner: None,
        venv: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench passes --bench to harness=false targets.
            "--bench" => {}
            "--runs" => a.runs = value("--runs")?.parse().context("--runs")?,
            "--failover-runs" => {
                a.failover_runs = value("--failover-runs")?
                    .parse()
                    .context("--failover-runs")?
            }
            "--down-for" => a.down_for = value("--down-for")?.parse().context("--down-for")?,
            "--no-baseline" => a.baseline = false,
            "--no-footprint" => a.footprint = false,
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--inner-hooks" => a.inner = Some(PathBuf::from(value("--inner-hooks")?)),
            "--venv" => a.venv = Some(PathBuf::from(value("--venv")?)),
            "-h" | "--help" => {
                println!(
                    "cargo bench --bench hooks -- [--runs N] [--failover-runs N] [--down-for S] \
                     [--no-baseline] [--no-footprint] [--out FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(a)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join("target"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The machine the figures come from.
#[derive(Debug, Clone, Serialize)]
struct Machine {
    nproc: usize,
    cpu_model: String,
    kernel: String,
    memory: String,
    load_average_at_start: String,
    rustc: String,
    python: Vec<String>,
}

fn machine(python: Vec<String>) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let memory = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        memory,
        load_average_at_start: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        rustc,
        python,
    }
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    hooks: hooks::HookReport,
    footprint: Option<footprint::Footprint>,
    failover: Vec<failover::Setting>,
    failover_notes: Vec<String>,
}

/// Ctrl-C: tear down any model that is up, then exit (Drop guards do not run on a signal).
fn install_interrupt_guard() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            let dirs = failover::LIVE_MODELS
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            for d in dirs {
                eprintln!("interrupted: tearing down {}", d.display());
                let _ = Command::new(JUJU_LOCAL)
                    .arg("--model-dir")
                    .arg(&d)
                    .arg("down")
                    .status();
                // The model dir lives in the bench's scratch dir, which no Drop removes now.
                if let Some(scratch) = d.parent() {
                    let _ = std::fs::remove_dir_all(scratch);
                }
            }
            std::process::exit(130);
        }
    });
}

fn fmt_ms(s: &stats::Summary) -> String {
    if s.n == 0 {
        return "-".into();
    }
    let p = |x: f64| {
        if x < 100.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.0}")
        }
    };
    format!("{} ({}–{})", p(s.median), p(s.p10), p(s.p90))
}

fn print_hooks(h: &hooks::HookReport) {
    println!(
        "\nHook cost on {} ({} runs per event; wall ms = median (p10–p90); RSS = peak MiB; calls = hook tools / Pebble requests)\n",
        h.measured_unit, h.runs
    );
    println!(
        "{:<36} {:>18} {:>5} {:>6} | {:>16} {:>5} {:>6} | {:>6} {:>5}",
        "event", "rust wall ms", "RSS", "calls", "ops wall ms", "RSS", "calls", "time ×", "RSS ×"
    );
    for r in &h.rows {
        let calls =
            |f: &hooks::Figures| format!("{}/{}", f.tool_calls.median, f.pebble_requests.median);
        let (ow, orss, ocalls) = match &r.ops {
            Some(o) => (
                fmt_ms(&o.wall_ms),
                format!("{:.1}", o.max_rss_mib.median),
                calls(o),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<36} {:>18} {:>5.1} {:>6} | {:>16} {:>5} {:>6} | {:>6} {:>5}",
            r.event,
            fmt_ms(&r.rust.wall_ms),
            r.rust.max_rss_mib.median,
            calls(&r.rust),
            ow,
            orss,
            ocalls,
            r.wall_ratio
                .map(|x| format!("{x:.0}×"))
                .unwrap_or_else(|| "-".into()),
            r.rss_ratio
                .map(|x| format!("{x:.1}×"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    println!(
        "\nLoad average (1/5/15 min) when the rounds began: {}; when they ended: {}",
        h.load_average[0], h.load_average[1]
    );
    println!("\nFloors (same measurement, no charm work):");
    for f in &h.floors {
        println!(
            "  {:<40} {:>20} ms  RSS {:.1} MiB",
            f.what,
            fmt_ms(&f.figures.wall_ms),
            f.figures.max_rss_mib.median
        );
    }
    for n in &h.notes {
        println!("note: {n}");
    }
}

fn print_footprint(f: &footprint::Footprint) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("\nFootprint");
    println!(
        "  rust  .charm {:.2} MiB packed, {:.2} MiB unpacked in {} files (dispatch binary {:.2} MiB)  [{}]",
        mib(f.rust.packed_bytes),
        mib(f.rust.unpacked_bytes),
        f.rust.files,
        mib(f.dispatch_bytes),
        f.charm_file
    );
    if let Some(o) = &f.ops_baseline {
        println!(
            "  ops baseline (charm files + venv/ packages, zipped)  {:.2} MiB packed, {:.2} MiB unpacked in {} files",
            mib(o.packed_bytes),
            mib(o.unpacked_bytes),
            o.files
        );
    }
    for n in &f.notes {
        println!("  note: {n}");
    }
}

fn print_failover(settings: &[failover::Setting]) {
    if settings.is_empty() {
        return;
    }
    println!("\nFailover after killing the primary's pod (ms from the kill; median (p10–p90) over runs)\n");
    println!(
        "{:<12} {:>20} {:>20} {:>26} {:>26}",
        "down-after",
        "promotion",
        "first write",
        "relation data (leader up)",
        "relation data (leader killed)"
    );
    for s in settings {
        println!(
            "{:<12} {:>20} {:>20} {:>26} {:>26}",
            format!("{} ms", s.down_after_ms),
            fmt_ms(&s.promotion_ms),
            fmt_ms(&s.first_write_ms),
            fmt_ms(&s.relation_data_leader_alive_ms),
            fmt_ms(&s.relation_data_leader_killed_ms)
        );
    }
    println!(
        "(runs per setting: {}; a killed pod stays down for --down-for seconds)",
        settings[0].runs.len()
    );
}

/// The hook part, inside the namespace: write its JSON to `path`.
fn inner(args: &Args, path: &Path) -> anyhow::Result<()> {
    let report = hooks::measure(
        Path::new(REPO),
        Path::new(CHARM_BIN),
        Path::new(JUJU_LOCAL),
        args.venv.as_deref(),
        args.runs,
    )?;
    std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}

fn outer(args: &Args) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the hook bench needs root (mount namespaces, as the local model's hooks)");
    }
    install_interrupt_guard();
    let (venv, python) = if args.baseline {
        let (v, versions) = baseline::ensure_venv()?;
        (Some(v), versions)
    } else {
        (None, Vec::new())
    };
    let machine = machine(python);
    let scratch = tempfile::Builder::new()
        .prefix("redis-k8s-bench")
        .tempdir()?;

    // Hooks: this executable again, in a private mount namespace.
    let hooks_json = scratch.path().join("hooks.json");
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--"])
        .arg(&exe)
        .arg("--inner-hooks")
        .arg(&hooks_json)
        .arg("--runs")
        .arg(args.runs.to_string());
    if let Some(v) = &venv {
        cmd.arg("--venv").arg(v);
    }
    let status = cmd.status().context("run unshare")?;
    if !status.success() {
        bail!("the hook bench failed ({status})");
    }
    let hooks: hooks::HookReport = serde_json::from_slice(&std::fs::read(&hooks_json)?)?;
    print_hooks(&hooks);

    let footprint = if args.footprint {
        let f = footprint::measure(Path::new(REPO), &target_dir(), venv.as_deref())?;
        print_footprint(&f);
        Some(f)
    } else {
        None
    };

    let mut settings = Vec::new();
    let mut failover_notes = Vec::new();
    if args.failover_runs > 0 {
        for (subnet, down_after) in [("127.0.93", None), ("127.0.94", Some(1000))] {
            match failover::measure_setting(
                Path::new(JUJU_LOCAL),
                Path::new(CHARM_BIN),
                Path::new(REPO),
                scratch.path(),
                subnet,
                down_after,
                args.failover_runs,
                args.down_for,
            ) {
                Ok(s) => settings.push(s),
                Err(e) => {
                    eprintln!("failover ({subnet}): {e:#}");
                    failover_notes.push(format!("down-after {down_after:?}: {e:#}"));
                }
            }
        }
        print_failover(&settings);
    }

    let report = Report {
        machine,
        hooks,
        footprint,
        failover: settings,
        failover_notes,
    };
    if let Some(p) = args.out.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    println!(
        "\nMachine: {} × {}, kernel {}, load {} at start",
        report.machine.nproc,
        report.machine.cpu_model,
        report.machine.kernel,
        report.machine.load_average_at_start
    );
    println!("JSON: {}", args.out.display());
    Ok(())
}

fn main() {
    // The hook tools are this package's juju-local binary, not this one; nothing to dispatch.
    let result = parse_args().and_then(|args| match &args.inner {
        Some(path) => inner(&args, path),
        None => outer(&args),
    });
    if let Err(e) = result {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}
