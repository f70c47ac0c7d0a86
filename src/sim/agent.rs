//! The unit agent socket, both ends.
//!
//! Server: [`AgentServer`] listens on a unix socket and answers hook-tool requests for the
//! hook contexts registered with it (one [`Session`] per running hook, keyed by the
//! `JUJU_CONTEXT_ID` the hook process was given).
//!
//! Client: [`tool_main_if_tool`], called first thing in `juju-local`'s `main`: when the
//! binary was started under a tool's name (a symlink in the unit's tools dir, as Juju's
//! `jujuc` symlinks), it forwards argv, cwd and (only for `--file -`) stdin to the socket,
//! copies the answer to stdout/stderr and returns the exit code. It is deliberately plain
//! std + serde_json: a charm may call dozens of tools per hook.
//!
//! Wire format: one JSON object per line each way.
//! Request `{"context_id", "tool", "args": [..], "stdin": "<base64>", "cwd"}`,
//! response `{"stdout": "<base64>", "stderr": "<base64>", "code": <int>}`.

use super::hooktools::{b64, run_tool, ToolOutput, TOOL_NAMES};
use crate::ops::testing::world::Session;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One tool invocation, as sent by the client.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolRequest {
    pub context_id: String,
    pub tool: String,
    pub args: Vec<String>,
    /// Base64 of the bytes read from stdin (empty unless the tool was given `--file -`).
    #[serde(default)]
    pub stdin: String,
    pub cwd: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WireOutput {
    stdout: String,
    stderr: String,
    code: i32,
}

impl From<&ToolOutput> for WireOutput {
    fn from(o: &ToolOutput) -> Self {
        WireOutput {
            stdout: b64::encode(&o.stdout),
            stderr: b64::encode(&o.stderr),
            code: o.code,
        }
    }
}

type Sessions = Arc<Mutex<HashMap<String, Arc<Session>>>>;

/// A unit agent's hook-tool socket. Stops (and removes the socket file) when dropped.
pub struct AgentServer {
    socket: PathBuf,
    sessions: Sessions,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentServer {
    /// Listen on `socket` (a stale socket file there is replaced).
    pub fn start(socket: &Path) -> io::Result<AgentServer> {
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(socket)?;
        let sessions: Sessions = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let sessions = Arc::clone(&sessions);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("agent-socket".into())
                .spawn(move || accept_loop(listener, sessions, stop))?
        };
        Ok(AgentServer {
            socket: socket.to_path_buf(),
            sessions,
            stop,
            thread: Some(thread),
        })
    }

    /// Serve `session` to hook processes started with `JUJU_CONTEXT_ID=<context_id>`.
    pub fn register(&self, context_id: &str, session: Arc<Session>) {
        lock(&self.sessions).insert(context_id.to_string(), session);
    }

    /// Stop serving a context (the hook has exited).
    pub fn unregister(&self, context_id: &str) {
        lock(&self.sessions).remove(context_id);
    }

    /// The socket path, for `JUJU_AGENT_SOCKET_ADDRESS`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for AgentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag. If the socket file is
        // already gone (its directory was removed first), the thread cannot be woken:
        // leave it parked in accept rather than hang here.
        if UnixStream::connect(&self.socket).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: UnixListener, sessions: Sessions, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let sessions = Arc::clone(&sessions);
        // A connection per tool process; each gets its own thread so a slow client
        // never blocks another hook's tools.
        let _ = std::thread::Builder::new()
            .name("agent-conn".into())
            .spawn(move || serve_conn(conn, &sessions));
    }
}

fn serve_conn(conn: UnixStream, sessions: &Sessions) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let reader = BufReader::new(conn);
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let out = handle_line(&line, sessions);
        let Ok(mut text) = serde_json::to_string(&WireOutput::from(&out)) else {
            return;
        };
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

fn handle_line(line: &str, sessions: &Sessions) -> ToolOutput {
    let req: ToolRequest = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(1, &format!("bad request: {e}")),
    };
    let Some(session) = lock(sessions).get(&req.context_id).cloned() else {
        return ToolOutput::error(
            1,
            &format!("bad request: unknown context {:?}", req.context_id),
        );
    };
    let Some(stdin) = b64::decode(&req.stdin) else {
        return ToolOutput::error(1, "bad request: stdin is not base64");
    };
    run_tool(&session, &req.tool, &req.args, &stdin, &req.cwd)
}

