//! The HTTP API: accept loop, per-connection keep-alive, and the endpoints with Pebble's
//! envelopes, status codes, error texts and kinds (contract section 4 and addenda 8).

use super::http::{self, Request, Response};
use super::{checks, files, logfwd, notices, services, sys, time, Shared};
use crate::ops::pebble::multipart::{build_multipart, multipart_boundary, parse_multipart, Part};
use crate::ops::pebble::{parse_go_duration, plan as planlib, ErrorResult, Layer, PathResult};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::BufReader;

/// Accept connections until `shutdown` fires, then stop every service.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: std::os::unix::net::UnixListener,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => match acc {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move { connection(shared, stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pebble server accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    services::stop_all(&shared).await;
}

async fn connection(shared: Arc<Shared>, stream: tokio::net::UnixStream) {
    let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let mut req = match http::read_request(&mut rd, &mut wr).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(http::HttpError::Io(_)) => return,
            Err(e) => {
                let resp = error(400, &e.to_string(), "");
                let _ = http::write_response(&mut wr, &resp, true).await;
                return;
            }
        };
        req.peer_uid = peer_uid;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let close = req.wants_close();
        let resp = handle(&shared, &req).await;
        if http::write_response(&mut wr, &resp, close).await.is_err() || close {
            return;
        }
    }
}

// ---- envelopes ----------------------------------------------------------------------------

fn envelope(kind: &str, status: u16, result: &Value, change: Option<&str>) -> Response {
    // Hand-built to keep Pebble's key order: type, status-code, status, [change,] result.
    let mut s = format!(
        "{{\"type\":\"{kind}\",\"status-code\":{status},\"status\":\"{}\"",
        http::reason(status)
    );
    if let Some(c) = change {
        s.push_str(&format!(",\"change\":{}", Value::String(c.into())));
    }
    s.push_str(&format!(",\"result\":{}}}", result));
    Response {
        status,
        content_type: "application/json".into(),
        body: s.into_bytes(),
    }
}

fn sync(result: Value) -> Response {
    envelope("sync", 200, &result, None)
}

fn async_change(change: u64) -> Response {
    envelope("async", 202, &Value::Null, Some(&change.to_string()))
}

fn error(status: u16, message: &str, kind: &str) -> Response {
    let mut r = json!({ "message": message });
    if !kind.is_empty() {
        r["kind"] = json!(kind);
    }
    envelope("error", status, &r, None)
}

