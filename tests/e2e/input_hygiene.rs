//! Glitches in what Spillway is fed never become decisions, on the real binary:
//!
//! - a gateway counter at 10⁹ that drops out of one scrape, or reads NaN once, does not
//!   read as 10⁹ requests in one interval;
//! - remote-write and push samples stamped far in the past or future (up to `i64::MIN`
//!   and `i64::MAX`) are refused and counted by reason, and the process keeps serving;
//! - two replicas of one HA Prometheus remote-writing the same series count once, and
//!   when the elected one stops the other takes over after the failover timeout;
//! - remote-write and push are off unless the config turns them on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use spillway_collector::remote_write::encode_write_request;
use spillway_proto::ingest::ingest_client::IngestClient;
use spillway_proto::ingest::{SampleBatch, Signal, WorkloadSample};
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use spillway_tests::gateway::{FakeGateway, Glitch, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn policy(window: &str) -> String {
    acme_policy(
        &format!(
            "replicas: {{ min: 1, max: 50 }}
signals:
  window: {window}
  qps: {{ targetPerReplica: 100 }}
# `serve` without cluster access holds until a full scale-down window of data.
hysteresis: {{ downWindow: 1s }}"
        ),
        &["web", "api"],
    )
}

fn start(dir: &std::path::Path, window: &str, rest: &str) -> Spillway {
    Spillway::serve(
        BIN,
        &write_serve_config(dir, &[("acme.yaml", policy(window).as_str())], rest),
    )
}

async fn get_text(client: &reqwest::Client, url: String) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

async fn metrics(client: &reqwest::Client, http: SocketAddr) -> String {
    get_text(client, format!("http://{http}/metrics")).await
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The QPS of the latest decision for acme/`app`, once there is one.
async fn decided_qps(client: &reqwest::Client, http: SocketAddr, app: &str) -> Option<f64> {
    let response = client
        .get(format!("http://{http}/api/v1/workloads/acme/{app}"))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    body["latest"]["qps"].as_f64()
}

/// A remote-write body: one `gateway_requests_total` series of acme/web with `extra`
/// labels, one sample per `(timestamp, value)`.
fn write_body(extra: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    let mut labels = vec![
        ("__name__", "gateway_requests_total"),
        ("app", "web"),
        ("tenant", "acme"),
    ];
    labels.extend_from_slice(extra);
    labels.sort();
    encode_write_request(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| Label {
                    name: name.into(),
                    value: value.into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        }],
        metadata: vec![],
    })
}

