//! The rendered `sentinel.conf` works with a real `redis-sentinel` and a hostname primary.
//! Without `resolve-hostnames` ahead of it a real sentinel rejects `sentinel monitor` with a
//! hostname ("Can't resolve instance hostname"). Redis 7.0.15 (Debian) queues the hostname
//! options before monitor lines whatever their order in the file; older sentinels read the
//! file top to bottom, so the template keeps them first.

mod scenario_support;

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use redis_k8s::redis_client::RedisConn;
use redis_k8s::sentinel::SentinelConfig;
use scenario_support::{spawn, Proc};

fn sentinel_binary() -> Option<&'static str> {
    ["/usr/bin/redis-sentinel", "/usr/bin/redis-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn render(bind: &str, port: u16) -> String {
    let tpl = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/sentinel.conf.j2"),
    )
    .unwrap();
    redis_k8s::templates::render_str(
        "sentinel.conf",
        &tpl,
        SentinelConfig {
            hostname: "localhost",
            bind,
            master_name: "redis-k8s",
            sentinel_port: port,
            redis_master: "localhost",
            redis_port: 6390,
            quorum: 2,
            down_after_ms: 5000,
            failover_timeout_ms: 30000,
            master_password: Some("adminpw-not-logged"),
            sentinel_password: "sentinelpw",
            log_level: "notice",
        },
    )
    .unwrap()
}

/// A sentinel from `conf` (not waited for: one test expects it to exit).
fn start(conf: &str, dir: &Path) -> Proc {
    let path = dir.join("sentinel.conf");
    std::fs::write(&path, conf).unwrap();
    let bin = sentinel_binary().expect("redis-sentinel installed (the test command installs it)");
    if bin.ends_with("redis-server") {
        spawn(bin, &[path.as_os_str(), OsStr::new("--sentinel")])
    } else {
        spawn(bin, &[path.as_os_str()])
    }
}

#[test]
fn rendered_config_is_accepted_by_a_real_sentinel() {
    let dir = tempfile::tempdir().unwrap();
    let port = 26379;
    let _s = start(&render("127.0.0.91", port), dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    let info = loop {
        match redis_k8s::sentinel::Sentinel::master_info("127.0.0.91", "sentinelpw", "redis-k8s") {
            Ok(info) => break info,
            Err(e) if Instant::now() > deadline => panic!("sentinel never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(info["name"], "redis-k8s");
    assert_eq!(
        info["ip"], "localhost",
        "announce-hostnames keeps the hostname"
    );
    assert_eq!(info["quorum"], "2");
    // One sentinel cannot reach a quorum of 2: CKQUORUM says so (false, not an error).
    assert!(
        !redis_k8s::sentinel::Sentinel::in_majority("127.0.0.91", "sentinelpw", "redis-k8s")
            .unwrap()
    );
    // requirepass is enforced.
    assert!(RedisConn::connect("127.0.0.91", port, None)
        .and_then(|mut c| c.command_string(&["SENTINEL", "MASTERS"]))
        .is_err());
}

#[test]
fn a_hostname_primary_without_the_hostname_options_is_rejected_by_sentinel() {
    let dir = tempfile::tempdir().unwrap();
    let conf = render("127.0.0.92", 26379);
    let without: Vec<&str> = conf
        .lines()
        .filter(|l| !l.contains("resolve-hostnames") && !l.contains("announce-hostnames"))
        .collect();
    let mut s = start(&(without.join("\n") + "\n"), dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = s.0.try_wait().unwrap() {
            assert!(
                !status.success(),
                "sentinel must refuse the hostname primary"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sentinel accepted a hostname primary without resolve-hostnames"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
