//! Worked examples of the planner.

use spillway_core::placement::{
    BoundPod, BurstRule, ClusterView, CostModel, DrainDecision, DrainLimits, Node, NodeKind, Plan,
    PlanInput, PlanReason, PlannerConfig, PodPlace, Resources, WorkloadPod, cost_rate, plan,
};

const GI: u64 = 1 << 30;

fn regular(name: &str, cpu: u64) -> Node {
    Node::new(name, NodeKind::Regular, Resources::new(cpu, 64 * GI, 110))
}

fn virtual_node() -> Node {
    Node::new(
        "vk",
        NodeKind::Virtual,
        Resources::new(1_000_000, 1 << 40, 10_000),
    )
}

fn other(node: &mut Node, cpu: u64) {
    let name = format!("{}/other-{}", node.name, node.pods.len());
    node.pods.push(BoundPod {
        name,
        requests: Resources::per_pod(cpu, 0),
    });
}

/// Binds a workload pod to `node` in the view and returns it.
fn own(cluster: &mut ClusterView, node: &str, name: &str, req: Resources, t: i64) -> WorkloadPod {
    if let Some(n) = cluster.nodes.iter_mut().find(|n| n.name == node) {
        n.pods.push(BoundPod {
            name: name.into(),
            requests: req,
        });
    }
    WorkloadPod {
        name: name.into(),
        node: Some(node.into()),
        ready: true,
        created_at: t,
    }
}

fn one_cpu() -> Resources {
    Resources::per_pod(1000, GI)
}

fn run(
    desired: u32,
    pods: &[WorkloadPod],
    cluster: &ClusterView,
    burst: BurstRule,
    config: &PlannerConfig,
) -> Plan {
    plan(
        &PlanInput {
            desired,
            requests: one_cpu(),
            pods,
            draining: &[],
            cluster,
            burst,
        },
        config,
    )
}

const ON: BurstRule = BurstRule {
    enabled: true,
    max_replicas: None,
};
const OFF: BurstRule = BurstRule {
    enabled: false,
    max_replicas: None,
};

#[test]
fn two_nodes_with_0_6_cpu_free_each_cannot_host_a_1_cpu_replica() {
    let mut a = regular("a", 1000);
    let mut b = regular("b", 1000);
    other(&mut a, 400);
    other(&mut b, 400);
    let cluster = ClusterView {
        nodes: vec![a, b, virtual_node()],
    };
    let cfg = PlannerConfig::default();

    let p = run(1, &[], &cluster, OFF, &cfg);
    assert_eq!((p.regular, p.burst, p.shortfall), (0, 0, 1));
    assert_eq!(
        p.reason,
        PlanReason::BurstDisabled {
            regular: 0,
            shortfall: 1
        }
    );
    assert_eq!(
        p.reason.to_string(),
        "regular nodes full at 0 replicas and burst is disabled: 1 replicas have no place"
    );
    assert!(!p.allow_burst_toleration);

    let p = run(1, &[], &cluster, ON, &cfg);
    assert_eq!((p.regular, p.burst, p.shortfall), (0, 1, 0));
    assert!(p.allow_burst_toleration);
}

#[test]
fn cordoned_nodes_take_nothing_and_their_pods_need_a_place() {
    let mut cluster = ClusterView {
        nodes: vec![regular("a", 4000), regular("b", 2000), virtual_node()],
    };
    cluster.nodes[0].schedulable = false;
    let pods = vec![own(&mut cluster, "a", "app-1", one_cpu(), 0)];
    let p = run(3, &pods, &cluster, ON, &PlannerConfig::default());
    // b holds 2; the pod on cordoned a is not counted as placed.
    assert_eq!((p.regular, p.burst), (2, 1));
    assert_eq!(p.deletion_costs[0].place, PodPlace::Unplaced);
    assert!(p.new_regular.slots.iter().all(|s| s.node == "b"));
}

