//! Sharded collectors: two `spillway collector --shard I/2` processes each scrape the
//! gateways of their hash shard, and `spillway serve` merges their answers. A shard that
//! dies degrades to "hold" (never a scale-down), scale-up on the remaining shards still
//! works, the loss is visible in /metrics and the status API, and once the shard is back
//! the sums are complete again and scale-down resumes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spillway_collector::scrape::Target;
use spillway_collector::shard::ShardSpec;
use spillway_proto::externalscaler::ScaledObjectRef;
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 2s
  qps: { targetPerReplica: 100 }
hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.8, upWindow: 0s, downWindow: 2s }
limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }
panic: { enabled: false }",
        &["web", "api"],
    )
}

/// Gateways until each of the two shards owns one (the ports are random, so which shard
/// a gateway lands in is too); bounded: 20 gateways all in one shard has odds of 2^-19.
async fn one_gateway_per_shard() -> [FakeGateway; 2] {
    let shards = [ShardSpec::new(0, 2).unwrap(), ShardSpec::new(1, 2).unwrap()];
    let mut found: [Option<FakeGateway>; 2] = [None, None];
    for _ in 0..20 {
        let gateway = FakeGateway::start(Mode::Healthy).await;
        let target = Target::new(gateway.url());
        let owner = shards
            .iter()
            .position(|s| s.owns(&target))
            .expect("an owner");
        found[owner].get_or_insert(gateway);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    match found {
        [Some(a), Some(b)] => [a, b],
        _ => panic!("20 gateways and one shard still owns none"),
    }
}

fn write_collector_config(dir: &Path, gateways: &[FakeGateway; 2]) -> PathBuf {
    let dir = dir.join("collector");
    write_serve_config(
        &dir,
        &[],
        &format!(
            "scrape: {{ interval: 200ms, timeout: 150ms, targets: [{}, {}] }}\n",
            gateways[0].url(),
            gateways[1].url()
        ),
    )
}

fn reference(scaler: &Spillway, app: &str) -> ScaledObjectRef {
    scaled_object(
        "acme-prod",
        app,
        scaler.grpc,
        &[("tenant", "acme"), ("app", app)],
    )
}

async fn answer(client: &keda::Client, scaler: &Spillway) -> Option<f64> {
    answer_for(client, scaler, "web").await
}

async fn answer_for(client: &keda::Client, scaler: &Spillway, app: &str) -> Option<f64> {
    keda::poll(&mut client.clone(), &reference(scaler, app))
        .await
        .ok()
        .map(|poll| poll.value)
}

async fn until_answer(client: &keda::Client, scaler: &Spillway, value: f64, limit: Duration) {
    until_answer_for(client, scaler, "web", value, limit).await
}

async fn until_answer_for(
    client: &keda::Client,
    scaler: &Spillway,
    app: &str,
    value: f64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let got = answer_for(client, scaler, app).await;
        if got == Some(value) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {value} replicas of {app}; last answer {got:?}, workload {}",
                workload(scaler, app).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_text(url: String) -> Option<String> {
    let response = spillway_tests::http().get(url).send().await.ok()?;
    response.text().await.ok()
}

async fn metric(scaler: &Spillway, line_start: &str) -> Option<f64> {
    let text = get_text(format!("http://{}/metrics", scaler.http)).await?;
    text.lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn until_metric(scaler: &Spillway, line_start: &str, value: f64) {
    wait::until(
        &format!("{line_start} = {value}"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async move { (metric(scaler, line_start).await == Some(value)).then_some(()) },
    )
    .await;
}

async fn workload(scaler: &Spillway, app: &str) -> serde_json::Value {
    let text = get_text(format!(
        "http://{}/api/v1/workloads/acme/{app}",
        scaler.http
    ))
    .await
    .expect("workload status");
    serde_json::from_str(&text).expect("workload status is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_shard_holds_scale_down_and_its_return_completes_the_sums() {
    let gateways = one_gateway_per_shard().await;
    let rates = [Arc::new(AtomicU64::new(225)), Arc::new(AtomicU64::new(225))];
    gateways[0].drive_rate("acme", "web", rates[0].clone(), Duration::from_millis(50));
    gateways[1].drive_rate("acme", "web", rates[1].clone(), Duration::from_millis(50));
    // api's traffic reaches only shard 0's gateway.
    let api_rate = Arc::new(AtomicU64::new(450));
    gateways[0].drive_rate("acme", "api", api_rate.clone(), Duration::from_millis(50));
    let dir = tempfile::tempdir().expect("temp dir");
    let collector_config = write_collector_config(dir.path(), &gateways);
    let shard0 = Spillway::collector(BIN, &collector_config, "0/2", "127.0.0.1:0");
    let shard1 = Spillway::collector(BIN, &collector_config, "1/2", "127.0.0.1:0");
    let shard1_grpc = shard1.grpc;
    let scaler_config = write_serve_config(
        &dir.path().join("scaler"),
        &[("acme.yaml", policy().as_str())],
        &format!(
            "collectors:\n  shards: [http://{}, http://{}]\n  interval: 200ms\n  timeout: 150ms\n  lostAfter: 600ms\n",
            shard0.grpc, shard1.grpc
        ),
    );
    let scaler = Spillway::serve(BIN, &scaler_config);
    let client = keda::connect(scaler.grpc).await;

    // Each shard scrapes only its own gateway; the scaler sums 225 + 225 = 450 qps (5 replicas).
    until_answer(&client, &scaler, 5.0, Duration::from_secs(30)).await;
    until_answer_for(&client, &scaler, "api", 5.0, Duration::from_secs(10)).await;
    until_metric(&scaler, "spillway_collector_shards_complete ", 1.0).await;
    for (shard, process) in [&shard0, &shard1].into_iter().enumerate() {
        let status = get_text(format!("http://{}/api/v1/status", process.http))
            .await
            .expect("shard status");
        let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
        let targets = status["targets"].as_array().expect("targets");
        assert_eq!(targets.len(), 1, "shard {shard} owns one gateway: {status}");
        assert_eq!(targets[0]["url"], gateways[shard].url());
    }

    // Shard 1 dies. What is left adds up to 225 qps (3 replicas), but that is a lower
    // bound: the scaler must hold 5, visibly, for longer than the window and the
    // scale-down window together.
    let killed = Instant::now();
    drop(shard1);
    until_metric(&scaler, "spillway_collector_shard_up{shard=\"1\"} ", 0.0).await;
    until_metric(&scaler, "spillway_collector_shards_complete ", 0.0).await;
    let detected = killed.elapsed();
    // lostAfter 600 ms plus one 200 ms poll, plus the /metrics polling's 100 ms.
    assert!(
        detected < Duration::from_secs(3),
        "a lost shard took {detected:?} to show"
    );
    let held_until = Instant::now() + Duration::from_secs(5);
    let mut polls = 0;
    while Instant::now() < held_until {
        let value = answer(&client, &scaler).await;
        if value != Some(5.0) {
            panic!(
                "a lost shard must change nothing here, got {value:?}: {}",
                workload(&scaler, "web").await
            );
        }
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(polls >= 20, "only {polls} polls in 5 s");
    let status = workload(&scaler, "web").await;
    let latest = &status["latest"];
    assert_eq!(latest["rule"], "held_missing_data", "{status}");
    assert_eq!(latest["partial"], serde_json::json!(["qps"]), "{status}");
    let scaler_status = get_text(format!("http://{}/api/v1/status", scaler.http))
        .await
        .expect("status");
    let scaler_status: serde_json::Value = serde_json::from_str(&scaler_status).expect("JSON");
    let url = format!("http://{}", scaler.http);
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["status", "--url", &url])
            .output()
    });
    let cli = tokio::time::timeout(Duration::from_secs(20), cli)
        .await
        .expect("spillway status finishes")
        .expect("status thread")
        .expect("spillway status runs");
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        printed.contains("LOST") && printed.contains("do not scale down"),
        "spillway status:\n{printed}"
    );
    let lost = &scaler_status["shards"][1];
    assert_eq!(lost["up"], false, "{scaler_status}");
    assert!(
        lost["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "{scaler_status}"
    );

    // Everyone else is unaffected: api's traffic never went through the lost shard, so
    // its sums stay complete and it scales down as usual (450 → 150 qps: 5 → 2).
    api_rate.store(150, Ordering::Relaxed);
    until_answer_for(&client, &scaler, "api", 2.0, Duration::from_secs(20)).await;
    let api = workload(&scaler, "api").await;
    assert_eq!(api["latest"]["partial"], serde_json::json!([]), "{api}");
    assert_eq!(answer(&client, &scaler).await, Some(5.0), "web still held");

    // Scale-up on what the remaining shard sees still works: 950 qps behind shard 0
    // alone asks for 10.
    rates[0].store(950, Ordering::Relaxed);
    until_answer(&client, &scaler, 10.0, Duration::from_secs(20)).await;

    // Shard 1 comes back where the scaler expects it. Once it is warm the sums are
    // complete; with 225 + 225 qps again, scale-down to 5 resumes.
    let shard1 = Spillway::collector(BIN, &collector_config, "1/2", &shard1_grpc.to_string());
    assert_eq!(shard1.grpc, shard1_grpc);
    let restarted = Instant::now();
    until_metric(&scaler, "spillway_collector_shards_complete ", 1.0).await;
    let counted_again = restarted.elapsed();
    eprintln!(
        "sharding: lost shard visible after {} ms (lostAfter 600 ms, polls every 200 ms); \
         restarted shard counted again after {} ms (warm-up 2 × 200 ms scrape + 150 ms timeout)",
        detected.as_millis(),
        counted_again.as_millis()
    );
    rates[0].store(225, Ordering::Relaxed);
    until_answer(&client, &scaler, 5.0, Duration::from_secs(30)).await;
    let status = workload(&scaler, "web").await;
    assert_eq!(
        status["latest"]["partial"],
        serde_json::json!([]),
        "{status}"
    );
    // A collector shuts down cleanly on SIGTERM, as a rolling update stops it.
    let exit = shard0.terminate(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|status| status.success()),
        "collector exit on SIGTERM: {exit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_listed_in_the_wrong_order_are_refused_not_double_counted() {
    let gateways = one_gateway_per_shard().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let collector_config = write_collector_config(dir.path(), &gateways);
    let shard0 = Spillway::collector(BIN, &collector_config, "0/2", "127.0.0.1:0");
    let shard1 = Spillway::collector(BIN, &collector_config, "1/2", "127.0.0.1:0");
    let scaler_config = write_serve_config(
        &dir.path().join("scaler"),
        &[("acme.yaml", policy().as_str())],
        &format!(
            "collectors:\n  shards: [http://{}, http://{}]\n  interval: 200ms\n  timeout: 150ms\n  lostAfter: 600ms\n",
            shard1.grpc, shard0.grpc
        ),
    );
    let scaler = Spillway::serve(BIN, &scaler_config);
    let status: serde_json::Value = wait::until(
        "both shards refused with a reason",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let text = get_text(format!("http://{}/api/v1/status", scaler.http)).await?;
            let status: serde_json::Value = serde_json::from_str(&text).ok()?;
            let shards = status["shards"].as_array()?;
            shards
                .iter()
                .all(|s| {
                    s["lastError"]
                        .as_str()
                        .is_some_and(|e| e.contains("not 0/2") || e.contains("not 1/2"))
                })
                .then_some(status)
        },
    )
    .await;
    assert!(
        status["shards"]
            .as_array()
            .is_some_and(|shards| shards.iter().all(|s| s["up"] == false)),
        "{status}"
    );
    assert_eq!(
        metric(&scaler, "spillway_collector_shards_complete ").await,
        Some(0.0)
    );
}
