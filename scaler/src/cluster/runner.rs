//! `spillway serve` on a cluster: the `kubernetes:` section of the serve config, and the
//! loop that feeds observed replicas to the decision loop, runs the placement
//! controller on each workload's latest decision, and ingests PodMetrics.
//!
//! ```yaml
//! kubernetes:
//!   # apiServer: https://10.0.0.1:6443   # default: in-cluster, else the kubeconfig
//!   interval: 5s
//!   placement: true        # false: only read replica counts
//!   podMetrics: true       # CPU/memory from metrics.k8s.io (namespace = tenant, label app)
//!   lease: { namespace: spillway, name: spillway-placement }   # identity: $POD_NAME
//!   gateways: { namespace: ingress, selector: app=gateway, port: 9113 }
//!   virtualNodes:          # default: Alibaba's virtual-kubelet label and taint
//!     labels: { type: virtual-kubelet }
//!     taints: [{ key: virtual-kubelet.io/provider, value: alibabacloud, effect: NoSchedule }]
//!   workloads:
//!     - { tenant: acme, app: checkout, namespace: acme-prod, scaledObject: checkout }
//!   hpaRefresh: 30s        # how often each workload's HPA is read and judged (see hpa)
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use spillway_collector::clock::unix_ms;
use spillway_collector::ingest::Ingest;
use spillway_collector::signal::WorkloadKey;
use tokio::sync::watch;

use super::ClusterError;
use super::controller::{Controller, ControllerConfig, PlacementGoal, WorkloadRef};
use super::hpa::{HpaReads, HpaViews};
use super::inputs::{WorkloadLabels, ingest_pod_metrics};
use super::lease::{LeaseConfig, LeaseGate};
use super::replicas::{Replicas, read_replicas};
use super::view::ClusterCache;
use crate::engine::ReplicaCounts;
use crate::hpa::ScaleCounts;
use crate::placement::{
    BurstRule, NodeClassifier, PlannerConfig, Resources, TaintEffect, TaintRule,
};
use crate::policy::PolicyStore;
use crate::workloads::{Basis, WorkloadEntry, Workloads};

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn yes() -> bool {
    true
}

fn interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    crate::durations::deserialize(d)
}

/// `kubernetes:` in serve's config. Absent: Spillway never talks to the API server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesSettings {
    /// API server URL; absent: in-cluster service account, else the kubeconfig.
    #[serde(default)]
    pub api_server: Option<String>,
    #[serde(default = "default_interval", deserialize_with = "interval")]
    pub interval: Duration,
    /// Run the placement controller (it writes only while holding the Lease); false:
    /// only read replica counts.
    #[serde(default = "yes")]
    pub placement: bool,
    /// Read CPU and memory from `metrics.k8s.io` (the namespace is the tenant, the
    /// `app` label the app).
    #[serde(default)]
    pub pod_metrics: bool,
    #[serde(default)]
    pub lease: LeaseSettings,
    /// The workloads to observe and place: which ScaledObject each policy workload is.
    #[serde(default)]
    pub workloads: Vec<WorkloadBinding>,
    /// Gateway pods to scrape, found by label selector and re-listed every
    /// `gateways.refresh` as pods come and go.
    #[serde(default)]
    pub gateways: Option<GatewayDiscovery>,
    /// How virtual nodes are told apart; absent: Alibaba's `type=virtual-kubelet` label
    /// and `virtual-kubelet.io/provider=alibabacloud:NoSchedule` taint.
    #[serde(default)]
    pub virtual_nodes: Option<VirtualNodes>,
    /// How often each workload's HPA (the one KEDA created) is read again: it changes
    /// only when someone edits the ScaledObject, and costs 2 GETs.
    #[serde(default = "hpa_refresh", deserialize_with = "interval")]
    pub hpa_refresh: Duration,
}

fn hpa_refresh() -> Duration {
    Duration::from_secs(30)
}

/// A node is virtual when it has any of these labels or any of these taints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualNodes {
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<VirtualTaint>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualTaint {
    pub key: String,
    /// Absent: any value.
    #[serde(default)]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; absent: any effect.
    #[serde(default)]
    pub effect: Option<String>,
}

