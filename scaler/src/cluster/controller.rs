//! The placement controller: per workload, reads replicas and the cluster view, plans,
//! and applies the plan with Kubernetes' own levers, writing only while it holds the
//! Lease. Every write is idempotent and made only when the cluster differs from the
//! plan, so a reconcile cut short by an API error is finished by the next one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, EvictParams, Patch, PatchParams};
use serde_json::json;

use super::convert::{pod_ready, workload_pod};
use super::lease::{LeaseGate, LeaseNow};
use super::replicas::{Replicas, read_replicas};
use super::template::template_patch;
use super::view::ClusterCache;
use super::{ApiCalls, ClusterError};
use crate::placement::{
    BurstRule, DrainAction, DrainObservation, DrainState, MoveObservation, NodeClassifier,
    NodeKind, Plan, PlanInput, PlannerConfig, Resources, SurgeStatus, drain_step, plan,
};
use crate::serve::workloads::PlacementAdjustment;

pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A workload, named by its ScaledObject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    pub namespace: String,
    pub scaled_object: String,
}

/// What the decision engine and the tenant's policy ask of one workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementGoal {
    pub desired: u32,
    pub burst: BurstRule,
    pub requests: Resources,
    /// Scaling is frozen (the emergency brake): no new drain-back move starts.
    pub frozen: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    pub classifier: NodeClassifier,
    pub planner: PlannerConfig,
}

