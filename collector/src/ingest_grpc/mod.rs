//! Spillway's own push ingest: `spillway.ingest.v1.Ingest/Push`, a client stream of
//! [`SampleBatch`]es carrying per-workload values an agent already computed.
//!
//! Each batch replaces what its source last said about the signals it carries (the same
//! contract as a scrape target), so an agent that stops mentioning a workload withdraws
//! its share instead of leaving it frozen. Invalid samples are refused one by one with a
//! reason; the rest of the batch still counts. A batch whose timestamp is outside the
//! accepted skew ([`TimeBounds`]) is refused whole.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use spillway_proto::ingest::ingest_server::{Ingest as IngestRpc, IngestServer};
use spillway_proto::ingest::{PushSummary, SampleBatch, Signal as WireSignal};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use crate::ingest::Ingest;
use crate::signal::{Signal, WorkloadKey};
use crate::timestamps::{OutOfBounds, TimeBounds};
use crate::write_scope::{CachedCheck, WriteDenied, WriteScope};

/// Reasons kept in a summary; a broken agent sends the same mistake thousands of times.
const MAX_ERRORS: usize = 8;

/// Tenant and app names are DNS labels (63 bytes); a source names an agent.
pub const MAX_NAME_BYTES: usize = 253;

/// Limits of the push service.
#[derive(Clone, Copy, Debug)]
pub struct PushConfig {
    /// How far a batch's timestamp may be from now: a skewed agent clock would
    /// otherwise write into the future or past of every window.
    pub bounds: TimeBounds,
    pub max_samples_per_batch: usize,
    /// Largest batch message decoded; larger ones end the stream.
    pub max_message_bytes: usize,
    /// Streams pushing at once; more are refused (`RESOURCE_EXHAUSTED`), so many
    /// clients cannot each hold a message's worth of memory.
    pub max_streams: usize,
    /// Longest tenant, app or source name accepted.
    pub max_name_bytes: usize,
}

impl Default for PushConfig {
    /// Limits from the default memory budget (see [`crate::budget`]).
    fn default() -> Self {
        let derived = crate::budget::MemoryBudget::default().derive(900);
        Self {
            bounds: TimeBounds::default(),
            max_samples_per_batch: 100_000,
            max_message_bytes: derived.push_max_message_bytes,
            max_streams: derived.push_max_streams,
            max_name_bytes: MAX_NAME_BYTES,
        }
    }
}

/// Samples accepted and refused, by reason (`samples_rejected` is their sum).
#[derive(Debug, Default)]
pub struct PushStats {
    pub streams: AtomicU64,
    pub batches: AtomicU64,
    pub samples_accepted: AtomicU64,
    pub samples_rejected: AtomicU64,
    /// In batches stamped further back than the bounds allow.
    pub rejected_too_old: AtomicU64,
    /// In batches stamped further ahead than the bounds allow.
    pub rejected_too_new: AtomicU64,
    /// NaN, infinite or negative values.
    pub rejected_invalid_value: AtomicU64,
    /// Anything else: no source, tenant or app, an unknown signal, an oversized batch,
    /// a name longer than the limit.
    pub rejected_malformed: AtomicU64,
    /// Streams refused because the most allowed were already pushing.
    pub streams_refused: AtomicU64,
    /// For a tenant the writer may not write.
    pub rejected_tenant_not_allowed: AtomicU64,
    /// For a workload no policy names.
    pub rejected_unknown_workload: AtomicU64,
}

/// Why samples were refused, for [`PushStats`].
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Time(OutOfBounds),
    InvalidValue,
    Malformed,
    Denied(WriteDenied),
}

impl PushStats {
    fn count_refused(&self, why: Refusal, samples: u64) {
        self.samples_rejected.fetch_add(samples, Ordering::Relaxed);
        let counter = match why {
            Refusal::Time(OutOfBounds::TooOld) => &self.rejected_too_old,
            Refusal::Time(OutOfBounds::TooNew) => &self.rejected_too_new,
            Refusal::InvalidValue => &self.rejected_invalid_value,
            Refusal::Malformed => &self.rejected_malformed,
            Refusal::Denied(WriteDenied::TenantNotAllowed) => &self.rejected_tenant_not_allowed,
            Refusal::Denied(WriteDenied::UnknownWorkload) => &self.rejected_unknown_workload,
        };
        counter.fetch_add(samples, Ordering::Relaxed);
    }
}

/// The gRPC service; wrap with [`PushService::into_server`] to serve it.
#[derive(Clone, Debug)]
pub struct PushService {
    ingest: Arc<Ingest>,
    stats: Arc<PushStats>,
    config: PushConfig,
    streams: Arc<Semaphore>,
}

