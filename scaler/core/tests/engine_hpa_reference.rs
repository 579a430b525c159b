//! Spillway against a model of the Kubernetes HPA on a replayed slice of a real trace
//! (NASA-HTTP 1995, 6 hours; see tests/data/SOURCES.md).
//!
//! 1. With a policy that mimics the HPA's defaults, both give the same replica series as
//!    the HPA baseline `spillway simulate` compares against ([`Hpa`]).
//! 2. With a sensible Spillway policy, Spillway makes fewer scaling actions; the figures
//!    (actions, under-provisioned replica-seconds, replica-seconds) are printed.

use crate::support::{VecSignals, app_policy};
use spillway_core::engine::{ReplicaCounts, WorkloadState, decide};
use spillway_core::simulate::baselines::{Hpa, HpaConfig};
use spillway_model::signal::{Signal, SignalView};

const TRACE: &str = include_str!("../../../tests/data/nasa_http_1995_slice_6h.csv");
const T0: i64 = 1_790_000_000;
/// Requests per minute × SCALE / 60 = requests per second: ×60 turns the trace's
/// 13–163 requests a minute into 13–163 requests a second.
const SCALE: f64 = 60.0;
const TARGET: f64 = 10.0;
const SYNC: i64 = 15;
const WINDOW: u32 = 60;
/// Seconds before an added pod serves, for the under-provisioning figure.
const POD_START: i64 = 30;

fn trace_signals() -> (VecSignals, i64) {
    let mut s = VecSignals::new();
    let mut minutes = 0i64;
    for line in TRACE.lines().skip(1) {
        let Some((_, requests)) = line.split_once(',') else {
            continue;
        };
        let requests: f64 = requests.trim().parse().expect("trace rows are integers");
        let start = T0 + minutes * 60;
        s.fill(Signal::Qps, start, start + 60, requests * SCALE / 60.0);
        minutes += 1;
    }
    assert_eq!(minutes, 360, "the slice is six hours of minutes");
    (s, T0 + minutes * 60)
}

struct Run {
    /// (decision time, replicas after the decision)
    series: Vec<(i64, u32)>,
    actions: usize,
}

fn replay(start_replicas: u32, end: i64, mut next: impl FnMut(u32, i64) -> u32) -> Run {
    let mut current = start_replicas;
    let mut series = Vec::new();
    let mut actions = 0;
    let mut t = T0 + i64::from(WINDOW);
    while t < end {
        let desired = next(current, t);
        if desired != current {
            actions += 1;
        }
        current = desired;
        series.push((t, current));
        t += SYNC;
    }
    Run { series, actions }
}

fn run_hpa(s: &VecSignals, end: i64) -> Run {
    let mut hpa = Hpa::new(HpaConfig::defaults(1, 100, TARGET));
    replay(5, end, |current, t| {
        let sum = s
            .mean(Signal::Qps, t, WINDOW)
            .expect("the trace covers every second");
        hpa.step(sum, current, t)
    })
}

fn run_spillway(policy: &str, s: &VecSignals, end: i64) -> Run {
    let p = app_policy(policy);
    let mut state = WorkloadState::default();
    replay(5, end, |current, t| {
        decide(
            &p,
            s,
            ReplicaCounts {
                current,
                ready: current,
            },
            t,
            &mut state,
        )
        .desired
    })
}

/// Seconds × replicas of demand above ready capacity (capacity = ready × target; pods added
/// within the last POD_START seconds are not ready), and replica-seconds provisioned.
fn provisioning(run: &Run, s: &VecSignals, end: i64) -> (f64, f64) {
    let replicas_at = |t: i64| -> u32 {
        match run.series.binary_search_by_key(&t, |(at, _)| *at) {
            Ok(i) => run.series[i].1,
            Err(0) => 5,
            Err(i) => run.series[i - 1].1,
        }
    };
    let (mut short, mut provisioned) = (0.0, 0.0);
    for t in T0 + i64::from(WINDOW)..end {
        let ready = (t - POD_START..=t)
            .step_by(1)
            .map(replicas_at)
            .min()
            .unwrap_or(0);
        let demand = s.mean(Signal::Qps, t, 1).unwrap_or(0.0) / TARGET;
        short += (demand - f64::from(ready)).max(0.0);
        provisioned += f64::from(replicas_at(t));
    }
    (short, provisioned)
}

