//! Summing the shards' answers. Pure: answers and times in, sums out.

use std::collections::{BTreeSet, HashMap};

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
    pub sums: HashMap<Signal, Vec<(WorkloadKey, f64)>>,
    /// Every shard gave a warm answer within `lost_after`.
    pub complete: bool,
    /// Shards without a warm answer within `lost_after`, by index.
    pub lost: Vec<usize>,
}

/// Sums the shards' answers at `now_ms`.
///
/// A shard whose latest answer is at most `lost_after_ms` old counts with that answer,
/// as a scrape target's last value stands in for a missed scrape. A shard with no answer
/// that recent is lost: it adds nothing, the merge is incomplete, and the workloads it
/// last reported still appear (with what the other shards say, possibly 0) so that their
/// sums are marked as lower bounds rather than silently vanishing.
pub fn merge(shards: &[ShardAnswers], now_ms: i64, lost_after_ms: i64) -> Merged {
    let mut sums: HashMap<(WorkloadKey, Signal), f64> = HashMap::new();
    let mut lost = Vec::new();
    for (index, shard) in shards.iter().enumerate() {
        match &shard.latest {
            Some(answer) if now_ms.saturating_sub(answer.at_ms) <= lost_after_ms => {
                for (workload, signal, value) in &answer.totals {
                    *sums.entry((workload.clone(), *signal)).or_insert(0.0) += value;
                }
            }
            stale => {
                lost.push(index);
                for (workload, signal, _) in stale.iter().flat_map(|a| &a.totals) {
                    sums.entry((workload.clone(), *signal)).or_insert(0.0);
                }
            }
        }
    }
    let mut by_signal: HashMap<Signal, Vec<(WorkloadKey, f64)>> = HashMap::new();
    // Sorted so the result (and every test of it) is deterministic.
    let ordered: BTreeSet<(WorkloadKey, Signal)> = sums.keys().cloned().collect();
    for key in ordered {
        let value = sums[&key];
        by_signal.entry(key.1).or_default().push((key.0, value));
    }
    Merged {
        sums: by_signal,
        complete: lost.is_empty(),
        lost,
    }
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
        assert!(merged.complete);
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
        assert!(merged.complete);

        let merged = merge(&shards, 10_001, 3_000);
        assert_eq!(merged.sums[&Signal::Qps], vec![(web(), 30.0)]);
        assert_eq!((merged.complete, merged.lost.clone()), (false, vec![1]));
    }

    #[test]
    fn workloads_only_a_lost_shard_knew_stay_present_as_zero() {
        let shards = [
            answered(10_000, vec![(web(), Signal::Qps, 30.0)]),
            answered(1_000, vec![(api(), Signal::Qps, 8.0)]),
        ];
        let merged = merge(&shards, 10_000, 3_000);
        assert_eq!(merged.sums[&Signal::Qps], vec![(api(), 0.0), (web(), 30.0)]);
        assert!(!merged.complete);
    }

    #[test]
    fn a_shard_that_never_answered_is_lost() {
        let shards = [
            answered(10_000, vec![(web(), Signal::Qps, 30.0)]),
            ShardAnswers::default(),
        ];
        let merged = merge(&shards, 10_000, 3_000);
        assert_eq!((merged.complete, merged.lost), (false, vec![1]));
        assert_eq!(merged.sums[&Signal::Qps], vec![(web(), 30.0)]);
    }
}
