//! End to end: this repo's charm (the real `redis-k8s` dispatch) on the local model with real
//! redis-server and redis-sentinel processes: replication, Sentinel quorum, auth, failover
//! after a pod kill, and scale down/up with data intact.

mod common;

use common::{client_charm, eventually, fqdn_of, get, redis, Model, Resp, APP};

/// The primary the client relation names (`leader-host` in the app databag), as seen from
/// the client's side.
fn client_hostname(m: &Model) -> String {
    m.leader_host("client/0", "redis")
}

/// The README's HA story end to end on the local model, with real redis-server and
/// redis-sentinel processes. update-status runs every 5 s here so the leader's fallback
/// refresh of `leader-host` is quick.
#[test]
fn redis_ha_on_the_local_model() {
    let m = Model::new("e2e").with_subnet("127.0.61");
    m.deploy_charm(3, 5, &[]);
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
    let sentinel_pw = m.sentinel_password();
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
    let client = m.scratch().join("client");
    client_charm(&client);
    m.deploy_client(&client);
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
    let (newp, naddr) = m.wait_new_primary(&primary, 90);
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
