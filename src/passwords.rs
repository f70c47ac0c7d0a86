//! Passwords: one app-owned Juju secret, the migration from the Python charm's plain keys,
//! and the `set-password` rotation without client errors.
//!
//! # Storage
//! The leader keeps both passwords in one application-owned secret (label
//! [`PASSWORDS_SECRET_LABEL`], keys `redis-password` and `sentinel-password`); the peer app
//! databag holds only its URI ([`KEY_PASSWORDS_SECRET`]). Every unit reads the content with
//! `secret-get --peek`: all units of the owning application are on the owner side, and since
//! Juju 3.1.7 an owner reads its tracked revision unless it peeks or refreshes (before 3.1.7 it
//! always read the latest and could not refresh); peeking gives the latest revision on every
//! version without re-pinning. Owners get no `secret-changed`, so with every new revision the
//! leader also changes a peer app key (the secret URI or [`KEY_ROTATION`]), which gives every
//! other unit a `redis-peers-relation-changed`.
//!
//! # Migration
//! A deployment of the Python charm keeps `redis-password` / `sentinel-password` in plain
//! text in the peer app databag. When the leader finds them and no secret reference, it
//! creates the secret from those values (the running Redis and its clients keep working),
//! writes the reference and deletes the plain keys. Until the reference appears, other units
//! keep using the plain keys.
//!
//! # Rotation (`set-password`)
//! Redis and Sentinel express their password as ACL rules on the `default` user
//! (`user default on #<sha256> [#<sha256>] ~* &* +@all` in the config files, `ACL SETUSER` at
//! runtime), which accepts two passwords at once. The secret's `redis-password` is always the
//! password everyone *uses* (clients, `masterauth`, Sentinel's `auth-pass`, `sentinel-pass`,
//! the charm); `<key>-next` and `<key>-previous` are passwords that are *accepted* too.
//! The leader drives three phases, recorded in [`KEY_ROTATION`] (generation, user, phase); each
//! unit acknowledges a phase in its unit databag ([`KEY_ROTATION_ACK`]) once its running
//! workloads (and config files) match the secret:
//! 1. **add** — `<key>-next` = new: every unit accepts old and new; nothing uses new yet.
//! 2. **switch** (all acked add) — `<key>` = new, `<key>-previous` = old: everything switches
//!    to the new password (which every unit already accepts); the client secret is updated
//!    and the get-* actions return the new password. The old one is still accepted.
//! 3. **drop** (all acked switch and `password-rotation-grace` seconds passed, checked at the
//!    next hook, e.g. update-status) — only `<key>` remains; the old password is refused.
//! 4. **done** (all acked drop).
//!
//! A unit that restarts mid-rotation renders every accepted password from the secret; a
//! runtime change is also written back by `CONFIG REWRITE` (Redis) / `SENTINEL FLUSHCONFIG`.
//! One rotation at a time; `set-password` refuses to start another until it is done.
//!
//! # Forcing a stalled rotation (`set-password force=true`)
//! A unit that never acknowledges (dead pod, stuck hook) holds a phase forever; the leader's
//! status names it. [`force_rotation`] records the lagging units as `excused` in the rotation
//! record (not waited for again in this rotation) and moves on, except that the switch (which
//! puts the new password in use) is refused while a lagging unit's workload answers and
//! refuses the new password, and the grace period before the drop is never shortened. An
//! excused unit still owes its acknowledgement: when it comes back it renders the latest
//! secret revision (every unit peeks) and applies it to its running workloads; after the
//! rotation it acknowledges `<generation>:done` ([`Rotation::owed_ack`]).
//!
//! # No authentication
//! Relating a client never turns authentication off (the Python charm's `enable-password`
//! legacy key is deleted by the leader with a warning). The `allow-no-auth` option gives the
//! default user `nopass`; turning it off restores the hashes. Everything that authenticates
//! (the charm, replicas through `masteruser`, sentinels through `auth-user`) uses the
//! two-argument `AUTH default <pw>`, which a `nopass` user accepts and the one-argument form
//! does not.
//!
//! # Client credentials
//! See [`crate::client_relation`]: an app-owned secret (`username`, `password`) granted to
//! each `redis` relation, URI in `secret-user`, updated at the switch phase.

pub mod sha256;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::charm::{own_address, Outcome, RedisK8sCharm};
use crate::literals::*;
use crate::ops::context::Event;
use crate::ops::framework::{Framework, HandlerError};
use crate::ops::hookcmds::{HookError, HookTools, SecretOptions, SecretQuery};
use crate::ops::pebble::Pebble;
use crate::peers::{generate_password, PeerAppData};
use crate::redis_client::{value_to_map, value_to_string, RedisCallError, RedisConn};

/// Label of the app-owned secret with both passwords.
pub const PASSWORDS_SECRET_LABEL: &str = "redis-passwords";
/// Label of the app-owned secret granted to client relations (`username`, `password`).
pub const CLIENT_SECRET_LABEL: &str = "redis-client";
/// Peer app key: the passwords secret's URI.
pub const KEY_PASSWORDS_SECRET: &str = "passwords-secret";
/// Peer app key: the client secret's URI.
pub const KEY_CLIENT_SECRET: &str = "client-secret";
/// Peer app key: the rotation record (JSON [`Rotation`]).
pub const KEY_ROTATION: &str = "password-rotation";
/// Peer unit key: the rotation phase this unit has applied (`<generation>:<phase>`).
pub const KEY_ROTATION_ACK: &str = "password-rotation-ack";
/// Client relation app key with the client secret's URI (the data-platform convention).
pub const KEY_SECRET_USER: &str = "secret-user";
/// The Redis user clients get (the ACL `default` user).
pub const CLIENT_USERNAME: &str = "default";

/// Why the passwords cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot read the passwords secret ({0})")]
    Unreadable(String),
    #[error("the passwords secret has no {0}")]
    Missing(&'static str),
    #[error("the passwords secret's {key} is unusable: {reason}")]
    Invalid { key: String, reason: &'static str },
}

/// Which password a rotation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum User {
    /// Redis's `default` user (`get-initial-admin-password`).
    Admin,
    /// Sentinel's `default` user (`get-sentinel-password`).
    Sentinel,
}

