//! The emergency brake end to end: `spillway freeze` with an admin's token holds what
//! KEDA is served while the load asks for more, a reader may not freeze, the freeze
//! shows in `status`, `explain`, `/metrics` and the Frozen condition, `unfreeze` lets
//! the load decide again, and an expired freeze stops holding and says so.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use spillway_proto::externalscaler::ScaledObjectRef;
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn spillway_cli(http: SocketAddr, token: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--url", &format!("http://{http}")])
        .arg("--token-file")
        .arg(token)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running spillway {args:?}: {e}"))
}

fn stdout_of(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn workload(http: SocketAddr, token: &str) -> Value {
    spillway_tests::http()
        .get(format!("http://{http}/api/v1/workloads/acme/web"))
        .bearer_auth(token)
        .send()
        .await
        .expect("workload status")
        .json()
        .await
        .expect("workload JSON")
}

fn frozen_condition(workload: &Value) -> (String, String) {
    let c = workload["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Frozen")
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `acme/web` as KEDA names it to the Spillway at `grpc`.
fn acme_web(grpc: SocketAddr) -> ScaledObjectRef {
    scaled_object(
        "acme-prod",
        "web",
        grpc,
        &[("tenant", "acme"), ("app", "web")],
    )
}

/// Each identity's token at `dir/tokens/NAME`, where the configs below name it.
fn write_tokens(dir: &Path, tokens: &[(&str, &str)]) -> PathBuf {
    let tokens_dir = dir.join("tokens");
    std::fs::create_dir_all(&tokens_dir).expect("tokens dir");
    for (name, token) in tokens {
        std::fs::write(tokens_dir.join(name), token).expect("token");
    }
    tokens_dir
}

/// Whole replicas that follow the load at once both ways, so a hold shows at once.
fn following_policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals: { window: 2s, qps: { targetPerReplica: 100 } }
hysteresis: { upWindow: 0s, downWindow: 1s }
panic: { enabled: false }
limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }",
        &["web"],
    )
}

