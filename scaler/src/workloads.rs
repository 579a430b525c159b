//! The live state of every workload Spillway decides for: the latest decision KEDA is
//! served from, the activity channel `StreamIsActive` subscribers wait on, the engine's
//! per-workload history and the recent decisions the status API explains.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use dashmap::DashMap;
use spillway_collector::WorkloadKey;
use tokio::sync::watch;

use crate::conditions::{Condition, Conditions, Probe};
use crate::engine::{ReplicaCounts, WorkloadState};
use crate::replicas::Placed;

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
    /// CPU cores and memory bytes in use (5 s mean), if reported.
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
    /// Ready replicas the decision started from.
    pub ready: u32,
    /// The signal whose proposal was largest.
    pub dominant: Option<&'static str>,
    /// What each signal with fresh data asked for.
    pub proposals: Vec<ProposalView>,
    /// Configured signals without fresh data.
    pub missing: Vec<&'static str>,
    /// Signals only partly known (a collector shard lost): scale-down is held.
    pub partial: Vec<&'static str>,
    /// The hysteresis band for the dominant signal, when there was one.
    pub band: Option<BandView>,
    /// Where the desired replicas run, when a replica source places them.
    pub placement: Option<Placed>,
}

/// One signal's proposal.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProposalView {
    pub signal: String,
    /// The signal's mean over the window (requests/s, cores or bytes).
    pub value: f64,
    /// What one replica carries at target, same units.
    pub target: f64,
    pub replicas: u32,
}

/// The hysteresis band, in the dominant signal's units and in replicas (load over what
/// one replica carries at target), so it can be drawn next to replica counts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BandView {
    pub signal: String,
    pub low: f64,
    pub high: f64,
    pub low_replicas: f64,
    pub high_replicas: f64,
    /// The dominant signal's load, in replicas at target.
    pub load_replicas: f64,
}

/// Per-workload state, shared between the decision loop and the gRPC handlers.
#[derive(Debug)]
pub struct WorkloadEntry {
    pub key: WorkloadKey,
    latest: RwLock<Option<Arc<Published>>>,
    active: watch::Sender<bool>,
    history: Mutex<VecDeque<Arc<Published>>>,
    engine: Mutex<EngineSlot>,
    conditions: Mutex<Conditions>,
    adjustment: Mutex<PlacementAdjustment>,
}

#[derive(Debug, Default)]
struct EngineSlot {
    state: WorkloadState,
    observed: Option<ReplicaCounts>,
}

/// How placement on a real cluster changes the replica count KEDA is served. The HPA
/// KEDA drives sets the workload's replicas to what `GetMetrics` returns on every sync,
/// so anything placement does to the count must be in that answer or it is undone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlacementAdjustment {
    /// At most this many replicas can be placed (regular room plus the tenant's burst
    /// cap); the rest would land on virtual nodes past the cap.
    pub cap: Option<u32>,
    /// Extra replicas of drain moves: a regular pod surged before its burst pod goes.
    pub surge: u32,
}

impl PlacementAdjustment {
    /// The replica count to serve for a decision of `desired`.
    pub fn serve(self, desired: u32) -> u32 {
        self.cap
            .map_or(desired, |cap| desired.min(cap))
            .saturating_add(self.surge)
    }
}

impl WorkloadEntry {
    fn new(key: WorkloadKey) -> Self {
        Self {
            key,
            latest: RwLock::new(None),
            active: watch::Sender::new(false),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
            engine: Mutex::new(EngineSlot::default()),
            conditions: Mutex::new(Conditions::default()),
            adjustment: Mutex::new(PlacementAdjustment::default()),
        }
    }

    /// Records what the cluster placement needs the served count to include.
    pub fn set_adjustment(&self, adjustment: PlacementAdjustment) {
        *self
            .adjustment
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = adjustment;
    }

