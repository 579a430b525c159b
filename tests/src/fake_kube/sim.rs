//! Just enough of the ReplicaSet controller, the scheduler and the kubelet to make the
//! fake cluster move when a test advances it: pods are created from a Deployment's
//! template, removed by `controller.kubernetes.io/pod-deletion-cost` (after unscheduled
//! and not-Ready pods, newest first), bound to the first node where their requests fit
//! and their tolerations allow (preferred node affinity scored first), and turn Ready
//! one pass after they are bound.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::pod_ready;
use super::store::{Collection, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub pod: String,
    pub node: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub created: Vec<String>,
    pub deleted: Vec<String>,
    pub scheduled: Vec<Scheduled>,
    pub became_ready: Vec<String>,
    pub pending: Vec<String>,
}

pub(crate) fn run(store: &mut Store) -> SimReport {
    let deployments = Collection::new("apps", "v1", "deployments");
    let pods_c = Collection::new("", "v1", "pods");
    let mut report = SimReport::default();

    // Kubelet first, so a pod bound in this pass turns Ready only in the next one.
    for pod in store.list(&pods_c, None) {
        if pod.pointer("/spec/nodeName").is_some() && !pod_ready(&pod) {
            let mut p = pod.clone();
            p["status"] =
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
            if let Some(name) = put_back(store, &pods_c, p) {
                report.became_ready.push(name);
            }
        }
    }

    for d in store.list(&deployments, None) {
        let ns = str_at(&d, "/metadata/namespace");
        let name = str_at(&d, "/metadata/name");
        let selector = match_labels(&d, "/spec/selector/matchLabels");
        if selector.is_empty() {
            continue;
        }
        let wanted = d
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize;
        let owned: Vec<Value> = store
            .list(&pods_c, Some(&ns))
            .into_iter()
            .filter(|p| super::labels_match(p, &selector))
            .collect();
        if owned.len() < wanted {
            for _ in owned.len()..wanted {
                store.sim_seq += 1;
                let seq = store.sim_seq;
                let pod_name = format!("{name}-{seq}");
                let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
                let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
                meta["name"] = json!(pod_name);
                meta["namespace"] = json!(ns);
                meta["creationTimestamp"] = json!(timestamp(seq));
                let pod = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": meta,
                    "spec": template.get("spec").cloned().unwrap_or(json!({})),
                    "status": {"phase": "Pending"},
                });
                if store.create(&pods_c, Some(&ns), pod).is_ok() {
                    report.created.push(pod_name);
                }
            }
        } else if owned.len() > wanted {
            let mut victims = owned.clone();
            victims.sort_by_key(|p| {
                (
                    p.pointer("/spec/nodeName").is_some(),
                    pod_ready(p),
                    deletion_cost(p),
                    std::cmp::Reverse(str_at(p, "/metadata/creationTimestamp")),
                    std::cmp::Reverse(str_at(p, "/metadata/name")),
                )
            });
            for v in victims.iter().take(owned.len() - wanted) {
                let pod_name = str_at(v, "/metadata/name");
                if store.delete(&pods_c, Some(&ns), &pod_name).is_ok() {
                    report.deleted.push(pod_name);
                }
            }
        }
    }

    schedule(store, &mut report);

    for d in store.list(&deployments, None) {
        let ns = str_at(&d, "/metadata/namespace");
        let selector = match_labels(&d, "/spec/selector/matchLabels");
        let owned: Vec<Value> = store
            .list(&pods_c, Some(&ns))
            .into_iter()
            .filter(|p| !selector.is_empty() && super::labels_match(p, &selector))
            .collect();
        let status = json!({
            "replicas": owned.len(),
            "readyReplicas": owned.iter().filter(|p| pod_ready(p)).count(),
        });
        if d.get("status") != Some(&status) {
            let mut d = d.clone();
            d["status"] = status;
            put_back(store, &deployments, d);
        }
    }
    report
}

