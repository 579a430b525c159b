//! Per-signal replica proposals.

use spillway_model::signal::{Signal, SignalView};

use crate::policy::AppPolicy;

/// What one signal asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proposal {
    pub signal: Signal,
    /// The signal's mean over the window: requests/s, cores or bytes.
    pub value: f64,
    /// What one replica should carry at target, in the same units: requests/s for QPS,
    /// `request × targetUtilization` cores or bytes for CPU and memory.
    pub target: f64,
    /// Replicas needed to bring the signal to its target.
    pub replicas: u32,
    /// Load over the capacity of the replicas in place (1.0 = on target); the band is
    /// checked against this. Infinite when there is load and no replica.
    pub ratio: f64,
}

/// Proposals for every configured signal with fresh data, and the configured signals
/// without (missing or stale).
pub(crate) struct Proposals {
    pub found: Vec<Proposal>,
    pub missing: Vec<Signal>,
    /// Found signals whose window holds lower bounds (an input was incomplete): their
    /// proposals may scale up, never down.
    pub lower_bound: Vec<Signal>,
}

/// `ceil` that forgives float noise: 3.0000000001 replicas is 3, not 4.
pub(crate) fn ceil_replicas(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let c = (x - 1e-9).ceil();
    if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c as u32
    }
}

fn ratio(load: f64, capacity: f64) -> f64 {
    if load <= 0.0 {
        0.0
    } else if capacity <= 0.0 {
        f64::INFINITY
    } else {
        load / capacity
    }
}

/// Per signal: target per replica, and whether the band uses ready (resource) or current
/// (traffic) replicas as the capacity in place.
fn targets(policy: &AppPolicy) -> Vec<(Signal, f64)> {
    let req = &policy.placement.requests;
    let mut out = Vec::with_capacity(3);
    if let Some(q) = policy.signals.qps {
        out.push((Signal::Qps, q.target_per_replica));
    }
    if let Some(c) = policy.signals.cpu {
        out.push((
            Signal::CpuCores,
            req.cpu_millis as f64 / 1000.0 * c.target_utilization,
        ));
    }
    if let Some(m) = policy.signals.memory {
        out.push((
            Signal::MemoryBytes,
            req.memory_bytes as f64 * m.target_utilization,
        ));
    }
    out
}

/// Whether a signal's newest value is recent enough to act on.
pub(crate) fn is_fresh(
    policy: &AppPolicy,
    signals: &impl SignalView,
    signal: Signal,
    now: i64,
) -> bool {
    signals
        .newest(signal)
        .is_some_and(|t| now - t <= i64::from(policy.signals.stale_after_secs))
}

/// Proposals over `window_secs`.
///
/// QPS: `ceil(qps / targetPerReplica)`, the HPA's AverageValue form; its ratio is over
/// the current replicas, as the HPA's `statusReplicas`. CPU and memory: the HPA's
/// `ceil(ready × usage / target)` with `usage = total / (ready × request)`; `ready`
/// cancels, so the proposal does not depend on how many pods reported, while the ratio
/// (checked against the band) is over the ready replicas.
pub(crate) fn proposals(
    policy: &AppPolicy,
    signals: &impl SignalView,
    now: i64,
    window_secs: u32,
    current: u32,
    ready: u32,
) -> Proposals {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut lower_bound = Vec::new();
    for (signal, target) in targets(policy) {
        let value = if is_fresh(policy, signals, signal, now) {
            signals
                .mean(signal, now, window_secs)
                .filter(|v| v.is_finite() && *v >= 0.0)
        } else {
            None
        };
        let Some(value) = value else {
            missing.push(signal);
            continue;
        };
        if signals.lower_bound(signal, now, window_secs) {
            lower_bound.push(signal);
        }
        let base = match signal {
            Signal::Qps => current,
            // No pod reported ready (all starting): judge against the replicas in place.
            _ if ready == 0 => current,
            _ => ready,
        };
        found.push(Proposal {
            signal,
            value,
            target,
            replicas: ceil_replicas(value / target),
            ratio: ratio(value, target * f64::from(base)),
        });
    }
    Proposals {
        found,
        missing,
        lower_bound,
    }
}
