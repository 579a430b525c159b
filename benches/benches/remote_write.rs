//! Remote-write ingest throughput in samples/s on loopback, with its baselines measured
//! in the same run:
//!
//! - `http_noop`: the same bodies POSTed to a handler that reads the body and answers
//!   204 (the HTTP and transfer cost alone);
//! - `decode_only`: snappy + protobuf decode into prost's generated types (a `String`
//!   per label name and value), no HTTP;
//! - `decode_borrowed`: snappy + Spillway's zero-copy reader (what the receiver uses);
//! - `receive_in_process`: decode + per-series state + ingest, no HTTP;
//! - `http_receiver`: the real route, `POST /api/v1/write` on 127.0.0.1, 4 requests in
//!   flight (Prometheus' default is up to 50 shards; one collector core is the limit
//!   here).
//!
//! Bodies are built as Prometheus sends them: 2,000 samples per request (its default
//! `max_samples_per_send`), one sample per series, 100,000 gateway counter series over
//! 1,000 workloads; every round advances the timestamps so every sample is rated.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spillway_collector::ingest::Ingest;
use spillway_collector::remote_write::{
    self, RemoteWrite, RemoteWriteConfig, decode_borrowed, decode_write_request, decompress,
    encode_write_request,
};
use spillway_collector::store::StoreLimits;
use spillway_collector::timestamps::TimeBounds;
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

const SERIES: usize = 100_000;
const WORKLOADS: usize = 1_000;
const PER_REQUEST: usize = 2_000;
const IN_FLIGHT: usize = 4;

/// Next timestamp round (ms); shared by all benchmark functions so that every body
/// sent anywhere is newer than the last one for its series.
static ROUND_MS: AtomicI64 = AtomicI64::new(1_000_000);

fn body(block: usize, timestamp: i64) -> Vec<u8> {
    let first = block * PER_REQUEST;
    let timeseries = (first..first + PER_REQUEST)
        .map(|index| {
            let workload = index % WORKLOADS;
            let labels = [
                ("__name__", "gateway_requests_total".to_string()),
                ("app", format!("app-{}", workload % 50)),
                ("code", ["200", "404", "500", "503"][index % 4].to_string()),
                (
                    "instance",
                    format!("10.1.{}.{}:9113", (index / 4) % 250, index % 5),
                ),
                ("job", "gateway".to_string()),
                ("route", format!("/r{}", index / WORKLOADS)),
                ("tenant", format!("tenant-{}", workload / 50)),
            ];
            TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label {
                        name: name.into(),
                        value,
                    })
                    .collect(),
                samples: vec![Sample {
                    value: (timestamp / 10) as f64,
                    timestamp,
                }],
            }
        })
        .collect();
    encode_write_request(&WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

/// `count` bodies covering the series in order, a new timestamp round per full pass.
fn bodies(count: usize) -> Vec<Vec<u8>> {
    let blocks = SERIES / PER_REQUEST;
    let mut out = Vec::with_capacity(count);
    let mut round = ROUND_MS.fetch_add(1_000, Ordering::Relaxed);
    for i in 0..count {
        if i > 0 && i % blocks == 0 {
            round = ROUND_MS.fetch_add(1_000, Ordering::Relaxed);
        }
        out.push(body(i % blocks, round));
    }
    out
}

async fn post_all(client: &reqwest::Client, url: &str, bodies: Vec<Vec<u8>>) -> Duration {
    let queue = Arc::new(std::sync::Mutex::new(bodies.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let (client, url, queue) = (client.clone(), url.to_owned(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().map(|mut q| q.next()).ok().flatten();
                let Some(body) = next else { break };
                let response = client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body)
                    .send()
                    .await
                    .expect("loopback POST");
                assert_eq!(response.status().as_u16(), 204, "request refused");
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender task");
    }
    started.elapsed()
}

fn remote_write(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ingest = Ingest::new(StoreLimits::default());
    // The bodies' timestamps are synthetic (rounds from 1970 on), so the receiver's
    // clock-skew bounds are lifted; they are still checked for every sample.
    let config = RemoteWriteConfig {
        bounds: TimeBounds::UNBOUNDED,
        ..RemoteWriteConfig::default()
    };
    let receiver = RemoteWrite::new(config, ingest.clone());
    let (receiver_url, noop_url) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/api/v1/write",
            listener.local_addr().expect("addr")
        );
        let app = remote_write::router(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let noop = format!(
            "http://{}/api/v1/write",
            listener.local_addr().expect("addr")
        );
        let app = axum::Router::new().route(
            "/api/v1/write",
            post(|body: bytes::Bytes| async move {
                black_box(body.len());
                axum::http::StatusCode::NO_CONTENT
            })
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, noop)
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .expect("client");
    let sample = body(0, 0);
    eprintln!(
        "body: {PER_REQUEST} samples, {} bytes compressed",
        sample.len()
    );

    let mut group = c.benchmark_group("remote_write");
    group.throughput(Throughput::Elements(PER_REQUEST as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("decode_only", |b| {
        b.iter_custom(|iters| {
            let bodies = bodies(iters as usize);
            let started = Instant::now();
            for body in &bodies {
                black_box(decode_write_request(body, 64 << 20).expect("decodes"));
            }
            started.elapsed()
        });
    });
    group.bench_function("decode_borrowed", |b| {
        b.iter_custom(|iters| {
            let bodies = bodies(iters as usize);
            let started = Instant::now();
            for body in &bodies {
                let raw = decompress(body, 64 << 20).expect("snappy");
                black_box(decode_borrowed(&raw).expect("decodes").sample_count());
            }
            started.elapsed()
        });
    });
    group.bench_function("receive_in_process", |b| {
        b.iter_custom(|iters| {
            let bodies = bodies(iters as usize);
            let started = Instant::now();
            for body in &bodies {
                black_box(
                    receiver
                        .receive(body, spillway_collector::clock::unix_ms())
                        .expect("accepted"),
                );
            }
            started.elapsed()
        });
    });
    group.bench_function("http_noop", |b| {
        b.iter_custom(|iters| {
            let bodies = bodies(iters as usize);
            runtime.block_on(post_all(&client, &noop_url, bodies))
        });
    });
    group.bench_function("http_receiver", |b| {
        b.iter_custom(|iters| {
            let bodies = bodies(iters as usize);
            runtime.block_on(post_all(&client, &receiver_url, bodies))
        });
    });
    group.finish();
    // Every sample was newer than its series' last one, so every sample was rated (a
    // smoke run under `cargo test --benches` sends only a few bodies).
    assert_eq!(receiver.stats.out_of_order.load(Ordering::Relaxed), 0);
    assert_eq!(receiver.stats.too_old.load(Ordering::Relaxed), 0);
    assert_eq!(receiver.stats.too_new.load(Ordering::Relaxed), 0);
    assert!(receiver.series_count() <= SERIES);
    eprintln!(
        "receiver: {} series held, {} samples used, {} out of order",
        receiver.series_count(),
        receiver.stats.samples_used.load(Ordering::Relaxed),
        receiver.stats.out_of_order.load(Ordering::Relaxed)
    );
}

criterion_group!(benches, remote_write);
criterion_main!(benches);
