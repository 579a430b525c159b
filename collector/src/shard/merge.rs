//! Summing the shards' answers. Pure: answers and times in, sums out.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::signal::{Signal, WorkloadKey};

/// A shard's latest warm answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    /// When the scaler received it, unix milliseconds.
    pub at_ms: i64,
    pub totals: Vec<(WorkloadKey, Signal, f64)>,
}

/// What the merge needs to know about one shard.
#[derive(Clone, Debug, Default)]
pub struct ShardAnswers {
    /// The newest warm answer, if the shard ever gave one.
    pub latest: Option<Answer>,
}

/// The merged sums for one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    /// Sums every shard that could contribute to them is counted in.
    pub sums: HashMap<Signal, Vec<(WorkloadKey, f64)>>,
    /// Sums a lost shard may be missing from: lower bounds.
    pub lower_bounds: HashMap<Signal, Vec<(WorkloadKey, f64)>>,
    /// Shards without a warm answer within `lost_after`, by index.
    pub lost: Vec<usize>,
}

impl Merged {
    /// Every shard is counted.
    pub fn complete(&self) -> bool {
        self.lost.is_empty()
    }
}

/// Sums the shards' answers at `now_ms`.
///
/// A shard whose latest answer is at most `lost_after_ms` old counts with that answer,
/// as a scrape target's last value stands in for a missed scrape. A shard with no answer
/// that recent is lost and adds nothing. The workloads it last reported keep appearing,
/// with what the other shards say (possibly 0), as lower bounds, so their share reads as
/// unknown rather than gone; workloads it never reported are unaffected. A lost shard
/// that never answered could be missing from any workload, so then every sum is a lower
/// bound.
pub fn merge(shards: &[ShardAnswers], now_ms: i64, lost_after_ms: i64) -> Merged {
    let mut sums: HashMap<(WorkloadKey, Signal), f64> = HashMap::new();
    let mut uncertain: HashSet<(WorkloadKey, Signal)> = HashSet::new();
    let mut coverage_unknown = false;
    let mut lost = Vec::new();
    for (index, shard) in shards.iter().enumerate() {
        match &shard.latest {
            Some(answer) if now_ms.saturating_sub(answer.at_ms) <= lost_after_ms => {
                for (workload, signal, value) in &answer.totals {
                    *sums.entry((workload.clone(), *signal)).or_insert(0.0) += value;
                }
            }
            Some(stale) => {
                lost.push(index);
                for (workload, signal, _) in &stale.totals {
                    let key = (workload.clone(), *signal);
                    sums.entry(key.clone()).or_insert(0.0);
                    uncertain.insert(key);
                }
            }
            None => {
                lost.push(index);
                coverage_unknown = true;
            }
        }
    }
    let mut merged = Merged {
        lost,
        ..Merged::default()
    };
    // Sorted so the result (and every test of it) is deterministic.
    let ordered: BTreeSet<(WorkloadKey, Signal)> = sums.keys().cloned().collect();
    for key in ordered {
        let value = sums[&key];
        let side = if coverage_unknown || uncertain.contains(&key) {
            &mut merged.lower_bounds
        } else {
            &mut merged.sums
        };
        side.entry(key.1).or_default().push((key.0, value));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WorkloadKey {
        WorkloadKey::new("acme", "web")
    }

    fn api() -> WorkloadKey {
        WorkloadKey::new("acme", "api")
    }

    fn answered(at_ms: i64, totals: Vec<(WorkloadKey, Signal, f64)>) -> ShardAnswers {
        ShardAnswers {
            latest: Some(Answer { at_ms, totals }),
        }
    }

    #[test]
    fn fresh_shards_are_summed_per_workload_and_signal() {
        let shards = [
            answered(
                1_000,
                vec![(web(), Signal::Qps, 30.0), (web(), Signal::CpuCores, 1.5)],
            ),
            answered(
                1_500,
                vec![(web(), Signal::Qps, 12.0), (api(), Signal::Qps, 4.0)],
            ),
        ];
        let merged = merge(&shards, 2_000, 3_000);
        assert!(merged.complete());
        assert!(merged.lower_bounds.is_empty());
        assert_eq!(merged.sums[&Signal::Qps], vec![(api(), 4.0), (web(), 42.0)]);
        assert_eq!(merged.sums[&Signal::CpuCores], vec![(web(), 1.5)]);
    }

    #[test]
    fn a_late_answer_stands_in_until_the_shard_is_lost() {
        let shards = [
            answered(10_000, vec![(web(), Signal::Qps, 30.0)]),
            answered(7_000, vec![(web(), Signal::Qps, 12.0)]),
        ];
        let merged = merge(&shards, 10_000, 3_000);
        assert_eq!(merged.sums[&Signal::Qps], vec![(web(), 42.0)]);
        assert!(merged.complete());

        let merged = merge(&shards, 10_001, 3_000);
        assert!(merged.sums.is_empty());
        assert_eq!(merged.lower_bounds[&Signal::Qps], vec![(web(), 30.0)]);
        assert_eq!(merged.lost, vec![1]);
    }

    #[test]
    fn only_what_a_lost_shard_reported_becomes_a_lower_bound() {
        let shards = [
            answered(
                10_000,
                vec![(web(), Signal::Qps, 30.0), (api(), Signal::CpuCores, 2.0)],
            ),
            answered(
                1_000,
                vec![(api(), Signal::Qps, 8.0), (web(), Signal::Qps, 12.0)],
            ),
        ];
        let merged = merge(&shards, 10_000, 3_000);
        // api's QPS came only through the lost shard: present, as a lower bound of 0.
        assert_eq!(
            merged.lower_bounds[&Signal::Qps],
            vec![(api(), 0.0), (web(), 30.0)]
        );
        // api's CPU never went through the lost shard: complete.
        assert_eq!(merged.sums[&Signal::CpuCores], vec![(api(), 2.0)]);
        assert!(!merged.sums.contains_key(&Signal::Qps));
        assert!(!merged.complete());
    }

    #[test]
    fn a_shard_that_never_answered_is_lost() {
        let shards = [
            answered(10_000, vec![(web(), Signal::Qps, 30.0)]),
            ShardAnswers::default(),
        ];
        let merged = merge(&shards, 10_000, 3_000);
        assert_eq!(merged.lost, vec![1]);
        // Its coverage is unknown, so every sum is a lower bound.
        assert!(merged.sums.is_empty());
        assert_eq!(merged.lower_bounds[&Signal::Qps], vec![(web(), 30.0)]);
    }
}
