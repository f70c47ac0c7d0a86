//! Log forwarding: the plan's `type: loki` log targets get the services' output, the way
//! Pebble's log manager sends it (`internals/overlord/logstate`, `loki` client).
//!
//! - One forwarder per loki target, created when a layer adds it and dropped (after a last
//!   flush) when the target goes or its location changes. It receives only lines written
//!   after it exists, like Pebble's pullers, which start at the tail of each service's buffer.
//! - A line goes to a target when the target's `services` select the service
//!   ([`LogTarget::logs_to`]: `all`, names, `-name`, `-all`, the last match deciding).
//! - Buffered lines are sent every second, or at once when 1000 are waiting, as one
//!   `POST <location>` with `Content-Type: application/json; charset=utf-8`, `User-Agent:
//!   pebble/<version>` and the body `{"streams":[{"stream":{<labels>,"pebble_service":"<svc>"},
//!   "values":[["<unix ns>","<line>"],...]}]}`, one stream per service (sorted by name), 10 s
//!   timeout. The target's `labels` come first, `$VAR`/`${VAR}` taken from the service's
//!   environment; Pebble's `pebble_service` is set last.
//! - Outcome, as Pebble: 2xx drops the sent lines; 429, 5xx and connection errors keep them
//!   for the next tick; any other 4xx drops them (retrying cannot help). While the receiver
//!   is down at most [`MAX_BUFFERED`] lines are kept (oldest dropped first).
//!
//! Only `http://` locations are sent to (the local model has no TLS client); other target
//! types and schemes are accepted in the plan and ignored here, with a log line.

use crate::ops::pebble::{LogTarget, Plan};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Pebble's gatherer tick: buffered lines are sent this often.
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);
/// A request carries at most this many lines (and a full buffer is sent at once).
pub const MAX_REQUEST_ENTRIES: usize = 1000;
/// Lines kept for a receiver that does not accept them.
pub const MAX_BUFFERED: usize = 10 * MAX_REQUEST_ENTRIES;
/// Pebble's request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a removed target's last flush may take.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines queued between the services and one forwarder before new ones are dropped.
const QUEUE: usize = 4096;

/// Why a layer's log targets are refused (`POST /v1/layers` answers 400 with the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("layer {label:?} must define \"override\" for log target {target:?}")]
    Override { label: String, target: String },
    #[error("cannot parse layer {label:?}: log target {target:?} is not a mapping of the log target fields")]
    Shape { label: String, target: String },
    #[error("log target {target:?} has unsupported type {kind:?}, must be \"loki\", \"opentelemetry\" or \"syslog\"")]
    Type { target: String, kind: String },
}

/// Check a layer's log targets as Pebble does before accepting the layer.
pub fn validate_layer(
    label: &str,
    log_targets: &BTreeMap<String, serde_yaml::Value>,
) -> Result<(), TargetError> {
    for (name, value) in log_targets {
        let t = LogTarget::from_value(value).ok_or_else(|| TargetError::Shape {
            label: label.to_string(),
            target: name.clone(),
        })?;
        match t.r#override.as_deref() {
            Some("merge") | Some("replace") => {}
            _ => {
                return Err(TargetError::Override {
                    label: label.to_string(),
                    target: name.clone(),
                })
            }
        }
        match t.target_type.as_deref() {
            None | Some("loki") | Some("opentelemetry") | Some("syslog") => {}
            Some(other) => {
                return Err(TargetError::Type {
                    target: name.clone(),
                    kind: other.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// One service output line on its way to a target.
#[derive(Debug, Clone)]
struct Entry {
    service: String,
    time: SystemTime,
    line: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Forwarder {
    target: LogTarget,
    tx: mpsc::Sender<Entry>,
}

/// The daemon's forwarders, by target name (kept in the server's locked state).
#[derive(Debug, Default)]
pub(crate) struct Forwarding {
    targets: BTreeMap<String, Forwarder>,
}

impl Forwarding {
    /// Follow a new plan: start forwarders for new loki targets (or moved ones), drop those
    /// whose target is gone. Must run inside the server's runtime.
    pub fn plan_changed(&mut self, plan: &Plan, container: &str) {
        let wanted: BTreeMap<String, LogTarget> = plan
            .log_targets
            .iter()
            .filter_map(|(name, v)| LogTarget::from_value(v).map(|t| (name.clone(), t)))
            .filter(|(name, t)| {
                let usable = t.target_type.as_deref() == Some("loki")
                    && t.location.as_deref().is_some_and(|l| l.starts_with("http://"));
                if !usable && t.services.iter().any(|s| !s.starts_with('-')) {
                    tracing::warn!(container, target = %name, "log target not forwarded here (only loki over http://)");
                }
                usable
            })
            .collect();
        // Dropping a forwarder closes its queue: it sends what it has, then ends.
        self.targets.retain(|name, f| {
            wanted
                .get(name)
                .is_some_and(|t| t.location == f.target.location)
        });
        for (name, target) in wanted {
            if let Some(f) = self.targets.get_mut(&name) {
                f.target = target;
                continue;
            }
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                tracing::warn!(container, target = %name, "no runtime: log target not forwarded");
                continue;
            };
            let (tx, rx) = mpsc::channel(QUEUE);
            let location = target.location.clone().unwrap_or_default();
            rt.spawn(run(name.clone(), location, rx));
            self.targets.insert(name, Forwarder { target, tx });
        }
    }

    /// Hand one output line of `service` to every target that takes it.
    pub fn line(&self, plan: &Plan, service: &str, line: &str, time: SystemTime) {
        if self.targets.is_empty() {
            return;
        }
        let env = plan.services.get(service).map(|s| &s.environment);
        for f in self.targets.values() {
            if !f.target.logs_to(service) {
                continue;
            }
            let labels = f
                .target
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), expand(v, env)))
                .collect();
            // A full queue (receiver stuck for long): the line is dropped, not the service.
            let _ = f.tx.try_send(Entry {
                service: service.to_string(),
                time,
                line: line.to_string(),
                labels,
            });
        }
    }

    /// Names of the targets being forwarded to.
    #[cfg(test)]
    pub fn active(&self) -> Vec<String> {
        self.targets.keys().cloned().collect()
    }
}

/// `$VAR` and `${VAR}` from the service's environment (unset: empty), as Go's `os.Expand`.
fn expand(value: &str, env: Option<&BTreeMap<String, String>>) -> String {
    let lookup = |k: &str| env.and_then(|e| e.get(k)).cloned().unwrap_or_default();
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            if let Some(end) = inner.find('}') {
                out.push_str(&lookup(&inner[..end]));
                rest = &inner[end + 1..];
                continue;
            }
            out.push('$');
            rest = after;
            continue;
        }
        let n = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if n == 0 {
            out.push('$');
        } else {
            out.push_str(&lookup(&after[..n]));
        }
        rest = &after[n..];
    }
    out.push_str(rest);
    out
}

