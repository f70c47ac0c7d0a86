//! The peer relation's app databag, typed. `leader-host` is the Python charm's key; the
//! passwords live in a Juju secret referenced by `passwords-secret` (see [`crate::passwords`]),
//! and the Python charm's plain `redis-password` / `sentinel-password` keys are read only until
//! the leader has migrated them, so a deployment of it can be refreshed to this charm and keep
//! its passwords and primary.

use std::collections::BTreeMap;
use std::io::Read;

use crate::literals::{
    KEY_ENABLE_PASSWORD, KEY_LEADER_HOST, KEY_REDIS_PASSWORD, KEY_SENTINEL_PASSWORD,
};
use crate::passwords::{
    Passwords, Rotation, KEY_CLIENT_SECRET, KEY_PASSWORDS_SECRET, KEY_ROTATION,
};

/// What the leader records for everyone, with the passwords resolved from the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PeerAppData {
    /// The admin password in use (from the secret; before the migration, the plain key).
    pub redis_password: Option<String>,
    /// The sentinel password in use (same sources).
    pub sentinel_password: Option<String>,
    /// The primary's pod FQDN.
    pub leader_host: Option<String>,
    /// False when the Python charm's legacy no-auth key (`enable-password: "false"`) is
    /// present. Informational only: the leader deletes the key, and no-auth is the
    /// `allow-no-auth` config option.
    pub enable_password: bool,
    /// The `enable-password` key is present (the leader deletes it).
    pub legacy_key_present: bool,
    /// The bag still holds plain `redis-password` / `sentinel-password` (Python charm).
    pub plain_passwords: bool,
    /// URI of the passwords secret.
    pub passwords_secret: Option<String>,
    /// URI of the client credentials secret.
    pub client_secret: Option<String>,
    /// The leader's password rotation record.
    pub rotation: Option<Rotation>,
    /// The whole secret content (accepted passwords during a rotation), once read.
    pub passwords: Option<Passwords>,
    /// Why the referenced secret cannot be used (reported in the Waiting status).
    pub password_problem: Option<String>,
}

// Never print passwords, even in debug output.
impl std::fmt::Debug for PeerAppData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAppData")
            .field(
                "redis_password",
                &self.redis_password.as_ref().map(|_| "<set>"),
            )
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "<set>"),
            )
            .field("leader_host", &self.leader_host)
            .field("enable_password", &self.enable_password)
            .field("plain_passwords", &self.plain_passwords)
            .field("passwords_secret", &self.passwords_secret)
            .field("client_secret", &self.client_secret)
            .field("rotation", &self.rotation)
            .field("passwords", &self.passwords)
            .field("password_problem", &self.password_problem)
            .finish()
    }
}

fn non_empty(bag: &BTreeMap<String, String>, key: &str) -> Option<String> {
    bag.get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl PeerAppData {
    /// Parse a databag; unknown keys are ignored, empty values count as absent, and a
    /// malformed `leader-host` (not a host name) or rotation record is dropped with a
    /// warning. The passwords are the plain keys here; [`crate::passwords::resolve`] replaces
    /// them with the secret's content when the bag references one.
    pub fn from_bag(bag: &BTreeMap<String, String>) -> PeerAppData {
        let leader_host = non_empty(bag, KEY_LEADER_HOST).filter(|h| {
            let ok = is_hostname(h);
            if !ok {
                tracing::warn!(value = %h, "ignoring malformed leader-host in peer data");
            }
            ok
        });
        let redis_password = non_empty(bag, KEY_REDIS_PASSWORD);
        let sentinel_password = non_empty(bag, KEY_SENTINEL_PASSWORD);
        let secret_ref =
            |key: &str| non_empty(bag, key).filter(|v| !v.contains(char::is_whitespace));
        PeerAppData {
            plain_passwords: redis_password.is_some() || sentinel_password.is_some(),
            redis_password,
            sentinel_password,
            leader_host,
            enable_password: bag.get(KEY_ENABLE_PASSWORD).map(|v| v.trim()) != Some("false"),
            legacy_key_present: bag.contains_key(KEY_ENABLE_PASSWORD),
            passwords_secret: secret_ref(KEY_PASSWORDS_SECRET),
            client_secret: secret_ref(KEY_CLIENT_SECRET),
            rotation: non_empty(bag, KEY_ROTATION).and_then(|r| Rotation::from_json(&r)),
            passwords: None,
            password_problem: None,
        }
    }

    /// Passwords and a primary are known (the Python charm's `_valid_app_databag`, without
    /// its legacy no-auth exception).
    pub fn is_populated(&self) -> bool {
        self.redis_password.is_some()
            && self.sentinel_password.is_some()
            && self.leader_host.is_some()
    }

    /// The admin password in use: what the charm and clients authenticate with. (With
    /// `allow-no-auth`, Redis accepts any password, so it works then too.)
    pub fn admin_password(&self) -> Option<&str> {
        self.redis_password.as_deref()
    }

    /// The Waiting message when the data is not usable yet: the secret problem if there is
    /// one, else `default`.
    pub fn waiting_message(&self, default: &str) -> String {
        match &self.password_problem {
            Some(p) => format!("Waiting for passwords: {p}"),
            None => default.to_string(),
        }
    }
}

/// Unit databag key: this unit's Redis replication link, as it last converged (see
/// [`ReplicaLink`]). Written by replicas only when it changes, so the primary's unit gets
/// `redis-peers-relation-changed` the moment a replica is in sync and can turn
/// `min-replicas-to-write` on at once instead of at the next update-status.
pub const KEY_REPLICA_LINK: &str = "replica-link";

/// A replica's view of its link to the primary, recorded in its unit databag as
/// `<up|down> <primary> <run-id>`. The run id is the replica's Redis `run_id`, so a
/// restarted replica that syncs again writes a new value (and the primary hears of it) even
/// when it follows the same primary as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLink {
    /// `master_link_status:up` (the initial sync is done and the link works).
    pub up: bool,
    /// The primary it replicates from (as `master_host` names it).
    pub primary: String,
    /// The replica's Redis `run_id`.
    pub run_id: String,
}

