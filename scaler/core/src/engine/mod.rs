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
///
/// The stages run in the order the module documentation lists; each may replace the
/// count, the rule and the reason the previous one left.
pub fn decide(
    policy: &AppPolicy,
    signals: &impl SignalView,
    replicas: ReplicaCounts,
    now: i64,
    state: &mut WorkloadState,
) -> Decision {
    let ReplicaCounts { current, ready } = replicas;
    let first_seen = state.begin(now, current);
    let h = &policy.hysteresis;
    let activity = activity(policy, signals, now);
    let active = activity.is_active();
    let warm_up = WarmUp::measure(policy, signals, now, first_seen, current);
    // 1. proposals
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
    let need = describe_data(top.as_ref(), &stable);
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
        warming_up: warm_up.active,
        ceiling: current,
    };

    // Zero only on evidence: with a signal missing (e.g. the store was just emptied by a
    // restart) the normal path below holds the count instead.
    if policy.activation.scale_to_zero
        && !active
        && stable.missing.is_empty()
        && stable.lower_bound.is_empty()
    {
        let step = toward_zero(policy, state, now, current, &warm_up);
        out.recommendation = 0;
        let ceiling = step.desired;
        settle(&mut out, step, need, ceiling, policy, state, now, current);
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
    let mut step = band_step(policy, outcome, &out.band, &stable, rec, current);
    // 3. stabilization
    stabilization(&mut step, state, now, rec, current, h);
    // 4. restart rule (checked on the recommendation: the seeded history would also hold,
    // but the restart is the reason people need to read)
    if rec < current && step.desired <= current && warm_up.active {
        step = Step::new(current, Rule::RestartWarmup, warm_up.text());
    }
    // 5. panic
    let panic = panic::evaluate(policy, signals, now, current, ready, state);
    out.panic = panic.is_some();
    if let Some(p) = &panic {
        panic_floor(&mut step, policy, p, ready);
    }
    // 6. rate limits
    let up_cap = rate_limits(&mut step, policy, state, now, current, panic.is_some());
    // 7. min / max, schedules
    min_max(&mut step, policy, now, active);

    let max = policy.replicas.max;
    // A minimum raised past the rate limit is not bound by it (the HPA's `minReplicas`
    // is not either), so neither is the step that makes the HPA act on it.
    let ceiling = if step.desired > up_cap {
        max
    } else {
        up_cap.min(max)
    }
    .max(step.desired);
    settle(&mut out, step, need, ceiling, policy, state, now, current);
    out
}

/// Records the final step in the workload's history and in the decision.
#[allow(clippy::too_many_arguments)] // the decision, its step, and the history to record it in
fn settle(
    out: &mut Decision,
    step: Step,
    need: String,
    ceiling: u32,
    policy: &AppPolicy,
    state: &mut WorkloadState,
    now: i64,
    current: u32,
) {
    state.record_change(now, current, step.desired);
    prune(policy, state, now);
    out.desired = step.desired;
    out.ceiling = ceiling;
    out.rule = step.rule;
    out.reason = Reason {
        need,
        rule: step.why,
    };
}

/// The count a stage of [`decide`] arrived at, the rule that set it and why.
struct Step {
    desired: u32,
    rule: Rule,
    why: String,
}

impl Step {
    fn new(desired: u32, rule: Rule, why: String) -> Self {
        Step { desired, rule, why }
    }
}

/// The restart rule's measure: how much fresh data exists since start.
struct WarmUp {
    /// Seconds of data since the later of first sight and every signal's oldest value.
    fresh: i64,
    down_window_secs: u32,
    current: u32,
    /// Less than a full scale-down window: no scale-down.
    active: bool,
}

impl WarmUp {
    fn measure(
        policy: &AppPolicy,
        signals: &impl SignalView,
        now: i64,
        first_seen: i64,
        current: u32,
    ) -> Self {
        let data_start = configured(policy)
            .map(|s| signals.oldest(s).unwrap_or(now))
            .fold(first_seen, i64::max);
        let fresh = now - data_start;
        let down_window_secs = policy.hysteresis.down_window_secs;
        WarmUp {
            fresh,
            down_window_secs,
            current,
            active: fresh < i64::from(down_window_secs),
        }
    }