/// `gateway` scraped every 300 ms, `extra` top-level settings, the admin `sre` and the
/// `identities` after it.
fn api_config(gateway: &FakeGateway, extra: &str, identities: &str) -> String {
    format!(
        "scrape: {{ interval: 300ms, timeout: 250ms, targets: [{}] }}
{extra}access:
  insecure: [keda, metrics]
  identities:
    sre: {{ role: admin, tokenFile: tokens/sre }}
{identities}",
        gateway.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_holds_what_keda_is_served_shows_everywhere_and_lifts_or_expires() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    let qps = Arc::new(AtomicU64::new(250));
    gateway.drive_exact("acme", "web", qps.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let (sre, grafana) = ("s".repeat(40), "g".repeat(40));
    let tokens = write_tokens(dir.path(), &[("sre", &sre), ("grafana", &grafana)]);
    let config = api_config(
        &gateway,
        "",
        "    grafana: { role: reader, tenants: [acme], tokenFile: tokens/grafana }\n",
    );
    let config_path = write_serve_config(
        dir.path(),
        &[("acme.yaml", following_policy().as_str())],
        &config,
    );
    let spillway = Spillway::serve(BIN, &config_path);
    let client = keda::connect(spillway.grpc).await;
    let reference = acme_web(spillway.grpc);
    let served = |want: f64, what: &'static str| {
        let (client, reference) = (client.clone(), reference.clone());
        async move { keda::until_served(&client, &reference, want, what).await }
    };
    // Rates between whole replicas: the scraped rate is within a few requests/s of it.
    served(3.0, "3 replicas for 250/s").await;

    // A reader may read but not freeze.
    let refused = spillway_cli(
        spillway.http,
        &tokens.join("grafana"),
        &["freeze", "acme/web", "--reason", "x", "--for", "1m"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let out = stdout_of(
        &spillway_cli(
            spillway.http,
            &tokens.join("sre"),
            &[
                "freeze",
                "acme/web",
                "--reason",
                "INC-4711 payments",
                "--for",
                "10m",
            ],
        ),
        "spillway freeze",
    );
    assert!(out.contains("covers 1 workload"), "{out}");
    // The load triples; the engine sees it, KEDA keeps being served 3.
    qps.store(850, Ordering::Relaxed);
    wait::until(
        "the engine to decide 9 under the freeze",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let w = workload(spillway.http, &grafana).await;
            (w["latest"]["freeze"]["engine_desired"] == 9).then_some(())
        },
    )
    .await;
    let mut poll_client = client.clone();
    let poll = keda::poll(&mut poll_client, &reference)
        .await
        .expect("poll");
    assert_eq!(poll.value, 3.0, "frozen: GetMetrics serves the held 3");
    let w = workload(spillway.http, &grafana).await;
    assert_eq!(w["latest"]["rule"], "frozen");
    assert_eq!(frozen_condition(&w), ("True".into(), "FrozenByApi".into()));

    let status = stdout_of(
        &spillway_cli(spillway.http, &tokens.join("sre"), &["status"]),
        "spillway status",
    );
    for needle in [
        "FREEZES",
        "HOLDING",
        "INC-4711 payments",
        "AUDIT",
        "freeze_set",
        "by sre",
    ] {
        assert!(
            status.contains(needle),
            "{needle} missing from status:\n{status}"
        );
    }
    let explain = stdout_of(
        &spillway_cli(
            spillway.http,
            &tokens.join("grafana"),
            &["explain", "acme/web"],
        ),
        "spillway explain",
    );
    assert!(
        explain.contains("FROZEN") && explain.contains("the engine decides 9"),
        "{explain}"
    );
    let metrics = spillway_tests::http()
        .get(format!("http://{}/metrics", spillway.http))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("spillway_workload_frozen{tenant=\"acme\",app=\"web\",source=\"api\"} 1"),
        "{metrics}"
    );

    // Lifted: the load decides again.
    stdout_of(
        &spillway_cli(
            spillway.http,
            &tokens.join("sre"),
            &["unfreeze", "acme/web"],
        ),
        "spillway unfreeze",
    );
    served(9.0, "9 replicas once unfrozen").await;

    // A short freeze of the whole tenant expires by itself and says so.
    stdout_of(
        &spillway_cli(
            spillway.http,
            &tokens.join("sre"),
            &["freeze", "acme", "--reason", "brief", "--for", "2s"],
        ),
        "spillway freeze acme",
    );
    qps.store(450, Ordering::Relaxed);
    served(5.0, "5 replicas once the 2s freeze expired").await;
    let w = workload(spillway.http, &grafana).await;
    assert_eq!(
        frozen_condition(&w),
        ("False".into(), "FreezeExpired".into())
    );
    // The expiry is recorded by the next decision tick's sweep.
    let kinds: Vec<String> = wait::until(
        "the expiry in the audit trail",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let status: Value = spillway_tests::http()
                .get(format!("http://{}/api/v1/status", spillway.http))
                .bearer_auth(&sre)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let kinds: Vec<String> = status["audit"]
                .as_array()?
                .iter()
                .filter_map(|e| e["kind"].as_str().map(str::to_owned))
                .collect();
            kinds.iter().any(|k| k == "freeze_expired").then_some(kinds)
        },
    )
    .await;
    assert_eq!(
        kinds,
        [
            "freeze_set",
            "freeze_lifted",
            "freeze_set",
            "freeze_expired"
        ],
        "the audit trail"
    );
}

