//! Scenario tests of TLS (`enable-tls` with the `cert-file`, `key-file` and `ca-cert-file`
//! resources; see `src/tls.rs`): the rendered redis.conf and sentinel.conf, the layers
//! (services, checks, exporter) and the pushed files with TLS on and off; Blocked on missing
//! or garbage resources with nothing pushed or restarted; and, with real processes, a Redis
//! started from the rendered config speaks only TLS and the charm's client verifies the
//! chain (not the name) against the CA. Certificates are made with the `openssl` CLI.

use std::path::Path;
use std::sync::{Arc, Mutex};

use redis_k8s::ops::hookcmds::StatusName;
use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::World;
use redis_k8s::redis_client::{use_tls, RedisConn};
use redis_k8s::tls::{ClientTls, MARKER_ENV};
use serde_json::Value;

mod scenario_support;
mod tls_support;
use scenario_support::*;
use tls_support::{make_certs, Certs};

fn attach(w: &Arc<Mutex<World>>, name: &str, path: &Path) {
    w.lock().unwrap().set_resource(APP, name, path).unwrap();
}

fn attach_all(w: &Arc<Mutex<World>>, c: &Certs) {
    attach(w, "cert-file", &c.crt);
    attach(w, "key-file", &c.key);
    attach(w, "ca-cert-file", &c.ca);
}

/// Leader-elected and both pebble-ready hooks on unit 0.
fn deploy<'p>(w: &Arc<Mutex<World>>, pebble: &'p MemoryPebbleProvider) -> Scenario<'p> {
    let mut s = scenario(w, U0, pebble);
    run(&mut s, "leader-elected");
    run(&mut s, "redis-pebble-ready");
    run(&mut s, "sentinel-pebble-ready");
    s
}

fn text(pebble: &MemoryPebbleProvider, container: &str, path: &str) -> String {
    pebble
        .get(container)
        .file(path)
        .map(|f| f.text())
        .unwrap_or_else(|| panic!("{container}:{path} was not pushed"))
}

fn lines(conf: &str) -> Vec<&str> {
    conf.lines().map(str::trim).collect()
}

#[test]
fn tls_on_renders_tls_only_servers_and_pushes_the_files_into_both_containers() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), APP, "scn", "scenario-ca");
    let w = world(1);
    set_config(&w, &[("enable-tls", Value::Bool(true))]);
    attach_all(&w, &certs);
    let pebble = containers();
    deploy(&w, &pebble);
    let st = status(&w, U0);
    assert_ne!(st.status, StatusName::Blocked, "{st:?}");

    let conf = text(&pebble, "redis", CONF);
    let l = lines(&conf);
    for want in [
        "port 0",
        "tls-port 6379",
        "tls-cert-file /var/lib/redis/redis.crt",
        "tls-key-file /var/lib/redis/redis.key",
        "tls-ca-cert-file /var/lib/redis/ca.crt",
        "tls-auth-clients optional",
        "tls-replication yes",
    ] {
        assert!(l.contains(&want), "redis.conf lacks {want:?}:\n{conf}");
    }
    assert!(!l.contains(&"port 6379"), "{conf}");
    assert!(
        l.iter().any(|x| x.starts_with("user default on #")),
        "the ACL line stays: {conf}"
    );

    let sconf = text(&pebble, "sentinel", SENTINEL_CONF);
    let l = lines(&sconf);
    for want in [
        "port 0",
        "tls-port 26379",
        "tls-cert-file /etc/redis-server/tls/redis.crt",
        "tls-key-file /etc/redis-server/tls/redis.key",
        "tls-ca-cert-file /etc/redis-server/tls/ca.crt",
        "tls-replication yes",
    ] {
        assert!(l.contains(&want), "sentinel.conf lacks {want:?}:\n{sconf}");
    }
    assert!(!l.contains(&"port 26379"), "{sconf}");

    // The files: identical to the resources, 0600, owned by redis, in both containers.
    for (container, dir) in [
        ("redis", "/var/lib/redis"),
        ("sentinel", "/etc/redis-server/tls"),
    ] {
        for (name, src) in [
            ("redis.crt", &certs.crt),
            ("redis.key", &certs.key),
            ("ca.crt", &certs.ca),
        ] {
            let path = format!("{dir}/{name}");
            let f = pebble
                .get(container)
                .file(&path)
                .unwrap_or_else(|| panic!("{container}:{path} not pushed"));
            assert_eq!(f.content, std::fs::read(src).unwrap(), "{container}:{path}");
            assert_eq!(f.permissions, 0o600, "{container}:{path}");
            assert_eq!(f.user, "redis", "{container}:{path}");
        }
    }

    // The layers: TLS checks, a marked service, the exporter over rediss:// to the FQDN.
    let plan = pebble.get("redis").plan();
    let check = plan.checks["redis-up"]
        .exec
        .as_ref()
        .unwrap()
        .command
        .clone();
    assert!(
        check.starts_with("redis-cli --tls --cacert /var/lib/redis/ca.crt -h ")
            && check.ends_with(" -p 6379 QUIT"),
        "{check}"
    );
    assert!(plan.services["redis"].environment.contains_key(MARKER_ENV));
    let exporter = plan.services["redis_exporter"].command.clone().unwrap();
    for want in [
        format!("--redis.addr=rediss://{FQDN0}:6379"),
        "--tls-ca-cert-file=/var/lib/redis/ca.crt".to_string(),
        "--tls-client-cert-file=/var/lib/redis/redis.crt".to_string(),
        "--tls-client-key-file=/var/lib/redis/redis.key".to_string(),
    ] {
        assert!(exporter.split_whitespace().any(|w| w == want), "{exporter}");
    }
    let pw_file = text(&pebble, "redis", "/etc/redis-server/exporter-password.json");
    assert!(
        pw_file.contains(&format!("rediss://{FQDN0}:6379")),
        "keyed by the scraped URI"
    );
    let splan = pebble.get("sentinel").plan();
    let scheck = splan.checks["sentinel-up"]
        .exec
        .as_ref()
        .unwrap()
        .command
        .clone();
    assert!(
        scheck.starts_with("redis-cli --tls --cacert /etc/redis-server/tls/ca.crt -h "),
        "{scheck}"
    );
    assert!(splan.services["sentinel"]
        .environment
        .contains_key(MARKER_ENV));

    // Nothing secret in either plan: no password, no key.
    let key = std::fs::read_to_string(&certs.key).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    for p in [&plan, &splan] {
        let yaml = serde_yaml::to_string(p).unwrap();
        assert!(!yaml.contains(key_body), "the key leaked into a plan");
        for pw in passwords_secret(&w).values().filter(|v| v.len() >= 16) {
            assert!(!yaml.contains(pw.as_str()), "a password leaked into a plan");
        }
    }
}

