//! The Python ops baseline (`benches/ops_baseline/`): its venv (ops, jinja2 and redis-py from
//! PyPI, pinned, in a cache directory outside the repo, created on first use) and its charm
//! directory. The venv is the bench's own: `scripts/ops-venv.sh` keeps another one (ops only)
//! for the e2e client charm, and each would rebuild the other's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// What the baseline charm imports, pinned so runs compare: ops 2.x is what most published
/// charms run today (and the version the project's e2e client charm uses).
pub const PACKAGES: &[(&str, &str)] = &[("ops", "2.23.6"), ("jinja2", "3.1.6"), ("redis", "8.1.0")];

/// `$REDIS_K8S_BENCH_VENV`, else `~/.cache/redis-k8s/ops-bench-venv`.
pub fn venv_dir() -> PathBuf {
    if let Some(v) = std::env::var_os("REDIS_K8S_BENCH_VENV") {
        return PathBuf::from(v);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("redis-k8s").join("ops-bench-venv")
}

/// The venv imports every package at its pinned version.
fn venv_ready(venv: &Path) -> bool {
    let script = r#"
import sys, importlib, importlib.metadata as m
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    importlib.import_module(name)
    if m.version(name) != want:
        sys.exit(1)
"#;
    let out = Command::new(venv.join("bin/python3"))
        .arg("-c")
        .arg(script)
        .args(PACKAGES.iter().map(|(n, v)| format!("{n}=={v}")))
        .current_dir("/")
        .output();
    matches!(out, Ok(o) if o.status.success())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Make sure the venv exists with the packages installed; returns its path and the
/// installed versions (`name==version`).
pub fn ensure_venv() -> anyhow::Result<(PathBuf, Vec<String>)> {
    let venv = venv_dir();
    if !venv_ready(&venv) {
        let specs: Vec<String> = PACKAGES.iter().map(|(n, v)| format!("{n}=={v}")).collect();
        eprintln!(
            "creating the ops venv in {} (pip install {})",
            venv.display(),
            specs.join(" ")
        );
        if let Some(p) = venv.parent() {
            std::fs::create_dir_all(p)?;
        }
        let python = std::env::var("REDIS_K8S_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        // From / so that nothing in the caller's cwd shadows a module.
        run(Command::new(&python)
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .current_dir("/"))?;
        run(Command::new(venv.join("bin/python3"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&specs)
            .current_dir("/"))?;
        if !venv_ready(&venv) {
            bail!(
                "{} still does not import {}",
                venv.display(),
                specs.join(", ")
            );
        }
    }
    let out = Command::new(venv.join("bin/python3"))
        .args([
            "-c",
            "import sys, importlib.metadata as m\n\
             print('python==' + sys.version.split()[0])\n\
             for p in ('ops', 'jinja2', 'redis'): print(p + '==' + m.version(p))",
        ])
        .current_dir("/")
        .current_dir("/")
        .output()?;
    let versions = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    Ok((venv, versions))
}

/// Lay out the baseline charm in `dst`: the files kept in `benches/ops_baseline`, the Rust
/// charm's `config.yaml` and sentinel template (same options, same rendering input), and
/// `venv` linked to the cached venv (a packed ops charm carries its own `venv/`).
pub fn charm_dir(repo: &Path, venv: &Path, dst: &Path) -> anyhow::Result<()> {
    let src = repo.join("benches/ops_baseline");
    std::fs::create_dir_all(dst.join("src"))?;
    std::fs::create_dir_all(dst.join("templates"))?;
    for f in ["dispatch", "metadata.yaml", "src/charm.py"] {
        std::fs::copy(src.join(f), dst.join(f)).with_context(|| format!("copy {f}"))?;
    }
    std::fs::copy(repo.join("config.yaml"), dst.join("config.yaml"))?;
    std::fs::copy(
        repo.join("templates/sentinel.conf.j2"),
        dst.join("templates/sentinel.conf.j2"),
    )?;
    std::os::unix::fs::symlink(venv, dst.join("venv"))?;
    Ok(())
}
