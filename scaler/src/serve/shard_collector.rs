//! `spillway collector --shard I/N`: one collector shard on its own.
//!
//! It reads the same configuration file as `spillway serve`, keeps the scrape targets
//! whose address hashes to shard I of N (Prometheus' `hashmod`), scrapes them, and
//! answers `spillway.shard.v1.Shard/Snapshot` with the per-workload sums. It decides
//! nothing: the scalers poll every shard and merge (see
//! [`spillway_collector::shard`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dashmap::DashMap;
use spillway_collector::ingest::Ingest;
use spillway_collector::scrape::{ScrapeConfig, ScrapeStats, Scraper, Target, TargetHealth};
use spillway_collector::shard::{ShardServer, ShardSpec};
use spillway_collector::store::StoreLimits;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;

use crate::access::{Access, HttpCredentials, Input};
use crate::http::status::TargetStatus;
use crate::serve::{Listeners, RunError, scrape_client};
use crate::telemetry::{CollectorStats, Metrics};
use tonic::service::interceptor::InterceptedService;

/// A shard only sums its targets' latest values; the scalers keep the history.
const SHARD_HORIZON_SECS: u32 = 60;

pub struct ShardProcess {
    pub shard: ShardSpec,
    pub scrape: ScrapeConfig,
    /// Every target in the configuration; the shard keeps the ones it owns.
    pub targets: Vec<Target>,
    /// Gateway pods discovered (and followed) from here, also kept by ownership.
    pub kubernetes: Option<crate::config::kubernetes::KubernetesSettings>,
    pub max_windows: usize,
    /// TLS (and mTLS) on the HTTP port; `None`: plaintext.
    pub http_tls: Option<Arc<crate::keda::tls::ReloadingTls>>,
    /// Who may poll the shard service, read `/metrics` and the status.
    pub access: Arc<Access>,
}

#[derive(Clone)]
struct ShardHttp {
    metrics: Arc<Metrics>,
    targets: Arc<DashMap<Arc<str>, TargetHealth>>,
    server: ShardServer,
    shard: ShardSpec,
    access: Arc<Access>,
}

/// Runs the shard until `shutdown` flips to true.
pub async fn run(
    process: ShardProcess,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let shard = process.shard;
    let (owned, follower) = crate::cluster::gateways::follow(
        process.kubernetes.as_ref(),
        process.targets,
        Arc::new(move |target: &Target| shard.owns(target)),
    )
    .await?;
    tracing::info!(shard = %process.shard, owned = owned.borrow().len(), "collector shard starting");
    let ingest = Ingest::new(StoreLimits {
        horizon_secs: SHARD_HORIZON_SECS,
        max_windows: process.max_windows,
        // A shard holds what its scaler asks of every tenant; quotas are the scaler's.
        max_windows_per_tenant: process.max_windows,
    });
    let client = scrape_client(&process.scrape).map_err(RunError::Client)?;
    let scrape_stats = Arc::new(ScrapeStats::new());
    // Two scrapes per target make the first rate; the timeout bounds the second one.
    let warm_after = 2 * process.scrape.interval + process.scrape.timeout;
    let warm_at_ms = spillway_collector::clock::unix_ms()
        + i64::try_from(warm_after.as_millis()).unwrap_or(i64::MAX);
    let scraper = Scraper::new(client, process.scrape.clone(), ingest.clone())
        .with_stats(scrape_stats.clone());
    let targets = scraper.health();
    let server = ShardServer::new(process.shard, ingest.clone(), targets.clone(), warm_at_ms);
    let access = process.access.clone();
    let mut metrics = Metrics::new();
    metrics.register_access(&access);
    metrics.register_collector_stats(CollectorStats {
        scrape: Some(scrape_stats),
        ingest: Some(ingest.clone()),
        shard_server: Some(server.stats()),
        ..CollectorStats::default()
    });
    let metrics = Arc::new(metrics);
    let for_scrapes = metrics.clone();
    let scraper = scraper.on_scrape(Arc::new(move |duration, outcome| {
        for_scrapes.observe_scrape(duration, outcome)
    }));

    let mut tasks: JoinSet<Result<(), RunError>> = JoinSet::new();
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // Every workload's totals: only a scaler (role shard) or an admin may read them.
    let gate = access.clone();
    let snapshot = InterceptedService::new(
        server.clone().into_service(),
        move |request: tonic::Request<()>| {
            gate.authorize_grpc(Input::Shard, &request)?;
            Ok(request)
        },
    );
    if let Some(watch) = access.tokens().spawn_watch() {
        let mut token_shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _ = token_shutdown.wait_for(|stop| *stop).await;
            watch.abort();
            Ok(())
        });
    }
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(snapshot)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listeners.grpc),
            wait(shutdown.clone()),
        );
    tasks.spawn(async move { grpc.await.map_err(RunError::from) });

    let state = ShardHttp {
        metrics,
        targets,
        server,
        shard: process.shard,
        access,
    };
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/api/v1/status", get(status))
        .with_state(state);
    let http_shutdown = wait(shutdown.clone());
    let http_tls = process.http_tls.clone();
    tasks.spawn(async move {
        let stats = Arc::new(crate::listener::HttpStats::default());
        crate::listener::serve(
            listeners.http,
            router,
            crate::listener::HttpLimits::default(),
            http_tls,
            stats,
            http_shutdown,
        )
        .await
        .map_err(RunError::from)
    });

    crate::serve::spawn_scraping(&mut tasks, scraper, owned, follower, &shutdown);

    crate::serve::join_parts(tasks).await
}

async fn metrics_handler(
    State(state): State<ShardHttp>,
    credentials: HttpCredentials,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = state.access.authorize_http(Input::Metrics, &credentials) {
        return refused.into_response();
    }
    crate::http::refresh_target_gauges(&state.metrics, &state.targets);
    crate::http::metrics_response(&state.metrics, &headers)
}

/// Ready once warm: before that its answers would understate its share, and the scalers
/// do not count it anyway.
async fn ready(State(state): State<ShardHttp>) -> Response {
    if state.server.is_warm(spillway_collector::clock::unix_ms()) {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "collector shard {} is warming up: not every target has had two scrapes yet\n",
                state.shard
            ),
        )
            .into_response()
    }
}

#[derive(serde::Serialize)]
struct ShardStatusReport {
    shard: String,
    warm: bool,
    targets: Vec<TargetStatus>,
}

async fn status(State(state): State<ShardHttp>, credentials: HttpCredentials) -> Response {
    let permit = match state.access.authorize_http(Input::Status, &credentials) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    // The targets serve every tenant: only a reader of all of them sees the list.
    let targets = if permit.tenants.is_all() {
        state
            .targets
            .iter()
            .map(|t| TargetStatus::from_health(t.key(), t.value()))
            .collect()
    } else {
        Vec::new()
    };
    axum::Json(ShardStatusReport {
        shard: state.shard.to_string(),
        warm: state.server.is_warm(spillway_collector::clock::unix_ms()),
        targets,
    })
    .into_response()
}
