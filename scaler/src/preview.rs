//! A preview of a candidate policy on the workload's own past: the live and the
//! candidate policy replayed over the request rate the store holds for the workload
//! (its window, `store.horizon`, 15 minutes by default), through the same engine and
//! placement simulator as `spillway simulate`, with under/over-provisioning, actions
//! and cost for both.
//!
//! Demand is measured in the live policy's `targetPerReplica` (what one replica is
//! taken to serve), for both runs, so the two are scored against the same demand. Gaps
//! in the window (a second with no value) repeat the last value.
//!
//! With a PromQL source configured, the past comes from it instead (`?window=`, 1 h by
//! default, at most a day): Prometheus, Thanos, Mimir and VictoriaMetrics keep weeks of
//! the request rate that the store keeps minutes of. Without one, `window` only trims
//! the store's.
//!
//! [`preview`] is pure; [`router`] serves it at
//! `GET /api/v1/workloads/{tenant}/{app}/preview` for `spillway policy diff --replay`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use spillway_collector::promql::{MAX_HISTORY_SECONDS, history};
use spillway_collector::{Signal, SignalView, WorkloadKey};

use crate::access::{HttpCredentials, Input};
use crate::http::HttpState;
use crate::policy::AppPolicy;
use crate::simulate::trace::Trace;
use crate::simulate::{SPILLWAY, SimulateError, Totals, World, simulate};

/// One policy's figures over the replayed window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewRow {
    pub policy: String,
    pub under_replica_seconds: f64,
    pub over_replica_seconds: f64,
    pub actions: u32,
    pub peak_replicas: u32,
    pub regular_replica_hours: f64,
    pub burst_replica_hours: f64,
    pub cost: f64,
}

impl PreviewRow {
    fn new(policy: &str, t: &Totals) -> Self {
        Self {
            policy: policy.to_owned(),
            under_replica_seconds: t.under_replica_seconds,
            over_replica_seconds: t.over_replica_seconds,
            actions: t.actions,
            peak_replicas: t.peak_replicas,
            regular_replica_hours: t.regular_replica_hours,
            burst_replica_hours: t.burst_replica_hours,
            cost: t.cost,
        }
    }
}

/// Both policies over the same seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    pub tenant: String,
    pub app: String,
    /// The unix second the replay starts at, and how many seconds it covers.
    pub from_unix: i64,
    pub seconds: usize,
    /// Where the past came from: the store's window or the PromQL source's history.
    #[serde(default)]
    pub source: String,
    /// `live`, then `candidate`.
    pub rows: Vec<PreviewRow>,
}

impl Preview {
    /// The table `spillway policy diff --replay` prints.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}/{}: {} s of its own request rate from {} ({})\n",
            self.tenant,
            self.app,
            self.seconds,
            crate::freeze::timestamp(self.from_unix.saturating_mul(1000)),
            self.source
        );
        out.push_str(&format!(
            "  {:<10} {:>14} {:>14} {:>8} {:>5} {:>11} {:>11} {:>10}\n",
            "POLICY",
            "UNDER repl·s",
            "OVER repl·s",
            "ACTIONS",
            "PEAK",
            "REGULAR r·h",
            "BURST r·h",
            "COST"
        ));
        for r in &self.rows {
            out.push_str(&format!(
                "  {:<10} {:>14.1} {:>14.1} {:>8} {:>5} {:>11.3} {:>11.3} {:>10.4}\n",
                r.policy,
                r.under_replica_seconds,
                r.over_replica_seconds,
                r.actions,
                r.peak_replicas,
                r.regular_replica_hours,
                r.burst_replica_hours,
                r.cost
            ));
        }
        out
    }
}

/// The workload's request rate per second over what the store holds, up to `now`.
pub fn recent_rate(view: &impl SignalView, now: i64) -> Option<(i64, Trace)> {
    let from = view.oldest(Signal::Qps)?;
    let to = view.newest(Signal::Qps)?.min(now);
    let mut last = 0.0;
    let rps = (from..=to)
        .map(|second| {
            if let Some(value) = view.mean(Signal::Qps, second, 1).filter(|v| v.is_finite()) {
                last = value;
            }
            last
        })
        .collect();
    Some((
        from,
        Trace {
            rps,
            description: "the store's window".to_owned(),
        },
    ))
}

