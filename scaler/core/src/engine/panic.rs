//! Panic mode for bursts, as Knative's KPA: when the short window needs at least
//! `threshold × ready` replicas, jump there at once (no stabilization, no scale-up rate
//! limit), and forbid scale-down until a full stable window passes without a burst.

use spillway_model::signal::SignalView;

use super::band::dominant;
use super::proposal::{Proposal, proposals};
use super::state::{PanicState, WorkloadState};
use crate::policy::AppPolicy;

pub(crate) struct PanicOutcome {
    /// The count panic holds the workload at or above.
    pub floor: u32,
    /// The short-window proposal that triggered or sustains the panic.
    pub proposal: Option<Proposal>,
    pub entered_now: bool,
}

pub(crate) fn evaluate(
    policy: &AppPolicy,
    signals: &impl SignalView,
    now: i64,
    current: u32,
    ready: u32,
    state: &mut WorkloadState,
) -> Option<PanicOutcome> {
    let rule = &policy.panic;
    if !rule.enabled {
        state.panic = None;
        return None;
    }
    let short = proposals(policy, signals, now, rule.window_secs, current, ready);
    let top = dominant(&short.found).copied();
    let needed = top.map_or(0, |p| p.replicas);
    let base = ready.max(1);
    let over = f64::from(needed) / f64::from(base) >= rule.threshold;
    let entered_now = over && state.panic.is_none();
    match (&mut state.panic, over) {
        (Some(p), true) => {
            p.last_over = now;
            p.peak = p.peak.max(needed);
        }
        (None, true) => {
            state.panic = Some(PanicState {
                since: now,
                last_over: now,
                peak: needed,
            })
        }
        (Some(p), false) if now - p.last_over >= i64::from(rule.stable_window_secs) => {
            state.panic = None
        }
        // Still in panic below the threshold: the short window keeps raising the floor,
        // as Knative's KPA keeps `maxPanicPods` (pkg/autoscaler/scaling/autoscaler.go,
        // `Scale`). Only entering needs the ratio: once the first replicas are added,
        // `ready` grows with them and a burst still ramping would otherwise be held at
        // the count it had when the ratio last crossed.
        (Some(p), false) => p.peak = p.peak.max(needed),
        (None, false) => {}
    }
    state.panic.map(|p| PanicOutcome {
        floor: p.peak.max(current),
        proposal: top,
        entered_now,
    })
}
