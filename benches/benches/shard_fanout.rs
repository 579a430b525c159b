//! Sharded collectors: what one poll and one merge cost, with the unsharded path
//! measured in the same run as the baseline.
//!
//! - `snapshot_loopback`: one `Shard/Snapshot` call over gRPC on 127.0.0.1 to a shard
//!   holding 10,000 workloads × 3 signals (what a scaler pays per shard per tick);
//! - `merge_and_ingest_3_shards`: the scaler's tick: merge three such answers and
//!   record the 30,000 sums into the store;
//! - `ingest_unsharded` (baseline): recording the same 30,000 sums from one source with
//!   no merge, as a scaler that scrapes for itself does.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use prost::Message;
use spillway_collector::ingest::Ingest;
use spillway_collector::shard::merge::{Answer, ShardAnswers, merge};
use spillway_collector::shard::{ShardServer, ShardSpec};
use spillway_collector::signal::{Signal, WorkloadKey};
use spillway_collector::store::StoreLimits;
use spillway_proto::shard::SnapshotRequest;
use spillway_proto::shard::shard_client::ShardClient;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

const WORKLOADS: usize = 10_000;
const SHARDS: usize = 3;

fn workloads() -> Vec<WorkloadKey> {
    (0..WORKLOADS)
        .map(|i| WorkloadKey::new(format!("tenant-{}", i / 100), format!("app-{}", i % 100)))
        .collect()
}

fn shard_totals(keys: &[WorkloadKey], shard: usize) -> Vec<(WorkloadKey, Signal, f64)> {
    keys.iter()
        .enumerate()
        .flat_map(|(i, key)| {
            let base = (i + shard) as f64;
            [
                (key.clone(), Signal::Qps, 10.0 + base),
                (key.clone(), Signal::CpuCores, 0.5 + base / 1000.0),
                (key.clone(), Signal::MemoryBytes, 1e8 + base),
            ]
        })
        .collect()
}

fn limits() -> StoreLimits {
    StoreLimits {
        horizon_secs: 900,
        max_windows: 100_000,
        max_windows_per_tenant: 100_000,
    }
}

fn snapshot(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let keys = workloads();
    let ingest = Ingest::new(limits());
    let source: Arc<str> = "gw".into();
    for signal in Signal::ALL {
        let values = shard_totals(&keys, 0)
            .into_iter()
            .filter(|(_, s, _)| *s == signal)
            .map(|(k, _, v)| (k, v))
            .collect();
        ingest.apply(&source, signal, values, 1_000_000);
    }
    let spec = ShardSpec::new(0, 1).expect("shard");
    let server = ShardServer::new(spec, ingest, Arc::new(DashMap::new()), 0);
    let request = SnapshotRequest {
        expected_index: 0,
        expected_count: 1,
    };
    let size = server
        .snapshot(&request, 1_000_000)
        .expect("snapshot")
        .encoded_len();
    eprintln!(
        "shard_fanout: a snapshot of {WORKLOADS} workloads x 3 signals is {size} bytes ({:.1} per total)",
        size as f64 / (3 * WORKLOADS) as f64
    );
    let url = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server.into_service())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        url
    });
    let client = runtime.block_on(async {
        ShardClient::connect(url)
            .await
            .expect("connect")
            .max_decoding_message_size(64 << 20)
    });
    let mut group = c.benchmark_group("shard_fanout");
    group.throughput(Throughput::Elements((3 * WORKLOADS) as u64));
    group.bench_function("snapshot_loopback", |b| {
        b.iter(|| {
            let mut client = client.clone();
            let response = runtime
                .block_on(client.snapshot(request))
                .expect("snapshot answered");
            black_box(response.into_inner().totals.len())
        })
    });
    group.finish();
}

fn merge_and_ingest(c: &mut Criterion) {
    let keys = workloads();
    let answers: Vec<ShardAnswers> = (0..SHARDS)
        .map(|shard| ShardAnswers {
            latest: Some(Answer {
                at_ms: 1_000_000,
                totals: shard_totals(&keys, shard),
            }),
        })
        .collect();
    let mut group = c.benchmark_group("shard_fanout");
    group.throughput(Throughput::Elements((3 * WORKLOADS) as u64));

    let ingest = Ingest::new(limits());
    let complete: Arc<str> = "collectors".into();
    let partial: Arc<str> = "collectors/lower-bound".into();
    let mut now_ms = 1_000_000;
    group.bench_function("merge_and_ingest_3_shards", |b| {
        b.iter(|| {
            now_ms += 1_000;
            let mut merged = merge(&answers, now_ms, i64::MAX / 2);
            for signal in Signal::ALL {
                let sums = merged.sums.remove(&signal).unwrap_or_default();
                ingest.apply_sums(&complete, signal, sums, now_ms, true);
                let lower = merged.lower_bounds.remove(&signal).unwrap_or_default();
                ingest.apply_sums(&partial, signal, lower, now_ms, false);
            }
        })
    });

    let merged = merge(&answers, 1_000_000, i64::MAX / 2);
    let ingest = Ingest::new(limits());
    let source: Arc<str> = "gateway".into();
    let mut now_ms = 1_000_000;
    group.bench_function("ingest_unsharded", |b| {
        b.iter(|| {
            now_ms += 1_000;
            for signal in Signal::ALL {
                let sums = merged.sums.get(&signal).cloned().unwrap_or_default();
                ingest.apply(&source, signal, sums, now_ms);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, snapshot, merge_and_ingest);
criterion_main!(benches);
