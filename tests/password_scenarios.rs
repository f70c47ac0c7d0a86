//! Scenario tests of the passwords: the Juju secret, the migration from the Python charm's
//! plain peer keys, an unreadable secret, the `set-password` rotation phase by phase, the
//! client credentials secret, and the no-auth option. State in, event, state out on the
//! in-memory hook tools and Pebble (no real Redis: the units' acknowledgements of a phase are
//! written into their databags by the test; the real-process path is tests/e2e_passwords.rs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redis_k8s::charm::RedisK8sCharm;
use redis_k8s::ops::hookcmds::StatusName;
use redis_k8s::ops::testing::pebble::MemoryPebbleProvider;
use redis_k8s::ops::testing::world::{HookInfo, World};
use redis_k8s::passwords::sha256::hex;

mod scenario_support;
use scenario_support::*;

fn rotation(w: &Arc<Mutex<World>>) -> serde_json::Value {
    serde_json::from_str(&bag(w, APP)["password-rotation"]).unwrap()
}

fn conf(pebble: &MemoryPebbleProvider, container: &str, path: &str) -> String {
    pebble
        .get(container)
        .file(path)
        .unwrap_or_else(|| panic!("{path} pushed"))
        .text()
}

fn redis_conf(pebble: &MemoryPebbleProvider) -> String {
    conf(pebble, "redis", CONF)
}

fn acl_line(passwords: &[&str]) -> String {
    let hashes: Vec<String> = passwords
        .iter()
        .map(|p| format!(" #{}", hex(p.as_bytes())))
        .collect();
    format!("user default on{} ~* &* +@all\n", hashes.concat())
}

/// A peer app databag as the Python charm leaves it.
fn python_bag(w: &Arc<Mutex<World>>, legacy_no_auth: bool) {
    let mut pairs = vec![
        ("redis-password", "py-admin-pass"),
        ("sentinel-password", "py-sentinel-pass"),
        ("leader-host", FQDN0),
    ];
    if legacy_no_auth {
        pairs.push(("enable-password", "false"));
    }
    set_bag(w, APP, &pairs);
}

