//! The Kubernetes side's integration tests in one binary, each against the fake API
//! server (tests/src/fake_kube) or a Prometheus-style target: the placement controller,
//! replica reads, the HPA reader, pod metrics, RBAC and gateway discovery.

mod cluster_support;

mod cluster_fake_api;
mod cluster_gateways;
mod cluster_hpa;
mod cluster_placement;
mod cluster_pod_metrics;
mod cluster_rbac;
