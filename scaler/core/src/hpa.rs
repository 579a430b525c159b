//! The HPA that KEDA creates in front of every workload, as Spillway's answers meet it,
//! and the number `GetMetrics` serves so that the HPA applies Spillway's decision.
//!
//! Pure: plain values in, plain values out.
//!
//! # What the HPA does with the answer
//!
//! KEDA hands `GetMetrics`' value to the HPA as an External metric with target
//! `AverageValue: 1` (both in milli-units). The HPA's rule is
//! `GetExternalPerPodMetricReplicas` (`pkg/controller/podautoscaler/replica_calculator.go`):
//!
//! ```text
//! ratio = value / (target × status.replicas)
//! (1 − tolerance.scaleDown) ≤ ratio ≤ (1 + tolerance.scaleUp)  →  status.replicas
//! otherwise                                                     →  ceil(value / target)
//! ```
//!
//! then clamps, stabilizes and rate-limits that proposal and writes it into
//! `spec.replicas` when it differs (`horizontal.go` `reconcileAutoscaler`). The ratio is
//! over `status.replicas` (pods that exist) while the comparison is with `spec.replicas`.
//!
//! # The served number
//!
//! [`serve`] takes the final count (the decision after placement's burst cap and drain
//! surge, and the warm-up floor) and the scale subresource as the HPA reads it:
//! - a count the HPA applies as is is served as is;
//! - a scale-up (a count above both `spec.replicas` and `status.replicas`) within the
//!   tolerance (the HPA would keep `status.replicas`) is raised to the smallest count the
//!   HPA does apply, when the ceiling (replicas.max, the scale-up rate limit, the burst
//!   cap) allows it; this holds whether or not the current count is inside `[min, max]`,
//!   so a schedule raising the minimum from 95 to 100 lands (as 105);
//! - any other count within the tolerance is served as decided: the HPA keeps
//!   `status.replicas` whatever Spillway answers in that range, and an answer outside it
//!   in the other direction would be a change nobody decided. [`Served::expected`] says
//!   what the HPA will run.
//!
//! # When the HPA's own tolerance still ratchets
//!
//! Exactly when an HPA sync sees `status.replicas ≠ spec.replicas` and Spillway's number
//! within the tolerance of `status.replicas`: the HPA then writes `status.replicas` into
//! `spec.replicas`. No answer prevents it (within the tolerance the HPA's result is
//! `status.replicas`, outside it is the answer itself, which is not `spec.replicas`), so
//! Spillway answers its decision and says so. In a rolling update of spec S that is when
//! `status ≤ S / (1 − tolerance)`: with the default 10 %, status up to 11.1 % above spec;
//! a 25 % surge reaches it only at syncs that catch the rollout while its surge pods are
//! being created or its old pods are going. The same holds downwards while the pods of
//! a scale-up are not created yet (`status ≥ S / (1 + tolerance)`): the HPA lowers spec
//! to status, and Spillway's next decision scales up again. Spillway holds on
//! `spec.replicas` (never on `status.replicas`) and raises only a count above both, so
//! a ratchet costs at most one such step and the band takes it back when the load does
//! not need it; it never feeds on itself up to `replicas.max`. With the HPA's tolerance
//! at 0 (`behavior.*.tolerance: 0`, `hpaTolerance: 0`) nothing ratchets.
//!
//! # Where the tolerance comes from
//!
//! [`HpaView`] is everything Spillway assumes about a workload's HPA. Today it is built
//! from the policy's `hpaTolerance` ([`HpaView::from_policy`]); a reader of the HPA KEDA
//! created (`keda-hpa-<name>`) hands a workload its real view through
//! the scaler's `WorkloadEntry::set_hpa_view`, which then wins over the policy.

use serde::Serialize;

use crate::policy::AppPolicy;

/// The HPA's tolerance per direction: `--horizontal-pod-autoscaler-tolerance` (0.1), or
/// `behavior.scaleUp.tolerance` / `behavior.scaleDown.tolerance` (KEP-4951).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HpaTolerance {
    pub scale_up: f64,
    pub scale_down: f64,
}