    fn text(&self) -> String {
        format!(
            "only {} of fresh data since start: no scale-down until a full {} scale-down window; holding {}",
            format_secs(self.fresh.max(0) as u32),
            format_secs(self.down_window_secs),
            self.current
        )
    }
}

/// What the data asks for, and what it lacks (missing or partly known signals).
fn describe_data(top: Option<&Proposal>, stable: &proposal::Proposals) -> String {
    let mut need = top.map(describe_need).unwrap_or_default();
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
    need
}

/// 8. Scale to zero: nothing is active, so the count goes toward 0 as a scale-down.
fn toward_zero(
    policy: &AppPolicy,
    state: &mut WorkloadState,
    now: i64,
    current: u32,
    warm_up: &WarmUp,
) -> Step {
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
    if warm_up.active && current > 0 {
        return Step::new(current, Rule::RestartWarmup, warm_up.text());
    }
    let floor = limits::down_limit(state, &policy.limits.down, now, current);
    let desired = floor.max(target);
    let why = if desired == 0 {
        format!("{idle}: scale to zero (IsActive false; KEDA takes 1 → 0 after its cooldownPeriod)")
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
    Step::new(desired, rule, why)
}

/// 2. The band's recommendation, in words.
fn band_step(
    policy: &AppPolicy,
    outcome: BandOutcome,
    band: &Band,
    stable: &proposal::Proposals,
    rec: u32,
    current: u32,
) -> Step {
    let h = &policy.hysteresis;
    let (rule, why) = match outcome {
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
            in_band_text(band, h.scale_down_below, h.scale_up_above, current),
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
    Step::new(rec, rule, why)
}

/// 3. Stabilization over recent recommendations.
fn stabilization(
    step: &mut Step,
    state: &mut WorkloadState,
    now: i64,
    rec: u32,
    current: u32,
    h: &crate::policy::Hysteresis,
) {
    let desired = stabilize::stabilize(
        state,
        now,
        rec,
        current,
        h.up_window_secs,
        h.down_window_secs,
    );
    step.desired = desired;
    if desired != rec {
        step.rule = Rule::Stabilized;
        step.why = if desired > rec {
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
}

/// 5. Panic: a burst holds the count at or above its floor.
fn panic_floor(step: &mut Step, policy: &AppPolicy, p: &panic::PanicOutcome, ready: u32) {
    if step.desired > p.floor {
        return;
    }
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
    step.why = format!(
        "{verb} ({short}, threshold {}× {} ready): at least {}, no scale-down until {} without a burst",
        policy.panic.threshold,
        ready,
        p.floor,
        format_secs(policy.panic.stable_window_secs)
    );
    step.desired = p.floor;
    step.rule = Rule::Panic;
}

/// 6. Rate limits per direction; returns the scale-up cap (unbounded in panic).
fn rate_limits(
    step: &mut Step,
    policy: &AppPolicy,
    state: &WorkloadState,
    now: i64,
    current: u32,
    panic: bool,
) -> u32 {
    let up_cap = if panic {
        u32::MAX
    } else {
        limits::up_limit(state, &policy.limits.up, now, current)
    };
    let desired = step.desired;
    if desired > current && desired > up_cap {
        step.why = format!(
            "scale-up to {desired} limited to {up_cap} by 'up: {}'",
            policy.limits.up
        );
        step.desired = up_cap;
        step.rule = Rule::RateLimited;
    }
    if step.desired < current {
        let floor = limits::down_limit(state, &policy.limits.down, now, current);
        let desired = step.desired;
        if desired < floor {
            step.why = format!(
                "scale-down to {desired} limited to {floor} by 'down: {}'",
                policy.limits.down
            );
            step.desired = floor;
            step.rule = Rule::RateLimited;
        }
    }
    up_cap
}

/// 7. `replicas.min` (raised by a schedule in force, at least 1 while active) and `max`.
fn min_max(step: &mut Step, policy: &AppPolicy, now: i64, active: bool) {
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
    if step.desired < min {
        step.desired = min;
        step.rule = min_rule;
        step.why = min_why;
    }
    if step.desired > max {
        step.why = format!("{}; capped at replicas.max {max}", step.why);
        step.desired = max;
        step.rule = Rule::MaxReplicas;
    }
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
