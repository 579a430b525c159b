//! A simulated node pool for `spillway demo` and `spillway simulate`.
//!
//! [`SimCluster`] stands in for the Kubernetes side: a ReplicaSet that creates and removes
//! pods (removing in its own victim order: unscheduled, not Ready, lowest deletion cost,
//! newest), a scheduler that prefers regular nodes and uses the virtual node only when
//! the template tolerates it, and pods that become Ready a caller-chosen number of
//! seconds after binding. Time is passed in as plain seconds; nothing here reads a clock.
//!
//! [`Simulation`] wires it to the planner and the drain-back state machine exactly as a
//! controller would, one [`Simulation::tick`] per planning interval, and reports each
//! tick as a [`TickReport`] line for a timeline.

use std::fmt;

use super::cost::CostAccumulator;
use super::drain::{
    DrainAction, DrainObservation, DrainState, MoveObservation, SurgeStatus, drain_step,
};
use super::fit::pack;
use super::nodes::{BoundPod, ClusterView, Node, NodeKind};
use super::plan::{BurstRule, DrainDecision, Plan, PlanInput, PlannerConfig, WorkloadPod, plan};
use super::resources::Resources;

/// The simulated cluster's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// How many regular nodes.
    pub regular_nodes: u32,
    /// Allocatable of each regular node.
    pub regular_node: Resources,
    /// Allocatable of the one virtual node.
    pub virtual_node: Resources,
    /// Requests of one workload replica.
    pub requests: Resources,
    /// Seconds from binding to Ready on a regular node.
    pub regular_start_secs: i64,
    /// Seconds from binding to Ready on the virtual node (a serverless container must
    /// be provisioned first, so usually longer).
    pub virtual_start_secs: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            regular_nodes: 3,
            regular_node: Resources::new(4000, 16 << 30, 110),
            virtual_node: Resources::new(1_000_000, 4 << 40, 10_000),
            requests: Resources::per_pod(1000, 2 << 30),
            regular_start_secs: 10,
            virtual_start_secs: 30,
        }
    }
}

/// Name of the simulated virtual node.
pub const VIRTUAL_NODE: &str = "virtual-kubelet";

#[derive(Debug, Clone)]
struct SimPod {
    name: String,
    node: Option<String>,
    created_at: i64,
    ready_at: Option<i64>,
    cost: i32,
    /// For a drain surge: the burst pod it replaces.
    surge_for: Option<String>,
}

impl SimPod {
    fn ready(&self, now: i64) -> bool {
        self.ready_at.is_some_and(|t| now >= t)
    }
}

/// What the simulated cluster looks like at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct SimObservation {
    /// Nodes with every bound pod.
    pub cluster: ClusterView,
    /// The workload's pods.
    pub pods: Vec<WorkloadPod>,
    /// Ready workload pods.
    pub ready: u32,
    /// Workload pods not Ready.
    pub unavailable: u32,
    /// Counts by where pods are.
    pub counts: PodCounts,
}

/// Workload pods by place and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodCounts {
    /// Ready on regular nodes.
    pub regular_ready: u32,
    /// Starting on regular nodes.
    pub regular_starting: u32,
    /// Ready on the virtual node.
    pub burst_ready: u32,
    /// Starting on the virtual node.
    pub burst_starting: u32,
    /// Not bound to any node.
    pub unscheduled: u32,
}

impl PodCounts {
    /// Pods bound to regular nodes.
    pub fn regular(&self) -> u32 {
        self.regular_ready + self.regular_starting
    }

    /// Pods bound to the virtual node.
    pub fn burst(&self) -> u32 {
        self.burst_ready + self.burst_starting
    }
}

/// A fake cluster: regular nodes, one virtual node, and one workload's ReplicaSet.
#[derive(Debug, Clone)]
pub struct SimCluster {
    config: SimConfig,
    nodes: Vec<Node>,
    pods: Vec<SimPod>,
    replicas: u32,
    surges: Vec<String>,
    tolerate_virtual: bool,
    next_id: u64,
}

impl SimCluster {
    /// `config.regular_nodes` empty regular nodes named `regular-1`… and one virtual node.
    pub fn new(config: SimConfig) -> Self {
        let mut nodes: Vec<Node> = (1..=config.regular_nodes)
            .map(|i| {
                Node::new(
                    format!("regular-{i}"),
                    NodeKind::Regular,
                    config.regular_node,
                )
            })
            .collect();
        nodes.push(Node::new(
            VIRTUAL_NODE,
            NodeKind::Virtual,
            config.virtual_node,
        ));
        SimCluster {
            config,
            nodes,
            pods: Vec::new(),
            replicas: 0,
            surges: Vec::new(),
            tolerate_virtual: false,
            next_id: 0,
        }
    }

