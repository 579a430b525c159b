//! Spillway behind the real peers: KEDA v2.20's operator and metrics adapter, the HPA,
//! Deployment and ReplicaSet controllers of kube-controller-manager v1.36, kube-scheduler
//! and kwok nodes, all on 127.0.0.1 (`tests/src/peers`). What reaches a Deployment's
//! `spec.replicas` here is what a user's cluster would do with Spillway's answers.
//!
//! Needs the peers built by `tests/peers/build.sh` (`SPILLWAY_PEERS_DIR`); says SKIPPED
//! without them, and fails instead under `SPILLWAY_REQUIRE_PEERS=1` (CI).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use spillway_tests::peers::PeerDir;
use spillway_tests::peers::stage::{App, NAMESPACE, Stage};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::Spillway;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

fn logs(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("peer-logs")
        .join(test)
}

/// Scrape and decide every second: the figures below are in units of that interval.
const SCRAPE: &str = "1s";

fn serve_config(gateway: &str, apps: &[&str]) -> String {
    let workloads: String = apps
        .iter()
        .map(|a| {
            format!(
                "    - {{ tenant: acme, app: {a}, namespace: {NAMESPACE}, scaledObject: {a} }}\n"
            )
        })
        .collect();
    format!(
        "scrape:\n  interval: {SCRAPE}\n  timeout: 800ms\n  targets: [{gateway}]\n\
         qps: {{ metric: gateway_requests_total, tenantLabel: tenant, appLabel: app }}\n\
         kubernetes:\n  interval: 1s\n  lease: {{ namespace: spillway, name: spillway-placement }}\n\
         \x20 workloads:\n{workloads}"
    )
}

/// Spillway's published decision for `app`, from its status API.
async fn desired(spillway: &Spillway, app: &str) -> Option<i64> {
    let url = format!("http://{}/api/v1/workloads/acme/{app}", spillway.http);
    let body: Value = spillway_tests::http()
        .get(url)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body.pointer("/latest/desired")?.as_i64()
}

/// Median and worst of a set of durations, in seconds.
fn median_and_worst(samples: &[Duration]) -> (f64, f64) {
    let mut secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    (median, *secs.last().unwrap_or(&0.0))
}

