//! Checks the packed charm (`scripts/pack-charm`): archive layout, file modes, the dispatch
//! binary (an x86-64 ELF needing no glibc newer than Ubuntu 24.04's 2.39), metadata and
//! manifest contents.
//!
//! By default the test packs the charm itself (one `cargo build --release --bin redis-k8s`)
//! into `$CARGO_TARGET_TMPDIR/packing`. To check an existing archive instead, set
//! `REDIS_K8S_CHARM=<path to .charm>`, or `REDIS_K8S_REUSE_CHARM=1` to use
//! `<target>/charm/redis-k8s_ubuntu@24.04-amd64.charm` as written by a plain
//! `scripts/pack-charm` (so CI packs once and tests that very file).
//!
//! With `REDIS_K8S_CHARMCRAFT_ANALYSE=1` the real charmcraft linters also run, on the charm
//! and on a deliberately broken copy (see `scripts/charmcraft-analyse.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CHARM_FILE: &str = "redis-k8s_ubuntu@24.04-amd64.charm";
/// glibc of Ubuntu 24.04, the charm container's base image.
const MAX_GLIBC: (u32, u32) = (2, 39);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory the pack script writes to by default.
fn default_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Runs `scripts/pack-charm` and returns its exit status, stdout and stderr.
fn run_pack_script(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(repo_root().join("scripts/pack-charm"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("cannot run scripts/pack-charm (is python3 installed?)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether this run packed the charm itself (so the release binary is known to exist).
static PACKED_HERE: OnceLock<bool> = OnceLock::new();

/// The charm under test, packed once per test binary.
fn charm() -> &'static Path {
    static CHARM: OnceLock<PathBuf> = OnceLock::new();
    CHARM.get_or_init(|| {
        if let Some(path) = std::env::var_os("REDIS_K8S_CHARM") {
            PACKED_HERE.get_or_init(|| false);
            return PathBuf::from(path);
        }
        if std::env::var("REDIS_K8S_REUSE_CHARM").is_ok_and(|v| v == "1") {
            PACKED_HERE.get_or_init(|| false);
            let path = default_target_dir().join("charm").join(CHARM_FILE);
            assert!(
                path.is_file(),
                "REDIS_K8S_REUSE_CHARM=1 but {} is missing",
                path.display()
            );
            return path;
        }
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packing");
        let _ = fs::remove_file(out_dir.join(CHARM_FILE));
        let out_arg = out_dir.to_str().expect("utf-8 target dir");
        let (ok, stdout, stderr) = run_pack_script(&["--out", out_arg]);
        assert!(ok, "scripts/pack-charm failed:\n{stdout}\n{stderr}");
        let path = out_dir.join(CHARM_FILE);
        assert!(
            stdout.contains(path.to_str().unwrap_or_default()) && stdout.contains("bytes"),
            "pack-charm should print the charm's path and size, printed: {stdout}"
        );
        PACKED_HERE.get_or_init(|| true);
        path
    })
}

/// One archive member: unix mode, compression and content.
struct Entry {
    mode: u32,
    deflated: bool,
    data: Vec<u8>,
}

fn read_charm(path: &Path) -> BTreeMap<String, Entry> {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut archive = zip::ZipArchive::new(file).expect("the .charm is a zip archive");
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).expect("readable zip member");
        if member.is_dir() {
            continue;
        }
        let mut data = Vec::new();
        member.read_to_end(&mut data).expect("member decompresses");
        let entry = Entry {
            mode: member.unix_mode().unwrap_or(0),
            deflated: member.compression() == zip::CompressionMethod::Deflated,
            data,
        };
        entries.insert(member.name().to_string(), entry);
    }
    entries
}

fn charm_entries() -> &'static BTreeMap<String, Entry> {
    static ENTRIES: OnceLock<BTreeMap<String, Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| read_charm(charm()))
}

fn yaml(name: &str) -> serde_yaml::Value {
    let entry = charm_entries()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"));
    serde_yaml::from_slice(&entry.data).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"))
}

fn repo_templates() -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        let Ok(read) = fs::read_dir(dir) else { return };
        for entry in read.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.is_file() {
                let rel = path.strip_prefix(root).expect("under root");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&repo_root().join("templates"), &repo_root(), &mut out);
    out
}

#[test]
fn charm_file_is_named_for_base_and_architecture() {
    if std::env::var_os("REDIS_K8S_CHARM").is_some() {
        eprintln!("skipped: REDIS_K8S_CHARM names the file to check (any name goes)");
        return;
    }
    assert_eq!(
        charm().file_name().and_then(|n| n.to_str()),
        Some(CHARM_FILE),
        "charmcraft-style name <charm>_<base>-<arch>.charm"
    );
}