impl User {
    pub fn parse(s: &str) -> Option<User> {
        match s {
            "admin" | "default" => Some(User::Admin),
            "sentinel" => Some(User::Sentinel),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            User::Admin => "admin",
            User::Sentinel => "sentinel",
        }
    }

    fn key(&self) -> &'static str {
        match self {
            User::Admin => KEY_REDIS_PASSWORD,
            User::Sentinel => KEY_SENTINEL_PASSWORD,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Add,
    Switch,
    Drop,
    Done,
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Add => "add",
            Phase::Switch => "switch",
            Phase::Drop => "drop",
            Phase::Done => "done",
        }
    }
}

/// The leader's rotation record in the peer app databag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub generation: u64,
    pub user: User,
    pub phase: Phase,
    /// Unix seconds when this phase was written (the grace period counts from the switch).
    pub since: u64,
    /// Units the operator forced this rotation past (`set-password force=true`): their
    /// acknowledgements are not waited for again in this rotation. Absent in records
    /// written before forcing existed, and when nobody was excused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excused: Vec<String>,
}

impl Rotation {
    pub fn active(&self) -> bool {
        self.phase != Phase::Done
    }

    /// What a unit writes to [`KEY_ROTATION_ACK`] once it applied this phase.
    pub fn ack_value(&self) -> String {
        format!("{}:{}", self.generation, self.phase.as_str())
    }

    /// The acknowledgement a unit whose databag says `own` still owes, if any. While the
    /// rotation runs: the current phase's. Once it is done: `<generation>:done` from a unit
    /// that did not take part to the end (`<generation>:drop`): one the rotation was forced
    /// past, or one that joined later. Such a unit brings its running workloads to the
    /// secret once, instead of keeping a password the others no longer accept (or refusing
    /// the one clients now use) until its next config-changed.
    pub fn owed_ack(&self, own: Option<&str>) -> Option<String> {
        let want = self.ack_value();
        if self.active() {
            return (own != Some(want.as_str())).then_some(want);
        }
        let dropped = format!("{}:{}", self.generation, Phase::Drop.as_str());
        (own != Some(want.as_str()) && own != Some(dropped.as_str())).then_some(want)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parse the databag value; junk is dropped with a warning (no rotation then).
    pub fn from_json(s: &str) -> Option<Rotation> {
        match serde_json::from_str(s) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring malformed password-rotation in peer data");
                None
            }
        }
    }
}

/// One user's passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credential {
    /// In use: what clients, `masterauth`, `auth-pass`, `sentinel-pass` and the charm send.
    pub current: String,
    /// Accepted too before the switch of a rotation (the new password).
    pub next: Option<String>,
    /// Accepted too after the switch of a rotation, until the drop (the old password).
    pub previous: Option<String>,
}

impl Credential {
    pub fn new(current: impl Into<String>) -> Credential {
        Credential {
            current: current.into(),
            next: None,
            previous: None,
        }
    }

    /// Every accepted password, the one in use first, without duplicates.
    pub fn accepted(&self) -> Vec<&str> {
        let mut out: Vec<&str> = vec![self.current.as_str()];
        for p in [&self.next, &self.previous].into_iter().flatten() {
            if !out.contains(&p.as_str()) {
                out.push(p);
            }
        }
        out
    }

    /// SHA-256 hex of every accepted password (ACL `#<hash>` rules).
    pub fn hashes(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|p| sha256::hex(p.as_bytes()))
            .collect()
    }
}

/// The content of the passwords secret. `Debug` never shows a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Passwords {
    pub admin: Credential,
    pub sentinel: Credential,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shape = |c: &Credential| {
            format!(
                "current{}{}",
                if c.next.is_some() { "+next" } else { "" },
                if c.previous.is_some() {
                    "+previous"
                } else {
                    ""
                }
            )
        };
        f.debug_struct("Passwords")
            .field("admin", &shape(&self.admin))
            .field("sentinel", &shape(&self.sentinel))
            .finish()
    }
}

/// Passwords end up in config lines (`masterauth`, `sentinel auth-pass`) and `AUTH`: printable
/// ASCII without spaces, quotes or backslashes, at most 256 characters.
pub fn check_password(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty");
    }
    if p.len() > 256 {
        return Err("longer than 256 characters");
    }
    if !p
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'))
    {
        return Err("only printable ASCII without spaces, quotes or backslashes is allowed");
    }
    Ok(())
}

impl Passwords {
    pub fn new(admin: impl Into<String>, sentinel: impl Into<String>) -> Passwords {
        Passwords {
            admin: Credential::new(admin),
            sentinel: Credential::new(sentinel),
        }
    }

    pub fn user(&self, u: User) -> &Credential {
        match u {
            User::Admin => &self.admin,
            User::Sentinel => &self.sentinel,
        }
    }

    pub fn user_mut(&mut self, u: User) -> &mut Credential {
        match u {
            User::Admin => &mut self.admin,
            User::Sentinel => &mut self.sentinel,
        }
    }

    /// Parse and validate the secret's content; unknown keys are ignored.
    pub fn from_content(c: &BTreeMap<String, String>) -> Result<Passwords, PasswordError> {
        let get = |key: String| -> Result<Option<String>, PasswordError> {
            match c.get(&key).map(|v| v.trim()) {
                None | Some("") => Ok(None),
                Some(v) => check_password(v)
                    .map(|_| Some(v.to_string()))
                    .map_err(|reason| PasswordError::Invalid { key, reason }),
            }
        };
        let mut out = Passwords::default();
        for user in [User::Admin, User::Sentinel] {
            let key = user.key();
            let cred = out.user_mut(user);
            cred.current = get(key.to_string())?.ok_or(PasswordError::Missing(key))?;
            cred.next = get(format!("{key}-next"))?;
            cred.previous = get(format!("{key}-previous"))?;
        }
        Ok(out)
    }

