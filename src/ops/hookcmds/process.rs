//! The production [`super::HookTools`]: spawns the hook tools Juju puts on `PATH`.
//!
//! Rules kept here (runtime contract, section 2):
//! - tools are run by bare name, with stdin closed unless we send data;
//! - `--format=json` wherever the tool has it, and the JSON is parsed into typed values;
//! - data never travels on argv: relation and state data go on stdin (`--file -`), secret
//!   content through 0600 temp files passed as `key#file=<path>` and removed afterwards;
//! - a failure becomes a [`HookError`] through [`HookError::classify`] (exit code + stderr).

use super::{
    AppStatus, GoalState, HookError, HookResult, HookTools, LogLevel, NetworkInfo, Port,
    SecretInfo, SecretOptions, SecretQuery, StatusName, StatusValue, StorageInfo,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longer log messages are split into several `juju-log` calls.
const MAX_LOG_BYTES: usize = 131_071;

/// Runs the real hook tools. Stateless apart from a call counter.
#[derive(Debug, Default)]
pub struct ProcessHookTools {
    /// `PATH` for the tools (tests point it at a dir of fakes); `None` = inherit.
    path: Option<OsString>,
    /// Extra environment for the tools (tests: the agent socket and context id).
    envs: Vec<(OsString, OsString)>,
    calls: AtomicU64,
}

/// Temp files holding secret values; removed when dropped, whatever happened.
struct SecretFiles(Vec<PathBuf>);

impl Drop for SecretFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn spawn_err(tool: &str, e: impl std::fmt::Display) -> HookError {
    HookError::Spawn {
        tool: tool.into(),
        message: e.to_string(),
    }
}

fn bad_output(tool: &str, e: impl std::fmt::Display) -> HookError {
    HookError::BadOutput {
        tool: tool.into(),
        message: e.to_string(),
    }
}

impl ProcessHookTools {
    /// Tools found on the inherited `PATH` (how Juju runs a charm).
    pub fn new() -> Self {
        Self::default()
    }

    /// Tools found on `path` (a `PATH`-style list, or a single directory).
    pub fn with_path(path: impl Into<OsString>) -> Self {
        Self {
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// Also set `key=value` in the tools' environment (builder style).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// How many tool processes this instance has started.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Run `tool args...`, feeding `stdin` if given; stdout on success.
    fn run(&self, tool: &str, args: &[String], stdin: Option<&[u8]>) -> HookResult<Vec<u8>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &self.path {
            // std looks the program up in the child's PATH when it was changed.
            cmd.env("PATH", p);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().map_err(|e| spawn_err(tool, e))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A tool that exits early closes the pipe; its exit status tells the story.
            let _ = pipe.write_all(data);
        }
        let out = child.wait_with_output().map_err(|e| spawn_err(tool, e))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            let code = out.status.code().unwrap_or(-1);
            Err(HookError::classify(
                tool,
                code,
                &String::from_utf8_lossy(&out.stderr),
            ))
        }
    }

    fn json<T: DeserializeOwned>(
        &self,
        tool: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> HookResult<T> {
        let out = self.run(tool, args, stdin)?;
        serde_json::from_slice(&out).map_err(|e| bad_output(tool, e))
    }

    /// Write each value to its own 0600 file; `key#file=<path>` arguments for them.
    fn secret_args(
        tool: &str,
        content: &BTreeMap<String, String>,
    ) -> HookResult<(Vec<String>, SecretFiles)> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let mut files = SecretFiles(Vec::new());
        let mut args = Vec::new();
        for (key, value) in content {
            // Unique per process and call; `create_new` refuses to reuse an existing file.
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = dir.join(format!(
                ".hook-secret-{}-{}-{nanos}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| spawn_err(tool, format!("cannot write secret value: {e}")))?;
            files.0.push(path.clone());
            f.write_all(value.as_bytes())
                .map_err(|e| spawn_err(tool, format!("cannot write secret value: {e}")))?;
            args.push(format!("{key}#file={}", path.display()));
        }
        Ok((args, files))
    }

    fn secret_opt_args(opts: &SecretOptions) -> Vec<String> {
        let mut a = Vec::new();
        for (flag, v) in [
            ("--label", &opts.label),
            ("--description", &opts.description),
            ("--expire", &opts.expire),
            ("--rotate", &opts.rotate),
            ("--owner", &opts.owner),
        ] {
            if let Some(v) = v {
                a.push(format!("{flag}={v}"));
            }
        }
        a
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
}

impl RawStatus {
    fn value(self) -> StatusValue {
        StatusValue::new(
            StatusName::parse(&self.status).unwrap_or(StatusName::Unknown),
            self.message,
        )
    }
}

#[derive(Deserialize)]
struct RawAppStatus {
    #[serde(rename = "application-status")]
    app: RawAppInner,
}

#[derive(Deserialize)]
struct RawAppInner {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    units: BTreeMap<String, RawStatus>,
}

/// `db:3` or `3` → 3.
fn relation_id_of(s: &str) -> Option<u32> {
    s.rsplit(':').next()?.parse().ok()
}

/// Split into pieces of at most `max` bytes, on char boundaries. (The limit is Linux's
/// per-argument `MAX_ARG_STRLEN`, which counts bytes: ops counts chars and can overflow it
/// with non-ASCII text.)
fn split_message(message: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = message;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    parts.push(rest);
    parts
}

impl HookTools for ProcessHookTools {
    fn juju_log(&self, level: LogLevel, message: &str) -> HookResult<()> {
        for part in split_message(message, MAX_LOG_BYTES) {
            self.run(
                "juju-log",
                &[s("--log-level"), s(level.as_str()), s("--"), s(part)],
                None,
            )?;
        }
        Ok(())
    }

    fn status_set(&self, status: &StatusValue, application: bool) -> HookResult<()> {
        let app = if application { "True" } else { "False" };
        self.run(
            "status-set",
            &[
                format!("--application={app}"),
                s(status.status.as_str()),
                s("--"),
                status.message.clone(),
            ],
            None,
        )
        .map(drop)
    }

    fn status_get(&self) -> HookResult<StatusValue> {
        let raw: RawStatus = self.json(
            "status-get",
            &[s("--include-data"), s("--format=json")],
            None,
        )?;
        Ok(raw.value())
    }

    fn app_status_get(&self) -> HookResult<AppStatus> {
        let raw: RawAppStatus = self.json(
            "status-get",
            &[s("--application"), s("--include-data"), s("--format=json")],
            None,
        )?;
        Ok(AppStatus {
            status: RawStatus {
                status: raw.app.status,
                message: raw.app.message,
            }
            .value(),
            units: raw
                .app
                .units
                .into_iter()
                .map(|(u, st)| (u, st.value()))
                .collect(),
        })
    }

    fn application_version_set(&self, version: &str) -> HookResult<()> {
        self.run("application-version-set", &[s("--"), s(version)], None)
            .map(drop)
    }

    fn is_leader(&self) -> HookResult<bool> {
        self.json("is-leader", &[s("--format=json")], None)
    }

    fn config_get(&self) -> HookResult<BTreeMap<String, serde_json::Value>> {
        let v: Option<BTreeMap<String, serde_json::Value>> =
            self.json("config-get", &[s("--all"), s("--format=json")], None)?;
        Ok(v.unwrap_or_default())
    }

    fn goal_state(&self) -> HookResult<GoalState> {
        self.json("goal-state", &[s("--format=json")], None)
    }

    fn relation_ids(&self, endpoint: &str) -> HookResult<Vec<u32>> {
        let ids: Option<Vec<String>> =
            self.json("relation-ids", &[s(endpoint), s("--format=json")], None)?;
        ids.unwrap_or_default()
            .iter()
            .map(|i| relation_id_of(i).ok_or_else(|| bad_output("relation-ids", i)))
            .collect()
    }

    fn relation_list(&self, relation_id: u32) -> HookResult<Vec<String>> {
        let v: Option<Vec<String>> = self.json(
            "relation-list",
            &[s("-r"), relation_id.to_string(), s("--format=json")],
            None,
        )?;
        Ok(v.unwrap_or_default())
    }

    fn relation_list_app(&self, relation_id: u32) -> HookResult<Option<String>> {
        self.json(
            "relation-list",
            &[
                s("-r"),
                relation_id.to_string(),
                s("--app"),
                s("--format=json"),
            ],
            None,
        )
    }

    fn relation_get(
        &self,
        relation_id: u32,
        member: &str,
        app: bool,
    ) -> HookResult<BTreeMap<String, String>> {
        let mut args = vec![s("--format=json"), s("-r"), relation_id.to_string()];
        if app {
            args.push(s("--app"));
        }
        args.push(s("-"));
        args.push(s(member));
        let v: Option<BTreeMap<String, String>> = self.json("relation-get", &args, None)?;
        Ok(v.unwrap_or_default())
    }

    fn relation_set(
        &self,
        relation_id: u32,
        data: &BTreeMap<String, String>,
        app: bool,
    ) -> HookResult<()> {
        let mut args = vec![s("-r"), relation_id.to_string()];
        if app {
            args.push(s("--app"));
        }
        args.push(s("--file"));
        args.push(s("-"));
        let body = serde_json::to_vec(data).map_err(|e| bad_output("relation-set", e))?;
        self.run("relation-set", &args, Some(&body)).map(drop)
    }

    fn relation_model_get(&self, relation_id: u32) -> HookResult<String> {
        #[derive(Deserialize)]
        struct Uuid {
            uuid: String,
        }
        let v: Uuid = self.json(
            "relation-model-get",
            &[s("-r"), relation_id.to_string(), s("--format=json")],
            None,
        )?;
        Ok(v.uuid)
    }

    fn network_get(&self, binding: &str, relation_id: Option<u32>) -> HookResult<NetworkInfo> {
        let mut args = vec![s(binding)];
        if let Some(id) = relation_id {
            args.push(s("-r"));
            args.push(id.to_string());
        }
        args.push(s("--format=json"));
        self.json("network-get", &args, None)
    }

    fn action_get(&self) -> HookResult<BTreeMap<String, serde_json::Value>> {
        let v: Option<BTreeMap<String, serde_json::Value>> =
            self.json("action-get", &[s("--format=json")], None)?;
        Ok(v.unwrap_or_default())
    }

    fn action_set(&self, results: &BTreeMap<String, String>) -> HookResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        // action-set has no --file: results go on argv (they are meant for the operator).
        let args: Vec<String> = results.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.run("action-set", &args, None).map(drop)
    }

    fn action_fail(&self, message: &str) -> HookResult<()> {
        self.run("action-fail", &[s("--"), s(message)], None)
            .map(drop)
    }

    fn action_log(&self, message: &str) -> HookResult<()> {
        self.run("action-log", &[s("--"), s(message)], None)
            .map(drop)
    }

    fn state_get(&self) -> HookResult<BTreeMap<String, String>> {
        let v: Option<BTreeMap<String, String>> =
            self.json("state-get", &[s("--format=json")], None)?;
        Ok(v.unwrap_or_default())
    }

    fn state_set(&self, data: &BTreeMap<String, String>) -> HookResult<()> {
        let body = serde_json::to_vec(data).map_err(|e| bad_output("state-set", e))?;
        self.run("state-set", &[s("--file"), s("-")], Some(&body))
            .map(drop)
    }

    fn state_delete(&self, key: &str) -> HookResult<()> {
        self.run("state-delete", &[s("--"), s(key)], None).map(drop)
    }

    fn open_port(&self, port: &Port) -> HookResult<()> {
        self.run("open-port", &[port.to_string()], None).map(drop)
    }

    fn close_port(&self, port: &Port) -> HookResult<()> {
        self.run("close-port", &[port.to_string()], None).map(drop)
    }

    fn opened_ports(&self) -> HookResult<Vec<Port>> {
        let v: Option<Vec<String>> = self.json("opened-ports", &[s("--format=json")], None)?;
        // Ranges (`1000-2000/udp`) cannot be opened on Kubernetes; skip what we cannot model.
        Ok(v.unwrap_or_default()
            .iter()
            .filter_map(|p| Port::parse(p))
            .collect())
    }

    fn storage_list(&self, name: Option<&str>) -> HookResult<Vec<String>> {
        let mut args = vec![s("--format=json")];
        if let Some(n) = name {
            args.push(s(n));
        }
        let v: Option<Vec<String>> = self.json("storage-list", &args, None)?;
        Ok(v.unwrap_or_default())
    }

    fn storage_get(&self, id: Option<&str>) -> HookResult<StorageInfo> {
        let mut args = vec![s("--format=json")];
        if let Some(id) = id {
            args.push(s("-s"));
            args.push(s(id));
        }
        self.json("storage-get", &args, None)
    }

    fn resource_get(&self, name: &str) -> HookResult<PathBuf> {
        let out = self.run("resource-get", &[s(name)], None)?;
        let path = String::from_utf8_lossy(&out).trim().to_string();
        if path.is_empty() {
            return Err(bad_output("resource-get", "empty path"));
        }
        Ok(PathBuf::from(path))
    }

    fn secret_add(
        &self,
        content: &BTreeMap<String, String>,
        opts: &SecretOptions,
    ) -> HookResult<String> {
        let (content_args, _files) = Self::secret_args("secret-add", content)?;
        let mut args = Self::secret_opt_args(opts);
        args.extend(content_args);
        let out = self.run("secret-add", &args, None)?;
        let uri = String::from_utf8_lossy(&out).trim().to_string();
        if uri.is_empty() {
            return Err(bad_output("secret-add", "no secret URI printed"));
        }
        Ok(uri)
    }

    fn secret_get(&self, query: &SecretQuery) -> HookResult<BTreeMap<String, String>> {
        let mut args = Vec::new();
        if let Some(id) = &query.id {
            args.push(id.clone());
        }
        if let Some(l) = &query.label {
            args.push(format!("--label={l}"));
        }
        if query.peek {
            args.push(s("--peek"));
        }
        if query.refresh {
            args.push(s("--refresh"));
        }
        args.push(s("--format=json"));
        let v: Option<BTreeMap<String, String>> = self.json("secret-get", &args, None)?;
        Ok(v.unwrap_or_default())
    }

    fn secret_info_get(&self, query: &SecretQuery) -> HookResult<SecretInfo> {
        let mut args = Vec::new();
        match (&query.id, &query.label) {
            (Some(id), _) => args.push(id.clone()),
            (None, Some(l)) => args.push(format!("--label={l}")),
            (None, None) => {}
        }
        args.push(s("--format=json"));
        let v: BTreeMap<String, SecretInfo> = self.json("secret-info-get", &args, None)?;
        let (id, mut info) = v
            .into_iter()
            .next()
            .ok_or_else(|| bad_output("secret-info-get", "empty answer"))?;
        info.id = id;
        Ok(info)
    }

    fn secret_set(
        &self,
        id: &str,
        content: Option<&BTreeMap<String, String>>,
        opts: &SecretOptions,
    ) -> HookResult<()> {
        let mut args = vec![s(id)];
        args.extend(Self::secret_opt_args(opts));
        let _files = match content {
            Some(c) => {
                let (content_args, files) = Self::secret_args("secret-set", c)?;
                args.extend(content_args);
                Some(files)
            }
            None => None,
        };
        self.run("secret-set", &args, None).map(drop)
    }

    fn secret_remove(&self, id: &str, revision: Option<u64>) -> HookResult<()> {
        let mut args = vec![s(id)];
        if let Some(r) = revision {
            args.push(format!("--revision={r}"));
        }
        self.run("secret-remove", &args, None).map(drop)
    }

    fn secret_grant(&self, id: &str, relation_id: u32, unit: Option<&str>) -> HookResult<()> {
        let mut args = vec![s(id), s("-r"), relation_id.to_string()];
        if let Some(u) = unit {
            args.push(format!("--unit={u}"));
        }
        self.run("secret-grant", &args, None).map(drop)
    }

    fn secret_revoke(
        &self,
        id: &str,
        relation_id: Option<u32>,
        app: Option<&str>,
        unit: Option<&str>,
    ) -> HookResult<()> {
        let mut args = vec![s(id)];
        if let Some(r) = relation_id {
            args.push(s("-r"));
            args.push(r.to_string());
        }
        if let Some(a) = app {
            args.push(format!("--app={a}"));
        }
        if let Some(u) = unit {
            args.push(format!("--unit={u}"));
        }
        self.run("secret-revoke", &args, None).map(drop)
    }

    fn secret_ids(&self) -> HookResult<Vec<String>> {
        let v: Option<Vec<String>> = self.json("secret-ids", &[s("--format=json")], None)?;
        Ok(v.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// A dir of fake tools: each records its argv (one arg per line) and stdin, then runs
    /// `body` (a shell snippet) to produce output and an exit status.
    struct FakeTools {
        dir: tempfile::TempDir,
    }

    impl FakeTools {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn tool(&self, name: &str, body: &str) {
            let log = self.dir.path().join(format!("{name}.log"));
            let script = format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{log}.args'\n\
                 cat > '{log}.stdin'\n\
                 for a in \"$@\"; do case \"$a\" in *'#file='*) cat \"${{a#*#file=}}\" >> '{log}.files'; \
                 stat -c '%a' \"${{a#*#file=}}\" >> '{log}.modes';; esac; done\n{body}\n",
                log = log.display()
            );
            let p = self.dir.path().join(name);
            std::fs::write(&p, script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn tools(&self) -> ProcessHookTools {
            // The fakes need coreutils (cat, stat) from the normal PATH too.
            let path = format!("{}:/usr/bin:/bin", self.dir.path().display());
            ProcessHookTools::with_path(path)
        }

        fn read(&self, name: &str, what: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(format!("{name}.log.{what}")))
                .unwrap_or_default()
        }

        fn args(&self, name: &str) -> Vec<String> {
            self.read(name, "args")
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    #[test]
    fn relation_set_sends_json_on_stdin_not_argv() {
        let f = FakeTools::new();
        f.tool("relation-set", "exit 0");
        let t = f.tools();
        let data = BTreeMap::from([("password-ref".to_string(), "secret:x".to_string())]);
        t.relation_set(3, &data, true).unwrap();
        assert_eq!(
            f.args("relation-set"),
            vec!["-r", "3", "--app", "--file", "-"]
        );
        assert_eq!(
            f.read("relation-set", "stdin"),
            "{\"password-ref\":\"secret:x\"}"
        );
        assert_eq!(t.calls(), 1);
    }

    #[test]
    fn secret_values_go_through_private_files_that_are_removed() {
        let f = FakeTools::new();
        f.tool("secret-add", "echo secret:abc");
        let t = f.tools();
        let content = BTreeMap::from([("password".to_string(), "hunter2".to_string())]);
        let uri = t
            .secret_add(
                &content,
                &SecretOptions {
                    label: Some("admin".into()),
                    ..SecretOptions::default()
                },
            )
            .unwrap();
        assert_eq!(uri, "secret:abc");
        let args = f.args("secret-add");
        assert_eq!(args[0], "--label=admin");
        assert!(args[1].starts_with("password#file="), "{args:?}");
        assert!(
            !args.iter().any(|a| a.contains("hunter2")),
            "value leaked to argv"
        );
        assert_eq!(f.read("secret-add", "files"), "hunter2");
        assert_eq!(f.read("secret-add", "modes").trim(), "600");
        let path = args[1].trim_start_matches("password#file=");
        assert!(!Path::new(path).exists(), "temp file left behind");
    }

    #[test]
    fn errors_are_classified_from_exit_code_and_stderr() {
        let f = FakeTools::new();
        f.tool(
            "relation-set",
            "echo 'ERROR cannot write relation settings' >&2; exit 1",
        );
        f.tool("relation-get", "echo 'ERROR permission denied' >&2; exit 1");
        f.tool(
            "relation-list",
            "echo 'ERROR invalid value \"9\" for option -r: relation not found' >&2; exit 2",
        );
        f.tool(
            "secret-get",
            "echo 'ERROR secret \"x\" not found' >&2; exit 1",
        );
        f.tool(
            "status-set",
            "echo 'ERROR invalid status \"x\"' >&2; exit 2",
        );
        let t = f.tools();
        assert!(matches!(
            t.relation_set(1, &BTreeMap::new(), true),
            Err(HookError::NotLeader { .. })
        ));
        assert!(matches!(
            t.relation_get(1, "a", true),
            Err(HookError::PermissionDenied { .. })
        ));
        assert!(matches!(
            t.relation_list(9),
            Err(HookError::RelationNotFound { .. })
        ));
        assert!(t
            .secret_get(&SecretQuery::by_id("x"))
            .unwrap_err()
            .is_not_found());
        assert!(matches!(
            t.status_set(&StatusValue::active("x"), false),
            Err(HookError::Usage { .. })
        ));
        let missing = ProcessHookTools::with_path(f.dir.path().join("nowhere"));
        assert!(matches!(missing.is_leader(), Err(HookError::Spawn { .. })));
    }

    #[test]
    fn argv_shapes_and_json_parsing() {
        let f = FakeTools::new();
        f.tool("juju-log", "exit 0");
        f.tool("status-set", "exit 0");
        f.tool("relation-get", "echo '{\"a\":\"b\"}'");
        f.tool("relation-ids", "echo '[\"db:3\",\"db:7\"]'");
        f.tool("status-get", "echo '{\"application-status\":{\"status\":\"active\",\"message\":\"m\",\"status-data\":{},\"units\":{\"a/0\":{\"status\":\"waiting\",\"message\":\"\"}}}}'");
        f.tool("state-get", "echo null");
        f.tool(
            "secret-info-get",
            "echo '{\"cabc\":{\"revision\":2,\"label\":\"l\",\"owner\":\"application\"}}'",
        );
        let t = f.tools();
        t.juju_log(LogLevel::Warning, "-starts with dash").unwrap();
        assert_eq!(
            f.args("juju-log"),
            vec!["--log-level", "WARNING", "--", "-starts with dash"]
        );
        t.status_set(&StatusValue::blocked("no quorum"), true)
            .unwrap();
        assert_eq!(
            f.args("status-set"),
            vec!["--application=True", "blocked", "--", "no quorum"]
        );
        assert_eq!(t.relation_get(3, "app/0", false).unwrap()["a"], "b");
        assert_eq!(
            f.args("relation-get"),
            vec!["--format=json", "-r", "3", "-", "app/0"]
        );
        assert_eq!(t.relation_ids("db").unwrap(), vec![3, 7]);
        let app = t.app_status_get().unwrap();
        assert_eq!(app.status, StatusValue::active("m"));
        assert_eq!(app.units["a/0"].status, StatusName::Waiting);
        assert!(t.state_get().unwrap().is_empty());
        let info = t.secret_info_get(&SecretQuery::by_label("l")).unwrap();
        assert_eq!((info.id.as_str(), info.revision), ("cabc", 2));
        assert_eq!(
            f.args("secret-info-get"),
            vec!["--label=l", "--format=json"]
        );
        assert_eq!(
            f.read("state-get", "stdin"),
            "",
            "stdin is null when not sending data"
        );
    }

    #[test]
    fn long_log_messages_are_split() {
        let f = FakeTools::new();
        f.tool("juju-log", "exit 0");
        let t = f.tools();
        // 2-byte chars: the byte limit, not the char count, decides.
        let msg = "é".repeat(MAX_LOG_BYTES / 2 + 5);
        t.juju_log(LogLevel::Info, &msg).unwrap();
        assert_eq!(t.calls(), 2);
        let parts = split_message(&msg, MAX_LOG_BYTES);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].len() <= MAX_LOG_BYTES);
        assert_eq!(parts.concat(), msg);
    }
}