impl PushService {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        Self::with_config(ingest, PushConfig::default())
    }

    pub fn with_config(ingest: Arc<Ingest>, config: PushConfig) -> Self {
        Self {
            ingest,
            stats: Arc::default(),
            streams: Arc::new(Semaphore::new(config.max_streams.max(1))),
            config,
        }
    }

    pub fn config(&self) -> &PushConfig {
        &self.config
    }

    pub fn stats(&self) -> Arc<PushStats> {
        self.stats.clone()
    }

    pub fn into_server(self) -> IngestServer<Self> {
        let limit = self.config.max_message_bytes;
        IngestServer::new(self).max_decoding_message_size(limit)
    }

    /// Applies one batch at `now_ms` from a writer that may write anything; adds its
    /// counts and first errors to `summary`.
    pub fn apply_batch(&self, batch: SampleBatch, now_ms: i64, summary: &mut PushSummary) {
        self.apply_batch_as(batch, now_ms, summary, None);
    }

    /// [`Self::apply_batch`] from one writer: its source names are its own
    /// (`push/{writer}/{source}`), so it cannot replace another writer's contribution,
    /// and samples outside its scope are refused before they reach the store.
    pub fn apply_batch_as(
        &self,
        batch: SampleBatch,
        now_ms: i64,
        summary: &mut PushSummary,
        scope: Option<&WriteScope>,
    ) {
        summary.batches += 1;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let total = batch.samples.len() as u64;
        let refuse_all = |summary: &mut PushSummary, why: Refusal, reason: String| {
            summary.rejected += total;
            self.stats.count_refused(why, total);
            note(summary, reason);
        };
        if batch.source.is_empty() {
            return refuse_all(
                summary,
                Refusal::Malformed,
                "batch without a source name".into(),
            );
        }
        let max_name = self.config.max_name_bytes;
        if batch.source.len() > max_name {
            return refuse_all(
                summary,
                Refusal::Malformed,
                format!(
                    "source name of {} bytes is over the {max_name}-byte limit",
                    batch.source.len()
                ),
            );
        }
        let limit = self.config.max_samples_per_batch;
        if batch.samples.len() > limit {
            return refuse_all(
                summary,
                Refusal::Malformed,
                format!(
                    "batch of {} samples is over the {limit} limit",
                    batch.samples.len()
                ),
            );
        }
        let at_ms = if batch.timestamp_ms == 0 {
            now_ms
        } else {
            batch.timestamp_ms
        };
        if let Err(why) = self.config.bounds.check(at_ms, now_ms) {
            let bounds = self.config.bounds;
            return refuse_all(
                summary,
                Refusal::Time(why),
                format!(
                    "batch timestamp {at_ms} is {why} (now {now_ms}; accepted: {} ms back, {} ms ahead)",
                    bounds.max_past_ms, bounds.max_future_ms
                ),
            );
        }
        let mut by_signal: HashMap<Signal, Vec<(WorkloadKey, f64)>> = HashMap::new();
        let mut gate = scope.map(CachedCheck::new);
        for sample in batch.samples {
            if sample.tenant.len() > max_name || sample.app.len() > max_name {
                // Named by length only: echoing a megabyte name back helps nobody.
                self.reject(
                    summary,
                    Refusal::Malformed,
                    format!(
                        "tenant or app name of {} bytes is over the {max_name}-byte limit",
                        sample.tenant.len().max(sample.app.len())
                    ),
                );
                continue;
            }
            let signal = match WireSignal::try_from(sample.signal) {
                Ok(WireSignal::Qps) => Signal::Qps,
                Ok(WireSignal::CpuCores) => Signal::CpuCores,
                Ok(WireSignal::MemoryBytes) => Signal::MemoryBytes,
                Ok(WireSignal::Unspecified) | Err(_) => {
                    self.reject(
                        summary,
                        Refusal::Malformed,
                        format!(
                            "{}/{}: unknown signal {}",
                            sample.tenant, sample.app, sample.signal
                        ),
                    );
                    continue;
                }
            };
            if sample.tenant.is_empty() || sample.app.is_empty() {
                self.reject(
                    summary,
                    Refusal::Malformed,
                    "sample without tenant or app".into(),
                );
                continue;
            }
            if !sample.value.is_finite() || sample.value < 0.0 {
                self.reject(
                    summary,
                    Refusal::InvalidValue,
                    format!(
                        "{}/{} {signal}: value {} is not a finite, non-negative number",
                        sample.tenant, sample.app, sample.value
                    ),
                );
                continue;
            }
            if let Some(gate) = &mut gate
                && let Err(why) = gate.check(&sample.tenant, &sample.app)
            {
                self.reject(
                    summary,
                    Refusal::Denied(why),
                    format!("{}/{}: refused: {why}", sample.tenant, sample.app),
                );
                continue;
            }
            by_signal
                .entry(signal)
                .or_default()
                .push((WorkloadKey::new(sample.tenant, sample.app), sample.value));
        }
        let source: Arc<str> = match scope {
            Some(scope) => format!("push/{}/{}", scope.writer, batch.source).into(),
            None => format!("push/{}", batch.source).into(),
        };
        for (signal, values) in by_signal {
            let accepted = values.len() as u64;
            summary.accepted += accepted;
            self.stats
                .samples_accepted
                .fetch_add(accepted, Ordering::Relaxed);
            self.ingest.apply(&source, signal, values, at_ms);
        }
    }

    fn reject(&self, summary: &mut PushSummary, why: Refusal, reason: String) {
        summary.rejected += 1;
        self.stats.count_refused(why, 1);
        note(summary, reason);
    }
}

