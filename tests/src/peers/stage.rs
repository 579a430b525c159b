//! A stage for the real-peer scenarios: the cluster with regular and virtual kwok
//! nodes, Spillway's namespace and service account bound to exactly the RBAC in
//! `deploy/rbac/`, a fake gateway on loopback, and helpers that create the workloads and
//! ScaledObjects a user would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;

use super::PeerDir;
use super::cluster::{Cluster, ClusterOptions, NodeSpec};
use super::kubectl::Kubectl;
use crate::gateway::{FakeGateway, Mode};
use crate::process::{Spillway, write_serve_config_on};

/// The tenant namespace every scenario's workloads live in.
pub const NAMESPACE: &str = "acme-prod";

/// Who Spillway is to the API server: the service account `deploy/rbac/` binds.
pub const SPILLWAY_USER: &str = "system:serviceaccount:spillway:spillway";

/// The HPA `behavior` that makes KEDA's HPA a pass-through (as the README gives it),
/// with `tolerance: 0`, which Kubernetes >= 1.35 honours by default.
pub const PASSTHROUGH: &str = "scaleUp:
  stabilizationWindowSeconds: 0
  selectPolicy: Max
  tolerance: 0
  policies:
    - { type: Percent, value: 1000, periodSeconds: 15 }
    - { type: Pods, value: 1000, periodSeconds: 15 }
scaleDown:
  stabilizationWindowSeconds: 0
  selectPolicy: Max
  tolerance: 0
  policies:
    - { type: Percent, value: 100, periodSeconds: 15 }";

pub struct Stage {
    pub cluster: Cluster,
    pub gateway: FakeGateway,
    /// Spillway's identity: the `spillway` service account with `deploy/rbac/`.
    pub spillway_kubeconfig: PathBuf,
    pub spillway_kubectl: Kubectl,
    repo: PathBuf,
}

/// A Deployment plus the ScaledObject that scales it through Spillway.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    /// `external` or `external-push`.
    pub trigger: &'static str,
    pub min: u32,
    pub max: u32,
    pub initial: u32,
    pub cpu_request: String,
    pub cooldown_secs: u32,
    pub polling_secs: u32,
    /// The HPA `behavior` block (YAML, flush left).
    pub behavior: String,
    /// Extra YAML under the ScaledObject's `spec` (flush left), e.g. a `fallback:`.
    pub extra_spec: String,
    /// Extra YAML under the Deployment's `spec` (flush left), e.g. `minReadySeconds`.
    pub deployment_extra: String,
    /// The trigger's metadata as an inline map; `None`: Spillway's (`scalerAddress`,
    /// `tenant`, `app`).
    pub metadata: Option<String>,
}

impl App {
    pub fn new(name: &str, trigger: &'static str) -> Self {
        Self {
            name: name.into(),
            trigger,
            min: 1,
            max: 60,
            initial: 1,
            cpu_request: "500m".into(),
            cooldown_secs: 30,
            polling_secs: 5,
            behavior: PASSTHROUGH.into(),
            extra_spec: String::new(),
            deployment_extra: String::new(),
            metadata: None,
        }
    }

    /// Scaled by KEDA's own `prometheus` trigger on `query` at `threshold` per replica,
    /// the alternative users would pick.
    pub fn prometheus(name: &str, server: &str, query: &str, threshold: u32) -> Self {
        let mut app = Self::new(name, "prometheus");
        app.metadata = Some(format!(
            "{{ serverAddress: \"{server}\", query: '{query}', threshold: \"{threshold}\" }}"
        ));
        app
    }
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

impl Stage {
    /// The cluster with `regular` nodes of `cpu` cores each and one virtual node, and
    /// Spillway's RBAC installed from `repo/deploy/rbac`.
    pub async fn start(
        peers: &PeerDir,
        logs: &Path,
        repo: &Path,
        regular: usize,
        cpu: &str,
    ) -> Self {
        Self::start_with(peers, ClusterOptions::new(logs), repo, regular, cpu).await
    }