async fn post_write(client: &reqwest::Client, http: SocketAddr, body: Vec<u8>) -> (u16, String) {
    let response = client
        .post(format!("http://{http}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote-write POST");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_drops_out_or_reads_nan_for_one_scrape_moves_nothing() {
    const SCRAPE: Duration = Duration::from_millis(250);
    let gateway = FakeGateway::start(Mode::Healthy).await;
    // A gateway that has been up for a while: its counter is already at 10⁹.
    gateway.set("acme", "web", 1e9);
    gateway.drive("acme", "web", 150, Duration::from_millis(50));
    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = start(
        dir.path(),
        "2s",
        &format!(
            "scrape: {{ interval: 250ms, timeout: 200ms, targets: [{}] }}\n",
            gateway.url()
        ),
    );
    let client = keda::connect(spillway.grpc).await;
    let web = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    let poll = || {
        let mut client = client.clone();
        let web = web.clone();
        async move { keda::poll(&mut client, &web).await.ok().map(|p| p.value) }
    };
    // 150 qps at 100 per replica: 2 replicas, with room for the drive's jitter.
    wait::until(
        "2 replicas for acme/web",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { poll().await.filter(|v| *v == 2.0) },
    )
    .await;
    let http = spillway_tests::http();

    for glitch in [Glitch::Missing, Glitch::NaN] {
        let glitched = gateway.glitched();
        gateway.glitch("acme", "web", glitch, 1);
        // Watch the scrape with the glitch and the five after it: the counter's return
        // is where a whole 10⁹ would be read as one interval's increase.
        let until = gateway.scrapes() + 6;
        let deadline = Instant::now() + 20 * SCRAPE + Duration::from_secs(5);
        let (mut most_replicas, mut most_qps) = (0.0f64, 0.0f64);
        while gateway.scrapes() < until {
            assert!(Instant::now() < deadline, "{glitch:?}: the scrapes stopped");
            if let Some(replicas) = poll().await {
                most_replicas = most_replicas.max(replicas);
            }
            if let Some(qps) = decided_qps(&http, spillway.http, "web").await {
                most_qps = most_qps.max(qps);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            gateway.glitched(),
            glitched + 1,
            "{glitch:?}: the glitch was served"
        );
        println!("{glitch:?} for one scrape: at most {most_replicas} replicas, {most_qps:.0} qps");
        assert!(
            most_qps < 250.0,
            "{glitch:?}: the decided QPS reached {most_qps} (the gateway serves 150/s)"
        );
        assert!(
            most_replicas <= 3.0,
            "{glitch:?}: scaled to {most_replicas} replicas on a glitch"
        );
    }
    // The series still rates after both glitches.
    wait::until(
        "acme/web back at 150 qps",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            decided_qps(&http, spillway.http, "web")
                .await
                .filter(|qps| (qps - 150.0).abs() < 25.0)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_outside_the_bounds_are_refused_counted_and_survived() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = start(dir.path(), "10s", "remoteWrite: {}\npush: {}\n");
    let http = spillway_tests::http();
    let now = spillway_collector::clock::unix_ms();

    // Remote-write: a good point, hostile ones, another good point 1 s after the first.
    let (status, _) =
        post_write(&http, spillway.http, write_body(&[], &[(now - 1_000, 0.0)])).await;
    assert_eq!(status, 204);
    let hostile = [
        (i64::MIN, 1e15),
        (-1, 1e15),
        (now - 10 * 60_000, 1e15),
        (now + 10 * 60_000, 1e15),
        (i64::MAX, 1e15),
    ];
    for (timestamp, value) in hostile {
        let (status, body) =
            post_write(&http, spillway.http, write_body(&[], &[(timestamp, value)])).await;
        // Refused sample by sample, not as a request: a sender must not retry them.
        assert_eq!(status, 204, "timestamp {timestamp}: {body}");
    }
    let (status, _) = post_write(&http, spillway.http, write_body(&[], &[(now, 100.0)])).await;
    assert_eq!(status, 204);
    let qps = wait::until(
        "remote-written QPS in the decision",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            decided_qps(&http, spillway.http, "web")
                .await
                .filter(|v| *v > 0.0)
        },
    )
    .await;
    assert_eq!(qps, 100.0, "only the two good points count");

    // Push: whole batches stamped out of bounds are refused with a reason.
    let mut push = tokio::time::timeout(
        Duration::from_secs(10),
        IngestClient::connect(format!("http://{}", spillway.grpc)),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let batch = |timestamp_ms: i64, value: f64| SampleBatch {
        source: "edge-agent".into(),
        timestamp_ms,
        samples: vec![WorkloadSample {
            tenant: "acme".into(),
            app: "api".into(),
            signal: Signal::Qps as i32,
            value,
        }],
    };
    let now = spillway_collector::clock::unix_ms();
    let batches = vec![
        batch(i64::MIN, 1e15),
        batch(i64::MAX, 1e15),
        batch(now + 2 * 60_000, 1e15),
        batch(now - 10 * 60_000, 1e15),
        batch(now, -5.0),
        batch(now, 250.0),
    ];
    let summary = tokio::time::timeout(
        Duration::from_secs(10),
        push.push(tokio_stream::iter(batches)),
    )
    .await
    .expect("push in time")
    .expect("push")
    .into_inner();
    assert_eq!((summary.accepted, summary.rejected), (1, 5), "{summary:?}");
    let qps = wait::until(
        "pushed QPS in the decision",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            decided_qps(&http, spillway.http, "api")
                .await
                .filter(|v| *v > 0.0)
        },
    )
    .await;
    assert_eq!(qps, 250.0);

    let text = metrics(&http, spillway.http).await;
    for (series, expected) in [
        ("remote_write_too_old", 3.0),
        ("remote_write_too_new", 2.0),
        ("push_too_old", 2.0),
        ("push_too_new", 2.0),
        ("push_invalid_value", 1.0),
    ] {
        let name = format!("spillway_collector_dropped_samples_total{{reason=\"{series}\"}}");
        assert_eq!(metric(&text, &name), Some(expected), "{name} in:\n{text}");
    }
    assert_eq!(
        get_text(&http, format!("http://{}/healthz", spillway.http)).await,
        "ok\n"
    );
}

/// One replica of an HA Prometheus pair: remote-writes the gateway counter (growing at
/// `qps` since `started`) every 250 ms under its replica label until `stop`.
fn replica(
    http: SocketAddr,
    name: &'static str,
    started: Instant,
    qps: f64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = spillway_tests::http();
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let now = spillway_collector::clock::unix_ms();
            let value = (qps * started.elapsed().as_secs_f64()).floor();
            let body = write_body(
                &[("__replica__", name), ("cluster", "eu-1")],
                &[(now, value)],
            );
            let (status, text) = post_write(&client, http, body).await;
            assert_eq!(status, 204, "replica {name}: {text}");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_prometheus_pair_counts_once_and_fails_over_after_the_timeout() {
    const QPS: f64 = 400.0;
    const FAILOVER: Duration = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = start(
        dir.path(),
        "3s",
        "remoteWrite: { ha: { failoverTimeout: 2s } }\n",
    );
    let http = spillway_tests::http();
    let started = Instant::now();
    let stop_a = Arc::new(AtomicBool::new(false));
    let stop_b = Arc::new(AtomicBool::new(false));
    let a = replica(spillway.http, "a", started, QPS, stop_a.clone());
    // `a` is heard first, so it is elected; then `b` starts sending the same series.
    wait::until(
        "replica a elected",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            let text = metrics(&http, spillway.http).await;
            (metric(&text, "spillway_remote_write_ha_clusters{api=\"v1\"}") == Some(1.0))
                .then_some(())
        },
    )
    .await;
    let b = replica(spillway.http, "b", started, QPS, stop_b.clone());

    let near = |qps: f64| (qps - QPS).abs() < QPS * 0.1;
    wait::until(
        "acme/web at the pair's 400 qps",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            decided_qps(&http, spillway.http, "web")
                .await
                .filter(|q| near(*q))
        },
    )
    .await;
    // Steady: counted once for 2 s of both replicas sending.
    for _ in 0..10 {
        let qps = decided_qps(&http, spillway.http, "web")
            .await
            .unwrap_or(0.0);
        assert!(near(qps), "{qps} qps while both replicas send {QPS}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = metrics(&http, spillway.http).await;
    let refused = metric(
        &text,
        "spillway_collector_dropped_samples_total{reason=\"remote_write_ha_not_elected\"}",
    )
    .unwrap_or(0.0);
    assert!(
        refused >= 8.0,
        "the other replica's samples are refused: {refused}"
    );
    assert_eq!(
        metric(
            &text,
            "spillway_remote_write_ha_failovers_total{api=\"v1\"}"
        ),
        Some(0.0)
    );

    // The elected replica stops; the other takes over once `a` has been silent for the
    // failover timeout.
    stop_a.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    let failover_after = wait::until(
        "the other replica elected",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || async {
            let text = metrics(&http, spillway.http).await;
            (metric(
                &text,
                "spillway_remote_write_ha_failovers_total{api=\"v1\"}",
            ) == Some(1.0))
            .then(|| stopped.elapsed())
        },
    )
    .await;
    println!(
        "HA failover {failover_after:?} after the elected replica stopped (timeout {FAILOVER:?})"
    );
    // `a`'s last sample may have left up to one send interval before the stop.
    assert!(
        failover_after >= FAILOVER - Duration::from_millis(300),
        "failed over after {failover_after:?}, before the {FAILOVER:?} timeout"
    );
    assert!(
        failover_after <= FAILOVER + Duration::from_secs(3),
        "failed over only after {failover_after:?}"
    );
    // `b` continues the same series: the rate goes on at 400, not doubled, not reset.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for _ in 0..10 {
        let qps = decided_qps(&http, spillway.http, "web")
            .await
            .unwrap_or(0.0);
        assert!(near(qps), "{qps} qps from the replica that took over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_b.store(true, Ordering::Relaxed);
    for task in [a, b] {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("replica stops")
            .expect("replica task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_and_push_are_off_unless_configured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = start(dir.path(), "10s", "");
    let http = spillway_tests::http();
    let now = spillway_collector::clock::unix_ms();
    let (status, body) = post_write(&http, spillway.http, write_body(&[], &[(now, 1.0)])).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("remoteWrite"),
        "says how to turn it on: {body}"
    );

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
            app: "web".into(),
            signal: Signal::Qps as i32,
            value: 1e6,
        }],
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        push.push(tokio_stream::iter(vec![batch])),
    )
    .await
    .expect("answered in time")
    .expect_err("push is off");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused}");

    let text = metrics(&http, spillway.http).await;
    assert!(
        !text.contains("spillway_remote_write_requests_total"),
        "no remote-write receiver:\n{text}"
    );
    assert!(
        decided_qps(&http, spillway.http, "web").await.is_none(),
        "nothing reached the workload"
    );
}
