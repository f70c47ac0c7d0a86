//! TLS from the three file resources, as the Python charm (`cert-file`, `key-file`,
//! `ca-cert-file`), but for everything: Redis, replication, Sentinel (and the two-unit
//! witness), the exporter, the Pebble checks and the charm's own connections.
//!
//! # Where the files go
//! - redis container: `/var/lib/redis/{redis.crt,redis.key,ca.crt}` (the Python charm's
//!   paths, on the data volume), mode 0600, owner `redis`.
//! - sentinel container: [`SENTINEL_TLS_DIR`] (`/etc/redis-server/tls/`), mode 0600, owner
//!   `redis`. That container has no storage, and `/etc/redis-server` is already where the
//!   charm keeps Sentinel's config (0750, `redis`): the keys sit next to the other secrets
//!   it owns, and a new pod gets them again at its pebble-ready like the config.
//!
//! # When
//! Every converging hook with `enable-tls=true` (pebble-ready of either container,
//! config-changed, upgrade-charm — which `attach-resource` triggers — and the peer hooks)
//! reads the resources once ([`load`], in `RedisK8sCharm::config`) and pushes them into both
//! containers ([`push`]). A missing resource blocks the unit with the Python charm's
//! `Not enough certificates found` (naming what is missing); a resource that is not PEM
//! blocks it naming the resource. Both surface as a config error, so no handler renders,
//! pushes or restarts anything while they last and the hook exits 0.
//!
//! # Restarts
//! Ports change when TLS is turned on or off (6379/26379 speak TLS, the plain ports are
//! closed with `port 0`), so Redis and Sentinel must restart. The services carry
//! [`MARKER_ENV`] (a fingerprint of the certificate and CA, never the key): a toggle or a new
//! certificate changes the service definition, and the usual "service differs from the plan"
//! path re-renders and replans. Each unit does so in its own config-changed (or
//! upgrade-charm) hook, and Juju runs those hooks on all units at about the same time: this
//! is not a rolling restart. A rolling one would not help here: a TLS server and a plain one
//! cannot talk, so staggering the restarts would only make the mixed window (replication
//! links down, sentinels unable to reach the servers of the other mode) longer. What happens:
//! each Redis restarts (a clean shutdown; `appendonly` keeps the data), each Sentinel
//! restarts from a fresh config naming the primary the charm knows, so the primary keeps its
//! role unless the units' hooks are more than `sentinel-down-after-milliseconds` apart (then
//! the sentinels of the new mode may fail over to a replica of that mode, and the charm
//! follows as after any failover). Clients must switch protocol anyway, so turning TLS on or
//! off is a planned interruption of a few seconds. A new certificate or CA (while TLS is on)
//! restarts the servers the same way.
//!
//! # The charm's own connections
//! [`ClientTls`] (the CA) is installed for the hook's thread by `RedisK8sCharm::config` once
//! per hook ([`crate::redis_client::use_tls`]), so the ~30 `RedisConn::connect` call sites
//! need no extra argument: a hook is one thread, and every connection needs the topology
//! (passwords), which reads the config first.
//!
//! # Hostname verification
//! The charm connects to pod IPs, which operator certificates usually do not name. Its own
//! connections verify the chain against the attached CA (a certificate from any other CA, or a
//! self-signed one, is refused) but not the name. Redis and Sentinel (OpenSSL, as servers and
//! as replication/sentinel clients) and `redis-cli` in the checks verify the chain only, too.
//! The exporter (Go) also verifies the name: it scrapes `rediss://<unit FQDN>:6379`, the
//! name clients use, so a certificate for the pod FQDNs (or
//! `*.<app>-endpoints.<model>.svc.<domain>`) gives metrics; one without gives `redis_up 0`
//! and nothing else changes.

use std::path::Path;

use crate::literals::{DATA_DIR, REDIS_USER};
use crate::ops::hookcmds::HookTools;
use crate::ops::pebble::{Pebble, PebbleError, PushOptions, Service};

/// The server certificate resource.
pub const CERT_RESOURCE: &str = "cert-file";
/// The server key resource.
pub const KEY_RESOURCE: &str = "key-file";
/// The CA certificate resource.
pub const CA_RESOURCE: &str = "ca-cert-file";

/// The sentinel container's directory for the TLS files.
pub const SENTINEL_TLS_DIR: &str = "/etc/redis-server/tls";

/// Service environment variable whose value changes when TLS does (on/off, a new
/// certificate or CA): a changed service definition restarts the server.
pub const MARKER_ENV: &str = "REDIS_K8S_TLS";

