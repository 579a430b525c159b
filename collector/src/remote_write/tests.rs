use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

use super::*;
use crate::signal::{SignalView, WorkloadKey};
use crate::store::StoreLimits;

fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    let mut all = vec![Label {
        name: "__name__".into(),
        value: name.into(),
    }];
    all.extend(labels.iter().map(|(n, v)| Label {
        name: (*n).into(),
        value: (*v).into(),
    }));
    TimeSeries {
        labels: all,
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
    }
}

fn requests(instance: &str, samples: &[(i64, f64)]) -> TimeSeries {
    series(
        "gateway_requests_total",
        &[("app", "web"), ("instance", instance), ("tenant", "acme")],
        samples,
    )
}

fn body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    encode_write_request(&WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

fn receiver(config: RemoteWriteConfig) -> (Arc<RemoteWrite>, Arc<Ingest>) {
    let ingest = Ingest::new(StoreLimits::default());
    (RemoteWrite::new(config, ingest.clone()), ingest)
}

fn qps(ingest: &Ingest, second: i64) -> Option<f64> {
    let web = WorkloadKey::new("acme", "web");
    ingest.store().view(&web).mean(Signal::Qps, second, 1)
}

#[test]
fn counters_become_rates_summed_over_series_and_senders_batches() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    rw.receive(&body(vec![requests("a", &[(10_000, 100.0)])]), 10_000)
        .unwrap();
    assert_eq!(qps(&ingest, 10), None, "one point is not a rate yet");
    rw.receive(
        &body(vec![
            requests("a", &[(15_000, 150.0), (20_000, 200.0)]),
            requests("b", &[(20_000, 7.0)]),
        ]),
        20_000,
    )
    .unwrap();
    assert_eq!(qps(&ingest, 20), Some(10.0));
    rw.receive(&body(vec![requests("b", &[(25_000, 57.0)])]), 25_000)
        .unwrap();
    assert_eq!(qps(&ingest, 25), Some(20.0));
}

#[test]
fn a_reset_counts_the_new_value_and_stale_markers_end_a_series() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    rw.receive(
        &body(vec![requests("a", &[(0, 1_000.0), (10_000, 20.0)])]),
        10_000,
    )
    .unwrap();
    assert_eq!(qps(&ingest, 10), Some(2.0));
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    rw.receive(&body(vec![requests("a", &[(11_000, stale)])]), 11_000)
        .unwrap();
    assert_eq!(rw.series_count(), 0);
    let web = WorkloadKey::new("acme", "web");
    assert!(
        ingest
            .store()
            .view(&web)
            .mean(Signal::Qps, 11, 1)
            .is_none_or(|v| v == 2.0),
        "an ended series withdraws its contribution instead of reading as zero traffic"
    );
}

#[test]
fn out_of_order_samples_are_counted_not_rated() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    rw.receive(
        &body(vec![requests("a", &[(0, 0.0), (2_000, 20.0)])]),
        2_000,
    )
    .unwrap();
    let applied = rw
        .receive(&body(vec![requests("a", &[(1_000, 5.0)])]), 2_000)
        .unwrap();
    assert_eq!(applied.out_of_order, 1);
    assert_eq!(qps(&ingest, 2), Some(10.0));
}

#[test]
fn bad_bodies_are_refused_and_lose_nothing() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    rw.receive(&body(vec![requests("a", &[(0, 0.0)])]), 0)
        .unwrap();
    let good = body(vec![requests("a", &[(10_000, 100.0)])]);
    for bad in [
        &good[..good.len() / 2],
        b"not snappy at all".as_slice(),
        &[],
    ] {
        if bad.is_empty() {
            continue;
        }
        let error = rw.receive(bad, 5_000).unwrap_err();
        assert_eq!(error.status_code(), 400, "{error}");
    }
    assert_eq!(rw.stats.bad_requests.load(Ordering::Relaxed), 2);
    rw.receive(&good, 10_000).unwrap();
    assert_eq!(qps(&ingest, 10), Some(10.0));
}

#[test]
fn the_series_limit_drops_new_series_and_counts_them() {
    let config = RemoteWriteConfig {
        max_series: 2,
        shards: 1,
        ..RemoteWriteConfig::default()
    };
    let (rw, _ingest) = receiver(config);
    let applied = rw
        .receive(
            &body(vec![
                requests("a", &[(0, 1.0)]),
                requests("b", &[(0, 1.0)]),
                requests("c", &[(0, 1.0), (1, 2.0)]),
            ]),
            0,
        )
        .unwrap();
    assert_eq!(applied.dropped_series, 1);
    assert_eq!(applied.dropped, 2);
    assert_eq!(rw.series_count(), 2);
    assert_eq!(rw.stats.samples_dropped.load(Ordering::Relaxed), 2);
}

#[test]
fn cadvisor_series_roll_up_into_cpu_and_memory() {
    let config = RemoteWriteConfig {
        mapping: WriteMapping {
            resources: Some(ResourceMapping::default()),
            ..WriteMapping::default()
        },
        ..RemoteWriteConfig::default()
    };
    let (rw, ingest) = receiver(config);
    let cpu = |pod: &str, samples: &[(i64, f64)]| {
        series(
            "container_cpu_usage_seconds_total",
            &[("container", "web"), ("namespace", "acme"), ("pod", pod)],
            samples,
        )
    };
    let memory = |pod: &str, bytes: f64| {
        series(
            "container_memory_working_set_bytes",
            &[("container", "web"), ("namespace", "acme"), ("pod", pod)],
            &[(4_000, bytes)],
        )
    };
    rw.receive(
        &body(vec![
            cpu("web-7d9f-aaaaa", &[(0, 10.0), (4_000, 12.0)]),
            cpu("web-7d9f-bbbbb", &[(0, 10.0), (4_000, 11.0)]),
            memory("web-7d9f-aaaaa", 3e8),
            memory("web-7d9f-bbbbb", 1e8),
        ]),
        4_000,
    )
    .unwrap();
    let web = WorkloadKey::new("acme", "web");
    let view = ingest.store().view(&web);
    assert_eq!(view.mean(Signal::CpuCores, 4, 1), Some(0.75));
    assert_eq!(view.mean(Signal::MemoryBytes, 4, 1), Some(4e8));
}

#[test]
fn silent_series_are_swept_after_the_gap() {
    let config = RemoteWriteConfig {
        max_gap_ms: 10_000,
        ..RemoteWriteConfig::default()
    };
    let (rw, _ingest) = receiver(config);
    rw.receive(&body(vec![requests("a", &[(0, 1.0)])]), 0)
        .unwrap();
    rw.receive(&body(vec![requests("b", &[(30_000, 1.0)])]), 30_000)
        .unwrap();
    assert_eq!(rw.series_count(), 1);
}
