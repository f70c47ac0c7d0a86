//! One hook's view of the [`World`]: the hook tools with Juju's access rules, buffering what
//! Juju buffers until [`Session::commit`].

use super::{
    app_of, bare_secret_id, juju_now, new_secret_id, Consumer, Grant, HookInfo, RelationState,
    SecretState, World, WorldError,
};
use crate::ops::hookcmds::{
    AppStatus, BindAddress, GoalState, GoalStatus, HookError, HookResult, HookTools,
    InterfaceAddress, LogLevel, NetworkInfo, Port, SecretInfo, SecretOptions, SecretQuery,
    StatusValue, StorageInfo,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Juju's per-key and per-value limits for `state-set`, and the default total.
const STATE_KEY_MAX: usize = 256;
const STATE_VALUE_MAX: usize = 65_536;
const STATE_TOTAL_MAX: usize = 2_097_152;

/// Default `action-fail` message.
pub(crate) const DEFAULT_ACTION_FAIL: &str =
    "action failed without reason given, check action for errors";

/// A buffered secret change, replayed on the world's secrets at commit (and on a copy of
/// them for reads within the hook, so a hook sees its own pending secrets).
#[derive(Debug, Clone)]
enum SecretOp {
    Add(Box<SecretState>),
    Set {
        id: String,
        content: Option<BTreeMap<String, String>>,
        opts: SecretOptions,
    },
    Remove {
        id: String,
        revision: Option<u64>,
    },
    Grant {
        id: String,
        grant: Grant,
    },
    Revoke {
        id: String,
        relation_id: Option<u32>,
        grantee: Option<String>,
    },
    Track {
        id: String,
        consumer: String,
        revision: Option<u64>,
        label: Option<String>,
    },
}

fn apply_secret_op(
    secrets: &mut BTreeMap<String, SecretState>,
    op: &SecretOp,
) -> Result<Option<String>, String> {
    let missing = |id: &str| format!("secret {id:?} not found");
    match op {
        SecretOp::Add(s) => {
            secrets.insert(s.id.clone(), (**s).clone());
        }
        SecretOp::Set { id, content, opts } => {
            let s = secrets.get_mut(id).ok_or_else(|| missing(id))?;
            if let Some(l) = &opts.label {
                s.label = Some(l.clone());
            }
            if let Some(d) = &opts.description {
                s.description = Some(d.clone());
            }
            if let Some(e) = &opts.expire {
                s.expire = Some(e.clone());
            }
            if let Some(r) = &opts.rotate {
                s.rotate = Some(r.clone());
            }
            if let Some(c) = content {
                s.latest += 1;
                s.revisions.insert(s.latest, c.clone());
                return Ok(Some(id.clone()));
            }
        }
        SecretOp::Remove { id, revision } => match revision {
            None => {
                secrets.remove(id).ok_or_else(|| missing(id))?;
            }
            Some(r) => {
                let s = secrets.get_mut(id).ok_or_else(|| missing(id))?;
                s.revisions.remove(r);
                if s.revisions.is_empty() {
                    secrets.remove(id);
                }
            }
        },
        SecretOp::Grant { id, grant } => {
            let s = secrets.get_mut(id).ok_or_else(|| missing(id))?;
            if !s.grants.contains(grant) {
                s.grants.push(grant.clone());
            }
        }
        SecretOp::Revoke {
            id,
            relation_id,
            grantee,
        } => {
            let s = secrets.get_mut(id).ok_or_else(|| missing(id))?;
            s.grants.retain(|g| {
                let rel_match = relation_id.is_none_or(|r| r == g.relation_id);
                let who_match = grantee.as_deref().is_none_or(|w| g.grantee == w);
                !(rel_match && who_match)
            });
        }
        SecretOp::Track {
            id,
            consumer,
            revision,
            label,
        } => {
            // The secret may have gone meanwhile; tracking it is then moot.
            if let Some(s) = secrets.get_mut(id) {
                let c = s.consumers.entry(consumer.clone()).or_insert(Consumer {
                    revision: s.latest,
                    label: None,
                });
                if let Some(r) = revision {
                    c.revision = *r;
                }
                if let Some(l) = label {
                    c.label = Some(l.clone());
                }
            }
        }
    }
    Ok(None)
}

/// Everything a session buffers or records.
#[derive(Default)]
struct Pending {
    calls: Vec<String>,
    logs: Vec<(LogLevel, String)>,
    action_results: BTreeMap<String, String>,
    action_failure: Option<String>,
    action_logs: Vec<String>,
    /// (relation id, owner) → key → value ("" deletes)
    relation: BTreeMap<(u32, String), BTreeMap<String, String>>,
    /// key → Some(value) | None (delete)
    state: BTreeMap<String, Option<String>>,
    /// (open?, port), in call order
    ports: Vec<(bool, Port)>,
    secrets: Vec<SecretOp>,
    changed_relations: Vec<(u32, String)>,
    changed_secrets: Vec<String>,
}

/// One unit's hook: implements [`HookTools`] over a shared [`World`].
///
/// Reads see committed world state plus this session's own pending writes where Juju shows
/// them; writes Juju buffers wait for [`Session::commit`].
pub struct Session {
    world: Arc<Mutex<World>>,
    unit: String,
    app: String,
    hook: HookInfo,
    pending: Mutex<Pending>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(tool: &str, message: impl Into<String>) -> HookError {
    HookError::NotFound {
        tool: tool.into(),
        message: message.into(),
    }
}
fn denied(tool: &str) -> HookError {
    HookError::PermissionDenied {
        tool: tool.into(),
        message: "permission denied".into(),
    }
}
fn not_leader(tool: &str, message: &str) -> HookError {
    HookError::NotLeader {
        tool: tool.into(),
        message: message.into(),
    }
}
fn usage(tool: &str, message: impl Into<String>) -> HookError {
    HookError::Usage {
        tool: tool.into(),
        message: message.into(),
    }
}
fn failed(tool: &str, message: impl Into<String>) -> HookError {
    HookError::Failed {
        tool: tool.into(),
        code: 1,
        message: message.into(),
    }
}
fn no_action(tool: &str) -> HookError {
    failed(tool, "not running an action")
}

/// The message Juju gives for a relation id the unit does not know.
pub(crate) fn relation_not_found(tool: &str, id: &str) -> HookError {
    HookError::RelationNotFound {
        tool: tool.into(),
        message: format!("invalid value {id:?} for option -r: relation not found"),
    }
}

fn overlay(bag: &mut BTreeMap<String, String>, changes: &BTreeMap<String, String>) {
    for (k, v) in changes {
        if v.is_empty() {
            bag.remove(k);
        } else {
            bag.insert(k.clone(), v.clone());
        }
    }
}

/// action-set keys: dotted segments of lowercase alphanumerics and hyphens, each starting
/// and ending alphanumeric; a few names are reserved for Juju's own results.
pub(crate) fn validate_action_key(key: &str) -> Result<(), String> {
    for seg in key.split('.') {
        let ok = !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !seg.starts_with('-')
            && !seg.ends_with('-');
        if !ok {
            return Err(format!(
                "key {key:?} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"
            ));
        }
        if matches!(
            seg,
            "stdout" | "stdout-encoding" | "stderr" | "stderr-encoding"
        ) {
            return Err(format!("cannot set reserved action key {key:?}"));
        }
    }
    Ok(())
}

/// Secret content keys: `^([a-z](?:-?[a-z0-9]){2,})$`.
pub(crate) fn valid_secret_key(key: &str) -> bool {
    let b = key.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_lowercase() || b[b.len() - 1] == b'-' {
        return false;
    }
    let mut prev_dash = false;
    let mut alnum_after_first = 0;
    for &c in &b[1..] {
        if c == b'-' {
            if prev_dash {
                return false;
            }
            prev_dash = true;
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() {
            prev_dash = false;
            alnum_after_first += 1;
        } else {
            return false;
        }
    }
    alnum_after_first >= 2
}

const ROTATE_POLICIES: &[&str] = &[
    "never",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "yearly",
];

impl Session {
    pub(super) fn new(world: Arc<Mutex<World>>, unit: &str, hook: HookInfo) -> Session {
        Session {
            world,
            unit: unit.to_string(),
            app: app_of(unit).to_string(),
            hook,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// The unit this hook runs for.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn hook(&self) -> &HookInfo {
        &self.hook
    }

    /// The shared world (e.g. for the model to inspect after a hook).
    pub fn world(&self) -> &Arc<Mutex<World>> {
        &self.world
    }

    /// Note a tool invocation that is not a [`HookTools`] method (e.g. `credential-get`).
    pub fn record_call(&self, tool: &str) {
        lock(&self.pending).calls.push(tool.to_string());
    }

    fn both(&self) -> (MutexGuard<'_, World>, MutexGuard<'_, Pending>) {
        // Lock order: world, then pending. Never the other way round.
        let w = lock(&self.world);
        let p = lock(&self.pending);
        (w, p)
    }

    fn rel<'w>(&self, w: &'w World, tool: &str, id: u32) -> HookResult<&'w RelationState> {
        w.relations
            .get(&id)
            .filter(|r| r.ends_for(&self.app).is_some())
            .ok_or_else(|| relation_not_found(tool, &id.to_string()))
    }

    /// Does this unit's application take part in relation `id`? (No call is recorded.)
    pub fn knows_relation(&self, id: u32) -> bool {
        let w = lock(&self.world);
        self.rel(&w, "", id).is_ok()
    }

    /// This application's endpoint name in relation `id`. (No call is recorded.)
    pub fn relation_endpoint(&self, id: u32) -> Option<String> {
        let w = lock(&self.world);
        let r = self.rel(&w, "", id).ok()?;
        r.ends_for(&self.app).map(|(m, _)| m.endpoint.clone())
    }

    /// The other application in relation `id` (this one for a peer relation).
    pub fn relation_remote_app(&self, id: u32) -> Option<String> {
        let w = lock(&self.world);
        let r = self.rel(&w, "", id).ok()?;
        r.ends_for(&self.app).map(|(_, o)| o.app.clone())
    }

    /// Is `name` a deployed application's name? (For relation-get's argument checks.)
    pub fn is_app_name(&self, name: &str) -> bool {
        lock(&self.world).apps.contains_key(name)
    }

    /// The names of every relation endpoint and of the charm's storage (for tools' checks).
    pub fn meta(&self) -> super::CharmMeta {
        lock(&self.world)
            .meta(&self.app)
            .cloned()
            .unwrap_or_default()
    }

    /// `leader-get` (deprecated leader settings).
    pub fn leader_get(&self) -> BTreeMap<String, String> {
        self.record_call("leader-get");
        lock(&self.world).leader_settings(&self.app)
    }

    /// `leader-set`: leader only, written immediately ("" deletes).
    pub fn leader_set(&self, data: &BTreeMap<String, String>) -> HookResult<()> {
        self.record_call("leader-set");
        let mut w = lock(&self.world);
        if !w.is_leader(&self.unit) {
            return Err(not_leader(
                "leader-set",
                "cannot write leadership settings: not the leader",
            ));
        }
        if let Some(a) = w.apps.get_mut(&self.app) {
            overlay(&mut a.leader_settings, data);
        }
        Ok(())
    }

    /// Apply everything buffered, atomically: either all of it lands or none does.
    /// Call when the hook process exited 0.
    pub fn commit(&self) -> Result<(), WorldError> {
        let (mut w, mut p) = self.both();
        let mut next = w.clone();
        let mut changed = Vec::new();
        for ((id, owner), changes) in &p.relation {
            // A relation removed while the hook ran takes its pending data with it.
            if let Some(r) = next.relations.get_mut(id) {
                let bag = r.data.entry(owner.clone()).or_default();
                let before = bag.clone();
                overlay(bag, changes);
                if *bag != before {
                    changed.push((*id, owner.clone()));
                }
            }
        }
        if let Some(u) = next.units.get_mut(&self.unit) {
            for (k, v) in &p.state {
                match v {
                    Some(v) => u.state.insert(k.clone(), v.clone()),
                    None => u.state.remove(k),
                };
            }
            let total: usize = u.state.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > STATE_TOTAL_MAX {
                return Err(WorldError::Commit(format!(
                    "unit state size {total} exceeds the limit of {STATE_TOTAL_MAX} bytes"
                )));
            }
            for (open, port) in &p.ports {
                if *open {
                    u.ports.insert(port.clone());
                } else {
                    u.ports.remove(port);
                }
            }
        }
        let mut changed_secrets = Vec::new();
        for op in &p.secrets {
            if let Some(id) = apply_secret_op(&mut next.secrets, op).map_err(WorldError::Commit)? {
                changed_secrets.push(id);
            }
        }
        *w = next;
        p.relation.clear();
        p.state.clear();
        p.ports.clear();
        p.secrets.clear();
        p.changed_relations = changed;
        p.changed_secrets = changed_secrets;
        Ok(())
    }

    /// Drop everything buffered (the hook failed).
    pub fn discard(&self) {
        let mut p = lock(&self.pending);
        p.relation.clear();
        p.state.clear();
        p.ports.clear();
        p.secrets.clear();
    }

    /// Tool names in call order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.pending).calls.clone()
    }

    pub fn action_results(&self) -> BTreeMap<String, String> {
        lock(&self.pending).action_results.clone()
    }

    pub fn action_failure(&self) -> Option<String> {
        lock(&self.pending).action_failure.clone()
    }

    pub fn action_logs(&self) -> Vec<String> {
        lock(&self.pending).action_logs.clone()
    }

    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        lock(&self.pending).logs.clone()
    }

    /// After [`Session::commit`]: the bags whose content changed, as (relation id, owner).
    /// The model fires `<ep>-relation-changed` for them on the *other* units.
    pub fn changed_relations(&self) -> Vec<(u32, String)> {
        lock(&self.pending).changed_relations.clone()
    }

    /// After [`Session::commit`]: secrets (bare ids) that got a new revision; their
    /// consumers get `secret-changed`.
    pub fn changed_secrets(&self) -> Vec<String> {
        lock(&self.pending).changed_secrets.clone()
    }

    /// Are there buffered changes that a commit would apply?
    pub fn has_pending(&self) -> bool {
        let p = lock(&self.pending);
        !(p.relation.is_empty() && p.state.is_empty() && p.ports.is_empty() && p.secrets.is_empty())
    }

    fn secrets_view(&self, w: &World, p: &Pending) -> BTreeMap<String, SecretState> {
        let mut view = w.secrets.clone();
        for op in &p.secrets {
            // Ops were checked when buffered; one that no longer applies is simply skipped.
            let _ = apply_secret_op(&mut view, op);
        }
        view
    }

    fn find_secret<'v>(
        &self,
        view: &'v BTreeMap<String, SecretState>,
        tool: &str,
        id: Option<&str>,
        label: Option<&str>,
    ) -> HookResult<&'v SecretState> {
        if let Some(id) = id {
            let bare = bare_secret_id(id);
            return view
                .get(&bare)
                .ok_or_else(|| not_found(tool, format!("secret {bare:?} not found")));
        }
        let Some(label) = label else {
            return Err(usage(tool, "require either a secret URI or label"));
        };
        view.values()
            .find(|s| s.owned_by(&self.unit, &self.app) && s.label.as_deref() == Some(label))
            .or_else(|| {
                view.values().find(|s| {
                    s.consumers
                        .get(&self.unit)
                        .is_some_and(|c| c.label.as_deref() == Some(label))
                })
            })
            .ok_or_else(|| not_found(tool, format!("secret with label {label:?} not found")))
    }

    fn manage_check(&self, w: &World, s: &SecretState, tool: &str) -> HookResult<()> {
        if s.manageable_by(&self.unit, &self.app, w.is_leader(&self.unit)) {
            Ok(())
        } else if s.owner_unit.is_none() && s.owner_app == self.app {
            Err(not_leader(tool, "this unit is not the leader"))
        } else {
            Err(denied(tool))
        }
    }

    fn check_secret_opts(tool: &str, opts: &SecretOptions) -> HookResult<()> {
        if let Some(r) = &opts.rotate {
            if !ROTATE_POLICIES.contains(&r.as_str()) {
                return Err(usage(tool, format!("invalid rotate policy {r:?}")));
            }
        }
        if let Some(o) = &opts.owner {
            if o != "application" && o != "unit" {
                return Err(usage(
                    tool,
                    format!("secret owner {o:?} not valid, expected \"application\" or \"unit\""),
                ));
            }
        }
        Ok(())
    }

    fn check_secret_content(tool: &str, content: &BTreeMap<String, String>) -> HookResult<()> {
        for k in content.keys() {
            if !valid_secret_key(k) {
                return Err(usage(tool, format!("invalid key {k:?}")));
            }
        }
        Ok(())
    }

    fn action_name(&self, tool: &str) -> HookResult<&str> {
        self.hook
            .action
            .as_ref()
            .map(|a| a.name.as_str())
            .ok_or_else(|| no_action(tool))
    }

    fn unit_goal(w: &World, unit: &str, since: &str) -> GoalStatus {
        GoalStatus {
            status: if w.unit_dying(unit) {
                "dying"
            } else {
                "active"
            }
            .to_string(),
            since: Some(since.to_string()),
        }
    }
}

