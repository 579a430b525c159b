//! Property tests of the drain-back state machine against an adversarial toy world:
//! replacements start late, never, or on the wrong kind of node; evictions get lost;
//! other replicas start not Ready; the planner proposes anything, including pods already
//! being moved.

use proptest::prelude::*;
use spillway_core::placement::{
    DrainAction, DrainLimits, DrainMove, DrainObservation, DrainState, MoveObservation,
    SurgeStatus, drain_step,
};

#[derive(Debug, Clone)]
struct Pod {
    name: String,
    virtual_node: bool,
    /// Ticks until Ready; `Some(0)` = Ready, `None` = never.
    ready_in: Option<u32>,
    surge_for: Option<String>,
}

impl Pod {
    fn ready(&self) -> bool {
        self.ready_in == Some(0)
    }
}

/// What the world does with each surge: start delay (None = never), lands on virtual.
type SurgeFate = (Option<u32>, bool);

#[derive(Debug, Clone)]
struct Scenario {
    desired: u32,
    burst: u32,
    starting: u32,
    limits: DrainLimits,
    /// Per tick: how many of the burst pods the planner proposes, and from which offset.
    proposals: Vec<(usize, usize)>,
    fates: Vec<SurgeFate>,
    /// Per eviction: whether the world loses it.
    lost: Vec<bool>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1u32..12, 0u32..12, 0u32..3)
        .prop_flat_map(|(desired, burst, starting)| {
            let burst = burst.min(desired);
            let starting = starting.min(desired - burst);
            (
                Just((desired, burst, starting)),
                (0u32..4, 1u32..5, 0u32..4, 0u32..4, 1i64..6),
                prop::collection::vec((0usize..5, 0usize..8), 1..40),
                prop::collection::vec(
                    (
                        prop::option::weighted(0.8, 0u32..5),
                        prop::bool::weighted(0.2),
                    ),
                    64,
                ),
                prop::collection::vec(prop::bool::weighted(0.2), 64),
            )
        })
        .prop_map(
            |(
                (desired, burst, starting),
                (rate, in_flight, min_av, max_unav, timeout),
                proposals,
                fates,
                lost,
            )| {
                Scenario {
                    desired,
                    burst,
                    starting,
                    limits: DrainLimits {
                        max_moves_per_tick: rate,
                        max_in_flight: in_flight,
                        min_available: min_av,
                        max_unavailable: max_unav,
                        surge_timeout_secs: timeout,
                        min_savings_per_hour: 0.0,
                    },
                    proposals,
                    fates,
                    lost,
                }
            },
        )
}

fn world(s: &Scenario) -> Vec<Pod> {
    (0..s.desired)
        .map(|i| Pod {
            name: format!("p{i}"),
            virtual_node: i < s.burst,
            // A few regular replicas still starting: the workload is not whole yet.
            ready_in: Some(if i >= s.desired - s.starting { 2 } else { 0 }),
            surge_for: None,
        })
        .collect()
}

fn ready(pods: &[Pod]) -> u32 {
    pods.iter().filter(|p| p.ready()).count() as u32
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ready_never_drops_and_rates_hold(s in scenario()) {
        let mut pods = world(&s);
        let mut state = DrainState::default();
        let (mut fates, mut lost) = (s.fates.iter(), s.lost.iter());
        let mut next = s.desired;
        for (tick, (count, offset)) in s.proposals.iter().enumerate() {
            let now = tick as i64;
            let burst: Vec<&Pod> = pods.iter().filter(|p| p.virtual_node).collect();
            let proposals: Vec<DrainMove> = burst
                .iter()
                .skip(*offset % burst.len().max(1))
                .take(*count)
                .map(|p| DrainMove { from_pod: p.name.clone(), to_node: "regular-1".into() })
                .collect();
            let moves: Vec<MoveObservation> = state.in_flight.iter().map(|m| {
                let source = pods.iter().find(|p| p.name == m.from_pod);
                let surge = pods.iter().find(|p| p.surge_for.as_deref() == Some(m.from_pod.as_str()));
                MoveObservation {
                    from_pod: m.from_pod.clone(),
                    source_present: source.is_some(),
                    source_ready: source.is_some_and(Pod::ready),
                    surge: match surge {
                        Some(p) if p.ready() && p.virtual_node => SurgeStatus::ReadyOnVirtual,
                        Some(p) if p.virtual_node => SurgeStatus::StartingOnVirtual,
                        Some(p) if p.ready() => SurgeStatus::ReadyOnRegular,
                        _ => SurgeStatus::Pending,
                    },
                }
            }).collect();
            let before = ready(&pods);
            let total = pods.len() as u32;
            let step = drain_step(
                &state,
                &DrainObservation {
                    now,
                    desired: s.desired,
                    ready: before,
                    unavailable: total - before,
                    moves: &moves,
                    proposals: &proposals,
                    rolling_out: false,
                    frozen: false,
                },
                &s.limits,
            );

            let surges = step.actions.iter().filter(|a| matches!(a, DrainAction::Surge { .. })).count();
            prop_assert!(surges as u32 <= s.limits.max_moves_per_tick, "tick {}: {} moves started", tick, surges);
            prop_assert!(step.state.in_flight.len() as u32 <= s.limits.max_in_flight.max(state.in_flight.len() as u32));
            prop_assert!(step.state.in_flight.len() as u32 <= s.limits.max_in_flight || surges == 0);

            let burst_at_start: Vec<String> =
                pods.iter().filter(|p| p.virtual_node).map(|p| p.name.clone()).collect();
            let mut evicted_ready = 0;
            for a in &step.actions {
                match a {
                    DrainAction::Surge { from_pod, .. } => {
                        prop_assert!(burst_at_start.contains(from_pod), "surge for non-burst {}", from_pod);
                        prop_assert!(proposals.iter().any(|m| &m.from_pod == from_pod));
                        let (delay, on_virtual) = fates.next().copied().unwrap_or((Some(1), false));
                        pods.push(Pod {
                            name: format!("p{next}"),
                            virtual_node: on_virtual,
                            // Bound now, Ready `delay` ticks later (at least one).
                            ready_in: delay.map(|d| d + 1),
                            surge_for: Some(from_pod.clone()),
                        });
                        next += 1;
                    }
                    DrainAction::Evict { pod } => {
                        if lost.next().copied().unwrap_or(false) {
                            continue;
                        }
                        if pods.iter().any(|p| &p.name == pod && p.ready()) {
                            evicted_ready += 1;
                        }
                        pods.retain(|p| &p.name != pod);
                        for p in &mut pods {
                            if p.surge_for.as_deref() == Some(pod.as_str()) {
                                p.surge_for = None;
                            }
                        }
                    }
                    DrainAction::CancelSurge { from_pod } => {
                        // The harshest reading: the replacement goes even if it is Ready.
                        pods.retain(|p| p.surge_for.as_deref() != Some(from_pod.as_str()));
                    }
                }
            }
            let after = ready(&pods);
            prop_assert!(
                after >= before.min(s.desired),
                "tick {}: ready {} -> {} with desired {} (actions {:?})",
                tick, before, after, s.desired, step.actions
            );
            prop_assert!(
                evicted_ready == 0 || after >= s.desired.max(s.limits.min_available),
                "tick {}: evicted into a shortage", tick
            );
            prop_assert!(evicted_ready <= s.limits.max_unavailable.saturating_sub(total - before));

            for p in &mut pods {
                if let Some(t) = p.ready_in.as_mut() {
                    *t = t.saturating_sub(1);
                }
            }
            state = step.state;
        }
    }
}
