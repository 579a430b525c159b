//! Fitting identical replicas onto nodes.
//!
//! The scheduler places a pod on ONE node whose free capacity covers all of its requests,
//! so capacity is counted per node: two nodes with 0.6 CPU free each host no 1-CPU
//! replica, though their sum says 1.2. For identical replicas the count is exact and
//! independent of order: node `i` takes `floor(free_i / request)` on its tightest
//! dimension, and the pool takes the sum of those.
//!
//! Order only decides WHICH nodes receive replicas when fewer are needed than fit. We use
//! best-fit (the node with the fewest remaining slots first, ties by name): it keeps the
//! emptiest nodes empty, which leaves big holes for other workloads' larger pods and lets
//! a cluster autoscaler retire idle nodes. First-fit decreasing would give the same count
//! (all items are the same size, so "decreasing" orders nothing) but an arbitrary spread.
//! The nodes chosen are a prediction for drain targets and for tests; the kube-scheduler
//! makes the actual choice, and the count is what the plan relies on.

use super::nodes::{ClusterView, NodeKind};
use super::resources::Resources;

/// A number of replicas on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlots {
    /// The node.
    pub node: String,
    /// How many replicas go there.
    pub replicas: u32,
}

/// The outcome of packing replicas onto nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Packing {
    /// Replicas placed, at most the limit asked for.
    pub placed: u32,
    /// Where they went, in best-fit order; nodes receiving none are left out.
    pub slots: Vec<NodeSlots>,
}

impl Packing {
    /// One node name per placed replica, in placement order.
    pub fn each(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.node.as_str(), s.replicas as usize))
    }
}

/// Packs up to `limit` replicas of `request` onto nodes with the given free capacity.
pub fn pack(free: &[(String, Resources)], request: &Resources, limit: u32) -> Packing {
    let mut candidates: Vec<(u64, &str)> = free
        .iter()
        .map(|(name, room)| (room.copies_of(request), name.as_str()))
        .filter(|(copies, _)| *copies > 0)
        .collect();
    candidates.sort_unstable();

    let mut out = Packing::default();
    for (copies, name) in candidates {
        let left = limit - out.placed;
        if left == 0 {
            break;
        }
        let take = u32::try_from(copies).unwrap_or(u32::MAX).min(left);
        out.placed += take;
        out.slots.push(NodeSlots {
            node: name.to_string(),
            replicas: take,
        });
    }
    out
}

/// How many more replicas of `request` fit on the schedulable regular nodes, bin-packed,
/// given everything already bound there. Saturates at `u32::MAX`.
pub fn regular_room(cluster: &ClusterView, request: &Resources) -> u32 {
    let total: u64 = cluster
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Regular && n.schedulable)
        .map(|n| n.free().copies_of(request))
        .fold(0u64, u64::saturating_add);
    u32::try_from(total).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::nodes::{BoundPod, Node};

    fn regular(name: &str, cpu: u64, used: u64) -> Node {
        let mut n = Node::new(name, NodeKind::Regular, Resources::new(cpu, 1 << 40, 110));
        if used > 0 {
            n.pods.push(BoundPod {
                name: format!("{name}-other"),
                requests: Resources::per_pod(used, 0),
            });
        }
        n
    }

    #[test]
    fn two_half_free_nodes_do_not_host_one_whole_replica() {
        let cluster = ClusterView {
            nodes: vec![regular("a", 1000, 400), regular("b", 1000, 400)],
        };
        let one_cpu = Resources::per_pod(1000, 0);
        assert_eq!(regular_room(&cluster, &one_cpu), 0);
        assert_eq!(regular_room(&cluster, &Resources::per_pod(600, 0)), 2);
    }

    #[test]
    fn cordoned_and_virtual_nodes_take_nothing() {
        let mut cordoned = regular("a", 4000, 0);
        cordoned.schedulable = false;
        let virt = Node::new(
            "vk",
            NodeKind::Virtual,
            Resources::new(1 << 20, 1 << 50, 10_000),
        );
        let cluster = ClusterView {
            nodes: vec![cordoned, virt, regular("b", 2000, 0)],
        };
        assert_eq!(regular_room(&cluster, &Resources::per_pod(1000, 0)), 2);
    }

    #[test]
    fn best_fit_fills_the_tightest_node_first_with_name_tie_break() {
        let free = vec![
            ("c".to_string(), Resources::new(3000, 1 << 40, 110)),
            ("b".to_string(), Resources::new(1000, 1 << 40, 110)),
            ("a".to_string(), Resources::new(1000, 1 << 40, 110)),
            ("z".to_string(), Resources::new(500, 1 << 40, 110)),
        ];
        let p = pack(&free, &Resources::per_pod(1000, 0), 3);
        assert_eq!(p.placed, 3);
        assert_eq!(p.each().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        let all = pack(&free, &Resources::per_pod(1000, 0), 100);
        assert_eq!(all.placed, 5);
        assert_eq!(all.slots.last().map(|s| s.replicas), Some(3));
    }
}