fn bad(message: impl AsRef<str>) -> Response {
    error(400, message.as_ref(), "")
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

// ---- routing ------------------------------------------------------------------------------

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Access {
    Open,
    User,
    Admin,
}

fn is_admin(req: &Request) -> bool {
    match req.peer_uid {
        None => true,
        // Root and the daemon's own user are admins, as in Pebble.
        Some(uid) => uid == 0 || uid == sys::euid(),
    }
}

async fn handle(shared: &Arc<Shared>, req: &Request) -> Response {
    let path = req.path.trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let m = req.method.as_str();
    let (access, allowed): (Access, &[&str]) = match segs.as_slice() {
        ["v1", "system-info"] | ["v1", "health"] => (Access::Open, &["GET"]),
        ["v1", "changes"] => (Access::User, &["GET"]),
        ["v1", "changes", _] => (
            if m == "GET" {
                Access::User
            } else {
                Access::Admin
            },
            &["GET", "POST"],
        ),
        ["v1", "changes", _, "wait"] => (Access::User, &["GET"]),
        ["v1", "services"] => (
            if m == "GET" {
                Access::User
            } else {
                Access::Admin
            },
            &["GET", "POST"],
        ),
        ["v1", "plan"] => (Access::Admin, &["GET"]),
        ["v1", "layers"] => (Access::Admin, &["POST"]),
        ["v1", "files"] => (Access::Admin, &["GET", "POST"]),
        ["v1", "checks"] => (
            if m == "GET" {
                Access::User
            } else {
                Access::Admin
            },
            &["GET", "POST"],
        ),
        ["v1", "checks", "refresh"] => (Access::Admin, &["POST"]),
        ["v1", "notices"] => (Access::User, &["GET", "POST"]),
        ["v1", "notices", _] => (Access::User, &["GET"]),
        ["v1", "signals"] => (Access::Admin, &["POST"]),
        ["v1", "exec"] => (Access::Admin, &["POST"]),
        _ => return error(404, "not found", ""),
    };
    if !allowed.contains(&m) {
        return error(405, &format!("method {m:?} not allowed"), "");
    }
    if access == Access::Admin && !is_admin(req) {
        return error(401, "access denied", "login-required");
    }
    match (m, segs.as_slice()) {
        ("GET", ["v1", "system-info"]) => sync(json!({
            "boot-id": shared.boot_id,
            "version": super::PEBBLE_VERSION,
        })),
        ("GET", ["v1", "health"]) => health(shared, req),
        ("GET", ["v1", "changes"]) => get_changes(shared, req),
        ("GET", ["v1", "changes", id]) => get_change(shared, id),
        ("POST", ["v1", "changes", id]) => post_change(shared, id, req),
        ("GET", ["v1", "changes", id, "wait"]) => wait_change(shared, id, req).await,
        ("GET", ["v1", "services"]) => {
            let names = req.query_list("names");
            sync(to_value(&services::infos(&shared.lock(), &names)))
        }
        ("POST", ["v1", "services"]) => post_services(shared, req),
        ("GET", ["v1", "plan"]) => get_plan(shared, req),
        ("POST", ["v1", "layers"]) => post_layers(shared, req),
        ("GET", ["v1", "files"]) => get_files(shared, req),
        ("POST", ["v1", "files"]) => post_files(shared, req),
        ("GET", ["v1", "checks"]) => {
            let names = req.query_list("names");
            sync(to_value(&checks::infos(
                &shared.lock(),
                req.query_first("level"),
                &names,
            )))
        }
        ("POST", ["v1", "checks"]) => post_checks(shared, req),
        ("POST", ["v1", "checks", "refresh"]) => refresh_check(shared, req).await,
        ("GET", ["v1", "notices"]) => get_notices(shared, req).await,
        ("POST", ["v1", "notices"]) => post_notice(shared, req),
        ("GET", ["v1", "notices", id]) => get_notice(shared, id, req),
        ("POST", ["v1", "signals"]) => post_signals(shared, req),
        ("POST", ["v1", "exec"]) => bad("exec is not implemented by the local model's Pebble"),
        _ => error(404, "not found", ""),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| bad(format!("cannot decode request body: {e}")))
}

// ---- health, changes ----------------------------------------------------------------------

fn health(shared: &Shared, req: &Request) -> Response {
    let level = req.query_first("level");
    if let Some(l) = level {
        if !matches!(l, "" | "alive" | "ready") {
            return bad("level must be \"alive\" or \"ready\"");
        }
    }
    let names = req.query_list("names");
    let ok = checks::healthy(&shared.lock(), level, &names);
    if ok {
        sync(json!({ "healthy": true }))
    } else {
        envelope("sync", 502, &json!({ "healthy": false }), None)
    }
}

fn get_changes(shared: &Shared, req: &Request) -> Response {
    let select = req.query_first("select").unwrap_or("in-progress");
    if !matches!(select, "all" | "in-progress" | "ready") {
        return bad("select should be one of: all,in-progress,ready");
    }
    let list = shared.lock().changes.list(select, req.query_first("for"));
    sync(to_value(&list))
}

fn change_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

fn not_found_change(id: &str) -> Response {
    error(
        404,
        &format!("cannot find change with id {id:?}"),
        "not-found",
    )
}

fn get_change(shared: &Shared, id: &str) -> Response {
    let inner = shared.lock();
    match change_id(id).and_then(|i| inner.changes.get(i)) {
        Some(c) => sync(to_value(&c.to_wire())),
        None => not_found_change(id),
    }
}

fn post_change(shared: &Shared, id: &str, req: &Request) -> Response {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        action: String,
    }
    let body: Body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.action != "abort" {
        return bad(format!("change action {:?} is unsupported", body.action));
    }
    let mut inner = shared.lock();
    let Some(c) = change_id(id).and_then(|i| inner.changes.get_mut(i)) else {
        return not_found_change(id);
    };
    if c.status().ready() {
        return bad(format!("cannot abort change {id} with nothing pending"));
    }
    c.aborted = true;
    for t in c
        .tasks
        .iter_mut()
        .filter(|t| t.status == super::changes::Status::Do)
    {
        t.status = super::changes::Status::Hold;
        t.ready = Some(super::now());
    }
    super::changes::ChangeStore::stamp(c);
    let wire = c.to_wire();
    drop(inner);
    shared.changes_updated();
    sync(to_value(&wire))
}

