//! A real Prometheus scrapes a fake gateway and remote-writes to Spillway: the QPS
//! Spillway computes from the remote-written counters matches Prometheus' own `rate()`.
//!
//! Beside it, a test without Prometheus covers the other push paths of the real binary:
//! Spillway's gRPC push, and remote-write bodies cut short.
//!
//! The Prometheus test needs the `prometheus` binary on PATH (Debian: `apt-get install prometheus`). Without
//! it the test prints a SKIPPED line and passes, unless `SPILLWAY_REQUIRE_PROMETHEUS=1`
//! (set in CI, which installs the package), in which case it fails.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::prometheus::find_on_path;
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");
/// Driven traffic; both Prometheus and Spillway must see it.
const QPS: f64 = 400.0;
/// Spillway averages per-second rates over the policy window, Prometheus' `rate()` fits
/// a slope over its range: on steady traffic both are within a few percent of each
/// other; 10% leaves room for the drive's 10 ms steps and scrape-time jitter.
const TOLERANCE: f64 = 0.10;

fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 10s
  qps: { targetPerReplica: 100 }
# `serve` without cluster access never lowers its answer during its first scale-down
# window of data (warm-up); keep that short here.
hysteresis: { downWindow: 2s }",
        &["web", "api"],
    )
}

fn start_spillway(dir: &std::path::Path) -> Spillway {
    Spillway::serve(
        BIN,
        &write_serve_config(
            dir,
            &[("acme.yaml", policy().as_str())],
            "remoteWrite: {}\npush: {}\n",
        ),
    )
}

