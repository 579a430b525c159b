//! The decision loop: re-decides a workload the moment its signals change, and every
//! workload once per tick so time-driven rules (stabilization windows, schedules,
//! staleness) advance without new data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spillway_collector::ingest::Ingest;
use spillway_collector::{Signal, SignalView, WorkloadKey, clock};
use tokio::sync::watch;

use crate::conditions;
use crate::engine::{self, Decision, ReplicaCounts, Rule, WorkloadState};
use crate::hpa::{HpaView, ScaleCounts};
use crate::policy::{AppPolicy, PolicySet, PolicyStore};
use crate::serve::replicas::{Placed, ReplicaSource, ReplicaSync};
use crate::serve::workloads::{
    BandView, Basis, Known, ProposalView, Published, ServePlan, WorkloadEntry, Workloads,
    serve_plan,
};
use crate::telemetry::{DecisionLabels, Metrics, WorkloadLabels};

fn settled(replicas: u32) -> ReplicaCounts {
    ReplicaCounts {
        current: replicas,
        ready: replicas,
    }
}

/// Called with every decision that changed something (desired, activity or rule).
pub type DecisionObserver = Arc<dyn Fn(&WorkloadKey, &Published, Option<&Published>) + Send + Sync>;

pub struct DecisionLoop {
    pub policies: Arc<PolicyStore>,
    pub ingest: Arc<Ingest>,
    pub workloads: Arc<Workloads>,
    pub metrics: Arc<Metrics>,
    pub observer: Option<DecisionObserver>,
    pub tick: Duration,
    /// Where decided replicas run; its pod counts feed the next decision.
    pub replicas: Option<Arc<dyn ReplicaSource>>,
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
        // Read once per tick: the store's file status is the same for every workload.
        let mut refused = self.refused_tenants();
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let swapped = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = swapped.clone();
        self.policies.on_swap(Box::new(move || notify.notify_one()));
        loop {
            tokio::select! {
                // A new policy set decides at once, not up to a tick later.
                () = swapped.notified() => ticker.reset_immediately(),
                _ = self.ingest.changed() => {
                    let now_ms = clock::unix_ms();
                    for key in self.ingest.take_dirty() {
                        let policy = index.by_workload.get(&self.workloads.policy_key(&key));
                        if let (Some(entry), Some(policy)) = (self.workloads.get(&key), policy) {
                            self.decide_with_refused(&entry, policy, now_ms, &refused);
                        }
                    }
                }
                _ = ticker.tick() => {
                    refused = self.refused_tenants();
                    let current = self.policies.current();
                    if !Arc::ptr_eq(&current, &index.set) {
                        index = PolicyIndex::build(current);
                        self.sync_workloads(&index);
                    }
                    let now_ms = clock::unix_ms();
                    for entry in self.workloads.all() {
                        if let Some(policy) = index.by_workload.get(&self.workloads.policy_key(&entry.key)) {
                            self.decide_with_refused(&entry, policy, now_ms, &refused);
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    fn sync_workloads(&self, index: &PolicyIndex) {
        let mut keys: std::collections::HashSet<WorkloadKey> =
            index.by_workload.keys().cloned().collect();
        // Aliased workloads live as long as the policy entry they follow.
        keys.extend(
            self.workloads
                .aliased()
                .into_iter()
                .filter(|(_, policy)| index.by_workload.contains_key(policy))
                .map(|(workload, _)| workload),
        );
        for gone in self.workloads.all() {
            if !keys.contains(&gone.key) {
                self.metrics
                    .forget_workload(&WorkloadLabels::from(&gone.key));
            }
        }
        self.workloads.retain_only(&keys);
        if let Some(source) = &self.replicas {
            source.retain(&keys);
        }
        self.metrics.workloads.set(self.workloads.len() as i64);
    }

    /// Decides one workload and publishes the result.
    pub fn decide(&self, entry: &WorkloadEntry, policy: &AppPolicy, now_ms: i64) {
        let refused = self.refused_tenants();
        self.decide_with_refused(entry, policy, now_ms, &refused);
    }

    /// Decides every workload once, so KEDA's first calls (the gRPC server may take them
    /// the moment it listens) find a decision for every configured workload.
    pub fn prime(&self) {
        let index = PolicyIndex::build(self.policies.current());
        self.sync_workloads(&index);
        let refused = self.refused_tenants();
        let now_ms = clock::unix_ms();
        for entry in self.workloads.all() {
            if let Some(policy) = index
                .by_workload
                .get(&self.workloads.policy_key(&entry.key))
            {
                self.decide_with_refused(&entry, policy, now_ms, &refused);
            }
        }
    }

    /// [`Self::decide`] with the tenants whose latest policy file was refused, and why.
    fn decide_with_refused(
        &self,
        entry: &WorkloadEntry,
        policy: &AppPolicy,
        now_ms: i64,
        refused: &HashMap<String, String>,
    ) {
        let now = now_ms.div_euclid(1000);
        let view = self.ingest.store().view(&entry.key);
        let has_data = Signal::ALL.iter().any(|s| view.newest(*s).is_some());
        let hpa = entry
            .hpa_view()
            .unwrap_or_else(|| HpaView::from_policy(policy));
        let adjustment = entry.adjustment();
        let decided = entry.decide_with(|state, known| {
            let (decision, start, scale, basis) = match known {
                Known {
                    observed: Some(observed),
                    ..
                } => (
                    engine::decide(policy, &view, observed.counts, now, state),
                    observed.counts,
                    observed.scale,
                    Basis::Observed,
                ),
                // Nothing reads the replica counts: the HPA applied what it was expected
                // to after the previous answer.
                Known {
                    expected: Some(expected),
                    ..
                } => {
                    let start = settled(expected.saturating_sub(adjustment.surge));
                    (
                        engine::decide(policy, &view, start, now, state),
                        start,
                        ScaleCounts::settled(expected),
                        Basis::Expected,
                    )
                }
                // No data and no counts: the effective minimum (0 with `min: 0`, so an
                // idle app at zero gets 0, not an error). Decided on a scratch state so
                // that the first decision on data starts from the data.
                Known { .. } if !has_data => {
                    let start = settled(engine::effective_min(policy, now));
                    let mut scratch = WorkloadState::new(now);
                    (
                        engine::decide(policy, &view, start, now, &mut scratch),
                        start,
                        ScaleCounts::settled(start.current),
                        Basis::Nothing,
                    )
                }
                // Data but no counts (a start without the Kubernetes side): start from
                // what the data asks for, so no limit is applied against an invented
                // starting point. From here warm-up holds the highest count asked for.
                Known { .. } => {
                    let start = settled(engine::first_ask(policy, &view, now));
                    (
                        engine::decide(policy, &view, start, now, state),
                        start,
                        ScaleCounts::settled(start.current),
                        Basis::FirstData,
                    )
                }
            };
            let plan = ServePlan {
                desired: decision.desired,
                ceiling: decision.ceiling,
                max: policy.replicas.max,
                warming_up: decision.warming_up,
            };
            let served = serve_plan(plan, adjustment, scale, basis == Basis::Observed, hpa);
            if basis != Basis::Nothing {
                state.record_served(
                    now,
                    start.current,
                    served.expected.saturating_sub(adjustment.surge),
                );
            }
            (decision, start, scale, basis, plan, served)
        });
        let (decision, start, scale, basis, plan, served) = decided;
        let qps = view.mean(Signal::Qps, now, 5);
        // A count from nothing (no data, no replica count) is only what KEDA is told
        // meanwhile; nothing is placed for it.
        let placement = if basis == Basis::Nothing {
            None
        } else {
            self.place(entry, policy, served.expected, qps, now_ms)
        };
        let (rule, reason) = match served.explain(hpa.tolerance, scale) {
            Some(note) => (
                Rule::HpaTolerance.label(),
                format!("{}; {note}", decision.reason),
            ),
            None => (decision.rule.label(), decision.reason.to_string()),
        };
        let published = Published {
            desired: decision.desired,
            active: decision.active,
            rule,
            reason,
            activity: decision.activity,
            current: start.current,
            basis,
            scale,
            plan,
            hpa,
            served: served.replicas,
            expected: served.expected,
            at_ms: now_ms,
            qps,
            cpu_cores: view.mean(Signal::CpuCores, now, 5),
            memory_bytes: view.mean(Signal::MemoryBytes, now, 5),
            ready: start.ready,
            dominant: decision.dominant.map(Signal::as_str),
            proposals: decision
                .proposals
                .iter()
                .map(|p| ProposalView {
                    signal: p.signal.as_str().to_owned(),
                    value: p.value,
                    target: p.target,
                    replicas: p.replicas,
                })
                .collect(),
            missing: decision.missing.iter().map(|s| s.as_str()).collect(),
            partial: decision.lower_bound.iter().map(|s| s.as_str()).collect(),
            band: band_view(&decision),
            placement,
        };
        entry.observe_conditions(
            conditions::probes(
                &published,
                refused.get(&*entry.key.tenant).map(String::as_str),
            ),
            now_ms,
        );
        self.record_metrics(&entry.key, &published);
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

    /// Hands the count the HPA will run to the replica source, feeds what runs back to
    /// the next decision and ingests the pod usage it measured.
    fn place(
        &self,
        entry: &WorkloadEntry,
        policy: &AppPolicy,
        desired: u32,
        qps: Option<f64>,
        now_ms: i64,
    ) -> Option<Placed> {
        let Some(source) = self.replicas.as_ref() else {
            return entry.cluster_placement();
        };
        let outcome = source.sync(&ReplicaSync {
            key: &entry.key,
            policy,
            desired,
            qps,
            now_secs: now_ms.div_euclid(1000),
        })?;
        entry.set_observed(outcome.placed.counts());
        if !outcome.usage.is_empty() {
            let name: Arc<str> = Arc::from(source.name());
            self.metrics
                .count_ingested(source.name(), outcome.usage.len());
            for (signal, value) in outcome.usage {
                self.ingest
                    .apply(&name, signal, vec![(entry.key.clone(), value)], now_ms);
            }
        }
        Some(outcome.placed)
    }

    /// Tenants whose latest policy file was refused (the last good version serves), with
    /// the error.
    fn refused_tenants(&self) -> HashMap<String, String> {
        self.policies
            .status()
            .into_iter()
            .filter_map(|f| Some((f.serving_tenant?, f.error?)))
            .collect()
    }

    fn record_metrics(&self, key: &WorkloadKey, published: &Published) {
        let labels = WorkloadLabels::from(key);
        let m = &self.metrics;
        m.desired_replicas
            .get_or_create(&labels)
            .set(i64::from(published.desired));
        m.current_replicas
            .get_or_create(&labels)
            .set(i64::from(published.current));
        m.ready_replicas
            .get_or_create(&labels)
            .set(i64::from(published.ready));
        m.active
            .get_or_create(&labels)
            .set(i64::from(published.active));
        let floats = [
            (&m.qps, published.qps),
            (&m.cpu_cores, published.cpu_cores),
            (&m.memory_bytes, published.memory_bytes),
            (
                &m.band_low_replicas,
                published.band.as_ref().map(|b| b.low_replicas),
            ),
            (
                &m.band_high_replicas,
                published.band.as_ref().map(|b| b.high_replicas),
            ),
            (
                &m.load_replicas,
                published.band.as_ref().map(|b| b.load_replicas),
            ),
            (
                &m.cost_per_hour,
                published.placement.as_ref().map(|p| p.cost_per_hour),
            ),
        ];
        for (family, value) in floats {
            if let Some(value) = value {
                family.get_or_create(&labels).set(value);
            }
        }
        if let Some(placed) = &published.placement {
            for (family, value) in [
                (&m.regular_replicas, placed.regular),
                (&m.burst_replicas, placed.burst),
                (&m.shortfall_replicas, placed.shortfall),
            ] {
                family.get_or_create(&labels).set(i64::from(value));
            }
        }
        m.decisions
            .get_or_create(&DecisionLabels {
                tenant: labels.tenant,
                app: labels.app,
                rule: published.rule.to_owned(),
            })
            .inc();
    }
}

/// The band in the dominant signal's units and in replicas at target.
fn band_view(decision: &Decision) -> Option<BandView> {
    let signal = decision.band.signal?;
    let target = decision
        .proposals
        .iter()
        .find(|p| p.signal == signal)
        .map(|p| (p.value, p.target))?;
    let (value, per_replica) = target;
    // NaN or no capacity per replica: there is no band to draw.
    if per_replica.is_nan() || per_replica <= 0.0 {
        return None;
    }
    Some(BandView {
        signal: signal.as_str().to_owned(),
        low: decision.band.low,
        high: decision.band.high,
        low_replicas: decision.band.low / per_replica,
        high_replicas: decision.band.high / per_replica,
        load_replicas: value / per_replica,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Mutex, PoisonError};

    use spillway_collector::store::StoreLimits;

    use super::*;
    use crate::policy::parse_policy;
    use crate::serve::replicas::SyncOutcome;

    /// Runs what it is asked for, one replica short of Ready, and reports CPU.
    #[derive(Default)]
    struct Fake {
        asked: Mutex<Vec<u32>>,
    }

    impl ReplicaSource for Fake {
        fn name(&self) -> &str {
            "fake"
        }

        fn sync(&self, sync: &ReplicaSync<'_>) -> Option<SyncOutcome> {
            self.asked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sync.desired);
            Some(SyncOutcome {
                placed: Placed {
                    pods: sync.desired,
                    ready: sync.desired.saturating_sub(1),
                    regular: 2,
                    burst: sync.desired.saturating_sub(2),
                    shortfall: 0,
                    cost_per_hour: 0.5,
                    reason: "fake".into(),
                },
                usage: vec![(Signal::CpuCores, 1.5)],
            })
        }

        fn retain(&self, _keep: &HashSet<WorkloadKey>) {}
    }

    const POLICY: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: acme }
spec:
  namespaces: [acme]
  defaults:
    replicas: { min: 1, max: 20 }
    signals:
      window: 2s
      qps: { targetPerReplica: 150 }
  apps:
    web: {}
";

    #[test]
    fn placement_is_published_and_what_runs_feeds_the_next_decision() {
        let set = PolicySet::from_policies(vec![
            parse_policy("acme.yaml", POLICY).expect("test policy parses"),
        ])
        .expect("test policy is valid");
        let policies = Arc::new(PolicyStore::from_set(set));
        let fake = Arc::new(Fake::default());
        let source: Arc<dyn ReplicaSource> = fake.clone();
        let decisions = DecisionLoop {
            policies: policies.clone(),
            ingest: Ingest::new(StoreLimits::default()),
            workloads: Arc::new(Workloads::new()),
            metrics: Arc::new(Metrics::new()),
            observer: None,
            tick: Duration::from_secs(1),
            replicas: Some(source),
        };
        let key = WorkloadKey::new("acme", "web");
        let policy = policies
            .current()
            .workloads()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p)
            .expect("web is in the policy");
        let entry = decisions.workloads.get_or_insert(&key);
        let t0: i64 = 1_800_000_000_000;
        let qps: Arc<str> = Arc::from("gateway");
        for s in 0..3 {
            decisions
                .ingest
                .apply(&qps, Signal::Qps, vec![(key.clone(), 450.0)], t0 + s * 1000);
        }

        decisions.decide(&entry, &policy, t0 + 2000);
        let first = entry.latest().expect("a decision with data");
        assert_eq!(first.desired, 3, "450/s at 150 per replica");
        let placed = first.placement.as_ref().expect("placement published");
        assert_eq!((placed.regular, placed.burst), (2, 1));
        assert!(first.band.is_some() && first.dominant == Some("qps"));

        decisions.decide(&entry, &policy, t0 + 3000);
        let second = entry.latest().expect("decided");
        assert_eq!(
            (second.current, second.ready),
            (3, 2),
            "the next decision starts from what the source runs"
        );
        assert_eq!(
            second.cpu_cores,
            Some(1.5),
            "the source's pod usage is ingested"
        );
        assert_eq!(
            *fake.asked.lock().unwrap_or_else(PoisonError::into_inner),
            vec![3, 3]
        );
        let text = decisions.metrics.encode_text();
        for needle in [
            "spillway_workload_burst_replicas{tenant=\"acme\",app=\"web\"} 1",
            "spillway_workload_ready_replicas{tenant=\"acme\",app=\"web\"} 2",
            "spillway_workload_cost_per_hour{tenant=\"acme\",app=\"web\"} 0.5",
            "spillway_ingested_values_total{source=\"fake\"}",
            "spillway_workload_band_high_replicas{tenant=\"acme\",app=\"web\"}",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        let kinds: Vec<_> = entry.conditions().iter().map(|c| c.kind).collect();
        assert_eq!(kinds, crate::conditions::ConditionType::ALL.to_vec());
    }

    /// A loop with no replica source over one tenant file, and its `web` policy.
    fn bare_loop(defaults: &str) -> (DecisionLoop, Arc<AppPolicy>, WorkloadKey) {
        let text = format!(
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: acme }}\nspec:\n  namespaces: [acme]\n  defaults:\n{}  apps:\n    web: {{}}\n",
            defaults
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        );
        let set = PolicySet::from_policies(vec![
            parse_policy("acme.yaml", &text).expect("test policy parses"),
        ])
        .expect("test policy is valid");
        let policies = Arc::new(PolicyStore::from_set(set));
        let key = WorkloadKey::new("acme", "web");
        let policy = policies
            .current()
            .workloads()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p)
            .expect("web is in the policy");
        let decisions = DecisionLoop {
            policies,
            ingest: Ingest::new(StoreLimits::default()),
            workloads: Arc::new(Workloads::new()),
            metrics: Arc::new(Metrics::new()),
            observer: None,
            tick: Duration::from_secs(1),
            replicas: None,
        };
        (decisions, policy, key)
    }

    const T0: i64 = 1_800_000_000_000;

    fn feed(decisions: &DecisionLoop, key: &WorkloadKey, qps: f64, from_s: i64, to_s: i64) {
        let source: Arc<str> = Arc::from("gateway");
        for s in from_s..to_s {
            decisions.ingest.apply(
                &source,
                Signal::Qps,
                vec![(key.clone(), qps)],
                T0 + s * 1000,
            );
        }
    }

    const WEB: &str = "replicas: { min: 1, max: 200 }
signals: { window: 2s, qps: { targetPerReplica: 100 } }
hysteresis: { upWindow: 0s, downWindow: 60s }
panic: { enabled: false }
limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }";

    #[test]
    fn the_decision_holds_on_spec_and_is_served_against_status() {
        let (decisions, policy, key) = bare_loop(WEB);
        let entry = decisions.workloads.get_or_insert(&key);
        feed(&decisions, &key, 9_650.0, 0, 120);
        // A rollout: spec 100, status 125.
        entry.set_observed_scale(
            ReplicaCounts {
                current: 100,
                ready: 100,
            },
            ScaleCounts {
                spec: 100,
                status: 125,
            },
        );
        decisions.decide(&entry, &policy, T0 + 119_000);
        let d = entry.latest().expect("decided");
        assert_eq!(
            (d.current, d.desired, d.served, d.expected),
            (100, 100, 100, 100)
        );
        assert_eq!(
            entry.serve(&d).replicas,
            100,
            "GetMetrics answers spec's 100"
        );
        // Status within the HPA's tolerance: the HPA will write 105 whatever is
        // answered; the decision says so.
        entry.set_observed_scale(
            ReplicaCounts {
                current: 100,
                ready: 100,
            },
            ScaleCounts {
                spec: 100,
                status: 105,
            },
        );
        decisions.decide(&entry, &policy, T0 + 119_500);
        let d = entry.latest().expect("decided");
        assert_eq!((d.served, d.expected, d.rule), (100, 105, "hpa_tolerance"));
        assert!(d.reason.contains("rollout"), "{}", d.reason);
    }

    #[test]
    fn with_no_data_and_no_counts_the_effective_minimum_is_served() {
        let (decisions, policy, key) = bare_loop(&WEB.replace("min: 1", "min: 3"));
        let entry = decisions.workloads.get_or_insert(&key);
        decisions.decide(&entry, &policy, T0);
        let d = entry.latest().expect("a decision from the start");
        assert_eq!((d.served, d.active, d.basis), (3, true, Basis::Nothing));
        let warming = entry
            .conditions()
            .into_iter()
            .find(|c| c.kind == crate::conditions::ConditionType::WarmingUp)
            .expect("a WarmingUp condition");
        assert_eq!(warming.reason, "NoDataYet");
        // The first data decides from the data, not from the 3 served meanwhile.
        feed(&decisions, &key, 1_150.0, 0, 3);
        decisions.decide(&entry, &policy, T0 + 2_000);
        let d = entry.latest().expect("decided");
        assert_eq!((d.served, d.basis), (12, Basis::FirstData));
        // Then warm-up holds the highest count asked for since the start...
        feed(&decisions, &key, 450.0, 3, 10);
        decisions.decide(&entry, &policy, T0 + 9_000);
        let d = entry.latest().expect("decided");
        assert_eq!((d.served, d.rule), (12, "restart_warmup"));
        // ...and never holds a scale-up back.
        feed(&decisions, &key, 2_050.0, 10, 13);
        decisions.decide(&entry, &policy, T0 + 12_000);
        assert_eq!(entry.latest().expect("decided").served, 21);
    }

    #[test]
    fn with_min_zero_and_no_data_zero_is_served_and_idle() {
        let (decisions, policy, key) = bare_loop(&WEB.replace("min: 1", "min: 0"));
        let entry = decisions.workloads.get_or_insert(&key);
        decisions.decide(&entry, &policy, T0);
        let d = entry.latest().expect("a decision from the start");
        assert_eq!((d.served, d.active), (0, false));
    }

    #[test]
    fn during_warm_up_what_runs_is_a_floor_when_it_is_observed() {
        let (decisions, policy, key) = bare_loop(WEB);
        let entry = decisions.workloads.get_or_insert(&key);
        entry.set_observed_scale(
            ReplicaCounts {
                current: 20,
                ready: 20,
            },
            ScaleCounts::settled(20),
        );
        // 5 s of data asking for 8: warming up, so 20 stays.
        feed(&decisions, &key, 750.0, 0, 6);
        decisions.decide(&entry, &policy, T0 + 5_000);
        let d = entry.latest().expect("decided");
        assert_eq!((d.served, d.rule), (20, "restart_warmup"));
    }
}