async fn wait_change(shared: &Shared, id: &str, req: &Request) -> Response {
    let timeout = match req.query_first("timeout") {
        None | Some("") => None,
        Some(t) => match parse_go_duration(t) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => return bad(format!("invalid timeout {t:?}")),
        },
    };
    let Some(cid) = change_id(id) else {
        return not_found_change(id);
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut rx = shared.change_tx.subscribe();
    loop {
        {
            let inner = shared.lock();
            match inner.changes.get(cid) {
                None => return not_found_change(id),
                Some(c) if c.status().ready() => return sync(to_value(&c.to_wire())),
                Some(_) => {}
            }
        }
        let changed = rx.changed();
        match deadline {
            None => {
                if changed.await.is_err() {
                    return error(500, "daemon is shutting down", "");
                }
            }
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() || tokio::time::timeout(left, changed).await.is_err() {
                    let t = notices::go_duration_string(timeout.unwrap_or_default());
                    return error(504, &format!("timed out waiting for change after {t}"), "");
                }
            }
        }
    }
}

// ---- services, plan, layers ---------------------------------------------------------------

fn quoted_list(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match q.len() {
        0 => String::new(),
        1 => q[0].clone(),
        n => format!("{} and {}", q[..n - 1].join(", "), q[n - 1]),
    }
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn post_services(shared: &Arc<Shared>, req: &Request) -> Response {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        action: String,
        #[serde(default)]
        services: Vec<String>,
    }
    let body: Body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let action = body.action.as_str();
    let (stops, waves, names) = {
        let inner = shared.lock();
        let plan = &inner.plan;
        match action {
            "start" | "stop" | "restart" => {
                if body.services.is_empty() {
                    return bad(format!("no services to {action} provided"));
                }
                if let Some(n) = body
                    .services
                    .iter()
                    .find(|n| !plan.services.contains_key(*n))
                {
                    return bad(format!("service {n:?} does not exist"));
                }
                match action {
                    "stop" => (
                        services::stop_order(plan, &body.services),
                        vec![],
                        body.services.clone(),
                    ),
                    "start" => match services::start_waves(plan, &body.services) {
                        Ok(w) => (vec![], w, body.services.clone()),
                        Err(e) => return bad(e),
                    },
                    _ => {
                        let up: Vec<String> = body
                            .services
                            .iter()
                            .filter(|n| services::is_up(&inner, n))
                            .cloned()
                            .collect();
                        match services::start_waves(plan, &body.services) {
                            Ok(w) => (services::stop_order(plan, &up), w, body.services.clone()),
                            Err(e) => return bad(e),
                        }
                    }
                }
            }
            "replan" | "autostart" => {
                if !body.services.is_empty() {
                    return bad(format!("{action} accepts no service names"));
                }
                if action == "autostart" {
                    let enabled: Vec<String> = plan
                        .services
                        .iter()
                        .filter(|(_, s)| s.startup.as_deref() == Some("enabled"))
                        .map(|(n, _)| n.clone())
                        .collect();
                    if enabled.is_empty() {
                        return error(400, "no default services", "no-default-services");
                    }
                    match services::start_waves(plan, &enabled) {
                        Ok(w) => (vec![], w, enabled),
                        Err(e) => return bad(e),
                    }
                } else {
                    let (stop, start) = services::replan_sets(&inner);
                    match services::start_waves(plan, &start) {
                        Ok(w) => (services::stop_order(plan, &stop), w, start),
                        Err(e) => return bad(e),
                    }
                }
            }
            other => return bad(format!("action {other:?} is unsupported")),
        }
    };
    let no_tasks = stops.is_empty() && waves.iter().all(Vec::is_empty);
    let summary = if no_tasks {
        format!("{} - no services", title(action))
    } else {
        format!("{} service {}", title(action), quoted_list(&names))
    };
    let mut involved = names.clone();
    involved.extend(stops.iter().cloned());
    involved.sort();
    involved.dedup();
    let id = services::submit_change(shared, action, &summary, &involved, stops, waves);
    async_change(id)
}

/// The combined plan as Pebble shows it: checks carry their default threshold.
fn shown_plan(shared: &Shared) -> crate::ops::pebble::Plan {
    let mut plan = shared.lock().plan.clone();
    for c in plan.checks.values_mut() {
        c.threshold.get_or_insert(checks::DEFAULT_THRESHOLD);
    }
    plan
}

