//! Spillway's gRPC push ingest over a real loopback connection.

use std::time::Duration;

use spillway_collector::ingest::Ingest;
use spillway_collector::ingest_grpc::PushService;
use spillway_collector::store::StoreLimits;
use spillway_collector::{Signal, SignalView, WorkloadKey};
use spillway_proto::ingest::ingest_client::IngestClient;
use spillway_proto::ingest::{SampleBatch, Signal as WireSignal, WorkloadSample};

#[tokio::test]
async fn a_stream_of_batches_is_applied_and_summarised() {
    let ingest = Ingest::new(StoreLimits::default());
    let service = PushService::new(ingest.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = tokio::time::timeout(
        Duration::from_secs(5),
        IngestClient::connect(format!("http://{addr}")),
    )
    .await
    .unwrap()
    .unwrap();
    let now_ms = spillway_collector::clock::unix_ms();
    let batch = |qps: f64, offset_ms: i64| SampleBatch {
        source: "edge-agent".into(),
        timestamp_ms: now_ms + offset_ms,
        samples: vec![
            WorkloadSample {
                tenant: "acme".into(),
                app: "web".into(),
                signal: WireSignal::Qps as i32,
                value: qps,
            },
            WorkloadSample {
                tenant: "acme".into(),
                app: "web".into(),
                signal: WireSignal::MemoryBytes as i32,
                value: -1.0,
            },
        ],
    };
    let summary = tokio::time::timeout(
        Duration::from_secs(5),
        client.push(tokio_stream::iter(vec![batch(10.0, -1000), batch(30.0, 0)])),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    assert_eq!(
        (summary.batches, summary.accepted, summary.rejected),
        (2, 2, 2)
    );
    assert!(
        summary.errors[0].contains("non-negative"),
        "{:?}",
        summary.errors
    );
    let web = WorkloadKey::new("acme", "web");
    let view = ingest.store().view(&web);
    assert_eq!(view.mean(Signal::Qps, now_ms / 1000, 1), Some(30.0));
    assert_eq!(view.mean(Signal::Qps, now_ms / 1000, 2), Some(20.0));
}