/// The brake without Spillway's API: an annotation on the ScaledObject, read with the
/// replica counts from the Kubernetes API, freezes the workload; removing it lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotation_on_the_scaled_object_freezes_it_and_its_removal_lifts_it() {
    use spillway_tests::fake_kube::{FakeKube, fixtures};
    spillway_scaler::serve::install_crypto_provider();
    let fake = FakeKube::start().await.expect("fake API server");
    fake.put(fixtures::regular_node("ecs-1", "8"));
    fake.put(fixtures::deployment("acme-prod", "web", 3, "500m"));
    let mut annotated = fixtures::scaled_object("acme-prod", "web", "web");
    annotated["metadata"]["annotations"] = serde_json::json!({
        "spillway.io/freeze": "INC-4711 database failover",
        "spillway.io/freeze-floor": "4",
    });
    fake.put(annotated);
    for _ in 0..3 {
        fake.run_controllers();
    }
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", 850, Duration::from_millis(50));
    let policy = acme_policy(
        "replicas: { min: 1, max: 50 }
signals: { window: 2s, qps: { targetPerReplica: 100 } }
hysteresis: { upWindow: 0s, downWindow: 1s }
panic: { enabled: false }
limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }",
        &["web"],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "scrape: {{ interval: 300ms, timeout: 250ms, targets: [{}] }}
kubernetes:
  apiServer: {}
  interval: 1s
  placement: false
  workloads:
    - {{ tenant: acme, app: web, namespace: acme-prod, scaledObject: web }}
",
        gateway.url(),
        fake.url()
    );
    let config_path = write_serve_config(dir.path(), &[("acme.yaml", policy.as_str())], &config);
    let spillway = Spillway::serve(BIN, &config_path);
    let client = keda::connect(spillway.grpc).await;
    let reference = acme_web(spillway.grpc);
    let url = format!("http://{}/api/v1/workloads/acme/web", spillway.http);
    // 850/s asks for 9; the annotation holds the 3 running at its floor of 4.
    let held = wait::until(
        "the annotation's freeze, with the engine at 9",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let url = url.clone();
            async move {
                let v: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                (v["latest"]["freeze"]["engine_desired"] == 9).then_some(v)
            }
        },
    )
    .await;
    assert_eq!(held["latest"]["desired"], 4, "{held}");
    assert_eq!(held["latest"]["freeze"]["freeze"]["source"], "annotation");
    assert_eq!(
        frozen_condition(&held),
        ("True".into(), "FrozenByAnnotation".into())
    );
    let mut poll_client = client.clone();
    let poll = keda::poll(&mut poll_client, &reference)
        .await
        .expect("poll");
    assert_eq!(poll.value, 4.0, "GetMetrics serves the floor");

    // The annotation goes: the load decides again.
    fake.put(fixtures::scaled_object("acme-prod", "web", "web"));
    keda::until_served(
        &client,
        &reference,
        9.0,
        "9 replicas once the annotation is removed",
    )
    .await;
    let status: Value = reqwest::get(format!("http://{}/api/v1/status", spillway.http))
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    let trail: Vec<(String, String)> = status["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["by"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("freeze_set".to_owned(), "annotation".to_owned()),
            ("freeze_lifted".to_owned(), "annotation".to_owned())
        ]
    );
}

/// In HA mode the CLI reaches one replica through the Service, so an API freeze would hold
/// on that replica only and KEDA would get different answers from the others: it is
/// refused with the annotation to use, even when every writer feeds every replica, and
/// nothing is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_ha_mode_an_api_freeze_is_refused_with_the_annotation_to_use() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive_exact("acme", "web", Arc::new(AtomicU64::new(250)));
    let dir = tempfile::tempdir().expect("temp dir");
    let sre = "s".repeat(40);
    let tokens = write_tokens(dir.path(), &[("sre", &sre)]);
    let config = api_config(&gateway, "ha: { writesReachEveryReplica: true }\n", "");
    let config_path = write_serve_config(
        dir.path(),
        &[("acme.yaml", following_policy().as_str())],
        &config,
    );
    let spillway = Spillway::serve(BIN, &config_path);
    let client = keda::connect(spillway.grpc).await;
    keda::until_served(
        &client,
        &acme_web(spillway.grpc),
        3.0,
        "3 replicas for 250/s",
    )
    .await;

    let refused = spillway_cli(
        spillway.http,
        &tokens.join("sre"),
        &["freeze", "acme/web", "--reason", "INC-1", "--for", "10m"],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "an HA freeze was accepted");
    assert!(
        stderr.contains("409") && stderr.contains("kubectl annotate scaledobject"),
        "{stderr}"
    );
    let unfreeze = spillway_cli(
        spillway.http,
        &tokens.join("sre"),
        &["unfreeze", "acme/web"],
    );
    assert!(!unfreeze.status.success());
    assert!(String::from_utf8_lossy(&unfreeze.stderr).contains("409"));

    let freezes: Value = spillway_tests::http()
        .get(format!("http://{}/api/v1/freezes", spillway.http))
        .bearer_auth(&sre)
        .send()
        .await
        .expect("freezes")
        .json()
        .await
        .expect("freezes JSON");
    assert_eq!(freezes, Value::Array(vec![]), "nothing is held");
    let w = workload(spillway.http, &sre).await;
    assert_ne!(w["latest"]["rule"], "frozen");
}