impl HookTools for Session {
    fn juju_log(&self, level: LogLevel, message: &str) -> HookResult<()> {
        let mut p = lock(&self.pending);
        p.calls.push("juju-log".into());
        p.logs.push((level, message.to_string()));
        Ok(())
    }

    fn status_set(&self, status: &StatusValue, application: bool) -> HookResult<()> {
        self.record_call("status-set");
        if !status.status.settable() {
            return Err(usage(
                "status-set",
                format!(
                    "invalid status {:?}, expected one of [maintenance blocked waiting active]",
                    status.status.as_str()
                ),
            ));
        }
        let mut w = lock(&self.world);
        if application {
            if !w.is_leader(&self.unit) {
                return Err(not_leader("status-set", "this unit is not the leader"));
            }
            if let Some(a) = w.apps.get_mut(&self.app) {
                a.status = status.clone();
                a.status_history.push(status.clone());
            }
        } else if let Some(u) = w.units.get_mut(&self.unit) {
            u.status = status.clone();
            u.status_history.push(status.clone());
        }
        Ok(())
    }

    fn status_get(&self) -> HookResult<StatusValue> {
        self.record_call("status-get");
        Ok(lock(&self.world).unit_status(&self.unit))
    }

    fn app_status_get(&self) -> HookResult<AppStatus> {
        self.record_call("status-get");
        let w = lock(&self.world);
        if !w.is_leader(&self.unit) {
            return Err(not_leader(
                "status-get",
                "finding application status: this unit is not the leader",
            ));
        }
        Ok(AppStatus {
            status: w.app_status(&self.app),
            units: w
                .units(&self.app)
                .into_iter()
                .map(|u| {
                    let s = w.unit_status(&u);
                    (u, s)
                })
                .collect(),
        })
    }

