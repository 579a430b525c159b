//! One test (or a few) per engine rule. Time is a plain i64; nothing sleeps.

use crate::support::{VecSignals, app_policy, bare_qps};
use spillway_core::engine::{
    Activity, ReplicaCounts, Rule, WorkloadState, activity, decide, effective_min, first_ask,
    is_active,
};
use spillway_core::hpa::{HpaView, ScaleCounts, ServeInput, serve};
use spillway_model::signal::Signal;

const T0: i64 = 1_790_000_000;

fn rc(n: u32) -> ReplicaCounts {
    ReplicaCounts {
        current: n,
        ready: n,
    }
}

fn qps(value: f64, until: i64) -> VecSignals {
    let mut s = VecSignals::new();
    s.fill(Signal::Qps, T0 - 600, until + 1, value);
    s
}

fn qps_between(value: f64, from: i64, to: i64) -> VecSignals {
    let mut s = VecSignals::new();
    s.fill(Signal::Qps, from, to + 1, value);
    s
}

fn warm() -> WorkloadState {
    WorkloadState::new(T0 - 3_600)
}

#[test]
fn qps_proposal_is_ceil_of_load_over_target() {
    let p = bare_qps("");
    let d = decide(&p, &qps(950.0, T0), rc(5), T0, &mut warm());
    assert_eq!(d.desired, 10);
    assert_eq!(d.rule, Rule::ScaledUp);
    assert_eq!(d.dominant, Some(Signal::Qps));
    assert_eq!(d.proposals.len(), 1);
    assert_eq!(d.proposals[0].replicas, 10);
    assert_eq!(d.proposals[0].target, 100.0);
    let text = d.reason.to_string();
    assert!(
        text.starts_with("qps 950/s needs 10 (target 100/replica)"),
        "{text}"
    );
}

#[test]
fn exact_multiples_do_not_round_up() {
    let p = bare_qps("");
    let d = decide(&p, &qps(300.0, T0), rc(1), T0, &mut warm());
    assert_eq!(d.desired, 3);
}

#[test]
fn cpu_proposal_follows_the_hpa_formula() {
    // request 500m, target 50%: 3 cores on 6 ready pods is usage 1.0 → ceil(6 × 1.0 / 0.5) = 12
    let p = app_policy(
        "signals: { window: 10s, cpu: { targetUtilization: 0.5 } }\nplacement: { requests: { cpu: 500m } }\nhysteresis: { downWindow: 0s }\nhpaTolerance: 0\npanic: { enabled: false }\nlimits: { up: { percent: 1000, per: 1s } }",
    );
    let mut s = VecSignals::new();
    s.fill(Signal::CpuCores, T0 - 60, T0 + 1, 3.0);
    let d = decide(&p, &s, rc(6), T0, &mut warm());
    assert_eq!(d.proposals[0].replicas, 12);
    assert!((d.proposals[0].ratio - 2.0).abs() < 1e-9);
    assert_eq!(d.desired, 12);
    assert_eq!(d.dominant, Some(Signal::CpuCores));
}

#[test]
fn the_largest_proposal_wins() {
    let p = app_policy(
        "signals: { window: 10s, qps: { targetPerReplica: 100 }, cpu: { targetUtilization: 0.5 } }\nplacement: { requests: { cpu: 1 } }\nhpaTolerance: 0\npanic: { enabled: false }\nlimits: { up: { percent: 1000, per: 1s } }",
    );
    let mut s = qps(450.0, T0); // needs 5
    s.fill(Signal::CpuCores, T0 - 60, T0 + 1, 4.0); // 4 / (1 × 0.5) = 8
    let d = decide(&p, &s, rc(4), T0, &mut warm());
    assert_eq!(d.desired, 8);
    assert_eq!(d.dominant, Some(Signal::CpuCores));
    assert_eq!(d.proposals.len(), 2);
}