#[test]
fn tls_off_stays_plain_and_turning_it_on_restarts_both_servers() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), APP, "scn", "scenario-ca");
    let w = world(1);
    attach_all(&w, &certs);
    let pebble = containers();
    let mut s = deploy(&w, &pebble);

    let conf = text(&pebble, "redis", CONF);
    assert!(lines(&conf).contains(&"port 6379"), "{conf}");
    assert!(!conf.contains("tls-"), "{conf}");
    let sconf = text(&pebble, "sentinel", SENTINEL_CONF);
    assert!(lines(&sconf).contains(&"port 26379") && !sconf.contains("tls-"));
    let plan = pebble.get("redis").plan();
    assert!(!plan.services["redis"].environment.contains_key(MARKER_ENV));
    let check = plan.checks["redis-up"]
        .exec
        .as_ref()
        .unwrap()
        .command
        .clone();
    assert!(check.starts_with("redis-cli -h "), "{check}");
    let exporter = plan.services["redis_exporter"].command.clone().unwrap();
    assert!(exporter.contains("--redis.addr=redis://") && !exporter.contains("--tls"));
    assert!(
        pebble.get("redis").file("/var/lib/redis/ca.crt").is_none(),
        "no TLS files while TLS is off"
    );

    // On: the service definitions change, so both servers are replanned (restarted).
    pebble.get("redis").clear_calls();
    pebble.get("sentinel").clear_calls();
    set_config(&w, &[("enable-tls", Value::Bool(true))]);
    run(&mut s, "config-changed");
    for c in ["redis", "sentinel"] {
        let calls = pebble.get(c).calls();
        assert!(
            calls.iter().any(|x| x.starts_with("replan")),
            "{c}: {calls:?}"
        );
        assert!(
            pebble.get(c).plan().services[c]
                .environment
                .contains_key(MARKER_ENV),
            "{c}"
        );
    }
    assert!(lines(&text(&pebble, "redis", CONF)).contains(&"tls-port 6379"));
    assert!(lines(&text(&pebble, "sentinel", SENTINEL_CONF)).contains(&"tls-port 26379"));

    // Off again: back to plain, replanned again.
    pebble.get("redis").clear_calls();
    set_config(&w, &[("enable-tls", Value::Bool(false))]);
    run(&mut s, "config-changed");
    assert!(pebble
        .get("redis")
        .calls()
        .iter()
        .any(|x| x.starts_with("replan")));
    assert!(lines(&text(&pebble, "redis", CONF)).contains(&"port 6379"));
    assert!(!pebble.get("redis").plan().services["redis"]
        .environment
        .contains_key(MARKER_ENV));
}

