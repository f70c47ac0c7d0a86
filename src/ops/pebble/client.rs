//! The real Pebble client: HTTP/1.1 over the container's unix socket.
//!
//! Deliberately synchronous (std `UnixStream`, no async runtime): the charm binary runs once per
//! hook and must start in milliseconds, and a hook makes a handful of sequential requests.
//! One connection per request with `Connection: close`, as the simplest correct use of Pebble's
//! Go HTTP server. Responses may come with `Content-Length` or chunked, so both are parsed.
//!
//! The wire formats (envelope, files multipart, change waiting) follow section 4 of the runtime
//! contract and what Python ops' `pebble.Client` does, so a charm sees the same behaviour.

use super::multipart::{multipart_boundary, new_boundary, parse_multipart, write_multipart, Part};
use super::types::{
    go_duration, Change, ChangeSelect, CheckAction, CheckInfo, CheckLevel, Envelope, ErrorResult,
    FileInfo, Layer, Notice, PathResult, Plan, ServiceAction, ServiceInfo, SystemInfo,
};
use super::{MakeDirOptions, NoticesQuery, Pebble, PebbleError, PebbleResult, PushOptions};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// ops' per-request socket timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest single server-side wait slice (ops uses 4 s so each request stays under the
/// socket timeout).
const WAIT_SLICE: Duration = Duration::from_secs(4);
/// Added to a wait request's server-side timeout to get its socket read timeout.
const WAIT_MARGIN: Duration = Duration::from_secs(5);
/// Poll period when the server has no wait endpoint.
const POLL_PERIOD: Duration = Duration::from_millis(100);
/// Refuse absurd header blocks instead of growing without bound on bad input.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Requests made by all clients of this process (see [`PebbleClient::total_requests`]).
static TOTAL_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A Pebble client on one unix socket. Cheap to clone; clones share the request counter.
#[derive(Debug, Clone)]
pub struct PebbleClient {
    pub socket: PathBuf,
    /// Number of HTTP requests attempted, shared between clones (benchmarks report it).
    requests: Arc<AtomicU64>,
}

