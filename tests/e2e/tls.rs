//! TLS and mTLS on the gRPC port, as KEDA uses them (`enableTLS` plus `caCert`,
//! `tlsClientCert`, `tlsClientKey` from a TriggerAuthentication), against the real
//! binary: who is let in, who is refused, and certificate rotation without a restart.

use std::path::Path;
use std::time::Duration;

use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::Spillway;
use spillway_tests::tls::{self, Ca, ServerFiles};
use spillway_tests::wait;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

fn policy() -> String {
    acme_policy(
        "replicas: { min: 2, max: 50 }
signals:
  qps: { targetPerReplica: 100 }
# `serve` never lowers its answer during its first scale-down window of data
# (warm-up); keep that short here.
hysteresis: { downWindow: 1s }",
        &["web"],
    )
}

/// Writes policies and a serve config with a `tls:` section, and starts `spillway serve`
/// scraping `gateway`.
fn serve_with_tls(
    dir: &Path,
    files: &ServerFiles,
    mutual: bool,
    gateway: &FakeGateway,
) -> Spillway {
    std::fs::create_dir_all(dir.join("policies")).expect("policy dir");
    std::fs::write(dir.join("policies/acme.yaml"), policy()).expect("policy");
    let config = format!(
        "listen: {{ grpc: 127.0.0.1:0, http: 127.0.0.1:0 }}
policies: policies
scrape: {{ interval: 200ms, timeout: 150ms, targets: [{}] }}
{}{}",
        gateway.url(),
        files.config_section(mutual, "200ms"),
        spillway_tests::process::INSECURE_ACCESS,
    );
    let path = dir.join("spillway.yaml");
    std::fs::write(&path, config).expect("config");
    Spillway::serve(BIN, &path)
}

/// 450 qps at 100 per replica.
const EXPECTED_REPLICAS: f64 = 5.0;

async fn gateway() -> FakeGateway {
    let gateway = FakeGateway::start(Mode::Healthy).await;
    gateway.drive("acme", "web", 450, Duration::from_millis(50));
    gateway
}

/// A decision made from the gateway's 450 qps: 5, give or take one when a loaded
/// machine bunches the traffic (the TLS path is what these tests are about).
fn answers_from_data(value: f64) -> bool {
    (EXPECTED_REPLICAS - 1.0..=EXPECTED_REPLICAS + 1.0).contains(&value)
}

/// Polls over TLS until the decision from the gateway's traffic is there (bounded).
async fn served(spillway: &Spillway, server_ca: &Ca, identity: Option<&tls::Leaf>) -> keda::Poll {
    wait::until(
        "a decision served over TLS",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            poll_over_tls(spillway, server_ca, identity)
                .await
                .ok()
                .filter(|poll| answers_from_data(poll.value))
        },
    )
    .await
}

