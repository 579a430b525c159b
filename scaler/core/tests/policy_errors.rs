//! Bad policy files: each problem must name line, column and field path, and say what is
//! expected. Every problem in a file is reported at once.

use spillway_core::policy::{PolicyError, parse_policy};

const HEAD: &str = "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme }\nspec:\n  namespaces: [acme-prod]\n";

/// Expected errors as (line, column, field path, text the message contains).
type Expected = Vec<(u64, u64, &'static str, &'static str)>;

/// (case, file text, expected errors)
fn cases() -> Vec<(&'static str, String, Expected)> {
    let with = |body: &str| format!("{HEAD}{body}");
    vec![
        (
            "unknown field in an app",
            with("  apps:\n    checkout: { replicas: { max: 4 }, replica: 3, signals: { qps: { targetPerReplica: 5 } } }\n"),
            vec![(7, 39, "spec.apps.checkout.replica", "unknown field `replica`; expected one of: replicas, signals")],
        ),
        (
            "min above max across defaults and app",
            with("  defaults:\n    replicas: { min: 5 }\n    signals: { qps: { targetPerReplica: 10 } }\n  apps:\n    checkout: { replicas: { max: 4 } }\n"),
            vec![(7, 22, "spec.defaults.replicas.min", "replicas.min (5) is above replicas.max (4) for app `checkout`; expected min ≤ max")],
        ),
        (
            "bad duration",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    hysteresis: { downWindow: 5 mins }\n  apps: { web: {} }\n"),
            vec![(8, 31, "spec.defaults.hysteresis.downWindow", "expected a duration such as `15s`, `5m` or `1h30m`")],
        ),
        (
            "bad quantity",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    placement: { requests: { cpu: 2cores } }\n  apps: { web: {} }\n"),
            vec![(8, 35, "spec.defaults.placement.requests.cpu", "expected a Kubernetes quantity such as `500m`")],
        ),
        (
            "utilization above 1",
            with("  defaults:\n    signals: { cpu: { targetUtilization: 60 } }\n  apps: { web: {} }\n"),
            vec![(7, 42, "spec.defaults.signals.cpu.targetUtilization", "expected targetUtilization above 0 and at most 1.0")],
        ),
        (
            "zero target",
            with("  apps:\n    web:\n      signals:\n        qps: { targetPerReplica: 0 }\n"),
            vec![(9, 34, "spec.apps.web.signals.qps.targetPerReplica", "expected targetPerReplica above 0")],
        ),
        (
            "bad cron and unknown time zone, both reported",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    schedules:\n      - name: sale\n        cron: \"0 61 * * *\"\n        timezone: Asia/Shanghia\n        duration: 1h\n        minReplicas: 5\n  apps: { web: {} }\n"),
            vec![
                (10, 15, "spec.defaults.schedules[0].cron", "expected a cron expression"),
                (11, 19, "spec.defaults.schedules[0].timezone", "expected an IANA time zone such as `Asia/Shanghai`"),
            ],
        ),
        (
            "schedule missing fields",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    schedules: [ { name: sale, cron: \"0 0 9 * * *\" } ]\n  apps: { web: {} }\n"),
            vec![
                (8, 18, "spec.defaults.schedules[0]", "missing field `duration`"),
                (8, 18, "spec.defaults.schedules[0]", "missing field `minReplicas`"),
            ],
        ),
        (
            "a cron that never fires",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    schedules:\n      - name: leap\n        cron: \"0 0 30 2 *\"\n        timezone: Europe/Berlin\n        duration: 1h\n        minReplicas: 5\n  apps: { web: {} }\n"),
            vec![(10, 15, "spec.defaults.schedules[0].cron", "`0 0 30 2 *`: this cron expression never fires")],
        ),
        (
            "schedule above max",
            with("  defaults:\n    replicas: { max: 10 }\n    signals: { qps: { targetPerReplica: 10 } }\n    schedules: [ { name: sale, cron: \"0 0 9 * * *\", duration: 1h, minReplicas: 50 } ]\n  apps: { web: {} }\n"),
            vec![(9, 80, "spec.defaults.schedules[0].minReplicas", "minReplicas (50) is above replicas.max (10)")],
        ),
        (
            "wrong type",
            with("  defaults:\n    replicas: { min: two }\n    signals: { qps: { targetPerReplica: 10 } }\n  apps: { web: {} }\n"),
            vec![(7, 22, "spec.defaults.replicas.min", "expected a whole number from 0 to 4294967295, found the string `two`")],
        ),
        (
            "band inverted and out of range",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    hysteresis: { scaleUpAbove: 0.9, scaleDownBelow: 1.2 }\n  apps: { web: {} }\n"),
            vec![
                (8, 33, "spec.defaults.hysteresis.scaleUpAbove", "expected hysteresis.scaleUpAbove from 1.0 to 10.0"),
                (8, 54, "spec.defaults.hysteresis.scaleDownBelow", "expected hysteresis.scaleDownBelow above 0 and below 1.0"),
            ],
        ),
        (
            "window out of range",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    hysteresis: { downWindow: 300m }\n  apps: { web: {} }\n"),
            vec![(8, 31, "spec.defaults.hysteresis.downWindow", "expected hysteresis.downWindow from 0s to 3600s, found 18000s")],
        ),
        (
            "limits: zero pods and a bad select",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    limits: { up: { pods: 0, select: Fastest } }\n  apps: { web: {} }\n"),
            vec![
                (8, 27, "spec.defaults.limits.up.pods", "expected limits.up.pods of at least 1"),
                (8, 38, "spec.defaults.limits.up.select", "expected one of Max, Min, Disabled, found `Fastest`"),
            ],
        ),
        (
            "panic threshold not above 1",
            with("  defaults:\n    signals: { qps: { targetPerReplica: 10 } }\n    panic: { threshold: 0.5 }\n  apps: { web: {} }\n"),
            vec![(8, 25, "spec.defaults.panic.threshold", "expected panic.threshold above 1.0")],
        ),
        (
            "no signal at all",
            with("  apps:\n    web: { replicas: { max: 3 } }\n"),
            vec![(7, 10, "spec.apps.web", "has no signal to scale on")],
        ),
        (
            "scale to zero without a way to wake up",
            with("  defaults:\n    replicas: { min: 0 }\n    signals: { cpu: { targetUtilization: 0.5 } }\n  apps: { web: {} }\n"),
            vec![(7, 22, "spec.defaults.replicas.min", "no signal can wake it up")],
        ),
        (
            "namespace invalid and duplicated",
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme }\nspec:\n  namespaces: [Acme_Prod, a, a]\n  defaults: { signals: { qps: { targetPerReplica: 1 } } }\n  apps: { web: {} }\n".into(),
            vec![
                (5, 16, "spec.namespaces[0]", "expected a Kubernetes namespace name"),
                (5, 30, "spec.namespaces[2]", "namespace `a` is listed twice"),
            ],
        ),
        (
            "wrong apiVersion and kind, missing tenant",
            "apiVersion: spillway.io/v2\nkind: Policy\nmetadata: {}\nspec:\n  namespaces: [a]\n  defaults: { signals: { qps: { targetPerReplica: 1 } } }\n  apps: { web: {} }\n".into(),
            vec![
                (1, 13, "apiVersion", "expected `spillway.io/v1`, found `spillway.io/v2`"),
                (2, 7, "kind", "expected `ScalingPolicy`, found `Policy`"),
                (3, 11, "metadata", "missing field `tenant`"),
            ],
        ),
        (
            "no apps",
            with("  defaults: { signals: { qps: { targetPerReplica: 1 } } }\n  apps: {}\n"),
            vec![(7, 9, "spec.apps", "expected at least one app")],
        ),
        (
            "apps missing",
            with("  defaults: { signals: { qps: { targetPerReplica: 1 } } }\n"),
            vec![(5, 3, "spec", "missing field `apps`")],
        ),
        (
            "duplicate app name",
            with("  defaults: { signals: { qps: { targetPerReplica: 1 } } }\n  apps:\n    web: {}\n    web: {}\n"),
            vec![(9, 5, "", "invalid YAML: duplicate mapping key")],
        ),
        (
            "YAML syntax error",
            with("  apps: { web: {\n"),
            vec![(6, 16, "", "invalid YAML: unclosed bracket")],
        ),
    ]
}

