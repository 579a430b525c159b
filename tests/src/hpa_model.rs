//! A model of the HPA controller for the HPA KEDA creates: one External metric with an
//! `AverageValue` target, synced explicitly. It follows Kubernetes v1.36
//! `pkg/controller/podautoscaler` rule by rule; each rule names its file and function.
//!
//! Pure: time is passed in (milliseconds), nothing sleeps, nothing is shared.

/// `autoscalingv2.ScalingPolicySelect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// `autoscalingv2.HPAScalingPolicyType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalingPolicy {
    pub kind: PolicyKind,
    pub value: u32,
    pub period_secs: u32,
}

/// `autoscalingv2.HPAScalingRules` after the API server's defaulting.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRules {
    /// `None` only for scale-down: the controller then uses its
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (300 s)
    /// (`horizontal.go` `maybeInitScaleDownStabilizationWindow`).
    pub stabilization_window_secs: Option<u32>,
    pub select: Select,
    pub policies: Vec<ScalingPolicy>,
    /// `behavior.*.tolerance` (KEP-4951); `None`: the controller's flag.
    pub tolerance: Option<f64>,
}

/// `autoscalingv2.HorizontalPodAutoscalerBehavior`.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
}

impl Behavior {
    /// What the API server fills in for an unset `scaleUp` / `scaleDown`
    /// (`pkg/apis/autoscaling/v2/defaults.go` `defaultHPAScaleUpRules`,
    /// `defaultHPAScaleDownRules`).
    pub fn kubernetes_default() -> Self {
        Self {
            scale_up: ScalingRules {
                stabilization_window_secs: Some(0),
                select: Select::Max,
                policies: vec![
                    ScalingPolicy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period_secs: 15,
                    },
                    ScalingPolicy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period_secs: 15,
                    },
                ],
                tolerance: None,
            },
            scale_down: ScalingRules {
                stabilization_window_secs: None,
                select: Select::Max,
                policies: vec![ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period_secs: 15,
                }],
                tolerance: None,
            },
        }
    }

    /// The pass-through of `deploy/keda/hpa-passthrough.yaml` (tolerance left to the
    /// controller's flag, as there).
    pub fn passthrough() -> Self {
        let policy = |kind, value| ScalingPolicy {
            kind,
            value,
            period_secs: 15,
        };
        Self {
            scale_up: ScalingRules {
                stabilization_window_secs: Some(0),
                select: Select::Max,
                policies: vec![
                    policy(PolicyKind::Percent, 1000),
                    policy(PolicyKind::Pods, 1000),
                ],
                tolerance: None,
            },
            scale_down: ScalingRules {
                stabilization_window_secs: Some(0),
                select: Select::Max,
                policies: vec![policy(PolicyKind::Percent, 100)],
                tolerance: None,
            },
        }
    }

    /// [`Self::passthrough`] with `tolerance` set in both directions.
    pub fn passthrough_with_tolerance(tolerance: f64) -> Self {
        let mut b = Self::passthrough();
        b.scale_up.tolerance = Some(tolerance);
        b.scale_down.tolerance = Some(tolerance);
        b
    }
}

/// The HPA object as KEDA writes it, and the controller flags that matter.
#[derive(Clone, Debug, PartialEq)]
pub struct HpaSpec {
    /// KEDA: `minReplicaCount` when above 0, else 1 (`GetHPAMinReplicas`).
    pub min_replicas: u32,
    /// KEDA: `maxReplicaCount`, default 100 (`GetHPAMaxReplicas`).
    pub max_replicas: u32,
    /// KEDA copies `advanced.horizontalPodAutoscalerConfig.behavior` as is; `None` when
    /// unset.
    pub behavior: Option<Behavior>,
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub downscale_stabilization_secs: u32,
    /// The `HPAConfigurableTolerance` gate (beta, on by default from 1.35).
    pub configurable_tolerance: bool,
}

impl HpaSpec {
    /// What KEDA creates for a ScaledObject with `min`/`max` replica counts and
    /// `behavior`, on a cluster with the controller's default flags.
    pub fn keda(
        min_replica_count: u32,
        max_replica_count: u32,
        behavior: Option<Behavior>,
    ) -> Self {
        Self {
            min_replicas: min_replica_count.max(1),
            max_replicas: max_replica_count,
            behavior,
            tolerance: 0.1,
            downscale_stabilization_secs: 300,
            configurable_tolerance: true,
        }
    }
}

