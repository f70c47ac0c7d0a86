//! The leader's Kubernetes Services and pod role labels against a REAL kube-apiserver (v1.20,
//! built by `scripts/kube-apiserver`) backed by a real etcd, both on loopback with random
//! ports: the charm's reconcile and whole hooks through the Scenario harness, checked through
//! the API. Without trust (an unprivileged token, RBAC answers 403) hooks still succeed and
//! the status says how to fix it.
//!
//! The apiserver binary comes from `REDIS_K8S_KUBE_APISERVER` (what `scripts/test` exports),
//! else the script's cache. Missing, the test FAILS; `REDIS_K8S_SKIP_KUBE=1` skips it (for
//! developers without the build).
//!
//! No kubelet runs, so the pods the charm labels are created here and stay Pending, which is
//! all labels and Services need.

mod scenario_support;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::rbac::v1::{Role as RbacRole, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use redis_k8s::k8s::{self, ApiSource, Desired, Role, ROLE_LABEL};
use redis_k8s::literals::PRIMARY_CHANGED_NOTICE;
use redis_k8s::ops::hookcmds::StatusName;
use redis_k8s::ops::testing::harness::Scenario;
use scenario_support::{
    containers, fqdn, run as hook, run_with_env, scenario, set_bag, world, Proc, APP, U0, U1,
};

/// The Scenario world's model name ([`world`]'s), hence the namespace the charm writes to.
const NS: &str = "scn";
const ADMIN_TOKEN: &str = "admin-token-for-tests-only";
const NOBODY_TOKEN: &str = "nobody-token-for-tests-only";
/// A user RBAC lets manage Services and pods in [`NS`] but not read StatefulSets (a trust
/// narrower than `--scope=cluster`).
const NARROW_TOKEN: &str = "narrow-token-for-tests-only";

/// etcd + kube-apiserver in a temp dir, with kubeconfigs for an admin and for a user that
/// RBAC grants nothing. Fields drop in order: the apiserver first, then etcd, then the dir.
struct Cluster {
    _apiserver: Proc,
    _etcd: Proc,
    dir: tempfile::TempDir,
    admin_kubeconfig: PathBuf,
    nobody_kubeconfig: PathBuf,
    narrow_kubeconfig: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The apiserver to run, or `None` when the developer asked to skip.
fn apiserver_binary() -> Option<PathBuf> {
    if std::env::var("REDIS_K8S_SKIP_KUBE").as_deref() == Ok("1") {
        eprintln!("REDIS_K8S_SKIP_KUBE=1: skipping the kube-apiserver test");
        return None;
    }
    let path = std::env::var_os("REDIS_K8S_KUBE_APISERVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/redis-k8s/kube/kube-apiserver"))
        })
        .filter(|p| p.is_file());
    match path {
        Some(p) => Some(p),
        None => panic!(
            "no kube-apiserver: run `export REDIS_K8S_KUBE_APISERVER=$(scripts/kube-apiserver)` \
             (builds it once into ~/.cache/redis-k8s/kube), or set REDIS_K8S_SKIP_KUBE=1 to skip"
        ),
    }
}

fn write_kubeconfig(path: &Path, port: u16, ca: &Path, token: &str) {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: \
         https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    \
         token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: u\n\
         current-context: test\n",
        ca.display()
    );
    fs::write(path, text).expect("kubeconfig");
}

