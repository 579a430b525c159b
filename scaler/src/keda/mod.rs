//! KEDA's external scaler, served over gRPC.
//!
//! - [`request`]: checks KEDA's ScaledObject reference and trigger metadata.
//! - [`service`]: the `ExternalScaler` methods.
//! - [`server`]: the tonic server (HTTP/2 streams, keepalive, health).
//! - [`tls`]: TLS and mTLS on the gRPC port, certificates reloaded from files.

pub mod request;
pub mod server;
pub mod service;
pub mod tls;

pub use server::{ServerSettings, serve};
pub use service::{KedaService, METRIC_NAME};
