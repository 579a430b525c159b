//! Per-workload signal windows at 1 s resolution over a bounded horizon.
//!
//! One [`Window`] per (workload, signal) is a ring of `f32` slots indexed by
//! `second % horizon`. Timestamps are implicit: the ring remembers only its newest
//! second and blanks (NaN) the slots it skips over, so a slot costs 4 bytes and a
//! 600 s window 2.4 KiB. `f32` keeps seven significant digits, which is far finer than
//! any replica decision needs.
//!
//! A value recorded while an input was incomplete (a collector shard lost, so the sum
//! misses that shard's share) is a *lower bound*: it may justify scaling up, never down.
//! Such values are stored with the sign bit set; signals are never negative, so the bit
//! is free and a lower bound costs no extra memory.
//!
//! The map is a [`DashMap`] so scrape tasks, remote-write handlers and the decision
//! loop touch different workloads without contending on one lock.

use dashmap::DashMap;

use crate::signal::{Signal, SignalView, WorkloadKey};

/// Limits that keep the store's memory bounded whatever the inputs do.
#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    /// Seconds of history kept per window (the longest engine window plus a margin).
    pub horizon_secs: u32,
    /// Most (workload, signal) windows held; new ones beyond it are refused and counted.
    pub max_windows: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            horizon_secs: 900,
            max_windows: 300_000,
        }
    }
}

/// Why a value was not stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("store is full ({max} windows); refusing a new window for {workload} {signal}")]
    Full {
        workload: WorkloadKey,
        signal: Signal,
        max: usize,
    },
}

/// A ring of per-second values.
#[derive(Clone, Debug)]
pub struct Window {
    slots: Box<[f32]>,
    newest: i64,
    oldest: i64,
}

impl Window {
    fn new(horizon_secs: u32, second: i64) -> Self {
        Self {
            slots: vec![f32::NAN; horizon_secs.max(1) as usize].into_boxed_slice(),
            newest: second,
            oldest: second,
        }
    }

    fn horizon(&self) -> i64 {
        self.slots.len() as i64
    }

    fn index(&self, second: i64) -> usize {
        second.rem_euclid(self.horizon()) as usize
    }

    /// Records `value` for `second`; a later write to the same second replaces it, since
    /// each write carries the freshest aggregate for that second. `lower_bound` marks a
    /// sum known to be incomplete.
    fn record(&mut self, second: i64, value: f64, lower_bound: bool) {
        if second <= self.newest - self.horizon() {
            // Further back than any input's accepted past and skew together (config
            // keeps them inside the horizon), so not a late sample: the clock that
            // stamped `newest` went back. Refusing would freeze the window until the
            // clock caught up; its values are from a future that did not happen, so
            // the window starts over here.
            self.slots.fill(f32::NAN);
            self.newest = second;
            self.oldest = second;
        }
        if second > self.newest {
            let gap = (second - self.newest).min(self.horizon());
            for skipped in (second - gap + 1)..second {
                let index = self.index(skipped);
                self.slots[index] = f32::NAN;
            }
            self.newest = second;
            self.oldest = self.oldest.max(second - self.horizon() + 1);
        }
        let index = self.index(second);
        let magnitude = (value as f32).abs();
        self.slots[index] = if lower_bound { -magnitude } else { magnitude };
    }

    /// Raw slots in `(now - window, now]` that are still held, newest last; the sign bit
    /// marks a lower bound.
    fn slots_in(&self, now: i64, window_secs: u32) -> impl Iterator<Item = f32> + '_ {
        let window = i64::from(window_secs).min(self.horizon());
        let end = now.min(self.newest);
        let start = (now - window + 1).max(self.newest - self.horizon() + 1);
        (start..=end)
            .map(|second| self.slots[self.index(second)])
            .filter(|value| !value.is_nan())
    }

    /// Values in `(now - window, now]` that are still held, newest last.
    fn values(&self, now: i64, window_secs: u32) -> impl Iterator<Item = f64> + '_ {
        self.slots_in(now, window_secs)
            .map(|value| f64::from(value.abs()))
    }

    /// Whether any value in `(now - window, now]` is a lower bound.
    pub fn has_lower_bound(&self, now: i64, window_secs: u32) -> bool {
        self.slots_in(now, window_secs)
            .any(|value| value.is_sign_negative())
    }

    pub fn mean(&self, now: i64, window_secs: u32) -> Option<f64> {
        let (sum, count) = self
            .values(now, window_secs)
            .fold((0.0, 0u32), |(sum, count), value| (sum + value, count + 1));
        (count > 0).then(|| sum / f64::from(count))
    }

    pub fn max(&self, now: i64, window_secs: u32) -> Option<f64> {
        self.values(now, window_secs).reduce(f64::max)
    }

    /// The newest second that holds a value.
    pub fn newest(&self) -> Option<i64> {
        let held_from = self.newest - self.horizon() + 1;
        (held_from.max(self.oldest)..=self.newest)
            .rev()
            .find(|second| !self.slots[self.index(*second)].is_nan())
    }

    pub fn oldest(&self) -> i64 {
        self.oldest.max(self.newest - self.horizon() + 1)
    }

    /// Heap bytes this window holds, for the memory accounting the design asks for.
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<f32>()
    }
}

