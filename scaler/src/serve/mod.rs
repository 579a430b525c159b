//! One Spillway process: collector, decision loop, KEDA gRPC service and HTTP side,
//! wired together and stopped together. `spillway demo` and `spillway serve` both run
//! this; they differ only in where targets and policies come from.
//!
//! # Layout
//!
//! - this module: the process's parts ([`ProcessConfig`]), started and stopped together
//!   ([`run`], [`run_with_cluster`]).
//! - [`decision_loop`]: runs the engine for every workload whose signals changed, and
//!   publishes each decision.
//! - [`workloads`]: each workload's published decision, activity channel and history,
//!   shared by the decision loop, the gRPC handlers and the HTTP side.
//! - [`replicas`]: where decided replicas run (a cluster, or the demo's node pool).
//! - [`shard_collector`]: `spillway collector --shard I/N`, the other process built from
//!   the same parts: a collector on its own that scrapes its hash shard of the targets
//!   and answers the scalers.

pub mod decision_loop;
pub mod replicas;
pub mod shard_collector;
pub mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spillway_collector::ingest::Ingest;
use spillway_collector::ingest_grpc::{PushConfig, PushService};
use spillway_collector::promql::{PromqlConfig, PromqlSource};
use spillway_collector::remote_write::{RemoteWrite, RemoteWriteConfig};
use spillway_collector::scrape::{ScrapeConfig, Scraper, Target};
use spillway_collector::shard::{FanOut, FanOutConfig};
use spillway_collector::store::StoreLimits;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::access::Access;
use crate::access::tokens::OutgoingToken;
use crate::access::writes::WriteAuthority;
use crate::http::{self, HttpState};
use crate::keda::{self, KedaService, ServerSettings};
use crate::policy::PolicyStore;
use crate::serve::decision_loop::{DecisionLoop, DecisionObserver};
use crate::serve::replicas::ReplicaSource;
use crate::serve::workloads::Workloads;
use crate::telemetry::{CollectorStats, Metrics};

/// Where policies come from and how often the directory is re-read.
#[derive(Clone, Debug)]
pub enum PolicySource {
    /// A directory of one YAML file per tenant (or a mounted ConfigMap), hot-reloaded.
    Directory {
        path: PathBuf,
        reload_every: Duration,
    },
    /// Policies already loaded (the demo's embedded ones); never reloaded.
    Fixed,
}

/// How often store windows are checked for eviction.
const EVICT_EVERY: Duration = Duration::from_secs(30);
/// A window of a workload no policy names and KEDA did not ask for goes after this long
/// without a write.
const UNWANTED_IDLE_MS: i64 = 10 * 60_000;
/// How long the first answers wait for the Kubernetes side's first read of replica
/// counts. KEDA's calls queue on the connection meanwhile; its HPA path gives up after
/// 3 s.
const FIRST_OBSERVATION: Duration = Duration::from_secs(2);

/// Everything a process needs besides its listeners.
pub struct ProcessConfig {
    pub scrape: ScrapeConfig,
    pub targets: Vec<Target>,
    pub store: StoreLimits,
    pub decision_tick: Duration,
    pub server: ServerSettings,
    pub policies: Arc<PolicyStore>,
    pub policy_source: PolicySource,
    pub observer: Option<DecisionObserver>,
    /// Where decided replicas run (the demo's simulated pool); `None`: not tracked.
    pub replicas: Option<Arc<dyn ReplicaSource>>,
    pub inputs: CollectorInputs,
    /// The HTTP port's connection and timeout limits.
    pub http: crate::listener::HttpLimits,
    /// TLS (and mTLS) on the HTTP port; `None`: plaintext.
    pub http_tls: Option<Arc<crate::keda::tls::ReloadingTls>>,
    /// Who may call each input.
    pub access: Arc<Access>,
    /// Where API freezes are kept across restarts (`freezeFile:`); `None`: in memory.
    pub freeze_file: Option<PathBuf>,
}

