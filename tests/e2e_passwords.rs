//! End to end on the local model with real redis-server / redis-sentinel processes: rotate the
//! admin and the sentinel password with `set-password` while clients keep working.
//!
//! A writer reconnects (and authenticates) for every write with the admin password it knows,
//! and switches to the new one as soon as `get-initial-admin-password` returns it; a sentinel
//! client does the same with the sentinel password. Neither may see a single authentication
//! error. After the drop phase the old password is refused and the new one works on every
//! unit, replication is up and the sentinels still reach quorum. A client charm reads its
//! credentials from the secret granted to its relation and follows the rotation through
//! `secret-changed`. update-status runs every 2 s and the grace period is 6 s, so the whole
//! test takes well under two minutes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{eventually, eventually_ok, redis, Model, Resp, APP};

/// A client that opens a new connection for every command, authenticating with the password
/// it currently knows, and counts what happened.
struct Client {
    password: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    auth_errors: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Client {
    /// `cmd(i)` is the command to run after AUTH on `addrs[i % len]`, port `port`.
    fn start(addrs: Vec<String>, port: u16, password: &str, cmd: fn(u64) -> Vec<String>) -> Client {
        let password = Arc::new(Mutex::new(password.to_string()));
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let auth_errors = Arc::new(Mutex::new(Vec::new()));
        let (p, s, o, e) = (
            password.clone(),
            stop.clone(),
            ok.clone(),
            auth_errors.clone(),
        );
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(Ordering::SeqCst) {
                let pw = p.lock().unwrap().clone();
                let addr = &addrs[(i as usize) % addrs.len()];
                let words = cmd(i);
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                if let Some(replies) = redis(addr, port, None, &[&["AUTH", &pw], &words]) {
                    match (&replies[0], &replies[1]) {
                        (Resp::Error(err), _) => {
                            e.lock().unwrap().push(format!("{addr}: AUTH: {err}"))
                        }
                        (_, Resp::Error(err))
                            if err.contains("NOAUTH") || err.contains("WRONGPASS") =>
                        {
                            e.lock().unwrap().push(format!("{addr}: {err}"))
                        }
                        (_, Resp::Error(_)) => {}
                        _ => {
                            o.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Client {
            password,
            stop,
            ok,
            auth_errors,
            handle: Some(handle),
        }
    }

    fn switch_to(&self, pw: &str) {
        *self.password.lock().unwrap() = pw.to_string();
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Stop and return the authentication errors seen.
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.auth_errors.lock().unwrap().clone()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A client charm that keeps the password of the secret granted to its `redis` relation in
/// `<unit dir>/client-password` (on relation-changed and secret-changed).
fn secret_reading_client(dir: &std::path::Path) {
    common::client_charm_with(
        dir,
        r#"#!/bin/sh
out="$JUJU_CHARM_DIR/../client-password"
save() { secret-get "$1" --refresh password > "$out.tmp" && mv "$out.tmp" "$out"; }
case "$JUJU_DISPATCH_PATH" in
  hooks/redis-relation-changed)
    uri=$(relation-get --app secret-user "$JUJU_REMOTE_APP")
    if [ -n "$uri" ]; then save "$uri"; fi ;;
  hooks/secret-changed) save "$JUJU_SECRET_ID" ;;
esac
exit 0
"#,
    );
}

fn rotation_phase(m: &Model, leader: &str) -> String {
    let shown = m.show(leader);
    let rel = shown[leader]["relation-info"]
        .as_sequence()
        .and_then(|r| r.iter().find(|r| r["endpoint"] == "redis-peers"))
        .cloned()
        .unwrap_or_default();
    let raw = rel["application-data"]["password-rotation"]
        .as_str()
        .unwrap_or("{}")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    v["phase"].as_str().unwrap_or("").to_string()
}

/// Rotate one password while `client` keeps using it; returns (old, new).
fn rotate(
    m: &Model,
    leader: &str,
    username: &str,
    action: &str,
    key: &str,
    client: &Client,
) -> (String, String) {
    let old = m.action_value(leader, action, key);
    let new = format!("{username}-rotated-{}", std::process::id());
    let out = m.ok(&[
        "run",
        leader,
        "set-password",
        &format!("username={username}"),
        &format!("password={new}"),
    ]);
    assert!(
        !out.contains(&new),
        "set-password printed the password: {out}"
    );
    let start = Instant::now();
    let before = client.ok();
    eventually(&format!("{action} returns the new password"), 60, || {
        m.action_value(leader, action, key) == new
    });
    client.switch_to(&new);
    eprintln!(
        "{username}: switch after {:?} ({} requests on the old password)",
        start.elapsed(),
        client.ok() - before
    );
    eventually(&format!("the {username} rotation finishes"), 60, || {
        rotation_phase(m, leader) == "done"
    });
    let after = client.ok();
    eventually("the client keeps working", 10, || client.ok() > after + 20);
    (old, new)
}

fn auth_ok(addr: &str, port: u16, pw: &str) -> bool {
    redis(addr, port, None, &[&["AUTH", pw]])
        .is_some_and(|r| matches!(&r[0], Resp::Simple(s) if s == "OK"))
}

#[test]
fn passwords_rotate_without_client_errors() {
    let m = Model::new("pwe2e").with_subnet("127.0.83");
    m.deploy_charm(3, 2, &["--config", "password-rotation-grace=6"]);
    let (_, paddr) = m.wait_roles(2, None, 90);
    let leader = (0..3)
        .map(|n| format!("{APP}/{n}"))
        .find(|u| m.is_leader(u))
        .expect("a leader");
    let addrs: Vec<String> = m.roles().into_iter().map(|r| r.1).collect();

    // No password in the peer data any more: only the secret's URI.
    let pw = m.password();
    let spw = m.sentinel_password();
    let shown = m.ok(&["show-unit", &leader]);
    assert!(shown.contains("passwords-secret: secret:"), "{shown}");
    assert!(!shown.contains(&pw) && !shown.contains(&spw), "{shown}");

    // A client charm gets its credentials through the granted secret.
    let client_dir = m.scratch().join("client");
    secret_reading_client(&client_dir);
    m.deploy_client(&client_dir);
    let client_pw = || {
        std::fs::read_to_string(m.unit_dir("client/0").join("client-password"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    eventually("the client charm reads the admin password", 30, || {
        client_pw() == pw
    });

    // The admin password, with a writer on the primary.
    let writer = Client::start(vec![paddr.clone()], 6379, &pw, |i| {
        vec!["SET".into(), format!("pw-key-{}", i % 50), i.to_string()]
    });
    let sentinels = Client::start(addrs.clone(), 26379, &spw, |_| {
        vec![
            "SENTINEL".into(),
            "GET-MASTER-ADDR-BY-NAME".into(),
            APP.into(),
        ]
    });
    let (old, new) = rotate(
        &m,
        &leader,
        "admin",
        "get-initial-admin-password",
        "redis-password",
        &writer,
    );
    eventually("the client charm follows the rotation", 30, || {
        client_pw() == new
    });
    for addr in &addrs {
        assert!(
            !auth_ok(addr, 6379, &old),
            "{addr} still takes the old password"
        );
        assert!(auth_ok(addr, 6379, &new), "{addr} refuses the new password");
    }
    // Replication is still up with the new masterauth.
    for addr in addrs.iter().filter(|a| **a != paddr) {
        eventually_ok("replica link up", 30, || {
            let r =
                redis(addr, 6379, Some(&new), &[&["INFO", "replication"]]).ok_or("no answer")?;
            let text = r[0].text();
            text.contains("master_link_status:up")
                .then_some(())
                .ok_or(text)
        });
    }

    // The sentinel password, with the sentinel client still running and the writer too.
    let (sold, snew) = rotate(
        &m,
        &leader,
        "sentinel",
        "get-sentinel-password",
        "sentinel-password",
        &sentinels,
    );
    let writes = writer.ok();
    let writer_errors = writer.finish();
    let sentinel_errors = sentinels.finish();
    assert!(writes > 50, "the writer wrote: {writes}");
    assert!(writer_errors.is_empty(), "{writer_errors:?}");
    assert!(sentinel_errors.is_empty(), "{sentinel_errors:?}");
    for addr in &addrs {
        assert!(
            !auth_ok(addr, 26379, &sold),
            "{addr} sentinel takes the old password"
        );
        let r = redis(addr, 26379, Some(&snew), &[&["SENTINEL", "CKQUORUM", APP]])
            .expect("sentinel answers");
        assert!(r[0].text().starts_with("OK"), "{addr}: {r:?}");
    }
    // The get-* actions and the peer data: the new passwords only as the actions' results.
    let shown = m.ok(&["show-unit", &leader]);
    for p in [&old, &new, &sold, &snew] {
        assert!(!shown.contains(p.as_str()), "{shown}");
    }

    // allow-no-auth opens Redis to clients without a password; turning it off closes it again.
    let ping = |addr: &str| {
        redis(addr, 6379, None, &[&["PING"]])
            .map(|r| r[0].text())
            .unwrap_or_default()
    };
    m.ok(&["config", APP, "allow-no-auth=true"]);
    for addr in &addrs {
        eventually("no-auth mode", 30, || ping(addr) == "PONG");
    }
    m.ok(&["config", APP, "allow-no-auth=false"]);
    for addr in &addrs {
        eventually("auth required again", 30, || ping(addr).contains("NOAUTH"));
        assert!(auth_ok(addr, 6379, &new));
    }
}
