//! The serve process's bookkeeping of candidate policies' grades: which workloads each
//! tenant's candidate is promoted for (a change is audited), the guards' readings per
//! promoted workload, and the rollbacks they trip. The grade, guard and meter rules are
//! pure, in [`spillway_core::policy::grade`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use spillway_collector::WorkloadKey;
use spillway_core::policy::AppPolicy;
use spillway_core::policy::grade::{Meter, Rollout, fingerprint};

use crate::audit::{AuditEntry, AuditKind, AuditLog};

/// A rollback to the live spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub at_ms: i64,
    pub reason: String,
    /// The candidate content it applies to; an edit clears it.
    #[serde(skip)]
    fingerprint: u64,
}

/// Promotions and rollbacks, per workload.
#[derive(Debug, Default)]
pub struct GradeBook {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The promoted workloads as of the last policy set seen, per tenant.
    promoted: BTreeMap<String, BTreeSet<String>>,
    meters: HashMap<WorkloadKey, Meter>,
    rollbacks: HashMap<WorkloadKey, Rollback>,
}

impl GradeBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records which workloads each tenant's candidate is promoted for, when that
    /// changed since the last call (a reload of an edited file).
    pub fn observe_set(
        &self,
        set: &spillway_core::policy::PolicySet,
        audit: &AuditLog,
        now_ms: i64,
    ) {
        let mut now_promoted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut grades: BTreeMap<String, String> = BTreeMap::new();
        for tenant in set.tenants() {
            let Some(candidate) = &tenant.candidate else {
                continue;
            };
            let apps: BTreeSet<String> = candidate
                .apps
                .keys()
                .filter(|app| {
                    candidate
                        .rollout
                        .grade
                        .includes(&WorkloadKey::new(tenant.tenant.as_str(), app.as_str()))
                })
                .cloned()
                .collect();
            grades.insert(tenant.tenant.clone(), candidate.rollout.grade.describe());
            now_promoted.insert(tenant.tenant.clone(), apps);
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let tenants: BTreeSet<String> = inner
            .promoted
            .keys()
            .chain(now_promoted.keys())
            .cloned()
            .collect();
        for tenant in tenants {
            let before = inner.promoted.get(&tenant).cloned().unwrap_or_default();
            let after = now_promoted.get(&tenant).cloned().unwrap_or_default();
            if before == after {
                continue;
            }
            let list = |apps: &BTreeSet<String>| {
                if apps.is_empty() {
                    "none".to_owned()
                } else {
                    apps.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            };
            audit.record(AuditEntry {
                at_ms: now_ms,
                kind: AuditKind::GradeChanged,
                tenant: Some(tenant.clone()),
                subject: tenant.clone(),
                by: "reload".to_owned(),
                detail: format!(
                    "candidate promoted for {} (was {}; grade: {})",
                    list(&after),
                    list(&before),
                    grades.get(&tenant).map_or("no candidate", String::as_str)
                ),
            });
        }
        inner.promoted = now_promoted;
    }

    /// Whether `key` is decided by its candidate: promoted by the grade and not rolled
    /// back for this candidate's content.
    pub fn acting(&self, key: &WorkloadKey, candidate: &AppPolicy, rollout: &Rollout) -> bool {
        if !rollout.grade.includes(key) {
            return false;
        }
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .rollbacks
            .get(key)
            .is_none_or(|r| r.fingerprint != fingerprint(candidate, rollout))
    }

    /// The rollback in force for `key`'s current candidate, if any.
    pub fn rollback(
        &self,
        key: &WorkloadKey,
        candidate: &AppPolicy,
        rollout: &Rollout,
    ) -> Option<Rollback> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .rollbacks
            .get(key)
            .filter(|r| r.fingerprint == fingerprint(candidate, rollout))
            .cloned()
    }

    /// Feeds one decision of a promoted workload to its guards; a guard past its bound
    /// rolls it back (recorded and logged) and the next decision is the live spec's.
    #[allow(clippy::too_many_arguments)]
    pub fn guard(
        &self,
        key: &WorkloadKey,
        candidate: &AppPolicy,
        rollout: &Rollout,
        load_replicas: Option<f64>,
        ready: u32,
        desired: u32,
        audit: &AuditLog,
        now_ms: i64,
    ) -> Option<Rollback> {
        let guards = &rollout.guards;
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (under, reversals) = inner.meters.entry(key.clone()).or_default().observe(
            now_ms,
            load_replicas,
            ready,
            desired,
            guards.per_secs,
        );
        let per = crate::policy::format_secs(guards.per_secs);
        let reason = match (guards.under_replica_seconds, guards.reversals) {
            (Some(bound), _) if under > bound => format!(
                "guard underProvisionedReplicaSeconds: {under:.0} replica·s under-provisioned in the last {per}, above {bound}"
            ),
            (_, Some(bound)) if reversals > bound => format!(
                "guard reversals: {reversals} direction reversals in the last {per}, above {bound}"
            ),
            _ => return None,
        };
        inner.meters.remove(key);
        let rollback = Rollback {
            at_ms: now_ms,
            reason: reason.clone(),
            fingerprint: fingerprint(candidate, rollout),
        };
        inner.rollbacks.insert(key.clone(), rollback.clone());
        drop(inner);
        tracing::warn!(workload = %key, %reason, "candidate policy rolled back to the live spec");
        audit.record(AuditEntry {
            at_ms: now_ms,
            kind: AuditKind::GradeChanged,
            tenant: Some(key.tenant.to_string()),
            subject: key.to_string(),
            by: "guard".to_owned(),
            detail: format!("rolled back to the live spec: {reason}; it stays live until the candidate is edited"),
        });
        Some(rollback)
    }

    /// Forgets the meter of a workload not acted on by a candidate.
    pub fn idle(&self, key: &WorkloadKey) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .meters
            .remove(key);
    }
}

