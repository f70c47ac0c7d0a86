//! The local model's pod layout for workloads: a service running as `redis` in its mount
//! namespace finds `/charm/bin/pebble` and `$PEBBLE_SOCKET=/charm/container/pebble.socket`
//! and records a custom notice with `pebble notify`, as Sentinel's client-reconfig-script
//! does in a Juju pod, even though the model directory (a 0700 temp dir) is not traversable
//! by `redis`. Needs root (mount namespaces) and a `redis` user; skipped otherwise.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_k8s::ops::pebble::{Layer, Pebble, PebbleClient, Service};
use redis_k8s::sim::model::backends::install_pebble_tool;
use redis_k8s::sim::pebble_server::{PebbleServer, PebbleServerConfig};

const JL: &str = env!("CARGO_BIN_EXE_juju-local");

fn can_run() -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let redis = std::process::Command::new("id")
        .arg("redis")
        .output()
        .is_ok_and(|o| o.status.success());
    root && redis
}

#[test]
fn a_redis_service_records_a_notice_through_charm_bin_pebble() {
    if !can_run() {
        eprintln!("skipped: needs root and a redis user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap(); // 0700: redis cannot traverse it
    let model = tmp.path();
    let bin = install_pebble_tool(std::path::Path::new(JL), &model.join("bin")).unwrap();
    assert!(bin.ends_with("bin/pebble"));
    let container = model.join("units/app-0/containers/sentinel");
    let server = PebbleServer::start(PebbleServerConfig {
        socket: container.join("pebble.socket"),
        root: container.join("root"),
        container: "sentinel".into(),
        log_file: Some(container.join("pebble.log")),
        container_dir: Some(container.clone()),
        charm_bin_dir: Some(model.join("bin")),
        ..PebbleServerConfig::default()
    })
    .unwrap();
    let mut layer = Layer::default();
    layer.services.insert(
        "notifier".into(),
        Service {
            r#override: Some("replace".into()),
            command: Some(
                "/bin/sh -c '/charm/bin/pebble notify example.com/primary-changed \
                 \"user=$(id -un)\" \"socket=$PEBBLE_SOCKET\"; exec sleep 60'"
                    .into(),
            ),
            user: Some("redis".into()),
            group: Some("redis".into()),
            startup: Some("enabled".into()),
            ..Service::default()
        },
    );
    let client = PebbleClient::new(server.socket());
    client.add_layer("notifier", &layer, true).unwrap();
    client.replan(Duration::from_secs(10)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let notice = loop {
        let (notices, _) = server.custom_notices_since(0);
        if let Some(n) = notices.into_iter().next() {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no notice; service log:\n{}",
            std::fs::read_to_string(container.join("pebble.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(notice.key, "example.com/primary-changed");
    assert_eq!(
        notice.last_data,
        BTreeMap::from([
            ("user".to_string(), "redis".to_string()),
            (
                "socket".to_string(),
                "/charm/container/pebble.socket".to_string()
            ),
        ])
    );
    // Recorded as the redis user, as in a pod (what Juju before 3.6.25 would not deliver).
    let redis_uid = std::process::Command::new("id")
        .args(["-u", "redis"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        })
        .unwrap();
    assert_eq!(notice.user_id, redis_uid);
    server.shutdown();
}
