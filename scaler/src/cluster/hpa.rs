//! The HPA that KEDA creates for a ScaledObject, read and judged: which tolerance it
//! really applies to the number Spillway serves, and whether it passes that number
//! through unchanged.
//!
//! Spillway serves the desired replica count as one External metric with target
//! `AverageValue: 1`, and the HPA turns it into `spec.replicas`. That is exact only when
//! the HPA adds nothing of its own: no stabilization window, no scaling policy stricter
//! than Spillway's own limits, an `AverageValue` target of 1, no other metric, and a
//! min/max that do not clip the policy's range. [`judge`] says which of these does not
//! hold, as [`Finding`]s; the tolerance goes to the engine's correction instead, since
//! Spillway compensates for it rather than reporting it.
//!
//! # Which versions carry `behavior.*.tolerance`
//!
//! - Kubernetes (KEP-4951, feature gate `HPAConfigurableTolerance`,
//!   `pkg/features/kube_features.go`): alpha and off in 1.33 and 1.34, beta and on by
//!   default from 1.35. With the gate off the API server drops the field on write and
//!   the controller applies its `--horizontal-pod-autoscaler-tolerance` (0.1 unless
//!   changed) in both directions (`pkg/controller/podautoscaler/horizontal.go`,
//!   `tolerancesForHpa`).
//! - KEDA: the ScaledObject CRD keeps `advanced.horizontalPodAutoscalerConfig.behavior.*.tolerance`
//!   from v2.18.0 (built against k8s.io/api v0.33); v2.17 and earlier prune it, so the
//!   HPA never gets it.
//!
//! A direction whose tolerance the HPA does not carry is assumed to have the cluster
//! default, [`DEFAULT_TOLERANCE`]: the controller's flag cannot be read through the API.
//!
//! # Which HPA
//!
//! KEDA names it `status.hpaName` once it has recorded one, else
//! `advanced.horizontalPodAutoscalerConfig.name`, else `keda-hpa-<scaledObject>`
//! (`controllers/keda/hpa.go` `getHPAName`, `scaledobject_controller.go`
//! `getHPANameOnEnsure`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscaler};
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spillway_collector::signal::WorkloadKey;

use super::ClusterError;
use super::replicas::scaled_object_resource;
use crate::conditions::{ConditionStatus, ConditionType, Probe};
use crate::policy::{AppPolicy, RateLimit, SelectPolicy};
use crate::serve::workloads::WorkloadEntry;

/// `--horizontal-pod-autoscaler-tolerance`'s default (`cmd/kube-controller-manager`,
/// `HPAControllerConfiguration`), for a direction the HPA sets no tolerance for.
pub const DEFAULT_TOLERANCE: f64 = 0.1;

/// `--horizontal-pod-autoscaler-downscale-stabilization`'s default, which applies when
/// `behavior.scaleDown.stabilizationWindowSeconds` is unset (`horizontal.go`,
/// `normalizeDesiredReplicasWithBehaviors`).
pub const DEFAULT_DOWNSCALE_STABILIZATION_SECS: i64 = 300;

/// The metric Spillway serves; KEDA names it `s<i>-spillway-replicas` in the HPA.
const METRIC_NAME: &str = crate::keda::service::METRIC_NAME;

/// Replica counts checked one by one before [`judge`] samples larger ones.
const DENSE_COUNTS: u32 = 2_000;

/// The tolerance the HPA applies to the ratio of Spillway's number to its replicas.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tolerances {
    pub up: f64,
    pub down: f64,
    /// `behavior.scaleUp.tolerance` is set on the HPA; false: [`DEFAULT_TOLERANCE`] assumed.
    pub up_from_hpa: bool,
    pub down_from_hpa: bool,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            up: DEFAULT_TOLERANCE,
            down: DEFAULT_TOLERANCE,
            up_from_hpa: false,
            down_from_hpa: false,
        }
    }
}