#[test]
fn inside_the_band_holds_and_reports_its_edges() {
    let p = bare_qps("");
    let d = decide(&p, &qps(850.0, T0), rc(10), T0, &mut warm());
    assert_eq!(d.desired, 10);
    assert_eq!(d.rule, Rule::HeldInBand);
    assert_eq!(d.band.signal, Some(Signal::Qps));
    assert!(
        (d.band.low - 800.0).abs() < 1e-9 && (d.band.high - 1000.0).abs() < 1e-9,
        "{:?}",
        d.band
    );
    assert!(
        d.reason.to_string().contains("inside the band"),
        "{}",
        d.reason
    );
}

#[test]
fn below_the_low_mark_scales_down_to_the_proposal() {
    let p = bare_qps("");
    let d = decide(&p, &qps(500.0, T0), rc(10), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (5, Rule::ScaledDown));
}

#[test]
fn asymmetric_band_edges_apply() {
    let p = bare_qps("hysteresis: { scaleUpAbove: 1.2, scaleDownBelow: 0.5, downWindow: 0s }");
    assert_eq!(
        decide(&p, &qps(1150.0, T0), rc(10), T0, &mut warm()).desired,
        10
    );
    assert_eq!(
        decide(&p, &qps(1250.0, T0), rc(10), T0, &mut warm()).desired,
        13
    );
    assert_eq!(
        decide(&p, &qps(550.0, T0), rc(10), T0, &mut warm()).desired,
        10
    );
    assert_eq!(
        decide(&p, &qps(450.0, T0), rc(10), T0, &mut warm()).desired,
        5
    );
}

#[test]
fn missing_data_holds() {
    let p = bare_qps("");
    let d = decide(&p, &VecSignals::new(), rc(7), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (7, Rule::HeldMissingData));
    assert_eq!(d.missing, vec![Signal::Qps]);
    assert!(
        d.reason.to_string().contains("no fresh qps data"),
        "{}",
        d.reason
    );
}

#[test]
fn stale_data_never_scales_down() {
    let p = bare_qps(""); // staleAfter 30s by default
    let s = qps(100.0, T0 - 31); // says 1 replica, but the newest value is 31 s old
    let d = decide(&p, &s, rc(7), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (7, Rule::HeldMissingData));
}

#[test]
fn partial_data_may_scale_up_but_not_down() {
    let p = app_policy(
        "signals: { window: 10s, qps: { targetPerReplica: 100 }, cpu: { targetUtilization: 0.5 } }\nhpaTolerance: 0\npanic: { enabled: false }\nhysteresis: { downWindow: 0s }\nlimits: { up: { percent: 1000, per: 1s } }",
    );
    let d = decide(&p, &qps(2000.0, T0), rc(5), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (20, Rule::ScaledUp));
    assert_eq!(d.missing, vec![Signal::CpuCores]);
    let d = decide(&p, &qps(100.0, T0), rc(5), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (5, Rule::HeldMissingData));
}

#[test]
fn a_lower_bound_may_scale_up_but_never_down() {
    // A collector shard is lost: the QPS sum in the window is only a lower bound.
    let p = bare_qps("");
    let mut low = qps(100.0, T0);
    low.mark_lower_bound(Signal::Qps, T0 - 3, T0 - 2);
    let d = decide(&p, &low, rc(7), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (7, Rule::HeldMissingData));
    assert_eq!(d.lower_bound, vec![Signal::Qps]);
    assert!(d.missing.is_empty());
    let text = d.reason.to_string();
    assert!(text.contains("partial data"), "{text}");
    assert!(text.contains("collector shard"), "{text}");

    let mut high = qps(2000.0, T0);
    high.mark_lower_bound(Signal::Qps, T0 - 600, T0 + 1);
    let d = decide(&p, &high, rc(7), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (20, Rule::ScaledUp));

    // Once the lower bounds have left the window, scale-down is allowed again.
    let d = decide(&p, &low, rc(7), T0 + 12, &mut warm());
    let mut later = qps(100.0, T0 + 12);
    later.mark_lower_bound(Signal::Qps, T0 - 3, T0 - 2);
    let d_later = decide(&p, &later, rc(7), T0 + 12, &mut warm());
    assert_eq!(
        d.rule,
        Rule::HeldMissingData,
        "no data in the window: {}",
        d.reason
    );
    assert_eq!((d_later.desired, d_later.rule), (1, Rule::ScaledDown));
}

