//! Helpers shared by the scenario test files (state in, event, state out on the in-memory
//! hook tools and Pebble, plus the few scenarios that start real redis-server / sentinel
//! processes from the files the charm pushed).
//!
//! It lives in a directory (`tests/scenario_support/mod.rs`) so Cargo does not build it as a
//! test target of its own; each scenario file includes it with `mod scenario_support;`.
//! Not every file uses every helper, hence the module-wide `dead_code` allowance.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::ops::context::JujuContext;
use redis_k8s::ops::framework::{dispatch, Framework};
use redis_k8s::ops::hookcmds::StatusValue;
use redis_k8s::ops::testing::harness::{RunResult, Scenario};
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::{ActionInvocation, CharmMeta, HookInfo, World};

// ----- the model ----------------------------------------------------------------------------

/// The charm's application name, as in `metadata.yaml`.
pub const APP: &str = "redis-k8s";
/// The leader in every [`world`].
pub const U0: &str = "redis-k8s/0";
pub const U1: &str = "redis-k8s/1";
pub const U2: &str = "redis-k8s/2";
/// Where the charm pushes Redis's configuration in the `redis` container.
pub const CONF: &str = "/etc/redis-server/redis.conf";
/// Where the charm pushes Sentinel's configuration in the `sentinel` container.
pub const SENTINEL_CONF: &str = "/etc/redis-server/sentinel.conf";
/// Unit 0's pod name in the `scn` model (`fqdn(0)` as a constant, for patterns and
/// `format!`): what the leader records as `leader-host`.
pub const FQDN0: &str = "redis-k8s-0.redis-k8s-endpoints.scn.svc.cluster.local";

/// The crate root: the charm directory (metadata, config, actions) the scenarios load.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A model `scn` with `n` units of the charm (from the repository's metadata, config and
/// actions); unit 0 leads.
pub fn world(n: usize) -> Arc<Mutex<World>> {
    let mut w = World::new("scn");
    w.add_app(APP, CharmMeta::load(repo()).expect("charm metadata"))
        .unwrap();
    for _ in 0..n {
        w.add_unit(APP).unwrap();
    }
    w.set_leader(U0);
    Arc::new(Mutex::new(w))
}

/// A unit's pod: the charm's two workload containers (`redis`, `sentinel`), in memory and
/// connectable. A fresh one stands for a new pod (nothing pushed, empty plans).
pub fn containers() -> MemoryPebbleProvider {
    MemoryPebbleProvider::new(&["redis", "sentinel"])
}

/// A scenario runner for `unit` of `w` on the pod `pebble`, loading the repository's charm.
pub fn scenario<'p>(
    w: &Arc<Mutex<World>>,
    unit: &str,
    pebble: &'p MemoryPebbleProvider,
) -> Scenario<'p> {
    Scenario::new(w.clone(), unit, repo(), pebble)
}

/// Add a one-unit `client` app requiring the `redis` interface on `cache`, related to the
/// charm's `redis` endpoint; returns the relation id.
pub fn add_client(w: &Arc<Mutex<World>>) -> u32 {
    let client = CharmMeta::from_yaml(
        "name: client\nrequires:\n  cache:\n    interface: redis\n",
        "",
        "",
    )
    .unwrap();
    let mut wl = w.lock().unwrap();
    wl.add_app("client", client).unwrap();
    wl.add_unit("client").unwrap();
    wl.add_relation((APP, "redis"), ("client", "cache"))
        .unwrap()
}

/// Set config options (the rest keep their values or defaults).
pub fn set_config(w: &Arc<Mutex<World>>, pairs: &[(&str, serde_json::Value)]) {
    let values = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    w.lock().unwrap().set_config(APP, values).unwrap();
}

/// A unit's current workload status.
pub fn status(w: &Arc<Mutex<World>>, unit: &str) -> StatusValue {
    w.lock().unwrap().unit_status(unit)
}

// ----- the peer relation --------------------------------------------------------------------

/// The `redis-peers` relation id.
pub fn peer_id(w: &Arc<Mutex<World>>) -> u32 {
    w.lock()
        .unwrap()
        .peer_relation_id(APP, "redis-peers")
        .unwrap()
}