    /// The replica count `GetMetrics` answers: the decision, adjusted for placement.
    pub fn served_replicas(&self, decision: &Published) -> u32 {
        self.adjustment
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .serve(decision.desired)
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

    /// Records one round of condition checks.
    pub fn observe_conditions(&self, probes: Vec<Probe>, now_ms: i64) {
        let mut conditions = self
            .conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for probe in probes {
            conditions.observe(probe, now_ms);
        }
    }

    pub fn conditions(&self) -> Vec<Condition> {
        self.conditions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .list()
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
    /// Workloads scaled by another app's policy entry (trigger metadata `policy`), e.g.
    /// a canary scaled like its main app: workload → the app entry in the policy.
    aliases: crate::aliases::AliasBook,
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

    /// Records that a ScaledObject asked at `now_ms` for `key` scaled by its tenant's
    /// `policy_app` entry, and makes sure the workload exists so the decision loop
    /// picks it up. A new alias past the tenant's cap is refused.
    pub fn alias(
        &self,
        key: &WorkloadKey,
        policy_app: &str,
        now_ms: i64,
    ) -> Result<Arc<WorkloadEntry>, crate::aliases::AliasRefused> {
        if *key.app != *policy_app {
            self.aliases.ask(key, policy_app, now_ms)?;
        }
        Ok(self.get_or_insert(key))
    }

    /// Caps and expiry of aliases (`access.aliases`).
    pub fn set_alias_limits(&self, limits: crate::access::AliasLimits) {
        self.aliases.set_limits(limits);
    }

    pub fn is_alias(&self, key: &WorkloadKey) -> bool {
        self.aliases.contains(key)
    }

    /// Drops the aliases no ScaledObject asked for within the expiry (and no
    /// `StreamIsActive` listens to), and those whose app got an entry of its own
    /// (`has_own_entry`): their workloads go too, unless a policy names them.
    /// Returns the workloads dropped.
    pub fn expire_aliases(
        &self,
        now_ms: i64,
        has_own_entry: impl Fn(&WorkloadKey) -> bool,
    ) -> Vec<WorkloadKey> {
        let dropped = self.aliases.expire(
            now_ms,
            |key| {
                self.entries
                    .get(key)
                    .is_some_and(|entry| entry.active_subscribers() > 0)
            },
            &has_own_entry,
        );
        let mut gone = Vec::new();
        for key in dropped {
            if !has_own_entry(&key) && self.entries.remove(&key).is_some() {
                gone.push(key);
            }
        }
        gone
    }

    /// The policy entry a workload is decided by: its own app, or its alias.
    pub fn policy_key(&self, key: &WorkloadKey) -> WorkloadKey {
        match self.aliases.policy_app(key) {
            Some(policy_app) => WorkloadKey::new(key.tenant.clone(), policy_app),
            None => key.clone(),
        }
    }

    /// Every aliased workload with the policy entry it follows.
    pub fn aliased(&self) -> Vec<(WorkloadKey, WorkloadKey)> {
        self.aliases
            .list()
            .into_iter()
            .map(|(key, policy_app)| {
                let policy = WorkloadKey::new(key.tenant.clone(), policy_app);
                (key, policy)
            })
            .collect()
    }

    /// Keeps exactly `keys`, adding new ones and dropping the rest (aliases included).
    pub fn retain_only(&self, keys: &std::collections::HashSet<WorkloadKey>) {
        self.entries.retain(|key, _| keys.contains(key));
        self.aliases.remove_where(|key, _| !keys.contains(key));
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
            cpu_cores: None,
            memory_bytes: None,
            ready: 0,
            dominant: None,
            proposals: Vec::new(),
            missing: Vec::new(),
            partial: Vec::new(),
            band: None,
            placement: None,
        }
    }

    #[test]
    fn placement_adjusts_what_keda_is_served() {
        let none = PlacementAdjustment::default();
        assert_eq!(none.serve(12), 12);
        let capped = PlacementAdjustment {
            cap: Some(9),
            surge: 0,
        };
        assert_eq!(
            capped.serve(12),
            9,
            "no more than regular room plus the burst cap"
        );
        assert_eq!(capped.serve(4), 4, "a cap never raises a decision");
        let draining = PlacementAdjustment {
            cap: None,
            surge: 2,
        };
        assert_eq!(
            draining.serve(12),
            14,
            "surge pods ride on top until their burst pod goes"
        );
        let entry = WorkloadEntry::new(WorkloadKey::new("acme", "web"));
        let decision = published(12, true);
        assert_eq!(entry.served_replicas(&decision), 12);
        entry.set_adjustment(PlacementAdjustment {
            cap: Some(10),
            surge: 1,
        });
        assert_eq!(entry.served_replicas(&decision), 11);
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

    #[test]
    fn an_unused_alias_goes_with_its_workload_unless_listened_to() {
        let workloads = Workloads::new();
        workloads.set_alias_limits(crate::access::AliasLimits {
            max_per_tenant: 2,
            expire_after_ms: 10_000,
        });
        let web = WorkloadKey::new("acme", "web");
        let canary = WorkloadKey::new("acme", "web-canary");
        let streamed = WorkloadKey::new("acme", "web-blue");
        workloads.alias(&web, "web", 0).unwrap();
        workloads.alias(&canary, "web", 0).unwrap();
        let listener = workloads
            .alias(&streamed, "web", 0)
            .unwrap()
            .subscribe_active();
        assert_eq!(workloads.policy_key(&canary), web);
        assert!(
            workloads
                .alias(&WorkloadKey::new("acme", "web-green"), "web", 0)
                .is_err(),
            "a third alias is past the cap"
        );
        let named = |key: &WorkloadKey| *key == web;
        assert!(workloads.expire_aliases(10_000, named).is_empty());
        assert_eq!(
            workloads.expire_aliases(10_001, named),
            vec![canary.clone()]
        );
        assert!(workloads.get(&canary).is_none(), "its workload is gone too");
        assert_eq!(workloads.policy_key(&canary), canary);
        assert!(workloads.get(&streamed).is_some(), "a stream still listens");
        assert!(workloads.get(&web).is_some(), "not an alias");
        drop(listener);
        assert_eq!(workloads.expire_aliases(10_001, named), vec![streamed]);
        // An app that gets its own entry stops being an alias but keeps its workload.
        workloads.alias(&canary, "web", 20_000).unwrap();
        assert!(
            workloads
                .expire_aliases(20_000, |key| *key == canary)
                .is_empty()
        );
        assert!(!workloads.is_alias(&canary));
        assert!(workloads.get(&canary).is_some());
    }
}
