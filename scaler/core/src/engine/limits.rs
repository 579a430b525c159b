//! Rate limits per period, with the HPA's `behavior` semantics: limits count from the
//! replica count at the start of the period (`periodStart = current − added + deleted`
//! within the period), and `select` picks the larger (Max) or smaller (Min) allowed change.

use super::state::WorkloadState;
use crate::policy::{RateLimit, SelectPolicy};

fn period_start(state: &WorkloadState, now: i64, current: u32, period_secs: u32) -> i64 {
    let cutoff = now - i64::from(period_secs);
    let (mut added, mut deleted) = (0i64, 0i64);
    // A change asked for but not applied yet (the count has not moved) has not happened.
    let applied = state.scale_events.len()
        - usize::from(
            state
                .scale_events
                .back()
                .is_some_and(|e| e.from == current && e.to != current),
        );
    for e in state
        .scale_events
        .iter()
        .take(applied)
        .filter(|e| e.at > cutoff)
    {
        let delta = i64::from(e.to) - i64::from(e.from);
        if delta > 0 {
            added += delta;
        } else {
            deleted -= delta;
        }
    }
    i64::from(current) - added + deleted
}

fn to_u32(x: i64) -> u32 {
    x.clamp(0, i64::from(u32::MAX)) as u32
}

/// The highest count scale-up may reach now (never below `current`).
pub(crate) fn up_limit(state: &WorkloadState, rule: &RateLimit, now: i64, current: u32) -> u32 {
    if rule.select == SelectPolicy::Disabled {
        return current;
    }
    let start = period_start(state, now, current, rule.period_secs);
    let by_pods = rule.pods.map(|p| start + i64::from(p));
    let by_percent = rule
        .percent
        .map(|pc| (start as f64 * (1.0 + f64::from(pc) / 100.0)).ceil() as i64);
    let limit = match (by_pods, by_percent, rule.select) {
        (Some(a), Some(b), SelectPolicy::Min) => a.min(b),
        (Some(a), Some(b), _) => a.max(b),
        (Some(a), None, _) | (None, Some(a), _) => a,
        (None, None, _) => i64::from(u32::MAX),
    };
    to_u32(limit).max(current)
}

/// The lowest count scale-down may reach now (never above `current`).
pub(crate) fn down_limit(state: &WorkloadState, rule: &RateLimit, now: i64, current: u32) -> u32 {
    if rule.select == SelectPolicy::Disabled {
        return current;
    }
    let start = period_start(state, now, current, rule.period_secs);
    let by_pods = rule.pods.map(|p| start - i64::from(p));
    // The HPA truncates toward zero here.
    let by_percent = rule
        .percent
        .map(|pc| (start as f64 * (1.0 - f64::from(pc) / 100.0)) as i64);
    let limit = match (by_pods, by_percent, rule.select) {
        (Some(a), Some(b), SelectPolicy::Min) => a.max(b),
        (Some(a), Some(b), _) => a.min(b),
        (Some(a), None, _) | (None, Some(a), _) => a,
        (None, None, _) => 0,
    };
    to_u32(limit).min(current)
}