/// The scale subresource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scale {
    pub spec: u32,
    pub status: u32,
}

/// What one sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// `spec.replicas` was written.
    Rescaled { from: u32, to: u32 },
    /// Computed and found nothing to change.
    Unchanged,
    /// `spec.replicas` is 0: "scaling is disabled since the replica count of the target
    /// is zero" (the `HPAScaleToZero` gate is off).
    ScalingDisabled,
    /// The metric could not be read: the HPA keeps its count (`FailedGetExternalMetric`).
    MetricFailed,
}

#[derive(Clone, Copy, Debug)]
struct Recommendation {
    at_ms: i64,
    replicas: u32,
}

#[derive(Clone, Copy, Debug)]
struct ScaleEvent {
    at_ms: i64,
    change: u32,
}

/// One HPA and the controller's memory of it (recommendations and scale events are
/// kept per HPA key in `HorizontalController`).
#[derive(Clone, Debug)]
pub struct HpaModel {
    pub spec: HpaSpec,
    recommendations: Vec<Recommendation>,
    up_events: Vec<ScaleEvent>,
    down_events: Vec<ScaleEvent>,
}

/// `replica_calculator.go` `Tolerances`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub scale_down: f64,
    pub scale_up: f64,
}

impl Tolerances {
    /// `Tolerances.isWithin`.
    pub fn is_within(self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }
}

/// `replica_calculator.go` `GetExternalPerPodMetricReplicas`: `usage` and `target` in
/// milli-units, summed over the metric's values.
pub fn external_per_pod_replicas(
    status_replicas: u32,
    target_milli: i64,
    usage_milli: i64,
    tolerances: Tolerances,
) -> u32 {
    let usage_ratio = usage_milli as f64 / (target_milli as f64 * f64::from(status_replicas));
    if tolerances.is_within(usage_ratio) {
        status_replicas
    } else {
        (usage_milli as f64 / target_milli as f64).ceil() as u32
    }
}

/// KEDA's `GenerateMetricInMili` (`pkg/scalers/scaler.go`): the value × 1000 as a
/// milli-quantity.
pub fn keda_milli(value: f64) -> i64 {
    (value * 1000.0) as i64
}

impl HpaModel {
    pub fn new(spec: HpaSpec) -> Self {
        Self {
            spec,
            recommendations: Vec::new(),
            up_events: Vec::new(),
            down_events: Vec::new(),
        }
    }

    /// `horizontal.go` `tolerancesForHpa`.
    pub fn tolerances(&self) -> Tolerances {
        let mut t = Tolerances {
            scale_down: self.spec.tolerance,
            scale_up: self.spec.tolerance,
        };
        if let (Some(b), true) = (&self.spec.behavior, self.spec.configurable_tolerance) {
            if let Some(down) = b.scale_down.tolerance {
                t.scale_down = down;
            }
            if let Some(up) = b.scale_up.tolerance {
                t.scale_up = up;
            }
        }
        t
    }

