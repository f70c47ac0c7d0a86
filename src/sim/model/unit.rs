//! One unit at run time: its hook queue (one hook at a time, a failed hook blocks the queue
//! and is retried, like Juju's uniter), its Pebble servers (the pod's containers) and paths.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::backends::Pebble;
use super::hook::{ActionSpec, HookSpec, UnitLog};
use super::layout::UnitDir;
use super::proto::ActionOutcome;

/// One item of a unit's queue. (Hooks dominate the queue; boxing them would only add an
/// allocation per hook.)
#[allow(clippy::large_enum_variant)]
pub enum Step {
    Hook(HookSpec),
    /// An action; the outcome goes back to the waiting `run` request.
    Action(ActionSpec, Sender<ActionOutcome>),
    /// The unit's last step after `remove`: tear the pod down and forget the unit.
    Finalize,
}

impl Step {
    /// What the step is called in logs and progress lines.
    pub fn label(&self) -> String {
        match self {
            Step::Hook(h) => h.name.clone(),
            Step::Action(a, _) => format!("action {}", a.name),
            Step::Finalize => "(remove pod)".into(),
        }
    }

    fn same_hook(&self, h: &HookSpec) -> bool {
        matches!(self, Step::Hook(x) if x == h)
    }
}

/// The queue and the agent's view of itself.
#[derive(Default)]
pub struct Queue {
    pub items: VecDeque<Step>,
    /// Set while the front item is being executed.
    pub running: bool,
    /// `Some(hook)` while the front hook keeps failing.
    pub error: Option<String>,
    /// No step starts while the pod is down (kill-pod).
    pub paused: bool,
    /// Bumped by kill-pod: a hook started under an older generation died with its pod.
    pub generation: u64,
    /// `start` has run once: update-status may be queued.
    pub started: bool,
    /// The unit is being removed.
    pub dying: bool,
    /// The worker must exit.
    pub finished: bool,
    /// Process id of the dispatch in flight.
    pub pid: Option<u32>,
}

/// A unit at run time.
pub struct UnitRt {
    pub name: String,
    pub app: String,
    pub address: String,
    pub dir: UnitDir,
    pub log: UnitLog,
    pub queue: Mutex<Queue>,
    pub wake: Condvar,
    /// Container name → its Pebble server (absent while the pod is down).
    pub pebbles: Mutex<BTreeMap<String, Pebble>>,
    /// Container name → the notice cursor of its current Pebble server.
    pub notice_cursor: Mutex<BTreeMap<String, u64>>,
    /// Container name → how many check events of its current Pebble server became hooks.
    pub check_cursor: Mutex<BTreeMap<String, usize>>,
}

impl UnitRt {
    pub fn new(name: &str, address: &str, dir: UnitDir, log: UnitLog) -> UnitRt {
        UnitRt {
            name: name.to_string(),
            app: name.split('/').next().unwrap_or(name).to_string(),
            address: address.to_string(),
            dir,
            log,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            pebbles: Mutex::new(BTreeMap::new()),
            notice_cursor: Mutex::new(BTreeMap::new()),
            check_cursor: Mutex::new(BTreeMap::new()),
        }
    }

    /// Lock the queue (a poisoned lock still holds consistent data: every critical section
    /// only pushes/pops whole items).
    pub fn q(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue a hook unless an identical one is already waiting (not running): Juju
    /// coalesces repeated changes the same way.
    pub fn enqueue(&self, hook: HookSpec) {
        let mut q = self.q();
        if q.finished {
            return;
        }
        let skip = usize::from(q.running);
        if q.items.iter().skip(skip).any(|s| s.same_hook(&hook)) {
            return;
        }
        q.items.push_back(Step::Hook(hook));
        drop(q);
        self.wake.notify_all();
    }

    /// Queue a step unconditionally.
    pub fn push(&self, step: Step) {
        self.q().items.push_back(step);
        self.wake.notify_all();
    }

    /// Whether nothing is queued or running and the unit is healthy.
    pub fn idle(&self) -> bool {
        let q = self.q();
        q.items.is_empty() && !q.running && q.error.is_none() && !q.paused
    }

    /// Sleep up to `d`, waking early when the queue changes generation or finishes.
    pub fn sleep_interruptibly(&self, d: Duration, generation: u64) {
        let deadline = std::time::Instant::now() + d;
        let mut q = self.q();
        loop {
            let now = std::time::Instant::now();
            if now >= deadline || q.generation != generation || q.finished {
                return;
            }
            q = match self.wake.wait_timeout(q, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}
