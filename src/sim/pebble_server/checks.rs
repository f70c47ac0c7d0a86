//! Health checks (tcp, http, exec). As in Pebble 1.32, a check starts when the layer that
//! defines it is added (a `perform-check` change), turns `down` after `threshold` failures in
//! a row (a `recover-check` change takes over), and `up` again on the next success. Each
//! transition is recorded as a [`CheckEvent`] for the model's check-failed/recovered hooks,
//! and `on-check-failure: restart` restarts the service.

use super::changes::{log_line, Status};
use super::{services, Inner, Shared};
use crate::ops::pebble::{parse_go_duration, Check, CheckInfo};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pebble writes this default into the plan.
pub const DEFAULT_THRESHOLD: u32 = 3;

/// A check going down or coming back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckEvent {
    pub check: String,
    /// `true`: the check just failed (`-pebble-check-failed`); `false`: it recovered.
    pub failed: bool,
    pub time: SystemTime,
}

/// Runtime record of one check.
#[derive(Debug, Default, Clone)]
pub struct CheckRt {
    pub config: Check,
    /// `up`, `down` or `inactive`.
    pub status: String,
    pub successes: u64,
    pub failures: u64,
    pub generation: u64,
    pub change: Option<u64>,
    pub task: Option<u64>,
}

fn kind_of(c: &Check) -> &'static str {
    if c.http.is_some() {
        "HTTP"
    } else if c.tcp.is_some() {
        "TCP"
    } else {
        "exec"
    }
}

fn threshold(c: &Check) -> u32 {
    c.threshold.unwrap_or(DEFAULT_THRESHOLD).max(1)
}

/// Open a change with one `Doing` task for a check (`perform-check` or `recover-check`).
fn open_change(inner: &mut Inner, name: &str, kind: &str, verb: &str, cfg: &Check) -> (u64, u64) {
    let summary = format!("{verb} {} check {name:?}", kind_of(cfg));
    let change = inner.changes.new_change(kind, &summary, &[]);
    let task = inner.changes.add_task(change, kind, &summary);
    inner
        .changes
        .set_task(change, task, Status::Doing, None, vec![]);
    (change, task)
}

fn start_locked(shared: &Arc<Shared>, inner: &mut Inner, name: &str, cfg: Check) {
    let (change, task) = open_change(inner, name, "perform-check", "Perform", &cfg);
    let rt = inner.checks.entry(name.to_string()).or_default();
    if let (Some(c), Some(t)) = (rt.change, rt.task) {
        inner.changes.set_task(c, t, Status::Done, None, vec![]);
    }
    let rt = inner.checks.entry(name.to_string()).or_default();
    rt.generation += 1;
    rt.config = cfg.clone();
    rt.status = "up".into();
    rt.successes = 0;
    rt.failures = 0;
    rt.change = Some(change);
    rt.task = Some(task);
    let gen = rt.generation;
    let shared = shared.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        let period = cfg
            .period
            .as_deref()
            .and_then(parse_go_duration)
            .unwrap_or(DEFAULT_PERIOD);
        let period = period.max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(period).await;
            if !current(&shared, &name, gen) {
                return;
            }
            let result = run_once(&shared, &cfg).await;
            record(&shared, &name, gen, result);
        }
    });
}

fn stop_locked(inner: &mut Inner, name: &str) {
    let Some(rt) = inner.checks.get_mut(name) else {
        return;
    };
    rt.generation += 1;
    rt.status = "inactive".into();
    let (c, t) = (rt.change.take(), rt.task.take());
    if let (Some(c), Some(t)) = (c, t) {
        inner.changes.set_task(c, t, Status::Done, None, vec![]);
    }
}

fn current(shared: &Shared, name: &str, gen: u64) -> bool {
    shared
        .lock()
        .checks
        .get(name)
        .is_some_and(|c| c.generation == gen)
}

/// Bring running checks in line with the plan (after a layer was added): new or changed
/// checks (re)start unless `startup: disabled`, removed ones stop.
pub fn apply_plan(shared: &Arc<Shared>) {
    let mut inner = shared.lock();
    let plan_checks = inner.plan.checks.clone();
    let gone: Vec<String> = inner
        .checks
        .keys()
        .filter(|n| !plan_checks.contains_key(*n))
        .cloned()
        .collect();
    for n in gone {
        stop_locked(&mut inner, &n);
        inner.checks.remove(&n);
    }
    for (name, cfg) in plan_checks {
        let existing = inner.checks.get(&name).cloned();
        match existing {
            Some(rt) if rt.config == cfg => {}
            Some(rt) if rt.status == "inactive" => {
                if let Some(r) = inner.checks.get_mut(&name) {
                    r.config = cfg;
                }
            }
            _ if cfg.startup.as_deref() == Some("disabled") => {
                let rt = inner.checks.entry(name.clone()).or_default();
                rt.config = cfg;
                rt.status = "inactive".into();
            }
            _ => start_locked(shared, &mut inner, &name, cfg),
        }
    }
    drop(inner);
    shared.changes_updated();
}

