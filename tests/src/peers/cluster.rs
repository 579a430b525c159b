//! One cluster of real peers on 127.0.0.1, started in dependency order and stopped in
//! reverse, every wait bounded and every process ended when the test ends, passes or
//! panics. Ports are chosen per run, so a cluster never meets another run's leftovers.
//!
//! Order and why: etcd; kube-apiserver (ready on `/readyz`); the RBAC-free admin
//! kubeconfig; kube-controller-manager (the HPA, Deployment and ReplicaSet controllers,
//! and `nodelifecycle`, which lifts the `not-ready` taint the API server puts on every new
//! node: without it nothing schedules); kube-scheduler; kwok (nodes Ready and pods
//! Running without kubelets); KEDA's CRDs, operator and metrics adapter; and the
//! `external.metrics.k8s.io` APIService routed to the adapter through an `ExternalName`
//! Service (the aggregator resolves its host name, so no Endpoints are needed).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;

use super::kubectl::{Kubectl, kubeconfig};
use super::pki::ClusterPki;
use super::{PeerDir, free_port};

/// Clusters running at once in this test process, out of [`CORE_SHARES`]. A scenario
/// that measures reaction times takes them all, so its figures are not another
/// cluster's noise; the others run two at a time, since they mostly wait on the HPA's
/// and the controllers' periods.
static IN_USE: std::sync::Mutex<u32> = std::sync::Mutex::new(0);
const CORE_SHARES: u32 = 2;

/// A cluster's share of the machine, given back on drop.
pub struct Turn {
    shares: u32,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut in_use = IN_USE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *in_use = in_use.saturating_sub(self.shares);
    }
}

/// Waits for `shares` of the machine; a cluster start and a whole scenario take minutes
/// at most.
fn take_turn(shares: u32) -> Turn {
    let shares = shares.clamp(1, CORE_SHARES);
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        {
            let mut in_use = IN_USE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *in_use + shares <= CORE_SHARES {
                *in_use += shares;
                return Turn { shares };
            }
        }
        assert!(
            Instant::now() < deadline,
            "no turn for a cluster within an hour"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How long any one peer may take to become ready.
const READY_LIMIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `--horizontal-pod-autoscaler-sync-period`: the HPA's loop (Kubernetes' default 15 s).
    pub hpa_sync: Duration,
    /// Where each peer's log is written; kept after the test so a failing run shows them.
    pub logs: PathBuf,
    /// Whether another cluster may run beside this one (see `take_turn`). Off for a
    /// scenario whose timings are asserted or reported.
    pub share_machine: bool,
}

impl ClusterOptions {
    pub fn new(logs: impl Into<PathBuf>) -> Self {
        Self {
            hpa_sync: Duration::from_secs(5),
            logs: logs.into(),
            share_machine: false,
        }
    }
}

/// A node for kwok to run: capacity and, for a virtual node, the virtual-kubelet label
/// and taint.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    /// `(key, value, effect)`.
    pub taints: Vec<(String, String, String)>,
}

impl NodeSpec {
    /// A regular (ECS) node.
    pub fn regular(name: &str, cpu: &str, memory: &str) -> Self {
        Self {
            name: name.into(),
            cpu: cpu.into(),
            memory: memory.into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    /// A virtual (ECI) node as Alibaba's virtual-kubelet registers it: label
    /// `type=virtual-kubelet`, taint `virtual-kubelet.io/provider=alibabacloud:NoSchedule`.
    pub fn virtual_kubelet(name: &str) -> Self {
        let mut node = Self::regular(name, "1000", "4Ti");
        node.pods = 1000;
        node.labels.insert("type".into(), "virtual-kubelet".into());
        node.taints.push((
            "virtual-kubelet.io/provider".into(),
            "alibabacloud".into(),
            "NoSchedule".into(),
        ));
        node
    }

    fn manifest(&self) -> Value {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), self.name.clone()),
            ("type".to_owned(), "kwok".to_owned()),
        ]);
        labels.extend(self.labels.clone());
        let taints: Vec<Value> = self
            .taints
            .iter()
            .map(|(key, value, effect)| serde_json::json!({"key": key, "value": value, "effect": effect}))
            .collect();
        let resources = serde_json::json!({
            "cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string(),
        });
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            // kwok takes over the nodes it is told to manage; this marks them for the reader.
            "metadata": {"name": self.name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"taints": taints},
            "status": {"allocatable": resources, "capacity": resources},
        })
    }
}

