//! Per-series state of remote-written samples, rolled up into per-workload values.
//!
//! Remote-write sends each series' samples with their own timestamps, split across
//! parallel shards and batched by time, so there is no "scrape" to rate over. Every
//! series keeps its last point and its current contribution: a counter's rate between
//! its last two samples (with `CounterTracker`'s semantics: a drop is a reset and counts
//! the new value; a first sample or one after a gap has no rate yet), or a gauge's
//! value. A workload's value is the running sum of its series' contributions, updated
//! as samples arrive, so a request costs work per sample, not per series held.
//!
//! The table is split into shards by series hash, each behind its own lock, so
//! Prometheus' parallel senders rarely contend. Publishing copies each changed group's
//! value into a per-workload array of shard values and re-sums it, so a workload is one
//! contribution (source `remote_write/{workload}`) however many shards its series span.
//! Changed workloads are only marked; the receiver publishes them at most every few
//! tens of milliseconds, since the store keeps one value per second anyway and a
//! request touching 1,000 workloads would otherwise cost 1,000 store writes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use super::WriteMapping;
use super::ha::{HaTracker, Verdict};
use super::wire::{Decoded, SeriesRef};
use crate::resources::SeriesKind;
use crate::signal::{Signal, WorkloadKey};
use crate::timestamps::{OutOfBounds, TimeBounds};
use crate::write_scope::{CachedCheck, WriteDenied, WriteScope};

/// Prometheus marks a series that ended with this NaN bit pattern (`value.StaleNaN`).
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

#[derive(Debug)]
struct SeriesState {
    last_ms: i64,
    last_value: f64,
    /// What the series adds to its workload now; NaN while it has no rate yet.
    current: f64,
    group: u32,
    kind: SeriesKind,
}

#[derive(Debug)]
struct Group {
    signal: Signal,
    workload: WorkloadKey,
    sum: f64,
    /// Series with a finite `current`: a workload whose series have no rate yet says
    /// nothing, rather than "zero requests".
    contributing: u32,
    series: u32,
    newest_ms: i64,
    /// Listed in its shard's `dirty` since the last [`SeriesTable::take_updates`].
    dirty: bool,
}

#[derive(Debug, Default)]
struct Shard {
    series: HashMap<u64, SeriesState>,
    groups: Vec<Group>,
    group_index: HashMap<(Signal, WorkloadKey), u32>,
    /// Slots of `groups` whose workload went (no series left, published): reused, so the
    /// table is as large as the most workloads held at once, not every workload seen.
    free: Vec<u32>,
    /// Groups changed since the last [`SeriesTable::take_updates`].
    dirty: Vec<u32>,
}

impl Shard {
    fn mark(&mut self, group: u32) {
        let entry = &mut self.groups[group as usize];
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(group);
        }
    }
}

/// A workload value to hand to `Ingest::apply` (`None`: the source has nothing to say
/// any more, so its contribution is withdrawn).
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub source: Arc<str>,
    pub signal: Signal,
    pub workload: WorkloadKey,
    pub value: Option<f64>,
    pub at_ms: i64,
}

/// What one request did to the table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub samples: u64,
    /// Samples of mapped series that updated state.
    pub used: u64,
    /// Samples of series no mapping asks for.
    pub ignored: u64,
    /// Samples of new series refused because the table is at its series limit.
    pub dropped: u64,
    pub dropped_series: u64,
    /// Samples of new series refused because their tenant holds its quota of series.
    pub dropped_tenant_quota: u64,
    /// Samples not newer than the series' last one.
    pub out_of_order: u64,
    /// Samples whose timestamp is further in the past than the bounds allow.
    pub too_old: u64,
    /// Samples whose timestamp is further ahead than the bounds allow.
    pub too_new: u64,
    /// Samples of mapped series whose value is not a finite, non-negative number
    /// (stale markers excepted): refused, the series keeps its state.
    pub invalid_value: u64,
    /// Samples of an HA replica that is not its cluster's elected one.
    pub ha_not_elected: u64,
    /// Samples of HA clusters beyond the tracked limit.
    pub ha_too_many_clusters: u64,
    /// Samples for a tenant the writer may not write.
    pub tenant_not_allowed: u64,
    /// Samples for a workload no policy names.
    pub unknown_workload: u64,
    /// Stale markers ending a series, and whatever followed them in the request.
    pub ended: u64,
}