/// `POST /v1/checks` start/stop; returns the names whose state changed.
pub fn action(shared: &Arc<Shared>, start: bool, names: &[String]) -> Result<Vec<String>, String> {
    let mut inner = shared.lock();
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !inner.plan.checks.contains_key(*n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "cannot find checks in plan: {}",
            missing.join(", ")
        ));
    }
    let mut changed = Vec::new();
    for n in names {
        let running = inner.checks.get(n).is_some_and(|c| c.status != "inactive");
        if start && !running {
            let cfg = inner.plan.checks[n].clone();
            start_locked(shared, &mut inner, n, cfg);
            changed.push(n.clone());
        } else if !start && running {
            stop_locked(&mut inner, n);
            changed.push(n.clone());
        }
    }
    drop(inner);
    shared.changes_updated();
    Ok(changed)
}

/// Record one check result and handle up/down transitions.
fn record(shared: &Arc<Shared>, name: &str, gen: u64, result: Result<(), String>) {
    let mut restart: Vec<String> = Vec::new();
    {
        let mut inner = shared.lock();
        let Some(rt) = inner.checks.get(name).cloned() else {
            return;
        };
        if rt.generation != gen {
            return;
        }
        let mut rt = rt;
        match result {
            Ok(()) => {
                rt.successes += 1;
                if rt.status == "down" {
                    rt.status = "up".into();
                    rt.failures = 0;
                    if let (Some(c), Some(t)) = (rt.change, rt.task) {
                        inner.changes.set_task(c, t, Status::Done, None, vec![]);
                    }
                    let (c, t) =
                        open_change(&mut inner, name, "perform-check", "Perform", &rt.config);
                    rt.change = Some(c);
                    rt.task = Some(t);
                    inner.check_events.push(CheckEvent {
                        check: name.into(),
                        failed: false,
                        time: SystemTime::now(),
                    });
                } else {
                    rt.failures = 0;
                }
            }
            Err(e) => {
                rt.failures += 1;
                if let (Some(c), Some(t)) = (rt.change, rt.task) {
                    inner
                        .changes
                        .set_task(c, t, Status::Doing, None, vec![log_line("ERROR", &e)]);
                }
                if rt.status == "up" && rt.failures >= u64::from(threshold(&rt.config)) {
                    rt.status = "down".into();
                    if let (Some(c), Some(t)) = (rt.change, rt.task) {
                        inner
                            .changes
                            .set_task(c, t, Status::Error, Some(e.clone()), vec![]);
                    }
                    let (c, t) =
                        open_change(&mut inner, name, "recover-check", "Recover", &rt.config);
                    rt.change = Some(c);
                    rt.task = Some(t);
                    inner.check_events.push(CheckEvent {
                        check: name.into(),
                        failed: true,
                        time: SystemTime::now(),
                    });
                    restart = inner
                        .plan
                        .services
                        .iter()
                        .filter(|(_, s)| {
                            s.on_check_failure.get(name).map(String::as_str) == Some("restart")
                        })
                        .map(|(n, _)| n.clone())
                        .collect();
                }
            }
        }
        inner.checks.insert(name.to_string(), rt);
    }
    shared.changes_updated();
    for svc in restart {
        let shared = shared.clone();
        tokio::spawn(async move { services::restart_quietly(&shared, &svc).await });
    }
}

/// Run a check once, within its timeout.
pub async fn run_once(shared: &Arc<Shared>, cfg: &Check) -> Result<(), String> {
    let timeout = cfg
        .timeout
        .as_deref()
        .and_then(parse_go_duration)
        .unwrap_or(DEFAULT_TIMEOUT);
    match tokio::time::timeout(timeout, run_inner(shared, cfg)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "check timed out after {}",
            super::notices::go_duration_string(timeout)
        )),
    }
}

