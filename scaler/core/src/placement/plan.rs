//! The per-workload plan: how many replicas on regular nodes, how many burst to virtual
//! nodes, what cannot be placed, the deletion costs that make scale-in remove burst pods
//! first, and which burst pods to move back.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::cost::CostModel;
use super::fit::{Packing, pack};
use super::nodes::{ClusterView, NodeKind};
use super::resources::Resources;

/// The tenant's burst rule (`placement.burst` in the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BurstRule {
    /// Whether replicas may run on virtual nodes at all.
    pub enabled: bool,
    /// At most this many burst replicas; `None` = no limit of the tenant's own.
    pub max_replicas: Option<u32>,
}

impl BurstRule {
    /// The most burst replicas allowed: 0 when disabled.
    pub fn cap(&self) -> u32 {
        match (self.enabled, self.max_replicas) {
            (false, _) => 0,
            (true, Some(m)) => m,
            (true, None) => u32::MAX,
        }
    }
}

/// One pod of the planned workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadPod {
    /// Same key as in [`super::nodes::BoundPod::name`].
    pub name: String,
    /// The node it is bound to; `None` while Pending and unscheduled.
    pub node: Option<String>,
    /// The Ready condition.
    pub ready: bool,
    /// Creation time, unix seconds; orders burst pods newest-first.
    pub created_at: i64,
}

/// Limits on moving burst pods back to regular nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainLimits {
    /// New moves started per planning tick.
    pub max_moves_per_tick: u32,
    /// Moves in flight at once (each holds one surge replica).
    pub max_in_flight: u32,
    /// A PodDisruptionBudget's `minAvailable`, as a number of ready pods.
    pub min_available: u32,
    /// A PodDisruptionBudget's `maxUnavailable`, as a number of pods.
    pub max_unavailable: u32,
    /// A surge replica not Ready on a regular node after this long is given up.
    pub surge_timeout_secs: i64,
    /// Do not move anything unless all wanted moves together save at least this much per
    /// hour: moving a pod costs a restart and a cache warm-up, not worth a rounding error.
    pub min_savings_per_hour: f64,
}

impl Default for DrainLimits {
    fn default() -> Self {
        DrainLimits {
            max_moves_per_tick: 2,
            max_in_flight: 4,
            min_available: 0,
            max_unavailable: 1,
            surge_timeout_secs: 300,
            min_savings_per_hour: 0.0,
        }
    }
}

/// Cluster-wide planner settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PlannerConfig {
    /// Capacity of each virtual node; `None` = its advertised allocatable (virtual-kubelet
    /// nodes advertise a large quota, so that is effectively elastic).
    pub virtual_cap: Option<Resources>,
    /// Drain-back limits.
    pub drain: DrainLimits,
    /// Prices, for the drain savings threshold.
    pub cost: CostModel,
}

/// Everything the planner needs about one workload, as plain values.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// Replicas the decision engine wants.
    pub desired: u32,
    /// Requests of one replica (`pods` = 1).
    pub requests: Resources,
    /// The workload's current pods, terminating ones left out.
    pub pods: &'a [WorkloadPod],
    /// Burst pods whose move back is in flight (see [`super::drain`]): they are about to
    /// go, and their surge replicas already count among `pods`.
    pub draining: &'a [String],
    /// All nodes with all bound pods, the workload's own included.
    pub cluster: &'a ClusterView,
    /// The tenant's burst rule.
    pub burst: BurstRule,
}

/// Where a workload pod is, as the plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodPlace {
    /// On a schedulable regular node: it keeps its place.
    Regular,
    /// On a virtual node.
    Burst,
    /// Unscheduled, on an unknown node, or on a cordoned / not-ready regular node: it needs
    /// a lasting place.
    Unplaced,
}

/// The `controller.kubernetes.io/pod-deletion-cost` for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDeletionCost {
    /// The pod.
    pub pod: String,
    /// Where it is.
    pub place: PodPlace,
    /// The annotation value; the ReplicaSet removes lower costs first.
    pub cost: i32,
}

