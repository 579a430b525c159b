//! What reaches the Deployment is what Spillway decided: the real `spillway` binary
//! behind models of KEDA's scaling loop, the HPA controller and the Deployment
//! (`spillway_tests::peer`). The scenarios are written against the `Peer` trait, so the
//! same ones can run against a real KEDA and control plane; the set-up around them
//! (gateway traffic, Spillway's config, which peer) is each test's own.
//!
//! The model peer runs on the wall clock with short periods: the HPA syncs and KEDA
//! polls every second, `cooldownPeriod` is seconds, not minutes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use spillway_tests::fake_kube::{FakeKube, fixtures};
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::hpa_model::{Behavior, HpaSpec, Tolerances, external_per_pod_replicas};
use spillway_tests::keda::{Fallback, FallbackBehavior, ScaledObjectSpec};
use spillway_tests::peer::{ModelPeer, ModelTiming, Peer};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");
const SCRAPE: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------
// Scenarios: only the Peer, the traffic and what the test says the decision is.
// ---------------------------------------------------------------------------------

/// Lets the peer run until `check` holds for the scale, at most `limit`; the time it
/// took.
async fn run_until<P: Peer>(
    peer: &mut P,
    what: &str,
    limit: Duration,
    check: impl Fn(spillway_tests::hpa_model::Scale) -> bool,
) -> Duration {
    let started = Instant::now();
    while !check(peer.scale()) {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; the Deployment is at {:?}",
            peer.scale()
        );
        peer.run_for(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// A `min: 2` app without traffic, for three of KEDA's `cooldownPeriod`s: KEDA never
/// deactivates it, and no poll fails.
async fn min_two_idle_stays_at_two<P: Peer>(peer: &mut P, cooldown: Duration) {
    peer.reset_low_water();
    peer.run_for(cooldown * 3).await;
    assert_eq!(peer.scale().spec, 2, "the Deployment left 2");
    assert_eq!(peer.low_water(), 2, "KEDA took a min-2 app below 2");
    assert_eq!(peer.scaler_failures(), 0);
}

/// A rolling update with `surge_percent` at steady load ends where it started, the
/// decided count, and `spec.replicas` never moves during it.
async fn rollout_ends_at_the_decided_count<P: Peer>(
    peer: &mut P,
    decided: u32,
    surge_percent: u32,
) {
    run_until(peer, "the decided count", Duration::from_secs(20), |s| {
        s.spec == decided && s.status == decided
    })
    .await;
    peer.reset_low_water();
    peer.start_rollout(surge_percent);
    let started = Instant::now();
    let mut highest = decided;
    let mut surged = false;
    while !peer.rollout_done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the rollout does not end: {:?}",
            peer.scale()
        );
        peer.run_for(Duration::from_millis(100)).await;
        let scale = peer.scale();
        highest = highest.max(scale.spec);
        surged |= scale.status > scale.spec;
    }
    assert!(surged, "the rollout never surged above spec");
    peer.run_for(peer.hpa_sync_period() * 3).await;
    assert_eq!(
        highest, decided,
        "spec.replicas ratcheted up to {highest} during the rollout"
    );
    assert_eq!(peer.low_water(), decided);
    assert_eq!(
        peer.scale().spec,
        decided,
        "the rollout did not end at the decision"
    );
}

/// From a steady `from`, a step whose decision is within the HPA's tolerance of it
/// (109 vs 100, or a minimum raised from 95 to 100) still reaches the Deployment: at
/// least `to` within `limit`.
async fn a_small_step_reaches_the_deployment<P: Peer>(
    peer: &mut P,
    from: u32,
    step: impl FnOnce(),
    to: u32,
    limit: Duration,
) -> Duration {
    run_until(peer, "the starting count", Duration::from_secs(20), |s| {
        s.spec == from
    })
    .await;
    // Steady for two syncs first.
    peer.run_for(peer.hpa_sync_period() * 2).await;
    assert_eq!(peer.scale().spec, from);
    step();
    run_until(peer, &format!("at least {to}"), limit, |s| s.spec >= to).await
}

