//! Changes and tasks, kept in memory like Pebble's state engine keeps them: ids are decimal
//! strings counted from 1, a change's status is derived from its tasks, and a failed change
//! carries Pebble's `cannot perform the following tasks:` error.

use super::time::rfc3339;
use crate::ops::pebble::{Change, Task, TaskProgress};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// How many finished changes are remembered (Pebble prunes old ones too).
const KEEP_READY: usize = 500;

/// Pebble's task/change statuses (the subset this daemon produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Do,
    Doing,
    Done,
    Error,
    Hold,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Do => "Do",
            Status::Doing => "Doing",
            Status::Done => "Done",
            Status::Error => "Error",
            Status::Hold => "Hold",
        }
    }

    pub fn ready(&self) -> bool {
        matches!(self, Status::Done | Status::Error | Status::Hold)
    }
}

/// One task of a change.
#[derive(Debug, Clone)]
pub struct TaskRec {
    pub id: u64,
    pub kind: String,
    pub summary: String,
    pub status: Status,
    pub log: Vec<String>,
    pub err: Option<String>,
    pub spawn: SystemTime,
    pub ready: Option<SystemTime>,
    pub data: Option<serde_json::Value>,
}

/// One change.
#[derive(Debug, Clone)]
pub struct ChangeRec {
    pub id: u64,
    pub kind: String,
    pub summary: String,
    pub spawn: SystemTime,
    pub ready: Option<SystemTime>,
    pub tasks: Vec<TaskRec>,
    pub data: Option<serde_json::Value>,
    /// Services this change is about (for `GET /v1/changes?for=`).
    pub services: Vec<String>,
    /// An abort was requested: tasks not yet started are put on hold.
    pub aborted: bool,
}

/// A task log line as Pebble writes them: `<time> <LEVEL> <message>`.
pub fn log_line(level: &str, msg: &str) -> String {
    format!("{} {level} {msg}", rfc3339(SystemTime::now()))
}

impl ChangeRec {
    pub fn status(&self) -> Status {
        if self.tasks.is_empty() {
            return Status::Done;
        }
        let s: Vec<Status> = self.tasks.iter().map(|t| t.status).collect();
        if s.iter().all(|x| *x == Status::Do) {
            Status::Do
        } else if s.iter().any(|x| matches!(x, Status::Do | Status::Doing)) {
            Status::Doing
        } else if s.contains(&Status::Error) {
            Status::Error
        } else if s.contains(&Status::Hold) {
            Status::Hold
        } else {
            Status::Done
        }
    }

    /// Pebble's change error: one line per failed task.
    pub fn err(&self) -> Option<String> {
        let failed: Vec<String> = self
            .tasks
            .iter()
            .filter(|t| t.status == Status::Error)
            .map(|t| {
                format!(
                    "- {} ({})",
                    t.summary,
                    t.err.as_deref().unwrap_or("task failed")
                )
            })
            .collect();
        if !failed.is_empty() {
            return Some(format!(
                "cannot perform the following tasks:\n{}",
                failed.join("\n")
            ));
        }
        if self.aborted
            && self.status().ready()
            && self.tasks.iter().any(|t| t.status == Status::Hold)
        {
            return Some("change was aborted".into());
        }
        None
    }

    pub fn to_wire(&self) -> Change {
        let status = self.status();
        Change {
            id: self.id.to_string(),
            kind: self.kind.clone(),
            summary: self.summary.clone(),
            status: status.as_str().into(),
            ready: status.ready(),
            err: self.err(),
            spawn_time: rfc3339(self.spawn),
            ready_time: self.ready.filter(|_| status.ready()).map(rfc3339),
            tasks: self
                .tasks
                .iter()
                .map(|t| Task {
                    id: t.id.to_string(),
                    kind: t.kind.clone(),
                    summary: t.summary.clone(),
                    status: t.status.as_str().into(),
                    log: t.log.clone(),
                    progress: TaskProgress {
                        label: String::new(),
                        done: u64::from(t.status.ready()),
                        total: 1,
                    },
                    spawn_time: rfc3339(t.spawn),
                    ready_time: t.ready.map(rfc3339),
                    data: t.data.clone(),
                })
                .collect(),
            data: self.data.clone(),
        }
    }
}

