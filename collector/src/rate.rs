//! Counter → rate, per scrape target, with Prometheus' reset and staleness semantics.
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
//! - A series missing from a scrape is stale, as in Prometheus: it contributes nothing
//!   while absent, and when it comes back its first value only starts a new run (no
//!   rate for that scrape). Counting it from zero like a new series would read a
//!   counter at 10⁹ that skipped one scrape as 10⁹ requests in one interval. Absent
//!   series are remembered for `forget_absent_after_ms`, then forgotten, and make way
//!   first when the series limit is reached.
//! - A sample that is not a number a counter can hold (NaN, ±Inf, negative) gives its
//!   series no rate for that scrape but keeps it: it is neither a reset nor an end.
//!   The next good value rates against the last good one, over the time between them.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hasher};

use crate::signal::WorkloadKey;

/// How long a series missing from its source's scrapes is remembered by default.
pub const DEFAULT_FORGET_ABSENT_AFTER_MS: i64 = 10 * 60_000;

/// Kept as small as the state without staleness tracking was (56 bytes): a scrape
/// target may hold 500,000 series.
#[derive(Debug)]
struct SeriesState {
    /// The last good value; NaN while the series has none yet.
    value: f64,
    /// When `value` was scraped; while the series is absent, since when it has been.
    at_ms: i64,
    /// Requests per second this series adds in the current scrape; NaN: none.
    rate: f32,
    /// The last scrape the series was in (see `CounterTracker::generation`).
    generation: u32,
    workload: WorkloadKey,
}