#[test]
fn a_lower_bound_below_the_activation_threshold_keeps_the_workload_active() {
    let p = bare_qps("replicas: { min: 0, max: 100 }");
    let mut s = qps(0.0, T0);
    assert!(!is_active(&p, &s, T0));
    s.mark_lower_bound(Signal::Qps, T0 - 1, T0);
    assert!(is_active(&p, &s, T0));
    let d = decide(&p, &s, rc(3), T0, &mut warm());
    assert_ne!(d.desired, 0, "{}", d.reason);
}

#[test]
fn scale_down_waits_for_the_down_window() {
    let p = bare_qps("hysteresis: { downWindow: 60s }");
    let mut st = warm();
    let mut s = qps(1000.0, T0 + 200);
    assert_eq!(decide(&p, &s, rc(10), T0, &mut st).desired, 10);
    s.fill(Signal::Qps, T0 + 1, T0 + 200, 300.0);
    let mut current = 10;
    for t in (T0 + 15..T0 + 200).step_by(15) {
        let d = decide(&p, &s, rc(current), t, &mut st);
        if t < T0 + 60 {
            assert_eq!(
                (d.desired, d.rule),
                (10, Rule::Stabilized),
                "at +{}",
                t - T0
            );
        }
        current = d.desired;
    }
    assert_eq!(current, 3);
}

#[test]
fn scale_up_window_needs_a_sustained_rise() {
    let p = bare_qps("hysteresis: { upWindow: 30s, downWindow: 0s }");
    let mut st = warm();
    let mut s = qps(500.0, T0 + 100);
    assert_eq!(decide(&p, &s, rc(5), T0, &mut st).desired, 5);
    s.fill(Signal::Qps, T0 - 10, T0 + 100, 900.0);
    let d = decide(&p, &s, rc(5), T0 + 15, &mut st);
    assert_eq!((d.desired, d.rule), (5, Rule::Stabilized));
    let d = decide(&p, &s, rc(5), T0 + 31, &mut st);
    assert_eq!((d.desired, d.rule), (9, Rule::ScaledUp));
}

#[test]
fn scale_up_rate_limit_in_pods_counts_from_the_period_start() {
    let p = bare_qps("limits: { up: { pods: 4, per: 15s } }");
    let s = qps(2000.0, T0 + 100);
    let mut st = warm();
    let d = decide(&p, &s, rc(5), T0, &mut st);
    assert_eq!((d.desired, d.rule), (9, Rule::RateLimited));
    assert!(
        d.reason
            .to_string()
            .ends_with("scale-up to 20 limited to 9 by 'up: 4 pods per 15s'"),
        "{}",
        d.reason
    );
    // Still inside the period: the 4 pods are spent.
    assert_eq!(decide(&p, &s, rc(9), T0 + 5, &mut st).desired, 9);
    // The period has passed.
    assert_eq!(decide(&p, &s, rc(9), T0 + 15, &mut st).desired, 13);
}

#[test]
fn a_change_asked_again_before_it_is_applied_is_not_counted_twice() {
    let p = bare_qps("limits: { up: { pods: 4, per: 60s } }");
    let s = qps(2000.0, T0 + 100);
    let mut st = warm();
    assert_eq!(decide(&p, &s, rc(5), T0, &mut st).desired, 9);
    // The HPA has not applied it yet: same answer, not 5 (which double counting would give).
    assert_eq!(decide(&p, &s, rc(5), T0 + 1, &mut st).desired, 9);
    assert_eq!(decide(&p, &s, rc(9), T0 + 2, &mut st).desired, 9);
}