/// All changes of one daemon.
#[derive(Debug, Default)]
pub struct ChangeStore {
    next_change: u64,
    next_task: u64,
    changes: BTreeMap<u64, ChangeRec>,
}

impl ChangeStore {
    /// A new change with no tasks (a change without tasks is Done).
    pub fn new_change(&mut self, kind: &str, summary: &str, services: &[String]) -> u64 {
        self.next_change += 1;
        let id = self.next_change;
        let now = SystemTime::now();
        self.changes.insert(
            id,
            ChangeRec {
                id,
                kind: kind.into(),
                summary: summary.into(),
                spawn: now,
                ready: None,
                tasks: Vec::new(),
                data: None,
                services: services.to_vec(),
                aborted: false,
            },
        );
        self.prune();
        id
    }

    /// Add a task in status `Do`; returns its id (0 if the change is gone).
    pub fn add_task(&mut self, change: u64, kind: &str, summary: &str) -> u64 {
        self.next_task += 1;
        let id = self.next_task;
        if let Some(c) = self.changes.get_mut(&change) {
            c.tasks.push(TaskRec {
                id,
                kind: kind.into(),
                summary: summary.into(),
                status: Status::Do,
                log: Vec::new(),
                err: None,
                spawn: SystemTime::now(),
                ready: None,
                data: None,
            });
            c.ready = None;
            return id;
        }
        0
    }

    pub fn get(&self, id: u64) -> Option<&ChangeRec> {
        self.changes.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut ChangeRec> {
        self.changes.get_mut(&id)
    }

    /// Update a task; stamps ready times on the task and, when it becomes ready, the change.
    pub fn set_task(
        &mut self,
        change: u64,
        task: u64,
        status: Status,
        err: Option<String>,
        log: Vec<String>,
    ) {
        let Some(c) = self.changes.get_mut(&change) else {
            return;
        };
        if let Some(t) = c.tasks.iter_mut().find(|t| t.id == task) {
            t.status = status;
            if err.is_some() {
                t.err = err;
            }
            t.log.extend(log);
            if status.ready() && t.ready.is_none() {
                t.ready = Some(SystemTime::now());
            }
        }
        Self::stamp(c);
    }

    /// Set the change's ready time once every task is ready.
    pub fn stamp(c: &mut ChangeRec) {
        if c.status().ready() {
            if c.ready.is_none() {
                c.ready = Some(SystemTime::now());
            }
        } else {
            c.ready = None;
        }
    }

    /// `GET /v1/changes`: `select` is in-progress (default), ready or all.
    pub fn list(&self, select: &str, service: Option<&str>) -> Vec<Change> {
        self.changes
            .values()
            .filter(|c| match select {
                "all" => true,
                "ready" => c.status().ready(),
                _ => !c.status().ready(),
            })
            .filter(|c| service.is_none_or(|s| c.services.iter().any(|x| x == s)))
            .map(ChangeRec::to_wire)
            .collect()
    }

    fn prune(&mut self) {
        let ready: Vec<u64> = self
            .changes
            .values()
            .filter(|c| c.status().ready())
            .map(|c| c.id)
            .collect();
        if ready.len() > KEEP_READY {
            for id in &ready[..ready.len() - KEEP_READY] {
                self.changes.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_task_fails_the_change_with_pebbles_message() {
        let mut s = ChangeStore::default();
        let c = s.new_change("start", "Start service \"x\"", &["x".into()]);
        assert_eq!(c, 1);
        let t = s.add_task(c, "start", "Start service \"x\"");
        assert_eq!(s.get(c).unwrap().status(), Status::Do);
        s.set_task(c, t, Status::Error, Some("boom".into()), vec![]);
        let w = s.get(c).unwrap().to_wire();
        assert!(w.ready);
        assert_eq!(w.status, "Error");
        assert_eq!(
            w.err.as_deref(),
            Some("cannot perform the following tasks:\n- Start service \"x\" (boom)")
        );
        assert!(w.ready_time.is_some());
        assert_eq!(s.list("in-progress", None).len(), 0);
        assert_eq!(s.list("all", Some("x")).len(), 1);
        assert_eq!(s.list("all", Some("y")).len(), 0);
    }
}