/// Deletion cost for pods on regular nodes: Kubernetes' default, so they need no patch.
pub const REGULAR_COST: i32 = 0;
/// Deletion cost for pods that need a new place anyway (cordoned node).
pub const UNPLACED_COST: i32 = -1;
/// Deletion cost of the oldest burst pod; newer ones go lower.
pub const OLDEST_BURST_COST: i32 = -2;
/// Deletion cost of a burst pod whose replacement is Ready: removed before anything.
pub const DRAINING_COST: i32 = i32::MIN;

/// Move one burst pod back: surge a regular replica (expected on `to_node`), then remove
/// `from_pod` once that replica is Ready.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DrainMove {
    /// The burst pod to replace.
    pub from_pod: String,
    /// The regular node with room for the replacement (a prediction: the scheduler picks).
    pub to_node: String,
}

/// Why the plan splits as it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanReason {
    /// Nothing desired.
    NoReplicas,
    /// Everything fits on regular nodes.
    AllRegular {
        /// Replicas on regular nodes.
        regular: u32,
    },
    /// Regular nodes are full; the rest bursts.
    Burst {
        /// Replicas on regular nodes.
        regular: u32,
        /// Replicas on virtual nodes.
        burst: u32,
    },
    /// Regular nodes are full and the tenant does not allow burst.
    BurstDisabled {
        /// Replicas on regular nodes.
        regular: u32,
        /// Replicas with no place.
        shortfall: u32,
    },
    /// Regular nodes are full and the tenant's burst cap is reached.
    BurstCapped {
        /// Replicas on regular nodes.
        regular: u32,
        /// Replicas on virtual nodes.
        burst: u32,
        /// The tenant's cap.
        cap: u32,
        /// Replicas with no place.
        shortfall: u32,
    },
    /// Regular nodes are full and the virtual nodes have no more room.
    VirtualFull {
        /// Replicas on regular nodes.
        regular: u32,
        /// Replicas on virtual nodes.
        burst: u32,
        /// Replicas with no place.
        shortfall: u32,
    },
}

impl fmt::Display for PlanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlanReason::NoReplicas => write!(f, "no replicas desired"),
            PlanReason::AllRegular { regular } => {
                write!(f, "all {regular} replicas fit on regular nodes")
            }
            PlanReason::Burst { regular, burst } => write!(
                f,
                "regular nodes full at {regular} replicas; {burst} burst to virtual nodes"
            ),
            PlanReason::BurstDisabled { regular, shortfall } => write!(
                f,
                "regular nodes full at {regular} replicas and burst is disabled: {shortfall} replicas have no place"
            ),
            PlanReason::BurstCapped {
                regular,
                burst,
                cap,
                shortfall,
            } => write!(
                f,
                "regular nodes full at {regular} replicas; burst capped at {cap} (running {burst}): {shortfall} replicas have no place"
            ),
            PlanReason::VirtualFull {
                regular,
                burst,
                shortfall,
            } => write!(
                f,
                "regular nodes full at {regular} replicas; virtual nodes full at {burst}: {shortfall} replicas have no place"
            ),
        }
    }
}

/// What drain-back decided this tick.
#[derive(Debug, Clone, PartialEq)]
pub enum DrainDecision {
    /// No burst pod has a regular place to go to.
    Nothing,
    /// Moves proposed (at most the per-tick limit) out of those wanted.
    Moves {
        /// Proposed now.
        proposed: u32,
        /// Wanted in all.
        wanted: u32,
    },
    /// Moves would be possible but save too little.
    BelowSavingsThreshold {
        /// Moves possible.
        wanted: u32,
        /// What they would save per hour.
        savings_per_hour: f64,
    },
}

