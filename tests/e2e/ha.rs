//! High availability: two `spillway serve` processes scraping the same gateway give KEDA
//! the same answers, and one killed and restarted under load answers at once, from its
//! data, never lower during its warm-up than the highest count its data asked for;
//! StreamIsActive streams reconnect to it. In HA mode (`ha:` in the serve config) a
//! pushed write, which would reach one replica only, is refused with an error saying so;
//! with `writesReachEveryReplica: true` and a writer sending every write to both, the two
//! again serve the same number.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spillway_collector::remote_write::encode_write_request;
use spillway_proto::externalscaler::ScaledObjectRef;
use spillway_proto::ingest::ingest_client::IngestClient;
use spillway_proto::ingest::{SampleBatch, Signal, WorkloadSample};
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// 100 qps per replica; a 6 s scale-down window keeps the test short while leaving
/// several polls inside the warm-up of a restarted process.
fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 4s
  qps: { targetPerReplica: 100 }
hysteresis: { upWindow: 0s, downWindow: 6s }
limits: { down: { percent: 100, per: 1s } }
panic: { enabled: false }",
        &["web"],
    )
}

const DOWN_WINDOW: Duration = Duration::from_secs(6);

fn write_config(dir: &Path, gateway: &FakeGateway) -> PathBuf {
    write_serve_config(
        dir,
        &[("acme.yaml", policy().as_str())],
        &format!(
            "scrape: {{ interval: 200ms, timeout: 150ms, targets: [{}] }}\n",
            gateway.url()
        ),
    )
}

/// No scrape targets: the data comes only from writes.
fn write_ha_config(dir: &Path, ha: &str) -> PathBuf {
    write_serve_config(
        dir,
        &[("acme.yaml", policy().as_str())],
        &format!("remoteWrite: {{}}\npush: {{}}\nha: {ha}\n"),
    )
}

/// One remote-write request: `gateway_requests_total{tenant="acme",app="web"}` at
/// `value`, as Prometheus sends it.
fn remote_write_body(value: f64, timestamp: i64) -> Vec<u8> {
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
}

async fn remote_write(spillway: &Spillway, body: Vec<u8>) -> reqwest::Response {
    spillway_tests::http()
        .post(format!("http://{}/api/v1/write", spillway.http))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(Duration::from_secs(5))
        .body(body)
        .send()
        .await
        .expect("remote-write request")
}

fn reference(spillway: &Spillway) -> ScaledObjectRef {
    scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    )
}

async fn answer(client: &mut keda::Client, spillway: &Spillway) -> Result<f64, tonic::Status> {
    keda::poll(client, &reference(spillway))
        .await
        .map(|poll| poll.value)
}

