//! Scraping gateways' Prometheus text exposition.
//!
//! Every target runs its own task on its own interval, so a slow or dead target only
//! delays itself; a semaphore bounds how many scrapes are in flight at once, and each
//! scrape has its own timeout and body size limit. A failed or garbled scrape leaves the
//! target's last contribution in place (until staleness drops it) and is recorded in the
//! target's [`TargetHealth`].

mod health;
mod target;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};

pub use health::{ScrapeStats, TargetHealth};
pub use target::{
    QpsMapping, ScrapeError, ScrapeOutcome, ingest_body, scrape_once, scrape_with_resources,
};

use crate::ingest::Ingest;
use crate::rate::CounterTracker;
use crate::resources::ResourceMapping;
use crate::signal::Signal;

/// How and what to scrape.
#[derive(Clone, Debug)]
pub struct ScrapeConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Scrapes in flight at once across all targets.
    pub max_concurrency: usize,
    /// Responses larger than this are refused (protects memory from a broken target).
    pub max_body_bytes: usize,
    /// A target's contribution is dropped when its last good scrape is older than this.
    pub staleness: Duration,
    pub mapping: QpsMapping,
    /// Counter series tracked per target; samples of further series are dropped.
    pub max_series_per_target: usize,
    /// cAdvisor CPU/memory series to roll up from the same pages (kubelet targets).
    pub resources: Option<ResourceMapping>,
}

impl Default for ScrapeConfig {
    /// Scrapes in flight and page sizes from the default memory budget
    /// (see [`crate::budget`]): together they fit its scrape share.
    fn default() -> Self {
        let derived = crate::budget::MemoryBudget::default().derive(900);
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            max_concurrency: derived.scrape_max_concurrency,
            max_body_bytes: derived.scrape_max_body_bytes,
            staleness: Duration::from_secs(30),
            mapping: QpsMapping::default(),
            max_series_per_target: 500_000,
            resources: None,
        }
    }
}

/// One endpoint to scrape. `id` names it in health reports and as a contribution source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub id: Arc<str>,
    pub url: String,
}

impl Target {
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            id: url.as_str().into(),
            url,
        }
    }
}

/// Called after every scrape with its duration and outcome (for the process's metrics).
pub type ScrapeHook = Arc<dyn Fn(Duration, &Result<ScrapeOutcome, ScrapeError>) + Send + Sync>;

/// Runs scrapes of a fixed target list until `shutdown` flips to `true`.
pub struct Scraper {
    client: reqwest::Client,
    config: ScrapeConfig,
    ingest: Arc<Ingest>,
    health: Arc<DashMap<Arc<str>, TargetHealth>>,
    stats: Arc<ScrapeStats>,
    hook: Option<ScrapeHook>,
}

impl Scraper {
    pub fn new(client: reqwest::Client, config: ScrapeConfig, ingest: Arc<Ingest>) -> Self {
        Self {
            client,
            config,
            ingest,
            health: Arc::new(DashMap::new()),
            stats: Arc::new(ScrapeStats::new()),
            hook: None,
        }
    }

    /// Shares `stats` (created before the scraper, e.g. to register it for /metrics).
    pub fn with_stats(mut self, stats: Arc<ScrapeStats>) -> Self {
        self.stats = stats;
        self
    }