impl fmt::Display for Tolerances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = |set: bool| if set { "" } else { " (cluster default)" };
        // To 0.01 %: 0.07 × 100 is 7.000000000000001 in floating point.
        let percent = |ratio: f64| (ratio * 10_000.0).round() / 100.0;
        write!(
            f,
            "tolerance up {}%{}, down {}%{}",
            percent(self.up),
            origin(self.up_from_hpa),
            percent(self.down),
            origin(self.down_from_hpa)
        )
    }
}

/// Why an HPA is not a pass-through for Spillway's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FindingReason {
    /// `behavior.scaleUp.stabilizationWindowSeconds` > 0: a scale-up waits for it.
    ScaleUpStabilization,
    /// `behavior.scaleDown.stabilizationWindowSeconds` > 0, or unset (the controller's
    /// 300 s): a scale-down waits for it.
    ScaleDownStabilization,
    /// A scale-up policy allows less than Spillway's own limits (or is disabled).
    ScaleUpCapped,
    /// A scale-down policy allows less than Spillway's own limits (or is disabled).
    ScaleDownCapped,
    /// The metric's target is `Value`: the HPA multiplies by its ready pods instead of
    /// taking Spillway's count (`GetExternalMetricReplicas`).
    ValueTarget,
    /// The `AverageValue` target is not 1, so the count is divided by it.
    TargetNotOne,
    /// No External metric named `spillway-replicas`: not Spillway's HPA.
    MetricMissing,
    /// The HPA scales on other metrics too and takes the largest proposal.
    OtherMetrics,
    /// `minReplicas` is above the policy's minimum.
    MinAbovePolicy,
    /// `maxReplicas` is below the policy's maximum.
    MaxBelowPolicy,
    /// A `tolerance` that is not a quantity; the cluster default is assumed.
    ToleranceUnreadable,
}

impl FindingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleUpStabilization => "ScaleUpStabilization",
            Self::ScaleDownStabilization => "ScaleDownStabilization",
            Self::ScaleUpCapped => "ScaleUpCapped",
            Self::ScaleDownCapped => "ScaleDownCapped",
            Self::ValueTarget => "ValueTarget",
            Self::TargetNotOne => "TargetNotOne",
            Self::MetricMissing => "MetricMissing",
            Self::OtherMetrics => "OtherMetrics",
            Self::MinAbovePolicy => "MinAbovePolicy",
            Self::MaxBelowPolicy => "MaxBelowPolicy",
            Self::ToleranceUnreadable => "ToleranceUnreadable",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub reason: FindingReason,
    /// What the HPA does and what to change, for people.
    pub message: String,
}

/// What Spillway knows about one workload's HPA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HpaView {
    pub name: String,
    pub tolerance: Tolerances,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Empty: the HPA is a pass-through.
    pub findings: Vec<Finding>,
}

impl HpaView {
    pub fn passes_through(&self) -> bool {
        self.findings.is_empty()
    }

