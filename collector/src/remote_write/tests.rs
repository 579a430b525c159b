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

#[test]
fn samples_outside_the_time_bounds_are_refused_and_counted() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    let now = 1_700_000_000_000;
    rw.receive(&body(vec![requests("a", &[(now - 1_000, 0.0)])]), now)
        .unwrap();
    let applied = rw
        .receive(
            &body(vec![requests(
                "a",
                &[
                    (i64::MIN, 5.0),
                    (-1, 5.0),
                    (now - 5 * 60_000 - 1, 5.0),
                    (now + 60_001, 1e12),
                    (i64::MAX, 1e12),
                ],
            )]),
            now,
        )
        .unwrap();
    assert_eq!((applied.too_old, applied.too_new, applied.used), (3, 2, 0));
    // A series whose samples are all out of bounds takes no place in the table.
    let applied = rw
        .receive(&body(vec![requests("b", &[(i64::MAX, 1.0)])]), now)
        .unwrap();
    assert_eq!(applied.too_new, 1);
    assert_eq!(rw.series_count(), 1);
    // The refused samples left the series as it was: the next good one rates against
    // the last good point.
    rw.receive(&body(vec![requests("a", &[(now, 10.0)])]), now)
        .unwrap();
    rw.publish_now(now);
    assert_eq!(qps(&ingest, now / 1000), Some(10.0));
    assert_eq!(rw.stats.too_old.load(Ordering::Relaxed), 3);
    assert_eq!(rw.stats.too_new.load(Ordering::Relaxed), 3);
}

#[test]
fn negative_and_nan_values_are_refused_and_keep_the_series() {
    let config = RemoteWriteConfig {
        mapping: WriteMapping {
            resources: Some(ResourceMapping::default()),
            ..WriteMapping::default()
        },
        ..RemoteWriteConfig::default()
    };
    let (rw, ingest) = receiver(config);
    let memory = |at: i64, bytes: f64| {
        series(
            "container_memory_working_set_bytes",
            &[
                ("container", "web"),
                ("namespace", "acme"),
                ("pod", "web-7d9f-aaaaa"),
            ],
            &[(at, bytes)],
        )
    };
    rw.receive(&body(vec![requests("a", &[(0, 1e9)]), memory(0, 3e8)]), 0)
        .unwrap();
    let applied = rw
        .receive(
            &body(vec![
                requests("a", &[(1_000, f64::NAN), (2_000, -5.0)]),
                memory(1_000, -1.0),
                memory(2_000, f64::INFINITY),
            ]),
            2_000,
        )
        .unwrap();
    assert_eq!((applied.invalid_value, applied.used), (4, 0));
    assert_eq!(rw.series_count(), 2, "a NaN is not an end of the series");
    rw.receive(&body(vec![requests("a", &[(4_000, 1e9 + 400.0)])]), 4_000)
        .unwrap();
    // 400 requests over the 4 s since the last good point, not a reset to 10⁹.
    assert_eq!(qps(&ingest, 4), Some(100.0));
    let web = WorkloadKey::new("acme", "web");
    assert_eq!(
        ingest.store().view(&web).mean(Signal::MemoryBytes, 0, 1),
        Some(3e8)
    );
    assert_eq!(rw.stats.invalid_value.load(Ordering::Relaxed), 4);
}

fn replica(instance: &str, name: &str, samples: &[(i64, f64)]) -> TimeSeries {
    series(
        "gateway_requests_total",
        &[
            ("__replica__", name),
            ("app", "web"),
            ("cluster", "eu-1"),
            ("instance", instance),
            ("tenant", "acme"),
        ],
        samples,
    )
}

