//! Property tests of the planner over random clusters and workloads.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use spillway_core::placement::{
    BoundPod, BurstRule, ClusterView, DRAINING_COST, DrainLimits, Node, NodeKind, Plan, PlanInput,
    PlanReason, PlannerConfig, PodPlace, Resources, WorkloadPod, plan,
};

const GI: u64 = 1 << 30;

#[derive(Debug, Clone)]
struct Case {
    cluster: ClusterView,
    pods: Vec<WorkloadPod>,
    draining: Vec<String>,
    requests: Resources,
    desired: u32,
    burst: BurstRule,
    config: PlannerConfig,
}

fn resources(max_cpu: u64, max_gi: u64, max_pods: u64) -> impl Strategy<Value = Resources> {
    (0..=max_cpu, 0..=max_gi * 4, 0..=max_pods)
        .prop_map(|(c, quarter_gi, p)| Resources::new(c * 100, quarter_gi * (GI / 4), p))
}

fn node(kind: NodeKind) -> impl Strategy<Value = (Resources, bool, Vec<Resources>)> {
    let alloc = match kind {
        NodeKind::Regular => resources(80, 32, 30).boxed(),
        NodeKind::Virtual => resources(200, 64, 60).boxed(),
    };
    (
        alloc,
        prop::bool::weighted(0.8),
        prop::collection::vec(resources(20, 6, 1), 0..5),
    )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(node(NodeKind::Regular), 0..6),
        prop::collection::vec(node(NodeKind::Virtual), 0..3),
        // Each workload pod: node index (None = unscheduled), ready, creation time.
        prop::collection::vec(
            (
                prop::option::weighted(0.85, 0usize..9),
                any::<bool>(),
                0i64..20,
            ),
            0..16,
        ),
        (1u64..=30, 0u64..=8),
        0u32..30,
        (any::<bool>(), prop::option::of(0u32..12)),
        prop::option::of(resources(100, 32, 20)),
        (0u32..4, any::<bool>(), 0u32..4),
    )
        .prop_map(
            |(
                regular,
                virt,
                pods,
                (cpu, quarter_gi),
                desired,
                (en, max),
                vcap,
                (rate, cheap, drain_pick),
            )| {
                let requests = Resources::per_pod(cpu * 100, quarter_gi * (GI / 4));
                let mut nodes = Vec::new();
                for (kind, list) in [(NodeKind::Regular, regular), (NodeKind::Virtual, virt)] {
                    for (i, (alloc, schedulable, others)) in list.into_iter().enumerate() {
                        let name = format!("{kind}-{i}");
                        let mut n = Node::new(name.clone(), kind, alloc);
                        n.schedulable = schedulable;
                        n.pods = others
                            .into_iter()
                            .enumerate()
                            .map(|(j, r)| BoundPod {
                                name: format!("{name}/other-{j}"),
                                requests: Resources::per_pod(r.cpu_millis, r.memory_bytes),
                            })
                            .collect();
                        nodes.push(n);
                    }
                }
                let mut wpods = Vec::new();
                for (i, (at, ready, created)) in pods.into_iter().enumerate() {
                    let name = format!("app-{i:02}");
                    let count = nodes.len().max(1);
                    let node = at.and_then(|k| nodes.get_mut(k % count));
                    let node_name = node.map(|n| {
                        n.pods.push(BoundPod {
                            name: name.clone(),
                            requests,
                        });
                        n.name.clone()
                    });
                    wpods.push(WorkloadPod {
                        ready: ready && node_name.is_some(),
                        node: node_name,
                        name,
                        created_at: created,
                    });
                }
                let cluster = ClusterView { nodes };
                // A few burst pods already being moved back.
                let draining = wpods
                    .iter()
                    .filter(|p| {
                        p.node
                            .as_deref()
                            .and_then(|n| cluster.node(n))
                            .is_some_and(|n| n.kind == NodeKind::Virtual)
                    })
                    .take(drain_pick as usize)
                    .map(|p| p.name.clone())
                    .collect();
                let mut config = PlannerConfig {
                    virtual_cap: vcap,
                    drain: DrainLimits {
                        max_moves_per_tick: rate,
                        ..DrainLimits::default()
                    },
                    ..PlannerConfig::default()
                };
                if cheap {
                    config.drain.min_savings_per_hour = 1e9;
                }
                Case {
                    cluster,
                    pods: wpods,
                    draining,
                    requests,
                    desired,
                    burst: BurstRule {
                        enabled: en,
                        max_replicas: max,
                    },
                    config,
                }
            },
        )
}

