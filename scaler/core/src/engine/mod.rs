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
//! 4. **Restart rule** (warm-up): no scale-down until a full scale-down window of fresh
//!    data exists (since the later of the state's first-seen time and every signal's
//!    oldest value). Warm-up may forbid lowering a workload, never raising one:
//!    [`Decision::warming_up`] says it is in force.
//! 5. **Panic** (Knative): when the `panic.window` proposal needs ≥ `threshold × ready`,
//!    jump to it at once (bypassing stabilization and the scale-up rate limit) and allow
//!    no scale-down until `panic.stableWindow` passes without crossing the threshold.
//! 6. **Rate limits** per direction, HPA semantics (`periodStart`, `select`).
//! 7. **min / max**, where the minimum is raised by any schedule in force (bypassing rate
//!    limits, as the HPA's `minReplicas`) and is at least 1 while active.
//! 8. **Scale to zero**: with `replicas.min: 0` and nothing above the activation
//!    thresholds, the count goes down by `limits.down` (and not during warm-up) to 1, the
//!    least the HPA accepts, then to 0 once `limits.down` allows that step too, so the
//!    HPA is served 1 before 0; `IsActive` false lets KEDA take the workload from 1 to 0
//!    after its `cooldownPeriod`. Never N → 0 in one answer.
//!
//! The HPA's tolerance is not the engine's business: it applies to the final number
//! `GetMetrics` serves (after placement's burst cap and drain surge), in
//! [`crate::hpa::serve`]. [`Decision::ceiling`] tells it how far a count may be raised.
//!
//! `current` is `spec.replicas`, the count the HPA holds at, never `status.replicas`
//! (which counts a rollout's surge pods): holding on status would publish the surge
//! and the HPA would make it the new spec.
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

use spillway_model::signal::{Signal, SignalView};

use crate::policy::{AppPolicy, format_secs};
use band::BandOutcome;
use decision::{describe_need, fmt_value};

/// Replicas as the scale target reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// Replicas asked for: the scale subresource's `spec.replicas`, less any drain surge
    /// Spillway itself added. Never `status.replicas`, which counts a rollout's surge.
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

/// Why a workload is active or not, for KEDA's `IsActive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Activity {
    /// A signal is above its activation threshold.
    Load,
    /// A signal's data has gone stale: missing data must never take a workload to zero.
    StaleData,
    /// A signal is only partly known (a collector shard is lost).
    PartialData,
    /// A schedule in force wants replicas.
    Schedule,
    /// `replicas.min` is above 0: KEDA must never deactivate the workload.
    Minimum,
    /// Nothing active and the minimum is 0.
    Idle,
}

impl Activity {
    pub fn is_active(self) -> bool {
        self != Activity::Idle
    }

    /// A CamelCase word for conditions.
    pub fn reason(self) -> &'static str {
        match self {
            Activity::Load => "AboveActivation",
            Activity::StaleData => "StaleData",
            Activity::PartialData => "PartialData",
            Activity::Schedule => "Schedule",
            Activity::Minimum => "MinimumAboveZero",
            Activity::Idle => "Idle",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Activity::Load => "load is above the activation threshold (IsActive answers true)",
            Activity::StaleData => {
                "a signal's data is stale: kept active rather than taken to zero (IsActive answers true)"
            }
            Activity::PartialData => {
                "a signal is only partly known: kept active (IsActive answers true)"
            }
            Activity::Schedule => "a schedule in force wants replicas (IsActive answers true)",
            Activity::Minimum => {
                "replicas.min is above 0: IsActive answers true so KEDA never deactivates the workload"
            }
            Activity::Idle => "nothing above the activation threshold (IsActive answers false)",
        }
    }
}

/// The least replicas the policy asks for at `now`: `replicas.min`, raised by any
/// schedule in force, capped at `replicas.max`.
pub fn effective_min(policy: &AppPolicy, now: i64) -> u32 {
    let max = policy.replicas.max;
    let scheduled = schedule::strongest(policy, now).map_or(0, |s| s.schedule.min_replicas);
    policy.replicas.min.max(scheduled).min(max)
}