/// Replays `trace` (starting at unix second `from`) under both policies.
pub fn preview(
    live: &AppPolicy,
    candidate: &AppPolicy,
    from: i64,
    trace: &Trace,
) -> Result<Preview, SimulateError> {
    let capacity = live.signals.qps.map_or(0.0, |q| q.target_per_replica);
    let world = World {
        capacity_per_replica: capacity,
        start_unix: from,
        timeline_points: 1,
        ..World::new(1.0)
    };
    let mut rows = Vec::with_capacity(2);
    for (name, policy) in [("live", live), ("candidate", candidate)] {
        let report = simulate(policy, trace, &world)?;
        if let Some(run) = report.run(SPILLWAY) {
            rows.push(PreviewRow::new(name, &run.totals));
        }
    }
    Ok(Preview {
        tenant: live.tenant.clone(),
        app: live.app.clone(),
        from_unix: from,
        seconds: trace.rps.len(),
        source: trace.description.clone(),
        rows,
    })
}

/// How much of the PromQL source's past is replayed unless `?window=` says.
const DEFAULT_HISTORY_SECONDS: u64 = 3600;

/// Where a replay reads the past beyond the store's window.
#[derive(Clone)]
pub struct HistorySource {
    pub client: reqwest::Client,
    pub config: spillway_collector::promql::PromqlConfig,
}

#[derive(Deserialize)]
struct PreviewParams {
    /// How far back, e.g. `6h`.
    window: Option<String>,
}

/// The last `window` seconds of a store window.
fn trim(from: i64, mut trace: Trace, window: Option<u64>) -> (i64, Trace) {
    let keep = window.map_or(trace.rps.len(), |w| {
        usize::try_from(w).unwrap_or(usize::MAX)
    });
    let drop = trace.rps.len().saturating_sub(keep);
    trace.rps.drain(..drop);
    (from + drop as i64, trace)
}

pub fn router() -> Router<HttpState> {
    Router::new().route(
        "/api/v1/workloads/{tenant}/{app}/preview",
        get(preview_handler),
    )
}

async fn preview_handler(
    State(state): State<HttpState>,
    credentials: HttpCredentials,
    Path((tenant, app)): Path<(String, String)>,
    Query(params): Query<PreviewParams>,
) -> Response {
    let permit = match state.access.authorize_http(Input::Status, &credentials) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    if !permit.tenants.allows(&tenant) {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "identity `{}` may not read tenant `{tenant}`\n",
                permit.name()
            ),
        )
            .into_response();
    }
    let key = WorkloadKey::new(tenant.as_str(), app.as_str());
    if state.workloads.get(&key).is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("no workload {key}: it is not in any loaded policy\n"),
        )
            .into_response();
    }
    let set = state.policies.current();
    let policy_key = state.workloads.policy_key(&key);
    let live = set
        .workloads()
        .find(|(k, _)| *k == policy_key)
        .map(|(_, p)| p);
    let (Some(live), Some(candidate)) = (live, set.candidate(&policy_key)) else {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "{key} has no candidate policy: its tenant's file has no `candidate:` for it\n"
            ),
        )
            .into_response();
    };
    let now = spillway_collector::clock::unix_ms().div_euclid(1000);
    let window = match params
        .window
        .as_deref()
        .map(crate::durations::parse)
        .transpose()
    {
        Ok(window) => window.map(|w| w.as_secs().max(1)),
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("window: {error}\n")).into_response();
        }
    };
    if window.is_some_and(|w| w > MAX_HISTORY_SECONDS) {
        return (
            StatusCode::BAD_REQUEST,
            format!("window: at most {MAX_HISTORY_SECONDS} s (a day) is replayed\n"),
        )
            .into_response();
    }
    let from_history = match &state.history {
        Some(source) => {
            let seconds = window.unwrap_or(DEFAULT_HISTORY_SECONDS);
            match history(&source.client, &source.config, &key, now, seconds).await {
                Ok(past) => past.map(|h| {
                    (
                        h.from,
                        Trace {
                            rps: h.per_second,
                            description: format!("PromQL history at a {} s step", h.step_seconds),
                        },
                    )
                }),
                Err(error) => {
                    return (
                        StatusCode::BAD_GATEWAY,
                        format!("reading {key}'s history from the PromQL source: {error}\n"),
                    )
                        .into_response();
                }
            }
        }
        None => None,
    };
    // A workload the PromQL source has no past for yet still has the store's minutes.
    let past = from_history.or_else(|| {
        let view = state.ingest.store().view(&key);
        recent_rate(&view, now).map(|(from, trace)| trim(from, trace, window))
    });
    let Some((from, trace)) = past else {
        return (
            StatusCode::NOT_FOUND,
            format!("{key} has no request rate in the store or the PromQL source yet; nothing to replay\n"),
        )
            .into_response();
    };
    // A window of the store is at most its horizon (minutes of seconds), but the replay
    // is CPU work: off the async threads.
    let replayed =
        tokio::task::spawn_blocking(move || preview(&live, &candidate, from, &trace)).await;
    match replayed {
        Ok(Ok(preview)) => axum::Json(preview).into_response(),
        Ok(Err(error)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{error}\n")).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the replay failed: {error}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySet, parse_policy};

    #[test]
    fn the_candidate_is_replayed_beside_the_live_policy_on_the_same_seconds() {
        let file = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: acme }
spec:
  namespaces: [acme]
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 10s, qps: { targetPerReplica: 100 } }
  apps: { web: {} }
candidate:
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 10s, qps: { targetPerReplica: 50 } }
  apps: { web: {} }