#[test]
fn scale_down_rate_limit_in_percent_truncates() {
    let p = bare_qps("limits: { down: { percent: 20, per: 60s } }");
    let s = qps(100.0, T0 + 200);
    let mut st = warm();
    assert_eq!(decide(&p, &s, rc(100), T0, &mut st).desired, 80);
    assert_eq!(decide(&p, &s, rc(80), T0 + 30, &mut st).desired, 80);
    assert_eq!(decide(&p, &s, rc(80), T0 + 60, &mut st).desired, 64);
    assert_eq!(decide(&p, &s, rc(3), T0 + 120, &mut st).desired, 2); // trunc(3 × 0.8)
}

#[test]
fn select_policy_min_max_and_disabled() {
    let s = qps(5000.0, T0);
    let max = bare_qps("limits: { up: { pods: 4, percent: 100, per: 15s } }");
    assert_eq!(decide(&max, &s, rc(10), T0, &mut warm()).desired, 20);
    assert_eq!(decide(&max, &s, rc(2), T0, &mut warm()).desired, 6);
    let min = bare_qps("limits: { up: { pods: 4, percent: 100, per: 15s, select: Min } }");
    assert_eq!(decide(&min, &s, rc(10), T0, &mut warm()).desired, 14);
    assert_eq!(decide(&min, &s, rc(2), T0, &mut warm()).desired, 4);
    let off = bare_qps("limits: { up: { pods: 4, per: 15s, select: Disabled } }");
    let d = decide(&off, &s, rc(10), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (10, Rule::RateLimited));
}

#[test]
fn panic_jumps_at_once_and_forbids_scale_down_until_stable() {
    // Slow stable path (long up window, 1 pod per minute) to show panic bypasses both.
    let p = bare_qps(
        "hysteresis: { upWindow: 120s, downWindow: 0s }\nlimits: { up: { pods: 1, per: 60s } }\npanic: { window: 6s, threshold: 2.0, stableWindow: 60s }",
    );
    let mut st = warm();
    let mut s = qps(400.0, T0 + 1_000);
    assert_eq!(decide(&p, &s, rc(5), T0, &mut st).desired, 5);
    s.fill(Signal::Qps, T0 + 1, T0 + 31, 1_500.0); // a 30 s burst needing 15 ≥ 2 × 5
    let d = decide(&p, &s, rc(5), T0 + 6, &mut st);
    assert_eq!((d.desired, d.rule), (15, Rule::Panic));
    assert!(d.panic && st.in_panic());
    assert!(
        d.reason.to_string().contains("entered panic"),
        "{}",
        d.reason
    );
    // Once 15 are ready the burst no longer crosses 2 × ready (as Knative): panic holds
    // for a stable window after the last crossing (+6), so no scale-down before +66.
    let mut current = 15;
    for t in (T0 + 30..=T0 + 120).step_by(15) {
        let d = decide(&p, &s, rc(current), t, &mut st);
        if t < T0 + 66 {
            assert_eq!(d.desired, 15, "at +{}", t - T0);
            assert_eq!(d.rule, Rule::Panic, "at +{}", t - T0);
        }
        current = d.desired;
    }
    assert!(!st.in_panic());
    assert!(
        current < 15,
        "scale-down resumed after the stable window: {current}"
    );
}

#[test]
fn panic_follows_a_burst_that_is_still_ramping_once_replicas_are_ready() {
    // A step from 150/s to 1,950/s seen through a 6 s window as it fills: the first
    // decision crosses 2 × ready, the next ones no longer do once the added replicas are
    // ready, and the short window must still carry the floor up (Knative's maxPanicPods)
    // instead of leaving the rest to the 60 s stable window.
    let p = bare_qps("panic: { window: 6s, threshold: 2.0, stableWindow: 60s }");
    let mut st = warm();
    let mut s = qps(150.0, T0);
    assert_eq!(decide(&p, &s, rc(2), T0, &mut st).desired, 2);
    s.fill(Signal::Qps, T0 + 1, T0 + 61, 1_950.0);
    let mut current = 2;
    let mut seen = Vec::new();
    for t in T0 + 1..=T0 + 7 {
        let d = decide(&p, &s, rc(current), t, &mut st);
        current = d.desired;
        seen.push(current);
    }
    assert_eq!(
        current, 20,
        "the panic floor followed the short window to 1,950/s: {seen:?}"
    );
}

