//! Deduplication of HA Prometheus pairs, as Cortex's and Mimir's HA tracker does it
//! (Mimir `pkg/distributor/ha_tracker.go`, `checkReplica`).
//!
//! Two Prometheus replicas scraping the same gateways send the same series, told apart
//! only by a replica external label (`__replica__`, or `prometheus_replica` from the
//! Prometheus Operator) under a shared cluster label. Accepting both would double every
//! workload's QPS, so per cluster one replica is elected: its series are accepted, the
//! other replicas' are refused and counted. When the elected replica has sent nothing
//! for the failover timeout, the next replica heard from is elected.
//!
//! Series carrying no cluster label, or no replica label, are accepted as they are (as
//! Mimir does). Accepted series are identified without their replica label, so the
//! replica taking over continues the same series' counters instead of starting new
//! ones that would have no rate for a while.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Which labels name an HA pair and how long the elected replica may stay silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    pub cluster_label: String,
    /// The first of these a series carries names its replica. Empty: no deduplication.
    pub replica_labels: Vec<String>,
    /// The elected replica loses its election after this long without a sample.
    pub failover_timeout_ms: i64,
    /// Clusters tracked at most; series of further clusters are refused, so label
    /// values cannot grow the table without bound.
    pub max_clusters: usize,
}

impl Default for HaConfig {
    /// Mimir's labels and failover timeout (30 s).
    fn default() -> Self {
        Self {
            cluster_label: "cluster".into(),
            replica_labels: vec!["__replica__".into(), "prometheus_replica".into()],
            failover_timeout_ms: 30_000,
            max_clusters: 1_000,
        }
    }
}

/// What the tracker says about a series of one cluster and replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Another replica of the cluster is elected and still sending.
    NotElected,
    /// A new cluster while `max_clusters` are tracked.
    TooManyClusters,
}

#[derive(Debug)]
struct Elected {
    replica: String,
    last_seen_ms: i64,
}

/// The elected replica of every cluster seen.
#[derive(Debug)]
pub struct HaTracker {
    config: HaConfig,
    elected: Mutex<HashMap<String, Elected>>,
    failovers: AtomicU64,
}

impl HaTracker {
    pub fn new(config: HaConfig) -> Self {
        Self {
            config,
            elected: Mutex::default(),
            failovers: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &HaConfig {
        &self.config
    }

    /// The cluster and the replica label (name, value) of a series, when it has both.
    pub fn identify<'a>(
        &self,
        label: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<(&'a str, &str, &'a str)> {
        if self.config.replica_labels.is_empty() {
            return None;
        }
        let cluster = label(&self.config.cluster_label)?;
        self.config
            .replica_labels
            .iter()
            .find_map(|name| label(name).map(|replica| (cluster, name.as_str(), replica)))
    }

    /// Whether a sample of `replica` in `cluster`, received at `now_ms`, is accepted;
    /// an accepted sample keeps its replica elected.
    pub fn check(&self, cluster: &str, replica: &str, now_ms: i64) -> Verdict {
        let mut elected = self.elected.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = elected.get_mut(cluster) {
            // Seen "ahead of now" means the clock went back: count the silence from now,
            // or a failover would wait until the clock caught up.
            entry.last_seen_ms = entry.last_seen_ms.min(now_ms);
            if entry.replica == replica {
                entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
                return Verdict::Accept;
            }
            if now_ms.saturating_sub(entry.last_seen_ms) <= self.config.failover_timeout_ms {
                return Verdict::NotElected;
            }
            tracing::info!(
                cluster,
                from = %entry.replica,
                to = replica,
                "remote-write HA failover: the elected replica went silent"
            );
            entry.replica = replica.to_owned();
            entry.last_seen_ms = now_ms;
            self.failovers.fetch_add(1, Ordering::Relaxed);
            return Verdict::Accept;
        }
        if elected.len() >= self.config.max_clusters {
            return Verdict::TooManyClusters;
        }
        elected.insert(
            cluster.to_owned(),
            Elected {
                replica: replica.to_owned(),
                last_seen_ms: now_ms,
            },
        );
        Verdict::Accept
    }

    /// Forgets clusters silent for `max_silence_ms`, so clusters that went away free
    /// their place.
    pub fn sweep(&self, now_ms: i64, max_silence_ms: i64) {
        self.elected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, entry| {
                entry.last_seen_ms = entry.last_seen_ms.min(now_ms);
                now_ms.saturating_sub(entry.last_seen_ms) <= max_silence_ms
            });
    }

    /// The elected replica of `cluster`, if any.
    pub fn elected(&self, cluster: &str) -> Option<String> {
        self.elected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cluster)
            .map(|entry| entry.replica.clone())
    }

