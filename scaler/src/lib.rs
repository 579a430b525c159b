//! Spillway's scaler: turns per-workload signals into a replica count KEDA applies, and
//! places those replicas on regular nodes before virtual ones.
//!
//! # Layout
//!
//! The pure core (policy, engine, placement, hpa, conditions, simulate, durations) lives
//! in the `spillway-core` crate and is re-exported here under the same names, so
//! `spillway_scaler::engine` and `spillway_core::engine` are one module.
//!
//! Around that pure core, the edges:
//!
//! - [`cluster`]: the Kubernetes side: cluster view, replica counts, the placement controller.
//! - [`keda`]: the KEDA `ExternalScaler` gRPC service and its server.
//! - [`runtime`]: the decision loop that runs the engine when signals change.
//! - [`replicas`]: where decided replicas run (a cluster, or the demo's node pool).
//! - [`workloads`]: each workload's published decision, activity channel and history.
//! - [`telemetry`]: `/metrics`; [`http`]: the HTTP side; [`status`]: the status report.
//! - [`access`]: who may do what: identities (client certificates, bearer tokens),
//!   roles, tenant-bound writes and reads; [`aliases`]: workloads scaled by another
//!   app's borrowable policy entry, capped and expired.
//! - [`ha`]: several replicas behind one Service: writes that would reach only one are refused.
//! - [`app`]: one Spillway process wired together; [`demo`]: `spillway demo`'s
//!   built-in gateway, traffic profile and policies; [`config`]: `spillway serve`'s file.
//! - [`shard_collector`]: `spillway collector --shard I/N`, a collector on its own that
//!   scrapes its hash shard of the targets and answers the scalers.
#![forbid(unsafe_code)]

pub mod access;
pub mod aliases;
pub mod app;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod ha;
pub mod http;
pub mod keda;
pub mod listener;
pub mod replicas;
pub mod runtime;
pub mod shard_collector;
pub mod status;
pub mod telemetry;
pub mod workloads;

pub use spillway_core::{conditions, durations, engine, hpa, placement, policy, simulate};
