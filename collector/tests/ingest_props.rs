//! Arbitrary input to the pushed inputs' decoders and admission: remote-write bodies
//! (raw bytes, snappy-wrapped bytes, and well-formed requests with arbitrary labels,
//! timestamps and values) and push batches (raw bytes and arbitrary batches). Nothing
//! panics, every sample gets exactly one outcome, and a refused request changes nothing.
//!
//! The suite runs proptest's default number of cases; a long run sets it:
//! `PROPTEST_CASES=100000 cargo test -p spillway-collector --release --test ingest_props`.

use std::sync::Arc;

use proptest::prelude::*;
use prost::Message;
use spillway_collector::SignalView;
use spillway_collector::ingest::Ingest;
use spillway_collector::ingest_grpc::PushService;
use spillway_collector::remote_write::{
    HaConfig, RemoteWrite, RemoteWriteConfig, WriteMapping, encode_write_request,
};
use spillway_collector::resources::ResourceMapping;
use spillway_collector::store::StoreLimits;
use spillway_proto::ingest::{PushSummary, SampleBatch, WorkloadSample};
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

const NOW_MS: i64 = 1_700_000_000_000;

fn receiver() -> (Arc<RemoteWrite>, Arc<Ingest>) {
    let ingest = Ingest::new(StoreLimits::default());
    let config = RemoteWriteConfig {
        max_series: 64,
        shards: 2,
        publish_every_ms: 0,
        mapping: WriteMapping {
            resources: Some(ResourceMapping::default()),
            ..WriteMapping::default()
        },
        ha: HaConfig {
            max_clusters: 2,
            ..HaConfig::default()
        },
        ..RemoteWriteConfig::default()
    };
    (RemoteWrite::new(config, ingest.clone()), ingest)
}

/// Timestamps around now and at the extremes, where arithmetic overflows.
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => (-600_000i64..600_000).prop_map(|offset| NOW_MS + offset),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(0i64),
        1 => any::<i64>(),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..1e12f64,
        1 => Just(f64::NAN),
        1 => Just(f64::from_bits(0x7ff0_0000_0000_0002)),
        1 => Just(f64::INFINITY),
        1 => Just(-1.0),
        1 => any::<f64>(),
    ]
}

/// Label sets that hit the mapped series, HA labels and resource series often.
fn labels() -> impl Strategy<Value = Vec<Label>> {
    let name = prop_oneof![
        Just("gateway_requests_total".to_owned()),
        Just("container_cpu_usage_seconds_total".to_owned()),
        Just("container_memory_working_set_bytes".to_owned()),
        "[a-z_]{0,12}",
    ];
    let small =
        |values: &'static [&'static str]| prop::sample::select(values).prop_map(str::to_owned);
    (
        name,
        prop::option::of(small(&["acme", "beta", ""])),
        prop::option::of(small(&["web", "api", ""])),
        prop::option::of(small(&["eu-1", "us-1", "ap-1"])),
        prop::option::of(small(&["a", "b"])),
        prop::option::of("\\PC{0,16}"),
    )
        .prop_map(|(name, tenant, app, cluster, replica, pod)| {
            let mut labels = vec![Label {
                name: "__name__".into(),
                value: name,
            }];
            for (label, value) in [
                ("tenant", tenant.clone()),
                ("namespace", tenant),
                ("app", app.clone()),
                ("container", app),
                ("cluster", cluster),
                ("__replica__", replica),
                ("pod", pod),
            ] {
                if let Some(value) = value {
                    labels.push(Label {
                        name: label.into(),
                        value,
                    });
                }
            }
            labels
        })
}

