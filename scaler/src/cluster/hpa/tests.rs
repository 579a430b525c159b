use serde_json::{Value, json};

use super::*;

/// The policy defaults' limits (`policy::defaults`): up max(4 pods, 100 %) per 15 s,
/// down 20 % per 60 s, over 2..=400 replicas.
fn policy() -> PolicyBounds {
    PolicyBounds {
        min: 2,
        max: 400,
        up: RateLimit {
            pods: Some(4),
            percent: Some(100),
            period_secs: 15,
            select: SelectPolicy::Max,
        },
        down: RateLimit {
            pods: None,
            percent: Some(20),
            period_secs: 60,
            select: SelectPolicy::Max,
        },
    }
}

/// `deploy/keda/hpa-passthrough.snippet`, as KEDA copies it into the HPA.
fn passthrough() -> Value {
    json!({
        "scaleUp": {
            "stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 1000, "periodSeconds": 15},
                {"type": "Pods", "value": 1000, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    })
}

fn spillway_metric(target: Value) -> Value {
    json!({"type": "External", "external": {
        "metric": {"name": "s0-spillway-replicas", "selector": {"matchLabels": {"scaledobject.keda.sh/name": "checkout"}}},
        "target": target,
    }})
}

fn average_value_one() -> Value {
    spillway_metric(json!({"type": "AverageValue", "averageValue": "1"}))
}

/// An HPA as KEDA creates it for ScaledObject `checkout`.
fn hpa(
    behavior: Option<Value>,
    metrics: Vec<Value>,
    min: Option<i32>,
    max: i32,
) -> HorizontalPodAutoscaler {
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
        "maxReplicas": max,
        "metrics": metrics,
    });
    if let Some(min) = min {
        spec["minReplicas"] = json!(min);
    }
    if let Some(behavior) = behavior {
        spec["behavior"] = behavior;
    }
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-checkout", "namespace": "acme-prod"},
        "spec": spec,
    }))
    .expect("a valid HPA")
}

fn standard(behavior: Option<Value>) -> HorizontalPodAutoscaler {
    hpa(behavior, vec![average_value_one()], Some(2), 400)
}

fn with(mut behavior: Value, pointer: &str, value: Value) -> Value {
    *behavior
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} in the behavior")) = value;
    behavior
}

fn reasons(view: &HpaView) -> Vec<FindingReason> {
    view.findings.iter().map(|f| f.reason).collect()
}

#[test]
fn the_passthrough_behavior_has_no_findings_and_the_cluster_tolerance() {
    let view = judge(&standard(Some(passthrough())), &policy());
    assert_eq!(reasons(&view), vec![], "{:#?}", view.findings);
    assert!(view.passes_through());
    assert_eq!(view.tolerance, Tolerances::default());
    assert_eq!((view.min_replicas, view.max_replicas), (2, 400));
    assert_eq!(view.name, "keda-hpa-checkout");
}

#[test]
fn tolerances_are_read_per_direction() {
    use FindingReason::ToleranceUnreadable;
    // (scaleUp.tolerance, scaleDown.tolerance, expected (up, set), (down, set), findings)
    type Case = (
        Option<&'static str>,
        Option<&'static str>,
        (f64, bool),
        (f64, bool),
        Vec<FindingReason>,
    );
    let cases: [Case; 5] = [
        (Some("0"), Some("0"), (0.0, true), (0.0, true), vec![]),
        (
            Some("50m"),
            None,
            (0.05, true),
            (DEFAULT_TOLERANCE, false),
            vec![],
        ),
        (
            None,
            Some("0.2"),
            (DEFAULT_TOLERANCE, false),
            (0.2, true),
            vec![],
        ),
        (
            Some("lots"),
            Some("0"),
            (DEFAULT_TOLERANCE, false),
            (0.0, true),
            vec![ToleranceUnreadable],
        ),
        (
            Some("1.5"),
            None,
            (DEFAULT_TOLERANCE, false),
            (DEFAULT_TOLERANCE, false),
            vec![ToleranceUnreadable],
        ),
    ];
    for (up, down, (want_up, up_set), (want_down, down_set), findings) in cases {
        let mut behavior = passthrough();
        if let Some(t) = up {
            behavior["scaleUp"]["tolerance"] = json!(t);
        }
        if let Some(t) = down {
            behavior["scaleDown"]["tolerance"] = json!(t);
        }
        let view = judge(&standard(Some(behavior)), &policy());
        let case = format!("up {up:?}, down {down:?}");
        let t = view.tolerance;
        assert!((t.up - want_up).abs() < 1e-12, "{case}: {t:?}");
        assert!((t.down - want_down).abs() < 1e-12, "{case}: {t:?}");
        assert_eq!(
            (t.up_from_hpa, t.down_from_hpa),
            (up_set, down_set),
            "{case}"
        );
        assert_eq!(reasons(&view), findings, "{case}");
    }
}

