//! Scenario tests against real `redis-server` / `redis-sentinel` processes behind the units'
//! pod names: the charm runs in-process (in-memory hook tools and Pebble), the workloads run
//! for real from the files the charm pushed, and a private mount namespace's `/etc/hosts`
//! resolves `redis-k8s-<n>.redis-k8s-endpoints.scn.svc.cluster.local` to a loopback address
//! per unit, as a pod's resolver would. Every process is killed by a drop guard.
//!
//! Used by tests/stop_scenarios.rs and tests/min_replicas_scenarios.rs (`mod real_units;`,
//! after `mod scenario_support;`, whose namespace, process and model helpers this builds on).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::{HookInfo, World};

pub use crate::scenario_support::{
    addr_in as addr, bag, fqdn, log_tail, redis_from_rendered, repo, secret_value,
    sentinel_from_rendered, skip_unless_in_hosts_namespace_at, world, Proc, APP, CONF,
    SENTINEL_CONF,
};

pub fn unit(n: u8) -> String {
    format!("{APP}/{n}")
}

/// Run `hook` with `info` and check that the dispatch succeeded.
pub fn run(s: &mut Scenario<'_>, hook: &str, info: HookInfo) {
    let r = s
        .run::<RedisK8sCharm>(&format!("hooks/{hook}"), info)
        .unwrap_or_else(|e| panic!("{hook}: {e}"));
    assert!(r.error.is_none(), "{hook}: {:?}", r.error);
}

/// One command on a real server, the reply as text (an array's items joined by newlines);
/// `None` when it cannot be reached.
pub fn call(host: &str, port: u16, password: &str, words: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://{host}:{port}/")).ok()?;
    let mut c = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .ok()?;
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut auth = redis::cmd("AUTH");
    auth.arg(password);
    let _: redis::Value = auth.query(&mut c).ok()?;
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    let v: redis::Value = cmd.query(&mut c).ok()?;
    Some(text(&v))
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Okay => "OK".into(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join("\n"),
        redis::Value::Map(items) => items
            .iter()
            .flat_map(|(k, v)| [text(k), text(v)])
            .collect::<Vec<_>>()
            .join("\n"),
        other => format!("{other:?}"),
    }
}

/// One field of `INFO replication` of the Redis on `host`.
pub fn replication(host: &str, password: &str, field: &str) -> Option<String> {
    let info = call(host, 6379, password, &["INFO", "replication"])?;
    info.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::to_string)
    })
}

/// `CONFIG GET min-replicas-to-write` of the Redis on `host`.
pub fn min_replicas_to_write(host: &str, password: &str) -> Option<String> {
    call(
        host,
        6379,
        password,
        &["CONFIG", "GET", "min-replicas-to-write"],
    )
    .and_then(|t| t.lines().nth(1).map(str::to_string))
}

/// Poll `f` every 100 ms for at most `secs`; panics naming `what` (and the last state
/// `f` reported) when it never holds.
pub fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("timed out: {what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A unit of the scenario: its in-memory Pebble and the files the charm pushed there.
pub struct Unit {
    pub n: u8,
    pub pebble: MemoryPebbleProvider,
}

impl Unit {
    pub fn new(n: u8) -> Unit {
        Unit {
            n,
            pebble: MemoryPebbleProvider::new(&["redis", "sentinel"]),
        }
    }

    pub fn scenario<'a>(&'a self, w: &Arc<Mutex<World>>) -> Scenario<'a> {
        Scenario::new(w.clone(), &unit(self.n), repo(), &self.pebble)
    }

    pub fn redis_conf(&self) -> String {
        self.pebble
            .get("redis")
            .file(CONF)
            .unwrap_or_else(|| panic!("unit {}: no redis.conf pushed", self.n))
            .text()
    }

    pub fn sentinel_conf(&self) -> String {
        self.pebble
            .get("sentinel")
            .file(SENTINEL_CONF)
            .unwrap_or_else(|| panic!("unit {}: no sentinel.conf pushed", self.n))
            .text()
    }
}

