//! The hook tools end to end, through real processes: a tools dir of symlinks to
//! `juju-local` (as Juju's tools dir holds symlinks to `jujuc`), the unit agent socket, and a
//! `World` behind it. Two units of `redis-k8s` (leader `redis-k8s/0`) with a peer relation,
//! and `client/0` related over `redis`.

use redis_k8s::ops::hookcmds::process::ProcessHookTools;
use redis_k8s::ops::hookcmds::{HookError, HookTools, SecretOptions, SecretQuery, StatusValue};
use redis_k8s::ops::testing::world::{CharmMeta, HookInfo, Session, World};
use redis_k8s::sim::agent::AgentServer;
use redis_k8s::sim::hooktools::TOOL_NAMES;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Field order matters: the server stops (and removes its socket) before the dir goes.
struct Env {
    server: AgentServer,
    dir: tempfile::TempDir,
    tools: PathBuf,
    world: Arc<Mutex<World>>,
    peer: u32,
    rel: u32,
}

struct Out {
    stdout: String,
    stderr: String,
    code: i32,
}

fn setup() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = dir.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for t in TOOL_NAMES {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_juju-local"), tools.join(t)).unwrap();
    }
    let meta = CharmMeta::from_yaml(
        "name: redis-k8s\npeers:\n  redis-peers:\n    interface: redis-peers\nprovides:\n  redis:\n    interface: redis\nstorage:\n  database:\n    type: filesystem\n    location: /var/lib/redis\n",
        "options:\n  maxmemory:\n    type: string\n    default: \"0\"\n  port:\n    type: int\n",
        "",
    )
    .unwrap();
    let client = CharmMeta::from_yaml("name: client\nrequires:\n  db: redis\n", "", "").unwrap();
    let mut w = World::new("local");
    w.add_app("redis-k8s", meta).unwrap();
    w.add_app("client", client).unwrap();
    w.add_unit("redis-k8s").unwrap();
    w.add_unit("redis-k8s").unwrap();
    w.add_unit("client").unwrap();
    w.set_leader("redis-k8s/0");
    let rel = w
        .add_relation(("redis-k8s", "redis"), ("client", "db"))
        .unwrap();
    let peer = w.peer_relation_id("redis-k8s", "redis-peers").unwrap();
    let server = AgentServer::start(&dir.path().join("agent.socket")).unwrap();
    Env {
        dir,
        tools,
        server,
        world: Arc::new(Mutex::new(w)),
        peer,
        rel,
    }
}

impl Env {
    /// Open and register a session for `unit` under context id `ctx`.
    fn session(&self, ctx: &str, unit: &str, hook: HookInfo) -> Arc<Session> {
        let s = Arc::new(World::session(&self.world, unit, hook));
        self.server.register(ctx, Arc::clone(&s));
        s
    }