#[test]
fn what_is_not_a_passthrough_is_named() {
    use FindingReason::*;
    let pt = passthrough;
    // (what, behavior, findings)
    let cases: Vec<(&str, Option<Value>, Vec<FindingReason>)> = vec![
        // defaults.go: no behavior is 4 pods / 100 % per 15 s up, which Spillway's
        // default limits do not exceed, and the controller's 300 s window down.
        ("no behavior", None, vec![ScaleDownStabilization]),
        (
            "scale-down window unset",
            Some(
                json!({"scaleUp": pt()["scaleUp"], "scaleDown": {"policies": pt()["scaleDown"]["policies"]}}),
            ),
            vec![ScaleDownStabilization],
        ),
        (
            "scale-down window 60 s",
            Some(with(
                pt(),
                "/scaleDown/stabilizationWindowSeconds",
                json!(60),
            )),
            vec![ScaleDownStabilization],
        ),
        (
            "scale-up window 30 s",
            Some(with(pt(), "/scaleUp/stabilizationWindowSeconds", json!(30))),
            vec![ScaleUpStabilization],
        ),
        (
            "scale-up 2 pods per minute",
            Some(with(
                pt(),
                "/scaleUp/policies",
                json!([{"type": "Pods", "value": 2, "periodSeconds": 60}]),
            )),
            vec![ScaleUpCapped],
        ),
        (
            "scale-up Min of a wide and a narrow policy",
            Some(with(
                with(pt(), "/scaleUp/selectPolicy", json!("Min")),
                "/scaleUp/policies",
                json!([
                    {"type": "Percent", "value": 1000, "periodSeconds": 15},
                    {"type": "Pods", "value": 1, "periodSeconds": 15},
                ]),
            )),
            vec![ScaleUpCapped],
        ),
        (
            "scale-up Max of a wide and a narrow policy",
            Some(with(
                pt(),
                "/scaleUp/policies",
                json!([
                    {"type": "Percent", "value": 1000, "periodSeconds": 15},
                    {"type": "Pods", "value": 1, "periodSeconds": 15},
                ]),
            )),
            vec![],
        ),
        (
            "scale-in paused by KEDA's annotation",
            Some(with(pt(), "/scaleDown/selectPolicy", json!("Disabled"))),
            vec![ScaleDownCapped],
        ),
        (
            "scale-down 10 % per 15 s: 10 → 8 takes two periods",
            Some(with(
                pt(),
                "/scaleDown/policies",
                json!([{"type": "Percent", "value": 10, "periodSeconds": 15}]),
            )),
            vec![ScaleDownCapped],
        ),
        (
            "scale-down 1 pod per 15 s",
            Some(with(
                pt(),
                "/scaleDown/policies",
                json!([{"type": "Pods", "value": 1, "periodSeconds": 15}]),
            )),
            vec![ScaleDownCapped],
        ),
    ];
    for (what, behavior, findings) in cases {
        let view = judge(&standard(behavior), &policy());
        assert_eq!(reasons(&view), findings, "{what}: {:#?}", view.findings);
        assert_eq!(view.passes_through(), findings.is_empty(), "{what}");
    }
}

#[test]
fn a_narrow_hpa_caps_only_when_it_is_narrower_than_the_policy() {
    // The HPA's defaults (4 pods / 100 % per 15 s) are wider than a policy allowing
    // 2 pods per minute up and 1 pod per minute down.
    let strict = PolicyBounds {
        up: RateLimit {
            pods: Some(2),
            percent: None,
            period_secs: 60,
            select: SelectPolicy::Max,
        },
        down: RateLimit {
            pods: Some(1),
            percent: None,
            period_secs: 60,
            select: SelectPolicy::Max,
        },
        ..policy()
    };
    let behavior = json!({
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": 0},
    });
    let view = judge(&standard(Some(behavior.clone())), &strict);
    assert_eq!(reasons(&view), vec![], "{:#?}", view.findings);
    // The same defaults equal the default policy's up limit (max(4 pods, 100 %) per
    // 15 s), so they cap nothing there either.
    let view = judge(&standard(Some(behavior)), &policy());
    assert_eq!(reasons(&view), vec![], "{:#?}", view.findings);
}

#[test]
fn the_first_capped_count_is_reported() {
    // 4 pods per 15 s against the policy's max(4 pods, 100 %): equal up to 4 replicas,
    // short from 5 (Spillway may double 5 → 10, the HPA allows 9).
    let behavior = with(
        passthrough(),
        "/scaleUp/policies",
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15}]),
    );
    let view = judge(&standard(Some(behavior)), &policy());
    let capped = view
        .findings
        .iter()
        .find(|f| f.reason == FindingReason::ScaleUpCapped)
        .expect("capped");
    assert!(
        capped.message.contains("first from 5 replicas"),
        "{}",
        capped.message
    );
    assert!(
        capped.message.contains("4 pods per 15s"),
        "{}",
        capped.message
    );
}