impl VirtualNodes {
    pub fn classifier(&self) -> Result<NodeClassifier, String> {
        let mut taints = Vec::with_capacity(self.taints.len());
        for t in &self.taints {
            let effect = match &t.effect {
                None => None,
                Some(e) => Some(TaintEffect::from_api(e).ok_or_else(|| {
                    format!(
                        "kubernetes.virtualNodes.taints: effect '{e}' is not NoSchedule, PreferNoSchedule or NoExecute"
                    )
                })?),
            };
            taints.push(TaintRule {
                key: t.key.clone(),
                value: t.value.clone(),
                effect,
            });
        }
        if self.labels.is_empty() && taints.is_empty() {
            return Err("kubernetes.virtualNodes needs at least one label or taint".into());
        }
        Ok(NodeClassifier {
            virtual_labels: self.labels.clone().into_iter().collect(),
            virtual_taints: taints,
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayDiscovery {
    pub namespace: String,
    /// Equality label selector, `app=gateway,tier=edge`.
    pub selector: String,
    pub port: u16,
    #[serde(default = "metrics_path")]
    pub path: String,
    /// How often the pods are listed again; gateways scale with the traffic, and a new
    /// replica's requests are invisible until it is listed.
    #[serde(default = "gateway_refresh", deserialize_with = "interval")]
    pub refresh: Duration,
}

fn gateway_refresh() -> Duration {
    Duration::from_secs(10)
}

fn metrics_path() -> String {
    "/metrics".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity; absent: `$POD_NAME`, then `$HOSTNAME`.
    #[serde(default)]
    pub identity: Option<String>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            namespace: "spillway".into(),
            name: "spillway-placement".into(),
            identity: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadBinding {
    pub tenant: String,
    pub app: String,
    pub namespace: String,
    pub scaled_object: String,
}

impl KubernetesSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(1) {
            return Err("kubernetes.interval must be at least 1s".into());
        }
        if let Some(g) = &self.gateways
            && g.refresh < Duration::from_secs(1)
        {
            return Err("kubernetes.gateways.refresh must be at least 1s".into());
        }
        if self.hpa_refresh < Duration::from_secs(1) {
            return Err("kubernetes.hpaRefresh must be at least 1s".into());
        }
        if let Some(url) = &self.api_server
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "kubernetes.apiServer '{url}' must be an http:// or https:// URL"
            ));
        }
        self.classifier().map(|_| ())
    }

    /// The node classifier these settings name.
    pub fn classifier(&self) -> Result<NodeClassifier, String> {
        self.virtual_nodes
            .as_ref()
            .map_or_else(|| Ok(NodeClassifier::default()), VirtualNodes::classifier)
    }

    fn identity(&self) -> String {
        self.lease
            .identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("spillway-{}", std::process::id()))
    }
}

pub(crate) async fn client(settings: &KubernetesSettings) -> Result<kube::Client, ClusterError> {
    let config = match &settings.api_server {
        Some(url) => kube::Config::new(
            url.parse()
                .map_err(|e| ClusterError::Invalid(format!("kubernetes.apiServer {url:?}: {e}")))?,
        ),
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Invalid(format!("no Kubernetes configuration: {e}")))?,
    };
    kube::Client::try_from(without_retry(config))
        .map_err(|e| ClusterError::api("building the client", e))
}

/// kube retries 429/503/504 by default, up to 15 times with backoff growing to minutes.
/// An eviction refused by a PodDisruptionBudget answers 429, and that answer must come
/// back at once so the drain move waits and the other workloads are not held up; the
/// reconcile loop is the retry.
pub fn without_retry(mut config: kube::Config) -> kube::Config {
    config.default_retry = false;
    config
}

/// The planner as a real cluster needs it: one drain move at a time. Every burst pod of
/// a move in flight carries the lowest deletion cost, and when one move hands its surge
/// back the ReplicaSet removes *a* lowest-cost pod; with several moves in flight it may
/// take one whose replacement is not Ready yet, and the moves then undo each other (seen
/// behind the real ReplicaSet controller: pods stayed on the virtual node while moves
/// were cancelled and surged again).
fn cluster_planner() -> PlannerConfig {
    let mut planner = PlannerConfig::default();
    planner.drain.max_in_flight = 1;
    planner.drain.max_moves_per_tick = 1;
    planner
}

