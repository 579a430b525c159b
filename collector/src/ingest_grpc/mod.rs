//! Spillway's own push ingest: `spillway.ingest.v1.Ingest/Push`, a client stream of
//! [`SampleBatch`]es carrying per-workload values an agent already computed.
//!
//! Each batch replaces what its source last said about the signals it carries (the same
//! contract as a scrape target), so an agent that stops mentioning a workload withdraws
//! its share instead of leaving it frozen. Invalid samples are refused one by one with a
//! reason; the rest of the batch still counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use spillway_proto::ingest::ingest_server::{Ingest as IngestRpc, IngestServer};
use spillway_proto::ingest::{PushSummary, SampleBatch, Signal as WireSignal};
use tonic::{Request, Response, Status, Streaming};

use crate::ingest::Ingest;
use crate::signal::{Signal, WorkloadKey};

/// Reasons kept in a summary; a broken agent sends the same mistake thousands of times.
const MAX_ERRORS: usize = 8;
/// Batch timestamps further from now than this are refused: a skewed agent clock would
/// otherwise write into the future or past of every window.
const MAX_SKEW_MS: i64 = 5 * 60_000;

#[derive(Debug, Default)]
pub struct PushStats {
    pub streams: AtomicU64,
    pub batches: AtomicU64,
    pub samples_accepted: AtomicU64,
    pub samples_rejected: AtomicU64,
}

/// The gRPC service; wrap with [`PushService::into_server`] to serve it.
#[derive(Clone, Debug)]
pub struct PushService {
    ingest: Arc<Ingest>,
    stats: Arc<PushStats>,
    max_samples_per_batch: usize,
}

impl PushService {
    pub fn new(ingest: Arc<Ingest>) -> Self {
        Self {
            ingest,
            stats: Arc::default(),
            max_samples_per_batch: 100_000,
        }
    }

    pub fn stats(&self) -> Arc<PushStats> {
        self.stats.clone()
    }

    pub fn into_server(self) -> IngestServer<Self> {
        IngestServer::new(self).max_decoding_message_size(16 << 20)
    }

    /// Applies one batch at `now_ms`; adds its counts and first errors to `summary`.
    pub fn apply_batch(&self, batch: SampleBatch, now_ms: i64, summary: &mut PushSummary) {
        summary.batches += 1;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let total = batch.samples.len() as u64;
        let refuse_all = |summary: &mut PushSummary, reason: String| {
            summary.rejected += total;
            self.stats
                .samples_rejected
                .fetch_add(total, Ordering::Relaxed);
            note(summary, reason);
        };
        if batch.source.is_empty() {
            return refuse_all(summary, "batch without a source name".into());
        }
        if batch.samples.len() > self.max_samples_per_batch {
            return refuse_all(
                summary,
                format!(
                    "batch of {} samples is over the {} limit",
                    batch.samples.len(),
                    self.max_samples_per_batch
                ),
            );
        }
        let at_ms = if batch.timestamp_ms == 0 {
            now_ms
        } else {
            batch.timestamp_ms
        };
        if (at_ms - now_ms).abs() > MAX_SKEW_MS {
            return refuse_all(
                summary,
                format!(
                    "batch timestamp {at_ms} is more than {MAX_SKEW_MS} ms from now ({now_ms})"
                ),
            );
        }
        let mut by_signal: HashMap<Signal, Vec<(WorkloadKey, f64)>> = HashMap::new();
        for sample in batch.samples {
            let signal = match WireSignal::try_from(sample.signal) {
                Ok(WireSignal::Qps) => Signal::Qps,
                Ok(WireSignal::CpuCores) => Signal::CpuCores,
                Ok(WireSignal::MemoryBytes) => Signal::MemoryBytes,
                Ok(WireSignal::Unspecified) | Err(_) => {
                    self.reject(
                        summary,
                        format!(
                            "{}/{}: unknown signal {}",
                            sample.tenant, sample.app, sample.signal
                        ),
                    );
                    continue;
                }
            };
            if sample.tenant.is_empty() || sample.app.is_empty() {
                self.reject(summary, "sample without tenant or app".into());
                continue;
            }
            if !sample.value.is_finite() || sample.value < 0.0 {
                self.reject(
                    summary,
                    format!(
                        "{}/{} {signal}: value {} is not a finite, non-negative number",
                        sample.tenant, sample.app, sample.value
                    ),
                );
                continue;
            }
            by_signal
                .entry(signal)
                .or_default()
                .push((WorkloadKey::new(sample.tenant, sample.app), sample.value));
        }
        let source: Arc<str> = format!("push/{}", batch.source).into();
        for (signal, values) in by_signal {
            let accepted = values.len() as u64;
            summary.accepted += accepted;
            self.stats
                .samples_accepted
                .fetch_add(accepted, Ordering::Relaxed);
            self.ingest.apply(&source, signal, values, at_ms);
        }
    }

    fn reject(&self, summary: &mut PushSummary, reason: String) {
        summary.rejected += 1;
        self.stats.samples_rejected.fetch_add(1, Ordering::Relaxed);
        note(summary, reason);
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
        self.stats.streams.fetch_add(1, Ordering::Relaxed);
        let mut stream = request.into_inner();
        let mut summary = PushSummary::default();
        while let Some(batch) = stream.message().await? {
            self.apply_batch(batch, crate::clock::unix_ms(), &mut summary);
        }
        Ok(Response::new(summary))
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
}
