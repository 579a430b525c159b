//! The decision engine (interim first rule; replaced by the full engine).

use std::fmt;

use spillway_collector::{Signal, SignalView};

use crate::policy::AppPolicy;

#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaCounts {
    pub current: u32,
    pub ready: u32,
}

#[derive(Debug, Default)]
pub struct WorkloadState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Proportional,
    HeldMissingData,
}

impl Rule {
    pub fn label(self) -> &'static str {
        match self {
            Rule::Proportional => "proportional",
            Rule::HeldMissingData => "held_missing_data",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Reason(pub String);

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub desired: u32,
    pub active: bool,
    pub rule: Rule,
    pub reason: Reason,
}

pub fn decide(
    policy: &AppPolicy,
    signals: &impl SignalView,
    replicas: ReplicaCounts,
    now: i64,
    _state: &mut WorkloadState,
) -> Decision {
    let Some(target) = policy.signals.qps else {
        return Decision {
            desired: replicas.current,
            active: replicas.current > 0,
            rule: Rule::HeldMissingData,
            reason: Reason("no qps target".into()),
        };
    };
    let qps = signals
        .mean(Signal::Qps, now, 3)
        .filter(|_| signals.newest(Signal::Qps).is_some_and(|n| now - n <= 30));
    let Some(qps) = qps else {
        return Decision {
            desired: replicas.current,
            active: replicas.current > 0,
            rule: Rule::HeldMissingData,
            reason: Reason("no fresh qps data; holding".into()),
        };
    };
    let raw = (qps / target.target_per_replica).ceil() as u32;
    let active = qps > target.activation;
    let min = if active {
        policy.replicas.min.max(1)
    } else {
        policy.replicas.min
    };
    let desired = raw.clamp(min, policy.replicas.max);
    Decision {
        desired,
        active,
        rule: Rule::Proportional,
        reason: Reason(format!(
            "qps {qps:.1}/s needs {raw} at {}/replica",
            target.target_per_replica
        )),
    }
}
