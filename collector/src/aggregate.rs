//! Sums what every source contributes to a workload's signal.
//!
//! Each source (a scrape target, a remote-write sender) reports the part of a
//! workload's signal it sees: one gateway replica's share of the QPS, one node's share
//! of the CPU. The workload's value is the sum of the fresh contributions. A source
//! that fails keeps its last contribution until it is older than the staleness limit:
//! one gateway replica timing out must not read as a third of the traffic vanishing,
//! which would scale the workload down on a monitoring fault.
//!
//! A source may also say its values are incomplete (the collector shards' merge while a
//! shard is lost): the workload's total is then a lower bound, and says so.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::signal::{Signal, WorkloadKey};

#[derive(Clone, Copy, Debug)]
struct Contribution {
    value: f64,
    at_ms: i64,
    lower_bound: bool,
}

/// Sources one workload's signal sums at most: gateways, agents and shards number in
/// the tens; a writer inventing source names must not grow the table without bound.
pub const MAX_SOURCES_PER_WORKLOAD: usize = 1024;

/// Per (workload, signal): each source's latest contribution.
#[derive(Debug, Default)]
pub struct Contributions {
    by_workload: DashMap<(WorkloadKey, Signal), HashMap<Arc<str>, Contribution>>,
    /// What each source contributes to; an entry goes when its source has nothing left.
    by_source: DashMap<(Arc<str>, Signal), Vec<WorkloadKey>>,
    /// Values refused because their workload already sums the most sources.
    refused_sources: AtomicU64,
}

/// A workload whose summed value changed, to be recorded and re-decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Total {
    pub workload: WorkloadKey,
    pub signal: Signal,
    pub value: f64,
    /// Some contribution is incomplete, so the true value may be higher.
    pub lower_bound: bool,
}