#[test]
fn archive_has_exactly_the_charm_layout() {
    let entries = charm_entries();
    for required in [
        "dispatch",
        "metadata.yaml",
        "config.yaml",
        "actions.yaml",
        "manifest.yaml",
    ] {
        assert!(
            entries.contains_key(required),
            "{required} missing from the charm"
        );
    }
    let optional = ["README.md", "LICENSE", "icon.svg"];
    for name in entries.keys() {
        let known = [
            "dispatch",
            "metadata.yaml",
            "config.yaml",
            "actions.yaml",
            "manifest.yaml",
        ]
        .contains(&name.as_str())
            || optional.contains(&name.as_str())
            || name.starts_with("templates/");
        assert!(
            known,
            "unexpected file {name} in the charm (e.g. a stray juju-local binary)"
        );
    }
    // Every template ships, byte for byte; the root YAML files are copied verbatim.
    for template in repo_templates() {
        let entry = entries
            .get(&template)
            .unwrap_or_else(|| panic!("{template} not packed"));
        let on_disk = fs::read(repo_root().join(&template)).expect("template readable");
        assert!(
            entry.data == on_disk,
            "{template} differs from the repository's"
        );
    }
    for name in ["metadata.yaml", "config.yaml", "actions.yaml"]
        .into_iter()
        .chain(
            optional
                .into_iter()
                .filter(|n| repo_root().join(n).is_file()),
        )
    {
        let on_disk = fs::read(repo_root().join(name)).expect("root file readable");
        let entry = entries
            .get(name)
            .unwrap_or_else(|| panic!("{name} not packed"));
        assert!(
            entry.data == on_disk,
            "{name} in the charm differs from the repository's"
        );
    }
    assert!(
        entries.values().all(|e| e.deflated),
        "every member is deflate-compressed"
    );
}

#[test]
fn dispatch_is_an_executable_x86_64_elf() {
    let dispatch = &charm_entries()["dispatch"];
    assert_eq!(
        dispatch.mode & 0o170000,
        0o100000,
        "dispatch is a regular file"
    );
    assert_eq!(dispatch.mode & 0o7777, 0o755, "dispatch mode is 0755");
    let head = &dispatch.data;
    assert!(
        head.len() > 64 && head[..4] == *b"\x7fELF",
        "dispatch is an ELF file"
    );
    assert_eq!(head[4], 2, "ELF64");
    assert_eq!(
        u16::from_le_bytes([head[18], head[19]]),
        0x3e,
        "x86-64 machine"
    );
    let e_type = u16::from_le_bytes([head[16], head[17]]);
    assert!(
        e_type == 2 || e_type == 3,
        "an executable (ET_EXEC or ET_DYN), got {e_type}"
    );
    for (name, entry) in charm_entries() {
        if name != "dispatch" && !name.starts_with("templates/") {
            assert_eq!(entry.mode & 0o7777, 0o644, "{name} mode is 0644");
        }
    }
}

#[test]
fn metadata_config_and_actions_parse() {
    let metadata = yaml("metadata.yaml");
    assert_eq!(metadata["name"].as_str(), Some("redis-k8s"));
    let containers = metadata["containers"]
        .as_mapping()
        .expect("containers mapping");
    for container in ["redis", "sentinel"] {
        assert!(
            containers.contains_key(container),
            "container {container} declared"
        );
    }
    let options = yaml("config.yaml");
    let options = options["options"]
        .as_mapping()
        .expect("config.yaml has options");
    assert!(!options.is_empty(), "config options declared");
    for (key, option) in options {
        assert!(
            option["type"].is_string(),
            "config option {key:?} has a type"
        );
    }
    assert!(yaml("actions.yaml")
        .as_mapping()
        .is_some_and(|m| !m.is_empty()));
}

