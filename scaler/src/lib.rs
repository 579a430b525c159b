//! Spillway's scaler: turns per-workload signals into a replica count KEDA applies, and
//! places those replicas on regular nodes before virtual ones.
//!
//! # Layout
//!
//! - [`policy`]: tenants' scaling policies: the YAML format (one file per tenant,
//!   defaults + per-app overrides), validation that names file, line, column and field,
//!   [`policy::PolicySet::lookup`] with namespace binding, and [`policy::PolicyStore`]
//!   for hot reload. Pure apart from reading files.
//! - [`engine`]: the decision engine. Pure and deterministic: policy + signal windows +
//!   replicas + time + the workload's [`engine::WorkloadState`] in, a
//!   [`engine::Decision`] with its rule and reason out.
//! - [`placement`]: the placement planner. Pure: desired replicas + free node capacity in,
//!   a regular / burst split out.
//! - [`hpa`]: the HPA KEDA creates, as Spillway's answers meet it: its tolerance rule and
//!   the number `GetMetrics` serves so the HPA applies the decision. Pure.
//!
//! - [`simulate`]: `spillway simulate`: a recorded trace replayed through the engine and
//!   the placement simulator, next to the HPA, KEDA + HPA and fixed provisioning;
//!   [`preview`]: a candidate policy replayed beside the live one on the workload's own
//!   recent request rate.
//!
//! Around that pure core, the edges:
//!
//! - [`cluster`]: the Kubernetes side: cluster view, replica counts, the placement controller.
//! - [`keda`]: the KEDA `ExternalScaler` gRPC service and its server.
//! - [`runtime`]: the decision loop that runs the engine when signals change.
//! - [`replicas`]: where decided replicas run (a cluster, or the demo's node pool).
//! - [`conditions`]: per-workload conditions the status API reports.
//! - [`workloads`]: each workload's published decision, activity channel and history.
//! - [`telemetry`]: `/metrics`; [`http`]: the HTTP side; [`status`]: the status report.
//! - [`access`]: who may do what: identities (client certificates, bearer tokens),
//!   roles, tenant-bound writes and reads; [`aliases`]: workloads scaled by another
//!   app's borrowable policy entry, capped and expired.
//! - [`freeze`]: the emergency brake: freezes by app, tenant or everything, from the
//!   status API or a ScaledObject annotation; [`audit`]: every change of policy, freeze
//!   or grade, bounded in memory and logged; [`alerting`]: the series the shipped alert
//!   rules need.
//! - [`ha`]: several replicas behind one Service: writes that would reach only one are refused.
//! - [`app`]: one Spillway process wired together; [`demo`]: `spillway demo`'s
//!   built-in gateway, traffic profile and policies; [`config`]: `spillway serve`'s file.
//! - [`shard_collector`]: `spillway collector --shard I/N`, a collector on its own that
//!   scrapes its hash shard of the targets and answers the scalers.
#![forbid(unsafe_code)]

pub mod access;
pub mod alerting;
pub mod aliases;
pub mod app;
pub mod audit;
pub mod cluster;
pub mod conditions;
pub mod config;
pub mod demo;
pub mod durations;
pub mod engine;
pub mod freeze;
pub mod ha;
pub mod hpa;
pub mod http;
pub mod keda;
pub mod listener;
pub mod placement;
pub mod policy;
pub mod preview;
pub mod replicas;
pub mod runtime;
pub mod shard_collector;
pub mod simulate;
pub mod status;
pub mod telemetry;
pub mod workloads;
