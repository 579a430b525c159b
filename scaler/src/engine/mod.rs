//! The decision engine: policy + signal windows + replica counts + time (+ the workload's
//! own history) in, a [`Decision`] with its reason out.
//!
//! Pure and deterministic: no clock, no I/O; time is a plain `i64` of unix seconds, so the
//! same code runs live, in `spillway simulate` and in tests. Signals are read only through
//! [`SignalView`].
//!
//! # One decision, in order
//!
//! 1. **Proposals** per configured signal over `signals.window`: QPS
//!    `ceil(qps / targetPerReplica)`; CPU/memory `ceil(ready × usage / target)` as the HPA.
//!    A signal with no value newer than `signals.staleAfter` is *missing*. A signal whose
//!    window holds a lower bound (summed while a collector shard was lost) is *partial*.
//! 2. **Band** (hysteresis): scale up when any signal's load exceeds
//!    `scaleUpAbove × target` for the replicas in place; scale down only when every signal
//!    is below `scaleDownBelow × target` and none is missing or partial; else hold. The
//!    largest proposal is the recommendation. Missing or partial data never scales down;
//!    the signals that do have data (a partial sum included) may still scale up.
//! 3. **Stabilization** over recent recommendations, HPA `behavior` semantics:
//!    `min(max(current, min over up window), max over down window)`. The first decision
//!    seeds the history with the current count, as the HPA does.
//! 4. **Restart rule**: no scale-down until a full scale-down window of fresh data exists
//!    (since the later of the state's first-seen time and every signal's oldest value).
//! 5. **Panic** (Knative): when the `panic.window` proposal needs ≥ `threshold × ready`,
//!    jump to it at once (bypassing stabilization and the scale-up rate limit) and allow
//!    no scale-down until `panic.stableWindow` passes without crossing the threshold.
//! 6. **Rate limits** per direction, HPA semantics (`periodStart`, `select`).
//! 7. **min / max**, where the minimum is raised by any schedule in force (bypassing rate
//!    limits, as the HPA's `minReplicas`) and is at least 1 while active.
//! 8. **HPA tolerance**: Spillway's count reaches the workload through an HPA (KEDA
//!    AverageValue target 1), which ignores a change within its tolerance
//!    (`|desired/current − 1| ≤ tol`, 0.1 by default). When `hpaTolerance > 0` the engine
//!    never emits such a change silently: a scale-up within the tolerance is raised to the
//!    smallest count the HPA acts on (if max and the rate limit allow it, else held), and
//!    a scale-down within it is held at the current count. Either way the rule says
//!    [`Rule::HpaTolerance`] and the reason says why. With `hpaTolerance: 0` (the HPA
//!    configured as a pass-through) nothing is adjusted.
//! 9. **Scale to zero**: with `replicas.min: 0` and nothing above the activation
//!    thresholds, the answer is 0 (KEDA does 1 → 0 after its cooldown).
//!
//! The band is reported in the dominant signal's units for the replicas in place (e.g.
//! requests/s): [`Band::low`] and [`Band::high`] are the loads at which the count would
//! shrink or grow.

mod band;
mod decision;
mod limits;
mod panic;
mod proposal;
mod schedule;
mod stabilize;
mod state;

pub use band::Band;
pub use decision::{Decision, Reason, Rule};
pub use proposal::Proposal;
pub use state::WorkloadState;

use spillway_collector::signal::{Signal, SignalView};

use crate::policy::{AppPolicy, format_secs};
use band::BandOutcome;
use decision::{describe_need, fmt_value};

/// Replicas as the scale target reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// Replicas asked for (the scale subresource's `status.replicas`).
    pub current: u32,
    /// Replicas ready to serve.
    pub ready: u32,
}

fn configured(policy: &AppPolicy) -> impl Iterator<Item = Signal> + '_ {
    Signal::ALL.into_iter().filter(|s| match s {
        Signal::Qps => policy.signals.qps.is_some(),
        Signal::CpuCores => policy.signals.cpu.is_some(),
        Signal::MemoryBytes => policy.signals.memory.is_some(),
    })
}

/// KEDA's `IsActive`: a schedule in force wants replicas, or a signal is above its
/// activation threshold (mean over `activation.window`). A signal whose data has gone
/// stale counts as active: missing data must never take a workload to zero. A signal
/// never seen at all does not: an app that has had no traffic since the collector
/// started has nothing to serve, and waking every such app would defeat scale to zero.
pub fn is_active(policy: &AppPolicy, signals: &impl SignalView, now: i64) -> bool {
    if schedule::strongest(policy, now).is_some_and(|s| s.schedule.min_replicas > 0) {
        return true;
    }
    let thresholds = [
        (Signal::Qps, policy.signals.qps.map(|q| q.activation)),
        (
            Signal::CpuCores,
            policy.signals.cpu.and_then(|c| c.activation),
        ),
        (
            Signal::MemoryBytes,
            policy.signals.memory.and_then(|m| m.activation),
        ),
    ];
    thresholds.into_iter().any(|(signal, threshold)| {
        let Some(threshold) = threshold else {
            return false;
        };
        let window = policy.activation.window_secs;
        match signals.newest(signal) {
            None => false,
            Some(t) if now - t > i64::from(policy.signals.stale_after_secs) => true,
            // A partial sum below the threshold says nothing about the whole.
            Some(_) if signals.lower_bound(signal, now, window) => true,
            Some(_) => signals
                .mean(signal, now, window)
                .is_some_and(|v| v > threshold),
        }
    })
}

