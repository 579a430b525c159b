//! Memory per active series and per workload window, measured as heap bytes with a
//! counting global allocator (benches only), and 1 M series checked against 1 GiB.
//!
//! - remote-write series state (`SeriesTable`): one entry per series with its last
//!   point, its current rate and its workload group;
//! - scrape counter state (`CounterTracker`): one entry per series of one target;
//! - store windows (`Store`): one 900 s ring per (workload, signal).
//!
//! The figures are printed once; criterion then times applying one 2,000-series request
//! to a table already holding 1 M series (the steady-state cost per request).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spillway_collector::rate::CounterTracker;
use spillway_collector::remote_write::{
    Admission, SeriesLimits, SeriesTable, WriteMapping, decode_borrowed,
};
use spillway_collector::signal::{Signal, WorkloadKey};
use spillway_collector::store::{Store, StoreLimits};
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                + (new_size - layout.size());
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SERIES: usize = 1_000_000;
const WORKLOADS: usize = 10_000;
const PER_REQUEST: usize = 2_000;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Series `index` of the synthetic fleet: a gateway counter of one of 10,000 workloads,
/// split by instance, code and route as a gateway's would be.
fn series(index: usize, timestamp: i64, value: f64) -> TimeSeries {
    let workload = index % WORKLOADS;
    let labels = [
        ("__name__", "gateway_requests_total".to_string()),
        ("app", format!("app-{}", workload % 100)),
        ("code", ["200", "404", "500", "503"][index % 4].to_string()),
        (
            "instance",
            format!("10.0.{}.{}:9113", (index / 4) % 250, index % 7),
        ),
        ("route", format!("/r{}", index / (4 * WORKLOADS))),
        ("tenant", format!("tenant-{}", workload / 100)),
    ];
    TimeSeries {
        labels: labels
            .into_iter()
            .map(|(name, value)| Label {
                name: name.into(),
                value,
            })
            .collect(),
        samples: vec![Sample { value, timestamp }],
    }
}

fn request(first: usize, timestamp: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (first..first + PER_REQUEST)
            .map(|i| series(i % SERIES, timestamp, timestamp as f64))
            .collect(),
        metadata: vec![],
    }
}

fn table() -> SeriesTable {
    SeriesTable::new(
        16,
        SeriesLimits {
            max_series: 2 * SERIES,
            max_series_per_tenant: 2 * SERIES,
            max_gap_ms: 600_000,
        },
    )
}

fn memory(c: &mut Criterion) {
    let mapping = WriteMapping::default();

    // Remote-write series state for 1 M series, two points each so every series rates.
    let before = live();
    PEAK.store(before, Ordering::Relaxed);
    let rw = table();
    for timestamp in [1_000, 2_000] {
        for first in (0..SERIES).step_by(PER_REQUEST) {
            let body = prost::Message::encode_to_vec(&request(first, timestamp));
            let decoded = decode_borrowed(&body).expect("own encoding");
            black_box(rw.apply(&decoded, &mapping, &Admission::everything()));
            black_box(rw.take_updates(timestamp));
        }
    }
    let held = live() - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    eprintln!(
        "remote-write: {} series, {held} heap bytes = {:.1} bytes/series \
         (estimate {:.1}); peak while ingesting {peak} bytes ({:.1} MiB)",
        rw.series_count(),
        held as f64 / SERIES as f64,
        rw.approximate_bytes() as f64 / SERIES as f64,
        peak as f64 / (1 << 20) as f64
    );
    assert_eq!(rw.series_count(), SERIES);
    assert!(peak < 1 << 30, "1 M series must fit in 1 GiB (peak {peak})");

    // Scrape counter state: 1 M series on one target (the worst case, one big page).
    let before = live();
    let mut tracker = CounterTracker::new(60_000);
    for (scrape, at_ms) in [0, 1_000].into_iter().enumerate() {
        tracker.begin(at_ms);
        for index in 0..SERIES {
            let workload = index % WORKLOADS;
            let tenant = format!("tenant-{}", workload / 100);
            let app = format!("app-{}", workload % 100);
            tracker.observe(index as u64, &tenant, &app, scrape as f64);
        }
        black_box(tracker.finish());
    }
    let held = live() - before;
    eprintln!(
        "scrape CounterTracker: {} series, {held} heap bytes = {:.1} bytes/series",
        tracker.series_count(),
        held as f64 / SERIES as f64
    );

    // Store windows: one per workload and signal, 900 s horizon.
    let before = live();
    let store = Store::new(StoreLimits::default());
    for workload in 0..WORKLOADS {
        let key = WorkloadKey::new(
            format!("tenant-{}", workload / 100),
            format!("app-{workload}"),
        );
        for second in 0..60 {
            store
                .record(&key, Signal::Qps, second, 1.0)
                .expect("below the window limit");
        }
    }
    let held = live() - before;
    eprintln!(
        "store: {} windows ({} s), {held} heap bytes = {:.0} bytes/window (estimate {:.0})",
        store.window_count(),
        store.limits().horizon_secs,
        held as f64 / store.window_count() as f64,
        store.approximate_bytes() as f64 / store.window_count() as f64
    );

    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(PER_REQUEST as u64));
    group.sample_size(20);
    let mut timestamp = 3_000;
    let mut first = 0;
    group.bench_function("apply_2000_series_to_1m_table", |b| {
        b.iter_batched(
            || {
                let built = (
                    prost::Message::encode_to_vec(&request(first, timestamp)),
                    timestamp,
                );
                first = (first + PER_REQUEST) % SERIES;
                if first == 0 {
                    timestamp += 1_000;
                }
                built
            },
            |(body, at)| {
                let decoded = decode_borrowed(&body).expect("own encoding");
                black_box(rw.apply(&decoded, &mapping, &Admission::everything()));
                black_box(rw.take_updates(at))
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, memory);
criterion_main!(benches);
