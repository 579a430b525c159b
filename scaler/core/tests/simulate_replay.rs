//! `simulate` on traces small enough to check by hand, and on the committed NASA slice.

use crate::support::bare_qps;
use spillway_core::simulate::trace::{self, AzurePick, Trace, TraceFormat};
use spillway_core::simulate::{Report, Totals, World, simulate};

/// 60 s at 10 req/s, then 60 s at 30 req/s; one replica serves 10 req/s.
fn step_trace() -> Trace {
    let mut rps = vec![10.0; 60];
    rps.extend([30.0; 60]);
    Trace {
        rps,
        description: "step".into(),
    }
}

fn totals(report: &Report, name: &str) -> Totals {
    match report.run(name) {
        Some(r) => r.totals,
        None => panic!("no run {name} in {report}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Every figure below follows from the model (pods Ready 10 s after binding on a regular
/// node, the HPA every 15 s, KEDA polling every 30 s, 60 s metric window):
///
/// - Spillway (10 s window, no stabilization, HPA pass-through) sees the step at once:
///   at the 60 s sync the window mean is (9×10 + 30)/10 = 12 → 2 replicas (Ready at 70),
///   at 75 it is 30 → 3 (Ready at 85). Short: 2×10 + 1×15 = 35 replica-seconds.
/// - HPA: at 60 the 60 s mean is 10.33 (within tolerance), at 75 it is 15.33 → 2 (Ready
///   at 85), at 90 20.33 is within 10 % of 2×10, at 105 25.33 → 3 (Ready at 115).
///   Short: 2×25 + 1×30 = 80.
/// - KEDA: the value polled at 60 (10.33) still holds at 75; the poll at 90 reads 20.33
///   → 3 at once (the up limit is max(+4, ×2)), Ready at 100. Short: 2×40 = 80.
/// - Fixed at peak: 3 replicas throughout, never short, 2×60 over.
#[test]
fn a_step_is_scored_as_computed_by_hand() {
    let policy = bare_qps("signals: { window: 10s, qps: { targetPerReplica: 10 } }");
    let world = World::new(10.0);
    let report = match simulate(&policy, &step_trace(), &world) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    println!("{report}");
    assert_eq!(report.seconds, 120);

    let s = totals(&report, "Spillway");
    assert!(close(s.under_replica_seconds, 35.0), "{s:?}");
    assert!(close(s.over_replica_seconds, 0.0), "{s:?}");
    assert_eq!((s.actions, s.peak_replicas), (2, 3));
    // 1 pod for 60 s, 2 for 15 s, 3 for 45 s.
    assert!(
        close(s.regular_replica_hours, (60.0 + 30.0 + 135.0) / 3600.0),
        "{s:?}"
    );
    assert!(close(s.burst_replica_hours, 0.0));

    let h = totals(&report, "HPA (defaults)");
    assert!(close(h.under_replica_seconds, 80.0), "{h:?}");
    assert!(close(h.over_replica_seconds, 0.0), "{h:?}");
    assert_eq!((h.actions, h.peak_replicas), (2, 3));
    assert!(
        close(h.regular_replica_hours, (75.0 + 60.0 + 45.0) / 3600.0),
        "{h:?}"
    );

    let k = totals(&report, "KEDA Prometheus + HPA");
    assert!(close(k.under_replica_seconds, 80.0), "{k:?}");
    assert_eq!((k.actions, k.peak_replicas), (1, 3));
    assert!(
        close(k.regular_replica_hours, (90.0 + 90.0) / 3600.0),
        "{k:?}"
    );

    let f = totals(&report, "Fixed at peak");
    assert!(close(f.under_replica_seconds, 0.0), "{f:?}");
    assert!(close(f.over_replica_seconds, 120.0), "{f:?}");
    assert_eq!((f.actions, f.peak_replicas), (0, 3));
    let price = world.cost.regular_per_replica_second;
    assert!(close(f.cost, 360.0 * price), "{f:?}");
    assert!(close(f.regular_replica_hours, 0.1));
}

/// A regular pool that holds 2 replicas: the third goes to the virtual node, is Ready 30 s
/// after binding, and is billed at the burst price.
#[test]
fn replicas_beyond_the_regular_pool_burst_and_cost_more() {
    let policy = bare_qps(
        "signals: { window: 10s, qps: { targetPerReplica: 10 } }\nplacement: { requests: { cpu: \"2\", memory: 1Gi } }",
    );
    let mut world = World::new(10.0);
    world.regular_nodes = 1;
    let trace = Trace {
        rps: vec![30.0; 120],
        description: "flat".into(),
    };
    let report = match simulate(&policy, &trace, &world) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let f = totals(&report, "Fixed at peak");
    assert!(close(f.regular_replica_hours, 240.0 / 3600.0), "{f:?}");
    assert!(close(f.burst_replica_hours, 120.0 / 3600.0), "{f:?}");
    let cost =
        240.0 * world.cost.regular_per_replica_second + 120.0 * world.cost.burst_per_replica_second;
    assert!(close(f.cost, cost), "{f:?}");
    // All start settled, so nobody is short on a flat trace.
    for run in &report.runs {
        assert!(
            close(run.totals.under_replica_seconds, 0.0),
            "{}: {:?}",
            run.name,
            run.totals
        );
    }
}

#[test]
fn a_policy_without_qps_is_refused() {
    let policy = crate::support::app_policy(
        "signals: { cpu: { targetUtilization: 0.5 } }\nplacement: { requests: { cpu: 500m, memory: 1Gi } }",
    );
    let err = simulate(&policy, &step_trace(), &World::new(10.0)).unwrap_err();
    assert!(err.to_string().contains("no qps signal"), "{err}");
}

/// On the committed six hours of NASA traffic (×60), Spillway with a sensible policy is
/// short less often and acts less often than the HPA with its defaults.
#[test]
fn nasa_slice_spillway_beats_the_hpa() {
    let text = include_str!("../../../tests/data/nasa_http_1995_slice_6h.csv");
    let trace = match trace::parse(text, TraceFormat::Auto, &AzurePick::Sum) {
        Ok(t) => t.scaled(60.0),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        trace.rps.len(),
        6 * 3600,
        "the slice starts at its first minute"
    );
    let policy = bare_qps(
        "signals: { window: 60s, qps: { targetPerReplica: 10 } }
hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.75, upWindow: 0s, downWindow: 600s }
limits: { up: { pods: 4, percent: 100, per: 15s }, down: { percent: 25, per: 60s } }
panic: { window: 6s, threshold: 2.0, stableWindow: 60s }",
    );
    let report = match simulate(&policy, &trace, &World::new(10.0)) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    println!("{report}");
    let s = totals(&report, "Spillway");
    let h = totals(&report, "HPA (defaults)");
    assert!(
        s.under_replica_seconds < h.under_replica_seconds,
        "{report}"
    );
    assert!(s.actions < h.actions, "{report}");
    assert_eq!(report.runs.len(), 4);
    assert!(report.runs.iter().all(|r| !r.timeline.is_empty()));
}