impl HpaTolerance {
    /// The same tolerance both ways.
    pub fn uniform(tolerance: f64) -> Self {
        Self {
            scale_up: tolerance,
            scale_down: tolerance,
        }
    }

    /// `Tolerances.isWithin` (`replica_calculator.go`), bounds inclusive.
    pub fn is_within(self, ratio: f64) -> bool {
        (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
    }

    fn percent(self) -> String {
        if self.scale_up == self.scale_down {
            format!("{}%", self.scale_up * 100.0)
        } else {
            format!("+{}%/−{}%", self.scale_up * 100.0, self.scale_down * 100.0)
        }
    }
}

/// Where an [`HpaView`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum HpaSource {
    /// The policy's `hpaTolerance`: what Spillway is told to assume.
    Policy,
    /// Read from the HPA object in the cluster.
    Cluster,
}

/// What Spillway knows of the HPA in front of one workload.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HpaView {
    pub tolerance: HpaTolerance,
    pub source: HpaSource,
}

impl HpaView {
    /// The view a policy describes: its `hpaTolerance` in both directions.
    pub fn from_policy(policy: &AppPolicy) -> Self {
        Self {
            tolerance: HpaTolerance::uniform(policy.hpa_tolerance),
            source: HpaSource::Policy,
        }
    }
}

/// The scale subresource as the HPA reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ScaleCounts {
    /// `spec.replicas`: what the HPA compares its result with, and what Spillway holds on.
    pub spec: u32,
    /// `status.replicas`: pods that exist (surge pods of a rollout included); the
    /// denominator of the HPA's ratio.
    pub status: u32,
}

impl ScaleCounts {
    /// Spec and status equal: what is assumed when nothing reads them.
    pub fn settled(replicas: u32) -> Self {
        Self {
            spec: replicas,
            status: replicas,
        }
    }
}

/// KEDA's milli-units: `GenerateMetricInMili` sends the value × 1000, and the HPA reads
/// `target.averageValue` as `MilliValue()` (1000 for Spillway's target 1).
const MILLI: f64 = 1000.0;

/// The HPA's proposal for Spillway's metric: `GetExternalPerPodMetricReplicas`
/// (`replica_calculator.go`) with `value` replicas against target 1.
pub fn hpa_proposal(value: u32, status_replicas: u32, tolerance: HpaTolerance) -> u32 {
    let usage = f64::from(value) * MILLI;
    let ratio = usage / (MILLI * f64::from(status_replicas));
    if tolerance.is_within(ratio) {
        status_replicas
    } else {
        // ceil(usage / target): the value itself, which is a whole number of replicas.
        (usage / MILLI).ceil() as u32
    }
}

/// The count to serve, before the HPA's tolerance is accounted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeInput {
    /// The final count: the decision after the burst cap, the drain surge and warm-up.
    pub replicas: u32,
    /// The highest count a raise past the tolerance may reach.
    pub ceiling: u32,
    pub scale: ScaleCounts,
}

/// How the served number relates to the count asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ServeOutcome {
    /// The HPA applies the count as is.
    AsDecided,
    /// Raised past the tolerance so the HPA acts on it.
    Raised { from: u32 },
    /// Within the tolerance: the HPA keeps `status.replicas` whatever is answered.
    Kept { status: u32 },
}

/// What `GetMetrics` answers, and what the HPA will make of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Served {
    pub replicas: u32,
    /// The HPA's proposal for the answer: the count that will run once it syncs.
    pub expected: u32,
    pub outcome: ServeOutcome,
}

impl Served {
    /// A sentence for the decision's reason, when the tolerance changed anything.
    pub fn explain(&self, tolerance: HpaTolerance, scale: ScaleCounts) -> Option<String> {
        let tol = tolerance.percent();
        match self.outcome {
            ServeOutcome::AsDecided => None,
            ServeOutcome::Raised { from } => Some(format!(
                "served {} instead of {from}: the HPA keeps status.replicas {} for anything within its {tol} tolerance",
                self.replicas, scale.status
            )),
            ServeOutcome::Kept { status } if scale.spec != status => Some(format!(
                "the HPA keeps status.replicas {status} (within its {tol} tolerance of {}) and writes it over spec.replicas {}; no answer avoids that while a rollout surges",
                self.replicas, scale.spec
            )),
            ServeOutcome::Kept { status } => Some(format!(
                "{status} → {} is within the HPA's {tol} tolerance: it keeps {status}, and a larger step is not allowed",
                self.replicas
            )),
        }
    }
}

