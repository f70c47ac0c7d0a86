//! End to end on the local model: three units with `enable-tls=true` and the three file
//! resources (certificates made here with the `openssl` CLI). Redis and Sentinel speak TLS
//! only (a plain client gets nothing on 6379), replication and the sentinels work over TLS,
//! the exporter scrapes over TLS (`redis_up 1`), and killing the primary's pod fails over
//! over TLS with `leader-host` following.
//!
//! The server certificate names only `*.redis-k8s-endpoints.<model>.svc.cluster.local`, no
//! IP address: the charm's own connections (to pod IPs) must verify the chain without the
//! name, and the exporter (which checks names) scrapes the unit's FQDN.

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, Model, APP, CHARM_BIN};

const SUBNET: &str = "127.0.71";

/// `redis-cli --tls` against `addr:port`; the password through `REDISCLI_AUTH`, never argv.
fn tls_cli(ca: &Path, addr: &str, port: u16, pw: &str, cmd: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-h", addr, "-p", &port.to_string(), "--no-auth-warning"])
        .args(cmd)
        .env("REDISCLI_AUTH", pw)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty() && !text.starts_with("ERR")).then_some(text)
}

fn metrics(addr: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect((addr, 9121)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn three_units_speak_only_tls_and_fail_over_over_tls() {
    let m = Model::new("tlsm").with_subnet(SUBNET);
    let certs = m.scratch().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let tls_support::Certs { crt, key, ca } =
        tls_support::make_certs(&certs, APP, &m.name, "test-ca");
    m.ok(&[
        "deploy",
        common::ROOT,
        "-n",
        "3",
        "--dispatch",
        CHARM_BIN,
        "--subnet",
        SUBNET,
        "--update-status-interval",
        "3600",
        "--config",
        "enable-tls=true",
        "--resource",
        &format!("cert-file={}", crt.display()),
        "--resource",
        &format!("key-file={}", key.display()),
        "--resource",
        &format!("ca-cert-file={}", ca.display()),
        "--wait",
        "--timeout",
        "120",
    ]);
    let (primary, paddr) = m.wait_roles(2, None, 60);
    let pw = m.password();
    let spw = m.sentinel_password();

    // Plain TCP gets no answer on either port; TLS with the CA does.
    for n in 0..3 {
        let addr = m.addr(n);
        assert!(
            common::redis(&addr, 6379, Some(&pw), &[&["PING"]]).is_none(),
            "plain Redis answered on {addr}"
        );
        assert!(
            common::redis(&addr, 26379, Some(&spw), &[&["PING"]]).is_none(),
            "plain Sentinel answered on {addr}"
        );
        assert_eq!(
            tls_cli(&ca, &addr, 6379, &pw, &["PING"]).as_deref(),
            Some("PONG")
        );
    }

    // A write on the primary reaches both replicas (replication over TLS).
    assert_eq!(
        tls_cli(&ca, &paddr, 6379, &pw, &["SET", "tls-key", "over-tls"]).as_deref(),
        Some("OK")
    );
    let replicas: Vec<String> = m
        .roles()
        .into_iter()
        .filter(|r| r.2 == "replica")
        .map(|r| r.1)
        .collect();
    assert_eq!(replicas.len(), 2);
    for r in &replicas {
        eventually(&format!("the key on replica {r}"), 15, || {
            tls_cli(&ca, r, 6379, &pw, &["GET", "tls-key"]).as_deref() == Some("over-tls")
        });
    }

    // Every sentinel (over TLS) names the primary, and sees the two others.
    let pfqdn = m.fqdn(primary.rsplit('/').next().unwrap().parse().unwrap());
    for n in 0..3 {
        let addr = m.addr(n);
        eventually(&format!("sentinel {addr} agrees"), 20, || {
            let master = tls_cli(
                &ca,
                &addr,
                26379,
                &spw,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", APP],
            );
            let others = tls_cli(&ca, &addr, 26379, &spw, &["SENTINEL", "SENTINELS", APP]);
            master.is_some_and(|t| t.lines().next() == Some(pfqdn.as_str()))
                && others.is_some_and(|t| t.matches("name").count() == 2)
        });
    }

    // The exporter scrapes over TLS.
    eventually("redis_up 1 on the primary's exporter", 20, || {
        metrics(&paddr).lines().any(|l| l == "redis_up 1")
    });

    // Kill the primary's pod (unit 0: also the leader): a replica takes over, over TLS;
    // once the pod is back, the leader records the new primary as `leader-host` and the old
    // primary rejoins as a replica, over TLS.
    m.ok(&["kill-pod", &primary, "--down-for", "5"]);
    let (newp, naddr) = m.wait_new_primary(&primary, 60);
    let nfqdn = m.fqdn(newp.rsplit('/').next().unwrap().parse().unwrap());
    assert_eq!(
        tls_cli(&ca, &naddr, 6379, &pw, &["GET", "tls-key"]).as_deref(),
        Some("over-tls")
    );
    let role = tls_cli(&ca, &naddr, 6379, &pw, &["ROLE"]).unwrap_or_default();
    assert!(role.starts_with("master"), "{role}");
    m.wait_roles(2, Some(&primary), 60);
    eventually("leader-host names the new primary", 30, || {
        m.leader_host(&primary, "redis-peers") == nfqdn
    });
    assert_eq!(
        tls_cli(&ca, &paddr, 6379, &pw, &["GET", "tls-key"]).as_deref(),
        Some("over-tls"),
        "the old primary has the data back as a replica"
    );
}

/// Turning TLS on in a running three-unit deployment: every unit restarts its Redis and
/// Sentinel in its own config-changed (not a rolling restart), the primary keeps its role,
/// the data survives (AOF), and afterwards everything speaks only TLS. Turning it off again
/// brings the plain ports back.
#[test]
fn turning_tls_on_and_off_in_a_running_deployment_keeps_the_data_and_the_primary() {
    const NET: &str = "127.0.73";
    let m = Model::new("tlst").with_subnet(NET);
    let certs = m.scratch().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let tls_support::Certs { crt, key, ca } =
        tls_support::make_certs(&certs, APP, &m.name, "test-ca");
    m.ok(&[
        "deploy",
        common::ROOT,
        "-n",
        "3",
        "--dispatch",
        CHARM_BIN,
        "--subnet",
        NET,
        "--update-status-interval",
        "3600",
        "--wait",
        "--timeout",
        "120",
    ]);
    let (primary, paddr) = m.wait_roles(2, None, 60);
    let pw = m.password();
    assert!(common::redis(&paddr, 6379, Some(&pw), &[&["SET", "before", "plain"]]).is_some());

    // Resources first (upgrade-charm changes nothing while TLS is off), then the option.
    m.ok(&[
        "attach-resource",
        APP,
        &format!("cert-file={}", crt.display()),
        &format!("key-file={}", key.display()),
        &format!("ca-cert-file={}", ca.display()),
        "--wait",
    ]);
    assert!(common::redis(&paddr, 6379, Some(&pw), &[&["PING"]]).is_some());
    m.ok(&["config", APP, "enable-tls=true", "--wait"]);
    let (p2, p2addr) = m.wait_roles(2, None, 60);
    assert_eq!(p2, primary, "the primary keeps its role");
    for n in 0..3 {
        let addr = m.addr(n);
        assert!(common::redis(&addr, 6379, Some(&pw), &[&["PING"]]).is_none());
        eventually(&format!("the data on {addr} over TLS"), 20, || {
            tls_cli(&ca, &addr, 6379, &pw, &["GET", "before"]).as_deref() == Some("plain")
        });
    }
    assert_eq!(
        tls_cli(&ca, &p2addr, 6379, &pw, &["SET", "after", "tls"]).as_deref(),
        Some("OK")
    );

    m.ok(&["config", APP, "enable-tls=false", "--wait"]);
    m.wait_roles(2, None, 60);
    for n in 0..3 {
        let addr = m.addr(n);
        eventually(&format!("plain again on {addr}"), 20, || {
            common::get(&addr, &pw, "after") == "tls"
        });
    }
}

/// Two units with TLS: the replica's witness sentinel (26380) speaks only TLS and counts the
/// two other sentinels, and a kill of the primary's pod fails over (the witness votes over
/// TLS).
#[test]
fn two_units_with_tls_fail_over_through_the_witness() {
    const NET: &str = "127.0.74";
    let m = Model::new("tlsw").with_subnet(NET);
    let certs = m.scratch().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let tls_support::Certs { crt, key, ca } =
        tls_support::make_certs(&certs, APP, &m.name, "test-ca");
    m.ok(&[
        "deploy",
        common::ROOT,
        "-n",
        "2",
        "--dispatch",
        CHARM_BIN,
        "--subnet",
        NET,
        "--update-status-interval",
        "3600",
        "--config",
        "enable-tls=true",
        "--config",
        "sentinel-down-after-milliseconds=2000",
        "--resource",
        &format!("cert-file={}", crt.display()),
        "--resource",
        &format!("key-file={}", key.display()),
        "--resource",
        &format!("ca-cert-file={}", ca.display()),
        "--wait",
        "--timeout",
        "120",
    ]);
    let (primary, _) = m.wait_roles(1, None, 60);
    let raddr = m
        .roles()
        .into_iter()
        .find(|r| r.2 == "replica")
        .map(|r| r.1)
        .unwrap();
    let spw = m.sentinel_password();
    let witness = redis_k8s::witness::WITNESS_PORT;
    assert!(common::redis(&raddr, witness, Some(&spw), &[&["PING"]]).is_none());
    eventually(
        "the witness counts two other sentinels over TLS",
        30,
        || {
            tls_cli(&ca, &raddr, witness, &spw, &["SENTINEL", "MASTER", APP]).is_some_and(|t| {
                t.lines()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w[0] == "num-other-sentinels" && w[1] == "2")
            })
        },
    );
    m.ok(&["kill-pod", &primary, "--down-for", "5"]);
    eventually("the replica takes over", 60, || {
        m.roles()
            .iter()
            .any(|r| r.2 == "primary" && r.0 != primary && r.1 == raddr)
    });
}