/// All windows, keyed by workload and signal.
#[derive(Debug)]
pub struct Store {
    windows: DashMap<(WorkloadKey, Signal), Window>,
    limits: StoreLimits,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            windows: DashMap::new(),
            limits,
        }
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    pub fn record(
        &self,
        workload: &WorkloadKey,
        signal: Signal,
        second: i64,
        value: f64,
    ) -> Result<(), RecordError> {
        self.record_sum(workload, signal, second, value, false)
    }

    /// [`Self::record`], saying whether `value` is a lower bound (an incomplete sum).
    pub fn record_sum(
        &self,
        workload: &WorkloadKey,
        signal: Signal,
        second: i64,
        value: f64,
        lower_bound: bool,
    ) -> Result<(), RecordError> {
        if let Some(mut window) = self.windows.get_mut(&(workload.clone(), signal)) {
            window.record(second, value, lower_bound);
            return Ok(());
        }
        if self.windows.len() >= self.limits.max_windows {
            return Err(RecordError::Full {
                workload: workload.clone(),
                signal,
                max: self.limits.max_windows,
            });
        }
        let mut window = Window::new(self.limits.horizon_secs, second);
        window.record(second, value, lower_bound);
        self.windows.insert((workload.clone(), signal), window);
        Ok(())
    }

    /// A read-only view of one workload's windows, as the engine consumes them.
    pub fn view<'a>(&'a self, workload: &'a WorkloadKey) -> WorkloadView<'a> {
        WorkloadView {
            store: self,
            workload,
        }
    }

    /// Forgets a workload, e.g. when its policy is removed.
    pub fn remove_workload(&self, workload: &WorkloadKey) {
        for signal in Signal::ALL {
            self.windows.remove(&(workload.clone(), signal));
        }
    }

    pub fn window_count(&self) -> usize {
        self.windows.len()
    }

    /// Approximate bytes held: slots plus the map's per-entry overhead and key.
    pub fn approximate_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<((WorkloadKey, Signal), Window)>() + 16;
        self.windows
            .iter()
            .map(|entry| {
                entry.value().heap_bytes()
                    + per_entry
                    + entry.key().0.tenant.len()
                    + entry.key().0.app.len()
            })
            .sum()
    }

    fn with_window<T>(
        &self,
        workload: &WorkloadKey,
        signal: Signal,
        read: impl FnOnce(&Window) -> Option<T>,
    ) -> Option<T> {
        self.windows
            .get(&(workload.clone(), signal))
            .and_then(|window| read(&window))
    }
}

/// [`SignalView`] over one workload in a [`Store`].
#[derive(Clone, Copy)]
pub struct WorkloadView<'a> {
    store: &'a Store,
    workload: &'a WorkloadKey,
}

