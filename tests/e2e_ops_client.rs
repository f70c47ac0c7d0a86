//! End to end: a Python ops charm (tests/ops_client_charm, ops from PyPI) related to this
//! repo's charm over the `redis` interface, on the local model with real redis-server and
//! redis-sentinel processes. Proves that `juju-local` runs an ops charm as Juju would (ops's
//! dispatch, hook tools, relation data, collect-status, app status from the leader) and that
//! what redis-k8s publishes is what a Python client reads: `leader-host` names the primary's
//! pod FQDN, `port` is 6379, and a PING there reaches a Redis that requires a password.
//!
//! The ops venv comes from `scripts/ops-venv.sh` (created once outside the repo, then reused).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eventually_ok as eventually, Model, APP, CHARM_BIN, ROOT};

const CLIENT: &str = "ops-client";
const MODEL: &str = "opsclient";

impl Model {
    /// The unit Redis reports as primary, when exactly one is and the others are replicas.
    fn primary(&self) -> Option<String> {
        let roles = self.roles();
        let primaries: Vec<&str> = roles
            .iter()
            .filter(|r| r.2 == "primary")
            .map(|r| r.0.as_str())
            .collect();
        let replicas = roles.iter().filter(|r| r.2 == "replica").count();
        (primaries.len() == 1 && replicas == roles.len() - 1).then(|| primaries[0].to_string())
    }

    /// What the ops charm wrote into its own unit databag on the `redis` relation.
    fn client_seen(&self) -> serde_yaml::Value {
        let unit = format!("{CLIENT}/0");
        let shown = self.show(&unit);
        shown[unit.as_str()]["relation-info"]
            .as_sequence()
            .and_then(|r| r.iter().find(|r| r["endpoint"] == "redis"))
            .map(|r| r["units"][unit.as_str()].clone())
            .unwrap_or_default()
    }
}

fn fqdn_of(unit: &str) -> String {
    common::fqdn_of(unit, MODEL)
}

/// Create or reuse the venv with ops (scripts/ops-venv.sh), returning its directory.
fn ops_venv() -> PathBuf {
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("scripts/ops-venv.sh"))
        .output()
        .expect("run scripts/ops-venv.sh");
    assert!(
        out.status.success(),
        "scripts/ops-venv.sh failed (it needs PyPI on first run):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let venv = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let venv = PathBuf::from(venv);
    assert!(venv.join("bin/python").exists(), "no venv at {venv:?}");
    venv
}

