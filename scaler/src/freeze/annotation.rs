//! A freeze written on the ScaledObject, as KEDA's `autoscaling.keda.sh/paused` and
//! `autoscaling.keda.sh/paused-replicas` are, for when Spillway's API is unreachable:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     spillway.io/freeze: "INC-4711 payment outage"   # the reason; "true" works too
//!     spillway.io/freeze-floor: "20"                    # optional: hold at least 20
//!     spillway.io/freeze-until: "2026-11-12T02:00:00Z"  # optional: RFC 3339
//! ```
//!
//! `kubectl annotate scaledobject web spillway.io/freeze="INC-4711"` is enough. Unlike
//! KEDA's pause, the HPA stays in place and Spillway keeps answering: it answers the
//! held count. A value of `false` (or empty) is no freeze. A floor or expiry that does
//! not parse does not cancel the brake: the freeze holds, and says what it could not
//! read.

use std::collections::BTreeMap;

use spillway_collector::WorkloadKey;

use super::{Freeze, Scope, Source};

pub const FREEZE: &str = "spillway.io/freeze";
pub const FLOOR: &str = "spillway.io/freeze-floor";
pub const UNTIL: &str = "spillway.io/freeze-until";

/// The freeze a ScaledObject's annotations ask for, if any. `seen_ms` is when it was
/// first seen (a freeze's `since`).
pub fn parse(
    key: &WorkloadKey,
    annotations: &BTreeMap<String, String>,
    seen_ms: i64,
) -> Option<Freeze> {
    let value = annotations.get(FREEZE)?.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("false") {
        return None;
    }
    let reason = if value.eq_ignore_ascii_case("true") {
        format!("{FREEZE} annotation")
    } else {
        value.chars().take(512).collect()
    };
    let mut problems = Vec::new();
    let floor = annotations
        .get(FLOOR)
        .and_then(|text| match text.trim().parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(format!("{FLOOR} `{text}` is not a replica count; ignored"));
                None
            }
        });
    let until_ms =
        annotations.get(UNTIL).and_then(|text| {
            match chrono::DateTime::parse_from_rfc3339(text.trim()) {
                Ok(t) => Some(t.timestamp_millis()),
                Err(_) => {
                    problems.push(format!(
                        "{UNTIL} `{text}` is not an RFC 3339 time; holds until removed"
                    ));
                    None
                }
            }
        });
    Some(Freeze {
        scope: Scope::from(key),
        source: Source::Annotation,
        reason,
        by: "annotation".to_owned(),
        floor,
        since_ms: seen_ms,
        until_ms,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn annotations_set_reason_floor_and_expiry() {
        let key = WorkloadKey::new("acme", "web");
        let f = parse(
            &key,
            &annotations(&[
                (FREEZE, "INC-4711"),
                (FLOOR, "20"),
                (UNTIL, "2027-01-15T08:00:00Z"),
            ]),
            5,
        )
        .expect("frozen");
        assert_eq!(f.reason, "INC-4711");
        assert_eq!(f.floor, Some(20));
        // 2027-01-15T08:00:00Z
        assert_eq!(f.until_ms, Some(1_800_000_000_000));
        assert_eq!(
            (f.scope.to_string(), f.source),
            ("acme/web".to_owned(), Source::Annotation)
        );
        assert_eq!(f.problem, None);
        let bare = parse(&key, &annotations(&[(FREEZE, "true")]), 5).expect("frozen");
        assert_eq!((bare.floor, bare.until_ms), (None, None));
        assert!(bare.reason.contains(FREEZE));
    }

    #[test]
    fn false_or_absent_is_no_freeze_and_bad_values_still_hold() {
        let key = WorkloadKey::new("acme", "web");
        assert_eq!(parse(&key, &annotations(&[]), 0), None);
        assert_eq!(parse(&key, &annotations(&[(FREEZE, "false")]), 0), None);
        assert_eq!(parse(&key, &annotations(&[(FREEZE, " ")]), 0), None);
        assert_eq!(parse(&key, &annotations(&[(FLOOR, "3")]), 0), None);
        let f = parse(
            &key,
            &annotations(&[(FREEZE, "x"), (FLOOR, "many"), (UNTIL, "tomorrow")]),
            0,
        )
        .expect("still frozen");
        assert_eq!((f.floor, f.until_ms), (None, None));
        let problem = f.problem.expect("says what it could not read");
        assert!(
            problem.contains(FLOOR) && problem.contains(UNTIL),
            "{problem}"
        );
    }
}
