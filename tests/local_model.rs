//! The local model end to end with a tiny shell-script charm (`tests/local_model_charm`):
//! the real `juju-local` binary, its daemon, hook tools, Pebble servers and hook queues.
//! No Redis here, so these run in seconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::JL as BIN;

/// A model (torn down on drop) plus a copy of the tiny charm it deploys.
struct Model {
    m: common::Model,
    charm: PathBuf,
}

impl std::ops::Deref for Model {
    type Target = common::Model;
    fn deref(&self) -> &common::Model {
        &self.m
    }
}

impl Model {
    fn new(name: &str, subnet: &str) -> Model {
        let m = common::Model::new(name).with_subnet(subnet);
        let charm = m.scratch().join("charm");
        std::fs::create_dir_all(&charm).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/local_model_charm");
        for f in ["metadata.yaml", "config.yaml", "actions.yaml", "dispatch"] {
            std::fs::copy(src.join(f), charm.join(f)).unwrap();
        }
        Model { m, charm }
    }

    fn deploy(&self, extra: &[&str]) {
        let charm = self.charm.to_string_lossy().into_owned();
        let mut args = vec![
            "deploy",
            charm.as_str(),
            "--subnet",
            self.subnet.as_str(),
            "--retry-cap",
            "2",
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    fn events(&self, unit: &str) -> Vec<String> {
        let path = self.unit_dir(unit).join("events.log");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_once(' ').map_or("", |x| x.1).to_string())
            .collect()
    }
}

/// The hooks (dispatch paths with their remote/departing units) in the order they ran.
fn hooks(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.starts_with("hooks/") || e.starts_with("actions/"))
        .cloned()
        .collect()
}

fn position(list: &[String], item: &str) -> usize {
    list.iter()
        .position(|e| e == item)
        .unwrap_or_else(|| panic!("{item:?} not in {list:#?}"))
}

fn unit<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no unit {name} in {status}"))
}