/// The peer databag of `owner` (the app name for the app bag, or a unit name).
pub fn bag(w: &Arc<Mutex<World>>, owner: &str) -> BTreeMap<String, String> {
    let id = peer_id(w);
    w.lock().unwrap().relation_data(id, owner)
}

/// Write keys into `owner`'s peer databag, as another unit or the leader would; an empty
/// value removes the key (Juju's `relation-set key=`).
pub fn set_bag(w: &Arc<Mutex<World>>, owner: &str, pairs: &[(&str, &str)]) {
    let id = peer_id(w);
    let mut wl = w.lock().unwrap();
    let mut data = wl.relation_data(id, owner);
    for (k, v) in pairs {
        if v.is_empty() {
            data.remove(*k);
        } else {
            data.insert(k.to_string(), v.to_string());
        }
    }
    wl.set_relation_data(id, owner, data);
}

/// The passwords secret's content (the peer app bag holds only its URI).
pub fn passwords_secret(w: &Arc<Mutex<World>>) -> BTreeMap<String, String> {
    let uri = bag(w, APP)
        .get("passwords-secret")
        .cloned()
        .expect("passwords-secret in the peer app data");
    w.lock().unwrap().secret_content(&uri).expect("the secret")
}

/// One key of the passwords secret.
pub fn secret_value(w: &Arc<Mutex<World>>, key: &str) -> String {
    passwords_secret(w)[key].clone()
}

// ----- running hooks and actions ------------------------------------------------------------

/// Run `hook` (no relation) and check that the dispatch succeeded.
pub fn run(s: &mut Scenario<'_>, hook: &str) {
    let r = s
        .run::<RedisK8sCharm>(&format!("hooks/{hook}"), HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "{hook}: {:?}", r.error);
}

/// Run the hook `hook` describes (`hooks/<hook_name>`, with its relation and remote unit)
/// and check that the dispatch succeeded.
pub fn run_hook(s: &mut Scenario<'_>, hook: HookInfo) -> RunResult {
    let name = hook.hook_name.clone();
    let r = s
        .run::<RedisK8sCharm>(&format!("hooks/{name}"), hook)
        .unwrap();
    assert!(r.error.is_none(), "{name}: {:?}", r.error);
    r
}

/// Assert that nothing was pushed to `container` and no replan was asked for since its
/// calls were last cleared: the hook left the workload alone.
pub fn assert_no_push_or_replan(pebble: &MemoryPebbleProvider, container: &str) {
    let calls = pebble.get(container).calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("push") || c.starts_with("replan")),
        "{container}: {calls:?}"
    );
}

/// The hook context of running action `name` with string parameters.
pub fn action(name: &str, params: &[(&str, &str)]) -> HookInfo {
    HookInfo {
        action: Some(ActionInvocation {
            name: name.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect(),
        }),
        ..HookInfo::default()
    }
}

/// Run action `name` with string parameters on `s`'s unit. Only the harness's own failure
/// panics: the caller asserts on the action's outcome (`action_failure`, `action_results`).
pub fn run_action(s: &mut Scenario<'_>, name: &str, params: &[(&str, &str)]) -> RunResult {
    s.run::<RedisK8sCharm>(&format!("actions/{name}"), action(name, params))
        .unwrap()
}

/// [`run_action`] for an action that must succeed: panics with its failure message if the
/// action called `action-fail`.
pub fn run_action_ok(s: &mut Scenario<'_>, name: &str, params: &[(&str, &str)]) -> RunResult {
    let r = run_action(s, name, params);
    assert!(
        r.session.action_failure().is_none(),
        "{:?}",
        r.session.action_failure()
    );
    r
}

/// The hook context of `redis-peers-relation-changed` seen from `remote`.
pub fn peer_changed(w: &Arc<Mutex<World>>, remote: &str) -> HookInfo {
    HookInfo {
        hook_name: "redis-peers-relation-changed".into(),
        relation_id: Some(peer_id(w)),
        remote_unit: Some(remote.into()),
        remote_app: Some(APP.into()),
        ..HookInfo::default()
    }
}

