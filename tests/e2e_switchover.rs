//! End to end: the `switchover` action on the local model with real redis-server and
//! redis-sentinel processes, under a steady write load: the named replica becomes primary
//! and no acknowledged write is lost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const JL: &str = env!("CARGO_BIN_EXE_juju-local");
const CHARM_BIN: &str = env!("CARGO_BIN_EXE_redis-k8s");
const APP: &str = "redis-k8s";
const KEY: &str = "switchover-counter";

struct Model {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Model {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(JL)
            .arg("--model-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("JUJU_LOCAL_DIR")
            .output()
            .expect("run juju-local")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "juju-local {args:?} failed:\nstdout: {}\nstderr: {}\nstatus:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&self.cmd(&["status"]).stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// (unit, address, role) per unit of the app, as `status` reports them.
    fn roles(&self) -> Vec<(String, String, String)> {
        let st: serde_json::Value =
            serde_json::from_str(&self.ok(&["status", "--format", "json"])).unwrap();
        st["units"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["name"].as_str().unwrap_or("").starts_with(APP))
            .map(|u| {
                (
                    u["name"].as_str().unwrap_or("").to_string(),
                    u["address"].as_str().unwrap_or("").to_string(),
                    u["role"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Wait until exactly one unit is primary and `replicas` are replicas; returns the primary.
    fn wait_roles(&self, replicas: usize, secs: u64) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let roles = self.roles();
            let primaries: Vec<_> = roles.iter().filter(|r| r.2 == "primary").collect();
            let n_rep = roles.iter().filter(|r| r.2 == "replica").count();
            if primaries.len() == 1 && n_rep == replicas {
                return (primaries[0].0.clone(), primaries[0].1.clone());
            }
            assert!(Instant::now() < deadline, "roles never settled: {roles:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn action_value(&self, unit: &str, action: &str, key: &str) -> String {
        let out = self.ok(&["run", unit, action]);
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|p| p.trim().trim_matches('\'').to_string())
            .unwrap_or_else(|| panic!("{key} in {out}"))
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.cmd(&["down"]);
    }
}

/// A RESP reply (enough of it for these checks).
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

impl Resp {
    fn text(&self) -> String {
        match self {
            Resp::Simple(s) | Resp::Error(s) | Resp::Bulk(Some(s)) => s.clone(),
            Resp::Int(i) => i.to_string(),
            _ => String::new(),
        }
    }
}

fn parse(buf: &[u8], pos: &mut usize) -> Option<Resp> {
    let end = buf[*pos..].windows(2).position(|w| w == b"\r\n")? + *pos;
    let line = String::from_utf8_lossy(&buf[*pos + 1..end]).to_string();
    let kind = buf[*pos];
    *pos = end + 2;
    Some(match kind {
        b'+' => Resp::Simple(line),
        b'-' => Resp::Error(line),
        b':' => Resp::Int(line.parse().ok()?),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let n = n as usize;
                if buf.len() < *pos + n + 2 {
                    return None;
                }
                let s = String::from_utf8_lossy(&buf[*pos..*pos + n]).to_string();
                *pos += n + 2;
                Resp::Bulk(Some(s))
            }
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(parse(buf, pos)?);
            }
            Resp::Array(items)
        }
        _ => return None,
    })
}

/// One client connection that sends a command and reads its whole reply.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: &str, port: u16, password: &str) -> Option<Conn> {
        let sock = format!("{addr}:{port}").parse().ok()?;
        let s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
        // Longer than the charm's write pause, so a paused INCR is waited for, not abandoned.
        s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
        let mut c = Conn { s, buf: Vec::new() };
        match c.call(&["AUTH", password])? {
            Resp::Simple(_) => Some(c),
            _ => None,
        }
    }