impl ReplicaLink {
    /// The databag value.
    pub fn to_value(&self) -> String {
        let state = if self.up { "up" } else { "down" };
        format!("{state} {} {}", self.primary, self.run_id)
    }

    /// Parse a databag value; junk (another format, a bad host name) is `None`.
    pub fn parse(value: &str) -> Option<ReplicaLink> {
        let mut words = value.split_whitespace();
        let up = match words.next()? {
            "up" => true,
            "down" => false,
            _ => return None,
        };
        let primary = words.next().filter(|h| is_hostname(h))?.to_string();
        let run_id = words
            .next()
            .filter(|r| r.chars().all(|c| c.is_ascii_alphanumeric()))?
            .to_string();
        if words.next().is_some() {
            return None;
        }
        Some(ReplicaLink {
            up,
            primary,
            run_id,
        })
    }
}

/// A DNS name or IP address: letters, digits, `-`, `.`, `:`.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':')
}

/// A strong random password: 32 characters from [A-Za-z0-9] (~190 bits), from the kernel's
/// CSPRNG, without modulo bias.
pub fn generate_password() -> std::io::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        urandom.read_exact(&mut buf)?;
        for b in buf {
            // 62 * 4 = 248: reject 248..=255 to keep the distribution uniform.
            if b < 248 && out.len() < 32 {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A unit's pod FQDN, computed from names rather than trusting the resolver (contract
/// addenda 2): `<app>-<n>.<app>-endpoints.<model>.svc.<cluster-domain>`.
pub fn unit_fqdn(unit_name: &str, model: &str, cluster_domain: &str) -> String {
    let (app, n) = unit_name.rsplit_once('/').unwrap_or((unit_name, "0"));
    format!("{app}-{n}.{app}-endpoints.{model}.svc.{cluster_domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_and_empty_keys_do_not_populate() {
        let mut bag = BTreeMap::new();
        bag.insert("redis-password".into(), "".into());
        bag.insert("sentinel-password".into(), "s".into());
        bag.insert("leader-host".into(), "bad host!".into());
        bag.insert("junk".into(), "x".into());
        let d = PeerAppData::from_bag(&bag);
        assert!(!d.is_populated());
        assert_eq!(d.leader_host, None);
        bag.insert("redis-password".into(), "p".into());
        bag.insert(
            "leader-host".into(),
            "redis-k8s-0.redis-k8s-endpoints".into(),
        );
        assert!(PeerAppData::from_bag(&bag).is_populated());
    }

    #[test]
    fn debug_output_hides_passwords() {
        let d = PeerAppData {
            redis_password: Some("hunter2hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{d:?}").contains("hunter2"));
    }

    #[test]
    fn passwords_are_long_and_distinct() {
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn replica_links_round_trip_and_junk_is_rejected() {
        let l = ReplicaLink {
            up: true,
            primary: "redis-k8s-0.redis-k8s-endpoints.m.svc.cluster.local".into(),
            run_id: "0123abcd".into(),
        };
        assert_eq!(
            l.to_value(),
            "up redis-k8s-0.redis-k8s-endpoints.m.svc.cluster.local 0123abcd"
        );
        assert_eq!(ReplicaLink::parse(&l.to_value()), Some(l.clone()));
        let down = ReplicaLink { up: false, ..l };
        assert_eq!(ReplicaLink::parse(&down.to_value()), Some(down));
        for junk in [
            "",
            "up",
            "up host",
            "sideways host id",
            "up bad!host id",
            "up h id x",
        ] {
            assert_eq!(ReplicaLink::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn fqdn_follows_the_pod_naming() {
        assert_eq!(
            unit_fqdn("redis-k8s/2", "prod", "cluster.local"),
            "redis-k8s-2.redis-k8s-endpoints.prod.svc.cluster.local"
        );
    }
}