    /// Run a tool the way a charm does: by bare name on PATH, with the agent variables.
    fn tool(&self, ctx: &str, name: &str, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = Command::new(name);
        cmd.args(args)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.tools.display()))
            .env("JUJU_AGENT_SOCKET_ADDRESS", self.server.socket())
            .env("JUJU_CONTEXT_ID", ctx)
            .current_dir(self.dir.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tool");
        if let Some(data) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(data.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Out {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    fn json(&self, ctx: &str, name: &str, args: &[&str]) -> serde_json::Value {
        let out = self.tool(ctx, name, args, None);
        assert_eq!(out.code, 0, "{name} {args:?}: {}", out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {:?}", out.stdout))
    }

    /// `ProcessHookTools` pointed at the real tools and this agent.
    fn process_tools(&self, ctx: &str) -> ProcessHookTools {
        ProcessHookTools::with_path(format!("{}:/usr/bin:/bin", self.tools.display()))
            .env("JUJU_AGENT_SOCKET_ADDRESS", self.server.socket())
            .env("JUJU_CONTEXT_ID", ctx)
    }
}

#[test]
fn leader_reads_its_context_in_json() {
    let env = setup();
    env.session("c0", "redis-k8s/0", HookInfo::default());
    assert_eq!(
        env.json("c0", "is-leader", &["--format=json"]),
        serde_json::json!(true)
    );
    assert_eq!(env.tool("c0", "is-leader", &[], None).stdout, "True\n");
    assert_eq!(
        env.json("c0", "config-get", &["--all", "--format=json"]),
        serde_json::json!({"maxmemory": "0", "port": null})
    );
    let ids = env.json("c0", "relation-ids", &["redis", "--format=json"]);
    assert_eq!(ids, serde_json::json!([format!("redis:{}", env.rel)]));
    let units = env.json(
        "c0",
        "relation-list",
        &["-r", &format!("redis:{}", env.rel), "--format=json"],
    );
    assert_eq!(units, serde_json::json!(["client/0"]));
    let peers = env.json(
        "c0",
        "relation-list",
        &["-r", &env.peer.to_string(), "--format=json"],
    );
    assert_eq!(peers, serde_json::json!(["redis-k8s/1"]));
    let net = env.json("c0", "network-get", &["redis-peers", "--format=json"]);
    let addr = env.world.lock().unwrap().unit_address("redis-k8s/0");
    assert_eq!(net["ingress-addresses"], serde_json::json!([addr]));
    assert_eq!(
        net["egress-subnets"],
        serde_json::json!([format!("{addr}/32")])
    );
    assert_eq!(
        net["bind-addresses"][0]["addresses"][0]["value"],
        serde_json::json!(addr)
    );
    let gs = env.json("c0", "goal-state", &["--format=json"]);
    assert_eq!(gs["units"]["redis-k8s/1"]["status"], "active");
    assert_eq!(gs["relations"]["redis"]["client"]["status"], "joined");
    assert_eq!(
        env.json("c0", "storage-get", &["-s", "database/0", "--format=json"]),
        serde_json::json!({"kind": "filesystem", "location": "/var/lib/redis"})
    );
}

#[test]
fn non_leader_cannot_write_or_read_the_app_bag() {
    let env = setup();
    env.session("c1", "redis-k8s/1", HookInfo::default());
    let rel = env.rel.to_string();
    let out = env.tool(
        "c1",
        "relation-set",
        &["-r", &rel, "--app", "--file", "-"],
        Some("{\"a\": \"b\"}"),
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "ERROR cannot write relation settings\n");
    let out = env.tool(
        "c1",
        "relation-get",
        &["-r", &rel, "--app", "-", "redis-k8s", "--format=json"],
        None,
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "ERROR permission denied\n")
    );
    // The peer app bag is readable by every unit.
    let out = env.tool(
        "c1",
        "relation-get",
        &[
            "-r",
            &env.peer.to_string(),
            "--app",
            "-",
            "redis-k8s",
            "--format=json",
        ],
        None,
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, "{}\n"));
    let out = env.tool(
        "c1",
        "status-set",
        &["--application=True", "active", "--", "x"],
        None,
    );
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "ERROR this unit is not the leader\n")
    );
}

