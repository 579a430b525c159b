//! A remote-write flood: a sender pushes far more series than the configured limit while
//! a scraped workload is being decided. The other workload's numbers stay right, the
//! series held stay at the limit, memory stays bounded, and the drop is visible.

use std::time::Duration;

use spillway_collector::remote_write::encode_write_request;
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");
const MAX_SERIES: usize = 5_000;
const REQUESTS: usize = 40;
const SERIES_PER_REQUEST: usize = 2_000;

fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 2s
  qps: { targetPerReplica: 100 }
# `serve` without cluster access never lowers its answer during its first scale-down
# window of data (warm-up); keep that short here.
hysteresis: { downWindow: 1s }",
        &["web"],
    )
}

/// The noisy tenant's policy: its 50 apps exist, so its series are admitted and fill
/// the series table (samples of workloads no policy names never take a place there).
fn noisy_policy() -> String {
    let apps: String = (0..50).map(|i| format!("    app-{i}: {{}}\n")).collect();
    format!(
        "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: noisy }}\n\
         spec:\n  namespaces: [noisy]\n  defaults:\n    signals:\n      qps: {{ targetPerReplica: 100 }}\n  \
         apps:\n{apps}"
    )
}

/// One request of distinct series from a noisy sender.
fn flood_body(request: usize, timestamp: i64) -> Vec<u8> {
    let timeseries = (0..SERIES_PER_REQUEST)
        .map(|i| TimeSeries {
            labels: [
                ("__name__", "gateway_requests_total".to_owned()),
                ("app", format!("app-{}", i % 50)),
                ("pod", format!("pod-{request}-{i}")),
                ("tenant", "noisy".to_owned()),
            ]
            .into_iter()
            .map(|(name, value)| Label {
                name: name.into(),
                value,
            })
            .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp,
            }],
        })
        .collect();
    encode_write_request(&WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_write_flood_is_capped_and_does_not_disturb_other_workloads() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", 450, Duration::from_millis(50));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_serve_config(
        dir.path(),
        &[
            ("acme.yaml", policy().as_str()),
            ("noisy.yaml", noisy_policy().as_str()),
        ],
        &format!(
            "scrape: {{ interval: 250ms, timeout: 200ms, targets: [{}] }}
remoteWrite: {{ maxSeries: {MAX_SERIES} }}
# One tenant may fill the whole table: this test is about the table's own limit (the
# per-tenant quota is tested in floods.rs).
memory: {{ tenantShare: 1.0 }}
",
            gateway.url()
        ),
    );
    let spillway = Spillway::serve(BIN, &config);
    let client = keda::connect(spillway.grpc).await;
    let web = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    // 450 qps at 100 per replica: 5 replicas, from the scraped gateway.
    let poll_web = || {
        let mut client = client.clone();
        let web = web.clone();
        async move { keda::poll(&mut client, &web).await.ok().map(|p| p.value) }
    };
    wait::until(
        "5 replicas for acme/web",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { poll_web().await.filter(|v| *v == 5.0) },
    )
    .await;
    let rss_before = spillway.rss_bytes();

    let http = spillway_tests::http();
    let url = format!("http://{}/api/v1/write", spillway.http);
    let now_ms = spillway_collector::clock::unix_ms();
    for request in 0..REQUESTS {
        let response = http
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(flood_body(request, now_ms))
            .send()
            .await
            .expect("remote-write request");
        // Over the limit, the samples are dropped and counted, not the request failed:
        // a sender retrying a refused batch forever would be worse.
        assert!(
            response.status().is_success(),
            "request {request}: {}",
            response.status()
        );
        if request % 10 == 9 {
            assert_eq!(
                poll_web().await,
                Some(5.0),
                "acme/web during the flood (after request {request})"
            );
        }
    }
    let rss_after = spillway.rss_bytes();

    let metrics = http
        .get(format!("http://{}/metrics", spillway.http))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("metrics text");
    let held = metric(
        &metrics,
        "spillway_collector_series{source=\"remote_write\"}",
    )
    .expect("series held is exported");
    let dropped = metric(
        &metrics,
        "spillway_collector_dropped_samples_total{reason=\"remote_write_series_limit\"}",
    )
    .expect("dropped samples are exported");
    let sent = (REQUESTS * SERIES_PER_REQUEST) as f64;
    println!(
        "remote-write flood: {sent} series sent, {held} held (limit {MAX_SERIES}), {dropped} \
         samples dropped; RSS {} MiB before, {} MiB after",
        rss_before >> 20,
        rss_after >> 20
    );
    assert!(
        held <= MAX_SERIES as f64,
        "series held {held} over the limit"
    );
    assert_eq!(
        held + dropped,
        sent,
        "every sample is either held or counted as dropped"
    );
    // 80,000 series offered; what is held is capped at 5,000 (~130 B each), so growth
    // stays far below what holding them all would cost.
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 64 << 20,
        "RSS grew by {} MiB during the flood",
        growth >> 20
    );
    assert_eq!(poll_web().await, Some(5.0), "acme/web after the flood");
}
