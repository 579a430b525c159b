//! The engine's clock going back: decisions carry on from the jump instead of holding
//! until the clock catches up. Time is a plain i64; nothing sleeps.

use crate::support::{VecSignals, bare_qps};
use spillway_core::engine::{ReplicaCounts, WorkloadState, decide};
use spillway_model::signal::Signal;

const T0: i64 = 1_790_000_000;
const HOUR: i64 = 3_600;

fn rc(n: u32) -> ReplicaCounts {
    ReplicaCounts {
        current: n,
        ready: n,
    }
}

#[test]
fn a_clock_jump_back_holds_one_scale_down_window_not_until_the_clock_catches_up() {
    let p = bare_qps(
        "hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.8, upWindow: 0s, downWindow: 60s }",
    );
    let mut state = WorkloadState::new(T0 - HOUR);
    let mut s = VecSignals::new();
    s.fill(Signal::Qps, T0 - 600, T0 + 120, 1_000.0);
    let mut current = 1;
    for now in T0..T0 + 120 {
        current = decide(&p, &s, rc(current), now, &mut state).desired;
    }
    assert_eq!(current, 10);

    // The clock goes back an hour and traffic drops to a fifth.
    let back = T0 + 120 - HOUR;
    s.fill(Signal::Qps, back - 600, back + 600, 200.0);
    let mut scaled_down_at = None;
    for now in back..back + 600 {
        current = decide(&p, &s, rc(current), now, &mut state).desired;
        if current == 2 && scaled_down_at.is_none() {
            scaled_down_at = Some(now - back);
        }
    }
    // The recommendations from before the jump count for one window from it, then go.
    let after = scaled_down_at.expect("scaled down within ten minutes of the jump");
    assert!(
        (60..=70).contains(&after),
        "scaled down {after}s after the jump"
    );
}
