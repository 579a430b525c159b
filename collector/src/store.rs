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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use dashmap::DashMap;

use crate::signal::{Signal, SignalView, WorkloadKey};

/// Limits that keep the store's memory bounded whatever the inputs do.
#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    /// Seconds of history kept per window (the longest engine window plus a margin).
    pub horizon_secs: u32,
    /// Most (workload, signal) windows held; new ones beyond it are refused and counted.
    pub max_windows: usize,
    /// Most windows one tenant holds, so one tenant's flood cannot fill the store.
    pub max_windows_per_tenant: usize,
}

impl Default for StoreLimits {
    /// What the default memory budget gives (see [`crate::budget`]).
    fn default() -> Self {
        crate::budget::MemoryBudget::default().store(900)
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
    #[error(
        "tenant {tenant} holds its quota of {max} windows; refusing a new window for {workload} {signal}"
    )]
    TenantFull {
        tenant: Arc<str>,
        workload: WorkloadKey,
        signal: Signal,
        max: usize,
    },
}

/// Which workloads someone asked for (a policy names them, or KEDA asked for them):
/// their windows are never evicted, and may evict others' to find room.
pub type Wanted = Arc<dyn Fn(&WorkloadKey) -> bool + Send + Sync>;

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
pub struct Store {
    windows: DashMap<(WorkloadKey, Signal), Window>,
    /// Windows held per tenant, for its quota.
    per_tenant: DashMap<Arc<str>, usize>,
    limits: StoreLimits,
    wanted: OnceLock<Wanted>,
    /// Held while a window is created or removed, so counts and quotas agree.
    admit: Mutex<()>,
    evicted: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("windows", &self.windows.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            windows: DashMap::new(),
            per_tenant: DashMap::new(),
            limits,
            wanted: OnceLock::new(),
            admit: Mutex::new(()),
            evicted: AtomicU64::new(0),
        }
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Says which workloads are wanted (set once; until then every workload is).
    pub fn set_wanted(&self, wanted: Wanted) {
        let _ = self.wanted.set(wanted);
    }

    fn is_wanted(&self, workload: &WorkloadKey) -> bool {
        self.wanted.get().is_none_or(|wanted| wanted(workload))
    }

