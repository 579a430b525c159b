//! Wall-clock reads, kept to the edges: pure logic takes time as a plain value, and the
//! code that needs "now" asks a [`Clock`] it was handed.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where "now" comes from. The process runs on [`SystemClock`]; tests pass a clock they
/// move themselves.
pub trait Clock: Send + Sync {
    /// Milliseconds since the unix epoch.
    fn unix_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place the system's wall clock is read; clippy.toml bans it everywhere else.
    #[allow(clippy::disallowed_methods)]
    fn unix_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Milliseconds since the unix epoch on the system clock (0 if it is before 1970).
pub fn unix_ms() -> i64 {
    SystemClock.unix_ms()
}