/// Spillway configured as the HPA with its defaults (AverageValue target, 10 % tolerance,
/// 300 s scale-down stabilization, default behavior policies, no panic).
const MIMIC_HPA: &str = "replicas: { min: 1, max: 100 }
signals: { window: 60s, staleAfter: 60s, qps: { targetPerReplica: 10 } }
hysteresis: { scaleUpAbove: 1.1, scaleDownBelow: 0.9, upWindow: 0s, downWindow: 300s }
limits: { up: { pods: 4, percent: 100, per: 15s }, down: { percent: 100, per: 15s } }
panic: { enabled: false }
hpaTolerance: 0";

/// What a tenant would write for this service: scale up as soon as load passes the
/// target, shrink only below 75 % of it after ten quiet minutes, at most 25 % a minute.
const SENSIBLE: &str = "replicas: { min: 1, max: 100 }
signals: { window: 60s, qps: { targetPerReplica: 10 } }
hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.75, upWindow: 0s, downWindow: 600s }
limits: { up: { pods: 4, percent: 100, per: 15s }, down: { percent: 25, per: 60s } }
panic: { window: 6s, threshold: 2.0, stableWindow: 60s }
hpaTolerance: 0";

#[test]
fn spillway_mimicking_the_hpa_gives_the_same_replica_series() {
    let (s, end) = trace_signals();
    let hpa = run_hpa(&s, end);
    let spillway = run_spillway(MIMIC_HPA, &s, end);
    assert_eq!(hpa.series.len(), spillway.series.len());
    if let Some(i) = hpa
        .series
        .iter()
        .zip(&spillway.series)
        .position(|(a, b)| a != b)
    {
        let (t, h) = hpa.series[i];
        panic!(
            "series diverge at +{}s (decision {i}): HPA {h}, Spillway {}",
            t - T0,
            spillway.series[i].1
        );
    }
    // The slice must actually exercise scaling both ways, or the equality proves little.
    let counts: Vec<u32> = hpa.series.iter().map(|(_, r)| *r).collect();
    let ups = counts.windows(2).filter(|w| w[1] > w[0]).count();
    let downs = counts.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(ups >= 10 && downs >= 5, "ups {ups}, downs {downs}");
    println!(
        "HPA model and Spillway (HPA mimic): identical over {} decisions, {} ups, {} downs",
        counts.len(),
        ups,
        downs
    );
}

#[test]
fn spillway_makes_fewer_scaling_actions_than_the_hpa() {
    let (s, end) = trace_signals();
    let hpa = run_hpa(&s, end);
    let spillway = run_spillway(SENSIBLE, &s, end);
    let (hpa_short, hpa_cost) = provisioning(&hpa, &s, end);
    let (sp_short, sp_cost) = provisioning(&spillway, &s, end);
    println!(
        "NASA-HTTP 1995, 6 h slice ×{SCALE}/60 rps, target {TARGET} rps/replica, {SYNC} s decisions, pods ready {POD_START} s after scale-up"
    );
    println!(
        "{:<28} {:>8} {:>26} {:>20}",
        "", "actions", "under-provisioned rep·s", "replica-seconds"
    );
    println!(
        "{:<28} {:>8} {:>26.0} {:>20.0}",
        "HPA (defaults)", hpa.actions, hpa_short, hpa_cost
    );
    println!(
        "{:<28} {:>8} {:>26.0} {:>20.0}",
        "Spillway (sensible policy)", spillway.actions, sp_short, sp_cost
    );
    assert!(
        spillway.actions < hpa.actions,
        "Spillway {} actions, HPA {}",
        spillway.actions,
        hpa.actions
    );
    assert!(
        sp_short < hpa_short,
        "Spillway under-provisioned {sp_short:.0} replica-seconds, HPA {hpa_short:.0}"
    );
}
