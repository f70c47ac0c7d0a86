//! The framework's ops semantics on the in-memory backend: handle paths, defer and re-emit
//! order, ops's dedupe rule, stored state commit/rollback, storages, collect-status.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redis_k8s::ops::framework::{
    handle_path, pick_status, Charm, EventHandle, FileStorage, Framework, HandlerResult,
    JujuStorage, Observers, Storage, StoredData,
};
use redis_k8s::ops::hookcmds::{HookTools, StatusName, StatusValue};
use redis_k8s::ops::testing::harness::Scenario;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::{ActionInvocation, CharmMeta, HookInfo, World};

thread_local! {
    /// (observer, event path, redelivered) for every handler call, in order.
    static CALLS: RefCell<Vec<(String, String, bool)>> = const { RefCell::new(Vec::new()) };
}

fn calls() -> Vec<(String, String, bool)> {
    CALLS.with(|c| c.borrow_mut().drain(..).collect())
}

fn record(who: &str, ev: &EventHandle) {
    CALLS.with(|c| {
        c.borrow_mut()
            .push((who.to_string(), ev.path.clone(), ev.redelivered))
    });
}

/// A toy charm: `Toy` with a `Sub[sub]` object. Handlers defer while config `ready` is false.
#[derive(Default)]
struct Toy;

fn ready(fw: &Framework<'_>) -> bool {
    fw.model()
        .config()
        .ok()
        .and_then(|c| c.get("ready").and_then(|v| v.as_bool()))
        .unwrap_or(false)
}

impl Charm for Toy {
    const HANDLE_KIND: &'static str = "Toy";
    fn register(o: &mut Observers<Self>) {
        let sub = handle_path(Some("Toy"), "Sub", Some("sub"));
        o.observe("config_changed", &sub, "_on_config", |_, fw, ev| {
            record("sub", ev);
            if !ready(fw) {
                ev.defer();
            }
            Ok(())
        });
        o.observe("update_status", "Toy", "_on_update", |_, fw, ev| {
            record("toy", ev);
            let mut n: u32 = fw.stored("Toy", "_stored");
            n += 1;
            fw.set_stored("Toy", "_stored", &n);
            Ok(())
        });
        o.observe("start", "Toy", "_on_start", |_, fw, ev| -> HandlerResult {
            record("toy", ev);
            fw.set_stored("Toy", "_stored", &100u32);
            let rel = fw.model().relation_id("peers")?.expect("peer relation");
            let mut data = BTreeMap::new();
            data.insert("k".to_string(), "v".to_string());
            fw.model().update_relation_data(rel, false, &data)?;
            Err("boom".into())
        });
        o.observe("do_it_action", "Toy", "_on_action", |_, _, ev| {
            record("toy", ev);
            ev.defer();
            Ok(())
        });
        o.observe("collect_unit_status", "Toy", "_collect", |_, fw, _| {
            fw.add_status(StatusValue::active("fine"));
            if !ready(fw) {
                fw.add_status(StatusValue::waiting("not ready"));
                fw.add_status(StatusValue::waiting("second waiting loses"));
            }
            Ok(())
        });
    }
}

fn world() -> Arc<Mutex<World>> {
    let meta = CharmMeta::from_yaml(
        "name: toy\npeers:\n  peers:\n    interface: toy-peers\ncontainers:\n  c: {}\n",
        "options:\n  ready:\n    type: boolean\n    default: false\n",
        "do-it:\n  description: x\n",
    )
    .expect("meta");
    let mut w = World::new("test");
    w.add_app("toy", meta).unwrap();
    let u = w.add_unit("toy").unwrap();
    w.add_unit("toy").unwrap();
    w.set_leader(&u);
    Arc::new(Mutex::new(w))
}

fn set_ready(w: &Arc<Mutex<World>>, ready: bool) {
    let mut values = BTreeMap::new();
    values.insert("ready".to_string(), serde_json::Value::Bool(ready));
    w.lock().unwrap().set_config("toy", values).unwrap();
}

