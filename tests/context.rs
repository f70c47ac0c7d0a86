//! The hook context and hook-tool error classification: every hook name of the contract
//! becomes the right event, required variables are enforced, errors are typed.

use std::collections::BTreeMap;

use redis_k8s::ops::context::{ContextError, Event, JujuContext, JujuVersion};
use redis_k8s::ops::hookcmds::HookError;

fn base(path: &str, hook: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("JUJU_DISPATCH_PATH", path),
        ("JUJU_HOOK_NAME", hook),
        ("JUJU_UNIT_NAME", "redis-k8s/3"),
        ("JUJU_MODEL_NAME", "prod"),
        ("JUJU_MODEL_UUID", "0b1c"),
        ("JUJU_VERSION", "3.6.4"),
        (
            "JUJU_CHARM_DIR",
            "/var/lib/juju/agents/unit-redis-k8s-3/charm",
        ),
    ] {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

#[test]
fn every_hook_name_of_the_contract_maps_to_its_event_and_ops_kind() {
    let cases = [
        ("install", "install"),
        ("start", "start"),
        ("stop", "stop"),
        ("remove", "remove"),
        ("config-changed", "config_changed"),
        ("upgrade-charm", "upgrade_charm"),
        ("update-status", "update_status"),
        ("leader-elected", "leader_elected"),
        ("leader-settings-changed", "leader_settings_changed"),
        ("leader-deposed", "leader_deposed"),
        ("collect-metrics", "collect_metrics"),
        ("meter-status-changed", "meter_status_changed"),
        ("pre-series-upgrade", "pre_series_upgrade"),
        ("post-series-upgrade", "post_series_upgrade"),
        ("secret-changed", "secret_changed"),
        ("secret-rotate", "secret_rotate"),
        ("secret-expired", "secret_expired"),
        ("secret-remove", "secret_remove"),
        (
            "redis-peers-relation-created",
            "redis_peers_relation_created",
        ),
        ("redis-peers-relation-joined", "redis_peers_relation_joined"),
        (
            "redis-peers-relation-changed",
            "redis_peers_relation_changed",
        ),
        (
            "redis-peers-relation-departed",
            "redis_peers_relation_departed",
        ),
        ("redis-relation-broken", "redis_relation_broken"),
        ("database-storage-attached", "database_storage_attached"),
        ("database-storage-detaching", "database_storage_detaching"),
        ("sentinel-pebble-ready", "sentinel_pebble_ready"),
        (
            "sentinel-pebble-custom-notice",
            "sentinel_pebble_custom_notice",
        ),
        ("redis-pebble-check-failed", "redis_pebble_check_failed"),
        (
            "redis-pebble-check-recovered",
            "redis_pebble_check_recovered",
        ),
    ];
    for (hook, kind) in cases {
        let ev = Event::from_dispatch_path(&format!("hooks/{hook}"));
        assert!(!matches!(ev, Event::Unknown { .. }), "{hook}");
        assert_eq!(ev.kind(), kind, "{hook}");
    }
    assert_eq!(
        Event::from_dispatch_path("actions/get-initial-admin-password").kind(),
        "get_initial_admin_password_action"
    );
    assert!(matches!(
        Event::from_dispatch_path("hooks/made-up"),
        Event::Unknown { .. }
    ));
    assert!(matches!(
        Event::from_dispatch_path("nonsense"),
        Event::Unknown { .. }
    ));
    assert!(matches!(
        Event::from_dispatch_path("hooks/-relation-changed"),
        Event::Unknown { .. }
    ));
}

#[test]
fn a_relation_hook_carries_its_relation() {
    let mut m = base("hooks/redis-relation-departed", "redis-relation-departed");
    m.insert("JUJU_RELATION".into(), "redis".into());
    m.insert("JUJU_RELATION_ID".into(), "redis:7".into());
    m.insert("JUJU_REMOTE_UNIT".into(), "discourse/1".into());
    m.insert("JUJU_REMOTE_APP".into(), "".into());
    m.insert("JUJU_DEPARTING_UNIT".into(), "discourse/1".into());
    let ctx = JujuContext::from_map(&m).unwrap();
    let rel = ctx.relation.unwrap();
    assert_eq!((rel.endpoint.as_str(), rel.id), ("redis", 7));
    assert_eq!(
        rel.remote_app.as_deref(),
        Some("discourse"),
        "derived from the unit, as ops"
    );
    assert_eq!(rel.departing_unit.as_deref(), Some("discourse/1"));
    assert_eq!((ctx.app_name.as_str(), ctx.unit_number), ("redis-k8s", 3));

    m.remove("JUJU_DEPARTING_UNIT");
    assert_eq!(
        JujuContext::from_map(&m).unwrap_err(),
        ContextError::Missing("JUJU_DEPARTING_UNIT")
    );
    m.insert("JUJU_RELATION_ID".into(), "redis:x".into());
    assert!(matches!(
        JujuContext::from_map(&m),
        Err(ContextError::Invalid {
            name: "JUJU_RELATION_ID",
            ..
        })
    ));
}

#[test]
fn workload_action_secret_and_storage_variables_are_required_where_ops_requires_them() {
    let mut m = base(
        "hooks/sentinel-pebble-custom-notice",
        "sentinel-pebble-custom-notice",
    );
    m.insert("JUJU_WORKLOAD_NAME".into(), "sentinel".into());
    assert_eq!(
        JujuContext::from_map(&m).unwrap_err(),
        ContextError::Missing("JUJU_NOTICE_ID")
    );
    m.insert("JUJU_NOTICE_ID".into(), "12".into());
    m.insert("JUJU_NOTICE_TYPE".into(), "custom".into());
    m.insert(
        "JUJU_NOTICE_KEY".into(),
        "redis-k8s.charm/primary-changed".into(),
    );
    let ctx = JujuContext::from_map(&m).unwrap();
    assert_eq!(ctx.notice.unwrap().key, "redis-k8s.charm/primary-changed");

    let mut a = base("actions/get-sentinel-password", "");
    assert_eq!(
        JujuContext::from_map(&a).unwrap_err(),
        ContextError::Missing("JUJU_ACTION_NAME")
    );
    a.insert("JUJU_ACTION_NAME".into(), "get-sentinel-password".into());
    a.insert("JUJU_ACTION_UUID".into(), "4".into());
    assert_eq!(JujuContext::from_map(&a).unwrap().action.unwrap().id, "4");

    let mut s = base("hooks/secret-remove", "secret-remove");
    s.insert("JUJU_SECRET_ID".into(), "secret:abc".into());
    assert_eq!(
        JujuContext::from_map(&s).unwrap_err(),
        ContextError::Missing("JUJU_SECRET_REVISION")
    );
    s.insert("JUJU_SECRET_REVISION".into(), "3".into());
    assert_eq!(
        JujuContext::from_map(&s).unwrap().secret.unwrap().revision,
        Some(3)
    );

    let mut st = base(
        "hooks/database-storage-attached",
        "database-storage-attached",
    );
    st.insert("JUJU_STORAGE_ID".into(), "database/0".into());
    let storage = JujuContext::from_map(&st).unwrap().storage.unwrap();
    assert_eq!((storage.name.as_str(), storage.index), ("database", 0));
}

#[test]
fn missing_or_bad_base_variables_are_one_clear_error() {
    let mut m = base("hooks/install", "install");
    m.remove("JUJU_MODEL_UUID");
    let err = JujuContext::from_map(&m).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required environment variable JUJU_MODEL_UUID"
    );
    let mut m = base("hooks/install", "install");
    m.insert("JUJU_UNIT_NAME".into(), "no-number".into());
    assert!(JujuContext::from_map(&m)
        .unwrap_err()
        .to_string()
        .contains("JUJU_UNIT_NAME"));
}