/// The number `GetMetrics` serves for `input` to an HPA with `tolerance`.
pub fn serve(input: ServeInput, tolerance: HpaTolerance) -> Served {
    let ServeInput {
        replicas,
        ceiling,
        scale,
    } = input;
    let status = scale.status;
    let expected = hpa_proposal(replicas, status, tolerance);
    if expected == replicas {
        return Served {
            replicas,
            expected,
            outcome: ServeOutcome::AsDecided,
        };
    }
    // Only a scale-up is raised: a count that merely holds spec.replicas while status
    // lags or surges would be pushed further at every sync.
    if replicas > status
        && replicas > scale.spec
        && let Some(raised) = smallest_applied_above(replicas, status, tolerance, ceiling)
    {
        return Served {
            replicas: raised,
            expected: raised,
            outcome: ServeOutcome::Raised { from: replicas },
        };
    }
    Served {
        replicas,
        expected,
        outcome: ServeOutcome::Kept { status },
    }
}

/// The smallest count from `from` up to `ceiling` the HPA applies as is, if any.
fn smallest_applied_above(
    from: u32,
    status: u32,
    tolerance: HpaTolerance,
    ceiling: u32,
) -> Option<u32> {
    // The bound is `status × (1 + tolerance)`; start just below it and let the HPA's own
    // test decide the rest, so float rounding at the bound is the HPA's, not ours.
    let bound = (f64::from(status) * (1.0 + tolerance.scale_up)).floor();
    let start = if bound >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        (bound as u32).saturating_sub(1)
    };
    (from.max(start)..=ceiling)
        .take(4)
        .find(|&n| hpa_proposal(n, status, tolerance) == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: HpaTolerance = HpaTolerance {
        scale_up: 0.1,
        scale_down: 0.1,
    };

    fn input(replicas: u32, spec: u32, status: u32) -> ServeInput {
        ServeInput {
            replicas,
            ceiling: 1_000,
            scale: ScaleCounts { spec, status },
        }
    }

    #[test]
    fn the_hpa_rule_matches_the_reference_examples() {
        // status 100, tolerance 0.1: 109 and 110 kept (inclusive bound), 111 applied;
        // 90 kept, 89 applied.
        for (value, result) in [(109, 100), (110, 100), (111, 111), (90, 100), (89, 89)] {
            assert_eq!(hpa_proposal(value, 100, TEN), result, "value {value}");
        }
        // No pods: the ratio is infinite (or NaN for 0), never within.
        assert_eq!(hpa_proposal(3, 0, TEN), 3);
        assert_eq!(hpa_proposal(0, 0, TEN), 0);
        // Tolerance 0: anything but status itself is applied.
        let zero = HpaTolerance::uniform(0.0);
        assert_eq!(hpa_proposal(101, 100, zero), 101);
        assert_eq!(hpa_proposal(99, 100, zero), 99);
    }

    #[test]
    fn a_count_the_hpa_applies_is_served_as_is() {
        let s = serve(input(120, 100, 100), TEN);
        assert_eq!(
            (s.replicas, s.expected, s.outcome),
            (120, 120, ServeOutcome::AsDecided)
        );
        let s = serve(input(100, 100, 100), TEN);
        assert_eq!((s.replicas, s.outcome), (100, ServeOutcome::AsDecided));
    }

    #[test]
    fn a_small_scale_up_is_raised_to_the_first_count_the_hpa_applies() {
        let s = serve(input(105, 100, 100), TEN);
        assert_eq!(
            (s.replicas, s.expected, s.outcome),
            (111, 111, ServeOutcome::Raised { from: 105 })
        );
        assert!(
            s.explain(TEN, ScaleCounts::settled(100))
                .is_some_and(|t| t.contains("instead of 105")),
        );
        // 109 vs 100, the issue's example.
        assert_eq!(serve(input(109, 100, 100), TEN).replicas, 111);
    }

    #[test]
    fn a_raised_minimum_lands_even_from_outside_the_bounds() {
        // A schedule raises the minimum from 95 to 100 while 95 run: 100/95 is within
        // the tolerance, so 105 is served (the first count the HPA acts on).
        let s = serve(input(100, 95, 95), TEN);
        assert_eq!(s.replicas, 105);
        assert_eq!(hpa_proposal(s.replicas, 95, TEN), 105);
        assert!(s.replicas >= 100);
    }

    #[test]
    fn the_ceiling_bounds_a_raise_and_then_the_hpa_keeps_status() {
        let s = serve(
            ServeInput {
                replicas: 105,
                ceiling: 108,
                scale: ScaleCounts::settled(100),
            },
            TEN,
        );
        assert_eq!(
            (s.replicas, s.expected, s.outcome),
            (105, 100, ServeOutcome::Kept { status: 100 })
        );
        assert!(
            s.explain(TEN, ScaleCounts::settled(100))
                .is_some_and(|t| t.contains("larger step is not allowed"))
        );
    }

    #[test]
    fn a_small_scale_down_is_served_and_the_hpa_keeps_status() {
        let s = serve(input(95, 100, 100), TEN);
        assert_eq!(
            (s.replicas, s.expected, s.outcome),
            (95, 100, ServeOutcome::Kept { status: 100 })
        );
    }

    #[test]
    fn a_rollout_surge_is_answered_with_spec_not_status() {
        // spec 100, status 125 (25 % surge): 100 is outside the tolerance of 125, so the
        // HPA's result is 100 = spec and nothing changes.
        let s = serve(input(100, 100, 125), TEN);
        assert_eq!((s.replicas, s.expected), (100, 100));
        // status 105: 100/105 is within, the HPA writes 105 whatever is answered: the
        // documented ratchet, answered with the decision and said so.
        let s = serve(input(100, 100, 105), TEN);
        assert_eq!(
            (s.replicas, s.expected, s.outcome),
            (100, 105, ServeOutcome::Kept { status: 105 })
        );
        assert!(
            s.explain(
                TEN,
                ScaleCounts {
                    spec: 100,
                    status: 105
                }
            )
            .is_some_and(|t| t.contains("rollout"))
        );
        // Pods of a scale-up not created yet (spec 120, status 110): holding 120 is not
        // raised; the HPA writes 110, the ratchet downwards.
        let s = serve(input(120, 120, 110), TEN);
        assert_eq!(
            (s.replicas, s.expected, s.outcome),
            (120, 110, ServeOutcome::Kept { status: 110 })
        );
        // With tolerance 0 there is no ratchet at all.
        let s = serve(input(100, 100, 105), HpaTolerance::uniform(0.0));
        assert_eq!((s.replicas, s.expected), (100, 100));
    }

    #[test]
    fn the_raise_uses_the_hpa_test_at_the_bound() {
        // For every status and both common tolerances, the raise is the smallest count
        // above the decision that the HPA applies, checked by brute force.
        for tol in [0.05, 0.1, 0.15, 0.2] {
            let tolerance = HpaTolerance::uniform(tol);
            for status in 1..400u32 {
                for replicas in status + 1..status + status / 4 + 3 {
                    let s = serve(input(replicas, status, status), tolerance);
                    let want = (replicas..)
                        .find(|&n| hpa_proposal(n, status, tolerance) == n)
                        .expect("some count is applied");
                    assert_eq!(
                        s.replicas, want,
                        "tol {tol} status {status} replicas {replicas}"
                    );
                    assert_eq!(s.expected, want);
                }
            }
        }
    }

    #[test]
    fn per_direction_tolerances_are_honoured() {
        let t = HpaTolerance {
            scale_up: 0.0,
            scale_down: 0.2,
        };
        assert_eq!(serve(input(101, 100, 100), t).replicas, 101);
        let s = serve(input(85, 100, 100), t);
        assert_eq!((s.replicas, s.expected), (85, 100));
        assert_eq!(hpa_proposal(79, 100, t), 79);
    }
}
