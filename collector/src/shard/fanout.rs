//! The scaler side: poll every shard, merge, feed the sums into [`Ingest`].
//!
//! Each tick asks every shard at once (each call bounded by `timeout`), so a hung shard
//! delays nothing but itself. The merge's sums replace what the shards as a group last
//! contributed; while a shard is lost, the sums it may be missing from are stored as
//! lower bounds (see [`super::merge::merge`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spillway_proto::shard::SnapshotRequest;
use spillway_proto::shard::shard_client::ShardClient;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::merge::{Answer, ShardAnswers, merge};
use super::server::from_wire;
use crate::ingest::Ingest;
use crate::signal::{Signal, WorkloadKey};

/// The scaler's `collectors:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct FanOutConfig {
    /// Shard `i` is at `shards[i]`; the list's length is the shard count.
    pub shards: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// A shard without a warm answer for this long is lost.
    pub lost_after: Duration,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        Self {
            shards: Vec::new(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(800),
            lost_after: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("collector shard address '{url}': {source}")]
    Address {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// What an SRE needs to know about one shard, for /metrics and the status API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ShardStatus {
    pub url: String,
    /// Counted in the merge: a warm answer within `lostAfter`.
    pub up: bool,
    /// Answering, but not yet through the two scrapes per target a rate needs.
    pub warming: bool,
    pub last_answer_ms: Option<i64>,
    pub last_error: Option<String>,
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub targets_owned: u32,
    pub targets_up: u32,
    /// (workload, signal) totals in the last answer.
    pub totals: usize,
}

#[derive(Debug)]
pub struct FanOutStats {
    shards: Vec<Mutex<ShardStatus>>,
    complete: AtomicBool,
}

impl FanOutStats {
    fn new(urls: &[String]) -> Self {
        Self {
            shards: urls
                .iter()
                .map(|url| {
                    Mutex::new(ShardStatus {
                        url: url.clone(),
                        ..ShardStatus::default()
                    })
                })
                .collect(),
            complete: AtomicBool::new(false),
        }
    }

    pub fn shards(&self) -> Vec<ShardStatus> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }

    /// Every shard counted in the latest merge.
    pub fn complete(&self) -> bool {
        self.complete.load(Ordering::Relaxed)
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut ShardStatus)) {
        if let Some(status) = self.shards.get(index) {
            change(&mut status.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

/// The bearer token sent with every Snapshot call, asked for at each poll so a rotated
/// token is used from the next one.
pub type Bearer = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Polls the shards and merges their answers into `ingest`.
pub struct FanOut {
    config: FanOutConfig,
    ingest: Arc<Ingest>,
    clients: Vec<ShardClient<Channel>>,
    stats: Arc<FanOutStats>,
    bearer: Option<Bearer>,
}

/// One poll's result for one shard.
enum Poll {
    Warm {
        totals: Vec<(WorkloadKey, Signal, f64)>,
        targets: (u32, u32),
        /// Totals refused: unknown signal, invalid value, no tenant or app.
        skipped: u64,
    },
    /// Answering, but its targets have not all had two scrapes yet; (owned, up).
    Warming {
        targets: (u32, u32),
    },
    Failed(String),
}

impl FanOut {
    pub fn new(config: FanOutConfig, ingest: Arc<Ingest>) -> Result<Self, FanOutError> {
        let mut clients = Vec::with_capacity(config.shards.len());
        for url in &config.shards {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|source| FanOutError::Address {
                    url: url.clone(),
                    source,
                })?
                .connect_timeout(config.timeout)
                .tcp_nodelay(true);
            clients.push(
                ShardClient::new(endpoint.connect_lazy()).max_decoding_message_size(64 << 20),
            );
        }
        Ok(Self {
            stats: Arc::new(FanOutStats::new(&config.shards)),
            config,
            ingest,
            clients,
            bearer: None,
        })
    }

    /// Authenticates every Snapshot call with the token `bearer` gives.
    pub fn with_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = Some(bearer);
        self
    }

    pub fn stats(&self) -> Arc<FanOutStats> {
        self.stats.clone()
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Two sources, so a workload moves between them as shards come and go, and each
        // replacement withdraws what the other no longer holds.
        let complete: Arc<str> = "collectors".into();
        let partial: Arc<str> = "collectors/lower-bound".into();
        let count = u32::try_from(self.clients.len()).unwrap_or(u32::MAX);
        let lost_after_ms = i64::try_from(self.config.lost_after.as_millis()).unwrap_or(i64::MAX);
        let mut answers = vec![ShardAnswers::default(); self.clients.len()];
        let mut lost_before: Vec<usize> = Vec::new();
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let token = self.bearer.as_ref().and_then(|bearer| bearer());
            let polls = self.clients.iter().enumerate().map(|(index, client)| {
                let mut request = tonic::Request::new(SnapshotRequest {
                    expected_index: u32::try_from(index).unwrap_or(u32::MAX),
                    expected_count: count,
                });
                if let Some(value) = token
                    .as_ref()
                    .and_then(|token| format!("Bearer {token}").parse().ok())
                {
                    request.metadata_mut().insert("authorization", value);
                }
                poll(client.clone(), request, self.config.timeout)
            });
            let results = futures::future::join_all(polls).await;
            let now_ms = crate::clock::unix_ms();
            for (index, result) in results.into_iter().enumerate() {
                self.record_poll(index, result, now_ms, &mut answers);
            }
            // Merging and recording 10,000 workloads' sums from a few shards takes tens
            // of milliseconds: off the async workers, which answer KEDA.
            let ingest = self.ingest.clone();
            let (complete_source, partial_source) = (complete.clone(), partial.clone());
            let merged = tokio::task::spawn_blocking(move || {
                let mut merged = merge(&answers, now_ms, lost_after_ms);
                for signal in Signal::ALL {
                    let sums = merged.sums.remove(&signal).unwrap_or_default();
                    ingest.apply_sums(&complete_source, signal, sums, now_ms, true);
                    let lower = merged.lower_bounds.remove(&signal).unwrap_or_default();
                    ingest.apply_sums(&partial_source, signal, lower, now_ms, false);
                }
                (answers, merged.lost)
            })
            .await;
            let lost = match merged {
                Ok((returned, lost)) => {
                    answers = returned;
                    lost
                }
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            };
            for (index, answers) in answers.iter().enumerate() {
                let up = !lost.contains(&index);
                self.stats.update(index, |s| {
                    s.up = up;
                    s.totals = answers.latest.as_ref().map_or(0, |a| a.totals.len());
                });
            }
            if lost != lost_before {
                if lost.is_empty() {
                    tracing::info!("every collector shard answers again; sums are complete");
                } else {
                    tracing::warn!(
                        ?lost,
                        "collector shards lost: what they fed is a lower bound and does not scale down"
                    );
                }
            }
            self.stats
                .complete
                .store(lost.is_empty(), Ordering::Relaxed);
            lost_before = lost;
        }
    }

    fn record_poll(&self, index: usize, result: Poll, now_ms: i64, answers: &mut [ShardAnswers]) {
        match result {
            Poll::Warm {
                totals,
                targets: (owned, up),
                skipped,
            } => {
                if skipped > 0 {
                    tracing::warn!(
                        shard = index,
                        skipped,
                        "shard sent totals with unknown signals or invalid values"
                    );
                }
                self.stats.update(index, |s| {
                    s.warming = false;
                    s.last_answer_ms = Some(now_ms);
                    s.last_error = None;
                    s.polls_ok += 1;
                    s.targets_owned = owned;
                    s.targets_up = up;
                });
                answers[index].latest = Some(Answer {
                    at_ms: now_ms,
                    totals,
                });
            }
            Poll::Warming {
                targets: (owned, up),
            } => self.stats.update(index, |s| {
                s.warming = true;
                s.last_error = None;
                s.polls_ok += 1;
                s.targets_owned = owned;
                s.targets_up = up;
            }),
            Poll::Failed(error) => {
                tracing::debug!(shard = index, %error, "collector shard poll failed");
                self.stats.update(index, |s| {
                    s.warming = false;
                    s.polls_failed += 1;
                    s.last_error = Some(error);
                });
            }
        }
    }
}

