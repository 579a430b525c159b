//! The per-second replay loop: autoscaler → placement simulator → score.

use spillway_model::signal::{Signal, SignalView};
use thiserror::Error;

use super::World;
use super::baselines::{Hpa, HpaConfig, PolledMetric};
use super::report::{Report, Run, Sample, Totals};
use super::trace::Trace;
use crate::engine::{ReplicaCounts, WorkloadState, decide};
use crate::hpa::{HpaView, ScaleCounts, ServeInput, serve};
use crate::placement::sim::{SimConfig, Simulation};
use crate::placement::{BurstRule, DrainLimits, PlannerConfig, Resources};
use crate::policy::AppPolicy;

/// Names of the runs, in the report's order.
pub const SPILLWAY: &str = "Spillway";
pub const HPA: &str = "HPA (defaults)";
pub const KEDA_HPA: &str = "KEDA Prometheus + HPA";
pub const FIXED: &str = "Fixed at peak";

/// Why a replay cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimulateError {
    #[error(
        "policy {tenant}/{app} has no qps signal; a request-rate trace can only drive `signals.qps`"
    )]
    NoQps { tenant: String, app: String },
    #[error("capacity per replica must be a positive number of requests/s, got {0}")]
    Capacity(f64),
    #[error("the trace is empty")]
    EmptyTrace,
}

/// The trace as the engine's signal store, seen at one moment: values after `now` do not
/// exist yet.
struct TraceView<'a> {
    rps: &'a [f64],
    /// `prefix[i]` = Σ rps[..i], for O(1) window means over millions of seconds.
    prefix: &'a [f64],
    start: i64,
    now: i64,
}

impl TraceView<'_> {
    /// Indices `[from, to)` of the window ending at `now`, clipped to what exists.
    fn range(&self, signal: Signal, now: i64, window_secs: u32) -> Option<(usize, usize)> {
        if signal != Signal::Qps {
            return None;
        }
        let end = now.min(self.now) - self.start + 1;
        let begin = (end - i64::from(window_secs)).max(0);
        let end = end.min(self.rps.len() as i64);
        (end > begin).then_some((begin as usize, end as usize))
    }
}

impl SignalView for TraceView<'_> {
    fn mean(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64> {
        let (a, b) = self.range(signal, now, window_secs)?;
        Some((self.prefix[b] - self.prefix[a]) / (b - a) as f64)
    }
    fn max(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64> {
        let (a, b) = self.range(signal, now, window_secs)?;
        self.rps[a..b].iter().copied().reduce(f64::max)
    }
    fn newest(&self, signal: Signal) -> Option<i64> {
        (signal == Signal::Qps).then_some(self.now)
    }
    fn oldest(&self, signal: Signal) -> Option<i64> {
        (signal == Signal::Qps).then_some(self.start)
    }
}

enum Controller<'p> {
    Spillway {
        policy: &'p AppPolicy,
        state: WorkloadState,
    },
    Hpa(Hpa),
    KedaHpa(Hpa, PolledMetric),
    Fixed(u32),
}

impl Controller<'_> {
    /// The count applied to the Deployment after second `i`.
    fn next(&mut self, i: i64, view: &TraceView, counts: ReplicaCounts, world: &World) -> u32 {
        let now = view.now;
        let sync = i % world.hpa_sync_secs.max(1) == 0;
        match self {
            Controller::Spillway { policy, state } => {
                // The engine decides every second, as the live loop does (its state sees
                // every recommendation); the HPA in front picks the served value up at
                // its sync, through its tolerance.
                let d = decide(policy, view, counts, now, state);
                let served = serve(
                    ServeInput {
                        replicas: d.desired,
                        ceiling: d.ceiling,
                        scale: ScaleCounts::settled(counts.current),
                    },
                    HpaView::from_policy(policy).tolerance,
                );
                state.record_served(now, counts.current, served.expected);
                if sync {
                    served.expected
                } else {
                    counts.current
                }
            }
            Controller::Hpa(hpa) => {
                if sync {
                    let sum = view
                        .mean(Signal::Qps, now, world.metric_window_secs)
                        .unwrap_or(0.0);
                    hpa.step(sum, counts.current, now)
                } else {
                    counts.current
                }
            }
            Controller::KedaHpa(hpa, metric) => {
                let sum = metric.read(now, || {
                    view.mean(Signal::Qps, now, world.metric_window_secs)
                        .unwrap_or(0.0)
                });
                if sync {
                    hpa.step(sum, counts.current, now)
                } else {
                    counts.current
                }
            }
            Controller::Fixed(n) => *n,
        }
    }
}