/// Turns successive scrapes of one source into per-workload rates.
#[derive(Debug)]
pub struct CounterTracker {
    series: HashMap<u64, SeriesState>,
    workloads: HashMap<u64, WorkloadKey>,
    hasher: std::collections::hash_map::RandomState,
    /// Counts scrapes begun; only compared for equality, so wrapping is harmless.
    generation: u32,
    /// The generation of the last finished scrape: a series whose generation is older
    /// missed a scrape that completed, and is absent. (A garbled scrape is begun but
    /// not finished, so it makes nothing absent.)
    finished: u32,
    scrape_ms: i64,
    previous_ms: Option<i64>,
    max_gap_ms: i64,
    forget_absent_after_ms: i64,
    /// Series in `series` that are absent (stale) rather than present.
    absent: usize,
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
            finished: 0,
            scrape_ms: 0,
            previous_ms: None,
            max_gap_ms,
            forget_absent_after_ms: DEFAULT_FORGET_ABSENT_AFTER_MS,
            absent: 0,
            max_series: usize::MAX,
            dropped: 0,
        }
    }

    /// Limits the series tracked; see [`Self::take_dropped`].
    pub fn with_max_series(mut self, max_series: usize) -> Self {
        self.max_series = max_series;
        self
    }

    /// How long a series missing from the scrapes is remembered; one that comes back
    /// later than this is taken for a new series.
    pub fn with_forget_absent_after(mut self, ms: i64) -> Self {
        self.forget_absent_after_ms = ms.max(0);
        self
    }

    /// Samples of new series refused at the series limit since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Starts a scrape taken at `at_ms` (unix milliseconds).
    pub fn begin(&mut self, at_ms: i64) {
        self.generation = self.generation.wrapping_add(1);
        if let Some(previous) = self.previous_ms
            && (at_ms <= previous || at_ms.saturating_sub(previous) > self.max_gap_ms)
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
        let usable = value.is_finite() && value >= 0.0;
        let (generation, finished) = (self.generation, self.finished);
        let scrape_ms = self.scrape_ms;
        let previous_ms = self.previous_ms;
        if self.series.len() >= self.max_series
            && self.absent > 0
            && !self.series.contains_key(&series_id)
        {
            self.forget_absent();
        }
        let full = self.series.len() >= self.max_series;
        match self.series.entry(series_id) {
            Entry::Occupied(mut entry) => {
                let state = entry.get_mut();
                if state.generation == generation {
                    // The same series twice in one scrape: keep the first, as Prometheus does.
                    return;
                }
                let returning = state.generation != finished;
                state.generation = generation;
                state.rate = f32::NAN;
                if returning {
                    self.absent = self.absent.saturating_sub(1);
                    // Back after missing a scrape: a new run starts here.
                    state.value = if usable { value } else { f64::NAN };
                    state.at_ms = scrape_ms;
                    return;
                }
                if !usable {
                    return;
                }
                let elapsed_ms = scrape_ms.saturating_sub(state.at_ms);
                let rated = previous_ms.is_some()
                    && state.value.is_finite()
                    && elapsed_ms > 0
                    && elapsed_ms <= self.max_gap_ms;
                if rated {
                    let increase = if value >= state.value {
                        value - state.value
                    } else {
                        value
                    };
                    state.rate = (increase * 1000.0 / elapsed_ms as f64) as f32;
                }
                state.value = value;
                state.at_ms = scrape_ms;
            }
            Entry::Vacant(_) if full => self.dropped += 1,
            Entry::Vacant(entry) => {
                let workload = intern(&mut self.workloads, &self.hasher, tenant, app);
                // Started at zero at the previous scrape (see the module documentation);
                // a first sample that is not a number gives no starting point at all.
                let rate = match previous_ms {
                    Some(previous) if usable && scrape_ms > previous => {
                        (value * 1000.0 / (scrape_ms - previous) as f64) as f32
                    }
                    _ => f32::NAN,
                };
                entry.insert(SeriesState {
                    value: if usable { value } else { f64::NAN },
                    at_ms: scrape_ms,
                    rate,
                    generation,
                    workload,
                });
            }
        }
    }

    /// Ends the scrape: per-workload requests per second this source contributes.
    /// Empty on a first scrape (no rate yet); a workload whose series all vanished or
    /// have no rate this scrape is absent.
    pub fn finish(&mut self) -> Vec<(WorkloadKey, f64)> {
        let (generation, finished) = (self.generation, self.finished);
        let scrape_ms = self.scrape_ms;
        let forget_after = self.forget_absent_after_ms;
        let mut absent = 0;
        self.series.retain(|_, state| {
            if state.generation == generation {
                return true;
            }
            if state.generation == finished {
                // Missing from this scrape, present in the one before: absent from now.
                state.at_ms = scrape_ms;
            }
            let keep = scrape_ms.saturating_sub(state.at_ms) <= forget_after;
            absent += usize::from(keep);
            keep
        });
        self.absent = absent;
        self.finished = generation;
        let first = self.previous_ms.is_none();
        self.previous_ms = Some(self.scrape_ms);
        if first {
            self.forget_unused_workloads();
            return Vec::new();
        }
        let mut rates: HashMap<&WorkloadKey, f64> = HashMap::new();
        for state in self.series.values() {
            if state.generation == generation && state.rate.is_finite() {
                *rates.entry(&state.workload).or_default() += f64::from(state.rate);
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
        self.absent = 0;
    }

    /// Series held, present and absent.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Series held only to recognise them if they come back.
    pub fn absent_count(&self) -> usize {
        self.absent
    }

    /// Makes way at the series limit: absent series go before new ones are dropped.
    fn forget_absent(&mut self) {
        let (generation, finished) = (self.generation, self.finished);
        self.series
            .retain(|_, state| state.generation == generation || state.generation == finished);
        self.absent = 0;
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
    fn series_state_stays_at_56_bytes() {
        // BENCHMARKS.md's bytes per scrape series are measured at this size.
        assert_eq!(std::mem::size_of::<SeriesState>(), 56);
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
    fn vanished_series_stop_contributing_and_are_forgotten_later() {
        let mut tracker = CounterTracker::new(60_000).with_forget_absent_after(5_000);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", 10.0);
        tracker.observe(2, "acme", "api", 10.0);
        tracker.finish();
        tracker.begin(1_000);
        tracker.observe(1, "acme", "web", 11.0);
        let rates = rates(&mut tracker);
        assert!(!rates.contains_key("acme/api"));
        assert_eq!((tracker.series_count(), tracker.absent_count()), (2, 1));
        for at_ms in [3_000, 6_000, 7_000] {
            tracker.begin(at_ms);
            tracker.observe(1, "acme", "web", 11.0);
            tracker.finish();
        }
        assert_eq!((tracker.series_count(), tracker.absent_count()), (1, 0));
    }

    #[test]
    fn a_counter_missing_from_one_scrape_gets_no_rate_when_it_returns() {
        let mut tracker = CounterTracker::new(60_000);
        let scrape = |tracker: &mut CounterTracker, at_ms: i64, big: Option<f64>| {
            tracker.begin(at_ms);
            tracker.observe(1, "acme", "web", at_ms as f64 / 100.0);
            if let Some(value) = big {
                tracker.observe(2, "acme", "api", value);
            }
            rates(tracker)
        };
        scrape(&mut tracker, 0, Some(1e9));
        assert_eq!(
            scrape(&mut tracker, 1_000, Some(1e9 + 50.0))["acme/api"],
            50.0
        );
        let missing = scrape(&mut tracker, 2_000, None);
        assert!(!missing.contains_key("acme/api"), "{missing:?}");
        // Back with its whole value: not 10⁹ requests in one second, not any rate yet.
        let back = scrape(&mut tracker, 3_000, Some(1e9 + 150.0));
        assert!(!back.contains_key("acme/api"), "{back:?}");
        assert_eq!(back["acme/web"], 10.0, "the other series is unaffected");
        assert_eq!(
            scrape(&mut tracker, 4_000, Some(1e9 + 200.0))["acme/api"],
            50.0
        );
    }

    #[test]
    fn a_returning_series_forgotten_at_the_limit_is_a_new_series() {
        let mut tracker = CounterTracker::new(60_000).with_max_series(2);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", 5.0);
        tracker.observe(2, "acme", "api", 5.0);
        tracker.finish();
        tracker.begin(1_000);
        tracker.observe(1, "acme", "web", 6.0);
        tracker.finish();
        // At the limit, the absent series makes way for a new one instead of the new
        // one being dropped.
        tracker.begin(2_000);
        tracker.observe(1, "acme", "web", 7.0);
        tracker.observe(3, "acme", "new", 4.0);
        let rates = rates(&mut tracker);
        assert_eq!(rates["acme/new"], 4.0);
        assert_eq!(tracker.take_dropped(), 0);
        assert_eq!((tracker.series_count(), tracker.absent_count()), (2, 0));
    }

    #[test]
    fn a_nan_sample_keeps_its_series_and_the_next_value_rates_across_it() {
        let mut tracker = CounterTracker::new(60_000);
        tracker.begin(0);
        tracker.observe(1, "acme", "web", 1e9);
        tracker.finish();
        tracker.begin(1_000);
        tracker.observe(1, "acme", "web", f64::NAN);
        assert!(tracker.finish().is_empty(), "NaN is no rate");
        assert_eq!((tracker.series_count(), tracker.absent_count()), (1, 0));
        tracker.begin(2_000);
        tracker.observe(1, "acme", "web", 1e9 + 100.0);
        // 100 requests over the 2 s since the last number, not a reset to 10⁹.
        assert_eq!(rates(&mut tracker)["acme/web"], 50.0);
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
    fn a_series_first_seen_as_garbage_is_not_counted_from_zero_later() {
        let mut tracker = CounterTracker::new(60_000);
        tracker.begin(0);
        tracker.observe(9, "acme", "web", 1.0);
        tracker.finish();
        tracker.begin(1_000);
        tracker.observe(1, "acme", "web", f64::NAN);
        tracker.observe(2, "acme", "web", -3.0);
        tracker.observe(3, "acme", "web", f64::INFINITY);
        tracker.observe(9, "acme", "web", 1.0);
        assert_eq!(rates(&mut tracker)["acme/web"], 0.0);
        assert_eq!(tracker.series_count(), 4);
        tracker.begin(2_000);
        for series in 1..=3 {
            tracker.observe(series, "acme", "web", 1e9);
        }
        tracker.observe(9, "acme", "web", 2.0);
        assert_eq!(rates(&mut tracker)["acme/web"], 1.0);
    }
}
