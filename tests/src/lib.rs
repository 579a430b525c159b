//! Support for Spillway's end-to-end tests, which start the real `spillway` binary and
//! talk to it over real sockets on 127.0.0.1.
//!
//! - [`process`]: start `spillway`, learn its ports from its first lines, stop it.
//! - [`keda`]: a gRPC client that calls Spillway exactly as KEDA does, and a model of
//!   what KEDA does with the answers (activation, cooldown, `minReplicaCount`, fallback).
//! - [`hpa_model`]: a model of the HPA controller KEDA's HPA runs under.
//! - [`peer`]: KEDA + HPA + Deployment behind one trait, so scenarios run against the
//!   models now and a real KEDA and control plane later.
//! - [`gateway`]: an in-test gateway whose counters and failure modes a test controls.
//! - [`prometheus`]: a real Prometheus on loopback, for dashboard queries.
//! - [`fake_kube`]: a fake Kubernetes API server the real `kube` client talks to.
//! - [`peers`]: the real peers: a Kubernetes control plane, kwok nodes and KEDA on loopback.
//! - [`policy`]: the tenant policy the tests scale by.
//! - [`wait`]: bounded waiting: every wait in these tests has a deadline.
//! - [`tls`]: throwaway CAs and certificates, and TLS clients as KEDA builds them.
//!
//! The tests themselves live in `tests/e2e/` and are built as integration tests of the
//! `spillway-scaler` package, because only a binary's own package gets
//! `CARGO_BIN_EXE_spillway`.
#![forbid(unsafe_code)]

pub mod demo;
pub mod fake_kube;
pub mod gateway;
pub mod hpa_model;
pub mod keda;
pub mod peer;
pub mod peers;
pub mod policy;
pub mod process;
pub mod prometheus;
pub mod tls;
pub mod wait;

/// An HTTP client for tests. Spillway runs rustls with ring as the process's one crypto
/// provider, so the test process installs the same before building a client.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("an HTTP client with the ring provider")
}

/// `to` relative to the directory `from`, for kustomize, which refuses absolute resource
/// paths.
pub fn relative_path(from: &std::path::Path, to: &std::path::Path) -> std::path::PathBuf {
    let from = from.canonicalize().expect("canonical path");
    let to = to.canonicalize().expect("canonical path");
    let mut out = std::path::PathBuf::new();
    for _ in from.components().skip(1) {
        out.push("..");
    }
    out.join(to.strip_prefix("/").unwrap_or(&to))
}
