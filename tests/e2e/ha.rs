//! High availability: two `spillway serve` processes scraping the same gateway give KEDA
//! the same answers, and one killed and restarted under load answers at once, from its
//! data, never lower during its warm-up than the highest count its data asked for;
//! StreamIsActive streams reconnect to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spillway_proto::externalscaler::ScaledObjectRef;
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::Spillway;
use spillway_tests::wait;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// 100 qps per replica; a 6 s scale-down window keeps the test short while leaving
/// several polls inside the warm-up of a restarted process.
fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 4s
  qps: { targetPerReplica: 100 }
hysteresis: { upWindow: 0s, downWindow: 6s }
limits: { down: { percent: 100, per: 1s } }
panic: { enabled: false }",
        &["web"],
    )
}

const DOWN_WINDOW: Duration = Duration::from_secs(6);

fn write_config(dir: &Path, gateway: &FakeGateway) -> PathBuf {
    std::fs::create_dir_all(dir.join("policies")).expect("policy dir");
    std::fs::write(dir.join("policies/acme.yaml"), policy()).expect("policy");
    let path = dir.join("spillway.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: {{ grpc: 127.0.0.1:0, http: 127.0.0.1:0 }}
policies: policies
scrape: {{ interval: 200ms, timeout: 150ms, targets: [{}] }}
",
            gateway.url()
        ),
    )
    .expect("config");
    path
}

fn reference(spillway: &Spillway) -> ScaledObjectRef {
    scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    )
}

async fn answer(client: &mut keda::Client, spillway: &Spillway) -> Result<f64, tonic::Status> {
    keda::poll(client, &reference(spillway))
        .await
        .map(|poll| poll.value)
}

async fn until_answer(client: &keda::Client, spillway: &Spillway, value: f64) {
    wait::until(
        &format!("{value} replicas from {}", spillway.grpc),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut client = client.clone();
            async move { (answer(&mut client, spillway).await.ok() == Some(value)).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_and_a_restarted_one_answers_from_its_data_at_once() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    let qps = Arc::new(AtomicU64::new(450));
    gateway.drive_exact("acme", "web", qps.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &gateway);
    let a = Spillway::serve(BIN, &config);
    let b = Spillway::serve(BIN, &config);
    let client_a = keda::connect(a.grpc).await;
    let client_b = keda::connect(b.grpc).await;

    // Same data, same answer: 450 qps at 100 per replica is 5 on both.
    until_answer(&client_a, &a, 5.0).await;
    until_answer(&client_b, &b, 5.0).await;
    for _ in 0..10 {
        let (x, y) = (
            answer(&mut client_a.clone(), &a).await.expect("a answers"),
            answer(&mut client_b.clone(), &b).await.expect("b answers"),
        );
        assert_eq!(x, y, "two replicas answered differently for the same data");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A stream KEDA holds open to b (external-push).
    let mut stream = client_b
        .clone()
        .stream_is_active(reference(&b))
        .await
        .expect("stream opens")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("first stream message in time")
        .expect("stream healthy")
        .expect("a message");
    assert!(first.result, "traffic: active");

    // Traffic falls to 150 qps: the data now asks for 2, but the scale-down window holds
    // 5 for a while. b dies right then and comes back with no memory.
    qps.store(150, Ordering::Relaxed);
    let dropped_at = Instant::now();
    drop(b);
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
    assert!(
        !matches!(ended, Ok(Ok(Some(_)))),
        "the stream to a killed process must end, not go on: {ended:?}"
    );
    let b = Spillway::serve(BIN, &config);
    let client_b = keda::connect(b.grpc).await;

    // The restarted process answers from the start, without an error. Without cluster
    // access it cannot know the 5 that run: before its first data it serves the
    // effective minimum (1), from its first data what the data asks (2), and during its
    // warm-up never less than the highest count asked for since its start; a scale-up
    // is served at once. (With the Kubernetes side it would hold at spec.replicas: see
    // keda_semantics.rs.)
    let restarted_at = Instant::now();
    let mut answers = Vec::new();
    while restarted_at.elapsed() < DOWN_WINDOW - Duration::from_secs(2) {
        let value = answer(&mut client_b.clone(), &b)
            .await
            .unwrap_or_else(|status| panic!("the restarted process failed a poll: {status:?}"));
        answers.push(value);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("restart warm-up answers: {answers:?}");
    assert!(answers.len() > 10);
    let highest = answers.iter().copied().fold(0.0, f64::max);
    assert!(
        answers.windows(2).all(|w| w[1] >= w[0]),
        "lowered during its warm-up: {answers:?}"
    );
    assert_eq!(highest, 2.0, "what its data asks for: {answers:?}");
    qps.store(650, Ordering::Relaxed);
    let stepped = Instant::now();
    wait::until(
        "the restarted process to serve the scale-up",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let mut client = client_b.clone();
            let b = &b;
            async move { (answer(&mut client, b).await.ok()? > 2.0).then_some(()) }
        },
    )
    .await;
    eprintln!(
        "scale-up served {:?} after the step, {:?} after the restart",
        stepped.elapsed(),
        restarted_at.elapsed()
    );
    assert!(
        restarted_at.elapsed() < DOWN_WINDOW,
        "the scale-up waited for the warm-up"
    );
    qps.store(150, Ordering::Relaxed);

    // Both come down to 2 once the window has passed, and agree again.
    until_answer(&client_a, &a, 2.0).await;
    until_answer(&client_b, &b, 2.0).await;
    eprintln!(
        "both at 2 replicas {:?} after the drop",
        dropped_at.elapsed()
    );

    // KEDA reopens the stream; the restarted process answers it.
    let reopened = wait::until(
        "StreamIsActive reopened on the restarted process",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let mut client = client_b.clone();
            let reference = reference(&b);
            async move {
                let mut stream = client.stream_is_active(reference).await.ok()?.into_inner();
                tokio::time::timeout(Duration::from_secs(2), stream.message())
                    .await
                    .ok()?
                    .ok()?
            }
        },
    )
    .await;
    assert!(reopened.result, "150 qps is still active");
}