    /// The shape it was built with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Binds another workload's pod to `node` (to take regular room away). Returns false
    /// when there is no such node.
    pub fn add_background(&mut self, node: &str, name: &str, requests: Resources) -> bool {
        match self.nodes.iter_mut().find(|n| n.name == node) {
            Some(n) => {
                n.pods.push(BoundPod {
                    name: name.to_string(),
                    requests,
                });
                true
            }
            None => false,
        }
    }

    /// Removes another workload's pod (to free regular room).
    pub fn remove_background(&mut self, name: &str) {
        for n in &mut self.nodes {
            n.pods.retain(|p| p.name != name);
        }
    }

    /// Cordons or uncordons a node.
    pub fn set_schedulable(&mut self, node: &str, schedulable: bool) {
        for n in self.nodes.iter_mut().filter(|n| n.name == node) {
            n.schedulable = schedulable;
        }
    }

    /// Applies a plan as a controller would: replicas (plus drain surges), the toleration,
    /// deletion costs; then lets the ReplicaSet and scheduler converge.
    pub fn apply(&mut self, plan: &Plan, now: i64) {
        self.replicas = plan.replicas;
        self.tolerate_virtual = plan.allow_burst_toleration;
        for c in &plan.deletion_costs {
            if let Some(p) = self.pods.iter_mut().find(|p| p.name == c.pod) {
                p.cost = c.cost;
            }
        }
        self.reconcile(now);
    }

    /// Applies drain-back actions, then converges.
    pub fn apply_drain(&mut self, actions: &[DrainAction], now: i64) {
        for a in actions {
            match a {
                DrainAction::Surge { from_pod, .. } => {
                    self.surges.push(from_pod.clone());
                    self.create_pod(now, Some(from_pod.clone()));
                }
                DrainAction::Evict { pod } => {
                    // Lowest deletion cost, then one fewer replica: the ReplicaSet removes
                    // exactly this pod.
                    self.release_surge(pod);
                    self.remove_pod(pod);
                }
                DrainAction::CancelSurge { from_pod } => self.release_surge(from_pod),
            }
        }
        self.reconcile(now);
    }

    /// The cluster as a controller would list it at `now`.
    pub fn observe(&self, now: i64) -> SimObservation {
        let mut counts = PodCounts::default();
        let mut pods = Vec::with_capacity(self.pods.len());
        for p in &self.pods {
            let ready = p.ready(now);
            match (self.kind_of(p), ready) {
                (Some(NodeKind::Regular), true) => counts.regular_ready += 1,
                (Some(NodeKind::Regular), false) => counts.regular_starting += 1,
                (Some(NodeKind::Virtual), true) => counts.burst_ready += 1,
                (Some(NodeKind::Virtual), false) => counts.burst_starting += 1,
                (None, _) => counts.unscheduled += 1,
            }
            pods.push(WorkloadPod {
                name: p.name.clone(),
                node: p.node.clone(),
                ready,
                created_at: p.created_at,
            });
        }
        let ready = counts.regular_ready + counts.burst_ready;
        let total = u32::try_from(self.pods.len()).unwrap_or(u32::MAX);
        SimObservation {
            cluster: ClusterView {
                nodes: self.nodes.clone(),
            },
            pods,
            ready,
            unavailable: total - ready,
            counts,
        }
    }

    /// What a controller would see of the move of burst pod `from_pod`: whether the pod
    /// is still there, and where its surge replica stands.
    pub fn observe_move(&self, from_pod: &str, now: i64) -> MoveObservation {
        let source = self.pods.iter().find(|p| p.name == from_pod);
        let surge = self
            .pods
            .iter()
            .find(|p| p.surge_for.as_deref() == Some(from_pod))
            .map_or(SurgeStatus::Pending, |p| {
                match (self.kind_of(p), p.ready(now)) {
                    (Some(NodeKind::Regular), true) => SurgeStatus::ReadyOnRegular,
                    (Some(NodeKind::Virtual), true) => SurgeStatus::ReadyOnVirtual,
                    (Some(NodeKind::Virtual), false) => SurgeStatus::StartingOnVirtual,
                    _ => SurgeStatus::Pending,
                }
            });
        MoveObservation {
            from_pod: from_pod.to_string(),
            source_present: source.is_some(),
            source_ready: source.is_some_and(|p| p.ready(now)),
            surge,
        }
    }

    fn kind_of(&self, p: &SimPod) -> Option<NodeKind> {
        let name = p.node.as_deref()?;
        self.nodes.iter().find(|n| n.name == name).map(|n| n.kind)
    }