fn get_plan(shared: &Shared, req: &Request) -> Response {
    match req.query_first("format") {
        Some("yaml") => {}
        other => return bad(format!("invalid format {:?}", other.unwrap_or(""))),
    }
    let yaml = serde_yaml::to_string(&shown_plan(shared)).unwrap_or_else(|_| "{}\n".into());
    sync(Value::String(yaml))
}

fn post_layers(shared: &Arc<Shared>, req: &Request) -> Response {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        action: String,
        #[serde(default)]
        label: String,
        #[serde(default)]
        format: String,
        #[serde(default)]
        layer: String,
        #[serde(default)]
        combine: bool,
        #[serde(default)]
        inner: bool,
    }
    let body: Body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let _ = body.inner;
    if body.action != "add" {
        return bad(format!("invalid action {:?}", body.action));
    }
    if body.label.is_empty() {
        return bad("label must be set");
    }
    if body.format != "yaml" {
        return bad(format!("invalid format {:?}", body.format));
    }
    let layer = match Layer::from_yaml(&body.layer) {
        Ok(l) => l,
        Err(e) => return bad(format!("cannot parse layer {:?}: {e}", body.label)),
    };
    {
        let mut inner = shared.lock();
        let mut layers = inner.layers.clone();
        if let Err(e) = logfwd::validate_layer(&body.label, &layer.log_targets) {
            return bad(e.to_string());
        }
        if let Err(e) = planlib::add_layer(&mut layers, &body.label, &layer, body.combine) {
            return bad(e.to_string());
        }
        let plan = planlib::combine_plan(&layers);
        if let Err(e) = planlib::validate_plan(&plan) {
            return bad(e.to_string());
        }
        if let Err(e) =
            services::start_waves(&plan, &plan.services.keys().cloned().collect::<Vec<_>>())
        {
            return bad(e);
        }
        inner.layers = layers;
        inner.plan = plan;
        let inner = &mut *inner;
        inner
            .logfwd
            .plan_changed(&inner.plan, &shared.cfg.container);
    }
    checks::apply_plan(shared);
    sync(Value::Bool(true))
}

// ---- files --------------------------------------------------------------------------------

fn file_error(e: &files::FileError) -> Response {
    error(e.status(), &e.message, e.kind)
}

fn path_result(path: &str, r: Result<(), files::FileError>) -> PathResult {
    PathResult {
        path: path.to_string(),
        error: r.err().map(|e| ErrorResult {
            message: e.message,
            kind: e.kind.to_string(),
            value: None,
        }),
    }
}

fn get_files(shared: &Shared, req: &Request) -> Response {
    let root = &shared.cfg.root;
    match req.query_first("action").unwrap_or("") {
        "list" => {
            let Some(path) = req.query_first("path").filter(|p| !p.is_empty()) else {
                return bad("must specify path");
            };
            let itself = req.query_first("itself") == Some("true");
            match files::list(
                root,
                path,
                req.query_first("pattern").filter(|p| !p.is_empty()),
                itself,
            ) {
                Ok(v) => sync(to_value(&v)),
                Err(e) => file_error(&e),
            }
        }
        "read" => {
            if !req
                .header("accept")
                .is_some_and(|a| a.contains("multipart/form-data"))
            {
                return bad("must accept multipart/form-data");
            }
            let paths: Vec<&str> = req
                .query
                .iter()
                .filter(|(k, _)| k == "path")
                .map(|(_, v)| v.as_str())
                .collect();
            if paths.is_empty() {
                return bad("must specify path");
            }
            let mut parts = Vec::new();
            let mut results = Vec::new();
            for p in paths {
                match files::read(root, p) {
                    Ok(data) => {
                        parts.push(Part::file("files", p, &data));
                        results.push(path_result(p, Ok(())));
                    }
                    Err(e) => results.push(path_result(p, Err(e))),
                }
            }
            let env = envelope("sync", 200, &to_value(&results), None);
            parts.push(Part::json("response", &env.body));
            let (ct, body) = build_multipart(&parts);
            Response {
                status: 200,
                content_type: ct,
                body,
            }
        }
        other => bad(format!("invalid action {other:?}")),
    }
}

