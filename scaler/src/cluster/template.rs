//! The workload's pod template levers: a toleration for the virtual-node taint (only
//! when the tenant allows burst) and a preferred node affinity away from virtual nodes.
//! Pure: the target object's JSON in, a JSON patch (or nothing to do) out.

use serde_json::{Value, json};

use crate::placement::{NodeClassifier, TaintEffect};

/// Weight of the preferred affinity for regular nodes (the API's maximum).
pub const REGULAR_AFFINITY_WEIGHT: i64 = 100;

fn effect_name(e: TaintEffect) -> &'static str {
    match e {
        TaintEffect::NoSchedule => "NoSchedule",
        TaintEffect::PreferNoSchedule => "PreferNoSchedule",
        TaintEffect::NoExecute => "NoExecute",
    }
}

/// The tolerations that let a pod onto virtual nodes, one per virtual-taint rule.
pub fn burst_tolerations(classifier: &NodeClassifier) -> Vec<Value> {
    classifier
        .virtual_taints
        .iter()
        .map(|r| {
            let mut t = json!({"key": r.key});
            match &r.value {
                Some(v) => {
                    t["operator"] = json!("Equal");
                    t["value"] = json!(v);
                }
                None => t["operator"] = json!("Exists"),
            }
            if let Some(e) = r.effect {
                t["effect"] = json!(effect_name(e));
            }
            t
        })
        .collect()
}

/// The preferred scheduling term for regular nodes: none of the virtual labels. None when
/// virtual nodes are told apart by taints only (affinity cannot match on taints).
pub fn regular_preference(classifier: &NodeClassifier) -> Option<Value> {
    if classifier.virtual_labels.is_empty() {
        return None;
    }
    let exprs: Vec<Value> = classifier
        .virtual_labels
        .iter()
        .map(|(k, v)| json!({"key": k, "operator": "NotIn", "values": [v]}))
        .collect();
    Some(json!({"weight": REGULAR_AFFINITY_WEIGHT, "preference": {"matchExpressions": exprs}}))
}

fn is_ours(t: &Value, classifier: &NodeClassifier) -> bool {
    let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
    classifier.virtual_taints.iter().any(|r| r.key == key)
}

/// The JSON patch that brings `target`'s pod template to the levers, or None when it
/// already has them. The patch opens with a `test` of the resourceVersion the decision was
/// made on, so it applies whole or not at all: a concurrent edit makes it fail (and the
/// next reconcile decides again) instead of overwriting that edit.
pub fn template_patch(
    target: &Value,
    allow_burst: bool,
    classifier: &NodeClassifier,
) -> Option<json_patch::Patch> {
    let spec = target.pointer("/spec/template/spec")?;
    let current_tols: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut want_tols: Vec<Value> = current_tols
        .iter()
        .filter(|t| !is_ours(t, classifier))
        .cloned()
        .collect();
    if allow_burst {
        want_tols.extend(burst_tolerations(classifier));
    }

    let current_aff = spec.get("affinity").cloned().unwrap_or(json!({}));
    let mut want_aff = current_aff.clone();
    if let Some(term) = regular_preference(classifier) {
        let prefs = want_aff
            .pointer("/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let has = prefs
            .iter()
            .any(|p| p.get("preference") == term.get("preference"));
        if !has {
            let mut prefs = prefs;
            prefs.push(term);
            if !want_aff.is_object() {
                want_aff = json!({});
            }
            if !want_aff.get("nodeAffinity").is_some_and(Value::is_object) {
                want_aff["nodeAffinity"] = json!({});
            }
            want_aff["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] =
                Value::Array(prefs);
        }
    }

    let mut ops = Vec::new();
    if want_tols != current_tols {
        ops.push(
            json!({"op": "add", "path": "/spec/template/spec/tolerations", "value": want_tols}),
        );
    }
    if want_aff != current_aff {
        ops.push(json!({"op": "add", "path": "/spec/template/spec/affinity", "value": want_aff}));
    }
    if ops.is_empty() {
        return None;
    }
    let rv = target
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    if !rv.is_null() {
        ops.insert(
            0,
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
        );
    }
    serde_json::from_value(Value::Array(ops)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(tolerations: Value) -> Value {
        json!({
            "metadata": {"name": "web", "resourceVersion": "7"},
            "spec": {"template": {"spec": {"containers": [], "tolerations": tolerations}}}
        })
    }

    fn apply(mut target: Value, allow: bool) -> (Value, bool) {
        let c = NodeClassifier::default();
        match template_patch(&target, allow, &c) {
            Some(p) => {
                json_patch::patch(&mut target, &p).expect("patch applies");
                (target, true)
            }
            None => (target, false),
        }
    }

    #[test]
    fn adds_toleration_and_affinity_then_is_idempotent() {
        let other = json!({"key": "dedicated", "operator": "Exists"});
        let (d, changed) = apply(deployment(json!([other.clone()])), true);
        assert!(changed);
        let tols = d
            .pointer("/spec/template/spec/tolerations")
            .expect("tolerations");
        assert_eq!(tols.as_array().map(Vec::len), Some(2));
        assert_eq!(tols[0], other, "the workload's own toleration is kept");
        assert_eq!(tols[1]["key"], "virtual-kubelet.io/provider");
        assert_eq!(tols[1]["value"], "alibabacloud");
        let pref = d
            .pointer("/spec/template/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/0")
            .expect("preference");
        assert_eq!(pref["weight"], 100);
        assert_eq!(
            pref["preference"]["matchExpressions"][0]["operator"],
            "NotIn"
        );
        let (_, again) = apply(d, true);
        assert!(!again, "a second pass changes nothing");
    }

    #[test]
    fn burst_off_removes_only_our_toleration() {
        let (d, _) = apply(
            deployment(json!([{"key": "dedicated", "operator": "Exists"}])),
            true,
        );
        let (d, changed) = apply(d, false);
        assert!(changed);
        let tols = d
            .pointer("/spec/template/spec/tolerations")
            .and_then(Value::as_array);
        assert_eq!(tols.map(Vec::len), Some(1));
        assert!(
            d.pointer("/spec/template/spec/affinity/nodeAffinity")
                .is_some()
        );
    }

    #[test]
    fn stale_resource_version_fails_whole() {
        let c = NodeClassifier::default();
        let d = deployment(json!([]));
        let p = template_patch(&d, true, &c).expect("changes");
        let mut moved = d.clone();
        moved["metadata"]["resourceVersion"] = json!("8");
        let before = moved.clone();
        assert!(json_patch::patch(&mut moved, &p).is_err());
        assert_eq!(moved, before, "nothing applied");
    }
}