#[test]
fn a_python_deployment_is_migrated_into_a_secret_keeping_its_passwords() {
    let w = world(2);
    python_bag(&w, false);
    // Before the leader migrates, a follower keeps using the plain keys.
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    let r = s1
        .run::<RedisK8sCharm>("hooks/upgrade-charm", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(redis_conf(&pebble1).contains(&acl_line(&["py-admin-pass"])));
    assert!(
        bag(&w, APP).contains_key("redis-password"),
        "a follower does not touch the app bag"
    );

    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    let r = s0
        .run::<RedisK8sCharm>("hooks/upgrade-charm", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    let app = bag(&w, APP);
    assert!(
        !app.contains_key("redis-password") && !app.contains_key("sentinel-password"),
        "plain keys deleted: {app:?}"
    );
    let content = passwords_secret(&w);
    assert_eq!(content["redis-password"], "py-admin-pass");
    assert_eq!(content["sentinel-password"], "py-sentinel-pass");
    // The rendered files require the old passwords (as hashes), nowhere in plain text
    // except masterauth / sentinel-pass / auth-pass in the 0600 files.
    let rc = redis_conf(&pebble0);
    assert!(rc.contains(&acl_line(&["py-admin-pass"])), "{rc}");
    assert!(rc.contains("masterauth py-admin-pass\n"));
    assert!(!rc.contains("requirepass"));
    let sc = conf(&pebble0, "sentinel", SENTINEL_CONF);
    assert!(sc.contains(&acl_line(&["py-sentinel-pass"])), "{sc}");
    assert!(sc.contains("sentinel auth-pass redis-k8s py-admin-pass\n"));
    for c in ["redis", "sentinel"] {
        assert!(!pebble0.get(c).plan().to_yaml().contains("py-"));
    }

    // The follower now reads the secret (same passwords) after the peer change.
    let r = run_hook(&mut s1, peer_changed(&w, U0));
    assert!(r.session.calls().iter().any(|c| c == "secret-get"));
    assert!(redis_conf(&pebble1).contains(&acl_line(&["py-admin-pass"])));
    // The get-* actions still return the Python charm's passwords.
    let r = run_action(&mut s1, "get-initial-admin-password", &[]);
    assert_eq!(
        r.session.action_results()["redis-password"],
        "py-admin-pass"
    );
}

#[test]
fn the_legacy_no_auth_key_is_dropped_and_auth_follows_the_config_option() {
    let w = world(1);
    python_bag(&w, true);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "upgrade-charm");
    assert!(!bag(&w, APP).contains_key("enable-password"));
    assert!(redis_conf(&pebble).contains(&acl_line(&["py-admin-pass"])));

    // allow-no-auth=true: any password (or none) is accepted; back to false: auth again.
    set_config(&w, &[("allow-no-auth", true.into())]);
    run(&mut s, "config-changed");
    let rc = redis_conf(&pebble);
    assert!(rc.contains("user default on nopass ~* &* +@all\n"), "{rc}");
    assert!(!rc.contains(&hex(b"py-admin-pass")));
    set_config(&w, &[("allow-no-auth", false.into())]);
    run(&mut s, "config-changed");
    let rc = redis_conf(&pebble);
    assert!(rc.contains(&acl_line(&["py-admin-pass"])), "{rc}");
    assert!(!rc.contains("user default on nopass"), "{rc}");
}

#[test]
fn an_unreadable_secret_waits_names_the_problem_and_never_falls_back() {
    let w = world(2);
    // The reference points at a secret that does not exist (or was removed).
    set_bag(
        &w,
        APP,
        &[
            ("passwords-secret", "secret:d0000000000000000000"),
            // A stale plain key must not be used instead.
            ("redis-password", "stale-plain"),
            ("leader-host", FQDN0),
        ],
    );
    let pebble = containers();
    let mut s1 = scenario(&w, U1, &pebble);
    let r = s1
        .run::<RedisK8sCharm>("hooks/redis-pebble-ready", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none(), "no crash: {:?}", r.error);
    let st = status(&w, U1);
    assert_eq!(st.status, StatusName::Waiting);
    assert!(
        st.message.contains("passwords secret") && st.message.contains("not found"),
        "{st:?}"
    );
    assert_eq!(s1.state.stored.notices.len(), 1, "the event is deferred");
    assert!(pebble.get("redis").file(CONF).is_none());

    // The leader does not invent new passwords either.
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    let r = s0
        .run::<RedisK8sCharm>("hooks/leader-elected", HookInfo::default())
        .unwrap();
    assert!(r.error.is_none());
    assert_eq!(status(&w, U0).status, StatusName::Waiting);
    assert_eq!(
        bag(&w, APP)["passwords-secret"],
        "secret:d0000000000000000000"
    );
    assert!(w.lock().unwrap().secret_ids(Some(APP)).is_empty());
    // The get-* actions fail with the problem instead of printing something wrong.
    let r = run_action(&mut s0, "get-initial-admin-password", &[]);
    assert!(r.session.action_results().is_empty());
    assert!(r
        .session
        .action_failure()
        .unwrap_or_default()
        .contains("not found"));

    // Junk content: same, naming the key.
    let uri = w.lock().unwrap().add_secret(
        APP,
        BTreeMap::from([("redis-password".to_string(), "ok".to_string())]),
        Some("redis-passwords"),
    );
    set_bag(&w, APP, &[("passwords-secret", &uri)]);
    run(&mut s1, "update-status");
    run(&mut s1, "config-changed");
    let st = status(&w, U1);
    assert!(st.message.contains("sentinel-password"), "{st:?}");
}

#[test]
fn set_password_needs_the_leader_and_a_usable_password_and_outputs_no_password() {
    let w = world(2);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    let r = run_action(&mut s1, "set-password", &[]);
    assert!(r.session.action_failure().unwrap().contains("leader"));

    for (params, why) in [
        (vec![("password", "has space")], "unusable"),
        (
            vec![("username", "root"), ("password", "x")],
            "unknown username",
        ),
    ] {
        let r = run_action(&mut s0, "set-password", &params);
        let failure = r.session.action_failure().unwrap_or_default();
        assert!(failure.contains(why), "{failure}");
    }
    assert!(!bag(&w, APP).contains_key("password-rotation"));

    let before = passwords_secret(&w);
    let r = run_action(&mut s0, "set-password", &[("username", "sentinel")]);
    assert!(r.error.is_none() && r.session.action_failure().is_none());
    let after = passwords_secret(&w);
    let new = after["sentinel-password-next"].clone();
    assert_eq!(new.len(), 32, "generated");
    assert_eq!(after["sentinel-password"], before["sentinel-password"]);
    let results = r.session.action_results();
    assert_eq!(results["username"], "sentinel");
    assert!(results
        .values()
        .all(|v| !v.contains(&new) && !v.contains(&before["sentinel-password"])));
    // A second rotation is refused while this one runs.
    let r = run_action(&mut s0, "set-password", &[]);
    assert!(r.session.action_failure().unwrap().contains("in progress"));
}

/// The admin rotation, phase by phase, on two units with a client related.
#[test]
fn admin_rotation_adds_switches_then_drops_after_the_grace_period() {
    let w = world(2);
    set_config(&w, &[("password-rotation-grace", 0.into())]);
    let client_rel = add_client(&w);
    let pebble0 = containers();
    let pebble1 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    let mut s1 = scenario(&w, U1, &pebble1);
    run(&mut s0, "leader-elected");
    run(&mut s0, "config-changed");
    run(&mut s1, "config-changed");
    let old = passwords_secret(&w)["redis-password"].clone();

    // The client relation gets the credentials secret, granted to it.
    let client_secret = w.lock().unwrap().relation_data(client_rel, APP)["secret-user"].clone();
    let client_content = || w.lock().unwrap().secret_content(&client_secret).unwrap();
    assert_eq!(client_content()["username"], "default");
    assert_eq!(client_content()["password"], old);
    assert!(!w
        .lock()
        .unwrap()
        .relation_data(client_rel, APP)
        .values()
        .any(|v| v == &old));

    // (a) add: the secret has the new password as "next"; nothing uses it yet.
    run_action_ok(
        &mut s0,
        "set-password",
        &[("password", "brand-new-admin-pw")],
    );
    let c = passwords_secret(&w);
    assert_eq!(c["redis-password"], old);
    assert_eq!(c["redis-password-next"], "brand-new-admin-pw");
    assert_eq!(rotation(&w)["phase"], "add");
    assert_eq!(rotation(&w)["generation"], 1);
    // A follower renders both passwords (a restart keeps accepting both) and still uses the
    // old one for replication.
    run_hook(&mut s1, peer_changed(&w, U0));
    let rc = redis_conf(&pebble1);
    assert!(
        rc.contains(&acl_line(&[&old, "brand-new-admin-pw"])),
        "{rc}"
    );
    assert!(rc.contains(&format!("masterauth {old}\n")));
    assert_eq!(
        client_content()["password"],
        old,
        "clients keep the old one"
    );

    // Only one unit acknowledged: the leader waits.
    set_bag(&w, U0, &[("password-rotation-ack", "1:add")]);
    run_hook(&mut s0, peer_changed(&w, U1));
    assert_eq!(rotation(&w)["phase"], "add");

    // (b) switch: all acked; the new password is in use, the old still accepted.
    set_bag(&w, U1, &[("password-rotation-ack", "1:add")]);
    run_hook(&mut s0, peer_changed(&w, U1));
    assert_eq!(rotation(&w)["phase"], "switch");
    let c = passwords_secret(&w);
    assert_eq!(c["redis-password"], "brand-new-admin-pw");
    assert_eq!(c["redis-password-previous"], old);
    assert!(!c.contains_key("redis-password-next"));
    let rc = redis_conf(&pebble0);
    assert!(
        rc.contains(&acl_line(&["brand-new-admin-pw", &old])),
        "{rc}"
    );
    assert!(rc.contains("masterauth brand-new-admin-pw\n"));
    assert_eq!(client_content()["password"], "brand-new-admin-pw");
    let r = run_action(&mut s0, "get-initial-admin-password", &[]);
    assert_eq!(
        r.session.action_results()["redis-password"],
        "brand-new-admin-pw"
    );
    run_hook(&mut s1, peer_changed(&w, U0));
    assert!(redis_conf(&pebble1).contains("masterauth brand-new-admin-pw\n"));

    // (c) drop once all acked the switch and the grace (0 here) passed: only the new one.
    set_bag(&w, U0, &[("password-rotation-ack", "1:switch")]);
    set_bag(&w, U1, &[("password-rotation-ack", "1:switch")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "drop");
    let c = passwords_secret(&w);
    assert!(!c.contains_key("redis-password-previous"), "{:?}", c.keys());
    run(&mut s0, "config-changed");
    let rc = redis_conf(&pebble0);
    assert!(rc.contains(&acl_line(&["brand-new-admin-pw"])), "{rc}");
    assert!(!rc.contains(&hex(old.as_bytes())));
    set_bag(&w, U0, &[("password-rotation-ack", "1:drop")]);
    set_bag(&w, U1, &[("password-rotation-ack", "1:drop")]);
    let r = s0
        .run::<RedisK8sCharm>("hooks/redis-peers-relation-changed", peer_changed(&w, U1))
        .unwrap();
    assert_eq!(rotation(&w)["phase"], "done");
    // The revisions holding the old password are removed; the latest stays readable.
    assert!(r.session.calls().iter().any(|c| c == "secret-remove"));
    assert_eq!(passwords_secret(&w)["redis-password"], "brand-new-admin-pw");
    // No password anywhere in the peer or client databags.
    for owner in [APP, U0, U1] {
        assert!(!bag(&w, owner)
            .values()
            .any(|v| v.contains("brand-new-admin-pw")));
    }
}

#[test]
fn the_grace_period_holds_the_drop_back() {
    let w = world(1);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    run_action(&mut s0, "set-password", &[("password", "another-admin-pw")]);
    set_bag(&w, U0, &[("password-rotation-ack", "1:add")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "switch");
    set_bag(&w, U0, &[("password-rotation-ack", "1:switch")]);
    // Default grace: 300 s, so update-status does not drop yet.
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "switch");
    assert!(passwords_secret(&w).contains_key("redis-password-previous"));
}

#[test]
fn the_client_secret_is_granted_to_the_relation_and_revoked_when_it_breaks() {
    use redis_k8s::ops::hookcmds::{HookTools, SecretQuery};
    let w = world(1);
    let rel = add_client(&w);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    run(&mut s, "leader-elected");
    let joined = client_hook("joined", rel, Some("client/0"));
    run_hook(&mut s, joined);
    let uri = w.lock().unwrap().relation_data(rel, APP)["secret-user"].clone();
    let admin = passwords_secret(&w)["redis-password"].clone();
    // The client unit can read it (it was granted to the relation).
    let client = World::session(&w, "client/0", HookInfo::default());
    let got = client.secret_get(&SecretQuery::by_id(uri.clone())).unwrap();
    assert_eq!(got["username"], "default");
    assert_eq!(got["password"], admin);
    client.discard();

    let broken = client_hook("broken", rel, None);
    let r = run_hook(&mut s, broken);
    assert!(r.session.calls().iter().any(|c| c == "secret-revoke"));
    let client = World::session(&w, "client/0", HookInfo::default());
    let denied = client.secret_get(&SecretQuery::by_id(uri)).unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    client.discard();
}

#[test]
fn a_sentinel_starting_mid_rotation_accepts_both_passwords() {
    let w = world(2);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    let old = passwords_secret(&w)["sentinel-password"].clone();
    s0.run::<RedisK8sCharm>(
        "actions/set-password",
        action(
            "set-password",
            &[("username", "sentinel"), ("password", "new-sentinel-pw")],
        ),
    )
    .unwrap();
    assert_eq!(rotation(&w)["user"], "sentinel");
    // Unit 1's sentinel container (re)starts now: it renders both hashes, and still sends
    // the old password to the other sentinels (they have not all switched yet).
    let pebble1 = containers();
    let mut s1 = scenario(&w, U1, &pebble1);
    let hook = HookInfo {
        hook_name: "sentinel-pebble-ready".into(),
        ..HookInfo::default()
    };
    run_hook(&mut s1, hook);
    let sc = conf(&pebble1, "sentinel", SENTINEL_CONF);
    assert!(sc.contains(&acl_line(&[&old, "new-sentinel-pw"])), "{sc}");
    assert!(
        sc.contains(&format!("sentinel sentinel-pass {old}\n")),
        "{sc}"
    );
    assert!(!sc.contains("requirepass"));
    assert!(!pebble1
        .get("sentinel")
        .plan()
        .to_yaml()
        .contains("new-sentinel-pw"));
}

// ----- forcing a stalled rotation (`set-password force=true`) -------------------------------

/// `set-password` with real JSON parameters (`force` is a boolean, as Juju passes it).
fn set_password_action(params: serde_json::Value) -> HookInfo {
    use redis_k8s::ops::testing::world::ActionInvocation;
    HookInfo {
        action: Some(ActionInvocation {
            name: "set-password".into(),
            params: params
                .as_object()
                .expect("an object")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
        ..HookInfo::default()
    }
}

fn force(
    s: &mut redis_k8s::ops::testing::harness::Scenario<'_>,
) -> redis_k8s::ops::testing::harness::RunResult {
    let r = s
        .run::<RedisK8sCharm>(
            "actions/set-password",
            set_password_action(serde_json::json!({"force": true})),
        )
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    r
}

/// A unit that never acknowledges (its pod is gone: its pod name does not resolve here)
/// stalls the rotation; the operator forces it on, the rotation completes without that
/// unit, and when it comes back it renders and applies the current passwords once.
#[test]
fn a_stalled_rotation_is_forced_past_a_dead_unit_which_catches_up_when_it_returns() {
    let w = world(3);
    set_config(&w, &[("password-rotation-grace", 0.into())]);
    let (pebble0, pebble1, pebble2) = (containers(), containers(), containers());
    let mut s0 = scenario(&w, U0, &pebble0);
    let mut s1 = scenario(&w, U1, &pebble1);
    let mut s2 = scenario(&w, U2, &pebble2);
    run(&mut s0, "leader-elected");
    for s in [&mut s0, &mut s1, &mut s2] {
        run(s, "config-changed");
    }
    let old = passwords_secret(&w)["redis-password"].clone();

    // Nothing to force without a rotation; a password with force is refused.
    let r = force(&mut s0);
    let failure = r.session.action_failure().unwrap_or_default();
    assert!(
        failure.contains("no password rotation is in progress"),
        "{failure}"
    );
    let r = s0
        .run::<RedisK8sCharm>(
            "actions/set-password",
            set_password_action(serde_json::json!({"force": true, "password": "x-y-z"})),
        )
        .unwrap();
    assert!(r
        .session
        .action_failure()
        .unwrap_or_default()
        .contains("takes no password"));
    assert!(!bag(&w, APP).contains_key("password-rotation"));

    run_action_ok(&mut s0, "set-password", &[("password", "forced-admin-pw")]);
    set_bag(&w, U0, &[("password-rotation-ack", "1:add")]);
    set_bag(&w, U1, &[("password-rotation-ack", "1:add")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "add", "unit 2 holds it up");

    // Forced: unit 2 does not answer (no client reaches it), so the switch goes ahead.
    let r = force(&mut s0);
    assert!(
        r.session.action_failure().is_none(),
        "{:?}",
        r.session.action_failure()
    );
    let results = r.session.action_results();
    assert_eq!(results["excused"], "redis-k8s/2");
    assert_eq!(results["phase"], "switch");
    assert_eq!(results["username"], "admin");
    assert_eq!(results["generation"], "1");
    assert!(results
        .values()
        .all(|v| !v.contains("forced-admin-pw") && !v.contains(&old)));
    assert_eq!(rotation(&w)["excused"], serde_json::json!(["redis-k8s/2"]));
    let c = passwords_secret(&w);
    assert_eq!(c["redis-password"], "forced-admin-pw");
    assert_eq!(
        c["redis-password-previous"], old,
        "the old one is still accepted"
    );

    // The rest of the rotation does not wait for unit 2 again.
    set_bag(&w, U0, &[("password-rotation-ack", "1:switch")]);
    set_bag(&w, U1, &[("password-rotation-ack", "1:switch")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "drop");
    set_bag(&w, U0, &[("password-rotation-ack", "1:drop")]);
    set_bag(&w, U1, &[("password-rotation-ack", "1:drop")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "done");
    assert_eq!(bag(&w, U2).get("password-rotation-ack"), None);
    // Its files still carry only the old password: it missed everything.
    assert!(redis_conf(&pebble2).contains(&acl_line(&[&old])));

    // Unit 2 comes back (its next hook): it renders the current secret (applying it to
    // running processes and acknowledging is shown with real processes in
    // forcing_the_switch_is_refused_while_a_live_unit_refuses_the_new_password).
    run_hook(&mut s2, peer_changed(&w, U0));
    let rc = redis_conf(&pebble2);
    assert!(rc.contains(&acl_line(&["forced-admin-pw"])), "{rc}");
    assert!(rc.contains("masterauth forced-admin-pw\n"), "{rc}");
    assert!(!rc.contains(&hex(old.as_bytes())));

    // Nothing is running any more: force has nothing to do.
    let r = force(&mut s0);
    assert!(r
        .session
        .action_failure()
        .unwrap_or_default()
        .contains("no password rotation is in progress"));
}

/// Forcing never shortens the grace period that protects client applications, and says so.
#[test]
fn force_does_not_shorten_the_grace_period() {
    let w = world(1);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    run_action_ok(
        &mut s0,
        "set-password",
        &[("password", "graceful-admin-pw")],
    );
    set_bag(&w, U0, &[("password-rotation-ack", "1:add")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "switch");
    set_bag(&w, U0, &[("password-rotation-ack", "1:switch")]);
    let r = force(&mut s0);
    let failure = r.session.action_failure().unwrap_or_default();
    assert!(
        failure.contains("password-rotation-grace") && failure.contains("s left"),
        "{failure}"
    );
    assert_eq!(rotation(&w)["phase"], "switch");
    assert!(passwords_secret(&w).contains_key("redis-password-previous"));
    assert!(rotation(&w).get("excused").is_none());
}

/// A lagging unit whose Redis answers but refuses the new password (its pod name resolves
/// to a real redis-server here) blocks the forced switch: clients sent there would be locked
/// out. Once it accepts the new password (or stops answering) the force goes through; the
/// rotation completes without the excused units, and one that comes back later (real
/// redis-server and sentinel from the files it renders) applies the current passwords and
/// acknowledges the finished rotation.
#[test]
fn forcing_the_switch_is_refused_while_a_live_unit_refuses_the_new_password() {
    if skip_unless_in_hosts_namespace(
        "forcing_the_switch_is_refused_while_a_live_unit_refuses_the_new_password",
        60,
    ) {
        return;
    }
    let w = world(3);
    set_config(&w, &[("password-rotation-grace", 0.into())]);
    let pebble0 = containers();
    let mut s0 = scenario(&w, U0, &pebble0);
    run(&mut s0, "leader-elected");
    let old = passwords_secret(&w)["redis-password"].clone();
    run_action_ok(&mut s0, "set-password", &[("password", "probe-new-pw")]);
    set_bag(&w, U0, &[("password-rotation-ack", "1:add")]);

    // Unit 2's Redis runs with only the old password; unit 1's pod does not answer.
    let dir = tempfile::tempdir().unwrap();
    let stale = plain_redis(&unit_addr(60, 2), Some(&old), dir.path());
    let r = force(&mut s0);
    let failure = r.session.action_failure().unwrap_or_default();
    assert!(
        failure.contains("not forced: redis-k8s/2 answer"),
        "{failure}"
    );
    assert!(!failure.contains("redis-k8s/1"), "{failure}");
    assert!(!failure.contains("probe-new-pw") && !failure.contains(&old));
    assert_eq!(rotation(&w)["phase"], "add");
    assert!(rotation(&w).get("excused").is_none());
    assert_eq!(
        passwords_secret(&w)["redis-password"],
        old,
        "nothing switched"
    );

    // Now it accepts the new password (its ack is merely missing): forced past both.
    drop(stale);
    let _fixed = plain_redis(&unit_addr(60, 2), Some("probe-new-pw"), dir.path());
    let r = force(&mut s0);
    assert!(
        r.session.action_failure().is_none(),
        "{:?}",
        r.session.action_failure()
    );
    assert_eq!(
        r.session.action_results()["excused"],
        "redis-k8s/1,redis-k8s/2"
    );
    assert_eq!(rotation(&w)["phase"], "switch");
    assert_eq!(passwords_secret(&w)["redis-password"], "probe-new-pw");
    drop(_fixed);

    // The leader alone finishes the rotation.
    set_bag(&w, U0, &[("password-rotation-ack", "1:switch")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "drop");
    set_bag(&w, U0, &[("password-rotation-ack", "1:drop")]);
    run(&mut s0, "update-status");
    assert_eq!(rotation(&w)["phase"], "done");

    // Unit 2's pod comes back: a fresh pod renders the current secret; nothing runs yet,
    // so nothing is acknowledged.
    let pebble2 = containers();
    let mut s2 = scenario(&w, U2, &pebble2);
    run(&mut s2, "config-changed");
    assert_eq!(bag(&w, U2).get("password-rotation-ack"), None);
    let rc = redis_conf(&pebble2);
    assert!(rc.contains(&acl_line(&["probe-new-pw"])), "{rc}");
    // Its Redis and Sentinel start from those files; its next hook applies the passwords
    // to them and acknowledges the finished rotation.
    let dir2 = tempfile::tempdir().unwrap();
    let host2 = unit_addr(60, 2);
    let _redis2 = redis_from_rendered(&rc, &host2, dir2.path());
    let _sentinel2 = sentinel_from_rendered(
        &conf(&pebble2, "sentinel", SENTINEL_CONF),
        &host2,
        dir2.path(),
    );
    run(&mut s2, "update-status");
    assert_eq!(bag(&w, U2)["password-rotation-ack"], "1:done");
    let mut conn = redis_k8s::redis_client::RedisConn::connect(&host2, 6379, Some("probe-new-pw"))
        .expect("the new password works on the returning unit");
    let masterauth = conn.command(&["CONFIG", "GET", "masterauth"]).unwrap();
    assert!(format!("{masterauth:?}").contains("probe-new-pw"));
    assert!(
        redis_k8s::redis_client::RedisConn::connect(&host2, 6379, Some(&old)).is_err(),
        "the old password is refused there"
    );
    // Once: the next hook owes nothing.
    run(&mut s2, "update-status");
    assert_eq!(bag(&w, U2)["password-rotation-ack"], "1:done");
}
