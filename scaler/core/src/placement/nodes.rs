//! The cluster as the planner sees it: nodes, what kind they are, and what is bound to them.

use std::collections::BTreeMap;
use std::fmt;

use super::resources::Resources;

/// Regular nodes are paid for already (ECS); virtual nodes bill per pod-second (ECI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    /// A node of the cluster's own pools.
    Regular,
    /// A virtual-kubelet node backed by serverless containers.
    Virtual,
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeKind::Regular => "regular",
            NodeKind::Virtual => "virtual",
        })
    }
}

/// A taint's effect, as in `core/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    /// `NoSchedule`.
    NoSchedule,
    /// `PreferNoSchedule`.
    PreferNoSchedule,
    /// `NoExecute`.
    NoExecute,
}

impl TaintEffect {
    /// The effect named as in the Kubernetes API; `None` for anything else.
    pub fn from_api(s: &str) -> Option<TaintEffect> {
        match s {
            "NoSchedule" => Some(TaintEffect::NoSchedule),
            "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
            "NoExecute" => Some(TaintEffect::NoExecute),
            _ => None,
        }
    }
}

/// A node taint (`key=value:effect`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Taint {
    /// The taint key.
    pub key: String,
    /// The value; Kubernetes treats a missing value as empty.
    pub value: String,
    /// The effect.
    pub effect: TaintEffect,
}

impl Taint {
    /// A taint from its parts.
    pub fn new(key: impl Into<String>, value: impl Into<String>, effect: TaintEffect) -> Self {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }
}

/// Matches taints by key, and optionally by value and effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintRule {
    /// The key that must match.
    pub key: String,
    /// The value that must match, if any.
    pub value: Option<String>,
    /// The effect that must match, if any.
    pub effect: Option<TaintEffect>,
}

impl TaintRule {
    fn matches(&self, t: &Taint) -> bool {
        t.key == self.key
            && self.value.as_deref().is_none_or(|v| v == t.value)
            && self.effect.is_none_or(|e| e == t.effect)
    }
}

/// Tells virtual nodes from regular ones by their labels and taints.
///
/// A node is virtual when ANY label rule or ANY taint rule matches. Either signal alone is
/// enough because providers differ in which one they set reliably, and calling a virtual
/// node regular is the expensive mistake: the planner would count per-second capacity as
/// free capacity the cluster already pays for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeClassifier {
    /// Label `key = value` pairs that mark a node virtual.
    pub virtual_labels: Vec<(String, String)>,
    /// Taints that mark a node virtual.
    pub virtual_taints: Vec<TaintRule>,
}

impl NodeClassifier {
    /// Alibaba Cloud ACK's virtual node: label `type=virtual-kubelet`, taint
    /// `virtual-kubelet.io/provider=alibabacloud:NoSchedule`.
    pub fn alibaba() -> Self {
        NodeClassifier {
            virtual_labels: vec![("type".into(), "virtual-kubelet".into())],
            virtual_taints: vec![TaintRule {
                key: "virtual-kubelet.io/provider".into(),
                value: Some("alibabacloud".into()),
                effect: Some(TaintEffect::NoSchedule),
            }],
        }
    }

    /// Classifies a node from its labels and taints.
    pub fn classify(&self, labels: &BTreeMap<String, String>, taints: &[Taint]) -> NodeKind {
        let by_label = self
            .virtual_labels
            .iter()
            .any(|(k, v)| labels.get(k).is_some_and(|have| have == v));
        let by_taint = taints
            .iter()
            .any(|t| self.virtual_taints.iter().any(|r| r.matches(t)));
        if by_label || by_taint {
            NodeKind::Virtual
        } else {
            NodeKind::Regular
        }
    }
}

impl Default for NodeClassifier {
    fn default() -> Self {
        NodeClassifier::alibaba()
    }
}

/// A pod bound to a node, with the requests it holds there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPod {
    /// Unique within the view; a controller should use `namespace/name`.
    pub name: String,
    /// Its requests (the sum over containers, or the init-container maximum if larger,
    /// as the scheduler counts it), with `pods = 1`.
    pub requests: Resources,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node's name; placement ties are broken by it, so plans are deterministic.
    pub name: String,
    /// Regular or virtual.
    pub kind: NodeKind,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// False when cordoned (`spec.unschedulable`) or not Ready: such a node takes no new
    /// pods, and pods already on it are not counted as having a lasting place there.
    pub schedulable: bool,
    /// Every pod bound to the node that is not terminated, the planned workload's own
    /// pods included.
    pub pods: Vec<BoundPod>,
}

