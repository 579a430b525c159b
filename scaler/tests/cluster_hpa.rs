//! The HPA KEDA created, read through the real kube client from the fake API server:
//! found by the name KEDA gives it, judged against the workload's policy, kept per
//! workload for the served number, and reported as the workload's `HpaPassThrough`
//! condition, including when it is missing or cannot be read.

use std::time::Duration;

use crate::cluster_support::*;
use serde_json::json;
use spillway_collector::signal::WorkloadKey;
use spillway_scaler::cluster::hpa::{
    FindingReason, HpaRead, HpaReads, HpaViews, PolicyBounds, judge, read_hpa,
};
use spillway_scaler::conditions::{ConditionStatus, ConditionType};
use spillway_scaler::config::kubernetes::WorkloadBinding;
use spillway_scaler::policy::AppPolicy;
use spillway_scaler::serve::workloads::Workloads;
use spillway_tests::fake_kube::{FakeKube, fixtures};

/// `replicas: {min: 1, max: 100}` and the policy's default limits.
fn policy() -> std::sync::Arc<AppPolicy> {
    let text = spillway_tests::policy::acme_policy(
        "replicas: { min: 1, max: 100 }\nsignals:\n  qps: { targetPerReplica: 100 }",
        &["web"],
    );
    let tenant = spillway_scaler::policy::parse_policy("acme.yaml", &text).expect("policy");
    tenant.apps["web"].clone()
}

fn binding() -> WorkloadBinding {
    WorkloadBinding {
        tenant: "acme".into(),
        app: "web".into(),
        namespace: NS.into(),
        scaled_object: "web".into(),
    }
}

async fn fake() -> (FakeKube, kube::Client) {
    let fake = FakeKube::start().await.expect("fake starts");
    fake.put(fixtures::scaled_object(NS, "web", "web"));
    let client = client(&fake).await;
    (fake, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpa_keda_named_is_read_and_judged() {
    let (fake, client) = fake().await;
    let bounds = PolicyBounds::from(&*policy());

    // Not created yet.
    match read_hpa(&client, NS, "web").await.expect("read") {
        HpaRead::Missing { name } => assert_eq!(name, "keda-hpa-web"),
        HpaRead::Found(_) => panic!("no HPA exists yet"),
    }

    // KEDA's default name, the pass-through behavior with tolerance 0.
    fake.put(fixtures::keda_hpa(
        NS,
        "web",
        "web",
        Some(fixtures::passthrough_behavior(Some("0"))),
    ));
    let HpaRead::Found(hpa) = read_hpa(&client, NS, "web").await.expect("read") else {
        panic!("keda-hpa-web exists");
    };
    let view = judge(&hpa, &bounds);
    assert!(view.passes_through(), "{:#?}", view.findings);
    assert_eq!((view.tolerance.up, view.tolerance.down), (0.0, 0.0));
    assert!(view.tolerance.up_from_hpa && view.tolerance.down_from_hpa);

    // A ScaledObject that names its HPA, and KEDA's status recording it: that one is read.
    let mut so = fixtures::scaled_object(NS, "web", "web");
    so["spec"]["advanced"] = json!({"horizontalPodAutoscalerConfig": {"name": "web-hpa"}});
    so["status"] = json!({"hpaName": "web-hpa"});
    fake.put(so);
    let mut named = fixtures::keda_hpa(NS, "web", "web", None);
    named["metadata"]["name"] = json!("web-hpa");
    fake.put(named);
    let HpaRead::Found(hpa) = read_hpa(&client, NS, "web").await.expect("read") else {
        panic!("web-hpa exists");
    };
    assert_eq!(hpa.metadata.name.as_deref(), Some("web-hpa"));
    let view = judge(&hpa, &bounds);
    // No behavior: the controller's 300 s scale-down window, and the cluster tolerance.
    assert_eq!(
        view.findings.iter().map(|f| f.reason).collect::<Vec<_>>(),
        vec![FindingReason::ScaleDownStabilization]
    );
    assert!(!view.tolerance.up_from_hpa);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_the_view_and_raises_the_condition() {
    let (fake, client) = fake().await;
    let policy = policy();
    let key = WorkloadKey::new("acme", "web");
    let workloads = Workloads::new();
    let entry = workloads.get_or_insert(&key);
    let views = HpaViews::new();
    let mut reads = HpaReads::new(Duration::from_secs(30));
    let condition = || {
        entry
            .conditions()
            .into_iter()
            .find(|c| c.kind == ConditionType::HpaPassThrough)
            .expect("the HpaPassThrough condition")
    };
    let mut now_ms = T0_MS;

    // Missing: Unknown, and no view (the policy's hpaTolerance stands).
    reads
        .refresh(&client, &binding(), &key, &policy, &entry, &views, now_ms)
        .await;
    assert_eq!(condition().status, ConditionStatus::Unknown);
    assert_eq!(condition().reason, "HpaNotFound");
    assert!(views.tolerance(&key).is_none());

    // Created with a 60 s scale-down window and a Value target: not a pass-through. Not
    // read again before hpaRefresh has passed.
    let mut hpa = fixtures::keda_hpa(
        NS,
        "web",
        "web",
        Some(fixtures::passthrough_behavior(Some("50m"))),
    );
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = json!(60);
    hpa["spec"]["metrics"][0]["external"]["target"] = json!({"type": "Value", "value": "1"});
    fake.put(hpa);
    let requests = fake.request_count();
    now_ms += 10_000;
    reads
        .refresh(&client, &binding(), &key, &policy, &entry, &views, now_ms)
        .await;
    assert_eq!(
        fake.request_count(),
        requests,
        "read again before hpaRefresh"
    );
    now_ms += 20_000;
    reads
        .refresh(&client, &binding(), &key, &policy, &entry, &views, now_ms)
        .await;
    let c = condition();
    assert_eq!(c.status, ConditionStatus::False);
    // The first finding names the condition; the message carries them all.
    assert_eq!(c.reason, "ValueTarget");
    assert!(
        c.message.contains("60s") && c.message.contains("metricType: AverageValue"),
        "{}",
        c.message
    );
    let tolerance = views.tolerance(&key).expect("a view");
    assert_eq!((tolerance.up, tolerance.down), (0.05, 0.05));
    assert_eq!(fake.request_count(), requests + 2, "2 GETs per read");

    // Forbidden (an RBAC rule removed): the last view stays, the condition says why.
    fake.fail("get", "horizontalpodautoscalers", 0, 1, 403);
    now_ms += 30_000;
    reads
        .refresh(&client, &binding(), &key, &policy, &entry, &views, now_ms)
        .await;
    let c = condition();
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::Unknown, "HpaNotRead")
    );
    assert!(
        c.message.contains("horizontalpodautoscaler"),
        "{}",
        c.message
    );
    assert_eq!(views.tolerance(&key), Some(tolerance));

    // Fixed to the pass-through: True.
    fake.put(fixtures::keda_hpa(
        NS,
        "web",
        "web",
        Some(fixtures::passthrough_behavior(Some("0"))),
    ));
    now_ms += 30_000;
    reads
        .refresh(&client, &binding(), &key, &policy, &entry, &views, now_ms)
        .await;
    let c = condition();
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::True, "PassThrough")
    );
    assert!(views.get(&key).expect("view").passes_through());
    assert_eq!(
        views.tolerance(&key).map(|t| (t.up, t.down)),
        Some((0.0, 0.0))
    );
}