#[test]
fn targets_and_metrics() {
    use FindingReason::*;
    let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}});
    let cases: Vec<(&str, Vec<Value>, Vec<FindingReason>)> = vec![
        ("AverageValue 1", vec![average_value_one()], vec![]),
        (
            "AverageValue 1000m is 1",
            vec![spillway_metric(
                json!({"type": "AverageValue", "averageValue": "1000m"}),
            )],
            vec![],
        ),
        (
            "Value",
            vec![spillway_metric(json!({"type": "Value", "value": "1"}))],
            vec![ValueTarget],
        ),
        (
            "AverageValue 2",
            vec![spillway_metric(
                json!({"type": "AverageValue", "averageValue": "2"}),
            )],
            vec![TargetNotOne],
        ),
        ("no metric", vec![], vec![MetricMissing]),
        ("only cpu", vec![cpu.clone()], vec![MetricMissing]),
        (
            "Spillway and cpu",
            vec![average_value_one(), cpu],
            vec![OtherMetrics],
        ),
    ];
    for (what, metrics, findings) in cases {
        let view = judge(&hpa(Some(passthrough()), metrics, Some(2), 400), &policy());
        assert_eq!(reasons(&view), findings, "{what}: {:#?}", view.findings);
    }
}

#[test]
fn min_and_max_that_clip_the_policy() {
    use FindingReason::*;
    // (policy min, HPA minReplicas, HPA maxReplicas, findings)
    let cases = [
        (2, Some(2), 400, vec![]),
        (2, Some(1), 500, vec![]),
        (2, Some(5), 400, vec![MinAbovePolicy]),
        // minReplicaCount 0 makes KEDA set the HPA's floor to 1: not a clip.
        (0, Some(1), 400, vec![]),
        (0, None, 400, vec![]),
        (1, Some(3), 100, vec![MinAbovePolicy, MaxBelowPolicy]),
    ];
    for (min, hpa_min, hpa_max, findings) in cases {
        let bounds = PolicyBounds { min, ..policy() };
        let view = judge(
            &hpa(
                Some(passthrough()),
                vec![average_value_one()],
                hpa_min,
                hpa_max,
            ),
            &bounds,
        );
        assert_eq!(
            reasons(&view),
            findings,
            "policy min {min}, HPA {hpa_min:?}..{hpa_max}"
        );
    }
}

#[test]
fn the_hpa_name_follows_keda() {
    assert_eq!(hpa_name("web", &json!({"spec": {}})), "keda-hpa-web");
    assert_eq!(
        hpa_name(
            "web",
            &json!({"spec": {"advanced": {"horizontalPodAutoscalerConfig": {"name": "web-hpa"}}}})
        ),
        "web-hpa"
    );
    // Once KEDA recorded a name, it keeps managing that HPA (getHPANameOnEnsure).
    assert_eq!(
        hpa_name(
            "web",
            &json!({
                "spec": {"advanced": {"horizontalPodAutoscalerConfig": {"name": "renamed"}}},
                "status": {"hpaName": "keda-hpa-web"},
            })
        ),
        "keda-hpa-web"
    );
    assert_eq!(
        hpa_name("web", &json!({"status": {"hpaName": ""}})),
        "keda-hpa-web"
    );
}

#[test]
fn spillway_metric_names() {
    for (name, ours) in [
        ("s0-spillway-replicas", true),
        ("S12-Spillway-Replicas", true),
        ("spillway-replicas", true),
        ("s-spillway-replicas", false),
        ("s0-other-spillway-replicas", false),
        ("s0-cpu", false),
    ] {
        assert_eq!(is_spillway_metric(name), ours, "{name}");
    }
}

#[test]
fn the_condition_says_what_to_change() {
    let good = judge(&standard(Some(passthrough())), &policy()).probe();
    assert_eq!(good.status, ConditionStatus::True);
    assert_eq!(good.reason, "PassThrough");
    assert!(
        good.message.contains("tolerance up 10% (cluster default)"),
        "{}",
        good.message
    );
    let bad = judge(&standard(None), &policy()).probe();
    assert_eq!(bad.status, ConditionStatus::False);
    assert_eq!(bad.reason, "ScaleDownStabilization");
    assert!(bad.message.contains("keda-hpa-checkout"), "{}", bad.message);
    assert!(bad.message.contains("300s"), "{}", bad.message);
    let missing = unread_probe(HpaUnread::NotFound, "acme-prod/keda-hpa-checkout");
    assert_eq!(missing.status, ConditionStatus::Unknown);
    assert_eq!(missing.reason, "HpaNotFound");
}

#[test]
fn views_are_kept_per_workload() {
    let views = HpaViews::new();
    let key = WorkloadKey::new("acme", "checkout");
    assert_eq!(views.tolerance(&key), None);
    let mut behavior = passthrough();
    behavior["scaleUp"]["tolerance"] = json!("0");
    views.set(key.clone(), judge(&standard(Some(behavior)), &policy()));
    let tolerance = views.tolerance(&key).expect("read");
    assert_eq!((tolerance.up, tolerance.down), (0.0, DEFAULT_TOLERANCE));
    assert_eq!(views.all().len(), 1);
    views.remove(&key);
    assert!(views.get(&key).is_none());
}

#[test]
fn tolerances_read_as_percentages() {
    let t = Tolerances {
        up: 0.07,
        down: 0.1,
        up_from_hpa: true,
        down_from_hpa: false,
    };
    assert_eq!(t.to_string(), "tolerance up 7%, down 10% (cluster default)");
}