impl PushService {
    /// Serves one push stream from a writer (see [`Self::apply_batch_as`]).
    pub async fn push_as(
        &self,
        request: Request<Streaming<SampleBatch>>,
        scope: Option<WriteScope>,
    ) -> Result<Response<PushSummary>, Status> {
        self.stats.streams.fetch_add(1, Ordering::Relaxed);
        // Taken before the first message is decoded: a refused stream costs nothing.
        let Ok(_permit) = self.streams.clone().try_acquire_owned() else {
            self.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "{} push streams are open already; retry later",
                self.config.max_streams
            )));
        };
        let mut stream = request.into_inner();
        let mut summary = PushSummary::default();
        while let Some(batch) = stream.message().await? {
            self.apply_batch_as(batch, crate::clock::unix_ms(), &mut summary, scope.as_ref());
        }
        Ok(Response::new(summary))
    }
}

fn note(summary: &mut PushSummary, reason: String) {
    if summary.errors.len() < MAX_ERRORS {
        summary.errors.push(reason);
    }
}

#[tonic::async_trait]
impl IngestRpc for PushService {
    async fn push(
        &self,
        request: Request<Streaming<SampleBatch>>,
    ) -> Result<Response<PushSummary>, Status> {
        self.push_as(request, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::SignalView;
    use crate::store::StoreLimits;
    use spillway_proto::ingest::WorkloadSample;

    fn sample(tenant: &str, app: &str, signal: WireSignal, value: f64) -> WorkloadSample {
        WorkloadSample {
            tenant: tenant.into(),
            app: app.into(),
            signal: signal as i32,
            value,
        }
    }

    #[test]
    fn valid_samples_land_and_bad_ones_are_refused_with_a_reason() {
        let ingest = Ingest::new(StoreLimits::default());
        let service = PushService::new(ingest.clone());
        let mut summary = PushSummary::default();
        service.apply_batch(
            SampleBatch {
                source: "agent-1".into(),
                timestamp_ms: 50_000,
                samples: vec![
                    sample("acme", "web", WireSignal::Qps, 120.0),
                    sample("acme", "web", WireSignal::CpuCores, 1.5),
                    sample("acme", "", WireSignal::Qps, 1.0),
                    sample("acme", "api", WireSignal::Unspecified, 1.0),
                    sample("acme", "api", WireSignal::Qps, f64::NAN),
                ],
            },
            50_000,
            &mut summary,
        );
        assert_eq!((summary.accepted, summary.rejected), (2, 3));
        assert_eq!(summary.errors.len(), 3);
        assert!(
            summary.errors[1].contains("unknown signal"),
            "{:?}",
            summary.errors
        );
        let web = WorkloadKey::new("acme", "web");
        let view = ingest.store().view(&web);
        assert_eq!(view.mean(Signal::Qps, 50, 1), Some(120.0));
        assert_eq!(view.mean(Signal::CpuCores, 50, 1), Some(1.5));
    }

    #[test]
    fn skewed_or_anonymous_batches_are_refused_whole() {
        let ingest = Ingest::new(StoreLimits::default());
        let service = PushService::new(ingest);
        let mut summary = PushSummary::default();
        let batch = |source: &str, timestamp_ms| SampleBatch {
            source: source.into(),
            timestamp_ms,
            samples: vec![sample("acme", "web", WireSignal::Qps, 1.0)],
        };
        service.apply_batch(batch("", 0), 1_000_000, &mut summary);
        service.apply_batch(batch("a", 1_000_000 + 10 * 60_000), 1_000_000, &mut summary);
        assert_eq!((summary.accepted, summary.rejected), (0, 2));
        service.apply_batch(batch("a", 0), 1_000_000, &mut summary);
        assert_eq!(summary.accepted, 1);
        assert_eq!(summary.batches, 3);
    }

    #[test]
    fn timestamps_are_bounded_each_way_and_extremes_do_not_overflow() {
        let ingest = Ingest::new(StoreLimits::default());
        let service = PushService::new(ingest.clone());
        let stats = service.stats();
        let now = 1_700_000_000_000;
        let batch = |timestamp_ms| SampleBatch {
            source: "agent".into(),
            timestamp_ms,
            samples: vec![sample("acme", "web", WireSignal::Qps, 1e6)],
        };
        let mut summary = PushSummary::default();
        for timestamp in [i64::MIN, -1, now - 5 * 60_000 - 1] {
            service.apply_batch(batch(timestamp), now, &mut summary);
        }
        for timestamp in [now + 60_001, i64::MAX] {
            service.apply_batch(batch(timestamp), now, &mut summary);
        }
        assert_eq!((summary.accepted, summary.rejected), (0, 5));
        assert!(
            summary.errors[0].contains("older than"),
            "{:?}",
            summary.errors
        );
        assert!(ingest.totals().is_empty(), "nothing reached the store");
        assert_eq!(stats.rejected_too_old.load(Ordering::Relaxed), 3);
        assert_eq!(stats.rejected_too_new.load(Ordering::Relaxed), 2);
        // Within the bounds both ways: accepted.
        for timestamp in [now - 5 * 60_000, now + 60_000] {
            service.apply_batch(batch(timestamp), now, &mut summary);
        }
        assert_eq!(summary.accepted, 2);
        assert_eq!(stats.samples_rejected.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn names_over_the_limit_are_refused_without_being_echoed() {
        let ingest = Ingest::new(StoreLimits::default());
        let service = PushService::new(ingest.clone());
        let huge = "x".repeat(1 << 20);
        let mut summary = PushSummary::default();
        service.apply_batch(
            SampleBatch {
                source: "agent".into(),
                timestamp_ms: 0,
                samples: vec![
                    sample(&huge, "web", WireSignal::Qps, 1.0),
                    sample("acme", &huge, WireSignal::Unspecified, 1.0),
                    sample("acme", "web", WireSignal::Qps, 7.0),
                ],
            },
            50_000,
            &mut summary,
        );
        service.apply_batch(
            SampleBatch {
                source: huge.clone(),
                timestamp_ms: 0,
                samples: vec![sample("acme", "web", WireSignal::Qps, 1.0)],
            },
            50_000,
            &mut summary,
        );
        assert_eq!((summary.accepted, summary.rejected), (1, 3));
        assert!(
            summary.errors.iter().all(|e| e.len() < 200),
            "{:?}",
            summary.errors
        );
        assert_eq!(ingest.store().window_count(), 1);
    }

    struct AcmeOnly;

    impl crate::write_scope::WriteGate for AcmeOnly {
        fn check(&self, tenant: &str, _app: &str) -> Result<(), WriteDenied> {
            if tenant == "acme" {
                Ok(())
            } else {
                Err(WriteDenied::TenantNotAllowed)
            }
        }
    }

    #[test]
    fn a_scoped_writer_keeps_its_own_sources_and_its_own_tenants() {
        let ingest = Ingest::new(StoreLimits::default());
        let service = PushService::new(ingest.clone());
        let stats = service.stats();
        let scope = |writer: &str| WriteScope {
            writer: writer.into(),
            gate: Some(Arc::new(AcmeOnly)),
        };
        let batch = |value| SampleBatch {
            source: "agent".into(),
            timestamp_ms: 50_000,
            samples: vec![
                sample("acme", "web", WireSignal::Qps, value),
                sample("globex", "web", WireSignal::Qps, 1e9),
            ],
        };
        let mut summary = PushSummary::default();
        service.apply_batch_as(batch(100.0), 50_000, &mut summary, Some(&scope("a")));
        // Another writer naming the same source adds its share; it cannot replace the
        // first writer's.
        service.apply_batch_as(batch(20.0), 50_000, &mut summary, Some(&scope("b")));
        assert_eq!((summary.accepted, summary.rejected), (2, 2));
        assert!(
            summary.errors[0].contains("may not write"),
            "{:?}",
            summary.errors
        );
        assert_eq!(stats.rejected_tenant_not_allowed.load(Ordering::Relaxed), 2);
        let (acme, globex) = (
            WorkloadKey::new("acme", "web"),
            WorkloadKey::new("globex", "web"),
        );
        let view = ingest.store().view(&acme);
        assert_eq!(view.mean(Signal::Qps, 50, 1), Some(120.0));
        let globex = ingest.store().view(&globex);
        assert_eq!(globex.newest(Signal::Qps), None, "never reached the store");
    }
}