/// Scenario 1 and 3: KEDA creates the HPA for both trigger types, traffic steps reach
/// `spec.replicas` as Spillway decided them, and kube-scheduler puts the pods on the
/// regular nodes until they are full and only then on the virtual node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traffic_steps_reach_the_deployment_and_fill_regular_nodes_first() {
    let Some(peers) = PeerDir::locate("real_peers::traffic_steps") else {
        return;
    };
    let mut stage = Stage::start(&peers, &logs("traffic_steps"), &repo(), 3, "4").await;
    let policy = acme_policy(
        "replicas: { min: 1, max: 60 }
signals:
  window: 2s
  qps: { targetPerReplica: 100 }
hpaTolerance: 0
limits: { up: { pods: 100, percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }
hysteresis: { downWindow: 10s }
placement: { burst: { enabled: true }, requests: { cpu: 500m, memory: 256Mi } }",
        &["checkout", "search"],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = stage.serve(
        BIN,
        dir.path(),
        &[("acme.yaml", policy.as_str())],
        &serve_config(&stage.gateway.url(), &["checkout", "search"]),
        "spillway-0",
    );
    // Rates sit mid-way between multiples of the 100/s target, so measurement noise
    // never moves the count: 150/s is 2 replicas, 950/s is 10.
    let checkout_qps = Arc::new(AtomicU64::new(150));
    let search_qps = Arc::new(AtomicU64::new(150));
    stage.gateway.drive_rate(
        "acme",
        "checkout",
        checkout_qps.clone(),
        Duration::from_millis(100),
    );
    stage.gateway.drive_rate(
        "acme",
        "search",
        search_qps.clone(),
        Duration::from_millis(100),
    );
    stage.create_app(&App::new("checkout", "external-push"), spillway.grpc);
    stage.create_app(&App::new("search", "external"), spillway.grpc);
    for app in ["checkout", "search"] {
        let hpa = format!("keda-hpa-{app}");
        let admin = stage.admin().clone();
        stage
            .cluster
            .wait_for(&format!("KEDA to create {hpa}"), || {
                admin.get("hpa", Some(NAMESPACE), &hpa).is_some()
            });
    }

    for app in ["checkout", "search"] {
        stage.wait_spec(app, Duration::from_secs(60), |n| n == 2, "2 at 150/s");
    }
    // Each step up is measured from the moment the gateway's rate changes to the moment
    // the Deployment's spec.replicas equals Spillway's decision.
    let mut reaction: Vec<(&str, Duration)> = Vec::new();
    for (app, rate, qps) in [
        ("checkout", 950, &checkout_qps),
        ("search", 950, &search_qps),
        ("checkout", 1950, &checkout_qps),
        ("search", 1450, &search_qps),
        ("checkout", 2450, &checkout_qps),
        ("search", 1950, &search_qps),
    ] {
        let before = stage.spec_replicas(app);
        let step = Instant::now();
        qps.store(rate, Ordering::Relaxed);
        let want = rate.div_ceil(100) as i64;
        let (got, at) = stage.wait_spec(
            app,
            Duration::from_secs(60),
            |n| n == want,
            "the step's count",
        );
        let decided = desired(&spillway, app).await;
        assert_eq!(
            decided,
            Some(got),
            "{app}: the Deployment runs what Spillway decided"
        );
        eprintln!("{app}: {before:?} -> {got} after {:?}", at - step);
        reaction.push((app, at - step));
    }
    let times: Vec<Duration> = reaction.iter().map(|(_, d)| *d).collect();
    let (median, worst) = median_and_worst(&times);
    eprintln!(
        "REAL-PEERS step -> spec.replicas: median {median:.1} s, worst {worst:.1} s over {} steps",
        times.len()
    );
    // Two scrape intervals, one KEDA/HPA round and the HPA's 5 s sync: anything slower
    // means a peer is not applying Spillway's answer as it comes.
    assert!(
        worst < 15.0,
        "a step took {worst:.1} s to reach spec.replicas"
    );

    // ECS first. From a quiet start (checkout 2, search 1) with another team's 6 pods
    // taking regular room, 3 nodes × 4 cores hold 24 pods of 500m: checkout's step to 31
    // finds 24 − 1 − 6 = 17 regular slots and must put 14 on the virtual node.
    checkout_qps.store(150, Ordering::Relaxed);
    search_qps.store(50, Ordering::Relaxed);
    stage.wait_spec("checkout", Duration::from_secs(60), |n| n == 2, "2");
    stage.wait_spec("search", Duration::from_secs(60), |n| n == 1, "1");
    wait_all_scheduled(&mut stage, "checkout", 2);
    wait_all_scheduled(&mut stage, "search", 1);
    stage.admin().must_apply(&filler_deployment(6));
    let filler = wait_all_scheduled(&mut stage, "filler", 6);
    assert!(
        filler.iter().all(|n| n != "vk-1"),
        "the filler never tolerates the virtual node"
    );
    // Drain-back goes through a disruption budget, as a user's would.
    stage.admin().must_apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{ name: checkout, namespace: {NAMESPACE} }}\n\
         spec:\n  maxUnavailable: 1\n  selector: {{ matchLabels: {{ app: checkout }} }}\n"
    ));
    checkout_qps.store(3050, Ordering::Relaxed);
    stage.wait_spec("checkout", Duration::from_secs(60), |n| n == 31, "31");
    let placed = wait_all_scheduled(&mut stage, "checkout", 31);
    let on_virtual = |nodes: &[String]| nodes.iter().filter(|n| n.as_str() == "vk-1").count();
    assert_eq!(
        on_virtual(&placed),
        14,
        "regular nodes are filled before the virtual node: {placed:?}"
    );

    // The other team's pods go: drain-back moves burst pods onto the freed room, through
    // surge-then-remove, never with fewer ready pods than decided.
    stage
        .admin()
        .run(&[
            "delete",
            "deployment",
            "filler",
            "-n",
            NAMESPACE,
            "--wait=false",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lowest_ready = usize::MAX;
    let drained = loop {
        let pods = stage.pods("checkout");
        let ready = pods
            .iter()
            .filter(|(_, node, ready)| node.is_some() && *ready)
            .count();
        lowest_ready = lowest_ready.min(ready);
        let nodes: Vec<String> = pods
            .iter()
            .filter_map(|(_, node, _)| node.clone())
            .collect();
        if pods.len() == 31 && ready == 31 && on_virtual(&nodes) == 8 {
            break nodes;
        }
        stage.cluster.check_alive();
        assert!(
            Instant::now() < deadline,
            "drain-back did not bring checkout to 23 regular + 8 virtual within 120 s: {pods:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        lowest_ready >= 31,
        "ready pods fell to {lowest_ready} during drain-back"
    );
    assert_eq!(
        stage.spec_replicas("checkout"),
        Some(31),
        "no surge left behind: {drained:?}"
    );

    // Scale-in removes the burst pods first (pod-deletion-cost, honoured by the
    // ReplicaSet controller).
    checkout_qps.store(2250, Ordering::Relaxed);
    stage.wait_spec("checkout", Duration::from_secs(60), |n| n == 23, "23");
    let placed = wait_all_scheduled(&mut stage, "checkout", 23);
    assert_eq!(
        on_virtual(&placed),
        0,
        "scale-in took the burst pods first: {placed:?}"
    );
    drop(spillway);
}

/// Another team's Deployment: not scaled by Spillway, not tolerating virtual nodes.
fn filler_deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: filler, namespace: {NAMESPACE} }}\n\
         spec:\n  replicas: {replicas}\n  selector: {{ matchLabels: {{ app: filler }} }}\n  template:\n    \
         metadata: {{ labels: {{ app: filler }} }}\n    spec:\n      containers:\n        - name: app\n          \
         image: registry.invalid/filler:1\n          resources: {{ requests: {{ cpu: 500m, memory: 256Mi }} }}\n"
    )
}

