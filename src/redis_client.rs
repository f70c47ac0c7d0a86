//! Short-timeout Redis and Sentinel calls for the charm (the `redis` crate, sync API).
//!
//! Every call connects, authenticates, runs one or two commands and disconnects, with a
//! one-second timeout: a hook must never hang on a dead peer.
//!
//! With TLS on ([`crate::tls`]), every connection of the hook's thread speaks TLS verified
//! against the attached CA: [`use_tls`] installs it once per hook, so the call sites stay
//! `RedisConn::connect(host, port, password)`. The chain is verified, the host name is not
//! (the charm connects to pod IPs, which operator certificates do not name).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::literals::SOCKET_TIMEOUT;

/// A Redis or Sentinel call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisCallError {
    #[error("cannot reach {host}:{port}: {message}")]
    Unreachable {
        host: String,
        port: u16,
        message: String,
    },
    #[error("{host}:{port} answered {command} with an error: {message}")]
    Command {
        host: String,
        port: u16,
        command: String,
        message: String,
    },
}

thread_local! {
    /// The CA this thread's connections verify servers against; `None`: plain TCP.
    static CLIENT_TLS: RefCell<Option<crate::tls::ClientTls>> = const { RefCell::new(None) };
}

/// While alive, this thread's connections use `tls` (or plain TCP for `None`); dropping it
/// restores what was in force before. The charm holds one for the whole hook.
#[must_use = "TLS settings apply only while the guard lives"]
pub struct TlsGuard {
    previous: Option<crate::tls::ClientTls>,
}

/// Make this thread's connections use `tls` until the returned guard is dropped.
pub fn use_tls(tls: Option<crate::tls::ClientTls>) -> TlsGuard {
    let previous = CLIENT_TLS.with(|c| c.replace(tls));
    TlsGuard { previous }
}

/// Whether this thread's connections use TLS now.
pub fn tls_in_use() -> bool {
    CLIENT_TLS.with(|c| c.borrow().is_some())
}

impl Drop for TlsGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CLIENT_TLS.with(|c| *c.borrow_mut() = previous);
    }
}

/// The connection info for `host:port`: plain TCP, or TLS verified against the CA of
/// [`use_tls`] without a host name check.
fn connection_info(
    host: &str,
    port: u16,
    settings: RedisConnectionInfo,
) -> redis::RedisResult<redis::ConnectionInfo> {
    let tls = CLIENT_TLS.with(|c| c.borrow().clone());
    let Some(tls) = tls else {
        return Ok(ConnectionAddr::Tcp(host.to_string(), port)
            .into_connection_info()?
            .set_redis_settings(settings));
    };
    let addr = ConnectionAddr::TcpTls {
        host: host.to_string(),
        port,
        insecure: false,
        tls_params: None,
    };
    let client = redis::Client::build_with_tls(
        addr.into_connection_info()?.set_redis_settings(settings),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(tls.ca_pem),
        },
    )?;
    let info = client.get_connection_info().clone();
    let mut addr = info.addr().clone();
    // Verified chain, any name: see the module doc.
    addr.set_danger_accept_invalid_hostnames(true);
    Ok(info.set_addr(addr))
}

/// One connection to a Redis server or Sentinel.
pub struct RedisConn {
    host: String,
    port: u16,
    conn: redis::Connection,
}

impl RedisConn {
    /// Connect and authenticate (the password never appears in errors or logs).
    pub fn connect(host: &str, port: u16, password: Option<&str>) -> Result<Self, RedisCallError> {
        Self::connect_with_timeout(host, port, password, SOCKET_TIMEOUT)
    }

    pub fn connect_with_timeout(
        host: &str,
        port: u16,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, RedisCallError> {
        let unreachable = |e: redis::RedisError| RedisCallError::Unreachable {
            host: host.to_string(),
            port,
            message: e.to_string(),
        };
        let mut settings = RedisConnectionInfo::default();
        if let Some(pw) = password {
            // `AUTH default <pw>`, not `AUTH <pw>`: the one-argument form is refused when the
            // default user has `nopass` (the allow-no-auth option), the two-argument one is
            // accepted then, and is the same as the old form otherwise.
            settings = settings.set_username("default").set_password(pw);
        }
        let info =
            connection_info(host, port, settings.set_skip_set_lib_name()).map_err(unreachable)?;
        let client = redis::Client::open(info).map_err(unreachable)?;
        let conn = client
            .get_connection_with_timeout(timeout)
            .map_err(unreachable)?;
        let _ = conn.set_read_timeout(Some(timeout));
        let _ = conn.set_write_timeout(Some(timeout));
        Ok(Self {
            host: host.to_string(),
            port,
            conn,
        })
    }

    /// Run a command given as words; the reply as a redis `Value`.
    pub fn command(&mut self, words: &[&str]) -> Result<redis::Value, RedisCallError> {
        let mut cmd = redis::cmd(words[0]);
        for w in &words[1..] {
            cmd.arg(*w);
        }
        cmd.query(&mut self.conn)
            .map_err(|e| RedisCallError::Command {
                host: self.host.clone(),
                port: self.port,
                // Never echo arguments: they may hold a password (ACL, CONFIG SET).
                command: words[0].to_string(),
                message: e.to_string(),
            })
    }

    /// A command whose reply is a string (status or bulk).
    pub fn command_string(&mut self, words: &[&str]) -> Result<String, RedisCallError> {
        let v = self.command(words)?;
        Ok(value_to_string(&v))
    }

    /// `INFO <section>` as a map.
    pub fn info(&mut self, section: &str) -> Result<BTreeMap<String, String>, RedisCallError> {
        let text = self.command_string(&["INFO", section])?;
        Ok(parse_info(&text))
    }

    /// `SENTINEL MASTER <name>` as a map (the reply is a flat key/value list or a map).
    pub fn sentinel_master(
        &mut self,
        name: &str,
    ) -> Result<BTreeMap<String, String>, RedisCallError> {
        let v = self.command(&["SENTINEL", "MASTER", name])?;
        Ok(value_to_map(&v))
    }

    /// `SENTINEL CKQUORUM <name>`: true when the answer starts with OK.
    pub fn sentinel_ckquorum(&mut self, name: &str) -> Result<bool, RedisCallError> {
        match self.command_string(&["SENTINEL", "CKQUORUM", name]) {
            Ok(s) => Ok(s.starts_with("OK")),
            Err(RedisCallError::Command { message, .. }) if message.contains("NOQUORUM") => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Flatten a reply to text.
pub fn value_to_string(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Okay => "OK".to_string(),
        redis::Value::Nil => String::new(),
        redis::Value::Double(d) => d.to_string(),
        redis::Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// A flat `[k1, v1, k2, v2, ...]` list or a RESP3 map → map.
pub fn value_to_map(v: &redis::Value) -> BTreeMap<String, String> {
    match v {
        redis::Value::Array(items) => items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (value_to_string(&c[0]), value_to_string(&c[1])))
            .collect(),
        redis::Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| (value_to_string(k), value_to_string(v)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `INFO` text → map (section headers and blank lines skipped).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