struct Peer {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// A running cluster; everything stops on drop.
pub struct Cluster {
    peers: PeerDir,
    dir: tempfile::TempDir,
    logs: PathBuf,
    running: Vec<Peer>,
    pki: ClusterPki,
    pub server: String,
    /// `system:masters`: for setting up the test, never for Spillway.
    pub admin: Kubectl,
    /// How long each start-up step took, in order.
    pub timings: Vec<(&'static str, Duration)>,
    _turn: Turn,
}

impl Cluster {
    pub fn start(peers: &PeerDir, options: &ClusterOptions) -> Self {
        let turn = take_turn(if options.share_machine {
            1
        } else {
            CORE_SHARES
        });
        let dir = tempfile::Builder::new()
            .prefix("spillway-peers-")
            .tempdir()
            .expect("cluster dir");
        std::fs::create_dir_all(&options.logs).expect("log dir");
        let pki = ClusterPki::generate(&dir.path().join("pki"));
        let api_port = free_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let admin_config = dir.path().join("admin.kubeconfig");
        std::fs::write(
            &admin_config,
            kubeconfig(
                &server,
                &pki.ca,
                &format!(
                    "    client-certificate: {}\n    client-key: {}\n",
                    pki.admin_cert.display(),
                    pki.admin_key.display()
                ),
            ),
        )
        .expect("admin kubeconfig");
        let admin = Kubectl::new(&peers.bin("kubectl"), &admin_config);
        let mut cluster = Self {
            peers: peers.clone(),
            dir,
            logs: options.logs.clone(),
            running: Vec::new(),
            pki,
            server,
            admin,
            timings: Vec::new(),
            _turn: turn,
        };
        cluster.boot(api_port, options);
        cluster
    }

    fn boot(&mut self, api_port: u16, options: &ClusterOptions) {
        let began = Instant::now();
        let step = Instant::now();
        let etcd_client = free_port();
        let etcd_peer = free_port();
        let data = self.dir.path().join("etcd");
        self.spawn(
            "etcd",
            "etcd",
            &[
                "--name=peers".into(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=peers=http://127.0.0.1:{etcd_peer}"),
                "--listen-metrics-urls=".into(),
                // Tests need no durability, and fsync on a shared disk costs seconds.
                "--unsafe-no-fsync".into(),
            ],
            &[],
        );
        self.wait_for("etcd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", etcd_client)).is_ok()
        });
        self.timings.push(("etcd", step.elapsed()));

        let step = Instant::now();
        // The log directory outlives runs; this run's audit starts empty.
        let _ = std::fs::remove_file(self.audit_log());
        let audit_policy = self.dir.path().join("audit-policy.yaml");
        std::fs::write(
            &audit_policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  \
             - level: Metadata\n    userGroups: [\"system:serviceaccounts\"]\n  - level: None\n",
        )
        .expect("audit policy");
        let pki = &self.pki;
        let apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // No kubernetes Endpoints to maintain (they may not hold loopback addresses).
            "--endpoint-reconciler-type=none".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--client-ca-file={}", pki.ca.display()),
            format!("--tls-cert-file={}", pki.apiserver_cert.display()),
            format!("--tls-private-key-file={}", pki.apiserver_key.display()),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_public.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_private.display()
            ),
            format!(
                "--requestheader-client-ca-file={}",
                pki.front_proxy_ca.display()
            ),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!(
                "--proxy-client-cert-file={}",
                pki.front_proxy_cert.display()
            ),
            format!("--proxy-client-key-file={}", pki.front_proxy_key.display()),
            "--profiling=false".into(),
            // Every request of a service account, with its answer: what Spillway called
            // and whether RBAC let it.
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", self.audit_log().display()),
            "--audit-log-mode=blocking".into(),
        ];
        self.spawn("kube-apiserver", "kube-apiserver", &apiserver_args, &[]);
        let admin = self.admin.clone();
        self.wait_for("kube-apiserver /readyz", || {
            admin.run(&["get", "--raw", "/readyz"]).is_ok()
        });
        self.timings.push(("kube-apiserver", step.elapsed()));

