//! KEDA's contract, end to end: the real `spillway demo` binary, driven over gRPC
//! exactly as KEDA drives an external scaler.

use std::time::Duration;

use spillway_proto::externalscaler::{GetMetricsRequest, ScaledObjectRef};
use spillway_tests::demo::{
    Fixture, QUIET_PROFILE, SPIKE_PROFILE, pin, start, wait_for_decision, workload,
};
use spillway_tests::keda::{self, scaled_object, with_deadline};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_the_demo_spike_up_and_back_down() {
    let mut fixture = start(BIN, SPIKE_PROFILE, "250ms").await;
    let reference = workload(&fixture, "checkout");
    let first = wait_for_decision(&fixture.client, &reference).await;
    assert_eq!(first.metric_name, "spillway-replicas");
    assert_eq!(first.target, 1.0);

    // Poll as KEDA does, with a short polling interval, recording what the HPA applies.
    let mut series = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut peaked = false;
    while tokio::time::Instant::now() < deadline {
        let poll = keda::poll(&mut fixture.client, &reference)
            .await
            .expect("every poll succeeds once a decision exists");
        series.push((poll.value, poll.active));
        peaked |= poll.value >= 10.0;
        if peaked && poll.value == 0.0 && !poll.active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peak = series.iter().map(|(v, _)| *v).fold(0.0, f64::max);
    // 1400 qps at 150 per replica: 10 replicas at the top of the spike.
    assert_eq!(peak, 10.0, "peak replicas; series: {series:?}");
    let (last_value, last_active) = *series.last().expect("polled");
    assert_eq!(
        last_value, 0.0,
        "back down after the spike; series: {series:?}"
    );
    assert!(!last_active, "inactive after the spike; series: {series:?}");
    assert!(series.iter().any(|(_, active)| *active));
    let printed = fixture.spillway.drain_lines();
    assert!(
        printed
            .iter()
            .any(|l| l.contains("acme/checkout") && l.contains("→ 10")),
        "the demo prints a line per decision: {printed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_one_connection_and_all_see_a_transition() {
    let fixture = start(BIN, QUIET_PROFILE, "250ms").await;
    let reference = workload(&fixture, "search");
    wait_for_decision(&fixture.client, &reference).await;
    let mut streams = Vec::new();
    for _ in 0..300 {
        let mut client = fixture.client.clone();
        let stream = client
            .stream_is_active(reference.clone())
            .await
            .expect("stream opens on the shared connection")
            .into_inner();
        streams.push(stream);
    }
    for stream in &mut streams {
        let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("initial state")
            .expect("message")
            .expect("open");
        assert!(!first.result);
    }
    pin(&fixture, "search", 500.0).await;
    for stream in &mut streams {
        let pushed = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("every stream gets the push")
            .expect("message")
            .expect("open");
        assert!(pushed.result);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_status_codes() {
    let mut fixture = start(BIN, QUIET_PROFILE, "250ms").await;
    let addr = fixture.spillway.grpc;
    let so =
        |namespace: &str, metadata: &[(&str, &str)]| scaled_object(namespace, "so", addr, metadata);
    let cases: Vec<(ScaledObjectRef, Code, &str)> = vec![
        (
            so("acme-prod", &[("app", "checkout")]),
            Code::InvalidArgument,
            "'tenant' is required",
        ),
        (
            so("acme-prod", &[("tenant", "acme")]),
            Code::InvalidArgument,
            "'app' is required",
        ),
        (
            so("acme-prod", &[("tenant", "nobody"), ("app", "checkout")]),
            Code::NotFound,
            "nobody",
        ),
        (
            so("acme-prod", &[("tenant", "acme"), ("app", "nope")]),
            Code::NotFound,
            "nope",
        ),
        (
            so("other-ns", &[("tenant", "acme"), ("app", "checkout")]),
            Code::PermissionDenied,
            "other-ns",
        ),
    ];
    for (reference, code, needle) in cases {
        let spec = fixture
            .client
            .get_metric_spec(with_deadline(reference.clone()))
            .await
            .unwrap_err();
        let active = fixture
            .client
            .is_active(with_deadline(reference.clone()))
            .await
            .unwrap_err();
        let metrics = fixture
            .client
            .get_metrics(with_deadline(GetMetricsRequest {
                scaled_object_ref: Some(reference.clone()),
                metric_name: "spillway-replicas".into(),
            }))
            .await
            .unwrap_err();
        for status in [spec, active, metrics] {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().contains(needle),
                "the message names the problem: {}",
                status.message()
            );
        }
    }

    let reference = workload(&fixture, "checkout");
    wait_for_decision(&fixture.client, &reference).await;
    let wrong_metric = fixture
        .client
        .get_metrics(with_deadline(GetMetricsRequest {
            scaled_object_ref: Some(reference.clone()),
            metric_name: "s0-something-else".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(wrong_metric.code(), Code::InvalidArgument);
    assert!(wrong_metric.message().contains("spillway-replicas"));

    // KEDA may change the case of the name it caches; Spillway compares without it.
    let values = fixture
        .client
        .get_metrics(with_deadline(GetMetricsRequest {
            scaled_object_ref: Some(reference.clone()),
            metric_name: "Spillway-Replicas".into(),
        }))
        .await
        .expect("case-insensitive metric name")
        .into_inner();
    assert_eq!(
        values.metric_values.len(),
        1,
        "exactly one value: the HPA sums what it gets"
    );

    let missing_ref = fixture
        .client
        .get_metrics(with_deadline(GetMetricsRequest {
            scaled_object_ref: None,
            metric_name: "spillway-replicas".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing_ref.code(), Code::InvalidArgument);

    let unimplemented = fixture
        .client
        .stream_metric_spec(reference)
        .await
        .unwrap_err();
    assert_eq!(unimplemented.code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metrics_cost_on_loopback() {
    let mut fixture = start(BIN, QUIET_PROFILE, "250ms").await;
    let reference = workload(&fixture, "checkout");
    wait_for_decision(&fixture.client, &reference).await;
    let request = GetMetricsRequest {
        scaled_object_ref: Some(reference),
        metric_name: "spillway-replicas".into(),
    };
    for _ in 0..200 {
        fixture
            .client
            .get_metrics(request.clone())
            .await
            .expect("warm-up");
    }
    let mut micros = Vec::with_capacity(3_000);
    for _ in 0..3_000 {
        let started = tokio::time::Instant::now();
        fixture
            .client
            .get_metrics(with_deadline(request.clone()))
            .await
            .expect("GetMetrics");
        micros.push(started.elapsed().as_micros() as u64);
    }
    micros.sort_unstable();
    let median = micros[micros.len() / 2];
    let p99 = micros[micros.len() * 99 / 100];
    println!("GetMetrics on loopback over 3000 sequential calls: median {median} µs, p99 {p99} µs");
    // Loose enough for a loaded CI machine, tight enough to catch blocking work in the
    // handler (a scrape or a lock held across I/O would cost milliseconds).
    assert!(p99 < 20_000, "p99 {p99} µs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let fixture = start(BIN, QUIET_PROFILE, "250ms").await;
    let Fixture {
        spillway, client, ..
    } = fixture;
    drop(client);
    let status = spillway
        .terminate(Duration::from_secs(10))
        .expect("exits within 10 s of SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_can_follow_another_apps_policy_entry() {
    // A canary has no entry of its own in the policy; its ScaledObject names the entry
    // to scale by (`policy: checkout`, which the policy marks borrowable) and its own
    // traffic (`app: checkout-canary`).
    let profile = "apps:
  - { tenant: acme, app: checkout, cycle: [{ for: 1h, qps: 0 }] }
  - { tenant: acme, app: checkout-canary, cycle: [{ for: 1h, qps: 700 }] }
";
    let fixture = start(BIN, profile, "250ms").await;
    let canary = scaled_object(
        "acme-prod",
        "checkout-canary",
        fixture.spillway.grpc,
        &[
            ("tenant", "acme"),
            ("app", "checkout-canary"),
            ("policy", "checkout"),
        ],
    );
    // 700 qps at checkout's 150 per replica: 5 replicas.
    let poll = spillway_tests::wait::until(
        "the canary's decision",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut client = fixture.client.clone();
            let canary = canary.clone();
            async move {
                keda::poll(&mut client, &canary)
                    .await
                    .ok()
                    .filter(|p| p.value == 5.0)
            }
        },
    )
    .await;
    assert!(poll.active);
    // Without the alias, the canary is not an app of the policy.
    let mut client = fixture.client.clone();
    let unknown = client
        .get_metric_spec(with_deadline(scaled_object(
            "acme-prod",
            "checkout-canary",
            fixture.spillway.grpc,
            &[("tenant", "acme"), ("app", "checkout-canary")],
        )))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}
