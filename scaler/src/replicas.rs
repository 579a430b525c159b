//! Where the replicas a decision asks for actually run.
//!
//! The decision loop hands every published desired count to a [`ReplicaSource`] and
//! gets back what is running: pod counts (fed to the next decision, so the engine starts
//! from what the cluster really runs, pod start latency included), the regular / burst
//! split, any shortfall and the cost rate. `spillway demo` implements it with a simulated
//! node pool ([`crate::demo::pool`]); a Kubernetes integration implements it by applying
//! the placement plan and listing the workload's pods.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use spillway_collector::{Signal, WorkloadKey};

use crate::engine::ReplicaCounts;
use crate::policy::AppPolicy;

/// One workload's desired count, handed to the source after a decision.
#[derive(Debug)]
pub struct ReplicaSync<'a> {
    pub key: &'a WorkloadKey,
    pub policy: &'a AppPolicy,
    pub desired: u32,
    /// The QPS the decision saw (a simulation derives pod usage from it).
    pub qps: Option<f64>,
    pub now_secs: i64,
}

/// Where a workload's replicas are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    /// Pods that exist (bound or Pending): the next decision's current count.
    pub pods: u32,
    /// Pods Ready to serve.
    pub ready: u32,
    /// Replicas the plan puts on regular nodes.
    pub regular: u32,
    /// Replicas the plan puts on virtual (burst) nodes.
    pub burst: u32,
    /// Replicas with no place at all.
    pub shortfall: u32,
    /// What the bound pods cost per hour, in the cost model's currency.
    pub cost_per_hour: f64,
    /// Why the split is what it is, in words.
    pub reason: String,
}

impl Placed {
    /// The counts the next decision starts from.
    pub fn counts(&self) -> ReplicaCounts {
        ReplicaCounts {
            current: self.pods,
            ready: self.ready,
        }
    }
}

/// A source's answer: the placement, and pod usage it measured, if it measures any.
#[derive(Clone, Debug, Default)]
pub struct SyncOutcome {
    pub placed: Placed,
    /// New pod usage (CPU cores, memory bytes) to ingest as the source's contribution;
    /// empty when nothing new was measured since the last call.
    pub usage: Vec<(Signal, f64)>,
}

/// Something that runs replicas: a cluster, or the demo's simulated node pool.
pub trait ReplicaSource: Send + Sync {
    /// The source id its usage is ingested under.
    fn name(&self) -> &str;

    /// Applies `sync.desired` and reports what runs. Called after every decision; may be
    /// called several times a second, so repeated calls with the same count and second
    /// should be cheap.
    fn sync(&self, sync: &ReplicaSync<'_>) -> Option<SyncOutcome>;

    /// Forgets workloads no longer in any policy.
    fn retain(&self, keep: &HashSet<WorkloadKey>);
}
