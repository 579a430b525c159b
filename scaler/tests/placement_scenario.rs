//! A traffic spike through the simulated cluster: regular nodes fill, the rest bursts to
//! the virtual node, scale-in removes burst pods first, and when other workloads free
//! regular room the remaining burst pods are drained back over several ticks.

use spillway_scaler::placement::sim::{SimConfig, Simulation, TickReport};
use spillway_scaler::placement::{
    BurstRule, CostModel, DrainAction, DrainLimits, PlanReason, PlannerConfig, PodPlace, Resources,
};

const TICK: i64 = 10;

fn simulation() -> Simulation {
    // 3 regular nodes of 4 CPU; other workloads hold 1 CPU on each, leaving room for 9
    // one-CPU replicas.
    let config = SimConfig {
        regular_nodes: 3,
        regular_node: Resources::new(4000, 16 << 30, 110),
        virtual_node: Resources::new(1_000_000, 4 << 40, 10_000),
        requests: Resources::per_pod(1000, 2 << 30),
        regular_start_secs: 10,
        virtual_start_secs: 20,
    };
    let planner = PlannerConfig {
        virtual_cap: None,
        drain: DrainLimits {
            max_moves_per_tick: 1,
            max_in_flight: 2,
            min_available: 0,
            max_unavailable: 1,
            surge_timeout_secs: 120,
            min_savings_per_hour: 0.01,
        },
        cost: CostModel {
            regular_per_replica_second: 0.000_007,
            burst_per_replica_second: 0.000_016,
        },
    };
    let burst = BurstRule {
        enabled: true,
        max_replicas: Some(10),
    };
    let mut sim = Simulation::new(config, planner, burst);
    for i in 1..=3 {
        assert!(sim.cluster.add_background(
            &format!("regular-{i}"),
            &format!("other-{i}"),
            Resources::per_pod(1000, 1 << 30),
        ));
    }
    sim
}

/// Desired replicas over time: steady at 4, a spike to 14, down to 12, steady after.
fn desired_at(t: i64) -> u32 {
    match t {
        ..30 => 4,
        30..120 => 14,
        _ => 12,
    }
}

