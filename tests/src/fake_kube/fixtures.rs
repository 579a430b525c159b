//! Objects for tests, as the API server would hold them.

use serde_json::{Value, json};

/// A regular node with this much allocatable CPU (cores), 16Gi and 110 pods.
pub fn regular_node(name: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"}},
    })
}

/// A virtual node as Alibaba's virtual-kubelet registers it: the `type=virtual-kubelet`
/// label and the `virtual-kubelet.io/provider=alibabacloud:NoSchedule` taint.
pub fn virtual_node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"type": "virtual-kubelet"}},
        "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "10000"}},
    })
}

/// A Deployment selecting `app=NAME`, one container requesting `cpu` and 1Gi.
pub fn deployment(ns: &str, name: &str, replicas: u32, cpu: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main", "image": "registry.example/web:1",
                    "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}},
                }]},
            },
        },
    })
}

/// A KEDA ScaledObject scaling the Deployment `target` through Spillway.
pub fn scaled_object(ns: &str, name: &str, target: &str) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"name": target},
            "triggers": [{"type": "external", "metadata": {"scalerAddress": "spillway.spillway:9090"}}],
        },
    })
}

/// A PodDisruptionBudget over `app=APP` with an integer minAvailable.
pub fn pdb(ns: &str, name: &str, app: &str, min_available: u32) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    })
}

/// A running, Ready pod already bound to `node` (another team's load).
pub fn bound_pod(ns: &str, name: &str, node: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{
            "name": "main", "image": "registry.example/batch:1",
            "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}},
        }]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    })
}

/// `metrics.k8s.io/v1beta1` PodMetrics for one pod with one container.
pub fn pod_metrics(ns: &str, name: &str, labels: Value, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "timestamp": "2026-01-01T00:00:00Z", "window": "15s",
        "containers": [{"name": "main", "usage": {"cpu": cpu, "memory": memory}}],
    })
}

/// The HPA KEDA creates for ScaledObject `scaled_object` (named `keda-hpa-<it>`):
/// Spillway's External metric with an `AverageValue` target of 1, min 1, max 100, and
/// `behavior` as given (KEDA copies `advanced.horizontalPodAutoscalerConfig.behavior`).
pub fn keda_hpa(ns: &str, scaled_object: &str, target: &str, behavior: Option<Value>) -> Value {
    let mut hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": format!("keda-hpa-{scaled_object}"), "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "keda-operator", "scaledobject.keda.sh/name": scaled_object}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1, "maxReplicas": 100,
            "metrics": [{"type": "External", "external": {
                "metric": {"name": "s0-spillway-replicas",
                    "selector": {"matchLabels": {"scaledobject.keda.sh/name": scaled_object}}},
                "target": {"type": "AverageValue", "averageValue": "1"},
            }}],
        },
    });
    if let Some(behavior) = behavior {
        hpa["spec"]["behavior"] = behavior;
    }
    hpa
}

/// `deploy/keda/hpa-passthrough.snippet` as KEDA copies it into the HPA, with
/// `tolerance` in both directions when given.
pub fn passthrough_behavior(tolerance: Option<&str>) -> Value {
    let mut behavior = json!({
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Percent", "value": 1000, "periodSeconds": 15},
            {"type": "Pods", "value": 1000, "periodSeconds": 15},
        ]},
        "scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ]},
    });
    if let Some(t) = tolerance {
        behavior["scaleUp"]["tolerance"] = json!(t);
        behavior["scaleDown"]["tolerance"] = json!(t);
    }
    behavior
}