    /// Windows evicted so far (to make room, or idle and unwanted).
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
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
        loop {
            if let Some(mut window) = self.windows.get_mut(&(workload.clone(), signal)) {
                window.record(second, value, lower_bound);
                return Ok(());
            }
            self.ensure(workload, signal, second)?;
        }
    }

    /// Makes sure a window for `workload`'s `signal` exists, creating it (empty) if the
    /// limits allow: within the store's and the tenant's quota, or by evicting the
    /// stalest window nobody wants when `workload` is wanted.
    pub fn ensure(
        &self,
        workload: &WorkloadKey,
        signal: Signal,
        second: i64,
    ) -> Result<(), RecordError> {
        let key = (workload.clone(), signal);
        if self.windows.contains_key(&key) {
            return Ok(());
        }
        let _admit = self.admit.lock().unwrap_or_else(PoisonError::into_inner);
        if self.windows.contains_key(&key) {
            return Ok(());
        }
        let held = self.per_tenant.get(&workload.tenant).map_or(0, |n| *n);
        let tenant_full = held >= self.limits.max_windows_per_tenant;
        let full = self.windows.len() >= self.limits.max_windows;
        if tenant_full || full {
            let room = self.is_wanted(workload)
                && self.evict_one_unwanted(tenant_full.then_some(&workload.tenant));
            if !room {
                return Err(if full {
                    RecordError::Full {
                        workload: workload.clone(),
                        signal,
                        max: self.limits.max_windows,
                    }
                } else {
                    RecordError::TenantFull {
                        tenant: workload.tenant.clone(),
                        workload: workload.clone(),
                        signal,
                        max: self.limits.max_windows_per_tenant,
                    }
                });
            }
        }
        self.windows
            .insert(key, Window::new(self.limits.horizon_secs, second));
        *self.per_tenant.entry(workload.tenant.clone()).or_default() += 1;
        Ok(())
    }

    /// Removes the least recently written window of a workload nobody wants (of
    /// `tenant`, when given). Call with `admit` held.
    fn evict_one_unwanted(&self, tenant: Option<&Arc<str>>) -> bool {
        let victim = self
            .windows
            .iter()
            .filter(|e| tenant.is_none_or(|t| e.key().0.tenant == *t))
            .filter(|e| !self.is_wanted(&e.key().0))
            .min_by_key(|e| e.value().newest)
            .map(|e| e.key().clone());
        match victim {
            Some(key) => {
                self.remove_locked(&key);
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn remove_locked(&self, key: &(WorkloadKey, Signal)) {
        if self.windows.remove(key).is_some() {
            let emptied = match self.per_tenant.get_mut(&key.0.tenant) {
                Some(mut n) => {
                    *n = n.saturating_sub(1);
                    *n == 0
                }
                None => false,
            };
            if emptied {
                self.per_tenant.remove_if(&key.0.tenant, |_, n| *n == 0);
            }
        }
    }

    /// Evicts windows with nothing left to read (the newest value older than the
    /// horizon) and windows of unwanted workloads not written for `idle_secs`.
    /// Returns how many went.
    pub fn evict_idle(&self, now_secs: i64, idle_secs: i64) -> usize {
        let horizon = i64::from(self.limits.horizon_secs);
        let gone: Vec<(WorkloadKey, Signal)> = self
            .windows
            .iter()
            .filter(|e| {
                let silent = now_secs.saturating_sub(e.value().newest);
                silent >= horizon || (silent >= idle_secs && !self.is_wanted(&e.key().0))
            })
            .map(|e| e.key().clone())
            .collect();
        let _admit = self.admit.lock().unwrap_or_else(PoisonError::into_inner);
        for key in &gone {
            self.remove_locked(key);
        }
        self.evicted.fetch_add(gone.len() as u64, Ordering::Relaxed);
        gone.len()
    }

    /// Windows held by `tenant`.
    pub fn tenant_windows(&self, tenant: &str) -> usize {
        self.per_tenant.get(tenant).map_or(0, |n| *n)
    }

    /// A read-only view of one workload's windows, as the engine consumes them.
    pub fn view<'a>(&'a self, workload: &'a WorkloadKey) -> WorkloadView<'a> {
        WorkloadView {
            store: self,
            workload,
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
            max_windows_per_tenant: 4,
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

    fn quota_store() -> Store {
        Store::new(StoreLimits {
            horizon_secs: 10,
            max_windows: 6,
            max_windows_per_tenant: 3,
        })
    }

    #[test]
    fn one_tenant_fills_only_its_quota() {
        let store = quota_store();
        for app in 0..10 {
            let _ = store.record(
                &WorkloadKey::new("noisy", format!("a{app}")),
                Signal::Qps,
                1,
                1.0,
            );
        }
        assert_eq!(store.tenant_windows("noisy"), 3);
        assert!(matches!(
            store.record(&WorkloadKey::new("noisy", "a9"), Signal::Qps, 1, 1.0),
            Err(RecordError::TenantFull { max: 3, .. })
        ));
        for app in ["web", "api", "db"] {
            store
                .record(&WorkloadKey::new("acme", app), Signal::Qps, 1, 1.0)
                .expect("acme has its own quota");
        }
        assert!(matches!(
            store.record(&WorkloadKey::new("initech", "web"), Signal::Qps, 1, 1.0),
            Err(RecordError::Full { max: 6, .. })
        ));
    }

    #[test]
    fn a_wanted_workload_takes_the_place_of_the_stalest_unwanted_one() {
        let store = quota_store();
        store.set_wanted(Arc::new(|w: &WorkloadKey| &*w.tenant == "acme"));
        for (app, second) in [("a0", 5), ("a1", 3), ("a2", 4)] {
            store
                .record(&WorkloadKey::new("noisy", app), Signal::Qps, second, 1.0)
                .unwrap();
        }
        for (app, second) in [("b0", 5), ("b1", 5), ("b2", 5)] {
            store
                .record(&WorkloadKey::new("other", app), Signal::Qps, second, 1.0)
                .unwrap();
        }
        // Full: the unwanted may not push anyone out, the wanted may.
        assert!(
            store
                .record(&WorkloadKey::new("x", "y"), Signal::Qps, 6, 1.0)
                .is_err()
        );
        let web = WorkloadKey::new("acme", "web");
        store.record(&web, Signal::Qps, 6, 2.0).expect("room made");
        assert_eq!(store.window_count(), 6);
        assert_eq!(
            store
                .view(&WorkloadKey::new("noisy", "a1"))
                .newest(Signal::Qps),
            None
        );
        assert_eq!(store.evicted_total(), 1);
        // Wanted windows are never evicted: with only wanted ones left, refusal.
        for app in ["api", "db"] {
            store
                .record(&WorkloadKey::new("acme", app), Signal::Qps, 6, 1.0)
                .unwrap();
        }
        // acme is at its quota and may only displace its own unwanted windows: none.
        assert!(
            store
                .record(&WorkloadKey::new("acme", "more"), Signal::Qps, 6, 1.0)
                .is_err()
        );
        assert_eq!(store.tenant_windows("acme"), 3);
        assert_eq!(store.view(&web).max(Signal::Qps, 6, 1), Some(2.0));
    }

    #[test]
    fn idle_unwanted_and_empty_windows_are_evicted() {
        let store = quota_store();
        store.set_wanted(Arc::new(|w: &WorkloadKey| &*w.tenant == "acme"));
        let web = WorkloadKey::new("acme", "web");
        let gone = WorkloadKey::new("acme", "gone");
        let stray = WorkloadKey::new("stray", "app");
        store.record(&web, Signal::Qps, 100, 1.0).unwrap();
        store.record(&gone, Signal::Qps, 80, 1.0).unwrap();
        store.record(&stray, Signal::Qps, 95, 1.0).unwrap();
        // At 100 with 5 s idle: the stray one is idle and unwanted; `gone` holds
        // nothing any more (older than the 10 s horizon) though wanted.
        assert_eq!(store.evict_idle(100, 5), 2);
        assert_eq!(store.window_count(), 1);
        assert_eq!(store.tenant_windows("stray"), 0);
        assert_eq!(store.tenant_windows("acme"), 1);
        assert_eq!(store.view(&web).max(Signal::Qps, 100, 1), Some(1.0));
    }
}
