//! The vocabulary Spillway's collector and decision engine share, in a crate of its own
//! so the engine's crate depends on names, not on the collector's runtime and network.
//!
//! # Layout
//!
//! - [`signal`]: which workload ([`WorkloadKey`]), which signal ([`Signal`]), and
//!   [`SignalView`], the read-only window queries the engine is allowed to make.
//! - [`clock`]: the [`Clock`] time is read through, and the one implementation that
//!   reads the system's.
#![forbid(unsafe_code)]

pub mod clock;
pub mod signal;

pub use clock::{Clock, SystemClock};
pub use signal::{Signal, SignalView, WorkloadKey};
