//! Whether a schedule's cron can be evaluated at all, checked when the policy loads.
//!
//! The engine asks croner for the latest firing at or before every tick; an error there
//! would leave the schedule silently out of force. Two kinds are knowable in advance:
//! a pattern that never fires (`0 0 30 2 *`, February 30th), and an instant croner
//! refuses to evaluate in the schedule's zone, which can only sit at a change of UTC
//! offset (a daylight-saving gap or fold). Both are refused at load, with the reason.

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// The span whose offset changes are probed: several years, so leap years and every
/// weekday a transition can fall on are covered. Zones repeat their last rule forever,
/// so later years change nothing; the span is fixed so validation needs no clock.
const PROBE_FROM: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z
const PROBE_TO: i64 = 1_988_150_400; // 2033-01-01T00:00:00Z
/// Offset changes are at least this far apart in every zone.
const SCAN_STEP_SECS: i64 = 6 * 3600;
/// Around each change: every 10 minutes for 3 hours each way, and the second either side.
const PROBE_REACH_SECS: i64 = 3 * 3600;
const PROBE_STEP_SECS: i64 = 600;

/// Why `cron` cannot be evaluated in `tz`, if it cannot.
pub(crate) fn evaluation_problem(cron: &Cron, tz: Tz) -> Option<String> {
    let at = |t: i64| {
        Utc.timestamp_opt(t, 0)
            .single()
            .map(|u| u.with_timezone(&tz))
    };
    let start = at(PROBE_FROM)?;
    if cron.find_next_occurrence(&start, true).is_err() {
        return Some(
            "this cron expression never fires (no date matches it, e.g. February 30th); expected one that fires at least once a year".into(),
        );
    }
    for change in offset_changes(tz) {
        let probes = (-PROBE_REACH_SECS..=PROBE_REACH_SECS)
            .step_by(PROBE_STEP_SECS as usize)
            .chain([-1, 0, 1])
            .map(|d| change + d);
        for t in probes {
            let Some(local) = at(t) else { continue };
            let evaluated = cron
                .find_previous_occurrence(&local, true)
                .and_then(|_| cron.find_next_occurrence(&local, false));
            if let Err(e) = evaluated {
                return Some(format!(
                    "this cron expression cannot be evaluated in {tz} at {} (a change of UTC offset): {e}; expected a time of day that exists on every day it fires",
                    local.format("%Y-%m-%d %H:%M:%S %Z")
                ));
            }
        }
    }
    None
}

/// The UTC second of every offset change of `tz` in the probed span.
fn offset_changes(tz: Tz) -> Vec<i64> {
    let offset = |t: i64| -> Option<i32> {
        let utc: DateTime<Utc> = Utc.timestamp_opt(t, 0).single()?;
        Some(
            tz.offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    };
    let mut changes = Vec::new();
    let mut t = PROBE_FROM;
    let mut before = offset(t);
    while t < PROBE_TO {
        let next = t + SCAN_STEP_SECS;
        let after = offset(next);
        if after != before {
            // The change lies in (t, next]: narrow it to the second.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == before {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            changes.push(hi);
        }
        before = after;
        t = next;
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::validate::cron_parser;

    fn problem(cron: &str, tz: &str) -> Option<String> {
        let cron = cron_parser().parse(cron).expect("cron parses");
        evaluation_problem(&cron, tz.parse().expect("zone"))
    }

    #[test]
    fn a_cron_that_never_fires_is_a_problem() {
        for cron in ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 11 *"] {
            let p = problem(cron, "UTC").expect(cron);
            assert!(p.contains("never fires"), "{cron}: {p}");
        }
    }

    #[test]
    fn crons_through_daylight_saving_changes_evaluate() {
        // Gaps and folds at 02:00 (New York), at midnight (Santiago, Havana), of 30
        // minutes (Lord Howe), and zones that move with Ramadan (Casablanca).
        for tz in [
            "America/New_York",
            "America/Santiago",
            "America/Havana",
            "Australia/Lord_Howe",
            "Africa/Casablanca",
            "Europe/Dublin",
            "Asia/Shanghai",
        ] {
            for cron in [
                "30 2 * * *",
                "0 0 * * *",
                "0 0 0 * * *",
                "* * * * * *",
                "0 0 29 2 *",
                "0 0 L * *",
                "0 2 * * 0",
            ] {
                assert_eq!(problem(cron, tz), None, "{cron} in {tz}");
            }
        }
    }

    #[test]
    fn offset_changes_are_found_to_the_second() {
        let changes = offset_changes("America/New_York".parse().expect("zone"));
        // Two a year for eight years; the first is 2025-03-09T07:00:00Z (02:00 EST).
        assert_eq!(changes.len(), 16);
        assert_eq!(changes[0], 1_741_503_600);
        assert!(offset_changes(Tz::UTC).is_empty());
        assert!(offset_changes("Asia/Shanghai".parse().expect("zone")).is_empty());
    }
}
