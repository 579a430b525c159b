//! The live state of every workload Spillway decides for: the latest decision KEDA is
//! served from, the activity channel `StreamIsActive` subscribers wait on, the engine's
//! per-workload history and the recent decisions the status API explains.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use dashmap::DashMap;
use spillway_collector::WorkloadKey;
use tokio::sync::watch;

use crate::engine::{ReplicaCounts, WorkloadState};

/// How many past decisions each workload keeps for `spillway explain`.
pub const HISTORY_LEN: usize = 32;

/// A decision as served and explained.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Published {
    pub desired: u32,
    pub active: bool,
    pub rule: &'static str,
    pub reason: String,
    /// The replica count the decision started from.
    pub current: u32,
    /// Unix milliseconds when it was made.
    pub at_ms: i64,
    /// The value per signal the engine saw (for logs and status), if any.
    pub qps: Option<f64>,
}

/// Per-workload state, shared between the decision loop and the gRPC handlers.
#[derive(Debug)]
pub struct WorkloadEntry {
    pub key: WorkloadKey,
    latest: RwLock<Option<Arc<Published>>>,
    active: watch::Sender<bool>,
    history: Mutex<VecDeque<Arc<Published>>>,
    engine: Mutex<EngineSlot>,
}

#[derive(Debug, Default)]
struct EngineSlot {
    state: WorkloadState,
    observed: Option<ReplicaCounts>,
}

impl WorkloadEntry {
    fn new(key: WorkloadKey) -> Self {
        Self {
            key,
            latest: RwLock::new(None),
            active: watch::Sender::new(false),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
            engine: Mutex::new(EngineSlot::default()),
        }
    }

    /// The decision KEDA is currently served, if one has been made.
    pub fn latest(&self) -> Option<Arc<Published>> {
        self.latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A receiver that sees every activity transition (not repeats).
    pub fn subscribe_active(&self) -> watch::Receiver<bool> {
        self.active.subscribe()
    }

    pub fn active_subscribers(&self) -> usize {
        self.active.receiver_count()
    }

    /// Recent decisions, oldest first.
    pub fn history(&self) -> Vec<Arc<Published>> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Replica counts observed in the cluster (or the simulated pool), when known.
    pub fn set_observed(&self, replicas: ReplicaCounts) {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observed = Some(replicas);
    }

    /// Runs `decide` with the engine state and the replica counts to start from: the
    /// observed ones, else the last desired count (KEDA's HPA applies it as is), else
    /// none (the caller decides what a first decision starts from).
    pub fn decide_with<T>(
        &self,
        decide: impl FnOnce(&mut WorkloadState, Option<ReplicaCounts>) -> T,
    ) -> T {
        let last_desired = self.latest().map(|p| ReplicaCounts {
            current: p.desired,
            ready: p.desired,
        });
        let mut slot = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let start = slot.observed.or(last_desired);
        decide(&mut slot.state, start)
    }

    /// Publishes a decision. Returns the previous one so callers can tell what changed.
    /// Activity subscribers are woken only on a transition.
    pub fn publish(&self, published: Published) -> Option<Arc<Published>> {
        let published = Arc::new(published);
        let active = published.active;
        let previous = self
            .latest
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(published.clone());
        let changed = previous.as_ref().is_none_or(|p| {
            p.desired != published.desired || p.rule != published.rule || p.active != active
        });
        if changed {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            if history.len() == HISTORY_LEN {
                history.pop_front();
            }
            history.push_back(published);
        }
        self.active.send_if_modified(|current| {
            let transition = *current != active;
            *current = active;
            transition
        });
        previous
    }
}

/// All workloads, keyed by tenant and app.
#[derive(Debug, Default)]
pub struct Workloads {
    entries: DashMap<WorkloadKey, Arc<WorkloadEntry>>,
    hold_until_warm: std::sync::atomic::AtomicBool,
}

impl Workloads {
    pub fn new() -> Self {
        Self::default()
    }

    /// See `ProcessConfig::hold_until_warm`.
    pub fn set_hold_until_warm(&self, hold: bool) {
        self.hold_until_warm
            .store(hold, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn holds_until_warm(&self) -> bool {
        self.hold_until_warm
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn get(&self, key: &WorkloadKey) -> Option<Arc<WorkloadEntry>> {
        self.entries.get(key).map(|e| e.clone())
    }

    pub fn get_or_insert(&self, key: &WorkloadKey) -> Arc<WorkloadEntry> {
        self.entries
            .entry(key.clone())
            .or_insert_with(|| Arc::new(WorkloadEntry::new(key.clone())))
            .clone()
    }

    /// Keeps exactly `keys`, adding new ones and dropping the rest.
    pub fn retain_only(&self, keys: &std::collections::HashSet<WorkloadKey>) {
        self.entries.retain(|key, _| keys.contains(key));
        for key in keys {
            self.get_or_insert(key);
        }
    }

    pub fn all(&self) -> Vec<Arc<WorkloadEntry>> {
        let mut all: Vec<_> = self.entries.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(desired: u32, active: bool) -> Published {
        Published {
            desired,
            active,
            rule: "test",
            reason: String::new(),
            current: 0,
            at_ms: 0,
            qps: None,
        }
    }

    #[tokio::test]
    async fn subscribers_see_transitions_not_repeats() {
        let entry = WorkloadEntry::new(WorkloadKey::new("acme", "web"));
        let mut active = entry.subscribe_active();
        entry.publish(published(1, false));
        assert!(!active.has_changed().unwrap());
        entry.publish(published(2, true));
        assert!(active.has_changed().unwrap());
        assert!(*active.borrow_and_update());
        entry.publish(published(3, true));
        assert!(!active.has_changed().unwrap());
        assert_eq!(entry.history().len(), 3);
        entry.publish(published(3, true));
        assert_eq!(
            entry.history().len(),
            3,
            "an unchanged decision is not history"
        );
    }
}
