//! `spillway serve` with a `kubernetes:` section, against the fake API server: the real
//! binary takes the Lease, patches the pod template, feeds the replica counts it reads
//! back into its decisions, scrapes the gateway pods it discovers by label, and reads
//! the HPA KEDA created, reporting one that is not a pass-through in its status, its
//! metrics and `spillway status`.

use std::time::Duration;

use serde_json::Value;
use spillway_tests::fake_kube::{Collection, FakeKube, fixtures};
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 2s
  qps: { targetPerReplica: 100 }
placement: { burst: { enabled: true }, requests: { cpu: 500m, memory: 1Gi } }",
        &["web"],
    )
}

fn find_number(v: &Value, key: &str) -> Vec<u64> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| {
                let mut out = find_number(v, key);
                if k == key {
                    out.extend(v.as_u64());
                }
                out
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(|v| find_number(v, key)).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_places_through_the_api_and_observes_replicas() {
    spillway_scaler::serve::install_crypto_provider();
    let fake = FakeKube::start().await.expect("fake API server");
    fake.put(fixtures::regular_node("ecs-1", "2"));
    fake.put(fixtures::regular_node("ecs-2", "2"));
    fake.put(fixtures::virtual_node("vk-1"));
    fake.put(fixtures::deployment("acme-prod", "web", 3, "500m"));
    fake.put(fixtures::scaled_object("acme-prod", "web", "web"));
    // As KEDA creates it from a ScaledObject without `behavior`: the controller's 300 s
    // scale-down window applies on top of Spillway's.
    fake.put(fixtures::keda_hpa("acme-prod", "web", "web", None));
    for _ in 0..3 {
        fake.run_controllers();
    }
    // A gateway pod the label selector finds; its IP is the in-test gateway's.
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", 450, Duration::from_millis(50));
    let gateway_port = gateway
        .url()
        .trim_end_matches("/metrics")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("gateway port");
    let mut gw = fixtures::bound_pod("ingress", "gw-1", "ecs-1", "0");
    gw["metadata"]["labels"] = serde_json::json!({"app": "gateway"});
    gw["status"]["podIP"] = serde_json::json!("127.0.0.1");
    fake.put(gw);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "scrape: {{ interval: 300ms, timeout: 250ms }}
kubernetes:
  apiServer: {}
  interval: 1s
  gateways: {{ namespace: ingress, selector: app=gateway, port: {gateway_port}, refresh: 1s }}
  lease: {{ namespace: spillway, name: spillway-placement, identity: spillway-e2e }}
  workloads:
    - {{ tenant: acme, app: web, namespace: acme-prod, scaledObject: web }}
",
        fake.url()
    );
    let config_path = write_serve_config(dir.path(), &[("acme.yaml", policy().as_str())], &config);
    let spillway = Spillway::serve(BIN, &config_path);

    // KEDA asks, so the workload has a decision to place.
    let client = keda::connect(spillway.grpc).await;
    let reference = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    let _ = keda::poll(&mut client.clone(), &reference).await;

    let leases = Collection::new("coordination.k8s.io", "v1", "leases");
    let holder = wait::until(
        "the Lease is taken",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let l = fake.get(&leases, Some("spillway"), "spillway-placement");
            async move {
                l.and_then(|l| {
                    l.pointer("/spec/holderIdentity")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
            }
        },
    )
    .await;
    assert_eq!(holder, "spillway-e2e");

    let deployments = Collection::new("apps", "v1", "deployments");
    wait::until(
        "the pod template tolerates the virtual node",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let d = fake.get(&deployments, Some("acme-prod"), "web");
            async move {
                d.and_then(|d| d.pointer("/spec/template/spec/tolerations/0/key").cloned())
                    .filter(|k| k == "virtual-kubelet.io/provider")
            }
        },
    )
    .await;

    // The replica counts read from the cluster reach the decisions: 3 pods observed.
    let url = format!("http://{}/api/v1/workloads/acme/web", spillway.http);
    let current = wait::until(
        "a decision starting from the observed replicas",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let url = url.clone();
            async move {
                let v: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                find_number(&v, "current").into_iter().find(|c| *c == 3)
            }
        },
    )
    .await;
    assert_eq!(current, 3);

    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .map(|r| format!("{} {}", r.verb, r.resource))
        .collect();
    assert!(
        writes.iter().any(|w| w == "patch deployments"),
        "{writes:?}"
    );

    // Gateway pods are followed, not listed once: a deleted one leaves the targets
    // within a refresh (addition is tested in scaler/tests/cluster_gateways.rs, where
    // nothing connects to the new pod's address).
    let targets = |http: std::net::SocketAddr| async move {
        let v: Value = reqwest::get(format!("http://{http}/api/v1/status"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let urls: Vec<String> = v["targets"]
            .as_array()?
            .iter()
            .filter_map(|t| t["url"].as_str().map(str::to_owned))
            .collect();
        Some(urls)
    };
    // The HPA was read and judged: in the workload's status, its metrics, and the
    // attention list of `spillway status`.
    let hpa = wait::until(
        "the HPA in the workload's status",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let url = url.clone();
            async move {
                let v: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                v.get("hpa")
                    .filter(|h| !h.is_null())
                    .cloned()
                    .map(|h| (h, v))
            }
        },
    )
    .await;
    let (hpa, status) = hpa;
    assert_eq!(hpa["name"], "keda-hpa-web");
    assert_eq!(
        hpa["findings"][0]["reason"], "ScaleDownStabilization",
        "{hpa}"
    );
    let condition = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "HpaPassThrough"))
        .cloned()
        .unwrap_or_else(|| panic!("no HpaPassThrough condition: {status}"));
    assert_eq!(condition["status"], "False", "{condition}");
    let metrics = reqwest::get(format!("http://{}/metrics", spillway.http))
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("spillway_hpa_passthrough{tenant=\"acme\",app=\"web\"} 0"),
        "{metrics}"
    );
    // The CLI's own HTTP timeout (5 s) bounds it; the outer one catches a hang.
    let status_url = format!("http://{}", spillway.http);
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["status", "--url", &status_url])
            .output()
    });
    let cli = tokio::time::timeout(Duration::from_secs(20), cli)
        .await
        .expect("spillway status answers in time")
        .expect("the blocking task")
        .expect("spillway status runs");
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        out.contains("acme/web  HpaPassThrough=False (ScaleDownStabilization"),
        "{out}"
    );

    let http = spillway.http;
    assert_eq!(
        targets(http).await,
        Some(vec![format!("http://127.0.0.1:{gateway_port}/metrics")])
    );
    let pods = Collection::new("", "v1", "pods");
    assert!(fake.delete(&pods, Some("ingress"), "gw-1"));
    wait::until(
        "the deleted gateway pod out of the targets",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move { targets(http).await?.is_empty().then_some(()) },
    )
    .await;
    drop(spillway);
}