impl fmt::Display for DrainDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DrainDecision::Nothing => write!(f, "nothing to drain back"),
            DrainDecision::Moves { proposed, wanted } => {
                write!(f, "draining back {proposed} of {wanted} burst pods")
            }
            DrainDecision::BelowSavingsThreshold {
                wanted,
                savings_per_hour,
            } => write!(
                f,
                "{wanted} burst pods could move back but would save only {savings_per_hour:.4}/h"
            ),
        }
    }
}

/// The plan for one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Replicas desired (the input).
    pub desired: u32,
    /// Replicas that have a place on regular nodes.
    pub regular: u32,
    /// Replicas to run on virtual nodes.
    pub burst: u32,
    /// Replicas with no place: `desired − regular − burst`.
    pub shortfall: u32,
    /// Replicas to ask the workload for (before drain surges). `desired`, except when the
    /// tenant's burst cap is what limits: with the toleration in place, extra pods would
    /// land on virtual nodes past the cap, so they are withheld. When burst is disabled or
    /// virtual nodes are full the extra pods are asked for anyway: they wait Pending,
    /// which is what tells a cluster autoscaler to add regular nodes.
    pub replicas: u32,
    /// Whether the pod template should tolerate the virtual-node taint.
    pub allow_burst_toleration: bool,
    /// Every pod's deletion cost, in the order a ReplicaSet scale-in would remove them.
    pub deletion_costs: Vec<PodDeletionCost>,
    /// Burst pods to move back now.
    pub drain_moves: Vec<DrainMove>,
    /// Where the replicas without a regular place yet are expected to land (new and
    /// unplaced replicas first, then the drain targets).
    pub new_regular: Packing,
    /// Where the burst replicas are expected to run (all of them, existing ones included).
    pub burst_slots: Packing,
    /// Why the split is what it is.
    pub reason: PlanReason,
    /// What drain-back decided.
    pub drain: DrainDecision,
}

/// A pod with where it runs and its deletion cost.
type Ranked<'a> = (&'a WorkloadPod, PodPlace, i32);

/// Plans one workload. Pure and deterministic.
pub fn plan(input: &PlanInput<'_>, config: &PlannerConfig) -> Plan {
    let desired = input.desired;
    let cluster = input.cluster;
    let draining: BTreeSet<&str> = input.draining.iter().map(String::as_str).collect();
    let own: BTreeSet<&str> = input.pods.iter().map(|p| p.name.as_str()).collect();

    let ranked = rank_pods(input, &draining);
    let deletion_costs: Vec<PodDeletionCost> = ranked
        .iter()
        .map(|(p, place, cost)| PodDeletionCost {
            pod: p.name.clone(),
            place: *place,
            cost: *cost,
        })
        .collect();

    // Who is left after the ReplicaSet converges on `target` replicas. Draining pods are
    // leaving in any case; their surge replicas are already among the others.
    let staying_candidates: Vec<&Ranked<'_>> = ranked
        .iter()
        .filter(|(p, _, _)| !draining.contains(p.name.as_str()))
        .collect();
    let (removed, staying) = converge(&staying_candidates, desired);
    let kept_regular = count(staying, PodPlace::Regular);

    // Regular room once the scale-in victims are gone.
    let new_regular = pack(
        &regular_room(cluster, &removed),
        &input.requests,
        desired.saturating_sub(kept_regular),
    );
    let regular = kept_regular.saturating_add(new_regular.placed).min(desired);

    let needed = desired - regular;
    let cap = input.burst.cap();
    let burst_slots = pack(
        &virtual_room(cluster, &own, config),
        &input.requests,
        needed.min(cap),
    );
    let burst = burst_slots.placed;
    let shortfall = needed - burst;
    let reason = plan_reason(desired, regular, burst, shortfall, cap, input.burst.enabled);

    let replicas = if matches!(reason, PlanReason::BurstCapped { .. }) && cap > 0 {
        regular + burst
    } else {
        desired
    };

    // Drain back. After the ReplicaSet converges on `replicas`, burst pods beyond what the
    // non-regular part needs have a regular slot waiting: exactly the slots left after
    // new and unplaced replicas take theirs, which is why the targets are the tail of
    // `new_regular`. (When pods past the burst cap are withheld, the ReplicaSet removes
    // more burst pods than `desired` alone would say; moving those would be wasted.)
    let (_, staying) = converge(&staying_candidates, replicas);
    let burst_after = count(staying, PodPlace::Burst);
    let wanted = burst_after.saturating_sub(replicas - regular);
    let (drain_moves, drain) = drain_back(staying, &new_regular, wanted, config);

    Plan {
        desired,
        regular,
        burst,
        shortfall,
        replicas,
        allow_burst_toleration: cap > 0,
        deletion_costs,
        drain_moves,
        new_regular,
        burst_slots,
        reason,
        drain,
    }
}

