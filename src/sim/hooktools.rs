//! The hook tools' command lines over a [`Session`]: argv, stdin and cwd in; stdout, stderr
//! and an exit code out, as Juju's `jujuc` commands produce them.
//!
//! Parsing follows Go's `gnuflag` as Juju uses it: `--flag value` and `--flag=value`, bare
//! booleans or `--flag=true|false|True|False|1|0`, `--` ends the options, flags may be
//! interleaved with positionals (ops 2.3 puts `--format=json` last), `-r 3` and `-r ep:3`.
//! Usage errors exit 2, runtime errors exit 1, both with `ERROR <message>` on stderr.
//!
//! Each invocation calls exactly one [`HookTools`] method (or one session method for the
//! tools outside the trait), so [`Session::calls`] counts tool processes.

use crate::ops::hookcmds::{
    HookError, HookTools, LogLevel, Port, SecretOptions, SecretQuery, StatusName, StatusValue,
};
use crate::ops::testing::world::Session;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Every tool the multi-call binary answers to (its argv\[0\] basename).
pub const TOOL_NAMES: &[&str] = &[
    "juju-log",
    "status-set",
    "status-get",
    "is-leader",
    "config-get",
    "action-get",
    "action-set",
    "action-fail",
    "action-log",
    "application-version-set",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "relation-model-get",
    "network-get",
    "open-port",
    "close-port",
    "opened-ports",
    "goal-state",
    "state-get",
    "state-set",
    "state-delete",
    "secret-add",
    "secret-get",
    "secret-info-get",
    "secret-set",
    "secret-remove",
    "secret-grant",
    "secret-revoke",
    "secret-ids",
    "storage-list",
    "storage-get",
    "resource-get",
    "leader-get",
    "leader-set",
    "credential-get",
];

/// What a tool process prints and returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
}

impl ToolOutput {
    /// Exit `code` with `ERROR <message>` on stderr.
    pub fn error(code: i32, message: &str) -> ToolOutput {
        ToolOutput {
            stdout: Vec::new(),
            stderr: format!("ERROR {message}\n").into_bytes(),
            code,
        }
    }
}

/// Why a tool failed: usage errors exit 2, the rest exit 1.
enum Fail {
    Usage(String),
    Run(String),
}

impl From<HookError> for Fail {
    fn from(e: HookError) -> Fail {
        match e {
            HookError::Usage { message, .. } | HookError::RelationNotFound { message, .. } => {
                Fail::Usage(message)
            }
            HookError::NotFound { message, .. }
            | HookError::PermissionDenied { message, .. }
            | HookError::NotLeader { message, .. }
            | HookError::Failed { message, .. }
            | HookError::Spawn { message, .. }
            | HookError::BadOutput { message, .. } => Fail::Run(message),
        }
    }
}

type Res<T> = Result<T, Fail>;

fn usage<T>(m: impl Into<String>) -> Res<T> {
    Err(Fail::Usage(m.into()))
}

/// A tool's printed result: formatted data, or raw text (secret-add, resource-get).
enum Out {
    None,
    Data(Value),
    Raw(String),
}

#[derive(Clone, Copy, PartialEq)]
enum Fmt {
    Smart,
    Yaml,
    Json,
}

struct FlagSpec {
    names: &'static [&'static str],
    takes_value: bool,
}

const fn val(names: &'static [&'static str]) -> FlagSpec {
    FlagSpec {
        names,
        takes_value: true,
    }
}
const fn flag(names: &'static [&'static str]) -> FlagSpec {
    FlagSpec {
        names,
        takes_value: false,
    }
}

/// Parsed command line: flags by canonical (first) name, positionals in order.
struct Args {
    flags: BTreeMap<&'static str, String>,
    pos: Vec<String>,
}

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }
    fn on(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn parse_args(specs: &[FlagSpec], args: &[String]) -> Res<Args> {
    let mut out = Args {
        flags: BTreeMap::new(),
        pos: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.pos.extend(args[i..].iter().cloned());
            break;
        }
        let (name, inline) = if let Some(rest) = a.strip_prefix("--") {
            match rest.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (rest.to_string(), None),
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let rest = &a[1..];
            let mut chars = rest.chars();
            let first = chars.next().map(String::from).unwrap_or_default();
            let tail: String = chars.collect();
            match tail.strip_prefix('=') {
                Some(v) => (first, Some(v.to_string())),
                None if tail.is_empty() => (first, None),
                None => (first, Some(tail)),
            }
        } else {
            out.pos.push(a.clone());
            continue;
        };
        let dashes = if a.starts_with("--") { "--" } else { "-" };
        let Some(spec) = specs.iter().find(|s| s.names.contains(&name.as_str())) else {
            return usage(format!("flag provided but not defined: {dashes}{name}"));
        };
        let canonical = spec.names[0];
        let value = if spec.takes_value {
            match inline {
                Some(v) => v,
                None => {
                    if i >= args.len() {
                        return usage(format!("flag needs an argument: {dashes}{name}"));
                    }
                    i += 1;
                    args[i - 1].clone()
                }
            }
        } else {
            match inline {
                None => "true".to_string(),
                Some(v) => match parse_bool(&v) {
                    Some(b) => b.to_string(),
                    None => {
                        return usage(format!(
                            "invalid boolean value {v:?} for flag {dashes}{name}"
                        ))
                    }
                },
            }
        };
        out.flags.insert(canonical, value);
    }
    Ok(out)
}

