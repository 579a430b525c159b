//! What a decision says: the count, the rule that decided it and a sentence for people.

use std::fmt;

use spillway_model::signal::Signal;

use super::band::Band;
use super::proposal::Proposal;

/// What decided the replica count. `label()` is stable, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Load above the band's high mark: scaled up to the proposal.
    ScaledUp,
    /// Every signal below the band's low mark: scaled down to the proposal.
    ScaledDown,
    /// Load inside the band: no change.
    HeldInBand,
    /// A configured signal has no fresh data: no scale-down (scale-up on the rest allowed).
    HeldMissingData,
    /// A stabilization window held the count above (or below) the recommendation.
    Stabilized,
    /// A rate limit (`limits.up` / `limits.down`) capped the change.
    RateLimited,
    /// Panic mode: a burst in the short window; scaled up at once, no scale-down.
    Panic,
    /// A schedule's minimum raised the count.
    Schedule,
    /// `replicas.min` raised the count.
    MinReplicas,
    /// `replicas.max` capped the count.
    MaxReplicas,
    /// Nothing above the activation thresholds and `min: 0`: zero replicas.
    ScaledToZero,
    /// Not enough fresh data since start to judge a scale-down yet.
    RestartWarmup,
    /// The served number differs from the decision because of the HPA's tolerance (set
    /// on the served number, [`crate::hpa::serve`], never by the engine itself).
    HpaTolerance,
}

impl Rule {
    pub const ALL: [Rule; 13] = [
        Rule::ScaledUp,
        Rule::ScaledDown,
        Rule::HeldInBand,
        Rule::HeldMissingData,
        Rule::Stabilized,
        Rule::RateLimited,
        Rule::Panic,
        Rule::Schedule,
        Rule::MinReplicas,
        Rule::MaxReplicas,
        Rule::ScaledToZero,
        Rule::RestartWarmup,
        Rule::HpaTolerance,
    ];

    /// Lowercase label for metrics (`decisions_total{rule="…"}`); stable across releases.
    pub fn label(self) -> &'static str {
        match self {
            Rule::ScaledUp => "scaled_up",
            Rule::ScaledDown => "scaled_down",
            Rule::HeldInBand => "held_in_band",
            Rule::HeldMissingData => "held_missing_data",
            Rule::Stabilized => "stabilized",
            Rule::RateLimited => "rate_limited",
            Rule::Panic => "panic",
            Rule::Schedule => "schedule",
            Rule::MinReplicas => "min_replicas",
            Rule::MaxReplicas => "max_replicas",
            Rule::ScaledToZero => "scaled_to_zero",
            Rule::RestartWarmup => "restart_warmup",
            Rule::HpaTolerance => "hpa_tolerance",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A sentence a person reads: what the signals need, then what held or limited it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reason {
    /// What the dominant signal needs, e.g. `qps 1240/s needs 9 (target 150/replica)`.
    pub need: String,
    /// What decided, e.g. `scale-up limited to 8 by 'up: 4 pods per 15s'`.
    pub rule: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.need.is_empty(), self.rule.is_empty()) {
            (false, false) => write!(f, "{}; {}", self.need, self.rule),
            (false, true) => f.write_str(&self.need),
            _ => f.write_str(&self.rule),
        }
    }
}

/// The engine's answer for one workload at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The replica count to report to KEDA / the HPA.
    pub desired: u32,
    /// KEDA's `IsActive`: activity above the activation threshold, or an effective
    /// minimum (`replicas.min`, or a schedule in force) above 0.
    pub active: bool,
    /// Why `active` is what it is.
    pub activity: super::Activity,
    pub reason: Reason,
    /// The signal whose proposal was largest.
    pub dominant: Option<Signal>,
    /// Every signal's proposal over the stable window.
    pub proposals: Vec<Proposal>,
    /// Configured signals without fresh data.
    pub missing: Vec<Signal>,
    /// Signals whose values are lower bounds (summed while a collector shard was lost):
    /// they can scale up, never down.
    pub lower_bound: Vec<Signal>,
    /// The hysteresis band in the dominant signal's units.
    pub band: Band,
    /// The recommendation before stabilization, limits and min/max.
    pub recommendation: u32,
    pub rule: Rule,
    /// Whether panic mode is on after this decision.
    pub panic: bool,
    /// Less than a full scale-down window of fresh data since start: no scale-down.
    pub warming_up: bool,
    /// The highest count the served number may be raised to so the HPA's tolerance does
    /// not swallow the change: `replicas.max`, bounded by the scale-up rate limit unless
    /// a minimum raised the count past it. At least `desired`.
    pub ceiling: u32,
}

/// Formats a signal value with its unit.
pub(crate) fn fmt_value(signal: Signal, v: f64) -> String {
    match signal {
        Signal::Qps => format!("{}/s", round_sig(v)),
        Signal::CpuCores => format!("{} cores", round_sig(v)),
        Signal::MemoryBytes => {
            let gib = v / (1024.0 * 1024.0 * 1024.0);
            if gib >= 1.0 {
                format!("{} GiB", round_sig(gib))
            } else {
                format!("{} MiB", round_sig(v / (1024.0 * 1024.0)))
            }
        }
    }
}

fn round_sig(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn describe_need(p: &Proposal) -> String {
    match p.signal {
        Signal::Qps => format!(
            "qps {} needs {} (target {}/replica)",
            fmt_value(p.signal, p.value),
            p.replicas,
            round_sig(p.target)
        ),
        s => format!(
            "{s} {} needs {} (target {} per replica)",
            fmt_value(s, p.value),
            p.replicas,
            fmt_value(s, p.target)
        ),
    }
}