fn post_files(shared: &Shared, req: &Request) -> Response {
    let root = &shared.cfg.root;
    let ct = req.header("content-type").unwrap_or("");
    if ct.to_ascii_lowercase().starts_with("multipart/") {
        let Some(boundary) = multipart_boundary(ct) else {
            return bad("invalid boundary in multipart request");
        };
        let parts = match parse_multipart(&req.body, &boundary) {
            Ok(p) => p,
            Err(e) => return bad(format!("cannot read multipart request: {e}")),
        };
        let Some(first) = parts
            .first()
            .filter(|p| p.name.as_deref() == Some("request"))
        else {
            return bad("must include request part first");
        };
        #[derive(Deserialize)]
        struct WriteReq {
            #[serde(default)]
            action: String,
            #[serde(default)]
            files: Vec<files::WriteSpec>,
        }
        let wr: WriteReq = match serde_json::from_slice(&first.body) {
            Ok(w) => w,
            Err(e) => return bad(format!("cannot decode request metadata: {e}")),
        };
        if wr.action != "write" {
            return bad(format!(
                "multipart action must be \"write\", got {:?}",
                wr.action
            ));
        }
        if let Some(s) = wr.files.iter().find(|s| !s.path.starts_with('/')) {
            return bad(format!("paths must be absolute, got {:?}", s.path));
        }
        let mut content: BTreeMap<String, &[u8]> = BTreeMap::new();
        for p in &parts[1..] {
            if p.name.as_deref() != Some("files") {
                return bad(format!("unexpected multipart part {:?}", p.name));
            }
            let f = p.filename.clone().unwrap_or_default();
            if !wr.files.iter().any(|s| s.path == f) {
                return bad(format!("no metadata for path {f:?}"));
            }
            content.insert(f, &p.body);
        }
        let results: Vec<PathResult> = wr
            .files
            .iter()
            .map(|s| {
                let r = match content.get(&s.path) {
                    Some(data) => files::write(root, s, data),
                    None => Err(files::FileError {
                        kind: "generic-file-error",
                        message: format!("no file content for path {:?}", s.path),
                    }),
                };
                path_result(&s.path, r)
            })
            .collect();
        return sync(to_value(&results));
    }
    #[derive(Deserialize)]
    struct RemoveSpec {
        path: String,
        #[serde(default)]
        recursive: bool,
    }
    #[derive(Deserialize)]
    struct JsonReq {
        #[serde(default)]
        action: String,
        #[serde(default)]
        dirs: Vec<files::MkdirSpec>,
        #[serde(default)]
        paths: Vec<RemoveSpec>,
    }
    let body: JsonReq = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match body.action.as_str() {
        "make-dirs" => {
            if let Some(s) = body.dirs.iter().find(|s| !s.path.starts_with('/')) {
                return bad(format!("paths must be absolute, got {:?}", s.path));
            }
            let r: Vec<PathResult> = body
                .dirs
                .iter()
                .map(|d| path_result(&d.path, files::make_dir(root, d)))
                .collect();
            sync(to_value(&r))
        }
        "remove" => {
            if let Some(s) = body.paths.iter().find(|s| !s.path.starts_with('/')) {
                return bad(format!("paths must be absolute, got {:?}", s.path));
            }
            let r: Vec<PathResult> = body
                .paths
                .iter()
                .map(|p| path_result(&p.path, files::remove(root, &p.path, p.recursive)))
                .collect();
            sync(to_value(&r))
        }
        "write" => bad("must use multipart with \"write\" action"),
        other => bad(format!("invalid action {other:?}")),
    }
}

// ---- checks, notices, signals -------------------------------------------------------------

fn post_checks(shared: &Arc<Shared>, req: &Request) -> Response {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        action: String,
        #[serde(default)]
        checks: Vec<String>,
    }
    let body: Body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let start = match body.action.as_str() {
        "start" => true,
        "stop" => false,
        other => return bad(format!("invalid action {other:?}")),
    };
    if body.checks.is_empty() {
        return bad("must specify checks");
    }
    match checks::action(shared, start, &body.checks) {
        Ok(changed) => sync(json!({ "changed": changed })),
        Err(e) => bad(e),
    }
}

async fn refresh_check(shared: &Arc<Shared>, req: &Request) -> Response {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        name: String,
    }
    let body: Body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match checks::refresh(shared, &body.name).await {
        Ok((info, err)) => {
            let mut v = json!({ "info": to_value(&info) });
            if let Some(e) = err {
                v["error"] = json!(e);
            }
            sync(v)
        }
        Err(e) => error(404, &e, "not-found"),
    }
}

fn requester_uid(req: &Request) -> u32 {
    req.peer_uid.unwrap_or_else(sys::euid)
}