fn render(value: &Value, fmt: Fmt) -> Vec<u8> {
    match fmt {
        Fmt::Json => {
            let mut s = value.to_string();
            s.push('\n');
            s.into_bytes()
        }
        Fmt::Yaml => match value {
            Value::Null => Vec::new(),
            v => serde_yaml::to_string(v).unwrap_or_default().into_bytes(),
        },
        Fmt::Smart => {
            let text = match value {
                Value::Null => return Vec::new(),
                Value::String(s) => s.clone(),
                Value::Bool(true) => "True".into(),
                Value::Bool(false) => "False".into(),
                Value::Number(n) => n.to_string(),
                Value::Array(items) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n"),
                v => serde_yaml::to_string(v).unwrap_or_default(),
            };
            let mut text = text;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.into_bytes()
        }
    }
}

/// How a tool formats: (default, allowed), or no `--format` at all.
fn format_of(tool: &str) -> Option<(Fmt, &'static [&'static str])> {
    const ALL: &[&str] = &["smart", "yaml", "json"];
    const YJ: &[&str] = &["yaml", "json"];
    match tool {
        "secret-get" | "secret-info-get" | "goal-state" | "secret-ids" => Some((Fmt::Yaml, YJ)),
        "status-get" | "is-leader" | "config-get" | "action-get" | "relation-ids"
        | "relation-list" | "relation-get" | "relation-model-get" | "network-get"
        | "opened-ports" | "state-get" | "storage-list" | "storage-get" | "leader-get"
        | "credential-get" => Some((Fmt::Smart, ALL)),
        _ => None,
    }
}

fn flags_of(tool: &str) -> Vec<FlagSpec> {
    let secret_opts = || {
        vec![
            val(&["label"]),
            val(&["description"]),
            val(&["expire"]),
            val(&["rotate"]),
            val(&["owner"]),
            val(&["file"]),
        ]
    };
    let mut f = match tool {
        "juju-log" => vec![val(&["log-level", "l"]), flag(&["debug"])],
        "status-set" => vec![flag(&["application"])],
        "status-get" => vec![flag(&["include-data"]), flag(&["application"])],
        "config-get" => vec![flag(&["all", "a"])],
        "relation-list" => vec![val(&["relation", "r"]), flag(&["app"])],
        "relation-get" => vec![val(&["relation", "r"]), flag(&["app"])],
        "relation-set" => vec![val(&["relation", "r"]), flag(&["app"]), val(&["file"])],
        "relation-model-get" => vec![val(&["relation", "r"])],
        "network-get" => vec![
            val(&["relation", "r"]),
            flag(&["bind-address"]),
            flag(&["ingress-address"]),
            flag(&["egress-subnets"]),
            flag(&["primary-address"]),
        ],
        "open-port" | "close-port" => vec![val(&["endpoints"])],
        "opened-ports" => vec![flag(&["endpoints"])],
        "state-get" => vec![flag(&["strict"])],
        "state-set" => vec![val(&["file"])],
        "secret-add" | "secret-set" => secret_opts(),
        "secret-get" => vec![val(&["label"]), flag(&["peek"]), flag(&["refresh"])],
        "secret-info-get" => vec![val(&["label"])],
        "secret-remove" => vec![val(&["revision"])],
        "secret-grant" => vec![val(&["relation", "r"]), val(&["unit"])],
        "secret-revoke" => vec![val(&["relation", "r"]), val(&["app"]), val(&["unit"])],
        "storage-get" => vec![val(&["storage", "s"])],
        _ => Vec::new(),
    };
    if format_of(tool).is_some() {
        f.push(val(&["format"]));
        f.push(val(&["output", "o"]));
    }
    f
}

/// Run one tool against `session`. Never panics on bad input; every failure is an exit code.
pub fn run_tool(
    session: &Session,
    tool: &str,
    args: &[String],
    stdin: &[u8],
    cwd: &Path,
) -> ToolOutput {
    if !TOOL_NAMES.contains(&tool) {
        return ToolOutput::error(1, &format!("unknown command: {tool}"));
    }
    let result = parse_args(&flags_of(tool), args).and_then(|a| {
        let fmt = match format_of(tool) {
            None => Fmt::Smart,
            Some((default, allowed)) => match a.get("format") {
                None => default,
                Some(f) if allowed.contains(&f) => match f {
                    "json" => Fmt::Json,
                    "yaml" => Fmt::Yaml,
                    _ => Fmt::Smart,
                },
                Some(f) => {
                    return usage(format!(
                        "invalid value {f:?} for option --format: unknown format {f:?}"
                    ))
                }
            },
        };
        let ctx = Ctx {
            s: session,
            stdin,
            cwd,
        };
        let out = ctx.dispatch(tool, &a)?;
        Ok((out, fmt, a.get("output").map(str::to_string)))
    });
    match result {
        Err(Fail::Usage(m)) => ToolOutput::error(2, &m),
        Err(Fail::Run(m)) => ToolOutput::error(1, &m),
        Ok((out, fmt, output)) => {
            let bytes = match out {
                Out::None => Vec::new(),
                Out::Raw(s) => format!("{s}\n").into_bytes(),
                Out::Data(v) => render(&v, fmt),
            };
            match output {
                Some(path) => match std::fs::write(cwd.join(path), &bytes) {
                    Ok(()) => ToolOutput::default(),
                    Err(e) => ToolOutput::error(1, &e.to_string()),
                },
                None => ToolOutput {
                    stdout: bytes,
                    stderr: Vec::new(),
                    code: 0,
                },
            }
        }
    }
}