/// The push body: one stream per (service, label set), services sorted, lines in order.
fn body(entries: &[Entry]) -> serde_json::Value {
    let mut streams: Vec<(BTreeMap<String, String>, Vec<serde_json::Value>)> = Vec::new();
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.service.cmp(&b.service));
    for e in sorted {
        let mut labels = e.labels.clone();
        labels.insert("pebble_service".into(), e.service.clone());
        let ns = e
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let value = serde_json::json!([ns.to_string(), e.line.trim_end_matches('\n')]);
        match streams.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, values)) => values.push(value),
            None => streams.push((labels, vec![value])),
        }
    }
    serde_json::json!({
        "streams": streams
            .into_iter()
            .map(|(stream, values)| serde_json::json!({"stream": stream, "values": values}))
            .collect::<Vec<_>>()
    })
}

/// What became of one push.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// 2xx, or a 4xx that retrying cannot fix: the lines are done with.
    Done,
    /// Try again at the next tick.
    Retry(String),
}

/// `http://host[:port][/path]` → (host, port, path).
fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().ok()?),
                None => (h, 80),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 80),
        },
    };
    let host = host.to_string();
    (!host.is_empty()).then_some((host, port, path.to_string()))
}

async fn post(location: &str, json: &[u8]) -> Sent {
    let Some((host, port, path)) = split_url(location) else {
        return Sent::Done;
    };
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json; charset=utf-8\r\nUser-Agent: pebble/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            super::PEBBLE_VERSION,
            json.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(json).await?;
        let mut resp = Vec::new();
        let mut buf = [0u8; 1024];
        // The status line is all we need; stop reading after a little.
        while !resp.windows(2).any(|w| w == b"\r\n") && resp.len() < 8192 {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            resp.extend_from_slice(&buf[..n]);
        }
        Ok::<Vec<u8>, std::io::Error>(resp)
    };
    let resp = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Sent::Retry(e.to_string()),
        Err(_) => return Sent::Retry("timed out".into()),
    };
    let status = String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(200..=299) => Sent::Done,
        Some(429) | Some(500..=599) => {
            Sent::Retry(format!("server returned HTTP {}", status.unwrap_or(0)))
        }
        Some(code @ 400..=499) => {
            tracing::info!(location, code, "log push refused: dropping its lines");
            Sent::Done
        }
        _ => Sent::Retry("unexpected response from server".into()),
    }
}

/// Send what is buffered (up to one request's worth at a time).
async fn flush(name: &str, location: &str, buf: &mut Vec<Entry>) {
    while !buf.is_empty() {
        let n = buf.len().min(MAX_REQUEST_ENTRIES);
        let json = serde_json::to_vec(&body(&buf[..n])).unwrap_or_default();
        match post(location, &json).await {
            Sent::Done => {
                buf.drain(..n);
            }
            Sent::Retry(why) => {
                tracing::debug!(target = name, error = %why, "error sending logs; retrying");
                if buf.len() > MAX_BUFFERED {
                    let excess = buf.len() - MAX_BUFFERED;
                    buf.drain(..excess);
                }
                return;
            }
        }
    }
}