/// The ops charm as a packed charm would be laid out: its files plus `venv`, here a link to
/// the ops venv (outside the repo, so never committed).
fn client_charm(dest: &Path, venv: &Path) {
    let src = Path::new(ROOT).join("tests/ops_client_charm");
    std::fs::create_dir_all(dest.join("src")).unwrap();
    for f in ["metadata.yaml", "dispatch", "src/charm.py"] {
        std::fs::copy(src.join(f), dest.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    std::os::unix::fs::symlink(venv, dest.join("venv")).unwrap();
}

/// One key of the client's databag, as a string ("" when missing).
fn key(v: &serde_yaml::Value, k: &str) -> String {
    match &v[k] {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The client read what redis-k8s published about `primary`, and reached that Redis.
fn client_saw(m: &Model, primary: &str) -> Result<(), String> {
    let seen = m.client_seen();
    let host = fqdn_of(primary);
    let want = [
        ("seen-leader-host", host.as_str()),
        ("seen-port", "6379"),
        ("seen-primary-unit", primary),
        ("seen-units", &format!("{APP}/0,{APP}/1,{APP}/2") as &str),
    ];
    for (k, v) in want {
        if key(&seen, k) != v {
            return Err(format!(
                "{k} = {:?}, want {v:?}; databag: {seen:?}",
                key(&seen, k)
            ));
        }
    }
    // Redis answers PING with NOAUTH: the client reached the real, password-protected server.
    let ping = key(&seen, "seen-ping");
    if !ping.starts_with("-NOAUTH") {
        return Err(format!("seen-ping = {ping:?}"));
    }
    let line = m.unit_line(&format!("{CLIENT}/0"));
    let msg = format!("redis at {host}:6379 (PING: NOAUTH)");
    if line["workload"] != "active" || line["message"] != msg.as_str() {
        return Err(format!("client status {line}, want active {msg:?}"));
    }
    Ok(())
}

/// Deploy 3 units of redis-k8s and the ops charm, relate them, check what the ops charm read;
/// then kill the primary's pod and check that the ops charm follows the new primary.
#[test]
fn ops_charm_reads_the_redis_relation() {
    let venv = ops_venv();
    let tmp = tempfile::tempdir().unwrap();
    let charm = tmp.path().join("ops-client");
    client_charm(&charm, &venv);
    let m = Model::new(MODEL)
        .with_model_flag()
        .with_cwd(Path::new(ROOT))
        .with_diagnostic(&["logs", &format!("{CLIENT}/0")]);

    // `--dispatch` relative to the caller's cwd (the daemon runs elsewhere).
    let bin = Path::new(CHARM_BIN);
    let bin_dir = bin.parent().expect("binary dir");
    let rel = format!("./{}", bin.file_name().unwrap().to_string_lossy());
    let deploy = [
        "deploy",
        ROOT,
        "-n",
        "3",
        "--dispatch",
        &rel,
        "--subnet",
        "127.0.73",
        "--update-status-interval",
        "5",
        "--wait",
        "--timeout",
        "120",
    ];
    let out = m.cmd_in(bin_dir, &deploy);
    m.check(&deploy, out);
    m.ok(&[
        "deploy",
        charm.to_str().unwrap(),
        "--wait",
        "--timeout",
        "60",
    ]);
    // Before the relation: the ops charm's collect-status ran (blocked, with its message).
    let line = m.unit_line(&format!("{CLIENT}/0"));
    assert_eq!(line["workload"], "blocked", "{line}");
    assert_eq!(line["message"], "needs a redis relation", "{line}");

    m.ok(&["relate", APP, CLIENT, "--wait", "--timeout", "60"]);
    let mut primary = String::new();
    eventually("one primary, two replicas", 60, || {
        primary = m.primary().ok_or("roles not settled")?;
        Ok(())
    });
    eventually("the ops charm read the relation", 30, || {
        client_saw(&m, &primary)
    });

    // The leader's app status (status-set --application) and ops's own log lines.
    let st = m.status_json();
    let app = st["apps"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == CLIENT).cloned())
        .unwrap_or_default();
    assert_eq!(app["status"], "active", "{app}");
    assert_eq!(app["message"], "related to 3 redis units", "{app}");
    let log = m.ok(&["logs", &format!("{CLIENT}/0"), "-n", "1000"]);
    assert!(
        log.contains("Emitting Juju event redis_relation_changed"),
        "{log}"
    );
    assert!(!log.contains("Traceback"), "{log}");

    // Kill the primary's pod: Sentinel promotes a replica, the leader republishes
    // `leader-host`, and the ops charm's relation-changed sees the new primary.
    // Sentinel can only promote a replica it knows: it learns them from the primary's INFO
    // every 10 s, so wait until every sentinel knows both replicas and the other sentinels.
    let sentinel_pw = {
        let out = m.ok(&["run", &format!("{APP}/0"), "get-sentinel-password"]);
        out.lines()
            .find_map(|l| l.trim().strip_prefix("sentinel-password:"))
            .map(|p| p.trim().trim_matches('\'').to_string())
            .expect("sentinel-password")
    };
    let addresses: Vec<String> = m.status_json()["units"]
        .as_array()
        .map(|us| {
            us.iter()
                .filter(|u| u["name"].as_str().unwrap_or("").starts_with(APP))
                .filter_map(|u| u["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    eventually("sentinels know both replicas", 60, || {
        for addr in &addresses {
            let info = redis_k8s::sentinel::Sentinel::master_info(addr, &sentinel_pw, APP)
                .map_err(|e| e.to_string())?;
            if info.get("num-slaves").map(String::as_str) != Some("2")
                || info.get("num-other-sentinels").map(String::as_str) != Some("2")
            {
                return Err(format!("{addr}: {info:?}"));
            }
        }
        Ok(())
    });
    m.ok(&["kill-pod", &primary]);
    let old = primary.clone();
    let mut newp = String::new();
    eventually("a new primary", 120, || {
        newp = m.primary().filter(|p| *p != old).ok_or("no new primary")?;
        Ok(())
    });
    eventually("the ops charm follows the new primary", 60, || {
        client_saw(&m, &newp)
    });
}
