//! The fake API server speaks the protocol the real `kube` client expects: lists carry a
//! resourceVersion watches resume from, patches of each type apply (JSON patch whole or
//! not at all), `scale` reads and writes the Deployment, evictions honour
//! PodDisruptionBudgets, and replace is a compare-and-swap.

use std::time::Duration;

use crate::cluster_support::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, EvictParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use spillway_tests::fake_kube::{FakeKube, fixtures};

async fn fake() -> (FakeKube, kube::Client) {
    let fake = FakeKube::start().await.expect("fake starts");
    let client = client(&fake).await;
    (fake, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_watch_from_its_resource_version() {
    let (fake, client) = fake().await;
    fake.put(fixtures::bound_pod("a", "p1", "n1", "1"));
    let pods: Api<Pod> = Api::namespaced(client, "a");
    let list = pods.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1);
    let rv = list
        .metadata
        .resource_version
        .expect("list resourceVersion");

    // Changes after the list, including one in another namespace the watch must skip.
    fake.put(fixtures::bound_pod("b", "other", "n1", "1"));
    fake.put(fixtures::bound_pod("a", "p2", "n1", "1"));
    let stream = pods
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch");
    let mut stream = std::pin::pin!(stream);
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("an event within 5s")
        .expect("event decodes");
    match first {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("p2")),
        other => panic!("expected ADDED p2, got {other:?}"),
    }
    // Live events after the replay.
    fake.delete(&pods_c(), Some("a"), "p1");
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5s");
    assert!(matches!(next, Some(Ok(WatchEvent::Deleted(_)))), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_types_and_scale() {
    let (fake, client) = fake().await;
    fake.put(fixtures::deployment("a", "web", 2, "1"));
    let api: Api<Deployment> = Api::namespaced(client, "a");

    let merged = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        merged
            .metadata
            .labels
            .and_then(|l| l.get("x").cloned())
            .as_deref(),
        Some("1")
    );

    let strategic = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"y": "2"}}})),
        )
        .await
        .expect("strategic merge patch");
    assert_eq!(strategic.metadata.labels.map(|l| l.len()), Some(2));

    // A JSON patch whose test fails changes nothing, even ops before the failing one.
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/replicas", "value": 9},
        {"op": "test", "path": "/metadata/resourceVersion", "value": "stale"},
    ]))
    .expect("patch");
    let e = api
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .expect_err("test op fails");
    assert!(
        matches!(e, kube::Error::Api(ref s) if s.code == 422),
        "{e:?}"
    );
    let scale = api.get_scale("web").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("app=web")
    );

    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .expect("patch scale");
    let d = api.get("web").await.expect("get");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(5));

    let missing = api.get("nope").await.expect_err("404");
    assert!(matches!(missing, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_honours_the_disruption_budget() {
    let (fake, client) = fake().await;
    for name in ["w1", "w2", "w3"] {
        let mut p = fixtures::bound_pod("a", name, "n1", "1");
        p["metadata"]["labels"] = json!({"app": "web"});
        fake.put(p);
    }
    fake.put(fixtures::pdb("a", "web", "web", 2));
    let pods: Api<Pod> = Api::namespaced(client, "a");
    pods.evict("w1", &EvictParams::default())
        .await
        .expect("3 ready, 2 must stay: allowed");
    let e = pods
        .evict("w2", &EvictParams::default())
        .await
        .expect_err("2 ready, 2 must stay: refused");
    assert!(
        matches!(e, kube::Error::Api(ref s) if s.code == 429),
        "{e:?}"
    );
    assert!(
        fake.get(&pods_c(), Some("a"), "w2").is_some(),
        "the refused pod stays"
    );
    assert!(fake.get(&pods_c(), Some("a"), "w1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_is_a_compare_and_swap() {
    let (_fake, client) = fake().await;
    let leases: Api<Lease> = Api::namespaced(client, "spillway");
    let mut l = Lease::default();
    l.metadata.name = Some("x".into());
    let created = leases
        .create(&PostParams::default(), &l)
        .await
        .expect("create");
    let again = leases
        .create(&PostParams::default(), &l)
        .await
        .expect_err("exists");
    assert!(matches!(again, kube::Error::Api(ref s) if s.code == 409));
    leases
        .replace("x", &PostParams::default(), &created)
        .await
        .expect("fresh version");
    let stale = leases
        .replace("x", &PostParams::default(), &created)
        .await
        .expect_err("stale version");
    assert!(matches!(stale, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_cache_rewatches_after_the_server_closes_its_watches() {
    let (fake, client) = fake().await;
    fake.put(fixtures::regular_node("ecs-1", "2"));
    let cache = spillway_scaler::cluster::ClusterCache::start(client);
    assert!(cache.ready(Duration::from_secs(10)).await);
    let watches = fake.watch_count();
    fake.close_watches();
    // Written after the close: only a re-watch from the last resourceVersion sees it.
    fake.put(fixtures::bound_pod("a", "late", "ecs-1", "1"));
    spillway_tests::wait::until(
        "the cache sees a pod created after its watch was closed",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || {
            let seen = cache
                .pods()
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some("late"));
            async move { seen.then_some(()) }
        },
    )
    .await;
    assert!(fake.watch_count() > watches, "the client watched again");
    let relists = fake
        .requests()
        .iter()
        .filter(|r| r.verb == "list" && r.resource == "pods")
        .count();
    assert_eq!(
        relists, 1,
        "resumed from its resourceVersion without a new list"
    );
}
