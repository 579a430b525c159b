//! Invariants of the engine over generated policies and loads.

use crate::support::{VecSignals, app_policy};
use proptest::prelude::*;
use spillway_core::engine::{ReplicaCounts, WorkloadState, decide};
use spillway_core::hpa::{HpaView, ScaleCounts, ServeInput, hpa_proposal, serve};
use spillway_model::signal::Signal;

const T0: i64 = 1_790_000_000;

fn rc(n: u32) -> ReplicaCounts {
    ReplicaCounts {
        current: n,
        ready: n,
    }
}

/// A tiny deterministic generator, so long simulations need no large proptest inputs.
struct Lcg(u64);
impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the load, replicas, history or policy bounds: min ≤ desired ≤ max.
    #[test]
    fn output_always_within_min_and_max(
        min in 0u32..20,
        span in 0u32..60,
        loads in prop::collection::vec(0.0f64..20_000.0, 1..40),
        start in 0u32..200,
        ready_frac in 0.0f64..=1.0,
        hpa_tol in prop::sample::select(vec![0.0, 0.1]),
        panic_on in any::<bool>(),
    ) {
        let max = (min + span).max(1);
        let p = app_policy(&format!(
            "replicas: {{ min: {min}, max: {max} }}\nsignals: {{ window: 10s, qps: {{ targetPerReplica: 50 }} }}\npanic: {{ enabled: {panic_on} }}\nhpaTolerance: {hpa_tol}"
        ));
        let mut s = VecSignals::new();
        let mut st = WorkloadState::new(T0 - 10_000);
        let mut current = start;
        for (i, load) in loads.iter().enumerate() {
            let t = T0 + 15 * i as i64;
            s.fill(Signal::Qps, t - 15, t + 1, *load);
            let ready = (f64::from(current) * ready_frac) as u32;
            let d = decide(&p, &s, ReplicaCounts { current, ready }, t, &mut st);
            prop_assert!(d.desired >= min && d.desired <= max, "desired {} outside [{min}, {max}]: {}", d.desired, d.reason);
            current = d.desired;
        }
    }

    /// Once data stops (missing or stale), the count never goes down, whatever it was.
    #[test]
    fn no_scale_down_on_missing_data(
        loads in prop::collection::vec(0.0f64..5_000.0, 1..20),
        start in 1u32..100,
        gap_decisions in 1usize..30,
        cpu_too in any::<bool>(),
    ) {
        let signals = if cpu_too {
            "signals: { window: 10s, qps: { targetPerReplica: 50 }, cpu: { targetUtilization: 0.5 } }"
        } else {
            "signals: { window: 10s, qps: { targetPerReplica: 50 } }"
        };
        let p = app_policy(&format!("replicas: {{ min: 1, max: 500 }}\n{signals}\nhysteresis: {{ downWindow: 0s }}\nlimits: {{ down: {{ percent: 100, per: 1s }} }}"));
        let mut s = VecSignals::new();
        let mut st = WorkloadState::new(T0 - 10_000);
        let mut current = start;
        let mut t = T0;
        for load in &loads {
            s.fill(Signal::Qps, t - 15, t + 1, *load);
            if cpu_too {
                s.fill(Signal::CpuCores, t - 15, t + 1, *load / 100.0);
            }
            current = decide(&p, &s, rc(current), t, &mut st).desired;
            t += 15;
        }
        // The collector stops receiving anything: every later answer holds or grows.
        for _ in 0..gap_decisions {
            let d = decide(&p, &s, rc(current), t, &mut st);
            prop_assert!(d.desired >= current, "scaled down {} → {} without fresh data: {}", current, d.desired, d.reason);
            current = d.desired;
            t += 15;
        }
        // One signal keeps reporting a low value while the other is gone: still no scale-down.
        if cpu_too {
            s.fill(Signal::Qps, t - 60, t + 600, 1.0);
            for _ in 0..10 {
                let d = decide(&p, &s, rc(current), t, &mut st);
                prop_assert!(d.desired >= current, "partial data scaled down: {}", d.reason);
                current = d.desired;
                t += 15;
            }
        }
    }

    /// Stationary load whose per-second noise stays inside the band: zero scaling actions
    /// over six hours of simulated time, with the default policy (panic on, HPA tolerance).
    #[test]
    fn noise_inside_the_band_never_scales(
        replicas in 1u32..60,
        seed in any::<u64>(),
        low in 0.81f64..0.9,
        width in 0.0f64..0.09,
    ) {
        let target = 100.0;
        let p = app_policy("replicas: { min: 1, max: 200 }\nsignals: { qps: { targetPerReplica: 100 } }");
        let mut rng = Lcg(seed);
        let mut s = VecSignals::new();
        let capacity = f64::from(replicas) * target;
        let hours = 6;
        let end = T0 + hours * 3_600;
        for t in T0 - 600..=end {
            let u = low + width * rng.next_f64(); // within [0.81, 0.99] of capacity
            s.set(Signal::Qps, t, capacity * u);
        }
        let mut st = WorkloadState::new(T0 - 600);
        let mut actions = 0;
        for t in (T0..=end).step_by(15) {
            let d = decide(&p, &s, rc(replicas), t, &mut st);
            if d.desired != replicas {
                actions += 1;
                prop_assert!(false, "scaled {} → {} at +{}s: {}", replicas, d.desired, t - T0, d.reason);
            }
        }
        prop_assert_eq!(actions, 0);
    }

    /// A step up to at least the panic threshold × ready reaches the needed replicas in the
    /// first decision after the step has filled the panic window, despite a slow stable path.
    #[test]
    fn panic_step_reaches_needed_replicas_in_one_decision(
        ready in 1u32..40,
        factor in 2.0f64..8.0,
    ) {
        let target = 100.0;
        let p = app_policy(
            "replicas: { min: 1, max: 1000 }\nsignals: { qps: { targetPerReplica: 100 } }\nhysteresis: { upWindow: 300s }\nlimits: { up: { pods: 1, per: 60s } }\npanic: { window: 6s, threshold: 2.0 }",
        );
        let mut s = VecSignals::new();
        let base = f64::from(ready) * target * 0.9;
        s.fill(Signal::Qps, T0 - 600, T0, base);
        let mut st = WorkloadState::new(T0 - 600);
        let d = decide(&p, &s, rc(ready), T0 - 1, &mut st);
        prop_assert_eq!(d.desired, ready);
        let step = f64::from(ready) * target * factor;
        s.fill(Signal::Qps, T0, T0 + 60, step);
        let needed = (step / target - 1e-9).ceil() as u32;
        let d = decide(&p, &s, rc(ready), T0 + 5, &mut st); // the 6 s window now holds only the step
        prop_assert!(d.desired >= needed, "needed {needed}, got {}: {}", d.desired, d.reason);
    }

    /// Scale-down is never faster than `limits.down` (HPA semantics: from the count at
    /// the start of each period).
    #[test]
    fn scale_down_never_faster_than_the_limit(
        loads in prop::collection::vec(0.0f64..10_000.0, 10..80),
        percent in 1u32..=100,
        period_steps in 1i64..8,
        start in 1u32..200,
    ) {
        let period = 15 * period_steps;
        let p = app_policy(&format!(
            "replicas: {{ min: 1, max: 300 }}\nsignals: {{ window: 15s, qps: {{ targetPerReplica: 50 }} }}\nhysteresis: {{ downWindow: 0s }}\nlimits: {{ down: {{ percent: {percent}, per: {period}s }} }}\nhpaTolerance: 0"
        ));
        let mut s = VecSignals::new();
        let mut st = WorkloadState::new(T0 - 10_000);
        let mut history: Vec<(i64, u32)> = vec![(T0 - 15, start)];
        let mut current = start;
        for (i, load) in loads.iter().enumerate() {
            let t = T0 + 15 * i as i64;
            s.fill(Signal::Qps, t - 15, t + 1, *load);
            let d = decide(&p, &s, rc(current), t, &mut st);
            // The count at the start of the period: the last answer at or before t − period.
            let at_start = history.iter().rev().find(|(h, _)| *h <= t - period).map_or(start, |(_, r)| *r);
            let floor = (f64::from(at_start) * (1.0 - f64::from(percent) / 100.0)) as u32;
            prop_assert!(
                d.desired >= floor.min(current) || d.desired >= current,
                "at +{}s: {} → {} but the period started at {} (floor {}): {}",
                t - T0, current, d.desired, at_start, floor, d.reason
            );
            current = d.desired;
            history.push((t, current));
        }
    }

    /// With the HPA's 10 % tolerance in force, every served number is one the HPA
    /// applies as is, or one it answers with `status.replicas` because no larger step is
    /// allowed or the change is a scale-down: the count that runs next is always what
    /// the HPA makes of the answer, by its own rule (replica_calculator.go
    /// GetExternalPerPodMetricReplicas).
    #[test]
    fn no_change_the_hpa_would_swallow(
        loads in prop::collection::vec(0.0f64..50_000.0, 5..60),
        start in 1u32..300,
    ) {
        let p = app_policy(
            "replicas: { min: 1, max: 400 }\nsignals: { window: 15s, qps: { targetPerReplica: 100 } }\nhysteresis: { downWindow: 30s }\nhpaTolerance: 0.1",
        );
        let tolerance = HpaView::from_policy(&p).tolerance;
        let mut s = VecSignals::new();
        let mut st = WorkloadState::new(T0 - 10_000);
        let mut current = start;
        for (i, load) in loads.iter().enumerate() {
            let t = T0 + 15 * i as i64;
            s.fill(Signal::Qps, t - 15, t + 1, *load);
            let d = decide(&p, &s, rc(current), t, &mut st);
            let served = serve(
                ServeInput { replicas: d.desired, ceiling: d.ceiling, scale: ScaleCounts::settled(current) },
                tolerance,
            );
            st.record_served(t, current, served.expected);
            let applied = hpa_proposal(served.replicas, current, tolerance);
            prop_assert_eq!(applied, served.expected, "the served function predicts the HPA");
            if d.desired > current {
                if applied == current {
                    // Swallowed only when no count up to the ceiling would be applied.
                    let reachable = (d.desired..=d.ceiling)
                        .find(|&n| hpa_proposal(n, current, tolerance) == n);
                    prop_assert!(
                        reachable.is_none(),
                        "{} → {} swallowed although {:?} was allowed: {}",
                        current, d.desired, reachable, d.reason
                    );
                } else {
                    prop_assert!(applied >= d.desired && applied <= d.ceiling);
                }
            }
            current = applied;
        }
    }
}