";
        let set = PolicySet::from_policies(vec![parse_policy("acme.yaml", file).expect("parses")])
            .expect("valid");
        let key = WorkloadKey::new("acme", "web");
        let live = set
            .workloads()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p)
            .expect("live");
        let candidate = set.candidate(&key).expect("candidate");
        // 10 minutes: 300/s, then a step to 900/s.
        let rps: Vec<f64> = (0..600)
            .map(|s| if s < 300 { 300.0 } else { 900.0 })
            .collect();
        let trace = Trace {
            rps,
            description: "test".into(),
        };
        let p = preview(&live, &candidate, 1_800_000_000, &trace).expect("replayed");
        assert_eq!(p.seconds, 600);
        let names: Vec<&str> = p.rows.iter().map(|r| r.policy.as_str()).collect();
        assert_eq!(names, ["live", "candidate"]);
        let (live, candidate) = (&p.rows[0], &p.rows[1]);
        // Twice the replicas for the same load: at least as well served, more paid.
        assert!(
            candidate.peak_replicas >= 2 * live.peak_replicas - 1,
            "{p:?}"
        );
        assert!(
            candidate.under_replica_seconds <= live.under_replica_seconds,
            "{p:?}"
        );
        assert!(
            candidate.over_replica_seconds > live.over_replica_seconds,
            "{p:?}"
        );
        assert!(candidate.cost > live.cost, "{p:?}");
        let table = p.table();
        assert!(
            table.contains("live") && table.contains("candidate") && table.contains("600 s"),
            "{table}"
        );
    }

    #[test]
    fn a_window_keeps_the_last_seconds_of_the_store() {
        let trace = Trace {
            rps: vec![1.0, 2.0, 3.0, 4.0],
            description: "test".into(),
        };
        let (from, kept) = trim(100, trace.clone(), Some(3));
        assert_eq!((from, kept.rps), (101, vec![2.0, 3.0, 4.0]));
        let (from, kept) = trim(100, trace.clone(), Some(10));
        assert_eq!((from, kept.rps.len()), (100, 4));
        assert_eq!(trim(100, trace, None).1.rps.len(), 4);
    }

    #[test]
    fn gaps_in_the_window_repeat_the_last_value() {
        use spillway_collector::ingest::Ingest;
        use spillway_collector::store::StoreLimits;
        let ingest = Ingest::new(StoreLimits::default());
        let key = WorkloadKey::new("acme", "web");
        let source: std::sync::Arc<str> = std::sync::Arc::from("gateway");
        let t0: i64 = 1_800_000_000_000;
        for (s, v) in [(0, 100.0), (1, 200.0), (4, 400.0)] {
            ingest.apply(&source, Signal::Qps, vec![(key.clone(), v)], t0 + s * 1000);
        }
        let view = ingest.store().view(&key);
        let (from, trace) = recent_rate(&view, t0 / 1000 + 10).expect("a window");
        assert_eq!(from, t0 / 1000);
        assert_eq!(trace.rps, vec![100.0, 200.0, 200.0, 200.0, 400.0]);
    }
}
