//! CPU and memory from `metrics.k8s.io`, read through the fake API server, reach a
//! tenant only through a policy's `spec.namespaces`: a namespace no policy lists feeds
//! nobody (counted), whatever it is called.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cluster_support::*;
use serde_json::json;
use spillway_collector::ingest::Ingest;
use spillway_collector::signal::{Signal, SignalView, WorkloadKey};
use spillway_collector::store::StoreLimits;
use spillway_scaler::cluster::{WorkloadLabels, ingest_pod_metrics};
use spillway_scaler::policy::{PolicySet, parse_policy};
use spillway_tests::fake_kube::{FakeKube, fixtures};

fn policy(tenant: &str, namespaces: &str) -> String {
    format!(
        "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: {tenant} }}\nspec:\n  namespaces: [{namespaces}]\n  defaults:\n    signals: {{ cpu: {{ targetUtilization: 0.6 }} }}\n  apps:\n    web: {{}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_metrics_map_to_the_tenant_whose_policy_lists_the_namespace() {
    let fake = FakeKube::start().await.expect("fake API server starts");
    let app = json!({"app": "web"});
    // acme runs in acme-prod; globex in shop-eu (a namespace not named after it).
    fake.put(fixtures::pod_metrics(
        "acme-prod",
        "web-1",
        app.clone(),
        "500m",
        "100Mi",
    ));
    fake.put(fixtures::pod_metrics(
        "acme-prod",
        "web-2",
        app.clone(),
        "250m",
        "100Mi",
    ));
    fake.put(fixtures::pod_metrics(
        "shop-eu",
        "web-1",
        app.clone(),
        "2",
        "1Gi",
    ));
    // Namespaces anyone could create, named after tenants: neither policy lists them.
    fake.put(fixtures::pod_metrics(
        "acme",
        "web-1",
        app.clone(),
        "64",
        "64Gi",
    ));
    fake.put(fixtures::pod_metrics(
        "globex",
        "web-1",
        app.clone(),
        "64",
        "64Gi",
    ));

    let set = PolicySet::from_policies(vec![
        parse_policy("acme.yaml", &policy("acme", "acme-prod")).expect("valid"),
        parse_policy("globex.yaml", &policy("globex", "shop-eu")).expect("valid"),
    ])
    .expect("two tenants");
    let ingest = Ingest::new(StoreLimits::default());
    let source: Arc<str> = "kubernetes-metrics".into();
    let read = ingest_pod_metrics(
        &client(&fake).await,
        None,
        &WorkloadLabels::default(),
        &set,
        &ingest,
        &source,
        T0_MS,
    )
    .await
    .expect("pod metrics read");
    assert_eq!((read.workloads, read.skipped, read.unlisted), (2, 0, 2));
    assert_eq!(ingest.stats.values_unmapped.load(Ordering::Relaxed), 2);

    let second = T0_MS / 1000;
    let acme = WorkloadKey::new("acme", "web");
    let globex = WorkloadKey::new("globex", "web");
    let cpu = |key: &WorkloadKey| ingest.store().view(key).max(Signal::CpuCores, second, 1);
    assert_eq!(cpu(&acme), Some(0.75));
    assert_eq!(cpu(&globex), Some(2.0));
    assert_eq!(
        ingest
            .store()
            .view(&globex)
            .max(Signal::MemoryBytes, second, 1),
        Some(f64::from(1u32 << 30))
    );
    // No workload was made up from a namespace's name.
    assert_eq!(ingest.store().window_count(), 4);
}