    fn release_surge(&mut self, from_pod: &str) {
        if let Some(i) = self.surges.iter().position(|s| s == from_pod) {
            self.surges.remove(i);
        }
        for p in &mut self.pods {
            if p.surge_for.as_deref() == Some(from_pod) {
                p.surge_for = None;
            }
        }
    }

    fn remove_pod(&mut self, name: &str) {
        self.pods.retain(|p| p.name != name);
        for n in &mut self.nodes {
            n.pods.retain(|p| p.name != name);
        }
    }

    fn create_pod(&mut self, now: i64, surge_for: Option<String>) {
        self.next_id += 1;
        self.pods.push(SimPod {
            name: format!("app-{}", self.next_id),
            node: None,
            created_at: now,
            ready_at: None,
            cost: 0,
            surge_for,
        });
    }

    /// ReplicaSet, then scheduler.
    fn reconcile(&mut self, now: i64) {
        let want = self.replicas as usize + self.surges.len();
        while self.pods.len() < want {
            self.create_pod(now, None);
        }
        if self.pods.len() > want {
            let mut victims: Vec<&SimPod> = self.pods.iter().collect();
            victims.sort_by(|a, b| {
                (a.node.is_some(), a.ready(now), a.cost)
                    .cmp(&(b.node.is_some(), b.ready(now), b.cost))
                    .then(b.created_at.cmp(&a.created_at))
                    .then(b.name.cmp(&a.name))
            });
            let doomed: Vec<String> = victims[..self.pods.len() - want]
                .iter()
                .map(|p| p.name.clone())
                .collect();
            for name in doomed {
                self.remove_pod(&name);
            }
        }
        self.schedule(now);
    }

    /// Binds unscheduled pods: regular nodes first (best-fit), the virtual node only when
    /// tolerated, else the pod stays Pending.
    fn schedule(&mut self, now: i64) {
        let requests = self.config.requests;
        for i in 0..self.pods.len() {
            if self.pods[i].node.is_some() {
                continue;
            }
            let free_of = |kind: NodeKind| -> Vec<(String, Resources)> {
                self.nodes
                    .iter()
                    .filter(|n| n.kind == kind && n.schedulable)
                    .map(|n| (n.name.clone(), n.free()))
                    .collect()
            };
            let regular = pack(&free_of(NodeKind::Regular), &requests, 1);
            let (target, latency) = match regular.slots.first() {
                Some(s) => (s.node.clone(), self.config.regular_start_secs),
                None if self.tolerate_virtual => {
                    match pack(&free_of(NodeKind::Virtual), &requests, 1)
                        .slots
                        .first()
                    {
                        Some(s) => (s.node.clone(), self.config.virtual_start_secs),
                        None => continue,
                    }
                }
                None => continue,
            };
            let pod = &mut self.pods[i];
            pod.node = Some(target.clone());
            pod.ready_at = Some(now.saturating_add(latency));
            let bound = BoundPod {
                name: pod.name.clone(),
                requests,
            };
            if let Some(n) = self.nodes.iter_mut().find(|n| n.name == target) {
                n.pods.push(bound);
            }
        }
    }
}

/// The planner, the drain-back state machine and a [`SimCluster`], run together.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The fake cluster.
    pub cluster: SimCluster,
    /// Planner settings.
    pub planner: PlannerConfig,
    /// The tenant's burst rule.
    pub burst: BurstRule,
    /// Drain-back moves in flight.
    pub drain: DrainState,
    /// Replica-seconds so far.
    pub costs: CostAccumulator,
}

/// One tick, as a line of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TickReport {
    /// When.
    pub now: i64,
    /// Replicas desired.
    pub desired: u32,
    /// The plan made this tick.
    pub plan: Plan,
    /// Drain-back actions taken this tick.
    pub actions: Vec<DrainAction>,
    /// Ready replicas seen at the start of the tick.
    pub ready_before: u32,
    /// Pods after the tick's actions.
    pub after: PodCounts,
    /// Cost per hour of the pods bound after the tick (what is being paid for, which
    /// lags the plan while pods start and stop).
    pub cost_per_hour: f64,
}

impl fmt::Display for TickReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.after;
        write!(
            f,
            "t={:>4}s desired={:>3} | regular {:>2}/{:<2} ready | burst {:>2}/{:<2} ready | unscheduled {:>2} | plan {}r+{}b short {} | {:.4}/h | {}",
            self.now,
            self.desired,
            a.regular_ready,
            a.regular(),
            a.burst_ready,
            a.burst(),
            a.unscheduled,
            self.plan.regular,
            self.plan.burst,
            self.plan.shortfall,
            self.cost_per_hour,
            self.plan.reason,
        )?;
        if self.plan.drain != DrainDecision::Nothing {
            write!(f, "; {}", self.plan.drain)?;
        }
        for action in &self.actions {
            write!(f, "; {action}")?;
        }
        Ok(())
    }
}