/// With `freezeFile:`, an API freeze outlasts a restart of the process: the restarted
/// Spillway holds its floor from its first answer, and a lift is kept too. (Without the
/// Kubernetes side a restarted process does not know what runs, so the floor is what
/// shows the hold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_freeze_in_the_freeze_file_holds_across_a_restart() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive_exact("acme", "web", Arc::new(AtomicU64::new(250)));
    let dir = tempfile::tempdir().expect("temp dir");
    let sre = "s".repeat(40);
    let tokens = write_tokens(dir.path(), &[("sre", &sre)]);
    let config = api_config(&gateway, "freezeFile: freezes.json\n", "");
    let config_path = write_serve_config(
        dir.path(),
        &[("acme.yaml", following_policy().as_str())],
        &config,
    );
    let served = |spillway: &Spillway, want: f64, what: &'static str| {
        let grpc = spillway.grpc;
        async move {
            let client = keda::connect(grpc).await;
            keda::until_served(&client, &acme_web(grpc), want, what).await
        }
    };
    let spillway = Spillway::serve(BIN, &config_path);
    served(&spillway, 3.0, "3 replicas for 250/s").await;
    let out = stdout_of(
        &spillway_cli(
            spillway.http,
            &tokens.join("sre"),
            &[
                "freeze", "acme/web", "--reason", "INC-9", "--for", "10m", "--floor", "5",
            ],
        ),
        "spillway freeze",
    );
    assert!(!out.contains("kept in memory only"), "{out}");
    assert!(dir.path().join("freezes.json").exists());
    served(&spillway, 5.0, "the floor of 5 while the load needs 3").await;
    drop(spillway);

    // Restarted, it holds the floor from its first answer ...
    let spillway = Spillway::serve(BIN, &config_path);
    wait::until(
        "the restarted engine to decide 3 under the restored freeze",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let w = workload(spillway.http, &sre).await;
            (w["latest"]["freeze"]["engine_desired"] == 3).then_some(())
        },
    )
    .await;
    let w = workload(spillway.http, &sre).await;
    assert_eq!(w["latest"]["rule"], "frozen");
    assert_eq!(frozen_condition(&w), ("True".into(), "FrozenByApi".into()));
    let mut client = keda::connect(spillway.grpc).await;
    let poll = keda::poll(&mut client, &acme_web(spillway.grpc))
        .await
        .expect("poll");
    assert_eq!(poll.value, 5.0, "the restored freeze's floor");

    // ... and a lift is kept as well: after another restart nothing holds.
    stdout_of(
        &spillway_cli(
            spillway.http,
            &tokens.join("sre"),
            &["unfreeze", "acme/web"],
        ),
        "spillway unfreeze",
    );
    drop(spillway);
    let spillway = Spillway::serve(BIN, &config_path);
    served(&spillway, 3.0, "3 replicas once the lifted freeze is gone").await;
    let w = workload(spillway.http, &sre).await;
    assert_ne!(w["latest"]["rule"], "frozen");
}