#[test]
fn own_regular_pods_keep_their_places_and_are_not_counted_twice() {
    let mut cluster = ClusterView {
        nodes: vec![regular("a", 3000), virtual_node()],
    };
    let pods = vec![
        own(&mut cluster, "a", "app-1", one_cpu(), 0),
        own(&mut cluster, "a", "app-2", one_cpu(), 1),
    ];
    let p = run(5, &pods, &cluster, ON, &PlannerConfig::default());
    assert_eq!((p.regular, p.burst), (3, 2));
    assert_eq!(p.new_regular.placed, 1);
    let p = run(2, &pods, &cluster, ON, &PlannerConfig::default());
    assert_eq!(p.reason, PlanReason::AllRegular { regular: 2 });
    assert_eq!(p.new_regular.placed, 0);
}

#[test]
fn burst_cap_and_virtual_room_are_reported_as_shortfall() {
    let cluster = ClusterView {
        nodes: vec![regular("a", 2000), virtual_node()],
    };
    let capped = BurstRule {
        enabled: true,
        max_replicas: Some(3),
    };
    let p = run(10, &[], &cluster, capped, &PlannerConfig::default());
    assert_eq!(
        p.reason,
        PlanReason::BurstCapped {
            regular: 2,
            burst: 3,
            cap: 3,
            shortfall: 5
        }
    );

    let small = PlannerConfig {
        virtual_cap: Some(Resources::new(4000, 64 * GI, 100)),
        ..PlannerConfig::default()
    };
    let p = run(10, &[], &cluster, ON, &small);
    assert_eq!(
        p.reason,
        PlanReason::VirtualFull {
            regular: 2,
            burst: 4,
            shortfall: 4
        }
    );
    assert!(p.reason.to_string().contains("4 replicas have no place"));

    // A zero cap means no toleration either: nothing may land on virtual nodes.
    let zero = BurstRule {
        enabled: true,
        max_replicas: Some(0),
    };
    let p = run(3, &[], &cluster, zero, &PlannerConfig::default());
    assert_eq!((p.burst, p.shortfall), (0, 1));
    assert!(!p.allow_burst_toleration);
}

#[test]
fn scale_in_order_is_burst_newest_first_then_regular() {
    let mut cluster = ClusterView {
        nodes: vec![regular("a", 2000), virtual_node()],
    };
    let pods = vec![
        own(&mut cluster, "a", "r-old", one_cpu(), 0),
        own(&mut cluster, "a", "r-new", one_cpu(), 50),
        own(&mut cluster, "vk", "b-old", one_cpu(), 10),
        own(&mut cluster, "vk", "b-mid", one_cpu(), 20),
        own(&mut cluster, "vk", "b-new", one_cpu(), 30),
    ];
    let p = run(5, &pods, &cluster, ON, &PlannerConfig::default());
    let order: Vec<(&str, i32)> = p
        .deletion_costs
        .iter()
        .map(|c| (c.pod.as_str(), c.cost))
        .collect();
    assert_eq!(
        order,
        vec![
            ("b-new", -4),
            ("b-mid", -3),
            ("b-old", -2),
            ("r-new", 0),
            ("r-old", 0)
        ]
    );
    // Scaling in to 3 leaves the regular pods and the oldest burst pod.
    let p = run(3, &pods, &cluster, ON, &PlannerConfig::default());
    assert_eq!((p.regular, p.burst), (2, 1));
    assert!(p.drain_moves.is_empty());
}