    fn call(&mut self, cmd: &[&str]) -> Option<Resp> {
        let mut req = format!("*{}\r\n", cmd.len()).into_bytes();
        for a in cmd {
            req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.s.write_all(&req).ok()?;
        let mut chunk = [0u8; 4096];
        loop {
            let mut pos = 0;
            if !self.buf.is_empty() {
                if let Some(r) = parse(&self.buf, &mut pos) {
                    self.buf.drain(..pos);
                    return Some(r);
                }
            }
            let n = self.s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The primary's address per the sentinel at `sentinel_addr`, resolved to an address.
fn primary_from_sentinel(sentinel_addr: &str, sentinel_pw: &str) -> Option<String> {
    let mut c = Conn::open(sentinel_addr, 26379, sentinel_pw)?;
    let r = c.call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", APP])?;
    let Resp::Array(items) = r else { return None };
    let host = items.first()?.text();
    use std::net::ToSocketAddrs;
    (host.as_str(), 0)
        .to_socket_addrs()
        .ok()?
        .find(|a| a.is_ipv4())
        .map(|a| a.ip().to_string())
}

/// Planned switchover to a named replica under a steady INCR load: the replica is promoted
/// and the counter on the new primary holds every acknowledged increment.
#[test]
fn switchover_to_a_named_replica_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Model {
        dir: tmp.path().join("sw"),
        _tmp: tmp,
    };
    let root = env!("CARGO_MANIFEST_DIR");
    m.ok(&[
        "deploy",
        root,
        "-n",
        "3",
        "--dispatch",
        CHARM_BIN,
        "--subnet",
        "127.0.83",
        "--update-status-interval",
        "5",
        "--wait",
        "--timeout",
        "180",
    ]);
    let (old_primary, paddr) = m.wait_roles(2, 60);
    let pw = m.action_value(
        &format!("{APP}/0"),
        "get-initial-admin-password",
        "redis-password",
    );
    let spw = m.action_value(
        &format!("{APP}/0"),
        "get-sentinel-password",
        "sentinel-password",
    );
    let roles = m.roles();
    let replicas: Vec<&(String, String, String)> =
        roles.iter().filter(|r| r.2 == "replica").collect();
    let (target, taddr) = (replicas[0].0.clone(), replicas[0].1.clone());
    // The writer follows the primary through a sentinel on the unit that stays a replica.
    let watcher = replicas[1].1.clone();

    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, pw, spw) = (acked.clone(), stop.clone(), pw.clone(), spw.clone());
        let mut addr = paddr.clone();
        std::thread::spawn(move || {
            let mut conn: Option<Conn> = None;
            while !stop.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = Conn::open(&addr, 6379, &pw);
                }
                let reply = conn.as_mut().and_then(|c| c.call(&["INCR", KEY]));
                match reply {
                    Some(Resp::Int(_)) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        // READONLY or a dropped connection: ask the sentinel who leads now.
                        conn = None;
                        if let Some(a) = primary_from_sentinel(&watcher, &spw) {
                            addr = a;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        })
    };
    // Let some writes land before the switch.
    let t0 = Instant::now();
    while acked.load(Ordering::SeqCst) < 50 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no writes acknowledged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Run on the replica that stays one: the action reaches the primary by its host name.
    let runner = replicas[1].0.clone();
    let out = m.ok(&["run", &runner, "switchover", &format!("unit={target}")]);
    assert!(out.contains("new-primary:"), "{out}");
    assert!(!out.contains(&pw), "the action printed a password");
    let paused_ms: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("paused-ms:"))
        .and_then(|v| v.trim().trim_matches('\'').parse().ok())
        .unwrap_or_else(|| panic!("paused-ms in {out}"));
    assert!(paused_ms < 5000, "writes paused too long: {out}");
    // Keep writing a little on the new primary, then stop.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.load(Ordering::SeqCst);

    let (newp, naddr) = m.wait_roles(2, 60);
    assert_eq!(newp, target, "the named unit is not the primary: {out}");
    assert!(
        out.contains(&format!("old-primary: {}", old_primary.replace('/', "-"))),
        "{out}"
    );
    assert_eq!(naddr, taddr);
    let mut c = Conn::open(&naddr, 6379, &pw).expect("connect to the new primary");
    let value: u64 = c
        .call(&["GET", KEY])
        .map(|r| r.text())
        .and_then(|t| t.parse().ok())
        .expect("counter on the new primary");
    assert!(
        value >= acked,
        "acknowledged writes lost: counter {value} < {acked} acknowledged\n{out}"
    );
    // Bounded write loss with three units: the new primary needs one replica to write.
    let r = c
        .call(&["CONFIG", "GET", "min-replicas-to-write"])
        .expect("reply");
    let Resp::Array(items) = r else {
        panic!("{r:?}")
    };
    assert_eq!(items[1].text(), "1");
    // The replicas' priorities were restored.
    for (_, addr, _) in m.roles() {
        let mut c = Conn::open(&addr, 6379, &pw).expect("connect");
        let r = c
            .call(&["CONFIG", "GET", "replica-priority"])
            .expect("reply");
        let Resp::Array(items) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            items[1].text(),
            "100",
            "replica-priority not restored on {addr}"
        );
    }
    eprintln!("switchover: {acked} acknowledged INCRs, counter {value}; {out}");
}