impl Simulation {
    /// A simulation over a fresh [`SimCluster`].
    pub fn new(config: SimConfig, planner: PlannerConfig, burst: BurstRule) -> Self {
        Simulation {
            cluster: SimCluster::new(config),
            planner,
            burst,
            drain: DrainState::default(),
            costs: CostAccumulator::new(),
        }
    }

    /// Observe, plan, step drain-back, apply; as a controller does once per interval.
    pub fn tick(&mut self, now: i64, desired: u32) -> TickReport {
        let seen = self.cluster.observe(now);
        let draining = self.drain.draining();
        let input = PlanInput {
            desired,
            requests: self.cluster.config.requests,
            pods: &seen.pods,
            draining: &draining,
            cluster: &seen.cluster,
            burst: self.burst,
        };
        let plan = plan(&input, &self.planner);
        let moves: Vec<MoveObservation> = self
            .drain
            .in_flight
            .iter()
            .map(|m| self.cluster.observe_move(&m.from_pod, now))
            .collect();
        let step = drain_step(
            &self.drain,
            &DrainObservation {
                now,
                desired,
                ready: seen.ready,
                unavailable: seen.unavailable,
                moves: &moves,
                proposals: &plan.drain_moves,
                rolling_out: false,
                // The replay has no emergency brake.
                frozen: false,
            },
            &self.planner.drain,
        );
        self.cluster.apply(&plan, now);
        self.cluster.apply_drain(&step.actions, now);
        self.drain = step.state;

        let after = self.cluster.observe(now).counts;
        // Bound pods bill whether Ready or not: a virtual pod is paid from provisioning.
        self.costs.observe(now, after.regular(), after.burst());
        TickReport {
            now,
            desired,
            cost_per_hour: self
                .planner
                .cost
                .rate(after.regular(), after.burst())
                .per_hour(),
            plan,
            actions: step.actions,
            ready_before: seen.ready,
            after,
        }
    }

    /// Total cost so far.
    pub fn total_cost(&self) -> f64 {
        self.costs.total(&self.planner.cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::plan::PodDeletionCost;

    fn bare_plan(desired: u32, tolerate: bool) -> Plan {
        Plan {
            desired,
            regular: 0,
            burst: 0,
            shortfall: 0,
            replicas: desired,
            allow_burst_toleration: tolerate,
            deletion_costs: Vec::new(),
            drain_moves: Vec::new(),
            new_regular: Default::default(),
            burst_slots: Default::default(),
            reason: crate::placement::PlanReason::NoReplicas,
            drain: DrainDecision::Nothing,
        }
    }

    fn small() -> SimCluster {
        SimCluster::new(SimConfig {
            regular_nodes: 2,
            regular_node: Resources::new(2000, 16 << 30, 110),
            ..SimConfig::default()
        })
    }

    #[test]
    fn pods_start_after_their_node_kinds_latency() {
        let mut c = small();
        c.apply(&bare_plan(6, true), 100);
        let at = |t| c.observe(t).counts;
        assert_eq!(at(100).regular_starting, 4);
        assert_eq!(at(100).burst_starting, 2);
        assert_eq!((at(109).regular_ready, at(110).regular_ready), (0, 4));
        assert_eq!((at(129).burst_ready, at(130).burst_ready), (0, 2));
    }

    #[test]
    fn without_toleration_extra_pods_stay_pending_and_cordoned_nodes_take_none() {
        let mut c = small();
        c.set_schedulable("regular-1", false);
        c.apply(&bare_plan(4, false), 0);
        let counts = c.observe(0).counts;
        assert_eq!(
            (counts.regular(), counts.burst(), counts.unscheduled),
            (2, 0, 2)
        );
        assert!(
            c.observe(0)
                .pods
                .iter()
                .all(|p| p.node.as_deref() != Some("regular-1"))
        );
    }

    #[test]
    fn scale_in_follows_deletion_cost_then_age() {
        let mut c = small();
        c.apply(&bare_plan(6, true), 0);
        let seen = c.observe(100);
        let mut plan = bare_plan(3, true);
        // Make the oldest regular pod the cheapest: it must go first among Ready pods.
        plan.deletion_costs = seen
            .pods
            .iter()
            .map(|p| PodDeletionCost {
                pod: p.name.clone(),
                place: crate::placement::PodPlace::Regular,
                cost: if p.name == "app-1" { -10 } else { 0 },
            })
            .collect();
        c.apply(&plan, 100);
        let left: Vec<String> = c.observe(100).pods.into_iter().map(|p| p.name).collect();
        assert_eq!(left, vec!["app-2", "app-3", "app-4"]);
    }
}