#[test]
fn missing_resources_block_with_the_python_message_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), APP, "scn", "scenario-ca");
    let w = world(1);
    let pebble = containers();
    let mut s = deploy(&w, &pebble);
    pebble.get("redis").clear_calls();
    pebble.get("sentinel").clear_calls();

    attach(&w, "cert-file", &certs.crt);
    set_config(&w, &[("enable-tls", Value::Bool(true))]);
    run(&mut s, "config-changed");
    let st = status(&w, U0);
    assert_eq!(st.status, StatusName::Blocked);
    assert_eq!(
        st.message,
        "Not enough certificates found (missing: key-file, ca-cert-file)"
    );
    assert_no_push_or_replan(&pebble, "redis");
    assert_no_push_or_replan(&pebble, "sentinel");

    // An empty file counts as missing (a placeholder upload).
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    attach(&w, "key-file", &certs.key);
    attach(&w, "ca-cert-file", &empty);
    run(&mut s, "upgrade-charm");
    assert_eq!(
        status(&w, U0).message,
        "Not enough certificates found (missing: ca-cert-file)"
    );
    assert_no_push_or_replan(&pebble, "redis");

    // Attached: upgrade-charm (what attach-resource triggers) applies TLS.
    attach(&w, "ca-cert-file", &certs.ca);
    run(&mut s, "upgrade-charm");
    assert_ne!(status(&w, U0).status, StatusName::Blocked);
    assert!(lines(&text(&pebble, "redis", CONF)).contains(&"tls-port 6379"));
}

#[test]
fn a_garbage_resource_blocks_naming_it_and_nothing_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), APP, "scn", "scenario-ca");
    let w = world(1);
    let pebble = containers();
    let mut s = deploy(&w, &pebble);
    pebble.get("redis").clear_calls();
    pebble.get("sentinel").clear_calls();

    let other_dir = tempfile::tempdir().unwrap();
    let other_key =
        std::fs::read(make_certs(other_dir.path(), APP, "scn", "another-ca").key).unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("key-file", &other_key),
        ("cert-file", b"this is not a certificate\n"),
        (
            "ca-cert-file",
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        ),
        (
            "key-file",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
    ];
    set_config(&w, &[("enable-tls", Value::Bool(true))]);
    for (bad, content) in cases {
        attach_all(&w, &certs);
        let path = dir.path().join(format!("bad-{bad}"));
        std::fs::write(&path, content).unwrap();
        attach(&w, bad, &path);
        run(&mut s, "config-changed");
        let st = status(&w, U0);
        assert_eq!(st.status, StatusName::Blocked, "{bad}");
        assert!(
            st.message
                .starts_with(&format!("TLS resource {bad} is not usable")),
            "{bad}: {}",
            st.message
        );
        assert_no_push_or_replan(&pebble, "redis");
        assert_no_push_or_replan(&pebble, "sentinel");
    }
    let conf = text(&pebble, "redis", CONF);
    assert!(lines(&conf).contains(&"port 6379"), "still plain: {conf}");
}

/// With real processes: a Redis started from the rendered TLS redis.conf answers only TLS;
/// the charm's client (`RedisConn` under `use_tls`) reaches it by IP although the
/// certificate names only the pod DNS names (chain verified, name not), and refuses it
/// under another CA.
#[test]
fn the_rendered_tls_redis_serves_tls_only_and_the_client_verifies_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), APP, "scn", "scenario-ca");
    let other_dir = tempfile::tempdir().unwrap();
    let other = make_certs(other_dir.path(), APP, "scn", "another-ca");
    let w = world(1);
    set_config(&w, &[("enable-tls", Value::Bool(true))]);
    attach_all(&w, &certs);
    let pebble = containers();
    deploy(&w, &pebble);
    let conf = text(&pebble, "redis", CONF);
    let host = "127.0.72.1";
    let data = tempfile::tempdir().unwrap();
    let local = rewrite_prefixed(
        conf.lines(),
        &[
            (
                "tls-cert-file ",
                format!("tls-cert-file {}", certs.crt.display()),
            ),
            (
                "tls-key-file ",
                format!("tls-key-file {}", certs.key.display()),
            ),
            (
                "tls-ca-cert-file ",
                format!("tls-ca-cert-file {}", certs.ca.display()),
            ),
        ],
    )
    .join("\n");
    let _redis = redis_from_rendered(&local, host, data.path());
    let pw = secret_value(&w, "redis-password");

    // Plain TCP: no answer.
    let plain = RedisConn::connect(host, 6379, Some(&pw)).and_then(|mut c| c.command(&["PING"]));
    assert!(plain.is_err(), "a plain client was answered");
    // TLS against the right CA, by IP: works.
    {
        let _tls = use_tls(Some(ClientTls {
            ca_pem: std::fs::read(&certs.ca).unwrap(),
        }));
        let mut c = RedisConn::connect(host, 6379, Some(&pw)).expect("TLS connection");
        assert_eq!(c.command_string(&["PING"]).unwrap(), "PONG");
        assert_eq!(c.info("replication").unwrap()["role"], "master");
    }
    // Another CA: refused.
    {
        let _tls = use_tls(Some(ClientTls {
            ca_pem: std::fs::read(&other.ca).unwrap(),
        }));
        let err = RedisConn::connect(host, 6379, Some(&pw))
            .err()
            .expect("a server certificate from another CA is refused");
        assert!(err.to_string().contains("127.0.72.1:6379"), "{err}");
    }
    // The guard restored plain TCP.
    assert!(!redis_k8s::redis_client::tls_in_use());
}