/// One write a reconcile made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Template {
        tolerate_burst: bool,
    },
    DeletionCost {
        pod: String,
        cost: i32,
    },
    /// The Eviction API approved removing this burst pod (a dry run: the ReplicaSet removes
    /// it when the surge is handed back).
    Evict {
        pod: String,
    },
    Scale {
        replicas: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileReport {
    pub leader: bool,
    pub replicas: Replicas,
    pub plan: Plan,
    pub writes: Vec<Write>,
    pub drain_actions: Vec<DrainAction>,
    /// Moves in flight after this reconcile.
    pub in_flight: usize,
    /// Drain moves whose surge replica is still wanted on top of the plan.
    pub surging: u32,
    pub calls: ApiCalls,
}

impl ReconcileReport {
    /// `spec.replicas` once this reconcile's writes are made: the scale it patched, or
    /// the one it read.
    pub fn spec_after(&self) -> u32 {
        self.writes
            .iter()
            .rev()
            .find_map(|w| match w {
                Write::Scale { replicas } => Some(*replicas),
                _ => None,
            })
            .unwrap_or(self.replicas.spec)
    }

    /// What the replica count KEDA is served must become so the HPA keeps what this
    /// reconcile set up, rather than undoing it on its next sync.
    pub fn adjustment(&self) -> PlacementAdjustment {
        PlacementAdjustment {
            cap: (self.plan.replicas < self.plan.desired).then_some(self.plan.replicas),
            surge: self.surging,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{source} (after {calls} API calls, writes made: {writes:?})")]
pub struct ReconcileError {
    #[source]
    pub source: ClusterError,
    pub calls: ApiCalls,
    pub writes: Vec<Write>,
}

/// Per-workload memory across reconciles: drain moves in flight, and which pod is the
/// surge pod for which move.
#[derive(Debug, Default)]
struct Memo {
    drain: DrainState,
    /// Pod names that existed when each move's surge was asked for.
    known_at_surge: HashMap<String, BTreeSet<String>>,
    /// Surge pod per move, once seen.
    surge_pod: HashMap<String, String>,
    /// Replicas added on top of the goal for surges, last written.
    surged: u32,
}

pub struct Controller {
    client: Client,
    cache: Arc<ClusterCache>,
    config: ControllerConfig,
    lease: LeaseGate,
    memos: HashMap<WorkloadRef, Memo>,
}

impl Controller {
    pub fn new(
        client: Client,
        cache: Arc<ClusterCache>,
        lease: LeaseGate,
        config: ControllerConfig,
    ) -> Self {
        Controller {
            client,
            cache,
            config,
            lease,
            memos: HashMap::new(),
        }
    }

    pub fn cache(&self) -> &ClusterCache {
        &self.cache
    }

    /// Hands the write Lease back (at shutdown).
    pub async fn release_lease(&mut self) {
        self.lease.release().await;
    }

    /// Reads replica counts (2 GETs), then, holding the Lease, plans and writes what
    /// differs. `now` is passed in so tests control time: its unix milliseconds date
    /// the plan, its monotonic ones measure the Lease's term.
    pub async fn reconcile(
        &mut self,
        w: &WorkloadRef,
        goal: &PlacementGoal,
        now: impl Into<LeaseNow>,
    ) -> Result<ReconcileReport, ReconcileError> {
        let now = now.into();
        let mut calls = ApiCalls::default();
        let mut writes = Vec::new();
        let result = self
            .reconcile_inner(w, goal, now, &mut calls, &mut writes)
            .await;
        match result {
            Ok(o) => Ok(ReconcileReport {
                leader: o.leader,
                replicas: o.replicas,
                plan: o.plan,
                writes,
                drain_actions: o.drain_actions,
                in_flight: o.in_flight,
                surging: o.surging,
                calls,
            }),
            Err(source) => Err(ReconcileError {
                source,
                calls,
                writes,
            }),
        }
    }

    async fn reconcile_inner(
        &mut self,
        w: &WorkloadRef,
        goal: &PlacementGoal,
        now: LeaseNow,
        calls: &mut ApiCalls,
        writes: &mut Vec<Write>,
    ) -> Result<Outcome, ClusterError> {
        calls.reads += 2;
        let replicas =
            read_replicas(&self.client, &self.cache, &w.namespace, &w.scaled_object).await?;
        let pods: Vec<Arc<Pod>> = self.cache.workload_pods(&w.namespace, &replicas.selector);
        let view = self
            .cache
            .view(&self.config.classifier)
            .map_err(|e| ClusterError::Invalid(e.to_string()))?;
        let memo = self.memos.entry(w.clone()).or_default();
        let wpods: Vec<_> = pods.iter().map(|p| workload_pod(p)).collect();
        let draining = memo.drain.draining();
        let the_plan = plan(
            &PlanInput {
                desired: goal.desired,
                requests: goal.requests,
                pods: &wpods,
                draining: &draining,
                cluster: &view,
                burst: goal.burst,
            },
            &self.config.planner,
        );

        let leader = self.lease.check(now, calls).await;
        if !leader {
            return Ok(Outcome {
                leader: false,
                replicas,
                plan: the_plan,
                drain_actions: Vec::new(),
                in_flight: memo.drain.in_flight.len(),
                // Only the leader surges; a follower serves the plan alone.
                surging: 0,
            });
        }

        // 1. The pod template: one GET, and one all-or-nothing PATCH when it differs.
        let target_api = replicas.target.api(self.client.clone());
        calls.reads += 1;
        let target = target_api
            .get(&replicas.target.name)
            .await
            .map_err(|e| ClusterError::api("get scale target", e))?;
        let target_json = serde_json::to_value(&target)
            .map_err(|e| ClusterError::Invalid(format!("scale target: {e}")))?;
        if let Some(p) = template_patch(
            &target_json,
            the_plan.allow_burst_toleration,
            &self.config.classifier,
        ) {
            calls.writes += 1;
            target_api
                .patch(
                    &replicas.target.name,
                    &PatchParams::default(),
                    &Patch::Json::<()>(p),
                )
                .await
                .map_err(|e| ClusterError::api("patch pod template", e))?;
            writes.push(Write::Template {
                tolerate_burst: the_plan.allow_burst_toleration,
            });
        }

        // 2. Deletion costs: one merge PATCH per pod whose annotation differs.
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), &w.namespace);
        let by_name: BTreeMap<&str, &Arc<Pod>> = pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref().map(|n| (n, p)))
            .collect();
        for dc in &the_plan.deletion_costs {
            let Some(pod) = by_name.get(dc.pod.as_str()) else {
                continue;
            };
            let have: Option<i32> = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DELETION_COST))
                .and_then(|v| v.parse().ok());
            if have.unwrap_or(0) == dc.cost {
                continue;
            }
            calls.writes += 1;
            let body = json!({"metadata": {"annotations": {DELETION_COST: dc.cost.to_string()}}});
            match pod_api
                .patch(&dc.pod, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => writes.push(Write::DeletionCost {
                    pod: dc.pod.clone(),
                    cost: dc.cost,
                }),
                // Gone since the cache saw it: nothing left to rank.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(ClusterError::api("patch pod deletion cost", e)),
            }
        }

        // 3. Drain back: surge (scale up), then evict once the surge pod is Ready.
        let now = now.unix_ms.div_euclid(1000);
        let node_kind: HashMap<&str, NodeKind> = view
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.kind))
            .collect();
        let by_created: Vec<&Arc<Pod>> = {
            let mut v: Vec<&Arc<Pod>> = pods.iter().collect();
            v.sort_by_key(|p| (workload_pod(p).created_at, p.metadata.name.clone()));
            v
        };
        let mut claimed: BTreeSet<String> = memo.surge_pod.values().cloned().collect();
        let mut observations = Vec::new();
        for m in &memo.drain.in_flight {
            if !memo.surge_pod.contains_key(&m.from_pod) {
                let known = memo.known_at_surge.get(&m.from_pod);
                let fresh = by_created.iter().find_map(|p| {
                    let name = p.metadata.name.clone()?;
                    let new = known.is_some_and(|k| !k.contains(&name));
                    (new && !claimed.contains(&name)).then_some(name)
                });
                if let Some(name) = fresh {
                    claimed.insert(name.clone());
                    memo.surge_pod.insert(m.from_pod.clone(), name);
                }
            }
            let source = by_name.get(m.from_pod.as_str());
            let surge = memo
                .surge_pod
                .get(&m.from_pod)
                .and_then(|s| by_name.get(s.as_str()))
                .map_or(SurgeStatus::Pending, |p| {
                    let kind = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .and_then(|n| node_kind.get(n));
                    match (kind, pod_ready(p)) {
                        (Some(NodeKind::Regular), true) => SurgeStatus::ReadyOnRegular,
                        (Some(NodeKind::Virtual), true) => SurgeStatus::ReadyOnVirtual,
                        (Some(NodeKind::Virtual), false) => SurgeStatus::StartingOnVirtual,
                        _ => SurgeStatus::Pending,
                    }
                });
            observations.push(MoveObservation {
                from_pod: m.from_pod.clone(),
                source_present: source.is_some(),
                source_ready: source.is_some_and(|p| pod_ready(p)),
                surge,
            });
        }
        let ready = u32::try_from(pods.iter().filter(|p| pod_ready(p)).count()).unwrap_or(u32::MAX);
        let unavailable = u32::try_from(pods.len())
            .unwrap_or(u32::MAX)
            .saturating_sub(ready);
        let step = drain_step(
            &memo.drain,
            &DrainObservation {
                now,
                desired: goal.desired,
                ready,
                unavailable,
                moves: &observations,
                proposals: &the_plan.drain_moves,
                rolling_out: rolling_out(&pods) || rollout_in_progress(&target_json),
                frozen: goal.frozen,
            },
            &self.config.planner.drain,
        );
        let old = memo.drain.clone();
        let mut new_state = step.state.clone();
        let mut result: Result<(), ClusterError> = Ok(());
        for action in &step.actions {
            match action {
                DrainAction::Surge { from_pod, .. } => {
                    memo.known_at_surge.insert(
                        from_pod.clone(),
                        pods.iter()
                            .filter_map(|p| p.metadata.name.clone())
                            .collect(),
                    );
                }
                DrainAction::Evict { pod } => {
                    // The ReplicaSet removes the burst pod when the surge is handed back
                    // below, choosing by deletion cost: the lowest cost was written on it
                    // above (step 2), before this and before the scale write.
                    if result.is_err() {
                        restore(&mut new_state, &old, pod);
                        continue;
                    }
                    // The Eviction API as the disruption budget's judge, in a dry run. A
                    // real eviction leaves the ReplicaSet one pod short until the surge
                    // is handed back, and it fills the gap at once, on whatever node has
                    // room: on a real cluster that is the virtual node the pod just left.
                    calls.writes += 1;
                    let judge = EvictParams {
                        delete_options: Some(kube::api::DeleteParams {
                            dry_run: true,
                            ..Default::default()
                        }),
                        post_options: kube::api::PostParams {
                            dry_run: true,
                            ..Default::default()
                        },
                    };
                    match pod_api.evict(pod, &judge).await {
                        Ok(_) => writes.push(Write::Evict { pod: pod.clone() }),
                        // A disruption budget said no: the move waits and retries.
                        Err(kube::Error::Api(s)) if s.code == 429 => {
                            restore(&mut new_state, &old, pod)
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            restore(&mut new_state, &old, pod);
                            result = Err(ClusterError::api("evict pod", e));
                        }
                    }
                }
                DrainAction::CancelSurge { .. } => {}
            }
        }
        let live: BTreeSet<&str> = new_state
            .in_flight
            .iter()
            .map(|m| m.from_pod.as_str())
            .collect();
        memo.known_at_surge.retain(|k, _| live.contains(k.as_str()));
        memo.surge_pod.retain(|k, _| live.contains(k.as_str()));
        memo.drain = new_state;
        result?;

        // The surge rides on the scale subresource: desired plus one per move still
        // surging. Written only while surging or just after, so the replica count
        // otherwise stays KEDA's.
        let surging = u32::try_from(
            memo.drain
                .in_flight
                .iter()
                .filter(|m| m.phase == crate::placement::MovePhase::Surging)
                .count(),
        )
        .unwrap_or(u32::MAX);
        // The plan's count, not the goal's: under a burst cap the plan asks for fewer.
        let want = the_plan.replicas.saturating_add(surging);
        if (surging > 0 || memo.surged > 0) && replicas.spec != want {
            calls.writes += 1;
            target_api
                .patch_scale(
                    &replicas.target.name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"replicas": want}})),
                )
                .await
                .map_err(|e| ClusterError::api("patch scale", e))?;
            writes.push(Write::Scale { replicas: want });
        }
        memo.surged = surging;
        Ok(Outcome {
            leader: true,
            replicas,
            plan: the_plan,
            drain_actions: step.actions,
            in_flight: memo.drain.in_flight.len(),
            surging,
        })
    }
}

