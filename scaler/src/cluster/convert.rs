//! Kubernetes objects to the planner's plain values. Pure: no client, no clock.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};

use crate::placement::{
    BoundPod, ClusterView, Node, NodeClassifier, QuantityError, Resources, Taint, TaintEffect,
    WorkloadPod, parse_cpu, parse_memory,
};

/// A node the view could not read, with the node's name.
#[derive(Debug, thiserror::Error)]
#[error("node {node:?}: allocatable {field}: {source}")]
pub struct NodeError {
    pub node: String,
    pub field: &'static str,
    #[source]
    pub source: QuantityError,
}

/// One placement node from a Node object; virtual or regular by the classifier.
pub fn node_from_api(node: &KubeNode, classifier: &NodeClassifier) -> Result<Node, NodeError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
    let spec = node.spec.as_ref();
    let taints: Vec<Taint> = spec
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    // An effect this version does not know cannot block or admit a pod
                    // in a way the planner models, so it is left out.
                    let effect = TaintEffect::from_api(&t.effect)?;
                    Some(Taint::new(
                        t.key.clone(),
                        t.value.clone().unwrap_or_default(),
                        effect,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let quantity = |field: &'static str, parse: fn(&str) -> Result<u64, QuantityError>| {
        alloc
            .and_then(|a| a.get(field))
            .map_or(Ok(0), |q| parse(&q.0))
            .map_err(|source| NodeError {
                node: name.clone(),
                field,
                source,
            })
    };
    let allocatable = Resources::new(
        quantity("cpu", parse_cpu)?,
        quantity("memory", parse_memory)?,
        quantity("pods", parse_memory)?,
    );
    let mut out = Node::new(
        name.clone(),
        classifier.classify(&labels, &taints),
        allocatable,
    );
    out.schedulable = !spec.and_then(|s| s.unschedulable).unwrap_or(false);
    Ok(out)
}

/// Whether a pod still holds its node's resources: bound and neither finished nor
/// being deleted.
pub fn pod_is_live(pod: &Pod) -> bool {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !finished && pod.metadata.deletion_timestamp.is_none()
}

/// A pod's requests as the scheduler counts them: its containers' requests summed, or
/// the largest init container's when that is larger. Unparseable quantities count as 0
/// (the API server rejects them, so they do not occur in practice).
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::per_pod(0, 0);
    };
    let one = |c: &k8s_openapi::api::core::v1::Container| -> (u64, u64) {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |k: &str, parse: fn(&str) -> Result<u64, QuantityError>| {
            r.and_then(|r| r.get(k))
                .and_then(|q| parse(&q.0).ok())
                .unwrap_or(0)
        };
        (get("cpu", parse_cpu), get("memory", parse_memory))
    };
    let (cpu, mem) = spec.containers.iter().map(one).fold((0u64, 0u64), |a, b| {
        (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
    });
    let (icpu, imem) = spec
        .init_containers
        .iter()
        .flatten()
        .map(one)
        .fold((0u64, 0u64), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    Resources::per_pod(cpu.max(icpu), mem.max(imem))
}

/// Whether the pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn workload_pod(pod: &Pod) -> WorkloadPod {
    WorkloadPod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ready: pod_ready(pod),
        created_at: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
    }
}

/// Nodes with the live pods bound to them: what the planner bin-packs against.
pub fn build_view<'a>(
    nodes: impl IntoIterator<Item = &'a KubeNode>,
    pods: impl IntoIterator<Item = &'a Pod>,
    classifier: &NodeClassifier,
) -> Result<ClusterView, NodeError> {
    let mut out: Vec<Node> = nodes
        .into_iter()
        .map(|n| node_from_api(n, classifier))
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let index: BTreeMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    for pod in pods {
        if !pod_is_live(pod) {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if let Some(&i) = index.get(node) {
            out[i].pods.push(BoundPod {
                name: pod.metadata.name.clone().unwrap_or_default(),
                requests: pod_requests(pod),
            });
        }
    }
    Ok(ClusterView { nodes: out })
}

/// An equality label selector (`a=b,c=d`), as the `scale` subresource reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector(pub Vec<(String, String)>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label selector {selector:?}: {detail}")]
pub struct SelectorError {
    pub selector: String,
    pub detail: &'static str,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let err = |detail| SelectorError {
            selector: s.to_string(),
            detail,
        };
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if term.contains("!=") || term.contains(" in ") || term.contains(" notin ") {
                return Err(err("only equality terms (key=value) are supported"));
            }
            let (k, v) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| err("only equality terms (key=value) are supported"))?;
            terms.push((k.trim().to_string(), v.trim().to_string()));
        }
        if terms.is_empty() {
            // An empty selector selects everything, which for a workload is never meant.
            return Err(err("empty selector"));
        }
        Ok(LabelSelector(terms))
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.0
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, NodeSpec, NodeStatus, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(name: &str, cpu: &str, labels: &[(&str, &str)]) -> KubeNode {
        let mut n = KubeNode::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.spec = Some(NodeSpec::default());
        n.status = Some(NodeStatus {
            allocatable: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity("8Gi".into())),
                ("pods".to_string(), Quantity("110".into())),
            ])),
            ..Default::default()
        });
        n
    }

    fn pod(name: &str, node: Option<&str>, cpu: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.spec = Some(PodSpec {
            node_name: node.map(str::to_string),
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity("1Gi".into())),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        p
    }

    #[test]
    fn view_counts_bound_live_pods_per_node() {
        let nodes = [
            node("ecs-1", "2", &[]),
            node("vk", "100", &[("type", "virtual-kubelet")]),
        ];
        let mut done = pod("done", Some("ecs-1"), "1");
        done.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let pods = [
            pod("a", Some("ecs-1"), "500m"),
            pod("pending", None, "1"),
            done,
            pod("b", Some("vk"), "1"),
        ];
        let v = build_view(&nodes, &pods, &NodeClassifier::default()).expect("valid nodes");
        let ecs = v.node("ecs-1").expect("ecs-1");
        assert_eq!(ecs.kind, crate::placement::NodeKind::Regular);
        assert_eq!(ecs.free().cpu_millis, 1500);
        assert_eq!(ecs.pods.len(), 1);
        let vk = v.node("vk").expect("vk");
        assert_eq!(vk.kind, crate::placement::NodeKind::Virtual);
        assert_eq!(vk.pods.len(), 1);
    }

    #[test]
    fn bad_allocatable_names_the_node() {
        let n = node("ecs-9", "lots", &[]);
        let e = node_from_api(&n, &NodeClassifier::default()).expect_err("bad cpu");
        assert_eq!(e.node, "ecs-9");
        assert!(e.to_string().contains("cpu"), "{e}");
    }

    #[test]
    fn init_container_requests_count_when_larger() {
        let mut p = pod("a", None, "200m");
        if let Some(spec) = p.spec.as_mut() {
            let mut init = spec.containers[0].clone();
            init.resources = Some(ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("1".into()))])),
                ..Default::default()
            });
            spec.init_containers = Some(vec![init]);
        }
        assert_eq!(pod_requests(&p).cpu_millis, 1000);
        assert_eq!(pod_requests(&p).memory_bytes, 1 << 30);
    }

    #[test]
    fn selectors() {
        let s = LabelSelector::parse("app=web, tier==front").expect("equality");
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string()),
        ]);
        assert!(s.matches(Some(&labels)));
        assert!(!s.matches(None));
        assert!(LabelSelector::parse("app in (a,b)").is_err());
        assert!(LabelSelector::parse("app!=a").is_err());
        assert!(LabelSelector::parse("").is_err());
    }
}