/// An app woken from zero by its traffic reaches `from`; traffic stops (`idle`): the
/// count steps down to 1, never from more than 1 straight to 0, and KEDA takes it from
/// 1 to 0 after its cooldown; traffic comes back (`wake`) and KEDA and the HPA bring it
/// up to at least `back` within `limit`. Returns the counts the Deployment went
/// through on the way down.
async fn to_zero_and_back<P: Peer>(
    peer: &mut P,
    from: u32,
    idle: impl FnOnce(),
    wake: impl FnOnce(),
    back: u32,
    limit: Duration,
) -> Vec<u32> {
    run_until(peer, "the starting count", Duration::from_secs(20), |s| {
        s.spec == from
    })
    .await;
    peer.run_for(peer.hpa_sync_period() * 2).await;
    assert_eq!(peer.scale().spec, from, "not steady at {from}");
    idle();
    let mut path = vec![from];
    let started = Instant::now();
    while peer.scale().spec != 0 {
        assert!(started.elapsed() < limit, "never reached 0: {path:?}");
        peer.run_for(Duration::from_millis(100)).await;
        let spec = peer.scale().spec;
        if path.last() != Some(&spec) {
            path.push(spec);
        }
    }
    assert!(
        path.windows(2).all(|w| w[1] != 0 || w[0] == 1),
        "jumped to zero from more than 1: {path:?}"
    );
    wake();
    run_until(peer, &format!("{back} again"), limit, |s| s.spec >= back).await;
    path
}

/// Spillway away (killed, restarting) while KEDA has a fallback: nothing is lowered.
/// The caller has taken Spillway away just before.
async fn nothing_lowered_while_away<P: Peer>(peer: &mut P, at: u32, away: Duration) {
    peer.reset_low_water();
    peer.run_for(away).await;
    assert!(
        peer.low_water() >= at,
        "lowered to {} while Spillway was away",
        peer.low_water()
    );
}

// ---------------------------------------------------------------------------------
// Set-up: traffic, Spillway, the model peer.
// ---------------------------------------------------------------------------------

fn policy(replicas: &str, down_window: &str, extra: &str) -> String {
    acme_policy(
        &format!(
            "replicas: {replicas}
signals:
  window: 2s
  qps: {{ targetPerReplica: 100, activation: 1 }}
hysteresis: {{ upWindow: 0s, downWindow: {down_window} }}
limits: {{ up: {{ percent: 1000, per: 1s }}, down: {{ percent: 100, per: 1s }} }}
panic: {{ enabled: false }}
activation: {{ window: 2s }}
{extra}"
        ),
        &["web"],
    )
}

fn config(dir: &Path, policy: &str, gateway: &FakeGateway, extra: &str) -> PathBuf {
    write_serve_config(
        dir,
        &[("acme.yaml", policy)],
        &format!(
            "policyReload: 300ms
scrape: {{ interval: {}ms, timeout: 150ms, targets: [{}] }}
{extra}",
            SCRAPE.as_millis(),
            gateway.url()
        ),
    )
}

/// The Kubernetes side of serve, reading replica counts (no placement) from `fake`.
fn kubernetes(fake: &FakeKube) -> String {
    format!(
        "kubernetes:
  apiServer: {}
  interval: 1s
  placement: false
  workloads: [{{ tenant: acme, app: web, namespace: acme-prod, scaledObject: web }}]
",
        fake.url()
    )
}

async fn fake_cluster(replicas: u32) -> Arc<FakeKube> {
    spillway_scaler::serve::install_crypto_provider();
    let fake = FakeKube::start().await.expect("fake API server");
    fake.put(fixtures::deployment("acme-prod", "web", replicas, "500m"));
    fake.put(fixtures::scaled_object("acme-prod", "web", "web"));
    Arc::new(fake)
}

struct Traffic {
    gateway: FakeGateway,
    qps: Arc<AtomicU64>,
}

