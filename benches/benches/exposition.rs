//! Exposition parsing, side by side on one input in one run:
//! (a) `prometheus-parse`, fed lines as its API requires;
//! (b) Spillway's `parse_samples`;
//! (c) Spillway's parse plus per-workload ingest of `gateway_requests_total`;
//! and, for the design choice of scanning labels lazily, Spillway's parse with every
//! label of every sample read.
//!
//! Throughput is in samples. `cargo test --benches` runs each once, as a smoke test.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_parse::Scrape;
use spillway_benches::{WorkloadTotals, gateway_exposition, ingest_workloads};
use spillway_collector::exposition::parse_samples;

const SEED: u64 = 0x5b11_1a7e;
const LINES: u64 = 100_000;

fn exposition(c: &mut Criterion) {
    let expo = gateway_exposition(SEED, LINES);
    let text = expo.text.as_str();
    let bytes = text.as_bytes();
    eprintln!(
        "input: {} lines, {} samples, {} bytes",
        expo.lines,
        expo.samples,
        bytes.len()
    );

    let mut group = c.benchmark_group("exposition");
    group.throughput(Throughput::Elements(expo.samples));
    // prometheus-parse takes a good fraction of a second per pass; keep the run short.
    group.sample_size(20);

    group.bench_function("prometheus_parse", |b| {
        b.iter(|| {
            // Its users must split lines and hand over owned Strings; that is part of the cost.
            let lines = text.lines().map(|l| Ok(l.to_owned()));
            let scrape = Scrape::parse(lines).expect("in-memory lines cannot fail");
            black_box(scrape.samples.len())
        })
    });

    group.bench_function("spillway_parse_samples", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let summary = parse_samples(black_box(bytes), |s| sum += s.value);
            black_box((summary.samples, sum))
        })
    });

    // Not one of the three compared: the worst case for the lazy label scan, every label
    // of every sample read once, which is what storing labels eagerly would save.
    group.bench_function("spillway_parse_walk_all_labels", |b| {
        b.iter(|| {
            let mut bytes_seen = 0usize;
            let summary = parse_samples(black_box(bytes), |s| {
                for (name, value) in s.labels() {
                    bytes_seen += name.len() + value.raw().len();
                }
            });
            black_box((summary.samples, bytes_seen))
        })
    });

    let mut totals = WorkloadTotals::new();
    group.bench_function("spillway_parse_ingest", |b| {
        b.iter(|| {
            let summary = ingest_workloads(black_box(bytes), "gateway_requests_total", &mut totals);
            black_box(summary.samples)
        })
    });
    group.finish();
    black_box(totals.len());
}

criterion_group!(benches, exposition);
criterion_main!(benches);