/// Every pod with its place and deletion cost, in the ReplicaSet's victim order.
fn rank_pods<'a>(input: &'a PlanInput<'_>, draining: &BTreeSet<&str>) -> Vec<Ranked<'a>> {
    let cluster = input.cluster;
    let place_of = |p: &WorkloadPod| -> PodPlace {
        match p.node.as_deref().and_then(|n| cluster.node(n)) {
            Some(n) if n.kind == NodeKind::Virtual => PodPlace::Burst,
            Some(n) if n.schedulable => PodPlace::Regular,
            _ => PodPlace::Unplaced,
        }
    };

    // Deletion costs. Burst pods get distinct costs, the oldest highest, so scale-in
    // removes the newest burst pod first; numbering from the oldest keeps every cost
    // stable when newer burst pods come and go, so the controller patches only new pods.
    let mut burst_by_age: Vec<&WorkloadPod> = input
        .pods
        .iter()
        .filter(|p| place_of(p) == PodPlace::Burst && !draining.contains(p.name.as_str()))
        .collect();
    burst_by_age.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    let burst_rank: BTreeMap<&str, usize> = burst_by_age
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let cost_of = |p: &WorkloadPod, place: PodPlace| -> i32 {
        if draining.contains(p.name.as_str()) {
            return DRAINING_COST;
        }
        match place {
            PodPlace::Regular => REGULAR_COST,
            PodPlace::Unplaced => UNPLACED_COST,
            PodPlace::Burst => {
                let rank = burst_rank.get(p.name.as_str()).copied().unwrap_or(0);
                let rank = i32::try_from(rank).unwrap_or(i32::MAX);
                // Saturates just above DRAINING_COST, so draining pods still go first.
                OLDEST_BURST_COST
                    .saturating_sub(rank)
                    .max(DRAINING_COST + 1)
            }
        }
    };

    // The ReplicaSet's victim order, as far as these fields tell it: unscheduled first,
    // then not Ready, then lower deletion cost, then newest.
    let mut ranked: Vec<Ranked<'a>> = input
        .pods
        .iter()
        .map(|p| {
            let place = place_of(p);
            (p, place, cost_of(p, place))
        })
        .collect();
    ranked.sort_by(|(a, _, ca), (b, _, cb)| {
        let key = |p: &WorkloadPod, c: i32| (p.node.is_some(), p.ready, c);
        key(a, *ca)
            .cmp(&key(b, *cb))
            .then(b.created_at.cmp(&a.created_at))
            // At equal creation time the later name counts as newer, as burst ranks do.
            .then(b.name.cmp(&a.name))
    });
    ranked
}

/// The pods a scale-in to `target` removes, and the ones that stay.
fn converge<'r, 'a>(
    candidates: &'r [&'r Ranked<'a>],
    target: u32,
) -> (BTreeSet<&'a str>, &'r [&'r Ranked<'a>]) {
    let remove = candidates.len().saturating_sub(target as usize);
    let (removed, staying) = candidates.split_at(remove);
    let removed: BTreeSet<&str> = removed.iter().map(|(p, _, _)| p.name.as_str()).collect();
    (removed, staying)
}

