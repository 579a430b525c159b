//! Where every input lands: contributions are summed, recorded into the store, and the
//! workloads they touched are marked for a fresh decision.
//!
//! The decision loop waits on [`Ingest::changed`] and takes the dirty set with
//! [`Ingest::take_dirty`]; bursts of updates to one workload coalesce into one
//! decision instead of queueing one per sample.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::aggregate::{Contributions, Total};
use crate::signal::{Signal, WorkloadKey};
use crate::store::{RecordError, Store, StoreLimits};

/// Counters describing what ingest did, for /metrics.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub values_recorded: AtomicU64,
    /// Values for a new window the store had no room for.
    pub values_refused: AtomicU64,
    /// Values for a new window of a tenant at its quota.
    pub values_refused_tenant_quota: AtomicU64,
    /// Sums the store cannot hold (negative, NaN, or beyond `f32`'s range, as only a
    /// hostile input's can be): never recorded, so never decided on.
    pub values_out_of_range: AtomicU64,
    /// Values an input could not tie to a tenant a policy names (PodMetrics from a
    /// namespace no policy lists): ignored.
    pub values_unmapped: AtomicU64,
}

#[derive(Debug)]
pub struct Ingest {
    store: Store,
    contributions: Contributions,
    dirty: Mutex<HashSet<WorkloadKey>>,
    notify: Notify,
    pub stats: IngestStats,
}

