//! Spillway's wire contracts, generated at build time by tonic + prost from the `.proto`
//! files beside this crate.
//!
//! - [`externalscaler`]: KEDA's external scaler service, field for field as KEDA ships it.
//! - [`prometheus`]: the remote-write 1.0 `WriteRequest` subset Prometheus sends.
//! - [`ingest`]: Spillway's own client-streaming push of per-workload sample batches.
#![forbid(unsafe_code)]

/// KEDA's `externalscaler` package: the service Spillway serves and KEDA calls.
#[allow(clippy::all, clippy::pedantic, missing_docs, deprecated)]
pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}

/// Prometheus' `prompb` messages for remote-write 1.0.
#[allow(clippy::all, clippy::pedantic, missing_docs, deprecated)]
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// Spillway's `spillway.ingest.v1` push service.
#[allow(clippy::all, clippy::pedantic, missing_docs, deprecated)]
pub mod ingest {
    tonic::include_proto!("spillway.ingest.v1");
}
