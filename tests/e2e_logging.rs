//! End to end on the local model: the `logging` relation forwards real redis-server and
//! redis-sentinel log lines to Loki through Pebble log targets, with the Juju topology labels,
//! and stops when the Loki units go, without ever restarting Redis.
//!
//! Loki itself cannot run here (AGPL, not packaged), so the test runs a small Loki push API
//! receiver (HTTP `POST /loki/api/v1/push`, Loki's JSON body) and a one-line shell charm that
//! provides `logging` (interface `loki_push_api`) and publishes the receiver's URL in its
//! unit databag as `endpoint` = `{"url": ...}`, as `LokiPushApiProvider` does.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually_ok, redis, Model, Resp, APP, CHARM_BIN};

const SUBNET: &str = "127.0.53";
const MODEL: &str = "e2elogging";
const LOKI: &str = "loki";

/// One received log line: its stream's labels and the line.
#[derive(Debug, Clone)]
struct Line {
    labels: BTreeMap<String, String>,
    line: String,
}

/// A Loki push API receiver on 127.0.0.1 (an ephemeral port): decodes each push and keeps
/// the lines. Stops accepting when dropped.
struct Receiver {
    url: String,
    lines: Arc<Mutex<Vec<Line>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        l.set_nonblocking(true).unwrap();
        let url = format!(
            "http://{}/loki/api/v1/push",
            l.local_addr().expect("local addr")
        );
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (lines2, stop2) = (lines.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        if let Some(got) = take_push(s) {
                            lines2.lock().unwrap().extend(got);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Receiver { url, lines, stop }
    }

    fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap().clone()
    }

    fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Read one HTTP push, answer 204, and decode Loki's JSON:
/// `{"streams":[{"stream":{labels},"values":[["<ns>","<line>"],...]}]}`.
fn take_push(mut s: std::net::TcpStream) -> Option<Vec<Line>> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let mut len = 0usize;
    let mut json_type = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        json_type |= lower.starts_with("content-type: application/json");
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    assert!(
        first.starts_with("POST /loki/api/v1/push ") && json_type,
        "not a Loki push: {first:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("push body is JSON");
    let mut out = Vec::new();
    for stream in v["streams"].as_array().expect("streams") {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(stream["stream"].clone()).expect("stream labels");
        for value in stream["values"].as_array().expect("values") {
            let ns = value[0].as_str().expect("timestamp string");
            assert!(ns.parse::<u128>().is_ok(), "unix ns: {ns}");
            out.push(Line {
                labels: labels.clone(),
                line: value[1].as_str().expect("line").to_string(),
            });
        }
    }
    Some(out)
}

/// A charm providing `logging` that publishes `url` as its unit's `endpoint`.
fn loki_charm(dir: &Path, url: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("metadata.yaml"),
        "name: loki\nsummary: Loki push API stand-in\ndescription: test\nprovides:\n  logging:\n    interface: loki_push_api\n",
    )
    .unwrap();
    let d = dir.join("dispatch");
    std::fs::write(
        &d,
        format!(
            "#!/bin/sh\ncase \"$JUJU_DISPATCH_PATH\" in\n  hooks/logging-relation-joined) relation-set 'endpoint={{\"url\": \"{url}\"}}' ;;\nesac\nexit 0\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `INFO server`'s `process_id` of the Redis or Sentinel at `addr:port`.
fn server_pid(addr: &str, port: u16, pw: &str) -> i32 {
    let r = redis(addr, port, Some(pw), &[&["INFO", "server"]]).expect("INFO server");
    let text = r[0].text();
    text.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in {text}"))
}

/// Make both servers log a line: a BGSAVE ("Background saving started ...") on Redis, and a
/// `SENTINEL SET` of the current down-after (a `+set` event) on Sentinel.
fn provoke_lines(addr: &str, pw: &str, spw: &str) {
    let _ = redis(addr, 6379, Some(pw), &[&["BGSAVE"]]);
    let master = redis(addr, 26379, Some(spw), &[&["SENTINEL", "MASTER", APP]]);
    let down_after = match master.as_ref().and_then(|m| m.first()) {
        Some(Resp::Array(items)) => items
            .chunks(2)
            .find(|kv| kv[0].text() == "down-after-milliseconds")
            .map(|kv| kv[1].text()),
        _ => None,
    };
    if let Some(ms) = down_after {
        let _ = redis(
            addr,
            26379,
            Some(spw),
            &[&["SENTINEL", "SET", APP, "down-after-milliseconds", &ms]],
        );
    }
}

#[test]
fn redis_and_sentinel_logs_reach_loki_with_juju_labels_and_stop_when_loki_goes() {
    let rx = Receiver::start();
    let m = Model::new(MODEL).with_subnet(SUBNET);
    let loki_dir = m.scratch().join("loki-charm");
    loki_charm(&loki_dir, &rx.url);
    m.ok(&[
        "deploy",
        common::ROOT,
        "--dispatch",
        CHARM_BIN,
        "--subnet",
        SUBNET,
        "--wait",
        "--timeout",
        "120",
    ]);
    m.ok(&["deploy", loki_dir.to_str().unwrap(), "--app", LOKI]);
    let (_, addr) = m.wait_roles(0, None, 60);
    let pw = m.password();
    let spw = m.sentinel_password();
    let redis_pid = server_pid(&addr, 6379, &pw);

    m.ok(&[
        "relate",
        &format!("{APP}:logging"),
        LOKI,
        "--wait",
        "--timeout",
        "60",
    ]);
    let unit = format!("{APP}/0");
    let want_labels = |l: &Line| -> Result<(), String> {
        let get = |k: &str| l.labels.get(k).map(String::as_str).unwrap_or_default();
        let ok = get("juju_model") == MODEL
            && get("juju_application") == APP
            && get("juju_unit") == unit
            && get("charm") == APP
            && get("product") == "Juju"
            && !get("juju_model_uuid").is_empty();
        if ok {
            Ok(())
        } else {
            Err(format!("labels {:?}", l.labels))
        }
    };
    eventually_ok("redis and sentinel lines at the receiver", 30, || {
        provoke_lines(&addr, &pw, &spw);
        std::thread::sleep(Duration::from_millis(1500));
        let lines = rx.lines();
        let from = |svc: &str, text: &str| {
            lines
                .iter()
                .find(|l| {
                    l.labels.get("pebble_service").map(String::as_str) == Some(svc)
                        && l.line.contains(text)
                })
                .cloned()
        };
        let r = from("redis-log", "Background saving started")
            .ok_or_else(|| format!("no redis BGSAVE line yet in {lines:?}"))?;
        let s = from("sentinel", "+set")
            .ok_or_else(|| format!("no sentinel +set line yet in {lines:?}"))?;
        want_labels(&r)?;
        want_labels(&s)
    });
    // The Redis lines are the parity log file's (the tail forwards it; the file keeps them).
    assert_eq!(
        server_pid(&addr, 6379, &pw),
        redis_pid,
        "Redis restarted on relate"
    );
    let secrets = [pw.as_str(), spw.as_str()];
    for l in rx.lines() {
        for s in secrets {
            assert!(!l.line.contains(s) && !l.labels.values().any(|v| v.contains(s)));
        }
    }

    // Loki goes (its units depart): forwarding stops, Redis keeps running as it was.
    m.ok(&["scale", LOKI, "0", "--wait", "--timeout", "60"]);
    std::thread::sleep(Duration::from_millis(2500));
    rx.clear();
    for _ in 0..3 {
        provoke_lines(&addr, &pw, &spw);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let late = rx.lines();
    assert!(late.is_empty(), "lines after Loki left: {late:?}");
    assert_eq!(
        server_pid(&addr, 6379, &pw),
        redis_pid,
        "Redis restarted on removal"
    );
    let log = common::redis(&addr, 6379, Some(&pw), &[&["CONFIG", "GET", "logfile"]])
        .expect("CONFIG GET logfile");
    assert!(
        matches!(&log[0], Resp::Array(a) if a.len() == 2 && a[1].text() == "/var/log/redis/redis-server.log"),
        "{log:?}"
    );
}