/// One target's gatherer: collect, send every tick or when a request is full, and send the
/// rest once the target is gone.
async fn run(name: String, location: String, mut rx: mpsc::Receiver<Entry>) {
    let mut buf: Vec<Entry> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            e = rx.recv() => match e {
                Some(e) => {
                    buf.push(e);
                    if buf.len() >= MAX_REQUEST_ENTRIES {
                        flush(&name, &location, &mut buf).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&name, &location, &mut buf).await,
        }
    }
    let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, flush(&name, &location, &mut buf)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pebble::Service;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    fn target(location: &str, services: &[&str], labels: &[(&str, &str)]) -> serde_yaml::Value {
        LogTarget {
            r#override: Some("replace".into()),
            target_type: Some("loki".into()),
            location: Some(location.into()),
            services: services.iter().map(|s| s.to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
        .to_value()
    }

    /// A push receiver answering `codes` in turn (then 204); records the bodies it took.
    fn receiver(codes: Vec<u16>) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/loki/api/v1/push", l.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let got2 = got.clone();
        std::thread::spawn(move || {
            let mut codes = codes.into_iter();
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0;
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                assert!(first.starts_with("POST /loki/api/v1/push "), "{first}");
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut b = vec![0; len];
                r.read_exact(&mut b).unwrap();
                let code = codes.next().unwrap_or(204);
                if code / 100 == 2 {
                    got2.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&b).unwrap());
                }
                let _ = write!(s, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        (url, got)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn wait_for(got: &Arc<Mutex<Vec<serde_json::Value>>>, n: usize, rt: &tokio::runtime::Runtime) {
        rt.block_on(async {
            for _ in 0..100 {
                if got.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    #[test]
    fn selected_services_lines_arrive_as_loki_streams_with_labels() {
        let (url, got) = receiver(vec![]);
        let mut plan = Plan::default();
        let mut svc = Service::default();
        svc.environment.insert("OWNER".into(), "alice".into());
        plan.services.insert("a".into(), svc);
        plan.services.insert("b".into(), Service::default());
        plan.log_targets.insert(
            "loki/0".into(),
            target(
                &url,
                &["all", "-b"],
                &[("juju_unit", "x/0"), ("owner", "user-$OWNER")],
            ),
        );
        let rt = rt();
        let mut f = Forwarding::default();
        rt.block_on(async { f.plan_changed(&plan, "c") });
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        f.line(&plan, "a", "hello", t0);
        f.line(&plan, "b", "not me", t0);
        f.line(&plan, "a", "again\n", t0);
        wait_for(&got, 1, &rt);
        let got = got.lock().unwrap();
        assert_eq!(
            got[0],
            serde_json::json!({"streams": [{
                "stream": {"juju_unit": "x/0", "owner": "user-alice", "pebble_service": "a"},
                "values": [["1700000000123456789", "hello"], ["1700000000123456789", "again"]],
            }]})
        );
    }

    #[test]
    fn a_failing_receiver_gets_the_lines_again_and_a_removed_target_nothing_new() {
        let (url, got) = receiver(vec![503, 500]);
        let mut plan = Plan::default();
        plan.services.insert("a".into(), Service::default());
        plan.log_targets
            .insert("t".into(), target(&url, &["a"], &[]));
        let rt = rt();
        let mut f = Forwarding::default();
        rt.block_on(async { f.plan_changed(&plan, "c") });
        f.line(&plan, "a", "kept", SystemTime::now());
        wait_for(&got, 1, &rt);
        assert_eq!(got.lock().unwrap()[0]["streams"][0]["values"][0][1], "kept");

        // Switched off the way the charm does it: nothing more is sent.
        plan.log_targets
            .insert("t".into(), target("(removed)", &["-all"], &[]));
        rt.block_on(async { f.plan_changed(&plan, "c") });
        assert!(f.active().is_empty());
        f.line(&plan, "a", "late", SystemTime::now());
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(1500)).await });
        assert_eq!(got.lock().unwrap().len(), 1);
    }

    #[test]
    fn layers_need_override_and_a_known_type() {
        let mut t = BTreeMap::new();
        t.insert("x".to_string(), target("http://h/p", &["all"], &[]));
        assert_eq!(validate_layer("l", &t), Ok(()));
        let mut bad = LogTarget::from_value(&t["x"]).unwrap();
        bad.r#override = None;
        t.insert("x".into(), bad.to_value());
        assert!(matches!(
            validate_layer("l", &t),
            Err(TargetError::Override { .. })
        ));
        bad.r#override = Some("merge".into());
        bad.target_type = Some("splunk".into());
        t.insert("x".into(), bad.to_value());
        assert!(matches!(
            validate_layer("l", &t),
            Err(TargetError::Type { .. })
        ));
    }

    #[test]
    fn urls_and_env_expansion() {
        assert_eq!(
            split_url("http://10.1.2.3:3100/loki/api/v1/push"),
            Some(("10.1.2.3".into(), 3100, "/loki/api/v1/push".into()))
        );
        assert_eq!(
            split_url("http://loki"),
            Some(("loki".into(), 80, "/".into()))
        );
        assert_eq!(split_url("https://loki"), None);
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x-$A-${A}-$B-$-${", Some(&env)), "x-1-1--$-${");
    }
}