/// Inputs besides scraping, each off unless configured: anyone who can reach a port
/// that accepts samples can move a workload, so a deployment opens only the inputs it
/// uses.
#[derive(Clone, Debug, Default)]
pub struct CollectorInputs {
    /// Prometheus remote-write at `POST /api/v1/write` on the HTTP port.
    pub remote_write: Option<RemoteWriteConfig>,
    /// Spillway's gRPC push (`spillway.ingest.v1.Ingest`) on the gRPC port.
    pub push: Option<PushConfig>,
    /// Periodic queries of a Prometheus-compatible API.
    pub promql: Option<PromqlConfig>,
    /// Sharded collectors polled and merged; they scrape, so the process's own target
    /// list should be empty.
    pub collectors: Option<FanOutConfig>,
    /// The token sent to the collector shards (`collectors.tokenFile`).
    pub collectors_token_file: Option<PathBuf>,
    /// One of several replicas behind one Service: writes are refused unless they reach
    /// every replica (see [`crate::ha`]).
    pub ha: Option<crate::ha::HaSettings>,
}

/// The process's sockets, bound by the caller (tests bind 127.0.0.1:0).
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("building the HTTP client for scrapes failed: {0}")]
    Client(#[source] reqwest::Error),
    #[error("Kubernetes side failed: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("collector shards: {0}")]
    Collectors(#[from] spillway_collector::shard::fanout::FanOutError),
    #[error("collector shards' token: {0}")]
    Token(#[from] crate::access::TokenError),
    #[error("a task of the process panicked: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Installs ring as the process's one rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the HTTP client scrapes use: gzip, rustls with the process provider.
pub fn scrape_client(config: &ScrapeConfig) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(config.timeout)
        .pool_max_idle_per_host(4)
        .user_agent(concat!("spillway/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Runs until `shutdown` flips to true, then stops every part and returns.
pub async fn run(
    config: ProcessConfig,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    run_with_cluster(config, listeners, shutdown, None).await
}

/// [`run`], plus the Kubernetes side when `kubernetes` is set.
pub async fn run_with_cluster(
    config: ProcessConfig,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
    kubernetes: Option<crate::config::kubernetes::KubernetesSettings>,
) -> Result<(), RunError> {
    let access = config.access.clone();
    let workloads = Arc::new(Workloads::new());
    workloads.set_alias_limits(access.policy().aliases);
    let freeze_file = restore_freezes(&config, &workloads);
    let hpa_views = Arc::new(crate::cluster::hpa::HpaViews::new());
    let Inputs {
        ingest,
        client,
        remote_write,
        push,
        promql,
        fanout,
        shards,
    } = Inputs::build(&config, &workloads)?;
    let scrape_stats = Arc::new(spillway_collector::scrape::ScrapeStats::new());
    let mut metrics = process_metrics(
        &access,
        &ingest,
        scrape_stats.clone(),
        remote_write.clone(),
        push.as_ref(),
        promql.as_ref(),
        shards.clone(),
    );
    let policy_watch = kubernetes
        .as_ref()
        .filter(|k| k.scaling_policies)
        .map(|_| Arc::new(crate::cluster::policy_watch::PolicyWatchStats::default()));
    if let Some(stats) = &policy_watch {
        metrics.register_collector(Box::new(crate::cluster::policy_watch::PolicyWatchMetrics(
            stats.clone(),
        )));
    }
    metrics.register_collector(Box::new(crate::alerting::AlertingSeries {
        workloads: workloads.clone(),
    }));
    let metrics = Arc::new(metrics);
    let metrics_for_scrapes = metrics.clone();
    let history_client = client.clone();
    let scraper = Scraper::new(client, config.scrape.clone(), ingest.clone())
        .with_stats(scrape_stats)
        .on_scrape(Arc::new(move |duration, outcome| {
            metrics_for_scrapes.observe_scrape(duration, outcome)
        }));
    let targets = scraper.health();

    let mut tasks: JoinSet<Result<(), RunError>> = JoinSet::new();
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let readiness = Arc::new(crate::readiness::Readiness::new(
        tokio::time::Instant::now(),
        kubernetes.is_some(),
    ));
    if let Some(settings) = kubernetes.clone() {
        let (observed, first_pass) = tokio::sync::oneshot::channel();
        let cluster = crate::cluster::runner::run(
            settings,
            workloads.clone(),
            ingest.clone(),
            config.policies.clone(),
            hpa_views.clone(),
            shutdown.clone(),
            Some(observed),
        );
        start_cluster(&mut tasks, cluster, first_pass, &readiness).await;
    }

    if let (Some(settings), Some(stats)) = (&kubernetes, policy_watch) {
        crate::cluster::policy_watch::start(
            settings,
            config.policies.clone(),
            stats,
            &mut tasks,
            &shutdown,
        )
        .await?;
    }

    // Every configured workload has a decision before the gRPC port takes a call, so
    // GetMetrics answers from the start.
    let decisions = DecisionLoop {
        policies: config.policies.clone(),
        ingest: ingest.clone(),
        workloads: workloads.clone(),
        metrics: metrics.clone(),
        observer: config.observer,
        tick: config.decision_tick,
        replicas: config.replicas,
    };
    decisions.prime();

    let service = KedaService::new(
        config.policies.clone(),
        workloads.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let write_refusal = config
        .inputs
        .ha
        .as_ref()
        .and_then(crate::ha::HaSettings::write_refusal);
    let writes = Arc::new(WriteAuthority::new(
        access.clone(),
        config.policies.clone(),
        workloads.clone(),
    ));
    let grpc_server = keda::serve(
        listeners.grpc,
        service,
        config.server.clone(),
        wait(shutdown.clone()),
        push.map(|push| {
            crate::ha::PushGate::new(push, write_refusal.clone(), metrics.clone(), writes.clone())
        }),
        access.clone(),
    );
    tasks.spawn(async move { grpc_server.await.map_err(RunError::from) });

    let http_state = HttpState {
        metrics: metrics.clone(),
        workloads: workloads.clone(),
        ingest: ingest.clone(),
        targets,
        policies: config.policies.clone(),
        policy_status: refused_policy_files(config.policies.clone()),
        remote_write,
        shards,
        hpa: hpa_views.clone(),
        write_refusal,
        ha_mode: config.inputs.ha.is_some(),
        freeze_file,
        access: access.clone(),
        writes,
        readiness,
        // Only a source with a request-rate query has the past a replay needs.
        history: config
            .inputs
            .promql
            .clone()
            .filter(|promql| {
                promql
                    .queries
                    .iter()
                    .any(|q| q.signal == spillway_collector::Signal::Qps)
            })
            .map(|config| crate::preview::HistorySource {
                client: history_client.clone(),
                config,
            }),
    };
    let http_server = http::serve(
        listeners.http,
        http_state,
        config.http.clone(),
        config.http_tls.clone(),
        wait(shutdown.clone()),
    );
    tasks.spawn(async move { http_server.await.map_err(RunError::from) });

    // Sharded collectors scrape the targets and the gateway pods; this process then
    // only merges their answers.
    let sharded = config.inputs.collectors.is_some();
    let discovery = kubernetes.as_ref().filter(|_| !sharded);
    let fixed = if sharded {
        Vec::new()
    } else {
        config.targets.clone()
    };
    let (scrape_targets, follower) =
        crate::cluster::gateways::follow(discovery, fixed, Arc::new(|_| true)).await?;
    spawn_scraping(&mut tasks, scraper, scrape_targets, follower, &shutdown);

    spawn_pollers(&mut tasks, fanout, promql, &shutdown);
    spawn_eviction(&mut tasks, &ingest, &shutdown);

    spawn_access_upkeep(
        &mut tasks,
        &access,
        &workloads,
        &config.policies,
        &metrics,
        &shutdown,
    );

    let decision_shutdown = shutdown.clone();
    tasks.spawn(async move {
        decisions.run(decision_shutdown).await;
        Ok(())
    });

    if let PolicySource::Directory { path, reload_every } = config.policy_source {
        spawn_policy_reload(
            &mut tasks,
            config.policies.clone(),
            path,
            reload_every,
            metrics,
            workloads.clone(),
            &shutdown,
        );
    }

    join_parts(tasks).await
}

/// Records a reload's changes in the audit trail, each file under the tenant it serves.
fn audit_reload(
    workloads: &Workloads,
    policies: &PolicyStore,
    outcome: &crate::policy::ReloadOutcome,
) {
    let files = policies.status();
    workloads.audit().record_reload(
        outcome,
        |path| {
            files
                .iter()
                .find(|f| f.path == path)
                .and_then(|f| f.serving_tenant.clone())
        },
        spillway_collector::clock::unix_ms(),
    );
}

/// The store and every input besides scraping, each off unless configured.
struct Inputs {
    ingest: Arc<Ingest>,
    client: reqwest::Client,
    remote_write: Option<Arc<RemoteWrite>>,
    push: Option<PushService>,
    promql: Option<PromqlSource>,
    fanout: Option<FanOut>,
    shards: Option<Arc<spillway_collector::shard::FanOutStats>>,
}

impl Inputs {
    fn build(config: &ProcessConfig, workloads: &Arc<Workloads>) -> Result<Self, RunError> {
        let ingest = Ingest::new(config.store);
        // Workloads a policy names or KEDA asked for keep their windows; the others make
        // way for them when the store is full, and go once idle.
        let wanted = workloads.clone();
        ingest
            .store()
            .set_wanted(Arc::new(move |key| wanted.get(key).is_some()));
        let client = scrape_client(&config.scrape).map_err(RunError::Client)?;
        let remote_write = config
            .inputs
            .remote_write
            .clone()
            .map(|remote_write| RemoteWrite::new(remote_write, ingest.clone()));
        let push = config
            .inputs
            .push
            .map(|push| PushService::with_config(ingest.clone(), push));
        tracing::info!(
            remote_write = remote_write.is_some(),
            push = push.is_some(),
            promql = config.inputs.promql.is_some(),
            "inputs besides scraping (each off unless configured)"
        );
        let promql = config
            .inputs
            .promql
            .clone()
            .map(|promql| PromqlSource::new(client.clone(), promql, ingest.clone()));
        let fanout = config
            .inputs
            .collectors
            .clone()
            .map(|collectors| FanOut::new(collectors, ingest.clone()))
            .transpose()?;
        let fanout = match (fanout, &config.inputs.collectors_token_file) {
            (Some(fanout), Some(path)) => {
                let token = Arc::new(OutgoingToken::load(path.clone())?);
                Some(fanout.with_bearer(Arc::new(move || token.current())))
            }
            (fanout, _) => fanout,
        };
        let shards = fanout.as_ref().map(FanOut::stats);
        Ok(Inputs {
            ingest,
            client,
            remote_write,
            push,
            promql,
            fanout,
            shards,
        })
    }
}

/// `/metrics`: the process's own families, the access refusals and the collector's counters
/// (call before sharing them: more collectors may still be registered).
fn process_metrics(
    access: &Arc<Access>,
    ingest: &Arc<Ingest>,
    scrape_stats: Arc<spillway_collector::scrape::ScrapeStats>,
    remote_write: Option<Arc<RemoteWrite>>,
    push: Option<&PushService>,
    promql: Option<&PromqlSource>,
    shards: Option<Arc<spillway_collector::shard::FanOutStats>>,
) -> Metrics {
    let mut metrics = Metrics::new();
    metrics.register_access(access);
    metrics.register_collector_stats(CollectorStats {
        scrape: Some(scrape_stats),
        ingest: Some(ingest.clone()),
        remote_write,
        push: push.map(PushService::stats),
        promql: promql.map(PromqlSource::stats),
        shards,
        shard_server: None,
    });
    metrics
}

/// The Kubernetes side reads every bound workload's spec.replicas first, so the first
/// answers can already hold at what runs; bounded, so an unreachable API server
/// delays KEDA's first calls by at most that (they wait on the connection, they do
/// not fail). Readiness waits for that first pass however long it takes.
async fn start_cluster(
    tasks: &mut JoinSet<Result<(), RunError>>,
    cluster: impl std::future::Future<Output = Result<(), crate::cluster::ClusterError>>
    + Send
    + 'static,
    mut first_pass: tokio::sync::oneshot::Receiver<()>,
    readiness: &Arc<crate::readiness::Readiness>,
) {
    tasks.spawn(async move { cluster.await.map_err(RunError::from) });
    match tokio::time::timeout(FIRST_OBSERVATION, &mut first_pass).await {
        Ok(Ok(())) => readiness.replica_counts_read(),
        // The Kubernetes side ended: the task set reports why.
        Ok(Err(_)) => {}
        Err(_) => {
            tracing::warn!(
                "replica counts not read within {FIRST_OBSERVATION:?} of start; serving without them meanwhile"
            );
            let readiness = readiness.clone();
            tokio::spawn(async move {
                if first_pass.await.is_ok() {
                    readiness.replica_counts_read();
                }
            });
        }
    }
}

/// Each refused policy file with why, for the status API.
fn refused_policy_files(policies: Arc<PolicyStore>) -> Arc<dyn Fn() -> Vec<String> + Send + Sync> {
    Arc::new(move || {
        policies
            .status()
            .into_iter()
            .filter_map(|file| file.error.map(|e| format!("{}: {e}", file.path.display())))
            .collect()
    })
}

/// The inputs that poll rather than being called: the collector shards and PromQL.
fn spawn_pollers(
    tasks: &mut JoinSet<Result<(), RunError>>,
    fanout: Option<FanOut>,
    promql: Option<PromqlSource>,
    shutdown: &watch::Receiver<bool>,
) {
    if let Some(fanout) = fanout {
        let fanout_shutdown = shutdown.clone();
        tasks.spawn(async move {
            fanout.run(fanout_shutdown).await;
            Ok(())
        });
    }
    if let Some(promql) = promql {
        let promql_shutdown = shutdown.clone();
        tasks.spawn(async move {
            promql.run(promql_shutdown).await;
            Ok(())
        });
    }
}

/// Idle windows no policy or KEDA call wants are evicted every [`EVICT_EVERY`].
fn spawn_eviction(
    tasks: &mut JoinSet<Result<(), RunError>>,
    ingest: &Arc<Ingest>,
    shutdown: &watch::Receiver<bool>,
) {
    let evict_ingest = ingest.clone();
    let mut evict_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let mut ticker = tokio::time::interval(EVICT_EVERY);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let now_ms = spillway_collector::clock::unix_ms();
                    let evicted = evict_ingest.evict_idle(now_ms, UNWANTED_IDLE_MS);
                    if evicted > 0 {
                        tracing::debug!(evicted, "store windows evicted (idle and unwanted, or empty)");
                    }
                }
                _ = evict_shutdown.changed() => return Ok(()),
            }
        }
    });
}

/// Re-reads the policy directory every `reload_every`, off the async threads.
fn spawn_policy_reload(
    tasks: &mut JoinSet<Result<(), RunError>>,
    policies: Arc<PolicyStore>,
    path: PathBuf,
    reload_every: Duration,
    metrics: Arc<Metrics>,
    workloads: Arc<Workloads>,
    shutdown: &watch::Receiver<bool>,
) {
    let mut reload_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let mut ticker = tokio::time::interval(reload_every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let store = policies.clone();
                    let dir = path.clone();
                    // The store catches its own panics; a failed task is only
                    // logged, so the policies in force keep serving either way.
                    match tokio::task::spawn_blocking(move || store.reload(&dir)).await {
                        Ok(outcome) => {
                            metrics.record_reload(&outcome);
                            audit_reload(&workloads, &policies, &outcome);
                        }
                        Err(error) => {
                            metrics.policy_reload_panics.inc();
                            tracing::error!(%error, "policy reload failed; the policies in force keep serving");
                        }
                    }
                }
                _ = reload_shutdown.changed() => return Ok(()),
            }
        }
    });
}