fn schedule(store: &mut Store, report: &mut SimReport) {
    let pods_c = Collection::new("", "v1", "pods");
    let nodes = store.list(&Collection::new("", "v1", "nodes"), None);
    let all = store.list(&pods_c, None);
    let mut used: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for p in &all {
        if let Some(n) = p.pointer("/spec/nodeName").and_then(Value::as_str) {
            let (c, m) = pod_requests(p);
            let e = used.entry(n.to_string()).or_default();
            *e = (e.0 + c, e.1 + m, e.2 + 1);
        }
    }
    let mut pending: Vec<Value> = all
        .into_iter()
        .filter(|p| p.pointer("/spec/nodeName").is_none())
        .collect();
    pending.sort_by_key(|p| str_at(p, "/metadata/name"));
    for pod in pending {
        let (cpu, mem) = pod_requests(&pod);
        let mut best: Option<(i64, String)> = None;
        for n in &nodes {
            let node_name = str_at(n, "/metadata/name");
            if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
                || !tolerates(&pod, n)
            {
                continue;
            }
            let alloc_cpu = quantity(n.pointer("/status/allocatable/cpu"), true);
            let alloc_mem = quantity(n.pointer("/status/allocatable/memory"), false);
            let alloc_pods = quantity(n.pointer("/status/allocatable/pods"), false);
            let u = used.get(&node_name).copied().unwrap_or_default();
            if u.0 + cpu > alloc_cpu || u.1 + mem > alloc_mem || u.2 + 1 > alloc_pods {
                continue;
            }
            let score = affinity_score(&pod, n);
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, node_name));
            }
        }
        let pod_name = str_at(&pod, "/metadata/name");
        match best {
            Some((_, node)) => {
                let e = used.entry(node.clone()).or_default();
                *e = (e.0 + cpu, e.1 + mem, e.2 + 1);
                let mut p = pod.clone();
                p["spec"]["nodeName"] = json!(node);
                if put_back(store, &pods_c, p).is_some() {
                    report.scheduled.push(Scheduled {
                        pod: pod_name,
                        node,
                    });
                }
            }
            None => report.pending.push(pod_name),
        }
    }
}

fn put_back(store: &mut Store, c: &Collection, mut obj: Value) -> Option<String> {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = str_at(&obj, "/metadata/name");
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    store
        .replace(c, ns.as_deref(), &name, obj)
        .ok()
        .map(|_| name)
}

fn str_at(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn match_labels(v: &Value, ptr: &str) -> Vec<(String, String)> {
    v.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn timestamp(seq: u64) -> String {
    format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        (seq / 3600) % 24,
        (seq / 60) % 60,
        seq % 60
    )
}

fn deletion_cost(p: &Value) -> i64 {
    p.pointer("/metadata/annotations/controller.kubernetes.io~1pod-deletion-cost")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn pod_requests(p: &Value) -> (u64, u64) {
    p.pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter().fold((0, 0), |(c, m), ct| {
                (
                    c + quantity(ct.pointer("/resources/requests/cpu"), true),
                    m + quantity(ct.pointer("/resources/requests/memory"), false),
                )
            })
        })
        .unwrap_or_default()
}

/// CPU in millicores (`cpu`), else plain units; enough of Kubernetes' quantity syntax
/// for test fixtures.
fn quantity(v: Option<&Value>, cpu: bool) -> u64 {
    let s = match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return 0,
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().unwrap_or(0.0);
    let mult: f64 = match suffix {
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1048576.0,
        "Gi" => 1073741824.0,
        "Ti" => 1099511627776.0,
        _ => 1.0,
    };
    let base = if cpu { 1000.0 } else { 1.0 };
    (n * mult * base).round() as u64
}

fn tolerates(pod: &Value, node: &Value) -> bool {
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tols = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.iter().all(|t| {
        let effect = str_at(t, "/effect");
        if effect == "PreferNoSchedule" {
            return true;
        }
        tols.iter().any(|tol| {
            let key_ok = tol.get("key").is_none_or(|k| k == &t["key"]);
            let op = str_at(tol, "/operator");
            let value_ok = op == "Exists"
                || tol.get("value").unwrap_or(&json!("")) == t.get("value").unwrap_or(&json!(""));
            let effect_ok = tol
                .get("effect")
                .is_none_or(|e| e.as_str().is_none_or(|e| e.is_empty() || e == effect));
            key_ok && value_ok && effect_ok
        })
    })
}

fn affinity_score(pod: &Value, node: &Value) -> i64 {
    let labels: BTreeMap<String, String> =
        match_labels(node, "/metadata/labels").into_iter().collect();
    pod.pointer("/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .map(|terms| {
            terms
                .iter()
                .filter(|t| {
                    t.pointer("/preference/matchExpressions")
                        .and_then(Value::as_array)
                        .is_some_and(|es| es.iter().all(|e| expression_matches(e, &labels)))
                })
                .map(|t| t.get("weight").and_then(Value::as_i64).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn expression_matches(e: &Value, labels: &BTreeMap<String, String>) -> bool {
    let key = str_at(e, "/key");
    let values: BTreeSet<String> = e
        .get("values")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let have = labels.get(&key);
    match str_at(e, "/operator").as_str() {
        "In" => have.is_some_and(|v| values.contains(v)),
        "NotIn" => have.is_none_or(|v| !values.contains(v)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        _ => false,
    }
}
