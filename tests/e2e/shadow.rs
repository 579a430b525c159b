//! A shadow policy end to end: a tenant's file carries a `candidate:`; `spillway serve`
//! decides with both every tick, serves KEDA the live decision only, and shows the
//! difference in the status API, `/metrics` and `spillway policy diff`; editing the
//! candidate changes the shadow on the next reload, not what KEDA is served. The
//! candidate starts from what runs (the live decision's count), so its own rate limits
//! apply from there; both are made permissive here.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn policy(candidate_target: u32) -> String {
    format!(
        "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: {{ tenant: acme }}
spec:
  namespaces: [acme-prod]
  defaults:
    replicas: {{ min: 1, max: 50 }}
    signals: {{ window: 2s, qps: {{ targetPerReplica: 100 }} }}
    panic: {{ enabled: false }}
    limits: {{ up: {{ percent: 1000, per: 1s }} }}
  apps:
    web: {{}}
    api: {{}}
candidate:
  defaults:
    replicas: {{ min: 1, max: 50 }}
    signals: {{ window: 2s, qps: {{ targetPerReplica: {candidate_target} }} }}
    panic: {{ enabled: false }}
    limits: {{ up: {{ percent: 1000, per: 1s }} }}
  apps:
    web: {{}}
"
    )
}

/// `spillway policy diff acme/web --replay` with `extra` arguments: its table, which it
/// must print with success (else the failure shows `context` too).
fn replay_acme_web(http: std::net::SocketAddr, extra: &[&str], context: &str) -> String {
    let output = Command::new(BIN)
        .args(["policy", "diff", "acme/web", "--replay"])
        .args(extra)
        .arg("--url")
        .arg(format!("http://{http}"))
        .stdin(Stdio::null())
        .output()
        .expect("spillway policy diff --replay");
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{table}{}\n{context}",
        String::from_utf8_lossy(&output.stderr)
    );
    table
}

async fn shadow_of(http: std::net::SocketAddr) -> Option<Value> {
    let v: Value = reqwest::get(format!("http://{http}/api/v1/workloads/acme/web"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(v["latest"]["shadow"].clone()).filter(|s| !s.is_null())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_candidate_is_decided_beside_the_live_policy_and_never_served() {
    spillway_scaler::serve::install_crypto_provider();
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive_exact(
        "acme",
        "web",
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(525)),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "policyReload: 300ms\nscrape: {{ interval: 300ms, timeout: 250ms, targets: [{}] }}\n",
        gateway.url()
    );
    let config_path = write_serve_config(dir.path(), &[("acme.yaml", &policy(50))], &config);
    let spillway = Spillway::serve(BIN, &config_path);
    let client = keda::connect(spillway.grpc).await;
    let reference = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    // 525/s (scraped within a few requests/s of it): the live 100 per replica asks for
    // 6, the candidate's 50 for 11.
    let shadow = wait::until(
        "the candidate at 11 beside the live 6",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            shadow_of(spillway.http)
                .await
                .filter(|s| s["candidate_desired"] == 11 && s["live_desired"] == 6)
        },
    )
    .await;
    assert_eq!(shadow["difference"], 5);
    let mut poll_client = client.clone();
    let poll = keda::poll(&mut poll_client, &reference)
        .await
        .expect("poll");
    assert_eq!(poll.value, 6.0, "KEDA is served the live decision");

    let output = Command::new(BIN)
        .args(["policy", "diff", "acme", "--url"])
        .arg(format!("http://{}", spillway.http))
        .stdin(Stdio::null())
        .output()
        .expect("spillway policy diff");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("acme/web"))
        .unwrap_or_else(|| panic!("no acme/web row in:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["acme/web", "6", "11", "+5"], "{table}");
    assert!(
        table.contains("no candidate") && table.contains("acme/api"),
        "{table}"
    );

    // Both replayed over the workload's own recent request rate.
    let table = replay_acme_web(spillway.http, &[], "");
    let peak = |policy: &str| -> u32 {
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with(policy))
            .unwrap_or_else(|| panic!("no {policy} row in:\n{table}"));
        row.split_whitespace()
            .nth(4)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no peak in {row}"))
    };
    assert_eq!((peak("live"), peak("candidate")), (6, 11), "{table}");

    let metrics = reqwest::get(format!("http://{}/metrics", spillway.http))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(
            "spillway_workload_shadow_difference_replicas{tenant=\"acme\",app=\"web\"} 5"
        ),
        "{metrics}"
    );

    // A new candidate (45/s per replica: 12) reaches the shadow on the next reload.
    std::fs::write(dir.path().join("policies/acme.yaml"), policy(45)).expect("write");
    wait::until(
        "the edited candidate at 12",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            shadow_of(spillway.http)
                .await
                .filter(|s| s["candidate_desired"] == 12)
        },
    )
    .await;
    let poll = keda::poll(&mut poll_client, &reference)
        .await
        .expect("poll");
    assert_eq!(poll.value, 6.0, "still the live decision");
}

