//! Drain-back: moving burst pods to regular nodes without ever dropping below the ready
//! replicas the workload needs.
//!
//! A move is surge-then-evict. First one replica is added (the scheduler puts it on the
//! freed regular room, since the template prefers regular nodes); only once that replica
//! is Ready on a regular node is the burst pod removed. Removing first and letting the
//! ReplicaSet replace it would leave the workload one replica short for a pod start, and
//! could even put the replacement straight back on a virtual node.
//!
//! [`drain_step`] is the whole state machine as a pure function: the previous
//! [`DrainState`] and what the controller observed go in, the next state and the
//! [`DrainAction`]s come out. A controller maps the actions onto Kubernetes:
//!
//! - [`DrainAction::Surge`]: report one more replica than the engine's decision
//!   (Spillway is the scaler KEDA asks, so the surge is simply added to the answer) and
//!   remember the new pod as this move's replacement.
//! - [`DrainAction::Evict`]: set the burst pod's deletion cost to `i32::MIN` and take the
//!   surge back, in that order; the ReplicaSet then deletes exactly that pod. The budget
//!   check ([`DrainLimits::min_available`], [`DrainLimits::max_unavailable`]) is done
//!   here, so the step stays safe where an Eviction call would not be consulted.
//! - [`DrainAction::CancelSurge`]: take the surge back and keep the burst pod (the
//!   replacement never became Ready, or landed on a virtual node after all).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::plan::{DrainLimits, DrainMove};

/// How far a move has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovePhase {
    /// The replacement was requested; waiting for it to be Ready.
    Surging,
    /// The burst pod's removal was requested; waiting for it to be gone.
    Evicting,
}

/// A move in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightMove {
    /// The burst pod being replaced.
    pub from_pod: String,
    /// Where the replacement was expected.
    pub to_node: String,
    /// When the move started.
    pub started_at: i64,
    /// Where it is now.
    pub phase: MovePhase,
    /// When it entered that phase.
    pub phase_since: i64,
}

/// Moves in progress; empty at start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrainState {
    /// In start order.
    pub in_flight: Vec<InFlightMove>,
}

impl DrainState {
    /// The burst pods being moved, for [`super::plan::PlanInput::draining`].
    pub fn draining(&self) -> Vec<String> {
        self.in_flight.iter().map(|m| m.from_pod.clone()).collect()
    }
}

/// What became of a move's replacement replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SurgeStatus {
    /// Not created yet, or not Ready yet.
    Pending,
    /// Ready on a regular node: the burst pod may go.
    ReadyOnRegular,
    /// Bound to a virtual node but not Ready: the move gains nothing, and taking the
    /// surge back costs no ready replica.
    StartingOnVirtual,
    /// Ready, but on a virtual node: the move gains nothing.
    ReadyOnVirtual,
}

/// What the controller sees of one in-flight move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveObservation {
    /// The burst pod.
    pub from_pod: String,
    /// Whether it still exists.
    pub source_present: bool,
    /// Whether it is Ready (removing a Ready pod costs one ready replica).
    pub source_ready: bool,
    /// Its replacement.
    pub surge: SurgeStatus,
}

/// What the controller sees this tick.
#[derive(Debug, Clone, Copy)]
pub struct DrainObservation<'a> {
    /// Now, in the caller's time (unix seconds or simulated seconds).
    pub now: i64,
    /// Replicas the engine wants (without surges).
    pub desired: u32,
    /// Ready replicas of the workload right now, surge replicas included.
    pub ready: u32,
    /// Pods of the workload that are not Ready right now.
    pub unavailable: u32,
    /// One per in-flight move; a move with none is treated as unchanged and its burst
    /// pod as Ready, the cautious reading.
    pub moves: &'a [MoveObservation],
    /// New moves the planner proposes ([`super::plan::Plan::drain_moves`]).
    pub proposals: &'a [DrainMove],
    /// The workload's own controller is replacing its pods (a rollout). New moves wait
    /// for it to finish: its surge and ours would add up past what the rollout allows
    /// (the ReplicaSet controller sees our surge as a raised spec), and its new pods
    /// take the regular room anyway.
    pub rolling_out: bool,
    /// Scaling is frozen for the workload (the emergency brake): no new move starts, as
    /// an SRE who pulls the brake expects every change to stop. Moves in flight finish,
    /// since stopping one halfway would leave its surge pod as an extra replica.
    pub frozen: bool,
}

/// An instruction to the controller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DrainAction {
    /// Add one replica to replace `from_pod`, expected on `to_node`.
    Surge {
        /// The burst pod to be replaced.
        from_pod: String,
        /// The regular node with room.
        to_node: String,
    },
    /// Remove the burst pod and take its surge back: the replacement is Ready. Repeated
    /// for a move whose first removal did not happen; the surge is taken back only once
    /// per move, so a controller must treat a repeat as "remove the pod" alone.
    Evict {
        /// The burst pod.
        pod: String,
    },
    /// Take the surge back and keep the burst pod.
    CancelSurge {
        /// The burst pod that stays.
        from_pod: String,
    },
}