/// Token files re-read when they change, and aliases no ScaledObject asks for any more
/// dropped with their workloads.
fn spawn_access_upkeep(
    tasks: &mut JoinSet<Result<(), RunError>>,
    access: &Arc<Access>,
    workloads: &Arc<Workloads>,
    policies: &Arc<PolicyStore>,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) {
    if let Some(watch) = access.tokens().spawn_watch() {
        let mut token_shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _ = token_shutdown.wait_for(|stop| *stop).await;
            watch.abort();
            Ok(())
        });
    }
    let limits = access.policy().aliases;
    // A few checks per expiry period: an alias outlives its last call by at most a
    // quarter more.
    let every = Duration::from_millis(u64::try_from(limits.expire_after_ms / 4).unwrap_or(60_000))
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let (workloads, policies, metrics) = (workloads.clone(), policies.clone(), metrics.clone());
    let mut alias_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let current = policies.current();
                    let gone = workloads.expire_aliases(spillway_collector::clock::unix_ms(), |key| {
                        current.names(&key.tenant, &key.app)
                    });
                    for key in &gone {
                        tracing::info!(workload = %key, "alias dropped: no ScaledObject asked for it within access.aliases.expireAfter");
                        metrics.forget_workload(&crate::telemetry::WorkloadLabels::from(key));
                    }
                    if !gone.is_empty() {
                        metrics.workloads.set(workloads.len() as i64);
                    }
                }
                _ = alias_shutdown.changed() => return Ok(()),
            }
        }
    });
}