impl Applied {
    /// Samples with an outcome; equals `samples`, each counted exactly once.
    pub fn accounted(&self) -> u64 {
        self.used
            + self.ignored
            + self.dropped
            + self.dropped_tenant_quota
            + self.out_of_order
            + self.too_old
            + self.too_new
            + self.invalid_value
            + self.ha_not_elected
            + self.ha_too_many_clusters
            + self.tenant_not_allowed
            + self.unknown_workload
            + self.ended
    }

    fn refuse_time(&mut self, why: OutOfBounds) {
        match why {
            OutOfBounds::TooOld => self.too_old += 1,
            OutOfBounds::TooNew => self.too_new += 1,
        }
    }

    fn refuse_write(&mut self, why: WriteDenied, samples: u64) {
        match why {
            WriteDenied::TenantNotAllowed => self.tenant_not_allowed += samples,
            WriteDenied::UnknownWorkload => self.unknown_workload += samples,
        }
    }
}

/// What a request's samples are checked against before they change the table.
#[derive(Clone, Copy, Debug)]
pub struct Admission<'a> {
    /// When the request was received (unix milliseconds).
    pub now_ms: i64,
    pub bounds: TimeBounds,
    /// HA-pair deduplication; `None` accepts every replica.
    pub ha: Option<&'a HaTracker>,
    /// The writer: its name is part of every series' identity, so two writers sending
    /// the same labels keep two series, and its gate refuses workloads it may not
    /// write. `None`: one anonymous writer that may write anything.
    pub scope: Option<&'a WriteScope>,
}

impl Admission<'_> {
    /// Admits every sample whatever its timestamp (benchmarks with synthetic times).
    pub fn everything() -> Self {
        Self {
            now_ms: 0,
            bounds: TimeBounds::UNBOUNDED,
            ha: None,
            scope: None,
        }
    }
}

/// Limits on the table.
#[derive(Clone, Copy, Debug)]
pub struct SeriesLimits {
    /// Series tracked at most; samples of further new series are dropped and counted.
    pub max_series: usize,
    /// Series one tenant holds at most, so one tenant's flood leaves room for others.
    pub max_series_per_tenant: usize,
    /// A counter whose samples are further apart than this starts over, and a series
    /// silent for this long is forgotten.
    pub max_gap_ms: i64,
}

#[derive(Debug)]
pub struct SeriesTable {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    limits: SeriesLimits,
    /// Each workload's per-shard values as of the last publish: a publish reads only
    /// the groups that changed and re-sums one small array per workload.
    published: Mutex<HashMap<(Signal, WorkloadKey), PerShard>>,
    /// Series held per tenant, for its quota. Locked after a shard, never before.
    tenants: Mutex<HashMap<std::sync::Arc<str>, usize>>,
}

#[derive(Debug)]
struct PerShard {
    sum: Box<[f64]>,
    contributing: Box<[u32]>,
    newest_ms: Box<[i64]>,
    /// Series each shard holds for the workload: the entry goes when all are gone.
    series: Box<[u32]>,
}

