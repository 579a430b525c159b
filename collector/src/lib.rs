//! Spillway's collector: everything between a gateway's counters and the per-workload
//! signal windows the decision engine reads.
//!
//! # Layout
//!
//! - [`signal`]: the vocabulary shared with the engine: which workload ([`WorkloadKey`]),
//!   which signal ([`Signal`]), and [`SignalView`], the read-only window queries the
//!   engine is allowed to make.
//! - [`exposition`]: the Prometheus text / OpenMetrics parser. Pure and zero-copy over
//!   the response bytes; this is the ingest hot path.
#![forbid(unsafe_code)]

pub mod exposition;
pub mod signal;

pub use signal::{Signal, SignalView, WorkloadKey};