/// Runs until `shutdown` flips to true. `observed` is told once every bound workload's
/// replica counts have been read for the first time (or failed to be).
pub async fn run(
    settings: KubernetesSettings,
    workloads: Arc<Workloads>,
    ingest: Arc<Ingest>,
    policies: Arc<PolicyStore>,
    hpa_views: Arc<HpaViews>,
    mut shutdown: watch::Receiver<bool>,
    observed: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), ClusterError> {
    crate::app::install_crypto_provider();
    let client = client(&settings).await?;
    let cache = Arc::new(ClusterCache::start(client.clone()));
    // Replica counts first, before waiting for the caches: until a workload's
    // spec.replicas is known, what it is served cannot be held at what runs.
    observe_first(&settings, &workloads, &client, &cache).await;
    if let Some(observed) = observed {
        // The receiver may have stopped waiting; nothing to do then.
        let _ = observed.send(());
    }
    if !cache.ready(Duration::from_secs(30)).await {
        tracing::warn!("node and pod caches not filled after 30s; placement waits for them");
    }
    let lease = LeaseGate::new(
        client.clone(),
        LeaseConfig::new(
            &settings.lease.namespace,
            &settings.lease.name,
            &settings.identity(),
        ),
    );
    let mut controller = Controller::new(
        client.clone(),
        cache.clone(),
        lease,
        ControllerConfig {
            classifier: settings.classifier().map_err(ClusterError::Invalid)?,
            planner: cluster_planner(),
        },
    );
    let metrics_source: Arc<str> = "kubernetes-metrics".into();
    let mut hpa_reads = HpaReads::new(settings.hpa_refresh);
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = ticker.tick() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stop {
            controller.release_lease().await;
            return Ok(());
        }
        if settings.pod_metrics
            && let Err(e) = ingest_pod_metrics(
                &client,
                None,
                &WorkloadLabels::default(),
                &policies.current(),
                &ingest,
                &metrics_source,
                unix_ms(),
            )
            .await
        {
            tracing::warn!(error = %e, "PodMetrics not read");
        }
        let set = policies.current();
        for b in &settings.workloads {
            let key = WorkloadKey::new(b.tenant.as_str(), b.app.as_str());
            let entry = workloads.get_or_insert(&key);
            let policy = match set.lookup(&b.tenant, &b.app, &b.namespace) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(tenant = %b.tenant, app = %b.app, error = %e, "no policy; not placing");
                    continue;
                }
            };
            hpa_reads
                .refresh(&client, b, &key, &policy, &entry, &hpa_views, unix_ms())
                .await;
            // The HPA's own tolerance, once read, replaces the policy's `hpaTolerance` in
            // the number served.
            entry.set_hpa_view(hpa_views.tolerance(&key).map(|t| crate::hpa::HpaView {
                tolerance: crate::hpa::HpaTolerance {
                    scale_up: t.up,
                    scale_down: t.down,
                },
                source: crate::hpa::HpaSource::Cluster,
            }));
            // A decision from nothing (no data, no replica count yet) places nothing.
            let decided = entry
                .latest()
                .filter(|p| p.basis != Basis::Nothing)
                .map(|p| p.desired);
            let w = WorkloadRef {
                namespace: b.namespace.clone(),
                scaled_object: b.scaled_object.clone(),
            };
            let observed: Option<(ScaleCounts, u32, u32)> = match (settings.placement, decided) {
                (true, Some(desired)) => {
                    let goal = PlacementGoal {
                        desired,
                        burst: BurstRule {
                            enabled: policy.placement.burst.enabled,
                            max_replicas: policy.placement.burst.max_replicas,
                        },
                        requests: Resources::per_pod(
                            policy.placement.requests.cpu_millis,
                            policy.placement.requests.memory_bytes,
                        ),
                    };
                    match controller.reconcile(&w, &goal, unix_ms()).await {
                        Ok(r) => {
                            if !r.writes.is_empty() || !r.drain_actions.is_empty() {
                                tracing::info!(tenant = %b.tenant, app = %b.app, plan = %r.plan.reason,
                                    writes = ?r.writes, drain = ?r.drain_actions, in_flight = r.in_flight,
                                    surging = r.surging, calls = %r.calls, "placement applied");
                            }
                            let adjustment = r.adjustment();
                            entry.set_adjustment(adjustment);
                            entry.set_cluster_placement(crate::replicas::Placed {
                                pods: r.replicas.current,
                                ready: r.replicas.ready,
                                regular: r.plan.regular,
                                burst: r.plan.burst,
                                shortfall: r.plan.shortfall,
                                cost_per_hour: crate::placement::cost_rate(
                                    &crate::placement::CostModel::default(),
                                    &r.plan,
                                )
                                .per_hour(),
                                reason: r.plan.reason.to_string(),
                            });
                            // The engine starts from spec less the surge Spillway itself
                            // added for drain moves, which is not part of any decision.
                            let scale = ScaleCounts {
                                spec: r.spec_after(),
                                status: r.replicas.current,
                            };
                            let current = scale.spec.saturating_sub(adjustment.surge);
                            observe_freeze(&workloads, &key, &r.replicas);
                            Some((scale, current, r.replicas.ready))
                        }
                        Err(e) => {
                            tracing::warn!(tenant = %b.tenant, app = %b.app, error = %e, "placement reconcile failed; retried next interval");
                            None
                        }
                    }
                }
                _ => match read_replicas(&client, &cache, &b.namespace, &b.scaled_object).await {
                    Ok(r) => {
                        observe_freeze(&workloads, &key, &r);
                        Some((scale_of(&r), r.spec, r.ready))
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %b.tenant, app = %b.app, error = %e, "replica counts not read");
                        None
                    }
                },
            };
            if let Some((scale, current, ready)) = observed {
                observe(&entry, scale, current, ready);
            }
        }
    }
}