#[test]
fn no_panic_below_the_threshold() {
    let p = bare_qps(
        "hysteresis: { upWindow: 120s, downWindow: 0s }\npanic: { window: 6s, threshold: 2.0 }",
    );
    let mut st = warm();
    let mut s = qps(400.0, T0 + 100);
    decide(&p, &s, rc(5), T0, &mut st);
    s.fill(Signal::Qps, T0 + 1, T0 + 31, 900.0); // needs 9 < 2 × 5
    let d = decide(&p, &s, rc(5), T0 + 10, &mut st);
    assert_eq!((d.desired, d.panic), (5, false));
}

#[test]
fn schedule_raises_the_minimum_in_its_time_zone() {
    // 09:00–10:00 Asia/Shanghai (UTC+8) every day: at least 20.
    let p = bare_qps(
        "schedules: [ { name: morning, cron: \"0 0 9 * * *\", timezone: Asia/Shanghai, duration: 1h, minReplicas: 20 } ]",
    );
    let day = 1_795_478_400; // 2026-11-24 00:00:00 UTC
    let inside = day + 3_600 + 1_800; // 01:30 UTC = 09:30 Shanghai
    let s = qps_between(100.0, day, day + 4 * 3_600);
    let d = decide(&p, &s, rc(1), inside, &mut warm());
    assert_eq!((d.desired, d.rule), (20, Rule::Schedule));
    assert!(d.active);
    assert!(
        d.reason
            .to_string()
            .contains("schedule 'morning' keeps at least 20 until 2026-11-24 10:00 CST"),
        "{}",
        d.reason
    );
    let after = day + 2 * 3_600 + 60; // 10:01 Shanghai
    let d = decide(&p, &s, rc(20), after, &mut warm());
    assert_eq!(d.desired, 1);
    let before = day + 3_600 - 1; // 08:59:59 Shanghai
    assert_eq!(decide(&p, &s, rc(1), before, &mut warm()).desired, 1);
}

#[test]
fn yearly_double_11_schedule() {
    let p = bare_qps(
        "replicas: { min: 1, max: 200 }\nschedules: [ { name: double-11, cron: \"0 50 23 10 11 *\", timezone: Asia/Shanghai, duration: 3h, minReplicas: 50 } ]",
    );
    let start = 1_794_325_800; // 2026-11-10 23:50 Shanghai = 15:50 UTC
    let s = qps_between(100.0, start - 600, start + 20_000);
    assert_eq!(decide(&p, &s, rc(1), start - 1, &mut warm()).desired, 1);
    assert_eq!(decide(&p, &s, rc(1), start, &mut warm()).desired, 50);
    assert_eq!(
        decide(&p, &s, rc(1), start + 3 * 3_600 - 1, &mut warm()).desired,
        50
    );
    assert_eq!(
        decide(&p, &s, rc(50), start + 3 * 3_600, &mut warm()).desired,
        1
    );
}

#[test]
fn min_and_max_bound_the_answer() {
    let p = bare_qps("replicas: { min: 3, max: 12 }");
    let d = decide(&p, &qps(5_000.0, T0), rc(5), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (12, Rule::MaxReplicas));
    let d = decide(&p, &qps(10.0, T0), rc(5), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (3, Rule::MinReplicas));
}

