//! A traffic spike through the simulated cluster: regular nodes fill, the rest bursts to
//! the virtual node, scale-in removes burst pods first, and when other workloads free
//! regular room the remaining burst pods are drained back over several ticks.

use spillway_core::placement::sim::{SimConfig, Simulation, TickReport};
use spillway_core::placement::{
    BurstRule, CostModel, DrainAction, DrainLimits, DrainObservation, PlanInput, PlanReason,
    PlannerConfig, PodPlace, Resources, drain_step, plan,
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

#[test]
fn without_burst_the_spike_is_a_reported_shortfall() {
    let mut sim = simulation();
    sim.burst = BurstRule {
        enabled: false,
        max_replicas: None,
    };
    let mut last = None;
    for step in 0..=6 {
        let now = step * TICK;
        let r = sim.tick(now, if now < 30 { 4 } else { 14 });
        println!("{r}");
        last = Some(r);
    }
    let r = last.unwrap_or_else(|| panic!("no ticks"));
    assert_eq!((r.plan.regular, r.plan.burst, r.plan.shortfall), (9, 0, 5));
    assert_eq!(
        r.plan.reason,
        PlanReason::BurstDisabled {
            regular: 9,
            shortfall: 5
        }
    );
    assert!(!r.plan.allow_burst_toleration);
    // The ReplicaSet still creates the pods; they stay Pending, nothing lands on virtual.
    assert_eq!(r.after.regular_ready, 9);
    assert_eq!(r.after.burst(), 0);
    assert_eq!(r.after.unscheduled, 5);
}

#[test]
fn a_capped_burst_stops_at_the_cap() {
    let mut sim = simulation();
    sim.burst.max_replicas = Some(2);
    let mut last = None;
    for step in 0..=6 {
        last = Some(sim.tick(step * TICK, 14));
    }
    let r = last.unwrap_or_else(|| panic!("no ticks"));
    assert_eq!(
        r.plan.reason,
        PlanReason::BurstCapped {
            regular: 9,
            burst: 2,
            cap: 2,
            shortfall: 3
        }
    );
    // The scheduler knows nothing of the cap, so the replicas past it are not asked for.
    assert_eq!(r.plan.replicas, 11);
    assert_eq!((r.after.regular_ready, r.after.burst_ready), (9, 2));
    assert_eq!(r.after.unscheduled, 0);
}

#[test]
fn a_surge_that_lands_on_virtual_is_taken_back() {
    let mut sim = simulation();
    for step in 0..=5 {
        sim.tick(step * TICK, 10);
    }
    assert_eq!(sim.cluster.observe(50).counts.burst_ready, 1);

    // Room frees and the planner proposes a move...
    let now = 60;
    sim.cluster.remove_background("other-1");
    let seen = sim.cluster.observe(now);
    let p = plan(
        &PlanInput {
            desired: 10,
            requests: sim.cluster.config().requests,
            pods: &seen.pods,
            draining: &[],
            cluster: &seen.cluster,
            burst: sim.burst,
        },
        &sim.planner,
    );
    assert_eq!(p.drain_moves.len(), 1);
    let moved = p.drain_moves[0].from_pod.clone();
    // ...but another workload takes the room before the surge replica is scheduled.
    assert!(
        sim.cluster
            .add_background("regular-1", "squatter", Resources::per_pod(1000, 0))
    );
    let step = drain_step(
        &sim.drain,
        &DrainObservation {
            now,
            desired: 10,
            ready: seen.ready,
            unavailable: seen.unavailable,
            moves: &[],
            proposals: &p.drain_moves,
            rolling_out: false,
            frozen: false,
        },
        &sim.planner.drain,
    );
    sim.cluster.apply(&p, now);
    sim.cluster.apply_drain(&step.actions, now);
    sim.drain = step.state;
    let c = sim.cluster.observe(now).counts;
    assert_eq!((c.regular(), c.burst()), (9, 2), "the surge went virtual");

    // Next tick the move sees its replacement starting on the virtual node and takes
    // the surge back; the burst pod stays and nothing else moves.
    let r = sim.tick(now + TICK, 10);
    println!("{r}");
    assert_eq!(
        r.actions,
        vec![DrainAction::CancelSurge {
            from_pod: moved.clone()
        }]
    );
    assert_eq!((r.after.regular_ready, r.after.burst_ready), (9, 1));
    assert_eq!(r.after.burst(), 1);
    assert!(sim.drain.in_flight.is_empty());
    assert!(
        sim.cluster
            .observe(now + TICK)
            .pods
            .iter()
            .any(|p| p.name == moved)
    );
    for step in 8..=12 {
        let r = sim.tick(step * TICK, 10);
        assert!(r.actions.is_empty(), "{r}");
        assert_eq!(r.after.regular_ready + r.after.burst_ready, 10, "{r}");
    }
}