impl PebbleClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many HTTP requests this client (and its clones) has made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How many HTTP requests every client in this process has made: a hook's total, even
    /// when a provider hands out a fresh client per call.
    pub fn total_requests() -> u64 {
        TOTAL_REQUESTS.load(Ordering::Relaxed)
    }

    // ---- transport --------------------------------------------------------------------------

    /// Send one request on a fresh connection and read the whole response.
    fn send(&self, req: &HttpRequest<'_>) -> PebbleResult<HttpResponse> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        TOTAL_REQUESTS.fetch_add(1, Ordering::Relaxed);
        let socket = self.socket.display().to_string();
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| {
            let message = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("socket not found (container restarted?): {e}")
                }
                _ => e.to_string(),
            };
            PebbleError::Connection {
                socket: socket.clone(),
                message,
            }
        })?;
        let io_err = |e: std::io::Error, what: &str| -> PebbleError {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                PebbleError::Timeout(format!("{what} {} {}", req.method, req.target))
            } else {
                PebbleError::Connection {
                    socket: socket.clone(),
                    message: format!("{what}: {e}"),
                }
            }
        };
        stream
            .set_write_timeout(Some(REQUEST_TIMEOUT))
            .and_then(|_| stream.set_read_timeout(Some(req.read_timeout)))
            .map_err(|e| io_err(e, "configuring socket"))?;
        let bytes = req.to_bytes();
        stream
            .write_all(&bytes)
            .and_then(|_| stream.flush())
            .map_err(|e| io_err(e, "sending request"))?;
        let mut reader = BufReader::new(stream);
        read_response(&mut reader).map_err(|e| match e {
            ReadError::Io(e) => io_err(e, "reading response"),
            ReadError::Malformed(m) => PebbleError::Protocol(m),
        })
    }

    /// A JSON request: returns the envelope, or `Api` for an error envelope.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> PebbleResult<Envelope> {
        self.call_with_timeout(method, path, query, body, REQUEST_TIMEOUT)
    }

    fn call_with_timeout(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        read_timeout: Duration,
    ) -> PebbleResult<Envelope> {
        let body_bytes = match body {
            Some(v) => serde_json::to_vec(v)
                .map_err(|e| PebbleError::Protocol(format!("cannot encode request: {e}")))?,
            None => Vec::new(),
        };
        let mut headers = vec![("Accept", "application/json".to_string())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json".to_string()));
        }
        let req = HttpRequest {
            method,
            target: with_query(path, query),
            headers,
            body: body_bytes,
            read_timeout,
        };
        let resp = self.send(&req)?;
        parse_envelope(resp.status, &resp.body)
    }

    /// A JSON request whose `result` is decoded into `T` (`null` → `T::default()` when allowed).
    fn call_result<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> PebbleResult<T> {
        let env = self.call(method, path, query, body)?;
        decode_result(env.result, path)
    }

    /// POST /v1/files with a JSON body and check every per-path result.
    fn files_json(&self, body: &Value) -> PebbleResult<()> {
        let env = self.call("POST", "/v1/files", &[], Some(body))?;
        check_path_results(env.result)
    }

    /// One server-side wait slice: `Ok(Some)` when ready, `Ok(None)` on 504.
    fn wait_slice(&self, id: &str, slice: Duration) -> PebbleResult<Option<Change>> {
        let path = format!("/v1/changes/{}/wait", encode(id));
        match self.call_with_timeout(
            "GET",
            &path,
            &[("timeout", go_duration(slice))],
            None,
            slice + WAIT_MARGIN,
        ) {
            Ok(env) => decode_result(env.result, &path).map(Some),
            Err(PebbleError::Api {
                status_code: 504, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fallback for a Pebble without the wait endpoint: poll the change.
    fn poll_change(&self, id: &str, deadline: Instant) -> PebbleResult<Change> {
        loop {
            let change = self.change(id)?;
            if change.ready {
                return Ok(change);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PebbleError::Timeout(format!(
                    "change {id} not ready in time"
                )));
            }
            std::thread::sleep(POLL_PERIOD.min(deadline - now));
        }
    }
}

impl Pebble for PebbleClient {
    fn system_info(&self) -> PebbleResult<SystemInfo> {
        self.call_result("GET", "/v1/system-info", &[], None)
    }

    fn health(&self, level: Option<CheckLevel>, names: &[&str]) -> PebbleResult<bool> {
        let mut q = Vec::new();
        if let Some(l) = level {
            q.push(("level", level_str(l).to_string()));
        }
        if !names.is_empty() {
            q.push(("names", names.join(",")));
        }
        // A 502 with a sync envelope is Pebble's "unhealthy", not an error.
        let env = self.call("GET", "/v1/health", &q, None)?;
        let healthy = env
            .result
            .get("healthy")
            .and_then(Value::as_bool)
            .unwrap_or(env.status_code < 300);
        Ok(healthy && env.status_code < 300)
    }

    fn add_layer(&self, label: &str, layer: &Layer, combine: bool) -> PebbleResult<()> {
        let body = json!({
            "action": "add",
            "label": label,
            "format": "yaml",
            "layer": layer.to_yaml(),
            "combine": combine,
        });
        self.call("POST", "/v1/layers", &[], Some(&body))
            .map(|_| ())
    }

    fn get_plan(&self) -> PebbleResult<Plan> {
        let env = self.call("GET", "/v1/plan", &[("format", "yaml".to_string())], None)?;
        let text = match &env.result {
            Value::String(s) => s.as_str(),
            Value::Null => "",
            other => {
                return Err(PebbleError::Protocol(format!(
                    "plan result is not a YAML string: {other}"
                )))
            }
        };
        Layer::from_yaml(text).map_err(|e| PebbleError::Protocol(format!("cannot parse plan: {e}")))
    }

    fn services(&self, names: &[&str]) -> PebbleResult<Vec<ServiceInfo>> {
        let q = names_query(names);
        self.call_result("GET", "/v1/services", &q, None)
    }

    fn service_action(&self, action: ServiceAction, names: &[&str]) -> PebbleResult<String> {
        let body = json!({"action": action.as_str(), "services": names});
        let env = self.call("POST", "/v1/services", &[], Some(&body))?;
        env.change.filter(|c| !c.is_empty()).ok_or_else(|| {
            PebbleError::Protocol(format!(
                "service {} response has no change id",
                action.as_str()
            ))
        })
    }

    fn send_signal(&self, signal: &str, services: &[&str]) -> PebbleResult<()> {
        let body = json!({"signal": signal, "services": services});
        self.call("POST", "/v1/signals", &[], Some(&body))
            .map(|_| ())
    }

    fn changes(&self, select: ChangeSelect, service: Option<&str>) -> PebbleResult<Vec<Change>> {
        let mut q = vec![("select", select.as_str().to_string())];
        if let Some(s) = service {
            q.push(("for", s.to_string()));
        }
        self.call_result("GET", "/v1/changes", &q, None)
    }

    fn change(&self, id: &str) -> PebbleResult<Change> {
        self.call_result("GET", &format!("/v1/changes/{}", encode(id)), &[], None)
    }

    fn wait_change(&self, id: &str, timeout: Duration) -> PebbleResult<Change> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < Duration::from_millis(1) {
                // A zero timeout would mean "forever" to Pebble: ask once instead.
                let change = self.change(id)?;
                if change.ready {
                    return Ok(change);
                }
                return Err(PebbleError::Timeout(format!(
                    "change {id} not ready after {}",
                    go_duration(timeout)
                )));
            }
            match self.wait_slice(id, remaining.min(WAIT_SLICE)) {
                Ok(Some(change)) => return Ok(change),
                Ok(None) => continue,
                // Very old Pebble has no wait endpoint; an unknown change also 404s there, and
                // then the first poll reports that 404 itself.
                Err(PebbleError::Api {
                    status_code: 404, ..
                }) => return self.poll_change(id, deadline),
                Err(PebbleError::Timeout(_)) if Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn abort_change(&self, id: &str) -> PebbleResult<Change> {
        let body = json!({"action": "abort"});
        self.call_result(
            "POST",
            &format!("/v1/changes/{}", encode(id)),
            &[],
            Some(&body),
        )
    }

    fn push(&self, path: &str, content: &[u8], opts: &PushOptions) -> PebbleResult<()> {
        let mut meta = Map::new();
        meta.insert("path".into(), json!(path));
        if opts.make_dirs {
            meta.insert("make-dirs".into(), json!(true));
        }
        if let Some(p) = opts.permissions {
            meta.insert("permissions".into(), json!(permissions_str(path, p)?));
        }
        add_owner(
            &mut meta,
            &opts.user,
            opts.user_id,
            &opts.group,
            opts.group_id,
        );
        let request = json!({"action": "write", "files": [Value::Object(meta)]});
        let request = serde_json::to_vec(&request)
            .map_err(|e| PebbleError::Protocol(format!("cannot encode request: {e}")))?;
        let boundary = new_boundary();
        let body = write_multipart(
            &boundary,
            &[
                Part::json("request", &request),
                Part::file("files", path, content),
            ],
        );
        let req = HttpRequest {
            method: "POST",
            target: "/v1/files".to_string(),
            headers: vec![
                ("Accept", "application/json".to_string()),
                (
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                ),
            ],
            body,
            read_timeout: REQUEST_TIMEOUT,
        };
        let resp = self.send(&req)?;
        let env = parse_envelope(resp.status, &resp.body)?;
        check_path_results(env.result)
    }

    fn pull(&self, path: &str) -> PebbleResult<Vec<u8>> {
        let req = HttpRequest {
            method: "GET",
            target: with_query(
                "/v1/files",
                &[("action", "read".to_string()), ("path", path.to_string())],
            ),
            headers: vec![("Accept", "multipart/form-data".to_string())],
            body: Vec::new(),
            read_timeout: REQUEST_TIMEOUT,
        };
        let resp = self.send(&req)?;
        let content_type = resp.header("content-type").unwrap_or_default();
        let Some(boundary) = multipart_boundary(content_type) else {
            // Errors (bad request, ...) come back as a plain JSON envelope.
            parse_envelope(resp.status, &resp.body)?;
            return Err(PebbleError::Protocol(format!(
                "expected a multipart response to a read, got {content_type:?}"
            )));
        };
        let parts = parse_multipart(&resp.body, &boundary).map_err(PebbleError::Protocol)?;
        let response = parts
            .iter()
            .find(|p| p.name.as_deref() == Some("response"))
            .ok_or_else(|| {
                PebbleError::Protocol("read response has no \"response\" part".into())
            })?;
        let env = parse_envelope(resp.status, &response.body)?;
        check_path_results(env.result)?;
        parts
            .into_iter()
            .filter(|p| p.name.as_deref() == Some("files"))
            .find(|p| p.filename.as_deref().is_none_or(|f| f == path))
            .map(|p| p.body)
            .ok_or_else(|| PebbleError::Protocol(format!("no file content for path {path:?}")))
    }

    fn list_files(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> PebbleResult<Vec<FileInfo>> {
        let mut q = vec![("action", "list".to_string()), ("path", path.to_string())];
        if let Some(p) = pattern {
            q.push(("pattern", p.to_string()));
        }
        if itself {
            q.push(("itself", "true".to_string()));
        }
        self.call_result("GET", "/v1/files", &q, None)
    }

    fn make_dir(&self, path: &str, opts: &MakeDirOptions) -> PebbleResult<()> {
        let mut dir = Map::new();
        dir.insert("path".into(), json!(path));
        if opts.make_parents {
            dir.insert("make-parents".into(), json!(true));
        }
        if let Some(p) = opts.permissions {
            dir.insert("permissions".into(), json!(permissions_str(path, p)?));
        }
        add_owner(
            &mut dir,
            &opts.user,
            opts.user_id,
            &opts.group,
            opts.group_id,
        );
        self.files_json(&json!({"action": "make-dirs", "dirs": [Value::Object(dir)]}))
    }

    fn remove_path(&self, path: &str, recursive: bool) -> PebbleResult<()> {
        let mut p = Map::new();
        p.insert("path".into(), json!(path));
        if recursive {
            p.insert("recursive".into(), json!(true));
        }
        self.files_json(&json!({"action": "remove", "paths": [Value::Object(p)]}))
    }

    fn checks(&self, level: Option<CheckLevel>, names: &[&str]) -> PebbleResult<Vec<CheckInfo>> {
        let mut q = Vec::new();
        if let Some(l) = level {
            q.push(("level", level_str(l).to_string()));
        }
        q.extend(names_query(names));
        self.call_result("GET", "/v1/checks", &q, None)
    }

    fn check_action(&self, action: CheckAction, names: &[&str]) -> PebbleResult<Vec<String>> {
        let action = match action {
            CheckAction::Start => "start",
            CheckAction::Stop => "stop",
        };
        let body = json!({"action": action, "checks": names});
        let env = self.call("POST", "/v1/checks", &[], Some(&body))?;
        // Older Pebble answers `null`.
        match env.result.get("changed") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| PebbleError::Protocol(format!("bad checks response: {e}"))),
        }
    }

    fn notify(
        &self,
        key: &str,
        data: &BTreeMap<String, String>,
        repeat_after: Option<Duration>,
    ) -> PebbleResult<String> {
        let mut body = json!({"action": "add", "type": "custom", "key": key});
        if !data.is_empty() {
            body["data"] = json!(data);
        }
        if let Some(r) = repeat_after {
            body["repeat-after"] = json!(go_duration(r));
        }
        let env = self.call("POST", "/v1/notices", &[], Some(&body))?;
        env.result
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| PebbleError::Protocol("notice response has no id".into()))
    }

    fn notices(&self, query: &NoticesQuery) -> PebbleResult<Vec<Notice>> {
        let mut q = Vec::new();
        if query.all_users {
            q.push(("users", "all".to_string()));
        }
        if !query.types.is_empty() {
            q.push(("types", query.types.join(",")));
        }
        if !query.keys.is_empty() {
            q.push(("keys", query.keys.join(",")));
        }
        if let Some(after) = &query.after {
            q.push(("after", after.clone()));
        }
        self.call_result("GET", "/v1/notices", &q, None)
    }

    fn notice(&self, id: &str) -> PebbleResult<Notice> {
        self.call_result("GET", &format!("/v1/notices/{}", encode(id)), &[], None)
    }
}

// ---- request helpers ------------------------------------------------------------------------

fn level_str(level: CheckLevel) -> &'static str {
    match level {
        CheckLevel::Alive => "alive",
        CheckLevel::Ready => "ready",
    }
}

