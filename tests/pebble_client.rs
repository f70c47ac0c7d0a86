//! The Pebble client against the local model's real Pebble-API server, over a unix socket.
//!
//! Each test starts its own server on a temporary container root and shuts it down (killing
//! any service it started) when the fixture drops, also when an assertion fails.

use redis_k8s::ops::pebble::{
    ChangeSelect, Layer, MakeDirOptions, NoticesQuery, Pebble, PebbleClient, PebbleError,
    PushOptions, Service, ServiceAction,
};
use redis_k8s::sim::pebble_server::{PebbleServer, PebbleServerConfig};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    // Declared first so it drops (and kills its services) before the directory goes.
    server: Option<PebbleServer>,
    client: PebbleClient,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        for d in ["etc", "tmp", "var/lib", "var/log"] {
            std::fs::create_dir_all(root.join(d)).expect("container skeleton");
        }
        let socket = dir.path().join("sock").join("pebble.socket");
        let server = PebbleServer::start(PebbleServerConfig {
            socket: socket.clone(),
            root: root.clone(),
            container: "redis".into(),
            ..Default::default()
        })
        .expect("pebble server starts");
        let client = PebbleClient::new(server.socket());
        Fixture {
            server: Some(server),
            client,
            root,
            _dir: dir,
        }
    }

    /// Host path of a container path.
    fn host(&self, container_path: &str) -> PathBuf {
        self.root.join(container_path.trim_start_matches('/'))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn service_layer(name: &str, command: &str, startup: &str) -> Layer {
    let mut l = Layer {
        summary: Some(format!("{name} layer")),
        ..Layer::default()
    };
    l.services.insert(
        name.into(),
        Service {
            r#override: Some("replace".into()),
            summary: Some(name.into()),
            command: Some(command.into()),
            startup: Some(startup.into()),
            ..Service::default()
        },
    );
    l
}

fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| f.get(2)?.parse().ok())?
    })
}

fn wait_until(mut cond: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

// ---- system -------------------------------------------------------------------------------

#[test]
fn system_info_and_health_answer_and_requests_are_counted() {
    let f = Fixture::start();
    let info = f.client.system_info().expect("system-info");
    assert!(info.version.starts_with('v'), "{info:?}");
    assert!(!info.boot_id.is_empty());
    assert!(f.client.can_connect());
    assert!(f.client.health(None, &[]).expect("health"));
    assert_eq!(f.client.requests(), 3);
    // Clones share the counter: benchmarks count a hook's requests across its clients.
    let clone = f.client.clone();
    clone.system_info().unwrap();
    assert_eq!(f.client.requests(), 4);
}

#[test]
fn missing_socket_is_a_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let client = PebbleClient::new(dir.path().join("no-such.socket"));
    let err = client.get_plan().unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(!client.can_connect());
}

#[test]
fn stopped_server_is_a_connection_error() {
    let mut f = Fixture::start();
    assert!(f.client.can_connect());
    f.server.take().expect("server").shutdown();
    let err = f.client.system_info().unwrap_err();
    assert!(err.is_connection(), "{err:?}");
}

// ---- files --------------------------------------------------------------------------------

