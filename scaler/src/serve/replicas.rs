//! Where the replicas a decision asks for actually run.
//!
//! The decision loop hands every published desired count to a [`ReplicaSource`] and
//! gets back what is running: pod counts (fed to the next decision, so the engine starts
//! from what the cluster really runs, pod start latency included), the regular / burst
//! split, any shortfall and the cost rate. `spillway demo` implements it with a simulated
//! node pool ([`crate::demo::pool`]); a Kubernetes integration implements it by applying
//! the placement plan and listing the workload's pods.

use std::collections::HashSet;

use spillway_collector::{Signal, WorkloadKey};

use crate::policy::AppPolicy;
pub use spillway_core::published::Placed;

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