/// Where one container has the three files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TlsPaths {
    pub cert: &'static str,
    pub key: &'static str,
    pub ca: &'static str,
}

/// The redis container's files (the Python charm's paths).
pub const REDIS_TLS_PATHS: TlsPaths = TlsPaths {
    cert: "/var/lib/redis/redis.crt",
    key: "/var/lib/redis/redis.key",
    ca: "/var/lib/redis/ca.crt",
};

/// The sentinel container's files (for the unit's sentinel and the witness).
pub const SENTINEL_TLS_PATHS: TlsPaths = TlsPaths {
    cert: "/etc/redis-server/tls/redis.crt",
    key: "/etc/redis-server/tls/redis.key",
    ca: "/etc/redis-server/tls/ca.crt",
};

/// Why TLS cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// Resources not attached (or empty): the Python charm's message, plus which.
    #[error("Not enough certificates found (missing: {})", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// A resource that is not what it should be.
    #[error("TLS resource {resource} is not usable: {reason}")]
    Invalid {
        resource: &'static str,
        reason: String,
    },
}

/// The certificate, key and CA, read from the resources and checked to be PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    /// Never the key; the certificates are public but long, so only their fingerprint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("fingerprint", &self.fingerprint())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsMaterial {
    /// Check the three PEM texts; an error names the resource at fault.
    pub fn new(cert: Vec<u8>, key: Vec<u8>, ca: Vec<u8>) -> Result<TlsMaterial, TlsError> {
        let invalid = |resource, reason: String| TlsError::Invalid { resource, reason };
        // The certificates are parsed as X.509 (as trust anchors, which is all rustls
        // offers without a new dependency); the key is loaded and checked against the
        // certificate. Not checked: that the CA signed the certificate (then Redis starts,
        // and the charm's own connections, which verify the chain, fail and say so).
        check_certificates(&cert).map_err(|e| invalid(CERT_RESOURCE, e))?;
        check_certificates(&ca).map_err(|e| invalid(CA_RESOURCE, e))?;
        check_key(&cert, &key).map_err(|e| invalid(KEY_RESOURCE, e))?;
        Ok(TlsMaterial { cert, key, ca })
    }

    /// SHA-256 of the certificate and the CA (not the key), 16 hex digits: what
    /// [`MARKER_ENV`] holds. Public data only, so it may sit in the Pebble plan.
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.cert);
        ctx.update(b"\0");
        ctx.update(&self.ca);
        ctx.finish().as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The client side of the charm's own connections.
    pub fn client(&self) -> ClientTls {
        ClientTls {
            ca_pem: self.ca.clone(),
        }
    }
}

/// What the charm's own connections need: the CA to verify servers against.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls { .. }")
    }
}

fn pem_sections(pem: &[u8]) -> Result<usize, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not PEM text".to_string())?;
    Ok(text.matches("-----BEGIN CERTIFICATE-----").count())
}

/// At least one PEM certificate, each one parsing as X.509.
fn check_certificates(pem: &[u8]) -> Result<(), String> {
    if pem_sections(pem)? == 0 {
        return Err("no PEM certificate in it".into());
    }
    // `root_cert` parses every certificate into a trust anchor (X.509 DER).
    redis::Client::build_with_tls(
        "rediss://localhost:1",
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        },
    )
    .map(|_| ())
    .map_err(|e| format!("not a certificate: {e}"))
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1) that is the certificate's: rustls loads the
/// key and checks it against the certificate's public key when it builds a client
/// configuration with it, which the `redis` crate does before it opens any socket. So a
/// connection attempt to a closed loopback port answers "configuration refused" (the key
/// is bad) or "connection refused" (the key is fine) without any traffic.
fn check_key(cert: &[u8], key: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(key).map_err(|_| "not PEM text".to_string())?;
    if !text.contains("PRIVATE KEY-----") {
        return Err("no PEM private key in it".into());
    }
    // The errors name the problem, never the key's content.
    let client = redis::Client::build_with_tls(
        "rediss://127.0.0.1:1",
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: cert.to_vec(),
                client_key: key.to_vec(),
            }),
            root_cert: Some(cert.to_vec()),
        },
    )
    .map_err(|_| "the private key PEM cannot be decoded".to_string())?;
    match client.get_connection_with_timeout(std::time::Duration::from_millis(200)) {
        Err(e) if e.kind() == redis::ErrorKind::InvalidClientConfig => {
            Err("not a usable private key for cert-file (unreadable, or another key)".into())
        }
        _ => Ok(()),
    }
}