    /// Elections won by a replica taking over from a silent one.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    pub fn cluster_count(&self) -> usize {
        self.elected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> HaTracker {
        HaTracker::new(HaConfig {
            failover_timeout_ms: 10_000,
            max_clusters: 2,
            ..HaConfig::default()
        })
    }

    #[test]
    fn the_first_replica_heard_is_elected_and_the_other_refused() {
        let ha = tracker();
        assert_eq!(ha.check("eu", "a", 0), Verdict::Accept);
        assert_eq!(ha.check("eu", "b", 1_000), Verdict::NotElected);
        assert_eq!(ha.check("eu", "a", 9_000), Verdict::Accept);
        // `a` spoke at 9 s, so `b` waits until 19 s.
        assert_eq!(ha.check("eu", "b", 18_000), Verdict::NotElected);
        assert_eq!(ha.elected("eu").as_deref(), Some("a"));
    }

    #[test]
    fn a_clock_jump_back_delays_a_failover_by_at_most_the_timeout() {
        const HOUR_MS: i64 = 3_600_000;
        let ha = tracker();
        let t = 1_800_000_000_000;
        assert_eq!(ha.check("eu", "a", t), Verdict::Accept);
        // The clock goes back an hour and `a` is silent from then on.
        let back = t - HOUR_MS;
        assert_eq!(ha.check("eu", "b", back), Verdict::NotElected);
        assert_eq!(ha.check("eu", "b", back + 10_000), Verdict::NotElected);
        assert_eq!(ha.check("eu", "b", back + 10_001), Verdict::Accept);
        // A sweep after the jump keeps a cluster heard just before it.
        ha.sweep(back + 20_000, 30_000);
        assert_eq!(ha.cluster_count(), 1);
        ha.sweep(back + 60_000, 30_000);
        assert_eq!(ha.cluster_count(), 0);
    }

    #[test]
    fn a_silent_replica_fails_over_to_the_next_one_heard() {
        let ha = tracker();
        assert_eq!(ha.check("eu", "a", 0), Verdict::Accept);
        assert_eq!(ha.check("eu", "b", 10_000), Verdict::NotElected);
        assert_eq!(ha.check("eu", "b", 10_001), Verdict::Accept);
        assert_eq!(ha.elected("eu").as_deref(), Some("b"));
        assert_eq!(ha.check("eu", "a", 10_002), Verdict::NotElected);
        assert_eq!(ha.failovers(), 1);
    }

    #[test]
    fn clusters_are_independent_bounded_and_swept() {
        let ha = tracker();
        assert_eq!(ha.check("eu", "a", 0), Verdict::Accept);
        assert_eq!(ha.check("us", "b", 0), Verdict::Accept);
        assert_eq!(ha.check("ap", "a", 0), Verdict::TooManyClusters);
        assert_eq!(ha.check("eu", "a", 50_000), Verdict::Accept);
        ha.sweep(60_000, 30_000);
        assert_eq!(ha.cluster_count(), 1);
        assert_eq!(ha.check("ap", "a", 60_000), Verdict::Accept);
    }

    #[test]
    fn only_series_with_both_labels_are_deduplicated() {
        let ha = tracker();
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        };
        assert_eq!(
            ha.identify(labels(&[("cluster", "eu"), ("prometheus_replica", "p-1")])),
            Some(("eu", "prometheus_replica", "p-1"))
        );
        assert_eq!(
            ha.identify(labels(&[
                ("cluster", "eu"),
                ("prometheus_replica", "p-1"),
                ("__replica__", "r-0")
            ])),
            Some(("eu", "__replica__", "r-0")),
            "the first configured replica label wins"
        );
        assert_eq!(ha.identify(labels(&[("__replica__", "r-0")])), None);
        assert_eq!(ha.identify(labels(&[("cluster", "eu")])), None);
        let off = HaTracker::new(HaConfig {
            replica_labels: vec![],
            ..HaConfig::default()
        });
        assert_eq!(
            off.identify(labels(&[("cluster", "eu"), ("__replica__", "r-0")])),
            None
        );
    }
}
