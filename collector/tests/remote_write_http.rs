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

/// A raw request whose body trickles in: headers and the first `sent` bytes of a body
/// announced as `length`, then nothing.
async fn stalled_request(addr: &str, length: usize, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {addr}\r\nContent-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![0u8; sent]).await.unwrap();
    stream
}

async fn status_of(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut reply = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&reply[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn slow_bodies_time_out_and_bytes_in_flight_are_capped() {
    let (url, receiver, ingest) = serve(RemoteWriteConfig {
        max_body_bytes: 64 << 10,
        max_in_flight_bytes: 100 << 10,
        body_timeout: Duration::from_millis(500),
        publish_every_ms: 0,
        ..RemoteWriteConfig::default()
    })
    .await;
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1/write")
        .to_owned();
    // One slow client announcing 60 KiB holds 60 of the 100 KiB; a second one finds no
    // room and is told to retry, before a byte of its body is read.
    let mut slow = stalled_request(&addr, 60 << 10, 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = stalled_request(&addr, 60 << 10, 10).await;
    assert_eq!(
        status_of(&mut second).await,
        "HTTP/1.1 503 Service Unavailable"
    );
    // A small request still fits beside the slow one.
    let now = spillway_collector::clock::unix_ms();
    assert_eq!(post(&url, body(1.0, now - 1_000), "snappy").await.0, 204);
    assert_eq!(post(&url, body(11.0, now), "snappy").await.0, 204);
    // The slow one is cut off at the body timeout, and its room is free again.
    assert_eq!(status_of(&mut slow).await, "HTTP/1.1 408 Request Timeout");
    assert_eq!(receiver.in_flight_bytes(), 0);
    assert_eq!(
        receiver
            .stats
            .busy
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let web = WorkloadKey::new("acme", "web");
    assert_eq!(
        ingest.store().view(&web).mean(Signal::Qps, now / 1000, 1),
        Some(10.0)
    );
}