/// The hook context of `redis-relation-<event>` on the [`add_client`] relation `rel`:
/// `remote_unit` is `client/0` for unit events (joined, changed), `None` for `broken`.
pub fn client_hook(event: &str, rel: u32, remote_unit: Option<&str>) -> HookInfo {
    HookInfo {
        hook_name: format!("redis-relation-{event}"),
        relation_id: Some(rel),
        remote_unit: remote_unit.map(str::to_string),
        remote_app: Some("client".into()),
        ..HookInfo::default()
    }
}

/// Run hook `hook_name` with extra environment variables the harness's `HookInfo` has no
/// fields for (a Pebble check's or notice's `JUJU_*` variables), the way Juju would: commits
/// the session on success, like a hook's exit code, and discards it on failure. Returns
/// whether the dispatch succeeded.
pub fn run_with_env(s: &mut Scenario<'_>, hook_name: &str, extra: &[(&str, &str)]) -> bool {
    let dispatch_path = format!("hooks/{hook_name}");
    let hook = HookInfo {
        hook_name: hook_name.into(),
        ..HookInfo::default()
    };
    let mut env = s.env(&dispatch_path, &hook);
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let ctx = JujuContext::from_map(&env).expect("hook context");
    let session = World::session(&s.world, &s.unit, hook);
    let mut fw = Framework::new(&ctx, &session, s.pebble, s.state.stored.clone());
    let mut charm = RedisK8sCharm::default();
    let outcome = dispatch(&mut charm, &mut fw);
    let data = fw.into_data();
    match outcome {
        Ok(()) => {
            s.state.stored = data;
            session.commit().expect("commit");
            true
        }
        Err(e) => {
            eprintln!("dispatch failed: {e}");
            session.discard();
            false
        }
    }
}

// ----- real processes -----------------------------------------------------------------------

/// Whether the tests run as root (a mount namespace for `/etc/hosts` needs it).
pub fn root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A process killed (and reaped) when dropped, whatever the test did.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `program` with `args`, output discarded, under a [`Proc`] guard.
pub fn spawn<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Proc {
    Proc(
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}")),
    )
}