/// Hands a workload's replica counts to the decision loop: the engine holds on
/// `spec.replicas` (never `status.replicas`, which counts a rollout's surge pods), and
/// the served number is computed against both as the HPA reads them.
fn observe(entry: &WorkloadEntry, scale: ScaleCounts, current: u32, ready: u32) {
    entry.set_observed_scale(ReplicaCounts { current, ready }, scale);
}

/// A freeze written on the ScaledObject, read with the counts (no extra call). A read
/// that failed leaves the last state, so an unreachable API server lifts no freeze.
fn observe_freeze(workloads: &Workloads, key: &WorkloadKey, r: &Replicas) {
    let now_ms = unix_ms();
    let book = workloads.freezes();
    // `since` is when the annotation was first seen, not this read.
    let since = book
        .applying(key)
        .into_iter()
        .find(|f| f.source == crate::freeze::Source::Annotation)
        .map_or(now_ms, |f| f.since_ms);
    let found = crate::freeze::annotation::parse(key, &r.annotations, since);
    book.observe_annotation(key, found, workloads.audit(), now_ms);
}

fn scale_of(r: &Replicas) -> ScaleCounts {
    ScaleCounts {
        spec: r.spec,
        status: r.current,
    }
}

/// One read of every bound workload's scale at start. The pod cache may still be empty,
/// so the pods that exist count as ready: a count of 0 would look like a burst to the
/// panic rule.
async fn observe_first(
    settings: &KubernetesSettings,
    workloads: &Workloads,
    client: &kube::Client,
    cache: &ClusterCache,
) {
    for b in &settings.workloads {
        let entry = workloads.get_or_insert(&WorkloadKey::new(b.tenant.as_str(), b.app.as_str()));
        match read_replicas(client, cache, &b.namespace, &b.scaled_object).await {
            Ok(r) => {
                observe_freeze(workloads, &entry.key, &r);
                let ready = r.ready.max(r.current.min(r.spec));
                observe(&entry, scale_of(&r), r.spec, ready);
            }
            Err(e) => {
                tracing::warn!(tenant = %b.tenant, app = %b.app, error = %e, "replica counts not read at start");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_errors() {
        let s: KubernetesSettings = serde_saphyr::from_str(
            "workloads: [{tenant: acme, app: web, namespace: shop, scaledObject: web}]\n",
        )
        .expect("valid");
        assert_eq!(s.interval, Duration::from_secs(5));
        assert!(s.placement);
        assert!(!s.pod_metrics);
        assert_eq!(s.lease.namespace, "spillway");
        assert_eq!(s.workloads[0].scaled_object, "web");
        assert!(s.validate().is_ok());
        assert!(s.gateways.is_none());
        assert_eq!(s.hpa_refresh, Duration::from_secs(30));
        let g: KubernetesSettings = serde_saphyr::from_str(
            "gateways: {namespace: ingress, selector: app=gateway, port: 9113}\n",
        )
        .expect("valid");
        assert_eq!(g.gateways.map(|g| g.path).as_deref(), Some("/metrics"));
        let bad: KubernetesSettings =
            serde_saphyr::from_str("apiServer: 127.0.0.1:6443\n").expect("parses");
        assert!(bad.validate().is_err());
        assert!(serde_saphyr::from_str::<KubernetesSettings>("unknown: 1\n").is_err());
    }

    #[test]
    fn virtual_nodes_are_configurable() {
        let s: KubernetesSettings = serde_saphyr::from_str(
            "virtualNodes:\n  labels: {k8s.aliyun.com/vnode: \"true\"}\n  taints: [{key: k8s.aliyun.com/vnode}]\n",
        )
        .expect("valid");
        let c = s.classifier().expect("classifier");
        assert_eq!(
            c.virtual_labels,
            vec![("k8s.aliyun.com/vnode".to_string(), "true".to_string())]
        );
        assert_eq!(c.virtual_taints[0].effect, None);
        assert_eq!(
            KubernetesSettings {
                virtual_nodes: None,
                ..s.clone()
            }
            .classifier(),
            Ok(NodeClassifier::default())
        );
        let bad: KubernetesSettings =
            serde_saphyr::from_str("virtualNodes: {taints: [{key: a, effect: Sometimes}]}\n")
                .expect("parses");
        assert!(bad.validate().unwrap_err().contains("Sometimes"));
        let empty: KubernetesSettings =
            serde_saphyr::from_str("virtualNodes: {}\n").expect("parses");
        assert!(empty.validate().is_err());
    }
}
