//! The built charm binary run as `dispatch`, the way Juju runs it: a fresh process per hook
//! with the contract's environment, the hook tools on PATH (the local model's multi-call
//! binary talking to an in-process agent), and real Pebble-API servers that really start
//! redis-server and sentinel. Covers the sentinel-pebble-ready path end to end:
//! empty databag → Waiting + deferred; leader-elected; a later event re-runs the deferred
//! event first and it succeeds.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use redis_k8s::ops::hookcmds::{StatusName, StatusValue};
use redis_k8s::ops::pebble::{Pebble, PebbleClient};
use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, World};
use redis_k8s::sim::agent::AgentServer;
use redis_k8s::sim::hooktools::TOOL_NAMES;
use redis_k8s::sim::pebble_server::{PebbleServer, PebbleServerConfig};

const APP: &str = "redis-k8s";
const UNIT: &str = "redis-k8s/0";
const MODEL: &str = "proc";
const ADDR: &str = "127.0.0.81";
const FQDN: &str = "redis-k8s-0.redis-k8s-endpoints.proc.svc.cluster.local";

/// Fields drop in order: servers (kill services), agent, then the directory they live in.
struct Unit {
    servers: Vec<PebbleServer>,
    agent: AgentServer,
    world: Arc<Mutex<World>>,
    contexts: u32,
    dir: tempfile::TempDir,
}

impl Unit {
    fn charm_dir(&self) -> PathBuf {
        self.dir.path().join("charm")
    }
    fn containers(&self) -> PathBuf {
        self.dir.path().join("containers")
    }
    fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    fn new() -> Unit {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let charm = dir.path().join("charm");
        std::fs::create_dir_all(charm.join("templates")).unwrap();
        for f in ["metadata.yaml", "config.yaml", "actions.yaml"] {
            std::fs::copy(repo.join(f), charm.join(f)).unwrap();
        }
        for t in ["sentinel.conf.j2", "redis.conf.j2"] {
            std::fs::copy(
                repo.join("templates").join(t),
                charm.join("templates").join(t),
            )
            .unwrap();
        }
        std::fs::copy(env!("CARGO_BIN_EXE_redis-k8s"), charm.join("dispatch")).unwrap();
        let tools = dir.path().join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        for t in TOOL_NAMES {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_juju-local"), tools.join(t)).unwrap();
        }
        std::fs::write(
            dir.path().join("hosts"),
            format!(
                "127.0.0.1 localhost\n{ADDR} {FQDN} redis-k8s-0.redis-k8s-endpoints redis-k8s-0\n"
            ),
        )
        .unwrap();
        let mut world = World::new(MODEL);
        world
            .add_app(APP, CharmMeta::load(&charm).unwrap())
            .unwrap();
        world.add_unit(APP).unwrap();
        world.set_leader(UNIT);
        let agent = AgentServer::start(&dir.path().join("agent.sock")).unwrap();
        let mut unit = Unit {
            dir,
            world: Arc::new(Mutex::new(world)),
            agent,
            servers: Vec::new(),
            contexts: 0,
        };
        for c in ["redis", "sentinel"] {
            let server = PebbleServer::start(PebbleServerConfig {
                socket: unit.containers().join(c).join("pebble.socket"),
                root: unit.dir.path().join("roots").join(c),
                container: c.into(),
                hosts_file: Some(unit.hosts()),
                ..PebbleServerConfig::default()
            })
            .unwrap();
            unit.servers.push(server);
        }
        unit
    }

    /// Run one hook as Juju would; returns (exit code, stdout+stderr).
    fn hook(&mut self, dispatch_path: &str) -> (i32, String) {
        self.contexts += 1;
        let context_id = format!("{UNIT}-{}", self.contexts);
        let hook_name = dispatch_path
            .strip_prefix("hooks/")
            .unwrap_or("")
            .to_string();
        let session = Arc::new(World::session(
            &self.world,
            UNIT,
            HookInfo {
                hook_name: hook_name.clone(),
                ..HookInfo::default()
            },
        ));
        self.agent.register(&context_id, session.clone());
        let mut env: BTreeMap<&str, String> = BTreeMap::new();
        let charm = self.charm_dir().display().to_string();
        env.insert(
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                self.dir.path().join("tools").display()
            ),
        );
        env.insert("JUJU_DISPATCH_PATH", dispatch_path.into());
        env.insert("JUJU_HOOK_NAME", hook_name.clone());
        env.insert("JUJU_UNIT_NAME", UNIT.into());
        env.insert("JUJU_MODEL_NAME", MODEL.into());
        env.insert(
            "JUJU_MODEL_UUID",
            self.world.lock().unwrap().model_uuid.clone(),
        );
        env.insert("JUJU_VERSION", "3.6.25".into());
        env.insert("JUJU_CHARM_DIR", charm.clone());
        env.insert("CHARM_DIR", charm.clone());
        env.insert("JUJU_CONTEXT_ID", context_id.clone());
        env.insert(
            "JUJU_AGENT_SOCKET_ADDRESS",
            self.agent.socket().display().to_string(),
        );
        env.insert("JUJU_AGENT_SOCKET_NETWORK", "unix".into());
        env.insert(
            "CHARM_CONTAINERS_DIR",
            self.containers().display().to_string(),
        );
        if let Some(c) = hook_name.strip_suffix("-pebble-ready") {
            env.insert("JUJU_WORKLOAD_NAME", c.into());
        }
        // The pod's /etc/hosts names this unit; a private mount namespace gives it one.
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg("mount --bind \"$HOSTS_FILE\" /etc/hosts && unset HOSTS_FILE && exec \"$0\"")
            .arg(self.charm_dir().join("dispatch"))
            .env_clear()
            .envs(env)
            .env("HOSTS_FILE", self.hosts())
            .current_dir(self.charm_dir())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        self.agent.unregister(&context_id);
        let code = out.status.code().unwrap_or(-1);
        if code == 0 {
            session.commit().unwrap();
        } else {
            session.discard();
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (code, text)
    }