async fn run_inner(shared: &Arc<Shared>, cfg: &Check) -> Result<(), String> {
    if let Some(tcp) = &cfg.tcp {
        let host = tcp.host.clone().unwrap_or_else(|| "localhost".into());
        return tokio::net::TcpStream::connect((host.as_str(), tcp.port))
            .await
            .map(|_| ())
            .map_err(|e| format!("dial tcp {host}:{}: {e}", tcp.port));
    }
    if let Some(http) = &cfg.http {
        return http_get(&http.url, &http.headers).await;
    }
    if let Some(exec) = &cfg.exec {
        // As Pebble runs it: in the container (the services' mount namespace, so paths such
        // as a CA file pushed into the container resolve) as the check's user and group, with
        // the service context's environment, user, group and working directory as defaults.
        let mut svc = crate::ops::pebble::Service {
            command: Some(exec.command.clone()),
            user: exec.user.clone(),
            group: exec.group.clone(),
            working_dir: exec.working_dir.clone(),
            ..Default::default()
        };
        if let Some(ctx) = &exec.service_context {
            if let Some(s) = shared.lock().plan.services.get(ctx) {
                svc.environment.extend(s.environment.clone());
                if svc.user.is_none() && svc.user_id.is_none() {
                    svc.user = s.user.clone();
                    svc.user_id = s.user_id;
                }
                if svc.group.is_none() && svc.group_id.is_none() {
                    svc.group = s.group.clone();
                    svc.group_id = s.group_id;
                }
                if svc.working_dir.is_none() {
                    svc.working_dir = s.working_dir.clone();
                }
            }
        }
        svc.environment.extend(exec.environment.clone());
        let mut cmd = services::build_command(shared, "check", &svc)?;
        cmd.kill_on_drop(true);
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("cannot run {:?}: {e}", exec.command))?;
        if out.status.success() {
            return Ok(());
        }
        let mut msg = format!("exit status {}", out.status.code().unwrap_or(-1));
        let tail = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if !tail.trim().is_empty() {
            msg.push_str(&format!("; {}", tail.trim()));
        }
        return Err(msg);
    }
    Err("check has no tcp, http or exec".into())
}

/// A plain-HTTP GET; success is a 2xx status.
async fn http_get(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url:?} (only http://)"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("Get {url:?}: dial tcp {addr}: {e}"))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get {url:?}: malformed HTTP response"))?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("non-20x status code {code}"))
    }
}

fn level_matches(check_level: Option<&str>, wanted: Option<&str>) -> bool {
    match wanted {
        None | Some("") => true,
        Some(w) => check_level == Some(w),
    }
}

/// `GET /v1/checks` entries.
pub fn infos(inner: &Inner, level: Option<&str>, names: &[String]) -> Vec<CheckInfo> {
    inner
        .plan
        .checks
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
        .filter(|(_, c)| level_matches(c.level.as_deref(), level))
        .map(|(n, c)| {
            let rt = inner.checks.get(n);
            CheckInfo {
                name: n.clone(),
                level: c.level.clone().filter(|l| !l.is_empty()),
                startup: c.startup.clone().unwrap_or_else(|| "enabled".into()),
                status: rt
                    .map(|r| r.status.clone())
                    .unwrap_or_else(|| "inactive".into()),
                successes: rt.map(|r| r.successes).unwrap_or(0),
                failures: rt.map(|r| r.failures).unwrap_or(0),
                threshold: threshold(c),
                change_id: rt.and_then(|r| r.change).map(|c| c.to_string()),
            }
        })
        .collect()
}

/// `/v1/health`: no matching check is down. `ready` also covers `alive` checks, and checks
/// without a level count for both.
pub fn healthy(inner: &Inner, level: Option<&str>, names: &[String]) -> bool {
    inner
        .plan
        .checks
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
        .filter(|(_, c)| match (level, c.level.as_deref()) {
            (None | Some(""), _) | (_, None | Some("")) => true,
            (Some("ready"), Some(l)) => l == "ready" || l == "alive",
            (Some(w), Some(l)) => w == l,
        })
        .all(|(n, _)| inner.checks.get(n).is_none_or(|r| r.status != "down"))
}

/// `POST /v1/checks/refresh`: run a check now and record the result.
pub async fn refresh(
    shared: &Arc<Shared>,
    name: &str,
) -> Result<(CheckInfo, Option<String>), String> {
    let (cfg, gen) = {
        let inner = shared.lock();
        let cfg = inner
            .plan
            .checks
            .get(name)
            .cloned()
            .ok_or_else(|| format!("cannot find check with name {name:?}"))?;
        (cfg, inner.checks.get(name).map(|c| c.generation))
    };
    let result = run_once(shared, &cfg).await;
    let err = result.as_ref().err().cloned();
    if let Some(g) = gen {
        record(shared, name, g, result);
    }
    let inner = shared.lock();
    let info = infos(&inner, None, &[name.to_string()])
        .into_iter()
        .next()
        .ok_or_else(|| format!("cannot find check with name {name:?}"))?;
    Ok((info, err))
}
