//! What the engine remembers about one workload between decisions. The caller owns it
//! (one per workload) and passes it to every [`super::decide`] call.

use std::collections::VecDeque;

/// A replica change the engine asked for, kept for rate limits (HPA `periodStart`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScaleEvent {
    pub at: i64,
    pub from: u32,
    pub to: u32,
}

/// Panic mode bookkeeping (Knative's panic time and ratchet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PanicState {
    pub since: i64,
    /// Last time the short window crossed the threshold; panic ends a stable window later.
    pub last_over: i64,
    /// The highest count asked for during this panic; panic never goes below it.
    pub peak: u32,
}

/// Per-workload history: recommendations for stabilization, scale events for rate limits,
/// panic state, and when the engine first saw the workload (for the restart rule).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadState {
    pub(crate) first_seen: Option<i64>,
    /// (time, recommendation before stabilization), oldest first.
    pub(crate) recommendations: VecDeque<(i64, u32)>,
    pub(crate) scale_events: VecDeque<ScaleEvent>,
    pub(crate) panic: Option<PanicState>,
    /// Whether the recommendation history was seeded with the first replica count seen.
    pub(crate) seeded: bool,
}

impl WorkloadState {
    /// State for a workload first seen at `now` (unix seconds). `Default` instead takes
    /// the time of the first decision.
    pub fn new(now: i64) -> Self {
        Self {
            first_seen: Some(now),
            ..Self::default()
        }
    }

    pub fn first_seen(&self) -> Option<i64> {
        self.first_seen
    }

    /// Whether the workload is in panic mode (bursting; no scale-down).
    pub fn in_panic(&self) -> bool {
        self.panic.is_some()
    }

    /// Since when the workload has been in panic mode.
    pub fn panic_since(&self) -> Option<i64> {
        self.panic.map(|p| p.since)
    }

    /// Records the engine's answer as a scale event. Repeated answers while the replica
    /// count has not moved yet (the HPA applies changes on its own clock) update the
    /// pending event instead of counting the same change twice.
    pub(crate) fn record_change(&mut self, now: i64, current: u32, desired: u32) {
        let pending = self
            .scale_events
            .back()
            .is_some_and(|e| e.from == current && e.to != current);
        if pending {
            if desired == current {
                self.scale_events.pop_back();
            } else if let Some(last) = self.scale_events.back_mut() {
                last.to = desired;
            }
        } else if desired != current {
            self.scale_events.push_back(ScaleEvent {
                at: now,
                from: current,
                to: desired,
            });
        }
    }

    /// Records what the HPA will run after the served answer, when that differs from the
    /// decision (the tolerance raised or kept it): the rate limits count the change that
    /// happens, not the one asked for. Call after [`super::decide`] with the same `now`
    /// and `current`.
    pub fn record_served(&mut self, now: i64, current: u32, expected: u32) {
        self.record_change(now, current, expected);
    }

    pub(crate) fn prune(
        &mut self,
        now: i64,
        keep_recommendations_secs: u32,
        keep_events_secs: u32,
    ) {
        let rec_cutoff = now - i64::from(keep_recommendations_secs);
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t <= rec_cutoff)
        {
            self.recommendations.pop_front();
        }
        let ev_cutoff = now - i64::from(keep_events_secs);
        // Keep the newest event even when old: it may still be pending.
        while self.scale_events.len() > 1
            && self.scale_events.front().is_some_and(|e| e.at <= ev_cutoff)
        {
            self.scale_events.pop_front();
        }
    }
}
