//! How far a pushed sample's own timestamp may be from the receiver's clock.
//!
//! Remote-write and gRPC push carry the sender's timestamps. A sender whose clock is
//! off, a replayed backlog, or a hostile value (`i64::MIN`, `i64::MAX`) must not write
//! into the far past or future of a workload's windows, so samples outside the bounds
//! are refused and counted. The comparison is done in `i128`, so no pair of `i64`
//! timestamps can overflow it.

/// Accepted distance of a sample's timestamp from now, each way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBounds {
    /// Samples older than now minus this are refused.
    pub max_past_ms: i64,
    /// Samples newer than now plus this are refused.
    pub max_future_ms: i64,
}

impl Default for TimeBounds {
    /// Five minutes back (a sender catching up after a short outage) and one minute
    /// ahead (ordinary clock skew between nodes).
    fn default() -> Self {
        Self {
            max_past_ms: 5 * 60_000,
            max_future_ms: 60_000,
        }
    }
}

/// Why a timestamp was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutOfBounds {
    #[error("older than the accepted past")]
    TooOld,
    #[error("further ahead than the accepted clock skew")]
    TooNew,
}

impl OutOfBounds {
    /// A short stable label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            OutOfBounds::TooOld => "too_old",
            OutOfBounds::TooNew => "too_new",
        }
    }
}

impl TimeBounds {
    /// Accepts every timestamp within `i64::MAX` ms (292 million years) of now:
    /// benchmarks and replays of synthetic timestamps.
    pub const UNBOUNDED: Self = Self {
        max_past_ms: i64::MAX,
        max_future_ms: i64::MAX,
    };

    /// Whether `timestamp_ms` is within the bounds around `now_ms`.
    pub fn check(&self, timestamp_ms: i64, now_ms: i64) -> Result<(), OutOfBounds> {
        let ahead = i128::from(timestamp_ms) - i128::from(now_ms);
        if ahead > i128::from(self.max_future_ms) {
            Err(OutOfBounds::TooNew)
        } else if -ahead > i128::from(self.max_past_ms) {
            Err(OutOfBounds::TooOld)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_each_way() {
        let bounds = TimeBounds::default();
        let now = 1_700_000_000_000;
        assert_eq!(bounds.check(now, now), Ok(()));
        assert_eq!(bounds.check(now - 5 * 60_000, now), Ok(()));
        assert_eq!(
            bounds.check(now - 5 * 60_000 - 1, now),
            Err(OutOfBounds::TooOld)
        );
        assert_eq!(bounds.check(now + 60_000, now), Ok(()));
        assert_eq!(bounds.check(now + 60_001, now), Err(OutOfBounds::TooNew));
    }

    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        let bounds = TimeBounds::default();
        for now in [i64::MIN, -1, 0, 1_700_000_000_000, i64::MAX] {
            assert_eq!(bounds.check(now, now), Ok(()));
        }
        let now = 1_700_000_000_000;
        assert_eq!(bounds.check(i64::MIN, now), Err(OutOfBounds::TooOld));
        assert_eq!(bounds.check(i64::MAX, now), Err(OutOfBounds::TooNew));
        assert_eq!(bounds.check(-1, now), Err(OutOfBounds::TooOld));
        assert_eq!(bounds.check(i64::MAX, i64::MIN), Err(OutOfBounds::TooNew));
        assert_eq!(bounds.check(i64::MIN, i64::MAX), Err(OutOfBounds::TooOld));
        assert_eq!(TimeBounds::UNBOUNDED.check(i64::MIN + 1, 0), Ok(()));
        assert_eq!(TimeBounds::UNBOUNDED.check(i64::MAX, 0), Ok(()));
    }
}