/// The scrape loop over a target list, and the gateway follower that keeps the list
/// current when there is one.
pub(crate) fn spawn_scraping(
    tasks: &mut JoinSet<Result<(), RunError>>,
    scraper: Scraper,
    targets: watch::Receiver<Vec<Target>>,
    follower: Option<crate::cluster::gateways::GatewayFollower>,
    shutdown: &watch::Receiver<bool>,
) {
    if let Some(follower) = follower {
        let follow_shutdown = shutdown.clone();
        tasks.spawn(async move {
            follower.run(follow_shutdown).await;
            Ok(())
        });
    }
    let scrape_shutdown = shutdown.clone();
    tasks.spawn(async move {
        scraper.run_tracking(targets, scrape_shutdown).await;
        Ok(())
    });
}

/// Waits for every part of a process; the first to fail stops the others and its error
/// is the process's.
pub(crate) async fn join_parts(mut tasks: JoinSet<Result<(), RunError>>) -> Result<(), RunError> {
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(RunError::from).and_then(|r| r);
        if let Err(error) = result {
            tracing::error!(%error, "part of the process failed; shutting down");
            first_error.get_or_insert(error);
            tasks.abort_all();
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The API freezes of the last run, back in force before the first decision, so a
/// restart mid-incident does not release the brake. A file that cannot be read is
/// reported and left as it is (a later set or lift rewrites it); in HA mode API freezes
/// are refused, so the file is not used.
fn restore_freezes(
    config: &ProcessConfig,
    workloads: &Workloads,
) -> Option<Arc<crate::freeze::file::FreezeFile>> {
    let path = config.freeze_file.clone()?;
    if config.inputs.ha.is_some() {
        tracing::warn!(
            path = %path.display(),
            "freezeFile is not used in HA mode (API freezes are refused there; annotate the ScaledObject)"
        );
        return None;
    }
    let file = crate::freeze::file::FreezeFile::new(path);
    let now_ms = spillway_collector::clock::unix_ms();
    match file.load() {
        Ok(freezes) => {
            let live: Vec<_> = freezes.into_iter().filter(|f| !f.expired(now_ms)).collect();
            if !live.is_empty() {
                tracing::warn!(
                    count = live.len(),
                    "API freezes restored from the freeze file"
                );
            }
            workloads.freezes().restore(live, workloads.audit(), now_ms);
        }
        Err(error) => tracing::error!(
            kind = error.label(),
            "{error}; starting without the freezes it may hold"
        ),
    }
    Some(Arc::new(file))
}