    /// The workload's `HpaPassThrough` condition.
    pub fn probe(&self) -> Probe {
        match self.findings.first() {
            None => Probe {
                kind: ConditionType::HpaPassThrough,
                status: ConditionStatus::True,
                reason: "PassThrough",
                message: format!(
                    "HPA {} applies Spillway's count as is ({})",
                    self.name, self.tolerance
                ),
            },
            Some(first) => Probe {
                kind: ConditionType::HpaPassThrough,
                status: ConditionStatus::False,
                reason: first.reason.as_str(),
                message: format!(
                    "HPA {} changes Spillway's count: {}",
                    self.name,
                    self.findings
                        .iter()
                        .map(|f| f.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            },
        }
    }
}

/// The condition when the HPA could not be judged: not created yet, or not readable.
pub fn unread_probe(what: HpaUnread, detail: &str) -> Probe {
    let (reason, message) = match what {
        HpaUnread::NotFound => (
            "HpaNotFound",
            format!(
                "no HPA {detail} yet (KEDA creates it from the ScaledObject); the policy's hpaTolerance is assumed"
            ),
        ),
        HpaUnread::Failed => (
            "HpaNotRead",
            format!("the HPA could not be read; the policy's hpaTolerance is assumed: {detail}"),
        ),
    };
    Probe {
        kind: ConditionType::HpaPassThrough,
        status: ConditionStatus::Unknown,
        reason,
        message,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HpaUnread {
    NotFound,
    Failed,
}

/// The part of a policy an HPA can contradict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolicyBounds {
    pub min: u32,
    pub max: u32,
    pub up: RateLimit,
    pub down: RateLimit,
}

impl From<&AppPolicy> for PolicyBounds {
    fn from(policy: &AppPolicy) -> Self {
        Self {
            min: policy.replicas.min,
            max: policy.replicas.max,
            up: policy.limits.up,
            down: policy.limits.down,
        }
    }
}

/// The name of the HPA KEDA manages for this ScaledObject (see the module docs).
pub fn hpa_name(scaled_object: &str, so: &Value) -> String {
    let named = |pointer: &str| {
        so.pointer(pointer)
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
    };
    named("/status/hpaName")
        .or_else(|| named("/spec/advanced/horizontalPodAutoscalerConfig/name"))
        .unwrap_or_else(|| format!("keda-hpa-{scaled_object}"))
}

/// What a read found.
#[derive(Clone, Debug)]
pub enum HpaRead {
    Found(Box<HorizontalPodAutoscaler>),
    /// KEDA has not created it (yet), or the ScaledObject names another.
    Missing {
        name: String,
    },
}

/// Reads the ScaledObject (1 GET) for the HPA's name, then the HPA (1 GET).
pub async fn read_hpa(
    client: &Client,
    namespace: &str,
    scaled_object: &str,
) -> Result<HpaRead, ClusterError> {
    let so_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &scaled_object_resource());
    let so = so_api
        .get(scaled_object)
        .await
        .map_err(|e| ClusterError::api("get scaledobject", e))?;
    let name = hpa_name(scaled_object, &so.data);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    match hpas
        .get_opt(&name)
        .await
        .map_err(|e| ClusterError::api("get horizontalpodautoscaler", e))?
    {
        Some(hpa) => Ok(HpaRead::Found(Box::new(hpa))),
        None => Ok(HpaRead::Missing { name }),
    }
}

/// The latest [`HpaView`] of every workload whose HPA was read, for the code that serves
/// numbers (the HPA's real tolerance), the status API and `/metrics`.
#[derive(Debug, Default)]
pub struct HpaViews {
    by_workload: RwLock<HashMap<WorkloadKey, Arc<HpaView>>>,
}

impl HpaViews {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &WorkloadKey) -> Option<Arc<HpaView>> {
        self.by_workload
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The tolerance the workload's HPA applies; `None` when its HPA was never read
    /// (no Kubernetes side, no HPA yet): the policy's `hpaTolerance` stands.
    pub fn tolerance(&self, key: &WorkloadKey) -> Option<Tolerances> {
        self.get(key).map(|view| view.tolerance)
    }

    pub fn set(&self, key: WorkloadKey, view: HpaView) {
        self.by_workload
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::new(view));
    }

    pub fn remove(&self, key: &WorkloadKey) {
        self.by_workload
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Every view, in workload order.
    pub fn all(&self) -> Vec<(WorkloadKey, Arc<HpaView>)> {
        let mut all: Vec<_> = self
            .by_workload
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, view)| (key.clone(), view.clone()))
            .collect();
        all.sort_by(|a, b| (&a.0.tenant, &a.0.app).cmp(&(&b.0.tenant, &b.0.app)));
        all
    }
}

/// When each workload's HPA was last read, so the loop reads it once per `every`.
#[derive(Debug)]
pub struct HpaReads {
    every_ms: i64,
    last_ms: HashMap<WorkloadKey, i64>,
}

