//! The placement planner: regular nodes (ECS) first, burst to virtual nodes (ECI) only
//! when they are full, and drain back when room frees.
//!
//! Pure: plain values in, plain values out, no clock and no I/O. A controller builds a
//! [`ClusterView`] from Node and Pod objects (classifying nodes with a
//! [`NodeClassifier`]), calls [`plan()`], and applies the [`Plan`] with Kubernetes' own
//! levers; the simulator in [`sim`] does the same against a fake cluster.
//!
//! # Design
//!
//! - **Bin-packing, not sums.** A replica runs on one node, so free capacity is counted
//!   per node ([`fit`]): two nodes with 0.6 CPU free each host no 1-CPU replica. Summing
//!   free capacity would promise regular places that do not exist, and the scheduler would
//!   then put those replicas on virtual nodes we claimed we were not paying for.
//! - **The plan predicts, the scheduler places.** Spillway does not bind pods. The pod
//!   template tolerates the virtual-node taint only when the tenant allows burst
//!   ([`Plan::allow_burst_toleration`]), with a preferred affinity for regular nodes, so the
//!   scheduler fills regular nodes first. The toleration depends only on the tenant's rule,
//!   not on the current load, because changing a Deployment's template rolls every pod.
//! - **Deletion cost for scale-in.** The ReplicaSet picks scale-in victims by
//!   `controller.kubernetes.io/pod-deletion-cost` (after unscheduled and not-Ready pods).
//!   Regular pods keep the default 0, burst pods get negative costs, newest lowest
//!   ([`Plan::deletion_costs`]), so scale-in removes per-second capacity first without
//!   Spillway deleting pods itself. Costs count from the oldest burst pod so they stay
//!   stable as newer pods come and go, and the controller patches only what changed.
//!   (Do not combine this with ACK's ResourcePolicy, which conflicts with deletion cost.)
//! - **Surge, then evict.** Moving a burst pod back first adds a replica (which the
//!   scheduler puts on the freed regular room) and removes the burst pod only once that
//!   replica is Ready ([`drain::drain_step`]), so ready replicas never drop below desired.
//!   Moves are rate-limited per tick and in flight, respect a disruption budget, and are
//!   skipped when they would save too little to be worth a restart.
//! - **Shortfall is reported, never hidden.** When burst is off or capped and regular
//!   nodes are full, [`Plan::shortfall`] and [`PlanReason`] say so.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use spillway_core::placement::*;
//!
//! let classifier = NodeClassifier::default();
//! let mut labels = BTreeMap::new();
//! labels.insert("type".to_string(), "virtual-kubelet".to_string());
//! let vk_kind = classifier.classify(&labels, &[]);
//! assert_eq!(vk_kind, NodeKind::Virtual);
//!
//! let alloc = Resources::parse_allocatable("2", "8Gi", "110")?;
//! let cluster = ClusterView {
//!     nodes: vec![
//!         Node::new("ecs-1", NodeKind::Regular, alloc),
//!         Node::new("vk", vk_kind, Resources::parse_allocatable("1000", "4Ti", "10000")?),
//!     ],
//! };
//! let plan = plan(
//!     &PlanInput {
//!         desired: 5,
//!         requests: Resources::parse_pod("500m", "1Gi")?,
//!         pods: &[],
//!         draining: &[],
//!         cluster: &cluster,
//!         burst: BurstRule { enabled: true, max_replicas: Some(10) },
//!     },
//!     &PlannerConfig::default(),
//! );
//! assert_eq!((plan.regular, plan.burst, plan.shortfall), (4, 1, 0));
//! assert_eq!(plan.reason.to_string(), "regular nodes full at 4 replicas; 1 burst to virtual nodes");
//! # Ok::<(), QuantityError>(())
//! ```

pub mod cost;
pub mod drain;
pub mod fit;
pub mod nodes;
pub mod plan;
pub mod resources;
pub mod sim;

pub use cost::{CostAccumulator, CostModel, CostRate, cost_rate};
pub use drain::{
    DrainAction, DrainObservation, DrainState, DrainStep, InFlightMove, MoveObservation, MovePhase,
    SurgeStatus, drain_step,
};
pub use fit::{NodeSlots, Packing, pack, regular_room};
pub use nodes::{
    BoundPod, ClusterView, Node, NodeClassifier, NodeKind, Taint, TaintEffect, TaintRule,
};
pub use plan::{
    BurstRule, DrainDecision, DrainLimits, DrainMove, Plan, PlanInput, PlanReason, PlannerConfig,
    PodDeletionCost, PodPlace, WorkloadPod, plan,
};
pub use plan::{DRAINING_COST, OLDEST_BURST_COST, REGULAR_COST, UNPLACED_COST};
pub use resources::{QuantityError, Resources, parse_cpu, parse_memory};
