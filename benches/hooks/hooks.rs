//! The per-event hook measurements (run inside the private mount namespace).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Event, HookRun};
use crate::stats::Summary;

/// The events measured on the Rust charm, in table order.
pub fn events() -> Vec<Event> {
    vec![
        Event::Hook("install"),
        Event::Hook("leader-elected"),
        Event::Hook("config-changed"),
        Event::PebbleReady("redis"),
        Event::PebbleReady("sentinel"),
        Event::Hook("update-status"),
        Event::PeerChanged(1),
        Event::Action("get-initial-admin-password"),
    ]
}

/// The events the ops baseline implements.
fn baseline_has(e: &Event) -> bool {
    matches!(
        e,
        Event::PebbleReady("sentinel") | Event::Hook("update-status")
    )
}

/// One charm's figures for one event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub wall_ms: Summary,
    pub cpu_ms: Summary,
    pub max_rss_mib: Summary,
    pub tool_calls: Summary,
    pub pebble_requests: Summary,
    /// Hook-tool calls of the last run, by tool.
    pub tools_last_run: BTreeMap<String, usize>,
    pub failures: usize,
}

#[derive(Default)]
struct Samples {
    runs: Vec<HookRun>,
    failures: usize,
    first_failure: Option<String>,
}

impl Samples {
    fn push(&mut self, run: HookRun) {
        if run.ok() {
            self.runs.push(run);
        } else {
            self.failures += 1;
            if self.first_failure.is_none() {
                self.first_failure = Some(format!("exit {:?}: {}", run.code, run.output));
            }
        }
    }

    fn figures(&self) -> Figures {
        let col =
            |f: &dyn Fn(&HookRun) -> f64| Summary::of(&self.runs.iter().map(f).collect::<Vec<_>>());
        let mut tools = BTreeMap::new();
        if let Some(last) = self.runs.last() {
            for t in &last.tool_calls {
                *tools.entry(t.clone()).or_insert(0) += 1;
            }
        }
        Figures {
            wall_ms: col(&|r| r.wall.as_secs_f64() * 1e3),
            cpu_ms: col(&|r| r.cpu.as_secs_f64() * 1e3),
            max_rss_mib: col(&|r| r.max_rss_kib as f64 / 1024.0),
            tool_calls: col(&|r| r.tool_calls.len() as f64),
            pebble_requests: col(&|r| r.pebble_requests as f64),
            tools_last_run: tools,
            failures: self.failures,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub event: String,
    pub rust: Figures,
    pub ops: Option<Figures>,
    /// ops median wall time / Rust median wall time.
    pub wall_ratio: Option<f64>,
    pub rss_ratio: Option<f64>,
}

/// What the machine charges before a charm does anything, measured the same way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Floor {
    pub what: String,
    pub figures: Figures,
}

/// The hook part of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookReport {
    pub runs: usize,
    pub units: usize,
    pub measured_unit: String,
    pub rows: Vec<Row>,
    pub floors: Vec<Floor>,
    /// /proc/loadavg when the measured rounds began and ended (the machine may be shared).
    pub load_average: [String; 2],
    pub statuses_after: Vec<String>,
    pub notes: Vec<String>,
}