impl Node {
    /// A schedulable node with nothing on it.
    pub fn new(name: impl Into<String>, kind: NodeKind, allocatable: Resources) -> Self {
        Node {
            name: name.into(),
            kind,
            allocatable,
            schedulable: true,
            pods: Vec::new(),
        }
    }

    /// Sum of the requests bound to this node.
    pub fn requested(&self) -> Resources {
        self.pods
            .iter()
            .fold(Resources::ZERO, |acc, p| acc.saturating_add(&p.requests))
    }

    /// `allocatable − requests of bound pods`, floored at zero.
    pub fn free(&self) -> Resources {
        self.allocatable.saturating_sub(&self.requested())
    }
}

/// The nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    /// All nodes, regular and virtual.
    pub nodes: Vec<Node>,
}

impl ClusterView {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn alibaba_label_or_taint_marks_virtual() {
        let c = NodeClassifier::default();
        let vk_taint = Taint::new(
            "virtual-kubelet.io/provider",
            "alibabacloud",
            TaintEffect::NoSchedule,
        );
        assert_eq!(c.classify(&labels(&[]), &[]), NodeKind::Regular);
        assert_eq!(
            c.classify(&labels(&[("type", "virtual-kubelet")]), &[]),
            NodeKind::Virtual
        );
        assert_eq!(
            c.classify(&labels(&[]), std::slice::from_ref(&vk_taint)),
            NodeKind::Virtual
        );
        assert_eq!(
            c.classify(&labels(&[("type", "virtual-kubelet")]), &[vk_taint]),
            NodeKind::Virtual
        );
    }

    #[test]
    fn near_misses_stay_regular() {
        let c = NodeClassifier::default();
        assert_eq!(
            c.classify(&labels(&[("type", "ecs")]), &[]),
            NodeKind::Regular
        );
        assert_eq!(
            c.classify(&labels(&[("kind", "virtual-kubelet")]), &[]),
            NodeKind::Regular
        );
        let other_provider = Taint::new(
            "virtual-kubelet.io/provider",
            "azure",
            TaintEffect::NoSchedule,
        );
        let other_effect = Taint::new(
            "virtual-kubelet.io/provider",
            "alibabacloud",
            TaintEffect::PreferNoSchedule,
        );
        let unrelated = Taint::new("dedicated", "gpu", TaintEffect::NoSchedule);
        assert_eq!(
            c.classify(&labels(&[]), &[other_provider, other_effect, unrelated]),
            NodeKind::Regular
        );
    }

    #[test]
    fn configurable_rule() {
        // Self-managed VNode: label and taint `k8s.aliyun.com/vnode=true`, any effect.
        let c = NodeClassifier {
            virtual_labels: vec![("k8s.aliyun.com/vnode".into(), "true".into())],
            virtual_taints: vec![TaintRule {
                key: "k8s.aliyun.com/vnode".into(),
                value: None,
                effect: None,
            }],
        };
        let t = Taint::new("k8s.aliyun.com/vnode", "true", TaintEffect::NoExecute);
        assert_eq!(c.classify(&labels(&[]), &[t]), NodeKind::Virtual);
        assert_eq!(
            c.classify(&labels(&[("k8s.aliyun.com/vnode", "true")]), &[]),
            NodeKind::Virtual
        );
        // The Alibaba default no longer applies under a custom rule.
        assert_eq!(
            c.classify(&labels(&[("type", "virtual-kubelet")]), &[]),
            NodeKind::Regular
        );
    }

    #[test]
    fn effect_names() {
        assert_eq!(
            TaintEffect::from_api("NoExecute"),
            Some(TaintEffect::NoExecute)
        );
        assert_eq!(TaintEffect::from_api("noschedule"), None);
    }

    #[test]
    fn free_is_floored() {
        let mut n = Node::new("a", NodeKind::Regular, Resources::new(1000, 1000, 10));
        n.pods.push(BoundPod {
            name: "x".into(),
            requests: Resources::per_pod(1500, 10),
        });
        assert_eq!(n.free(), Resources::new(0, 990, 9));
    }
}