#[test]
fn an_ha_pair_counts_once_and_fails_over_after_the_timeout() {
    let config = RemoteWriteConfig {
        ha: HaConfig {
            failover_timeout_ms: 10_000,
            ..HaConfig::default()
        },
        ..RemoteWriteConfig::default()
    };
    let (rw, ingest) = receiver(config);
    // Both replicas scrape the same gateway counter (100/s), a little apart.
    for at in [0, 5_000, 10_000] {
        let value = at as f64 / 10.0;
        rw.receive(&body(vec![replica("gw-0", "a", &[(at, value)])]), at)
            .unwrap();
        let applied = rw
            .receive(
                &body(vec![replica("gw-0", "b", &[(at + 200, value + 20.0)])]),
                at + 200,
            )
            .unwrap();
        assert_eq!(applied.ha_not_elected, 1);
    }
    assert_eq!(qps(&ingest, 10), Some(100.0), "not doubled");
    assert_eq!(rw.ha().elected("eu-1").as_deref(), Some("a"));
    assert_eq!(rw.series_count(), 1);

    // `a` stops. `b` is refused until `a` has been silent for the timeout, then
    // elected, and continues the same series: its first sample already has a rate.
    let applied = rw
        .receive(
            &body(vec![replica("gw-0", "b", &[(15_200, 1_540.0)])]),
            15_200,
        )
        .unwrap();
    assert_eq!(applied.ha_not_elected, 1);
    let applied = rw
        .receive(
            &body(vec![replica("gw-0", "b", &[(20_200, 2_040.0)])]),
            20_200,
        )
        .unwrap();
    assert_eq!((applied.ha_not_elected, applied.used), (0, 1));
    assert_eq!(rw.ha().elected("eu-1").as_deref(), Some("b"));
    assert_eq!(rw.ha().failovers(), 1);
    assert_eq!(rw.series_count(), 1);
    // (2,040 - 1,000) requests over the 10.2 s since `a`'s last sample (the store
    // keeps `f32`).
    let rate = qps(&ingest, 20).unwrap();
    assert!((rate - 1_040.0 / 10.2).abs() < 1e-4, "{rate}");
    assert_eq!(rw.stats.ha_not_elected.load(Ordering::Relaxed), 4);
}

#[test]
fn series_without_both_ha_labels_are_not_deduplicated() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    let lone = |name: &str, samples: &[(i64, f64)]| {
        series(
            "gateway_requests_total",
            &[("__replica__", name), ("app", "web"), ("tenant", "acme")],
            samples,
        )
    };
    rw.receive(
        &body(vec![
            lone("a", &[(0, 0.0), (1_000, 10.0)]),
            lone("b", &[(0, 0.0), (1_000, 10.0)]),
        ]),
        1_000,
    )
    .unwrap();
    // As Mimir: without a cluster label the replicas are two senders, summed.
    assert_eq!(qps(&ingest, 1), Some(20.0));
    assert_eq!(rw.ha().cluster_count(), 0);
}

#[test]
fn a_tenant_holds_at_most_its_quota_of_series_and_others_keep_theirs() {
    // The table's limit is enforced per shard (its share of `max_series`), and series
    // hash to shards with a random key: the limit is set well above the quota, so a
    // shard's share never fills before the tenant's quota does.
    let (rw, ingest) = receiver(RemoteWriteConfig {
        max_series: 2_000,
        max_series_per_tenant: 30,
        ..RemoteWriteConfig::default()
    });
    let pods = |tenant: &str, n: usize, timestamp: i64| {
        (0..n)
            .map(|i| {
                series(
                    "gateway_requests_total",
                    &[
                        ("app", "web"),
                        ("pod", &format!("p{i}")),
                        ("tenant", tenant),
                    ],
                    &[(timestamp, 10.0 * timestamp as f64 / 1000.0)],
                )
            })
            .collect::<Vec<_>>()
    };
    let applied = rw.receive(&body(pods("noisy", 500, 1_000)), 1_000).unwrap();
    assert_eq!(rw.table().tenant_series("noisy"), 30);
    assert_eq!(applied.dropped_tenant_quota, 470, "{applied:?}");
    assert_eq!(applied.accounted(), applied.samples);
    // acme still gets its series in, and its rate.
    rw.receive(&body(pods("acme", 3, 1_000)), 1_000).unwrap();
    rw.receive(&body(pods("acme", 3, 2_000)), 2_000).unwrap();
    assert_eq!(rw.table().tenant_series("acme"), 3);
    assert_eq!(qps(&ingest, 2), Some(30.0));
}

