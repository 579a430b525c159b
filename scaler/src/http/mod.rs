//! The HTTP side: `/metrics`, health probes, and the status API behind
//! `spillway status` and `spillway explain`.

pub mod status;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dashmap::DashMap;
use spillway_collector::WorkloadKey;
use spillway_collector::ingest::Ingest;
use spillway_collector::scrape::TargetHealth;
use tokio::net::TcpListener;

use crate::access::writes::WriteAuthority;
use crate::access::{Access, HttpCredentials, Input, TenantScope};
use crate::cluster::hpa::HpaViews;
use crate::http::status::{StatusReport, TargetStatus, WorkloadStatus};
use crate::policy::PolicyStore;
use crate::serve::workloads::Workloads;
use crate::telemetry::{Metrics, TargetLabels};

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub workloads: Arc<Workloads>,
    pub ingest: Arc<Ingest>,
    pub targets: Arc<DashMap<Arc<str>, TargetHealth>>,
    pub policies: Arc<PolicyStore>,
    pub policy_status: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    /// Prometheus remote-write receiver mounted at `POST /api/v1/write`; `None`: the
    /// route answers 404 saying how to turn it on.
    pub remote_write: Option<Arc<spillway_collector::remote_write::RemoteWrite>>,
    /// The collector shards this process polls, when sharded.
    pub shards: Option<Arc<spillway_collector::shard::FanOutStats>>,
    /// The workloads' HPAs as the Kubernetes side last read them (empty without it).
    pub hpa: Arc<HpaViews>,
    /// HA mode refuses writes that would reach only this replica; `None`: accepted.
    pub write_refusal: Option<Arc<str>>,
    /// HA mode (any `ha:` section): a freeze set through the API would hold on the
    /// replica that took the call only, whatever the writers do, so it is refused.
    pub ha_mode: bool,
    /// Where API freezes are kept across restarts; `None`: in memory only.
    pub freeze_file: Option<Arc<crate::freeze::file::FreezeFile>>,
    /// Who may read what (`/metrics`, the status API).
    pub access: Arc<Access>,
    /// Who may write what (remote-write).
    pub writes: Arc<WriteAuthority>,
    /// What `/readyz` judges from.
    pub readiness: Arc<crate::readiness::Readiness>,
    /// The PromQL source, whose history a policy replay reads; `None`: the store's.
    pub history: Option<crate::preview::HistorySource>,
}

pub fn router(state: HttpState) -> Router {
    let remote_write = state.remote_write.clone();
    let refusal = state.write_refusal.clone();
    let refused_writes = state.metrics.clone();
    let writes = state.writes.clone();
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/api/v1/status", get(status))
        .route("/api/v1/workloads/{tenant}/{app}", get(workload))
        .merge(crate::freeze::api::router())
        .merge(crate::preview::router())
        .with_state(state);
    match (refusal, remote_write) {
        (Some(refusal), _) => {
            // Who is writing comes first, as for every write: a caller that may not
            // write learns nothing about the process's mode.
            let access = writes.access().clone();
            router.route(
                "/api/v1/write",
                post(move |credentials: HttpCredentials| async move {
                    if let Err(refused) = access.authorize_http(Input::Write, &credentials) {
                        return refused.into_response();
                    }
                    crate::ha::refuse_remote_write(State((refusal, refused_writes)))
                        .await
                        .into_response()
                }),
            )
        }
        (None, Some(receiver)) => router.merge(
            spillway_collector::remote_write::authorized_router(receiver, writes.remote_write()),
        ),
        (None, None) => router.route("/api/v1/write", post(remote_write_off)),
    }
}

/// A sender pointed at a Spillway without remote-write learns why from the response
/// (Prometheus logs it) instead of from a bare 404.
async fn remote_write_off() -> Response {
    (
        StatusCode::NOT_FOUND,
        "remote-write is off on this Spillway: add a `remoteWrite:` section (e.g. \
         `remoteWrite: {}`) to its serve config to accept it\n",
    )
        .into_response()
}

/// Serves the router on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    limits: crate::listener::HttpLimits,
    tls: Option<Arc<crate::keda::tls::ReloadingTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stats = state.metrics.http.clone();
    crate::listener::serve(
        listener,
        router(state),
        limits,
        tls,
        Arc::new(stats),
        shutdown,
    )
    .await
}