impl SeriesTable {
    pub fn new(shards: usize, limits: SeriesLimits) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            published: Mutex::default(),
            tenants: Mutex::default(),
            hasher: RandomState::new(),
            limits,
        }
    }

    /// Applies every sample of `request` that `admission` lets through; the workloads
    /// it changed are collected for the next [`Self::take_updates`].
    pub fn apply(
        &self,
        request: &Decoded<'_>,
        mapping: &WriteMapping,
        admission: &Admission<'_>,
    ) -> Applied {
        let mut applied = Applied::default();
        let now_ms = admission.now_ms;
        // The verdict of the last (cluster, replica) seen: a request comes from one
        // Prometheus, so the tracker is consulted about once per request.
        let mut last_verdict: Option<(&str, &str, Verdict)> = None;
        let mut gate = admission.scope.map(CachedCheck::new);
        let writer = admission.scope.map(|scope| &*scope.writer);
        // Shard limits that add up to exactly `max_series` (rounding each up would let
        // the table hold up to one series per shard too many).
        let base = self.limits.max_series / self.shards.len();
        let extra = self.limits.max_series % self.shards.len();
        for series in request.series() {
            let count = series.samples.len() as u64;
            applied.samples += count;
            let mut replica_label = None;
            if let Some(ha) = admission.ha
                && let Some((cluster, label, replica)) = ha.identify(|name| series.label(name))
            {
                let verdict = match last_verdict {
                    Some((c, r, verdict)) if c == cluster && r == replica => verdict,
                    _ => {
                        let verdict = ha.check(cluster, replica, now_ms);
                        last_verdict = Some((cluster, replica, verdict));
                        verdict
                    }
                };
                match verdict {
                    Verdict::Accept => replica_label = Some(label),
                    Verdict::NotElected => {
                        applied.ha_not_elected += count;
                        continue;
                    }
                    Verdict::TooManyClusters => {
                        applied.ha_too_many_clusters += count;
                        continue;
                    }
                }
            }
            let Some(name) = series.label("__name__") else {
                applied.ignored += count;
                continue;
            };
            let Some(mapped) = mapping.classify(name, |n| series.label(n).map(Cow::Borrowed))
            else {
                applied.ignored += count;
                continue;
            };
            // Before the series takes any place in the table.
            if let Some(gate) = &mut gate
                && let Err(why) = gate.check(&mapped.tenant, &mapped.app)
            {
                applied.refuse_write(why, count);
                continue;
            }
            let id = self.series_id(writer, &series, replica_label);
            let shard_ix = (id >> 40) as usize % self.shards.len();
            let mut guard = self.shards[shard_ix]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let shard = &mut *guard;
            let full = shard.series.len() >= base + usize::from(shard_ix < extra);
            let state = match shard.series.entry(id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    // A series none of whose samples can be used takes no place.
                    let admissible = series.samples.iter().any(|&(value, timestamp)| {
                        value.to_bits() == STALE_NAN
                            || admission.bounds.check(timestamp, now_ms).is_ok()
                    });
                    if !admissible {
                        for &(_, timestamp) in series.samples {
                            if let Err(why) = admission.bounds.check(timestamp, now_ms) {
                                applied.refuse_time(why);
                            }
                        }
                        continue;
                    }
                    if full {
                        applied.dropped += count;
                        applied.dropped_series += 1;
                        continue;
                    }
                    {
                        let mut tenants =
                            self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
                        let held = tenants.get(&*mapped.tenant).copied().unwrap_or(0);
                        if held >= self.limits.max_series_per_tenant {
                            applied.dropped_tenant_quota += count;
                            continue;
                        }
                        *tenants.entry(mapped.tenant.as_ref().into()).or_default() += 1;
                    }
                    let workload = WorkloadKey::new(&*mapped.tenant, &*mapped.app);
                    let group = group_for(
                        &mut shard.groups,
                        &mut shard.group_index,
                        &mut shard.free,
                        mapped.signal,
                        workload,
                    );
                    shard.groups[group as usize].series += 1;
                    entry.insert(SeriesState {
                        last_ms: i64::MIN,
                        last_value: f64::NAN,
                        current: f64::NAN,
                        group,
                        kind: mapped.kind,
                    })
                }
            };
            let group_ix = state.group;
            let group = &mut shard.groups[group_ix as usize];
            let mut ended = false;
            for (index, &(value, timestamp)) in series.samples.iter().enumerate() {
                if value.to_bits() == STALE_NAN {
                    ended = true;
                    applied.ended += (series.samples.len() - index) as u64;
                    break;
                }
                if let Err(why) = admission.bounds.check(timestamp, now_ms) {
                    applied.refuse_time(why);
                    continue;
                }
                if timestamp <= state.last_ms {
                    applied.out_of_order += 1;
                    continue;
                }
                // Neither a counter nor a resource gauge can be negative; a NaN is a
                // glitch, not a reset or an end (that is the stale marker above).
                if !value.is_finite() || value < 0.0 {
                    applied.invalid_value += 1;
                    continue;
                }
                let next = match state.kind {
                    SeriesKind::Gauge => value,
                    SeriesKind::Counter => {
                        let elapsed_ms = timestamp.saturating_sub(state.last_ms);
                        let fresh =
                            state.last_ms != i64::MIN && elapsed_ms <= self.limits.max_gap_ms;
                        if fresh {
                            let increase = if value >= state.last_value {
                                value - state.last_value
                            } else {
                                value
                            };
                            increase * 1000.0 / elapsed_ms as f64
                        } else {
                            f64::NAN
                        }
                    }
                };
                set_current(group, state, next);
                state.last_ms = timestamp;
                state.last_value = value;
                group.newest_ms = group.newest_ms.max(timestamp);
                applied.used += 1;
            }
            if ended {
                set_current(group, state, f64::NAN);
                group.series -= 1;
                self.release_tenant(&group.workload.tenant, 1);
                shard.series.remove(&id);
            }
            shard.mark(group_ix);
        }
        applied
    }

    /// Forgets series silent for longer than the gap limit; the workloads that changed
    /// are collected for the next [`Self::take_updates`].
    pub fn sweep(&self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.limits.max_gap_ms);
        for shard in self.shards.iter() {
            let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let Shard { series, groups, .. } = &mut *guard;
            let mut touched = Vec::new();
            series.retain(|_, state| {
                if state.last_ms >= horizon {
                    return true;
                }
                let group = &mut groups[state.group as usize];
                set_current(group, state, f64::NAN);
                group.series -= 1;
                self.release_tenant(&group.workload.tenant, 1);
                touched.push(state.group);
                false
            });
            for group in touched {
                guard.mark(group);
            }
        }
    }

    fn release_tenant(&self, tenant: &str, series: usize) {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = tenants.get_mut(tenant) {
            *held = held.saturating_sub(series);
            if *held == 0 {
                tenants.remove(tenant);
            }
        }
    }

    /// Series held by `tenant`.
    pub fn tenant_series(&self, tenant: &str) -> usize {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    /// Workload groups held (live slots) across the shards, and published entries.
    pub fn group_counts(&self) -> (usize, usize) {
        let live = self
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(PoisonError::into_inner);
                s.groups.len() - s.free.len()
            })
            .sum();
        let published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        (live, published)
    }

    pub fn series_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .series
                    .len()
            })
            .sum()
    }

    /// Heap bytes held, from the tables' capacities (hashbrown: one control byte per
    /// bucket); the memory bench checks this against a counting allocator.
    pub fn approximate_bytes(&self) -> usize {
        let published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .capacity()
            * (std::mem::size_of::<((Signal, WorkloadKey), PerShard)>()
                + 1
                + self.shards.len() * 20);
        published
            + self
                .shards
                .iter()
                .map(|shard| {
                    let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                    let series =
                        shard.series.capacity() * (std::mem::size_of::<(u64, SeriesState)>() + 1);
                    let groups = shard.groups.capacity() * std::mem::size_of::<Group>()
                        + shard
                            .groups
                            .iter()
                            .map(|g| g.workload.tenant.len() + g.workload.app.len() + 32)
                            .sum::<usize>()
                        + shard.group_index.capacity()
                            * (std::mem::size_of::<((Signal, WorkloadKey), u32)>() + 1);
                    series + groups
                })
                .sum::<usize>()
    }

    /// A series' identity: its writer and every label but the HA replica label
    /// (`skip`), so the replica that takes over continues the same series and another
    /// writer cannot.
    fn series_id(
        &self,
        writer: Option<&str>,
        series: &SeriesRef<'_, '_>,
        skip: Option<&str>,
    ) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        if let Some(writer) = writer {
            hasher.write(writer.as_bytes());
            hasher.write_u8(0xfd);
        }
        for (name, value) in series.labels {
            if Some(*name) == skip {
                continue;
            }
            hasher.write(name.as_bytes());
            hasher.write_u8(0xff);
            hasher.write(value.as_bytes());
            hasher.write_u8(0xfe);
        }
        hasher.finish()
    }

    /// The current value of every workload changed since the last call, summed over
    /// the shards: one store write per workload, however many shards its series span.
    pub fn take_updates(&self, now_ms: i64) -> Vec<Update> {
        let shards = self.shards.len();
        // Held for the whole publish, so two publishes cannot interleave their reads.
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut changed: Vec<(Signal, WorkloadKey)> = Vec::new();
        for (shard_ix, shard) in self.shards.iter().enumerate() {
            let mut guard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let shard = &mut *guard;
            let dirty = std::mem::take(&mut shard.dirty);
            for index in dirty {
                let group = &mut shard.groups[index as usize];
                group.dirty = false;
                let key = (group.signal, group.workload.clone());
                let entry = published.entry(key.clone()).or_insert_with(|| PerShard {
                    sum: vec![0.0; shards].into_boxed_slice(),
                    contributing: vec![0; shards].into_boxed_slice(),
                    newest_ms: vec![i64::MIN; shards].into_boxed_slice(),
                    series: vec![0; shards].into_boxed_slice(),
                });
                entry.sum[shard_ix] = group.sum;
                entry.contributing[shard_ix] = group.contributing;
                entry.newest_ms[shard_ix] = group.newest_ms;
                entry.series[shard_ix] = group.series;
                if group.series == 0 {
                    // Published as gone below; the slot serves the next new workload.
                    shard.group_index.remove(&key);
                    group.workload = WorkloadKey::new("", "");
                    shard.free.push(index);
                }
                changed.push(key);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        let mut updates = Vec::with_capacity(changed.len());
        for key in changed {
            let Some(entry) = published.get(&key) else {
                continue;
            };
            let contributing: u32 = entry.contributing.iter().sum();
            let sum: f64 = entry.sum.iter().sum();
            let newest_ms = entry.newest_ms.iter().copied().max().unwrap_or(now_ms);
            if entry.series.iter().all(|n| *n == 0) {
                published.remove(&key);
            }
            let (signal, workload) = key;
            updates.push(Update {
                source: format!("remote_write/{workload}").into(),
                signal,
                value: (contributing > 0).then_some(sum),
                at_ms: newest_ms.min(now_ms),
                workload,
            });
        }
        updates
    }
}

fn group_for(
    groups: &mut Vec<Group>,
    group_index: &mut HashMap<(Signal, WorkloadKey), u32>,
    free: &mut Vec<u32>,
    signal: Signal,
    workload: WorkloadKey,
) -> u32 {
    *group_index
        .entry((signal, workload.clone()))
        .or_insert_with(|| {
            let group = Group {
                signal,
                workload,
                sum: 0.0,
                contributing: 0,
                series: 0,
                newest_ms: i64::MIN,
                dirty: false,
            };
            match free.pop() {
                Some(slot) => {
                    groups[slot as usize] = group;
                    slot
                }
                None => {
                    groups.push(group);
                    (groups.len() - 1) as u32
                }
            }
        })
}

/// Moves a series' contribution to `next` (NaN: none), keeping the group's sum exact
/// when its last contributor leaves.
fn set_current(group: &mut Group, state: &mut SeriesState, next: f64) {
    let next = if next.is_finite() { next } else { f64::NAN };
    match (state.current.is_nan(), next.is_nan()) {
        (true, true) => {}
        (true, false) => {
            group.contributing += 1;
            group.sum += next;
        }
        (false, true) => {
            group.contributing -= 1;
            group.sum -= state.current;
        }
        (false, false) => group.sum += next - state.current,
    }
    if group.contributing == 0 {
        group.sum = 0.0;
    }
    state.current = next;
}