    /// [`Self::start`] for a scenario that asserts no timings: another such cluster may
    /// run beside it.
    pub async fn start_sharing(
        peers: &PeerDir,
        logs: &Path,
        repo: &Path,
        regular: usize,
        cpu: &str,
    ) -> Self {
        let options = ClusterOptions {
            share_machine: true,
            ..ClusterOptions::new(logs)
        };
        Self::start_with(peers, options, repo, regular, cpu).await
    }

    async fn start_with(
        peers: &PeerDir,
        options: ClusterOptions,
        repo: &Path,
        regular: usize,
        cpu: &str,
    ) -> Self {
        let peers = peers.clone();
        let nodes: Vec<NodeSpec> = (1..=regular)
            .map(|i| NodeSpec::regular(&format!("ecs-{i}"), cpu, "32Gi"))
            .chain([NodeSpec::virtual_kubelet("vk-1")])
            .collect();
        let cluster = tokio::task::spawn_blocking(move || {
            let mut cluster = Cluster::start(&peers, &options);
            cluster.add_nodes(&nodes);
            cluster
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let timings: Vec<String> = cluster
            .timings
            .iter()
            .map(|(what, took)| format!("{what} {:.1} s", took.as_secs_f64()))
            .collect();
        eprintln!("REAL-PEERS cluster start: {}", timings.join(", "));
        cluster.admin.must_apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{ name: spillway }}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {NAMESPACE} }}\n"
        ));
        install_rbac(&cluster.admin, repo);
        let (spillway_kubeconfig, spillway_kubectl) =
            cluster.service_account_kubeconfig("spillway", "spillway");
        let gateway = FakeGateway::start(Mode::Healthy).await;
        Self {
            cluster,
            gateway,
            spillway_kubeconfig,
            spillway_kubectl,
            repo: repo.to_owned(),
        }
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    pub fn admin(&self) -> &Kubectl {
        &self.cluster.admin
    }

    /// `spillway serve` as the `spillway` service account, with `config` (the part after
    /// `listen`/`policies`) and the policies, its lease identity `identity`.
    pub fn serve(
        &self,
        bin: &str,
        dir: &Path,
        policies: &[(&str, &str)],
        config: &str,
        identity: &str,
    ) -> Spillway {
        self.serve_on(bin, dir, policies, config, identity, "127.0.0.1:0")
    }

    /// [`Self::serve`] with its gRPC port at `grpc`, to restart it where KEDA points.
    pub fn serve_on(
        &self,
        bin: &str,
        dir: &Path,
        policies: &[(&str, &str)],
        config: &str,
        identity: &str,
        grpc: &str,
    ) -> Spillway {
        let path = write_serve_config_on(dir, policies, config, grpc);
        let kubeconfig = self.spillway_kubeconfig.display().to_string();
        Spillway::serve_with_env(
            bin,
            &path,
            &[("KUBECONFIG", kubeconfig.as_str()), ("POD_NAME", identity)],
        )
    }

    /// Creates the Deployment and its ScaledObject pointing at `scaler`.
    pub fn create_app(&self, app: &App, scaler: std::net::SocketAddr) {
        let deployment_extra = indent(&app.deployment_extra, 2);
        let behavior = indent(&app.behavior, 8);
        let extra_spec = indent(&app.extra_spec, 2);
        let metadata = app.metadata.clone().unwrap_or_else(|| {
            format!(
                "{{ scalerAddress: \"{scaler}\", tenant: acme, app: {} }}",
                app.name
            )
        });
        self.admin().must_apply(&format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{ name: {name}, namespace: {NAMESPACE} }}
spec:
  replicas: {initial}
{deployment_extra}  selector: {{ matchLabels: {{ app: {name} }} }}
  template:
    metadata: {{ labels: {{ app: {name} }} }}
    spec:
      containers:
        - name: app
          image: registry.invalid/{name}:1
          resources: {{ requests: {{ cpu: {cpu}, memory: 256Mi }} }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{ name: {name}, namespace: {NAMESPACE} }}
spec:
  scaleTargetRef: {{ name: {name} }}
  pollingInterval: {polling}
  cooldownPeriod: {cooldown}
  minReplicaCount: {min}
  maxReplicaCount: {max}
{extra_spec}  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
{behavior}  triggers:
    - type: {trigger}
      metricType: AverageValue
      metadata: {metadata}
",
            name = app.name,
            initial = app.initial,
            cpu = app.cpu_request,
            polling = app.polling_secs,
            cooldown = app.cooldown_secs,
            min = app.min,
            max = app.max,
            trigger = app.trigger,
        ));
    }

    /// `spec.replicas` of a Deployment.
    pub fn spec_replicas(&self, name: &str) -> Option<i64> {
        self.admin()
            .number("deployment", NAMESPACE, name, "/spec/replicas")
    }

    /// The Deployment's pods, with the node each is bound to (`None`: Pending).
    pub fn pods(&self, app: &str) -> Vec<(String, Option<String>, bool)> {
        self.admin()
            .list("pods", Some(NAMESPACE), &format!("app={app}"))
            .iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .map(|p| {
                let name = p
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let node = p
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let ready = p
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                (name, node, ready)
            })
            .collect()
    }

    /// Waits (bounded) until `spec.replicas` of `name` satisfies `want`, returning the
    /// value and when it got there.
    pub fn wait_spec(
        &mut self,
        name: &str,
        limit: Duration,
        want: impl Fn(i64) -> bool,
        what: &str,
    ) -> (i64, Instant) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(n) = self.spec_replicas(name).filter(|n| want(*n)) {
                return (n, Instant::now());
            }
            self.cluster.check_alive();
            assert!(
                Instant::now() < deadline,
                "{name}: spec.replicas did not reach {what} within {limit:?} (now {:?}); HPA: {}",
                self.spec_replicas(name),
                self.hpa_summary(name)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The HPA KEDA made for `name`, in a line, for failure messages.
    pub fn hpa_summary(&self, name: &str) -> String {
        self.admin()
            .get("hpa", Some(NAMESPACE), &format!("keda-hpa-{name}"))
            .map(|h| {
                format!(
                    "desired {} current {} conditions {}",
                    h.pointer("/status/desiredReplicas").unwrap_or(&Value::Null),
                    h.pointer("/status/currentReplicas").unwrap_or(&Value::Null),
                    h.pointer("/status/conditions").unwrap_or(&Value::Null)
                )
            })
            .unwrap_or_else(|| "absent".into())
    }

    /// Scenario 5's first half: every call Spillway made was allowed by `deploy/rbac/`,
    /// and it made some (the audit log is not empty by accident).
    pub fn assert_rbac_sufficient(&self) {
        let calls = self.cluster.audit_events(SPILLWAY_USER);
        assert!(
            calls.len() > 10,
            "Spillway's calls are in the audit log ({})",
            calls.len()
        );
        let refused = self.cluster.forbidden(SPILLWAY_USER);
        assert!(
            refused.is_empty(),
            "deploy/rbac/ refused Spillway: {refused:#?}"
        );
    }

    /// Events on the ScaledObject `name` whose reason is `reason`.
    pub fn events(&self, name: &str, reason: &str) -> Vec<String> {
        self.admin()
            .list("events", Some(NAMESPACE), "")
            .iter()
            .filter(|e| {
                e.pointer("/involvedObject/name").and_then(Value::as_str) == Some(name)
                    && e.pointer("/reason").and_then(Value::as_str) == Some(reason)
            })
            .map(|e| {
                e.pointer("/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

/// Applies every object in `deploy/rbac/` as the admin, so Spillway runs with exactly
/// the rules a user installs.
pub fn install_rbac(admin: &Kubectl, repo: &Path) {
    let dir = repo.join("deploy/rbac");
    if dir.join("kustomization.yaml").is_file() {
        let rendered = admin
            .run(&["kustomize", &dir.display().to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        admin.must_apply(&rendered);
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/rbac")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("rbac file");
        admin.must_apply(&text);
    }
}