fn graded(grade: &str) -> String {
    format!(
        "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: {{ tenant: acme }}
spec:
  namespaces: [acme-prod]
  defaults:
    replicas: {{ min: 1, max: 50 }}
    signals: {{ window: 2s, qps: {{ targetPerReplica: 100 }} }}
    hysteresis: {{ upWindow: 0s, downWindow: 1s }}
    panic: {{ enabled: false }}
    limits: {{ up: {{ percent: 1000, per: 1s }}, down: {{ percent: 100, per: 1s }} }}
  apps:
    web: {{}}
candidate:
{grade}  guards: {{ underProvisionedReplicaSeconds: 20, per: 10m }}
  defaults:
    replicas: {{ min: 1, max: 50 }}
    signals: {{ window: 2s, qps: {{ targetPerReplica: 300 }} }}
    hysteresis: {{ upWindow: 0s, downWindow: 1s }}
    panic: {{ enabled: false }}
    limits: {{ up: {{ percent: 1000, per: 1s }}, down: {{ percent: 100, per: 1s }} }}
  apps:
    web: {{}}
"
    )
}

/// A grade promotes the candidate for web (recorded), KEDA is served its decision, and
/// its guard rolls it back to the live spec by itself, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graded_candidate_is_served_until_its_guard_rolls_it_back() {
    spillway_scaler::serve::install_crypto_provider();
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive_exact(
        "acme",
        "web",
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(850)),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "policyReload: 300ms\nscrape: {{ interval: 300ms, timeout: 250ms, targets: [{}] }}\n",
        gateway.url()
    );
    let config_path = write_serve_config(dir.path(), &[("acme.yaml", &graded(""))], &config);
    let spillway = Spillway::serve(BIN, &config_path);
    let client = keda::connect(spillway.grpc).await;
    let reference = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    let served = |want: f64, what: &'static str| {
        let client = client.clone();
        let reference = reference.clone();
        async move {
            wait::until(
                what,
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    let mut client = client.clone();
                    let reference = reference.clone();
                    async move {
                        keda::poll(&mut client, &reference)
                            .await
                            .ok()
                            .filter(|p| p.value == want)
                    }
                },
            )
            .await
        }
    };
    // No grade: shadow only, the live 9 is served.
    served(9.0, "the live 9 (850/s) with a shadow-only candidate").await;

    // Promote it for web: the candidate's 3 is served...
    std::fs::write(
        dir.path().join("policies/acme.yaml"),
        graded("  grade: { apps: [web] }\n"),
    )
    .expect("write");
    served(3.0, "the promoted candidate's 3").await;
    // ...until 5.5 replicas short a second pass the guard's 20 replica·s.
    served(9.0, "the live 9 after the guard's rollback").await;
    let output = Command::new(BIN)
        .args(["policy", "diff", "acme/web", "--url"])
        .arg(format!("http://{}", spillway.http))
        .stdin(Stdio::null())
        .output()
        .expect("spillway policy diff");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("ROLLED BACK") && table.contains("underProvisionedReplicaSeconds"),
        "{table}"
    );
    let status: Value = reqwest::get(format!("http://{}/api/v1/status", spillway.http))
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    let grades: Vec<(String, String)> = status["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "grade_changed")
        .map(|e| {
            (
                e["by"].as_str().unwrap_or_default().to_owned(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(grades.len(), 2, "{grades:?}");
    assert_eq!(grades[0].0, "reload");
    assert!(grades[0].1.contains("promoted for web"), "{grades:?}");
    assert_eq!(grades[1].0, "guard");
    assert!(grades[1].1.contains("rolled back"), "{grades:?}");
}

/// Two hours of `acme/web`'s request counter ending `end` (unix seconds), a sample
/// every 15 s: 200/s for the first hour, 800/s for the second.
fn two_hours_of_traffic(end: i64) -> String {
    let mut text = String::from("# TYPE gateway_requests counter\n");
    let mut total = 0.0;
    for step in 0..=480 {
        let at = end - 7200 + step * 15;
        total += if step <= 240 {
            200.0 * 15.0
        } else {
            800.0 * 15.0
        };
        text.push_str(&format!(
            "gateway_requests_total{{tenant=\"acme\",app=\"web\"}} {total} {at}\n"
        ));
    }
    text.push_str("# EOF\n");
    text
}

/// With a PromQL source, `--replay` reads the workload's past from it, beyond the
/// store's minutes: here two hours a real Prometheus holds (backfilled with promtool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reads_hours_of_the_workloads_past_from_prometheus() {
    let (Some(prometheus_bin), Some(promtool)) = (
        spillway_tests::prometheus::tool("prometheus"),
        spillway_tests::prometheus::tool("promtool"),
    ) else {
        return;
    };
    spillway_scaler::serve::install_crypto_provider();
    // The wall clock: Prometheus and Spillway, real processes, both read it.
    let now = spillway_collector::clock::unix_ms().div_euclid(1000);
    let history = two_hours_of_traffic(now - 5);
    // Nothing to scrape: its TSDB already holds the past the replay reads.
    let unused_target = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let prometheus = spillway_tests::prometheus::Prometheus::start_with_history(
        &prometheus_bin,
        unused_target,
        "15s",
        spillway_tests::prometheus::Backfill {
            promtool: &promtool,
            openmetrics: &history,
        },
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    // rate over 5m: the last backfilled samples keep the live value for minutes.
    let config = format!(
        "policyReload: 300ms\npromql:\n  url: http://{}\n  interval: 1s\n  queries:\n  \
         - {{signal: qps, expr: 'sum by (tenant, app) (rate(gateway_requests_total[5m]))'}}\n",
        prometheus.addr
    );
    let config_path = write_serve_config(dir.path(), &[("acme.yaml", &policy(50))], &config);
    let spillway = Spillway::serve(BIN, &config_path);
    wait::until(
        "a shadow decision for acme/web",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { shadow_of(spillway.http).await },
    )
    .await;

    let table = replay_acme_web(spillway.http, &["--window", "2h"], &prometheus.log());
    assert!(table.contains("PromQL history at a 1 s step"), "{table}");

    let preview: Value = reqwest::get(format!(
        "http://{}/api/v1/workloads/acme/web/preview?window=2h",
        spillway.http
    ))
    .await
    .expect("preview")
    .json()
    .await
    .expect("preview JSON");
    // Two hours less the first rate window's wait for a second sample.
    let seconds = preview["seconds"].as_u64().expect("seconds");
    assert!((7000..=7201).contains(&seconds), "{preview}");
    // 800/s at its peak, an hour ago and later: 8 replicas at 100 each, 16 at 50.
    let peaks: Vec<&Value> = preview["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["peak_replicas"])
        .collect();
    assert_eq!(peaks, [8, 16], "{preview}");

    let too_long = reqwest::get(format!(
        "http://{}/api/v1/workloads/acme/web/preview?window=2d",
        spillway.http
    ))
    .await
    .expect("preview");
    assert_eq!(too_long.status(), reqwest::StatusCode::BAD_REQUEST);
}
