//! `/readyz`: when this replica can take over from the one it replaces.
//!
//! A restarted Spillway answers KEDA from its first second, but for a full scale-down
//! window it only knows part of the history the previous replica had, so it never
//! scales anything down meanwhile (the engine's warm-up). Readiness says when that is
//! over: the Kubernetes side has read the replica counts (when configured), every scrape
//! target has been tried once, and the process has run for the longest scale-down
//! window any policy names. A rolling update (`maxUnavailable: 0`) therefore keeps the
//! previous replica until the new one decides as it would.
//!
//! Readiness gates the rollout, not the traffic: the KEDA-facing Service publishes
//! not-ready addresses, so a lone replica that restarts still answers (safely) during
//! its warm-up instead of leaving KEDA with no endpoint at all.
//!
//! The judgement is pure: it takes the time now and what the process has seen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::policy::PolicySet;

/// Why the process is not ready yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the Kubernetes side has not read the workloads' replica counts yet")]
    ReplicaCounts,
    #[error("{pending} of {total} scrape targets not tried yet")]
    Scrapes { pending: usize, total: usize },
    #[error(
        "warming up: {elapsed_secs} s of the {window_secs} s scale-down window since start; \
         until then this replica scales nothing down, so a rolling update keeps the \
         previous replica"
    )]
    WarmingUp { elapsed_secs: u64, window_secs: u64 },
}

/// What readiness is judged from, kept by the process.
#[derive(Debug)]
pub struct Readiness {
    started: Instant,
    replica_counts_pending: AtomicBool,
}

impl Readiness {
    /// `awaits_replica_counts`: the Kubernetes side is configured and has yet to make
    /// its first read.
    pub fn new(started: Instant, awaits_replica_counts: bool) -> Self {
        Self {
            started,
            replica_counts_pending: AtomicBool::new(awaits_replica_counts),
        }
    }

    /// The Kubernetes side's first read of replica counts is done.
    pub fn replica_counts_read(&self) {
        self.replica_counts_pending.store(false, Ordering::Relaxed);
    }

    /// The verdict at `now`, with `targets_tried` saying for each scrape target
    /// whether it has been scraped (successfully or not) at least once.
    pub fn check(
        &self,
        now: Instant,
        policies: &PolicySet,
        targets_tried: impl IntoIterator<Item = bool>,
    ) -> Result<(), NotReady> {
        if self.replica_counts_pending.load(Ordering::Relaxed) {
            return Err(NotReady::ReplicaCounts);
        }
        let (mut total, mut pending) = (0, 0);
        for tried in targets_tried {
            total += 1;
            pending += usize::from(!tried);
        }
        if pending > 0 {
            return Err(NotReady::Scrapes { pending, total });
        }
        let window = warm_up_window(policies);
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < window {
            return Err(NotReady::WarmingUp {
                elapsed_secs: elapsed.as_secs(),
                window_secs: window.as_secs(),
            });
        }
        Ok(())
    }
}

/// The longest scale-down window of any policy: the history a replica needs before its
/// scale-downs are the ones a replica that never restarted would make.
pub fn warm_up_window(policies: &PolicySet) -> Duration {
    let secs = policies
        .workloads()
        .map(|(_, policy)| policy.hysteresis.down_window_secs)
        .max()
        .unwrap_or(0);
    Duration::from_secs(u64::from(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySet, parse_policy};

    fn policies(windows: &[(&str, &str)]) -> PolicySet {
        let apps: String = windows
            .iter()
            .map(|(app, window)| {
                format!("    {app}: {{ hysteresis: {{ downWindow: {window} }} }}\n")
            })
            .collect();
        let text = format!(
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: acme }}\nspec:\n  namespaces: [acme-prod]\n  defaults:\n    replicas: {{ min: 1, max: 10 }}\n    signals: {{ qps: {{ targetPerReplica: 100 }} }}\n  apps:\n{apps}"
        );
        let policy = parse_policy("acme.yaml", &text).expect("a valid policy");
        PolicySet::from_policies(vec![policy]).expect("one tenant")
    }

    #[test]
    fn ready_after_the_first_read_the_first_scrapes_and_the_longest_window() {
        let started = Instant::now();
        let set = policies(&[("web", "30s"), ("api", "2m")]);
        assert_eq!(warm_up_window(&set), Duration::from_secs(120));
        let readiness = Readiness::new(started, true);
        let at = |secs| started + Duration::from_secs(secs);
        assert_eq!(
            readiness.check(at(500), &set, [true]),
            Err(NotReady::ReplicaCounts)
        );
        readiness.replica_counts_read();
        assert_eq!(
            readiness.check(at(500), &set, [true, false, false]),
            Err(NotReady::Scrapes {
                pending: 2,
                total: 3
            })
        );
        assert_eq!(
            readiness.check(at(90), &set, [true]),
            Err(NotReady::WarmingUp {
                elapsed_secs: 90,
                window_secs: 120
            })
        );
        assert_eq!(readiness.check(at(120), &set, [true]), Ok(()));
        // A target that keeps failing has been tried: it does not hold readiness back.
        assert_eq!(readiness.check(at(121), &set, []), Ok(()));
    }

    #[test]
    fn without_policies_or_a_cluster_only_the_scrapes_count() {
        let started = Instant::now();
        let readiness = Readiness::new(started, false);
        let empty = PolicySet::default();
        assert_eq!(readiness.check(started, &empty, [true]), Ok(()));
        assert!(readiness.check(started, &empty, [false]).is_err());
    }
}
