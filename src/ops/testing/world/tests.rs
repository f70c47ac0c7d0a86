//! The world's rules, as the contract states them.

use super::*;
use crate::ops::hookcmds::{HookError, HookTools, SecretOptions, SecretQuery, StatusName};

fn redis_meta() -> CharmMeta {
    CharmMeta::from_yaml(
        "name: redis-k8s\npeers:\n  redis-peers:\n    interface: redis-peers\nprovides:\n  redis:\n    interface: redis\ncontainers:\n  redis:\n    mounts:\n      - storage: database\n        location: /var/lib/redis\nstorage:\n  database:\n    type: filesystem\n",
        "options:\n  maxmemory:\n    type: string\n    default: \"0\"\n  port:\n    type: int\n  tls:\n    type: boolean\n    default: false\n",
        "backup:\n  params:\n    target:\n      type: string\n      default: s3\n  required: []\n",
    )
    .expect("valid metadata")
}

fn client_meta() -> CharmMeta {
    CharmMeta::from_yaml("name: client\nrequires:\n  db: redis\n", "", "").expect("valid")
}

struct Fixture {
    world: Arc<Mutex<World>>,
    peer: u32,
    rel: u32,
}

/// redis-k8s/0 (leader), redis-k8s/1, client/0 related over `redis`.
fn fixture() -> Fixture {
    let mut w = World::new("test");
    w.add_app("redis-k8s", redis_meta()).unwrap();
    w.add_app("client", client_meta()).unwrap();
    assert_eq!(w.add_unit("redis-k8s").unwrap(), "redis-k8s/0");
    assert_eq!(w.add_unit("redis-k8s").unwrap(), "redis-k8s/1");
    w.add_unit("client").unwrap();
    w.set_leader("redis-k8s/0");
    let rel = w
        .add_relation(("redis-k8s", "redis"), ("client", "db"))
        .unwrap();
    let peer = w.peer_relation_id("redis-k8s", "redis-peers").unwrap();
    Fixture {
        world: Arc::new(Mutex::new(w)),
        peer,
        rel,
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn session(f: &Fixture, unit: &str) -> Session {
    World::session(&f.world, unit, HookInfo::default())
}

#[test]
fn units_get_distinct_addresses_and_numbers_are_never_reused() {
    let f = fixture();
    let mut w = f.world.lock().unwrap();
    let a0 = w.unit_address("redis-k8s/0");
    let a1 = w.unit_address("redis-k8s/1");
    assert_ne!(a0, a1);
    assert!(a0.starts_with("127."));
    w.remove_unit("redis-k8s/1").unwrap();
    assert_eq!(w.add_unit("redis-k8s").unwrap(), "redis-k8s/2");
    assert_eq!(w.units("redis-k8s"), vec!["redis-k8s/0", "redis-k8s/2"]);
}

#[test]
fn only_the_leader_writes_the_app_bag() {
    let f = fixture();
    let s = session(&f, "redis-k8s/1");
    let err = s
        .relation_set(f.peer, &map(&[("k", "v")]), true)
        .unwrap_err();
    assert!(
        matches!(err, HookError::NotLeader { ref message, .. } if message == "cannot write relation settings")
    );
    let leader = session(&f, "redis-k8s/0");
    leader
        .relation_set(f.peer, &map(&[("k", "v")]), true)
        .unwrap();
    leader.commit().unwrap();
    assert_eq!(
        f.world.lock().unwrap().relation_data(f.peer, "redis-k8s"),
        map(&[("k", "v")])
    );
}

#[test]
fn own_app_bag_of_a_regular_relation_is_leader_only_but_peer_app_bag_is_open() {
    let f = fixture();
    let s = session(&f, "redis-k8s/1");
    assert!(matches!(
        s.relation_get(f.rel, "redis-k8s", true),
        Err(HookError::PermissionDenied { .. })
    ));
    assert!(s.relation_get(f.peer, "redis-k8s", true).is_ok());
    // The remote app bag is readable by everyone.
    assert!(s.relation_get(f.rel, "client", true).is_ok());
    assert!(session(&f, "redis-k8s/0")
        .relation_get(f.rel, "redis-k8s", true)
        .is_ok());
}

#[test]
fn relation_writes_are_seen_by_the_writer_at_once_and_by_others_only_after_commit() {
    let f = fixture();
    let writer = session(&f, "redis-k8s/0");
    writer
        .relation_set(f.peer, &map(&[("role", "primary")]), false)
        .unwrap();
    assert_eq!(
        writer.relation_get(f.peer, "redis-k8s/0", false).unwrap()["role"],
        "primary"
    );
    let reader = session(&f, "redis-k8s/1");
    assert!(!reader
        .relation_get(f.peer, "redis-k8s/0", false)
        .unwrap()
        .contains_key("role"));
    writer.commit().unwrap();
    assert_eq!(
        writer.changed_relations(),
        vec![(f.peer, "redis-k8s/0".to_string())]
    );
    assert_eq!(
        reader.relation_get(f.peer, "redis-k8s/0", false).unwrap()["role"],
        "primary"
    );
}

#[test]
fn discard_drops_buffered_changes_but_not_status() {
    let f = fixture();
    let s = session(&f, "redis-k8s/0");
    s.relation_set(f.rel, &map(&[("host", "x")]), false)
        .unwrap();
    s.state_set(&map(&[("a", "1")])).unwrap();
    s.open_port(&Port::tcp(6379)).unwrap();
    s.status_set(&StatusValue::active("up"), false).unwrap();
    assert_eq!(s.state_get().unwrap()["a"], "1");
    assert!(
        s.opened_ports().unwrap().is_empty(),
        "pending ports are not shown"
    );
    s.discard();
    s.commit().unwrap();
    let w = f.world.lock().unwrap();
    assert!(!w.relation_data(f.rel, "redis-k8s/0").contains_key("host"));
    assert!(w.unit_state("redis-k8s/0").is_empty());
    assert!(w.opened_ports("redis-k8s/0").is_empty());
    assert_eq!(w.unit_status("redis-k8s/0"), StatusValue::active("up"));
}

#[test]
fn empty_value_deletes_a_key() {
    let f = fixture();
    f.world
        .lock()
        .unwrap()
        .set_relation_data(f.rel, "redis-k8s/0", map(&[("a", "1"), ("b", "2")]));
    let s = session(&f, "redis-k8s/0");
    s.relation_set(f.rel, &map(&[("a", "")]), false).unwrap();
    assert_eq!(
        s.relation_get(f.rel, "redis-k8s/0", false).unwrap(),
        map(&[("b", "2")])
    );
    s.commit().unwrap();
    assert_eq!(
        f.world.lock().unwrap().relation_data(f.rel, "redis-k8s/0"),
        map(&[("b", "2")])
    );
}

#[test]
fn unit_bags_carry_juju_addresses() {
    let f = fixture();
    let s = session(&f, "client/0");
    let bag = s.relation_get(f.rel, "redis-k8s/1", false).unwrap();
    let addr = f.world.lock().unwrap().unit_address("redis-k8s/1");
    assert_eq!(bag["private-address"], addr);
    assert_eq!(bag["egress-subnets"], format!("{addr}/32"));
}

#[test]
fn unknown_relation_is_relation_not_found() {
    let f = fixture();
    let s = session(&f, "redis-k8s/0");
    assert!(matches!(
        s.relation_list(99),
        Err(HookError::RelationNotFound { .. })
    ));
    assert_eq!(s.relation_list(f.rel).unwrap(), vec!["client/0"]);
    assert_eq!(s.relation_list(f.peer).unwrap(), vec!["redis-k8s/1"]);
    assert_eq!(
        s.relation_list_app(f.rel).unwrap().as_deref(),
        Some("client")
    );
    assert_eq!(s.relation_ids("redis").unwrap(), vec![f.rel]);
}

#[test]
fn app_status_needs_leadership() {
    let f = fixture();
    let s = session(&f, "redis-k8s/1");
    let err = s.status_set(&StatusValue::active(""), true).unwrap_err();
    assert!(matches!(err, HookError::NotLeader { .. }));
    let bad = s
        .status_set(&StatusValue::new(StatusName::Error, "x"), false)
        .unwrap_err();
    assert!(matches!(bad, HookError::Usage { .. }));
    let l = session(&f, "redis-k8s/0");
    l.status_set(&StatusValue::blocked("b"), true).unwrap();
    assert_eq!(
        l.app_status_get().unwrap().status,
        StatusValue::blocked("b")
    );
    assert_eq!(
        f.world.lock().unwrap().app_status("redis-k8s"),
        StatusValue::blocked("b")
    );
}

#[test]
fn action_tools_need_an_action_and_action_get_fills_defaults() {
    let f = fixture();
    let s = session(&f, "redis-k8s/0");
    let err = s.action_get().unwrap_err();
    assert!(err.to_string().contains("not running an action"));
    let hook = HookInfo {
        action: Some(ActionInvocation {
            name: "backup".into(),
            params: BTreeMap::new(),
        }),
        ..HookInfo::default()
    };
    let a = World::session(&f.world, "redis-k8s/0", hook);
    assert_eq!(a.action_get().unwrap()["target"], serde_json::json!("s3"));
    a.action_set(&map(&[("result.ok", "yes")])).unwrap();
    assert!(a.action_set(&map(&[("Bad", "x")])).is_err());
    assert!(a.action_set(&map(&[("stdout", "x")])).is_err());
    a.action_fail("").unwrap();
    assert_eq!(a.action_results(), map(&[("result.ok", "yes")]));
    assert!(a
        .action_failure()
        .unwrap()
        .starts_with("action failed without reason"));
}

#[test]
fn config_validates_types_and_fills_defaults() {
    let f = fixture();
    let mut w = f.world.lock().unwrap();
    assert!(w
        .set_config(
            "redis-k8s",
            BTreeMap::from([("port".into(), serde_json::json!("x"))])
        )
        .is_err());
    assert!(w
        .set_config(
            "redis-k8s",
            BTreeMap::from([("nope".into(), serde_json::json!(1))])
        )
        .is_err());
    w.set_config(
        "redis-k8s",
        BTreeMap::from([("port".into(), serde_json::json!(7000))]),
    )
    .unwrap();
    let c = w.config("redis-k8s");
    assert_eq!(c["port"], serde_json::json!(7000));
    assert_eq!(c["maxmemory"], serde_json::json!("0"));
    assert_eq!(c["tls"], serde_json::json!(false));
}

#[test]
fn goal_state_shows_dying_units() {
    let f = fixture();
    f.world.lock().unwrap().set_unit_dying("redis-k8s/1");
    let gs = session(&f, "redis-k8s/0").goal_state().unwrap();
    assert_eq!(gs.units["redis-k8s/1"].status, "dying");
    assert_eq!(gs.planned_units(), 1);
    assert_eq!(gs.relations["redis"]["client"].status, "joined");
}

#[test]
fn secrets_pin_revisions_per_consumer_until_refresh() {
    let f = fixture();
    let owner = session(&f, "redis-k8s/0");
    let uri = owner
        .secret_add(
            &map(&[("password", "one")]),
            &SecretOptions {
                label: Some("pw".into()),
                ..SecretOptions::default()
            },
        )
        .unwrap();
    assert!(uri.starts_with("secret:") && uri.len() == 27, "{uri}");
    // Visible to the owner in the same hook, by label too.
    assert_eq!(
        owner.secret_get(&SecretQuery::by_label("pw")).unwrap()["password"],
        "one"
    );
    owner.secret_grant(&uri, f.rel, None).unwrap();
    owner.commit().unwrap();

    let consumer = session(&f, "client/0");
    assert_eq!(
        consumer.secret_get(&SecretQuery::by_id(&uri)).unwrap()["password"],
        "one"
    );

    let owner2 = session(&f, "redis-k8s/0");
    owner2
        .secret_set(
            &uri,
            Some(&map(&[("password", "two")])),
            &SecretOptions::default(),
        )
        .unwrap();
    owner2.commit().unwrap();
    assert_eq!(owner2.changed_secrets(), vec![bare_secret_id(&uri)]);

    let c2 = session(&f, "client/0");
    assert_eq!(
        c2.secret_get(&SecretQuery::by_id(&uri)).unwrap()["password"],
        "one"
    );
    let peek = SecretQuery {
        peek: true,
        ..SecretQuery::by_id(&uri)
    };
    assert_eq!(c2.secret_get(&peek).unwrap()["password"], "two");
    assert_eq!(
        c2.secret_get(&SecretQuery::by_id(&uri)).unwrap()["password"],
        "one"
    );
    let refresh = SecretQuery {
        refresh: true,
        ..SecretQuery::by_id(&uri)
    };
    assert_eq!(c2.secret_get(&refresh).unwrap()["password"], "two");
    c2.commit().unwrap();
    let c3 = session(&f, "client/0");
    assert_eq!(
        c3.secret_get(&SecretQuery::by_id(&uri)).unwrap()["password"],
        "two"
    );
}

#[test]
fn app_secrets_are_managed_by_the_leader_and_hidden_from_strangers() {
    let f = fixture();
    let follower = session(&f, "redis-k8s/1");
    assert!(matches!(
        follower.secret_add(&map(&[("pass", "x")]), &SecretOptions::default()),
        Err(HookError::NotLeader { .. })
    ));
    let unit_owned = follower
        .secret_add(
            &map(&[("pass", "x")]),
            &SecretOptions {
                owner: Some("unit".into()),
                ..SecretOptions::default()
            },
        )
        .unwrap();
    follower.commit().unwrap();
    let uri = f
        .world
        .lock()
        .unwrap()
        .add_secret("redis-k8s", map(&[("pass", "y")]), Some("admin"));
    let f2 = session(&f, "redis-k8s/1");
    assert!(f2
        .secret_set(
            &uri,
            Some(&map(&[("pass", "z")])),
            &SecretOptions::default()
        )
        .is_err());
    // Units of the owning app can read; others without a grant cannot.
    assert_eq!(
        f2.secret_get(&SecretQuery::by_id(&uri)).unwrap()["pass"],
        "y"
    );
    let stranger = session(&f, "client/0");
    assert!(matches!(
        stranger.secret_get(&SecretQuery::by_id(&uri)),
        Err(HookError::PermissionDenied { .. })
    ));
    assert!(matches!(
        stranger.secret_get(&SecretQuery::by_id("secret:nope")),
        Err(HookError::NotFound { .. })
    ));
    assert_eq!(f2.secret_ids().unwrap(), vec![unit_owned]);
    let info = session(&f, "redis-k8s/0")
        .secret_info_get(&SecretQuery::by_label("admin"))
        .unwrap();
    assert_eq!(info.id, bare_secret_id(&uri));
    assert_eq!(info.owner.as_deref(), Some("application"));
}

#[test]
fn a_failed_hook_adds_no_secret() {
    let f = fixture();
    let s = session(&f, "redis-k8s/0");
    let uri = s
        .secret_add(&map(&[("pass", "x")]), &SecretOptions::default())
        .unwrap();
    s.discard();
    assert!(f.world.lock().unwrap().secret_content(&uri).is_none());
}

#[test]
fn storage_network_and_resources() {
    let f = fixture();
    let s = session(&f, "redis-k8s/0");
    assert_eq!(s.storage_list(None).unwrap(), vec!["database/0"]);
    assert_eq!(
        s.storage_get(Some("database/0")).unwrap().location,
        "/var/lib/redis"
    );
    assert!(s.storage_get(Some("nope/0")).unwrap_err().is_not_found());
    let n = s.network_get("redis", None).unwrap();
    let addr = f.world.lock().unwrap().unit_address("redis-k8s/0");
    assert_eq!(n.ingress_addresses, vec![addr.clone()]);
    assert_eq!(n.bind_addresses[0].addresses[0].value, addr);
    assert!(s.network_get("nope", None).is_err());
    assert!(s.resource_get("cert").unwrap_err().is_not_found());
    f.world
        .lock()
        .unwrap()
        .set_resource("redis-k8s", "cert", "/tmp/c")
        .unwrap();
    assert_eq!(
        s.resource_get("cert").unwrap(),
        std::path::PathBuf::from("/tmp/c")
    );
}

#[test]
fn world_round_trips_through_json() {
    let f = fixture();
    let s = session(&f, "redis-k8s/0");
    s.secret_add(&map(&[("pass", "x")]), &SecretOptions::default())
        .unwrap();
    s.relation_set(f.rel, &map(&[("host", "h")]), false)
        .unwrap();
    s.commit().unwrap();
    let w = f.world.lock().unwrap();
    let text = serde_json::to_string(&*w).unwrap();
    let back: World = serde_json::from_str(&text).unwrap();
    assert_eq!(back.relation_data(f.rel, "redis-k8s/0")["host"], "h");
    assert_eq!(back.secret_ids(None).len(), 1);
    assert_eq!(back.model_uuid, w.model_uuid);
}

#[test]
fn meta_load_requires_metadata_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let err = CharmMeta::load(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no metadata.yaml in {}", dir.path().display())
    );
    std::fs::write(
        dir.path().join("metadata.yaml"),
        "name: x\nrequires:\n  db:\n    interface: pg\n",
    )
    .unwrap();
    let m = CharmMeta::load(dir.path()).unwrap();
    assert_eq!(m.requires["db"], "pg");
    assert!(m.config.is_empty());
}

#[test]
fn repo_charm_metadata_loads() {
    let m = CharmMeta::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert_eq!(m.name, "redis-k8s");
    assert!(m.peers.contains_key("redis-peers"));
    assert_eq!(m.storage["database"], "/var/lib/redis");
}

#[test]
fn revoking_a_grant_takes_access_away() {
    let f = fixture();
    let uri = f
        .world
        .lock()
        .unwrap()
        .add_secret("redis-k8s", map(&[("pass", "y")]), None);
    let owner = session(&f, "redis-k8s/0");
    owner.secret_grant(&uri, f.rel, None).unwrap();
    owner.commit().unwrap();
    assert!(session(&f, "client/0")
        .secret_get(&SecretQuery::by_id(&uri))
        .is_ok());
    let owner = session(&f, "redis-k8s/0");
    owner.secret_revoke(&uri, Some(f.rel), None, None).unwrap();
    owner.commit().unwrap();
    assert!(matches!(
        session(&f, "client/0").secret_get(&SecretQuery::by_id(&uri)),
        Err(HookError::PermissionDenied { .. })
    ));
}