async fn until_answer(client: &keda::Client, spillway: &Spillway, value: f64) {
    wait::until(
        &format!("{value} replicas from {}", spillway.grpc),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut client = client.clone();
            async move { (answer(&mut client, spillway).await.ok() == Some(value)).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_and_a_restarted_one_answers_from_its_data_at_once() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    let qps = Arc::new(AtomicU64::new(450));
    gateway.drive_exact("acme", "web", qps.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &gateway);
    let a = Spillway::serve(BIN, &config);
    let b = Spillway::serve(BIN, &config);
    let client_a = keda::connect(a.grpc).await;
    let client_b = keda::connect(b.grpc).await;

    // Same data, same answer: 450 qps at 100 per replica is 5 on both.
    until_answer(&client_a, &a, 5.0).await;
    until_answer(&client_b, &b, 5.0).await;
    for _ in 0..10 {
        let (x, y) = (
            answer(&mut client_a.clone(), &a).await.expect("a answers"),
            answer(&mut client_b.clone(), &b).await.expect("b answers"),
        );
        assert_eq!(x, y, "two replicas answered differently for the same data");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A stream KEDA holds open to b (external-push).
    let mut stream = client_b
        .clone()
        .stream_is_active(reference(&b))
        .await
        .expect("stream opens")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("first stream message in time")
        .expect("stream healthy")
        .expect("a message");
    assert!(first.result, "traffic: active");

    // Traffic falls to 150 qps: the data now asks for 2, but the scale-down window holds
    // 5 for a while. b dies right then and comes back with no memory.
    qps.store(150, Ordering::Relaxed);
    let dropped_at = Instant::now();
    drop(b);
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
    assert!(
        !matches!(ended, Ok(Ok(Some(_)))),
        "the stream to a killed process must end, not go on: {ended:?}"
    );
    let b = Spillway::serve(BIN, &config);
    let client_b = keda::connect(b.grpc).await;

    // The restarted process answers from the start, without an error. Without cluster
    // access it cannot know the 5 that run: before its first data it serves the
    // effective minimum (1), from its first data what the data asks (2), and during its
    // warm-up never less than the highest count asked for since its start; a scale-up
    // is served at once. (With the Kubernetes side it would hold at spec.replicas: see
    // keda_semantics.rs.)
    let restarted_at = Instant::now();
    let mut answers = Vec::new();
    while restarted_at.elapsed() < DOWN_WINDOW - Duration::from_secs(2) {
        let value = answer(&mut client_b.clone(), &b)
            .await
            .unwrap_or_else(|status| panic!("the restarted process failed a poll: {status:?}"));
        answers.push(value);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("restart warm-up answers: {answers:?}");
    assert!(answers.len() > 10);
    let highest = answers.iter().copied().fold(0.0, f64::max);
    assert!(
        answers.windows(2).all(|w| w[1] >= w[0]),
        "lowered during its warm-up: {answers:?}"
    );
    assert_eq!(highest, 2.0, "what its data asks for: {answers:?}");
    qps.store(650, Ordering::Relaxed);
    let stepped = Instant::now();
    wait::until(
        "the restarted process to serve the scale-up",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let mut client = client_b.clone();
            let b = &b;
            async move { (answer(&mut client, b).await.ok()? > 2.0).then_some(()) }
        },
    )
    .await;
    eprintln!(
        "scale-up served {:?} after the step, {:?} after the restart",
        stepped.elapsed(),
        restarted_at.elapsed()
    );
    assert!(
        restarted_at.elapsed() < DOWN_WINDOW,
        "the scale-up waited for the warm-up"
    );
    qps.store(150, Ordering::Relaxed);

    // Both come down to 2 once the window has passed, and agree again.
    until_answer(&client_a, &a, 2.0).await;
    until_answer(&client_b, &b, 2.0).await;
    eprintln!(
        "both at 2 replicas {:?} after the drop",
        dropped_at.elapsed()
    );

    // KEDA reopens the stream; the restarted process answers it.
    let reopened = wait::until(
        "StreamIsActive reopened on the restarted process",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let mut client = client_b.clone();
            let reference = reference(&b);
            async move {
                let mut stream = client.stream_is_active(reference).await.ok()?.into_inner();
                tokio::time::timeout(Duration::from_secs(2), stream.message())
                    .await
                    .ok()?
                    .ok()?
            }
        },
    )
    .await;
    assert!(reopened.result, "150 qps is still active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_ha_mode_a_write_to_one_replica_is_refused_and_writes_to_every_replica_agree() {
    // Writes refused: remote-write gets a 409 whose body says what to do, gRPC push a
    // FAILED_PRECONDITION, and nothing reaches the decision.
    let dir = tempfile::tempdir().expect("temp dir");
    let refusing = Spillway::serve(BIN, &write_ha_config(dir.path(), "{}"));
    let now_ms = spillway_collector::clock::unix_ms();
    let response = remote_write(&refusing, remote_write_body(100.0, now_ms)).await;
    assert_eq!(response.status(), reqwest::StatusCode::CONFLICT);
    let text = response.text().await.expect("body");
    for needle in [
        "HA mode",
        "every replica",
        "spillway-replicas",
        "writesReachEveryReplica",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the refusal: {text}"
        );
    }
    let mut push = tokio::time::timeout(
        Duration::from_secs(10),
        IngestClient::connect(format!("http://{}", refusing.grpc)),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let batch = SampleBatch {
        source: "edge-agent".into(),
        timestamp_ms: 0,
        samples: vec![WorkloadSample {
            tenant: "acme".into(),
            app: "web".into(),
            signal: Signal::Qps as i32,
            value: 450.0,
        }],
    };
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        push.push(tokio_stream::iter(vec![batch])),
    )
    .await
    .expect("push answered in time")
    .expect_err("push refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("HA mode"), "{status:?}");
    let metrics = spillway_tests::http()
        .get(format!("http://{}/metrics", refusing.http))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("metrics text");
    for input in ["remote_write", "push"] {
        let refused = format!("spillway_ha_writes_refused_total{{input=\"{input}\"}} 1");
        assert!(metrics.contains(&refused), "{refused} missing");
        // Nothing of the refused writes was ingested.
        let ingested = format!("spillway_collector_samples_total{{source=\"{input}\"}} 0");
        assert!(metrics.contains(&ingested), "{ingested} missing");
    }
    drop(refusing);

    // Writes accepted, and the writer sends each one to both replicas (what a writer
    // pointed at the headless Service's every address does): same data, same answers.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_ha_config(dir.path(), "{ writesReachEveryReplica: true }");
    let a = Spillway::serve(BIN, &config);
    let b = Spillway::serve(BIN, &config);
    let writer = {
        let (a_http, b_http) = (a.http, b.http);
        tokio::spawn(async move {
            // 450 requests per second: a counter rising 90 every 200 ms.
            let mut value = 0.0;
            let mut ticker = tokio::time::interval(Duration::from_millis(200));
            loop {
                ticker.tick().await;
                value += 90.0;
                let timestamp = spillway_collector::clock::unix_ms();
                for http in [a_http, b_http] {
                    let response = spillway_tests::http()
                        .post(format!("http://{http}/api/v1/write"))
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .timeout(Duration::from_secs(5))
                        .body(remote_write_body(value, timestamp))
                        .send()
                        .await
                        .expect("remote-write request");
                    assert!(response.status().is_success(), "{}", response.status());
                }
            }
        })
    };
    let client_a = keda::connect(a.grpc).await;
    let client_b = keda::connect(b.grpc).await;
    until_answer(&client_a, &a, 5.0).await;
    until_answer(&client_b, &b, 5.0).await;
    for _ in 0..10 {
        let (x, y) = (
            answer(&mut client_a.clone(), &a).await.expect("a answers"),
            answer(&mut client_b.clone(), &b).await.expect("b answers"),
        );
        assert_eq!(
            x, y,
            "two replicas fed the same writes answered differently"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !writer.is_finished(),
        "the writer stopped: {:?}",
        writer.await
    );
    writer.abort();
}