    pub fn to_content(&self) -> BTreeMap<String, String> {
        let mut c = BTreeMap::new();
        for user in [User::Admin, User::Sentinel] {
            let key = user.key();
            let cred = self.user(user);
            c.insert(key.to_string(), cred.current.clone());
            if let Some(n) = &cred.next {
                c.insert(format!("{key}-next"), n.clone());
            }
            if let Some(p) = &cred.previous {
                c.insert(format!("{key}-previous"), p.clone());
            }
        }
        c
    }
}

/// Passwords this hook wrote (secret-add/secret-set content is only visible after the hook
/// commits, so later reads in the same hook use this copy).
#[derive(Debug, Clone)]
pub struct Written {
    pub uri: String,
    pub passwords: Passwords,
}

fn hook_error_reason(e: &HookError) -> String {
    match e {
        HookError::NotFound { .. } => "not found".into(),
        HookError::PermissionDenied { .. } => "permission denied".into(),
        other => {
            // Keep statuses short; the full error goes to the log.
            tracing::warn!(error = %other, "secret-get failed");
            "secret-get failed; see the unit log".into()
        }
    }
}

/// Read the passwords secret the peer data references into `peer` (the passwords in use, and
/// the full content). Without a reference the Python charm's plain keys stay in use (until the
/// leader migrates them). A reference that cannot be read leaves no password at all and a
/// problem to report: never a default password.
pub fn resolve(tools: &dyn HookTools, peer: &mut PeerAppData, written: Option<&Written>) {
    let Some(uri) = peer.passwords_secret.clone() else {
        return;
    };
    let read = match written.filter(|w| w.uri == uri) {
        Some(w) => Ok(w.passwords.clone()),
        None => {
            let query = SecretQuery {
                peek: true,
                ..SecretQuery::by_id(uri.clone())
            };
            tools
                .secret_get(&query)
                .map_err(|e| PasswordError::Unreadable(hook_error_reason(&e)))
                .and_then(|c| Passwords::from_content(&c))
        }
    };
    match read {
        Ok(p) => {
            peer.redis_password = Some(p.admin.current.clone());
            peer.sentinel_password = Some(p.sentinel.current.clone());
            peer.passwords = Some(p);
            peer.password_problem = None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "passwords unavailable");
            peer.redis_password = None;
            peer.sentinel_password = None;
            peer.passwords = None;
            peer.password_problem = Some(e.to_string());
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Find the passwords secret by its label (a reference lost from the databag), or create it.
/// With `from_plain` (migration) the found secret gets those values.
fn add_or_adopt(
    tools: &dyn HookTools,
    fresh: &Passwords,
    from_plain: bool,
) -> Result<Written, HookError> {
    match tools.secret_info_get(&SecretQuery::by_label(PASSWORDS_SECRET_LABEL)) {
        Ok(info) => {
            let uri = format!("secret:{}", info.id);
            let passwords = if from_plain {
                tools.secret_set(&uri, Some(&fresh.to_content()), &SecretOptions::default())?;
                fresh.clone()
            } else {
                let query = SecretQuery {
                    peek: true,
                    ..SecretQuery::by_id(uri.clone())
                };
                match Passwords::from_content(&tools.secret_get(&query)?) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "replacing unusable content of the found passwords secret");
                        tools.secret_set(
                            &uri,
                            Some(&fresh.to_content()),
                            &SecretOptions::default(),
                        )?;
                        fresh.clone()
                    }
                }
            };
            tracing::info!(%uri, "adopted the existing passwords secret");
            Ok(Written { uri, passwords })
        }
        Err(e) if e.is_not_found() => {
            let uri = tools.secret_add(
                &fresh.to_content(),
                &SecretOptions {
                    label: Some(PASSWORDS_SECRET_LABEL.into()),
                    description: Some("redis-k8s admin and sentinel passwords".into()),
                    ..SecretOptions::default()
                },
            )?;
            Ok(Written {
                uri,
                passwords: fresh.clone(),
            })
        }
        Err(e) => Err(e),
    }
}

/// Leader: keep the passwords in the secret (create it, or migrate the Python charm's plain
/// keys into it), remove the plain and legacy keys, and move a running rotation on.
/// `Waiting` when the referenced secret cannot be read.
pub fn leader_step(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
) -> Result<Outcome, HandlerError> {
    let topo = charm.topology(fw)?.clone();
    let Some(rel) = topo.peer_relation else {
        return Ok(Outcome::Waiting("Waiting for peer relation".into()));
    };
    let peer = &topo.peer;
    let mut changes = BTreeMap::new();
    match (&peer.passwords_secret, &peer.password_problem) {
        (None, _) => {
            let from_plain = peer.plain_passwords;
            let admin = match &peer.redis_password {
                Some(p) => p.clone(),
                None => generate_password()?,
            };
            let sentinel = match &peer.sentinel_password {
                Some(p) => p.clone(),
                None => generate_password()?,
            };
            let fresh = Passwords::new(admin, sentinel);
            let written = match add_or_adopt(fw.tools(), &fresh, from_plain) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the passwords secret");
                    return Ok(Outcome::Waiting(format!(
                        "cannot create the passwords secret ({})",
                        hook_error_reason(&e)
                    )));
                }
            };
            if from_plain {
                tracing::info!(uri = %written.uri, "moved the plain peer-data passwords into a Juju secret");
            }
            changes.insert(KEY_PASSWORDS_SECRET.to_string(), written.uri.clone());
            charm.written_passwords = Some(written);
        }
        (Some(_), Some(problem)) => return Ok(Outcome::Waiting(problem.clone())),
        (Some(_), None) => {}
    }
    if peer.plain_passwords {
        changes.insert(KEY_REDIS_PASSWORD.to_string(), String::new());
        changes.insert(KEY_SENTINEL_PASSWORD.to_string(), String::new());
    }
    if peer.legacy_key_present {
        if !peer.enable_password {
            tracing::warn!(
                "the Python charm's legacy no-auth mode (enable-password=false) is not carried \
                 over: Redis requires the admin password again unless allow-no-auth is set"
            );
        }
        changes.insert(KEY_ENABLE_PASSWORD.to_string(), String::new());
    }
    if fw.model().update_relation_data(rel, true, &changes)? {
        charm.invalidate_topology();
    }
    advance_rotation(charm, fw, rel)?;
    Ok(Outcome::Done)
}

