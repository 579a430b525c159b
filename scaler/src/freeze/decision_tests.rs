//! A freeze through the decision loop: what is published, served to KEDA (through the
//! HPA's tolerance), conditioned and exported.

use std::sync::Arc;
use std::time::Duration;

use spillway_collector::ingest::Ingest;
use spillway_collector::store::StoreLimits;
use spillway_collector::{Signal, WorkloadKey};

use super::*;
use crate::conditions::{ConditionStatus, ConditionType};
use crate::engine::ReplicaCounts;
use crate::hpa::{HpaSource, HpaTolerance, HpaView, ScaleCounts};
use crate::policy::{PolicySet, PolicyStore, parse_policy};
use crate::serve::decision_loop::DecisionLoop;
use crate::serve::workloads::Workloads;
use crate::telemetry::Metrics;

const T0: i64 = 1_800_000_000_000;

const POLICY: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: acme }
spec:
  namespaces: [acme]
  defaults:
    replicas: { min: 1, max: 200 }
    signals: { window: 2s, qps: { targetPerReplica: 100 } }
    hysteresis: { upWindow: 0s, downWindow: 1s }
    panic: { enabled: false }
    limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }
  apps:
    web: {}
";

fn setup() -> (
    DecisionLoop,
    Arc<crate::policy::AppPolicy>,
    WorkloadKey,
    Metrics,
) {
    let set = PolicySet::from_policies(vec![parse_policy("acme.yaml", POLICY).expect("parses")])
        .expect("valid");
    let policies = Arc::new(PolicyStore::from_set(set));
    let key = WorkloadKey::new("acme", "web");
    let policy = policies
        .current()
        .workloads()
        .find(|(k, _)| *k == key)
        .map(|(_, p)| p)
        .expect("web");
    let workloads = Arc::new(Workloads::new());
    let mut exported = Metrics::new();
    exported.register_collector(Box::new(crate::alerting::AlertingSeries {
        workloads: workloads.clone(),
    }));
    let decisions = DecisionLoop {
        policies,
        ingest: Ingest::new(StoreLimits::default()),
        workloads,
        metrics: Arc::new(Metrics::new()),
        observer: None,
        tick: Duration::from_secs(1),
        replicas: None,
    };
    (decisions, policy, key, exported)
}

fn feed(decisions: &DecisionLoop, key: &WorkloadKey, qps: f64, from_s: i64, to_s: i64) {
    let source: Arc<str> = Arc::from("gateway");
    for s in from_s..to_s {
        decisions.ingest.apply(
            &source,
            Signal::Qps,
            vec![(key.clone(), qps)],
            T0 + s * 1000,
        );
    }
}

fn freeze(scope: &str, floor: Option<u32>, duration: &str) -> Freeze {
    FreezeRequest {
        scope: scope.parse().expect("scope"),
        reason: "INC-4711".into(),
        duration: duration.into(),
        floor,
    }
    .into_freeze("sre", T0)
    .expect("valid")
}

fn condition(entry: &crate::serve::workloads::WorkloadEntry) -> crate::conditions::Condition {
    entry
        .conditions()
        .into_iter()
        .find(|c| c.kind == ConditionType::Frozen)
        .expect("a Frozen condition")
}