#[test]
fn scale_to_zero_and_activation() {
    let p = bare_qps(
        "replicas: { min: 0, max: 10 }\nsignals: { window: 10s, qps: { targetPerReplica: 100, activation: 1 } }\nactivation: { window: 30s }",
    );
    let idle = qps(0.5, T0);
    assert!(!is_active(&p, &idle, T0));
    let d = decide(&p, &idle, rc(1), T0, &mut warm());
    assert_eq!(
        (d.desired, d.rule, d.active),
        (0, Rule::ScaledToZero, false)
    );
    let busy = qps(5.0, T0);
    assert!(is_active(&p, &busy, T0));
    let d = decide(&p, &busy, rc(0), T0, &mut warm());
    assert_eq!((d.desired, d.active), (1, true));
    // Never seen any data: nothing to serve, so not active…
    assert!(!is_active(&p, &VecSignals::new(), T0));
    // …but replicas already running are not dropped to zero without evidence.
    let d = decide(&p, &VecSignals::new(), rc(4), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (4, Rule::HeldMissingData));
    // Data gone stale: unknown, so stay active rather than drop to zero.
    assert!(is_active(&p, &qps(0.0, T0 - 120), T0));
}

#[test]
fn a_schedule_wanting_replicas_activates() {
    let p = bare_qps(
        "replicas: { min: 0, max: 10 }\nschedules: [ { name: always, cron: \"* * * * *\", duration: 2m, minReplicas: 2 } ]",
    );
    assert!(is_active(&p, &VecSignals::new(), T0));
    assert_eq!(
        decide(&p, &VecSignals::new(), rc(0), T0, &mut warm()).desired,
        2
    );
}

#[test]
fn no_scale_down_until_a_full_down_window_of_fresh_data_after_restart() {
    let p = bare_qps("hysteresis: { downWindow: 300s }");
    let mut s = VecSignals::new();
    s.fill(Signal::Qps, T0, T0 + 1_000, 100.0); // data only since the restart at T0
    let mut st = WorkloadState::new(T0);
    let d = decide(&p, &s, rc(10), T0 + 60, &mut st);
    assert_eq!((d.desired, d.rule), (10, Rule::RestartWarmup));
    assert!(
        d.reason.to_string().contains("only 1m of fresh data"),
        "{}",
        d.reason
    );
    let d = decide(&p, &s, rc(10), T0 + 299, &mut st);
    assert_eq!(d.desired, 10);
    let d = decide(&p, &s, rc(10), T0 + 361, &mut st);
    assert_eq!(d.desired, 1);

    // Old data in the store but a freshly created state: the state's first-seen time rules.
    let mut old = VecSignals::new();
    old.fill(Signal::Qps, T0 - 5_000, T0 + 1_000, 100.0);
    let mut st = WorkloadState::new(T0);
    assert_eq!(
        decide(&p, &old, rc(10), T0 + 100, &mut st).rule,
        Rule::RestartWarmup
    );
}

#[test]
fn the_engine_decides_and_the_hpa_tolerance_is_left_to_the_served_number() {
    // The engine says what the load needs; whether the HPA would swallow it is decided
    // on the final number (spillway_core::hpa::serve), after placement.
    let p = bare_qps("replicas: { min: 1, max: 500 }\nhpaTolerance: 0.1");
    let d = decide(&p, &qps(10_450.0, T0), rc(100), T0, &mut warm());
    assert_eq!((d.desired, d.rule), (105, Rule::ScaledUp));
    assert_eq!(
        d.ceiling, 500,
        "a raise past the tolerance may go up to max"
    );
    let served = serve(
        ServeInput {
            replicas: d.desired,
            ceiling: d.ceiling,
            scale: ScaleCounts::settled(100),
        },
        HpaView::from_policy(&p).tolerance,
    );
    assert_eq!(served.replicas, 111);
}

