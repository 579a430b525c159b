//! The remote-write route over a real loopback socket: status codes a sender sees and
//! that a refused body changes nothing.

use std::sync::Arc;
use std::time::Duration;

use spillway_collector::ingest::Ingest;
use spillway_collector::remote_write::{
    self, RemoteWrite, RemoteWriteConfig, encode_write_request,
};
use spillway_collector::store::StoreLimits;
use spillway_collector::{Signal, SignalView, WorkloadKey};
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

fn body(value: f64, timestamp: i64) -> Vec<u8> {
    let labels = [
        ("__name__", "gateway_requests_total"),
        ("app", "web"),
        ("tenant", "acme"),
    ];
    encode_write_request(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
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

async fn serve(config: RemoteWriteConfig) -> (String, Arc<RemoteWrite>, Arc<Ingest>) {
    let ingest = Ingest::new(StoreLimits::default());
    let receiver = RemoteWrite::new(config, ingest.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let app = remote_write::router(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, receiver, ingest)
}

async fn post(url: &str, body: Vec<u8>, encoding: &str) -> (u16, String) {
    let response = client()
        .post(url)
        .header("Content-Encoding", encoding)
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(Duration::from_secs(5))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn good_bad_and_oversize_bodies_get_the_statuses_senders_expect() {
    let (url, receiver, ingest) = serve(RemoteWriteConfig {
        max_body_bytes: 4096,
        ..RemoteWriteConfig::default()
    })
    .await;
    let now_ms = spillway_collector::clock::unix_ms();
    let start = now_ms - 10_000;
    assert_eq!(post(&url, body(1_000.0, start), "snappy").await.0, 204);

    let good = body(1_100.0, start + 10_000);
    let (status, message) = post(&url, good[..good.len() - 4].to_vec(), "snappy").await;
    assert_eq!(status, 400);
    assert!(message.contains("snappy"), "{message}");
    let (status, message) = post(&url, b"\x00\x01garbage".to_vec(), "snappy").await;
    assert_eq!(status, 400, "{message}");
    let (status, message) = post(&url, good.clone(), "gzip").await;
    assert_eq!(status, 415, "{message}");
    let (status, message) = post(&url, vec![0; 10_000], "snappy").await;
    assert_eq!(status, 413);
    assert!(message.contains("4096"), "{message}");

    // The refused bodies changed nothing: the good one rates against the first point.
    assert_eq!(post(&url, good, "snappy").await.0, 204);
    let web = WorkloadKey::new("acme", "web");
    let second = (start + 10_000).div_euclid(1000);
    // Published within the receiver's publish interval (50 ms), not necessarily at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while ingest
        .store()
        .view(&web)
        .mean(Signal::Qps, second, 1)
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "never published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        ingest.store().view(&web).mean(Signal::Qps, second, 1),
        Some(10.0)
    );
    let stats = &receiver.stats;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.bad_requests.load(Relaxed), 2);
    assert_eq!(stats.unsupported.load(Relaxed), 1);
    assert_eq!(stats.too_large.load(Relaxed), 1);
    assert_eq!(stats.samples_used.load(Relaxed), 2);
}

fn client() -> reqwest::Client {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
