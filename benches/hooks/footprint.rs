//! Footprint: the packed `.charm` (built by `scripts/pack-charm`) and what it unpacks to,
//! and, for scale, the same for the ops baseline (its charm files plus the venv packages a
//! charmcraft pack would put in `venv/`, zipped the same way).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Size {
    pub packed_bytes: u64,
    pub unpacked_bytes: u64,
    pub files: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub charm_file: String,
    pub rust: Size,
    pub dispatch_bytes: u64,
    pub ops_baseline: Option<Size>,
    pub notes: Vec<String>,
}

fn zip_size(path: &Path) -> anyhow::Result<Size> {
    let f = std::fs::File::open(path)?;
    let packed_bytes = f.metadata()?.len();
    let mut z = zip::ZipArchive::new(f)?;
    let mut unpacked_bytes = 0;
    let mut files = 0;
    for i in 0..z.len() {
        let e = z.by_index(i)?;
        if e.is_file() {
            unpacked_bytes += e.size();
            files += 1;
        }
    }
    Ok(Size {
        packed_bytes,
        unpacked_bytes,
        files,
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&entry.path(), out)?;
        } else if ty.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Pack the Rust charm (`scripts/pack-charm --no-build --out target/charm`) and measure it.
fn rust_charm(repo: &Path, target: &Path) -> anyhow::Result<(PathBuf, Size, u64)> {
    let out_dir = target.join("charm");
    let out = Command::new(repo.join("scripts/pack-charm"))
        .arg("--no-build")
        .arg("--out")
        .arg(&out_dir)
        .current_dir(repo)
        .output()
        .context("run scripts/pack-charm")?;
    if !out.status.success() {
        bail!(
            "scripts/pack-charm failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let charm = std::fs::read_dir(&out_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "charm"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .context("no .charm written")?;
    let size = zip_size(&charm)?;
    let mut z = zip::ZipArchive::new(std::fs::File::open(&charm)?)?;
    let dispatch = z.by_name("dispatch")?.size();
    Ok((charm, size, dispatch))
}

/// The ops baseline as charmcraft would pack it: charm files + `venv/` (site-packages without
/// pip/setuptools), deflate-zipped.
fn ops_charm(repo: &Path, venv: &Path, scratch: &Path) -> anyhow::Result<Size> {
    let site = std::fs::read_dir(venv.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .context("no site-packages in the venv")?;
    let skip = [
        "pip",
        "setuptools",
        "_distutils_hack",
        "pkg_resources",
        "distutils-precedence.pth",
    ];
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for entry in std::fs::read_dir(&site)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip
            .iter()
            .any(|s| name == *s || name.starts_with(&format!("{s}-")))
        {
            continue;
        }
        let mut all = Vec::new();
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &mut all)?;
        } else {
            all.push(entry.path());
        }
        for p in all {
            let rel = p.strip_prefix(&site)?.display().to_string();
            files.push((p, format!("venv/{rel}")));
        }
    }
    let base = repo.join("benches/ops_baseline");
    for f in ["dispatch", "metadata.yaml", "src/charm.py"] {
        files.push((base.join(f), f.to_string()));
    }
    files.push((repo.join("config.yaml"), "config.yaml".into()));
    files.push((
        repo.join("templates/sentinel.conf.j2"),
        "templates/sentinel.conf.j2".into(),
    ));
    let path = scratch.join("ops-baseline.charm");
    let mut zw = zip::ZipWriter::new(std::fs::File::create(&path)?);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (src, name) in &files {
        zw.start_file(name.as_str(), opts)?;
        zw.write_all(&std::fs::read(src)?)?;
    }
    zw.finish()?;
    let size = zip_size(&path)?;
    let _ = std::fs::remove_file(&path);
    Ok(size)
}

pub fn measure(repo: &Path, target: &Path, venv: Option<&Path>) -> anyhow::Result<Footprint> {
    let (charm, rust, dispatch_bytes) = rust_charm(repo, target)?;
    let mut notes = Vec::new();
    let ops_baseline = match venv {
        Some(v) => {
            let scratch = tempfile::tempdir()?;
            match ops_charm(repo, v, scratch.path()) {
                Ok(s) => Some(s),
                Err(e) => {
                    notes.push(format!("ops baseline footprint: {e:#}"));
                    None
                }
            }
        }
        None => None,
    };
    Ok(Footprint {
        charm_file: charm.display().to_string(),
        rust,
        dispatch_bytes,
        ops_baseline,
        notes,
    })
}
