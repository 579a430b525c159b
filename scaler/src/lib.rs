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
//! - [`serve`]: the serve process: its parts wired together, the decision loop, each
//!   workload's published decision, where replicas run; and `spillway collector
//!   --shard`, the collector process built from the same parts.
//! - [`config`]: `spillway serve`'s file, the Kubernetes section beside the rest.
//! - [`http`]: the HTTP side (`/metrics`, status, the write endpoints) and the status
//!   report; [`telemetry`]: the metrics registry and the collector's counters.
//! - [`cluster`]: the Kubernetes side: cluster view, replica counts, the placement controller.
//! - [`keda`]: the KEDA `ExternalScaler` gRPC service and its server.
//! - [`readiness`]: when `/readyz` says this replica can take over (pure).
//! - [`listener`]: the HTTP port's bounded accept loop, TLS and mTLS.
//! - [`access`]: who may do what: identities (client certificates, bearer tokens),
//!   roles, tenant-bound writes and reads; [`aliases`]: workloads scaled by another
//!   app's borrowable policy entry, capped and expired.
//! - [`ha`]: several replicas behind one Service: writes that would reach only one are refused.
//! - [`demo`]: `spillway demo`'s built-in gateway, traffic profile and policies.
#![forbid(unsafe_code)]

pub mod access;
pub mod aliases;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod ha;
pub mod http;
pub mod keda;
pub mod listener;
pub mod readiness;
pub mod serve;
pub mod telemetry;

pub use spillway_core::{conditions, durations, engine, hpa, placement, policy, simulate};
