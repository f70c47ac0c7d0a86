//! `pebble` as the local model's pods have it: the `juju-local` multi-call binary answers to
//! argv\[0\] `pebble` (the model installs a copy as `/charm/bin/pebble` in every workload
//! container's view, like Juju's pebble binary) and implements the one subcommand workloads
//! use on their own Pebble:
//!
//! ```text
//! pebble notify [--repeat-after <duration>] <key> [<name>=<value>...]
//! ```
//!
//! It records a custom notice on `$PEBBLE_SOCKET` (else `$PEBBLE/.pebble.socket`, else
//! Pebble's default socket) through the runtime's own [`PebbleClient`], and prints
//! `Recorded notice <id>` as real Pebble does. Errors go to stderr with exit code 1; usage
//! errors exit 2 (like Pebble's flags parser).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ops::pebble::{parse_go_duration, Pebble, PebbleClient};

/// Pebble's default socket when neither `PEBBLE_SOCKET` nor `PEBBLE` is set.
const DEFAULT_SOCKET: &str = "/var/lib/pebble/default/.pebble.socket";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PebbleCommand {
    Notify {
        key: String,
        data: BTreeMap<String, String>,
        repeat_after: Option<Duration>,
    },
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("no command given (this pebble implements only \"notify\")")]
    NoCommand,
    #[error("unknown command {0:?} (this pebble implements only \"notify\")")]
    Unknown(String),
    #[error("the required argument `<key>` was not provided")]
    NoKey,
    #[error("invalid duration {0:?} for --repeat-after")]
    Duration(String),
    #[error("expected data in the form name=value, got {0:?}")]
    Data(String),
    #[error("unknown flag {0:?}")]
    Flag(String),
}

/// Parse `pebble`'s arguments (argv without argv\[0\]).
pub fn parse_args(args: &[String]) -> Result<PebbleCommand, UsageError> {
    let (cmd, rest) = args.split_first().ok_or(UsageError::NoCommand)?;
    if cmd != "notify" {
        return Err(UsageError::Unknown(cmd.clone()));
    }
    let mut repeat_after = None;
    let mut positional: Vec<&str> = Vec::new();
    let mut it = rest.iter();
    let mut flags_done = false;
    while let Some(a) = it.next() {
        if flags_done || !a.starts_with('-') || a == "-" {
            positional.push(a);
            continue;
        }
        if a == "--" {
            flags_done = true;
            continue;
        }
        let value = if a == "--repeat-after" {
            it.next()
                .ok_or_else(|| UsageError::Duration(String::new()))?
        } else if let Some(v) = a.strip_prefix("--repeat-after=") {
            v
        } else {
            return Err(UsageError::Flag(a.clone()));
        };
        repeat_after =
            Some(parse_go_duration(value).ok_or_else(|| UsageError::Duration(value.into()))?);
    }
    let (key, data_args) = positional.split_first().ok_or(UsageError::NoKey)?;
    let mut data = BTreeMap::new();
    for d in data_args {
        match d.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                data.insert(k.to_string(), v.to_string());
            }
            _ => return Err(UsageError::Data(d.to_string())),
        }
    }
    Ok(PebbleCommand::Notify {
        key: key.to_string(),
        data,
        repeat_after,
    })
}

/// The socket a `pebble` client talks to, from the environment.
pub fn socket_from_env(get: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(s) = get("PEBBLE_SOCKET").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    if let Some(dir) = get("PEBBLE").filter(|s| !s.is_empty()) {
        return Path::new(&dir).join(".pebble.socket");
    }
    PathBuf::from(DEFAULT_SOCKET)
}

/// Run one command; returns (stdout, stderr, exit code).
pub fn run(args: &[String], socket: &Path) -> (String, String, i32) {
    let cmd = match parse_args(args) {
        Ok(c) => c,
        Err(e) => return (String::new(), format!("error: {e}\n"), 2),
    };
    match cmd {
        PebbleCommand::Notify {
            key,
            data,
            repeat_after,
        } => match PebbleClient::new(socket).notify(&key, &data, repeat_after) {
            Ok(id) => (format!("Recorded notice {id}\n"), String::new(), 0),
            Err(e) => (String::new(), format!("error: {e}\n"), 1),
        },
    }
}

