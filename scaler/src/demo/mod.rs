//! `spillway demo`: Spillway's main job on an embedded default, with no cluster.
//!
//! - [`profile`]: the traffic the built-in gateway serves (a spike, a quiet period).
//! - [`gateway`]: the built-in gateway's `/metrics` and its traffic control API.
//! - [`pool`]: the simulated node pool the demo's replicas run on.
//! - [`POLICIES`]: the tenants' policies the demo scales by.

pub mod gateway;
pub mod pool;
pub mod profile;

/// The demo's tenant policies, one file per tenant as in a real policy directory.
pub const POLICIES: [(&str, &str); 2] = [
    ("acme.yaml", include_str!("policies/acme.yaml")),
    ("shop.yaml", include_str!("policies/shop.yaml")),
];