impl fmt::Display for DrainAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainAction::Surge { from_pod, to_node } => {
                write!(f, "surge for {from_pod} -> {to_node}")
            }
            DrainAction::Evict { pod } => write!(f, "evict {pod}"),
            DrainAction::CancelSurge { from_pod } => write!(f, "cancel surge for {from_pod}"),
        }
    }
}

/// The next state and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrainStep {
    /// The state to pass to the next call.
    pub state: DrainState,
    /// Actions, in the order to apply them.
    pub actions: Vec<DrainAction>,
}

/// One tick of the drain-back state machine. Pure.
///
/// Guarantees, given observations that are true at the time of the call:
/// - ready replicas never fall below `min(desired, ready)` because of these actions:
///   a Ready pod is removed only while another Ready replica stands in for it, and only
///   while the disruption budget allows;
/// - at most [`DrainLimits::max_moves_per_tick`] moves start, and at most
///   [`DrainLimits::max_in_flight`] are in progress afterwards.
pub fn drain_step(
    state: &DrainState,
    obs: &DrainObservation<'_>,
    limits: &DrainLimits,
) -> DrainStep {
    let seen: BTreeMap<&str, &MoveObservation> =
        obs.moves.iter().map(|m| (m.from_pod.as_str(), m)).collect();
    let floor = obs.desired.max(limits.min_available);
    // Running totals as this tick's actions take effect, so two evictions in one tick
    // cannot both spend the same spare replica.
    let mut ready = obs.ready;
    let mut unavailable = obs.unavailable;
    let mut out = DrainStep::default();

    // Removing a pod that is Ready costs one ready replica and one unit of the budget.
    let mut may_remove = |source_ready: bool, ready: &mut u32| -> bool {
        if !source_ready {
            return true;
        }
        let ok = *ready > floor && unavailable < limits.max_unavailable;
        if ok {
            *ready -= 1;
            unavailable += 1;
        }
        ok
    };

    for m in &state.in_flight {
        let o = seen.get(m.from_pod.as_str());
        let source_present = o.is_none_or(|o| o.source_present);
        let source_ready = o.is_none_or(|o| o.source_ready);
        let surge = o.map_or(SurgeStatus::Pending, |o| o.surge);
        let waited = obs.now.saturating_sub(m.phase_since);
        match m.phase {
            MovePhase::Surging if !source_present => {
                // Gone some other way (scale-in, node loss): the surge is taken back. If
                // the replacement is Ready, the ReplicaSet may remove a Ready pod for it,
                // so that waits until a spare Ready replica exists.
                let surge_ready = matches!(
                    surge,
                    SurgeStatus::ReadyOnRegular | SurgeStatus::ReadyOnVirtual
                );
                if !surge_ready {
                    out.actions.push(DrainAction::CancelSurge {
                        from_pod: m.from_pod.clone(),
                    });
                } else if ready > floor {
                    ready -= 1;
                    out.actions.push(DrainAction::CancelSurge {
                        from_pod: m.from_pod.clone(),
                    });
                } else {
                    out.state.in_flight.push(m.clone());
                }
            }
            MovePhase::Surging => match surge {
                SurgeStatus::ReadyOnRegular => {
                    if may_remove(source_ready, &mut ready) {
                        out.actions.push(DrainAction::Evict {
                            pod: m.from_pod.clone(),
                        });
                        out.state.in_flight.push(InFlightMove {
                            phase: MovePhase::Evicting,
                            phase_since: obs.now,
                            ..m.clone()
                        });
                    } else {
                        out.state.in_flight.push(m.clone());
                    }
                }
                SurgeStatus::StartingOnVirtual => {
                    out.actions.push(DrainAction::CancelSurge {
                        from_pod: m.from_pod.clone(),
                    });
                }
                SurgeStatus::ReadyOnVirtual => {
                    // Taking back a Ready surge removes a Ready pod; keep the spare until
                    // that is safe.
                    if ready > floor {
                        ready -= 1;
                        out.actions.push(DrainAction::CancelSurge {
                            from_pod: m.from_pod.clone(),
                        });
                    } else {
                        out.state.in_flight.push(m.clone());
                    }
                }
                SurgeStatus::Pending if waited >= limits.surge_timeout_secs => {
                    out.actions.push(DrainAction::CancelSurge {
                        from_pod: m.from_pod.clone(),
                    });
                }
                SurgeStatus::Pending => out.state.in_flight.push(m.clone()),
            },
            MovePhase::Evicting if !source_present => {}
            MovePhase::Evicting => {
                // Still there after a while: the removal was refused or lost; ask again
                // under the same budget check.
                if waited >= limits.surge_timeout_secs && may_remove(source_ready, &mut ready) {
                    out.actions.push(DrainAction::Evict {
                        pod: m.from_pod.clone(),
                    });
                    out.state.in_flight.push(InFlightMove {
                        phase_since: obs.now,
                        ..m.clone()
                    });
                } else {
                    out.state.in_flight.push(m.clone());
                }
            }
        }
    }

    // New moves: not while the workload is short of ready replicas (its own new pods need
    // the regular room first), not while the disruption budget is spent (the surge would
    // sit there as an extra replica with no way to finish), and within both rate limits.
    if !obs.rolling_out
        && !obs.frozen
        && obs.ready >= obs.desired
        && obs.unavailable < limits.max_unavailable
    {
        let busy: BTreeSet<String> = state.draining().into_iter().collect();
        let mut started = 0u32;
        for p in obs.proposals {
            let in_flight = u32::try_from(out.state.in_flight.len()).unwrap_or(u32::MAX);
            if started >= limits.max_moves_per_tick || in_flight >= limits.max_in_flight {
                break;
            }
            if busy.contains(&p.from_pod)
                || out.state.in_flight.iter().any(|m| m.from_pod == p.from_pod)
            {
                continue;
            }
            started += 1;
            out.actions.push(DrainAction::Surge {
                from_pod: p.from_pod.clone(),
                to_node: p.to_node.clone(),
            });
            out.state.in_flight.push(InFlightMove {
                from_pod: p.from_pod.clone(),
                to_node: p.to_node.clone(),
                started_at: obs.now,
                phase: MovePhase::Surging,
                phase_since: obs.now,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One move under way since 0: b1's surge pod asked for on n1.
    fn surging_b1() -> DrainState {
        DrainState {
            in_flight: vec![InFlightMove {
                from_pod: "b1".into(),
                to_node: "n1".into(),
                started_at: 0,
                phase: MovePhase::Surging,
                phase_since: 0,
            }],
        }
    }

    fn limits() -> DrainLimits {
        DrainLimits {
            max_moves_per_tick: 1,
            max_in_flight: 2,
            min_available: 0,
            max_unavailable: 1,
            surge_timeout_secs: 60,
            min_savings_per_hour: 0.0,
        }
    }

    fn proposal(p: &str) -> DrainMove {
        DrainMove {
            from_pod: p.into(),
            to_node: "n1".into(),
        }
    }

    fn seen(p: &str, surge: SurgeStatus) -> MoveObservation {
        MoveObservation {
            from_pod: p.into(),
            source_present: true,
            source_ready: true,
            surge,
        }
    }

    fn obs<'a>(
        now: i64,
        ready: u32,
        moves: &'a [MoveObservation],
        proposals: &'a [DrainMove],
    ) -> DrainObservation<'a> {
        DrainObservation {
            now,
            desired: 3,
            ready,
            unavailable: 0,
            moves,
            proposals,
            rolling_out: false,
            frozen: false,
        }
    }

    #[test]
    fn surge_then_wait_then_evict_then_done() {
        let props = [proposal("b1"), proposal("b2")];
        let s0 = DrainState::default();
        let s1 = drain_step(&s0, &obs(0, 3, &[], &props), &limits());
        assert_eq!(
            s1.actions,
            vec![DrainAction::Surge {
                from_pod: "b1".into(),
                to_node: "n1".into()
            }],
            "one per tick"
        );
        // Replacement pending: nothing to evict; the second move may start.
        let pending = [seen("b1", SurgeStatus::Pending)];
        let s2 = drain_step(&s1.state, &obs(10, 3, &pending, &props), &limits());
        assert_eq!(s2.actions.len(), 1);
        assert!(matches!(&s2.actions[0], DrainAction::Surge { from_pod, .. } if from_pod == "b2"));
        // b1's replacement Ready on regular: 4 ready, evict b1. In-flight cap holds b3 back.
        let ready = [
            seen("b1", SurgeStatus::ReadyOnRegular),
            seen("b2", SurgeStatus::Pending),
        ];
        let s3 = drain_step(&s2.state, &obs(20, 4, &ready, &props), &limits());
        assert_eq!(s3.actions, vec![DrainAction::Evict { pod: "b1".into() }]);
        // b1 gone: the move completes.
        let gone = [
            MoveObservation {
                source_present: false,
                ..seen("b1", SurgeStatus::ReadyOnRegular)
            },
            seen("b2", SurgeStatus::Pending),
        ];
        let s4 = drain_step(&s3.state, &obs(30, 3, &gone, &props), &limits());
        assert!(s4.actions.is_empty());
        assert_eq!(s4.state.draining(), vec!["b2".to_string()]);
    }

    #[test]
    fn never_evicts_into_a_shortage() {
        let state = surging_b1();
        let moves = [seen("b1", SurgeStatus::ReadyOnRegular)];
        // Another replica crashed: only 3 ready of 3 desired even with the surge.
        let obs = DrainObservation {
            now: 5,
            desired: 3,
            ready: 3,
            unavailable: 1,
            moves: &moves,
            proposals: &[],
            rolling_out: false,
            frozen: false,
        };
        let step = drain_step(&state, &obs, &limits());
        assert!(step.actions.is_empty(), "{:?}", step.actions);
        assert_eq!(step.state, state);
        // With a spare ready replica but the budget used up, still nothing.
        let obs = DrainObservation { ready: 4, ..obs };
        assert!(drain_step(&state, &obs, &limits()).actions.is_empty());
        let obs = DrainObservation {
            unavailable: 0,
            ..obs
        };
        assert_eq!(
            drain_step(&state, &obs, &limits()).actions,
            vec![DrainAction::Evict { pod: "b1".into() }]
        );
    }

    #[test]
    fn no_move_starts_while_the_workload_rolls_out() {
        let props = [proposal("b1")];
        let rolling = DrainObservation {
            rolling_out: true,
            ..obs(0, 3, &[], &props)
        };
        let step = drain_step(&DrainState::default(), &rolling, &limits());
        assert!(step.actions.is_empty(), "{:?}", step.actions);
        assert!(step.state.in_flight.is_empty());
        // Once it is done, the same proposal starts a move.
        let step = drain_step(&DrainState::default(), &obs(0, 3, &[], &props), &limits());
        assert_eq!(
            step.actions,
            vec![DrainAction::Surge {
                from_pod: "b1".into(),
                to_node: "n1".into()
            }]
        );
    }

    #[test]
    fn a_frozen_workload_starts_no_move_but_finishes_the_one_in_flight() {
        let props = [proposal("b2")];
        let state = surging_b1();
        let moves = [seen("b1", SurgeStatus::ReadyOnRegular)];
        let frozen = DrainObservation {
            frozen: true,
            ..obs(5, 4, &moves, &props)
        };
        let step = drain_step(&state, &frozen, &limits());
        // The move under way goes on to its eviction; the new proposal waits.
        assert_eq!(step.actions, vec![DrainAction::Evict { pod: "b1".into() }]);
        assert!(
            step.state.in_flight.iter().all(|m| m.from_pod == "b1"),
            "{:?}",
            step.state.in_flight
        );
        // Unfrozen, the same proposal starts.
        let step = drain_step(&state, &obs(5, 4, &moves, &props), &limits());
        assert!(
            step.actions.contains(&DrainAction::Surge {
                from_pod: "b2".into(),
                to_node: "n1".into()
            }),
            "{:?}",
            step.actions
        );
    }

    #[test]
    fn stuck_surge_is_cancelled_after_the_timeout() {
        let state = surging_b1();
        let moves = [seen("b1", SurgeStatus::Pending)];
        let obs = DrainObservation {
            now: 59,
            desired: 3,
            ready: 3,
            unavailable: 1,
            moves: &moves,
            proposals: &[],
            rolling_out: false,
            frozen: false,
        };
        assert!(drain_step(&state, &obs, &limits()).actions.is_empty());
        let obs = DrainObservation { now: 60, ..obs };
        let step = drain_step(&state, &obs, &limits());
        assert_eq!(
            step.actions,
            vec![DrainAction::CancelSurge {
                from_pod: "b1".into()
            }]
        );
        assert!(step.state.in_flight.is_empty());
    }

    #[test]
    fn no_new_moves_while_the_budget_is_spent() {
        let props = [proposal("b1")];
        let obs = DrainObservation {
            now: 0,
            desired: 5,
            ready: 5,
            unavailable: 1,
            moves: &[],
            proposals: &props,
            rolling_out: false,
            frozen: false,
        };
        let none = DrainLimits {
            max_unavailable: 0,
            ..limits()
        };
        assert!(
            drain_step(&DrainState::default(), &obs, &limits())
                .actions
                .is_empty()
        );
        let obs = DrainObservation {
            unavailable: 0,
            ..obs
        };
        assert!(
            drain_step(&DrainState::default(), &obs, &none)
                .actions
                .is_empty()
        );
        assert_eq!(
            drain_step(&DrainState::default(), &obs, &limits())
                .actions
                .len(),
            1
        );
    }

    #[test]
    fn no_new_moves_while_short() {
        let props = [proposal("b1")];
        let obs = DrainObservation {
            now: 0,
            desired: 5,
            ready: 4,
            unavailable: 1,
            moves: &[],
            proposals: &props,
            rolling_out: false,
            frozen: false,
        };
        assert!(
            drain_step(&DrainState::default(), &obs, &limits())
                .actions
                .is_empty()
        );
    }
}