#[test]
fn workloads_whose_series_all_went_free_their_tables() {
    let (rw, ingest) = receiver(RemoteWriteConfig {
        max_gap_ms: 10_000,
        publish_every_ms: 0,
        ..RemoteWriteConfig::default()
    });
    let workload = |app: usize, timestamp: i64| {
        series(
            "gateway_requests_total",
            &[("app", &format!("app-{app}")), ("tenant", "acme")],
            &[(timestamp, 1.0)],
        )
    };
    // A thousand short-lived workloads, a hundred at a time, each silent afterwards.
    for round in 0..10 {
        let at = round * 20_000;
        let batch = (0..100)
            .map(|i| workload(round as usize * 100 + i, at))
            .collect();
        rw.receive(&body(batch), at).unwrap();
        rw.maybe_sweep(at + 15_000);
        rw.publish_now(at + 15_000);
    }
    rw.maybe_sweep(300_000);
    rw.publish_now(300_000);
    assert_eq!(rw.series_count(), 0);
    assert_eq!(rw.table().group_counts(), (0, 0));
    assert_eq!(ingest.contributions_sources(), 0);
}

struct TenantGate(&'static str);

impl crate::write_scope::WriteGate for TenantGate {
    fn check(&self, tenant: &str, app: &str) -> Result<(), crate::write_scope::WriteDenied> {
        use crate::write_scope::WriteDenied;
        if tenant != self.0 {
            Err(WriteDenied::TenantNotAllowed)
        } else if app != "web" {
            Err(WriteDenied::UnknownWorkload)
        } else {
            Ok(())
        }
    }
}

fn scope(writer: &str, tenant: &'static str) -> WriteScope {
    WriteScope {
        writer: writer.into(),
        gate: Some(Arc::new(TenantGate(tenant))),
    }
}

#[test]
fn a_writer_is_held_to_its_tenants_and_refused_series_take_no_place() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    let other_tenant = |samples: &[(i64, f64)]| {
        series(
            "gateway_requests_total",
            &[("app", "web"), ("instance", "a"), ("tenant", "globex")],
            samples,
        )
    };
    let unknown_app = |samples: &[(i64, f64)]| {
        series(
            "gateway_requests_total",
            &[("app", "ghost"), ("instance", "a"), ("tenant", "acme")],
            samples,
        )
    };
    let agent = scope("agent-acme", "acme");
    let applied = rw
        .receive_as(
            &body(vec![
                requests("a", &[(10_000, 100.0)]),
                other_tenant(&[(10_000, 1.0), (10_500, 2.0)]),
                unknown_app(&[(10_000, 1.0)]),
            ]),
            10_000,
            Some(&agent),
        )
        .unwrap();
    assert_eq!(applied.used, 1);
    assert_eq!(applied.tenant_not_allowed, 2);
    assert_eq!(applied.unknown_workload, 1);
    assert_eq!(applied.accounted(), applied.samples);
    assert_eq!(rw.series_count(), 1, "refused series hold no state");
    assert_eq!(rw.stats.tenant_not_allowed.load(Ordering::Relaxed), 2);
    rw.publish_now(10_000);
    assert!(
        ingest
            .totals()
            .iter()
            .all(|total| &*total.workload.tenant == "acme"),
        "nothing of globex reached the store"
    );
}

#[test]
fn two_writers_sending_the_same_labels_keep_two_series() {
    let (rw, ingest) = receiver(RemoteWriteConfig::default());
    let first = scope("agent-1", "acme");
    let second = scope("agent-2", "acme");
    rw.receive_as(
        &body(vec![requests("a", &[(10_000, 100.0)])]),
        10_000,
        Some(&first),
    )
    .unwrap();
    rw.receive_as(
        &body(vec![requests("a", &[(20_000, 200.0)])]),
        20_000,
        Some(&first),
    )
    .unwrap();
    rw.publish_now(20_000);
    assert_eq!(qps(&ingest, 20), Some(10.0));
    // The second writer copies the first one's labels with a counter far below: were
    // the series shared, this would read as a reset and replace the first one's rate.
    let applied = rw
        .receive_as(
            &body(vec![requests("a", &[(21_000, 0.0)])]),
            21_000,
            Some(&second),
        )
        .unwrap();
    assert_eq!(applied.used, 1);
    assert_eq!(rw.series_count(), 2);
    rw.receive_as(
        &body(vec![requests("a", &[(30_000, 300.0)])]),
        30_000,
        Some(&first),
    )
    .unwrap();
    rw.publish_now(30_000);
    assert_eq!(
        qps(&ingest, 30),
        Some(10.0),
        "the first writer's rate is intact"
    );
}