/// Waits until `app` has exactly `count` live pods, all bound, and returns their nodes.
fn wait_all_scheduled(stage: &mut Stage, app: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pods = stage.pods(app);
        if pods.len() == count && pods.iter().all(|(_, node, ready)| node.is_some() && *ready) {
            return pods.into_iter().filter_map(|(_, node, _)| node).collect();
        }
        stage.cluster.check_alive();
        assert!(
            Instant::now() < deadline,
            "{app}: wanted {count} ready pods, have {pods:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Scenario 6: installing as the README says. Every overlay and component renders with
/// the real kustomize (kubectl's), the API server (with KEDA's CRDs) accepts every object
/// of each on a server-side dry run, and every file in `deploy/keda/` is an object the API
/// server accepts: a fragment that is not an object must not be named like one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_overlay_renders_and_the_api_server_accepts_it() {
    let Some(peers) = PeerDir::locate("real_peers::install") else {
        return;
    };
    let stage = Stage::start(&peers, &logs("install"), &repo(), 1, "4").await;
    let admin = stage.admin();
    let deploy = repo().join("deploy");
    // The namespaces exist, as they would after the first install: a dry run creates
    // nothing, so objects in a namespace the same run creates would be refused.
    admin.must_apply("apiVersion: v1\nkind: Namespace\nmetadata: { name: ingress }\n");
    let mut rendered = Vec::new();
    for dir in ["overlays/single", "overlays/ha", "overlays/sharded"] {
        let path = deploy.join(dir);
        let yaml = admin
            .run(&["kustomize", &path.display().to_string()])
            .unwrap_or_else(|e| panic!("deploy/{dir} does not render: {e}"));
        let accepted = admin
            .run_with_input(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml))
            .unwrap_or_else(|e| panic!("deploy/{dir}: the API server refuses an object: {e}"));
        let objects = yaml.matches("\nkind: ").count() + usize::from(yaml.starts_with("kind: "));
        let lines = accepted
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        assert_eq!(
            lines, objects,
            "deploy/{dir}: every object accepted:\n{accepted}"
        );
        rendered.push((dir, objects));
    }
    // A component renders inside an overlay that uses it.
    let with_mtls = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        with_mtls.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\ncomponents: [{}]\n",
            spillway_tests::relative_path(with_mtls.path(), &deploy.join("overlays/single")).display(),
            spillway_tests::relative_path(with_mtls.path(), &deploy.join("components/mtls")).display()
        ),
    )
    .expect("kustomization");
    let yaml = admin
        .run(&[
            "kustomize",
            "--load-restrictor=LoadRestrictionsNone",
            &with_mtls.path().display().to_string(),
        ])
        .unwrap_or_else(|e| panic!("deploy/components/mtls does not render: {e}"));
    admin
        .run_with_input(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml))
        .unwrap_or_else(|e| panic!("deploy/components/mtls: refused: {e}"));

    admin.must_apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {NAMESPACE} }}\n"
    ));
    let mut keda_files: Vec<PathBuf> = std::fs::read_dir(deploy.join("keda"))
        .expect("deploy/keda")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    keda_files.sort();
    assert!(keda_files.len() >= 3, "deploy/keda has its ScaledObjects");
    for file in &keda_files {
        admin
            .run(&[
                "apply",
                "--dry-run=server",
                "-f",
                &file.display().to_string(),
            ])
            .unwrap_or_else(|e| {
                panic!(
                    "{}: not an object the API server accepts: {e}",
                    file.display()
                )
            });
    }
    eprintln!(
        "rendered and accepted: {rendered:?}, deploy/keda: {} files",
        keda_files.len()
    );
}