#[test]
fn a_frozen_workload_is_served_what_runs_whatever_the_load_asks_until_the_freeze_expires() {
    let (decisions, policy, key, exported) = setup();
    let entry = decisions.workloads.get_or_insert(&key);
    let runs = ReplicaCounts {
        current: 10,
        ready: 10,
    };
    entry.set_observed_scale(runs, ScaleCounts::settled(10));
    let audit = decisions.workloads.audit();
    decisions
        .workloads
        .freezes()
        .set(freeze("acme", None, "1m"), audit);
    // 3000/s asks for 30; frozen at the 10 that run.
    feed(&decisions, &key, 3_000.0, 0, 10);
    decisions.decide(&entry, &policy, T0 + 9_000);
    let d = entry.latest().expect("decided");
    assert_eq!(
        (d.desired, d.served, d.rule, d.active),
        (10, 10, RULE, true)
    );
    assert_eq!(
        entry.serve(&d).replicas,
        10,
        "GetMetrics serves the held count"
    );
    let view = d.freeze.as_ref().expect("the freeze is published");
    assert!(view.holding);
    assert_eq!(view.engine_desired, 30, "the engine's own decision is kept");
    assert!(
        d.reason.contains("INC-4711") && d.reason.contains("without the freeze: 30"),
        "{}",
        d.reason
    );
    let c = condition(&entry);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::True, "FrozenByApi")
    );
    let text = exported.encode_text();
    for needle in [
        "spillway_workload_frozen{tenant=\"acme\",app=\"web\",source=\"api\"} 1",
        "spillway_workload_freeze_held_replicas{tenant=\"acme\",app=\"web\"} 10",
        "spillway_workload_freeze_engine_replicas{tenant=\"acme\",app=\"web\"} 30",
        "spillway_audit_entries_total{kind=\"freeze_set\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }

    // Expired: the engine's 30 is served again, and the freeze says it no longer holds.
    let expiry = T0 + 60_000;
    feed(&decisions, &key, 3_000.0, 10, 61);
    decisions.workloads.freezes().sweep(audit, expiry);
    decisions.decide(&entry, &policy, expiry);
    let d = entry.latest().expect("decided");
    assert_eq!((d.desired, d.served), (30, 30));
    assert_ne!(d.rule, RULE);
    assert!(d.freeze.as_ref().is_some_and(|f| !f.holding));
    let c = condition(&entry);
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "FreezeExpired")
    );
    let text = exported.encode_text();
    assert!(
        text.contains(
            "spillway_workload_freeze_expired{tenant=\"acme\",app=\"web\",source=\"api\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains("spillway_workload_frozen{"), "{text}");
    let kinds: Vec<_> = audit.list().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            crate::audit::AuditKind::FreezeSet,
            crate::audit::AuditKind::FreezeExpired
        ]
    );
}

#[test]
fn a_floor_within_the_hpas_tolerance_is_served_as_a_count_the_hpa_applies() {
    let (decisions, policy, key, _) = setup();
    let entry = decisions.workloads.get_or_insert(&key);
    entry.set_observed_scale(
        ReplicaCounts {
            current: 100,
            ready: 100,
        },
        ScaleCounts::settled(100),
    );
    entry.set_hpa_view(Some(HpaView {
        tolerance: HpaTolerance::uniform(0.1),
        source: HpaSource::Cluster,
    }));
    // Idle traffic and a floor of 105: 105 is within 10 % of 100 and the HPA would keep
    // 100; the first count it applies is 111.
    decisions.workloads.freezes().set(
        freeze("acme/web", Some(105), "1h"),
        decisions.workloads.audit(),
    );
    feed(&decisions, &key, 100.0, 0, 10);
    decisions.decide(&entry, &policy, T0 + 9_000);
    let d = entry.latest().expect("decided");
    assert_eq!(d.desired, 105);
    let served = entry.serve(&d);
    assert_eq!((served.replicas, served.expected), (111, 111));
    assert_eq!(
        crate::hpa::hpa_proposal(served.replicas, 100, HpaTolerance::uniform(0.1)),
        111
    );
    // Held where it is (no floor), the count that runs is what the HPA keeps.
    decisions
        .workloads
        .freezes()
        .set(freeze("acme/web", None, "1h"), decisions.workloads.audit());
    decisions.decide(&entry, &policy, T0 + 9_500);
    let d = entry.latest().expect("decided");
    let served = entry.serve(&d);
    assert_eq!(
        (d.desired, served.replicas, served.expected),
        (100, 100, 100)
    );
}

#[test]
fn an_annotation_freezes_one_workload_and_its_removal_lifts_it() {
    let (decisions, policy, key, _) = setup();
    let entry = decisions.workloads.get_or_insert(&key);
    entry.set_observed(ReplicaCounts {
        current: 4,
        ready: 4,
    });
    let annotations = [(annotation::FREEZE.to_owned(), "db failover".to_owned())]
        .into_iter()
        .collect();
    let book = decisions.workloads.freezes();
    let audit = decisions.workloads.audit();
    book.observe_annotation(&key, annotation::parse(&key, &annotations, T0), audit, T0);
    feed(&decisions, &key, 100.0, 0, 10);
    decisions.decide(&entry, &policy, T0 + 9_000);
    let d = entry.latest().expect("decided");
    assert_eq!((d.desired, d.rule), (4, RULE), "1 asked for, 4 held");
    assert_eq!(condition(&entry).reason, "FrozenByAnnotation");
    book.observe_annotation(&key, None, audit, T0 + 9_500);
    decisions.decide(&entry, &policy, T0 + 9_600);
    let d = entry.latest().expect("decided");
    assert!(d.freeze.is_none() && d.rule != RULE);
    assert_eq!(condition(&entry).reason, "NotFrozen");
    assert_eq!(audit.list().len(), 2);
}
