//! Prometheus remote-write 1.0 receiver: `POST /api/v1/write` with a snappy-compressed
//! protobuf `prometheus.WriteRequest`, so Prometheus, Grafana Agent / Alloy or any
//! remote-write sender can push gateway counters and cAdvisor series to Spillway.
//!
//! A body is decoded whole before anything is applied: a truncated or garbled request
//! is answered 400 and changes nothing, so the sender's next good request rates against
//! the same points as if the bad one had never arrived.
//!
//! Samples are then admitted one by one: a timestamp outside the accepted skew
//! ([`TimeBounds`]), a value no counter or resource can have, or a series from the HA
//! replica that is not elected ([`ha`]) is refused and counted by reason; the rest of
//! the request still counts.

mod decode;
pub mod ha;
mod handler;
mod series;
mod stats;
mod wire;

pub use decode::{
    DecodeError, check_headers, decode_write_request, decompress, encode_write_request,
};
pub use ha::{HaConfig, HaTracker};
pub use handler::{Authorize, authorized_router, router};
pub use series::{Admission, Applied, SeriesLimits, SeriesTable, Update};
pub use stats::RemoteWriteStats;
pub use wire::{Decoded, SeriesRef, WireError, decode as decode_borrowed};

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::ingest::Ingest;
use crate::resources::{Mapped, ResourceMapping, SeriesKind};
use crate::scrape::QpsMapping;
use crate::signal::Signal;
use crate::timestamps::TimeBounds;
use crate::write_scope::WriteScope;

/// An HA cluster none of whose replicas sent anything for this long is forgotten (the
/// age at which Mimir's HA tracker deletes a cluster's election, `deletionTimeout`).
const HA_FORGET_AFTER_MS: i64 = 30 * 60_000;

/// Which remote-written series feed which signal.
#[derive(Clone, Debug, Default)]
pub struct WriteMapping {
    pub qps: QpsMapping,
    /// cAdvisor CPU and memory series; `None` ignores them.
    pub resources: Option<ResourceMapping>,
}

impl WriteMapping {
    pub fn classify<'a>(
        &self,
        name: &str,
        label: impl Fn(&str) -> Option<Cow<'a, str>>,
    ) -> Option<Mapped<'a>> {
        if name == self.qps.metric {
            let tenant = label(&self.qps.tenant_label)?;
            let app = label(&self.qps.app_label)?;
            return (!tenant.is_empty() && !app.is_empty()).then_some(Mapped {
                signal: Signal::Qps,
                kind: SeriesKind::Counter,
                tenant,
                app,
            });
        }
        self.resources.as_ref()?.classify(name, label)
    }
}

/// Limits of the receiver.
#[derive(Clone, Debug)]
pub struct RemoteWriteConfig {
    /// Compressed body size refused with 413 (Prometheus sends about 100-500 KiB).
    pub max_body_bytes: usize,
    /// Decompressed size refused with 413, checked before decompressing.
    pub max_decoded_bytes: usize,
    /// Bytes of requests being handled at once: each holds its body plus twice its
    /// decoded size (the bytes and the series decoded from them) from before its body
    /// is read until it is applied. Beyond it requests are answered 503, which
    /// senders retry, so many or slow clients cannot hold more memory than this.
    pub max_in_flight_bytes: usize,
    /// A body not received whole within this is answered 408.
    pub body_timeout: std::time::Duration,
    pub max_series: usize,
    /// Series one tenant may hold.
    pub max_series_per_tenant: usize,
    /// Counter samples further apart start over; silent series are forgotten after it.
    pub max_gap_ms: i64,
    pub shards: usize,
    /// Changed workloads are published to the store at most this often (0: after every
    /// request). Remote-write already batches for seconds; this bounds store writes.
    pub publish_every_ms: i64,
    pub mapping: WriteMapping,
    /// How far sample timestamps may be from the receiver's clock.
    pub bounds: TimeBounds,
    /// HA Prometheus pairs: which labels name them, when the elected replica fails over.
    pub ha: HaConfig,
}

impl Default for RemoteWriteConfig {
    /// Sizes from the default memory budget (see [`crate::budget`]).
    fn default() -> Self {
        let derived = crate::budget::MemoryBudget::default().derive(900);
        Self {
            max_body_bytes: derived.remote_write_max_body_bytes,
            max_decoded_bytes: derived.remote_write_max_decoded_bytes,
            max_in_flight_bytes: derived.remote_write_in_flight_bytes,
            body_timeout: std::time::Duration::from_secs(30),
            max_series: derived.remote_write_max_series,
            max_series_per_tenant: derived.remote_write_max_series_per_tenant,
            max_gap_ms: 60_000,
            shards: 16,
            publish_every_ms: 50,
            mapping: WriteMapping::default(),
            bounds: TimeBounds::default(),
            ha: HaConfig::default(),
        }
    }
}

