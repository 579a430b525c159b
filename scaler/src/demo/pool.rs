//! The demo's simulated node pool: a few regular nodes and one virtual node shared by
//! every workload, so `spillway demo` shows the regular / burst split without a cluster.
//!
//! Each workload runs in its own [`Simulation`] (planner, drain-back and a fake
//! ReplicaSet), and sees the other workloads' pods as background pods on the same nodes,
//! so they compete for the same regular room as they would in a cluster. Pod usage (CPU,
//! memory) is derived from the workload's traffic and reported like metrics-server would.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use spillway_collector::{Signal, WorkloadKey};

use crate::placement::sim::{SimConfig, Simulation};
use crate::placement::{BurstRule, CostModel, PlannerConfig, Resources};

use crate::serve::replicas::{Placed, ReplicaSource, ReplicaSync, SyncOutcome};

/// The pool's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub regular_nodes: u32,
    /// Allocatable of each regular node (CPU, memory, pods).
    pub regular_node: Resources,
    /// Seconds from binding to Ready on a regular node.
    pub regular_start_secs: i64,
    /// Seconds from binding to Ready on the virtual node.
    pub virtual_start_secs: i64,
    pub cost: CostModel,
}

impl Default for PoolConfig {
    fn default() -> Self {
        let sim = SimConfig::default();
        Self {
            regular_nodes: sim.regular_nodes,
            regular_node: sim.regular_node,
            regular_start_secs: sim.regular_start_secs,
            virtual_start_secs: sim.virtual_start_secs,
            cost: CostModel::default(),
        }
    }
}

/// CPU one request costs, in core-seconds: 2 ms.
const CPU_PER_REQUEST: f64 = 0.002;
/// CPU a Ready pod uses with no traffic.
const CPU_IDLE_PER_POD: f64 = 0.02;
/// Memory a Ready pod holds with no traffic.
const MEMORY_BASE_PER_POD: f64 = 192.0 * 1024.0 * 1024.0;
/// Memory held per request/s in flight (buffers, sessions).
const MEMORY_PER_QPS: f64 = 256.0 * 1024.0;

struct Slot {
    sim: Simulation,
    requests: Resources,
    /// Other workloads' pods added to this simulation's nodes.
    background: Vec<String>,
    /// The second and desired count of the last tick, and what it reported.
    last: Option<(i64, u32, Placed)>,
}

/// The simulated pool; a [`ReplicaSource`].
pub struct DemoPool {
    config: PoolConfig,
    slots: Mutex<HashMap<WorkloadKey, Slot>>,
}

impl DemoPool {
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
            slots: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    fn new_slot(&self, requests: Resources, burst: BurstRule) -> Slot {
        let sim = SimConfig {
            regular_nodes: self.config.regular_nodes,
            regular_node: self.config.regular_node,
            requests,
            regular_start_secs: self.config.regular_start_secs,
            virtual_start_secs: self.config.virtual_start_secs,
            ..SimConfig::default()
        };
        let planner = PlannerConfig {
            cost: self.config.cost,
            ..PlannerConfig::default()
        };
        Slot {
            sim: Simulation::new(sim, planner, burst),
            requests,
            background: Vec::new(),
            last: None,
        }
    }
}

/// Pod usage a workload's traffic causes: CPU grows with requests up to what the Ready
/// pods' requests allow (a saturated pod does not use more than it gets).
fn usage(qps: f64, ready: u32, requests: Resources) -> Vec<(Signal, f64)> {
    let pods = f64::from(ready);
    let cpu_cap = pods * requests.cpu_millis as f64 / 1000.0;
    let cpu = if ready == 0 {
        0.0
    } else {
        (qps * CPU_PER_REQUEST + pods * CPU_IDLE_PER_POD).min(cpu_cap.max(pods * CPU_IDLE_PER_POD))
    };
    let memory = if ready == 0 {
        0.0
    } else {
        pods * MEMORY_BASE_PER_POD + qps * MEMORY_PER_QPS
    };
    vec![(Signal::CpuCores, cpu), (Signal::MemoryBytes, memory)]
}

impl ReplicaSource for DemoPool {
    fn name(&self) -> &str {
        "demo-pool"
    }

    fn sync(&self, sync: &ReplicaSync<'_>) -> Option<SyncOutcome> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let requests = Resources::per_pod(
            sync.policy.placement.requests.cpu_millis,
            sync.policy.placement.requests.memory_bytes,
        );
        let burst = BurstRule {
            enabled: sync.policy.placement.burst.enabled,
            max_replicas: sync.policy.placement.burst.max_replicas,
        };
        if let Some(slot) = slots.get(sync.key)
            && let Some((second, desired, placed)) = &slot.last
            && *second == sync.now_secs
            && *desired == sync.desired
            && slot.requests == requests
            && slot.sim.burst == burst
        {
            return Some(SyncOutcome {
                placed: placed.clone(),
                usage: Vec::new(),
            });
        }

        // Everyone else's pods, as they are bound now, become this workload's background.
        let mut others = Vec::new();
        for (key, slot) in slots.iter().filter(|(k, _)| *k != sync.key) {
            let seen = slot.sim.cluster.observe(sync.now_secs);
            for pod in seen.pods {
                if let Some(node) = pod.node {
                    others.push((node, format!("{key}:{}", pod.name), slot.requests));
                }
            }
        }

        let replaced = slots.get(sync.key).is_none_or(|s| s.requests != requests);
        if replaced {
            // Requests changed (or first sight): pods of the old shape cannot be kept.
            slots.insert(sync.key.clone(), self.new_slot(requests, burst));
        }
        let slot = slots.get_mut(sync.key)?;
        slot.sim.burst = burst;
        for name in slot.background.drain(..) {
            slot.sim.cluster.remove_background(&name);
        }
        for (node, name, requests) in others {
            if slot.sim.cluster.add_background(&node, &name, requests) {
                slot.background.push(name);
            }
        }