        let step = Instant::now();
        let kubeconfig = self.admin.kubeconfig().display().to_string();
        let pki = &self.pki;
        let controllers = [
            "*",
            "-nodeipam",
            "-cloud-node-lifecycle",
            "-service-lb-controller",
            "-route",
            "-persistentvolume-binder",
            "-attachdetach",
            "-persistentvolume-expander",
            "-ephemeral-volume",
            "-pvc-protection",
            "-pv-protection",
        ]
        .join(",");
        let kcm_args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            "--leader-elect=false".into(),
            format!(
                "--service-account-private-key-file={}",
                pki.service_account_private.display()
            ),
            format!("--root-ca-file={}", pki.ca.display()),
            format!("--cluster-signing-cert-file={}", pki.ca.display()),
            format!("--cluster-signing-key-file={}", pki.ca_key.display()),
            format!(
                "--horizontal-pod-autoscaler-sync-period={}s",
                options.hpa_sync.as_secs().max(1)
            ),
            format!("--controllers={controllers}"),
        ];
        self.spawn(
            "kube-controller-manager",
            "kube-controller-manager",
            &kcm_args,
            &[],
        );
        let sched_args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()),
            "--leader-elect=false".into(),
        ];
        self.spawn("kube-scheduler", "kube-scheduler", &sched_args, &[]);
        // The service-account controller running is what pods in new namespaces wait on.
        let admin = self.admin.clone();
        self.wait_for(
            "kube-controller-manager to create default service accounts",
            || {
                admin
                    .get("serviceaccount", Some("default"), "default")
                    .is_some()
            },
        );
        self.timings
            .push(("kube-controller-manager + kube-scheduler", step.elapsed()));

        let step = Instant::now();
        let kwok_config = self.dir.path().join("kwok.yaml");
        let stages =
            std::fs::read_to_string(self.peers.file("kwok-stages.yaml")).expect("kwok stages");
        // Once a KwokConfiguration is given its unset numbers are zero, and kwok refuses
        // zero parallelism: every one is set.
        std::fs::write(
            &kwok_config,
            format!(
                "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  \
                 podPlayStageParallelism: 4\n  nodePlayStageParallelism: 4\n  \
                 nodeLeaseParallelism: 4\n  podsOnNodeSyncParallelism: 1\n  \
                 nodeLeaseDurationSeconds: 40\n{stages}"
            ),
        )
        .expect("kwok config");
        let kwok_args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--config={}", kwok_config.display()),
            "--manage-all-nodes=true".into(),
            format!("--server-address=127.0.0.1:{}", free_port()),
        ];
        self.spawn("kwok", "kwok", &kwok_args, &[]);
        self.timings.push(("kwok", step.elapsed()));

        let step = Instant::now();
        let crds = std::fs::read_to_string(self.peers.file("keda-crds.yaml")).expect("KEDA CRDs");
        self.admin.must_apply(&crds);
        self.admin
            .must_apply("apiVersion: v1\nkind: Namespace\nmetadata: { name: keda }\n");
        let admin = self.admin.clone();
        self.wait_for("KEDA's CRDs to be established", || {
            admin
                .run(&[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=5s",
                    "crd/scaledobjects.keda.sh",
                    "crd/triggerauthentications.keda.sh",
                ])
                .is_ok()
        });
        let keda_grpc = free_port();
        // The adapter's controller-runtime client reads only $KUBECONFIG.
        let keda_env = [
            ("KUBECONFIG", kubeconfig.as_str()),
            ("WATCH_NAMESPACE", ""),
            ("KEDA_CLUSTER_OBJECT_NAMESPACE", "keda"),
            ("POD_NAMESPACE", "keda"),
            ("POD_NAME", "keda-operator-test"),
        ];
        let operator_args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--cert-dir={}", self.pki.keda_operator_dir.display()),
            format!("--metrics-service-bind-address=127.0.0.1:{keda_grpc}"),
            format!("--metrics-bind-address=127.0.0.1:{}", free_port()),
            format!("--health-probe-bind-address=127.0.0.1:{}", free_port()),
            "--leader-elect=false".into(),
            // Nothing here for it to patch: the test owns the APIService.
            "--enable-webhook-patching=false".into(),
            "--enable-apiservice-patching=false".into(),
            "--zap-log-level=info".into(),
        ];
        self.spawn("keda-operator", "keda-operator", &operator_args, &keda_env);
        let adapter_port = free_port();
        let adapter_args = vec![
            format!("--secure-port={adapter_port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--cert-dir={}", self.pki.keda_adapter_dir.display()),
            format!("--lister-kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            // The name must match a SAN of the operator's certificate.
            format!("--metrics-service-address=localhost:{keda_grpc}"),
            format!("--port={}", free_port()),
        ];
        self.spawn("keda-adapter", "keda-adapter", &adapter_args, &keda_env);
        self.admin.must_apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{ name: keda-metrics-apiserver, namespace: keda }}\n\
             spec:\n  type: ExternalName\n  externalName: localhost\n  ports: [{{ name: https, port: {adapter_port} }}]\n\
             ---\napiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {{ name: v1beta1.external.metrics.k8s.io }}\n\
             spec:\n  group: external.metrics.k8s.io\n  version: v1beta1\n  groupPriorityMinimum: 100\n  versionPriority: 100\n  \
             insecureSkipTLSVerify: true\n  service: {{ name: keda-metrics-apiserver, namespace: keda, port: {adapter_port} }}\n"
        ));
        let admin = self.admin.clone();
        self.wait_for("external.metrics.k8s.io served by KEDA's adapter", || {
            admin
                .run(&["get", "--raw", "/apis/external.metrics.k8s.io/v1beta1"])
                .is_ok()
        });
        self.timings.push(("KEDA", step.elapsed()));
        self.timings.push(("total", began.elapsed()));
    }

    fn spawn(&mut self, name: &'static str, binary: &str, args: &[String], env: &[(&str, &str)]) {
        let log = self.logs.join(format!("{name}.log"));
        let out = File::create(&log).expect("peer log file");
        let err = out.try_clone().expect("peer log file");
        let child = Command::new(self.peers.bin(binary))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.running.push(Peer { name, child, log });
    }

    /// Polls `ready` until true; fails at once, with the peer's log, if a peer exits.
    pub fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if ready() {
                return;
            }
            self.check_alive();
            assert!(
                Instant::now() < deadline,
                "timed out after {READY_LIMIT:?} waiting for {what}\n{}",
                self.log_tails(40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Panics, showing its log, if any peer has exited.
    pub fn check_alive(&mut self) {
        for peer in &mut self.running {
            if let Ok(Some(status)) = peer.child.try_wait() {
                let log = std::fs::read_to_string(&peer.log).unwrap_or_default();
                panic!(
                    "{} exited ({status}); its log ({}):\n{}",
                    peer.name,
                    peer.log.display(),
                    tail(&log, 60)
                );
            }
        }
    }

    /// The last `lines` of every peer's log.
    pub fn log_tails(&self, lines: usize) -> String {
        self.running
            .iter()
            .map(|peer| {
                let log = std::fs::read_to_string(&peer.log).unwrap_or_default();
                format!(
                    "--- {} ({}) ---\n{}\n",
                    peer.name,
                    peer.log.display(),
                    tail(&log, lines)
                )
            })
            .collect()
    }

    fn audit_log(&self) -> PathBuf {
        self.logs.join("audit.log")
    }

    /// The API server's audit events for `user` (e.g.
    /// `system:serviceaccount:spillway:spillway`): each request it made, with the verb,
    /// the resource and the answer's code.
    pub fn audit_events(&self, user: &str) -> Vec<Value> {
        std::fs::read_to_string(self.audit_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|e| e.pointer("/user/username").and_then(Value::as_str) == Some(user))
            .collect()
    }

    /// The requests `user` made that the API server refused as forbidden, one line each.
    pub fn forbidden(&self, user: &str) -> Vec<String> {
        self.audit_events(user)
            .iter()
            .filter(|e| e.pointer("/responseStatus/code").and_then(Value::as_i64) == Some(403))
            .map(|e| {
                format!(
                    "{} {}",
                    e.pointer("/verb").and_then(Value::as_str).unwrap_or("?"),
                    e.pointer("/requestURI")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                )
            })
            .collect()
    }

    pub fn ca(&self) -> &Path {
        &self.pki.ca
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates kwok nodes and waits until each is Ready without the `not-ready` taint.
    pub fn add_nodes(&mut self, nodes: &[NodeSpec]) {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": nodes.iter().map(NodeSpec::manifest).collect::<Vec<_>>(),
        });
        // Node status is set by kwok's stages; create, not server-side apply, so the
        // capacity given here is kept.
        if let Err(e) = self
            .admin
            .run_with_input(&["create", "-f", "-"], Some(&list.to_string()))
        {
            panic!("{e}");
        }
        let admin = self.admin.clone();
        for node in nodes {
            self.wait_for(&format!("node {} Ready and schedulable", node.name), || {
                admin
                    .get("node", None, &node.name)
                    .is_some_and(|n| node_ready(&n) && !has_not_ready_taint(&n))
            });
        }
    }

    /// A kubeconfig that authenticates as `namespace/service_account` with a bound token,
    /// written to a file, and its kubectl.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> (PathBuf, Kubectl) {
        let token = self
            .admin
            .token(namespace, service_account, Duration::from_secs(3600));
        let path = self
            .dir
            .path()
            .join(format!("{namespace}-{service_account}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig(&self.server, &self.pki.ca, &format!("    token: {token}\n")),
        )
        .expect("service-account kubeconfig");
        let kubectl = self.admin.as_user(&path);
        (path, kubectl)
    }
}

fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn has_not_ready_taint(node: &Value) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|taints| {
            taints.iter().any(|t| {
                t.get("key")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.starts_with("node.kubernetes.io/not-ready"))
            })
        })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "real peers' logs are kept in {}; their last lines:\n{}",
                self.logs.display(),
                self.log_tails(30)
            );
        }
        // Reverse order: the API server outlives its clients, etcd outlives the API
        // server (an API server whose etcd is gone ignores SIGTERM).
        while let Some(mut peer) = self.running.pop() {
            let _ = Command::new("kill")
                .args(["-TERM", &peer.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = peer.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = peer.child.kill();
            let _ = peer.child.wait();
        }
    }
}
