//! A workload's past from the PromQL source: one range query of the configured
//! expression, restricted to the workload, for `spillway policy diff --replay` over
//! more than the store's window.
//!
//! The expression is the operator's (any aggregation), so the restriction is a join on
//! the tenant/app labels with a constant one-series vector carrying them; Prometheus and
//! VictoriaMetrics evaluate it server-side, and the answer holds one workload only.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::response::ApiResponse;
use super::{PromqlConfig, PromqlError, PromqlQuery, get};
use crate::signal::{Signal, WorkloadKey};

/// Points a range query may return per series: Prometheus refuses more than 11,000.
const MAX_POINTS: u64 = 10_000;

/// The longest past a replay reads: a day of seconds stays a fast replay.
pub const MAX_HISTORY_SECONDS: u64 = 86_400;

/// A gap in the answer longer than this is no traffic, not a missed sample: Prometheus's
/// lookback delta, past which a series counts as gone.
const MAX_HELD_SECONDS: i64 = 300;

/// `query.expr` for `key` only.
pub fn workload_expr(query: &PromqlQuery, key: &WorkloadKey) -> String {
    let (tenant, app) = (&query.tenant_label, &query.app_label);
    format!(
        "({}) and on({tenant}, {app}) label_replace(label_replace(vector(1), \"{tenant}\", \"{}\", \"\", \"\"), \"{app}\", \"{}\", \"\", \"\")",
        query.expr,
        escape(&key.tenant),
        escape(&key.app),
    )
}

/// A PromQL double-quoted string's body.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[derive(Deserialize)]
struct MatrixSeries {
    /// `[[unix seconds, "value"], …]`.
    values: Vec<(f64, String)>,
}

/// A range answer as one value per timestamp (unix seconds), summed over its series;
/// values that are not finite numbers are left out.
pub fn parse_matrix(body: &[u8]) -> Result<Vec<(i64, f64)>, PromqlError> {
    let data = ApiResponse::parse(body)?;
    if data.result_type != "matrix" {
        return Err(PromqlError::NotMatrix(data.result_type));
    }
    let series: Vec<MatrixSeries> =
        serde_json::from_value(data.result).map_err(|e| PromqlError::Json(e.to_string()))?;
    let mut sums: BTreeMap<i64, f64> = BTreeMap::new();
    for s in series {
        for (at, value) in s.values {
            if let Some(value) = value.parse::<f64>().ok().filter(|v| v.is_finite()) {
                *sums.entry(at.round() as i64).or_default() += value;
            }
        }
    }
    Ok(sums.into_iter().collect())
}

/// Points at `step` seconds as one value per second from the first point in
/// `from..=to` to `to`: each point holds until the next, for at most
/// [`MAX_HELD_SECONDS`], then the rate is zero. Points outside the span asked for (a
/// broken or hostile server's) are left out, so they cannot stretch the result.
pub fn per_second(points: &[(i64, f64)], from: i64, to: i64) -> Option<(i64, Vec<f64>)> {
    let points: Vec<(i64, f64)> = points
        .iter()
        .copied()
        .filter(|(at, _)| (from..=to).contains(at))
        .collect();
    let first = points.first()?.0;
    let mut out = Vec::with_capacity(usize::try_from(to - first + 1).unwrap_or(0));
    let mut next = points.iter().peekable();
    let mut held = (first, 0.0);
    for second in first..=to {
        while let Some(&&(at, value)) = next.peek() {
            if at > second {
                break;
            }
            held = (at, value);
            next.next();
        }
        out.push(if second - held.0 <= MAX_HELD_SECONDS {
            held.1
        } else {
            0.0
        });
    }
    Some((first, out))
}

/// A workload's past as the source answered it.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// Unix second of the first value.
    pub from: i64,
    /// One value per second.
    pub per_second: Vec<f64>,
    /// The query's resolution.
    pub step_seconds: u64,
}

/// The request rate of `key` over the `seconds` before `now` (unix seconds), at the
/// finest step the API allows for that span; `None` when the source has none of it.
pub async fn history(
    client: &reqwest::Client,
    config: &PromqlConfig,
    key: &WorkloadKey,
    now: i64,
    seconds: u64,
) -> Result<Option<History>, PromqlError> {
    let query = config
        .queries
        .iter()
        .find(|q| q.signal == Signal::Qps)
        .ok_or(PromqlError::NoQuery(Signal::Qps.as_str()))?;
    let seconds = seconds.clamp(1, MAX_HISTORY_SECONDS);
    let step = seconds.div_ceil(MAX_POINTS).max(1);
    let start = now - seconds as i64;
    let (expr, start_text, end_text, step_text) = (
        workload_expr(query, key),
        start.to_string(),
        now.to_string(),
        format!("{step}s"),
    );
    let body = get(
        client,
        config,
        "query_range",
        &[
            ("query", expr.as_str()),
            ("start", start_text.as_str()),
            ("end", end_text.as_str()),
            ("step", step_text.as_str()),
        ],
    )
    .await?;
    let points = parse_matrix(&body)?;
    Ok(
        per_second(&points, start, now).map(|(from, per_second)| History {
            from,
            per_second,
            step_seconds: step,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::query;
    use super::*;

    #[test]
    fn the_expression_is_restricted_to_the_workload_by_its_labels() {
        let expr = workload_expr(&query(), &WorkloadKey::new("acme", "we\"b"));
        assert_eq!(
            expr,
            "(sum by (tenant, app) (rate(gateway_requests_total[1m]))) and on(tenant, app) \
             label_replace(label_replace(vector(1), \"tenant\", \"acme\", \"\", \"\"), \"app\", \"we\\\"b\", \"\", \"\")"
        );
    }

    #[test]
    fn a_matrix_sums_its_series_per_timestamp_and_skips_what_is_not_a_number() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"tenant":"acme","app":"web"},"values":[[100,"1"],[115,"2"],[130,"NaN"]]},
            {"metric":{"tenant":"acme","app":"web","route":"/b"},"values":[[115,"3"]]}]}}"#;
        assert_eq!(parse_matrix(body).unwrap(), vec![(100, 1.0), (115, 5.0)]);
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(matches!(
            parse_matrix(vector),
            Err(PromqlError::NotMatrix(kind)) if kind == "vector"
        ));
    }

    #[test]
    fn points_hold_until_the_next_and_a_long_gap_reads_as_no_traffic() {
        let points = [(10, 1.0), (12, 2.0), (13 + MAX_HELD_SECONDS + 5, 3.0)];
        let (from, values) = per_second(&points, 0, 13 + MAX_HELD_SECONDS + 6).unwrap();
        assert_eq!(from, 10);
        assert_eq!(&values[..4], [1.0, 1.0, 2.0, 2.0]);
        // 12 + 300 is the last second 2.0 holds.
        assert_eq!(values[(12 + MAX_HELD_SECONDS - 10) as usize], 2.0);
        assert_eq!(values[(13 + MAX_HELD_SECONDS - 10) as usize], 0.0);
        assert_eq!(values[values.len() - 2..], [3.0, 3.0]);
        assert!(per_second(&[], 0, 100).is_none());
    }

    #[test]
    fn points_outside_the_span_asked_for_are_left_out() {
        // A point at the epoch would otherwise ask for decades of seconds.
        let points = [(0, 9.0), (100, 1.0), (101, 2.0), (500, 9.0)];
        let (from, values) = per_second(&points, 50, 102).unwrap();
        assert_eq!((from, values), (100, vec![1.0, 2.0, 2.0]));
        assert!(per_second(&[(0, 1.0)], 50, 102).is_none());
    }
}