    fn application_version_set(&self, version: &str) -> HookResult<()> {
        self.record_call("application-version-set");
        if let Some(a) = lock(&self.world).apps.get_mut(&self.app) {
            a.version = version.to_string();
        }
        Ok(())
    }

    fn is_leader(&self) -> HookResult<bool> {
        self.record_call("is-leader");
        Ok(lock(&self.world).is_leader(&self.unit))
    }

    fn config_get(&self) -> HookResult<BTreeMap<String, serde_json::Value>> {
        self.record_call("config-get");
        Ok(lock(&self.world).config(&self.app))
    }

    fn goal_state(&self) -> HookResult<GoalState> {
        self.record_call("goal-state");
        let w = lock(&self.world);
        let since = juju_now();
        let mut gs = GoalState::default();
        for u in w.units(&self.app) {
            let g = Self::unit_goal(&w, &u, &since);
            gs.units.insert(u, g);
        }
        for r in w.relations.values() {
            let Some((mine, other)) = r.ends_for(&self.app) else {
                continue;
            };
            let entry = gs.relations.entry(mine.endpoint.clone()).or_default();
            if !r.peer() {
                entry.insert(
                    other.app.clone(),
                    GoalStatus {
                        status: "joined".into(),
                        since: Some(since.clone()),
                    },
                );
            }
            for u in w.units(&other.app) {
                if u != self.unit {
                    let g = Self::unit_goal(&w, &u, &since);
                    entry.insert(u, g);
                }
            }
        }
        Ok(gs)
    }