/// The deployment of `units` units with unit 0 the primary: the leader records the passwords
/// and itself as primary, every unit runs both pebble-ready hooks, and Redis and Sentinel
/// run for real on the first `running` units from what the charm pushed.
pub struct Deployment {
    pub w: Arc<Mutex<World>>,
    pub units: Vec<Unit>,
    pub net: String,
    pub base: u8,
    pub password: String,
    pub sentinel_password: String,
    pub dir: tempfile::TempDir,
    /// Sentinels first, so they go before the servers they watch.
    pub sentinels: Vec<Proc>,
    pub redis: Vec<Option<Proc>>,
}

impl Deployment {
    pub fn new(units: usize, net: &str, base: u8) -> Deployment {
        let w = world(units);
        let all: Vec<Unit> = (0..units as u8).map(Unit::new).collect();
        run(
            &mut all[0].scenario(&w),
            "leader-elected",
            HookInfo::default(),
        );
        assert_eq!(bag(&w, APP)["leader-host"], fqdn(0));
        for u in &all {
            let mut s = u.scenario(&w);
            run(&mut s, "redis-pebble-ready", HookInfo::default());
            run(&mut s, "sentinel-pebble-ready", HookInfo::default());
        }
        Deployment {
            password: secret_value(&w, "redis-password"),
            sentinel_password: secret_value(&w, "sentinel-password"),
            w,
            units: all,
            net: net.to_string(),
            base,
            dir: tempfile::tempdir().expect("tempdir"),
            sentinels: Vec::new(),
            redis: Vec::new(),
        }
    }

    pub fn addr(&self, n: u8) -> String {
        addr(&self.net, self.base, n)
    }

    /// Start unit `n`'s Redis from its pushed redis.conf.
    pub fn start_redis(&mut self, n: u8) {
        let conf = self.units[n as usize].redis_conf();
        let p = redis_from_rendered(
            &conf,
            &self.addr(n),
            &self.dir.path().join(format!("redis-{n}")),
        );
        while self.redis.len() <= n as usize {
            self.redis.push(None);
        }
        self.redis[n as usize] = Some(p);
    }

    /// Start unit `n`'s Sentinel from its pushed sentinel.conf.
    pub fn start_sentinel(&mut self, n: u8) {
        let conf = self.units[n as usize].sentinel_conf();
        let p = sentinel_from_rendered(
            &conf,
            &self.addr(n),
            &self.dir.path().join(format!("sentinel-{n}")),
        );
        self.sentinels.push(p);
    }

    /// The end of unit `n`'s Redis log.
    pub fn log(&self, n: u8) -> String {
        log_tail(&self.dir.path().join(format!("redis-{n}")))
    }

    /// Wait until unit `n`'s Redis is a replica with its link to the primary up.
    pub fn wait_replica_in_sync(&self, n: u8) {
        let host = self.addr(n);
        eventually(&format!("unit {n} in sync"), 30, || {
            match replication(&host, &self.password, "master_link_status").as_deref() {
                Some("up") => Ok(()),
                other => Err(format!(
                    "master_link_status {other:?}; its log:\n{}",
                    self.log(n)
                )),
            }
        });
    }

    /// Wait until unit `s`'s sentinel lists unit `n` as a replica with a working link.
    pub fn wait_sentinel_knows_replica(&self, s: u8, n: u8) {
        let host = self.addr(s);
        eventually(
            &format!("sentinel {s} sees unit {n} as a promotable replica"),
            30,
            || {
                let reply = call(
                    &host,
                    26379,
                    &self.sentinel_password,
                    &["SENTINEL", "REPLICAS", APP],
                )
                .unwrap_or_default();
                let lines: Vec<&str> = reply.lines().collect();
                let ok = lines.windows(2).any(|kv| kv[0] == "ip" && kv[1] == fqdn(n))
                    && lines
                        .windows(2)
                        .any(|kv| kv[0] == "master-link-status" && kv[1] == "ok");
                if ok {
                    Ok(())
                } else {
                    Err(reply)
                }
            },
        );
    }
}