#[cfg(test)]
mod loop_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use spillway_collector::Signal;
    use spillway_collector::ingest::Ingest;
    use spillway_collector::store::StoreLimits;

    use super::*;
    use crate::policy::{PolicySet, PolicyStore, parse_policy};
    use crate::serve::decision_loop::DecisionLoop;
    use crate::serve::workloads::Workloads;
    use crate::telemetry::Metrics;

    const FILE: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: acme }
spec:
  namespaces: [acme]
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 2s, qps: { targetPerReplica: 100 } }
    hysteresis: { upWindow: 0s, downWindow: 1s }
    panic: { enabled: false }
    limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }
  apps: { web: {}, api: {} }
candidate:
  grade: { apps: [web] }
  guards: { underProvisionedReplicaSeconds: 30, per: 10m }
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 2s, qps: { targetPerReplica: 300 } }
    hysteresis: { upWindow: 0s, downWindow: 1s }
    panic: { enabled: false }
    limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }
  apps: { web: {}, api: {} }
";

    #[test]
    fn a_promoted_candidate_is_served_until_a_guard_rolls_it_back_and_says_why() {
        let set = PolicySet::from_policies(vec![parse_policy("acme.yaml", FILE).expect("parses")])
            .expect("valid");
        let decisions = DecisionLoop {
            policies: Arc::new(PolicyStore::from_set(set)),
            ingest: Ingest::new(StoreLimits::default()),
            workloads: Arc::new(Workloads::new()),
            metrics: Arc::new(Metrics::new()),
            observer: None,
            tick: Duration::from_secs(1),
            replicas: None,
        };
        let t0: i64 = 1_800_000_000_000;
        let source: Arc<str> = Arc::from("gateway");
        let feed = |s: i64| {
            for app in ["web", "api"] {
                decisions.ingest.apply(
                    &source,
                    Signal::Qps,
                    vec![(WorkloadKey::new("acme", app), 900.0)],
                    t0 + s * 1000,
                );
            }
        };
        for s in 0..3 {
            feed(s);
        }
        decisions.prime_at(t0 + 2_000);
        let latest = |app: &str| {
            decisions
                .workloads
                .get(&WorkloadKey::new("acme", app))
                .and_then(|e| e.latest())
                .expect("decided")
        };
        // web is promoted: the candidate's 300 per replica is served (3); api only
        // shadows it and serves the live 9.
        let web = latest("web");
        let shadow = web.shadow.clone().expect("shadowed");
        assert_eq!((web.desired, shadow.acting.as_str()), (3, "candidate"));
        assert_eq!((shadow.live_desired, shadow.candidate_desired), (9, 3));
        assert!(web.reason.starts_with("candidate policy"), "{}", web.reason);
        let api = latest("api");
        assert_eq!(
            (api.desired, api.shadow.as_ref().map(|s| s.acting.as_str())),
            (9, Some("live"))
        );
        // 6 replicas short of the live spec's demand every second: past 30 replica·s
        // the guard rolls web back.
        let mut rolled_back_at = None;
        for s in 3..20 {
            feed(s);
            let entry = decisions
                .workloads
                .get(&WorkloadKey::new("acme", "web"))
                .expect("web");
            let policy = decisions
                .policies
                .current()
                .workloads()
                .find(|(k, _)| *k == entry.key)
                .map(|(_, p)| p)
                .expect("live web");
            decisions.decide(&entry, &policy, t0 + s * 1000);
            if rolled_back_at.is_none()
                && latest("web")
                    .shadow
                    .as_ref()
                    .is_some_and(|s| s.rolled_back.is_some())
            {
                rolled_back_at = Some(s);
            }
        }
        let at = rolled_back_at.expect("the guard tripped");
        assert!(
            (6..=10).contains(&at),
            "about 30 replica·s at 6 a second: {at}"
        );
        let web = latest("web");
        let shadow = web.shadow.clone().expect("shadowed");
        assert_eq!(
            (web.desired, shadow.acting.as_str()),
            (9, "live"),
            "back on the live spec"
        );
        let why = shadow.rolled_back.expect("says why");
        assert!(why.contains("underProvisionedReplicaSeconds"), "{why}");
        let trail: Vec<(AuditKind, String)> = decisions
            .workloads
            .audit()
            .list()
            .into_iter()
            .map(|e| (e.kind, e.by))
            .collect();
        assert_eq!(
            trail,
            [
                (AuditKind::GradeChanged, "reload".to_owned()),
                (AuditKind::GradeChanged, "guard".to_owned())
            ]
        );
    }

    #[test]
    fn grades_name_only_candidate_apps_and_percentages_up_to_100() {
        for (grade, error) in [
            (
                "{ apps: [shop] }",
                "`shop` is not an app of the candidate's apps",
            ),
            ("{ percent: 150 }", "expected 0 to 100"),
            ("sometimes", "expected `all`"),
        ] {
            let text = FILE.replace("{ apps: [web] }", grade);
            let errors = parse_policy("acme.yaml", &text).expect_err("refused");
            assert!(errors.to_string().contains(error), "{grade}: {errors}");
        }
        for grade in ["all", "{ percent: 50 }"] {
            parse_policy("acme.yaml", &FILE.replace("{ apps: [web] }", grade)).expect(grade);
        }
    }

    const SHADOW_FILE: &str = "apiVersion: spillway.io/v1
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
    fn both_decide_every_tick_and_only_the_live_one_is_served() {
        use std::time::Duration;

        use spillway_collector::Signal;
        use spillway_collector::ingest::Ingest;
        use spillway_collector::store::StoreLimits;

        use crate::policy::{PolicySet, PolicyStore, parse_policy};
        use crate::serve::decision_loop::DecisionLoop;
        use crate::serve::workloads::Workloads;
        use crate::telemetry::Metrics;

        let set = PolicySet::from_policies(vec![
            parse_policy("acme.yaml", SHADOW_FILE).expect("parses"),
        ])
        .expect("valid");
        let policies = Arc::new(PolicyStore::from_set(set));
        let workloads = Arc::new(Workloads::new());
        let mut exported = Metrics::new();
        exported.register_collector(Box::new(crate::alerting::AlertingSeries {
            workloads: workloads.clone(),
        }));
        let decisions = DecisionLoop {
            policies: policies.clone(),
            ingest: Ingest::new(StoreLimits::default()),
            workloads,
            metrics: Arc::new(Metrics::new()),
            observer: None,
            tick: Duration::from_secs(1),
            replicas: None,
        };
        let t0: i64 = 1_800_000_000_000;
        let source: Arc<str> = Arc::from("gateway");
        for app in ["web", "api"] {
            let key = WorkloadKey::new("acme", app);
            for s in 0..3 {
                decisions.ingest.apply(
                    &source,
                    Signal::Qps,
                    vec![(key.clone(), 600.0)],
                    t0 + s * 1000,
                );
            }
        }
        decisions.prime_at(t0 + 2_000);
        let web = decisions
            .workloads
            .get(&WorkloadKey::new("acme", "web"))
            .and_then(|e| e.latest())
            .expect("web decided");
        assert_eq!(
            (web.desired, web.served),
            (6, 6),
            "600/s at the live 100 per replica"
        );
        let shadow = web.shadow.as_ref().expect("web is shadowed");
        assert_eq!(
            (
                shadow.live_desired,
                shadow.candidate_desired,
                shadow.difference
            ),
            (6, 12, 6)
        );
        assert!(shadow.differs());
        let api = decisions
            .workloads
            .get(&WorkloadKey::new("acme", "api"))
            .and_then(|e| e.latest())
            .expect("api decided");
        assert!(api.shadow.is_none(), "the candidate does not list api");
        let text = exported.encode_text();
        for needle in [
            "spillway_workload_shadow_desired_replicas{tenant=\"acme\",app=\"web\"} 12",
            "spillway_workload_shadow_difference_replicas{tenant=\"acme\",app=\"web\"} 6",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(!text.contains("shadow_desired_replicas{tenant=\"acme\",app=\"api\"}"));
    }
}
