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

    /// Notes a decision about to be made: when the workload was first seen, and on the
    /// first decision the history seeded with the current count, as the HPA does.
    /// Returns when the workload was first seen.
    pub(crate) fn begin(&mut self, now: i64, current: u32) -> i64 {
        let first_seen = *self.first_seen.get_or_insert(now);
        if !self.seeded {
            self.recommendations.push_back((now, current));
            self.seeded = true;
        }
        first_seen
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

    /// A clock that went back leaves times ahead of `now`; they are restamped `now`,
    /// so windows restart from the jump (no scale-down before a full window, as after a
    /// restart) instead of holding until the clock catches up, and pruning bounds the
    /// history again.
    fn clamp_to(&mut self, now: i64) {
        for (t, _) in self.recommendations.iter_mut() {
            *t = (*t).min(now);
        }
        for e in self.scale_events.iter_mut() {
            e.at = e.at.min(now);
        }
        if let Some(p) = self.panic.as_mut() {
            p.since = p.since.min(now);
            p.last_over = p.last_over.min(now);
        }
        if let Some(t) = self.first_seen.as_mut() {
            *t = (*t).min(now);
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
        self.clamp_to(now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_stays_bounded_across_a_clock_jump_back() {
        const T: i64 = 1_800_000_000;
        let mut state = WorkloadState::new(T - 600);
        let (keep, events) = (300, 60);
        let tick = |state: &mut WorkloadState, now: i64| {
            state.recommendations.push_back((now, 3));
            state.scale_events.push_back(ScaleEvent {
                at: now,
                from: 3,
                to: 4,
            });
            state.prune(now, keep, events);
        };
        for now in T..T + 600 {
            tick(&mut state, now);
        }
        // An hour back, an hour of ticks, then forward again: what was kept at the
        // jump counts as of the jump, so at most one window of it stays on top.
        for now in (T - 3_600..T).chain(T + 600..T + 1_200) {
            tick(&mut state, now);
            assert!(
                state.recommendations.len() <= 2 * keep as usize + 1,
                "at {now}"
            );
            assert!(state.recommendations.iter().all(|(t, _)| *t <= now));
            assert!(
                state.scale_events.len() <= 2 * events as usize + 1,
                "at {now}"
            );
        }
        assert!(state.recommendations.len() <= keep as usize + 1);
        assert!(state.first_seen.is_some_and(|t| t <= T - 3_600));
    }
}