#[test]
fn drain_back_proposes_moves_within_rate_and_threshold() {
    let mut cluster = ClusterView {
        nodes: vec![regular("a", 4000), virtual_node()],
    };
    let pods = vec![
        own(&mut cluster, "a", "r1", one_cpu(), 0),
        own(&mut cluster, "vk", "b1", one_cpu(), 10),
        own(&mut cluster, "vk", "b2", one_cpu(), 20),
        own(&mut cluster, "vk", "b3", one_cpu(), 30),
    ];
    let cfg = PlannerConfig {
        drain: DrainLimits {
            max_moves_per_tick: 2,
            ..DrainLimits::default()
        },
        ..PlannerConfig::default()
    };
    let p = run(4, &pods, &cluster, ON, &cfg);
    assert_eq!((p.regular, p.burst), (4, 0));
    let moved: Vec<(&str, &str)> = p
        .drain_moves
        .iter()
        .map(|m| (m.from_pod.as_str(), m.to_node.as_str()))
        .collect();
    assert_eq!(moved, vec![("b3", "a"), ("b2", "a")]);
    assert_eq!(
        p.drain,
        DrainDecision::Moves {
            proposed: 2,
            wanted: 3
        }
    );

    // Once b3 and b2 are in flight, the next plan proposes b1 only.
    let draining = vec!["b3".to_string(), "b2".to_string()];
    let p2 = plan(
        &PlanInput {
            desired: 4,
            requests: one_cpu(),
            pods: &pods,
            draining: &draining,
            cluster: &cluster,
            burst: ON,
        },
        &cfg,
    );
    assert_eq!(
        p2.drain_moves
            .iter()
            .map(|m| &m.from_pod[..])
            .collect::<Vec<_>>(),
        vec!["b1"]
    );
    assert_eq!(p2.deletion_costs[0].cost, i32::MIN);

    // Too small a gain: nothing moves.
    let stingy = PlannerConfig {
        drain: DrainLimits {
            min_savings_per_hour: 1.0,
            ..cfg.drain
        },
        ..cfg
    };
    let p3 = run(4, &pods, &cluster, ON, &stingy);
    assert!(p3.drain_moves.is_empty());
    assert!(matches!(
        p3.drain,
        DrainDecision::BelowSavingsThreshold { wanted: 3, .. }
    ));
}

#[test]
fn cost_rate_of_a_plan() {
    let cluster = ClusterView {
        nodes: vec![regular("a", 2000), virtual_node()],
    };
    let p = run(5, &[], &cluster, ON, &PlannerConfig::default());
    let model = CostModel {
        regular_per_replica_second: 0.001,
        burst_per_replica_second: 0.01,
    };
    let r = cost_rate(&model, &p);
    assert!((r.per_second - (2.0 * 0.001 + 3.0 * 0.01)).abs() < 1e-12);
    assert!((r.per_hour() - 115.2).abs() < 1e-9);
}

#[test]
fn nothing_desired() {
    let cluster = ClusterView::default();
    let p = run(0, &[], &cluster, ON, &PlannerConfig::default());
    assert_eq!(p.reason, PlanReason::NoReplicas);
    assert_eq!((p.regular, p.burst, p.shortfall), (0, 0, 0));
}

#[test]
fn past_the_cap_pods_are_withheld_and_the_rest_still_drain_back() {
    // One regular slot free, four burst pods running, and the tenant now caps burst at 2.
    let mut cluster = ClusterView {
        nodes: vec![regular("a", 4000), virtual_node()],
    };
    let mut pods = vec![];
    for i in 1..=3 {
        pods.push(own(&mut cluster, "a", &format!("r{i}"), one_cpu(), 0));
    }
    for i in 1..=4 {
        pods.push(own(&mut cluster, "vk", &format!("b{i}"), one_cpu(), i));
    }
    let capped = BurstRule {
        enabled: true,
        max_replicas: Some(2),
    };
    let p = run(8, &pods, &cluster, capped, &PlannerConfig::default());
    assert_eq!((p.regular, p.burst, p.shortfall), (4, 2, 2));
    assert_eq!(p.replicas, 6);
    // The ReplicaSet removes b4 to get to 6; of the three left, one more than the cap
    // allows moves into the free slot: the newest, b3.
    let moved: Vec<(&str, &str)> = p
        .drain_moves
        .iter()
        .map(|m| (m.from_pod.as_str(), m.to_node.as_str()))
        .collect();
    assert_eq!(moved, vec![("b3", "a")]);
    assert_eq!(p.deletion_costs[0].pod, "b4");
}