#[test]
fn the_ceiling_is_the_rate_limit_unless_a_minimum_raised_past_it() {
    let p = bare_qps(
        "replicas: { min: 1, max: 500 }\nlimits: { up: { pods: 4, per: 15s }, down: { percent: 100, per: 1s } }",
    );
    let d = decide(&p, &qps(15_000.0, T0), rc(100), T0, &mut warm());
    assert_eq!(
        (d.desired, d.rule, d.ceiling),
        (104, Rule::RateLimited, 104)
    );
    // A schedule raises the minimum from 95 to 100: rate limits do not bind a minimum,
    // so the raise that makes the HPA act on it may go to max.
    let p = bare_qps(
        "replicas: { min: 1, max: 500 }\nlimits: { up: { pods: 2, per: 15s }, down: { percent: 100, per: 1s } }\nschedules: [ { name: peak, cron: \"* * * * *\", duration: 2m, minReplicas: 100 } ]",
    );
    let d = decide(&p, &qps(9_500.0, T0), rc(95), T0, &mut warm());
    assert_eq!((d.desired, d.rule, d.ceiling), (100, Rule::Schedule, 500));
}

#[test]
fn is_active_whenever_the_effective_minimum_is_above_zero() {
    let idle = qps(0.0, T0);
    let p = bare_qps(
        "replicas: { min: 2, max: 10 }\nsignals: { window: 10s, qps: { targetPerReplica: 100, activation: 1 } }",
    );
    assert_eq!(activity(&p, &idle, T0), Activity::Minimum);
    assert!(is_active(&p, &idle, T0));
    assert!(
        is_active(&p, &VecSignals::new(), T0),
        "no data at all: still active"
    );
    assert_eq!(effective_min(&p, T0), 2);
    let d = decide(&p, &idle, rc(2), T0, &mut warm());
    assert!(
        d.active,
        "KEDA must never deactivate a min-2 app: {}",
        d.reason
    );
    let zero = bare_qps(
        "replicas: { min: 0, max: 10 }\nsignals: { window: 10s, qps: { targetPerReplica: 100, activation: 1 } }",
    );
    assert_eq!(activity(&zero, &idle, T0), Activity::Idle);
    assert_eq!(effective_min(&zero, T0), 0);
    let scheduled = bare_qps(
        "replicas: { min: 0, max: 10 }\nschedules: [ { name: always, cron: \"* * * * *\", duration: 2m, minReplicas: 3 } ]",
    );
    assert_eq!(activity(&scheduled, &idle, T0), Activity::Schedule);
    assert_eq!(effective_min(&scheduled, T0), 3);
    let busy = qps(500.0, T0);
    assert_eq!(activity(&p, &busy, T0), Activity::Load);
}

#[test]
fn scale_to_zero_follows_the_down_limits_to_one_then_zero() {
    let p = bare_qps(
        "replicas: { min: 0, max: 50 }\nsignals: { window: 10s, qps: { targetPerReplica: 100, activation: 1 } }\nactivation: { window: 30s }\nlimits: { up: { percent: 10000, per: 1s }, down: { percent: 50, per: 10s } }",
    );
    let idle = qps(0.0, T0 + 1_000);
    let mut st = warm();
    let mut current = 20;
    let mut path = vec![current];
    let mut t = T0;
    while current > 0 && path.len() < 20 {
        let d = decide(&p, &idle, rc(current), t, &mut st);
        assert!(!d.active);
        assert!(
            d.desired >= 1 || current <= 1,
            "{current} → {} jumps to zero: {}",
            d.desired,
            d.reason
        );
        current = d.desired;
        path.push(current);
        t += 10;
    }
    // 50 % per 10 s from 20: 10, 5, 2 (truncated), 1, then 0 from 1.
    assert_eq!(path, vec![20, 10, 5, 2, 1, 0]);
    let d = decide(&p, &idle, rc(0), t, &mut st);
    assert_eq!(
        (d.desired, d.rule),
        (0, Rule::ScaledToZero),
        "at zero it answers 0"
    );
}

