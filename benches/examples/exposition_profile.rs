//! Runs one exposition workload a fixed number of times, for profilers that count
//! instructions (e.g. `valgrind --tool=cachegrind`): on a shared, noisy machine those
//! counts compare two versions of the parser more reliably than wall time.
//!
//! Usage: `exposition_profile [parse|walk|ingest] [iterations]`

use std::hint::black_box;

use spillway_benches::{WorkloadTotals, gateway_exposition, ingest_workloads};
use spillway_collector::exposition::parse_samples;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "parse".to_owned());
    let iterations: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    let expo = gateway_exposition(0x5b11_1a7e, 100_000);
    let bytes = expo.text.as_bytes();
    let mut totals = WorkloadTotals::new();
    let mut seen = 0u64;
    for _ in 0..iterations {
        seen += match mode.as_str() {
            "walk" => {
                parse_samples(black_box(bytes), |s| {
                    for (name, value) in s.labels() {
                        black_box((name, value));
                    }
                })
                .samples
            }
            "ingest" => {
                ingest_workloads(black_box(bytes), "gateway_requests_total", &mut totals).samples
            }
            _ => {
                parse_samples(black_box(bytes), |s| {
                    black_box(s.value);
                })
                .samples
            }
        };
    }
    println!("{mode}: {seen} samples over {iterations} iterations");
}