/// Send one request to an agent socket and wait for the answer.
pub fn call_agent(socket: &Path, req: &ToolRequest) -> io::Result<ToolOutput> {
    let mut conn = UnixStream::connect(socket)?;
    let mut text = serde_json::to_string(req).map_err(io::Error::other)?;
    text.push('\n');
    conn.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line)?;
    let wire: WireOutput = serde_json::from_str(&line).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from the unit agent: {e}"),
        )
    })?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad base64 from the unit agent");
    Ok(ToolOutput {
        stdout: b64::decode(&wire.stdout).ok_or_else(bad)?,
        stderr: b64::decode(&wire.stderr).ok_or_else(bad)?,
        code: wire.code,
    })
}

/// Does the tool read its stdin (`--file -` or `--file=-`)?
fn wants_stdin(args: &[String]) -> bool {
    args.iter().any(|a| a == "--file=-") || args.windows(2).any(|w| w[0] == "--file" && w[1] == "-")
}

/// If this process was started as a hook tool (argv\[0\]'s basename is in [`TOOL_NAMES`]),
/// run it against the unit agent and return its exit code; otherwise `None`.
pub fn tool_main_if_tool() -> Option<i32> {
    let mut argv = std::env::args_os();
    let argv0 = argv.next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    if !TOOL_NAMES.contains(&name.as_str()) {
        return None;
    }
    let args: Vec<String> = argv.map(|a| a.to_string_lossy().into_owned()).collect();
    let out = run_client(&name, args);
    let _ = io::stdout().write_all(&out.stdout);
    let _ = io::stdout().flush();
    let _ = io::stderr().write_all(&out.stderr);
    Some(out.code)
}

fn run_client(tool: &str, args: Vec<String>) -> ToolOutput {
    let cannot =
        |why: &str| ToolOutput::error(1, &format!("cannot connect to the unit agent: {why}"));
    let Some(socket) = std::env::var_os("JUJU_AGENT_SOCKET_ADDRESS") else {
        return cannot("JUJU_AGENT_SOCKET_ADDRESS is not set");
    };
    let context_id = std::env::var("JUJU_CONTEXT_ID").unwrap_or_default();
    let mut stdin = Vec::new();
    if wants_stdin(&args) {
        if let Err(e) = io::stdin().read_to_end(&mut stdin) {
            return ToolOutput::error(1, &format!("cannot read stdin: {e}"));
        }
    }
    let req = ToolRequest {
        context_id,
        tool: tool.to_string(),
        args,
        stdin: b64::encode(&stdin),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    };
    match call_agent(Path::new(&socket), &req) {
        Ok(out) => out,
        Err(e) => cannot(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::world::{CharmMeta, HookInfo, World};

    #[test]
    fn serves_registered_contexts_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::new("m");
        w.add_app("a", CharmMeta::default()).unwrap();
        w.add_unit("a").unwrap();
        w.set_leader("a/0");
        let world = Arc::new(Mutex::new(w));
        let server = AgentServer::start(&dir.path().join("agent.socket")).unwrap();
        server.register(
            "ctx-1",
            Arc::new(World::session(&world, "a/0", HookInfo::default())),
        );
        let mut req = ToolRequest {
            context_id: "ctx-1".into(),
            tool: "is-leader".into(),
            args: vec!["--format=json".into()],
            stdin: String::new(),
            cwd: dir.path().to_path_buf(),
        };
        let out = call_agent(server.socket(), &req).unwrap();
        assert_eq!((out.stdout.as_slice(), out.code), (&b"true\n"[..], 0));
        server.unregister("ctx-1");
        let out = call_agent(server.socket(), &req).unwrap();
        assert_eq!(out.code, 1);
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown context"));
        req.context_id = "ctx-2".into();
        let path = server.socket().to_path_buf();
        drop(server);
        assert!(!path.exists(), "socket removed on drop");
    }

    #[test]
    fn dropping_after_the_socket_file_vanished_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.socket");
        let server = AgentServer::start(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            let _ = tx.send(());
        });
        assert!(rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn stdin_is_read_only_for_file_dash() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(wants_stdin(&s(&["-r", "1", "--file", "-"])));
        assert!(wants_stdin(&s(&["--file=-"])));
        assert!(!wants_stdin(&s(&["--file", "x.yaml", "-"])));
    }
}
