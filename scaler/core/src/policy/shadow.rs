//! Shadow policies: a tenant's file may carry a `candidate:` beside its `spec:`. The
//! candidate has its own `defaults` and `apps` (merged the same way, over the built-in
//! defaults, not over the live spec) and shadows only apps the live spec lists:
//!
//! ```yaml
//! spec:
//!   namespaces: [acme-prod]
//!   defaults: { signals: { qps: { targetPerReplica: 150 } } }
//!   apps: { web: {}, checkout: {} }
//! candidate:
//!   defaults: { signals: { qps: { targetPerReplica: 120 } }, hysteresis: { downWindow: 600s } }
//!   apps: { web: {} }
//! ```
//!
//! Every tick the engine decides each shadowed workload twice, from the same signals
//! and the same replica counts: with the live spec (acted on) and with the candidate
//! (never acted on, its own history so its stabilization windows are its own). The
//! difference per workload is on `/metrics`
//! (`spillway_workload_shadow_desired_replicas`, `_shadow_difference_replicas`), in the
//! status API (`latest.shadow`) and in `spillway policy diff TENANT[/APP]`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use spillway_model::{SignalView, WorkloadKey};

use super::model::{AppPolicy, TenantPolicy};
use super::parse::{RawDocument, Reader};
use crate::engine::{self, Decision, ReplicaCounts, WorkloadState};

/// Resolves a file's `candidate:` against its live document and apps.
pub(super) fn resolve_candidate(
    reader: &mut Reader<'_>,
    mut candidate: RawDocument,
    live: &RawDocument,
    live_apps: &BTreeMap<String, Arc<AppPolicy>>,
) -> Option<TenantPolicy> {
    for (name, _) in &candidate.apps {
        if !live_apps.contains_key(&name.value) {
            reader.error(
                &name.loc,
                format!(
                    "`{}` is not an app of spec.apps; a candidate only shadows apps the live spec scales",
                    name.value
                ),
            );
        }
    }
    candidate.tenant = live.tenant.clone();
    candidate.namespaces = live.namespaces.clone();
    super::validate::resolve(reader, candidate)
}

/// The candidate's decision next to the live one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowView {
    /// What the live spec's engine decided (before any freeze).
    pub live_desired: u32,
    pub live_rule: String,
    pub candidate_desired: u32,
    pub candidate_rule: String,
    pub candidate_reason: String,
    /// Candidate minus live, in replicas.
    pub difference: i64,
    /// Which one KEDA is served: `live`, or `candidate` where its grade promotes it.
    #[serde(default)]
    pub acting: String,
    /// Why a promoted candidate went back to the live spec, when a guard tripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
}

impl ShadowView {
    /// Whether the candidate would have done anything else.
    pub fn differs(&self) -> bool {
        self.difference != 0 || self.live_rule != self.candidate_rule
    }
}

/// The candidate's engine history, per workload.
#[derive(Debug, Default)]
pub struct ShadowBook {
    states: Mutex<HashMap<WorkloadKey, WorkloadState>>,
}

impl ShadowBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides `key` with `other` (the policy not acted on) from what the acting
    /// decision started from; `promoted`: the acting one is the candidate.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        key: &WorkloadKey,
        other: &AppPolicy,
        signals: &impl SignalView,
        start: ReplicaCounts,
        now: i64,
        acting: &Decision,
        promoted: bool,
    ) -> ShadowView {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let state = states
            .entry(key.clone())
            .or_insert_with(|| WorkloadState::new(now));
        let shadow = engine::decide(other, signals, start, now, state);
        let (live, candidate) = if promoted {
            (&shadow, acting)
        } else {
            (acting, &shadow)
        };
        ShadowView {
            live_desired: live.desired,
            live_rule: live.rule.label().to_owned(),
            candidate_desired: candidate.desired,
            candidate_rule: candidate.rule.label().to_owned(),
            candidate_reason: candidate.reason.to_string(),
            difference: i64::from(candidate.desired) - i64::from(live.desired),
            acting: if promoted { "candidate" } else { "live" }.to_owned(),
            rolled_back: None,
        }
    }

    /// Drops the history of a workload that has no candidate (any more), so a new
    /// candidate starts fresh.
    pub fn forget(&self, key: &WorkloadKey) {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySet, parse_policy};

    const FILE: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: acme }
spec:
  namespaces: [acme]
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 2s, qps: { targetPerReplica: 100 } }
  apps:
    web: {}
    api: {}
candidate:
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 2s, qps: { targetPerReplica: 50 } }
  apps:
    web: {}
";

    #[test]
    fn a_candidate_shadows_the_apps_it_lists_and_only_apps_of_the_spec() {
        let policy = parse_policy("acme.yaml", FILE).expect("parses");
        let set = PolicySet::from_policies(vec![policy]).expect("valid");
        let web = set
            .candidate(&WorkloadKey::new("acme", "web"))
            .expect("web has a candidate");
        assert_eq!(
            web.signals.qps.as_ref().map(|q| q.target_per_replica),
            Some(50.0)
        );
        assert!(set.candidate(&WorkloadKey::new("acme", "api")).is_none());
        let live = set.lookup("acme", "web", "acme").expect("live web");
        assert_eq!(
            live.signals.qps.as_ref().map(|q| q.target_per_replica),
            Some(100.0)
        );

        let stray = format!("{FILE}    shop: {{}}\n");
        let errors = parse_policy("acme.yaml", &stray).expect_err("refused");
        assert!(
            errors
                .to_string()
                .contains("`shop` is not an app of spec.apps"),
            "{errors}"
        );
        let namespaced = FILE.replace("candidate:\n", "candidate:\n  namespaces: [other]\n");
        let errors = parse_policy("acme.yaml", &namespaced).expect_err("refused");
        assert!(errors.to_string().contains("candidate"), "{errors}");
        let bad = FILE.replace("targetPerReplica: 50", "targetPerReplica: lots");
        let errors = parse_policy("acme.yaml", &bad).expect_err("a bad candidate refuses the file");
        assert!(errors.to_string().contains("candidate."), "{errors}");
    }
}