#[test]
fn handle_paths_follow_ops() {
    assert_eq!(handle_path(None, "RedisK8sCharm", None), "RedisK8sCharm");
    assert_eq!(
        handle_path(Some("RedisK8sCharm"), "Sentinel", Some("sentinel")),
        "RedisK8sCharm/Sentinel[sentinel]"
    );
    assert_eq!(
        handle_path(Some("RedisK8sCharm"), "StoredStateData", Some("_stored")),
        "RedisK8sCharm/StoredStateData[_stored]"
    );
}

#[test]
fn deferred_events_rerun_first_in_order_until_they_succeed() {
    let w = world();
    let pebble = MemoryPebbleProvider::new(&["c"]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(w.clone(), "toy/0", dir.path(), &pebble);
    calls();

    let r = s
        .run::<Toy>("hooks/config-changed", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none());
    assert_eq!(
        calls(),
        vec![("sub".into(), "Toy/on/config_changed[1]".into(), false)]
    );
    assert_eq!(s.state.stored.notices.len(), 1);
    assert_eq!(s.state.stored.notices[0].observer_path, "Toy/Sub[sub]");
    assert_eq!(s.state.stored.notices[0].method_name, "_on_config");
    assert_eq!(
        w.lock().unwrap().unit_status("toy/0"),
        StatusValue::waiting("not ready")
    );

    // The next dispatch re-emits the deferred event first (deferred again), then the new one.
    s.run::<Toy>("hooks/update-status", HookInfo::default())
        .unwrap();
    let c = calls();
    assert_eq!(
        c[0],
        ("sub".into(), "Toy/on/config_changed[1]".into(), true)
    );
    assert_eq!(c[1].0, "toy");
    assert!(c[1].1.starts_with("Toy/on/update_status["));
    assert_eq!(s.state.stored.notices.len(), 1);

    // Once it can finish, the deferred notice runs one last time and is gone.
    set_ready(&w, true);
    s.run::<Toy>("hooks/update-status", HookInfo::default())
        .unwrap();
    let c = calls();
    assert_eq!(
        c[0],
        ("sub".into(), "Toy/on/config_changed[1]".into(), true)
    );
    assert!(s.state.stored.notices.is_empty());
    assert!(!s.state.stored.snapshots.keys().any(|k| k.contains("/on/")));
    assert_eq!(
        w.lock().unwrap().unit_status("toy/0"),
        StatusValue::active("fine")
    );
}

#[test]
fn a_duplicate_of_a_deferred_event_is_not_queued_twice() {
    let w = world();
    let pebble = MemoryPebbleProvider::new(&["c"]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(w, "toy/0", dir.path(), &pebble);
    calls();
    s.run::<Toy>("hooks/config-changed", HookInfo::default())
        .unwrap();
    s.run::<Toy>("hooks/config-changed", HookInfo::default())
        .unwrap();
    // Second dispatch: the deferred copy runs (and defers again); the new identical event
    // is skipped for that observer, per ops's dedupe rule.
    let c = calls();
    assert_eq!(c.len(), 2);
    assert!(c[1].2, "only the re-emitted copy ran");
    assert_eq!(s.state.stored.notices.len(), 1);
}

#[test]
fn a_failing_handler_rolls_back_stored_state_deferrals_and_relation_writes() {
    let w = world();
    let pebble = MemoryPebbleProvider::new(&["c"]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(w.clone(), "toy/0", dir.path(), &pebble);
    s.run::<Toy>("hooks/update-status", HookInfo::default())
        .unwrap();
    let before = s.state.stored.clone();
    let stored: u32 =
        serde_json::from_value(before.snapshots["Toy/StoredStateData[_stored]"].clone()).unwrap();
    assert_eq!(stored, 1);

    let r = s.run::<Toy>("hooks/start", HookInfo::default()).unwrap();
    let err = r.error.expect("start fails");
    assert!(err.to_string().contains("boom"), "{err}");
    assert_eq!(
        s.state.stored, before,
        "stored state of a failed hook is not saved"
    );
    let rel = w.lock().unwrap().peer_relation_id("toy", "peers").unwrap();
    assert!(!w
        .lock()
        .unwrap()
        .relation_data(rel, "toy/0")
        .contains_key("k"));
}

#[test]
fn actions_cannot_be_deferred() {
    let w = world();
    let pebble = MemoryPebbleProvider::new(&["c"]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(w, "toy/0", dir.path(), &pebble);
    let hook = HookInfo {
        action: Some(ActionInvocation {
            name: "do-it".into(),
            params: BTreeMap::new(),
        }),
        ..HookInfo::default()
    };
    let r = s.run::<Toy>("actions/do-it", hook).unwrap();
    assert!(r
        .error
        .expect("error")
        .to_string()
        .contains("cannot be deferred"));
}

#[test]
fn unknown_events_are_ignored() {
    let w = world();
    let pebble = MemoryPebbleProvider::new(&["c"]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(w, "toy/0", dir.path(), &pebble);
    calls();
    let r = s
        .run::<Toy>("hooks/some-future-hook", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none());
    assert!(calls().is_empty());
}

#[test]
fn collect_status_priority_is_ops_rule() {
    let s = |n, m: &str| StatusValue::new(n, m);
    let list = [
        s(StatusName::Active, "a"),
        s(StatusName::Waiting, "w1"),
        s(StatusName::Maintenance, "m"),
        s(StatusName::Waiting, "w2"),
    ];
    assert_eq!(pick_status(&list).unwrap().message, "m");
    let list = [s(StatusName::Waiting, "w1"), s(StatusName::Waiting, "w2")];
    assert_eq!(pick_status(&list).unwrap().message, "w1");
    let list = [s(StatusName::Maintenance, "m"), s(StatusName::Blocked, "b")];
    assert_eq!(pick_status(&list).unwrap().message, "b");
    assert!(pick_status(&[]).is_none());
}

#[test]
fn file_storage_round_trips_with_a_private_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let st = FileStorage::in_charm_dir(dir.path());
    assert_eq!(st.load().unwrap(), StoredData::default());
    let mut data = StoredData {
        event_count: 7,
        ..StoredData::default()
    };
    data.snapshots.insert(
        "Toy/StoredStateData[_stored]".into(),
        serde_json::json!({"a": 1}),
    );
    st.save(&data).unwrap();
    assert_eq!(st.load().unwrap(), data);
    let mode = std::fs::metadata(dir.path().join(".unit-state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(dir.path().join(".unit-state.json"), b"{not json").unwrap();
    assert!(st.load().is_err());
}

#[test]
fn juju_storage_uses_state_set_and_commits_only_on_success() {
    let w = world();
    let mut data = StoredData {
        event_count: 3,
        ..StoredData::default()
    };
    data.notices.push(redis_k8s::ops::framework::NoticeRow {
        event_path: "Toy/on/config_changed[1]".into(),
        observer_path: "Toy/Sub[sub]".into(),
        method_name: "_on_config".into(),
    });
    data.snapshots
        .insert("Toy/on/config_changed[1]".into(), serde_json::json!({}));

    // Discarded hook: nothing reaches the controller.
    let session = World::session(&w, "toy/0", HookInfo::default());
    JujuStorage::new(&session).save(&data).unwrap();
    session.discard();
    assert!(w.lock().unwrap().unit_state("toy/0").is_empty());

    let session = World::session(&w, "toy/0", HookInfo::default());
    JujuStorage::new(&session).save(&data).unwrap();
    assert!(
        session.state_get().unwrap().contains_key("#notices#"),
        "reads see pending state"
    );
    session.commit().unwrap();
    let session = World::session(&w, "toy/0", HookInfo::default());
    assert_eq!(JujuStorage::new(&session).load().unwrap(), data);
}