/// The next rotation step once every unit acknowledged `rot`, or `None` (done already, or
/// the grace period after the switch has not passed).
pub fn next_step(
    rot: &Rotation,
    pw: &Passwords,
    now: u64,
    grace_secs: u64,
) -> Option<(Rotation, Passwords)> {
    let mut pw = pw.clone();
    let cred = pw.user_mut(rot.user);
    let phase = match rot.phase {
        Phase::Add => {
            let new = cred.next.take()?;
            cred.previous = Some(std::mem::replace(&mut cred.current, new));
            Phase::Switch
        }
        Phase::Switch => {
            if now < rot.since.saturating_add(grace_secs) {
                return None;
            }
            cred.previous = None;
            Phase::Drop
        }
        Phase::Drop => Phase::Done,
        Phase::Done => return None,
    };
    Some((
        Rotation {
            phase,
            since: now,
            ..rot.clone()
        },
        pw,
    ))
}

/// Start a rotation of `user` to `new` (phase add), or say why not.
pub fn start(
    current: Option<&Rotation>,
    pw: &Passwords,
    user: User,
    new: &str,
    now: u64,
) -> Result<(Rotation, Passwords), String> {
    if let Some(r) = current.filter(|r| r.active()) {
        return Err(format!(
            "a rotation of the {} password is in progress (phase {}); try again when it is done",
            r.user.as_str(),
            r.phase.as_str()
        ));
    }
    check_password(new).map_err(|r| format!("the new password is unusable: {r}"))?;
    let mut pw = pw.clone();
    let cred = pw.user_mut(user);
    if cred.current == new {
        return Err(format!(
            "the new {} password is the current one",
            user.as_str()
        ));
    }
    cred.next = Some(new.to_string());
    cred.previous = None;
    let rot = Rotation {
        generation: current.map(|r| r.generation + 1).unwrap_or(1),
        user,
        phase: Phase::Add,
        since: now,
        excused: Vec::new(),
    };
    Ok((rot, pw))
}

/// Write a new revision of the passwords secret and the rotation record (the changed peer
/// key makes the other units re-read the secret).
fn write_rotation(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    rel: u32,
    uri: &str,
    rot: &Rotation,
    pw: &Passwords,
    old: &Passwords,
) -> Result<(), HandlerError> {
    if pw != old {
        fw.tools()
            .secret_set(uri, Some(&pw.to_content()), &SecretOptions::default())?;
        charm.written_passwords = Some(Written {
            uri: uri.to_string(),
            passwords: pw.clone(),
        });
    }
    let mut changes = BTreeMap::new();
    changes.insert(KEY_ROTATION.to_string(), rot.to_json());
    fw.model().update_relation_data(rel, true, &changes)?;
    tracing::info!(
        generation = rot.generation,
        user = rot.user.as_str(),
        phase = rot.phase.as_str(),
        "password rotation"
    );
    charm.invalidate_topology();
    Ok(())
}

/// The units (this one included) that have not acknowledged `rot`'s phase and were not
/// excused from it by a forced move, sorted.
fn lagging_units(
    fw: &Framework<'_>,
    rel: u32,
    rot: &Rotation,
) -> Result<Vec<String>, HandlerError> {
    let want = rot.ack_value();
    let mut units = fw.model().relation_units(rel)?;
    units.push(fw.ctx.unit_name.clone());
    let mut waiting = Vec::new();
    for u in &units {
        if rot.excused.contains(u) {
            continue;
        }
        let bag = fw.model().relation_data(rel, u, false)?;
        if bag.get(KEY_ROTATION_ACK) != Some(&want) {
            waiting.push(u.clone());
        }
    }
    waiting.sort();
    waiting.dedup();
    Ok(waiting)
}

/// Leader: when every unit acknowledged the current phase, go to the next one.
fn advance_rotation(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    rel: u32,
) -> Result<(), HandlerError> {
    let topo = charm.topology(fw)?.clone();
    let (Some(rot), Some(pw), Some(uri)) = (
        topo.peer.rotation.filter(Rotation::active),
        topo.peer.passwords.clone(),
        topo.peer.passwords_secret.clone(),
    ) else {
        charm.health.rotation_note = None;
        return Ok(());
    };
    let waiting = lagging_units(fw, rel, &rot)?;
    if !waiting.is_empty() {
        tracing::info!(
            phase = rot.phase.as_str(),
            ?waiting,
            "password rotation waits for units"
        );
        charm.health.rotation_note = Some(crate::health::rotation_waiting_note(
            &waiting,
            rot.phase.as_str(),
            unix_now().saturating_sub(rot.since),
        ));
        return Ok(());
    }
    charm.health.rotation_note = None;
    let grace = charm
        .config(fw)
        .map(|c| c.password_rotation_grace)
        .unwrap_or(300);
    if let Some((next, next_pw)) = next_step(&rot, &pw, unix_now(), grace) {
        write_rotation(charm, fw, rel, &uri, &next, &next_pw, &pw)?;
        if next.phase == Phase::Done {
            prune_revisions(fw.tools(), &uri);
        }
    }
    Ok(())
}

/// How many revisions below the latest [`prune_revisions`] looks at: a rotation makes two or
/// three, so this covers the last rotations even when a prune was missed.
const PRUNE_DEPTH: u64 = 9;

/// Once a rotation is done, remove the secret's older revisions: they hold passwords that are
/// no longer accepted anywhere, and no unit reads them (every unit peeks at the latest).
/// Best effort: a revision already gone is skipped, any other failure only logged.
fn prune_revisions(tools: &dyn HookTools, uri: &str) {
    let latest = match tools.secret_info_get(&SecretQuery::by_id(uri)) {
        Ok(info) => info.revision,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the passwords secret's revisions");
            return;
        }
    };
    let mut removed = 0;
    for revision in (latest.saturating_sub(PRUNE_DEPTH).max(1)..latest).rev() {
        match tools.secret_remove(uri, Some(revision)) {
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(error = %e, revision, "cannot remove an old password revision");
                return;
            }
        }
    }
    tracing::info!(
        removed,
        latest,
        "removed old revisions of the passwords secret"
    );
}

