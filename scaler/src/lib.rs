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
#![forbid(unsafe_code)]

pub mod engine;
pub mod placement;
pub mod policy;
