//! COS fixtures shared by the scenario files that check what Prometheus/Grafana see
//! (`dashboard_scenarios`, `metrics_scenarios`): a real primary + replica with real
//! `prometheus-redis-exporter`s ([`Fleet`]), a real Prometheus scraping them with the Juju
//! topology labels the `prometheus_scrape` relation gives targets ([`Prometheus`]), and
//! its HTTP query API. Include with `mod scenario_support; mod cos_support;`.
//! Not every file uses every helper, hence the module-wide `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::scenario_support::{spawn, wait_port, Proc, APP};

pub const EXPORTER: &str = "/usr/bin/prometheus-redis-exporter";
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Wait (up to 20 s) until `f` holds.
pub fn wait_for(what: &str, f: impl FnMut() -> bool) {
    wait_for_within(what, Duration::from_secs(20), f)
}

/// Wait (up to `within`) until `f` holds.
pub fn wait_for_within(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// `redis_*` metric names in a Prometheus text exposition.
pub fn metric_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| l.starts_with("redis_"))
        .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_string())
        .collect()
}

/// A real primary (AOF on, maxmemory set) and replica on `<net>.1` and `<net>.2`, each with
/// a `prometheus-redis-exporter` on port 9121; the primary holds keys with and without a
/// TTL. Every process dies with the fleet.
pub struct Fleet {
    pub hosts: [String; 2],
    pub primary: redis::Connection,
    /// The two redis-servers (primary, replica); `None` once [`Fleet::kill_redis`] ran.
    redis: Vec<Option<Proc>>,
    _exporters: Vec<Proc>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Fleet {
    pub fn start(net: &str) -> Fleet {
        let hosts = [format!("{net}.1"), format!("{net}.2")];
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut redis = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let dir = dirs[i].path().display().to_string();
            let mut args = vec![
                "--bind", host, "--port", "6379", "--save", "", "--dir", &dir,
            ];
            if i == 0 {
                args.extend(["--appendonly", "yes", "--maxmemory", "100mb"]);
            } else {
                args.extend(["--replicaof", &hosts[0], "6379"]);
            }
            redis.push(Some(spawn("redis-server", &args)));
            wait_port(host, 6379);
        }
        let mut primary = redis::Client::open(format!("redis://{}:6379", hosts[0]))
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query(&mut primary)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("t")
            .arg("v")
            .arg("EX")
            .arg(600)
            .query(&mut primary)
            .unwrap();
        let mut replica = redis::Client::open(format!("redis://{}:6379", hosts[1]))
            .unwrap()
            .get_connection()
            .unwrap();
        wait_for("the replica's link", || {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut replica)
                .is_ok_and(|i| i.contains("master_link_status:up"))
        });
        let mut exporters = Vec::new();
        for host in &hosts {
            exporters.push(spawn(
                EXPORTER,
                &[
                    format!("--redis.addr=redis://{host}:6379"),
                    format!("--web.listen-address={host}:9121"),
                ],
            ));
            wait_port(host, 9121);
        }
        let mut fleet = Fleet {
            hosts,
            primary,
            redis,
            _exporters: exporters,
            _dirs: dirs.into(),
        };
        fleet.lookups();
        fleet
    }

    /// Key lookups on the primary: one hit, one miss.
    pub fn lookups(&mut self) {
        for key in ["k", "missing"] {
            let _: Option<String> = redis::cmd("GET").arg(key).query(&mut self.primary).unwrap();
        }
    }

    /// Kill (and reap) the redis-server of unit `i` (0: the primary, 1: the replica); its
    /// exporter keeps running and reports it down.
    pub fn kill_redis(&mut self, i: usize) {
        drop(self.redis[i].take());
    }
}

/// A real Prometheus on `addr` (`host:9090`) scraping the fleet's exporters every second,
/// each as its own target labelled as the prometheus_scrape relation labels it (model `scn`,
/// uuid `0a1b`, application [`APP`], unit `<APP>/<n>`, charm `redis-k8s`), with `rules` (a
/// rule file) loaded and evaluated every second. Killed with the guard.
pub struct Prometheus {
    pub addr: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

/// The model uuid [`Prometheus`] labels its targets with.
pub const PROM_MODEL_UUID: &str = "0a1b";

impl Prometheus {
    pub fn start(fleet: &Fleet, host: &str, rules: Option<&Path>) -> Prometheus {
        let addr = format!("{host}:9090");
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if let Some(rules) = rules {
            config.push_str(&format!("rule_files:\n  - {}\n", rules.display()));
        }
        config.push_str("scrape_configs:\n");
        for (n, host) in fleet.hosts.iter().enumerate() {
            config.push_str(&format!(
                "  - job_name: redis-{n}\n    static_configs:\n      - targets: [\"{host}:9121\"]\n        \
                 labels: {{juju_model: scn, juju_model_uuid: {PROM_MODEL_UUID}, juju_application: {APP}, juju_unit: \"{APP}/{n}\", juju_charm: redis-k8s}}\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let proc = spawn(
            PROMETHEUS,
            &[
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address={addr}"),
            ],
        );
        wait_port(host, 9090);
        Prometheus {
            addr,
            _proc: proc,
            _dir: dir,
        }
    }

    /// One instant query; the parsed answer (query errors included) or the raw reply.
    pub fn try_query(&self, query: &str) -> Result<serde_json::Value, String> {
        try_prom_query(&self.addr, query)
    }

    /// One instant query that must answer JSON.
    pub fn query(&self, query: &str) -> serde_json::Value {
        prom_query(&self.addr, query)
    }

    /// One GET of the HTTP API path (e.g. `/api/v1/alerts`), parsed.
    pub fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        http_get_json(&self.addr, path)
    }
}

/// `application/x-www-form-urlencoded` for a query parameter.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.0 GET; the body parsed as JSON, or the raw reply when it is not JSON (e.g.
/// 503 while Prometheus starts).
fn http_get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).map_err(|e| format!("{e}: {out}"))
}

/// One Prometheus instant query over HTTP/1.0; the parsed JSON answer (query errors
/// included), or the raw reply when it is not JSON (e.g. 503 while Prometheus starts).
pub fn try_prom_query(addr: &str, query: &str) -> Result<serde_json::Value, String> {
    http_get_json(addr, &format!("/api/v1/query?query={}", form_encode(query)))
}

pub fn prom_query(addr: &str, query: &str) -> serde_json::Value {
    try_prom_query(addr, query).unwrap_or_else(|e| panic!("{query}: {e}"))
}

/// Run `python3 -c script` with `input` on stdin and return its stdout; the test fails with
/// Python's stderr if the script does. The consumer-side checks (CPython's `lzma`, `json`,
/// `yaml`) run through this.
pub fn python(script: &str, input: &str) -> String {
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