impl Ingest {
    pub fn new(limits: StoreLimits) -> Arc<Self> {
        Arc::new(Self {
            store: Store::new(limits),
            contributions: Contributions::new(),
            dirty: Mutex::new(HashSet::new()),
            notify: Notify::new(),
            stats: IngestStats::default(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Replaces what `source` contributes to `signal` (see [`Contributions::replace`]).
    pub fn apply(
        &self,
        source: &Arc<str>,
        signal: Signal,
        values: Vec<(WorkloadKey, f64)>,
        at_ms: i64,
    ) {
        let values = self.admit(signal, values, at_ms);
        let totals = self.contributions.replace(source, signal, values, at_ms);
        self.record(totals, at_ms);
    }

    /// Keeps the values the store has (or can make) a window for; the others are
    /// refused and counted before they reach the contributions, so no table grows
    /// for a workload the store cannot hold.
    fn admit(
        &self,
        signal: Signal,
        mut values: Vec<(WorkloadKey, f64)>,
        at_ms: i64,
    ) -> Vec<(WorkloadKey, f64)> {
        let second = at_ms.div_euclid(1000);
        values.retain(
            |(workload, _)| match self.store.ensure(workload, signal, second) {
                Ok(()) => true,
                Err(error) => {
                    self.count_refused(&error);
                    false
                }
            },
        );
        values
    }

    fn count_refused(&self, error: &RecordError) {
        let counter = match error {
            RecordError::Full { .. } => &self.stats.values_refused,
            RecordError::TenantFull { .. } => &self.stats.values_refused_tenant_quota,
        };
        // Counted, not logged one by one: a flood would be a log flood.
        if counter.fetch_add(1, Ordering::Relaxed) % 10_000 == 0 {
            tracing::warn!(%error, "signal value not stored (logged once per 10,000)");
        }
    }

    /// Evicts store windows with nothing left to read and those of workloads nobody
    /// wants that were not written for `idle_ms` (see [`Store::evict_idle`]).
    pub fn evict_idle(&self, now_ms: i64, idle_ms: i64) -> usize {
        self.store
            .evict_idle(now_ms.div_euclid(1000), idle_ms.div_euclid(1000))
    }

    /// [`Self::apply`] for a source that knows whether its values are complete; while
    /// they are not, the workloads' sums are stored as lower bounds.
    pub fn apply_sums(
        &self,
        source: &Arc<str>,
        signal: Signal,
        values: Vec<(WorkloadKey, f64)>,
        at_ms: i64,
        complete: bool,
    ) {
        let values = self.admit(signal, values, at_ms);
        let totals = self
            .contributions
            .replace_with(source, signal, values, at_ms, !complete);
        self.record(totals, at_ms);
    }

    /// (source, signal) pairs holding a contribution (see [`Contributions::source_count`]).
    pub fn contributions_sources(&self) -> usize {
        self.contributions.source_count()
    }

    /// Values refused because their workload sums the most sources already.
    pub fn refused_sources(&self) -> u64 {
        self.contributions.refused_sources()
    }

    /// Every workload's current summed signals.
    pub fn totals(&self) -> Vec<Total> {
        self.contributions.totals()
    }

    /// Drops contributions older than `max_age_ms` and records the new totals.
    pub fn expire(&self, now_ms: i64, max_age_ms: i64) {
        let totals = self.contributions.expire(now_ms, max_age_ms);
        self.record(totals, now_ms);
    }

    /// Forgets a source that left the configuration.
    pub fn remove_source(&self, source: &Arc<str>, now_ms: i64) {
        let totals = self.contributions.remove_source(source);
        self.record(totals, now_ms);
    }

    /// Takes the set of workloads whose signals changed since the last call.
    pub fn take_dirty(&self) -> HashSet<WorkloadKey> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Resolves once some workload's signals changed after the last [`Self::take_dirty`].
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    fn record(&self, totals: Vec<Total>, at_ms: i64) {
        if totals.is_empty() {
            return;
        }
        let second = at_ms.div_euclid(1000);
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        for total in totals {
            // The store keeps `f32` magnitudes: larger would read as infinity.
            if !(0.0..=f64::from(f32::MAX)).contains(&total.value) {
                self.stats
                    .values_out_of_range
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.store.record_sum(
                &total.workload,
                total.signal,
                second,
                total.value,
                total.lower_bound,
            ) {
                Ok(()) => {
                    self.stats.values_recorded.fetch_add(1, Ordering::Relaxed);
                    dirty.insert(total.workload);
                }
                Err(error) => self.count_refused(&error),
            }
        }
        drop(dirty);
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::SignalView;

    #[tokio::test]
    async fn applied_values_are_stored_and_wake_the_decision_loop() {
        let ingest = Ingest::new(StoreLimits::default());
        let web = WorkloadKey::new("acme", "web");
        let source: Arc<str> = "gw".into();
        ingest.apply(&source, Signal::Qps, vec![(web.clone(), 42.0)], 5_500);
        tokio::time::timeout(std::time::Duration::from_secs(1), ingest.changed())
            .await
            .expect("notified");
        assert_eq!(ingest.take_dirty(), HashSet::from([web.clone()]));
        assert!(ingest.take_dirty().is_empty());
        let view = ingest.store().view(&web);
        assert_eq!(view.mean(Signal::Qps, 5, 1), Some(42.0));
    }

    #[test]
    fn a_sum_the_store_cannot_hold_is_not_recorded() {
        let ingest = Ingest::new(StoreLimits::default());
        let web = WorkloadKey::new("acme", "web");
        let huge = f64::from(f32::MAX) * 0.75;
        for source in ["a", "b"] {
            let source: Arc<str> = source.into();
            ingest.apply(&source, Signal::Qps, vec![(web.clone(), huge)], 5_000);
        }
        let source: Arc<str> = "c".into();
        ingest.apply(
            &source,
            Signal::CpuCores,
            vec![(web.clone(), f64::MAX)],
            5_000,
        );
        assert_eq!(ingest.stats.values_out_of_range.load(Ordering::Relaxed), 2);
        let view = ingest.store().view(&web);
        let stored = view.max(Signal::Qps, 5, 1).unwrap();
        assert!(
            stored.is_finite() && stored < f64::from(f32::MAX),
            "{stored}"
        );
        assert_eq!(view.max(Signal::CpuCores, 5, 1), None);
    }

    #[test]
    fn a_clock_jump_back_and_forward_neither_freezes_nor_grows_the_store() {
        const HOUR_MS: i64 = 3_600_000;
        let ingest = Ingest::new(StoreLimits {
            horizon_secs: 900,
            max_windows: 100,
            max_windows_per_tenant: 100,
        });
        let web = WorkloadKey::new("acme", "web");
        let (gw_a, gw_b): (Arc<str>, Arc<str>) = ("gw-a".into(), "gw-b".into());
        let t = 1_800_000_000_000;
        // Both gateways report every second for ten minutes.
        let tick = |now_ms: i64, sources: &[&Arc<str>]| {
            for source in sources {
                ingest.apply(source, Signal::Qps, vec![(web.clone(), 10.0)], now_ms);
            }
            ingest.expire(now_ms, 30_000);
        };
        for s in 0..600 {
            tick(t + s * 1000, &[&gw_a, &gw_b]);
        }
        let bytes = ingest.store().approximate_bytes();
        let view = |now_s: i64| ingest.store().view(&web).mean(Signal::Qps, now_s, 5);
        assert_eq!(view((t + 599_000) / 1000), Some(20.0));

        // The clock goes back an hour; gateway b has died meanwhile.
        let back = t + 600_000 - HOUR_MS;
        for s in 0..120 {
            tick(back + s * 1000, &[&gw_a]);
            // Not frozen: every value is recorded and read back at the new time.
            assert!(view((back + s * 1000) / 1000).is_some(), "at +{s}s");
        }
        // b's last contribution ages from the jump: gone a staleness limit later.
        assert_eq!(view((back + 119_000) / 1000), Some(10.0));
        assert_eq!(ingest.stats.values_refused.load(Ordering::Relaxed), 0);
        assert_eq!(ingest.store().window_count(), 1);
        assert_eq!(ingest.store().approximate_bytes(), bytes);

        // And forward again, past where it was before the jump.
        let forward = t + 700_000;
        for s in 0..60 {
            tick(forward + s * 1000, &[&gw_a, &gw_b]);
        }
        assert_eq!(view((forward + 59_000) / 1000), Some(20.0));
        assert_eq!(ingest.stats.values_refused.load(Ordering::Relaxed), 0);
        assert_eq!(ingest.store().approximate_bytes(), bytes);
    }
}