    /// One `reconcileAutoscaler` (`horizontal.go`) against `scale`, with the value KEDA's
    /// metrics adapter returned for Spillway's metric (target `AverageValue: 1`), or
    /// `None` when the adapter failed. Returns what it did; the caller writes
    /// `spec.replicas` on [`SyncOutcome::Rescaled`].
    pub fn sync(&mut self, now_ms: i64, scale: Scale, metric: Option<f64>) -> SyncOutcome {
        // reconcileAutoscaler: currentReplicas is spec, not status.
        let current = scale.spec;
        // recordInitialRecommendation: the first sync seeds the history with current.
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                at_ms: now_ms,
                replicas: current,
            });
        }
        let min = self.spec.min_replicas;
        let max = self.spec.max_replicas;
        let desired = if current == 0 {
            // shouldComputeMetricsForZeroReplicas with HPAScaleToZero off: disabled.
            return SyncOutcome::ScalingDisabled;
        } else if current > max {
            // "Current number of replicas above Spec.MaxReplicas"
            max
        } else if current < min {
            // "Current number of replicas below Spec.MinReplicas"
            min
        } else {
            // computeReplicasForMetrics → computeStatusForExternalMetric →
            // GetExternalPerPodMetricReplicas(statusReplicas, target 1000 milli, …).
            let Some(value) = metric else {
                // All metrics invalid: return -1, no rescale.
                return SyncOutcome::MetricFailed;
            };
            let proposal =
                external_per_pod_replicas(scale.status, 1000, keda_milli(value), self.tolerances());
            match self.spec.behavior.clone() {
                None => self.normalize(now_ms, current, proposal),
                Some(behavior) => {
                    self.normalize_with_behaviors(now_ms, current, proposal, &behavior)
                }
            }
        };
        if desired == current {
            return SyncOutcome::Unchanged;
        }
        // storeScaleEvent (only with a behavior: "we should not store any event as they
        // will not be used").
        if self.spec.behavior.is_some() {
            let event = ScaleEvent {
                at_ms: now_ms,
                change: desired.abs_diff(current),
            };
            if desired > current {
                self.up_events.push(event);
            } else {
                self.down_events.push(event);
            }
        }
        SyncOutcome::Rescaled {
            from: current,
            to: desired,
        }
    }

    /// `normalizeDesiredReplicas`: `stabilizeRecommendation` (max over the downscale
    /// window), then `convertDesiredReplicasWithRules` (min, max, scale-up limit
    /// max(2 × current, 4)).
    fn normalize(&mut self, now_ms: i64, current: u32, proposal: u32) -> u32 {
        let cutoff = now_ms - i64::from(self.spec.downscale_stabilization_secs) * 1000;
        let mut stabilized = proposal;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at_ms < cutoff {
                old = Some(i);
            } else if r.replicas > stabilized {
                stabilized = r.replicas;
            }
        }
        let fresh = Recommendation {
            at_ms: now_ms,
            replicas: proposal,
        };
        match old {
            Some(i) => self.recommendations[i] = fresh,
            None => self.recommendations.push(fresh),
        }
        let scale_up_limit = (2 * current).max(4);
        let max = self.spec.max_replicas.min(scale_up_limit);
        stabilized.max(self.spec.min_replicas).min(max)
    }

    /// `normalizeDesiredReplicasWithBehaviors`: `stabilizeRecommendationWithBehaviors`,
    /// then `convertDesiredReplicasWithBehaviorRate`.
    fn normalize_with_behaviors(
        &mut self,
        now_ms: i64,
        current: u32,
        proposal: u32,
        behavior: &Behavior,
    ) -> u32 {
        // maybeInitScaleDownStabilizationWindow
        let down_window = behavior
            .scale_down
            .stabilization_window_secs
            .unwrap_or(self.spec.downscale_stabilization_secs);
        let up_window = behavior.scale_up.stabilization_window_secs.unwrap_or(0);
        let up_cutoff = now_ms - i64::from(up_window) * 1000;
        let down_cutoff = now_ms - i64::from(down_window) * 1000;
        let mut up_rec = proposal;
        let mut down_rec = proposal;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            // rec.timestamp.After(cutoff)
            if r.at_ms > up_cutoff {
                up_rec = up_rec.min(r.replicas);
            }
            if r.at_ms > down_cutoff {
                down_rec = down_rec.max(r.replicas);
            }
            if r.at_ms < up_cutoff && r.at_ms < down_cutoff {
                old = Some(i);
            }
        }
        let stabilized = current.max(up_rec).min(down_rec);
        let fresh = Recommendation {
            at_ms: now_ms,
            replicas: proposal,
        };
        match old {
            Some(i) => self.recommendations[i] = fresh,
            None => self.recommendations.push(fresh),
        }
        // convertDesiredReplicasWithBehaviorRate
        let min = self.spec.min_replicas;
        let max = self.spec.max_replicas;
        if stabilized > current {
            let limit = self
                .scale_up_limit(now_ms, current, &behavior.scale_up)
                .max(current);
            stabilized.min(max.min(limit))
        } else if stabilized < current {
            let limit = self
                .scale_down_limit(now_ms, current, &behavior.scale_down)
                .min(current);
            stabilized.max(min.max(limit))
        } else {
            stabilized
        }
    }

    /// `getReplicasChangePerPeriod`: changes strictly after `now − period`.
    fn change_in_period(events: &[ScaleEvent], now_ms: i64, period_secs: u32) -> i64 {
        let cutoff = now_ms - i64::from(period_secs) * 1000;
        events
            .iter()
            .filter(|e| e.at_ms > cutoff)
            .map(|e| i64::from(e.change))
            .sum()
    }

    fn period_start(&self, now_ms: i64, current: u32, period_secs: u32) -> i64 {
        i64::from(current) - Self::change_in_period(&self.up_events, now_ms, period_secs)
            + Self::change_in_period(&self.down_events, now_ms, period_secs)
    }

    /// `calculateScaleUpLimitWithScalingRules`.
    fn scale_up_limit(&self, now_ms: i64, current: u32, rules: &ScalingRules) -> u32 {
        let pick: fn(i64, i64) -> i64 = match rules.select {
            Select::Disabled => return current,
            Select::Min => i64::min,
            Select::Max => i64::max,
        };
        let mut result = if rules.select == Select::Min {
            i64::from(i32::MAX)
        } else {
            i64::from(i32::MIN)
        };
        for p in &rules.policies {
            let start = self.period_start(now_ms, current, p.period_secs);
            let proposed = match p.kind {
                PolicyKind::Pods => start + i64::from(p.value),
                // "the proposal has to be rounded up"
                PolicyKind::Percent => {
                    (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
                }
            };
            result = pick(result, proposed);
        }
        result.clamp(0, i64::from(u32::MAX)) as u32
    }

    /// `calculateScaleDownLimitWithBehaviors`.
    fn scale_down_limit(&self, now_ms: i64, current: u32, rules: &ScalingRules) -> u32 {
        let pick: fn(i64, i64) -> i64 = match rules.select {
            Select::Disabled => return current,
            // For scaling down, the lowest change ('min' policy) produces a maximum value.
            Select::Min => i64::max,
            Select::Max => i64::min,
        };
        let mut result = if rules.select == Select::Min {
            i64::from(i32::MIN)
        } else {
            i64::from(i32::MAX)
        };
        for p in &rules.policies {
            let start = self.period_start(now_ms, current, p.period_secs);
            let proposed = match p.kind {
                PolicyKind::Pods => start - i64::from(p.value),
                // int32(float64(periodStartReplicas) * (1 - value/100)): truncation.
                PolicyKind::Percent => (start as f64 * (1.0 - f64::from(p.value) / 100.0)) as i64,
            };
            result = pick(result, proposed);
        }
        result.clamp(0, i64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passthrough_hpa() -> HpaModel {
        HpaModel::new(HpaSpec::keda(1, 400, Some(Behavior::passthrough())))
    }

    fn settled(n: u32) -> Scale {
        Scale { spec: n, status: n }
    }

    #[test]
    fn the_reference_examples_at_ten_percent() {
        // keda-hpa-loop.md: target 1, value = desired replicas, tolerance 0.1, status
        // 100: 109 and 110 ignored (inclusive bound), 111 applied; 90 ignored, 89 applied.
        for (value, outcome) in [
            (109.0, SyncOutcome::Unchanged),
            (110.0, SyncOutcome::Unchanged),
            (111.0, SyncOutcome::Rescaled { from: 100, to: 111 }),
            (90.0, SyncOutcome::Unchanged),
            (89.0, SyncOutcome::Rescaled { from: 100, to: 89 }),
        ] {
            let mut hpa = passthrough_hpa();
            assert_eq!(
                hpa.sync(0, settled(100), Some(value)),
                outcome,
                "value {value}"
            );
        }
    }

    #[test]
    fn a_tolerance_in_the_behavior_wins_when_the_gate_is_on() {
        let mut spec = HpaSpec::keda(1, 400, Some(Behavior::passthrough_with_tolerance(0.0)));
        let mut hpa = HpaModel::new(spec.clone());
        assert_eq!(
            hpa.sync(0, settled(100), Some(101.0)),
            SyncOutcome::Rescaled { from: 100, to: 101 }
        );
        spec.configurable_tolerance = false;
        let mut hpa = HpaModel::new(spec);
        assert_eq!(
            hpa.sync(0, settled(100), Some(101.0)),
            SyncOutcome::Unchanged
        );
    }

    #[test]
    fn the_ratio_is_over_status_and_the_result_is_compared_with_spec() {
        // A rollout: spec 100, status 125. Answering 125 (status) makes the HPA write
        // 125 into spec: the ratchet. Answering 100 (spec) changes nothing.
        let surge = Scale {
            spec: 100,
            status: 125,
        };
        assert_eq!(
            passthrough_hpa().sync(0, surge, Some(125.0)),
            SyncOutcome::Rescaled { from: 100, to: 125 }
        );
        assert_eq!(
            passthrough_hpa().sync(0, surge, Some(100.0)),
            SyncOutcome::Unchanged
        );
        // Status within the tolerance of the answer: the HPA writes status whatever is
        // answered (the ratchet no answer avoids).
        let small = Scale {
            spec: 100,
            status: 105,
        };
        assert_eq!(
            passthrough_hpa().sync(0, small, Some(100.0)),
            SyncOutcome::Rescaled { from: 100, to: 105 }
        );
    }

    #[test]
    fn min_max_zero_and_failures() {
        let mut hpa = HpaModel::new(HpaSpec::keda(2, 10, Some(Behavior::passthrough())));
        assert_eq!(
            hpa.sync(0, settled(0), Some(5.0)),
            SyncOutcome::ScalingDisabled
        );
        assert_eq!(
            hpa.sync(0, settled(1), Some(5.0)),
            SyncOutcome::Rescaled { from: 1, to: 2 },
            "below min: min, no metric read"
        );
        assert_eq!(
            hpa.sync(0, settled(12), Some(5.0)),
            SyncOutcome::Rescaled { from: 12, to: 10 }
        );
        assert_eq!(hpa.sync(0, settled(5), None), SyncOutcome::MetricFailed);
        assert_eq!(
            hpa.sync(0, settled(5), Some(40.0)),
            SyncOutcome::Rescaled { from: 5, to: 10 },
            "clamped to max"
        );
        assert_eq!(
            hpa.sync(0, settled(5), Some(0.0)),
            SyncOutcome::Rescaled { from: 5, to: 2 },
            "clamped to min: the HPA never goes below 1"
        );
    }

    #[test]
    fn the_default_behavior_stabilizes_scale_down_and_limits_scale_up() {
        let mut hpa = HpaModel::new(HpaSpec::keda(1, 400, Some(Behavior::kubernetes_default())));
        assert_eq!(hpa.sync(0, settled(10), Some(10.0)), SyncOutcome::Unchanged);
        // 300 s scale-down window: 10 is remembered.
        assert_eq!(
            hpa.sync(15_000, settled(10), Some(2.0)),
            SyncOutcome::Unchanged
        );
        assert_eq!(
            hpa.sync(301_000, settled(10), Some(2.0)),
            SyncOutcome::Rescaled { from: 10, to: 2 }
        );
        // Scale-up, 19 s after that scale-down (outside its 15 s period): from 2,
        // max(2 + 4 pods, 2 × 200 %) = 6.
        assert_eq!(
            hpa.sync(320_000, settled(2), Some(50.0)),
            SyncOutcome::Rescaled { from: 2, to: 6 }
        );
        // Within the same 15 s the period still starts at 2: no more yet.
        assert_eq!(
            hpa.sync(325_000, settled(6), Some(50.0)),
            SyncOutcome::Unchanged
        );
        // Once it has passed, from 6: max(6 + 4, 6 × 2) = 12.
        assert_eq!(
            hpa.sync(336_000, settled(6), Some(50.0)),
            SyncOutcome::Rescaled { from: 6, to: 12 }
        );
    }

    #[test]
    fn no_behavior_uses_the_flag_window_and_the_legacy_limit() {
        let mut hpa = HpaModel::new(HpaSpec::keda(1, 400, None));
        assert_eq!(
            hpa.sync(0, settled(3), Some(50.0)),
            SyncOutcome::Rescaled { from: 3, to: 6 },
            "scale-up limit max(2 × current, 4)"
        );
        // The window remembers the unclamped proposal 50, so a low value still grows the
        // count, up to the limit.
        assert_eq!(
            hpa.sync(15_000, settled(6), Some(1.0)),
            SyncOutcome::Rescaled { from: 6, to: 12 }
        );
    }

    #[test]
    fn pass_through_policies_do_not_bind_spillway_steps() {
        let mut hpa = passthrough_hpa();
        assert_eq!(
            hpa.sync(0, settled(10), Some(300.0)),
            SyncOutcome::Rescaled { from: 10, to: 300 }
        );
        assert_eq!(
            hpa.sync(15_000, settled(300), Some(1.0)),
            SyncOutcome::Rescaled { from: 300, to: 1 }
        );
    }
}
