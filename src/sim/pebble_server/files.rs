//! The files API on a container root: container path `/x` is `root/x` on the host. Errors
//! carry Pebble's kinds and Go-style messages that name the *container* path, so a charm sees
//! exactly what it would see in a pod.

use super::{sys, time, users};
use crate::ops::pebble::FileInfo;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// A per-path (or whole-request) failure: Pebble's error kind and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FileError {
    /// `not-found`, `permission-denied`, `generic-file-error`, or empty (bad request).
    pub kind: &'static str,
    pub message: String,
}

impl FileError {
    fn generic(message: impl Into<String>) -> Self {
        FileError {
            kind: "generic-file-error",
            message: message.into(),
        }
    }

    /// The HTTP status Pebble uses when this error is the whole response.
    pub fn status(&self) -> u16 {
        match self.kind {
            "not-found" => 404,
            "permission-denied" => 403,
            _ => 400,
        }
    }
}

/// Go's text for an errno (what `*os.PathError` prints), else Rust's description.
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(1) => "operation not permitted".into(),
        Some(2) => "no such file or directory".into(),
        Some(13) => "permission denied".into(),
        Some(17) => "file exists".into(),
        Some(20) => "not a directory".into(),
        Some(21) => "is a directory".into(),
        Some(39) => "directory not empty".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s.to_lowercase(),
            }
        }
    }
}

/// Wrap an OS error the way Go's `*os.PathError` does: `<op> <container path>: <errno text>`.
fn os_error(op: &str, container_path: &str, e: &io::Error) -> FileError {
    let kind = match e.raw_os_error() {
        Some(2) => "not-found",
        Some(1) | Some(13) => "permission-denied",
        _ if e.kind() == io::ErrorKind::NotFound => "not-found",
        _ if e.kind() == io::ErrorKind::PermissionDenied => "permission-denied",
        _ => "generic-file-error",
    };
    FileError {
        kind,
        message: format!("{op} {container_path}: {}", errno_text(e)),
    }
}

/// Map a container path to the host, refusing relative paths and `..` (which could leave the
/// container root).
pub fn host_path(root: &Path, container_path: &str) -> Result<PathBuf, FileError> {
    if !container_path.starts_with('/') {
        return Err(FileError {
            kind: "",
            message: format!("paths must be absolute, got {container_path:?}"),
        });
    }
    let mut out = root.to_path_buf();
    for c in Path::new(container_path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(FileError::generic(format!(
                    "path {container_path:?} must not contain \"..\""
                )))
            }
        }
    }
    Ok(out)
}

/// Parse Pebble's `permissions` (three or four octal digits).
pub fn parse_permissions(p: Option<&str>, default: u32) -> Result<u32, FileError> {
    match p {
        None | Some("") => Ok(default),
        Some(s)
            if (s.len() == 3 || s.len() == 4) && s.chars().all(|c| ('0'..='7').contains(&c)) =>
        {
            u32::from_str_radix(s, 8).map_err(|_| FileError::generic("bad permissions"))
        }
        Some(s) => Err(FileError::generic(format!(
            "permissions must be a 3- or 4-digit octal string, got {s:?}"
        ))),
    }
}

fn file_type(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "named-pipe"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "unknown"
    }
}