/// KEDA's `IsActive` and why: a signal above its activation threshold (mean over
/// `activation.window`), or an effective minimum above 0. A signal whose data has gone
/// stale counts as active: missing data must never take a workload to zero. A signal
/// never seen at all does not: an app that has had no traffic since the collector
/// started has nothing to serve, and waking every such app would defeat scale to zero.
pub fn activity(policy: &AppPolicy, signals: &impl SignalView, now: i64) -> Activity {
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
    let window = policy.activation.window_secs;
    for (signal, threshold) in thresholds {
        let Some(threshold) = threshold else {
            continue;
        };
        let found = match signals.newest(signal) {
            None => None,
            Some(t) if now - t > i64::from(policy.signals.stale_after_secs) => {
                Some(Activity::StaleData)
            }
            // A partial sum below the threshold says nothing about the whole.
            Some(_) if signals.lower_bound(signal, now, window) => Some(Activity::PartialData),
            Some(_) => signals
                .mean(signal, now, window)
                .is_some_and(|v| v > threshold)
                .then_some(Activity::Load),
        };
        if let Some(found) = found {
            return found;
        }
    }
    if schedule::strongest(policy, now).is_some_and(|s| s.schedule.min_replicas > 0) {
        return Activity::Schedule;
    }
    if policy.replicas.min > 0 {
        return Activity::Minimum;
    }
    Activity::Idle
}

/// KEDA's `IsActive`: see [`activity`].
pub fn is_active(policy: &AppPolicy, signals: &impl SignalView, now: i64) -> bool {
    activity(policy, signals, now).is_active()
}

/// What the data alone asks for, with no replica count and no history: the largest
/// proposal within `[effective minimum (at least 1 while active), replicas.max]`, or 0
/// with `min: 0` and nothing active. A first decision that knows no replica count
/// starts from here, so no limit is applied against an invented starting point.
pub fn first_ask(policy: &AppPolicy, signals: &impl SignalView, now: i64) -> u32 {
    let active = is_active(policy, signals, now);
    let found = proposal::proposals(policy, signals, now, policy.signals.window_secs, 0, 0);
    if policy.activation.scale_to_zero
        && !active
        && found.missing.is_empty()
        && found.lower_bound.is_empty()
    {
        return 0;
    }
    let max = policy.replicas.max;
    let min = effective_min(policy, now).max(u32::from(active)).min(max);
    band::dominant(&found.found)
        .map_or(0, |p| p.replicas)
        .clamp(min, max)
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
    let activity = activity(policy, signals, now);
    let active = activity.is_active();
    let data_start = configured(policy)
        .map(|s| signals.oldest(s).unwrap_or(now))
        .fold(first_seen, i64::max);
    let fresh = now - data_start;
    let warming_up = fresh < i64::from(h.down_window_secs);
    let warm_up_text = || {
        format!(
            "only {} of fresh data since start: no scale-down until a full {} scale-down window; holding {current}",
            format_secs(fresh.max(0) as u32),
            format_secs(h.down_window_secs)
        )
    };
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
        activity,
        reason: Reason::default(),
        dominant: top.map(|p| p.signal),
        proposals: stable.found.clone(),
        missing: stable.missing.clone(),
        lower_bound: stable.lower_bound.clone(),
        band,
        recommendation: current,
        rule: Rule::HeldInBand,
        panic: false,
        warming_up,
        ceiling: current,
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
        let idle = format!(
            "nothing above the activation threshold in the last {}",
            format_secs(policy.activation.window_secs)
        );
        // The HPA never goes below 1: from 1 KEDA's activation takes the workload to 0.
        // The way down is a scale-down like any other (warm-up, `limits.down`), the last
        // step, 1 → 0, included, so the HPA sees 1 before 0 and 0 is answered only
        // from 1 (or at 0).
        let target = if current <= 1 { 0 } else { 1 };
        let (desired, rule, why) = if warming_up && current > 0 {
            (current, Rule::RestartWarmup, warm_up_text())
        } else {
            let floor = limits::down_limit(state, &policy.limits.down, now, current);
            let desired = floor.max(target);
            let why = if desired == 0 {
                format!(
                    "{idle}: scale to zero (IsActive false; KEDA takes 1 → 0 after its cooldownPeriod)"
                )
            } else {
                format!(
                    "{idle}: scaling in toward zero, {current} → {desired} by 'down: {}', then 0 from 1",
                    policy.limits.down
                )
            };
            let rule = if desired == target {
                Rule::ScaledToZero
            } else {
                Rule::RateLimited
            };
            (desired, rule, why)
        };
        state.record_change(now, current, desired);
        prune(policy, state, now);
        out.desired = desired;
        out.ceiling = desired;
        out.recommendation = 0;
        out.rule = rule;
        out.reason = Reason { need, rule: why };
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
    if rec < current && desired <= current && warming_up {
        desired = current;
        rule = Rule::RestartWarmup;
        why = warm_up_text();
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

    state.record_change(now, current, desired);
    prune(policy, state, now);
    out.desired = desired;
    // A minimum raised past the rate limit is not bound by it (the HPA's `minReplicas`
    // is not either), so neither is the step that makes the HPA act on it.
    out.ceiling = if desired > up_cap {
        max
    } else {
        up_cap.min(max)
    }
    .max(desired);
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
