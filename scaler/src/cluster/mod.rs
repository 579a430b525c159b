//! Spillway on the Kubernetes API: the cluster view, replica counts, and the controller
//! that applies placement plans.
//!
//! - [`convert`]: Node and Pod objects to the planner's values (pure).
//! - [`view`]: Nodes and Pods cached by kube-runtime reflectors (watches, no polling).
//! - [`replicas`]: a ScaledObject's `scaleTargetRef`, followed to its `scale` subresource.
//! - [`hpa`]: the HPA KEDA created for a ScaledObject: its real tolerance, and whether it
//!   passes Spillway's count through (pure judgement, one read).
//! - [`lease`]: the `coordination.k8s.io` Lease that gates every write.
//! - [`template`]: the pod template's toleration and node affinity (pure JSON patch).
//! - [`inputs`]: collector inputs from the cluster: `metrics.k8s.io` CPU/memory, gateway discovery.
//! - [`gateways`]: the gateway pods re-listed as they come and go, for the scrape loop.
//! - [`policy_crd`]: the `ScalingPolicy` resource's types: the CRD's schema (`spillway crd`).
//! - [`policy_watch`]: ScalingPolicy resources and the namespaces' tenant labels, watched
//!   into the policies in force, each outcome written to the resource's status.
//! - [`runner`]: `spillway serve`'s `kubernetes:` section and its loop.
//! - [`controller`]: one reconcile per workload: plan, then write what differs.
//!
//! # TLS
//!
//! `kube` is built with `default-features = false` and `rustls-tls` + `ring`: rustls with
//! ring is the process's one crypto provider (`app::install_crypto_provider`), and
//! kube's default `aws-lc-rs` would add a second one (and a C build).
//!
//! # Retries
//!
//! The client is built with kube's default retry off ([`runner::without_retry`]): that
//! retry resends 429/503/504 up to 15 times with backoff growing to minutes, and an
//! eviction refused by a PodDisruptionBudget answers 429. Each reconcile is idempotent,
//! so the next one is the retry.
//!
//! # API calls per reconcile
//!
//! Reads: the ScaledObject, the target's `scale`, the Lease, the target object (4 GETs;
//! Nodes and Pods come from the watch caches). Writes, only what differs: the Lease
//! renewal (every `renew_after_secs`), one template PATCH, one PATCH per pod whose
//! deletion cost changes, one eviction per drain move ready to finish, and one `scale`
//! PATCH while surging. A steady workload costs 4 GETs and no writes. Every
//! `hpaRefresh` (30 s by default) the workload's HPA costs 2 more GETs: the ScaledObject
//! for the HPA's name, and the HPA.

pub mod controller;
pub mod convert;
pub mod gateways;
pub mod hpa;
pub mod inputs;
pub mod lease;
pub mod policy_crd;
pub mod policy_watch;
pub mod replicas;
pub mod runner;
pub mod template;
pub mod view;

use std::fmt;

pub use controller::{
    Controller, ControllerConfig, DELETION_COST, PlacementGoal, ReconcileError, ReconcileReport,
    WorkloadRef, Write,
};
pub use convert::{LabelSelector, build_view, node_from_api, pod_requests};
pub use inputs::{WorkloadLabels, discover_gateways, ingest_pod_metrics};
pub use lease::{LeaseConfig, LeaseGate, LeaseObserver, LeaseRecord, LeaseStep};
pub use replicas::{Replicas, ScaleTarget, read_replicas};
pub use view::ClusterCache;

/// API calls one reconcile made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiCalls {
    pub reads: u32,
    pub writes: u32,
}

impl ApiCalls {
    pub fn total(&self) -> u32 {
        self.reads + self.writes
    }
}

impl fmt::Display for ApiCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} reads + {} writes", self.reads, self.writes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Kubernetes API: {what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl ClusterError {
    pub fn api(what: &'static str, source: kube::Error) -> Self {
        ClusterError::Api { what, source }
    }
}