impl Contributions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces everything `source` contributes to `signal` with `values`, taken at
    /// `at_ms`. Workloads the source no longer mentions lose its contribution. Returns
    /// the new totals of every workload touched.
    pub fn replace(
        &self,
        source: &Arc<str>,
        signal: Signal,
        values: Vec<(WorkloadKey, f64)>,
        at_ms: i64,
    ) -> Vec<Total> {
        self.replace_with(source, signal, values, at_ms, false)
    }

    /// [`Self::replace`], with `lower_bound` saying the source knows its values are
    /// incomplete.
    pub fn replace_with(
        &self,
        source: &Arc<str>,
        signal: Signal,
        values: Vec<(WorkloadKey, f64)>,
        at_ms: i64,
        lower_bound: bool,
    ) -> Vec<Total> {
        let mut touched: Vec<WorkloadKey> = Vec::with_capacity(values.len());
        for (workload, value) in values {
            let mut sources = self
                .by_workload
                .entry((workload.clone(), signal))
                .or_default();
            if sources.len() >= MAX_SOURCES_PER_WORKLOAD && !sources.contains_key(source) {
                self.refused_sources.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            sources.insert(
                source.clone(),
                Contribution {
                    value,
                    at_ms,
                    lower_bound,
                },
            );
            drop(sources);
            touched.push(workload);
        }
        let key = (source.clone(), signal);
        let previous = if touched.is_empty() {
            self.by_source.remove(&key).map(|(_, v)| v)
        } else {
            self.by_source.insert(key, touched.clone())
        }
        .unwrap_or_default();
        let mut totals: Vec<Total> = Vec::with_capacity(touched.len());
        // A set, not `touched.contains`: a source reporting 10,000 workloads would make
        // that check 10⁸ comparisons per replacement.
        let still_reported: HashSet<&WorkloadKey> = touched.iter().collect();
        for workload in previous {
            if !still_reported.contains(&workload) {
                self.remove_contribution(&workload, signal, source);
                totals.extend(self.total(&workload, signal));
            }
        }
        totals.extend(
            touched
                .iter()
                .filter_map(|workload| self.total(workload, signal)),
        );
        totals
    }

    /// Drops contributions older than `max_age_ms`; returns the totals that changed.
    /// A source whose every contribution expired is forgotten.
    pub fn expire(&self, now_ms: i64, max_age_ms: i64) -> Vec<Total> {
        let mut changed = Vec::new();
        let mut emptied = Vec::new();
        let mut expired: HashMap<(Arc<str>, Signal), HashSet<WorkloadKey>> = HashMap::new();
        for mut entry in self.by_workload.iter_mut() {
            let before = entry.value().len();
            let (workload, signal) = entry.key().clone();
            // A contribution dated ahead of now was stamped before the clock went back:
            // it ages from now, instead of staying fresh until the clock catches up.
            entry.value_mut().retain(|source, c| {
                c.at_ms = c.at_ms.min(now_ms);
                let fresh = now_ms.saturating_sub(c.at_ms) <= max_age_ms;
                if !fresh {
                    expired
                        .entry((source.clone(), signal))
                        .or_default()
                        .insert(workload.clone());
                }
                fresh
            });
            if entry.value().len() != before {
                if entry.value().is_empty() {
                    emptied.push(entry.key().clone());
                } else {
                    changed.push(entry.key().clone());
                }
            }
        }
        for key in emptied {
            self.by_workload
                .remove_if(&key, |_, sources| sources.is_empty());
        }
        for (key, gone) in expired {
            if let Some(mut workloads) = self.by_source.get_mut(&key) {
                workloads.retain(|w| !gone.contains(w));
            }
            self.by_source
                .remove_if(&key, |_, workloads| workloads.is_empty());
        }
        changed
            .into_iter()
            .filter_map(|(workload, signal)| self.total(&workload, signal))
            .collect()
    }

    /// Forgets a source entirely (removed from configuration), returning new totals.
    pub fn remove_source(&self, source: &Arc<str>) -> Vec<Total> {
        let mut totals = Vec::new();
        for signal in Signal::ALL {
            if let Some((_, workloads)) = self.by_source.remove(&(source.clone(), signal)) {
                for workload in workloads {
                    self.remove_contribution(&workload, signal, source);
                    totals.extend(self.total(&workload, signal));
                }
            }
        }
        totals
    }

    /// (source, signal) pairs with something contributed: shrinks as sources go.
    pub fn source_count(&self) -> usize {
        self.by_source.len()
    }

    /// Values refused because their workload sums [`MAX_SOURCES_PER_WORKLOAD`] already.
    pub fn refused_sources(&self) -> u64 {
        self.refused_sources.load(Ordering::Relaxed)
    }

    /// The current sum for a workload's signal and how many sources feed it.
    pub fn total(&self, workload: &WorkloadKey, signal: Signal) -> Option<Total> {
        let sources = self.by_workload.get(&(workload.clone(), signal))?;
        Some(sum(workload, signal, &sources))
    }

    /// Every workload's current totals (what a collector shard reports to the scalers).
    pub fn totals(&self) -> Vec<Total> {
        self.by_workload
            .iter()
            .map(|entry| sum(&entry.key().0, entry.key().1, entry.value()))
            .collect()
    }

    fn remove_contribution(&self, workload: &WorkloadKey, signal: Signal, source: &Arc<str>) {
        let key = (workload.clone(), signal);
        if let Some(mut sources) = self.by_workload.get_mut(&key) {
            sources.remove(source);
        }
        self.by_workload
            .remove_if(&key, |_, sources| sources.is_empty());
    }
}