/// What a reconcile found and did, besides its writes and call counts.
struct Outcome {
    leader: bool,
    replicas: Replicas,
    plan: Plan,
    drain_actions: Vec<DrainAction>,
    in_flight: usize,
    surging: u32,
}

/// Puts a move back as it was before this step (its write did not happen).
/// Whether the workload's pods come from more than one revision of its template: its
/// controller is rolling them over (Deployments label pods `pod-template-hash`,
/// StatefulSets `controller-revision-hash`). Pods already being deleted do not count.
fn rolling_out(pods: &[Arc<Pod>]) -> bool {
    let mut revisions = BTreeSet::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let labels = pod.metadata.labels.as_ref();
        let revision = labels.and_then(|l| {
            l.get("pod-template-hash")
                .or_else(|| l.get("controller-revision-hash"))
        });
        if let Some(revision) = revision {
            revisions.insert(revision.as_str());
        }
    }
    revisions.len() > 1
}

/// Whether the scale target's own status says it is rolling over or not yet settled:
/// a new generation not yet observed, pods of the old template still counted, or new
/// ones not yet available (`minReadySeconds`). Read from the object as JSON, so
/// Deployments and StatefulSets (and targets without these fields: never) alike.
fn rollout_in_progress(target: &serde_json::Value) -> bool {
    let number = |path: &str| target.pointer(path).and_then(serde_json::Value::as_i64);
    if let (Some(generation), Some(observed)) = (
        number("/metadata/generation"),
        number("/status/observedGeneration"),
    ) && observed < generation
    {
        return true;
    }
    let text = |path: &str| target.pointer(path).and_then(serde_json::Value::as_str);
    if let (Some(current), Some(update)) = (
        text("/status/currentRevision"),
        text("/status/updateRevision"),
    ) && current != update
    {
        return true;
    }
    let Some(updated) = number("/status/updatedReplicas") else {
        return false;
    };
    number("/spec/replicas").is_some_and(|spec| updated < spec)
        || number("/status/replicas").is_some_and(|all| all > updated)
        || number("/status/availableReplicas").is_some_and(|available| available < updated)
}