    fn status(&self) -> StatusValue {
        self.world.lock().unwrap().unit_status(UNIT)
    }

    fn notices(&self) -> usize {
        let raw = std::fs::read(self.charm_dir().join(".unit-state.json")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        v["notices"].as_array().map(|a| a.len()).unwrap_or(0)
    }
}

#[test]
fn sentinel_pebble_ready_defers_until_the_leader_commits_the_databag() {
    if !nix_root() {
        eprintln!("skipping: needs root for mount namespaces");
        return;
    }
    let mut unit = Unit::new();

    let (code, out) = unit.hook("hooks/sentinel-pebble-ready");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        unit.status(),
        StatusValue::waiting("Databag has not been populated")
    );
    assert_eq!(unit.notices(), 1, "the event is deferred");

    let (code, out) = unit.hook("hooks/leader-elected");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        unit.notices(),
        1,
        "the deferred event re-ran before the databag was committed"
    );
    let peer = unit
        .world
        .lock()
        .unwrap()
        .peer_relation_id(APP, "redis-peers")
        .unwrap();
    let bag = unit.world.lock().unwrap().relation_data(peer, APP);
    assert_eq!(bag["leader-host"], FQDN);
    assert!(
        !bag.contains_key("sentinel-password"),
        "only the secret's URI: {bag:?}"
    );
    let secret = unit
        .world
        .lock()
        .unwrap()
        .secret_content(&bag["passwords-secret"])
        .expect("the passwords secret");
    let sentinel_pw = secret["sentinel-password"].clone();
    assert!(
        !out.contains(&sentinel_pw) && !out.contains(&secret["redis-password"]),
        "no secret in the hook output"
    );

    let (code, out) = unit.hook("hooks/config-changed");
    assert_eq!(code, 0, "{out}");
    assert_eq!(unit.notices(), 0, "the deferred notice is gone");
    assert_eq!(unit.status().status, StatusName::Active, "{out}");

    // What Pebble holds: the file, the layer, the running service.
    let root = unit.dir.path().join("roots/sentinel");
    let conf_path = root.join("etc/redis-server/sentinel.conf");
    // We push 0600; sentinel rewrites the file itself (CONFIG REWRITE, umask mode), so the
    // directory is what keeps it private: 0750, owned by redis.
    let dir_meta = std::fs::metadata(root.join("etc/redis-server")).unwrap();
    assert_eq!(dir_meta.permissions().mode() & 0o777, 0o750);
    let meta = std::fs::metadata(&conf_path).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o022,
        0,
        "nobody but redis may write it"
    );
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    assert!(
        conf.contains(&format!("sentinel monitor redis-k8s {FQDN} 6379 1")),
        "{conf}"
    );
    let client = PebbleClient::new(unit.containers().join("sentinel/pebble.socket"));
    let plan = client.get_plan().unwrap();
    assert_eq!(
        plan.services["sentinel"].command.as_deref(),
        Some("redis-server /etc/redis-server/sentinel.conf --sentinel")
    );
    assert!(!plan.to_yaml().contains(&sentinel_pw));
    let services = client.services(&["sentinel"]).unwrap();
    assert_eq!(services[0].current, "active");

    // And the sentinel really runs, with the rendered config and password.
    let info = redis_k8s::sentinel::Sentinel::master_info(ADDR, &sentinel_pw, APP).unwrap();
    assert_eq!(info["ip"], FQDN);
    assert_eq!(info["quorum"], "1");
    for s in unit.servers.drain(..) {
        s.shutdown();
    }
}

#[test]
fn a_missing_context_variable_is_one_clear_error_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_redis-k8s"))
        .env_clear()
        .env("JUJU_DISPATCH_PATH", "hooks/install")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("JUJU_UNIT_NAME"), "{err}");
    assert!(!err.contains("panicked"));
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
