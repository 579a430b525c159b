//! Spillway's pure core: everything that decides, with no runtime and no network. This
//! crate's `Cargo.toml` has no tokio, tonic, kube, reqwest, axum or hyper, so what is
//! here takes plain values and time as a value, and the I/O stays in `spillway-scaler`.
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
//!   a regular / burst split out; and the placement simulator's world of nodes and pods.
//! - [`hpa`]: the HPA KEDA creates, as Spillway's answers meet it: its tolerance rule and
//!   the number `GetMetrics` serves so the HPA applies the decision.
//! - [`published`]: a decision as served and explained, and [`published::serve_plan`],
//!   the number `GetMetrics` answers for it.
//! - [`conditions`]: per-workload conditions the status API reports, from plain probes.
//! - [`simulate`]: `spillway simulate`: a recorded trace replayed through the engine and
//!   the placement simulator, next to the HPA, KEDA + HPA and fixed provisioning.
//! - [`freeze`]: the emergency brake's model: scopes, floors, expiries and which freeze
//!   decides a workload.
//! - [`durations`]: durations as people write them in config and on the command line.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod durations;
pub mod engine;
pub mod freeze;
pub mod hpa;
pub mod placement;
pub mod policy;
pub mod published;
pub mod simulate;