struct Ctx<'a> {
    s: &'a Session,
    stdin: &'a [u8],
    cwd: &'a Path,
}

fn strings(m: BTreeMap<String, String>) -> Value {
    Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn no_extra(pos: &[String], max: usize) -> Res<()> {
    if pos.len() > max {
        return usage(format!("unrecognized args: {:?}", &pos[max..]));
    }
    Ok(())
}

/// A YAML scalar as a relation/state value.
fn scalar_string(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Null => Some(String::new()),
        _ => None,
    }
}

/// `key=value` pairs (value may be empty: deletion in relation-set).
fn kv_pairs(pos: &[String]) -> Res<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for p in pos {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                m.insert(k.to_string(), v.to_string());
            }
            _ => return usage(format!("expected \"key=value\", got {p:?}")),
        }
    }
    Ok(m)
}

impl Ctx<'_> {
    fn read_file_arg(&self, path: &str) -> Res<Vec<u8>> {
        if path == "-" {
            return Ok(self.stdin.to_vec());
        }
        std::fs::read(self.cwd.join(path)).map_err(|e| Fail::Run(format!("{path}: {e}")))
    }

    /// `--file` content: a YAML (so also JSON) map of scalars.
    fn file_map(&self, path: &str) -> Res<BTreeMap<String, String>> {
        let bytes = self.read_file_arg(path)?;
        let doc: serde_yaml::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_yaml::Value::Null
        } else {
            serde_yaml::from_slice(&bytes)
                .map_err(|e| Fail::Run(format!("cannot parse {path}: {e}")))?
        };
        let mut out = BTreeMap::new();
        match doc {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let key = scalar_string(&k)
                        .ok_or_else(|| Fail::Run(format!("{path}: expected string keys")))?;
                    let value = scalar_string(&v).ok_or_else(|| {
                        Fail::Run(format!("{path}: expected a string value for {key:?}"))
                    })?;
                    out.insert(key, value);
                }
            }
            _ => return Err(Fail::Run(format!("{path}: expected a map"))),
        }
        Ok(out)
    }

    /// `-r`/`--relation`, defaulting to the hook's relation; unknown ids exit 2.
    fn relation(&self, a: &Args, required: bool) -> Res<Option<u32>> {
        let Some(raw) = a.get("relation") else {
            if required && self.s.hook().relation_id.is_none() {
                return usage("no relation id specified");
            }
            return Ok(self.s.hook().relation_id);
        };
        let digits = raw.rsplit(':').next().unwrap_or(raw);
        let id: u32 = digits.parse().map_err(|_| {
            Fail::Usage(format!(
                "invalid value {raw:?} for option -r: invalid relation id"
            ))
        })?;
        if !self.s.knows_relation(id) {
            return usage(format!(
                "invalid value {raw:?} for option -r: relation not found"
            ));
        }
        Ok(Some(id))
    }

    fn need_relation(&self, a: &Args) -> Res<u32> {
        self.relation(a, true)?
            .ok_or_else(|| Fail::Usage("no relation id specified".into()))
    }

    fn secret_opts(&self, a: &Args) -> SecretOptions {
        SecretOptions {
            label: a.get("label").map(str::to_string),
            description: a.get("description").map(str::to_string),
            expire: a.get("expire").map(str::to_string),
            rotate: a.get("rotate").map(str::to_string),
            owner: a.get("owner").map(str::to_string),
        }
    }

    /// Secret content from `--file` and `key=value` / `key#base64=...` / `key#file=path`.
    fn secret_content(&self, a: &Args, pos: &[String]) -> Res<BTreeMap<String, String>> {
        let mut content = match a.get("file") {
            Some(p) => self.file_map(p)?,
            None => BTreeMap::new(),
        };
        for p in pos {
            let Some((k, v)) = p.split_once('=') else {
                return usage(format!("expected \"key=value\", got {p:?}"));
            };
            let (key, value) = if let Some(key) = k.strip_suffix("#base64") {
                let bytes = b64::decode(v)
                    .ok_or_else(|| Fail::Usage(format!("invalid base64 value for key {key:?}")))?;
                (key, String::from_utf8_lossy(&bytes).into_owned())
            } else if let Some(key) = k.strip_suffix("#file") {
                let bytes = std::fs::read(self.cwd.join(v)).map_err(|e| {
                    Fail::Run(format!("reading content for secret key {key:?}: {e}"))
                })?;
                (key, String::from_utf8_lossy(&bytes).into_owned())
            } else {
                (k, v.to_string())
            };
            content.insert(key.to_string(), value);
        }
        Ok(content)
    }

    fn dispatch(&self, tool: &str, a: &Args) -> Res<Out> {
        let s = self.s;
        let pos = &a.pos;
        Ok(match tool {
            "juju-log" => {
                if pos.is_empty() {
                    return usage("no message specified");
                }
                let level = if a.on("debug") {
                    LogLevel::Debug
                } else {
                    a.get("log-level").map_or(LogLevel::Info, LogLevel::parse)
                };
                let mut message = pos.join(" ");
                if let Some(id) = s.hook().relation_id {
                    if let Some(ep) = s.relation_endpoint(id) {
                        message = format!("{ep}:{id}: {message}");
                    }
                }
                s.juju_log(level, &message)?;
                Out::None
            }
            "status-set" => {
                let Some(name) = pos.first() else {
                    return usage("invalid args, require <status> [message]");
                };
                no_extra(pos, 2)?;
                let status = StatusName::parse(name).filter(StatusName::settable).ok_or_else(|| {
                    Fail::Usage(format!(
                        "invalid status {name:?}, expected one of [maintenance blocked waiting active]"
                    ))
                })?;
                let message = pos.get(1).cloned().unwrap_or_default();
                s.status_set(&StatusValue::new(status, message), a.on("application"))?;
                Out::None
            }
            "status-get" => {
                no_extra(pos, 0)?;
                let st = |v: &StatusValue| json!({"message": v.message, "status": v.status.as_str(), "status-data": {}});
                if a.on("application") {
                    let app = s.app_status_get()?;
                    let mut obj = st(&app.status);
                    let units: Map<String, Value> =
                        app.units.iter().map(|(u, v)| (u.clone(), st(v))).collect();
                    obj["units"] = Value::Object(units);
                    Out::Data(json!({ "application-status": obj }))
                } else {
                    let v = s.status_get()?;
                    if a.on("include-data") {
                        Out::Data(st(&v))
                    } else {
                        Out::Data(Value::String(v.status.as_str().into()))
                    }
                }
            }
            "is-leader" => {
                no_extra(pos, 0)?;
                Out::Data(Value::Bool(s.is_leader()?))
            }
            "config-get" => {
                no_extra(pos, 1)?;
                if let (true, Some(k)) = (a.on("all"), pos.first()) {
                    return usage(format!("cannot use argument --all together with key {k:?}"));
                }
                let cfg = s.config_get()?;
                match pos.first() {
                    Some(k) => Out::Data(cfg.get(k).cloned().unwrap_or(Value::Null)),
                    None => Out::Data(Value::Object(
                        cfg.into_iter()
                            .filter(|(_, v)| a.on("all") || !v.is_null())
                            .collect(),
                    )),
                }
            }
            "action-get" => {
                no_extra(pos, 1)?;
                let params = Value::Object(s.action_get()?.into_iter().collect());
                match pos.first() {
                    None => Out::Data(params),
                    Some(key) => {
                        let mut v = &params;
                        for seg in key.split('.') {
                            v = v.get(seg).unwrap_or(&Value::Null);
                        }
                        Out::Data(v.clone())
                    }
                }
            }
            "action-set" => {
                if pos.is_empty() {
                    return usage("no key=value pairs specified");
                }
                let mut results = BTreeMap::new();
                for p in pos {
                    let Some((k, v)) = p.split_once('=') else {
                        return usage(format!("argument {p:?} must be of the form key...=value"));
                    };
                    results.insert(k.to_string(), v.to_string());
                }
                s.action_set(&results)?;
                Out::None
            }
            "action-fail" => {
                no_extra(pos, 1)?;
                s.action_fail(pos.first().map(String::as_str).unwrap_or(""))?;
                Out::None
            }
            "action-log" => {
                if pos.is_empty() {
                    return usage("no message specified");
                }
                s.action_log(&pos.join(" "))?;
                Out::None
            }
            "application-version-set" => {
                let Some(v) = pos.first() else {
                    return usage("no version specified");
                };
                no_extra(pos, 1)?;
                s.application_version_set(v)?;
                Out::None
            }
            "relation-ids" => {
                no_extra(pos, 1)?;
                let endpoint = match pos.first() {
                    Some(e) => e.clone(),
                    None => s
                        .hook()
                        .relation_id
                        .and_then(|id| s.relation_endpoint(id))
                        .ok_or_else(|| Fail::Usage("no endpoint name specified".into()))?,
                };
                let ids = s.relation_ids(&endpoint)?;
                Out::Data(Value::Array(
                    ids.into_iter()
                        .map(|id| Value::String(format!("{endpoint}:{id}")))
                        .collect(),
                ))
            }
            "relation-list" => {
                no_extra(pos, 0)?;
                let id = self.need_relation(a)?;
                if a.on("app") {
                    Out::Data(s.relation_list_app(id)?.map_or(Value::Null, Value::String))
                } else {
                    Out::Data(Value::Array(
                        s.relation_list(id)?
                            .into_iter()
                            .map(Value::String)
                            .collect(),
                    ))
                }
            }
            "relation-get" => {
                no_extra(pos, 2)?;
                let id = self.need_relation(a)?;
                let key = pos.first().filter(|k| k.as_str() != "-");
                let app = a.on("app");
                let member = match pos.get(1) {
                    Some(m) => m.clone(),
                    None if app => {
                        let hook = s.hook();
                        hook.remote_app
                            .clone()
                            .filter(|_| hook.relation_id == Some(id))
                            .or_else(|| s.relation_remote_app(id))
                            .ok_or_else(|| Fail::Usage("no unit or application specified".into()))?
                    }
                    None => s
                        .hook()
                        .remote_unit
                        .clone()
                        .filter(|u| !u.is_empty())
                        .ok_or_else(|| Fail::Usage("no unit id specified".into()))?,
                };
                if !app && !member.contains('/') {
                    return usage(format!(
                        "expected unit name, got application name {member:?}"
                    ));
                }
                let bag = s.relation_get(id, &member, app)?;
                match key {
                    None => Out::Data(strings(bag)),
                    Some(k) => Out::Data(bag.get(k).cloned().map_or(Value::Null, Value::String)),
                }
            }
            "relation-set" => {
                let id = self.need_relation(a)?;
                let mut data = match a.get("file") {
                    Some(p) => self.file_map(p)?,
                    None => BTreeMap::new(),
                };
                data.extend(kv_pairs(pos)?);
                s.relation_set(id, &data, a.on("app"))?;
                Out::None
            }
            "relation-model-get" => {
                no_extra(pos, 0)?;
                let id = self.need_relation(a)?;
                Out::Data(json!({ "uuid": s.relation_model_get(id)? }))
            }
            "network-get" => {
                let Some(binding) = pos.first() else {
                    return usage("no arguments specified");
                };
                no_extra(pos, 1)?;
                let id = self.relation(a, false)?;
                let info = s.network_get(binding, id)?;
                let bind = info
                    .bind_addresses
                    .first()
                    .and_then(|b| b.addresses.first())
                    .map(|x| Value::String(x.value.clone()))
                    .unwrap_or(Value::Null);
                let ingress = info
                    .ingress_addresses
                    .first()
                    .cloned()
                    .map_or(Value::Null, Value::String);
                let egress = json!(info.egress_subnets);
                let mut picked: Vec<(&str, Value)> = Vec::new();
                if a.on("bind-address") || a.on("primary-address") {
                    picked.push(("bind-address", bind));
                }
                if a.on("ingress-address") {
                    picked.push(("ingress-address", ingress));
                }
                if a.on("egress-subnets") {
                    picked.push(("egress-subnets", egress));
                }
                match picked.len() {
                    0 => Out::Data(serde_json::to_value(&info).unwrap_or(Value::Null)),
                    1 => Out::Data(picked.remove(0).1),
                    _ => Out::Data(Value::Object(
                        picked
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )),
                }
            }
            "open-port" | "close-port" => {
                let Some(spec) = pos.first() else {
                    return usage("no port or range specified");
                };
                no_extra(pos, 1)?;
                let port = parse_port(spec)?;
                if tool == "open-port" {
                    s.open_port(&port)?;
                } else {
                    s.close_port(&port)?;
                }
                Out::None
            }
            "opened-ports" => {
                no_extra(pos, 0)?;
                let suffix = if a.on("endpoints") { " (*)" } else { "" };
                Out::Data(Value::Array(
                    s.opened_ports()?
                        .into_iter()
                        .map(|p| Value::String(format!("{p}{suffix}")))
                        .collect(),
                ))
            }
            "goal-state" => {
                no_extra(pos, 0)?;
                Out::Data(serde_json::to_value(s.goal_state()?).unwrap_or(Value::Null))
            }
            "state-get" => {
                no_extra(pos, 1)?;
                let state = s.state_get()?;
                match pos.first().filter(|k| k.as_str() != "-") {
                    None => Out::Data(strings(state)),
                    Some(k) => match state.get(k) {
                        Some(v) => Out::Data(Value::String(v.clone())),
                        None if a.on("strict") => {
                            return Err(Fail::Run(format!("key {k:?} not found")))
                        }
                        None => Out::Data(Value::String(String::new())),
                    },
                }
            }
            "state-set" => {
                let mut data = match a.get("file") {
                    Some(p) => self.file_map(p)?,
                    None => BTreeMap::new(),
                };
                data.extend(kv_pairs(pos)?);
                s.state_set(&data)?;
                Out::None
            }
            "state-delete" => {
                let Some(k) = pos.first() else {
                    return usage("no key specified");
                };
                no_extra(pos, 1)?;
                s.state_delete(k)?;
                Out::None
            }
            "leader-get" => {
                no_extra(pos, 1)?;
                let settings = s.leader_get();
                match pos.first().filter(|k| k.as_str() != "-") {
                    None => Out::Data(strings(settings)),
                    Some(k) => {
                        Out::Data(settings.get(k).cloned().map_or(Value::Null, Value::String))
                    }
                }
            }
            "leader-set" => {
                let data = kv_pairs(pos)?;
                s.leader_set(&data)?;
                Out::None
            }
            "credential-get" => {
                s.record_call("credential-get");
                return Err(Fail::Run(format!(
                    "cannot access cloud credentials: application {:?} is not trusted",
                    s.app()
                )));
            }
            "secret-add" => {
                let content = self.secret_content(a, pos)?;
                if content.is_empty() {
                    return usage("missing secret value");
                }
                Out::Raw(s.secret_add(&content, &self.secret_opts(a))?)
            }
            "secret-get" => {
                no_extra(pos, 2)?;
                if a.on("peek") && a.on("refresh") {
                    return usage("specify one of --peek or --refresh but not both");
                }
                let id = pos.first().cloned();
                if id.is_none() && a.get("label").is_none() {
                    return usage("require either a secret URI or label");
                }
                let query = SecretQuery {
                    id,
                    label: a.get("label").map(str::to_string),
                    peek: a.on("peek"),
                    refresh: a.on("refresh"),
                };
                let content = s.secret_get(&query)?;
                match pos.get(1) {
                    None => Out::Data(strings(content)),
                    Some(k) => {
                        let (key, encode) = match k.strip_suffix("#base64") {
                            Some(key) => (key, true),
                            None => (k.as_str(), false),
                        };
                        match content.get(key) {
                            None => return Err(Fail::Run(format!("secret key {key:?} not found"))),
                            Some(v) if encode => {
                                Out::Data(Value::String(b64::encode(v.as_bytes())))
                            }
                            Some(v) => Out::Data(Value::String(v.clone())),
                        }
                    }
                }
            }
            "secret-info-get" => {
                no_extra(pos, 1)?;
                let id = pos.first().cloned();
                let label = a.get("label").map(str::to_string);
                match (&id, &label) {
                    (Some(_), Some(_)) => {
                        return usage("specify either a secret URI or label but not both")
                    }
                    (None, None) => return usage("require either a secret URI or label"),
                    _ => {}
                }
                let info = s.secret_info_get(&SecretQuery {
                    id,
                    label,
                    ..SecretQuery::default()
                })?;
                let mut obj = Map::new();
                obj.insert("revision".into(), json!(info.revision));
                let opt = [
                    ("label", &info.label),
                    ("owner", &info.owner),
                    ("description", &info.description),
                    ("rotation", &info.rotation),
                    ("expiry", &info.expiry),
                ];
                for (k, v) in opt {
                    if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                        obj.insert(k.into(), Value::String(v.clone()));
                    }
                }
                let mut top = Map::new();
                top.insert(info.id, Value::Object(obj));
                Out::Data(Value::Object(top))
            }
            "secret-set" => {
                let Some(id) = pos.first() else {
                    return usage("missing secret URI");
                };
                let content = self.secret_content(a, &pos[1..])?;
                let content = (!content.is_empty()).then_some(content);
                s.secret_set(id, content.as_ref(), &self.secret_opts(a))?;
                Out::None
            }
            "secret-remove" => {
                let Some(id) = pos.first() else {
                    return usage("missing secret URI");
                };
                no_extra(pos, 1)?;
                let revision = match a.get("revision") {
                    None => None,
                    Some(r) => Some(r.parse::<u64>().map_err(|_| {
                        Fail::Usage(format!("invalid value {r:?} for option --revision"))
                    })?),
                };
                s.secret_remove(id, revision)?;
                Out::None
            }
            "secret-grant" => {
                let Some(id) = pos.first() else {
                    return usage("missing secret URI");
                };
                no_extra(pos, 1)?;
                if a.get("relation").is_none() {
                    return usage("missing relation or application");
                }
                let rel = self.need_relation(a)?;
                s.secret_grant(id, rel, a.get("unit"))?;
                Out::None
            }
            "secret-revoke" => {
                let Some(id) = pos.first() else {
                    return usage("missing secret URI");
                };
                no_extra(pos, 1)?;
                let rel = match a.get("relation") {
                    Some(_) => self.relation(a, false)?,
                    None => None,
                };
                s.secret_revoke(id, rel, a.get("app"), a.get("unit"))?;
                Out::None
            }
            "secret-ids" => {
                no_extra(pos, 0)?;
                Out::Data(json!(s.secret_ids()?))
            }
            "storage-list" => {
                no_extra(pos, 1)?;
                Out::Data(json!(s.storage_list(pos.first().map(String::as_str))?))
            }
            "storage-get" => {
                no_extra(pos, 1)?;
                let info = s.storage_get(a.get("storage"))?;
                match pos.first().map(String::as_str) {
                    None => Out::Data(json!({"kind": info.kind, "location": info.location})),
                    Some("kind") => Out::Data(Value::String(info.kind)),
                    Some("location") => Out::Data(Value::String(info.location)),
                    Some(k) => return Err(Fail::Run(format!("invalid storage attribute {k:?}"))),
                }
            }
            "resource-get" => {
                let Some(name) = pos.first() else {
                    return usage("missing required resource name");
                };
                no_extra(pos, 1)?;
                Out::Raw(s.resource_get(name)?.display().to_string())
            }
            other => return Err(Fail::Run(format!("unknown command: {other}"))),
        })
    }
}