/// A workload's total over its sources' contributions.
fn sum(workload: &WorkloadKey, signal: Signal, sources: &HashMap<Arc<str>, Contribution>) -> Total {
    Total {
        workload: workload.clone(),
        signal,
        value: sources.values().map(|c| c.value).sum(),
        lower_bound: sources.values().any(|c| c.lower_bound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WorkloadKey {
        WorkloadKey::new("acme", "web")
    }

    #[test]
    fn totals_sum_sources_and_follow_replacements() {
        let contributions = Contributions::new();
        let a: Arc<str> = "gw-a".into();
        let b: Arc<str> = "gw-b".into();
        contributions.replace(&a, Signal::Qps, vec![(web(), 10.0)], 0);
        let totals = contributions.replace(&b, Signal::Qps, vec![(web(), 5.0)], 0);
        assert_eq!(totals[0].value, 15.0);
        let totals = contributions.replace(&a, Signal::Qps, vec![], 1_000);
        assert_eq!(
            totals,
            vec![Total {
                workload: web(),
                signal: Signal::Qps,
                value: 5.0,
                lower_bound: false,
            }]
        );
    }

    #[test]
    fn one_incomplete_source_makes_the_total_a_lower_bound() {
        let contributions = Contributions::new();
        let scrape: Arc<str> = "gw-a".into();
        let shards: Arc<str> = "collectors".into();
        contributions.replace(&scrape, Signal::Qps, vec![(web(), 10.0)], 0);
        let totals = contributions.replace_with(&shards, Signal::Qps, vec![(web(), 5.0)], 0, true);
        assert_eq!((totals[0].value, totals[0].lower_bound), (15.0, true));
        assert_eq!(contributions.totals(), totals);
        let totals = contributions.replace_with(&shards, Signal::Qps, vec![(web(), 7.0)], 1, false);
        assert_eq!((totals[0].value, totals[0].lower_bound), (17.0, false));
    }

    #[test]
    fn a_silent_source_is_kept_until_stale() {
        let contributions = Contributions::new();
        let a: Arc<str> = "gw-a".into();
        let b: Arc<str> = "gw-b".into();
        contributions.replace(&a, Signal::Qps, vec![(web(), 10.0)], 0);
        contributions.replace(&b, Signal::Qps, vec![(web(), 5.0)], 9_000);
        assert!(contributions.expire(9_000, 10_000).is_empty());
        let changed = contributions.expire(12_000, 10_000);
        assert_eq!(changed[0].value, 5.0);
        assert!(contributions.expire(30_000, 10_000).is_empty());
        assert!(contributions.total(&web(), Signal::Qps).is_none());
    }

    #[test]
    fn sources_that_go_are_forgotten_and_their_number_is_capped() {
        let contributions = Contributions::new();
        // Agents under ever new names, each reporting once.
        for agent in 0..5_000 {
            let source: Arc<str> = format!("agent-{agent}").into();
            contributions.replace(&source, Signal::Qps, vec![(web(), 1.0)], agent);
        }
        assert_eq!(contributions.source_count(), MAX_SOURCES_PER_WORKLOAD);
        assert_eq!(
            contributions.refused_sources(),
            (5_000 - MAX_SOURCES_PER_WORKLOAD) as u64
        );
        let total = contributions.total(&web(), Signal::Qps).expect("a total");
        assert_eq!(total.value, MAX_SOURCES_PER_WORKLOAD as f64);
        // They all go stale: every table is empty again.
        contributions.expire(100_000, 10_000);
        assert_eq!(contributions.source_count(), 0);
        assert!(contributions.total(&web(), Signal::Qps).is_none());
        // A source that says "nothing" holds no entry either.
        let a: Arc<str> = "gw-a".into();
        contributions.replace(&a, Signal::Qps, vec![(web(), 1.0)], 0);
        contributions.replace(&a, Signal::Qps, vec![], 1);
        assert_eq!(contributions.source_count(), 0);
    }

    #[test]
    fn removing_a_source_drops_its_share() {
        let contributions = Contributions::new();
        let a: Arc<str> = "gw-a".into();
        contributions.replace(&a, Signal::Qps, vec![(web(), 10.0)], 0);
        contributions.replace(&a, Signal::CpuCores, vec![(web(), 2.0)], 0);
        let totals = contributions.remove_source(&a);
        assert!(totals.is_empty());
        assert!(contributions.total(&web(), Signal::CpuCores).is_none());
    }
}
