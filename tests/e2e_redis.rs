//! End to end: this repo's charm (the real `redis-k8s` dispatch) on the local model with real
//! redis-server and redis-sentinel processes: replication, Sentinel quorum, auth, failover
//! after a pod kill, and scale down/up with data intact.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const JL: &str = env!("CARGO_BIN_EXE_juju-local");
const CHARM_BIN: &str = env!("CARGO_BIN_EXE_redis-k8s");
const APP: &str = "redis-k8s";

struct Model {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Model {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(JL)
            .arg("--model-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("JUJU_LOCAL_DIR")
            .output()
            .expect("run juju-local")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "juju-local {args:?} failed:\nstdout: {}\nstderr: {}\nstatus:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&self.cmd(&["status"]).stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// (unit, address, role) per unit of the app, as `status` reports them.
    fn roles(&self) -> Vec<(String, String, String)> {
        let st: serde_json::Value =
            serde_json::from_str(&self.ok(&["status", "--format", "json"])).unwrap();
        st["units"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["name"].as_str().unwrap_or("").starts_with(APP))
            .map(|u| {
                (
                    u["name"].as_str().unwrap_or("").to_string(),
                    u["address"].as_str().unwrap_or("").to_string(),
                    u["role"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Wait until exactly one unit is primary and `replicas` are replicas; returns the primary.
    fn wait_roles(&self, replicas: usize, not: Option<&str>, secs: u64) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let roles = self.roles();
            let primaries: Vec<_> = roles.iter().filter(|r| r.2 == "primary").collect();
            let n_rep = roles.iter().filter(|r| r.2 == "replica").count();
            if primaries.len() == 1 && n_rep == replicas && Some(primaries[0].0.as_str()) != not {
                return (primaries[0].0.clone(), primaries[0].1.clone());
            }
            assert!(
                Instant::now() < deadline,
                "roles never settled (want 1 primary, {replicas} replicas, not {not:?}): {roles:?}\n{}",
                String::from_utf8_lossy(&self.cmd(&["status"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn password(&self) -> String {
        let out = self.ok(&["run", &format!("{APP}/0"), "get-initial-admin-password"]);
        out.lines()
            .find_map(|l| l.strip_prefix("redis-password:"))
            .map(|p| p.trim().trim_matches('\'').to_string())
            .expect("redis-password in the action results")
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.cmd(&["down"]);
    }
}

/// A RESP value (enough of it for these checks).
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

impl Resp {
    fn text(&self) -> String {
        match self {
            Resp::Simple(s) | Resp::Error(s) | Resp::Bulk(Some(s)) => s.clone(),
            Resp::Int(i) => i.to_string(),
            _ => String::new(),
        }
    }
}

fn parse(buf: &[u8], pos: &mut usize) -> Option<Resp> {
    let end = buf[*pos..].windows(2).position(|w| w == b"\r\n")? + *pos;
    let line = String::from_utf8_lossy(&buf[*pos + 1..end]).to_string();
    let kind = buf[*pos];
    *pos = end + 2;
    Some(match kind {
        b'+' => Resp::Simple(line),
        b'-' => Resp::Error(line),
        b':' => Resp::Int(line.parse().ok()?),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let n = n as usize;
                if buf.len() < *pos + n + 2 {
                    return None;
                }
                let s = String::from_utf8_lossy(&buf[*pos..*pos + n]).to_string();
                *pos += n + 2;
                Resp::Bulk(Some(s))
            }
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(parse(buf, pos)?);
            }
            Resp::Array(items)
        }
        _ => return None,
    })
}

/// Run commands on one connection (optionally AUTH first) and return every reply.
fn redis(addr: &str, port: u16, password: Option<&str>, cmds: &[&[&str]]) -> Option<Vec<Resp>> {
    let sock = format!("{addr}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut all: Vec<Vec<&str>> = Vec::new();
    if let Some(p) = password {
        all.push(vec!["AUTH", p]);
    }
    all.extend(cmds.iter().map(|c| c.to_vec()));
    let mut req = Vec::new();
    for c in &all {
        req.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in c {
            req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    s.write_all(&req).ok()?;
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    while replies.len() < all.len() {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        let mut parsed = Vec::new();
        while pos < buf.len() {
            match parse(&buf, &mut pos) {
                Some(r) => parsed.push(r),
                None => break,
            }
        }
        if parsed.len() >= all.len() {
            replies = parsed;
        }
    }
    if password.is_some() {
        replies.remove(0);
    }
    Some(replies)
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn get(addr: &str, pw: &str, key: &str) -> String {
    redis(addr, 6379, Some(pw), &[&["GET", key]])
        .and_then(|r| r.first().map(Resp::text))
        .unwrap_or_default()
}

/// A charm that only requires the `redis` interface: the client side of the relation.
fn client_charm(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("metadata.yaml"),
        "name: client\nrequires:\n  redis:\n    interface: redis\n",
    )
    .unwrap();
    let d = dir.join("dispatch");
    std::fs::write(&d, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The primary the client relation names (`leader-host` in the app databag), as seen from
/// the client's side.
fn client_hostname(m: &Model) -> String {
    let shown: serde_yaml::Value = serde_yaml::from_str(&m.ok(&["show-unit", "client/0"])).unwrap();
    let rel = shown["client/0"]["relation-info"]
        .as_sequence()
        .and_then(|r| r.iter().find(|r| r["endpoint"] == "redis"))
        .cloned()
        .unwrap_or_default();
    rel["application-data"]["leader-host"]
        .as_str()
        .or_else(|| rel["remote-application-data"]["leader-host"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn fqdn_of(unit: &str, model: &str) -> String {
    let host = unit.replace('/', "-");
    format!("{host}.{APP}-endpoints.{model}.svc.cluster.local")
}

/// The README's HA story end to end on the local model, with real redis-server and
/// redis-sentinel processes. update-status runs every 5 s here so the leader's fallback
/// refresh of `leader-host` is quick.
#[test]
fn redis_ha_on_the_local_model() {
    let tmp = tempfile::tempdir().unwrap();
    let m = Model {
        dir: tmp.path().join("e2e"),
        _tmp: tmp,
    };
    let root = env!("CARGO_MANIFEST_DIR");
    m.ok(&[
        "deploy",
        root,
        "-n",
        "3",
        "--dispatch",
        CHARM_BIN,
        "--subnet",
        "127.0.61",
        "--update-status-interval",
        "5",
        "--wait",
        "--timeout",
        "180",
    ]);
    let (primary, paddr) = m.wait_roles(2, None, 60);
    let pw = m.password();

    // Auth: no password is refused, the action's password works.
    let noauth = redis(&paddr, 6379, None, &[&["GET", "x"]]).expect("connect");
    assert!(
        matches!(&noauth[0], Resp::Error(e) if e.contains("NOAUTH")),
        "{noauth:?}"
    );
    // Replication: a key written on the primary reaches both replicas.
    let set = redis(&paddr, 6379, Some(&pw), &[&["SET", "e2e-key", "v1"]]).expect("set");
    assert_eq!(set[0], Resp::Simple("OK".into()));
    let replicas: Vec<(String, String, String)> =
        m.roles().into_iter().filter(|r| r.2 == "replica").collect();
    for (_, addr, _) in &replicas {
        eventually("replication to replicas", 20, || {
            get(addr, &pw, "e2e-key") == "v1"
        });
    }

    // Sentinels: three of them agree on the primary, quorum 2.
    let sentinel_pw = {
        let out = m.ok(&["run", &format!("{APP}/0"), "get-sentinel-password"]);
        out.lines()
            .find_map(|l| l.strip_prefix("sentinel-password:"))
            .map(|p| p.trim().trim_matches('\'').to_string())
            .expect("sentinel-password")
    };
    let model_name = "e2e";
    for (_, addr, _) in m.roles() {
        let r = redis(
            &addr,
            26379,
            Some(&sentinel_pw),
            &[&["SENTINEL", "MASTERS"]],
        )
        .expect("sentinel reachable");
        let Resp::Array(masters) = &r[0] else {
            panic!("SENTINEL MASTERS: {r:?}")
        };
        let Some(Resp::Array(fields)) = masters.first() else {
            panic!("no master monitored: {r:?}")
        };
        let field = |k: &str| {
            fields
                .chunks(2)
                .find(|c| c[0].text() == k)
                .map(|c| c[1].text())
                .unwrap_or_default()
        };
        assert_eq!(field("quorum"), "2");
        assert_eq!(field("num-other-sentinels"), "2");
        let ip = field("ip");
        assert!(
            ip == paddr || ip == fqdn_of(&primary, model_name),
            "{ip} vs {primary}"
        );
    }

    // A client relation names the primary.
    let client = m._tmp.path().join("client");
    client_charm(&client);
    m.ok(&[
        "deploy",
        client.to_str().unwrap(),
        "--wait",
        "--timeout",
        "60",
    ]);
    m.ok(&["relate", APP, "client", "--wait", "--timeout", "60"]);
    let host = client_hostname(&m);
    assert!(
        host == fqdn_of(&primary, model_name) || host == paddr,
        "{host} vs {primary}"
    );

    // Sentinel can only promote a replica it knows (it learns them from the primary's INFO
    // every 10 s): wait until every sentinel knows both replicas before the kill.
    for (_, addr, _) in m.roles() {
        eventually("sentinels know both replicas", 60, || {
            redis_k8s::sentinel::Sentinel::master_info(&addr, &sentinel_pw, APP)
                .map(|i| i.get("num-slaves").map(String::as_str) == Some("2"))
                .unwrap_or(false)
        });
    }

    // Kill the primary's pod: a replica is promoted; the old primary comes back as a replica.
    m.ok(&["kill-pod", &primary]);
    let (newp, naddr) = m.wait_roles(1, Some(&primary), 90);
    assert_ne!(newp, primary);
    assert_eq!(get(&naddr, &pw, "e2e-key"), "v1");
    m.ok(&["wait", "--timeout", "120"]);
    let (again, _) = m.wait_roles(2, None, 60);
    assert_eq!(
        again, newp,
        "the restarted pod must not take the primary back"
    );
    eventually("relation data names the new primary", 60, || {
        let h = client_hostname(&m);
        h == fqdn_of(&newp, model_name) || h == naddr
    });
    let shown: serde_yaml::Value = serde_yaml::from_str(&m.ok(&["show-unit", &newp])).unwrap();
    let peer_host = shown[newp.as_str()]["relation-info"]
        .as_sequence()
        .and_then(|r| r.iter().find(|r| r["endpoint"] == "redis-peers"))
        .map(|r| {
            r["application-data"]["leader-host"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    assert!(
        peer_host == fqdn_of(&newp, model_name) || peer_host == naddr,
        "{peer_host}"
    );

    // Scale 3 → 1 → 3 with the data intact.
    m.ok(&["scale", APP, "1", "--wait", "--timeout", "120"]);
    let (solo, saddr) = m.wait_roles(0, None, 60);
    assert_eq!(get(&saddr, &pw, "e2e-key"), "v1", "{solo} lost the data");
    m.ok(&["scale", APP, "3", "--wait", "--timeout", "180"]);
    m.wait_roles(2, None, 60);
    for (_, addr, _) in m.roles() {
        eventually("data on every unit after scale-up", 30, || {
            get(&addr, &pw, "e2e-key") == "v1"
        });
    }
}
