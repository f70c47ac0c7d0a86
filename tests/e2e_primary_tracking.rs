//! End to end: event-driven primary tracking on the local model with real redis-server and
//! redis-sentinel processes. Sentinel's client-reconfig-script records a Pebble notice
//! (`/charm/bin/pebble notify` as the `redis` user), the model turns it into a
//! `sentinel-pebble-custom-notice` hook, and the leader updates `leader-host` in the peer and
//! the client relation data. update-status runs only every hour here, so it cannot be what
//! updates them. The time from Sentinel's promotion (seen by polling `ROLE` on the replicas
//! every 20 ms) to both records naming the new primary is printed and bounded generously
//! (not a timed benchmark).

mod common;

use std::time::{Duration, Instant};

use common::{client_charm, Model, APP};
use redis_k8s::redis_client::{value_to_string, RedisConn};

/// Generous: the figure is printed; the bound only catches "waited for update-status".
const BOUND: Duration = Duration::from_secs(10);

impl Model {
    /// The end of each unit's log and sentinel output, for failure messages.
    fn log_tail(&self) -> String {
        let mut s = String::new();
        for n in 0..3 {
            for f in ["unit.log", "containers/sentinel/pebble.log"] {
                let p = self.dir.join(format!("units/{APP}-{n}/{f}"));
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(25);
                s.push_str(&format!(
                    "--- {}\n{}\n",
                    p.display(),
                    lines[from..].join("\n")
                ));
            }
        }
        s
    }
}

/// `ROLE`'s first word on a unit's Redis, or `None` if it does not answer.
fn role(m: &Model, n: usize, pw: &str) -> Option<String> {
    let mut c =
        RedisConn::connect_with_timeout(&m.addr(n), 6379, Some(pw), Duration::from_millis(200))
            .ok()?;
    match c.command(&["ROLE"]).ok()? {
        redis::Value::Array(items) if !items.is_empty() => Some(value_to_string(&items[0])),
        _ => None,
    }
}

/// The unit whose Redis is primary, when exactly one of `candidates` says so.
fn primary_among(m: &Model, candidates: &[usize], pw: &str) -> Option<usize> {
    let masters: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|n| role(m, *n, pw).as_deref() == Some("master"))
        .collect();
    (masters.len() == 1).then(|| masters[0])
}

