//! End to end on the local model, with real redis-server, redis-sentinel and
//! prometheus-redis-exporter processes: the statuses say role, replication and quorum; the
//! exporter scrapes its Redis with the password from its file (never argv); a hung Redis
//! (SIGSTOP) fails its Pebble check, the `redis-pebble-check-failed` hook puts that in the
//! status, and SIGCONT brings `-check-recovered` and the normal status back; the same for a
//! hung sentinel.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{eventually_ok, redis, Model, Resp, APP};

/// `(workload, message)` of a unit in `status`.
fn unit_status(m: &Model, unit: &str) -> (String, String) {
    let line = m.unit_line(unit);
    (
        line["workload"].as_str().unwrap_or_default().to_string(),
        line["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Wait until `unit`'s status is `(workload, message)`.
fn wait_status(m: &Model, unit: &str, workload: &str, message: &str, secs: u64) {
    eventually_ok(&format!("{unit} {workload} {message:?}"), secs, || {
        let got = unit_status(m, unit);
        if got.0 == workload && got.1 == message {
            Ok(())
        } else {
            Err(format!("{unit} is {got:?}\n{}", m.logs_tail(15)))
        }
    });
}

/// The body of a plain HTTP/1.0 GET.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

/// The pid of the Redis or Sentinel at `addr:port` (`INFO server`'s `process_id`).
fn server_pid(addr: &str, port: u16, pw: &str) -> i32 {
    let r = redis(addr, port, Some(pw), &[&["INFO", "server"]]).expect("INFO server");
    let text = r[0].text();
    assert!(matches!(&r[0], Resp::Bulk(Some(_))), "INFO server: {r:?}");
    text.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in {text}"))
}

fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test never leaves a
/// stopped redis-server behind (the model's teardown could not stop it gracefully).
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// Whether any process's command line holds `secret`.
fn secret_in_any_argv(secret: &str) -> Option<String> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for e in dir.flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(secret) {
            return Some(text);
        }
    }
    None
}

fn unit_log(m: &Model, unit: &str) -> String {
    std::fs::read_to_string(m.unit_dir(unit).join("unit.log")).unwrap_or_default()
}

/// Wait until `unit` has run `hook` (update-status also reports failing checks, so the
/// status can change before the check hook itself has run).
fn wait_hook(m: &Model, unit: &str, hook: &str) {
    let line = format!("ran \"{hook}\" hook");
    eventually_ok(&format!("{unit} runs {hook}"), 30, || {
        if unit_log(m, unit).contains(&line) {
            Ok(())
        } else {
            Err(m.logs_tail(30))
        }
    });
}

#[test]
fn health_statuses_exporter_and_check_hooks_on_the_local_model() {
    let m = Model::new("e2ehealth").with_subnet("127.0.97");
    m.deploy_charm(2, 5, &[]);
    let (primary, paddr) = m.wait_roles(1, None, 60);
    let (replica, raddr) = m.a_replica();
    let pw = m.password();

    // The statuses name the role, the replication state and Sentinel's quorum.
    wait_status(
        &m,
        &replica,
        "active",
        "replica, link up, sentinel quorum ok",
        60,
    );
    wait_status(
        &m,
        &primary,
        "active",
        "primary, 1 replica online, sentinel quorum ok",
        60,
    );

    // The exporter of each unit scrapes its own Redis, authenticated from the password file.
    if std::path::Path::new("/usr/bin/prometheus-redis-exporter").exists() {
        for addr in [&paddr, &raddr] {
            eventually_ok(&format!("metrics of {addr}"), 60, || {
                let body = http_get(&format!("{addr}:9121"), "/metrics")?;
                if body.lines().any(|l| l == "redis_up 1") {
                    Ok(())
                } else {
                    Err(format!(
                        "no `redis_up 1` in {} bytes: {}",
                        body.len(),
                        body.lines()
                            .filter(|l| l.starts_with("redis_up"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                }
            });
        }
        let metrics = http_get(&format!("{paddr}:9121"), "/metrics").expect("metrics");
        assert!(
            metrics.contains("redis_connected_slaves 1"),
            "the primary's exporter sees its replica"
        );
    } else {
        eprintln!("prometheus-redis-exporter not installed: exporter scrape not checked");
    }
    for secret in [pw.clone(), m.sentinel_password()] {
        assert_eq!(secret_in_any_argv(&secret), None, "a password in argv");
    }

    // A hung replica (SIGSTOP: its port still accepts connections) fails its check; the
    // check-failed hook says so in its status.
    let pid = server_pid(&raddr, 6379, &pw);
    let stopped = Instant::now();
    signal(pid, "STOP");
    let guard = Continue(pid);
    wait_status(&m, &replica, "waiting", "redis check failing: redis-up", 60);
    eprintln!(
        "hung redis → status: {:.1}s (check period 5s, threshold 3)",
        stopped.elapsed().as_secs_f64()
    );
    wait_hook(&m, &replica, "redis-pebble-check-failed");
    // The primary keeps serving and says so.
    assert_eq!(unit_status(&m, &primary).0, "active");

    // It answers again: check-recovered, and the normal status is back.
    let resumed = Instant::now();
    signal(pid, "CONT");
    drop(guard);
    wait_status(
        &m,
        &replica,
        "active",
        "replica, link up, sentinel quorum ok",
        60,
    );
    eprintln!(
        "resumed redis → status: {:.1}s",
        resumed.elapsed().as_secs_f64()
    );
    wait_hook(&m, &replica, "redis-pebble-check-recovered");
    assert_eq!(
        server_pid(&raddr, 6379, &pw),
        pid,
        "no restart: Sentinel, not Pebble, decides about a hung server"
    );

    // The same for a hung sentinel, through `sentinel-pebble-check-failed`.
    let spw = m.sentinel_password();
    let spid = server_pid(&raddr, 26379, &spw);
    signal(spid, "STOP");
    let guard = Continue(spid);
    wait_status(
        &m,
        &replica,
        "waiting",
        "sentinel check failing: sentinel-up",
        60,
    );
    wait_hook(&m, &replica, "sentinel-pebble-check-failed");
    signal(spid, "CONT");
    drop(guard);
    wait_status(
        &m,
        &replica,
        "active",
        "replica, link up, sentinel quorum ok",
        60,
    );
    wait_hook(&m, &replica, "sentinel-pebble-check-recovered");
    assert_eq!(unit_status(&m, &format!("{APP}/0")).0, "active");
}
