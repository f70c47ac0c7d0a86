//! Where a model keeps its files. Every CLI command is a separate process, so everything
//! the CLI and the daemon share is a path derived from the model directory.
//!
//! ```text
//! D/control.sock            the daemon's control socket (newline JSON)
//! D/agent.sock              the unit agents' socket (hook tools)
//! D/daemon.log, D/daemon.pid
//! D/model.json              name, uuid, subnet, options (written once by the daemon)
//! D/status.json             last status snapshot (rewritten after every change)
//! D/hosts                   the pods' /etc/hosts (rewritten in place: it is bind-mounted)
//! D/bin/pebble              the pods' /charm/bin/pebble (this binary, answering as `pebble`)
//! D/units/<app>-<n>/charm/  the unit's charm dir (JUJU_CHARM_DIR)
//!                  tools/   hook-tool symlinks (first on PATH)
//!                  containers/<c>/pebble.socket, containers/<c>/root/, containers/<c>/pebble.log
//!                  (storage is a directory at its mount point under root/, e.g.
//!                  containers/redis/root/var/lib/redis: kept when a pod kill wipes root/)
//!                  unit.log
//! ```
//!
//! Workload images: a container root starts empty, so the executables an image would ship
//! outside the host's own paths ([`IMAGE_BINARIES`]) are links in it to host stand-ins; the
//! sim's Pebble runs a service whose command names such a path from the link's target.

use std::path::{Path, PathBuf};

/// The paths of one model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
}

impl ModelDir {
    pub fn new(root: impl Into<PathBuf>) -> ModelDir {
        ModelDir { root: root.into() }
    }
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
    pub fn daemon_pid(&self) -> PathBuf {
        self.root.join("daemon.pid")
    }
    pub fn model_file(&self) -> PathBuf {
        self.root.join("model.json")
    }
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn hosts_file(&self) -> PathBuf {
        self.root.join("hosts")
    }
    /// Bound over the pods' `/charm/bin`: holds `pebble`.
    pub fn charm_bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    /// `D/units/<app>-<n>` for unit `app/n`.
    pub fn unit(&self, unit: &str) -> UnitDir {
        UnitDir {
            root: self.root.join("units").join(unit.replace('/', "-")),
        }
    }
}

/// The paths of one unit (one pod).
#[derive(Debug, Clone)]
pub struct UnitDir {
    pub root: PathBuf,
}

impl UnitDir {
    pub fn charm(&self) -> PathBuf {
        self.root.join("charm")
    }
    pub fn tools(&self) -> PathBuf {
        self.root.join("tools")
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container(&self, c: &str) -> PathBuf {
        self.containers().join(c)
    }
    pub fn pebble_socket(&self, c: &str) -> PathBuf {
        self.container(c).join("pebble.socket")
    }
    pub fn container_root(&self, c: &str) -> PathBuf {
        self.container(c).join("root")
    }
    pub fn pebble_log(&self, c: &str) -> PathBuf {
        self.container(c).join("pebble.log")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("unit.log")
    }
}

/// The default model directory for a model name: `./.juju-local/<model>`.
pub fn default_model_dir(model: &str) -> PathBuf {
    Path::new(".juju-local").join(model)
}

/// A `127.A.B` prefix derived from the model name, so several models (say, parallel tests)
/// get disjoint unit addresses without coordination. Never `127.0.0` (localhost's own /24).
pub fn default_subnet(model: &str) -> String {
    // FNV-1a: stable across runs and Rust versions, unlike DefaultHasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in model.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let a = 1 + (h % 250);
    let b = (h >> 8) % 250 + 1;
    format!("127.{a}.{b}")
}

/// Parse and check a `127.A.B` subnet prefix.
pub fn check_subnet(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() == 3
        && parts[0] == "127"
        && parts[1..].iter().all(|p| p.parse::<u8>().is_ok())
        && s != "127.0.0";
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid subnet {s:?}: expected a loopback /24 prefix like 127.0.12 (not 127.0.0)"
        ))
    }
}

/// Render the pods' hosts file: localhost lines, then for each `(unit, address)` the pod's
/// FQDN `<app>-<n>.<app>-endpoints.<model>.svc.cluster.local`, the short service name
/// `<app>-<n>.<app>-endpoints` and the hostname `<app>-<n>`.
pub fn render_hosts(model: &str, units: &[(String, String)]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         # juju-local pods\n",
    );
    for (unit, addr) in units {
        let Some((app, n)) = unit.split_once('/') else {
            continue;
        };
        let host = format!("{app}-{n}");
        out.push_str(&format!(
            "{addr}\t{host}.{app}-endpoints.{model}.svc.cluster.local {host}.{app}-endpoints {host}\n"
        ));
    }
    out
}

/// Executables of the workload images the model knows that the host lacks at that path:
/// (container path, host stand-ins tried in order). The charmed-redis image has the
/// Prometheus exporter at `/bin/redis_exporter`; Debian packages it as
/// `prometheus-redis-exporter`.
pub const IMAGE_BINARIES: &[(&str, &[&str])] = &[(
    "/bin/redis_exporter",
    &[
        "/usr/bin/prometheus-redis-exporter",
        "/usr/local/bin/redis_exporter",
    ],
)];

/// Link each [`IMAGE_BINARIES`] entry the host has a stand-in for into a container root
/// (`root/bin/redis_exporter` → `/usr/bin/prometheus-redis-exporter`). Entries without a
/// stand-in are left out, as an image without that binary would be.
pub fn install_image_binaries(root: &Path) -> std::io::Result<()> {
    for (path, candidates) in IMAGE_BINARIES {
        let Some(target) = candidates.iter().map(Path::new).find(|p| p.is_file()) else {
            continue;
        };
        let link = root.join(path.trim_start_matches('/'));
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(target, &link)?;
    }
    Ok(())
}

/// Rewrite a file in place (truncate + write, same inode), because it is bind-mounted into
/// running namespaces: a rename would leave them looking at the old file.
pub fn write_in_place(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_stable_valid_and_differ() {
        let a = default_subnet("m1");
        assert_eq!(a, default_subnet("m1"));
        assert!(check_subnet(&a).is_ok(), "{a}");
        assert_ne!(a, default_subnet("m2"));
        assert!(check_subnet("127.0.0").is_err());
        assert!(check_subnet("10.0.1").is_err());
        assert!(check_subnet("127.0.300").is_err());
    }

    #[test]
    fn hosts_lines_name_pods() {
        let h = render_hosts("m", &[("redis-k8s/1".into(), "127.0.12.2".into())]);
        assert!(h.contains(
            "127.0.12.2\tredis-k8s-1.redis-k8s-endpoints.m.svc.cluster.local \
             redis-k8s-1.redis-k8s-endpoints redis-k8s-1\n"
        ));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn image_binaries_link_to_a_host_stand_in_once() {
        let tmp = tempfile::tempdir().unwrap();
        install_image_binaries(tmp.path()).unwrap();
        install_image_binaries(tmp.path()).unwrap();
        let link = tmp.path().join("bin/redis_exporter");
        match IMAGE_BINARIES[0].1.iter().find(|p| Path::new(p).is_file()) {
            Some(target) => assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(target)),
            None => assert!(link.symlink_metadata().is_err()),
        }
    }

    #[test]
    fn unit_paths() {
        let d = ModelDir::new("/x");
        assert_eq!(
            d.unit("a/3").pebble_socket("c"),
            Path::new("/x/units/a-3/containers/c/pebble.socket")
        );
    }
}
