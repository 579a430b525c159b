//! Counter → rate, per scrape target, with Prometheus' reset semantics.
//!
//! A [`CounterTracker`] belongs to one source (a scrape target, a remote-write
//! series set) and is driven one scrape at a time: [`CounterTracker::begin`], one
//! [`CounterTracker::observe`] per counter sample, then [`CounterTracker::finish`],
//! which yields the per-workload request rate that source contributes.
//!
//! - A counter that went down was reset (a process restart): the increase is the new
//!   value, as Prometheus' `rate()` counts it.
//! - A series seen for the first time on a source already scraped before is assumed to
//!   have started at zero at the previous scrape, so a label set created between two
//!   scrapes (a new route, a first 5xx) is counted instead of lost for one interval.
//! - On a source's first scrape, or after a gap longer than `max_gap_ms`, there is no
//!   rate yet: a restart of Spillway must not read whole counters as one burst.
//! - Series that disappear from a scrape are forgotten (stale), bounding memory.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hasher};

use crate::signal::WorkloadKey;

#[derive(Debug)]
struct SeriesState {
    value: f64,
    increase: f64,
    generation: u64,
    workload: WorkloadKey,
}

/// Turns successive scrapes of one source into per-workload rates.
#[derive(Debug)]
pub struct CounterTracker {
    series: HashMap<u64, SeriesState>,
    workloads: HashMap<u64, WorkloadKey>,
    hasher: std::collections::hash_map::RandomState,
    generation: u64,
    scrape_ms: i64,
    previous_ms: Option<i64>,
    max_gap_ms: i64,
    /// Series tracked at most; samples of further new series are dropped and counted,
    /// so one target exploding its label cardinality cannot exhaust memory.
    max_series: usize,
    dropped: u64,
}

impl CounterTracker {
    /// `max_gap_ms`: scrapes further apart than this start over instead of averaging a
    /// rate across an outage.
    pub fn new(max_gap_ms: i64) -> Self {
        Self {
            series: HashMap::new(),
            workloads: HashMap::new(),
            hasher: Default::default(),
            generation: 0,
            scrape_ms: 0,
            previous_ms: None,
            max_gap_ms,
            max_series: usize::MAX,
            dropped: 0,
        }
    }

    /// Limits the series tracked; see [`Self::take_dropped`].
    pub fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// Samples of new series refused at the series limit since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Starts a scrape taken at `at_ms` (unix milliseconds).
    pub fn begin(&mut self, at_ms: i64) {
        self.generation += 1;
        if let Some(previous) = self.previous_ms
            && (at_ms <= previous || at_ms - previous > self.max_gap_ms)
        {
            self.previous_ms = None;
        }
        self.scrape_ms = at_ms;
    }

    /// A hasher for a series identity: callers write every byte that tells two series
    /// apart (metric name and the full raw label set) and pass `finish()` to `observe`.
    pub fn series_hasher(&self) -> impl Hasher + use<> {
        self.hasher.build_hasher()
    }

    /// Records one counter sample of the current scrape.
    pub fn observe(&mut self, series_id: u64, tenant: &str, app: &str, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        let generation = self.generation;
        let had_previous = self.previous_ms.is_some();
        let full = self.series.len() >= self.max_series;
        match self.series.entry(series_id) {
            Entry::Occupied(mut entry) => {
                let state = entry.get_mut();
                if state.generation == generation {
                    // The same series twice in one scrape: keep the first, as Prometheus does.
                    return;
                }
                let increase = if value >= state.value {
                    value - state.value
                } else {
                    value
                };
                state.increase = if had_previous { increase } else { f64::NAN };
                state.value = value;
                state.generation = generation;
            }
            Entry::Vacant(_) if full => self.dropped += 1,
            Entry::Vacant(entry) => {
                let workload = intern(&mut self.workloads, &self.hasher, tenant, app);
                entry.insert(SeriesState {
                    value,
                    increase: if had_previous { value } else { f64::NAN },
                    generation,
                    workload,
                });
            }
        }
    }

    /// Ends the scrape: per-workload requests per second this source contributes.
    /// Empty on a first scrape (no rate yet); a workload whose series all vanished is
    /// absent.
    pub fn finish(&mut self) -> Vec<(WorkloadKey, f64)> {
        let generation = self.generation;
        self.series
            .retain(|_, state| state.generation == generation);
        let elapsed_ms = self.previous_ms.map(|previous| self.scrape_ms - previous);
        self.previous_ms = Some(self.scrape_ms);
        let Some(elapsed_ms) = elapsed_ms.filter(|ms| *ms > 0) else {
            self.forget_unused_workloads();
            return Vec::new();
        };
        let seconds = elapsed_ms as f64 / 1000.0;
        let mut rates: HashMap<&WorkloadKey, f64> = HashMap::new();
        for state in self.series.values() {
            if state.increase.is_finite() {
                *rates.entry(&state.workload).or_default() += state.increase / seconds;
            }
        }
        let rates = rates
            .into_iter()
            .map(|(workload, rate)| (workload.clone(), rate))
            .collect();
        self.forget_unused_workloads();
        rates
    }