    pub fn on_scrape(mut self, hook: ScrapeHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Per-target health, shared with the status API and /metrics.
    pub fn health(&self) -> Arc<DashMap<Arc<str>, TargetHealth>> {
        self.health.clone()
    }

    pub fn stats(&self) -> Arc<ScrapeStats> {
        self.stats.clone()
    }

    /// Scrapes a fixed target list until `shutdown` flips to `true`.
    pub async fn run(self, targets: Vec<Target>, shutdown: watch::Receiver<bool>) {
        let (_fixed, targets) = watch::channel(targets);
        self.run_tracking(targets, shutdown).await;
    }

    /// Scrapes whatever `targets` currently holds: a target that appears gets its own
    /// task at once, one that leaves has its task stopped and its health entry removed.
    /// Its last contribution is left to go stale rather than withdrawn: a gateway pod
    /// that goes away hands its traffic to the others, and for up to `staleness`
    /// counting it twice errs towards capacity, where withdrawing it first could read
    /// as a drop in traffic.
    pub async fn run_tracking(
        self,
        mut targets: watch::Receiver<Vec<Target>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let permits = Arc::new(Semaphore::new(self.config.max_concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut running: HashMap<Arc<str>, AbortHandle> = HashMap::new();
        let mut listening = true;
        let staleness_ms = self.config.staleness.as_millis() as i64;
        let mut sweep = tokio::time::interval(self.config.interval.max(Duration::from_millis(100)));
        let wanted = targets.borrow_and_update().clone();
        self.reconcile(&wanted, &mut running, &mut tasks, &permits, &shutdown);
        loop {
            let changed = async {
                if listening {
                    targets.changed().await.is_ok()
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = sweep.tick() => self.ingest.expire(crate::clock::unix_ms(), staleness_ms),
                still_sending = changed => {
                    if still_sending {
                        let wanted = targets.borrow_and_update().clone();
                        self.reconcile(&wanted, &mut running, &mut tasks, &permits, &shutdown);
                    } else {
                        // The list is fixed from here on.
                        listening = false;
                    }
                }
                _ = shutdown.changed() => break,
                // Finished target tasks (stopped or aborted) are reaped here.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        tasks.shutdown().await;
    }

    /// Starts tasks for targets in `wanted` that have none and stops those no longer in it.
    fn reconcile(
        &self,
        wanted: &[Target],
        running: &mut HashMap<Arc<str>, AbortHandle>,
        tasks: &mut JoinSet<()>,
        permits: &Arc<Semaphore>,
        shutdown: &watch::Receiver<bool>,
    ) {
        let keep: HashSet<&Arc<str>> = wanted.iter().map(|t| &t.id).collect();
        running.retain(|id, task| {
            let stays = keep.contains(id);
            if !stays {
                task.abort();
                self.health.remove(id);
                tracing::info!(target = %id, "scrape target removed");
            }
            stays
        });
        for target in wanted {
            if running.contains_key(&target.id) {
                continue;
            }
            self.health
                .insert(target.id.clone(), TargetHealth::new(&target.url));
            let task = TargetTask {
                target: target.clone(),
                client: self.client.clone(),
                config: self.config.clone(),
                ingest: self.ingest.clone(),
                health: self.health.clone(),
                stats: self.stats.clone(),
                hook: self.hook.clone(),
                permits: permits.clone(),
            };
            let handle = tasks.spawn(task.run(shutdown.clone()));
            running.insert(target.id.clone(), handle);
        }
    }
}

/// One target's scrape loop and what it shares with the scraper's other targets: the
/// HTTP client, the config, where samples go, health and stats, and the permits that
/// bound how many scrapes run at once.
struct TargetTask {
    target: Target,
    client: reqwest::Client,
    config: ScrapeConfig,
    ingest: Arc<Ingest>,
    health: Arc<DashMap<Arc<str>, TargetHealth>>,
    stats: Arc<ScrapeStats>,
    hook: Option<ScrapeHook>,
    permits: Arc<Semaphore>,
}

impl TargetTask {
    /// Scrapes every `config.interval` until `shutdown` changes.
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let TargetTask {
            target,
            client,
            config,
            ingest,
            health,
            stats,
            hook,
            permits,
        } = self;
        let max_gap_ms =
            (config.staleness.as_millis() as i64).max(3 * config.interval.as_millis() as i64);
        let mut tracker =
            CounterTracker::new(max_gap_ms).with_max_series(config.max_series_per_target);
        let mut cpu = CounterTracker::new(max_gap_ms).with_max_series(config.max_series_per_target);
        let mut ticker = tokio::time::interval(config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            let started = tokio::time::Instant::now();
            let at_ms = crate::clock::unix_ms();
            let (outcome, resources) =
                scrape_with_resources(&client, &target, &config, &mut tracker, &mut cpu, at_ms)
                    .await;
            let elapsed = started.elapsed();
            let dropped = tracker.take_dropped() + cpu.take_dropped();
            stats
                .dropped_samples
                .fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
            if let Some(resources) = resources {
                ingest.apply(&target.id, Signal::CpuCores, resources.cpu_cores, at_ms);
                ingest.apply(
                    &target.id,
                    Signal::MemoryBytes,
                    resources.memory_bytes,
                    at_ms,
                );
            }
            stats.record(elapsed, &outcome);
            if let Some(hook) = &hook {
                hook(elapsed, &outcome);
            }
            if let Some(mut entry) = health.get_mut(&target.id) {
                entry.update(&outcome, elapsed, at_ms);
            }
            if let Ok(scraped) = outcome {
                ingest.apply(&target.id, Signal::Qps, scraped.rates, at_ms);
            } else if let Err(error) = outcome {
                tracing::debug!(target = %target.url, %error, "scrape failed");
            }
        }
    }
}
