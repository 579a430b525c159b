//! Per-workload conditions, in the shape Kubernetes uses: a type, a status, when the
//! status last changed, when it was last checked, and how many checks in a row said the
//! same thing (so a repeating error reads as one problem seen N times, not N problems).
//!
//! Pure: probes are plain values, time is passed in.

use serde::{Deserialize, Serialize};

use crate::published::{Basis, Published};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionType {
    /// KEDA's IsActive answers true.
    Active,
    /// A limit (min/max, rate limit, stabilization, schedule) set the count instead of
    /// the load.
    ScalingLimited,
    /// Every configured signal has fresh data.
    DataFresh,
    /// The tenant's policy file loaded without errors.
    PolicyValid,
    /// Some desired replicas have no place (regular nodes full, burst off or capped).
    BurstShortfall,
    /// The HPA KEDA created applies Spillway's count as is (no stabilization, no
    /// stricter policies, `AverageValue` 1, no clipping min/max). Probed when the
    /// Kubernetes side reads the HPA, so absent without it.
    HpaPassThrough,
    /// Less than a full scale-down window of data since start, or no data at all: what
    /// is served may not go below what runs (or, with no replica count known, below the
    /// highest count the data asked for since start).
    WarmingUp,
    /// An emergency freeze holds the replica count ([`crate::freeze`]); False with
    /// reason `FreezeExpired` while an expired freeze is still set.
    Frozen,
    /// The last attempt to decide the workload completed. False when it panicked: the
    /// previous decision keeps serving, and the message says what broke.
    Decided,
}

impl ConditionType {
    /// The conditions every decision probes, in display order.
    pub const ALL: [ConditionType; 8] = [
        ConditionType::Active,
        ConditionType::ScalingLimited,
        ConditionType::DataFresh,
        ConditionType::PolicyValid,
        ConditionType::BurstShortfall,
        ConditionType::WarmingUp,
        ConditionType::Frozen,
        ConditionType::Decided,
    ];
    /// The conditions the Kubernetes side probes, shown after [`Self::ALL`].
    pub const CLUSTER: [ConditionType; 1] = [ConditionType::HpaPassThrough];

    fn display_order(self) -> usize {
        Self::ALL
            .iter()
            .chain(Self::CLUSTER.iter())
            .position(|k| *k == self)
            .unwrap_or(usize::MAX)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub kind: ConditionType,
    pub status: ConditionStatus,
    /// A CamelCase word for machines (`RateLimited`, `StaleData`).
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    /// Unix milliseconds when the status last changed.
    pub last_transition_ms: i64,
    /// Unix milliseconds of the last check.
    pub last_probe_ms: i64,
    /// Checks in a row with this status and message.
    pub count: u64,
}

/// A workload's conditions, updated by every probe.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    list: Vec<Condition>,
}

impl Conditions {
    pub fn observe(&mut self, probe: Probe, now_ms: i64) {
        match self.list.iter_mut().find(|c| c.kind == probe.kind) {
            Some(c) => {
                if c.status != probe.status {
                    c.last_transition_ms = now_ms;
                    c.count = 1;
                } else if c.message != probe.message {
                    c.count = 1;
                } else {
                    c.count = c.count.saturating_add(1);
                }
                c.status = probe.status;
                c.reason = probe.reason.to_owned();
                c.message = probe.message;
                c.last_probe_ms = now_ms;
            }
            None => self.list.push(Condition {
                kind: probe.kind,
                status: probe.status,
                reason: probe.reason.to_owned(),
                message: probe.message,
                last_transition_ms: now_ms,
                last_probe_ms: now_ms,
                count: 1,
            }),
        }
    }

    /// In [`ConditionType::ALL`] order, then [`ConditionType::CLUSTER`].
    pub fn list(&self) -> Vec<Condition> {
        let mut list = self.list.clone();
        list.sort_by_key(|c| c.kind.display_order());
        list
    }
}

/// The `Decided` condition of an attempt that panicked with `message`.
pub fn decision_failed(message: &str) -> Probe {
    Probe {
        kind: ConditionType::Decided,
        status: ConditionStatus::False,
        reason: "DecisionPanicked",
        message: format!(
            "deciding this workload panicked ({message}); the previous decision keeps serving"
        ),
    }
}