/// `set-password` on the leader: start the rotation, apply its first phase here, and go as
/// far as this unit alone allows. Returns the rotation started.
pub fn set_password(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    user: User,
    new: &str,
) -> Result<Result<Rotation, String>, HandlerError> {
    if let Outcome::Waiting(msg) = leader_step(charm, fw)? {
        return Ok(Err(msg));
    }
    let topo = charm.topology(fw)?.clone();
    let (Some(rel), Some(pw), Some(uri)) = (
        topo.peer_relation,
        topo.peer.passwords.clone(),
        topo.peer.passwords_secret.clone(),
    ) else {
        return Ok(Err("the passwords are not available yet".into()));
    };
    let (rot, new_pw) = match start(topo.peer.rotation.as_ref(), &pw, user, new, unix_now()) {
        Ok(r) => r,
        Err(msg) => return Ok(Err(msg)),
    };
    write_rotation(charm, fw, rel, &uri, &rot, &new_pw, &pw)?;
    // A single unit can go on to the switch at once.
    apply_and_ack(charm, fw, true)?;
    advance_rotation(charm, fw, rel)?;
    apply_and_ack(charm, fw, false)?;
    Ok(Ok(rot))
}

/// What `set-password force=true` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forced {
    /// The rotation record after the move (its phase may have gone on by more than one step
    /// when the remaining units had acknowledged already).
    pub rotation: Rotation,
    /// The units no longer waited for, sorted.
    pub excused: Vec<String>,
}

/// How long the leader waits for a lagging unit's workload to answer a forced move's probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What a lagging unit's workload says to the password the next phase puts in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `AUTH default <new>` succeeded: it accepts the password (its ack is just missing).
    Accepts,
    /// It answers and refuses the password: clients sent there after the switch would be
    /// locked out.
    Refuses(String),
    /// No answer: no client reaches it either; when it comes back it renders the secret.
    Unreachable(String),
}

/// Probe `host:port` with `AUTH default <password>`. The connection itself is made without
/// credentials, so a refused password (an error reply) is told apart from a workload that
/// does not answer (a failed connection).
pub fn probe(host: &str, port: u16, password: &str) -> Probe {
    let mut conn = match RedisConn::connect_with_timeout(host, port, None, PROBE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return Probe::Unreachable(e.to_string()),
    };
    match conn.command(&["AUTH", "default", password]) {
        Ok(_) => Probe::Accepts,
        Err(RedisCallError::Command { message, .. }) => Probe::Refuses(message),
        Err(e) => Probe::Unreachable(e.to_string()),
    }
}

/// `set-password force=true` on the leader: stop waiting for the units that hold the
/// running rotation's phase up (a dead pod, a stuck hook), for the rest of this rotation,
/// and move on. Never a lock-out:
/// - **add → switch** puts the new password in use (clients get it). Each lagging unit is
///   probed first: if its workload answers and refuses the new password, nothing is forced
///   and the action fails naming it (clients sent there would be refused). A unit that does
///   not answer serves no client now; when it comes back it renders the current secret and
///   applies it to its running workloads ([`apply_and_ack`]: an excused unit still owes its
///   acknowledgement, and after the rotation `<generation>:done`, see
///   [`Rotation::owed_ack`]).
/// - **switch → drop** still waits for `password-rotation-grace` after the switch: that
///   protects client applications, which no unit acknowledgement covers. A lagging unit
///   that still sends the old password itself (replication, sentinel) loses only its own
///   links until it catches up.
/// - **drop → done** is bookkeeping.
///
/// `Ok(Err(why))` when there is nothing to force or forcing would lock clients out.
pub fn force_rotation(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
) -> Result<Result<Forced, String>, HandlerError> {
    if let Outcome::Waiting(msg) = leader_step(charm, fw)? {
        return Ok(Err(msg));
    }
    let topo = charm.topology(fw)?.clone();
    let (Some(rel), Some(pw), Some(uri)) = (
        topo.peer_relation,
        topo.peer.passwords.clone(),
        topo.peer.passwords_secret.clone(),
    ) else {
        return Ok(Err("the passwords are not available yet".into()));
    };
    let Some(mut rot) = topo.peer.rotation.clone().filter(Rotation::active) else {
        return Ok(Err(
            "no password rotation is in progress: there is nothing to force (run set-password \
             without force to start one)"
                .into(),
        ));
    };
    let lagging = lagging_units(fw, rel, &rot)?;
    if lagging.is_empty() {
        let grace = charm
            .config(fw)
            .map(|c| c.password_rotation_grace)
            .unwrap_or(300);
        let left = rot.since.saturating_add(grace).saturating_sub(unix_now());
        return Ok(Err(match rot.phase {
            Phase::Switch if left > 0 => format!(
                "every unit has applied the switch; the old {} password is dropped when the \
                 password-rotation-grace period ends ({left}s left): force does not shorten it \
                 (client applications may still use the old password)",
                rot.user.as_str()
            ),
            phase => format!(
                "no unit holds the rotation up (phase {}); it moves on at the next hook",
                phase.as_str()
            ),
        }));
    }
    if rot.phase == Phase::Add {
        let new = pw.user(rot.user).next.clone().unwrap_or_default();
        let port = match rot.user {
            User::Admin => REDIS_PORT,
            User::Sentinel => SENTINEL_PORT,
        };
        let domain = charm
            .config(fw)
            .map(|c| c.cluster_domain.clone())
            .unwrap_or_else(|_| "cluster.local".into());
        let mut refusing = Vec::new();
        for unit in &lagging {
            let host = if *unit == fw.ctx.unit_name {
                own_address(&topo)
            } else {
                crate::peers::unit_fqdn(unit, &fw.ctx.model_name, &domain)
            };
            match probe(&host, port, &new) {
                Probe::Accepts => {
                    tracing::info!(%unit, "forced rotation: the unit accepts the new password")
                }
                Probe::Unreachable(why) => {
                    tracing::info!(%unit, %why, "forced rotation: the unit does not answer")
                }
                Probe::Refuses(why) => {
                    tracing::warn!(%unit, %why, "forced rotation: the unit refuses the new password");
                    refusing.push(unit.clone());
                }
            }
        }
        if !refusing.is_empty() {
            return Ok(Err(format!(
                "not forced: {} answer(s) but refuse the new {} password; switching now would \
                 lock out clients connecting there. Let the unit apply it (its log says why it \
                 cannot), or stop it, then force again",
                refusing.join(", "),
                rot.user.as_str()
            )));
        }
    }
    tracing::warn!(
        phase = rot.phase.as_str(),
        excused = ?lagging,
        "password rotation forced past units that did not acknowledge"
    );
    rot.excused.extend(lagging.iter().cloned());
    rot.excused.sort();
    rot.excused.dedup();
    write_rotation(charm, fw, rel, &uri, &rot, &pw, &pw)?;
    apply_and_ack(charm, fw, true)?;
    advance_rotation(charm, fw, rel)?;
    apply_and_ack(charm, fw, false)?;
    let after = charm.topology(fw)?.peer.rotation.clone().unwrap_or(rot);
    Ok(Ok(Forced {
        rotation: after,
        excused: lagging,
    }))
}

