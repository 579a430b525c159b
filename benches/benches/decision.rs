//! Decision cost: `engine::decide` for one workload, one tick, as the decision loop calls
//! it every second per workload, over a realistic signal store (60 s window, QPS and
//! CPU, a policy with every rule switched on).
//!
//! `cargo bench -p spillway-benches --bench decision`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spillway_collector::signal::{Signal, SignalView};
use spillway_scaler::engine::{ReplicaCounts, WorkloadState, decide};
use spillway_scaler::policy::parse_policy;

const POLICY: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: bench }
spec:
  namespaces: [bench]
  defaults:
    replicas: { min: 2, max: 200 }
    signals:
      window: 60s
      qps: { targetPerReplica: 150 }
      cpu: { targetUtilization: 0.6 }
    hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.8, upWindow: 0s, downWindow: 300s }
    limits: { up: { pods: 10, percent: 100, per: 15s }, down: { percent: 20, per: 60s } }
    panic: { window: 6s, threshold: 2.0 }
    schedules:
      - { name: peak, cron: '0 50 23 10 11 *', timezone: Asia/Shanghai, duration: 3h, minReplicas: 50 }
  apps:
    web: {}
";

/// One value per second over the last 10 minutes, as the store's ring windows hold them.
struct Windows {
    start: i64,
    qps: Vec<f64>,
    cpu: Vec<f64>,
}

impl Windows {
    fn series(&self, s: Signal) -> Option<&[f64]> {
        match s {
            Signal::Qps => Some(&self.qps),
            Signal::CpuCores => Some(&self.cpu),
            Signal::MemoryBytes => None,
        }
    }
    fn window(&self, s: Signal, now: i64, w: u32) -> Option<&[f64]> {
        let v = self.series(s)?;
        let end = usize::try_from(now - self.start + 1).ok()?.min(v.len());
        let begin = end.saturating_sub(w as usize);
        (end > begin).then(|| &v[begin..end])
    }
}

impl SignalView for Windows {
    fn mean(&self, s: Signal, now: i64, w: u32) -> Option<f64> {
        let v = self.window(s, now, w)?;
        Some(v.iter().sum::<f64>() / v.len() as f64)
    }
    fn max(&self, s: Signal, now: i64, w: u32) -> Option<f64> {
        self.window(s, now, w)?.iter().copied().reduce(f64::max)
    }
    fn newest(&self, s: Signal) -> Option<i64> {
        let v = self.series(s)?;
        Some(self.start + v.len() as i64 - 1)
    }
    fn oldest(&self, s: Signal) -> Option<i64> {
        self.series(s).map(|_| self.start)
    }
}

fn bench(c: &mut Criterion) {
    let policy = match parse_policy("bench.yaml", POLICY) {
        Ok(p) => p.apps["web"].clone(),
        Err(e) => panic!("{e}"),
    };
    let start = 1_790_000_000;
    let mut rng = spillway_benches::XorShift::new(7);
    let qps: Vec<f64> = (0..600).map(|_| 1400.0 + rng.below(200) as f64).collect();
    let cpu: Vec<f64> = (0..600)
        .map(|_| 4.0 + rng.below(100) as f64 / 100.0)
        .collect();
    let windows = Windows { start, qps, cpu };
    let now = start + 599;
    // Warm state: ten minutes of decisions already made.
    let mut warm = WorkloadState::default();
    let mut current = 10;
    for t in start..now {
        current = decide(
            &policy,
            &windows,
            ReplicaCounts {
                current,
                ready: current,
            },
            t,
            &mut warm,
        )
        .desired;
    }
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide one workload, one tick (warm state)", |b| {
        b.iter_batched_ref(
            || warm.clone(),
            |state| {
                black_box(decide(
                    &policy,
                    black_box(&windows),
                    ReplicaCounts {
                        current,
                        ready: current,
                    },
                    now,
                    state,
                ))
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