fn run(c: &Case) -> Plan {
    plan(
        &PlanInput {
            desired: c.desired,
            requests: c.requests,
            pods: &c.pods,
            draining: &c.draining,
            cluster: &c.cluster,
            burst: c.burst,
        },
        &c.config,
    )
}

/// Pods the ReplicaSet removes to get down to `desired`, recomputed from the plan's order.
fn victims(c: &Case, p: &Plan) -> BTreeSet<String> {
    let staying: Vec<&str> = p
        .deletion_costs
        .iter()
        .filter(|d| !c.draining.contains(&d.pod))
        .map(|d| d.pod.as_str())
        .collect();
    let n = staying.len().saturating_sub(c.desired as usize);
    staying[..n].iter().map(|s| s.to_string()).collect()
}

/// Each node's usage after scale-in victims leave and the plan's new replicas arrive.
fn usage_after(c: &Case, p: &Plan) -> BTreeMap<String, Resources> {
    let gone = victims(c, p);
    let mut used: BTreeMap<String, Resources> = c
        .cluster
        .nodes
        .iter()
        .map(|n| {
            let u = n
                .pods
                .iter()
                .filter(|bp| !gone.contains(&bp.name))
                .fold(Resources::ZERO, |a, bp| a.saturating_add(&bp.requests));
            (n.name.clone(), u)
        })
        .collect();
    for s in &p.new_regular.slots {
        if let Some(u) = used.get_mut(&s.node) {
            *u = u.saturating_add(&c.requests.times(u64::from(s.replicas)));
        }
    }
    used
}