/// Bring this unit's running Redis and Sentinel to the passwords of the secret (ACL rules,
/// `masterauth`, `sentinel-pass`, `auth-pass`), and acknowledge the rotation phase once they
/// match. Runs when a rotation waits for this unit, or with `force` (config changes, a new
/// leader); otherwise costs nothing.
pub fn apply_and_ack(
    charm: &mut RedisK8sCharm,
    fw: &mut Framework<'_>,
    force: bool,
) -> Result<(), HandlerError> {
    let topo = charm.topology(fw)?.clone();
    let (Some(pw), Some(rel)) = (topo.peer.passwords.clone(), topo.peer_relation) else {
        return Ok(());
    };
    let own = fw
        .model()
        .relation_data(rel, &fw.ctx.unit_name, false)?
        .get(KEY_ROTATION_ACK)
        .cloned();
    let want = topo
        .peer
        .rotation
        .as_ref()
        .and_then(|r| r.owed_ack(own.as_deref()));
    let owed = want.is_some();
    let force = force
        || matches!(
            fw.ctx.event,
            Event::ConfigChanged | Event::UpgradeCharm | Event::LeaderElected
        );
    if !owed && !force {
        return Ok(());
    }
    let no_auth = charm.config(fw).map(|c| c.allow_no_auth).unwrap_or(false);
    let host = own_address(&topo);
    let redis = apply_redis(&*fw.container(REDIS_CONTAINER), &host, &pw, no_auth);
    let sentinel = apply_sentinel(
        &*fw.container(SENTINEL_CONTAINER),
        &host,
        &fw.ctx.app_name,
        &pw,
    );
    match (&redis, &sentinel) {
        (Ok(()), Ok(())) => {
            if let (true, Some(want)) = (owed, want) {
                let mut changes = BTreeMap::new();
                changes.insert(KEY_ROTATION_ACK.to_string(), want.clone());
                fw.model().update_relation_data(rel, false, &changes)?;
                tracing::info!(ack = %want, "applied password rotation phase");
            }
        }
        _ => {
            tracing::info!(
                redis = ?redis.err(),
                sentinel = ?sentinel.err(),
                "passwords not applied yet"
            );
        }
    }
    Ok(())
}

/// Why a workload does not match the passwords yet.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0} is not running and its config file does not carry the passwords")]
    NotRunning(&'static str),
    #[error("Pebble: {0}")]
    Pebble(String),
    #[error(transparent)]
    Redis(#[from] RedisCallError),
}

fn running(pebble: &dyn Pebble, service: &str) -> Result<bool, ApplyError> {
    pebble
        .services(&[service])
        .map(|s| s.iter().any(|i| i.is_running()))
        .map_err(|e| ApplyError::Pebble(e.to_string()))
}

/// Does the config file carry every accepted password's hash? (For a service that is not
/// running: it will start with that file.)
fn file_has(pebble: &dyn Pebble, path: &str, needles: &[String]) -> bool {
    pebble
        .pull(path)
        .map(|b| {
            let text = String::from_utf8_lossy(&b);
            needles.iter().all(|n| text.contains(n.as_str()))
        })
        .unwrap_or(false)
}

/// Connect with the first accepted password that works (the one in use first).
fn connect_any(host: &str, port: u16, cred: &Credential) -> Result<RedisConn, RedisCallError> {
    let mut last = None;
    for pw in cred.accepted() {
        match RedisConn::connect(host, port, Some(pw)) {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RedisCallError::Unreachable {
        host: host.into(),
        port,
        message: "no password to try".into(),
    }))
}

/// `ACL GETUSER default`: its password hashes and whether it has `nopass`.
fn default_user(conn: &mut RedisConn) -> Result<(BTreeSet<String>, bool), RedisCallError> {
    let reply = conn.command(&["ACL", "GETUSER", "default"])?;
    let pairs: Vec<(String, redis::Value)> = match reply {
        redis::Value::Array(items) => items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (value_to_string(&c[0]), c[1].clone()))
            .collect(),
        redis::Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| (value_to_string(&k), v))
            .collect(),
        _ => Vec::new(),
    };
    let list = |v: &redis::Value| -> Vec<String> {
        match v {
            redis::Value::Array(items) | redis::Value::Set(items) => {
                items.iter().map(value_to_string).collect()
            }
            _ => Vec::new(),
        }
    };
    let mut hashes = BTreeSet::new();
    let mut nopass = false;
    for (k, v) in &pairs {
        match k.as_str() {
            "passwords" => hashes.extend(list(v)),
            "flags" => nopass = list(v).iter().any(|f| f == "nopass"),
            _ => {}
        }
    }
    Ok((hashes, nopass))
}