#[test]
fn push_with_make_dirs_permissions_and_owner_then_list_and_pull_back() {
    let f = Fixture::start();
    let content = b"port 6379\r\n--not-a-boundary\r\n\x00\xff binary tail";
    let opts = PushOptions {
        make_dirs: true,
        permissions: Some(0o640),
        user: Some("redis".into()),
        group: Some("redis".into()),
        ..PushOptions::default()
    };
    f.client
        .push("/etc/redis-server/redis.conf", content, &opts)
        .expect("push");

    // What the server wrote on disk.
    let host = f.host("/etc/redis-server/redis.conf");
    assert_eq!(std::fs::read(&host).unwrap(), content);
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    if let Some(uid) = uid_of("redis") {
        assert_eq!(meta.uid(), uid);
    }
    assert!(f.host("/etc/redis-server").is_dir());

    // What the API reports.
    let list = f
        .client
        .list_files("/etc/redis-server", None, false)
        .expect("list");
    assert_eq!(list.len(), 1, "{list:?}");
    let entry = &list[0];
    assert_eq!(entry.name, "redis.conf");
    assert_eq!(entry.path, "/etc/redis-server/redis.conf");
    assert_eq!(entry.file_type, "file");
    assert_eq!(entry.permissions, "640");
    assert_eq!(entry.size, Some(content.len() as u64));
    assert_eq!(entry.user.as_deref(), Some("redis"));
    assert_eq!(entry.group.as_deref(), Some("redis"));

    let itself = f
        .client
        .list_files("/etc/redis-server", None, true)
        .expect("list itself");
    assert_eq!(itself.len(), 1);
    assert_eq!(itself[0].file_type, "directory");

    assert_eq!(
        f.client.pull("/etc/redis-server/redis.conf").expect("pull"),
        content
    );
    assert!(f.client.exists("/etc/redis-server/redis.conf").unwrap());
    assert!(!f.client.exists("/etc/redis-server/nope.conf").unwrap());
}

#[test]
fn large_files_round_trip() {
    let f = Fixture::start();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    f.client
        .push("/tmp/big.bin", &content, &PushOptions::default())
        .expect("push");
    assert_eq!(f.client.pull("/tmp/big.bin").expect("pull"), content);
    let meta = &f.client.list_files("/tmp/big.bin", None, false).unwrap()[0];
    assert_eq!(meta.permissions, "644");
    assert_eq!(meta.size, Some(content.len() as u64));
}

#[test]
fn list_filters_by_pattern() {
    let f = Fixture::start();
    for name in ["a.conf", "b.conf", "c.txt"] {
        f.client
            .push(&format!("/etc/{name}"), b"x", &PushOptions::default())
            .unwrap();
    }
    let mut names: Vec<String> = f
        .client
        .list_files("/etc", Some("*.conf"), false)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["a.conf", "b.conf"]);
    let err = f
        .client
        .list_files("/etc/missing", None, false)
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[test]
fn pull_of_missing_file_is_a_not_found_path_error() {
    let f = Fixture::start();
    match f.client.pull("/etc/missing.conf").unwrap_err() {
        PebbleError::Path { path, kind, .. } => {
            assert_eq!(path, "/etc/missing.conf");
            assert_eq!(kind, "not-found");
        }
        other => panic!("expected a Path error, got {other:?}"),
    }
}

#[test]
fn push_into_missing_parent_without_make_dirs_is_a_path_error() {
    let f = Fixture::start();
    let err = f
        .client
        .push("/etc/nodir/x.conf", b"x", &PushOptions::default())
        .unwrap_err();
    match &err {
        PebbleError::Path { path, kind, .. } => {
            assert_eq!(path, "/etc/nodir/x.conf");
            assert_eq!(kind, "not-found");
        }
        other => panic!("expected a Path error, got {other:?}"),
    }
    assert!(!f.host("/etc/nodir").exists());
}

#[test]
fn make_dir_creates_and_refuses_an_existing_dir() {
    let f = Fixture::start();
    let plain = MakeDirOptions::default();
    let err = f.client.make_dir("/var/lib/a/b", &plain).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let parents = MakeDirOptions {
        make_parents: true,
        permissions: Some(0o750),
        ..MakeDirOptions::default()
    };
    f.client
        .make_dir("/var/lib/a/b", &parents)
        .expect("make-dirs");
    let meta = std::fs::metadata(f.host("/var/lib/a/b")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);

    match f.client.make_dir("/var/lib/a/b", &plain).unwrap_err() {
        PebbleError::Path { kind, .. } => assert_eq!(kind, "generic-file-error"),
        other => panic!("expected a Path error, got {other:?}"),
    }
    // With make-parents an existing directory is fine (mkdir -p).
    f.client.make_dir("/var/lib/a/b", &parents).unwrap();
}