/// Poll `ROLE` on `replicas` every 20 ms until one is primary; returns it and when.
fn wait_promotion(m: &Model, replicas: &[usize], pw: &str, within: Duration) -> (usize, Instant) {
    let deadline = Instant::now() + within;
    loop {
        for &n in replicas {
            if role(m, n, pw).as_deref() == Some("master") {
                return (n, Instant::now());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no replica was promoted\n{}",
            m.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until every unit's sentinel names `primary` with no failover in progress and
/// counts the other units as its replicas.
fn wait_sentinels_settled(m: &Model, units: &[usize], primary: usize, sentinel_pw: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let settled = units.iter().all(|&n| {
            RedisConn::connect(&m.addr(n), 26379, Some(sentinel_pw))
                .and_then(|mut c| c.sentinel_master(APP))
                .is_ok_and(|info| {
                    info.get("ip") == Some(&m.fqdn(primary))
                        && info.get("flags").map(String::as_str) == Some("master")
                        && info.get("num-slaves") == Some(&(units.len() - 1).to_string())
                })
        });
        if settled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sentinels never settled on {}\n{}",
            m.fqdn(primary),
            m.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Poll the peer and client `leader-host` until both name `want`; returns the delay of each
/// after `since`, and the time of day (UTC seconds) when both did.
fn wait_relation_data(
    m: &Model,
    leader: &str,
    want: &str,
    since: Instant,
    within: Duration,
) -> (Duration, Duration, f64) {
    let deadline = since + within;
    let (mut peer, mut client) = (None, None);
    loop {
        if peer.is_none() && m.leader_host(leader, "redis-peers") == want {
            peer = Some(since.elapsed());
        }
        if client.is_none() && m.leader_host("client/0", "redis") == want {
            client = Some(since.elapsed());
        }
        if let (Some(p), Some(c)) = (peer, client) {
            return (p, c, now_time_of_day());
        }
        assert!(
            Instant::now() < deadline,
            "relation data did not name {want} within {within:?} (peer: {:?}, client: {:?})\n{}",
            m.leader_host(leader, "redis-peers"),
            m.leader_host("client/0", "redis"),
            m.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Seconds since midnight UTC of a Pebble log line's timestamp (`2026-01-02T03:04:05.678Z`).
fn log_time_of_day(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split_once('T')?.1;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn now_time_of_day() -> f64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs_f64()) % 86_400.0
}

/// When the first live sentinel logged `event` for `primary` after `after` (time of day),
/// from the sentinels' Pebble logs: Sentinel's own view of the switch.
fn sentinel_event_time(m: &Model, event: &str, primary: usize, after: f64) -> Option<f64> {
    (0..3)
        .filter_map(|n| {
            let p = m
                .dir
                .join(format!("units/{APP}-{n}/containers/sentinel/pebble.log"));
            let text = std::fs::read_to_string(p).ok()?;
            text.lines()
                .filter(|l| l.contains(event) && l.contains(&format!("{APP}-{primary}.")))
                .filter_map(log_time_of_day)
                .find(|t| *t > after)
        })
        .min_by(|a, b| a.total_cmp(b))
}

/// A deployed cluster with a related client: the model, passwords, the first primary and
/// the leader unit.
struct Cluster {
    m: Model,
    pw: String,
    sentinel_pw: String,
    first: usize,
    leader: String,
}

const ALL: [usize; 3] = [0, 1, 2];

fn deploy(name: &'static str, subnet: &'static str, juju: &str, update_status: u64) -> Cluster {
    let m = Model::new(name).with_subnet(subnet);
    m.deploy_charm(3, update_status, &["--juju-version", juju]);
    let pw = m.password();
    let sentinel_pw = m.sentinel_password();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(p) = primary_among(&m, &ALL, &pw) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no single primary\n{}",
            m.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let leader = ALL
        .iter()
        .map(|n| format!("{APP}/{n}"))
        .find(|u| m.is_leader(u))
        .expect("a leader");

    let client = m.scratch().join("client");
    client_charm(&client);
    m.deploy_client(&client);
    assert_eq!(m.leader_host("client/0", "redis"), m.fqdn(first));
    assert_eq!(m.leader_host(&leader, "redis-peers"), m.fqdn(first));
    Cluster {
        m,
        pw,
        sentinel_pw,
        first,
        leader,
    }
}

/// Juju 3.6.25 and later deliver the notice Sentinel's script records as `redis`.
#[test]
fn relation_data_follows_a_switch_of_primary_without_waiting_for_update_status() {
    let Cluster {
        m,
        pw,
        sentinel_pw,
        first,
        leader,
    } = deploy("track", "127.0.66", "3.6.25", 3600);
    let all = ALL;

    // 1. A planned switch (SENTINEL FAILOVER), which also moves the primary off the leader's
    //    pod: a killed leader's pod could not run the leader's hook until it is back.
    let mut current = first;
    if format!("{APP}/{current}") == leader {
        let replicas: Vec<usize> = all.iter().copied().filter(|n| *n != current).collect();
        let mut s = RedisConn::connect(&m.addr(current), 26379, Some(&sentinel_pw))
            .expect("leader's sentinel");
        let asked_tod = now_time_of_day();
        s.command(&["SENTINEL", "FAILOVER", APP])
            .expect("SENTINEL FAILOVER");
        let (newp, promoted) = wait_promotion(&m, &replicas, &pw, Duration::from_secs(30));
        let (peer, client, both_tod) =
            wait_relation_data(&m, &leader, &m.fqdn(newp), promoted, BOUND);
        println!(
            "planned switch {APP}/{current} -> {APP}/{newp}: peer leader-host {} ms, client \
             leader-host {} ms after the promotion",
            peer.as_millis(),
            client.as_millis()
        );
        if let Some(t) = sentinel_event_time(&m, "+promoted-slave", newp, asked_tod) {
            println!(
                "  Sentinel logged +promoted-slave; both records named the new primary {} ms \
                 after that",
                ((both_tod - t) * 1000.0) as i64
            );
        }
        assert!(peer < BOUND && client < BOUND);
        current = newp;
        // Let the failover finish everywhere before the next switch: a primary killed while
        // its promotion is still being rolled out leaves the failover leader stuck until
        // its failover-timeout.
        wait_sentinels_settled(&m, &all, newp, &sentinel_pw);
    }

    // 2. The primary's pod dies (not the leader's): Sentinel fails over after
    //    down-after-milliseconds; the notice carries the switch to the relation data.
    assert_ne!(format!("{APP}/{current}"), leader);
    let replicas: Vec<usize> = all.iter().copied().filter(|n| *n != current).collect();
    let killed = Instant::now();
    let killed_tod = now_time_of_day();
    m.ok(&["kill-pod", &format!("{APP}/{current}"), "--down-for", "60"]);
    let (newp, promoted) = wait_promotion(&m, &replicas, &pw, Duration::from_secs(60));
    let (peer, client, both_tod) = wait_relation_data(&m, &leader, &m.fqdn(newp), promoted, BOUND);
    println!(
        "pod kill of primary {APP}/{current}: {APP}/{newp} promoted {} ms after the kill; \
         peer leader-host {} ms, client leader-host {} ms after the promotion",
        (promoted - killed).as_millis(),
        peer.as_millis(),
        client.as_millis()
    );
    // Sentinel itself notices the promotion only at its next INFO of the replica (up to 1 s):
    // the charm's share is the time after Sentinel logged it.
    if let Some(t) = sentinel_event_time(&m, "+promoted-slave", newp, killed_tod) {
        println!(
            "  Sentinel logged +promoted-slave {} ms after the kill; both records named the \
             new primary {} ms after that",
            ((t - killed_tod) * 1000.0) as i64,
            ((both_tod - t) * 1000.0) as i64
        );
    }
    assert!(peer < BOUND && client < BOUND);
    // No update-status ran: the hour-long interval has not elapsed.
    let log = std::fs::read_to_string(
        m.dir
            .join(format!("units/{}/unit.log", leader.replace('/', "-"))),
    )
    .unwrap_or_default();
    if std::env::var_os("E2E_SHOW_LOG").is_some() {
        println!("{log}");
    }
    assert!(
        log.contains("sentinel-pebble-custom-notice"),
        "the leader ran no custom-notice hook:\n{}",
        m.log_tail()
    );
    assert!(
        !log.contains("update-status"),
        "update-status ran on the leader; the measurement would not show the notice path"
    );
}

/// Before Juju 3.6.25 the `redis` user's notice never becomes a hook (the model filters it as
/// Juju's watcher does): update-status is the fallback that brings the relation data up to
/// date, within one interval.
#[test]
fn before_juju_3_6_25_update_status_catches_up() {
    let c = deploy("trackold", "127.0.67", "3.6.24", 5);
    let m = &c.m;
    let replicas: Vec<usize> = ALL.iter().copied().filter(|n| *n != c.first).collect();
    let mut s = RedisConn::connect(&m.addr(c.first), 26379, Some(&c.sentinel_pw))
        .expect("sentinel of the primary");
    s.command(&["SENTINEL", "FAILOVER", APP])
        .expect("SENTINEL FAILOVER");
    let (newp, promoted) = wait_promotion(m, &replicas, &c.pw, Duration::from_secs(30));
    let (peer, client, _) = wait_relation_data(
        m,
        &c.leader,
        &m.fqdn(newp),
        promoted,
        Duration::from_secs(30),
    );
    println!(
        "Juju 3.6.24, planned switch {APP}/{} -> {APP}/{newp}: peer leader-host {} ms, client \
         leader-host {} ms after the promotion (update-status every 5 s)",
        c.first,
        peer.as_millis(),
        client.as_millis()
    );
    for n in ALL {
        let log = std::fs::read_to_string(m.dir.join(format!("units/{APP}-{n}/unit.log")))
            .unwrap_or_default();
        assert!(
            !log.contains("sentinel-pebble-custom-notice"),
            "{APP}/{n} got a redis-user notice on Juju 3.6.24:\n{log}"
        );
    }
    // The script did record it: Pebble has the notice, Juju just does not deliver it.
    let pebble = redis_k8s::ops::pebble::PebbleClient::new(m.dir.join(format!(
        "units/{APP}-{}/containers/sentinel/pebble.socket",
        c.first
    )));
    use redis_k8s::ops::pebble::Pebble;
    let notices = pebble
        .notices(&redis_k8s::ops::pebble::NoticesQuery {
            all_users: true,
            keys: vec!["redis-k8s.charm/primary-changed".into()],
            ..Default::default()
        })
        .expect("notices");
    assert!(!notices.is_empty(), "the script recorded no notice");
    assert!(notices.iter().all(|n| n.user_id.is_some_and(|u| u != 0)));
}

/// The primary is the leader's unit and its pod dies: non-leaders cannot write app data, so
/// the leader must publish the new primary as soon as its pod is back (upgrade-charm →
/// config-changed), not at the next update-status (an hour here).
#[test]
fn a_returning_leader_publishes_the_primary_chosen_while_it_was_gone() {
    let Cluster {
        m,
        pw,
        sentinel_pw,
        first,
        leader,
    } = deploy("leaderback", "127.0.68", "3.6.25", 3600);
    if format!("{APP}/{first}") != leader {
        println!("the first primary is not the leader's unit; nothing to test");
        return;
    }
    // Sentinel can only promote replicas it has discovered.
    wait_sentinels_settled(&m, &ALL, first, &sentinel_pw);
    let replicas: Vec<usize> = ALL.iter().copied().filter(|n| *n != first).collect();
    m.ok(&["kill-pod", &leader, "--down-for", "8"]);
    let (newp, _) = wait_promotion(&m, &replicas, &pw, Duration::from_secs(60));
    m.ok(&["wait", "--timeout", "120"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let peer = m.leader_host(&leader, "redis-peers");
        let client = m.leader_host("client/0", "redis");
        if peer == m.fqdn(newp) && client == m.fqdn(newp) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the leader's pod came back: peer leader-host {peer}, client {client}, \
             primary {}\n{}",
            m.fqdn(newp),
            m.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