/// Set the `default` user's passwords to exactly `hashes` (or `nopass`) when they differ.
/// Returns whether it changed anything.
fn set_default_user(
    conn: &mut RedisConn,
    hashes: &[String],
    no_auth: bool,
) -> Result<bool, RedisCallError> {
    let (have, nopass) = default_user(conn)?;
    let want: BTreeSet<String> = hashes.iter().cloned().collect();
    if no_auth {
        if nopass {
            return Ok(false);
        }
        conn.command(&["ACL", "SETUSER", "default", "on", "nopass"])?;
        return Ok(true);
    }
    if !nopass && have == want {
        return Ok(false);
    }
    let rules: Vec<String> = hashes.iter().map(|h| format!("#{h}")).collect();
    let mut words = vec!["ACL", "SETUSER", "default", "on", "resetpass"];
    words.extend(rules.iter().map(String::as_str));
    conn.command(&words)?;
    Ok(true)
}

/// Redis: the `default` user accepts exactly the secret's admin passwords (or anyone with
/// `allow-no-auth`), and `masterauth` is the one in use.
pub fn apply_redis(
    pebble: &dyn Pebble,
    host: &str,
    pw: &Passwords,
    no_auth: bool,
) -> Result<(), ApplyError> {
    let hashes = pw.admin.hashes();
    if !running(pebble, REDIS_SERVICE)? {
        let needles: Vec<String> = if no_auth {
            vec!["nopass".into()]
        } else {
            hashes.iter().map(|h| format!("#{h}")).collect()
        };
        return if file_has(pebble, REDIS_CONFIG_PATH, &needles) {
            Ok(())
        } else {
            Err(ApplyError::NotRunning("redis"))
        };
    }
    let mut conn = connect_any(host, REDIS_PORT, &pw.admin)?;
    let mut changed = set_default_user(&mut conn, &hashes, no_auth)?;
    if changed {
        tracing::info!(
            passwords = hashes.len(),
            no_auth,
            "updated Redis's default user"
        );
    }
    let current = value_to_map(&conn.command(&["CONFIG", "GET", "master*"])?);
    if current.get("masterauth") != Some(&pw.admin.current) {
        conn.command(&["CONFIG", "SET", "masterauth", &pw.admin.current])?;
        tracing::info!("updated Redis's masterauth");
        changed = true;
    }
    // `AUTH default <pw>` from a replica works whether the primary has `nopass` or not.
    if current.get("masteruser").map(String::as_str) != Some("default") {
        conn.command(&["CONFIG", "SET", "masteruser", "default"])?;
        changed = true;
    }
    if changed {
        // A restart before the charm next renders redis.conf (a container restart in the
        // middle of a rotation) keeps what was applied: Redis writes it to its config file.
        conn.command(&["CONFIG", "REWRITE"])?;
    }
    Ok(())
}

/// Sentinel: its `default` user accepts exactly the secret's sentinel passwords;
/// `sentinel-pass` (to the other sentinels) and `auth-pass` (to Redis) are the ones in use.
/// Sentinel persists each change in its own config file.
///
/// The same for the two-unit witness ([`crate::witness`]) when it runs on this unit: it
/// renders the passwords only when it starts, so without this, after a rotation's drop it
/// could neither reach Redis (`auth-pass`) nor the other sentinels (`sentinel-pass`), nor
/// they it: a two-unit deployment would lose the third vote its failover needs. A witness
/// that is not running needs nothing (it renders the secret when it starts).
pub fn apply_sentinel(
    pebble: &dyn Pebble,
    host: &str,
    app: &str,
    pw: &Passwords,
) -> Result<(), ApplyError> {
    let hashes = pw.sentinel.hashes();
    if !running(pebble, SENTINEL_SERVICE)? {
        let needles: Vec<String> = hashes.iter().map(|h| format!("#{h}")).collect();
        if !file_has(pebble, SENTINEL_CONFIG_PATH, &needles) {
            return Err(ApplyError::NotRunning("sentinel"));
        }
    } else {
        apply_running_sentinel(pebble, host, SENTINEL_PORT, SENTINEL_CONFIG_PATH, app, pw)?;
    }
    if running(pebble, crate::witness::WITNESS_SERVICE)? {
        apply_running_sentinel(
            pebble,
            host,
            crate::witness::WITNESS_PORT,
            crate::witness::WITNESS_CONFIG_PATH,
            app,
            pw,
        )?;
    }
    Ok(())
}

