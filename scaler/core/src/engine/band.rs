//! The hysteresis band: when a proposal is allowed to move the replica count at all.

use spillway_model::signal::Signal;

use super::proposal::Proposal;
use crate::policy::AppPolicy;

/// The band around the target for the dominant signal, in that signal's units
/// (requests/s, cores or bytes) for the replicas in place: load above `high` scales up,
/// below `low` scales down (if every other signal agrees), in between holds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Band {
    /// The signal the edges are expressed in; `None` when no signal had data.
    pub signal: Option<Signal>,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BandOutcome {
    Up,
    Down,
    Hold,
    Missing,
}

/// The proposal that asks for the most replicas (first signal wins a tie).
pub(crate) fn dominant(found: &[Proposal]) -> Option<&Proposal> {
    found
        .iter()
        .fold(None, |best: Option<&Proposal>, p| match best {
            Some(b) if b.replicas >= p.replicas => Some(b),
            _ => Some(p),
        })
}

pub(crate) fn band_for(policy: &AppPolicy, dominant: Option<&Proposal>) -> Band {
    let Some(p) = dominant else {
        return Band::default();
    };
    // capacity of the replicas in place at target = value / ratio
    let capacity = if p.ratio > 0.0 && p.ratio.is_finite() {
        p.value / p.ratio
    } else {
        0.0
    };
    Band {
        signal: Some(p.signal),
        low: capacity * policy.hysteresis.scale_down_below,
        high: capacity * policy.hysteresis.scale_up_above,
    }
}

/// The recommendation before stabilization. Scale up when any signal is above the high
/// mark (and asks for more); scale down only when every signal is below the low mark and
/// none is missing or only a lower bound; otherwise hold at `current`.
pub(crate) fn recommend(
    policy: &AppPolicy,
    found: &[Proposal],
    missing: &[Signal],
    lower_bound: &[Signal],
    current: u32,
) -> (u32, BandOutcome) {
    let Some(top) = dominant(found) else {
        return (current, BandOutcome::Missing);
    };
    let h = &policy.hysteresis;
    let up = found
        .iter()
        .any(|p| p.ratio > h.scale_up_above && p.replicas > current);
    if up {
        return (top.replicas, BandOutcome::Up);
    }
    if !missing.is_empty() || !lower_bound.is_empty() {
        return (current, BandOutcome::Missing);
    }
    let down = top.replicas < current && found.iter().all(|p| p.ratio < h.scale_down_below);
    if down {
        (top.replicas, BandOutcome::Down)
    } else {
        (current, BandOutcome::Hold)
    }
}