/// Decides the replica count for one workload at `now`. Deterministic: the same policy,
/// signals, replicas, time and state give the same decision and the same new state.
pub fn decide(
    policy: &AppPolicy,
    signals: &impl SignalView,
    replicas: ReplicaCounts,
    now: i64,
    state: &mut WorkloadState,
) -> Decision {
    let ReplicaCounts { current, ready } = replicas;
    let first_seen = *state.first_seen.get_or_insert(now);
    if !state.seeded {
        state.recommendations.push_back((now, current));
        state.seeded = true;
    }
    let h = &policy.hysteresis;
    let active = is_active(policy, signals, now);
    let stable = proposal::proposals(
        policy,
        signals,
        now,
        policy.signals.window_secs,
        current,
        ready,
    );
    let top = band::dominant(&stable.found).copied();
    let band = band::band_for(policy, top.as_ref());
    let mut need = top.as_ref().map(describe_need).unwrap_or_default();
    if !stable.missing.is_empty() {
        let names: Vec<&str> = stable.missing.iter().map(|s| s.as_str()).collect();
        let sep = if need.is_empty() { "" } else { "; " };
        need = format!("{need}{sep}no fresh {} data", names.join(", "));
    }
    if !stable.lower_bound.is_empty() {
        let names: Vec<&str> = stable.lower_bound.iter().map(|s| s.as_str()).collect();
        let sep = if need.is_empty() { "" } else { "; " };
        need = format!(
            "{need}{sep}{} only partly known (a collector shard is lost)",
            names.join(", ")
        );
    }
    let mut out = Decision {
        desired: current,
        active,
        reason: Reason::default(),
        dominant: top.map(|p| p.signal),
        proposals: stable.found.clone(),
        missing: stable.missing.clone(),
        lower_bound: stable.lower_bound.clone(),
        band,
        recommendation: current,
        rule: Rule::HeldInBand,
        panic: false,
    };

    // Zero only on evidence: with a signal missing (e.g. the store was just emptied by a
    // restart) the normal path below holds the count instead.
    if policy.activation.scale_to_zero
        && !active
        && stable.missing.is_empty()
        && stable.lower_bound.is_empty()
    {
        state.recommendations.push_back((now, 0));
        state.panic = None;
        state.record_change(now, current, 0);
        prune(policy, state, now);
        out.desired = 0;
        out.recommendation = 0;
        out.rule = Rule::ScaledToZero;
        out.reason = Reason {
            need,
            rule: format!(
                "nothing above the activation threshold in the last {}: scale to zero",
                format_secs(policy.activation.window_secs)
            ),
        };
        return out;
    }

    // 2. band
    let (rec, outcome) = band::recommend(
        policy,
        &stable.found,
        &stable.missing,
        &stable.lower_bound,
        current,
    );
    out.recommendation = rec;
    let (mut rule, mut why) = match outcome {
        BandOutcome::Up => (
            Rule::ScaledUp,
            format!(
                "above the high mark ({}× target): scaling {current} → {rec}",
                h.scale_up_above
            ),
        ),
        BandOutcome::Down => (
            Rule::ScaledDown,
            format!(
                "every signal below the low mark ({}× target): scaling {current} → {rec}",
                h.scale_down_below
            ),
        ),
        BandOutcome::Hold => (
            Rule::HeldInBand,
            in_band_text(&band, h.scale_down_below, h.scale_up_above, current),
        ),
        BandOutcome::Missing if stable.missing.is_empty() => (
            Rule::HeldMissingData,
            format!("never scaling down on partial data: holding {current}"),
        ),
        BandOutcome::Missing => (
            Rule::HeldMissingData,
            format!("never scaling down on missing data: holding {current}"),
        ),
    };

    // 3. stabilization
    let mut desired = stabilize::stabilize(
        state,
        now,
        rec,
        current,
        h.up_window_secs,
        h.down_window_secs,
    );
    if desired != rec {
        rule = Rule::Stabilized;
        why = if desired > rec {
            format!(
                "scale-down stabilized at {desired} (highest recommendation in the last {})",
                format_secs(h.down_window_secs)
            )
        } else {
            format!(
                "scale-up stabilized at {desired} (lowest recommendation in the last {})",
                format_secs(h.up_window_secs)
            )
        };
    }

    // 4. restart rule (checked on the recommendation: the seeded history would also hold,
    // but the restart is the reason people need to read)
    if rec < current && desired <= current {
        let data_start = configured(policy)
            .map(|s| signals.oldest(s).unwrap_or(now))
            .fold(first_seen, i64::max);
        let fresh = now - data_start;
        if fresh < i64::from(h.down_window_secs) {
            desired = current;
            rule = Rule::RestartWarmup;
            why = format!(
                "only {} of fresh data since start: no scale-down until a full {} scale-down window; holding {current}",
                format_secs(fresh.max(0) as u32),
                format_secs(h.down_window_secs)
            );
        }
    }

    // 5. panic
    let panic = panic::evaluate(policy, signals, now, current, ready, state);
    out.panic = panic.is_some();
    if let Some(p) = &panic
        && desired <= p.floor
    {
        let short = p
            .proposal
            .map(|pr| {
                format!(
                    "{} {} in the last {} needs {}",
                    pr.signal,
                    fmt_value(pr.signal, pr.value),
                    format_secs(policy.panic.window_secs),
                    pr.replicas
                )
            })
            .unwrap_or_default();
        let verb = if p.entered_now {
            "entered panic"
        } else {
            "in panic"
        };
        why = format!(
            "{verb} ({short}, threshold {}× {} ready): at least {}, no scale-down until {} without a burst",
            policy.panic.threshold,
            ready,
            p.floor,
            format_secs(policy.panic.stable_window_secs)
        );
        desired = p.floor;
        rule = Rule::Panic;
    }

    // 6. rate limits
    let up_cap = if panic.is_some() {
        u32::MAX
    } else {
        limits::up_limit(state, &policy.limits.up, now, current)
    };
    if desired > current && desired > up_cap {
        why = format!(
            "scale-up to {desired} limited to {up_cap} by 'up: {}'",
            policy.limits.up
        );
        desired = up_cap;
        rule = Rule::RateLimited;
    }
    if desired < current {
        let floor = limits::down_limit(state, &policy.limits.down, now, current);
        if desired < floor {
            why = format!(
                "scale-down to {desired} limited to {floor} by 'down: {}'",
                policy.limits.down
            );
            desired = floor;
            rule = Rule::RateLimited;
        }
    }

    // 7. min / max, schedules
    let max = policy.replicas.max;
    let mut min = policy.replicas.min.max(u32::from(active)).min(max);
    let mut min_why = format!("raised to replicas.min {min}");
    let mut min_rule = Rule::MinReplicas;
    if let Some(s) = schedule::strongest(policy, now)
        && s.schedule.min_replicas.min(max) > min
    {
        min = s.schedule.min_replicas.min(max);
        min_rule = Rule::Schedule;
        min_why = format!(
            "schedule '{}' keeps at least {min} until {}",
            s.schedule.name,
            schedule::local_time(s.schedule, s.ends_at)
        );
    }
    if desired < min {
        desired = min;
        rule = min_rule;
        why = min_why;
    }
    if desired > max {
        why = format!("{why}; capped at replicas.max {max}");
        desired = max;
        rule = Rule::MaxReplicas;
    }

    // 8. the HPA's tolerance
    let tol = policy.hpa_tolerance;
    if tol > 0.0 && current > 0 && desired != current && (min..=max).contains(&current) {
        let ratio = f64::from(desired) / f64::from(current);
        if desired > current && ratio <= 1.0 + tol {
            let bump = (f64::from(current) * (1.0 + tol)).floor() as u32 + 1;
            if bump <= max && bump <= up_cap {
                why = format!(
                    "{why}; raised {desired} → {bump} so the HPA's {}% tolerance does not swallow the change",
                    tol * 100.0
                );
                desired = bump;
            } else {
                why = format!(
                    "{why}; holding {current}: {current} → {desired} is within the HPA's {}% tolerance and a larger step is not allowed",
                    tol * 100.0
                );
                desired = current;
            }
            rule = Rule::HpaTolerance;
        } else if desired < current && ratio >= 1.0 - tol {
            why = format!(
                "{why}; holding {current}: {current} → {desired} is within the HPA's {}% tolerance and would be swallowed",
                tol * 100.0
            );
            desired = current;
            rule = Rule::HpaTolerance;
        }
    }

    state.record_change(now, current, desired);
    prune(policy, state, now);
    out.desired = desired;
    out.rule = rule;
    out.reason = Reason { need, rule: why };
    out
}

fn in_band_text(band: &Band, low: f64, high: f64, current: u32) -> String {
    match band.signal {
        Some(s) => format!(
            "inside the band ({low}–{high}× target, {} to {}): holding {current}",
            fmt_value(s, band.low),
            fmt_value(s, band.high)
        ),
        None => format!("holding {current}"),
    }
}

fn prune(policy: &AppPolicy, state: &mut WorkloadState, now: i64) {
    let h = &policy.hysteresis;
    let l = &policy.limits;
    state.prune(
        now,
        h.up_window_secs.max(h.down_window_secs),
        l.up.period_secs.max(l.down.period_secs),
    );
}