    /// Forgets everything, e.g. after the target was removed from the configuration.
    pub fn reset(&mut self) {
        self.series.clear();
        self.workloads.clear();
        self.previous_ms = None;
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn forget_unused_workloads(&mut self) {
        if self.workloads.len() > 2 * self.series.len() + 16 {
            let series = &self.series;
            self.workloads
                .retain(|_, workload| series.values().any(|s| &s.workload == workload));
        }
    }
}

fn intern(
    workloads: &mut HashMap<u64, WorkloadKey>,
    hasher: &std::collections::hash_map::RandomState,
    tenant: &str,
    app: &str,
) -> WorkloadKey {
    let key = hasher.hash_one((tenant, app));
    match workloads.get(&key) {
        Some(existing) if &*existing.tenant == tenant && &*existing.app == app => existing.clone(),
        Some(_) => WorkloadKey::new(tenant, app),
        None => {
            let workload = WorkloadKey::new(tenant, app);
            workloads.insert(key, workload.clone());
            workload
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(tracker: &mut CounterTracker) -> HashMap<String, f64> {
        tracker
            .finish()
            .into_iter()
            .map(|(w, r)| (w.to_string(), r))
            .collect()
    }

    #[test]
    fn first_scrape_has_no_rate_then_increase_over_elapsed_time() {
        let mut tracker = CounterTracker::new(60_000);
        tracker.begin(1_000);
        tracker.observe(1, "acme", "web", 100.0);
        tracker.observe(2, "acme", "web", 50.0);
        assert!(tracker.finish().is_empty());

        tracker.begin(3_000);
        tracker.observe(1, "acme", "web", 140.0);
        tracker.observe(2, "acme", "web", 70.0);
        assert_eq!(rates(&mut tracker)["acme/web"], 30.0);
    }

    #[test]
    fn a_counter_reset_counts_the_new_value() {
        let mut tracker = CounterTracker::new(60_000);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", 1_000.0);
        tracker.finish();
        tracker.begin(10_000);
        tracker.observe(1, "acme", "web", 20.0);
        assert_eq!(rates(&mut tracker)["acme/web"], 2.0);
    }

    #[test]
    fn a_new_series_on_a_known_target_counts_from_zero() {
        let mut tracker = CounterTracker::new(60_000);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", 10.0);
        tracker.finish();
        tracker.begin(2_000);
        tracker.observe(1, "acme", "web", 10.0);
        tracker.observe(2, "acme", "api", 8.0);
        let rates = rates(&mut tracker);
        assert_eq!(rates["acme/api"], 4.0);
        assert_eq!(rates["acme/web"], 0.0);
    }

    #[test]
    fn vanished_series_are_forgotten() {
        let mut tracker = CounterTracker::new(60_000);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", 10.0);
        tracker.observe(2, "acme", "api", 10.0);
        tracker.finish();
        tracker.begin(1_000);
        tracker.observe(1, "acme", "web", 11.0);
        let rates = rates(&mut tracker);
        assert_eq!(tracker.series_count(), 1);
        assert!(!rates.contains_key("acme/api"));
    }

    #[test]
    fn a_long_gap_starts_over_instead_of_averaging_across_it() {
        let mut tracker = CounterTracker::new(30_000);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", 10.0);
        tracker.finish();
        tracker.begin(120_000);
        tracker.observe(1, "acme", "web", 1_000.0);
        assert!(tracker.finish().is_empty());
        tracker.begin(121_000);
        tracker.observe(1, "acme", "web", 1_005.0);
        assert_eq!(rates(&mut tracker)["acme/web"], 5.0);
    }

    #[test]
    fn series_beyond_the_limit_are_dropped_and_counted() {
        let mut tracker = CounterTracker::new(60_000).with_max_series(2);
        for at_ms in [0, 1_000] {
            tracker.begin(at_ms);
            for series in 1..=3 {
                tracker.observe(series, "acme", "web", at_ms as f64 / 100.0);
            }
            let rates = rates(&mut tracker);
            if at_ms > 0 {
                assert_eq!(rates["acme/web"], 20.0);
            }
        }
        assert_eq!(tracker.series_count(), 2);
        assert_eq!(tracker.take_dropped(), 2);
        assert_eq!(tracker.take_dropped(), 0);
    }

    #[test]
    fn non_finite_and_negative_values_are_ignored() {
        let mut tracker = CounterTracker::new(60_000);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", f64::NAN);
        tracker.observe(2, "acme", "web", -3.0);
        tracker.finish();
        assert_eq!(tracker.series_count(), 0);
    }
}