async fn get_notices(shared: &Shared, req: &Request) -> Response {
    let admin = is_admin(req);
    let all_users = req.query_first("users") == Some("all");
    if all_users && !admin {
        return error(403, "only admins may use users=all", "");
    }
    if let Some(u) = req.query_first("users") {
        if u != "all" && !u.is_empty() {
            return bad(format!("invalid users value {u:?}"));
        }
    }
    let user = if all_users {
        None
    } else if let Some(id) = req.query_first("user-id") {
        if !admin {
            return error(403, "only admins may use user-id", "");
        }
        match id.parse() {
            Ok(i) => Some(i),
            Err(_) => return bad(format!("invalid user-id {id:?}")),
        }
    } else {
        Some(requester_uid(req))
    };
    let after = match req.query_first("after") {
        None | Some("") => None,
        Some(a) => match time::parse_rfc3339(a) {
            Some(t) => Some(t),
            None => return bad(format!("invalid \"after\" timestamp {a:?}")),
        },
    };
    let filter = notices::Filter {
        types: req.query_list("types"),
        keys: req.query_list("keys"),
        after,
        user,
    };
    let timeout = match req.query_first("timeout") {
        None | Some("") => None,
        Some(t) => match parse_go_duration(t) {
            Some(d) => Some(d),
            None => return bad(format!("invalid timeout {t:?}")),
        },
    };
    let mut rx = shared.notice_tx.subscribe();
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let found = shared.lock().notices.query(&filter);
        if !found.is_empty() {
            return sync(to_value(&found));
        }
        let Some(d) = deadline else {
            return sync(to_value(&found));
        };
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            return sync(json!([]));
        }
    }
}

fn post_notice(shared: &Shared, req: &Request) -> Response {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        action: String,
        #[serde(default, rename = "type")]
        notice_type: String,
        #[serde(default)]
        key: String,
        #[serde(default)]
        data: BTreeMap<String, String>,
        #[serde(default, rename = "repeat-after")]
        repeat_after: Option<String>,
    }
    let body: Body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.action != "add" {
        return bad(format!("invalid action {:?}", body.action));
    }
    if body.notice_type != "custom" {
        return bad(notices::NoticeError::Type(body.notice_type).to_string());
    }
    let repeat_after = match body.repeat_after.as_deref() {
        None | Some("") => None,
        Some(r) => match parse_go_duration(r) {
            Some(d) => Some(d),
            None => return bad(format!("invalid repeat-after {r:?}")),
        },
    };
    let res = shared.lock().notices.add_custom(
        Some(requester_uid(req)),
        &body.key,
        body.data,
        repeat_after,
    );
    match res {
        Ok(id) => {
            shared.notices_updated();
            sync(json!({ "id": id.to_string() }))
        }
        Err(e) => bad(e.to_string()),
    }
}

fn get_notice(shared: &Shared, id: &str, req: &Request) -> Response {
    let nf = || {
        error(
            404,
            &format!("cannot find notice with ID {id:?}"),
            "not-found",
        )
    };
    let Ok(n) = id.parse::<u64>() else {
        return nf();
    };
    let inner = shared.lock();
    let Some(rec) = inner.notices.get(n) else {
        return nf();
    };
    let uid = requester_uid(req);
    if !is_admin(req) && rec.user_id.is_some_and(|u| u != uid) {
        return error(403, "access denied", "");
    }
    sync(to_value(&rec.to_wire()))
}

fn post_signals(shared: &Shared, req: &Request) -> Response {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        signal: String,
        #[serde(default)]
        services: Vec<String>,
    }
    let body: Body = match parse_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(sig) = sys::signal_number(&body.signal) else {
        return bad(format!("invalid signal name {:?}", body.signal));
    };
    if body.services.is_empty() {
        return bad("must specify one or more services");
    }
    let inner = shared.lock();
    let mut errs = Vec::new();
    for n in &body.services {
        match inner.services.get(n).and_then(|s| s.pid) {
            Some(pid) => {
                if let Err(e) = sys::kill_pid(pid, sig) {
                    errs.push(format!("cannot send signal to {n:?}: {e}"));
                }
            }
            None => errs.push(format!(
                "cannot send signal to {n:?}: service is not running"
            )),
        }
    }
    if errs.is_empty() {
        sync(Value::Bool(true))
    } else {
        bad(errs.join("; "))
    }
}
