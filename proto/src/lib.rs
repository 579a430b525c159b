//! Spillway's wire contracts, generated at build time by tonic + prost from the `.proto`
//! files beside this crate.
//!
//! - [`externalscaler`]: KEDA's external scaler service, field for field as KEDA ships it.
//! - [`prometheus`]: the remote-write 1.0 `WriteRequest` subset Prometheus sends.
//! - [`ingest`]: Spillway's own client-streaming push of per-workload sample batches.
//! - [`shard`]: a collector shard's per-workload totals, polled by the scalers.
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

/// Spillway's own packages, nested as their proto package names so generated code can
/// refer from one to the other (`shard` uses `ingest`'s `Signal`).
#[allow(clippy::all, clippy::pedantic, missing_docs, deprecated)]
mod spillway {
    pub mod ingest {
        pub mod v1 {
            tonic::include_proto!("spillway.ingest.v1");
        }
    }
    pub mod shard {
        pub mod v1 {
            tonic::include_proto!("spillway.shard.v1");
        }
    }
}

/// Spillway's `spillway.ingest.v1` push service.
pub use spillway::ingest::v1 as ingest;

/// Spillway's `spillway.shard.v1` service: collector shards answering the scalers.
pub use spillway::shard::v1 as shard;