impl Cluster {
    fn start(apiserver: &Path) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        // A CA and a server certificate for 127.0.0.1 (rustls wants a real chain, not a
        // self-signed leaf), and the service-account signing key 1.20 requires.
        run(Command::new("openssl")
            .current_dir(d)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=test-ca",
            ]));
        run(Command::new("openssl")
            .current_dir(d)
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
            ])
            .args(["-out", "server.csr", "-subj", "/CN=kube-apiserver"]));
        fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .current_dir(d)
            .args([
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ])
            .args(["-CAcreateserial", "-out", "server.crt", "-days", "2"])
            .args(["-extfile", "ext.cnf"]));
        run(Command::new("openssl")
            .current_dir(d)
            .args(["genrsa", "-out", "sa.key", "2048"]));
        fs::write(
            d.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},admin,1,\"system:masters\"\n{NOBODY_TOKEN},nobody,2\n\
                 {NARROW_TOKEN},narrow,3\n"
            ),
        )
        .unwrap();

        let (client_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let log = |name: &str| {
            fs::File::create(d.join(name))
                .map(Stdio::from)
                .expect("log file")
        };
        let etcd = Proc(
            Command::new("etcd")
                .args(["--name", "test", "--data-dir"])
                .arg(d.join("etcd"))
                .arg(format!(
                    "--listen-client-urls=http://127.0.0.1:{client_port}"
                ))
                .arg(format!(
                    "--advertise-client-urls=http://127.0.0.1:{client_port}"
                ))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
                ))
                .arg(format!(
                    "--initial-cluster=test=http://127.0.0.1:{peer_port}"
                ))
                .stdout(log("etcd.log"))
                .stderr(log("etcd.log"))
                .spawn()
                .expect("etcd (apt-get install etcd-server, or run scripts/kube-apiserver)"),
        );
        let p = |f: &str| d.join(f).display().to_string();
        let apiserver = Proc(
            Command::new(apiserver)
                .arg(format!("--etcd-servers=http://127.0.0.1:{client_port}"))
                .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
                .arg(format!("--secure-port={api_port}"))
                .arg("--insecure-port=0")
                .arg(format!("--cert-dir={}", p("certs")))
                .arg(format!("--tls-cert-file={}", p("server.crt")))
                .arg(format!("--tls-private-key-file={}", p("server.key")))
                .arg(format!("--token-auth-file={}", p("tokens.csv")))
                .arg("--authorization-mode=RBAC")
                .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
                .arg(format!("--service-account-key-file={}", p("sa.key")))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    p("sa.key")
                ))
                .arg("--service-cluster-ip-range=10.96.0.0/24")
                // No controller-manager creates the `default` service account for our pods.
                .arg("--disable-admission-plugins=ServiceAccount")
                .arg("--profiling=false")
                .stdout(log("apiserver.log"))
                .stderr(log("apiserver.log"))
                .spawn()
                .expect("kube-apiserver"),
        );
        let admin_kubeconfig = d.join("admin.kubeconfig");
        let nobody_kubeconfig = d.join("nobody.kubeconfig");
        let narrow_kubeconfig = d.join("narrow.kubeconfig");
        write_kubeconfig(
            &narrow_kubeconfig,
            api_port,
            &d.join("ca.crt"),
            NARROW_TOKEN,
        );
        write_kubeconfig(&admin_kubeconfig, api_port, &d.join("ca.crt"), ADMIN_TOKEN);
        write_kubeconfig(
            &nobody_kubeconfig,
            api_port,
            &d.join("ca.crt"),
            NOBODY_TOKEN,
        );
        Cluster {
            _apiserver: apiserver,
            _etcd: etcd,
            dir,
            admin_kubeconfig,
            nobody_kubeconfig,
            narrow_kubeconfig,
        }
    }

    fn logs(&self) -> String {
        let tail = |f: &str| {
            let text = fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "--- etcd.log\n{}\n--- apiserver.log\n{}",
            tail("etcd.log"),
            tail("apiserver.log")
        )
    }
}

