//! The shipped alert rules (`deploy/alerts/`), tested like code: every alert has a
//! runbook and unit tests that fire and stay quiet (`promtool test rules`); the
//! PrometheusRule carries the same rules; and a real Prometheus evaluating them against
//! a running Spillway sees the stale-signal and policy-refused alerts fire and resolve.
//!
//! promtool and prometheus come from Debian's `prometheus` package. Without them the
//! tests that need them print SKIPPED, and fail when `SPILLWAY_REQUIRE_PROMETHEUS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::prometheus::{Prometheus, tool};
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn rules_file() -> PathBuf {
    deploy().join("alerts/spillway.rules.yml")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
}

fn alerts(rules: &Value) -> Vec<Value> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn run(tool: &Path, args: &[&str]) {
    let output = Command::new(tool)
        .args(args)
        .current_dir(deploy())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
    assert!(
        output.status.success(),
        "{} {}: {}\n{}{}",
        tool.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_alert_has_a_runbook_and_unit_tests_that_fire_and_stay_quiet() {
    let rules = yaml(&rules_file());
    let tests = yaml(&deploy().join("alerts/tests/spillway.test.yml"));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let alerts = alerts(&rules);
    assert!(alerts.len() >= 10, "only {} alerts", alerts.len());
    for alert in &alerts {
        let name = alert["alert"].as_str().expect("every rule is an alert");
        for field in ["summary", "description", "runbook"] {
            assert!(
                alert["annotations"][field]
                    .as_str()
                    .is_some_and(|s| s.len() > 10),
                "{name}: no {field} annotation"
            );
        }
        let runbook = alert["annotations"]["runbook"].as_str().unwrap_or_default();
        assert!(
            runbook.starts_with("Means: ") && runbook.contains(" Do: "),
            "{name}: the runbook says what it means and what to do: {runbook}"
        );
        assert!(
            matches!(
                alert["labels"]["severity"].as_str(),
                Some("page" | "ticket")
            ),
            "{name}: severity page or ticket"
        );
        let of_alert: Vec<&&Value> = cases.iter().filter(|c| c["alertname"] == name).collect();
        let fires = of_alert
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = of_alert
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty()));
        assert!(
            fires && quiet,
            "{name}: a unit test where it fires and one where it is quiet"
        );
    }
}

#[test]
fn the_prometheus_rule_carries_the_same_rules() {
    let rules = yaml(&rules_file());
    let object = yaml(&deploy().join("alerts/prometheusrule.yaml"));
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(object["kind"], "PrometheusRule");
    assert_eq!(
        object["spec"]["groups"], rules["groups"],
        "prometheusrule.yaml and spillway.rules.yml differ"
    );
}

#[test]
fn promtool_checks_the_rules_and_the_scrape_config_and_passes_the_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    run(&promtool, &["check", "rules", "alerts/spillway.rules.yml"]);
    run(
        &promtool,
        &["test", "rules", "alerts/tests/spillway.test.yml"],
    );
    run(
        &promtool,
        &["check", "config", "monitoring/scrape-config.yml"],
    );
}

/// The shipped rules with every `for:` shortened, so a test sees them fire in seconds.
fn quick_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(rules_file()).expect("rules file");
    let quick: String = text
        .lines()
        .map(|line| match line.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 2s\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    assert_ne!(quick, text, "no `for:` in the rules");
    let path = dir.join("spillway-quick.rules.yml");
    std::fs::write(&path, quick).expect("write rules");
    path
}

/// The labels of `alertname`'s firing alerts.
async fn firing(prometheus: &Prometheus, alertname: &str) -> Vec<Value> {
    prometheus
        .query(&format!(
            "ALERTS{{alertname=\"{alertname}\", alertstate=\"firing\"}}"
        ))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|series| series["metric"].clone())
        .collect()
}

async fn until_firing(prometheus: &Prometheus, alertname: &str, labels: &[(&str, &str)]) {
    wait::until(
        &format!("{alertname} firing"),
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            firing(prometheus, alertname)
                .await
                .into_iter()
                .find(|m| labels.iter().all(|(k, v)| m[*k] == *v))
        },
    )
    .await;
}

async fn until_resolved(prometheus: &Prometheus, alertname: &str) {
    wait::until(
        &format!("{alertname} resolved"),
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async { firing(prometheus, alertname).await.is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_signal_and_policy_refused_alerts_fire_and_resolve_against_a_running_spillway() {
    let Some(prometheus_binary) = tool("prometheus") else {
        return;
    };
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", 300, Duration::from_millis(50));
    let policy = acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 2s
  staleAfter: 2s
  qps: { targetPerReplica: 100 }",
        &["web"],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "policyReload: 300ms\nscrape:\n  interval: 300ms\n  timeout: 250ms\n  targets:\n    - {}\n",
        gateway.url()
    );
    let config_path = write_serve_config(dir.path(), &[("acme.yaml", policy.as_str())], &config);
    let spillway = Spillway::serve(BIN, &config_path);
    let rules = quick_rules(dir.path());
    let prometheus =
        Prometheus::start_with_rules(&prometheus_binary, spillway.http, "1s", &[rules]).await;

    // Healthy: Spillway is scraped and no alert fires.
    wait::until(
        "Spillway's acme/web traffic in Prometheus",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            prometheus
                .query("spillway_workload_qps{tenant=\"acme\",app=\"web\"} > 0")
                .await
                .ok()
                .filter(|r| !r.is_empty())
        },
    )
    .await;
    for alert in [
        "SpillwaySignalStale",
        "SpillwayPolicyRefused",
        "SpillwayDown",
    ] {
        assert!(
            firing(&prometheus, alert).await.is_empty(),
            "{alert} fires on a healthy Spillway"
        );
    }

    // The gateway fails: no fresh qps past staleAfter, and the alert fires...
    gateway.set_mode(Mode::Failing);
    until_firing(
        &prometheus,
        "SpillwaySignalStale",
        &[("tenant", "acme"), ("app", "web"), ("signal", "qps")],
    )
    .await;
    // ...and resolves once the gateway answers again.
    gateway.set_mode(Mode::Healthy);
    until_resolved(&prometheus, "SpillwaySignalStale").await;

    // A broken policy file is refused (the last good version serves)...
    let policy_file = dir.path().join("policies/acme.yaml");
    std::fs::write(
        &policy_file,
        policy.replace("targetPerReplica: 100", "targetPerReplica: lots"),
    )
    .expect("write policy");
    until_firing(&prometheus, "SpillwayPolicyRefused", &[]).await;
    // ...and a fixed one clears it.
    std::fs::write(&policy_file, &policy).expect("write policy");
    until_resolved(&prometheus, "SpillwayPolicyRefused").await;

    // The audit trail has both changes of the file.
    let status: Value = spillway_tests::http()
        .get(format!("http://{}/api/v1/status", spillway.http))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    let kinds: Vec<&str> = status["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["policy_refused", "policy_accepted"], "{status}");
}
