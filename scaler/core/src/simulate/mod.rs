//! `spillway simulate`: what Spillway, and the autoscalers it replaces, would have done
//! with a recorded request-rate trace, and what it would have cost.
//!
//! Pure: a [`trace::Trace`] (requests per second), a tenant's [`AppPolicy`](crate::policy::AppPolicy) and a
//! [`World`] in, a [`Report`] out. Nothing reads a clock or the network.
//!
//! # The model of the world
//!
//! Every second of the trace, each autoscaler decides, the replica count it applies goes
//! to the placement simulator ([`Simulation`](crate::placement::sim::Simulation): a fixed pool of regular
//! nodes, one elastic virtual node, pods Ready after a start latency that differs by node
//! kind), and the second is scored against the demand:
//!
//! - demand in replicas = requests/s ÷ [`World::capacity_per_replica`];
//! - **under-provisioned** replica-seconds: demand above the *Ready* replicas;
//! - **over-provisioned** replica-seconds: *bound* replicas (paid for, Ready or starting)
//!   above demand;
//! - replica-hours and cost from bound pods on regular and virtual nodes, priced per
//!   replica-second ([`CostModel`]).
//!
//! # Who is compared
//!
//! - **Spillway**: [`crate::engine::decide`], the function the live decision loop calls,
//!   once a second; its count reaches the Deployment through KEDA's HPA, which reads it
//!   every [`World::hpa_sync_secs`]. Placement plans with drain-back, as live.
//! - **HPA**: [`baselines::Hpa`] with Kubernetes' defaults on the mean rate over the last
//!   [`World::metric_window_secs`] (a metrics pipeline's window), every sync.
//! - **KEDA Prometheus + HPA**: the same HPA, reading a value KEDA refreshes every
//!   [`World::keda_polling_secs`] ([`baselines::PolledMetric`]).
//! - **Fixed at peak**: `ceil(peak / targetPerReplica)` replicas throughout.
//!
//! All four share the cluster: the scheduler fills regular nodes first and puts the rest
//! on the virtual node when the tenant allows burst. Only Spillway drains burst pods back
//! when room frees; the baselines have no such controller.

pub mod baselines;
mod replay;
mod report;
pub mod svg;
pub mod trace;

pub use replay::{SPILLWAY, SimulateError, simulate};
pub use report::{Report, Run, Sample, Totals};

use crate::placement::sim::SimConfig;
use crate::placement::{CostModel, Resources};

/// The world the trace is replayed in.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// Requests per second one Ready replica serves.
    pub capacity_per_replica: f64,
    /// Regular nodes in the fixed pool.
    pub regular_nodes: u32,
    /// Allocatable of each regular node.
    pub regular_node: Resources,
    /// Seconds from binding to Ready on a regular node.
    pub regular_start_secs: i64,
    /// Seconds from binding to Ready on the virtual node.
    pub virtual_start_secs: i64,
    /// Prices per replica-second.
    pub cost: CostModel,
    /// How often the HPA acts (`--horizontal-pod-autoscaler-sync-period`).
    pub hpa_sync_secs: i64,
    /// KEDA's `pollingInterval` for the Prometheus scaler.
    pub keda_polling_secs: i64,
    /// The window the baselines' rate metric is averaged over.
    pub metric_window_secs: u32,
    /// The unix second of the trace's first second (schedules in the policy use it).
    pub start_unix: i64,
    /// Points in each run's timeline (for the chart).
    pub timeline_points: usize,
}

impl World {
    /// Kubernetes' and KEDA's defaults; regular pool of `SimConfig::default()`'s shape.
    pub fn new(capacity_per_replica: f64) -> Self {
        let sim = SimConfig::default();
        World {
            capacity_per_replica,
            regular_nodes: sim.regular_nodes,
            regular_node: sim.regular_node,
            regular_start_secs: sim.regular_start_secs,
            virtual_start_secs: sim.virtual_start_secs,
            cost: CostModel::default(),
            hpa_sync_secs: 15,
            keda_polling_secs: 30,
            metric_window_secs: 60,
            start_unix: 1_577_836_800,
            timeline_points: 1000,
        }
    }
}
