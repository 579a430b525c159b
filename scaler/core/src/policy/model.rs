//! The resolved policy model: what the engine, the placement planner and the gRPC layer
//! read. Every value here is final (tenant defaults merged with app overrides, built-in
//! defaults filled in, validated), so readers never deal with `Option`s meaning "unset".

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono_tz::Tz;

/// A tenant's whole policy file, resolved.
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    pub tenant: String,
    /// Where the policy came from (file path or name), for messages.
    pub source_name: String,
    /// Where `metadata.tenant` is written, for messages about duplicate tenants.
    pub tenant_line: u64,
    pub tenant_column: u64,
    /// Namespaces whose ScaledObjects may use this policy.
    pub namespaces: Vec<String>,
    /// Every known app, by name.
    pub apps: BTreeMap<String, Arc<AppPolicy>>,
    /// The file's `candidate:` spec, resolved: decided beside the live one, never
    /// acted on ([`crate::policy::shadow`]).
    pub candidate: Option<Box<TenantPolicy>>,
    /// A candidate's grade and guards (the live spec's is the default, unused).
    pub rollout: super::grade::Rollout,
}

/// One app's policy: tenant defaults merged with the app's overrides.
#[derive(Clone, Debug)]
pub struct AppPolicy {
    pub tenant: String,
    pub app: String,
    pub replicas: ReplicaBounds,
    pub signals: Signals,
    pub hysteresis: Hysteresis,
    pub limits: Limits,
    pub panic: PanicRule,
    pub schedules: Vec<Schedule>,
    pub placement: PlacementRule,
    pub activation: Activation,
    /// The tolerance the HPA in front of Spillway still applies to the replica count
    /// Spillway reports (0.1 by Kubernetes' default; 0 when `behavior.*.tolerance: 0` is set).
    /// The number served is never one the HPA would silently swallow
    /// ([`crate::hpa::serve`]). Read through [`crate::hpa::HpaView::from_policy`], until
    /// the HPA's real tolerance is read from the cluster.
    pub hpa_tolerance: f64,
    /// Other workloads of the tenant may be scaled by this entry (trigger metadata
    /// `policy: <this app>`, e.g. a canary scaled like its main app). Off unless the
    /// tenant says so.
    pub borrowable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaBounds {
    /// 0 allows scale to zero (KEDA's activation decides 0 ↔ 1).
    pub min: u32,
    pub max: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Signals {
    /// Averaging window for the stable (non-panic) proposals, seconds.
    pub window_secs: u32,
    /// A signal whose newest value is older than this is treated as missing, seconds.
    pub stale_after_secs: u32,
    pub qps: Option<QpsTarget>,
    pub cpu: Option<UtilizationTarget>,
    pub memory: Option<UtilizationTarget>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QpsTarget {
    /// Requests per second one replica is meant to serve.
    pub target_per_replica: f64,
    /// Requests per second above which the workload counts as active (scale from zero).
    pub activation: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UtilizationTarget {
    /// Target usage as a fraction of the pod's request, in (0, 1].
    pub target_utilization: f64,
    /// Usage (cores for CPU, bytes for memory) above which the workload counts as active;
    /// `None`: this signal never activates the workload.
    pub activation: Option<f64>,
}

/// The hysteresis band, as ratios of load to target (1.0 = exactly on target).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hysteresis {
    /// Scale up only when load exceeds `scale_up_above` × target (the high watermark).
    pub scale_up_above: f64,
    /// Scale down only when load falls below `scale_down_below` × target (the low watermark).
    pub scale_down_below: f64,
    /// Scale-up stabilization window over recent recommendations, seconds.
    pub up_window_secs: u32,
    /// Scale-down stabilization window over recent recommendations, seconds.
    pub down_window_secs: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub up: RateLimit,
    pub down: RateLimit,
}

/// How fast one direction may move, as the HPA's `behavior` policies: a change of at most
/// `pods` and/or `percent` of the replicas at the period's start, per `period_secs`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub pods: Option<u32>,
    pub percent: Option<u32>,
    pub period_secs: u32,
    pub select: SelectPolicy,
}

/// Which of the pods/percent limits applies, as HPA's `selectPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The limit allowing the larger change (HPA default).
    Max,
    /// The limit allowing the smaller change.
    Min,
    /// No change in this direction at all.
    Disabled,
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = super::duration::format_secs(self.period_secs);
        match (self.select, self.pods, self.percent) {
            (SelectPolicy::Disabled, _, _) => f.write_str("disabled"),
            (_, Some(p), None) => write!(f, "{p} pods per {per}"),
            (_, None, Some(pc)) => write!(f, "{pc}% per {per}"),
            (s, Some(p), Some(pc)) => {
                let which = if s == SelectPolicy::Max { "max" } else { "min" };
                write!(f, "{which}({p} pods, {pc}%) per {per}")
            }
            (_, None, None) => f.write_str("unlimited"),
        }
    }
}

/// Knative-style panic mode for bursts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PanicRule {
    pub enabled: bool,
    /// The short window the burst is measured over, seconds.
    pub window_secs: u32,
    /// Panic when the short window needs ≥ threshold × ready replicas.
    pub threshold: f64,
    /// Panic ends only after this long without crossing the threshold, seconds.
    pub stable_window_secs: u32,
}

/// A minimum replica count over recurring time slices: from each cron firing, for
/// `duration_secs`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    /// The cron text as written (5 fields, or 6 with seconds first).
    pub cron_text: String,
    pub cron: croner::Cron,
    pub timezone: Tz,
    pub duration_secs: u32,
    pub min_replicas: u32,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.cron_text == other.cron_text
            && self.timezone == other.timezone
            && self.duration_secs == other.duration_secs
            && self.min_replicas == other.min_replicas
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementRule {
    pub burst: BurstRule,
    pub requests: ResourceRequests,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstRule {
    /// Whether replicas may spill over to virtual (burst) nodes.
    pub enabled: bool,
    /// At most this many replicas on burst nodes; `None`: no cap beyond `replicas.max`.
    pub max_replicas: Option<u32>,
}

/// One pod's resource requests; CPU/memory utilization is usage over these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceRequests {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// When the workload counts as active (KEDA's `IsActive`, 0 ↔ 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activation {
    /// `replicas.min == 0`: the engine may answer 0 replicas when nothing is active.
    pub scale_to_zero: bool,
    /// Window the activation thresholds are compared over, seconds.
    pub window_secs: u32,
}
