//! A broken scrape target does not disturb the others, and its error is visible.

use std::time::Duration;

use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 2s
  qps: { targetPerReplica: 100 }
# `serve` never lowers its answer during its first scale-down window of data
# (warm-up); keep that short here.
hysteresis: { downWindow: 1s }",
        &["web"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_targets_keep_working_beside_down_garbage_and_hanging_ones() {
    let healthy = FakeGateway::start(Mode::Healthy).await;
    let garbage = FakeGateway::start(Mode::Garbage).await;
    let failing = FakeGateway::start(Mode::Failing).await;
    let hanging = FakeGateway::start(Mode::Hanging).await;
    // A port nobody listens on. A port bound and released here could be handed to
    // another test's server in the meantime; port 1 is never bound by anything here.
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    healthy.drive("acme", "web", 450, Duration::from_millis(50));

    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "scrape:
  interval: 300ms
  timeout: 250ms
  targets:
    - {}
    - {}
    - {}
    - {}
    - http://{closed}/metrics
",
        healthy.url(),
        garbage.url(),
        failing.url(),
        hanging.url()
    );
    let config_path = write_serve_config(dir.path(), &[("acme.yaml", policy().as_str())], &config);
    let spillway = Spillway::serve(BIN, &config_path);

    let client = keda::connect(spillway.grpc).await;
    let reference = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    // 450 qps at 100 per replica: 5 replicas, from the healthy target alone.
    let poll = wait::until(
        "5 replicas from the healthy target",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut client = client.clone();
            let reference = reference.clone();
            async move {
                keda::poll(&mut client, &reference)
                    .await
                    .ok()
                    .filter(|p| p.value == 5.0)
            }
        },
    )
    .await;
    assert!(poll.active);
    // Still right a while later, with the broken targets failing all along.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut client = client;
    assert_eq!(
        keda::poll(&mut client, &reference)
            .await
            .expect("poll")
            .value,
        5.0
    );

    let status: serde_json::Value = spillway_tests::http()
        .get(format!("http://{}/api/v1/status", spillway.http))
        .send()
        .await
        .expect("status API")
        .json()
        .await
        .expect("status JSON");
    let targets = status["targets"].as_array().expect("targets");
    let find = |url: &str| {
        targets
            .iter()
            .find(|t| t["url"] == url)
            .unwrap_or_else(|| panic!("target {url} in status: {status}"))
    };
    assert_eq!(find(&healthy.url())["up"], true);
    for (url, needle) in [
        (garbage.url(), "not Prometheus text"),
        (failing.url(), "500"),
        (hanging.url(), "timed out"),
        (format!("http://{closed}/metrics"), "request failed"),
    ] {
        let target = find(&url);
        assert_eq!(target["up"], false, "{target}");
        let error = target["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle),
            "{url}: error {error:?} should mention {needle:?}"
        );
    }

    let metrics = spillway_tests::http()
        .get(format!("http://{}/metrics", spillway.http))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("metrics text");
    let up =
        |url: String, value: u8| format!("spillway_scrape_target_up{{target=\"{url}\"}} {value}");
    assert!(metrics.contains(&up(garbage.url(), 0)), "{metrics}");
    assert!(metrics.contains(&up(healthy.url(), 1)), "{metrics}");
}