/// The test's own view of the cluster, as the admin.
struct Admin {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Admin {
    fn new(cluster: &Cluster) -> Admin {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let kc = Kubeconfig::read_from(&cluster.admin_kubeconfig).unwrap();
            let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .unwrap();
            Client::try_from(config).unwrap()
        });
        Admin { rt, client }
    }

    /// Wait until the apiserver serves and the bootstrap is done (namespaces creatable).
    fn wait_ready(&self, cluster: &Cluster) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        loop {
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "metadata": {"name": NS}
            }))
            .unwrap();
            match self
                .rt
                .block_on(namespaces.create(&PostParams::default(), &ns))
            {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("apiserver not ready after 90 s: {e}\n{}", cluster.logs())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    fn create_pod(&self, name: &str, app: &str) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": app}},
            "spec": {"containers": [{"name": "charm", "image": "busybox"}]},
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        self.rt
            .block_on(pods.create(&PostParams::default(), &pod))
            .expect("create pod");
    }

    /// The StatefulSet Juju would create for `app` (no controller-manager runs, so it makes
    /// no pods); with `finalizer` it lingers with a deletion timestamp once deleted.
    /// Returns its uid.
    fn create_statefulset(&self, app: &str, finalizer: bool) -> String {
        let labels = serde_json::json!({"app.kubernetes.io/name": app});
        let finalizers: Vec<&str> = if finalizer {
            vec!["example.com/hold"]
        } else {
            vec![]
        };
        let set: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": app, "labels": labels, "finalizers": finalizers},
            "spec": {
                "serviceName": format!("{app}-endpoints"),
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "charm", "image": "busybox"}]},
                },
            },
        }))
        .unwrap();
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), NS);
        let created = self
            .rt
            .block_on(sets.create(&PostParams::default(), &set))
            .expect("create statefulset");
        created.metadata.uid.expect("a uid")
    }

    fn delete_statefulset(&self, app: &str) {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), NS);
        self.rt
            .block_on(sets.delete(app, &DeleteParams::default()))
            .expect("delete statefulset");
    }

    /// Let the `narrow` user manage Services and pods in the namespace, but not read
    /// StatefulSets.
    fn grant_narrow_trust(&self) {
        let role: RbacRole = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "narrow"},
            "rules": [
                {"apiGroups": [""], "resources": ["services"],
                 "verbs": ["get", "create", "patch", "update"]},
                {"apiGroups": [""], "resources": ["pods"],
                 "verbs": ["get", "list", "patch", "update"]},
            ],
        }))
        .unwrap();
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "narrow"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "narrow"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "narrow"}],
        }))
        .unwrap();
        let roles: Api<RbacRole> = Api::namespaced(self.client.clone(), NS);
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), NS);
        self.rt
            .block_on(roles.create(&PostParams::default(), &role))
            .expect("create role");
        self.rt
            .block_on(bindings.create(&PostParams::default(), &binding))
            .expect("create role binding");
    }

    /// The owner references of Service `name` (which must exist).
    fn owners(&self, name: &str) -> Vec<OwnerReference> {
        self.service(name)
            .unwrap_or_else(|| panic!("service {name}"))
            .metadata
            .owner_references
            .unwrap_or_default()
    }

    fn role(&self, pod: &str) -> Option<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let pod = self.rt.block_on(pods.get(pod)).expect("get pod");
        pod.metadata
            .labels
            .unwrap_or_default()
            .get(ROLE_LABEL)
            .cloned()
    }

    fn roles(&self) -> Vec<Option<String>> {
        (0..3).map(|n| self.role(&format!("{APP}-{n}"))).collect()
    }

    fn service(&self, name: &str) -> Option<Service> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), NS);
        self.rt
            .block_on(services.get_opt(name))
            .expect("get service")
    }
}

fn roles(primary: usize) -> Vec<Option<String>> {
    (0..3)
        .map(|n| Some(if n == primary { "primary" } else { "replica" }.to_string()))
        .collect()
}

fn assert_service(svc: &Service, role: &str) {
    let spec = svc.spec.as_ref().expect("spec");
    let selector = spec.selector.clone().unwrap_or_default();
    let want: BTreeMap<String, String> = [
        ("app.kubernetes.io/name".to_string(), APP.to_string()),
        (ROLE_LABEL.to_string(), role.to_string()),
    ]
    .into();
    assert_eq!(selector, want);
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec
        .cluster_ip
        .as_deref()
        .is_some_and(|ip| ip.starts_with("10.96.0.")));
    let ports: Vec<(String, i32, String)> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port,
                p.protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            ("redis".to_string(), 6379, "TCP".to_string()),
            ("sentinel".to_string(), 26379, "TCP".to_string()),
        ]
    );
}

/// Run `sentinel-pebble-custom-notice` with `key` as Juju would and check that it succeeded
/// (and was committed).
fn notice(s: &mut Scenario<'_>, key: &str) {
    assert!(
        run_with_env(
            s,
            "sentinel-pebble-custom-notice",
            &[
                ("JUJU_NOTICE_ID", "7"),
                ("JUJU_NOTICE_TYPE", "custom"),
                ("JUJU_NOTICE_KEY", key),
            ],
        ),
        "custom notice {key}"
    );
}

