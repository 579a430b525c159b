//! Cron schedules: minimum replicas over recurring time slices, in the schedule's zone.

use chrono::{TimeZone, Utc};

use crate::policy::{AppPolicy, Schedule};

/// A schedule in force at some instant, and when its slice ends (unix seconds).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActiveSchedule<'a> {
    pub schedule: &'a Schedule,
    pub ends_at: i64,
}

/// The slice of `schedule` containing `now`, if any: the latest firing at or before `now`
/// plus the duration. Only the latest firing matters, as it ends last.
fn active(schedule: &Schedule, now: i64) -> Option<ActiveSchedule<'_>> {
    let at = Utc
        .timestamp_opt(now, 0)
        .single()?
        .with_timezone(&schedule.timezone);
    let start = schedule
        .cron
        .find_previous_occurrence(&at, true)
        .ok()?
        .timestamp();
    let ends_at = start + i64::from(schedule.duration_secs);
    (now < ends_at).then_some(ActiveSchedule { schedule, ends_at })
}

/// The schedule demanding the most replicas at `now`, if any is in force.
pub(crate) fn strongest(policy: &AppPolicy, now: i64) -> Option<ActiveSchedule<'_>> {
    policy
        .schedules
        .iter()
        .filter_map(|s| active(s, now))
        .max_by_key(|a| (a.schedule.min_replicas, a.ends_at))
}

/// Formats an instant in a schedule's zone for reasons.
pub(crate) fn local_time(schedule: &Schedule, at: i64) -> String {
    Utc.timestamp_opt(at, 0)
        .single()
        .map(|t| {
            t.with_timezone(&schedule.timezone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .unwrap_or_else(|| at.to_string())
}
