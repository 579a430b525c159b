//! A `spillway demo` fixture for end-to-end tests: a temp dir with a traffic profile and
//! a fast-scaling policy, the running process, and a KEDA-like client connected to it.

use std::time::Duration;

use spillway_proto::externalscaler::ScaledObjectRef;

use crate::keda::{self, Client, scaled_object};
use crate::process::Spillway;
use crate::wait;

/// Every app quiet for an hour: tests make traffic happen through the demo gateway's
/// control API, at moments they choose.
pub const QUIET_PROFILE: &str = "apps:
  - { tenant: acme, app: checkout, cycle: [{ for: 1h, qps: 0 }] }
  - { tenant: acme, app: search, cycle: [{ for: 1h, qps: 0 }] }
";

/// The spike the demo is about: quiet, 6 s at 1400 qps, quiet again.
pub const SPIKE_PROFILE: &str = "apps:
  - tenant: acme
    app: checkout
    cycle:
      - { for: 4s, qps: 0 }
      - { for: 6s, qps: 1400 }
      - { for: 1h, qps: 0 }
  - { tenant: acme, app: search, cycle: [{ for: 1h, qps: 0 }] }
";

/// A policy that scales fast both ways so a test sees a whole cycle in seconds
/// (production policies keep a long scale-down window).
pub const FAST_POLICY: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: acme }
spec:
  namespaces: [acme-prod]
  defaults:
    replicas: { min: 0, max: 40 }
    signals:
      window: 2s
      qps: { targetPerReplica: 150, activation: 1 }
    hysteresis: { upWindow: 0s, downWindow: 2s }
    panic: { window: 1s, threshold: 2.0, stableWindow: 2s }
    activation: { window: 2s }
    # KEDA's HPA configured as a pass-through (tolerance 0), as deploy/ documents.
    hpaTolerance: 0
    limits:
      up: { pods: 100, percent: 1000, per: 1s }
      down: { percent: 100, per: 1s }
  apps:
    # A canary's ScaledObject may scale by checkout's entry (`policy: checkout`).
    checkout: { borrowable: true }
    search: {}
";

pub struct Fixture {
    pub spillway: Spillway,
    pub client: Client,
    _dir: tempfile::TempDir,
}

/// Starts `spillway demo` (the binary at `bin`) with `profile` and [`FAST_POLICY`].
pub async fn start(bin: &str, profile: &str, scrape_interval: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let profile_path = dir.path().join("profile.yaml");
    std::fs::write(&profile_path, profile).expect("write profile");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policy dir");
    std::fs::write(policies.join("acme.yaml"), FAST_POLICY).expect("write policy");
    let spillway = Spillway::demo(
        bin,
        &[
            "--profile",
            &profile_path.to_string_lossy(),
            "--policies",
            &policies.to_string_lossy(),
            "--scrape-interval",
            scrape_interval,
        ],
    );
    let client = keda::connect(spillway.grpc).await;
    Fixture {
        spillway,
        client,
        _dir: dir,
    }
}

pub fn workload(fixture: &Fixture, app: &str) -> ScaledObjectRef {
    scaled_object(
        "acme-prod",
        app,
        fixture.spillway.grpc,
        &[("tenant", "acme"), ("app", app)],
    )
}

/// Pins an app's traffic at the demo gateway from this instant.
pub async fn pin(fixture: &Fixture, app: &str, qps: f64) {
    let gateway = fixture.spillway.gateway.expect("demo gateway address");
    let response = crate::http()
        .put(format!("http://{gateway}/traffic/acme/{app}"))
        .body(qps.to_string())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("demo gateway control API");
    assert!(response.status().is_success(), "{:?}", response.status());
}

/// Waits until a poll for `reference` succeeds. Spillway answers from the start (0 for
/// an app with no data and `min: 0`), so this is the first poll once the process is up.
pub async fn wait_for_decision(client: &Client, reference: &ScaledObjectRef) -> keda::Poll {
    wait::until(
        "a first decision",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut client = client.clone();
            let reference = reference.clone();
            async move { keda::poll(&mut client, &reference).await.ok() }
        },
    )
    .await
}