impl HpaReads {
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every_ms: i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
            last_ms: HashMap::new(),
        }
    }

    /// True (and remembered) when the workload's HPA has not been read for `every`.
    pub fn due(&mut self, key: &WorkloadKey, now_ms: i64) -> bool {
        match self.last_ms.get(key) {
            Some(last) if now_ms - last < self.every_ms => false,
            _ => {
                self.last_ms.insert(key.clone(), now_ms);
                true
            }
        }
    }

    /// Reads and judges the workload's HPA when due: the view goes to `views`, the
    /// `HpaPassThrough` condition to the workload. A failed read keeps the last view
    /// (the HPA rarely changes) and says why in the condition.
    #[allow(clippy::too_many_arguments)]
    pub async fn refresh(
        &mut self,
        client: &Client,
        binding: &crate::config::kubernetes::WorkloadBinding,
        key: &WorkloadKey,
        policy: &AppPolicy,
        entry: &WorkloadEntry,
        views: &HpaViews,
        now_ms: i64,
    ) {
        if !self.due(key, now_ms) {
            return;
        }
        let probe = match read_hpa(client, &binding.namespace, &binding.scaled_object).await {
            Ok(HpaRead::Found(hpa)) => {
                let view = judge(&hpa, &PolicyBounds::from(policy));
                let changed = views
                    .get(key)
                    .is_none_or(|old| old.findings != view.findings);
                if changed && !view.passes_through() {
                    tracing::warn!(tenant = %key.tenant, app = %key.app, hpa = %view.name,
                        findings = ?view.findings.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>(),
                        "the HPA is not a pass-through for Spillway's count");
                }
                let probe = view.probe();
                views.set(key.clone(), view);
                probe
            }
            Ok(HpaRead::Missing { name }) => {
                views.remove(key);
                unread_probe(
                    HpaUnread::NotFound,
                    &format!("{}/{name}", binding.namespace),
                )
            }
            Err(error) => {
                tracing::warn!(tenant = %key.tenant, app = %key.app, %error, "HPA not read");
                unread_probe(HpaUnread::Failed, &error.to_string())
            }
        };
        entry.observe_conditions(vec![probe], now_ms);
    }
}