fn info(container_path: &str, meta: &fs::Metadata) -> FileInfo {
    let ft = meta.file_type();
    let name = Path::new(container_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    FileInfo {
        path: container_path.to_string(),
        name,
        file_type: file_type(&ft).into(),
        size: ft.is_file().then_some(meta.len()),
        permissions: format!("{:03o}", meta.mode() & 0o777),
        last_modified: meta.modified().map(time::rfc3339).unwrap_or_default(),
        user_id: Some(meta.uid()),
        user: users::user_by_uid(meta.uid()).map(|u| u.name),
        group_id: Some(meta.gid()),
        group: users::group_by_gid(meta.gid()).map(|g| g.name),
    }
}

/// Shell-style glob on a file name: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\x`.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, FileError> {
    fn m(p: &[char], n: &[char]) -> Result<bool, FileError> {
        let bad = || FileError::generic("syntax error in pattern");
        match p.first() {
            None => Ok(n.is_empty()),
            Some('*') => {
                for i in 0..=n.len() {
                    if m(&p[1..], &n[i..])? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Some('?') => Ok(!n.is_empty() && m(&p[1..], &n[1..])?),
            Some('[') => {
                let close = p.iter().skip(1).position(|c| *c == ']').ok_or_else(bad)? + 1;
                let Some(&c) = n.first() else {
                    return Ok(false);
                };
                let mut set = &p[1..close];
                let negate = matches!(set.first(), Some('!') | Some('^'));
                if negate {
                    set = &set[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                Ok(hit != negate && m(&p[close + 1..], &n[1..])?)
            }
            Some('\\') => {
                let lit = p.get(1).ok_or_else(bad)?;
                Ok(n.first() == Some(lit) && m(&p[2..], &n[1..])?)
            }
            Some(c) => Ok(n.first() == Some(c) && m(&p[1..], &n[1..])?),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

/// `GET /v1/files?action=list`.
pub fn list(
    root: &Path,
    path: &str,
    pattern: Option<&str>,
    itself: bool,
) -> Result<Vec<FileInfo>, FileError> {
    let host = host_path(root, path)?;
    let meta = fs::symlink_metadata(&host).map_err(|e| os_error("stat", path, &e))?;
    if !meta.is_dir() || itself {
        if let Some(p) = pattern {
            let name = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            if !glob_match(p, name.as_deref().unwrap_or("/"))? {
                return Ok(Vec::new());
            }
        }
        return Ok(vec![info(path, &meta)]);
    }
    let mut out = Vec::new();
    let rd = fs::read_dir(&host).map_err(|e| os_error("open", path, &e))?;
    for entry in rd {
        let entry = entry.map_err(|e| os_error("readdirent", path, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(p) = pattern {
            if !glob_match(p, &name)? {
                continue;
            }
        }
        let child = format!("{}/{}", path.trim_end_matches('/'), name);
        if let Ok(meta) = entry.metadata() {
            out.push(info(&child, &meta));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Read a regular file.
pub fn read(root: &Path, path: &str) -> Result<Vec<u8>, FileError> {
    let host = host_path(root, path)?;
    let meta = fs::metadata(&host).map_err(|e| os_error("stat", path, &e))?;
    if !meta.is_file() {
        return Err(FileError::generic(format!(
            "can only read a regular file: {path:?}"
        )));
    }
    fs::read(&host).map_err(|e| os_error("open", path, &e))
}

/// Ownership requested for a write or make-dirs.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Owner {
    #[serde(default)]
    pub user_id: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group_id: Option<u32>,
    #[serde(default)]
    pub group: Option<String>,
}

impl Owner {
    fn resolve(&self) -> Result<(Option<u32>, Option<u32>), FileError> {
        users::resolve(
            self.user.as_deref(),
            self.user_id,
            self.group.as_deref(),
            self.group_id,
        )
        .map_err(FileError::generic)
    }
}

fn chown(
    host: &Path,
    container_path: &str,
    ids: (Option<u32>, Option<u32>),
) -> Result<(), FileError> {
    if ids.0.is_none() && ids.1.is_none() {
        return Ok(());
    }
    std::os::unix::fs::chown(host, ids.0, ids.1).map_err(|e| os_error("lchown", container_path, &e))
}

/// Create `host` and any missing parents with `mode`, chowning each directory we create.
fn mkdir_all(
    host: &Path,
    container_path: &str,
    mode: u32,
    ids: (Option<u32>, Option<u32>),
) -> Result<(), FileError> {
    match fs::symlink_metadata(host) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(FileError::generic(format!(
                "mkdir {container_path}: not a directory"
            )))
        }
        Err(_) => {}
    }
    if let Some(parent) = host.parent() {
        let cparent = Path::new(container_path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        mkdir_all(parent, &cparent, mode, ids)?;
    }
    match fs::create_dir(host) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(os_error("mkdir", container_path, &e)),
    }
    fs::set_permissions(host, fs::Permissions::from_mode(mode))
        .map_err(|e| os_error("chmod", container_path, &e))?;
    chown(host, container_path, ids)
}

/// One file of a multipart write.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct WriteSpec {
    pub path: String,
    #[serde(default)]
    pub make_dirs: bool,
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(flatten)]
    pub owner: Owner,
}

/// Write one file atomically (temp file + rename), as Pebble does.
pub fn write(root: &Path, spec: &WriteSpec, content: &[u8]) -> Result<(), FileError> {
    let path = spec.path.as_str();
    let host = host_path(root, path)?;
    let mode = parse_permissions(spec.permissions.as_deref(), 0o644)?;
    let ids = spec.owner.resolve()?;
    if spec.make_dirs {
        if let Some(parent) = host.parent() {
            let cparent = Path::new(path)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into());
            mkdir_all(parent, &cparent, 0o755, ids)?;
        }
    }
    let suffix = format!(".{}~", sys::random_hex(12));
    let mut tmp_host = host.clone().into_os_string();
    tmp_host.push(&suffix);
    let tmp_host = PathBuf::from(tmp_host);
    let tmp_container = format!("{path}{suffix}");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp_host)
        .map_err(|e| os_error("open", &tmp_container, &e))?;
    let result = (|| {
        f.write_all(content)
            .map_err(|e| os_error("write", &tmp_container, &e))?;
        f.sync_all().ok();
        // The umask may have trimmed the mode at creation.
        fs::set_permissions(&tmp_host, fs::Permissions::from_mode(mode))
            .map_err(|e| os_error("chmod", &tmp_container, &e))?;
        chown(&tmp_host, &tmp_container, ids)?;
        fs::rename(&tmp_host, &host).map_err(|e| FileError {
            kind: "generic-file-error",
            message: format!("rename {tmp_container} {path}: {}", errno_text(&e)),
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_host);
    }
    result
}

/// One directory of a make-dirs request.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MkdirSpec {
    pub path: String,
    #[serde(default)]
    pub make_parents: bool,
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(flatten)]
    pub owner: Owner,
}

/// `make-dirs`: without `make-parents` the directory must not exist and its parent must.
pub fn make_dir(root: &Path, spec: &MkdirSpec) -> Result<(), FileError> {
    let path = spec.path.as_str();
    let host = host_path(root, path)?;
    let mode = parse_permissions(spec.permissions.as_deref(), 0o755)?;
    let ids = spec.owner.resolve()?;
    if spec.make_parents {
        return mkdir_all(&host, path, mode, ids);
    }
    if fs::symlink_metadata(&host).is_ok() {
        return Err(FileError::generic(format!("mkdir {path}: file exists")));
    }
    // Like Pebble: build it under a temporary name, then rename into place.
    let mut tmp = host.clone().into_os_string();
    tmp.push(".mkdir-new");
    let tmp = PathBuf::from(tmp);
    let tmp_container = format!("{path}.mkdir-new");
    fs::create_dir(&tmp).map_err(|e| os_error("mkdir", &tmp_container, &e))?;
    let result = (|| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
            .map_err(|e| os_error("chmod", &tmp_container, &e))?;
        chown(&tmp, &tmp_container, ids)?;
        fs::rename(&tmp, &host).map_err(|e| os_error("rename", path, &e))
    })();
    if result.is_err() {
        let _ = fs::remove_dir(&tmp);
    }
    result
}

/// `remove`: plain removal of a file or empty directory, or `rm -rf` with `recursive`.
pub fn remove(root: &Path, path: &str, recursive: bool) -> Result<(), FileError> {
    let host = host_path(root, path)?;
    if host == root {
        return Err(FileError::generic(format!("cannot remove {path}")));
    }
    let meta = match fs::symlink_metadata(&host) {
        Ok(m) => m,
        Err(e) if recursive && e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(os_error("remove", path, &e)),
    };
    let r = if meta.is_dir() {
        if recursive {
            fs::remove_dir_all(&host)
        } else {
            fs::remove_dir(&host)
        }
    } else {
        fs::remove_file(&host)
    };
    r.map_err(|e| os_error("remove", path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_go_filepath_match() {
        assert_eq!(glob_match("*.conf", "redis.conf"), Ok(true));
        assert_eq!(glob_match("*.conf", "redis.confx"), Ok(false));
        assert_eq!(glob_match("r?dis[0-9]", "redis1"), Ok(true));
        assert_eq!(glob_match("[!a]x", "ax"), Ok(false));
        assert!(glob_match("[abc", "a").is_err());
    }

    #[test]
    fn host_paths_stay_inside_the_root() {
        let root = Path::new("/srv/c");
        assert_eq!(
            host_path(root, "/etc/x").unwrap(),
            PathBuf::from("/srv/c/etc/x")
        );
        assert!(host_path(root, "/etc/../../x").is_err());
        let rel = host_path(root, "etc/x").unwrap_err();
        assert_eq!(rel.kind, "");
        assert_eq!(rel.message, "paths must be absolute, got \"etc/x\"");
    }

    #[test]
    fn write_into_missing_parent_reports_the_temp_file_like_pebble() {
        let dir = tempfile::tempdir().unwrap();
        let spec = WriteSpec {
            path: "/nope/x.conf".into(),
            ..WriteSpec::default()
        };
        let err = write(dir.path(), &spec, b"x").unwrap_err();
        assert_eq!(err.kind, "not-found");
        assert!(
            err.message.starts_with("open /nope/x.conf."),
            "{}",
            err.message
        );
        assert!(
            err.message.ends_with("~: no such file or directory"),
            "{}",
            err.message
        );
    }
}
