//! Names for what the collector measures and the queries the engine may ask of it.

use std::fmt;
use std::sync::Arc;

/// One scalable workload: a tenant's app. Cheap to clone (two reference counts).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub tenant: Arc<str>,
    pub app: Arc<str>,
}

impl WorkloadKey {
    pub fn new(tenant: impl Into<Arc<str>>, app: impl Into<Arc<str>>) -> Self {
        Self {
            tenant: tenant.into(),
            app: app.into(),
        }
    }
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.app)
    }
}

impl fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A per-workload signal, already aggregated over all pods and gateway instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Requests per second reaching the workload through the gateway.
    Qps,
    /// CPU in use, in cores, summed over the workload's pods.
    CpuCores,
    /// Working-set memory, in bytes, summed over the workload's pods.
    MemoryBytes,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Qps, Signal::CpuCores, Signal::MemoryBytes];

    /// Lowercase name used in metrics labels, logs and decision reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Qps => "qps",
            Signal::CpuCores => "cpu",
            Signal::MemoryBytes => "memory",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Read-only window queries over one workload's signals, at 1 s resolution.
///
/// Time is plain unix seconds passed in by the caller, never read from a clock, so the
/// engine can be driven by live data, a replayed trace or a test with the same code.
/// Every query covers the seconds in `(now - window_secs, now]`.
pub trait SignalView {
    /// Mean of the per-second values present in the window; `None` if the window is empty.
    fn mean(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64>;
    /// Largest per-second value present in the window; `None` if the window is empty.
    fn max(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64>;
    /// The unix second of the newest value, if any value was ever recorded.
    fn newest(&self, signal: Signal) -> Option<i64>;
    /// The unix second of the oldest value still held, to tell how much history exists.
    fn oldest(&self, signal: Signal) -> Option<i64>;
    /// Whether a value in the window is only a lower bound: it was summed while an input
    /// was missing (a lost collector shard). The engine scales up on such values but
    /// never down.
    fn lower_bound(&self, _signal: Signal, _now: i64, _window_secs: u32) -> bool {
        false
    }
}