#[test]
fn deploy_runs_juju_lifecycle_and_relations() {
    let m = Model::new("lifecycle", "127.0.41");
    m.deploy(&["-n", "2", "--wait", "--timeout", "60"]);

    let e0 = m.events("tiny/0");
    let h0 = hooks(&e0);
    // The deploy sequence of contract 1.4, in order, on the leader.
    let order = [
        "hooks/install remote= departing=",
        "hooks/peer-relation-created remote= departing=",
        "hooks/leader-elected remote= departing=",
        "hooks/config-changed remote= departing=",
        "hooks/start remote= departing=",
        "hooks/data-storage-attached remote= departing=",
        "hooks/workload-pebble-ready remote= departing=",
        "hooks/peer-relation-joined remote=tiny/1 departing=",
        "hooks/peer-relation-changed remote=tiny/1 departing=",
    ];
    let pos: Vec<usize> = order.iter().map(|h| position(&h0, h)).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{h0:#?}");
    // The non-leader gets leader-settings-changed instead (Juju 3.x).
    let h1 = hooks(&m.events("tiny/1"));
    assert!(h1.contains(&"hooks/leader-settings-changed remote= departing=".to_string()));
    assert!(!h1.iter().any(|h| h.starts_with("hooks/leader-elected")));
    // Exactly Juju's environment: no HOME, cwd = charm dir, stdin /dev/null, JUJU_VERSION.
    let env = e0.iter().find(|e| e.starts_with("env ")).expect("env line");
    assert!(env.contains("HOME=unset"), "{env}");
    assert!(env.contains("VERSION=3.6.25"), "{env}");
    assert!(env.contains("MODEL=lifecycle"), "{env}");
    assert!(env.contains("STDIN=/dev/null"), "{env}");
    assert!(env.contains("/units/tiny-0/charm"), "{env}");
    // The Pebble socket is where a sidecar charm looks for it.
    assert!(e0.contains(&"socket ok".to_string()), "{e0:#?}");
    // Committed relation data reached the other unit (and relation-get reads it).
    let e1 = m.events("tiny/1");
    assert!(
        e1.contains(&"peer-data token=tiny/0 leader=tiny/0".to_string()),
        "{e1:#?}"
    );
    assert!(
        m.events("tiny/0")
            .contains(&"peer-data token=tiny/1 leader=tiny/0".to_string()),
        "{:#?}",
        m.events("tiny/0")
    );

    let st = m.status_json();
    let u0 = unit(&st, "tiny/0");
    assert_eq!(u0["leader"], true);
    assert_eq!(u0["workload"], "active");
    assert_eq!(u0["agent"], "idle");
    assert_eq!(u0["address"], "127.0.41.1");
    assert_eq!(unit(&st, "tiny/1")["address"], "127.0.41.2");
    let table = m.ok(&["status"]);
    assert!(table.contains("tiny/0*"), "{table}");

    // Config: config-changed everywhere, with the new value.
    m.ok(&[
        "config",
        "tiny",
        "greeting=bonjour",
        "--wait",
        "--timeout",
        "30",
    ]);
    assert!(m.events("tiny/1").contains(&"greeting=bonjour".to_string()));
    assert!(m.fails(&["config", "tiny", "level=abc"]).contains("level"));

    // A second app, related: the requirer reads the provider's unit data.
    let charm = m.charm.to_string_lossy().into_owned();
    m.ok(&[
        "deploy",
        &charm,
        "--app",
        "cli",
        "--wait",
        "--timeout",
        "30",
    ]);
    m.ok(&[
        "relate",
        "tiny:db",
        "cli:client",
        "--wait",
        "--timeout",
        "30",
    ]);
    let ec = m.events("cli/0");
    assert!(
        ec.contains(&"client-data host=tiny/0".to_string()),
        "{ec:#?}"
    );
    assert!(
        ec.contains(&"client-data host=tiny/1".to_string()),
        "{ec:#?}"
    );
    let shown: serde_yaml::Value =
        serde_yaml::from_str(&m.ok(&["show-unit", "cli/0"])).expect("show-unit yaml");
    let rel = shown["cli/0"]["relation-info"]
        .as_sequence()
        .and_then(|r| r.iter().find(|r| r["endpoint"] == "client"))
        .expect("client relation")
        .clone();
    assert_eq!(rel["remote-application"], "tiny");
    assert_eq!(rel["units"]["tiny/1"]["host"], "tiny/1");
    assert_eq!(rel["units"]["tiny/1"]["private-address"], "127.0.41.2");
    let hc = hooks(&ec);
    assert!(
        position(&hc, "hooks/client-relation-created remote= departing=")
            < position(&hc, "hooks/client-relation-joined remote=tiny/0 departing=")
    );

    // Scale down: the highest unit departs; the others see it depart.
    m.ok(&["scale", "tiny", "1", "--wait", "--timeout", "60"]);
    let h0 = hooks(&m.events("tiny/0"));
    assert!(h0.contains(&"hooks/peer-relation-departed remote=tiny/1 departing=tiny/1".to_string()));
    let hc = hooks(&m.events("cli/0"));
    assert!(
        hc.contains(&"hooks/client-relation-departed remote=tiny/1 departing=tiny/1".to_string())
    );
    let st = m.status_json();
    assert!(st["units"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["name"] != "tiny/1"));
    assert!(!m.dir.join("units/tiny-1").exists());

    // A pod kill: the replacement pod goes through upgrade-charm → config-changed → start →
    // pebble-ready, keeps its name and address.
    let before = hooks(&m.events("tiny/0")).len();
    m.ok(&[
        "kill-pod",
        "tiny/0",
        "--down-for",
        "0.2",
        "--wait",
        "--timeout",
        "30",
    ]);
    let after: Vec<String> = hooks(&m.events("tiny/0"))[before..].to_vec();
    let seq = [
        "hooks/upgrade-charm remote= departing=",
        "hooks/config-changed remote= departing=",
        "hooks/start remote= departing=",
        "hooks/workload-pebble-ready remote= departing=",
    ];
    let pos: Vec<usize> = seq.iter().map(|h| position(&after, h)).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{after:#?}");
    assert_eq!(unit(&m.status_json(), "tiny/0")["address"], "127.0.41.1");
}

#[test]
fn failing_hook_blocks_the_queue_and_is_retried() {
    let m = Model::new("failing", "127.0.42");
    std::fs::write(m.charm.join("fail-hooks"), "install\n").unwrap();
    m.deploy(&[]);
    // Wait for at least two attempts of install, with the unit in error.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let installs = hooks(&m.events("tiny/0"))
            .iter()
            .filter(|h| h.starts_with("hooks/install"))
            .count();
        let st = m.status_json();
        let u = unit(&st, "tiny/0");
        if installs >= 2 && u["agent"] == "error" {
            assert_eq!(u["workload"], "error");
            assert_eq!(u["message"], "hook failed: \"install\"");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no retry: {:#?}",
            m.events("tiny/0")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing behind the failed hook ran.
    assert!(!hooks(&m.events("tiny/0"))
        .iter()
        .any(|h| !h.starts_with("hooks/install")));
    // `wait` reports the error when it times out.
    let err = m.fails(&["wait", "--timeout", "1"]);
    assert!(err.contains("error in \"install\""), "{err}");
    // Fix it: the next retry succeeds and the queue drains in order.
    std::fs::write(m.dir.join("units/tiny-0/allow-install"), "").unwrap();
    m.ok(&["wait", "--timeout", "30"]);
    let h = hooks(&m.events("tiny/0"));
    assert!(
        position(&h, "hooks/start remote= departing=")
            > position(&h, "hooks/install remote= departing=")
    );
    let st = m.status_json();
    assert_eq!(unit(&st, "tiny/0")["workload"], "active");
}

#[test]
fn actions_and_bad_input() {
    let m = Model::new("actions", "127.0.43");
    std::fs::write(m.charm.join("notify"), "").unwrap();
    m.deploy(&["--update-status-interval", "1", "--wait", "--timeout", "30"]);

    // A custom notice recorded through Pebble becomes <container>-pebble-custom-notice, and
    // update-status runs on the interval.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let e = m.events("tiny/0");
        let notice = e
            .iter()
            .any(|l| l.starts_with("notice workload custom example.com/ping id="));
        let update = e.iter().any(|l| l.starts_with("hooks/update-status"));
        if notice && update {
            break;
        }
        assert!(Instant::now() < deadline, "{e:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = m.cmd(&["run", "tiny/0", "echo", "msg=hello", "n=3"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("result: hello"), "{stdout}");
    assert!(stdout.contains("count: '3'"), "{stdout}");
    assert!(stdout.contains("said hello"), "{stdout}");

    // action-fail: the action fails, the unit does not go into error.
    let err = m.fails(&["run", "tiny/0", "echo", "msg=fail"]);
    assert!(err.contains("asked to fail"), "{err}");
    assert_eq!(unit(&m.status_json(), "tiny/0")["agent"], "idle");

    // Bad input: one clear error line each.
    let one_error = |err: &str, needle: &str| {
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("ERROR")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(needle), "{err}");
    };
    one_error(
        &m.fails(&["run", "tiny/0", "nope"]),
        "action \"nope\" is not defined",
    );
    one_error(
        &m.fails(&["run", "tiny/0", "echo", "msghello"]),
        "invalid parameter \"msghello\"",
    );
    one_error(
        &m.fails(&["run", "tiny/0", "echo"]),
        "missing required parameter \"msg\"",
    );
    one_error(
        &m.fails(&["run", "tiny/0", "echo", "msg=x", "n=abc"]),
        "must be of type integer",
    );
    one_error(
        &m.fails(&["run", "tiny/9", "echo", "msg=x"]),
        "unit \"tiny/9\" not found",
    );
    one_error(&m.fails(&["logs", "tiny/9"]), "unit \"tiny/9\" not found");
    one_error(
        &m.fails(&["kill-pod", "tiny/9"]),
        "unit \"tiny/9\" not found",
    );
    one_error(
        &m.fails(&["scale", "nosuch", "2"]),
        "application \"nosuch\" not found",
    );
    one_error(
        &m.fails(&["relate", "tiny", "nosuch"]),
        "application \"nosuch\" not found",
    );
    let logs = m.ok(&["logs", "tiny/0", "-n", "500"]);
    assert!(logs.contains("ran \"install\" hook"), "{logs}");
    assert!(logs.contains("unit.tiny/0.echo said hello"), "{logs}");
}

#[test]
fn a_charm_dir_without_metadata_leaves_nothing_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    let out = Command::new(BIN)
        .arg("--model-dir")
        .arg(&dir)
        .args(["deploy"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ERROR ") && err.contains("no metadata.yaml"),
        "{err}"
    );
    assert!(!dir.exists(), "the model dir was created");

    // A charm without a dispatch: the daemon was started for it, and must be gone again.
    let charm = tmp.path().join("c");
    std::fs::create_dir_all(&charm).unwrap();
    std::fs::write(charm.join("metadata.yaml"), "name: nodispatch\n").unwrap();
    let out = Command::new(BIN)
        .arg("--model-dir")
        .arg(&dir)
        .args(["deploy", "--subnet", "127.0.44"])
        .arg(&charm)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no dispatch"), "{err}");
    assert!(!dir.exists(), "the model dir was left behind");
}

/// `refresh` is a rolling update: pods replaced highest ordinal first, one at a time, each
/// old pod's `stop` before it dies and the new pod's upgrade-charm → config-changed → start
/// → pebble-ready; `kill-pod --graceful` runs `stop` first, plain `kill-pod` does not.
#[test]
fn refresh_rolls_pods_and_graceful_kill_runs_stop() {
    let m = Model::new("rolling", "127.0.45");
    m.deploy(&["-n", "3", "--wait", "--timeout", "60"]);
    let before: Vec<usize> = (0..3)
        .map(|n| hooks(&m.events(&format!("tiny/{n}"))).len())
        .collect();
    m.ok(&[
        "refresh",
        "tiny",
        "--grace",
        "5",
        "--wait",
        "--timeout",
        "120",
    ]);
    let seq = [
        "hooks/stop remote= departing=",
        "hooks/upgrade-charm remote= departing=",
        "hooks/config-changed remote= departing=",
        "hooks/start remote= departing=",
        "hooks/workload-pebble-ready remote= departing=",
    ];
    for n in 0..3 {
        let h = hooks(&m.events(&format!("tiny/{n}")));
        let after = &h[before[n]..];
        let pos: Vec<usize> = seq.iter().map(|s| position(after, s)).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "tiny/{n}: {after:#?}");
    }
    let daemon_log = std::fs::read_to_string(m.dir.join("daemon.log")).unwrap_or_default();
    let order: Vec<&str> = daemon_log
        .lines()
        .filter_map(|l| l.split("refresh: replacing the pod of ").nth(1))
        .collect();
    assert_eq!(order, ["tiny/2", "tiny/1", "tiny/0"], "{daemon_log}");
    // One pod at a time: each is back before the next one's stop.
    let log = |n: usize| {
        std::fs::read_to_string(m.unit_dir(&format!("tiny/{n}")).join("unit.log"))
            .unwrap_or_default()
    };
    // The time of the last line of `text` that contains `what` (HH:MM:SS.mmm sorts).
    let time_of = |text: &str, what: &str| -> String {
        text.lines()
            .rev()
            .find(|l| l.contains(what))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {what:?} in\n{text}"))
            .to_string()
    };
    for (done, next) in [(2, 1), (1, 0)] {
        assert!(
            time_of(&log(done), "ran \"workload-pebble-ready\" hook")
                <= time_of(&log(next), "pod terminating"),
            "tiny/{next} went before tiny/{done} was back"
        );
    }

    // A graceful delete runs stop; a crash does not.
    let n_stop = |u: &str| {
        hooks(&m.events(u))
            .iter()
            .filter(|h| h.starts_with("hooks/stop"))
            .count()
    };
    let stops = n_stop("tiny/1");
    m.ok(&[
        "kill-pod",
        "--graceful",
        "--grace",
        "5",
        "--down-for",
        "0.5",
        "tiny/1",
        "--wait",
        "--timeout",
        "60",
    ]);
    assert_eq!(n_stop("tiny/1"), stops + 1);
    m.ok(&[
        "kill-pod",
        "--down-for",
        "0.5",
        "tiny/1",
        "--wait",
        "--timeout",
        "60",
    ]);
    assert_eq!(n_stop("tiny/1"), stops + 1);
    // Bad input: one clear line each.
    let err = m.fails(&["refresh", "nosuch"]);
    assert!(err.contains("application \"nosuch\" not found"), "{err}");
    let err = m.fails(&["refresh", "tiny", "--grace", "4000"]);
    assert!(err.contains("--grace"), "{err}");
}