    fn relation_ids(&self, endpoint: &str) -> HookResult<Vec<u32>> {
        self.record_call("relation-ids");
        let w = lock(&self.world);
        Ok(w.relations
            .values()
            .filter(|r| {
                r.ends_for(&self.app)
                    .is_some_and(|(m, _)| m.endpoint == endpoint)
            })
            .map(|r| r.id)
            .collect())
    }

    fn relation_list(&self, relation_id: u32) -> HookResult<Vec<String>> {
        self.record_call("relation-list");
        let w = lock(&self.world);
        let r = self.rel(&w, "relation-list", relation_id)?;
        let Some((_, other)) = r.ends_for(&self.app) else {
            return Ok(Vec::new());
        };
        Ok(w.units(&other.app)
            .into_iter()
            .filter(|u| *u != self.unit && Some(u) != self.hook.departing_unit.as_ref())
            .collect())
    }

    fn relation_list_app(&self, relation_id: u32) -> HookResult<Option<String>> {
        self.record_call("relation-list");
        let w = lock(&self.world);
        let r = self.rel(&w, "relation-list", relation_id)?;
        Ok(r.ends_for(&self.app).map(|(_, o)| o.app.clone()))
    }

    fn relation_get(
        &self,
        relation_id: u32,
        member: &str,
        app: bool,
    ) -> HookResult<BTreeMap<String, String>> {
        const TOOL: &str = "relation-get";
        self.record_call(TOOL);
        let (w, p) = self.both();
        let r = self.rel(&w, TOOL, relation_id)?;
        let Some((mine, other)) = r.ends_for(&self.app) else {
            return Err(relation_not_found(TOOL, &relation_id.to_string()));
        };
        let rel_name = format!("{}:{}", mine.endpoint, relation_id);
        if !app {
            if !member.contains('/') {
                return Err(usage(
                    TOOL,
                    format!("expected unit name, got application name {member:?}"),
                ));
            }
            let readable =
                member == self.unit || (app_of(member) == other.app && r.data.contains_key(member));
            if !readable {
                return Err(not_found(
                    TOOL,
                    format!(
                        "cannot read settings for unit {member:?} in relation {rel_name:?}: unit {member:?}: settings not found"
                    ),
                ));
            }
            let mut bag = r.data.get(member).cloned().unwrap_or_default();
            if member == self.unit {
                if let Some(ch) = p.relation.get(&(relation_id, member.to_string())) {
                    overlay(&mut bag, ch);
                }
            }
            return Ok(bag);
        }
        let target = app_of(member);
        if target == self.app {
            if !r.peer() && !w.is_leader(&self.unit) {
                return Err(denied(TOOL));
            }
            let mut bag = r.data.get(target).cloned().unwrap_or_default();
            if let Some(ch) = p.relation.get(&(relation_id, target.to_string())) {
                overlay(&mut bag, ch);
            }
            Ok(bag)
        } else if target == other.app {
            Ok(r.data.get(target).cloned().unwrap_or_default())
        } else {
            Err(not_found(
                TOOL,
                format!(
                    "cannot read settings for application {target:?} in relation {rel_name:?}: settings not found"
                ),
            ))
        }
    }