/// The receiver: decodes bodies, keeps per-series state, feeds [`Ingest`].
#[derive(Debug)]
pub struct RemoteWrite {
    config: RemoteWriteConfig,
    table: SeriesTable,
    ha: HaTracker,
    ingest: Arc<Ingest>,
    last_sweep_ms: AtomicI64,
    last_publish_ms: AtomicI64,
    /// Changes applied but not yet published.
    pending: AtomicBool,
    /// Bytes of requests in flight (see [`RemoteWriteConfig::max_in_flight_bytes`]).
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// A delayed publish is already scheduled by the HTTP handler.
    pub(crate) publish_scheduled: AtomicBool,
    pub stats: RemoteWriteStats,
}

impl RemoteWrite {
    pub fn new(config: RemoteWriteConfig, ingest: Arc<Ingest>) -> Arc<Self> {
        let table = SeriesTable::new(
            config.shards,
            SeriesLimits {
                max_series: config.max_series,
                max_series_per_tenant: config.max_series_per_tenant,
                max_gap_ms: config.max_gap_ms,
            },
        );
        let in_flight = Arc::new(tokio::sync::Semaphore::new(
            config
                .max_in_flight_bytes
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        Arc::new(Self {
            ha: HaTracker::new(config.ha.clone()),
            config,
            table,
            ingest,
            last_sweep_ms: AtomicI64::new(0),
            last_publish_ms: AtomicI64::new(i64::MIN),
            pending: AtomicBool::new(false),
            in_flight,
            publish_scheduled: AtomicBool::new(false),
            stats: RemoteWriteStats::default(),
        })
    }

    pub fn config(&self) -> &RemoteWriteConfig {
        &self.config
    }

    pub fn series_count(&self) -> usize {
        self.table.series_count()
    }

    /// The series table (per-tenant counts, groups held).
    pub fn table(&self) -> &SeriesTable {
        &self.table
    }

    /// Bytes of requests being handled now.
    pub fn in_flight_bytes(&self) -> usize {
        self.config
            .max_in_flight_bytes
            .min(tokio::sync::Semaphore::MAX_PERMITS)
            .saturating_sub(self.in_flight.available_permits())
    }

    pub fn approximate_bytes(&self) -> usize {
        self.table.approximate_bytes()
    }

    /// The HA tracker: the elected replica of each cluster.
    pub fn ha(&self) -> &HaTracker {
        &self.ha
    }

    /// Handles one request body whose headers already passed [`check_headers`], from
    /// a writer that may write anything. Nothing is applied unless the whole body decodes.
    pub fn receive(&self, body: &[u8], now_ms: i64) -> Result<Applied, DecodeError> {
        self.receive_as(body, now_ms, None)
    }

    /// [`Self::receive`] from one writer: its series are its own, and samples for
    /// workloads outside its scope are refused and counted.
    pub fn receive_as(
        &self,
        body: &[u8],
        now_ms: i64,
        scope: Option<&WriteScope>,
    ) -> Result<Applied, DecodeError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if body.len() > self.config.max_body_bytes {
            let error = DecodeError::TooLarge {
                size: body.len(),
                limit: self.config.max_body_bytes,
            };
            self.stats.count_refusal(&error);
            return Err(error);
        }
        let raw = decompress(body, self.config.max_decoded_bytes)
            .inspect_err(|error| self.stats.count_refusal(error))?;
        let request = wire::decode(&raw)
            .map_err(|e| DecodeError::Protobuf(e.to_string()))
            .inspect_err(|error| self.stats.count_refusal(error))?;
        let admission = Admission {
            now_ms,
            bounds: self.config.bounds,
            ha: Some(&self.ha),
            scope,
        };
        let applied = self.table.apply(&request, &self.config.mapping, &admission);
        self.stats.count_applied(&applied);
        self.pending.store(true, Ordering::Release);
        self.maybe_sweep(now_ms);
        self.publish_if_due(now_ms);
        Ok(applied)
    }

    /// Whether applied changes still wait for a publish (see `publish_every_ms`).
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Publishes pending changes if the last publish is old enough.
    pub fn publish_if_due(&self, now_ms: i64) {
        let last = self.last_publish_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= self.config.publish_every_ms
            && self
                .last_publish_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.publish_now(now_ms);
        }
    }

    /// Publishes every pending change to the store now.
    pub fn publish_now(&self, now_ms: i64) {
        self.last_publish_ms.store(now_ms, Ordering::Relaxed);
        // Cleared before taking: a request applied meanwhile sets it again, so its
        // changes are published by this call or a later one, never lost.
        self.pending.store(false, Ordering::Release);
        self.publish(self.table.take_updates(now_ms));
    }

    /// Forgets series silent for longer than the gap limit (run at most every half gap).
    pub fn maybe_sweep(&self, now_ms: i64) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < self.config.max_gap_ms / 2
            || self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.table.sweep(now_ms);
        self.ha.sweep(now_ms, HA_FORGET_AFTER_MS);
        self.pending.store(true, Ordering::Release);
    }

    fn publish(&self, updates: Vec<Update>) {
        for update in updates {
            let values = update
                .value
                .map(|value| vec![(update.workload, value)])
                .unwrap_or_default();
            self.ingest
                .apply(&update.source, update.signal, values, update.at_ms);
        }
    }
}

#[cfg(test)]
mod tests;
