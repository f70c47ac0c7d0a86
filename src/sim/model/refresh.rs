//! Pod deletion with a grace period and `juju refresh` as Juju on Kubernetes does it for a
//! sidecar charm: a StatefulSet rolling update.
//!
//! Kubernetes deletes a pod gracefully: the containers get SIGTERM and have
//! `terminationGracePeriodSeconds` before SIGKILL. Juju's agent answers the SIGTERM by
//! running the `stop` hook while the workload containers (and their services) are still up
//! (contract §1.4: "On k8s, `stop` also happens on pod churn"). So a charm can hand work over
//! in `stop`, but only within the grace period, after which the pod dies whatever the hook is
//! doing.
//!
//! A refresh replaces the pod template; the StatefulSet controller then replaces the pods
//! one at a time, highest ordinal first, and only moves on once the new pod is Ready. A new
//! pod runs `upgrade-charm` → `config-changed` → `start` → each container's pebble-ready with
//! the new charm (the pod-replacement sequence of [`Daemon::kill_pod`]). "Ready" here: the
//! unit is back, its queue is empty and no hook is in error, for [`SETTLE`] in a row. A pod
//! that never gets there halts the rollout, as a StatefulSet's does.
//!
//! This module is a child of `daemon` so it can use the daemon's private state; it adds the
//! operations only.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::super::charm::CharmInfo;
use super::super::hook::{log_line, HookSpec};
use super::super::unit::{Step, UnitRt};
use super::{lock, resolve_dispatch, unit_index, Daemon, OpResult};

/// How long a replaced pod must stay idle to count as Ready before the next one goes.
pub const SETTLE: Duration = Duration::from_secs(2);
/// Longest wait for a replaced pod to become Ready before the rollout halts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Between the old pod's death and the new pod's containers starting (scheduling, image
/// already on the node).
pub const REPLACE_DELAY: Duration = Duration::from_secs(1);

/// How the `stop` hook of a gracefully deleted pod ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The hook ran and committed.
    Ran,
    /// The hook failed (it would be retried; the pod dies anyway).
    Failed,
    /// The grace period ran out first.
    GraceExpired,
}