#[test]
fn the_last_step_to_zero_keeps_the_down_limit_too() {
    // From 2 to 1, then 1 → 0 only once the limit's period has passed, so the HPA
    // (which never goes below 1) is served 1 for a while before 0.
    let p = bare_qps(
        "replicas: { min: 0, max: 50 }\nsignals: { window: 10s, qps: { targetPerReplica: 100, activation: 1 } }\nlimits: { up: { percent: 10000, per: 1s }, down: { percent: 50, per: 10s } }",
    );
    let idle = qps(0.0, T0 + 1_000);
    let mut st = warm();
    assert_eq!(decide(&p, &idle, rc(2), T0, &mut st).desired, 1);
    let d = decide(&p, &idle, rc(1), T0 + 1, &mut st);
    assert_eq!((d.desired, d.rule), (1, Rule::RateLimited), "{}", d.reason);
    let d = decide(&p, &idle, rc(1), T0 + 11, &mut st);
    assert_eq!((d.desired, d.rule), (0, Rule::ScaledToZero), "{}", d.reason);
}

#[test]
fn warm_up_forbids_going_toward_zero_but_never_a_scale_up() {
    let p = bare_qps(
        "replicas: { min: 0, max: 50 }\nsignals: { window: 10s, qps: { targetPerReplica: 100, activation: 1 } }\nhysteresis: { downWindow: 300s }",
    );
    let mut s = VecSignals::new();
    s.fill(Signal::Qps, T0, T0 + 1_000, 0.0);
    let mut st = WorkloadState::new(T0);
    let d = decide(&p, &s, rc(12), T0 + 30, &mut st);
    assert_eq!((d.desired, d.rule), (12, Rule::RestartWarmup));
    assert!(d.warming_up);
    let mut busy = VecSignals::new();
    busy.fill(Signal::Qps, T0, T0 + 1_000, 2_000.0);
    let d = decide(&p, &busy, rc(12), T0 + 40, &mut WorkloadState::new(T0));
    assert_eq!((d.desired, d.warming_up), (20, true), "{}", d.reason);
    let d = decide(&p, &s, rc(12), T0 + 400, &mut st);
    assert!(!d.warming_up);
    assert!(d.desired < 12);
}

#[test]
fn the_first_ask_is_what_the_data_alone_needs() {
    let p = bare_qps("replicas: { min: 2, max: 50 }");
    assert_eq!(first_ask(&p, &qps(950.0, T0), T0), 10);
    assert_eq!(first_ask(&p, &qps(10.0, T0), T0), 2, "at least the minimum");
    assert_eq!(
        first_ask(&p, &qps(90_000.0, T0), T0),
        50,
        "at most the maximum"
    );
    let zero = bare_qps(
        "replicas: { min: 0, max: 50 }\nsignals: { window: 10s, qps: { targetPerReplica: 100, activation: 1 } }",
    );
    assert_eq!(first_ask(&zero, &qps(0.0, T0), T0), 0);
    assert_eq!(first_ask(&zero, &qps(30.0, T0), T0), 1);
}

#[test]
fn decisions_are_deterministic() {
    let p = app_policy("signals: { qps: { targetPerReplica: 100 } }");
    let mut s = VecSignals::new();
    for t in T0 - 600..T0 + 600 {
        s.set(Signal::Qps, t, 500.0 + ((t * 7919) % 600) as f64);
    }
    let mut a = WorkloadState::new(T0 - 600);
    let mut b = a.clone();
    let mut current = 5;
    for t in (T0..T0 + 600).step_by(15) {
        let da = decide(&p, &s, rc(current), t, &mut a);
        let db = decide(&p, &s, rc(current), t, &mut b);
        assert_eq!(da, db);
        assert_eq!(a, b);
        current = da.desired;
    }
}

#[test]
fn rule_labels_are_unique_lowercase() {
    let mut seen = std::collections::BTreeSet::new();
    for r in Rule::ALL {
        let l = r.label();
        assert!(l.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
        assert!(seen.insert(l), "duplicate label {l}");
    }
}