// ---- judging ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Up => "scale-up",
            Direction::Down => "scale-down",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Pods(i64),
    Percent(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HpaPolicy {
    step: Step,
    period_secs: i64,
}

/// One direction's rules with the API server's defaults filled in
/// (`pkg/apis/autoscaling/v2/defaults.go`, `GenerateHPAScaleUpRules` /
/// `GenerateHPAScaleDownRules`: unset fields take the defaults one by one).
#[derive(Clone, Debug, PartialEq)]
struct Rules {
    select: Select,
    policies: Vec<HpaPolicy>,
    /// `None`: the controller's flag applies (scale-down only).
    stabilization_secs: Option<i64>,
}

fn rules_with_defaults(direction: Direction, given: Option<&HPAScalingRules>) -> Rules {
    // defaults.go: scale-up 4 pods or 100 % per 15 s (Max), no window; scale-down 100 %
    // per 15 s (Max) and the controller's window.
    let mut out = match direction {
        Direction::Up => Rules {
            select: Select::Max,
            policies: vec![
                HpaPolicy {
                    step: Step::Pods(4),
                    period_secs: 15,
                },
                HpaPolicy {
                    step: Step::Percent(100),
                    period_secs: 15,
                },
            ],
            stabilization_secs: Some(0),
        },
        Direction::Down => Rules {
            select: Select::Max,
            policies: vec![HpaPolicy {
                step: Step::Percent(100),
                period_secs: 15,
            }],
            stabilization_secs: None,
        },
    };
    let Some(given) = given else {
        return out;
    };
    if let Some(select) = &given.select_policy {
        // The API server refuses anything else; an unknown word is read as the default.
        out.select = match select.as_str() {
            "Min" => Select::Min,
            "Disabled" => Select::Disabled,
            _ => Select::Max,
        };
    }
    if let Some(window) = given.stabilization_window_seconds {
        out.stabilization_secs = Some(i64::from(window));
    }
    if let Some(policies) = &given.policies {
        out.policies = policies
            .iter()
            .map(|p| HpaPolicy {
                step: if p.type_ == "Pods" {
                    Step::Pods(i64::from(p.value))
                } else {
                    Step::Percent(i64::from(p.value))
                },
                period_secs: i64::from(p.period_seconds),
            })
            .collect();
    }
    out
}

/// The HPA's limit for one policy from `start` replicas at its period's start
/// (`horizontal.go`, `calculateScaleUpLimitWithScalingRules` and
/// `calculateScaleDownLimitWithBehaviors`: percent rounds up when scaling up and
/// truncates when scaling down).
fn hpa_policy_limit(direction: Direction, step: Step, start: i64) -> i64 {
    match (direction, step) {
        (Direction::Up, Step::Pods(p)) => start + p,
        (Direction::Up, Step::Percent(pc)) => {
            (start as f64 * (1.0 + pc as f64 / 100.0)).ceil() as i64
        }
        (Direction::Down, Step::Pods(p)) => start - p,
        (Direction::Down, Step::Percent(pc)) => (start as f64 * (1.0 - pc as f64 / 100.0)) as i64,
    }
}

/// Spillway's own limit for one step from `current` with nothing else in the period:
/// the same rules as the engine's (`engine::limits`), which follow the HPA's.
fn spillway_step(direction: Direction, rule: &RateLimit, current: i64) -> i64 {
    if rule.select == SelectPolicy::Disabled {
        return current;
    }
    let by_pods = rule.pods.map(|p| Step::Pods(i64::from(p)));
    let by_percent = rule.percent.map(|pc| Step::Percent(i64::from(pc)));
    let limits: Vec<i64> = by_pods
        .into_iter()
        .chain(by_percent)
        .map(|step| hpa_policy_limit(direction, step, current))
        .collect();
    let unlimited = match direction {
        Direction::Up => i64::MAX,
        Direction::Down => 0,
    };
    let (most, least) = match direction {
        Direction::Up => (limits.iter().max(), limits.iter().min()),
        Direction::Down => (limits.iter().min(), limits.iter().max()),
    };
    let picked = match rule.select {
        SelectPolicy::Min => least,
        _ => most,
    };
    picked.copied().unwrap_or(unlimited)
}

/// How far Spillway's limits can take the workload from `from` within `window_secs`,
/// starting with nothing in its own period. Both sides count a change while it is
/// younger than the period (`at > now - period`), so steps a period apart fit
/// `ceil(window / period)` times into one window.
fn spillway_reach(
    direction: Direction,
    rule: &RateLimit,
    from: i64,
    window_secs: i64,
    bound: i64,
) -> i64 {
    let period = i64::from(rule.period_secs.max(1));
    let steps = (window_secs.max(1) + period - 1) / period;
    let mut at = from;
    for _ in 0..steps {
        let next = match direction {
            Direction::Up => spillway_step(direction, rule, at).min(bound),
            Direction::Down => spillway_step(direction, rule, at).max(bound),
        };
        if next == at {
            break;
        }
        at = next;
    }
    at
}

/// The first replica count (within the range Spillway moves in) from which the HPA's
/// policies allow less within one of their periods than Spillway's limits reach.
///
/// With `selectPolicy: Max` the HPA allows a step when any policy does, so it caps only
/// when every policy falls short; with `Min` one policy short is enough.
fn first_capped(
    direction: Direction,
    rules: &Rules,
    spillway: &RateLimit,
    lo: i64,
    hi: i64,
) -> Option<i64> {
    let counts = sampled(lo, hi);
    for c in counts {
        let (from_ok, bound) = match direction {
            Direction::Up => (c < hi, hi),
            Direction::Down => (c > lo, lo),
        };
        if !from_ok {
            continue;
        }
        let short = |p: &HpaPolicy| {
            let reach = spillway_reach(direction, spillway, c, p.period_secs, bound);
            let allowed = hpa_policy_limit(direction, p.step, c);
            match direction {
                Direction::Up => allowed < reach,
                Direction::Down => allowed > reach,
            }
        };
        let moves = match direction {
            Direction::Up => spillway_step(direction, spillway, c).min(bound) > c,
            Direction::Down => spillway_step(direction, spillway, c).max(bound) < c,
        };
        let capped = match rules.select {
            Select::Disabled => moves,
            Select::Max => !rules.policies.is_empty() && rules.policies.iter().all(short),
            Select::Min => rules.policies.iter().any(short),
        };
        if capped {
            return Some(c);
        }
    }
    None
}

/// Every count up to [`DENSE_COUNTS`] above `lo`, then about 200 per doubling: limits
/// are piecewise linear in the count, so a sparse tail misses nothing that matters.
fn sampled(lo: i64, hi: i64) -> impl Iterator<Item = i64> {
    let dense_end = lo.saturating_add(i64::from(DENSE_COUNTS));
    let mut next = Some(lo);
    std::iter::from_fn(move || {
        let c = next?;
        let step = if c < dense_end { 1 } else { (c / 200).max(1) };
        next = (c < hi).then(|| (c + step).min(hi));
        Some(c)
    })
}

fn describe(rules: &Rules) -> String {
    if rules.select == Select::Disabled {
        return "selectPolicy Disabled".into();
    }
    let policies: Vec<String> = rules
        .policies
        .iter()
        .map(|p| match p.step {
            Step::Pods(n) => format!("{n} pods per {}s", p.period_secs),
            Step::Percent(n) => format!("{n}% per {}s", p.period_secs),
        })
        .collect();
    let select = if rules.select == Select::Min {
        "Min"
    } else {
        "Max"
    };
    format!("{select} of [{}]", policies.join(", "))
}

fn parse_tolerance(
    direction: Direction,
    given: Option<&HPAScalingRules>,
    findings: &mut Vec<Finding>,
) -> (f64, bool) {
    let Some(quantity) = given.and_then(|r| r.tolerance.as_ref()) else {
        return (DEFAULT_TOLERANCE, false);
    };
    match crate::policy::parse_quantity(&quantity.0) {
        Ok(value) if (0.0..1.0).contains(&value) => (value, true),
        _ => {
            findings.push(Finding {
                reason: FindingReason::ToleranceUnreadable,
                message: format!(
                    "behavior.{}.tolerance {:?} is not a quantity from 0 to below 1; {DEFAULT_TOLERANCE} assumed",
                    match direction {
                        Direction::Up => "scaleUp",
                        Direction::Down => "scaleDown",
                    },
                    quantity.0
                ),
            });
            (DEFAULT_TOLERANCE, false)
        }
    }
}

/// Judges one HPA against the policy of the workload it scales. Pure.
pub fn judge(hpa: &HorizontalPodAutoscaler, policy: &PolicyBounds) -> HpaView {
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let mut findings = Vec::new();
    let behavior = spec.behavior.as_ref();
    let given_up = behavior.and_then(|b| b.scale_up.as_ref());
    let given_down = behavior.and_then(|b| b.scale_down.as_ref());
    let (up, up_from_hpa) = parse_tolerance(Direction::Up, given_up, &mut findings);
    let (down, down_from_hpa) = parse_tolerance(Direction::Down, given_down, &mut findings);
    let tolerance = Tolerances {
        up,
        down,
        up_from_hpa,
        down_from_hpa,
    };

    check_metrics(&spec.metrics.unwrap_or_default(), &mut findings);

    // The HPA's floor is at least 1 (KEDA's GetHPAMinReplicas; 0 is KEDA's activation).
    let hpa_min = spec.min_replicas.unwrap_or(1).max(1);
    let hpa_max = spec.max_replicas.max(0);
    let policy_floor = policy.min.max(1);
    if i64::from(hpa_min) > i64::from(policy_floor) {
        findings.push(Finding {
            reason: FindingReason::MinAbovePolicy,
            message: format!(
                "minReplicas {hpa_min} is above the policy's minimum {}: Spillway's counts below it are raised (set the ScaledObject's minReplicaCount to {})",
                policy.min, policy.min
            ),
        });
    }
    if i64::from(hpa_max) < i64::from(policy.max) {
        findings.push(Finding {
            reason: FindingReason::MaxBelowPolicy,
            message: format!(
                "maxReplicas {hpa_max} is below the policy's maximum {}: Spillway's counts above it are cut (set the ScaledObject's maxReplicaCount to at least {})",
                policy.max, policy.max
            ),
        });
    }

    let lo = i64::from(policy_floor.max(u32::try_from(hpa_min).unwrap_or(1)));
    let hi = i64::from(policy.max).min(i64::from(hpa_max)).max(lo);
    for (direction, given, spillway, reason, window_reason) in [
        (
            Direction::Up,
            given_up,
            &policy.up,
            FindingReason::ScaleUpCapped,
            FindingReason::ScaleUpStabilization,
        ),
        (
            Direction::Down,
            given_down,
            &policy.down,
            FindingReason::ScaleDownCapped,
            FindingReason::ScaleDownStabilization,
        ),
    ] {
        let rules = rules_with_defaults(direction, given);
        let window = rules
            .stabilization_secs
            .unwrap_or(DEFAULT_DOWNSCALE_STABILIZATION_SECS);
        if window > 0 {
            let origin = if rules.stabilization_secs.is_none() {
                " (unset: the controller's default)"
            } else {
                ""
            };
            findings.push(Finding {
                reason: window_reason,
                message: format!(
                    "{} stabilization window {window}s{origin} delays every {} Spillway decides (set stabilizationWindowSeconds: 0)",
                    direction.word(),
                    direction.word()
                ),
            });
        }
        if let Some(at) = first_capped(direction, &rules, spillway, lo, hi) {
            findings.push(Finding {
                reason,
                message: format!(
                    "{} policies {} allow less than the policy's own limit ({spillway}), first from {at} replicas (use the pass-through policies)",
                    direction.word(),
                    describe(&rules)
                ),
            });
        }
    }

    HpaView {
        name,
        tolerance,
        min_replicas: u32::try_from(hpa_min).unwrap_or(1),
        max_replicas: u32::try_from(hpa_max).unwrap_or(0),
        findings,
    }
}

fn is_spillway_metric(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    // KEDA prefixes the trigger's index: `s0-spillway-replicas`.
    let index = name
        .strip_suffix(METRIC_NAME)
        .and_then(|prefix| prefix.strip_prefix('s'))
        .and_then(|prefix| prefix.strip_suffix('-'));
    name == METRIC_NAME
        || index.is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

fn check_metrics(
    metrics: &[k8s_openapi::api::autoscaling::v2::MetricSpec],
    findings: &mut Vec<Finding>,
) {
    let ours = metrics.iter().find_map(|m| {
        m.external
            .as_ref()
            .filter(|e| is_spillway_metric(&e.metric.name))
    });
    let others: Vec<String> = metrics
        .iter()
        .filter(|m| {
            !m.external
                .as_ref()
                .is_some_and(|e| is_spillway_metric(&e.metric.name))
        })
        .map(|m| match &m.external {
            Some(e) => format!("External {}", e.metric.name),
            None => m.type_.clone(),
        })
        .collect();
    let Some(ours) = ours else {
        findings.push(Finding {
            reason: FindingReason::MetricMissing,
            message: format!(
                "it has no External metric {METRIC_NAME} (a trigger of type external or external-push pointing at Spillway)"
            ),
        });
        return;
    };
    if !others.is_empty() {
        findings.push(Finding {
            reason: FindingReason::OtherMetrics,
            message: format!(
                "it also scales on {}, and takes the largest proposal: Spillway's count is only a floor (keep Spillway the ScaledObject's only trigger)",
                others.join(", ")
            ),
        });
    }
    let target = &ours.target;
    if target.type_ != "AverageValue" {
        findings.push(Finding {
            reason: FindingReason::ValueTarget,
            message: format!(
                "the metric's target type is {}: the HPA scales its ready pods by the ratio instead of taking Spillway's count (set the trigger's metricType: AverageValue)",
                target.type_
            ),
        });
        return;
    }
    let value = target
        .average_value
        .as_ref()
        .and_then(|q| crate::policy::parse_quantity(&q.0).ok());
    if value.is_none_or(|v| (v - 1.0).abs() > 1e-9) {
        findings.push(Finding {
            reason: FindingReason::TargetNotOne,
            message: format!(
                "the AverageValue target is {}, not 1: the HPA divides Spillway's count by it",
                target
                    .average_value
                    .as_ref()
                    .map_or("unset", |q| q.0.as_str())
            ),
        });
    }
}

#[cfg(test)]
mod tests;
