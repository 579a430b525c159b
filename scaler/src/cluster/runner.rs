//! `spillway serve` on a cluster: the loop that feeds observed replicas to the decision loop, runs the placement
//! controller on each workload's latest decision, and ingests PodMetrics.
//!
//! The `kubernetes:` section itself is read in [`crate::config::kubernetes`].

use std::sync::Arc;
use std::time::Duration;

use spillway_collector::clock::unix_ms;
use spillway_collector::ingest::Ingest;
use spillway_collector::signal::WorkloadKey;
use tokio::sync::watch;

use super::ClusterError;
use super::controller::{Controller, ControllerConfig, PlacementGoal, WorkloadRef};
use super::hpa::{HpaReads, HpaViews};
use super::inputs::{WorkloadLabels, ingest_pod_metrics};
use super::lease::{LeaseConfig, LeaseGate, LeaseNow};
use super::replicas::{Replicas, read_replicas};
use super::view::ClusterCache;
use crate::config::kubernetes::KubernetesSettings;
use crate::engine::ReplicaCounts;
use crate::hpa::ScaleCounts;
use crate::placement::{BurstRule, PlannerConfig, Resources};
use crate::policy::PolicyStore;
use crate::serve::workloads::{Basis, WorkloadEntry, Workloads};

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
    crate::serve::install_crypto_provider();
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
    // The Lease's terms are measured from here on tokio's clock, which never goes back.
    let started = tokio::time::Instant::now();
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
                        frozen: matches!(
                            workloads.freezes().verdict(&key, unix_ms()),
                            Some(crate::freeze::Verdict::Holding(_))
                        ),
                    };
                    let now = LeaseNow {
                        unix_ms: unix_ms(),
                        monotonic_ms: i64::try_from(started.elapsed().as_millis())
                            .unwrap_or(i64::MAX),
                    };
                    match controller.reconcile(&w, &goal, now).await {
                        Ok(r) => {
                            if !r.writes.is_empty() || !r.drain_actions.is_empty() {
                                tracing::info!(tenant = %b.tenant, app = %b.app, plan = %r.plan.reason,
                                    writes = ?r.writes, drain = ?r.drain_actions, in_flight = r.in_flight,
                                    surging = r.surging, calls = %r.calls, "placement applied");
                            }
                            let adjustment = r.adjustment();
                            entry.set_adjustment(adjustment);
                            entry.set_cluster_placement(crate::serve::replicas::Placed {
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