#[test]
fn relation_data_reaches_other_units_only_after_commit() {
    let env = setup();
    let writer = env.session("w", "redis-k8s/0", HookInfo::default());
    let reader_hook = HookInfo {
        hook_name: "redis-peers-relation-changed".into(),
        relation_id: Some(env.peer),
        remote_unit: Some("redis-k8s/0".into()),
        remote_app: Some("redis-k8s".into()),
        ..HookInfo::default()
    };
    env.session("r", "redis-k8s/1", reader_hook);
    let peer = env.peer.to_string();
    // ops 2.3's order: positionals first, then --format=json.
    let out = env.tool(
        "w",
        "relation-set",
        &["-r", &peer, "--file", "-"],
        Some("leader-host: redis-k8s-0\n"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        env.json(
            "w",
            "relation-get",
            &["-r", &peer, "-", "redis-k8s/0", "--format=json"]
        )["leader-host"],
        "redis-k8s-0"
    );
    // The other unit (member defaults to the hook's remote unit) does not see it yet.
    let before = env.json("r", "relation-get", &["--format=json"]);
    assert!(before.get("leader-host").is_none(), "{before}");
    writer.commit().unwrap();
    assert_eq!(
        writer.changed_relations(),
        vec![(env.peer, "redis-k8s/0".to_string())]
    );
    assert_eq!(
        env.tool("r", "relation-get", &["leader-host"], None).stdout,
        "redis-k8s-0\n"
    );

    // A failed hook's writes vanish.
    env.tool(
        "w",
        "relation-set",
        &["-r", &peer, "leader-host=other"],
        None,
    );
    writer.discard();
    assert_eq!(
        env.tool("r", "relation-get", &["leader-host"], None).stdout,
        "redis-k8s-0\n"
    );
    assert_eq!(
        env.world
            .lock()
            .unwrap()
            .relation_data(env.peer, "redis-k8s/0")["leader-host"],
        "redis-k8s-0"
    );
}

#[test]
fn usage_and_runtime_errors_have_juju_exit_codes() {
    let env = setup();
    env.session("c", "redis-k8s/0", HookInfo::default());
    let out = env.tool("c", "relation-get", &["--bogus"], None);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (2, "ERROR flag provided but not defined: --bogus\n")
    );
    let out = env.tool(
        "c",
        "relation-list",
        &["-r", "db:99", "--format=json"],
        None,
    );
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "ERROR invalid value \"db:99\" for option -r: relation not found\n"
    );
    let out = env.tool("c", "status-set", &["error", "x"], None);
    assert_eq!(out.code, 2);
    let out = env.tool("c", "action-get", &["--format=json"], None);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "ERROR not running an action\n")
    );
    let out = env.tool("c", "state-get", &["missing", "--strict"], None);
    assert_eq!(out.code, 1);
    let out = env.tool("c", "resource-get", &["cert-file"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    let out = env.tool("nope", "is-leader", &[], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("unknown context"), "{}", out.stderr);
}

#[test]
fn no_agent_means_a_clear_error() {
    let env = setup();
    let out = Command::new(env.tools.join("is-leader"))
        .env_clear()
        .env(
            "JUJU_AGENT_SOCKET_ADDRESS",
            env.dir.path().join("missing.socket"),
        )
        .env("JUJU_CONTEXT_ID", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("ERROR cannot connect to the unit agent: "));
}

#[test]
fn process_hook_tools_round_trip_through_the_real_binaries() {
    let env = setup();
    let leader = env.session("l", "redis-k8s/0", HookInfo::default());
    let t = env.process_tools("l");
    assert!(t.is_leader().unwrap());
    let data = BTreeMap::from([("host".to_string(), "10.0.0.1".to_string())]);
    t.relation_set(env.rel, &data, true).unwrap();
    assert_eq!(t.relation_get(env.rel, "redis-k8s", true).unwrap(), data);
    let content = BTreeMap::from([(
        "password".to_string(),
        "p@ss word\nwith newline".to_string(),
    )]);
    let uri = t
        .secret_add(
            &content,
            &SecretOptions {
                label: Some("admin".into()),
                ..SecretOptions::default()
            },
        )
        .unwrap();
    assert!(uri.starts_with("secret:"), "{uri}");
    assert_eq!(
        t.secret_get(&SecretQuery::by_label("admin")).unwrap(),
        content
    );
    t.secret_grant(&uri, env.rel, None).unwrap();
    t.state_set(&BTreeMap::from([(
        "k".to_string(),
        "v: with yaml chars".to_string(),
    )]))
    .unwrap();
    assert_eq!(t.state_get().unwrap()["k"], "v: with yaml chars");
    t.status_set(&StatusValue::active("ready"), true).unwrap();
    assert_eq!(
        t.app_status_get().unwrap().status,
        StatusValue::active("ready")
    );
    assert!(matches!(
        t.relation_list(99),
        Err(HookError::RelationNotFound { .. })
    ));
    assert_eq!(t.calls(), 11);
    assert_eq!(
        leader.calls().len(),
        10,
        "the failed -r parse never reaches the session"
    );
    leader.commit().unwrap();

    // The client unit, through the same binaries, reads what the leader committed.
    env.session("c", "client/0", HookInfo::default());
    let c = env.process_tools("c");
    assert_eq!(c.relation_get(env.rel, "redis-k8s", true).unwrap(), data);
    assert_eq!(c.secret_get(&SecretQuery::by_id(&uri)).unwrap(), content);
    let err = c.relation_set(env.rel, &data, true).unwrap_err();
    assert!(matches!(err, HookError::NotLeader { .. }), "{err:?}");
    assert_eq!(
        env.world.lock().unwrap().unit_state("redis-k8s/0")["k"],
        "v: with yaml chars"
    );
}

#[test]
fn a_shell_charm_can_drive_the_tools() {
    let env = setup();
    let s = env.session("sh", "redis-k8s/0", HookInfo::default());
    let script = format!(
        "set -e\n\
         juju-log --log-level DEBUG -- starting\n\
         [ \"$(is-leader)\" = True ]\n\
         echo '{{\"primary\": \"redis-k8s/0\"}}' | relation-set -r redis-peers:{peer} --app --file -\n\
         open-port 6379/tcp\n\
         status-set --application=False maintenance -- configuring\n\
         application-version-set 7.2.5\n",
        peer = env.peer
    );
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", env.tools.display()))
        .env("JUJU_AGENT_SOCKET_ADDRESS", env.server.socket())
        .env("JUJU_CONTEXT_ID", "sh")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.calls(),
        vec![
            "juju-log",
            "is-leader",
            "relation-set",
            "open-port",
            "status-set",
            "application-version-set"
        ]
    );
    s.commit().unwrap();
    let w = env.world.lock().unwrap();
    assert_eq!(
        w.relation_data(env.peer, "redis-k8s")["primary"],
        "redis-k8s/0"
    );
    assert_eq!(
        w.opened_ports("redis-k8s/0"),
        vec![redis_k8s::ops::hookcmds::Port::tcp(6379)]
    );
    assert_eq!(
        w.unit_status("redis-k8s/0"),
        StatusValue::maintenance("configuring")
    );
    assert_eq!(w.app_version("redis-k8s"), "7.2.5");
}
