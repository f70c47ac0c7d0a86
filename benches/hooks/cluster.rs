//! A prepared 3-unit redis-k8s in this process: one `World`, one `AgentServer` serving the
//! hook tools, and two Pebble-API servers per unit that really run redis-server and
//! sentinel. Hooks run the way Juju runs them (a fresh `dispatch` process, the contract's
//! environment, the hook tools on PATH), and each run is reaped with wait4 for its peak RSS.
//!
//! Unit 0 is the measured one and looks like a sidecar pod: its containers dir is bind-mounted
//! on `/charm/containers` (the bench runs in a private mount namespace, see `main.rs`), so both
//! the Rust charm and ops find `/charm/containers/<c>/pebble.socket`; the other units only
//! run during the warm-up and get `CHARM_CONTAINERS_DIR`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redis_k8s::ops::hookcmds::StatusName;
use redis_k8s::ops::testing::world::{ActionInvocation, CharmMeta, HookInfo, World};
use redis_k8s::sim::agent::AgentServer;
use redis_k8s::sim::hooktools::TOOL_NAMES;
use redis_k8s::sim::pebble_server::{PebbleServer, PebbleServerConfig};

pub const APP: &str = "redis-k8s";
pub const MODEL: &str = "bench";
pub const PEER: &str = "redis-peers";
/// Where a sidecar pod's charm container sees the workload containers' Pebble sockets.
pub const POD_CONTAINERS_DIR: &str = "/charm/containers";