#[test]
fn manifest_declares_ubuntu_24_04_amd64() {
    let manifest = yaml("manifest.yaml");
    let bases = manifest["bases"]
        .as_sequence()
        .expect("manifest bases list");
    assert_eq!(bases.len(), 1, "one run-on base");
    assert_eq!(bases[0]["name"].as_str(), Some("ubuntu"));
    // A string, not the float 24.04 (Juju would read "24.4").
    assert_eq!(bases[0]["channel"].as_str(), Some("24.04"));
    let arches = bases[0]["architectures"]
        .as_sequence()
        .expect("architectures list");
    assert!(arches.iter().any(|a| a.as_str() == Some("amd64")));
    assert!(manifest["charmcraft-version"]
        .as_str()
        .is_some_and(|v| v.starts_with("4.")));
    let started = manifest["charmcraft-started-at"]
        .as_str()
        .expect("started-at string");
    assert!(
        started.len() >= 19 && started.as_bytes()[10] == b'T',
        "ISO 8601: {started}"
    );
    let attributes = manifest["analysis"]["attributes"]
        .as_sequence()
        .expect("attributes");
    let found: BTreeMap<_, _> = attributes
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or(""),
                a["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(found.get("language"), Some(&"unknown"));
    assert_eq!(found.get("framework"), Some(&"unknown"));
}

/// GLIBC_x.y versions named in `objdump -T` output, as (major, minor).
fn glibc_versions(objdump: &str) -> BTreeSet<(u32, u32)> {
    let mut found = BTreeSet::new();
    for (i, _) in objdump.match_indices("GLIBC_") {
        let rest = &objdump[i + "GLIBC_".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let mut parts = rest[..end].split('.').map(|p| p.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
            found.insert((major, minor));
        }
    }
    found
}

#[test]
fn glibc_version_parser_finds_the_newest() {
    let sample = "\
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) memcpy
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.34) __libc_start_main
0000000000000000  w   DF *UND*  0000000000000000  GLIBC_2.40  new_thing
0000000000000000      DF *UND*  0000000000000000 (GLIBC_PRIVATE) __tls_get_addr
";
    let versions = glibc_versions(sample);
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        vec![(2, 2), (2, 34), (2, 40)]
    );
    assert!(glibc_versions(sample)
        .last()
        .is_some_and(|v| *v > MAX_GLIBC));
}

#[test]
fn dispatch_needs_no_glibc_newer_than_ubuntu_24_04() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dispatch");
    let mut file = fs::File::create(&path).expect("create");
    file.write_all(&charm_entries()["dispatch"].data)
        .expect("write");
    drop(file);
    let out = Command::new("objdump")
        .arg("-T")
        .arg(&path)
        .output()
        .expect("objdump (binutils) is needed to check glibc symbol versions");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static (e.g. musl) binary has no dynamic symbols at all: nothing to check.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not a dynamic object"),
            "objdump -T failed: {err}"
        );
        return;
    }
    let versions = glibc_versions(&text);
    assert!(
        !versions.is_empty(),
        "a glibc-linked binary lists GLIBC_ versions:\n{text}"
    );
    let newest = versions.last().copied().unwrap_or((0, 0));
    assert!(
        newest <= MAX_GLIBC,
        "dispatch needs GLIBC_{}.{} but Ubuntu 24.04 has {}.{}",
        newest.0,
        newest.1,
        MAX_GLIBC.0,
        MAX_GLIBC.1
    );
}

#[test]
fn pack_script_refuses_a_binary_too_new_for_the_base() {
    charm();
    if PACKED_HERE.get() != Some(&true) {
        eprintln!("skipped: the charm was not packed by this test run");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("utf-8");
    let (ok, _, stderr) = run_pack_script(&["--no-build", "--max-glibc", "2.1", "--out", out]);
    assert!(!ok, "a 2.1 glibc ceiling must be refused");
    assert!(stderr.contains("needs GLIBC_"), "explains why: {stderr}");
    assert!(
        !dir.path().join(CHARM_FILE).exists(),
        "no charm written on refusal"
    );
}

/// Runs scripts/charmcraft-analyse.sh; true when it reports no errors.
fn analyse(charm: &Path) -> (bool, String) {
    let out = Command::new(repo_root().join("scripts/charmcraft-analyse.sh"))
        .arg(charm)
        .output()
        .expect("run charmcraft-analyse.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn charmcraft_analyse_accepts_the_charm_and_rejects_a_broken_one() {
    if std::env::var("REDIS_K8S_CHARMCRAFT_ANALYSE").map_or(true, |v| v != "1") {
        eprintln!("skipped: set REDIS_K8S_CHARMCRAFT_ANALYSE=1 to run the real charmcraft");
        return;
    }
    let (ok, text) = analyse(charm());
    assert!(ok, "charmcraft analyse reported errors:\n{text}");
    assert!(
        text.contains("juju-config") && text.contains("metadata"),
        "{text}"
    );

    // The same charm with a config option lacking `type` must fail the juju-config linter.
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.charm");
    let mut writer = zip::ZipWriter::new(fs::File::create(&broken).expect("create"));
    for (name, entry) in charm_entries() {
        let options =
            zip::write::SimpleFileOptions::default().unix_permissions(entry.mode & 0o7777);
        writer
            .start_file(name.as_str(), options)
            .expect("start file");
        if name == "config.yaml" {
            writer
                .write_all(b"options:\n  broken:\n    default: 1\n")
                .expect("write");
        } else {
            writer.write_all(&entry.data).expect("write");
        }
    }
    writer.finish().expect("finish zip");
    let (ok, text) = analyse(&broken);
    assert!(
        !ok,
        "a config option without a type must fail the analysis:\n{text}"
    );
    assert!(
        text.contains("juju-config") && text.contains("error"),
        "{text}"
    );
}