/// If this process was started as `pebble` (argv\[0\]'s basename), run it and return its
/// exit code; otherwise `None`.
pub fn pebble_main_if_pebble() -> Option<i32> {
    let mut argv = std::env::args_os();
    let argv0 = argv.next()?;
    if Path::new(&argv0).file_name()? != "pebble" {
        return None;
    }
    let args: Vec<String> = argv.map(|a| a.to_string_lossy().into_owned()).collect();
    let socket = socket_from_env(|k| std::env::var(k).ok());
    let (out, err, code) = run(&args, &socket);
    let _ = std::io::stdout().write_all(out.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(err.as_bytes());
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn notify_with_data_and_repeat_after() {
        assert_eq!(
            parse_args(&s(&[
                "notify",
                "--repeat-after",
                "1m",
                "a.com/x",
                "to=b",
                "e=x=y"
            ])),
            Ok(PebbleCommand::Notify {
                key: "a.com/x".into(),
                data: BTreeMap::from([
                    ("to".to_string(), "b".to_string()),
                    ("e".to_string(), "x=y".to_string())
                ]),
                repeat_after: Some(Duration::from_secs(60)),
            })
        );
        assert_eq!(
            parse_args(&s(&["notify", "--repeat-after=5s", "a.com/x"])),
            Ok(PebbleCommand::Notify {
                key: "a.com/x".into(),
                data: BTreeMap::new(),
                repeat_after: Some(Duration::from_secs(5)),
            })
        );
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert_eq!(parse_args(&[]), Err(UsageError::NoCommand));
        assert_eq!(
            parse_args(&s(&["services"])),
            Err(UsageError::Unknown("services".into()))
        );
        assert_eq!(parse_args(&s(&["notify"])), Err(UsageError::NoKey));
        assert_eq!(
            parse_args(&s(&["notify", "a.com/x", "novalue"])),
            Err(UsageError::Data("novalue".into()))
        );
        assert!(matches!(
            parse_args(&s(&["notify", "--repeat-after", "soon", "a.com/x"])),
            Err(UsageError::Duration(_))
        ));
        assert!(matches!(
            parse_args(&s(&["notify", "--bogus", "a.com/x"])),
            Err(UsageError::Flag(_))
        ));
    }

    #[test]
    fn socket_follows_pebbles_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            socket_from_env(env(&[("PEBBLE_SOCKET", "/s"), ("PEBBLE", "/p")])),
            PathBuf::from("/s")
        );
        assert_eq!(
            socket_from_env(env(&[("PEBBLE", "/p")])),
            PathBuf::from("/p/.pebble.socket")
        );
        assert_eq!(socket_from_env(env(&[])), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn notify_records_a_custom_notice_on_a_pebble_server() {
        use crate::sim::pebble_server::{PebbleServer, PebbleServerConfig};
        let dir = tempfile::tempdir().unwrap();
        let server = PebbleServer::start(PebbleServerConfig {
            socket: dir.path().join("pebble.socket"),
            root: dir.path().join("root"),
            container: "sentinel".into(),
            ..PebbleServerConfig::default()
        })
        .unwrap();
        let (out, err, code) = run(
            &s(&["notify", "redis-k8s.charm/primary-changed", "to=b.svc"]),
            server.socket(),
        );
        assert_eq!((code, err.as_str()), (0, ""));
        let (notices, _) = server.custom_notices_since(0);
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].key, "redis-k8s.charm/primary-changed");
        assert_eq!(
            notices[0].last_data.get("to").map(String::as_str),
            Some("b.svc")
        );
        assert_eq!(out, format!("Recorded notice {}\n", notices[0].id));
    }

    #[test]
    fn unreachable_pebble_is_an_error_exit() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err, code) = run(&s(&["notify", "a.com/x"]), &dir.path().join("none"));
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.starts_with("error: "), "{err}");
    }
}
