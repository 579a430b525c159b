//! Spillway's scaler: turns per-workload signals into a replica count KEDA applies, and
//! places those replicas on regular nodes before virtual ones.
//!
//! # Layout
//!
//! - [`policy`]: tenants' scaling policies: the YAML model, its validation and lookup.
//! - [`engine`]: the decision engine. Pure: policy + signal windows + replicas + time in,
//!   a [`engine::Decision`] with its reason out.
//! - [`placement`]: the placement planner. Pure: desired replicas + free node capacity in,
//!   a regular / burst split out.
#![forbid(unsafe_code)]

pub mod engine;
pub mod placement;
pub mod policy;