/// Replays `trace` under `policy` for Spillway and the three baselines.
pub fn simulate(policy: &AppPolicy, trace: &Trace, world: &World) -> Result<Report, SimulateError> {
    let Some(qps) = policy.signals.qps else {
        return Err(SimulateError::NoQps {
            tenant: policy.tenant.clone(),
            app: policy.app.clone(),
        });
    };
    if !(world.capacity_per_replica.is_finite() && world.capacity_per_replica > 0.0) {
        return Err(SimulateError::Capacity(world.capacity_per_replica));
    }
    if trace.rps.is_empty() {
        return Err(SimulateError::EmptyTrace);
    }
    let mut prefix = Vec::with_capacity(trace.rps.len() + 1);
    prefix.push(0.0);
    let mut sum = 0.0;
    for v in &trace.rps {
        sum += v;
        prefix.push(sum);
    }
    let target = qps.target_per_replica;
    let (min, max) = (policy.replicas.min.max(1), policy.replicas.max.max(1));
    let hpa = HpaConfig::defaults(min, max, target);
    let peak = ((trace.peak() / target).ceil() as u32).clamp(min, max);
    let runs = [
        (
            SPILLWAY,
            Controller::Spillway {
                policy,
                state: WorkloadState::default(),
            },
        ),
        (HPA, Controller::Hpa(Hpa::new(hpa))),
        (
            KEDA_HPA,
            Controller::KedaHpa(Hpa::new(hpa), PolledMetric::new(world.keda_polling_secs)),
        ),
        (FIXED, Controller::Fixed(peak)),
    ];
    let runs = runs
        .into_iter()
        .map(|(name, controller)| Run {
            name: name.to_string(),
            ..replay(policy, controller, trace, &prefix, world)
        })
        .collect();
    Ok(Report {
        seconds: trace.rps.len(),
        runs,
    })
}

fn replay(
    policy: &AppPolicy,
    mut controller: Controller,
    trace: &Trace,
    prefix: &[f64],
    world: &World,
) -> Run {
    let drains = matches!(controller, Controller::Spillway { .. });
    let mut sim = simulation(policy, world, drains);
    let start = world.start_unix;
    let target = policy.signals.qps.map_or(1.0, |q| q.target_per_replica);
    let (min, max) = (policy.replicas.min.max(1), policy.replicas.max.max(1));
    let first_minute = trace.rps.iter().take(60);
    let n = first_minute.len().max(1) as f64;
    let initial = ((first_minute.sum::<f64>() / n / target).ceil() as u32).clamp(min, max);
    let initial = match controller {
        Controller::Fixed(peak) => peak,
        _ => initial,
    };
    // Start from a settled cluster: the first replicas were placed an hour earlier.
    let mut applied = initial;
    let mut after = sim.tick(start - 3600, applied).after;

    let bucket = trace
        .rps
        .len()
        .div_ceil(world.timeline_points.max(1))
        .max(1);
    let mut timeline = Vec::with_capacity(trace.rps.len() / bucket + 1);
    let mut acc = Sample::default();
    let mut totals = Totals {
        peak_replicas: applied,
        ..Totals::default()
    };
    let (mut regular_secs, mut burst_secs) = (0u64, 0u64);
    for (i, &rps) in trace.rps.iter().enumerate() {
        let now = start + i as i64;
        let view = TraceView {
            rps: &trace.rps,
            prefix,
            start,
            now,
        };
        let counts = ReplicaCounts {
            current: applied,
            ready: after.regular_ready + after.burst_ready,
        };
        let desired = controller.next(i as i64, &view, counts, world);
        if desired != applied {
            totals.actions += 1;
            applied = desired;
            totals.peak_replicas = totals.peak_replicas.max(applied);
        }
        after = sim.tick(now, applied).after;

        let demand = rps / world.capacity_per_replica;
        let ready = f64::from(after.regular_ready + after.burst_ready);
        let bound = f64::from(after.regular() + after.burst());
        totals.under_replica_seconds += (demand - ready).max(0.0);
        totals.over_replica_seconds += (bound - demand).max(0.0);
        regular_secs += u64::from(after.regular());
        burst_secs += u64::from(after.burst());
        totals.cost += world.cost.rate(after.regular(), after.burst()).per_second;

        acc.load_rps += rps;
        acc.capacity_rps += ready * world.capacity_per_replica;
        acc.regular += f64::from(after.regular());
        acc.burst += f64::from(after.burst());
        if (i + 1) % bucket == 0 || i + 1 == trace.rps.len() {
            let k = ((i % bucket) + 1) as f64;
            timeline.push(Sample {
                at: (i + 1 - ((i % bucket) + 1)) as i64,
                load_rps: acc.load_rps / k,
                capacity_rps: acc.capacity_rps / k,
                regular: acc.regular / k,
                burst: acc.burst / k,
            });
            acc = Sample::default();
        }
    }
    totals.regular_replica_hours = regular_secs as f64 / 3600.0;
    totals.burst_replica_hours = burst_secs as f64 / 3600.0;
    Run {
        name: String::new(),
        totals,
        timeline,
    }
}

fn simulation(policy: &AppPolicy, world: &World, drains: bool) -> Simulation {
    let requests = Resources::per_pod(
        policy.placement.requests.cpu_millis,
        policy.placement.requests.memory_bytes,
    );
    let config = SimConfig {
        regular_nodes: world.regular_nodes,
        regular_node: world.regular_node,
        requests,
        regular_start_secs: world.regular_start_secs,
        virtual_start_secs: world.virtual_start_secs,
        ..SimConfig::default()
    };
    let drain = if drains {
        DrainLimits::default()
    } else {
        DrainLimits {
            max_moves_per_tick: 0,
            max_in_flight: 0,
            ..DrainLimits::default()
        }
    };
    let planner = PlannerConfig {
        drain,
        cost: world.cost,
        ..PlannerConfig::default()
    };
    let burst = BurstRule {
        enabled: policy.placement.burst.enabled,
        max_replicas: policy.placement.burst.max_replicas,
    };
    Simulation::new(config, planner, burst)
}
