//! Scenario tests of the `stop` handler (in-memory hook tools and Pebble; state in, event,
//! state out) against a scripted stand-in for the unit's own Redis and Sentinel, which
//! records every command the charm sends:
//!
//! - the primary with peers pauses writes, asks its sentinel to `SENTINEL FAILOVER`, demotes
//!   itself to the promoted replica and, as the leader, records it in `leader-host`;
//! - a replica sends no write pause and no failover;
//! - a sole unit does not even connect.
//!
//! In a scenario the unit's pod name does not resolve, so the charm talks to 127.0.0.1 on
//! the standard ports (6379, 26379); the stand-ins listen there. The tests take turns (one
//! lock) and fail clearly if the ports are taken. The handover itself against real
//! processes is in tests/e2e_refresh.rs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, World};

const APP: &str = "redis-k8s";
const REPLICA: &str = "redis-k8s-1.redis-k8s-endpoints.scn.svc.cluster.local";
const PRIMARY: &str = "redis-k8s-0.redis-k8s-endpoints.scn.svc.cluster.local";

/// One scenario at a time: the stand-ins need the fixed ports.
static PORTS: Mutex<()> = Mutex::new(());

type Handler = Arc<dyn Fn(&[String]) -> String + Send + Sync>;

/// A RESP server on 127.0.0.1:`port` that answers with `handler` and records every command.
struct Fake {
    seen: Arc<Mutex<Vec<Vec<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    fn start(port: u16, handler: Handler) -> Fake {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            panic!("127.0.0.1:{port} is taken ({e}); these tests need it free")
        });
        listener.set_nonblocking(true).expect("nonblocking");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (seen, handler, stop) = (seen2.clone(), handler.clone(), stop2.clone());
                        std::thread::spawn(move || serve(s, &seen, &handler, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Fake {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Every command received so far, upper-cased first word(s), as one string each.
    fn commands(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.join(" "))
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one RESP array of bulk strings (what clients send).
fn read_command(r: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut words = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0u8; len + 2];
        r.read_exact(&mut buf).ok()?;
        words.push(String::from_utf8_lossy(&buf[..len]).into_owned());
    }
    Some(words)
}

fn serve(s: TcpStream, seen: &Mutex<Vec<Vec<String>>>, handler: &Handler, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    while !stop.load(Ordering::SeqCst) {
        let Some(cmd) = read_command(&mut r) else {
            if r.get_ref()
                .peek(&mut [0u8])
                .map(|n| n == 0)
                .unwrap_or(false)
            {
                return;
            }
            continue;
        };
        let reply = handler(&cmd);
        seen.lock().unwrap().push(cmd);
        if w.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn array(items: &[&str]) -> String {
    let mut out = format!("*{}\r\n", items.len());
    for i in items {
        out.push_str(&bulk(i));
    }
    out
}

/// A Redis primary with one in-sync replica until it is told `REPLICAOF`; or a replica.
fn redis_handler(primary: bool) -> Handler {
    let demoted = Arc::new(AtomicBool::new(!primary));
    Arc::new(move |cmd: &[String]| {
        let verb = cmd.first().map(|s| s.to_uppercase()).unwrap_or_default();
        match verb.as_str() {
            "INFO" if demoted.load(Ordering::SeqCst) => bulk(&format!(
                "# Replication\r\nrole:slave\r\nmaster_host:{REPLICA}\r\nmaster_port:6379\r\n\
                 master_link_status:up\r\nconnected_slaves:0\r\n"
            )),
            "INFO" => bulk(&format!(
                "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
                 slave0:ip={REPLICA},port=6379,state=online,offset=100,lag=0\r\n\
                 master_repl_offset:100\r\n"
            )),
            "REPLICAOF" | "SLAVEOF" => {
                demoted.store(true, Ordering::SeqCst);
                "+OK\r\n".into()
            }
            "CONFIG" => array(&[]),
            _ => "+OK\r\n".into(),
        }
    })
}

/// A sentinel that knows the replica as promotable and promotes it on `SENTINEL FAILOVER`.
fn sentinel_handler() -> Handler {
    let failed_over = Arc::new(AtomicBool::new(false));
    Arc::new(move |cmd: &[String]| {
        let words: Vec<String> = cmd.iter().map(|s| s.to_uppercase()).collect();
        let sub = words.get(1).map(String::as_str).unwrap_or_default();
        match (words.first().map(String::as_str), sub) {
            (Some("SENTINEL"), "REPLICAS") | (Some("SENTINEL"), "SLAVES") => {
                let fields = array(&[
                    "name",
                    &format!("{REPLICA}:6379"),
                    "ip",
                    REPLICA,
                    "port",
                    "6379",
                    "flags",
                    "slave",
                    "last-ok-ping-reply",
                    "120",
                    "master-link-status",
                    "ok",
                    "slave-priority",
                    "100",
                ]);
                format!("*1\r\n{fields}")
            }
            (Some("SENTINEL"), "FAILOVER") => {
                failed_over.store(true, Ordering::SeqCst);
                "+OK\r\n".into()
            }
            (Some("SENTINEL"), "GET-MASTER-ADDR-BY-NAME") => {
                let host = if failed_over.load(Ordering::SeqCst) {
                    REPLICA
                } else {
                    PRIMARY
                };
                array(&[host, "6379"])
            }
            (Some("SENTINEL"), "MASTER") => {
                let host = if failed_over.load(Ordering::SeqCst) {
                    REPLICA
                } else {
                    PRIMARY
                };
                array(&["name", APP, "ip", host, "port", "6379", "flags", "master"])
            }
            _ => "+OK\r\n".into(),
        }
    })
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `n` units, unit 0 leads, the peer data as the leader recorded it (unit 0 primary).
fn world(n: usize) -> Arc<Mutex<World>> {
    let mut w = World::new("scn");
    w.add_app(APP, CharmMeta::load(repo()).expect("charm metadata"))
        .unwrap();
    for _ in 0..n {
        w.add_unit(APP).unwrap();
    }
    w.set_leader("redis-k8s/0");
    let id = w.peer_relation_id(APP, "redis-peers").unwrap();
    let bag = BTreeMap::from([
        ("redis-password".to_string(), "a".repeat(32)),
        ("sentinel-password".to_string(), "b".repeat(32)),
        ("leader-host".to_string(), PRIMARY.to_string()),
    ]);
    w.set_relation_data(id, APP, bag);
    Arc::new(Mutex::new(w))
}

/// Run `stop` on unit 0 of a model of `n` units whose Redis is (or is not) the primary;
/// returns what Redis and Sentinel were sent, the peer app data after, and how long it took.
fn run_stop(n: usize, primary: bool) -> (Vec<String>, Vec<String>, BTreeMap<String, String>) {
    let _turn = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let redis = Fake::start(6379, redis_handler(primary));
    let sentinel = Fake::start(26379, sentinel_handler());
    let w = world(n);
    let pebble = MemoryPebbleProvider::new(&["redis", "sentinel"]);
    let mut s = Scenario::new(w.clone(), "redis-k8s/0", repo(), &pebble);
    let t0 = Instant::now();
    let r = s
        .run::<RedisK8sCharm>("hooks/stop", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "stop failed: {:?}", r.error);
    assert!(
        t0.elapsed() < redis_k8s::switchover::STOP_BUDGET + Duration::from_secs(8),
        "stop took {:?}",
        t0.elapsed()
    );
    let peer = {
        let w = w.lock().unwrap();
        let id = w.peer_relation_id(APP, "redis-peers").unwrap();
        w.relation_data(id, APP)
    };
    (redis.commands(), sentinel.commands(), peer)
}

fn position(list: &[String], prefix: &str) -> usize {
    list.iter()
        .position(|c| c.to_uppercase().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {list:#?}"))
}

#[test]
fn the_primary_with_peers_hands_over_before_its_pod_goes() {
    let (redis, sentinel, peer) = run_stop(3, true);
    // Writes paused, then the failover, then the old primary follows the promoted replica
    // and writes resume.
    let pause = position(&redis, "CLIENT PAUSE");
    let demote = position(&redis, &format!("REPLICAOF {}", REPLICA.to_uppercase()));
    let unpause = position(&redis, "CLIENT UNPAUSE");
    assert!(pause < demote && demote < unpause, "{redis:#?}");
    position(&sentinel, "SENTINEL FAILOVER");
    // The leader records the new primary itself (its pod may be down when the notice comes).
    assert_eq!(
        peer.get("leader-host").map(String::as_str),
        Some(REPLICA),
        "{peer:?}"
    );
}

#[test]
fn a_replica_stops_without_pausing_or_failing_over() {
    let (redis, sentinel, peer) = run_stop(3, false);
    assert!(
        !redis
            .iter()
            .any(|c| c.to_uppercase().starts_with("CLIENT PAUSE")),
        "{redis:#?}"
    );
    assert!(
        !redis
            .iter()
            .any(|c| c.to_uppercase().starts_with("REPLICAOF")),
        "{redis:#?}"
    );
    assert!(
        !sentinel
            .iter()
            .any(|c| c.to_uppercase().starts_with("SENTINEL FAILOVER")),
        "{sentinel:#?}"
    );
    assert_eq!(peer.get("leader-host").map(String::as_str), Some(PRIMARY));
}

#[test]
fn a_sole_unit_stops_without_touching_redis() {
    let (redis, sentinel, peer) = run_stop(1, true);
    assert!(redis.is_empty(), "{redis:#?}");
    assert!(sentinel.is_empty(), "{sentinel:#?}");
    assert_eq!(peer.get("leader-host").map(String::as_str), Some(PRIMARY));
}
