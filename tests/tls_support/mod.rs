//! Test certificates for the TLS tests (scenario and end to end), made with the `openssl`
//! CLI: a CA and a server certificate (X.509 v3) naming only the model's pod names by a DNS
//! wildcard, no IP address, as an operator's certificate for the app would.
//!
//! A directory module so Cargo does not build it as a test target; each TLS test file
//! includes it with `mod tls_support;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The three PEM files of one CA and its server certificate.
pub struct Certs {
    pub crt: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A CA (`/CN=<ca_name>`) and a server certificate for `*.<app>-endpoints.<model>.svc.cluster.local`,
/// written into `dir`.
pub fn make_certs(dir: &Path, app: &str, model: &str, ca_name: &str) -> Certs {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subj = format!("/CN={ca_name}");
    run(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", &subj,
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
        "-subj",
        "/CN=redis",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName=DNS:*.{app}-endpoints.{model}.svc.cluster.local\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    Certs {
        crt: dir.join("redis.crt"),
        key: dir.join("redis.key"),
        ca: dir.join("ca.crt"),
    }
}
