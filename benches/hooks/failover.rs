//! Failover timing on the local model: 3 units with real redis-server and sentinel, the
//! primary's pod killed, and three clocks started at the kill: until a replica answers
//! `ROLE` as master (Sentinel's promotion), until the peer app databag's `leader-host` names
//! the new primary (what clients are told), until a `SET` on the new primary succeeds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redis_k8s::redis_client::{value_to_map, value_to_string, RedisConn};
use serde::Serialize;

use crate::stats::Summary;

const APP: &str = "redis-k8s";
const POLL: Duration = Duration::from_millis(20);
/// Give up on one measurement after this long.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Model directories that are up: torn down on Ctrl-C by the signal thread (see `main.rs`).
pub static LIVE_MODELS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A model on the local model daemon, torn down when dropped.
pub struct Model {
    juju_local: PathBuf,
    dir: PathBuf,
}

impl Model {
    fn cmd(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(&self.juju_local)
            .arg("--model-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("JUJU_LOCAL_DIR")
            .output()
    }

    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cmd(args)?;
        if !out.status.success() {
            bail!(
                "juju-local {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// (name, address, role, leader) per unit of the app.
    fn units(&self) -> anyhow::Result<Vec<UnitRow>> {
        let st: serde_json::Value =
            serde_json::from_str(&self.ok(&["status", "--format", "json"])?)?;
        Ok(st["units"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|u| u["name"].as_str().unwrap_or("").starts_with(APP))
            .map(|u| UnitRow {
                name: u["name"].as_str().unwrap_or_default().to_string(),
                address: u["address"].as_str().unwrap_or_default().to_string(),
                role: u["role"].as_str().unwrap_or_default().to_string(),
                leader: u["leader"].as_bool().unwrap_or(false),
            })
            .collect())
    }

    /// Wait for one primary and `replicas` replicas.
    fn settled(&self, replicas: usize, timeout: Duration) -> anyhow::Result<Vec<UnitRow>> {
        let deadline = Instant::now() + timeout;
        loop {
            let units = self.units()?;
            let p = units.iter().filter(|u| u.role == "primary").count();
            let r = units.iter().filter(|u| u.role == "replica").count();
            if p == 1 && r == replicas {
                return Ok(units);
            }
            if Instant::now() > deadline {
                bail!("roles never settled: {units:?}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The peer app databag's `leader-host`, as `show-unit` reports it.
    fn leader_host(&self, unit: &str) -> anyhow::Result<String> {
        let shown: serde_yaml::Value = serde_yaml::from_str(&self.ok(&["show-unit", unit])?)?;
        Ok(shown[unit]["relation-info"]
            .as_sequence()
            .and_then(|r| r.iter().find(|r| r["endpoint"] == "redis-peers"))
            .and_then(|r| r["application-data"]["leader-host"].as_str())
            .unwrap_or_default()
            .to_string())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        eprintln!("failover: tearing the model down");
        let _ = self.cmd(&["down"]);
        if let Ok(mut live) = LIVE_MODELS.lock() {
            live.retain(|d| d != &self.dir);
        }
    }
}

#[derive(Debug, Clone)]
struct UnitRow {
    name: String,
    address: String,
    role: String,
    leader: bool,
}

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub killed: String,
    pub killed_was_leader: bool,
    pub new_primary: String,
    /// How long `juju-local kill-pod` took to return (the clocks start before it).
    pub kill_cmd_ms: f64,
    pub promotion_ms: Option<f64>,
    pub relation_data_ms: Option<f64>,
    pub first_write_ms: Option<f64>,
    /// The last refusal the new primary gave after its promotion and before the first
    /// successful write (why writes lagged the promotion), if any.
    pub write_refused_after_promotion: Option<String>,
}

/// One down-after setting.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub down_after_ms: u64,
    pub runs: Vec<Run>,
    pub promotion_ms: Summary,
    pub relation_data_ms: Summary,
    /// Relation data, over the runs where the killed primary was not the leader unit (the
    /// leader saw the switch and updated `leader-host`).
    pub relation_data_leader_alive_ms: Summary,
    /// Relation data, over the runs where the leader's own pod was killed (it updates
    /// `leader-host` only once its pod is back: `--down-for` plus its start-up hooks).
    pub relation_data_leader_killed_ms: Summary,
    pub first_write_ms: Summary,
    pub deploy_s: f64,
}

/// Every sentinel sees the primary up, both replicas up and the two other sentinels: only
/// then can a kill be followed by a failover (right after a deploy or a pod's return, a
/// sentinel may not have discovered the replicas yet; its INFO refresh is every 10 s).
fn sentinels_ready(units: &[UnitRow], sentinel_password: &str) -> bool {
    units.iter().all(|u| {
        let Ok(mut c) = RedisConn::connect_with_timeout(
            &u.address,
            26379,
            Some(sentinel_password),
            Duration::from_millis(500),
        ) else {
            return false;
        };
        let Ok(master) = c.sentinel_master(APP) else {
            return false;
        };
        let replicas = match c.command(&["SENTINEL", "REPLICAS", APP]) {
            Ok(redis::Value::Array(items)) => items.iter().map(value_to_map).collect::<Vec<_>>(),
            _ => return false,
        };
        master.get("flags").map(String::as_str) == Some("master")
            && master.get("num-other-sentinels").map(String::as_str) == Some("2")
            && replicas.len() == 2
            && replicas
                .iter()
                .all(|r| r.get("flags").map(String::as_str) == Some("slave"))
    })
}

fn wait_sentinels(
    units: &[UnitRow],
    sentinel_password: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !sentinels_ready(units, sentinel_password) {
        if Instant::now() > deadline {
            bail!("the sentinels never all saw one primary, two replicas and two other sentinels");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

fn role(addr: &str, password: &str) -> Option<String> {
    let mut c =
        RedisConn::connect_with_timeout(addr, 6379, Some(password), Duration::from_millis(200))
            .ok()?;
    match c.command(&["ROLE"]).ok()? {
        redis::Value::Array(items) => items.first().map(value_to_string),
        _ => None,
    }
}

/// `SET` on `addr`: Ok, or the reason it was refused (e.g. READONLY on a replica,
/// NOREPLICAS on a primary that min-replicas-to-write holds back).
fn write(addr: &str, password: &str, n: usize) -> Result<(), String> {
    let mut c =
        RedisConn::connect_with_timeout(addr, 6379, Some(password), Duration::from_millis(200))
            .map_err(|e| e.to_string())?;
    match c.command_string(&["SET", "bench:failover", &n.to_string()]) {
        Ok(r) if r == "OK" => Ok(()),
        Ok(r) => Err(r),
        Err(e) => Err(e.to_string()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Deploy, kill the primary `runs` times, tear down.
#[allow(clippy::too_many_arguments)]
pub fn measure_setting(
    juju_local: &Path,
    charm_bin: &Path,
    repo: &Path,
    scratch: &Path,
    subnet: &str,
    down_after_ms: Option<u64>,
    runs: usize,
    down_for: f64,
) -> anyhow::Result<Setting> {
    let name = format!("bench{}", subnet.rsplit('.').next().unwrap_or("0"));
    let model = Model {
        juju_local: juju_local.to_path_buf(),
        dir: scratch.join(&name),
    };
    if let Ok(mut live) = LIVE_MODELS.lock() {
        live.push(model.dir.clone());
    }
    let repo_s = repo.display().to_string();
    let bin_s = charm_bin.display().to_string();
    let mut args = vec![
        "deploy",
        repo_s.as_str(),
        "-n",
        "3",
        "--dispatch",
        bin_s.as_str(),
        "--subnet",
        subnet,
        "--update-status-interval",
        "5",
        "--wait",
        "--timeout",
        "240",
    ];
    let cfg = down_after_ms.map(|d| format!("sentinel-down-after-milliseconds={d}"));
    if let Some(c) = &cfg {
        args.extend(["--config", c.as_str()]);
    }
    let t = Instant::now();
    eprintln!(
        "failover: deploying 3 units on {subnet}.x ({})",
        cfg.as_deref().unwrap_or("default down-after")
    );
    model.ok(&args)?;
    let mut units = model.settled(2, Duration::from_secs(90))?;
    let deploy_s = t.elapsed().as_secs_f64();
    let any = units.first().map(|u| u.name.clone()).context("no units")?;
    let out = model.ok(&["run", &any, "get-initial-admin-password"])?;
    let password = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis-password:"))
        .map(|p| p.trim().trim_matches('\'').trim_matches('"').to_string())
        .context("no redis-password in the action output")?;
    let out = model.ok(&["run", &any, "get-sentinel-password"])?;
    let sentinel_password = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("sentinel-password:"))
        .map(|p| p.trim().trim_matches('\'').trim_matches('"').to_string())
        .context("no sentinel-password in the action output")?;
    let down_for_s = format!("{down_for}");

    let mut results = Vec::new();
    for n in 0..runs {
        wait_sentinels(&units, &sentinel_password, Duration::from_secs(90))?;
        let primary = units
            .iter()
            .find(|u| u.role == "primary")
            .cloned()
            .context("no primary")?;
        // (`settled` guaranteed three units, so there are two survivors.)
        let survivors: Vec<UnitRow> = units
            .iter()
            .filter(|u| u.name != primary.name)
            .cloned()
            .collect();
        let t0 = Instant::now();
        model.ok(&["kill-pod", &primary.name, "--down-for", &down_for_s])?;
        let kill_cmd_ms = ms(t0.elapsed());
        let (mut promoted, mut promotion, mut written, mut reldata) =
            (None::<UnitRow>, None, None, None);
        let mut refused: Option<String> = None;
        while t0.elapsed() < RUN_TIMEOUT
            && (promotion.is_none() || written.is_none() || reldata.is_none())
        {
            let tick = Instant::now();
            for u in &survivors {
                if promotion.is_none() && role(&u.address, &password).as_deref() == Some("master") {
                    promotion = Some(t0.elapsed());
                    promoted = Some(u.clone());
                }
                if written.is_none() {
                    match write(&u.address, &password, n) {
                        Ok(()) => written = Some(t0.elapsed()),
                        Err(e) if promoted.as_ref().is_some_and(|p| p.name == u.name) => {
                            refused = Some(e)
                        }
                        Err(_) => {}
                    }
                }
            }
            if let (Some(p), None) = (&promoted, reldata) {
                let host = model.leader_host(&p.name).unwrap_or_default();
                let fqdn_prefix = format!("{}.", p.name.replace('/', "-"));
                if host.starts_with(&fqdn_prefix) || host == p.address {
                    reldata = Some(t0.elapsed());
                }
            }
            std::thread::sleep(POLL.saturating_sub(tick.elapsed()));
        }
        let run = Run {
            killed: primary.name.clone(),
            killed_was_leader: primary.leader,
            new_primary: promoted
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            kill_cmd_ms,
            promotion_ms: promotion.map(ms),
            relation_data_ms: reldata.map(ms),
            first_write_ms: written.map(ms),
            write_refused_after_promotion: refused,
        };
        eprintln!(
            "failover: run {}: killed {}{} -> {}: promotion {:?} ms, relation data {:?} ms, first write {:?} ms",
            n + 1,
            run.killed,
            if run.killed_was_leader { " (leader)" } else { "" },
            run.new_primary,
            run.promotion_ms.map(|x| x.round()),
            run.relation_data_ms.map(|x| x.round()),
            run.first_write_ms.map(|x| x.round())
        );
        if let Some(e) = &run.write_refused_after_promotion {
            eprintln!("failover:   the new primary refused writes at first: {e}");
        }
        results.push(run);
        // The killed pod comes back and rejoins as a replica before the next kill.
        model.ok(&["wait", "--timeout", "180"])?;
        units = model.settled(2, Duration::from_secs(120))?;
    }
    let col = |f: &dyn Fn(&Run) -> Option<f64>| {
        Summary::of(&results.iter().filter_map(f).collect::<Vec<_>>())
    };
    Ok(Setting {
        down_after_ms: down_after_ms.unwrap_or(5000),
        promotion_ms: col(&|r| r.promotion_ms),
        relation_data_ms: col(&|r| r.relation_data_ms),
        relation_data_leader_alive_ms: col(&|r| {
            r.relation_data_ms.filter(|_| !r.killed_was_leader)
        }),
        relation_data_leader_killed_ms: col(&|r| {
            r.relation_data_ms.filter(|_| r.killed_was_leader)
        }),
        first_write_ms: col(&|r| r.first_write_ms),
        runs: results,
        deploy_s,
    })
}
