//! What `juju-local status` shows: a snapshot of the model taken by the daemon (which also
//! asks each Redis which role it has), and its `juju status`-like table.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One application's line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppLine {
    pub name: String,
    pub charm: String,
    pub scale: usize,
    pub status: String,
    pub message: String,
    pub version: String,
}

/// One unit's line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnitLine {
    pub name: String,
    pub workload: String,
    /// `idle`, `executing`, `error`, `lost` (pod down), `dying`.
    pub agent: String,
    pub address: String,
    pub leader: bool,
    pub message: String,
    /// What Redis on this unit says it is (`primary`/`replica`), empty if not asked or unreachable.
    pub role: String,
    /// Hooks waiting (including the one running).
    pub queued: usize,
}

/// One relation's line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RelationLine {
    pub id: u32,
    pub provider: String,
    pub requirer: String,
    pub interface: String,
    pub kind: String,
}

/// The whole status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Snapshot {
    pub model: String,
    pub subnet: String,
    pub juju_version: String,
    pub apps: Vec<AppLine>,
    pub units: Vec<UnitLine>,
    pub relations: Vec<RelationLine>,
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl Snapshot {
    /// Render like `juju status`, plus a Role column.
    pub fn render(&self) -> String {
        let mut out = table(&[
            vec!["Model".into(), "Subnet".into(), "Juju".into()],
            vec![
                self.model.clone(),
                self.subnet.clone(),
                self.juju_version.clone(),
            ],
        ]);
        out.push('\n');
        let mut apps = vec![vec![
            "App".to_string(),
            "Version".into(),
            "Status".into(),
            "Scale".into(),
            "Charm".into(),
            "Message".into(),
        ]];
        for a in &self.apps {
            apps.push(vec![
                a.name.clone(),
                a.version.clone(),
                a.status.clone(),
                a.scale.to_string(),
                a.charm.clone(),
                a.message.clone(),
            ]);
        }
        out.push_str(&table(&apps));
        out.push('\n');
        let mut units = vec![vec![
            "Unit".to_string(),
            "Workload".into(),
            "Agent".into(),
            "Address".into(),
            "Role".into(),
            "Message".into(),
        ]];
        for u in &self.units {
            units.push(vec![
                format!("{}{}", u.name, if u.leader { "*" } else { "" }),
                u.workload.clone(),
                u.agent.clone(),
                u.address.clone(),
                u.role.clone(),
                u.message.clone(),
            ]);
        }
        out.push_str(&table(&units));
        let nonpeer: Vec<&RelationLine> = self.relations.iter().collect();
        if !nonpeer.is_empty() {
            out.push('\n');
            let mut rels = vec![vec![
                "Integration provider".to_string(),
                "Requirer".into(),
                "Interface".into(),
                "Type".into(),
            ]];
            for r in nonpeer {
                rels.push(vec![
                    r.provider.clone(),
                    r.requirer.clone(),
                    r.interface.clone(),
                    r.kind.clone(),
                ]);
            }
            out.push_str(&table(&rels));
        }
        out
    }
}

/// Ask a Redis server which role it has: `primary`, `replica`, `sentinel`, `auth?` (the
/// password was refused or missing) or empty when unreachable. Speaks raw RESP with short
/// timeouts so a dead pod never stalls `status`.
pub fn redis_role(addr: &str, port: u16, password: Option<&str>) -> String {
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return String::new();
    };
    let sock = SocketAddr::new(ip, port);
    let Ok(mut s) = TcpStream::connect_timeout(&sock, Duration::from_millis(300)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
    let mut req = Vec::new();
    let mut push = |args: &[&str]| {
        req.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
    };
    if let Some(pw) = password {
        push(&["AUTH", pw]);
    }
    push(&["ROLE"]);
    push(&["QUIT"]);
    if s.write_all(&req).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_role_replies(&String::from_utf8_lossy(&buf), password.is_some())
}

/// [`redis_role`] for a server that speaks only TLS (an app with `enable-tls`), verified
/// against the app's CA (`ca_pem`, its `ca-cert-file` resource) as the charm does.
pub fn redis_role_tls(addr: &str, port: u16, password: Option<&str>, ca_pem: Vec<u8>) -> String {
    let _tls = crate::redis_client::use_tls(Some(crate::tls::ClientTls { ca_pem }));
    let timeout = Duration::from_millis(500);
    let mut conn =
        match crate::redis_client::RedisConn::connect_with_timeout(addr, port, password, timeout) {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                return if text.contains("WRONGPASS") || text.contains("NOAUTH") {
                    "auth?".into()
                } else {
                    String::new()
                };
            }
        };
    match conn.command(&["ROLE"]) {
        Ok(redis::Value::Array(items)) => {
            match items
                .first()
                .map(crate::redis_client::value_to_string)
                .as_deref()
            {
                Some("master") => "primary".into(),
                Some("slave") => "replica".into(),
                Some(other) => other.to_string(),
                None => String::new(),
            }
        }
        Ok(_) => String::new(),
        Err(_) => "auth?".into(),
    }
}

fn parse_role_replies(text: &str, authed: bool) -> String {
    let mut lines = text.split("\r\n");
    if authed {
        match lines.next() {
            Some(l) if l.starts_with('+') => {}
            Some(l) if l.starts_with('-') => return "auth?".into(),
            _ => return String::new(),
        }
    }
    match lines.next() {
        Some(l) if l.starts_with('-') => "auth?".into(),
        Some(l) if l.starts_with('*') => {
            let _len = lines.next();
            match lines.next() {
                Some("master") => "primary".into(),
                Some("slave") => "replica".into(),
                Some(other) => other.to_string(),
                None => String::new(),
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_role_replies() {
        assert_eq!(
            parse_role_replies("+OK\r\n*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n+OK\r\n", true),
            "primary"
        );
        assert_eq!(
            parse_role_replies("*5\r\n$5\r\nslave\r\n$4\r\nhost\r\n", false),
            "replica"
        );
        assert_eq!(parse_role_replies("-WRONGPASS x\r\n", true), "auth?");
        assert_eq!(parse_role_replies("-NOAUTH x\r\n", false), "auth?");
        assert_eq!(parse_role_replies("", false), "");
    }

    #[test]
    fn unreachable_is_blank() {
        assert_eq!(redis_role("127.0.250.250", 1, None), "");
    }

    #[test]
    fn renders_leader_star_and_role() {
        let s = Snapshot {
            model: "m".into(),
            units: vec![UnitLine {
                name: "a/0".into(),
                workload: "active".into(),
                agent: "idle".into(),
                address: "127.0.1.1".into(),
                leader: true,
                message: "".into(),
                role: "primary".into(),
                queued: 0,
            }],
            ..Default::default()
        };
        let t = s.render();
        assert!(t.contains("a/0*"), "{t}");
        assert!(t.contains("primary"), "{t}");
    }
}
