//! Short-timeout Redis and Sentinel calls for the charm (the `redis` crate, sync API).
//!
//! Every call connects, authenticates, runs one or two commands and disconnects, with a
//! one-second timeout: a hook must never hang on a dead peer.

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
        let info = ConnectionAddr::Tcp(host.to_string(), port)
            .into_connection_info()
            .map_err(unreachable)?
            .set_redis_settings(settings.set_skip_set_lib_name());
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