/// What a published decision says about each condition. `policy_error` is the error of
/// the tenant's policy file, if its latest version was refused.
pub fn probes(decision: &Published, policy_error: Option<&str>) -> Vec<Probe> {
    use ConditionStatus::{False, True, Unknown};
    let mut out = Vec::with_capacity(ConditionType::ALL.len());
    out.push(Probe {
        kind: ConditionType::Active,
        status: if decision.active { True } else { False },
        reason: decision.activity.reason(),
        message: decision.activity.describe().to_owned(),
    });
    let limited = match decision.rule {
        "rate_limited" => Some("RateLimited"),
        "max_replicas" => Some("MaxReplicas"),
        "min_replicas" => Some("MinReplicas"),
        "stabilized" => Some("Stabilized"),
        "schedule" => Some("Schedule"),
        "hpa_tolerance" => Some("HpaTolerance"),
        crate::freeze::RULE => Some("Frozen"),
        _ => None,
    };
    out.push(Probe {
        kind: ConditionType::ScalingLimited,
        status: if limited.is_some() { True } else { False },
        reason: limited.unwrap_or("LoadDecides"),
        message: if limited.is_some() {
            decision.reason.clone()
        } else {
            "the replica count follows the load".to_owned()
        },
    });
    out.push(if !decision.missing.is_empty() {
        Probe {
            kind: ConditionType::DataFresh,
            status: False,
            reason: "StaleData",
            message: format!(
                "no fresh {} data: scale-down is held until it returns",
                decision.missing.join(", ")
            ),
        }
    } else if !decision.partial.is_empty() {
        Probe {
            kind: ConditionType::DataFresh,
            status: False,
            reason: "PartialData",
            message: format!(
                "{} only partly known (a collector shard is lost): scale-down is held until every shard answers",
                decision.partial.join(", ")
            ),
        }
    } else {
        Probe {
            kind: ConditionType::DataFresh,
            status: True,
            reason: "FreshData",
            message: "every configured signal has fresh data".to_owned(),
        }
    });
    out.push(match policy_error {
        Some(error) => Probe {
            kind: ConditionType::PolicyValid,
            status: False,
            reason: "PolicyRefused",
            message: format!(
                "the latest policy file was refused; the last good version keeps serving: {error}"
            ),
        },
        None => Probe {
            kind: ConditionType::PolicyValid,
            status: True,
            reason: "PolicyLoaded",
            message: "the policy loaded without errors".to_owned(),
        },
    });
    out.push(match &decision.placement {
        Some(placed) if placed.shortfall > 0 => Probe {
            kind: ConditionType::BurstShortfall,
            status: True,
            reason: "NoPlace",
            message: format!(
                "{} of {} replicas have no place: {}",
                placed.shortfall, decision.desired, placed.reason
            ),
        },
        Some(placed) => Probe {
            kind: ConditionType::BurstShortfall,
            status: False,
            reason: "AllPlaced",
            message: placed.reason.clone(),
        },
        None => Probe {
            kind: ConditionType::BurstShortfall,
            status: Unknown,
            reason: "NoPlacement",
            message: "no placement source: replicas are placed by the cluster".to_owned(),
        },
    });
    out.push(warming_up(decision));
    out.push(frozen(decision));
    out.push(Probe {
        kind: ConditionType::Decided,
        status: True,
        reason: "Decided",
        message: "the last decision completed".to_owned(),
    });
    out
}

fn frozen(decision: &Published) -> Probe {
    use ConditionStatus::{False, True};
    let (status, reason, message) = match &decision.freeze {
        Some(view) if view.holding => (
            True,
            match view.freeze.source {
                crate::freeze::Source::Api => "FrozenByApi",
                crate::freeze::Source::Annotation => "FrozenByAnnotation",
            },
            view.freeze.describe(),
        ),
        Some(view) => (
            False,
            "FreezeExpired",
            format!(
                "the freeze expired and no longer holds; scaling resumed (remove or renew it): {}",
                view.freeze.describe()
            ),
        ),
        None => (False, "NotFrozen", "no freeze applies".to_owned()),
    };
    Probe {
        kind: ConditionType::Frozen,
        status,
        reason,
        message,
    }
}

/// Why the served number may be held up after a start.
fn warming_up(decision: &Published) -> Probe {
    use ConditionStatus::{False, True};
    let (status, reason, message) = match (decision.basis, decision.plan.warming_up) {
        (Basis::Nothing, _) => (
            True,
            "NoDataYet",
            format!(
                "no data and no replica count since start: serving the effective minimum {}",
                decision.served
            ),
        ),
        (Basis::Observed, true) => (
            True,
            "RestartWarmup",
            format!(
                "less than a full scale-down window of data since start: never below the {} replicas spec.replicas asks for; scale-ups are served at once",
                decision.scale.spec
            ),
        ),
        (_, true) => (
            True,
            "CurrentReplicasUnknown",
            format!(
                "less than a full scale-down window of data since start and no replica count (no kubernetes section): serving the highest count the data asked for since start ({}); a restart may lower a workload to it, so KEDA's fallback must be currentReplicasIfHigher or currentReplicas",
                decision.served
            ),
        ),
        (_, false) => (
            False,
            "Warm",
            "a full scale-down window of data since start".to_owned(),
        ),
    };
    Probe {
        kind: ConditionType::WarmingUp,
        status,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(status: ConditionStatus, message: &str) -> Probe {
        Probe {
            kind: ConditionType::PolicyValid,
            status,
            reason: "R",
            message: message.to_owned(),
        }
    }

    #[test]
    fn repeats_count_and_transitions_keep_their_time() {
        let mut c = Conditions::default();
        c.observe(probe(ConditionStatus::True, "ok"), 1_000);
        c.observe(probe(ConditionStatus::False, "bad yaml"), 2_000);
        c.observe(probe(ConditionStatus::False, "bad yaml"), 3_000);
        c.observe(probe(ConditionStatus::False, "bad yaml"), 4_000);
        let list = c.list();
        assert_eq!(list.len(), 1);
        let p = &list[0];
        assert_eq!(p.status, ConditionStatus::False);
        assert_eq!(p.count, 3);
        assert_eq!(p.last_transition_ms, 2_000);
        assert_eq!(p.last_probe_ms, 4_000);
        c.observe(probe(ConditionStatus::False, "another error"), 5_000);
        let p = &c.list()[0];
        assert_eq!(
            (p.count, p.last_transition_ms),
            (1, 2_000),
            "a new error restarts the count, not the transition"
        );
        c.observe(probe(ConditionStatus::True, "ok"), 6_000);
        let p = &c.list()[0];
        assert_eq!((p.count, p.last_transition_ms), (1, 6_000));
    }
}