/// Bring a 3-unit cluster up, then run every event `runs` times on unit 0 (after one
/// discarded warm-up round), interleaving the Rust charm and the ops baseline.
pub fn measure(
    repo: &Path,
    charm_bin: &Path,
    tools_bin: &Path,
    venv: Option<&Path>,
    runs: usize,
) -> anyhow::Result<HookReport> {
    let mut cluster = Cluster::new(3, repo, charm_bin, tools_bin, 71)?;
    eprintln!("hooks: bringing 3 units up (real redis-server and sentinel under Pebble)...");
    cluster.bring_up()?;
    eprintln!("hooks: units active: {:?}", cluster.statuses());

    let ops_dir = cluster.dir().join("ops-charm");
    if let Some(v) = venv {
        crate::baseline::charm_dir(repo, v, &ops_dir)?;
    }
    let rust_dir = cluster.units[0].charm_dir.clone();
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let load_before = loadavg();
    let events = events();
    let mut rust: Vec<Samples> = events.iter().map(|_| Samples::default()).collect();
    let mut ops: Vec<Samples> = events.iter().map(|_| Samples::default()).collect();
    let mut notes = Vec::new();
    if !Path::new(crate::cluster::GNU_TIME).exists() {
        notes.push(format!(
            "{} is missing (Debian package `time`): peak RSS is wait4's ru_maxrss, which \
             includes the bench process's own RSS; install it for the hook's own figure",
            crate::cluster::GNU_TIME
        ));
    }
    for round in 0..=runs {
        if round == 1 {
            eprintln!("hooks: measuring {runs} rounds...");
        }
        for (i, e) in events.iter().enumerate() {
            let r = cluster.run(0, &rust_dir, e)?;
            if let Event::Action(_) = e {
                if r.ok() && !r.action_results.contains_key("redis-password") {
                    bail!(
                        "the action returned no redis-password: {:?}",
                        r.action_results.keys()
                    );
                }
            }
            if round > 0 {
                rust[i].push(r);
            } else if !r.ok() {
                bail!("warm-up {} failed: {}", e.label(), r.output);
            }
            if venv.is_some() && baseline_has(e) {
                let r = cluster.run(0, &ops_dir, e)?;
                if round > 0 {
                    ops[i].push(r);
                } else if !r.ok() {
                    bail!("ops baseline warm-up {} failed: {}", e.label(), r.output);
                }
            }
        }
    }
    for (i, e) in events.iter().enumerate() {
        for (who, s) in [("rust", &rust[i]), ("ops", &ops[i])] {
            if let Some(f) = &s.first_failure {
                notes.push(format!(
                    "{who} {}: {} failed runs; first: {f}",
                    e.label(),
                    s.failures
                ));
            }
        }
    }
    let rows = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let r = rust[i].figures();
            let o = (venv.is_some() && baseline_has(e)).then(|| ops[i].figures());
            let ratio = |a: f64, b: f64| (b > 0.0).then_some(a / b);
            Row {
                event: e.label(),
                wall_ratio: o
                    .as_ref()
                    .and_then(|o| ratio(o.wall_ms.median, r.wall_ms.median)),
                rss_ratio: o
                    .as_ref()
                    .and_then(|o| ratio(o.max_rss_mib.median, r.max_rss_mib.median)),
                rust: r,
                ops: o,
            }
        })
        .collect();
    let load_after = loadavg();
    // Calibration: a bare process, the charm binary printing its version, one hook tool.
    let floors_spec: Vec<(String, PathBuf, Vec<&str>)> = vec![
        (
            "/bin/true (a process)".into(),
            PathBuf::from("/bin/true"),
            vec![],
        ),
        (
            "dispatch --version (charm binary start)".into(),
            rust_dir.join("dispatch"),
            vec!["--version"],
        ),
        (
            "is-leader (one hook-tool call)".into(),
            cluster.tools_dir().join("is-leader"),
            vec![],
        ),
    ];
    let mut floors = Vec::new();
    for (what, exe, args) in &floors_spec {
        let mut s = Samples::default();
        for _ in 0..=runs {
            let r = cluster.run_program(
                0,
                &rust_dir,
                &Event::Hook("update-status"),
                Some((exe, args)),
            )?;
            s.push(r);
        }
        if !s.runs.is_empty() {
            s.runs.remove(0);
        }
        floors.push(Floor {
            what: what.clone(),
            figures: s.figures(),
        });
    }
    // Refresh the other units' statuses (they ran no hook while unit 0 was measured).
    for u in 1..cluster.units.len() {
        cluster.must(u, &Event::Hook("update-status"))?;
    }
    Ok(HookReport {
        runs,
        units: cluster.units.len(),
        measured_unit: cluster.units[0].name.clone(),
        rows,
        floors,
        load_average: [load_before, load_after],
        statuses_after: cluster.statuses(),
        notes,
    })
}