#[test]
fn remove_files_and_directories() {
    let f = Fixture::start();
    let opts = PushOptions {
        make_dirs: true,
        ..PushOptions::default()
    };
    f.client.push("/var/lib/data/x/y.rdb", b"1", &opts).unwrap();
    f.client.push("/tmp/single", b"1", &opts).unwrap();

    f.client.remove_path("/tmp/single", false).expect("remove");
    assert!(!f.host("/tmp/single").exists());

    let err = f.client.remove_path("/var/lib/data", false).unwrap_err();
    assert!(matches!(err, PebbleError::Path { .. }), "{err:?}");
    assert!(f.host("/var/lib/data/x/y.rdb").exists());

    f.client
        .remove_path("/var/lib/data", true)
        .expect("recursive remove");
    assert!(!f.host("/var/lib/data").exists());

    let err = f.client.remove_path("/tmp/never", false).unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

// ---- layers and plan ----------------------------------------------------------------------

#[test]
fn layers_add_combine_and_plan_round_trip() {
    let f = Fixture::start();
    assert!(f.client.get_plan().unwrap().services.is_empty());

    let base = service_layer("redis", "redis-server /etc/redis.conf", "enabled");
    f.client.add_layer("redis", &base, false).expect("add");
    let plan = f.client.get_plan().expect("plan");
    let svc = &plan.services["redis"];
    assert_eq!(svc.command.as_deref(), Some("redis-server /etc/redis.conf"));
    assert_eq!(svc.startup.as_deref(), Some("enabled"));
    assert_eq!(svc.r#override.as_deref(), Some("replace"));

    // The same label without combine is refused.
    match f.client.add_layer("redis", &base, false).unwrap_err() {
        PebbleError::Api { status_code, .. } => assert_eq!(status_code, 400),
        other => panic!("expected an Api error, got {other:?}"),
    }

    // With combine, a merge layer updates the existing one.
    let mut overlay = Layer::default();
    let mut env = BTreeMap::new();
    env.insert("REDIS_PORT".to_string(), "6379".to_string());
    overlay.services.insert(
        "redis".into(),
        Service {
            r#override: Some("merge".into()),
            environment: env.clone(),
            ..Service::default()
        },
    );
    f.client
        .add_layer("redis", &overlay, true)
        .expect("combine");
    let plan = f.client.get_plan().unwrap();
    assert_eq!(plan.services["redis"].environment, env);
    assert_eq!(
        plan.services["redis"].command.as_deref(),
        Some("redis-server /etc/redis.conf")
    );

    // A layer without override is rejected and leaves the plan alone.
    let mut bad = Layer::default();
    bad.services.insert(
        "other".into(),
        Service {
            command: Some("sleep 1".into()),
            ..Service::default()
        },
    );
    let err = f.client.add_layer("bad", &bad, true).unwrap_err();
    assert!(
        matches!(
            err,
            PebbleError::Api {
                status_code: 400,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!f.client.get_plan().unwrap().services.contains_key("other"));
}

// ---- services and changes -----------------------------------------------------------------

#[test]
fn replan_starts_a_real_service_and_stop_stops_it() {
    let f = Fixture::start();
    f.client
        .add_layer(
            "sleeper",
            &service_layer("sleeper", "sleep 30", "enabled"),
            true,
        )
        .unwrap();
    let change = f.client.replan(WAIT).expect("replan");
    assert!(change.ready);
    assert_eq!(change.status, "Done", "{change:?}");
    assert!(change.err.is_none());

    let info = f.client.services(&["sleeper"]).expect("services");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, "sleeper");
    assert_eq!(info[0].startup, "enabled");
    assert_eq!(info[0].current, "active", "{info:?}");
    let pids = f.server.as_ref().unwrap().service_pids();
    let pid = *pids.get("sleeper").expect("a pid for the service");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // Nothing changed: nothing restarts.
    let again = f.client.replan(WAIT).expect("second replan");
    assert!(again.err.is_none());
    assert_eq!(
        f.server.as_ref().unwrap().service_pids().get("sleeper"),
        Some(&pid)
    );

    // The change is listed and can be fetched by id.
    let all = f.client.changes(ChangeSelect::All, None).unwrap();
    assert!(all.iter().any(|c| c.id == change.id), "{all:?}");
    assert_eq!(f.client.change(&change.id).unwrap().id, change.id);

    f.client
        .send_signal("SIGCONT", &["sleeper"])
        .expect("signal a running service");

    let stopped = f
        .client
        .service_action_and_wait(ServiceAction::Stop, &["sleeper"], WAIT)
        .expect("stop");
    assert!(stopped.ready);
    assert_eq!(f.client.services(&[]).unwrap()[0].current, "inactive");
    assert!(
        wait_until(
            || !Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty()),
            Duration::from_secs(10)
        ),
        "process {pid} still running after stop"
    );
}

#[test]
fn service_action_returns_a_change_id_to_wait_on() {
    let f = Fixture::start();
    f.client
        .add_layer("s", &service_layer("s", "sleep 30", "disabled"), true)
        .unwrap();
    let id = f
        .client
        .service_action(ServiceAction::Start, &["s"])
        .expect("start");
    assert!(!id.is_empty());
    let change = f.client.wait_change(&id, WAIT).expect("wait");
    assert_eq!(change.id, id);
    assert!(change.ready);
    assert_eq!(change.kind, "start");
    assert!(f.client.services(&["s"]).unwrap()[0].is_running());
    f.client
        .service_action_and_wait(ServiceAction::Stop, &["s"], WAIT)
        .unwrap();
}

#[test]
fn failing_service_gives_a_change_error_or_backoff() {
    let f = Fixture::start();
    f.client
        .add_layer("bad", &service_layer("bad", "/bin/false", "enabled"), true)
        .unwrap();
    match f.client.replan(WAIT) {
        Err(PebbleError::ChangeFailed { err, .. }) => {
            assert!(err.contains("bad"), "{err}");
        }
        Ok(_) => {
            let current = f.client.services(&["bad"]).unwrap()[0].current.clone();
            assert!(
                matches!(current.as_str(), "backoff" | "error"),
                "a failing service reported {current}"
            );
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
    assert!(!f.client.services(&["bad"]).unwrap()[0].is_running());
}

#[test]
fn wait_on_unknown_change_is_a_404() {
    let f = Fixture::start();
    match f
        .client
        .wait_change("999999", Duration::from_secs(2))
        .unwrap_err()
    {
        PebbleError::Api { status_code, .. } => assert_eq!(status_code, 404),
        other => panic!("expected Api 404, got {other:?}"),
    }
    assert!(matches!(
        f.client.change("999999").unwrap_err(),
        PebbleError::Api {
            status_code: 404,
            ..
        }
    ));
}

// ---- notices ------------------------------------------------------------------------------

#[test]
fn notify_records_a_custom_notice_and_counts_occurrences() {
    let f = Fixture::start();
    let key = "redis.io/primary-changed";
    let mut data = BTreeMap::new();
    data.insert("primary".to_string(), "10.1.1.1".to_string());
    let id = f.client.notify(key, &data, None).expect("notify");
    data.insert("primary".to_string(), "10.1.1.2".to_string());
    let id2 = f.client.notify(key, &data, None).expect("notify again");
    assert_eq!(id, id2, "same key, same notice");
    f.client
        .notify("redis.io/other", &BTreeMap::new(), None)
        .unwrap();

    let q = NoticesQuery {
        types: vec!["custom".into()],
        keys: vec![key.into()],
        ..NoticesQuery::default()
    };
    let notices = f.client.notices(&q).expect("notices");
    assert_eq!(notices.len(), 1, "{notices:?}");
    let n = &notices[0];
    assert_eq!(n.key, key);
    assert_eq!(n.notice_type, "custom");
    assert_eq!(n.occurrences, 2);
    assert_eq!(
        n.last_data.get("primary").map(String::as_str),
        Some("10.1.1.2")
    );

    let by_id = f.client.notice(&id).expect("notice by id");
    assert_eq!(by_id.key, key);

    let all = f
        .client
        .notices(&NoticesQuery {
            all_users: true,
            ..NoticesQuery::default()
        })
        .unwrap();
    assert!(all.iter().any(|n| n.key == "redis.io/other"));

    assert!(matches!(
        f.client.notice("123456").unwrap_err(),
        PebbleError::Api {
            status_code: 404,
            ..
        }
    ));
}
