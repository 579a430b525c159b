//! A decision as it is served to KEDA and explained by the status API, and the pure rule
//! that turns it into the number `GetMetrics` answers ([`serve_plan`]): the decision,
//! adjusted for placement (burst cap, drain surge), floored during warm-up at what runs,
//! then passed through the HPA's tolerance ([`crate::hpa::serve`]).

use serde::{Deserialize, Serialize};

use crate::engine::{Activity, ReplicaCounts};
use crate::hpa::{HpaView, ScaleCounts, ServeInput, Served};

/// A decision as served and explained.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Published {
    pub desired: u32,
    pub active: bool,
    pub rule: &'static str,
    pub reason: String,
    /// Why `active` is what it is.
    pub activity: Activity,
    /// The replica count the decision started from (`spec.replicas` when observed).
    pub current: u32,
    /// What the decision started from.
    pub basis: Basis,
    /// The scale subresource the served number was computed against (assumed from the
    /// previous answer when nothing observes it).
    pub scale: ScaleCounts,
    /// How to serve this decision again with newer counts.
    pub plan: ServePlan,
    /// The HPA view the served number assumed.
    pub hpa: HpaView,
    /// What `GetMetrics` answered when the decision was made.
    pub served: u32,
    /// What the HPA runs after that answer (its tolerance may keep `status.replicas`).
    pub expected: u32,
    /// Unix milliseconds when it was made.
    pub at_ms: i64,
    /// The value per signal the engine saw (for logs and status), if any.
    pub qps: Option<f64>,
    /// CPU cores and memory bytes in use (5 s mean), if reported.
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
    /// Ready replicas the decision started from.
    pub ready: u32,
    /// The signal whose proposal was largest.
    pub dominant: Option<&'static str>,
    /// What each signal with fresh data asked for.
    pub proposals: Vec<ProposalView>,
    /// Configured signals without fresh data.
    pub missing: Vec<&'static str>,
    /// Signals only partly known (a collector shard lost): scale-down is held.
    pub partial: Vec<&'static str>,
    /// The hysteresis band for the dominant signal, when there was one.
    pub band: Option<BandView>,
    /// Where the desired replicas run, when a replica source places them.
    pub placement: Option<Placed>,
    /// The freeze holding the workload, or an expired one still set.
    pub freeze: Option<crate::freeze::FreezeView>,
    /// The candidate policy's decision, when the tenant's file carries one.
    pub shadow: Option<crate::policy::shadow::ShadowView>,
}

/// One signal's proposal.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProposalView {
    pub signal: String,
    /// The signal's mean over the window (requests/s, cores or bytes).
    pub value: f64,
    /// What one replica carries at target, same units.
    pub target: f64,
    pub replicas: u32,
}

/// The hysteresis band, in the dominant signal's units and in replicas (load over what
/// one replica carries at target), so it can be drawn next to replica counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BandView {
    pub signal: String,
    pub low: f64,
    pub high: f64,
    pub low_replicas: f64,
    pub high_replicas: f64,
    /// The dominant signal's load, in replicas at target.
    pub load_replicas: f64,
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

/// Replica counts read from where the workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// What the engine starts from (`spec.replicas` less Spillway's own drain surge).
    pub counts: ReplicaCounts,
    /// The scale subresource as the HPA reads it.
    pub scale: ScaleCounts,
}

/// What a decision started from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Basis {
    /// Replica counts read from the cluster (or the demo's pool).
    Observed,
    /// Nothing reads the counts: what the HPA was expected to run after the previous
    /// answer.
    Expected,
    /// The first data since start, with no replica count known: what the data asks for.
    FirstData,
    /// No data and no replica count: the effective minimum (0 with `min: 0`).
    Nothing,
}

/// What serving a decision needs besides the counts of the moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServePlan {
    pub desired: u32,
    /// See [`crate::engine::Decision::ceiling`].
    pub ceiling: u32,
    /// `replicas.max`: the warm-up floor never goes past it.
    pub max: u32,
    pub warming_up: bool,
    /// A freeze holds `desired`: no burst cap lowers it, and a floor within the HPA's
    /// tolerance is raised to the first count the HPA applies.
    pub frozen: bool,
}

/// The number `GetMetrics` answers for `plan`: the decision, capped and surged for
/// placement; during warm-up never below `spec.replicas` when that is observed (warm-up
/// may forbid lowering a workload, never raising one); then through the HPA's tolerance.
pub fn serve_plan(
    plan: ServePlan,
    adjustment: PlacementAdjustment,
    scale: ScaleCounts,
    observed: bool,
    hpa: HpaView,
) -> Served {
    if plan.frozen {
        return crate::hpa::serve(
            ServeInput {
                replicas: plan.desired.saturating_add(adjustment.surge),
                ceiling: plan.ceiling.saturating_add(adjustment.surge),
                scale,
            },
            hpa.tolerance,
        );
    }
    let placed = adjustment.serve(plan.desired);
    let floor = if plan.warming_up && observed {
        scale.spec.min(plan.max.saturating_add(adjustment.surge))
    } else {
        0
    };
    let replicas = placed.max(floor);
    // The controller writes a drain surge into spec itself; a raise on top of it would
    // be pods nobody decided, so none is made while a move surges.
    let ceiling = if adjustment.surge > 0 {
        replicas
    } else {
        adjustment.serve(plan.ceiling).max(replicas)
    };
    crate::hpa::serve(
        ServeInput {
            replicas,
            ceiling,
            scale,
        },
        hpa.tolerance,
    )
}

/// What the engine may start the next decision from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Known {
    pub observed: Option<Observed>,
    /// What the HPA is expected to run after the previous answer, unless that answer
    /// came from nothing (no data, no counts).
    pub expected: Option<u32>,
}

/// How placement on a real cluster changes the replica count KEDA is served. The HPA
/// KEDA drives sets the workload's replicas to what `GetMetrics` returns on every sync,
/// so anything placement does to the count must be in that answer or it is undone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlacementAdjustment {
    /// At most this many replicas can be placed (regular room plus the tenant's burst
    /// cap); the rest would land on virtual nodes past the cap.
    pub cap: Option<u32>,
    /// Extra replicas of drain moves: a regular pod surged before its burst pod goes.
    pub surge: u32,
}

impl PlacementAdjustment {
    /// The replica count to serve for a decision of `desired`.
    pub fn serve(self, desired: u32) -> u32 {
        self.cap
            .map_or(desired, |cap| desired.min(cap))
            .saturating_add(self.surge)
    }
}
