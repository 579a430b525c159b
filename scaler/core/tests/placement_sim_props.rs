//! End-to-end properties: planner + drain-back + simulated cluster under random demand
//! and random churn of other workloads.

use proptest::prelude::*;
use spillway_core::placement::sim::{SimConfig, Simulation};
use spillway_core::placement::{
    BurstRule, CostModel, DrainAction, DrainLimits, PlannerConfig, Resources,
};

#[derive(Debug, Clone)]
struct Run {
    nodes: u32,
    node_cpu: u64,
    burst: BurstRule,
    limits: DrainLimits,
    /// Per tick: desired replicas, and a background change (node, cpu; 0 = remove).
    ticks: Vec<(u32, Option<(u32, u64)>)>,
}

fn run() -> impl Strategy<Value = Run> {
    (
        1u32..4,
        2u64..8,
        (any::<bool>(), prop::option::of(0u32..8)),
        (0u32..3, 1u32..4, 0u32..2, 5i64..60),
        prop::collection::vec(
            (0u32..20, prop::option::weighted(0.3, (0u32..4, 0u64..4))),
            5..40,
        ),
    )
        .prop_map(
            |(nodes, cpu, (enabled, max), (rate, in_flight, max_unav, timeout), ticks)| Run {
                nodes,
                node_cpu: cpu * 1000,
                burst: BurstRule {
                    enabled,
                    max_replicas: max,
                },
                limits: DrainLimits {
                    max_moves_per_tick: rate,
                    max_in_flight: in_flight,
                    min_available: 0,
                    max_unavailable: max_unav,
                    surge_timeout_secs: timeout,
                    min_savings_per_hour: 0.0,
                },
                ticks,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn drain_never_costs_ready_replicas_and_burst_stays_in_bounds(r in run()) {
        let config = SimConfig {
            regular_nodes: r.nodes,
            regular_node: Resources::new(r.node_cpu, 64 << 30, 110),
            virtual_node: Resources::new(1_000_000, 4 << 40, 10_000),
            requests: Resources::per_pod(1000, 1 << 30),
            regular_start_secs: 10,
            virtual_start_secs: 20,
        };
        let planner = PlannerConfig {
            virtual_cap: None,
            drain: r.limits,
            cost: CostModel::default(),
        };
        let mut sim = Simulation::new(config, planner, r.burst);
        let mut prev_desired = 0;
        let mut background = 0;
        for (i, (desired, change)) in r.ticks.iter().enumerate() {
            let now = i as i64 * 10;
            match change {
                Some((node, 0)) => sim.cluster.remove_background(&format!("bg-{node}")),
                Some((node, cpu)) => {
                    background += 1;
                    sim.cluster.add_background(
                        &format!("regular-{}", node % r.nodes + 1),
                        &format!("bg-{background}"),
                        Resources::per_pod(cpu * 1000, 0),
                    );
                }
                None => {}
            }
            let report = sim.tick(now, *desired);
            let surges = report.actions.iter().filter(|a| matches!(a, DrainAction::Surge { .. })).count();
            prop_assert!(surges as u32 <= r.limits.max_moves_per_tick);
            prop_assert!(sim.drain.in_flight.len() as u32 <= r.limits.max_in_flight);
            prop_assert!(report.plan.burst <= r.burst.cap());
            prop_assert_eq!(
                report.plan.regular + report.plan.burst + report.plan.shortfall,
                *desired
            );
            // Nothing lands on the virtual node unless the tenant allows burst.
            if r.burst.cap() == 0 {
                prop_assert_eq!(report.after.burst(), 0, "{}", report);
            }
            // With demand not falling, the tick never loses a Ready replica it needs.
            let ready_after = report.after.regular_ready + report.after.burst_ready;
            if *desired >= prev_desired {
                prop_assert!(
                    ready_after >= report.ready_before.min(*desired),
                    "ready {} -> {} at desired {}: {}",
                    report.ready_before, ready_after, desired, report
                );
            }
            prev_desired = *desired;
        }

        // Then demand holds and nothing else moves: the split converges to the plan, so
        // every burst pod with a regular place to go has been drained back.
        let hold = prev_desired;
        let start = r.ticks.len() as i64 * 10;
        let mut last = None;
        for k in 0..60 {
            last = Some(sim.tick(start + k * 10, hold));
        }
        if let Some(last) = last {
            // Unless no move may start, or no removal is ever allowed (a budget of 0).
            if r.limits.max_moves_per_tick > 0 && r.limits.max_unavailable > 0 {
                prop_assert_eq!(last.after.regular(), last.plan.regular, "{}", last);
                prop_assert_eq!(last.after.burst(), last.plan.burst, "{}", last);
                prop_assert!(sim.drain.in_flight.is_empty());
            }
            prop_assert_eq!(last.after.regular_ready, last.after.regular());
            prop_assert_eq!(last.after.burst_ready, last.after.burst());
        }
    }
}