impl Daemon {
    /// Run `stop` on `rt` as the pod's termination does: ahead of anything queued (after the
    /// hook in flight, which the agent lets finish), with the services still up, for at most
    /// `grace`. The caller kills the pod afterwards whatever happened.
    pub(super) fn run_stop_hook(&self, rt: &UnitRt, grace: Duration) -> StopOutcome {
        let stop = HookSpec::plain("stop");
        {
            let mut q = rt.q();
            let at = usize::from(q.running).min(q.items.len());
            q.items.insert(at, Step::Hook(stop.clone()));
        }
        rt.wake.notify_all();
        log_line(
            &rt.log,
            "INFO",
            "juju.worker.uniter",
            &format!(
                "pod terminating: running \"stop\" (grace period {}s)",
                grace.as_secs()
            ),
        );
        let deadline = Instant::now() + grace;
        loop {
            {
                let q = rt.q();
                let pending = q
                    .items
                    .iter()
                    .any(|s| matches!(s, Step::Hook(h) if *h == stop));
                if !pending {
                    return StopOutcome::Ran;
                }
                let front_is_stop = matches!(q.items.front(), Some(Step::Hook(h)) if *h == stop);
                if front_is_stop && q.error.as_deref() == Some("stop") {
                    return StopOutcome::Failed;
                }
                if q.finished {
                    return StopOutcome::Ran;
                }
            }
            if Instant::now() >= deadline {
                return StopOutcome::GraceExpired;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill-pod --graceful`: `stop` within the grace period, then the pod is replaced.
    pub(super) fn delete_pod(
        self: &Arc<Self>,
        unit: &str,
        grace: Duration,
        down_for: Duration,
        progress: &dyn Fn(String),
    ) -> OpResult<Value> {
        let rt = self.unit_rt(unit)?;
        if rt.q().dying {
            return Err(format!("unit \"{unit}\" is being removed"));
        }
        progress(format!(
            "deleting the pod of {unit} (grace period {}s)",
            grace.as_secs()
        ));
        let outcome = self.run_stop_hook(&rt, grace);
        progress(format!("stop hook of {unit}: {outcome:?}"));
        self.kill_pod(unit, down_for, progress)
    }

    /// `refresh`: take the new charm (or the same one again) and roll the application's
    /// pods, highest ordinal first, in the background (the model is busy until it is done).
    pub(super) fn refresh(
        self: &Arc<Self>,
        app: &str,
        charm_dir: Option<&str>,
        dispatch: Option<&str>,
        grace: Duration,
        progress: &dyn Fn(String),
    ) -> OpResult<Value> {
        if !lock(&self.inner).apps.contains_key(app) {
            return Err(format!("application \"{app}\" not found"));
        }
        if let Some(dir) = charm_dir {
            self.replace_charm(app, Path::new(dir), dispatch)?;
        } else if dispatch.is_some() {
            return Err("--dispatch needs --path".into());
        }
        let mut pods: Vec<String> = {
            let w = self.world();
            w.units(app)
                .into_iter()
                .filter(|u| !w.unit_dying(u))
                .collect()
        };
        pods.sort_by_key(|u| std::cmp::Reverse(unit_index(u)));
        progress(format!(
            "rolling {} pod(s) of {app}: {}",
            pods.len(),
            pods.join(", ")
        ));
        self.busy.fetch_add(1, Ordering::SeqCst);
        let d = self.clone();
        let order = pods.clone();
        std::thread::spawn(move || {
            for unit in &order {
                if d.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = d.roll_one(unit, grace) {
                    d.log(&format!("refresh halted at {unit}: {e}"));
                    break;
                }
            }
            d.log("refresh finished");
            d.busy.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(json!({"application": app, "order": pods}))
    }

    /// Swap the application's charm (and dispatch) for the pods created from now on. The
    /// charm must keep its name; the model's relations and endpoints stay as deployed.
    fn replace_charm(&self, app: &str, dir: &Path, dispatch: Option<&str>) -> OpResult<()> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| format!("charm directory {}: {e}", dir.display()))?;
        let charm = CharmInfo::load(&dir).map_err(|e| e.to_string())?;
        let mut inner = lock(&self.inner);
        let rt = inner
            .apps
            .get_mut(app)
            .ok_or_else(|| format!("application \"{app}\" not found"))?;
        if charm.name != rt.charm.name {
            return Err(format!(
                "cannot refresh \"{app}\" ({}) to a different charm ({})",
                rt.charm.name, charm.name
            ));
        }
        let dispatch = match dispatch {
            Some(_) => resolve_dispatch(&charm, dispatch)?,
            None => rt.dispatch.clone(),
        };
        rt.charm = charm;
        rt.dispatch = dispatch;
        Ok(())
    }

    /// Replace one pod and wait until its successor is Ready.
    fn roll_one(self: &Arc<Self>, unit: &str, grace: Duration) -> OpResult<()> {
        let rt = self.unit_rt(unit)?;
        if rt.q().dying {
            return Ok(());
        }
        self.log(&format!("refresh: replacing the pod of {unit}"));
        let outcome = self.run_stop_hook(&rt, grace);
        self.log(&format!("refresh: stop hook of {unit}: {outcome:?}"));
        self.kill_pod(unit, REPLACE_DELAY, &|_| {})?;
        self.wait_ready(&rt)?;
        self.log(&format!("refresh: {unit} is back"));
        Ok(())
    }

    /// Wait until a replaced pod is back and its unit idle for [`SETTLE`].
    fn wait_ready(&self, rt: &UnitRt) -> OpResult<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut idle_since: Option<Instant> = None;
        while !self.shutdown.load(Ordering::SeqCst) {
            if rt.q().finished {
                return Err(format!("{} was removed", rt.name));
            }
            if rt.idle() {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SETTLE {
                    return Ok(());
                }
            } else {
                idle_since = None;
            }
            if Instant::now() >= deadline {
                let q = rt.q();
                return Err(format!(
                    "{} not ready after {}s (error in {:?}, {} queued)",
                    rt.name,
                    READY_TIMEOUT.as_secs(),
                    q.error,
                    q.items.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the model is shutting down".into())
    }
}
