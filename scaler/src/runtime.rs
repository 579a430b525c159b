//! The decision loop: re-decides a workload the moment its signals change, and every
//! workload once per tick so time-driven rules (stabilization windows, schedules,
//! staleness) advance without new data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spillway_collector::ingest::Ingest;
use spillway_collector::{Signal, SignalView, WorkloadKey, clock};
use tokio::sync::watch;

use crate::engine::{self, ReplicaCounts};
use crate::policy::{AppPolicy, PolicySet, PolicyStore};
use crate::telemetry::{DecisionLabels, Metrics, WorkloadLabels};
use crate::workloads::{Published, WorkloadEntry, Workloads};

/// Called with every decision that changed something (desired, activity or rule).
pub type DecisionObserver = Arc<dyn Fn(&WorkloadKey, &Published, Option<&Published>) + Send + Sync>;

pub struct DecisionLoop {
    pub policies: Arc<PolicyStore>,
    pub ingest: Arc<Ingest>,
    pub workloads: Arc<Workloads>,
    pub metrics: Arc<Metrics>,
    pub observer: Option<DecisionObserver>,
    pub tick: Duration,
}

/// The policy snapshot the loop is working from, indexed by workload.
struct PolicyIndex {
    set: Arc<PolicySet>,
    by_workload: HashMap<WorkloadKey, Arc<AppPolicy>>,
}

impl PolicyIndex {
    fn build(set: Arc<PolicySet>) -> Self {
        let by_workload = set.workloads().collect();
        Self { set, by_workload }
    }
}

impl DecisionLoop {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut index = PolicyIndex::build(self.policies.current());
        self.sync_workloads(&index);
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.ingest.changed() => {
                    let now_ms = clock::unix_ms();
                    for key in self.ingest.take_dirty() {
                        if let (Some(entry), Some(policy)) = (self.workloads.get(&key), index.by_workload.get(&key)) {
                            self.decide(&entry, policy, now_ms);
                        }
                    }
                }
                _ = ticker.tick() => {
                    let current = self.policies.current();
                    if !Arc::ptr_eq(&current, &index.set) {
                        index = PolicyIndex::build(current);
                        self.sync_workloads(&index);
                    }
                    let now_ms = clock::unix_ms();
                    for entry in self.workloads.all() {
                        if let Some(policy) = index.by_workload.get(&entry.key) {
                            self.decide(&entry, policy, now_ms);
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    fn sync_workloads(&self, index: &PolicyIndex) {
        let keys = index.by_workload.keys().cloned().collect();
        self.workloads.retain_only(&keys);
        self.metrics.workloads.set(self.workloads.len() as i64);
    }

    /// Decides one workload and publishes the result.
    pub fn decide(&self, entry: &WorkloadEntry, policy: &AppPolicy, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        let view = self.ingest.store().view(&entry.key);
        let has_data = Signal::ALL.iter().any(|s| view.newest(*s).is_some());
        let decision = entry.decide_with(|state, start| match start {
            Some(replicas) => Some((
                engine::decide(policy, &view, replicas, now, state),
                replicas,
            )),
            // Nothing known about the workload: publishing a number now would be a guess
            // KEDA applies, so GetMetrics keeps answering UNAVAILABLE instead.
            None if !has_data => None,
            // Data but no replica count, and less than a scale-down window of it: this
            // process (re)started and cannot tell whether the data asks for fewer
            // replicas than run now. Answering would let a restart scale down, so hold:
            // KEDA's HPA keeps its replicas while GetMetrics is UNAVAILABLE.
            None if self.workloads.holds_until_warm()
                && Signal::ALL
                    .iter()
                    .filter_map(|s| view.oldest(*s))
                    .max()
                    .is_some_and(|start| {
                        now - start < i64::from(policy.hysteresis.down_window_secs)
                    }) =>
            {
                None
            }
            // Data but no replica count (first decision after a start without cluster
            // access): start from what the data asks for, so no limit is applied against
            // an invented starting point.
            None => {
                let probe = engine::decide(
                    policy,
                    &view,
                    ReplicaCounts::default(),
                    now,
                    &mut Default::default(),
                );
                let start = ReplicaCounts {
                    current: probe.desired,
                    ready: probe.desired,
                };
                Some((engine::decide(policy, &view, start, now, state), start))
            }
        });
        let Some((decision, start)) = decision else {
            return;
        };
        let labels = WorkloadLabels::from(&entry.key);
        let qps = view.mean(Signal::Qps, now, 5);
        let published = Published {
            desired: decision.desired,
            active: decision.active,
            rule: decision.rule.label(),
            reason: decision.reason.to_string(),
            current: start.current,
            at_ms: now_ms,
            qps,
        };
        self.metrics
            .desired_replicas
            .get_or_create(&labels)
            .set(i64::from(published.desired));
        self.metrics
            .current_replicas
            .get_or_create(&labels)
            .set(i64::from(published.current));
        self.metrics
            .active
            .get_or_create(&labels)
            .set(i64::from(published.active));
        if let Some(qps) = qps {
            self.metrics.qps.get_or_create(&labels).set(qps);
        }
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                tenant: labels.tenant,
                app: labels.app,
                rule: published.rule.to_owned(),
            })
            .inc();
        let changed_from = entry.publish(published);
        if let Some(observer) = &self.observer {
            let latest = entry.latest();
            if let Some(latest) = latest {
                let changed = changed_from.as_ref().is_none_or(|p| {
                    p.desired != latest.desired
                        || p.active != latest.active
                        || p.rule != latest.rule
                });
                if changed {
                    observer(&entry.key, &latest, changed_from.as_deref());
                }
            }
        }
    }
}