/// One test, in steps, because the charm reads `KUBECONFIG` from the process environment
/// (as it reads `KUBERNETES_SERVICE_HOST` in a pod): steps must not run concurrently.
#[test]
fn the_leader_keeps_role_services_and_pod_labels_current_and_reports_missing_trust() {
    let Some(binary) = apiserver_binary() else {
        return;
    };
    let cluster = Cluster::start(&binary);
    let admin = Admin::new(&cluster);
    admin.wait_ready(&cluster);
    for n in 0..3 {
        admin.create_pod(&format!("{APP}-{n}"), APP);
    }
    // Another app's pod in the namespace, which must stay untouched.
    admin.create_pod("other-0", "other");
    let uid = admin.create_statefulset(APP, false);

    // 1. The public reconcile, as the admin.
    std::env::set_var("KUBECONFIG", &cluster.admin_kubeconfig);
    assert_eq!(ApiSource::from_env(), Some(ApiSource::Kubeconfig));
    let applied = k8s::reconcile(
        ApiSource::Kubeconfig,
        &Desired::new(APP, NS, Some(&fqdn(0))),
    )
    .unwrap_or_else(|e| panic!("reconcile: {e}\n{}", cluster.logs()));
    assert_eq!(
        applied.services,
        vec!["redis-k8s-primary", "redis-k8s-replicas"]
    );
    assert_eq!(applied.pods, 3);
    assert_eq!(applied.relabelled.len(), 3);
    assert_service(
        &admin.service("redis-k8s-primary").expect("primary service"),
        "primary",
    );
    assert_service(
        &admin
            .service("redis-k8s-replicas")
            .expect("replicas service"),
        "replica",
    );
    assert_eq!(admin.roles(), roles(0));
    assert_eq!(admin.role("other-0"), None);
    assert!(!applied.services_unowned);
    // Both Services are owned by the app's StatefulSet (so the garbage collector deletes
    // them with it), as a plain, non-blocking, non-controller reference.
    let owned_by_set = vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: APP.into(),
        uid: uid.clone(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }];
    for svc in ["redis-k8s-primary", "redis-k8s-replicas"] {
        assert_eq!(admin.owners(svc), owned_by_set, "{svc}");
    }

    // Idempotent: nothing to relabel the second time, services unchanged.
    let started = Instant::now();
    let again = k8s::reconcile(
        ApiSource::Kubeconfig,
        &Desired::new(APP, NS, Some(&fqdn(0))),
    )
    .expect("second reconcile");
    assert!(again.relabelled.is_empty(), "{again:?}");
    eprintln!("an idempotent reconcile took {:?}", started.elapsed());
    assert_eq!(admin.roles(), roles(0));

    // Failover: leader-host names unit 2; exactly the two changed pods are relabelled.
    let flipped = k8s::reconcile(
        ApiSource::Kubeconfig,
        &Desired::new(APP, NS, Some(&fqdn(2))),
    )
    .expect("reconcile after failover");
    assert_eq!(
        flipped.relabelled,
        vec![
            ("redis-k8s-0".to_string(), Role::Replica),
            ("redis-k8s-2".to_string(), Role::Primary)
        ]
    );
    assert_eq!(admin.roles(), roles(2));

    // Another failover, to a pod listed before the old primary: the old primary is demoted
    // first (the primary Service never selects two pods).
    let flipped = k8s::reconcile(
        ApiSource::Kubeconfig,
        &Desired::new(APP, NS, Some(&fqdn(1))),
    )
    .expect("reconcile after the second failover");
    assert_eq!(
        flipped.relabelled,
        vec![
            ("redis-k8s-2".to_string(), Role::Replica),
            ("redis-k8s-1".to_string(), Role::Primary)
        ]
    );
    assert_eq!(admin.roles(), roles(1));

    // An unknown or unmappable primary leaves the labels alone.
    for host in [None, Some("10.1.2.3")] {
        let r = k8s::reconcile(ApiSource::Kubeconfig, &Desired::new(APP, NS, host)).unwrap();
        assert!(r.relabelled.is_empty());
    }
    assert_eq!(admin.roles(), roles(1));

    // An app whose StatefulSet is missing, or lingering with a deletion timestamp, is being
    // removed: no Services are (re)created for it (nothing would own them), its pod labels
    // are still kept.
    admin.create_pod("leaving-0", "leaving");
    admin.create_statefulset("leaving", true);
    admin.delete_statefulset("leaving");
    for app in ["gone", "leaving"] {
        let r = k8s::reconcile(
            ApiSource::Kubeconfig,
            &Desired::new(app, NS, Some(&format!("{app}-0"))),
        )
        .unwrap_or_else(|e| panic!("reconcile {app}: {e}"));
        assert!(r.services.is_empty(), "{app}: {r:?}");
        for svc in [format!("{app}-primary"), format!("{app}-replicas")] {
            assert!(admin.service(&svc).is_none(), "{svc} was created");
        }
    }
    assert_eq!(admin.role("leaving-0").as_deref(), Some("primary"));

    // A trust that cannot read StatefulSets: the Services are applied without the owner
    // reference (server-side apply drops the one this field manager set) and the reconcile
    // says so; with full trust again the reference comes back.
    admin.grant_narrow_trust();
    std::env::set_var("KUBECONFIG", &cluster.narrow_kubeconfig);
    let narrow = k8s::reconcile(
        ApiSource::Kubeconfig,
        &Desired::new(APP, NS, Some(&fqdn(1))),
    )
    .unwrap_or_else(|e| panic!("reconcile without statefulset access: {e}"));
    assert!(narrow.services_unowned, "{narrow:?}");
    assert_eq!(narrow.services.len(), 2);
    for (svc, role) in [
        ("redis-k8s-primary", "primary"),
        ("redis-k8s-replicas", "replica"),
    ] {
        assert_eq!(admin.owners(svc), vec![], "{svc}");
        assert_service(&admin.service(svc).expect("service"), role);
    }
    std::env::set_var("KUBECONFIG", &cluster.admin_kubeconfig);
    let full = k8s::reconcile(
        ApiSource::Kubeconfig,
        &Desired::new(APP, NS, Some(&fqdn(1))),
    )
    .expect("reconcile with full trust again");
    assert!(!full.services_unowned);
    for svc in ["redis-k8s-primary", "redis-k8s-replicas"] {
        assert_eq!(admin.owners(svc), owned_by_set, "{svc}");
    }

    // 2. Whole hooks through the Scenario harness, as the admin.
    let w = world(3);
    let pebble = containers();
    let mut s = scenario(&w, U0, &pebble);
    // leader-elected records leader-host = unit 0 and mirrors it at once.
    hook(&mut s, "leader-elected");
    assert_eq!(admin.roles(), roles(0));
    hook(&mut s, "redis-pebble-ready");
    hook(&mut s, "sentinel-pebble-ready");
    hook(&mut s, "config-changed");
    let status = w.lock().unwrap().unit_status("redis-k8s/0");
    assert_eq!(status.status, StatusName::Active, "{status:?}");
    assert!(!status.message.contains("k8s"), "{status:?}");

    // The recorded primary moves to unit 1 (no sentinel answers in a scenario, so the
    // record stands); update-status, the fallback, flips the labels.
    set_bag(&w, APP, &[("leader-host", &fqdn(1))]);
    hook(&mut s, "update-status");
    assert_eq!(admin.roles(), roles(1));

    // A non-leader writes nothing.
    let mut s1 = scenario(&w, U1, &pebble);
    set_bag(&w, APP, &[("leader-host", &fqdn(2))]);
    hook(&mut s1, "update-status");
    assert_eq!(admin.roles(), roles(1));

    // Sentinel's primary-changed notice: the leader mirrors the (kept) record at once; any
    // other notice key does nothing.
    notice(&mut s, "example.com/unrelated");
    assert_eq!(admin.roles(), roles(1));
    notice(&mut s, PRIMARY_CHANGED_NOTICE);
    assert_eq!(admin.roles(), roles(2));

    // 3. Without trust: RBAC answers 403, the hook still succeeds, the status says how to
    // fix it, nothing was written.
    std::env::set_var("KUBECONFIG", &cluster.nobody_kubeconfig);
    set_bag(&w, APP, &[("leader-host", &fqdn(0))]);
    let err = k8s::reconcile(
        ApiSource::Kubeconfig,
        &Desired::new(APP, NS, Some(&fqdn(0))),
    )
    .expect_err("an unprivileged user cannot apply");
    assert!(err.is_trust_missing(), "{err}");
    hook(&mut s, "config-changed");
    let status = w.lock().unwrap().unit_status("redis-k8s/0");
    assert_eq!(status.status, StatusName::Active, "{status:?}");
    assert!(
        status
            .message
            .ends_with("; k8s services off: run `juju trust redis-k8s --scope=cluster`"),
        "{status:?}"
    );
    assert!(!status.message.contains(NOBODY_TOKEN));
    // Hooks that do not talk to the API keep the note (no flapping status).
    hook(&mut s, "redis-pebble-ready");
    let status = w.lock().unwrap().unit_status("redis-k8s/0");
    assert!(status.message.contains("juju trust"), "{status:?}");
    assert_eq!(admin.roles(), roles(2));

    // 4. Trust granted: the next hook converges and the note goes.
    std::env::set_var("KUBECONFIG", &cluster.admin_kubeconfig);
    hook(&mut s, "update-status");
    assert_eq!(admin.roles(), roles(0));
    hook(&mut s, "config-changed");
    let status = w.lock().unwrap().unit_status("redis-k8s/0");
    assert!(!status.message.contains("k8s"), "{status:?}");

    // 5. An API that does not answer (a closed port): the hook succeeds, no note, promptly.
    let dead = cluster.dir.path().join("dead.kubeconfig");
    write_kubeconfig(
        &dead,
        free_port(),
        &cluster.dir.path().join("ca.crt"),
        ADMIN_TOKEN,
    );
    std::env::set_var("KUBECONFIG", &dead);
    let started = Instant::now();
    hook(&mut s, "config-changed");
    assert!(started.elapsed() < Duration::from_secs(15));
    let status = w.lock().unwrap().unit_status("redis-k8s/0");
    assert!(!status.message.contains("k8s"), "{status:?}");
    std::env::remove_var("KUBECONFIG");
}