async fn poll(
    mut client: ShardClient<Channel>,
    request: tonic::Request<SnapshotRequest>,
    timeout: Duration,
) -> Poll {
    let expected = (
        request.get_ref().expected_index,
        request.get_ref().expected_count,
    );
    let response = match tokio::time::timeout(timeout, client.snapshot(request)).await {
        Err(_) => return Poll::Failed(format!("no answer within {timeout:?}")),
        Ok(Err(status)) => {
            return Poll::Failed(format!("{:?}: {}", status.code(), status.message()));
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    if (response.shard_index, response.shard_count) != expected {
        return Poll::Failed(format!(
            "answered as shard {}/{}, expected {}/{}",
            response.shard_index, response.shard_count, expected.0, expected.1
        ));
    }
    if !response.warm {
        return Poll::Warming {
            targets: (response.targets_owned, response.targets_up),
        };
    }
    let mut skipped = 0u64;
    let mut totals = Vec::with_capacity(response.totals.len());
    for total in response.totals {
        let signal = from_wire(total.signal);
        match signal {
            Some(signal)
                if total.value.is_finite()
                    && total.value >= 0.0
                    && !total.tenant.is_empty()
                    && !total.app.is_empty() =>
            {
                totals.push((
                    WorkloadKey::new(total.tenant, total.app),
                    signal,
                    total.value,
                ));
            }
            _ => skipped += 1,
        }
    }
    Poll::Warm {
        totals,
        targets: (response.targets_owned, response.targets_up),
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{ShardServer, ShardSpec};
    use crate::store::StoreLimits;
    use dashmap::DashMap;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;

    fn web() -> WorkloadKey {
        WorkloadKey::new("acme", "web")
    }

    /// A shard on 127.0.0.1 reporting `qps` for acme/web; stops when the sender drops.
    async fn start_shard(index: u32, qps: f64) -> (String, tokio::sync::oneshot::Sender<()>) {
        let ingest = Ingest::new(StoreLimits::default());
        let target: Arc<str> = format!("gw-{index}").into();
        ingest.apply(
            &target,
            Signal::Qps,
            vec![(web(), qps)],
            crate::clock::unix_ms(),
        );
        let server = ShardServer::new(
            ShardSpec::new(index, 2).unwrap(),
            ingest,
            Arc::new(DashMap::new()),
            0,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server.into_service())
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        (url, stop)
    }

    async fn wait_for_total(ingest: &Ingest, value: f64, lower_bound: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let total = ingest
                .totals()
                .into_iter()
                .find(|t| t.workload == web() && t.signal == Signal::Qps);
            if total
                .as_ref()
                .is_some_and(|t| t.value == value && t.lower_bound == lower_bound)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "wanted {value} (lower bound {lower_bound}), have {total:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn shards_are_summed_and_a_lost_one_turns_the_sums_into_lower_bounds() {
        let (first, _keep_first) = start_shard(0, 30.0).await;
        let (second, stop_second) = start_shard(1, 12.0).await;
        let ingest = Ingest::new(StoreLimits::default());
        let fanout = FanOut::new(
            FanOutConfig {
                shards: vec![first, second],
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(200),
                lost_after: Duration::from_millis(400),
            },
            ingest.clone(),
        )
        .unwrap();
        let stats = fanout.stats();
        let (shutdown, stop_fanout) = watch::channel(false);
        let running = tokio::spawn(fanout.run(stop_fanout));

        wait_for_total(&ingest, 42.0, false).await;
        assert!(stats.complete());

        drop(stop_second);
        wait_for_total(&ingest, 30.0, true).await;
        assert!(!stats.complete());
        let shards = stats.shards();
        assert!(shards[0].up && !shards[1].up, "{shards:?}");
        assert!(shards[1].last_error.is_some(), "{shards:?}");
        assert!(shards[1].polls_failed > 0);

        shutdown.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_bad_shard_address_is_refused_up_front() {
        let ingest = Ingest::new(StoreLimits::default());
        let error = FanOut::new(
            FanOutConfig {
                shards: vec!["not a url".into()],
                ..FanOutConfig::default()
            },
            ingest,
        )
        .err()
        .unwrap();
        assert!(error.to_string().contains("not a url"), "{error}");
    }
}