/// One event to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A hook with no extra context (`install`, `update-status`, ...).
    Hook(&'static str),
    /// `<container>-pebble-ready`.
    PebbleReady(&'static str),
    /// `redis-peers-relation-changed` from the unit with this index.
    PeerChanged(usize),
    /// An action, without parameters.
    Action(&'static str),
}

impl Event {
    /// The name the table shows.
    pub fn label(&self) -> String {
        match self {
            Event::Hook(h) => h.to_string(),
            Event::PebbleReady(c) => format!("{c}-pebble-ready"),
            Event::PeerChanged(_) => format!("{PEER}-relation-changed"),
            Event::Action(a) => format!("{a} (action)"),
        }
    }
}

/// One unit's names and directories.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub name: String,
    pub charm_dir: PathBuf,
    pub containers: PathBuf,
}

/// What one hook run cost.
#[derive(Debug, Clone)]
pub struct HookRun {
    pub code: Option<i32>,
    pub wall: Duration,
    pub max_rss_kib: u64,
    pub cpu: Duration,
    /// Hook-tool calls, in order.
    pub tool_calls: Vec<String>,
    /// Requests served by the unit's two Pebble servers during the hook.
    pub pebble_requests: u64,
    /// stdout + stderr of the hook.
    pub output: String,
    pub action_results: BTreeMap<String, String>,
}

impl HookRun {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Fields drop in order: the Pebble servers (and their services) go first (see `Drop`), then
/// the agent, then the directory everything lives in.
pub struct Cluster {
    servers: Vec<PebbleServer>,
    agent: AgentServer,
    pub world: Arc<Mutex<World>>,
    pub units: Vec<UnitSpec>,
    pub peer_relation: u32,
    contexts: u64,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in self.servers.drain(..) {
            s.shutdown();
        }
    }
}

fn copy_into(src: &Path, dst: &Path) -> anyhow::Result<()> {
    if let Some(p) = dst.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::copy(src, dst)
        .with_context(|| format!("copy {} to {}", src.display(), dst.display()))?;
    Ok(())
}

impl Cluster {
    /// Directories, hosts file, tools, world, agent and Pebble servers for `n` units whose
    /// pods answer on `127.0.0.<first_octet + i>`. Mounts unit 0's containers dir on
    /// `/charm/containers` and the hosts file on `/etc/hosts`: call only inside a private
    /// mount namespace.
    pub fn new(
        n: usize,
        repo: &Path,
        charm_bin: &Path,
        tools_bin: &Path,
        first_octet: u8,
    ) -> anyhow::Result<Cluster> {
        if n < 2 {
            bail!("the cluster needs at least 2 units (peer relation-changed names a second one)");
        }
        let dir = tempfile::Builder::new().prefix("hook-bench").tempdir()?;
        let tools = dir.path().join("tools");
        std::fs::create_dir_all(&tools)?;
        for t in TOOL_NAMES {
            std::os::unix::fs::symlink(tools_bin, tools.join(t))?;
        }
        let mut world = World::new(MODEL);
        let mut units = Vec::new();
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for i in 0..n {
            let name = format!("{APP}/{i}");
            let host = format!("{APP}-{i}");
            let fqdn = format!("{host}.{APP}-endpoints.{MODEL}.svc.cluster.local");
            let address = format!("127.0.0.{}", usize::from(first_octet) + i);
            hosts.push_str(&format!("{address} {fqdn} {host}.{APP}-endpoints {host}\n"));
            let base = dir.path().join("units").join(i.to_string());
            let charm_dir = base.join("charm");
            for f in ["metadata.yaml", "config.yaml", "actions.yaml"] {
                copy_into(&repo.join(f), &charm_dir.join(f))?;
            }
            for entry in std::fs::read_dir(repo.join("templates"))? {
                let entry = entry?;
                copy_into(
                    &entry.path(),
                    &charm_dir.join("templates").join(entry.file_name()),
                )?;
            }
            // A packed charm's dispatch is the binary itself.
            copy_into(charm_bin, &charm_dir.join("dispatch"))?;
            std::fs::set_permissions(
                charm_dir.join("dispatch"),
                std::fs::Permissions::from_mode(0o755),
            )?;
            units.push(UnitSpec {
                name,
                charm_dir,
                containers: base.join("containers"),
            });
        }
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, hosts)?;

        let meta = CharmMeta::load(&units[0].charm_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        world
            .add_app(APP, meta)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for _ in 0..n {
            world.add_unit(APP).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        world.set_leader(&units[0].name);
        let peer_relation = world
            .peer_relation_id(APP, PEER)
            .context("the world has no peer relation")?;

        mount_bind(&hosts_file, Path::new("/etc/hosts"))?;
        std::fs::create_dir_all(&units[0].containers)?;
        std::fs::create_dir_all(POD_CONTAINERS_DIR)?;
        mount_bind(&units[0].containers, Path::new(POD_CONTAINERS_DIR))?;

        let agent = AgentServer::start(&dir.path().join("agent.sock"))?;
        let mut servers = Vec::new();
        for (i, u) in units.iter().enumerate() {
            for c in ["redis", "sentinel"] {
                let mut env = BTreeMap::new();
                env.insert("HOSTNAME".to_string(), format!("{APP}-{i}"));
                servers.push(PebbleServer::start(PebbleServerConfig {
                    socket: u.containers.join(c).join("pebble.socket"),
                    root: dir
                        .path()
                        .join("units")
                        .join(i.to_string())
                        .join("roots")
                        .join(c),
                    container: c.into(),
                    hosts_file: Some(hosts_file.clone()),
                    env,
                    ..PebbleServerConfig::default()
                })?);
            }
        }
        Ok(Cluster {
            servers,
            agent,
            world: Arc::new(Mutex::new(world)),
            units,
            peer_relation,
            contexts: 0,
            dir,
        })
    }

    /// The bench's scratch directory (removed with the cluster).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn pebble_requests(&self, unit: usize) -> u64 {
        self.servers[unit * 2..unit * 2 + 2]
            .iter()
            .map(|s| s.request_count())
            .sum()
    }

    /// Run `event` on unit `unit` with the `dispatch` in `charm_dir`.
    pub fn run(&mut self, unit: usize, charm_dir: &Path, event: &Event) -> anyhow::Result<HookRun> {
        self.run_program(unit, charm_dir, event, None)
    }

    /// The hook tools directory (symlinks to the multi-call `juju-local`).
    pub fn tools_dir(&self) -> PathBuf {
        self.dir.path().join("tools")
    }

    /// Like [`Cluster::run`], with `program` (and its arguments) run in the hook's context
    /// instead of `dispatch`: the calibration rows (a bare process, one hook tool).
    pub fn run_program(
        &mut self,
        unit: usize,
        charm_dir: &Path,
        event: &Event,
        program: Option<(&Path, &[&str])>,
    ) -> anyhow::Result<HookRun> {
        self.contexts += 1;
        let spec = self.units[unit].clone();
        let context_id = format!("{}-{}", spec.name, self.contexts);
        let mut info = HookInfo::default();
        let mut env: BTreeMap<&str, String> = BTreeMap::new();
        match event {
            Event::Hook(h) => info.hook_name = h.to_string(),
            Event::PebbleReady(c) => {
                info.hook_name = format!("{c}-pebble-ready");
                env.insert("JUJU_WORKLOAD_NAME", c.to_string());
            }
            Event::PeerChanged(remote) => {
                let remote = self.units[*remote].name.clone();
                info.hook_name = format!("{PEER}-relation-changed");
                info.relation_id = Some(self.peer_relation);
                info.remote_unit = Some(remote.clone());
                info.remote_app = Some(APP.into());
                env.insert("JUJU_RELATION", PEER.into());
                env.insert("JUJU_RELATION_ID", format!("{PEER}:{}", self.peer_relation));
                env.insert("JUJU_REMOTE_UNIT", remote);
                env.insert("JUJU_REMOTE_APP", APP.into());
            }
            Event::Action(a) => {
                info.action = Some(ActionInvocation {
                    name: a.to_string(),
                    params: BTreeMap::new(),
                });
                env.insert("JUJU_ACTION_NAME", a.to_string());
                env.insert("JUJU_ACTION_UUID", self.contexts.to_string());
                env.insert("JUJU_ACTION_TAG", format!("action-{}", self.contexts));
            }
        }
        let dispatch_path = match event {
            Event::Action(a) => format!("actions/{a}"),
            _ => format!("hooks/{}", info.hook_name),
        };
        let session = Arc::new(World::session(&self.world, &spec.name, info.clone()));
        self.agent.register(&context_id, session.clone());

        let charm = charm_dir.display().to_string();
        env.insert(
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                self.dir.path().join("tools").display()
            ),
        );
        env.insert("JUJU_DISPATCH_PATH", dispatch_path);
        env.insert("JUJU_HOOK_NAME", info.hook_name.clone());
        env.insert("JUJU_UNIT_NAME", spec.name.clone());
        env.insert("JUJU_MODEL_NAME", MODEL.into());
        env.insert(
            "JUJU_MODEL_UUID",
            self.world
                .lock()
                .map_err(|_| anyhow::anyhow!("world lock"))?
                .model_uuid
                .clone(),
        );
        env.insert("JUJU_VERSION", "3.6.25".into());
        env.insert("JUJU_CHARM_DIR", charm.clone());
        env.insert("CHARM_DIR", charm);
        env.insert("JUJU_CONTEXT_ID", context_id.clone());
        env.insert(
            "JUJU_AGENT_SOCKET_ADDRESS",
            self.agent.socket().display().to_string(),
        );
        env.insert("JUJU_AGENT_SOCKET_NETWORK", "unix".into());
        env.insert("LANG", "C.UTF-8".into());
        if unit != 0 {
            env.insert(
                "CHARM_CONTAINERS_DIR",
                spec.containers.display().to_string(),
            );
        }

        let log_path = self.dir.path().join("hook.log");
        let log = std::fs::File::create(&log_path)?;
        let before = self.pebble_requests(unit);
        let dispatch = charm_dir.join("dispatch");
        let (exe, args) = program.unwrap_or((&dispatch, &[]));
        // Peak RSS from GNU time: a child forked by the bench itself would report the bench's
        // own RSS (a vfork'ed child's high-water mark is the parent's until it execs).
        let rss_file = self.dir.path().join("rss.txt");
        let _ = std::fs::remove_file(&rss_file);
        let mut cmd = if Path::new(GNU_TIME).exists() {
            let mut c = Command::new(GNU_TIME);
            c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let start = Instant::now();
        let child = cmd
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(charm_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", exe.display()))?;
        let exit = crate::rusage::wait(child)?;
        let wall = start.elapsed();
        let pebble_requests = self.pebble_requests(unit) - before;
        self.agent.unregister(&context_id);
        let tool_calls = session.calls();
        let action_results = session.action_results();
        if exit.code == Some(0) {
            session
                .commit()
                .map_err(|e| anyhow::anyhow!("commit: {e}"))?;
        } else {
            session.discard();
        }
        Ok(HookRun {
            code: exit.code,
            wall,
            max_rss_kib: gnu_time_rss(&rss_file).unwrap_or(exit.max_rss_kib),
            cpu: exit.cpu,
            tool_calls,
            pebble_requests,
            output: std::fs::read_to_string(&log_path).unwrap_or_default(),
            action_results,
        })
    }

    /// Run with the Rust charm; a failure is an error carrying the hook's output.
    pub fn must(&mut self, unit: usize, event: &Event) -> anyhow::Result<HookRun> {
        let dir = self.units[unit].charm_dir.clone();
        let run = self.run(unit, &dir, event)?;
        if !run.ok() {
            bail!(
                "{} on {} exited {:?}:\n{}",
                event.label(),
                self.units[unit].name,
                run.code,
                run.output
            );
        }
        Ok(run)
    }

    fn all_active(&self) -> bool {
        let Ok(w) = self.world.lock() else {
            return false;
        };
        self.units
            .iter()
            .all(|u| w.unit_status(&u.name).status == StatusName::Active)
    }

    /// Status lines of every unit (for errors and the report).
    pub fn statuses(&self) -> Vec<String> {
        let Ok(w) = self.world.lock() else {
            return Vec::new();
        };
        self.units
            .iter()
            .map(|u| {
                let s = w.unit_status(&u.name);
                format!("{}: {} {}", u.name, s.status.as_str(), s.message)
            })
            .collect()
    }

    /// Deploy-like warm-up: install everywhere, leader-elected on the leader, pebble-ready
    /// for both containers, peer relation-changed, then config-changed/update-status rounds
    /// until every unit is active (deferred events re-run on the way).
    pub fn bring_up(&mut self) -> anyhow::Result<()> {
        let n = self.units.len();
        for u in 0..n {
            self.must(u, &Event::Hook("install"))?;
        }
        self.must(0, &Event::Hook("leader-elected"))?;
        for u in 0..n {
            self.must(u, &Event::PebbleReady("redis"))?;
            self.must(u, &Event::PebbleReady("sentinel"))?;
            for other in (0..n).filter(|o| *o != u) {
                self.must(u, &Event::PeerChanged(other))?;
            }
            self.must(u, &Event::Hook("config-changed"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for u in 0..n {
                self.must(u, &Event::Hook("config-changed"))?;
                self.must(u, &Event::Hook("update-status"))?;
            }
            if self.all_active() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the units never became active: {:?}", self.statuses());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// GNU time (Debian package `time`): runs the hook and writes its peak RSS (`%M`, KiB).
pub const GNU_TIME: &str = "/usr/bin/time";

/// The last line GNU time wrote (it prefixes "Command exited with non-zero status N").
fn gnu_time_rss(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .parse()
        .ok()
}

/// `mount --bind src dst` (in the caller's mount namespace).
fn mount_bind(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let out = Command::new("mount")
        .arg("--bind")
        .arg(src)
        .arg(dst)
        .output()?;
    if !out.status.success() {
        bail!(
            "mount --bind {} {}: {}",
            src.display(),
            dst.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