/// `6379`, `6379/tcp`, `53/udp`, `icmp`, `8000-8000/tcp`. Real ranges cannot be opened on
/// Kubernetes, so they are refused.
fn parse_port(spec: &str) -> Res<Port> {
    if spec == "icmp" {
        return Ok(Port {
            protocol: "icmp".into(),
            number: None,
        });
    }
    let (range, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp") {
        return usage(format!(
            "invalid protocol {proto:?}, expected \"tcp\", \"udp\", or \"icmp\""
        ));
    }
    let bad = || Fail::Usage(format!("invalid port {spec:?}"));
    let number: u16 = match range.split_once('-') {
        Some((from, to)) => {
            let (from, to): (u16, u16) = (
                from.parse().map_err(|_| bad())?,
                to.parse().map_err(|_| bad())?,
            );
            if from != to {
                return Err(Fail::Run(format!(
                    "port ranges are not supported on Kubernetes: {spec:?}"
                )));
            }
            from
        }
        None => range.parse().map_err(|_| bad())?,
    };
    if number == 0 {
        return Err(bad());
    }
    Ok(Port {
        protocol: proto.into(),
        number: Some(number),
    })
}

/// Base64 for `key#base64` secret values and the agent protocol's byte fields.
pub use crate::ops::b64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::world::{CharmMeta, HookInfo, World};
    use std::sync::{Arc, Mutex};

    fn world() -> (Arc<Mutex<World>>, u32, u32) {
        let mut w = World::new("m");
        let meta = CharmMeta::from_yaml(
            "name: r\npeers:\n  peers: rp\nprovides:\n  redis: redis\n",
            "options:\n  a:\n    type: string\n  b:\n    type: int\n    default: 3\n",
            "",
        )
        .unwrap();
        w.add_app("r", meta).unwrap();
        w.add_app(
            "c",
            CharmMeta::from_yaml("name: c\nrequires:\n  db: redis\n", "", "").unwrap(),
        )
        .unwrap();
        w.add_unit("r").unwrap();
        w.add_unit("r").unwrap();
        w.add_unit("c").unwrap();
        w.set_leader("r/0");
        let rel = w.add_relation(("r", "redis"), ("c", "db")).unwrap();
        let peer = w.peer_relation_id("r", "peers").unwrap();
        (Arc::new(Mutex::new(w)), rel, peer)
    }

    fn run(s: &Session, tool: &str, args: &[&str], stdin: &str) -> (String, String, i32) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = run_tool(s, tool, &args, stdin.as_bytes(), Path::new("/"));
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.code,
        )
    }

    #[test]
    fn flags_parse_like_gnuflag() {
        let specs = [val(&["relation", "r"]), flag(&["app"]), val(&["format"])];
        let a = parse_args(
            &specs,
            &[
                "-",
                "x/0",
                "-r",
                "db:3",
                "--app=False",
                "--format=json",
                "--",
                "--app",
            ]
            .map(String::from),
        )
        .ok()
        .unwrap();
        assert_eq!(a.get("relation"), Some("db:3"));
        assert_eq!(a.get("app"), Some("false"));
        assert_eq!(a.pos, vec!["-", "x/0", "--app"]);
        assert!(matches!(
            parse_args(&specs, &["--nope".to_string()]),
            Err(Fail::Usage(m)) if m == "flag provided but not defined: --nope"
        ));
        assert!(matches!(
            parse_args(&specs, &["-r".to_string()]),
            Err(Fail::Usage(_))
        ));
    }

    #[test]
    fn relation_get_defaults_and_formats() {
        let (w, rel, _) = world();
        w.lock()
            .unwrap()
            .set_relation_data(rel, "c/0", BTreeMap::from([("k".into(), "v".into())]));
        let hook = HookInfo {
            relation_id: Some(rel),
            remote_unit: Some("c/0".into()),
            remote_app: Some("c".into()),
            ..HookInfo::default()
        };
        let s = World::session(&w, "r/0", hook);
        assert_eq!(
            run(&s, "relation-get", &["--format=json"], "").0,
            "{\"k\":\"v\"}\n"
        );
        assert_eq!(run(&s, "relation-get", &["k"], "").0, "v\n");
        assert_eq!(
            run(
                &s,
                "relation-get",
                &["-", "c/0", "--format=json", "-r", "2"],
                ""
            )
            .2,
            2
        );
        assert_eq!(
            run(&s, "relation-get", &["nope", "c/0", "--format=json"], "").0,
            "null\n"
        );
        let (_, err, code) = run(&s, "relation-get", &["-", "c"], "");
        assert_eq!(
            (err.as_str(), code),
            ("ERROR expected unit name, got application name \"c\"\n", 2)
        );
        let (_, err, code) = run(&s, "relation-get", &["-r", "99", "-", "c/0"], "");
        assert_eq!(code, 2);
        assert!(err.contains("relation not found"), "{err}");
    }

    #[test]
    fn status_and_config_outputs() {
        let (w, _, _) = world();
        let s = World::session(&w, "r/1", HookInfo::default());
        assert_eq!(
            run(
                &s,
                "status-set",
                &["--application=False", "active", "--", "-ok"],
                ""
            )
            .2,
            0
        );
        assert_eq!(
            run(&s, "status-get", &["--format=json"], "").0,
            "\"active\"\n"
        );
        assert_eq!(
            run(&s, "status-get", &["--include-data", "--format=json"], "").0,
            "{\"message\":\"-ok\",\"status\":\"active\",\"status-data\":{}}\n"
        );
        let (_, err, code) = run(&s, "status-set", &["error"], "");
        assert_eq!(code, 2);
        assert!(err.starts_with("ERROR invalid status \"error\""));
        let (_, err, code) = run(&s, "status-set", &["--application", "active"], "");
        assert_eq!(
            (err.as_str(), code),
            ("ERROR this unit is not the leader\n", 1)
        );
        assert_eq!(
            run(&s, "config-get", &["--format=json"], "").0,
            "{\"b\":3}\n"
        );
        assert_eq!(
            run(&s, "config-get", &["--all", "--format=json"], "").0,
            "{\"a\":null,\"b\":3}\n"
        );
        assert_eq!(run(&s, "config-get", &["b"], "").0, "3\n");
        assert_eq!(run(&s, "is-leader", &[], "").0, "False\n");
        assert_eq!(run(&s, "is-leader", &["--format=json"], "").0, "false\n");
        assert_eq!(run(&s, "is-leader", &["--format=xml"], "").2, 2);
    }

    #[test]
    fn relation_set_reads_yaml_and_json_from_stdin() {
        let (w, rel, peer) = world();
        let s = World::session(&w, "r/0", HookInfo::default());
        let out = run(
            &s,
            "relation-set",
            &["-r", &format!("redis:{rel}"), "--file", "-", "x=1"],
            "{\"a\": \"b\", \"x\": \"0\"}",
        );
        assert_eq!(out.2, 0, "{}", out.1);
        assert_eq!(
            run(
                &s,
                "relation-set",
                &["-r", &peer.to_string(), "--app", "--file=-"],
                "k: 7\n"
            )
            .2,
            0
        );
        s.commit().unwrap();
        let wl = w.lock().unwrap();
        assert_eq!(wl.relation_data(rel, "r/0")["a"], "b");
        assert_eq!(wl.relation_data(rel, "r/0")["x"], "1");
        assert_eq!(wl.relation_data(peer, "r")["k"], "7");
    }

    #[test]
    fn file_paths_are_relative_to_the_callers_cwd() {
        let (w, rel, _) = world();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.yaml"), "host: h\nport: 6379\n").unwrap();
        let s = World::session(&w, "r/0", HookInfo::default());
        let args: Vec<String> = ["-r", &rel.to_string(), "--file", "data.yaml"]
            .map(String::from)
            .to_vec();
        let out = run_tool(&s, "relation-set", &args, b"", dir.path());
        assert_eq!(out.code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        let bag = s.relation_get(rel, "r/0", false).unwrap();
        assert_eq!((bag["host"].as_str(), bag["port"].as_str()), ("h", "6379"));
    }

    #[test]
    fn secrets_through_the_cli() {
        let (w, rel, _) = world();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret").unwrap();
        let s = World::session(&w, "r/0", HookInfo::default());
        let args: Vec<String> = [
            "--label",
            "admin",
            "password#file=pw",
            "user#base64=YWRtaW4=",
        ]
        .map(String::from)
        .to_vec();
        let out = run_tool(&s, "secret-add", &args, b"", dir.path());
        assert_eq!(out.code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        let uri = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(
            run(&s, "secret-get", &[&uri, "--format=json"], "").0,
            "{\"password\":\"s3cret\",\"user\":\"admin\"}\n"
        );
        assert_eq!(
            run(&s, "secret-get", &["--label=admin", "--format=json"], "").2,
            0
        );
        assert_eq!(
            run(&s, "secret-grant", &[&uri, "-r", &rel.to_string()], "").2,
            0
        );
        let info = run(&s, "secret-info-get", &[&uri, "--format=json"], "").0;
        let v: Value = serde_json::from_str(&info).unwrap();
        let bare = uri.strip_prefix("secret:").unwrap();
        assert_eq!(v[bare]["label"], "admin");
        assert_eq!(v[bare]["revision"], 1);
        s.commit().unwrap();
        let c = World::session(&w, "c/0", HookInfo::default());
        assert_eq!(run(&c, "secret-get", &[&uri, "password"], "").0, "s3cret\n");
        let (_, err, code) = run(&c, "secret-get", &["secret:nothere"], "");
        assert_eq!(code, 1);
        assert!(err.contains("not found"));
    }

    #[test]
    fn action_tools_outside_an_action_fail() {
        let (w, _, _) = world();
        let s = World::session(&w, "r/0", HookInfo::default());
        assert_eq!(
            run(&s, "action-get", &[], ""),
            (String::new(), "ERROR not running an action\n".into(), 1)
        );
        assert_eq!(run(&s, "credential-get", &[], "").2, 1);
        assert_eq!(
            run(
                &s,
                "juju-log",
                &["--log-level", "WARNING", "--", "hi", "there"],
                ""
            )
            .2,
            0
        );
        assert_eq!(s.logs(), vec![(LogLevel::Warning, "hi there".to_string())]);
        assert_eq!(s.calls(), vec!["action-get", "credential-get", "juju-log"]);
    }

    #[test]
    fn ports_state_and_goal_state() {
        let (w, _, _) = world();
        let s = World::session(&w, "r/0", HookInfo::default());
        assert_eq!(run(&s, "open-port", &["6379/tcp"], "").2, 0);
        assert_eq!(run(&s, "open-port", &["1-2/tcp"], "").2, 1);
        assert_eq!(run(&s, "open-port", &["x/sctp"], "").2, 2);
        assert_eq!(run(&s, "opened-ports", &["--format=json"], "").0, "[]\n");
        assert_eq!(run(&s, "state-set", &["a=1"], "").2, 0);
        assert_eq!(
            run(&s, "state-get", &["a", "--format=json"], "").0,
            "\"1\"\n"
        );
        assert_eq!(run(&s, "state-get", &["zz", "--strict"], "").2, 1);
        s.commit().unwrap();
        assert_eq!(
            run(&s, "opened-ports", &["--format=json"], "").0,
            "[\"6379/tcp\"]\n"
        );
        let gs: Value =
            serde_json::from_str(&run(&s, "goal-state", &["--format=json"], "").0).unwrap();
        assert_eq!(gs["units"]["r/1"]["status"], "active");
    }
}