fn show(errors: &[PolicyError]) -> String {
    errors.iter().map(|e| format!("  {e}\n")).collect()
}

#[test]
fn each_bad_file_reports_exact_locations() {
    let mut failures = String::new();
    for (case, text, expected) in cases() {
        let errors = match parse_policy("bad.yaml", &text) {
            Ok(_) => {
                failures.push_str(&format!("{case}: accepted, expected errors\n"));
                continue;
            }
            Err(e) => e.0,
        };
        let ok = errors.len() == expected.len()
            && errors
                .iter()
                .zip(&expected)
                .all(|(e, (line, column, path, text))| {
                    e.line == *line
                        && e.column == *column
                        && e.path == *path
                        && e.message.contains(text)
                        && e.source_name == "bad.yaml"
                });
        if !ok {
            failures.push_str(&format!(
                "{case}: expected {expected:?}\n got:\n{}",
                show(&errors)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn display_names_file_line_column_and_path() {
    let text = format!(
        "{HEAD}  defaults: {{ signals: {{ qps: {{ targetPerReplica: 5 }} }} }}\n  apps:\n    checkout: {{ replica: 3 }}\n"
    );
    let err = parse_policy("policies/acme.yaml", &text).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(
            "policies/acme.yaml:8:17: spec.apps.checkout.replica: unknown field `replica`"
        ),
        "{shown}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!(
        "{HEAD}  defaults:\n    replicas: {{ min: -1, max: 0 }}\n    signals: {{ qps: {{ targetPerReplica: -5 }}, bogus: 1 }}\n    hysteresis: {{ upWindow: soon }}\n  apps:\n    web: {{ limits: {{ down: {{ percent: 150 }} }} }}\n"
    );
    let err = parse_policy("p.yaml", &text).unwrap_err();
    assert!(err.len() >= 4, "{err}");
    let mut lines: Vec<u64> = err.iter().map(|e| e.line).collect();
    let sorted = {
        let mut s = lines.clone();
        s.sort();
        s
    };
    assert_eq!(lines, sorted, "errors come in file order:\n{err}");
    lines.dedup();
    assert!(lines.len() >= 4, "errors on at least four lines:\n{err}");
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let big = format!(
        "{HEAD}  apps: {{ web: {{}} }}\n#{}\n",
        "x".repeat(spillway_core::policy::MAX_POLICY_BYTES)
    );
    let err = parse_policy("big.yaml", &big).unwrap_err();
    assert!(err.to_string().contains("limited to"), "{err}");
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    // 10^12 leaf nodes if expanded: refused by the alias budget, not by running out of memory.
    let err = parse_policy("bomb.yaml", &text).unwrap_err();
    assert!(err.to_string().contains("invalid YAML"), "{err}");
}