/// `used <= allocatable` on every dimension the replica requests. The scheduler ignores
/// a dimension a pod does not request, so a node already over-committed on memory still
/// takes a CPU-only pod; such a dimension cannot be held against the plan.
fn fits_where_requested(request: &Resources, used: &Resources, allocatable: &Resources) -> bool {
    (request.cpu_millis == 0 || used.cpu_millis <= allocatable.cpu_millis)
        && (request.memory_bytes == 0 || used.memory_bytes <= allocatable.memory_bytes)
        && used.pods <= allocatable.pods
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn never_places_where_it_does_not_fit(c in case()) {
        let p = run(&c);
        let used = usage_after(&c, &p);
        for s in &p.new_regular.slots {
            let n = c.cluster.node(&s.node).expect("slot on a known node");
            prop_assert_eq!(n.kind, NodeKind::Regular);
            prop_assert!(n.schedulable, "slot on unschedulable {}", n.name);
            prop_assert!(s.replicas > 0);
            let u = used[&s.node];
            prop_assert!(fits_where_requested(&c.requests, &u, &n.allocatable),
                "{}: {} > {}", n.name, u, n.allocatable);
        }
        // Burst slots: on schedulable virtual nodes, within their capacity once the
        // workload's own pods there are set aside (they are the slots).
        let own: BTreeSet<&str> = c.pods.iter().map(|p| p.name.as_str()).collect();
        for s in &p.burst_slots.slots {
            let n = c.cluster.node(&s.node).expect("slot on a known node");
            prop_assert_eq!(n.kind, NodeKind::Virtual);
            prop_assert!(n.schedulable);
            let others = n.pods.iter().filter(|bp| !own.contains(bp.name.as_str()))
                .fold(Resources::ZERO, |a, bp| a.saturating_add(&bp.requests));
            let total = others.saturating_add(&c.requests.times(u64::from(s.replicas)));
            let cap = c.config.virtual_cap.unwrap_or(n.allocatable);
            prop_assert!(fits_where_requested(&c.requests, &total, &cap),
                "{}: {} > {}", n.name, total, cap);
        }
        let slots: u32 = p.burst_slots.slots.iter().map(|s| s.replicas).sum();
        prop_assert_eq!(slots, p.burst);
    }

    #[test]
    fn regular_first(c in case()) {
        let p = run(&c);
        prop_assert_eq!(p.regular + p.burst + p.shortfall, p.desired);
        prop_assert_eq!(p.desired, c.desired);
        if p.burst > 0 || p.shortfall > 0 {
            let used = usage_after(&c, &p);
            for n in c.cluster.nodes.iter().filter(|n| n.kind == NodeKind::Regular && n.schedulable) {
                let free = n.allocatable.saturating_sub(&used[&n.name]);
                prop_assert_eq!(
                    free.copies_of(&c.requests), 0,
                    "burst {} / shortfall {} while {} has room ({})", p.burst, p.shortfall, n.name, free
                );
            }
        }
    }

    #[test]
    fn burst_respects_the_rule(c in case()) {
        let p = run(&c);
        if !c.burst.enabled {
            prop_assert_eq!(p.burst, 0);
            prop_assert!(!p.allow_burst_toleration);
        }
        if let Some(max) = c.burst.max_replicas {
            prop_assert!(p.burst <= max);
        }
        prop_assert_eq!(p.allow_burst_toleration, c.burst.cap() > 0);
        // Never ask for pods that, tolerating the taint, would overrun the cap.
        prop_assert!(p.regular + p.burst <= p.replicas && p.replicas <= p.desired);
        if p.allow_burst_toleration && matches!(p.reason, PlanReason::BurstCapped { .. }) {
            prop_assert_eq!(p.replicas, p.regular + p.burst);
        }
        // A shortfall is always explained as one.
        match p.reason {
            PlanReason::BurstDisabled { shortfall, .. }
            | PlanReason::BurstCapped { shortfall, .. }
            | PlanReason::VirtualFull { shortfall, .. } => {
                prop_assert!(shortfall > 0);
                prop_assert_eq!(shortfall, p.shortfall);
            }
            PlanReason::NoReplicas | PlanReason::AllRegular { .. } | PlanReason::Burst { .. } => {
                prop_assert_eq!(p.shortfall, 0);
            }
        }
        prop_assert!(!p.reason.to_string().is_empty());
    }

    #[test]
    fn scale_in_removes_burst_pods_first(c in case()) {
        let p = run(&c);
        prop_assert_eq!(p.deletion_costs.len(), c.pods.len());
        let by_name: BTreeMap<&str, &WorkloadPod> = c.pods.iter().map(|w| (w.name.as_str(), w)).collect();
        let live: Vec<_> = p.deletion_costs.iter().filter(|d| !c.draining.contains(&d.pod)).collect();
        let max_burst = live.iter().filter(|d| d.place == PodPlace::Burst).map(|d| d.cost).max();
        let min_regular = live.iter().filter(|d| d.place == PodPlace::Regular).map(|d| d.cost).min();
        if let (Some(b), Some(r)) = (max_burst, min_regular) {
            prop_assert!(b < r, "burst cost {} not below regular {}", b, r);
        }
        // Among burst pods, newer means cheaper to delete.
        let burst: Vec<_> = live.iter().filter(|d| d.place == PodPlace::Burst).collect();
        for a in &burst {
            for b in &burst {
                let (wa, wb) = (by_name[a.pod.as_str()], by_name[b.pod.as_str()]);
                if (wa.created_at, &wa.name) > (wb.created_at, &wb.name) {
                    prop_assert!(a.cost < b.cost, "{} newer than {} but cost {} >= {}", a.pod, b.pod, a.cost, b.cost);
                }
            }
        }
        for d in p.deletion_costs.iter().filter(|d| c.draining.contains(&d.pod)) {
            prop_assert_eq!(d.cost, DRAINING_COST);
        }
        // The listed order puts Ready burst pods before Ready regular ones.
        let ready_places: Vec<PodPlace> = live.iter()
            .filter(|d| by_name[d.pod.as_str()].ready)
            .map(|d| d.place)
            .filter(|pl| *pl != PodPlace::Unplaced)
            .collect();
        let first_regular = ready_places.iter().position(|pl| *pl == PodPlace::Regular);
        let last_burst = ready_places.iter().rposition(|pl| *pl == PodPlace::Burst);
        if let (Some(r), Some(b)) = (first_regular, last_burst) {
            prop_assert!(b < r, "a Ready regular pod precedes a Ready burst pod");
        }
    }

    #[test]
    fn drain_moves_are_bounded_and_real(c in case()) {
        let p = run(&c);
        prop_assert!(p.drain_moves.len() as u32 <= c.config.drain.max_moves_per_tick);
        let mut from = BTreeSet::new();
        for m in &p.drain_moves {
            prop_assert!(from.insert(m.from_pod.clone()), "{} moved twice", m.from_pod);
            prop_assert!(!c.draining.contains(&m.from_pod));
            let pod = c.pods.iter().find(|w| w.name == m.from_pod).expect("a workload pod");
            let n = pod.node.as_deref().and_then(|n| c.cluster.node(n)).expect("bound");
            prop_assert_eq!(n.kind, NodeKind::Virtual);
            let target = c.cluster.node(&m.to_node).expect("target exists");
            prop_assert_eq!(target.kind, NodeKind::Regular);
            prop_assert!(target.schedulable);
            prop_assert!(p.new_regular.slots.iter().any(|s| s.node == m.to_node));
        }
        if c.config.drain.min_savings_per_hour >= 1e9 {
            prop_assert!(p.drain_moves.is_empty(), "moves despite savings threshold");
        }
    }

    #[test]
    fn deterministic(c in case()) {
        prop_assert_eq!(run(&c), run(&c));
    }
}