/// 200 once this replica can take over from another ([`crate::readiness`]), else 503
/// saying why. Open like `/healthz`: probes carry no credentials.
async fn ready(State(state): State<HttpState>) -> Response {
    let policies = state.policies.current();
    let tried = state
        .targets
        .iter()
        .map(|target| target.last_scrape_ms.is_some())
        .collect::<Vec<_>>();
    match state
        .readiness
        .check(tokio::time::Instant::now(), &policies, tried)
    {
        Ok(()) => "ok\n".into_response(),
        Err(not_ready) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{not_ready}\n")).into_response()
        }
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the 0.0.4 text format
/// for everyone else (curl, promtool).
async fn metrics(
    State(state): State<HttpState>,
    credentials: HttpCredentials,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = state.access.authorize_http(Input::Metrics, &credentials) {
        return refused.into_response();
    }
    refresh_gauges(&state);
    metrics_response(&state.metrics, &headers)
}

/// `/metrics` in the format the scraper asked for.
pub(crate) fn metrics_response(metrics: &Metrics, headers: &HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.encode_text(),
        )
            .into_response()
    }
}

/// Gauges that mirror collector state are read at scrape time, not pushed.
fn refresh_gauges(state: &HttpState) {
    let store = state.ingest.store();
    state.metrics.store_windows.set(store.window_count() as i64);
    state
        .metrics
        .store_bytes
        .set(store.approximate_bytes() as i64);
    refresh_target_gauges(&state.metrics, &state.targets);
    let refused = state
        .policies
        .status()
        .iter()
        .filter(|f| f.error.is_some())
        .count();
    state
        .metrics
        .policy_files_refused
        .set(i64::try_from(refused).unwrap_or(i64::MAX));
    // A workload that left the policies keeps no HPA series.
    let views: Vec<_> = state
        .hpa
        .all()
        .into_iter()
        .filter(|(key, _)| state.workloads.get(key).is_some())
        .collect();
    state.metrics.refresh_hpa(&views);
}

/// Per-target gauges, read from the scrape loop's health map at scrape time.
pub(crate) fn refresh_target_gauges(metrics: &Metrics, targets: &DashMap<Arc<str>, TargetHealth>) {
    for target in targets.iter() {
        let labels = TargetLabels {
            target: target.key().to_string(),
        };
        let health = target.value();
        metrics
            .scrape_up
            .get_or_create(&labels)
            .set(i64::from(health.up));
        metrics
            .scrape_target_samples
            .get_or_create(&labels)
            .set(i64::try_from(health.samples).unwrap_or(i64::MAX));
    }
}

/// The status a caller may see: its tenants' workloads; the scrape targets, policy
/// errors and shards (shared by every tenant) only for a caller that reads them all.
fn report(state: &HttpState, tenants: &TenantScope) -> StatusReport {
    let everything = tenants.is_all();
    StatusReport {
        workloads: state
            .workloads
            .all()
            .iter()
            .filter(|entry| tenants.allows(&entry.key.tenant))
            .map(|entry| workload_status(state, entry))
            .collect(),
        targets: if everything {
            state
                .targets
                .iter()
                .map(|t| TargetStatus::from_health(t.key(), t.value()))
                .collect()
        } else {
            Vec::new()
        },
        policy_errors: if everything {
            (state.policy_status)()
        } else {
            Vec::new()
        },
        shards: match &state.shards {
            Some(shards) if everything => shards.shards(),
            _ => Vec::new(),
        },
        freezes: crate::freeze::api::visible_freezes(&state.workloads, tenants),
        audit: crate::freeze::api::visible_audit(&state.workloads, tenants),
    }
}

async fn status(State(state): State<HttpState>, credentials: HttpCredentials) -> Response {
    match state.access.authorize_http(Input::Status, &credentials) {
        Ok(permit) => axum::Json(report(&state, &permit.tenants)).into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn workload(
    State(state): State<HttpState>,
    credentials: HttpCredentials,
    Path((tenant, app)): Path<(String, String)>,
) -> Response {
    let permit = match state.access.authorize_http(Input::Status, &credentials) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    // Said the same whether or not the workload exists, so a reader cannot probe
    // another tenant's apps.
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
    match state
        .workloads
        .get(&WorkloadKey::new(tenant.as_str(), app.as_str()))
    {
        Some(entry) => axum::Json(workload_status(&state, &entry)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no workload {tenant}/{app}: it is not in any loaded policy\n"),
        )
            .into_response(),
    }
}

fn workload_status(
    state: &HttpState,
    entry: &crate::serve::workloads::WorkloadEntry,
) -> WorkloadStatus {
    let mut status = WorkloadStatus::from_entry(entry);
    status.hpa = state.hpa.get(&entry.key).map(|view| (*view).clone());
    status
}