    fn relation_set(
        &self,
        relation_id: u32,
        data: &BTreeMap<String, String>,
        app: bool,
    ) -> HookResult<()> {
        const TOOL: &str = "relation-set";
        self.record_call(TOOL);
        let (w, mut p) = self.both();
        self.rel(&w, TOOL, relation_id)?;
        if data.keys().any(|k| k.is_empty()) {
            return Err(usage(TOOL, "empty key"));
        }
        let owner = if app {
            if !w.is_leader(&self.unit) {
                return Err(not_leader(TOOL, "cannot write relation settings"));
            }
            self.app.clone()
        } else {
            self.unit.clone()
        };
        let entry = p.relation.entry((relation_id, owner)).or_default();
        for (k, v) in data {
            entry.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    fn relation_model_get(&self, relation_id: u32) -> HookResult<String> {
        self.record_call("relation-model-get");
        let w = lock(&self.world);
        self.rel(&w, "relation-model-get", relation_id)?;
        Ok(w.model_uuid.clone())
    }

    fn network_get(&self, binding: &str, relation_id: Option<u32>) -> HookResult<NetworkInfo> {
        const TOOL: &str = "network-get";
        self.record_call(TOOL);
        let w = lock(&self.world);
        if let Some(id) = relation_id {
            self.rel(&w, TOOL, id)?;
        }
        let known = w
            .meta(&self.app)
            .is_some_and(|m| m.endpoints().any(|e| e == binding));
        if !known {
            return Err(failed(
                TOOL,
                format!("no network config found for binding {binding:?}"),
            ));
        }
        let addr = w.unit_address(&self.unit);
        Ok(NetworkInfo {
            bind_addresses: vec![BindAddress {
                mac_address: String::new(),
                interface_name: "lo".into(),
                addresses: vec![InterfaceAddress {
                    hostname: String::new(),
                    value: addr.clone(),
                    cidr: format!("{addr}/32"),
                }],
            }],
            egress_subnets: vec![format!("{addr}/32")],
            ingress_addresses: vec![addr],
        })
    }

    fn action_get(&self) -> HookResult<BTreeMap<String, serde_json::Value>> {
        self.record_call("action-get");
        let name = self.action_name("action-get")?;
        let mut params = BTreeMap::new();
        let w = lock(&self.world);
        if let Some(serde_json::Value::Object(props)) = w
            .meta(&self.app)
            .and_then(|m| m.actions.get(name))
            .map(|a| &a.params)
        {
            for (k, schema) in props {
                if let Some(d) = schema.get("default") {
                    params.insert(k.clone(), d.clone());
                }
            }
        }
        if let Some(a) = &self.hook.action {
            params.extend(a.params.clone());
        }
        Ok(params)
    }

    fn action_set(&self, results: &BTreeMap<String, String>) -> HookResult<()> {
        self.record_call("action-set");
        self.action_name("action-set")?;
        for k in results.keys() {
            validate_action_key(k).map_err(|m| usage("action-set", m))?;
        }
        lock(&self.pending)
            .action_results
            .extend(results.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }

    fn action_fail(&self, message: &str) -> HookResult<()> {
        self.record_call("action-fail");
        self.action_name("action-fail")?;
        let message = if message.is_empty() {
            DEFAULT_ACTION_FAIL
        } else {
            message
        };
        lock(&self.pending).action_failure = Some(message.to_string());
        Ok(())
    }

    fn action_log(&self, message: &str) -> HookResult<()> {
        self.record_call("action-log");
        self.action_name("action-log")?;
        lock(&self.pending).action_logs.push(message.to_string());
        Ok(())
    }

    fn state_get(&self) -> HookResult<BTreeMap<String, String>> {
        self.record_call("state-get");
        let (w, p) = self.both();
        let mut state = w.unit_state(&self.unit);
        for (k, v) in &p.state {
            match v {
                Some(v) => state.insert(k.clone(), v.clone()),
                None => state.remove(k),
            };
        }
        Ok(state)
    }

    fn state_set(&self, data: &BTreeMap<String, String>) -> HookResult<()> {
        self.record_call("state-set");
        for (k, v) in data {
            if k.len() > STATE_KEY_MAX {
                return Err(failed(
                    "state-set",
                    format!("key {k:?} exceeds the limit of {STATE_KEY_MAX} bytes"),
                ));
            }
            if v.len() > STATE_VALUE_MAX {
                return Err(failed(
                    "state-set",
                    format!("value for key {k:?} exceeds the limit of {STATE_VALUE_MAX} bytes"),
                ));
            }
        }
        let mut p = lock(&self.pending);
        for (k, v) in data {
            p.state.insert(k.clone(), Some(v.clone()));
        }
        Ok(())
    }

    fn state_delete(&self, key: &str) -> HookResult<()> {
        self.record_call("state-delete");
        lock(&self.pending).state.insert(key.to_string(), None);
        Ok(())
    }

    fn open_port(&self, port: &Port) -> HookResult<()> {
        self.record_call("open-port");
        check_port("open-port", port)?;
        lock(&self.pending).ports.push((true, port.clone()));
        Ok(())
    }

    fn close_port(&self, port: &Port) -> HookResult<()> {
        self.record_call("close-port");
        check_port("close-port", port)?;
        lock(&self.pending).ports.push((false, port.clone()));
        Ok(())
    }

    fn opened_ports(&self) -> HookResult<Vec<Port>> {
        self.record_call("opened-ports");
        Ok(lock(&self.world).opened_ports(&self.unit))
    }

    fn storage_list(&self, name: Option<&str>) -> HookResult<Vec<String>> {
        self.record_call("storage-list");
        let w = lock(&self.world);
        Ok(w.meta(&self.app)
            .map(|m| {
                m.storage
                    .keys()
                    .filter(|k| name.is_none_or(|n| n == k.as_str()))
                    .map(|k| format!("{k}/0"))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn storage_get(&self, id: Option<&str>) -> HookResult<StorageInfo> {
        const TOOL: &str = "storage-get";
        self.record_call(TOOL);
        let id = id
            .map(str::to_string)
            .or_else(|| self.hook.storage_id.clone())
            .ok_or_else(|| failed(TOOL, "no storage instance specified"))?;
        let w = lock(&self.world);
        let location = id
            .split_once('/')
            .filter(|(_, n)| *n == "0")
            .and_then(|(name, _)| w.meta(&self.app)?.storage.get(name).cloned())
            .ok_or_else(|| not_found(TOOL, format!("storage instance {id:?} not found")))?;
        Ok(StorageInfo {
            kind: "filesystem".into(),
            location,
        })
    }

    fn resource_get(&self, name: &str) -> HookResult<PathBuf> {
        self.record_call("resource-get");
        lock(&self.world)
            .apps
            .get(&self.app)
            .and_then(|a| a.resources.get(name).cloned())
            .ok_or_else(|| {
                not_found(
                    "resource-get",
                    format!("could not download resource: resource {name:?} not found"),
                )
            })
    }

    fn secret_add(
        &self,
        content: &BTreeMap<String, String>,
        opts: &SecretOptions,
    ) -> HookResult<String> {
        const TOOL: &str = "secret-add";
        self.record_call(TOOL);
        if content.is_empty() {
            return Err(usage(TOOL, "missing secret value"));
        }
        Self::check_secret_content(TOOL, content)?;
        Self::check_secret_opts(TOOL, opts)?;
        let (w, mut p) = self.both();
        let unit_owned = opts.owner.as_deref() == Some("unit");
        if !unit_owned && !w.is_leader(&self.unit) {
            return Err(not_leader(TOOL, "this unit is not the leader"));
        }
        if let Some(label) = &opts.label {
            let view = self.secrets_view(&w, &p);
            if view
                .values()
                .any(|s| s.owned_by(&self.unit, &self.app) && s.label.as_ref() == Some(label))
            {
                return Err(failed(
                    TOOL,
                    format!("secret with label {label:?} already exists"),
                ));
            }
        }
        let id = new_secret_id();
        p.secrets.push(SecretOp::Add(Box::new(SecretState {
            id: id.clone(),
            owner_app: self.app.clone(),
            owner_unit: unit_owned.then(|| self.unit.clone()),
            label: opts.label.clone(),
            description: opts.description.clone(),
            expire: opts.expire.clone(),
            rotate: opts.rotate.clone(),
            revisions: BTreeMap::from([(1, content.clone())]),
            latest: 1,
            grants: Vec::new(),
            consumers: BTreeMap::new(),
        })));
        Ok(format!("secret:{id}"))
    }

    fn secret_get(&self, query: &SecretQuery) -> HookResult<BTreeMap<String, String>> {
        const TOOL: &str = "secret-get";
        self.record_call(TOOL);
        if query.peek && query.refresh {
            return Err(usage(
                TOOL,
                "specify one of --peek or --refresh but not both",
            ));
        }
        let (mut w, mut p) = self.both();
        let view = self.secrets_view(&w, &p);
        let s = self.find_secret(&view, TOOL, query.id.as_deref(), query.label.as_deref())?;
        let latest = || s.revisions.get(&s.latest).cloned().unwrap_or_default();
        if s.owned_by(&self.unit, &self.app) {
            return Ok(latest());
        }
        if !s.granted_to(&self.unit, &self.app) {
            return Err(denied(TOOL));
        }
        // Setting a consumer label needs an id (by label alone, it is already set).
        let new_label = query.id.as_ref().and(query.label.clone());
        let revision = match s.consumers.get(&self.unit) {
            None => {
                // The first read pins the then-latest revision, at once.
                if let Some(ws) = w.secrets.get_mut(&s.id) {
                    ws.consumers.insert(
                        self.unit.clone(),
                        Consumer {
                            revision: s.latest,
                            label: new_label.clone(),
                        },
                    );
                }
                s.latest
            }
            Some(c) => {
                if query.refresh || (new_label.is_some() && new_label != c.label) {
                    p.secrets.push(SecretOp::Track {
                        id: s.id.clone(),
                        consumer: self.unit.clone(),
                        revision: query.refresh.then_some(s.latest),
                        label: new_label,
                    });
                }
                if query.peek || query.refresh {
                    s.latest
                } else {
                    c.revision
                }
            }
        };
        Ok(s.revisions.get(&revision).cloned().unwrap_or_else(latest))
    }

    fn secret_info_get(&self, query: &SecretQuery) -> HookResult<SecretInfo> {
        const TOOL: &str = "secret-info-get";
        self.record_call(TOOL);
        if query.id.is_some() && query.label.is_some() {
            return Err(usage(
                TOOL,
                "specify either a secret URI or label but not both",
            ));
        }
        let (w, p) = self.both();
        let view = self.secrets_view(&w, &p);
        let s = self.find_secret(&view, TOOL, query.id.as_deref(), query.label.as_deref())?;
        if !s.manageable_by(&self.unit, &self.app, w.is_leader(&self.unit)) {
            return Err(not_found(TOOL, format!("secret {:?} not found", s.id)));
        }
        Ok(SecretInfo {
            id: s.id.clone(),
            revision: s.latest,
            label: s.label.clone(),
            owner: Some(
                if s.owner_unit.is_some() {
                    "unit"
                } else {
                    "application"
                }
                .into(),
            ),
            description: s.description.clone(),
            rotation: s.rotate.clone(),
            expiry: s.expire.clone(),
        })
    }

    fn secret_set(
        &self,
        id: &str,
        content: Option<&BTreeMap<String, String>>,
        opts: &SecretOptions,
    ) -> HookResult<()> {
        const TOOL: &str = "secret-set";
        self.record_call(TOOL);
        if let Some(c) = content {
            if c.is_empty() {
                return Err(usage(TOOL, "missing secret value"));
            }
            Self::check_secret_content(TOOL, c)?;
        }
        Self::check_secret_opts(TOOL, opts)?;
        let (w, mut p) = self.both();
        let view = self.secrets_view(&w, &p);
        let s = self.find_secret(&view, TOOL, Some(id), None)?;
        self.manage_check(&w, s, TOOL)?;
        p.secrets.push(SecretOp::Set {
            id: s.id.clone(),
            content: content.cloned(),
            opts: opts.clone(),
        });
        Ok(())
    }

    fn secret_remove(&self, id: &str, revision: Option<u64>) -> HookResult<()> {
        const TOOL: &str = "secret-remove";
        self.record_call(TOOL);
        let (w, mut p) = self.both();
        let view = self.secrets_view(&w, &p);
        let s = self.find_secret(&view, TOOL, Some(id), None)?;
        self.manage_check(&w, s, TOOL)?;
        if let Some(r) = revision {
            if !s.revisions.contains_key(&r) {
                return Err(not_found(
                    TOOL,
                    format!("secret revision {r} for {:?} not found", s.id),
                ));
            }
        }
        p.secrets.push(SecretOp::Remove {
            id: s.id.clone(),
            revision,
        });
        Ok(())
    }

    fn secret_grant(&self, id: &str, relation_id: u32, unit: Option<&str>) -> HookResult<()> {
        const TOOL: &str = "secret-grant";
        self.record_call(TOOL);
        let (w, mut p) = self.both();
        let r = self.rel(&w, TOOL, relation_id)?;
        let Some((_, other)) = r.ends_for(&self.app) else {
            return Err(relation_not_found(TOOL, &relation_id.to_string()));
        };
        let grantee = match unit {
            Some(u) if app_of(u) != other.app => {
                return Err(failed(
                    TOOL,
                    format!("cannot grant to unit {u:?}: not a unit of {:?}", other.app),
                ))
            }
            Some(u) => u.to_string(),
            None => other.app.clone(),
        };
        let view = self.secrets_view(&w, &p);
        let s = self.find_secret(&view, TOOL, Some(id), None)?;
        self.manage_check(&w, s, TOOL)?;
        p.secrets.push(SecretOp::Grant {
            id: s.id.clone(),
            grant: Grant {
                relation_id,
                grantee,
            },
        });
        Ok(())
    }

    fn secret_revoke(
        &self,
        id: &str,
        relation_id: Option<u32>,
        app: Option<&str>,
        unit: Option<&str>,
    ) -> HookResult<()> {
        const TOOL: &str = "secret-revoke";
        self.record_call(TOOL);
        let (w, mut p) = self.both();
        if let Some(rid) = relation_id {
            self.rel(&w, TOOL, rid)?;
        }
        let view = self.secrets_view(&w, &p);
        let s = self.find_secret(&view, TOOL, Some(id), None)?;
        self.manage_check(&w, s, TOOL)?;
        p.secrets.push(SecretOp::Revoke {
            id: s.id.clone(),
            relation_id,
            grantee: unit.or(app).map(str::to_string),
        });
        Ok(())
    }

    fn secret_ids(&self) -> HookResult<Vec<String>> {
        self.record_call("secret-ids");
        let (w, p) = self.both();
        let leader = w.is_leader(&self.unit);
        Ok(self
            .secrets_view(&w, &p)
            .values()
            .filter(|s| s.manageable_by(&self.unit, &self.app, leader))
            .map(|s| format!("secret:{}", s.id))
            .collect())
    }
}

fn check_port(tool: &str, port: &Port) -> HookResult<()> {
    let ok = match port.protocol.as_str() {
        "icmp" => port.number.is_none(),
        "tcp" | "udp" => port.number.is_some_and(|n| n > 0),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(usage(tool, format!("invalid port {:?}", port.to_string())))
    }
}