fn restore(state: &mut DrainState, old: &DrainState, pod: &str) {
    state.in_flight.retain(|m| m.from_pod != pod);
    if let Some(m) = old.in_flight.iter().find(|m| m.from_pod == pod) {
        state.in_flight.push(m.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, revision: &str, deleting: bool) -> Arc<Pod> {
        let mut value = json!({
            "metadata": {"name": name, "labels": {"app": "roll", "pod-template-hash": revision}}
        });
        if deleting {
            value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(value).expect("a pod"))
    }

    #[test]
    fn pods_of_two_template_revisions_are_a_rollout() {
        let steady = [pod("a", "1", false), pod("b", "1", false)];
        assert!(!rolling_out(&steady));
        let rolling = [pod("a", "1", false), pod("c", "2", false)];
        assert!(rolling_out(&rolling));
        // The last old pod on its way out no longer holds moves back.
        let finishing = [pod("a", "1", true), pod("c", "2", false)];
        assert!(!rolling_out(&finishing));
        assert!(!rolling_out(&[]));
    }

    #[test]
    fn a_target_status_behind_its_spec_is_a_rollout() {
        let deployment = |generation: i64, observed: i64, status: serde_json::Value| {
            let mut value = json!({
                "metadata": {"generation": generation},
                "spec": {"replicas": 21},
                "status": status,
            });
            value["status"]["observedGeneration"] = json!(observed);
            value
        };
        let settled = json!({"replicas": 21, "updatedReplicas": 21, "availableReplicas": 21});
        assert!(!rollout_in_progress(&deployment(2, 2, settled.clone())));
        // Patched, not yet seen by the Deployment controller.
        assert!(rollout_in_progress(&deployment(3, 2, settled)));
        // Old pods still counted (surge), and new ones not yet past minReadySeconds.
        let surging = json!({"replicas": 27, "updatedReplicas": 6, "availableReplicas": 21});
        assert!(rollout_in_progress(&deployment(3, 3, surging)));
        let unavailable = json!({"replicas": 21, "updatedReplicas": 21, "availableReplicas": 19});
        assert!(rollout_in_progress(&deployment(3, 3, unavailable)));
        let statefulset = json!({
            "spec": {"replicas": 3},
            "status": {"replicas": 3, "updatedReplicas": 3, "currentRevision": "a", "updateRevision": "b"},
        });
        assert!(rollout_in_progress(&statefulset));
        // A target without these fields never holds moves back.
        assert!(!rollout_in_progress(&json!({"spec": {"replicas": 3}})));
    }
}