#[test]
fn juju_versions_gate_notices_from_other_users() {
    assert!(!JujuVersion::parse("3.6.24")
        .unwrap()
        .notices_from_all_users());
    assert!(JujuVersion::parse("3.6.25")
        .unwrap()
        .notices_from_all_users());
    assert!(!JujuVersion::parse("4.0.12")
        .unwrap()
        .notices_from_all_users());
    assert!(JujuVersion::parse("4.0.13")
        .unwrap()
        .notices_from_all_users());
    assert_eq!(
        JujuVersion::parse("3.6-beta1").unwrap(),
        JujuVersion::new(3, 6, 0)
    );
    assert!(JujuVersion::parse("junk").is_none());
}

#[test]
fn hook_tool_errors_are_classified_like_ops() {
    let c = |code, err| HookError::classify("tool", code, err);
    assert!(matches!(
        c(1, "ERROR secret \"x\" not found\n"),
        HookError::NotFound { .. }
    ));
    assert!(matches!(
        c(1, "ERROR permission denied\n"),
        HookError::PermissionDenied { .. }
    ));
    assert!(matches!(
        c(1, "ERROR cannot write relation settings\n"),
        HookError::NotLeader { .. }
    ));
    assert!(matches!(
        c(1, "ERROR this unit is not the leader\n"),
        HookError::NotLeader { .. }
    ));
    assert!(matches!(
        c(
            2,
            "ERROR invalid value \"9\" for option -r: relation not found\n"
        ),
        HookError::RelationNotFound { .. }
    ));
    assert!(matches!(
        c(2, "ERROR flag provided but not defined: -x\n"),
        HookError::Usage { .. }
    ));
    match c(1, "ERROR something odd\n") {
        HookError::Failed { code, message, .. } => {
            assert_eq!((code, message.as_str()), (1, "something odd"))
        }
        other => panic!("{other:?}"),
    }
}
