//! Spillway's collector: everything between a gateway's counters and the per-workload
//! signal windows the decision engine reads.
//!
//! # Layout
//!
//! - [`signal`] and [`clock`]: the vocabulary shared with the engine (workload keys,
//!   signals, the signal view, the clock), re-exported from the `spillway-model` crate
//!   both depend on.
//! - [`exposition`]: the Prometheus text / OpenMetrics parser. Pure and zero-copy over
//!   the response bytes; this is the ingest hot path.
//! - [`rate`]: counters to rates per source, with reset and staleness handling.
//! - [`aggregate`]: sums each source's contribution into a workload's signal.
//! - [`store`]: per (workload, signal) windows at 1 s resolution, bounded in memory.
//! - [`budget`]: one memory budget and the limits of every table derived from it.
//! - [`ingest`]: the entry point all inputs share: contributions → store → the set of
//!   workloads that need a fresh decision.
//! - [`scrape`]: the scrape loop (HTTP, timeouts, bounded concurrency, target health).
//! - [`remote_write`]: the Prometheus remote-write 1.0 receiver (`POST /api/v1/write`),
//!   with HA-pair deduplication.
//! - [`ingest_grpc`]: Spillway's own client-streaming gRPC push of sample batches.
//! - [`promql`]: periodic queries of a Prometheus-compatible `/api/v1/query`.
//! - [`resources`]: CPU and memory from cAdvisor series, rolled up per workload.
//! - [`shard`]: sharded collectors: target ownership, the shard service, and the
//!   scalers' fan-out and merge.
//! - [`timestamps`]: how far a pushed sample's timestamp may be from now.
//! - [`write_scope`]: what one authenticated writer may write, checked per sample.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod budget;
pub mod exposition;
pub mod ingest;
pub mod ingest_grpc;
pub mod promql;
pub mod rate;
pub mod remote_write;
pub mod resources;
pub mod scrape;
pub mod shard;
pub mod store;
pub mod timestamps;
pub mod write_scope;

pub use spillway_model::{Signal, SignalView, WorkloadKey, clock, signal};