/// [`apply_sentinel`] on the running sentinel at `host:port` whose config file is `config`.
fn apply_running_sentinel(
    pebble: &dyn Pebble,
    host: &str,
    port: u16,
    config: &str,
    app: &str,
    pw: &Passwords,
) -> Result<(), ApplyError> {
    let hashes = pw.sentinel.hashes();
    let mut conn = connect_any(host, port, &pw.sentinel)?;
    if set_default_user(&mut conn, &hashes, false)? {
        conn.command(&["SENTINEL", "FLUSHCONFIG"])?;
        tracing::info!(
            passwords = hashes.len(),
            port,
            "updated Sentinel's default user"
        );
    }
    let cfg = value_to_map(&conn.command(&["SENTINEL", "CONFIG", "GET", "sentinel-pass"])?);
    if cfg.get("sentinel-pass") != Some(&pw.sentinel.current) {
        conn.command(&[
            "SENTINEL",
            "CONFIG",
            "SET",
            "sentinel-pass",
            &pw.sentinel.current,
        ])?;
        tracing::info!("updated Sentinel's sentinel-pass");
    }
    // Sentinel does not report auth-pass / auth-user; its own config file (which it
    // rewrites) does.
    let file = pebble
        .pull(config)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let has = |line: String| file.lines().any(|l| l.trim() == line);
    if !has(format!("sentinel auth-pass {app} {}", pw.admin.current)) {
        conn.command(&["SENTINEL", "SET", app, "auth-pass", &pw.admin.current])?;
        tracing::info!("updated Sentinel's auth-pass");
    }
    // `AUTH default <pw>` to Redis works whether it has `nopass` (allow-no-auth) or not.
    if !has(format!("sentinel auth-user {app} default")) {
        conn.command(&["SENTINEL", "SET", app, "auth-user", "default"])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw() -> Passwords {
        Passwords::new("admin-old", "sentinel-old")
    }

    #[test]
    fn content_round_trips_and_debug_hides_passwords() {
        let mut p = pw();
        p.admin.next = Some("admin-new".into());
        let c = p.to_content();
        assert_eq!(c["redis-password"], "admin-old");
        assert_eq!(c["redis-password-next"], "admin-new");
        assert!(!c.contains_key("redis-password-previous"));
        assert_eq!(Passwords::from_content(&c).unwrap(), p);
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("admin-") && !dbg.contains("sentinel-old"),
            "{dbg}"
        );
    }

    #[test]
    fn junk_content_is_an_error_not_a_default() {
        let mut c = BTreeMap::new();
        assert_eq!(
            Passwords::from_content(&c),
            Err(PasswordError::Missing("redis-password"))
        );
        c.insert("redis-password".into(), "ok".into());
        c.insert("sentinel-password".into(), "has space".into());
        assert!(matches!(
            Passwords::from_content(&c),
            Err(PasswordError::Invalid { .. })
        ));
    }

    #[test]
    fn a_rotation_goes_add_switch_drop_done_with_the_grace_period() {
        let (rot, p) = start(None, &pw(), User::Admin, "admin-new", 100).unwrap();
        assert_eq!((rot.generation, rot.phase), (1, Phase::Add));
        assert_eq!(p.admin.accepted(), vec!["admin-old", "admin-new"]);
        assert_eq!(p.admin.current, "admin-old", "nothing uses the new one yet");

        let (rot, p) = next_step(&rot, &p, 110, 300).unwrap();
        assert_eq!(rot.phase, Phase::Switch);
        assert_eq!(p.admin.current, "admin-new");
        assert_eq!(p.admin.accepted(), vec!["admin-new", "admin-old"]);
        assert!(p.sentinel == pw().sentinel, "the other user is untouched");

        assert_eq!(next_step(&rot, &p, 409, 300), None, "grace not over");
        let (rot, p) = next_step(&rot, &p, 410, 300).unwrap();
        assert_eq!(rot.phase, Phase::Drop);
        assert_eq!(p.admin.accepted(), vec!["admin-new"]);
        let (rot, p2) = next_step(&rot, &p, 411, 300).unwrap();
        assert_eq!(rot.phase, Phase::Done);
        assert_eq!(p2, p);
        assert_eq!(next_step(&rot, &pw(), 500, 0), None);

        // The next rotation gets the next generation.
        let (rot2, _) = start(Some(&rot), &pw(), User::Sentinel, "s-new", 600).unwrap();
        assert_eq!((rot2.generation, rot2.user), (2, User::Sentinel));
    }

    #[test]
    fn a_second_rotation_or_a_bad_password_is_refused() {
        let (rot, p) = start(None, &pw(), User::Admin, "admin-new", 1).unwrap();
        assert!(start(Some(&rot), &p, User::Sentinel, "x-new", 2)
            .unwrap_err()
            .contains("in progress"));
        assert!(start(None, &pw(), User::Admin, "admin-old", 2).is_err());
        assert!(start(None, &pw(), User::Admin, "with space", 2).is_err());
        assert!(start(None, &pw(), User::Admin, "", 2).is_err());
    }

    #[test]
    fn hashes_are_redis_acl_hashes() {
        assert_eq!(
            Credential::new("oldpw").hashes(),
            vec!["95bdf37e29ffb5511aa878b04661bee69a1bcf59a5284f38fa120294b17f3cdc"]
        );
    }

    #[test]
    fn rotation_record_parses_and_junk_is_ignored() {
        let r = Rotation {
            generation: 3,
            user: User::Sentinel,
            phase: Phase::Switch,
            since: 42,
            excused: Vec::new(),
        };
        assert_eq!(Rotation::from_json(&r.to_json()), Some(r.clone()));
        assert!(!r.to_json().contains("excused"), "absent when empty");
        assert_eq!(r.ack_value(), "3:switch");
        assert_eq!(Rotation::from_json("{junk"), None);
        // A record written before forcing existed still parses; excused units round-trip.
        let old = r#"{"generation":3,"user":"sentinel","phase":"switch","since":42}"#;
        assert_eq!(Rotation::from_json(old), Some(r.clone()));
        let forced = Rotation {
            excused: vec!["redis-k8s/2".into()],
            ..r
        };
        assert_eq!(Rotation::from_json(&forced.to_json()), Some(forced));
    }

    #[test]
    fn units_owe_the_running_phase_and_stragglers_catch_up_after_the_rotation() {
        let rot = |phase| Rotation {
            generation: 4,
            user: User::Admin,
            phase,
            since: 0,
            excused: vec!["redis-k8s/2".into()],
        };
        // While it runs: the current phase, whatever the unit acked before (excused or not).
        let add = rot(Phase::Add);
        assert_eq!(add.owed_ack(None).as_deref(), Some("4:add"));
        assert_eq!(add.owed_ack(Some("3:drop")).as_deref(), Some("4:add"));
        assert_eq!(add.owed_ack(Some("4:add")), None);
        assert_eq!(
            rot(Phase::Switch).owed_ack(Some("4:add")).as_deref(),
            Some("4:switch")
        );
        // Done: units that acked the drop are current; anyone else (forced past, joined
        // later, an older generation) applies the secret once and acks done.
        let done = rot(Phase::Done);
        assert_eq!(done.owed_ack(Some("4:drop")), None);
        assert_eq!(done.owed_ack(Some("4:done")), None);
        assert_eq!(done.owed_ack(Some("4:add")).as_deref(), Some("4:done"));
        assert_eq!(done.owed_ack(Some("3:drop")).as_deref(), Some("4:done"));
        assert_eq!(done.owed_ack(None).as_deref(), Some("4:done"));
    }
}