fn request() -> impl Strategy<Value = WriteRequest> {
    let sample = (value(), timestamp()).prop_map(|(value, timestamp)| Sample { value, timestamp });
    let series = (labels(), prop::collection::vec(sample, 0..5))
        .prop_map(|(labels, samples)| TimeSeries { labels, samples });
    prop::collection::vec(series, 0..12).prop_map(|timeseries| WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

fn batch() -> impl Strategy<Value = SampleBatch> {
    let sample =
        ("[a-z]{0,4}", "[a-z]{0,4}", -1i32..5, value()).prop_map(|(tenant, app, signal, value)| {
            WorkloadSample {
                tenant,
                app,
                signal,
                value,
            }
        });
    (
        "[a-z]{0,4}",
        timestamp(),
        prop::collection::vec(sample, 0..8),
    )
        .prop_map(|(source, timestamp_ms, samples)| SampleBatch {
            source,
            timestamp_ms,
            samples,
        })
}

/// What reached the store (and so a decision) is finite and non-negative.
fn stored_values_are_sane(ingest: &Ingest) -> Result<(), TestCaseError> {
    let second = NOW_MS / 1000;
    for total in ingest.totals() {
        let view = ingest.store().view(&total.workload);
        for value in [
            view.max(total.signal, second + 3_600, 7_200),
            view.mean(total.signal, second + 3_600, 7_200),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(value.is_finite() && value >= 0.0, "{:?}: {}", total, value);
        }
    }
    Ok(())
}

proptest! {
    /// Raw bytes, and raw bytes behind a valid snappy frame (so they reach the protobuf
    /// reader): refused with a 4xx or accepted, never a panic; a refusal applies nothing.
    #[test]
    fn arbitrary_remote_write_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), wrap in any::<bool>()) {
        let (rw, ingest) = receiver();
        let body = if wrap {
            snap::raw::Encoder::new().compress_vec(&bytes).unwrap_or_default()
        } else {
            bytes
        };
        match rw.receive(&body, NOW_MS) {
            Ok(applied) => prop_assert_eq!(applied.accounted(), applied.samples),
            Err(error) => {
                prop_assert!((400..500).contains(&error.status_code()), "{}", error);
                prop_assert_eq!(rw.series_count(), 0);
                prop_assert!(ingest.totals().is_empty());
            }
        }
    }

    /// Well-formed requests with hostile contents: every sample has exactly one
    /// outcome, what is stored is finite and non-negative, and the table stays at its
    /// limits.
    #[test]
    fn arbitrary_write_requests_account_for_every_sample(requests in prop::collection::vec(request(), 1..4)) {
        let (rw, ingest) = receiver();
        for (index, request) in requests.iter().enumerate() {
            let applied = rw
                .receive(&encode_write_request(request), NOW_MS + index as i64 * 1_000)
                .expect("a prost-encoded request decodes");
            prop_assert_eq!(applied.accounted(), applied.samples, "{:?}", applied);
        }
        prop_assert!(rw.series_count() <= 64);
        prop_assert!(rw.ha().cluster_count() <= 2);
        stored_values_are_sane(&ingest)?;
    }

    /// Raw bytes to the push decoder, and whatever decodes applied: no panic, every
    /// sample accepted or rejected.
    #[test]
    fn arbitrary_push_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(batch) = SampleBatch::decode(bytes.as_slice()) {
            let service = PushService::new(Ingest::new(StoreLimits::default()));
            let samples = batch.samples.len() as u64;
            let mut summary = PushSummary::default();
            service.apply_batch(batch, NOW_MS, &mut summary);
            prop_assert_eq!(summary.accepted + summary.rejected, samples);
        }
    }

    /// Arbitrary batches, extreme timestamps included: every sample accepted or
    /// rejected, and only finite, non-negative values within the bounds are stored.
    #[test]
    fn arbitrary_push_batches_account_for_every_sample(batches in prop::collection::vec(batch(), 1..4)) {
        let ingest = Ingest::new(StoreLimits::default());
        let service = PushService::new(ingest.clone());
        let mut summary = PushSummary::default();
        let mut samples = 0;
        for batch in batches {
            samples += batch.samples.len() as u64;
            service.apply_batch(batch, NOW_MS, &mut summary);
        }
        prop_assert_eq!(summary.accepted + summary.rejected, samples);
        stored_values_are_sane(&ingest)?;
    }
}
