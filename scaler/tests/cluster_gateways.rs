//! Gateway pods followed through the real `kube` client against the fake API server:
//! the first list is published at once, a pod that becomes Ready is added within a
//! refresh, a deleted one is dropped, and a failed LIST keeps the last list. Only the
//! lists are checked; nothing here connects to the pods' addresses.

use std::sync::Arc;
use std::time::Duration;

use spillway_scaler::cluster::gateways::follow;
use spillway_scaler::config::kubernetes::KubernetesSettings;
use spillway_tests::fake_kube::{Collection, FakeKube, fixtures};
use tokio::sync::watch;

fn gateway_pod(name: &str, ip: &str) -> serde_json::Value {
    let mut pod = fixtures::bound_pod("ingress", name, "ecs-1", "0");
    pod["metadata"]["labels"] = serde_json::json!({"app": "gateway"});
    pod["status"]["podIP"] = serde_json::json!(ip);
    pod
}

async fn next_list(
    targets: &mut watch::Receiver<Vec<spillway_collector::scrape::Target>>,
) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(10), targets.changed())
        .await
        .expect("the list changes within 10 s")
        .expect("the follower runs");
    targets
        .borrow_and_update()
        .iter()
        .map(|t| t.url.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_pods_are_followed_as_they_come_and_go() {
    spillway_scaler::serve::install_crypto_provider();
    let fake = FakeKube::start().await.expect("fake API server");
    fake.put(gateway_pod("gw-1", "10.0.0.1"));
    let settings: KubernetesSettings = serde_saphyr::from_str(&format!(
        "apiServer: {}\ngateways: {{ namespace: ingress, selector: app=gateway, port: 9113, refresh: 1s }}\n",
        fake.url()
    ))
    .expect("settings parse");

    let (mut targets, follower) = follow(Some(&settings), Vec::new(), Arc::new(|_| true))
        .await
        .expect("the first list succeeds");
    assert_eq!(
        targets
            .borrow_and_update()
            .iter()
            .map(|t| t.url.as_str())
            .collect::<Vec<_>>(),
        ["http://10.0.0.1:9113/metrics"]
    );
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(follower.expect("discovery is configured").run(shutdown));

    fake.put(gateway_pod("gw-2", "10.0.0.2"));
    assert_eq!(
        next_list(&mut targets).await,
        [
            "http://10.0.0.1:9113/metrics",
            "http://10.0.0.2:9113/metrics"
        ]
    );

    // The API server fails the next lists: the last list stands.
    let lists = |fake: &FakeKube| {
        fake.requests()
            .iter()
            .filter(|r| r.verb == "list" && r.resource == "pods")
            .count()
    };
    fake.fail("list", "pods", 0, 3, 500);
    let before = lists(&fake);
    let pods = Collection::new("", "v1", "pods");
    assert!(fake.delete(&pods, Some("ingress"), "gw-1"));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(lists(&fake) >= before + 2, "the follower kept listing");
    assert_eq!(
        targets.borrow().len(),
        2,
        "a failed LIST must not empty the list"
    );

    assert_eq!(
        next_list(&mut targets).await,
        ["http://10.0.0.2:9113/metrics"]
    );

    stop.send(true).expect("follower listens");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the follower stops")
        .expect("no panic");
}