impl Traffic {
    async fn start(qps: u64) -> Self {
        let gateway = FakeGateway::start(Mode::Healthy).await;
        let qps = Arc::new(AtomicU64::new(qps));
        gateway.drive_exact("acme", "web", qps.clone());
        Self { gateway, qps }
    }

    fn set(&self, qps: u64) {
        self.qps.store(qps, Ordering::Relaxed);
    }
}

fn pass_through(so: &ScaledObjectSpec) -> HpaSpec {
    HpaSpec::keda(
        so.min_replica_count,
        so.max_replica_count,
        Some(Behavior::passthrough()),
    )
}

async fn model_peer(spillway: &Spillway, so: ScaledObjectSpec, replicas: u32) -> ModelPeer {
    ModelPeer::start(
        spillway.grpc,
        "acme-prod",
        "web",
        &[("tenant", "acme"), ("app", "web")],
        so,
        pass_through(&so),
        replicas,
        ModelTiming::default(),
    )
    .await
}

async fn workload_status(spillway: &Spillway) -> Value {
    spillway_tests::http()
        .get(format!(
            "http://{}/api/v1/workloads/acme/web",
            spillway.http
        ))
        .send()
        .await
        .expect("status API")
        .json()
        .await
        .expect("status JSON")
}

async fn readyz(spillway: &Spillway) -> (u16, String) {
    let response = spillway_tests::http()
        .get(format!("http://{}/readyz", spillway.http))
        .send()
        .await
        .expect("/readyz");
    let code = response.status().as_u16();
    (code, response.text().await.unwrap_or_default())
}

// ---------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------

