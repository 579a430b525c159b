//! Stabilization windows over recent recommendations, as the HPA's `behavior`.

use super::state::WorkloadState;

/// Stores `recommendation` and returns the stabilized count:
/// `min(max(current, upRec), downRec)` where `upRec` is the lowest recommendation in the
/// scale-up window and `downRec` the highest in the scale-down window (both including
/// this one; a window of 0 holds only this one).
pub(crate) fn stabilize(
    state: &mut WorkloadState,
    now: i64,
    recommendation: u32,
    current: u32,
    up_window_secs: u32,
    down_window_secs: u32,
) -> u32 {
    let up_cutoff = now - i64::from(up_window_secs);
    let down_cutoff = now - i64::from(down_window_secs);
    let mut up_rec = recommendation;
    let mut down_rec = recommendation;
    for &(t, r) in &state.recommendations {
        if t > up_cutoff {
            up_rec = up_rec.min(r);
        }
        if t > down_cutoff {
            down_rec = down_rec.max(r);
        }
    }
    state.recommendations.push_back((now, recommendation));
    current.max(up_rec).min(down_rec)
}