/// One KEDA poll over a TLS client; `Err` carries whatever refused it.
async fn poll_over_tls(
    spillway: &Spillway,
    server_ca: &Ca,
    identity: Option<&tls::Leaf>,
) -> Result<keda::Poll, String> {
    let mut client = tls::connect(spillway.grpc, &server_ca.cert_pem, identity)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let reference = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web"), ("enableTLS", "true")],
    );
    keda::poll(&mut client, &reference)
        .await
        .map_err(|status| format!("poll: {status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_admits_a_client_of_the_trusted_ca_and_refuses_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server_ca = Ca::new("spillway server CA");
    let client_ca = Ca::new("keda client CA");
    let files = ServerFiles::in_dir(dir.path());
    files.write(&server_ca.server(), Some(&client_ca));
    let gateway = gateway().await;
    let spillway = serve_with_tls(dir.path(), &files, true, &gateway);

    let keda_operator = client_ca.client("keda-operator");
    let poll = served(&spillway, &server_ca, Some(&keda_operator)).await;
    assert_eq!(poll.metric_name, "spillway-replicas");

    let refused = poll_over_tls(&spillway, &server_ca, None).await;
    assert!(
        refused.is_err(),
        "a client without a certificate must be refused under mTLS: {refused:?}"
    );
    let refused = tls::served_certificate(spillway.grpc, &server_ca.cert_pem, None).await;
    assert!(
        refused.is_err(),
        "raw TLS without a client certificate got in"
    );

    let stranger = Ca::new("someone else's CA").client("keda-operator");
    let refused = poll_over_tls(&spillway, &server_ca, Some(&stranger)).await;
    assert!(
        refused.is_err(),
        "a client certificate from another CA must be refused: {refused:?}"
    );
    let refused =
        tls::served_certificate(spillway.grpc, &server_ca.cert_pem, Some(&stranger)).await;
    assert!(
        refused.is_err(),
        "raw TLS with a stranger's certificate got in"
    );

    // Plaintext gRPC to a TLS port is no way in either.
    let reference = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    let plaintext = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", spillway.grpc))
            .expect("URI")
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(3))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut client =
            spillway_proto::externalscaler::external_scaler_client::ExternalScalerClient::new(
                channel,
            );
        keda::poll(&mut client, &reference)
            .await
            .map_err(|e| e.to_string())
    };
    assert!(plaintext.await.is_err(), "plaintext got through a TLS port");

    // Refusals leave the server serving the good client.
    let poll = poll_over_tls(&spillway, &server_ca, Some(&keda_operator))
        .await
        .expect("still serving after refusing others");
    assert!(answers_from_data(poll.value), "{poll:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_ca_serves_clients_that_present_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server_ca = Ca::new("spillway server CA");
    let files = ServerFiles::in_dir(dir.path());
    files.write(&server_ca.server(), None);
    let gateway = gateway().await;
    let spillway = serve_with_tls(dir.path(), &files, false, &gateway);

    // TLS without mTLS needs no client certificate.
    served(&spillway, &server_ca, None).await;
    // A client that does not trust the server's CA refuses the server.
    let other = Ca::new("not the server's CA");
    assert!(poll_over_tls(&spillway, &other, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_are_served_to_new_connections_and_a_bad_set_keeps_the_old() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client_ca = Ca::new("keda client CA");
    let operator = client_ca.client("keda-operator");
    let first_ca = Ca::new("first server CA");
    let first = first_ca.server();
    let files = ServerFiles::in_dir(dir.path());
    files.write(&first, Some(&client_ca));
    let gateway = gateway().await;
    let spillway = serve_with_tls(dir.path(), &files, true, &gateway);
    served(&spillway, &first_ca, Some(&operator)).await;

    let presented = tls::served_certificate(spillway.grpc, &first_ca.cert_pem, Some(&operator))
        .await
        .expect("first certificate served");
    assert_eq!(presented, first.cert_der);
    // A connection opened before the rotation, to check it survives it.
    let mut early = tls::connect(spillway.grpc, &first_ca.cert_pem, Some(&operator))
        .await
        .expect("early connection");

    // A broken new set (a key that does not match the certificate) is refused and the
    // old certificate keeps serving.
    let second_ca = Ca::new("second server CA");
    let second = second_ca.server();
    let mismatched = tls::Leaf {
        key_pem: first_ca.server().key_pem,
        ..second.clone()
    };
    files.write(&mismatched, None);
    // Several reload intervals (200 ms each) pass.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let presented = tls::served_certificate(spillway.grpc, &first_ca.cert_pem, Some(&operator))
        .await
        .expect("old certificate still served after a bad rotation");
    assert_eq!(presented, first.cert_der);

    // A good new set is picked up without a restart.
    files.write(&second, None);
    let now_served = wait::until(
        "the rotated certificate on new connections",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            tls::served_certificate(spillway.grpc, &second_ca.cert_pem, Some(&operator))
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(now_served, second.cert_der);
    let poll = poll_over_tls(&spillway, &second_ca, Some(&operator))
        .await
        .expect("KEDA trusting the new CA is served");
    assert!(answers_from_data(poll.value), "{poll:?}");

    // The connection made before the rotation keeps working.
    let reference = scaled_object(
        "acme-prod",
        "web",
        spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    keda::poll(&mut early, &reference)
        .await
        .expect("a connection from before the rotation keeps its session");

    // The client CA rotates too: the old operator certificate is refused, a new one is in.
    let new_client_ca = Ca::new("new keda client CA");
    let new_operator = new_client_ca.client("keda-operator");
    files.write(&second, Some(&new_client_ca));
    wait::until(
        "the rotated client CA",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            tls::served_certificate(spillway.grpc, &second_ca.cert_pem, Some(&new_operator))
                .await
                .ok()
        },
    )
    .await;
    assert!(
        tls::served_certificate(spillway.grpc, &second_ca.cert_pem, Some(&operator))
            .await
            .is_err(),
        "a client certificate of the retired CA still got in"
    );
}

#[test]
fn a_broken_certificate_at_start_up_stops_the_process_with_the_file_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = ServerFiles::in_dir(dir.path());
    let ca = Ca::new("server CA");
    let leaf = ca.server();
    // A key that belongs to another certificate.
    tls::replace(&files.cert, leaf.cert_pem.as_bytes());
    tls::replace(&files.key, ca.server().key_pem.as_bytes());
    std::fs::create_dir_all(dir.path().join("policies")).expect("policy dir");
    std::fs::write(dir.path().join("policies/acme.yaml"), policy()).expect("policy");
    let config = dir.path().join("spillway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {{ grpc: 127.0.0.1:0, http: 127.0.0.1:0 }}\npolicies: policies\n{}{}",
            files.config_section(false, "1s"),
            spillway_tests::process::INSECURE_ACCESS,
        ),
    )
    .expect("config");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start spillway");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("spillway kept running with a broken certificate");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!status.success(), "exit status {status}");
    assert!(
        !stdout.contains("grpc="),
        "it announced its ports before failing: {stdout}"
    );
    assert!(
        stderr.contains("tls.crt") && stderr.contains("TLS"),
        "the error does not name the certificate: {stderr}"
    );
}