fn count(staying: &[&Ranked<'_>], want: PodPlace) -> u32 {
    let n = staying
        .iter()
        .filter(|(_, place, _)| *place == want)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Free room on each schedulable regular node once `removed` pods are gone.
fn regular_room(cluster: &ClusterView, removed: &BTreeSet<&str>) -> Vec<(String, Resources)> {
    cluster
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Regular && n.schedulable)
        .map(|n| {
            let used = n
                .pods
                .iter()
                .filter(|bp| !removed.contains(bp.name.as_str()))
                .fold(Resources::ZERO, |acc, bp| acc.saturating_add(&bp.requests));
            (n.name.clone(), n.allocatable.saturating_sub(&used))
        })
        .collect()
}

/// Virtual room for this workload: its own pods there are its own to reuse.
fn virtual_room(
    cluster: &ClusterView,
    own: &BTreeSet<&str>,
    config: &PlannerConfig,
) -> Vec<(String, Resources)> {
    cluster
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Virtual && n.schedulable)
        .map(|n| {
            let others = n
                .pods
                .iter()
                .filter(|bp| !own.contains(bp.name.as_str()))
                .fold(Resources::ZERO, |acc, bp| acc.saturating_add(&bp.requests));
            let cap = config.virtual_cap.unwrap_or(n.allocatable);
            (n.name.clone(), cap.saturating_sub(&others))
        })
        .collect()
}

fn plan_reason(
    desired: u32,
    regular: u32,
    burst: u32,
    shortfall: u32,
    cap: u32,
    burst_enabled: bool,
) -> PlanReason {
    let needed = desired - regular;
    if desired == 0 {
        PlanReason::NoReplicas
    } else if needed == 0 {
        PlanReason::AllRegular { regular }
    } else if shortfall == 0 {
        PlanReason::Burst { regular, burst }
    } else if !burst_enabled {
        PlanReason::BurstDisabled { regular, shortfall }
    } else if burst == cap {
        PlanReason::BurstCapped {
            regular,
            burst,
            cap,
            shortfall,
        }
    } else {
        PlanReason::VirtualFull {
            regular,
            burst,
            shortfall,
        }
    }
}

/// The burst pods to move back onto `wanted` of the regular slots left in `new_regular`,
/// when the saving is worth it.
fn drain_back(
    staying: &[&Ranked<'_>],
    new_regular: &Packing,
    wanted: u32,
    config: &PlannerConfig,
) -> (Vec<DrainMove>, DrainDecision) {
    let per_move = config.cost.saving_per_move_per_hour();
    let savings = f64::from(wanted) * per_move;
    if wanted == 0 {
        return (Vec::new(), DrainDecision::Nothing);
    }
    if per_move <= 0.0 || savings < config.drain.min_savings_per_hour {
        return (
            Vec::new(),
            DrainDecision::BelowSavingsThreshold {
                wanted,
                savings_per_hour: savings,
            },
        );
    }
    let proposed = wanted.min(config.drain.max_moves_per_tick);
    let skip = new_regular.placed.saturating_sub(wanted) as usize;
    let targets = new_regular.each().skip(skip);
    // Newest first, as scale-in would: the older burst pods keep their costs.
    let mut sources: Vec<&WorkloadPod> = staying
        .iter()
        .filter(|(_, place, _)| *place == PodPlace::Burst)
        .map(|(p, _, _)| *p)
        .collect();
    sources.sort_by(|a, b| (b.created_at, &b.name).cmp(&(a.created_at, &a.name)));
    let moves: Vec<DrainMove> = sources
        .into_iter()
        .zip(targets)
        .take(proposed as usize)
        .map(|(p, node)| DrainMove {
            from_pod: p.name.clone(),
            to_node: node.to_string(),
        })
        .collect();
    let proposed = u32::try_from(moves.len()).unwrap_or(u32::MAX);
    (moves, DrainDecision::Moves { proposed, wanted })
}