        let report = slot.sim.tick(sync.now_secs, sync.desired);
        let after = report.after;
        let mut reason = report.plan.reason.to_string();
        if after.unscheduled > 0 {
            reason.push_str(&format!("; {} pods Pending", after.unscheduled));
        }
        let starting = after.regular_starting + after.burst_starting;
        if starting > 0 {
            reason.push_str(&format!("; {starting} pods starting"));
        }
        let placed = Placed {
            pods: after.regular() + after.burst() + after.unscheduled,
            ready: after.regular_ready + after.burst_ready,
            regular: report.plan.regular,
            burst: report.plan.burst,
            shortfall: report.plan.shortfall,
            cost_per_hour: report.cost_per_hour,
            reason,
        };
        slot.last = Some((sync.now_secs, sync.desired, placed.clone()));
        Some(SyncOutcome {
            usage: usage(sync.qps.unwrap_or(0.0), placed.ready, requests),
            placed,
        })
    }

    fn retain(&self, keep: &HashSet<WorkloadKey>) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| keep.contains(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AppPolicy, PolicySet, parse_policy};

    fn policy(burst: bool) -> AppPolicy {
        let text = format!(
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: acme }}\nspec:\n  namespaces: [acme]\n  defaults:\n    replicas: {{ min: 0, max: 50 }}\n    signals:\n      qps: {{ targetPerReplica: 100 }}\n    placement: {{ burst: {{ enabled: {burst} }}, requests: {{ cpu: '1', memory: 1Gi }} }}\n  apps:\n    web: {{}}\n    api: {{}}\n"
        );
        let parsed = parse_policy("acme.yaml", &text).expect("test policy parses");
        let set = PolicySet::from_policies(vec![parsed]).expect("test policy is valid");
        let (_, app) = set
            .workloads()
            .find(|(k, _)| &*k.app == "web")
            .expect("web is in the policy");
        (*app).clone()
    }

    fn sync<'a>(
        key: &'a WorkloadKey,
        policy: &'a AppPolicy,
        desired: u32,
        now: i64,
    ) -> ReplicaSync<'a> {
        ReplicaSync {
            key,
            policy,
            desired,
            qps: Some(f64::from(desired) * 100.0),
            now_secs: now,
        }
    }

    #[test]
    fn fills_regular_nodes_then_bursts_and_pods_become_ready_later() {
        // 2 nodes of 4 CPU: 8 one-CPU replicas fit; the rest bursts.
        let pool = DemoPool::new(PoolConfig {
            regular_nodes: 2,
            regular_node: Resources::new(4000, 16 << 30, 110),
            regular_start_secs: 5,
            virtual_start_secs: 20,
            cost: CostModel::default(),
        });
        let web = WorkloadKey::new("acme", "web");
        let p = policy(true);
        let first = pool.sync(&sync(&web, &p, 11, 100)).expect("placed");
        assert_eq!(
            (
                first.placed.regular,
                first.placed.burst,
                first.placed.shortfall
            ),
            (8, 3, 0)
        );
        assert_eq!(first.placed.pods, 11);
        assert_eq!(
            first.placed.ready, 0,
            "pods start, they are not Ready at once"
        );
        assert!(first.placed.cost_per_hour > 0.0);
        let later = pool.sync(&sync(&web, &p, 11, 106)).expect("placed");
        assert_eq!(
            later.placed.ready, 8,
            "regular pods Ready after 5 s, burst not yet"
        );
        let cpu = later
            .usage
            .iter()
            .find(|(s, _)| *s == Signal::CpuCores)
            .map(|(_, v)| *v);
        assert!(cpu.is_some_and(|c| c > 0.0), "usage is reported: {cpu:?}");
        let repeat = pool.sync(&sync(&web, &p, 11, 106)).expect("placed");
        assert!(
            repeat.usage.is_empty(),
            "same second, same count: nothing new"
        );
    }

    #[test]
    fn workloads_share_the_regular_room() {
        let pool = DemoPool::new(PoolConfig {
            regular_nodes: 1,
            regular_node: Resources::new(4000, 16 << 30, 110),
            ..PoolConfig::default()
        });
        let p = policy(true);
        let web = WorkloadKey::new("acme", "web");
        let api = WorkloadKey::new("acme", "api");
        let a = pool.sync(&sync(&web, &p, 3, 10)).expect("placed");
        assert_eq!((a.placed.regular, a.placed.burst), (3, 0));
        let b = pool.sync(&sync(&api, &p, 3, 10)).expect("placed");
        assert_eq!(
            (b.placed.regular, b.placed.burst),
            (1, 2),
            "only one CPU is left on the node after web's three"
        );
    }

    #[test]
    fn without_burst_the_rest_is_shortfall() {
        let pool = DemoPool::new(PoolConfig {
            regular_nodes: 1,
            regular_node: Resources::new(2000, 16 << 30, 110),
            ..PoolConfig::default()
        });
        let p = policy(false);
        let web = WorkloadKey::new("acme", "web");
        let out = pool.sync(&sync(&web, &p, 5, 10)).expect("placed");
        assert_eq!(
            (out.placed.regular, out.placed.burst, out.placed.shortfall),
            (2, 0, 3)
        );
        assert_eq!(out.placed.pods, 5, "the extra pods wait Pending");
        assert!(
            out.placed.reason.contains("Pending"),
            "{}",
            out.placed.reason
        );
    }
}