/// Kills Prometheus when the test ends, however it ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn get_json(client: &reqwest::Client, url: reqwest::Url) -> Option<serde_json::Value> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Prometheus' answer to an instant query returning one sample.
async fn prometheus_value(client: &reqwest::Client, addr: &str, query: &str) -> Option<f64> {
    let mut url = reqwest::Url::parse(&format!("http://{addr}/api/v1/query")).ok()?;
    url.query_pairs_mut().append_pair("query", query);
    let body = get_json(client, url).await?;
    body["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
}

async fn spillway_qps(client: &reqwest::Client, http: std::net::SocketAddr) -> Option<f64> {
    let url = reqwest::Url::parse(&format!("http://{http}/api/v1/workloads/acme/web")).ok()?;
    let body = get_json(client, url).await?;
    body["latest"]["qps"].as_f64().filter(|v| *v > 0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spillway_qps_from_remote_write_matches_prometheus_rate() {
    let Some(prometheus) = find_on_path("prometheus") else {
        if std::env::var("SPILLWAY_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!("prometheus is not on PATH and SPILLWAY_REQUIRE_PROMETHEUS=1");
        }
        println!("SKIPPED: prometheus is not on PATH (apt-get install prometheus)");
        return;
    };

    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", QPS as u64, Duration::from_millis(10));

    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = start_spillway(dir.path());

    // Prometheus cannot take a bound socket: learn a free port, close it, hand it over.
    let prometheus_addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let prometheus_config = format!(
        "global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ['{}']
remote_write:
  - url: http://{}/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 500
",
        gateway.addr, spillway.http
    );
    let prometheus_config_path = dir.path().join("prometheus.yml");
    std::fs::write(&prometheus_config_path, prometheus_config).expect("prometheus config");
    let _prometheus = Prometheus(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                prometheus_config_path.display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus"),
    );

    let client = client();
    let rate_query = r#"sum(rate(gateway_requests_total{tenant="acme",app="web"}[10s]))"#;
    wait::until(
        "Prometheus to report a rate",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || prometheus_value(&client, &prometheus_addr, rate_query),
    )
    .await;
    wait::until(
        "Spillway to compute QPS from remote-written samples",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || spillway_qps(&client, spillway.http),
    )
    .await;
    // Let Spillway's 10 s window fill with remote-written rates only.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut compared = 0;
    for _ in 0..5 {
        let ours = spillway_qps(&client, spillway.http)
            .await
            .expect("Spillway QPS");
        let theirs = prometheus_value(&client, &prometheus_addr, rate_query)
            .await
            .expect("Prometheus rate");
        let error = (ours - theirs).abs() / theirs;
        println!("spillway={ours:.1} prometheus_rate={theirs:.1} relative_error={error:.4}");
        assert!(
            error <= TOLERANCE,
            "Spillway {ours:.1} vs Prometheus rate() {theirs:.1}: {:.1}% apart",
            error * 100.0
        );
        assert!(
            (ours - QPS).abs() / QPS <= TOLERANCE,
            "Spillway {ours:.1} vs the driven {QPS}"
        );
        compared += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(compared, 5);

    let metrics = client
        .get(format!("http://{}/metrics", spillway.http))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let used = metrics
        .lines()
        .find(|line| line.starts_with("spillway_collector_samples_total{source=\"remote_write\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(used > 0.0, "remote-write samples are counted:\n{metrics}");
    assert!(
        metrics.contains("spillway_remote_write_refused_requests_total{reason=\"bad_request\"} 0"),
        "Prometheus' requests were all accepted:\n{metrics}"
    );
}

async fn spillway_qps_of(
    client: &reqwest::Client,
    http: std::net::SocketAddr,
    app: &str,
) -> Option<f64> {
    let url = reqwest::Url::parse(&format!("http://{http}/api/v1/workloads/acme/{app}")).ok()?;
    let body = get_json(client, url).await?;
    body["latest"]["qps"].as_f64().filter(|v| *v > 0.0)
}

/// The other two push paths on the real binary, without Prometheus: Spillway's gRPC
/// push on the gRPC port, and remote-write bodies that are cut short (400, and the next
/// good body still rates against the last good point).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_push_and_refused_remote_write_bodies_on_the_real_binary() {
    use spillway_collector::remote_write::encode_write_request;
    use spillway_proto::ingest::ingest_client::IngestClient;
    use spillway_proto::ingest::{SampleBatch, Signal, WorkloadSample};
    use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = start_spillway(dir.path());
    let client = client();

    let mut push = tokio::time::timeout(
        Duration::from_secs(10),
        IngestClient::connect(format!("http://{}", spillway.grpc)),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let batch = SampleBatch {
        source: "edge-agent".into(),
        timestamp_ms: 0,
        samples: vec![WorkloadSample {
            tenant: "acme".into(),
            app: "api".into(),
            signal: Signal::Qps as i32,
            value: 250.0,
        }],
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(10),
        push.push(tokio_stream::iter(vec![batch])),
    )
    .await
    .expect("push in time")
    .expect("push")
    .into_inner();
    assert_eq!((summary.accepted, summary.rejected), (1, 0));
    let qps = wait::until(
        "pushed QPS in the decision",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || spillway_qps_of(&client, spillway.http, "api"),
    )
    .await;
    assert_eq!(qps, 250.0);

    let now_ms = spillway_collector::clock::unix_ms();
    let body = |value: f64, timestamp: i64| {
        encode_write_request(&WriteRequest {
            timeseries: vec![TimeSeries {
                labels: [
                    ("__name__", "gateway_requests_total"),
                    ("app", "web"),
                    ("tenant", "acme"),
                ]
                .iter()
                .map(|(name, value)| Label {
                    name: (*name).into(),
                    value: (*value).into(),
                })
                .collect(),
                samples: vec![Sample { value, timestamp }],
            }],
            metadata: vec![],
        })
    };
    let url = format!("http://{}/api/v1/write", spillway.http);
    let post = |bytes: Vec<u8>| {
        client
            .post(&url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(bytes)
            .send()
    };
    let first = post(body(0.0, now_ms - 2_000)).await.expect("post");
    assert_eq!(first.status().as_u16(), 204);
    let good = body(300.0, now_ms - 1_000);
    let cut = post(good[..good.len() - 5].to_vec()).await.expect("post");
    assert_eq!(cut.status().as_u16(), 400);
    let message = cut.text().await.unwrap_or_default();
    assert!(message.contains("snappy"), "{message}");
    let accepted = post(good).await.expect("post");
    assert_eq!(accepted.status().as_u16(), 204);
    // 300 requests in the second between the two good points.
    let qps = wait::until(
        "remote-written QPS in the decision",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || spillway_qps_of(&client, spillway.http, "web"),
    )
    .await;
    assert_eq!(qps, 300.0);

    let metrics = client
        .get(format!("http://{}/metrics", spillway.http))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    for line in [
        "spillway_collector_samples_total{source=\"push\"} 1",
        "spillway_collector_samples_total{source=\"remote_write\"} 2",
        "spillway_remote_write_refused_requests_total{reason=\"bad_request\"} 1",
        "spillway_collector_dropped_samples_total{reason=\"scrape_series_limit\"} 0",
        "spillway_collector_series{source=\"remote_write\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in:\n{metrics}");
    }
}