/// `/readyz` turns 200 only once the replica counts are read, the targets scraped and a
/// full scale-down window (here 3 s) has passed since start; GetMetrics answers before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_a_full_scale_down_window_since_start() {
    let fake = fake_cluster(4).await;
    let traffic = Traffic::start(380).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy("{ min: 1, max: 50 }", "3s", "");
    let spillway = Spillway::serve(
        BIN,
        &config(dir.path(), &policy, &traffic.gateway, &kubernetes(&fake)),
    );
    let started = Instant::now();
    let (code, why) = readyz(&spillway).await;
    assert_eq!(code, 503, "ready at once: {why}");
    let mut peer = model_peer(&spillway, ScaledObjectSpec::default(), 4).await;
    peer.run_for(Duration::from_secs(1)).await;
    assert_eq!(peer.scaler_failures(), 0, "answers while not ready");
    let ready_after = loop {
        let (code, why) = readyz(&spillway).await;
        if code == 200 {
            break started.elapsed();
        }
        assert!(why.contains("warming up"), "{why}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not ready 10 s after start: {why}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The process started a moment before `serve` returned: allow that much.
    assert!(
        ready_after >= Duration::from_millis(2_500),
        "ready before the window was over: {ready_after:?}"
    );
    eprintln!("/readyz: 200 after {ready_after:?} (3 s scale-down window)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_two_app_idle_past_the_cooldown_stays_at_two() {
    let traffic = Traffic::start(0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy("{ min: 2, max: 20 }", "2s", "");
    let spillway = Spillway::serve(BIN, &config(dir.path(), &policy, &traffic.gateway, ""));
    // The README's ScaledObject: minReplicaCount 0, Spillway's IsActive is the
    // activation.
    let so = ScaledObjectSpec {
        cooldown_period_secs: 3,
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 2).await;
    // external-push: the stream's first message is the current state, active.
    let mut stream = spillway_tests::keda::connect(spillway.grpc)
        .await
        .stream_is_active(spillway_tests::keda::scaled_object(
            "acme-prod",
            "web",
            spillway.grpc,
            &[("tenant", "acme"), ("app", "web")],
        ))
        .await
        .expect("stream opens")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a first message in time")
        .expect("stream healthy")
        .expect("a message");
    assert!(first.result, "StreamIsActive says inactive for a min-2 app");
    min_two_idle_stays_at_two(&mut peer, Duration::from_secs(3)).await;
    let answers: Vec<_> = peer
        .syncs_since(0)
        .filter_map(|s| s.answer.clone())
        .collect();
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok((v, true)) if *v == 2.0)),
        "every answer is 2 and active: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_with_a_25_percent_surge_ends_at_the_decided_count() {
    // 2050 qps at 100 per replica: 21 (rates carry a little noise, so every level in
    // these tests sits half a replica away from a boundary). Spillway reads spec and status from the fake API
    // server, which shows the model Deployment's surge (21 → 27 pods).
    let traffic = Traffic::start(2_050).await;
    let fake = fake_cluster(21).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A 3 s up window: what is checked is that the rollout's surge is not published, so
    // a lone noisy rate above 2,100/s (sample stamps drift when the machine is busy) must
    // not raise the count either, as it did once in a loaded run.
    let policy = policy("{ min: 1, max: 40 }", "2s", "").replace("upWindow: 0s", "upWindow: 3s");
    let spillway = Spillway::serve(
        BIN,
        &config(dir.path(), &policy, &traffic.gateway, &kubernetes(&fake)),
    );
    let so = ScaledObjectSpec {
        max_replica_count: 40,
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 21).await;
    peer.mirror_to(fake.clone(), "acme-prod", "web");
    peer.deployment.ready_after_ms = 3_000;
    rollout_ends_at_the_decided_count(&mut peer, 21, 25).await;
    let surged: Vec<_> = peer
        .syncs_since(0)
        .filter(|s| s.scale.status > s.scale.spec)
        .map(|s| (s.scale, s.answer.clone()))
        .collect();
    assert!(!surged.is_empty(), "no HPA sync saw the surge");
    for (scale, answer) in &surged {
        assert!(
            matches!(answer, Some(Ok((v, _))) if *v == 21.0),
            "during the surge {scale:?} Spillway answered {answer:?}, not spec"
        );
    }
    // Spillway saw the surge itself: its decision started from spec, not status.
    let status = workload_status(&spillway).await;
    let recent = status["recent"].as_array().cloned().unwrap_or_default();
    assert!(
        recent
            .iter()
            .chain(std::iter::once(&status["latest"]))
            .all(|d| d["current"].as_u64().is_none_or(|c| c <= 21)),
        "a decision started from status.replicas: {status}"
    );
    eprintln!(
        "rollout: {} syncs saw status above spec, every answer 21",
        surged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_109_versus_100_step_reaches_the_deployment() {
    // 9650 qps needs 97, inside the band of the 100 that run: held at 100. Spillway
    // reads spec and status from the fake API server, which shows the model Deployment.
    let traffic = Traffic::start(9_650).await;
    let fake = fake_cluster(100).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy("{ min: 1, max: 200 }", "2s", "");
    let spillway = Spillway::serve(
        BIN,
        &config(dir.path(), &policy, &traffic.gateway, &kubernetes(&fake)),
    );
    let so = ScaledObjectSpec {
        max_replica_count: 200,
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 100).await;
    peer.mirror_to(fake.clone(), "acme-prod", "web");
    // 10 950 qps needs 110 (109.5): within the HPA's 10 % of 100, so Spillway serves
    // 111, the first count the HPA acts on.
    let took = a_small_step_reaches_the_deployment(
        &mut peer,
        100,
        || traffic.set(10_950),
        110,
        Duration::from_secs(15),
    )
    .await;
    peer.run_for(Duration::from_secs(2)).await;
    let spec = peer.scale().spec;
    assert_eq!(spec, 111, "landed at {spec}: {:?}", peer.samples);
    eprintln!("110 vs 100: at {spec} {took:?} after the step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_kubernetes_side_a_small_step_reaches_the_deployment_too() {
    // Spillway brings a new Deployment from 1 to about 97 itself (9650 qps), then a
    // step of 8 replicas, within the HPA's tolerance, is served as the first count the
    // HPA applies.
    let traffic = Traffic::start(9_650).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy("{ min: 1, max: 200 }", "2s", "");
    let spillway = Spillway::serve(BIN, &config(dir.path(), &policy, &traffic.gateway, ""));
    let so = ScaledObjectSpec {
        max_replica_count: 200,
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 1).await;
    run_until(
        &mut peer,
        "Spillway's count",
        Duration::from_secs(20),
        |s| s.spec >= 90,
    )
    .await;
    peer.run_for(peer.hpa_sync_period() * 2).await;
    let from = peer.scale().spec;
    // 3 % below what `from` carries: held there, out of reach of rate noise.
    traffic.set(u64::from(from) * 97);
    let to = from + 8;
    let tolerance = Tolerances {
        scale_down: 0.1,
        scale_up: 0.1,
    };
    let lands = (to..)
        .find(|&n| external_per_pod_replicas(from, 1000, i64::from(n) * 1000, tolerance) == n)
        .expect("some count is applied");
    let took = a_small_step_reaches_the_deployment(
        &mut peer,
        from,
        || traffic.set(u64::from(to) * 100 - 50),
        to,
        Duration::from_secs(15),
    )
    .await;
    peer.run_for(Duration::from_secs(2)).await;
    assert_eq!(peer.scale().spec, lands, "{:?}", peer.samples);
    eprintln!("{to} vs {from} without the Kubernetes side: at {lands} {took:?} after the step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_raising_the_minimum_from_95_to_100_reaches_the_deployment() {
    // 9250 qps needs 93, inside the band of the 95 that run: held at 95.
    let traffic = Traffic::start(9_250).await;
    let fake = fake_cluster(95).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = policy("{ min: 1, max: 200 }", "2s", "");
    let config = config(dir.path(), &plain, &traffic.gateway, &kubernetes(&fake));
    let spillway = Spillway::serve(BIN, &config);
    let so = ScaledObjectSpec {
        max_replica_count: 200,
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 95).await;
    peer.mirror_to(fake.clone(), "acme-prod", "web");
    let scheduled = policy(
        "{ min: 1, max: 200 }",
        "2s",
        "schedules: [ { name: peak, cron: \"* * * * *\", duration: 2m, minReplicas: 100 } ]",
    );
    let policy_file = dir.path().join("policies/acme.yaml");
    let took = a_small_step_reaches_the_deployment(
        &mut peer,
        95,
        || std::fs::write(&policy_file, &scheduled).expect("rewrite the policy"),
        100,
        Duration::from_secs(10),
    )
    .await;
    peer.run_for(Duration::from_secs(2)).await;
    // 100/95 is within the tolerance: 105 is the first count the HPA applies.
    assert_eq!(peer.scale().spec, 105);
    eprintln!("schedule 95 → 100: at 105 {took:?} after the policy changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_at_zero_and_a_fresh_start_show_no_trigger_error() {
    // No traffic for `web` at all, not even a counter: nothing has ever been seen.
    let idle = FakeGateway::start(Mode::Healthy).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy("{ min: 0, max: 20 }", "300s", "");
    let spillway = Spillway::serve(BIN, &config(dir.path(), &policy, &idle, ""));
    let so = ScaledObjectSpec {
        cooldown_period_secs: 2,
        fallback: Some(Fallback {
            failure_threshold: 1,
            replicas: 3,
            behavior: FallbackBehavior::CurrentReplicasIfHigher,
        }),
        ..ScaledObjectSpec::default()
    };
    // Polled from the moment the process prints its ports.
    let mut peer = model_peer(&spillway, so, 0).await;
    peer.run_for(Duration::from_secs(5)).await;
    assert_eq!(peer.scaler_failures(), 0);
    assert_eq!(peer.keda.fallback_passes, 0, "the fallback woke the app");
    assert_eq!(peer.low_water(), 0);
    assert_eq!(peer.scale().spec, 0, "an idle app at zero was woken");
    let answers: Vec<_> = peer
        .syncs_since(0)
        .filter_map(|s| s.answer.clone())
        .collect();
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|a| *a == Ok((0.0, false))),
        "every answer is 0 and inactive: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_serves_at_once_and_a_step_right_after_is_applied() {
    // A production-like 300 s scale-down window: the warm-up lasts all test long, and
    // must not hold a scale-up back.
    let traffic = Traffic::start(280).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy("{ min: 1, max: 50 }", "300s", "");
    let spillway = Spillway::serve(BIN, &config(dir.path(), &policy, &traffic.gateway, ""));
    let mut peer = model_peer(&spillway, ScaledObjectSpec::default(), 3).await;
    peer.run_for(Duration::from_secs(1)).await;
    let first: Vec<_> = peer
        .syncs_since(0)
        .filter_map(|s| s.answer.clone())
        .collect();
    assert!(
        !first.is_empty() && first.iter().all(Result::is_ok),
        "answers from the start: {first:?}"
    );
    // The bound on "normal reaction": the signal window (2 s) to see the whole step,
    // a scrape interval, a decision tick (1 s), an HPA sync (1 s), and 2 s of slack.
    let bound = Duration::from_secs(2) + SCRAPE + Duration::from_secs(4);
    traffic.set(1_450);
    let first_step = run_until(&mut peer, "15 replicas", bound, |s| s.spec >= 15).await;
    traffic.set(2_950);
    let second_step = run_until(&mut peer, "30 replicas", bound, |s| s.spec >= 30).await;
    assert_eq!(peer.scaler_failures(), 0);
    let status = workload_status(&spillway).await;
    let warming = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "WarmingUp"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(warming["status"], "True", "still warming up: {warming}");
    // Answering, but not ready: a rolling update keeps the previous replica meanwhile.
    let (code, why) = readyz(&spillway).await;
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("warming up"), "{why}");
    eprintln!(
        "fresh start: 3 → 15 in {first_step:?}, 15 → 30 in {second_step:?} (bound {bound:?}), during warm-up ({})",
        warming["reason"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_fallback_configured_never_lowers_a_workload() {
    // The Kubernetes side reads spec.replicas from the fake API server, which shows the
    // model Deployment.
    let traffic = Traffic::start(480).await;
    let fake = fake_cluster(5).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let down_window = Duration::from_secs(6);
    let policy = policy("{ min: 1, max: 20 }", "6s", "");
    let config = config(dir.path(), &policy, &traffic.gateway, &kubernetes(&fake));
    let spillway = Spillway::serve(BIN, &config);
    let so = ScaledObjectSpec {
        fallback: Some(Fallback {
            failure_threshold: 2,
            replicas: 2,
            behavior: FallbackBehavior::CurrentReplicasIfHigher,
        }),
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 5).await;
    peer.mirror_to(fake.clone(), "acme-prod", "web");
    run_until(&mut peer, "5 replicas", Duration::from_secs(20), |s| {
        s.spec == 5
    })
    .await;
    drop(spillway);
    // The data now asks for 2, which a restart must not apply before a full scale-down
    // window of its own data.
    traffic.set(150);
    nothing_lowered_while_away(&mut peer, 5, Duration::from_secs(4)).await;
    let restarted = Spillway::serve(BIN, &config);
    peer.repoint(restarted.grpc).await;
    assert!(peer.keda.fallback_passes > 0, "the fallback never answered");
    let back = Instant::now();
    peer.reset_low_water();
    peer.run_for(down_window - Duration::from_secs(2)).await;
    assert_eq!(
        peer.low_water(),
        5,
        "the restarted process lowered the workload {:?} after it came back",
        back.elapsed()
    );
    // Once its own data spans a scale-down window it follows the data down.
    run_until(&mut peer, "2 replicas", Duration::from_secs(15), |s| {
        s.spec == 2
    })
    .await;
    // Failures count as KEDAScalerFailed only until the fallback takes over.
    assert!(peer.scaler_failures() <= 2, "{}", peer.scaler_failures());
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_kubernetes_side_a_restart_serves_the_data_and_says_what_it_risks() {
    // Without cluster access the restarted process does not know what runs. Until its
    // first data it serves the effective minimum (the documented risk: an HPA sync in
    // that window lowers the workload, and KEDA's fallback cannot help since Spillway
    // answers); from its first data on it serves the highest count the data asked for
    // since the restart, never lower, and a scale-up at once.
    let traffic = Traffic::start(480).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = policy("{ min: 1, max: 20 }", "300s", "");
    let config = config(dir.path(), &policy, &traffic.gateway, "");
    let spillway = Spillway::serve(BIN, &config);
    let so = ScaledObjectSpec {
        fallback: Some(Fallback {
            failure_threshold: 2,
            replicas: 2,
            behavior: FallbackBehavior::CurrentReplicasIfHigher,
        }),
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 5).await;
    run_until(&mut peer, "5 replicas", Duration::from_secs(20), |s| {
        s.spec == 5
    })
    .await;
    drop(spillway);
    nothing_lowered_while_away(&mut peer, 5, Duration::from_secs(4)).await;
    let restarted = Spillway::serve(BIN, &config);
    peer.repoint(restarted.grpc).await;
    let back_ms = peer.elapsed_ms();
    peer.run_for(Duration::from_secs(4)).await;
    let answers: Vec<(i64, f64)> = peer
        .syncs_since(back_ms)
        .filter_map(|s| match &s.answer {
            Some(Ok((v, _))) => Some((s.at_ms - back_ms, *v)),
            _ => None,
        })
        .collect();
    assert!(!answers.is_empty());
    let first_data = answers
        .iter()
        .position(|(_, v)| *v >= 5.0)
        .expect("the restarted process serves its data");
    for (at, v) in &answers[..first_data] {
        assert_eq!(
            *v, 1.0,
            "before its first data: the effective minimum ({at} ms)"
        );
    }
    for (at, v) in &answers[first_data..] {
        assert!(
            *v >= 5.0,
            "lowered to {v} {at} ms after the restart, with data"
        );
    }
    // A step up during the warm-up is served at once.
    traffic.set(880);
    run_until(&mut peer, "9 replicas", Duration::from_secs(6), |s| {
        s.spec >= 9
    })
    .await;
    eprintln!(
        "without the Kubernetes side: {} answer(s) before the first data, the first data answer {} ms after the restart",
        first_data, answers[first_data].0
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_steps_down_to_one_and_keda_takes_it_to_zero_then_back() {
    // At zero, the first requests wake it (KEDA 0 → 1, the HPA 1 → 8). Then 50 % per
    // 2 s down: 8, 4, 2, 1; KEDA's cooldown (8 s from the last active poll) takes 1 to
    // 0. The requests wake it again.
    let traffic = Traffic::start(750).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = acme_policy(
        "replicas: { min: 0, max: 20 }
signals:
  window: 2s
  qps: { targetPerReplica: 100, activation: 1 }
hysteresis: { upWindow: 0s, downWindow: 2s }
limits: { up: { percent: 1000, per: 1s }, down: { percent: 50, per: 2s } }
panic: { enabled: false }
activation: { window: 2s }",
        &["web"],
    );
    let spillway = Spillway::serve(BIN, &config(dir.path(), &policy, &traffic.gateway, ""));
    let so = ScaledObjectSpec {
        cooldown_period_secs: 8,
        ..ScaledObjectSpec::default()
    };
    let mut peer = model_peer(&spillway, so, 0).await;
    let path = to_zero_and_back(
        &mut peer,
        8,
        || traffic.set(0),
        || traffic.set(750),
        8,
        Duration::from_secs(30),
    )
    .await;
    let answers: Vec<f64> = peer
        .syncs_since(0)
        .filter_map(|s| s.answer.clone()?.ok().map(|(v, _)| v))
        .collect();
    assert!(
        answers.windows(2).all(|w| w[1] != 0.0 || w[0] <= 1.0),
        "GetMetrics jumped to 0: {answers:?}"
    );
    assert!(
        path.len() > 3,
        "stepped down, not in one go: {path:?}; answers {answers:?}"
    );
    eprintln!("to zero: {path:?}, then back to 8");
}
