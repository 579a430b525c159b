//! The live state of every workload Spillway decides for: the latest decision KEDA is
//! served from, the activity channel `StreamIsActive` subscribers wait on, the engine's
//! per-workload history and the recent decisions the status API explains.
//!
//! The number `GetMetrics` answers is [`serve_plan`]: the decision, adjusted for
//! placement (burst cap, drain surge), floored during warm-up at what runs, then passed
//! through the HPA's tolerance ([`crate::hpa::serve`]). It is computed when the decision
//! is made and again on every `GetMetrics`, with the newest replica counts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use dashmap::DashMap;
use spillway_collector::WorkloadKey;
use tokio::sync::watch;

use crate::conditions::{Condition, Conditions, Probe};
use crate::engine::{ReplicaCounts, WorkloadState};
use crate::hpa::{HpaView, ScaleCounts, Served};
use crate::serve::replicas::Placed;
pub use spillway_core::published::{
    BandView, Basis, Known, Observed, PlacementAdjustment, ProposalView, Published, ServePlan,
    serve_plan,
};

/// How many past decisions each workload keeps for `spillway explain`.
pub const HISTORY_LEN: usize = 32;

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
    hpa: Mutex<Option<HpaView>>,
    /// What the cluster's placement controller last planned, for a process whose
    /// replicas are placed by the Kubernetes side rather than a replica source.
    cluster_placement: Mutex<Option<Placed>>,
}

