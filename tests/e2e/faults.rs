//! Bad input everywhere, against the real binary: malformed gRPC (a wrong message type
//! on a method path, garbage frames), oversized metadata, a broken policy edit. Each
//! gets a clear error, nothing already served is lost, and the process keeps serving.
//! (Hanging and garbage scrape targets are covered by `scrape_faults`.)

use std::path::Path;
use std::time::Duration;

use spillway_proto::externalscaler::ScaledObjectRef;
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::wait;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn policy(target: u32) -> String {
    acme_policy(
        &format!(
            "replicas: {{ min: 1, max: 50 }}
signals:
  window: 2s
  qps: {{ targetPerReplica: {target} }}
hysteresis: {{ upWindow: 0s, downWindow: 1s }}
limits: {{ up: {{ percent: 1000, per: 1s }}, down: {{ percent: 100, per: 1s }} }}"
        ),
        &["web"],
    )
}

fn serve(dir: &Path, gateway: &FakeGateway) -> Spillway {
    let policy = policy(100);
    let config = write_serve_config(
        dir,
        &[("acme.yaml", &policy)],
        &format!(
            "policyReload: 200ms
scrape: {{ interval: 200ms, timeout: 150ms, targets: [{}] }}
",
            gateway.url()
        ),
    );
    Spillway::serve(BIN, &config)
}

fn web(spillway: &Spillway) -> ScaledObjectRef {
    scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    )
}

async fn until_value(client: &keda::Client, reference: &ScaledObjectRef, value: f64) {
    wait::until(
        &format!("{value} replicas"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut client = client.clone();
            let reference = reference.clone();
            async move {
                let poll = keda::poll(&mut client, &reference).await.ok()?;
                (poll.value == value).then_some(())
            }
        },
    )
    .await;
}

/// A message that is not a `ScaledObjectRef`: field 1 (`name`, a string) sent as a
/// double, which protobuf cannot decode as the method's request.
#[derive(Clone, PartialEq, prost::Message)]
struct NotARequest {
    #[prost(double, tag = "1")]
    name_as_number: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_and_oversized_metadata_get_clear_errors_and_lose_nothing() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", 450, Duration::from_millis(50));
    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = serve(dir.path(), &gateway);
    let client = keda::connect(spillway.grpc).await;
    let reference = web(&spillway);
    until_value(&client, &reference, 5.0).await;

    // A wrong message type on each method path.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", spillway.grpc))
        .expect("URI")
        .connect()
        .await
        .expect("connect");
    for method in ["GetMetricSpec", "GetMetrics", "IsActive"] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let path =
            PathAndQuery::from_maybe_shared(format!("/externalscaler.ExternalScaler/{method}"))
                .expect("path");
        let result = grpc
            .unary::<NotARequest, NotARequest, _>(
                keda::with_deadline(NotARequest {
                    name_as_number: 1.5,
                }),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await;
        let status = result.expect_err("a wrong message type must be refused");
        assert!(
            matches!(status.code(), Code::Internal | Code::InvalidArgument),
            "{method}: {status:?}"
        );
        assert!(
            !status.message().is_empty(),
            "{method}: the error says nothing"
        );
    }

    // Garbage on the wire: a gRPC frame that claims 1 GiB, and one that is not gRPC.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("h2 client");
    for body in [
        vec![0u8, 0x40, 0, 0, 0, 1, 2, 3],
        b"GET / HTTP/1.1 this is not a frame".to_vec(),
        vec![1u8, 0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
    ] {
        let response = http
            .post(format!(
                "http://{}/externalscaler.ExternalScaler/GetMetrics",
                spillway.grpc
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .send()
            .await;
        if let Ok(response) = response {
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Either the status comes in the headers (trailers-only) or in trailers,
            // which reqwest does not expose; never a success with a value.
            assert_ne!(status.as_deref(), Some("0"), "garbage was answered OK");
        }
    }

    // Oversized trigger metadata: refused with a status that names the size problem.
    let mut huge = reference.clone();
    huge.scaler_metadata
        .insert("padding".into(), "x".repeat(1024 * 1024));
    let status = client
        .clone()
        .get_metric_spec(keda::with_deadline(huge))
        .await
        .expect_err("1 MiB of metadata must be refused");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // Many keys, each small, under the byte limit: answered or refused, never a crash.
    let mut many = reference.clone();
    for i in 0..5_000 {
        many.scaler_metadata.insert(format!("k{i}"), "v".into());
    }
    let _ = client
        .clone()
        .get_metric_spec(keda::with_deadline(many))
        .await;
    // An oversized gRPC header (HTTP/2 metadata): the request or connection is refused.
    let mut request = keda::with_deadline(reference.clone());
    request.metadata_mut().insert(
        "x-padding",
        "y".repeat(64 * 1024).parse().expect("ascii metadata"),
    );
    let fresh = keda::connect(spillway.grpc).await;
    let _ = fresh.clone().get_metric_spec(request).await;

    // Nothing was lost: the same answer as before, on the old and on a new connection.
    let poll = keda::poll(&mut client.clone(), &reference)
        .await
        .expect("still serving on the old connection");
    assert!((4.0..=6.0).contains(&poll.value), "{poll:?}");
    let poll = keda::poll(&mut keda::connect(spillway.grpc).await, &reference)
        .await
        .expect("still serving new connections");
    assert!((4.0..=6.0).contains(&poll.value), "{poll:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_edit_keeps_the_last_good_policy_and_says_why() {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", 450, Duration::from_millis(50));
    let dir = tempfile::tempdir().expect("temp dir");
    let spillway = serve(dir.path(), &gateway);
    let client = keda::connect(spillway.grpc).await;
    let reference = web(&spillway);
    until_value(&client, &reference, 5.0).await;

    let file = dir.path().join("policies/acme.yaml");
    let http = spillway_tests::http();
    let status_url = format!("http://{}/api/v1/status", spillway.http);
    for broken in [
        "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme\n".to_owned(),
        policy(100).replace("targetPerReplica: 100", "targetPerReplica: -3"),
        "\u{0}\u{1}garbage".repeat(1000),
    ] {
        std::fs::write(&file, &broken).expect("write broken policy");
        let reported = wait::until(
            "the policy error in /api/v1/status",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                let http = http.clone();
                let url = status_url.clone();
                async move {
                    let text = http.get(url).send().await.ok()?.text().await.ok()?;
                    text.contains("acme.yaml").then_some(text)
                }
            },
        )
        .await;
        assert!(reported.contains("policy_errors"), "{reported}");
        // The last good policy still serves.
        let poll = keda::poll(&mut client.clone(), &reference)
            .await
            .expect("the last good policy keeps serving");
        assert!((4.0..=6.0).contains(&poll.value), "{poll:?}");
    }

    // A good edit is picked up: 450 qps at 60 per replica.
    std::fs::write(&file, policy(60)).expect("write good policy");
    until_value(&client, &reference, 8.0).await;
}