impl SignalView for WorkloadView<'_> {
    fn mean(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64> {
        self.store
            .with_window(self.workload, signal, |w| w.mean(now, window_secs))
    }

    fn max(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64> {
        self.store
            .with_window(self.workload, signal, |w| w.max(now, window_secs))
    }

    fn newest(&self, signal: Signal) -> Option<i64> {
        self.store
            .with_window(self.workload, signal, Window::newest)
    }

    fn oldest(&self, signal: Signal) -> Option<i64> {
        self.store
            .with_window(self.workload, signal, |w| Some(w.oldest()))
    }

    fn lower_bound(&self, signal: Signal, now: i64, window_secs: u32) -> bool {
        self.store
            .with_window(self.workload, signal, |w| {
                Some(w.has_lower_bound(now, window_secs))
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> WorkloadKey {
        WorkloadKey::new("acme", "checkout")
    }

    fn small_store() -> Store {
        Store::new(StoreLimits {
            horizon_secs: 10,
            max_windows: 4,
        })
    }

    #[test]
    fn mean_and_max_cover_exactly_the_window() {
        let store = small_store();
        for (second, value) in [(100, 1.0), (101, 2.0), (102, 3.0), (103, 10.0)] {
            store.record(&key(), Signal::Qps, second, value).unwrap();
        }
        let workload = key();
        let view = store.view(&workload);
        assert_eq!(view.mean(Signal::Qps, 103, 2), Some(6.5));
        assert_eq!(view.max(Signal::Qps, 102, 3), Some(3.0));
        assert_eq!(view.mean(Signal::Qps, 103, 100), Some(4.0));
        assert_eq!(view.newest(Signal::Qps), Some(103));
        assert_eq!(view.oldest(Signal::Qps), Some(100));
        assert_eq!(view.mean(Signal::CpuCores, 103, 10), None);
    }

    #[test]
    fn gaps_read_as_missing_not_zero() {
        let store = small_store();
        store.record(&key(), Signal::Qps, 100, 8.0).unwrap();
        store.record(&key(), Signal::Qps, 105, 2.0).unwrap();
        let workload = key();
        let view = store.view(&workload);
        assert_eq!(view.mean(Signal::Qps, 105, 6), Some(5.0));
        assert_eq!(view.mean(Signal::Qps, 104, 4), None);
    }

    #[test]
    fn old_values_fall_out_of_the_horizon() {
        let store = small_store();
        store.record(&key(), Signal::Qps, 100, 50.0).unwrap();
        store.record(&key(), Signal::Qps, 115, 1.0).unwrap();
        let workload = key();
        let view = store.view(&workload);
        assert_eq!(view.mean(Signal::Qps, 115, 100), Some(1.0));
        assert_eq!(view.oldest(Signal::Qps), Some(106));
    }

    #[test]
    fn a_write_beyond_the_horizon_behind_restarts_the_window() {
        let store = small_store();
        for second in 3_600..3_610 {
            store.record(&key(), Signal::Qps, second, 7.0).unwrap();
        }
        // The clock went back an hour: the window restarts rather than refusing.
        store.record(&key(), Signal::Qps, 0, 1.0).unwrap();
        let workload = key();
        let view = store.view(&workload);
        assert_eq!(view.newest(Signal::Qps), Some(0));
        assert_eq!(view.oldest(Signal::Qps), Some(0));
        assert_eq!(view.max(Signal::Qps, 0, 10), Some(1.0));
        // Within the horizon behind, a late value still lands in its slot.
        store.record(&key(), Signal::Qps, 5, 3.0).unwrap();
        store.record(&key(), Signal::Qps, 2, 2.0).unwrap();
        assert_eq!(view.max(Signal::Qps, 2, 1), Some(2.0));
    }

    #[test]
    fn a_long_silence_blanks_every_slot() {
        let store = small_store();
        for second in 0..10 {
            store.record(&key(), Signal::Qps, second, 7.0).unwrap();
        }
        store.record(&key(), Signal::Qps, 1_000, 1.0).unwrap();
        assert_eq!(store.view(&key()).max(Signal::Qps, 1_000, 10), Some(1.0));
        assert_eq!(store.view(&key()).newest(Signal::Qps), Some(1_000));
    }

    #[test]
    fn lower_bounds_read_as_values_and_are_flagged_only_inside_their_window() {
        let store = small_store();
        store.record(&key(), Signal::Qps, 100, 10.0).unwrap();
        store
            .record_sum(&key(), Signal::Qps, 101, 4.0, true)
            .unwrap();
        store.record(&key(), Signal::Qps, 102, 0.0).unwrap();
        let workload = key();
        let view = store.view(&workload);
        assert_eq!(view.mean(Signal::Qps, 101, 2), Some(7.0));
        assert_eq!(view.max(Signal::Qps, 102, 3), Some(10.0));
        assert!(view.lower_bound(Signal::Qps, 102, 2));
        assert!(!view.lower_bound(Signal::Qps, 102, 1));
        assert!(!view.lower_bound(Signal::CpuCores, 102, 10));
        // A complete sum for the same second replaces the lower bound.
        store.record(&key(), Signal::Qps, 101, 12.0).unwrap();
        assert!(!view.lower_bound(Signal::Qps, 102, 10));
        assert_eq!(view.mean(Signal::Qps, 101, 1), Some(12.0));
        // Zero as a lower bound is still flagged (the sign bit of -0.0).
        store
            .record_sum(&key(), Signal::Qps, 103, 0.0, true)
            .unwrap();
        assert!(view.lower_bound(Signal::Qps, 103, 1));
        assert_eq!(view.mean(Signal::Qps, 103, 1), Some(0.0));
    }

    #[test]
    fn the_store_refuses_windows_beyond_its_limit() {
        let store = small_store();
        for app in 0..4 {
            let workload = WorkloadKey::new("t", format!("a{app}"));
            store.record(&workload, Signal::Qps, 1, 1.0).unwrap();
        }
        let extra = WorkloadKey::new("t", "a4");
        assert!(matches!(
            store.record(&extra, Signal::Qps, 1, 1.0),
            Err(RecordError::Full { max: 4, .. })
        ));
        assert_eq!(store.window_count(), 4);
        // Existing windows still take values when the store is full.
        store
            .record(&WorkloadKey::new("t", "a0"), Signal::Qps, 2, 3.0)
            .unwrap();
    }
}