#[derive(Debug, Default)]
struct EngineSlot {
    state: WorkloadState,
    observed: Option<Observed>,
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
            hpa: Mutex::new(None),
            cluster_placement: Mutex::new(None),
        }
    }

    /// The HPA in front of this workload as read from the cluster; it wins over the
    /// policy's `hpaTolerance` from the next decision and the next `GetMetrics` on.
    pub fn set_hpa_view(&self, view: Option<HpaView>) {
        *self.hpa.lock().unwrap_or_else(PoisonError::into_inner) = view;
    }

    /// Records the cluster placement controller's latest plan; the next decision publishes
    /// it (regular, burst and shortfall on `/metrics`, the `BurstShortfall` condition).
    pub fn set_cluster_placement(&self, placed: Placed) {
        *self
            .cluster_placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(placed);
    }

    pub fn cluster_placement(&self) -> Option<Placed> {
        self.cluster_placement
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The HPA view read from the cluster, if any.
    pub fn hpa_view(&self) -> Option<HpaView> {
        *self.hpa.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn adjustment(&self) -> PlacementAdjustment {
        *self
            .adjustment
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what the cluster placement needs the served count to include.
    pub fn set_adjustment(&self, adjustment: PlacementAdjustment) {
        *self
            .adjustment
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = adjustment;
    }

    /// What `GetMetrics` answers for `decision` now: [`serve_plan`] with the newest
    /// placement adjustment, replica counts and HPA view.
    pub fn serve(&self, decision: &Published) -> Served {
        let observed = self.observed();
        let scale = observed.map_or(decision.scale, |o| o.scale);
        let hpa = self.hpa_view().unwrap_or(decision.hpa);
        serve_plan(
            decision.plan,
            self.adjustment(),
            scale,
            observed.is_some(),
            hpa,
        )
    }

    fn observed(&self) -> Option<Observed> {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observed
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

    /// Replica counts of a pool where spec and status are the same (the demo's).
    pub fn set_observed(&self, replicas: ReplicaCounts) {
        self.set_observed_scale(replicas, ScaleCounts::settled(replicas.current));
    }

    /// Replica counts observed in the cluster: what the engine starts from, and the
    /// scale subresource as the HPA reads it.
    pub fn set_observed_scale(&self, counts: ReplicaCounts, scale: ScaleCounts) {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observed = Some(Observed { counts, scale });
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

    /// Runs `decide` with the engine state and what is known to start from: the
    /// observed counts, and what the HPA is expected to run after the previous answer.
    pub fn decide_with<T>(&self, decide: impl FnOnce(&mut WorkloadState, Known) -> T) -> T {
        let expected = self
            .latest()
            .filter(|p| p.basis != Basis::Nothing)
            .map(|p| p.expected);
        let mut slot = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let known = Known {
            observed: slot.observed,
            expected,
        };
        decide(&mut slot.state, known)
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
    freezes: crate::freeze::FreezeBook,
    audit: crate::audit::AuditLog,
    shadows: crate::policy::shadow::ShadowBook,
    grades: crate::grades::GradeBook,
}

impl Workloads {
    pub fn new() -> Self {
        Self::default()
    }

    /// Freezes set through the API or read from ScaledObjects.
    pub fn freezes(&self) -> &crate::freeze::FreezeBook {
        &self.freezes
    }

    /// The candidate policies' engine histories.
    pub fn shadows(&self) -> &crate::policy::shadow::ShadowBook {
        &self.shadows
    }

    /// Candidates' promotions and rollbacks.
    pub fn grades(&self) -> &crate::grades::GradeBook {
        &self.grades
    }

    /// Every change of policy, freeze or grade.
    pub fn audit(&self) -> &crate::audit::AuditLog {
        &self.audit
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
    use crate::engine::Activity;
    use crate::hpa::{HpaSource, HpaTolerance, ServeOutcome};

    const PASS_THROUGH: HpaView = HpaView {
        tolerance: HpaTolerance {
            scale_up: 0.0,
            scale_down: 0.0,
        },
        source: HpaSource::Policy,
    };

    const TEN: HpaView = HpaView {
        tolerance: HpaTolerance {
            scale_up: 0.1,
            scale_down: 0.1,
        },
        source: HpaSource::Policy,
    };

    fn plan(desired: u32) -> ServePlan {
        ServePlan {
            desired,
            ceiling: 200,
            max: 200,
            warming_up: false,
            frozen: false,
        }
    }

    fn published(desired: u32, active: bool) -> Published {
        Published {
            desired,
            active,
            rule: "test",
            reason: String::new(),
            activity: if active {
                Activity::Load
            } else {
                Activity::Idle
            },
            current: 0,
            basis: Basis::Expected,
            scale: ScaleCounts::settled(desired),
            plan: plan(desired),
            hpa: PASS_THROUGH,
            served: desired,
            expected: desired,
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
            freeze: None,
            shadow: None,
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
        assert_eq!(entry.serve(&decision).replicas, 12);
        entry.set_adjustment(PlacementAdjustment {
            cap: Some(10),
            surge: 1,
        });
        assert_eq!(entry.serve(&decision).replicas, 11);
    }

    #[test]
    fn the_tolerance_applies_to_the_number_after_cap_and_surge() {
        // Decided 130 from 100, capped at 105 by the burst cap: 105 is within the HPA's
        // tolerance of 100 and would be swallowed; the cap also bounds the raise, so
        // the HPA keeps 100 and says so, rather than place past the cap.
        let capped = PlacementAdjustment {
            cap: Some(105),
            surge: 0,
        };
        let s = serve_plan(plan(130), capped, ScaleCounts::settled(100), true, TEN);
        assert_eq!(
            (s.replicas, s.expected, s.outcome),
            (105, 100, ServeOutcome::Kept { status: 100 })
        );
        // With room up to 125, 115 (within the tolerance of 110) is raised to 122.
        let s = serve_plan(
            plan(115),
            PlacementAdjustment {
                cap: Some(125),
                surge: 0,
            },
            ScaleCounts::settled(110),
            true,
            TEN,
        );
        assert_eq!((s.replicas, s.expected), (122, 122));
        // A drain surge is written to spec by the controller itself: the served number
        // carries it and is never raised on top of it.
        let surging = PlacementAdjustment {
            cap: None,
            surge: 3,
        };
        let s = serve_plan(plan(100), surging, ScaleCounts::settled(103), true, TEN);
        assert_eq!((s.replicas, s.expected), (103, 103));
        let s = serve_plan(plan(100), surging, ScaleCounts::settled(100), true, TEN);
        assert_eq!(s.replicas, 103, "not raised while the surge pod is created");
    }

    #[test]
    fn during_a_rollout_the_served_number_holds_on_spec() {
        // spec 100, status 125: the decision 100 is served, and the HPA keeps 100.
        let s = serve_plan(
            plan(100),
            PlacementAdjustment::default(),
            ScaleCounts {
                spec: 100,
                status: 125,
            },
            true,
            TEN,
        );
        assert_eq!((s.replicas, s.expected), (100, 100));
    }

    #[test]
    fn warm_up_never_serves_below_what_runs_and_never_holds_a_raise_back() {
        let warming = ServePlan {
            warming_up: true,
            ..plan(8)
        };
        let runs = ScaleCounts::settled(20);
        let s = serve_plan(
            warming,
            PlacementAdjustment::default(),
            runs,
            true,
            PASS_THROUGH,
        );
        assert_eq!(s.replicas, 20, "never below spec.replicas during warm-up");
        let s = serve_plan(
            ServePlan {
                desired: 30,
                ..warming
            },
            PlacementAdjustment::default(),
            runs,
            true,
            PASS_THROUGH,
        );
        assert_eq!(s.replicas, 30, "a scale-up is served at once");
        // Counts that are only assumed (no cluster) are no floor: the engine's own
        // warm-up rule holds its answers instead.
        let s = serve_plan(
            warming,
            PlacementAdjustment::default(),
            runs,
            false,
            PASS_THROUGH,
        );
        assert_eq!(s.replicas, 8);
        // Warm: the decision is served.
        let s = serve_plan(
            plan(8),
            PlacementAdjustment::default(),
            runs,
            true,
            PASS_THROUGH,
        );
        assert_eq!(s.replicas, 8);
        // The floor stops at replicas.max.
        let s = serve_plan(
            ServePlan { max: 15, ..warming },
            PlacementAdjustment::default(),
            runs,
            true,
            PASS_THROUGH,
        );
        assert_eq!(s.replicas, 15);
    }

    #[test]
    fn get_metrics_serves_with_the_newest_counts_and_hpa_view() {
        let entry = WorkloadEntry::new(WorkloadKey::new("acme", "web"));
        let mut decision = published(105, true);
        decision.hpa = TEN;
        decision.plan.ceiling = 200;
        // Assumed: as the decision saw it.
        decision.scale = ScaleCounts::settled(100);
        assert_eq!(entry.serve(&decision).replicas, 111);
        // A view read from the cluster wins over the policy's.
        entry.set_hpa_view(Some(HpaView {
            source: HpaSource::Cluster,
            ..PASS_THROUGH
        }));
        assert_eq!(entry.serve(&decision).replicas, 105);
        entry.set_hpa_view(None);
        // Observed counts win over the assumed ones: against 104 running, the first
        // count the HPA applies above 105 is 115.
        entry.set_observed(ReplicaCounts {
            current: 104,
            ready: 104,
        });
        assert_eq!(entry.serve(&decision).replicas, 115);
    }

    #[test]
    fn an_answer_from_nothing_is_not_a_starting_point() {
        let entry = WorkloadEntry::new(WorkloadKey::new("acme", "web"));
        let mut nothing = published(2, true);
        nothing.basis = Basis::Nothing;
        entry.publish(nothing);
        assert_eq!(entry.decide_with(|_, known| known), Known::default());
        entry.publish(published(7, true));
        assert_eq!(entry.decide_with(|_, known| known.expected), Some(7));
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