/// Read the three resources (`resource-get`). Any missing or empty: [`TlsError::Missing`]
/// naming them all; unreadable or not PEM: [`TlsError::Invalid`] naming the first bad one.
pub fn load(tools: &dyn HookTools) -> Result<TlsMaterial, TlsError> {
    let mut missing = Vec::new();
    let mut contents = Vec::new();
    for name in [CERT_RESOURCE, KEY_RESOURCE, CA_RESOURCE] {
        match tools.resource_get(name) {
            Ok(path) => match read(&path) {
                Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => missing.push(name),
                Ok(bytes) => contents.push(bytes),
                Err(e) => {
                    return Err(TlsError::Invalid {
                        resource: name,
                        reason: format!("cannot read it: {e}"),
                    })
                }
            },
            Err(e) => {
                tracing::debug!(resource = name, error = %e, "resource-get failed");
                missing.push(name);
            }
        }
    }
    if !missing.is_empty() {
        return Err(TlsError::Missing(missing));
    }
    let mut it = contents.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(cert), Some(key), Some(ca)) => TlsMaterial::new(cert, key, ca),
        _ => Err(TlsError::Missing(vec![
            CERT_RESOURCE,
            KEY_RESOURCE,
            CA_RESOURCE,
        ])),
    }
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// Push the three files to `paths` in one container (0600, redis:redis), creating the
/// directory (0750, redis) when it is not the data volume.
pub fn push(pebble: &dyn Pebble, paths: &TlsPaths, tls: &TlsMaterial) -> Result<(), PebbleError> {
    if let Some(dir) = Path::new(paths.cert).parent().and_then(Path::to_str) {
        if dir != DATA_DIR {
            pebble.make_dir(dir, &crate::workload::redis_dir(0o750))?;
        }
    }
    let opts = PushOptions {
        permissions: Some(0o600),
        user: Some(REDIS_USER.into()),
        group: Some(REDIS_USER.into()),
        ..PushOptions::default()
    };
    for (path, content) in [
        (paths.cert, &tls.cert),
        (paths.key, &tls.key),
        (paths.ca, &tls.ca),
    ] {
        let same = pebble.pull(path).is_ok_and(|have| &have == content);
        if !same {
            pebble.push(path, content, &opts)?;
        }
    }
    Ok(())
}

/// Mark a server's service with the TLS fingerprint (see [`MARKER_ENV`]); nothing when off.
pub fn mark_service(service: &mut Service, tls: Option<&TlsMaterial>) {
    if let Some(t) = tls {
        service
            .environment
            .insert(MARKER_ENV.into(), t.fingerprint());
    }
}

/// The `redis-cli` words a check (or a person) needs for a TLS server: `--tls --cacert <ca>`.
/// No client certificate: the servers have `tls-auth-clients optional`. `redis-cli` verifies
/// the chain, not the name, so the check works on the pod IP.
pub fn cli_args(paths: &TlsPaths) -> String {
    format!("--tls --cacert {}", paths.ca)
}

/// Add [`cli_args`] to a `redis-cli -h .. -p .. QUIT` exec check.
pub fn tls_check(
    mut check: crate::ops::pebble::Check,
    paths: &TlsPaths,
) -> crate::ops::pebble::Check {
    if let Some(exec) = check.exec.as_mut() {
        if let Some(rest) = exec.command.strip_prefix("redis-cli ") {
            exec.command = format!("redis-cli {} {rest}", cli_args(paths));
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_naming_the_resource() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        let e = TlsMaterial::new(b"hello".to_vec(), b"k".to_vec(), pem.clone()).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Invalid {
                    resource: CERT_RESOURCE,
                    ..
                }
            ),
            "{e}"
        );
        let e = TlsMaterial::new(pem.clone(), b"k".to_vec(), pem).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Invalid {
                    resource: CERT_RESOURCE,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn the_missing_message_is_the_python_charms_plus_names() {
        let e = TlsError::Missing(vec![KEY_RESOURCE, CA_RESOURCE]);
        assert_eq!(
            e.to_string(),
            "Not enough certificates found (missing: key-file, ca-cert-file)"
        );
    }

    #[test]
    fn checks_gain_the_tls_words_only() {
        let c = crate::workload::server_check("10.0.0.1", 6379);
        let c = tls_check(c, &REDIS_TLS_PATHS);
        assert_eq!(
            c.exec.unwrap().command,
            "redis-cli --tls --cacert /var/lib/redis/ca.crt -h 10.0.0.1 -p 6379 QUIT"
        );
    }
}