#[test]
fn spike_burst_scale_in_and_drain_back() {
    let mut sim = simulation();
    let mut timeline: Vec<TickReport> = Vec::new();
    for step in 0..=30 {
        let now = step * TICK;
        if now == 180 {
            // Other workloads leave two nodes: room for 2 more replicas.
            sim.cluster.remove_background("other-1");
            sim.cluster.remove_background("other-2");
        }
        if now == 250 {
            // And the third: room for the last burst replica.
            sim.cluster.remove_background("other-3");
        }
        let report = sim.tick(now, desired_at(now));
        println!("{report}");
        timeline.push(report);
    }
    println!("total cost {:.4}", sim.total_cost());

    let at = |t: i64| -> &TickReport {
        timeline
            .iter()
            .find(|r| r.now == t)
            .unwrap_or_else(|| panic!("no tick at {t}"))
    };

    // Before the spike: everything regular.
    assert_eq!(at(20).after.regular_ready, 4);
    assert_eq!(at(20).after.burst(), 0);
    assert_eq!(at(20).plan.reason, PlanReason::AllRegular { regular: 4 });

    // The spike: regular fills to its 9 places, the other 5 go virtual.
    let spike = at(30);
    assert_eq!((spike.plan.regular, spike.plan.burst), (9, 5));
    assert_eq!(
        spike.plan.reason,
        PlanReason::Burst {
            regular: 9,
            burst: 5
        }
    );
    assert_eq!(spike.after.regular(), 9);
    assert_eq!(spike.after.burst(), 5);
    assert!(spike.plan.allow_burst_toleration);
    // Virtual pods start slower: Ready two ticks later.
    assert_eq!(at(40).after.burst_ready, 0);
    assert_eq!(at(50).after.burst_ready, 5);
    assert_eq!(at(110).after.regular_ready + at(110).after.burst_ready, 14);

    // Back down to 12: the two newest burst pods go, no regular pod does.
    let down = at(120);
    assert_eq!(down.after.regular(), 9);
    assert_eq!(down.after.burst(), 3);
    assert_eq!((down.plan.regular, down.plan.burst), (9, 3));
    // Which ones: the spike created app-5..app-14 at once, app-10..app-14 went virtual;
    // the newest two (by name, at equal creation time) were removed.
    let burst_after_scale_in: Vec<&str> = at(130)
        .plan
        .deletion_costs
        .iter()
        .filter(|c| c.place == PodPlace::Burst)
        .map(|c| c.pod.as_str())
        .collect();
    assert_eq!(burst_after_scale_in, vec!["app-12", "app-11", "app-10"]);

    // Room frees at 180 (two places) and 250 (one): the burst pods move back, newest
    // first, one new move per tick at most, each surge before its eviction.
    let mut surges = 0;
    let mut evictions = 0;
    for r in &timeline {
        let started = r
            .actions
            .iter()
            .filter(|a| matches!(a, DrainAction::Surge { .. }))
            .count();
        assert!(started <= 1, "t={} started {started} moves", r.now);
        surges += started;
        evictions += r
            .actions
            .iter()
            .filter(|a| matches!(a, DrainAction::Evict { .. }))
            .count();
        // Never below desired once the workload was whole.
        if r.now >= 60 {
            assert!(
                r.after.regular_ready + r.after.burst_ready >= r.desired,
                "t={} ready dipped below desired: {r}",
                r.now
            );
        }
        if r.now < 180 {
            assert!(
                r.actions.is_empty(),
                "t={} drained before room freed",
                r.now
            );
        }
    }
    assert_eq!((surges, evictions), (3, 3));
    let order: Vec<&str> = timeline
        .iter()
        .flat_map(|r| &r.actions)
        .filter_map(|a| match a {
            DrainAction::Evict { pod } => Some(pod.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["app-12", "app-11", "app-10"]);
    for r in &timeline {
        for a in &r.actions {
            if let DrainAction::Evict { pod } = a {
                let surged_before = timeline.iter().take_while(|e| e.now < r.now).any(|e| {
                    e.actions.iter().any(
                        |x| matches!(x, DrainAction::Surge { from_pod, .. } if from_pod == pod),
                    )
                });
                assert!(
                    surged_before,
                    "{pod} evicted at t={} without a surge first",
                    r.now
                );
            }
        }
    }
    let first_surge = timeline.iter().position(|r| {
        r.actions
            .iter()
            .any(|a| matches!(a, DrainAction::Surge { .. }))
    });
    let last_evict = timeline.iter().rposition(|r| {
        r.actions
            .iter()
            .any(|a| matches!(a, DrainAction::Evict { .. }))
    });
    match (first_surge, last_evict) {
        (Some(s), Some(e)) => assert!(e > s + 1, "drain took {} ticks", e - s),
        other => panic!("no drain happened: {other:?}"),
    }

    // Between the two frees: 11 regular, 1 burst.
    assert_eq!(
        (at(240).after.regular_ready, at(240).after.burst_ready),
        (11, 1)
    );

    // The end: all 12 regular, everything Ready, nothing in flight, cheaper than the spike.
    let end = timeline.last().map(|r| r.after).unwrap_or_default();
    assert_eq!((end.regular_ready, end.burst_ready), (12, 0));
    assert_eq!(
        timeline.last().map(|r| r.plan.reason.clone()),
        Some(PlanReason::AllRegular { regular: 12 })
    );
    assert!(timeline.last().map(|r| r.cost_per_hour) < Some(down.cost_per_hour));
    assert_eq!(
        end.regular_starting + end.burst_starting + end.unscheduled,
        0
    );
    assert!(sim.drain.in_flight.is_empty());
}
