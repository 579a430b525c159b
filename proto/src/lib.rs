//! Spillway's wire contracts, generated at build time by tonic + prost from the `.proto`
//! files beside this crate.
//!
//! - [`externalscaler`]: KEDA's external scaler service, field for field as KEDA ships it.
#![forbid(unsafe_code)]

/// KEDA's `externalscaler` package: the service Spillway serves and KEDA calls.
#[allow(clippy::all, clippy::pedantic, missing_docs, deprecated)]
pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}