fn names_query(names: &[&str]) -> Vec<(&'static str, String)> {
    if names.is_empty() {
        Vec::new()
    } else {
        vec![("names", names.join(","))]
    }
}

/// Pebble wants exactly three octal digits; anything beyond 0o777 cannot be expressed.
fn permissions_str(path: &str, p: u32) -> PebbleResult<String> {
    if p > 0o777 {
        return Err(PebbleError::Path {
            path: path.to_string(),
            kind: "generic-file-error".into(),
            message: format!("permissions {p:o} are not three octal digits"),
        });
    }
    Ok(format!("{p:03o}"))
}

fn add_owner(
    m: &mut Map<String, Value>,
    user: &Option<String>,
    user_id: Option<u32>,
    group: &Option<String>,
    group_id: Option<u32>,
) {
    if let Some(u) = user {
        m.insert("user".into(), json!(u));
    }
    if let Some(u) = user_id {
        m.insert("user-id".into(), json!(u));
    }
    if let Some(g) = group {
        m.insert("group".into(), json!(g));
    }
    if let Some(g) = group_id {
        m.insert("group-id".into(), json!(g));
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_query(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

struct HttpRequest<'a> {
    method: &'a str,
    /// Path and query.
    target: String,
    headers: Vec<(&'a str, String)>,
    body: Vec<u8>,
    read_timeout: Duration,
}

impl HttpRequest<'_> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: redis-k8s\r\nConnection: close\r\n",
            self.method, self.target
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

// ---- response parsing -----------------------------------------------------------------------

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
enum ReadError {
    Io(std::io::Error),
    Malformed(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Read one CRLF (or LF) terminated line, without the terminator; bounded in length.
fn read_line<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<String, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(ReadError::Malformed(
            "connection closed mid-response".into(),
        ));
    }
    if n > *budget {
        return Err(ReadError::Malformed("response header too long".into()));
    }
    *budget -= n;
    if buf.last() != Some(&b'\n') {
        return Err(ReadError::Malformed("connection closed mid-line".into()));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| ReadError::Malformed("non-UTF-8 header line".into()))
}

/// Parse an HTTP/1.1 response: status line, headers, then a body framed by `Content-Length`,
/// `Transfer-Encoding: chunked`, or the end of the connection.
fn read_response<R: BufRead>(r: &mut R) -> Result<HttpResponse, ReadError> {
    let mut budget = MAX_HEADER_BYTES;
    let status_line = read_line(r, &mut budget)?;
    let mut it = status_line.splitn(3, ' ');
    let version = it.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed(format!(
            "bad status line {status_line:?}"
        )));
    }
    let status: u16 = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ReadError::Malformed(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| ReadError::Malformed(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = find("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut budget = MAX_HEADER_BYTES;
            let size_line = read_line(r, &mut budget)?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| ReadError::Malformed(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line (or EOF from a terse server).
                loop {
                    match read_line(r, &mut budget) {
                        Ok(l) if l.is_empty() => break,
                        Ok(_) => continue,
                        Err(ReadError::Malformed(_)) => break,
                        Err(e) => return Err(e),
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(ReadError::Malformed("chunk not followed by CRLF".into()));
            }
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Malformed(format!("bad Content-Length {len:?}")))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        r.read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Decode the JSON envelope; an `error` envelope becomes [`PebbleError::Api`].
fn parse_envelope(status: u16, body: &[u8]) -> PebbleResult<Envelope> {
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(env) => env,
        // A proxy or a crashed handler may answer an error without an envelope.
        Err(_) if status >= 400 => {
            return Err(PebbleError::Api {
                status_code: status,
                kind: String::new(),
                message: String::from_utf8_lossy(body)
                    .trim()
                    .chars()
                    .take(500)
                    .collect(),
            })
        }
        Err(e) => {
            return Err(PebbleError::Protocol(format!(
                "cannot decode response (HTTP {status}): {e}"
            )))
        }
    };
    if env.kind == "error" {
        let err: ErrorResult = serde_json::from_value(env.result.clone()).unwrap_or_default();
        return Err(PebbleError::Api {
            status_code: if env.status_code != 0 {
                env.status_code
            } else {
                status
            },
            kind: err.kind,
            message: err.message,
        });
    }
    Ok(env)
}

fn decode_result<T: serde::de::DeserializeOwned>(result: Value, what: &str) -> PebbleResult<T> {
    // Pebble omits an empty list's `result` or sends `null`; let list types default to empty.
    let result = if result.is_null() {
        Value::Array(Vec::new())
    } else {
        result
    };
    serde_json::from_value(result.clone())
        .or_else(|first| {
            // `null` meant "nothing", but the target may not be a list after all.
            if result == Value::Array(Vec::new()) {
                serde_json::from_value(Value::Null).map_err(|_| first)
            } else {
                Err(first)
            }
        })
        .map_err(|e| PebbleError::Protocol(format!("unexpected result from {what}: {e}")))
}

/// The files API reports per-path failures inside a 200: the first one becomes an error.
fn check_path_results(result: Value) -> PebbleResult<()> {
    if result.is_null() {
        return Ok(());
    }
    let results: Vec<PathResult> = serde_json::from_value(result)
        .map_err(|e| PebbleError::Protocol(format!("bad files response: {e}")))?;
    for r in results {
        if let Some(err) = r.error {
            return Err(PebbleError::Path {
                path: r.path,
                kind: err.kind,
                message: err.message,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> HttpResponse {
        read_response(&mut &bytes[..]).expect("parses")
    }

    #[test]
    fn content_length_response_reads_exactly_the_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"b\"}XXXXtrailing";
        let r = parse(raw);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{\"a\":\"b\"}XXXX");
    }

    #[test]
    fn chunked_response_is_reassembled_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n";
        let r = parse(raw);
        assert_eq!(r.body, b"hello, world");
    }

    #[test]
    fn chunked_body_with_bad_size_is_a_protocol_error() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
        assert!(matches!(
            read_response(&mut &raw[..]),
            Err(ReadError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_content_length_body_is_an_io_error() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
        assert!(matches!(
            read_response(&mut &raw[..]),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn body_without_framing_reads_to_eof() {
        let r = parse(b"HTTP/1.1 200 OK\r\n\r\n{\"x\":1}");
        assert_eq!(r.body, b"{\"x\":1}");
    }

    #[test]
    fn garbage_status_line_is_rejected() {
        assert!(matches!(
            read_response(&mut &b"SSH-2.0-OpenSSH\r\n\r\n"[..]),
            Err(ReadError::Malformed(_))
        ));
    }

    #[test]
    fn error_envelope_becomes_api_error() {
        let body = br#"{"type":"error","status-code":404,"status":"Not Found","result":{"message":"cannot find change with id \"9\"","kind":"not-found"}}"#;
        match parse_envelope(404, body) {
            Err(PebbleError::Api {
                status_code,
                kind,
                message,
            }) => {
                assert_eq!(status_code, 404);
                assert_eq!(kind, "not-found");
                assert_eq!(message, "cannot find change with id \"9\"");
            }
            other => panic!("expected Api error, got {other:?}"),
        }
    }

    #[test]
    fn error_envelope_without_kind_has_empty_kind() {
        let body = br#"{"type":"error","status-code":400,"status":"Bad Request","result":{"message":"layer \"x\" already exists"}}"#;
        let err = parse_envelope(400, body).unwrap_err();
        assert!(
            matches!(err, PebbleError::Api { status_code: 400, ref kind, .. } if kind.is_empty())
        );
    }

    #[test]
    fn non_json_error_body_is_still_an_api_error_with_the_status() {
        let err = parse_envelope(502, b"Bad Gateway").unwrap_err();
        assert!(matches!(
            err,
            PebbleError::Api {
                status_code: 502,
                ..
            }
        ));
    }

    #[test]
    fn sync_502_health_envelope_is_not_an_error() {
        let body = br#"{"type":"sync","status-code":502,"status":"Bad Gateway","result":{"healthy":false}}"#;
        let env = parse_envelope(502, body).expect("sync envelope");
        assert_eq!(env.result["healthy"], Value::Bool(false));
    }

    #[test]
    fn async_envelope_carries_the_change_id() {
        let body =
            br#"{"type":"async","status-code":202,"status":"Accepted","change":"42","result":null}"#;
        assert_eq!(
            parse_envelope(202, body).unwrap().change.as_deref(),
            Some("42")
        );
    }

    #[test]
    fn per_path_errors_become_path_errors() {
        let result = json!([{"path": "/a"}, {"path": "/b/c", "error": {"kind": "not-found", "message": "open /b/c.x~: no such file or directory"}}]);
        match check_path_results(result) {
            Err(PebbleError::Path { path, kind, .. }) => {
                assert_eq!(path, "/b/c");
                assert_eq!(kind, "not-found");
            }
            other => panic!("expected Path error, got {other:?}"),
        }
        assert!(check_path_results(json!([{"path": "/a"}])).is_ok());
    }

    #[test]
    fn null_result_decodes_as_empty_list() {
        let v: Vec<CheckInfo> = decode_result(Value::Null, "checks").unwrap();
        assert!(v.is_empty());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            with_query(
                "/v1/files",
                &[("path", "/etc/a b&c".into()), ("pattern", "*.conf".into())]
            ),
            "/v1/files?path=%2Fetc%2Fa%20b%26c&pattern=%2A.conf"
        );
    }

    #[test]
    fn request_bytes_carry_host_close_and_length() {
        let req = HttpRequest {
            method: "POST",
            target: "/v1/services".into(),
            headers: vec![("Content-Type", "application/json".into())],
            body: b"{}".to_vec(),
            read_timeout: REQUEST_TIMEOUT,
        };
        let text = String::from_utf8(req.to_bytes()).unwrap();
        assert!(text.starts_with("POST /v1/services HTTP/1.1\r\nHost: localhost\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn connecting_to_a_missing_socket_is_a_connection_error() {
        let dir = tempfile::tempdir().unwrap();
        let client = PebbleClient::new(dir.path().join("nope.socket"));
        let err = client.system_info().unwrap_err();
        assert!(err.is_connection(), "{err:?}");
        let total = PebbleClient::total_requests();
        assert!(!client.can_connect());
        assert_eq!(client.requests(), 2);
        assert!(PebbleClient::total_requests() > total);
    }

    /// A scripted server on a unix socket: answers each request with `respond(request line)`
    /// and records the request lines. Stops when dropped.
    struct FakeServer {
        dir: tempfile::TempDir,
        seen: Arc<std::sync::Mutex<Vec<String>>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeServer {
        fn start(respond: impl Fn(&str, &[u8]) -> Vec<u8> + Send + 'static) -> FakeServer {
            let dir = tempfile::tempdir().unwrap();
            let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (seen2, stop2) = (seen.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { return };
                    let mut r = BufReader::new(conn);
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        continue;
                    }
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    let _ = r.read_exact(&mut body);
                    let line = line.trim().to_string();
                    seen2.lock().unwrap().push(line.clone());
                    let _ = r.get_mut().write_all(&respond(&line, &body));
                }
            });
            FakeServer {
                dir,
                seen,
                stop,
                thread: Some(thread),
            }
        }
        fn client(&self) -> PebbleClient {
            PebbleClient::new(self.dir.path().join("s"))
        }
        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = UnixStream::connect(self.dir.path().join("s"));
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn json_response(status: u16, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn chunked_json_response(status: u16, body: &str) -> Vec<u8> {
        let (a, b) = body.split_at(body.len() / 2);
        format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
        .into_bytes()
    }

    const CHANGE_DONE: &str = r#"{"type":"sync","status-code":200,"status":"OK","result":{"id":"7","kind":"replan","summary":"Replan - no services","status":"Done","ready":true,"spawn-time":"2024-01-01T00:00:00Z","tasks":[]}}"#;
    const WAIT_504: &str = r#"{"type":"error","status-code":504,"status":"Gateway Timeout","result":{"message":"timed out waiting for change after 4s"}}"#;
    const NOT_FOUND: &str = r#"{"type":"error","status-code":404,"status":"Not Found","result":{"message":"not found"}}"#;

    #[test]
    fn wait_change_slices_through_504s_until_ready() {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let server = FakeServer::start(move |_, _| {
            if n2.fetch_add(1, Ordering::SeqCst) < 2 {
                json_response(504, WAIT_504)
            } else {
                chunked_json_response(200, CHANGE_DONE)
            }
        });
        let change = server
            .client()
            .wait_change("7", Duration::from_secs(30))
            .unwrap();
        assert_eq!(change.id, "7");
        assert!(change.ready);
        let seen = server.seen();
        assert_eq!(seen.len(), 3);
        // Each slice asks the server for at most 4 s.
        assert!(seen
            .iter()
            .all(|l| l.starts_with("GET /v1/changes/7/wait?timeout=4.000s ")));
    }

    #[test]
    fn wait_change_times_out_at_the_overall_deadline() {
        let server = FakeServer::start(|line, _| {
            if line.contains("/wait") {
                std::thread::sleep(Duration::from_millis(100));
                json_response(504, WAIT_504)
            } else {
                json_response(
                    200,
                    &CHANGE_DONE.replace(r#""ready":true"#, r#""ready":false"#),
                )
            }
        });
        let started = Instant::now();
        let err = server
            .client()
            .wait_change("7", Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(err, PebbleError::Timeout(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let seen = server.seen();
        // Sliced waits, then one final look at the change.
        assert!(seen[0].contains("/wait?timeout=0.3"), "{seen:?}");
        assert!(seen.last().unwrap().starts_with("GET /v1/changes/7 "));
    }

    #[test]
    fn wait_change_falls_back_to_polling_without_a_wait_endpoint() {
        let polls = Arc::new(AtomicU64::new(0));
        let polls2 = polls.clone();
        let server = FakeServer::start(move |line, _| {
            if line.contains("/wait") {
                json_response(404, NOT_FOUND)
            } else if polls2.fetch_add(1, Ordering::SeqCst) < 2 {
                json_response(
                    200,
                    &CHANGE_DONE.replace(r#""ready":true"#, r#""ready":false"#),
                )
            } else {
                json_response(200, CHANGE_DONE)
            }
        });
        let started = Instant::now();
        let client = server.client();
        let change = client.wait_change("7", Duration::from_secs(10)).unwrap();
        assert!(change.ready);
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        // One wait attempt, then three polls with two 100 ms pauses between them.
        assert_eq!(client.requests(), 4);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn push_sends_multipart_that_parses_back_to_metadata_and_content() {
        let captured = Arc::new(std::sync::Mutex::new(Vec::new()));
        let cap2 = captured.clone();
        let server = FakeServer::start(move |_, body| {
            cap2.lock().unwrap().extend_from_slice(body);
            json_response(
                200,
                r#"{"type":"sync","status-code":200,"status":"OK","result":[{"path":"/etc/a b.conf"}]}"#,
            )
        });
        let opts = PushOptions {
            make_dirs: true,
            permissions: Some(0o600),
            user: Some("redis".into()),
            group_id: Some(105),
            ..PushOptions::default()
        };
        server
            .client()
            .push("/etc/a b.conf", b"secret\r\n", &opts)
            .unwrap();
        let body = captured.lock().unwrap().clone();
        // The boundary is the first line.
        let first = body.split(|b| *b == b'\r').next().unwrap();
        let boundary = std::str::from_utf8(&first[2..]).unwrap().to_string();
        assert!(boundary.len() >= 32);
        let parts = parse_multipart(&body, &boundary).unwrap();
        assert_eq!(parts.len(), 2);
        let meta: Value = serde_json::from_slice(&parts[0].body).unwrap();
        assert_eq!(
            meta,
            json!({"action": "write", "files": [{"path": "/etc/a b.conf", "make-dirs": true,
                   "permissions": "600", "user": "redis", "group-id": 105}]})
        );
        assert_eq!(parts[1].filename.as_deref(), Some("/etc/a b.conf"));
        assert_eq!(parts[1].body, b"secret\r\n");
        assert!(server.seen()[0].starts_with("POST /v1/files "));
    }

    #[test]
    fn pull_reads_the_files_part_and_reports_per_path_errors() {
        let server = FakeServer::start(|line, _| {
            let (files, result) = if line.contains("missing") {
                (
                    String::new(),
                    r#"[{"path":"/missing","error":{"kind":"not-found","message":"stat /missing: no such file or directory"}}]"#,
                )
            } else {
                (
                    "--XYZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"/etc/x\"\r\n\r\nhello\r\n".to_string(),
                    r#"[{"path":"/etc/x"}]"#,
                )
            };
            let body = format!(
                "{files}--XYZ\r\nContent-Disposition: form-data; name=\"response\"\r\n\r\n{{\"type\":\"sync\",\"status-code\":200,\"status\":\"OK\",\"result\":{result}}}\r\n--XYZ--\r\n"
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        let client = server.client();
        assert_eq!(client.pull("/etc/x").unwrap(), b"hello");
        let err = client.pull("/missing").unwrap_err();
        assert!(
            matches!(&err, PebbleError::Path { path, kind, .. } if path == "/missing" && kind == "not-found"),
            "{err:?}"
        );
        assert!(server.seen()[0].starts_with("GET /v1/files?action=read&path=%2Fetc%2Fx "));
    }

    #[test]
    fn health_502_sync_is_unhealthy_not_an_error() {
        let server = FakeServer::start(|_, _| {
            json_response(
                502,
                r#"{"type":"sync","status-code":502,"status":"Bad Gateway","result":{"healthy":false}}"#,
            )
        });
        assert!(!server
            .client()
            .health(Some(CheckLevel::Ready), &["a", "b"])
            .unwrap());
        assert!(server.seen()[0].starts_with("GET /v1/health?level=ready&names=a%2Cb "));
    }

    #[test]
    fn permissions_are_three_octal_digits() {
        assert_eq!(permissions_str("/x", 0o640).unwrap(), "640");
        assert_eq!(permissions_str("/x", 0o7).unwrap(), "007");
        assert!(permissions_str("/x", 0o4755).is_err());
    }
}