/// Wait (up to 10 s) until `host:port` accepts a connection.
pub fn wait_port(host: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((host, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{host}:{port} never listened");
}

/// Poll `f` every 100 ms until it returns `Some` (its value is returned); panics naming
/// `what` after `within`.
pub fn eventually_some<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The network (third octet) of [`unit_addr`]'s addresses: scenario files that do not pick
/// their own share 127.0.93.x and keep apart by `base`.
pub const SCENARIO_NET: &str = "93";

/// The unit's address in the namespaced tests: `redis-k8s/<n>` is 127.0.93.<base + n>.
pub fn unit_addr(base: u8, n: u8) -> String {
    addr_in(SCENARIO_NET, base, n)
}

/// Unit `n`'s address on network `net`: `127.0.<net>.<base + n>`. A test file picks a network
/// of its own (and each test a `base`) so tests running in parallel never share an address.
pub fn addr_in(net: &str, base: u8, n: u8) -> String {
    format!("127.0.{net}.{}", base + n)
}

/// Unit `n`'s pod name in the `scn` model.
pub fn fqdn(n: u8) -> String {
    format!("redis-k8s-{n}.redis-k8s-endpoints.scn.svc.cluster.local")
}

/// [`in_hosts_namespace_at`] on 127.0.93.x.
pub fn in_hosts_namespace(test: &str, base: u8) -> bool {
    in_hosts_namespace_at(test, SCENARIO_NET, base)
}

/// Run the calling test again in a private mount namespace whose `/etc/hosts` resolves the
/// three units' pod names to [`addr_in`]`(net, base, n)`, as a pod's resolver would: the
/// charm finds its own address and its peers' sentinels by name. Returns `true` in the
/// parent, which has checked that the child ran exactly this test and passed (the caller
/// just returns); `false` in the child, which goes on with the test body. Processes the
/// child starts live in its namespace and are reaped by its drop guards.
pub fn in_hosts_namespace_at(test: &str, net: &str, base: u8) -> bool {
    const MARK: &str = "SCENARIO_SUPPORT_HOSTS_NS";
    if std::env::var_os(MARK).is_some() {
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let mut text = "127.0.0.1 localhost\n".to_string();
    for n in 0..3 {
        text.push_str(&format!("{} {}\n", addr_in(net, base, n), fqdn(n)));
    }
    std::fs::write(&hosts, text).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("mount --bind \"$HOSTS_FILE\" /etc/hosts && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("HOSTS_FILE", &hosts)
        .env(MARK, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} in its namespace:\n{text}"
    );
    true
}

/// [`skip_unless_in_hosts_namespace_at`] on 127.0.93.x.
pub fn skip_unless_in_hosts_namespace(test: &str, base: u8) -> bool {
    skip_unless_in_hosts_namespace_at(test, SCENARIO_NET, base)
}

/// The prologue of a scenario test that needs the units' pod names to resolve: `true` when
/// the test body must not run in this process (not root: skipped, said on stderr; or the
/// parent of [`in_hosts_namespace_at`], whose child ran and passed the body), so the caller
/// just returns.
pub fn skip_unless_in_hosts_namespace_at(test: &str, net: &str, base: u8) -> bool {
    if !root() {
        eprintln!("skipping: needs root for a mount namespace");
        return true;
    }
    in_hosts_namespace_at(test, net, base)
}

/// Each item, or the replacement of the first rule whose prefix it starts with: how a
/// rendered config file (lines) or a Pebble service command (words) is moved off the
/// container's paths and addresses onto a test's scratch ones.
pub fn rewrite_prefixed<'a>(
    items: impl IntoIterator<Item = &'a str>,
    rules: &[(&str, String)],
) -> Vec<String> {
    items
        .into_iter()
        .map(|item| {
            rules
                .iter()
                .find(|(prefix, _)| item.starts_with(prefix))
                .map_or_else(|| item.to_string(), |(_, with)| with.clone())
        })
        .collect()
}

/// A plain redis-server on `host:6379` (no persistence, data in `dir`), with `requirepass`
/// when a password is given; waits until it listens. Stands for another unit's Redis, or
/// a primary whose answers the code under test reads.
pub fn plain_redis(host: &str, password: Option<&str>, dir: &Path) -> Proc {
    redis_server(host, password, None, dir)
}

/// [`plain_redis`], a replica of `replicaof:6379` when given (with `masterauth` when a
/// password is given: one admin password for the whole app, as the charm sets it). `data`
/// is created; give each server its own, as replicas write the primary's snapshot there.
pub fn redis_server(
    host: &str,
    password: Option<&str>,
    replicaof: Option<&str>,
    data: &Path,
) -> Proc {
    std::fs::create_dir_all(data).expect("redis data dir");
    let dir = data.display().to_string();
    let mut args = vec!["--bind", host, "--port", "6379"];
    if let Some(pw) = password {
        args.extend(["--requirepass", pw, "--masterauth", pw]);
    }
    if let Some(primary) = replicaof {
        args.extend(["--replicaof", primary, "6379"]);
    }
    args.extend(["--save", "", "--appendonly", "no", "--dir", &dir]);
    let p = spawn("redis-server", &args);
    wait_port(host, 6379);
    p
}

/// Start a real redis-server from a redis.conf the charm rendered, moved onto `host` and the
/// scratch directory `dir` (created; the container paths do not exist here), logging to
/// `dir/redis.log` (see [`log_tail`]); waits until it listens.
pub fn redis_from_rendered(conf: &str, host: &str, dir: &Path) -> Proc {
    let adapted = rewrite_prefixed(
        conf.lines(),
        &[
            ("bind ", format!("bind {host}")),
            ("dir ", format!("dir {}", dir.display())),
            (
                "logfile ",
                format!("logfile {}", dir.join("redis.log").display()),
            ),
        ],
    )
    .join("\n");
    std::fs::create_dir_all(dir).expect("redis dir");
    let path = dir.join("redis.conf");
    std::fs::write(&path, adapted + "\n").unwrap();
    let p = spawn("redis-server", &[path]);
    wait_port(host, 6379);
    p
}

/// The last 15 lines of the log of the [`redis_from_rendered`] server in `dir`, for a
/// failure message ("" when there is none yet).
pub fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Start a real sentinel from a sentinel.conf the charm rendered (without the notify script,
/// which lives in the container), bound to `host`, its config file in `dir` (created);
/// waits until it listens.
pub fn sentinel_from_rendered(conf: &str, host: &str, dir: &Path) -> Proc {
    let adapted: String = rewrite_prefixed(
        conf.lines()
            .filter(|l| !l.starts_with("sentinel client-reconfig-script")),
        &[("bind ", format!("bind {host}"))],
    )
    .join("\n");
    std::fs::create_dir_all(dir).expect("sentinel dir");
    let path = dir.join("sentinel.conf");
    std::fs::write(&path, adapted + "\n").unwrap();
    let p = spawn(
        "redis-server",
        &[path.display().to_string(), "--sentinel".to_string()],
    );
    wait_port(host, 26379);
    p
}

/// The charm's `templates/sentinel.conf.j2` rendered for a sentinel on `host:port`
/// monitoring `primary:6379` with the peers `peers` (`KnownPeers::default()` for none), under
/// quick test timings: quorum 2, down after 1 s, failover timeout 10 s, no Redis password.
pub fn render_sentinel_template(
    host: &str,
    port: u16,
    primary: &str,
    sentinel_password: &str,
    peers: redis_k8s::sentinel::KnownPeers,
) -> String {
    /// The template's context: the config and the peer lines side by side, as the charm
    /// passes them.
    #[derive(serde::Serialize)]
    struct File<'a> {
        #[serde(flatten)]
        config: redis_k8s::sentinel::SentinelConfig<'a>,
        #[serde(flatten)]
        peers: redis_k8s::sentinel::KnownPeers,
    }
    let tpl = std::fs::read_to_string(repo().join("templates/sentinel.conf.j2"))
        .expect("templates/sentinel.conf.j2");
    redis_k8s::templates::render_str(
        "sentinel.conf",
        &tpl,
        File {
            config: redis_k8s::sentinel::SentinelConfig {
                hostname: host,
                bind: host,
                master_name: APP,
                sentinel_port: port,
                redis_master: primary,
                redis_port: 6379,
                quorum: 2,
                down_after_ms: 1000,
                failover_timeout_ms: 10000,
                master_password: None,
                sentinel_password,
                log_level: "notice",
            },
            peers,
        },
    )
    .expect("the sentinel template renders")
}

/// A real sentinel on `host:port` from the config text `conf`, written to `path`; waits
/// until it listens.
pub fn sentinel_from_conf(conf: &str, host: &str, port: u16, path: &Path) -> Proc {
    std::fs::write(path, conf).expect("sentinel conf");
    let p = spawn("redis-sentinel", &[path]);
    wait_port(host, port);
    p
}

/// A plain sentinel on `host` monitoring `primary` (a pod name), with the app's sentinel
/// password: another unit's sentinel, as far as this unit can tell.
pub fn plain_sentinel(host: &str, primary: &str, password: &str, dir: &Path) -> Proc {
    let path = dir.join(format!("sentinel-{host}.conf"));
    std::fs::write(
        &path,
        format!(
            "port 26379\nbind {host}\nsentinel resolve-hostnames yes\n\
             sentinel announce-hostnames yes\nsentinel monitor {APP} {primary} 6379 2\n\
             sentinel down-after-milliseconds {APP} 300\nrequirepass {password}\n"
        ),
    )
    .unwrap();
    let p = spawn(
        "redis-server",
        &[path.display().to_string(), "--sentinel".to_string()],
    );
    wait_port(host, 26379);
    p
}

/// One HTTP GET of `/metrics`; the body.
pub fn scrape(host: &str, port: u16) -> String {
    let mut s = std::net::TcpStream::connect((host, port)).expect("exporter listens");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
