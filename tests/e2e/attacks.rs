//! Attacks on who may do what, against the real binary on loopback, each bounded in
//! time:
//!
//! - a write without a credential, or with a wrong one, is refused and stores nothing;
//! - tenant A's writer cannot change tenant B's replicas, nor write a workload no
//!   policy names, nor replace another writer's contribution by reusing its source name;
//! - a reader sees only its tenants, in the API and through `spillway status`;
//! - a KEDA call without KEDA's identity is refused, whatever else the caller holds;
//! - a ScaledObject cannot re-point an app that has its own policy entry, nor borrow an
//!   entry that is not borrowable, nor hold more aliases than the cap; an alias no
//!   ScaledObject asks for any more disappears;
//! - a rotated token replaces the old one, a deleted one is revoked;
//! - `serve` refuses to start with no access rules, and names every open input loudly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use spillway_collector::remote_write::encode_write_request;
use spillway_proto::externalscaler::{GetMetricsRequest, ScaledObjectRef};
use spillway_proto::ingest::ingest_client::IngestClient;
use spillway_proto::ingest::{PushSummary, SampleBatch, Signal, WorkloadSample};
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use spillway_tests::keda::{Client, scaled_object};
use spillway_tests::process::{Spillway, write_serve_config};
use spillway_tests::tls::{self, Ca, Leaf, ServerFiles};
use spillway_tests::wait;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// Every identity but KEDA's, each with a token file.
const IDENTITIES: &[(&str, &str)] = &[
    ("agent-acme", "role: writer, tenants: [acme]"),
    ("agent-acme-2", "role: writer, tenants: [acme]"),
    ("agent-globex", "role: writer, tenants: [globex]"),
    ("grafana-acme", "role: reader, tenants: [acme]"),
    ("sre", "role: admin"),
];

fn policy(tenant: &str, apps: &str) -> String {
    format!(
        "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: {{ tenant: {tenant} }}
spec:
  namespaces: [{tenant}-prod]
  defaults:
    replicas: {{ min: 1, max: 50 }}
    signals:
      window: 30s
      qps: {{ targetPerReplica: 100 }}
    # `serve` without cluster access holds until a full scale-down window of data.
    hysteresis: {{ downWindow: 1s }}
  apps:
{apps}"
    )
}

fn token(identity: &str) -> String {
    format!("{identity}-0123456789abcdef-token")
}

/// A `spillway serve` with mTLS on the gRPC port (KEDA is the client certificate whose
/// CN is `keda`), remote-write and push on, and every other identity holding a token.
struct Fixture {
    spillway: Spillway,
    dir: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
    keda: Leaf,
    http: reqwest::Client,
}

impl Fixture {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = ServerFiles::in_dir(dir.path());
        let server_ca = Ca::new("server CA");
        let client_ca = Ca::new("client CA");
        files.write(&server_ca.server(), Some(&client_ca));
        std::fs::create_dir_all(dir.path().join("tokens")).expect("token dir");
        let mut identities = String::from("    keda: { role: keda }\n");
        for (name, grant) in IDENTITIES {
            tls::replace(&token_path(dir.path(), name), token(name).as_bytes());
            identities.push_str(&format!(
                "    {name}: {{ {grant}, tokenFile: tokens/{name} }}\n"
            ));
        }
        let rest = format!(
            "scrape: {{ interval: 1s, timeout: 500ms, targets: [http://127.0.0.1:9/metrics] }}
remoteWrite: {{}}
push: {{}}
{}access:
  tokenReload: 200ms
  aliases: {{ maxPerTenant: 2, expireAfter: 10s }}
  identities:
{identities}",
            files.config_section(true, "1s")
        );
        let acme = policy("acme", "    web: { borrowable: true }\n    checkout: {}\n");
        let globex = policy("globex", "    web: {}\n");
        let config = write_serve_config(
            dir.path(),
            &[("acme.yaml", &acme), ("globex.yaml", &globex)],
            &rest,
        );
        let spillway = Spillway::serve(BIN, &config);
        let keda = client_ca.client("keda");
        Self {
            spillway,
            dir,
            server_ca,
            client_ca,
            keda,
            http: spillway_tests::http(),
        }
    }

    async fn channel(&self, leaf: &Leaf) -> Channel {
        tls::channel(self.spillway.grpc, &self.server_ca.cert_pem, Some(leaf))
            .await
            .expect("TLS channel")
    }

    /// KEDA's client: the certificate named `keda`.
    async fn keda(&self) -> Client {
        Client::new(self.channel(&self.keda).await)
    }

    /// A gRPC client with a certificate of the client CA naming no identity: how any
    /// agent inside the cluster that was issued a certificate connects.
    async fn stranger_channel(&self) -> Channel {
        self.channel(&self.client_ca.client("stranger")).await
    }

    async fn get(&self, path: &str, identity: Option<&str>) -> (u16, String) {
        let mut request = self
            .http
            .get(format!("http://{}{path}", self.spillway.http));
        if let Some(identity) = identity {
            request = request.bearer_auth(token(identity));
        }
        let response = request.send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// A workload's status as the admin reads it.
    async fn workload(&self, tenant: &str, app: &str) -> Option<serde_json::Value> {
        let (status, body) = self
            .get(&format!("/api/v1/workloads/{tenant}/{app}"), Some("sre"))
            .await;
        (status == 200).then(|| serde_json::from_str(&body).expect("workload JSON"))
    }

    async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics", Some("sre")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn remote_write(&self, identity: Option<&str>, body: Vec<u8>) -> (u16, String) {
        let mut request = self
            .http
            .post(format!("http://{}/api/v1/write", self.spillway.http))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        if let Some(identity) = identity {
            request = request.bearer_auth(token(identity));
        }
        let response = request.send().await.expect("remote-write POST");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// One push stream of `batches` as `identity` (by token), over a certificate that
    /// names no identity.
    async fn push(
        &self,
        identity: Option<&str>,
        batches: Vec<SampleBatch>,
    ) -> Result<PushSummary, Status> {
        let mut client = IngestClient::new(self.stranger_channel().await);
        let mut request = Request::new(tokio_stream::iter(batches));
        if let Some(identity) = identity {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", token(identity))
                    .parse()
                    .expect("header"),
            );
        }
        tokio::time::timeout(Duration::from_secs(10), client.push(request))
            .await
            .expect("push in time")
            .map(tonic::Response::into_inner)
    }

    /// The first decision for `tenant/app` made after `after_ms`.
    async fn decision_after(&self, tenant: &str, app: &str, after_ms: i64) -> serde_json::Value {
        wait::until(
            &format!("a decision for {tenant}/{app} after the writes"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                let latest = self.workload(tenant, app).await?["latest"].clone();
                (latest["at_ms"].as_i64()? > after_ms).then_some(latest)
            },
        )
        .await
    }
}

fn token_path(dir: &Path, identity: &str) -> PathBuf {
    dir.join("tokens").join(identity)
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

fn sample(tenant: &str, app: &str, value: f64) -> WorkloadSample {
    WorkloadSample {
        tenant: tenant.into(),
        app: app.into(),
        signal: Signal::Qps as i32,
        value,
    }
}

fn batch(source: &str, samples: Vec<WorkloadSample>) -> SampleBatch {
    SampleBatch {
        source: source.into(),
        timestamp_ms: 0,
        samples,
    }
}

/// A remote-write body: `gateway_requests_total` of `tenant/app`, one series per
/// `instance`, each with its `(timestamp, value)` points.
fn write_body(tenant: &str, app: &str, series: &[(&str, &[(i64, f64)])]) -> Vec<u8> {
    let timeseries = series
        .iter()
        .map(|(instance, points)| TimeSeries {
            labels: [
                ("__name__", "gateway_requests_total"),
                ("app", app),
                ("instance", instance),
                ("tenant", tenant),
            ]
            .into_iter()
            .map(|(name, value)| Label {
                name: name.into(),
                value: value.into(),
            })
            .collect(),
            samples: points
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        })
        .collect();
    encode_write_request(&WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

fn with_token<T>(message: T, identity: &str) -> Request<T> {
    let mut request = spillway_tests::keda::with_deadline(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token(identity))
            .parse()
            .expect("header"),
    );
    request
}

fn reference(fixture: &Fixture, tenant: &str, metadata: &[(&str, &str)]) -> ScaledObjectRef {
    let mut all = vec![("tenant", tenant)];
    all.extend_from_slice(metadata);
    scaled_object(&format!("{tenant}-prod"), "so", fixture.spillway.grpc, &all)
}

async fn spec(client: &mut Client, reference: ScaledObjectRef) -> Result<(), Status> {
    client
        .get_metric_spec(spillway_tests::keda::with_deadline(reference))
        .await
        .map(|_| ())
}

/// The call that holds an alias (KEDA makes it every pollingInterval): `IsActive`.
/// `GetMetricSpec` answers from the policy alone and holds nothing.
async fn ask(client: &mut Client, reference: ScaledObjectRef) -> Result<(), Status> {
    client
        .is_active(spillway_tests::keda::with_deadline(reference))
        .await
        .map(|_| ())
}

async fn replicas(client: &mut Client, reference: &ScaledObjectRef) -> Result<f64, Status> {
    let response = client
        .get_metrics(spillway_tests::keda::with_deadline(GetMetricsRequest {
            scaled_object_ref: Some(reference.clone()),
            metric_name: "spillway-replicas".into(),
        }))
        .await?
        .into_inner();
    #[allow(deprecated)]
    Ok(response.metric_values[0].metric_value_float)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_good_credential_is_refused_and_stores_nothing() {
    let fixture = Fixture::start();
    let now = spillway_collector::clock::unix_ms();
    let counters = write_body(
        "acme",
        "web",
        &[("a", &[(now - 2_000, 0.0), (now - 1_000, 1e9)])],
    );
    // No token; a made-up one; another scheme.
    let (status, body) = fixture.remote_write(None, counters.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("credential is required"), "{body}");
    let (status, _) = fixture
        .http
        .post(format!("http://{}/api/v1/write", fixture.spillway.http))
        .bearer_auth("guessed-but-long-enough-token")
        .body(counters.clone())
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("POST");
    assert_eq!(status, 401);
    // A reader's token is a credential, but not a writer's.
    let (status, body) = fixture
        .remote_write(Some("grafana-acme"), counters.clone())
        .await;
    assert_eq!(status, 403, "{body}");
    // Push over a client certificate that names no identity, and with a reader token.
    let refused = fixture
        .push(None, vec![batch("edge", vec![sample("acme", "web", 1e9)])])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = fixture
        .push(
            Some("grafana-acme"),
            vec![batch("edge", vec![sample("acme", "web", 1e9)])],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let metrics = fixture.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "spillway_access_denied_total{input=\"write\",reason=\"unauthenticated\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "spillway_access_denied_total{input=\"write\",reason=\"bad_credential\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "spillway_access_denied_total{input=\"write\",reason=\"forbidden\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "spillway_collector_samples_total{source=\"push\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &metrics,
            "spillway_collector_samples_total{source=\"remote_write\"}"
        ),
        0.0
    );
    // A decision exists from the start (the policy's minimum), with no traffic in it.
    let web = fixture.workload("acme", "web").await.expect("acme/web");
    assert!(
        web["latest"]["qps"].is_null() && web["latest"]["missing"] == serde_json::json!(["qps"]),
        "nothing decided from refused writes: {web}"
    );

    // The same write with the writer's token lands: the refusals above were the rules,
    // not a broken input.
    let started = spillway_collector::clock::unix_ms();
    let summary = fixture
        .push(
            Some("agent-acme"),
            vec![batch("edge", vec![sample("acme", "web", 300.0)])],
        )
        .await
        .expect("the writer's push");
    assert_eq!((summary.accepted, summary.rejected), (1, 0), "{summary:?}");
    let latest = fixture.decision_after("acme", "web", started).await;
    assert_eq!(latest["qps"], 300.0, "{latest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_writer_cannot_move_another_tenants_replicas() {
    let fixture = Fixture::start();
    let mut keda = fixture.keda().await;
    let globex_web = reference(&fixture, "globex", &[("app", "web")]);
    let summary = fixture
        .push(
            Some("agent-globex"),
            vec![batch("edge", vec![sample("globex", "web", 200.0)])],
        )
        .await
        .expect("globex's own push");
    assert_eq!(summary.accepted, 1, "{summary:?}");
    let served = wait::until(
        "globex/web at 2 replicas",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let mut keda = keda.clone();
            let globex_web = globex_web.clone();
            async move {
                replicas(&mut keda, &globex_web)
                    .await
                    .ok()
                    .filter(|v| *v == 2.0)
            }
        },
    )
    .await;
    assert_eq!(served, 2.0);

    // acme's writer: a flood for globex by push, reusing globex's source name, and by
    // remote-write, and a workload no policy names.
    let attack_ms = spillway_collector::clock::unix_ms();
    let summary = fixture
        .push(
            Some("agent-acme"),
            vec![batch(
                "edge",
                vec![
                    sample("globex", "web", 1e9),
                    sample("globex", "web", 0.0),
                    sample("acme", "ghost", 1e9),
                ],
            )],
        )
        .await
        .expect("the stream itself is authorized");
    assert_eq!((summary.accepted, summary.rejected), (0, 3), "{summary:?}");
    assert!(
        summary.errors.iter().any(|e| e.contains("may not write")),
        "{summary:?}"
    );
    assert!(
        summary.errors.iter().any(|e| e.contains("no policy names")),
        "{summary:?}"
    );
    let now = spillway_collector::clock::unix_ms();
    let (status, body) = fixture
        .remote_write(
            Some("agent-acme"),
            write_body(
                "globex",
                "web",
                &[
                    ("x", &[(now - 2_000, 0.0), (now - 1_000, 1e9)]),
                    ("y", &[(now - 2_000, 0.0), (now - 1_000, 1e9)]),
                ],
            ),
        )
        .await;
    // Accepted as a request (a sender must not retry it), refused sample by sample.
    assert_eq!(status, 204, "{body}");

    let latest = fixture.decision_after("globex", "web", attack_ms).await;
    assert_eq!(latest["qps"], 200.0, "{latest}");
    assert_eq!(replicas(&mut keda, &globex_web).await.expect("served"), 2.0);
    let metrics = fixture.metrics().await;
    for (series, expected) in [
        ("push_tenant_not_allowed", 2.0),
        ("push_unknown_workload", 1.0),
        ("remote_write_tenant_not_allowed", 4.0),
    ] {
        assert_eq!(
            metric(
                &metrics,
                &format!("spillway_collector_dropped_samples_total{{reason=\"{series}\"}}")
            ),
            expected,
            "{series}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cannot_replace_another_writers_share_by_reusing_its_source_name() {
    let fixture = Fixture::start();
    let started = spillway_collector::clock::unix_ms();
    fixture
        .push(
            Some("agent-acme"),
            vec![batch("edge", vec![sample("acme", "web", 150.0)])],
        )
        .await
        .expect("first writer");
    // The second writer names the same source and says zero: were sources global, this
    // would replace the first writer's 150 and scale acme/web down.
    fixture
        .push(
            Some("agent-acme-2"),
            vec![batch("edge", vec![sample("acme", "web", 0.0)])],
        )
        .await
        .expect("second writer");
    let after = spillway_collector::clock::unix_ms();
    let latest = fixture.decision_after("acme", "web", after).await;
    assert!(latest["at_ms"].as_i64() > Some(started));
    assert_eq!(latest["qps"], 150.0, "{latest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_its_tenants_only() {
    let fixture = Fixture::start();
    // The admin sees both tenants and the scrape target, once it has been tried.
    let everything = wait::until(
        "every workload and the scrape target in the admin's status",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let (_, body) = fixture.get("/api/v1/status", Some("sre")).await;
            let report: serde_json::Value = serde_json::from_str(&body).ok()?;
            let counts = (
                report["workloads"].as_array().map(Vec::len),
                report["targets"].as_array().map(Vec::len),
            );
            (counts == (Some(3), Some(1))).then_some(report)
        },
    )
    .await;
    assert_eq!(
        everything["targets"][0]["url"],
        "http://127.0.0.1:9/metrics"
    );
    let (status, body) = fixture.get("/api/v1/status", Some("grafana-acme")).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    let tenants: Vec<&str> = report["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .filter_map(|w| w["tenant"].as_str())
        .collect();
    assert_eq!(tenants, ["acme", "acme"], "{body}");
    assert_eq!(
        report["targets"],
        serde_json::json!([]),
        "targets serve every tenant"
    );

    // Another tenant's workload, existing or not, is refused the same way.
    for path in [
        "/api/v1/workloads/globex/web",
        "/api/v1/workloads/globex/nothing",
    ] {
        let (status, body) = fixture.get(path, Some("grafana-acme")).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("may not read tenant `globex`"), "{body}");
    }
    let (status, _) = fixture
        .get("/api/v1/workloads/acme/web", Some("grafana-acme"))
        .await;
    assert_eq!(status, 200);
    for (identity, expected) in [(None, 401), (Some("agent-acme"), 403)] {
        let (status, body) = fixture.get("/api/v1/status", identity).await;
        assert_eq!(status, expected, "{identity:?}: {body}");
    }
    // /metrics carries every tenant: not for a tenant's reader.
    assert_eq!(fixture.get("/metrics", Some("grafana-acme")).await.0, 403);
    assert_eq!(fixture.get("/metrics", None).await.0, 401);
    assert_eq!(fixture.get("/healthz", None).await.0, 200);
    // Probes carry no credentials: /readyz answers anyone, 503 while warming up.
    let ready_by = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = fixture.get("/readyz", None).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < ready_by,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `spillway status` with the reader's token file: acme only.
    let url = format!("http://{}", fixture.spillway.http);
    let token_file = token_path(fixture.dir.path(), "grafana-acme")
        .display()
        .to_string();
    let output = cli(&["status", "--url", &url, "--token-file", &token_file]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text.contains("acme/web") && !text.contains("globex"),
        "{text}"
    );
    let output = cli(&[
        "explain",
        "globex/web",
        "--url",
        &url,
        "--token-file",
        &token_file,
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("403"),
        "{output:?}"
    );
    let output = cli(&["status", "--url", &url]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--token-file"),
        "{output:?}"
    );
}

/// Runs the `spillway` CLI (its HTTP client gives up after 5 s; this bounds the rest).
async fn cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("SPILLWAY_TOKEN_FILE")
            .stdin(Stdio::null())
            .output()
            .expect("spillway runs")
    });
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the CLI finishes in time")
        .expect("the CLI thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_kedas_identity_may_call_the_external_scaler() {
    let fixture = Fixture::start();
    let acme_web = reference(&fixture, "acme", &[("app", "web")]);
    let mut keda = fixture.keda().await;
    spec(&mut keda, acme_web.clone())
        .await
        .expect("KEDA's call");

    // A certificate of the same CA that names no identity.
    let mut stranger = Client::new(fixture.stranger_channel().await);
    let refused = spec(&mut stranger, acme_web.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // The admin's name in a certificate, and a writer's token: identities, not KEDA.
    let mut admin = Client::new(fixture.channel(&fixture.client_ca.client("sre")).await);
    let refused = spec(&mut admin, acme_web.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("role admin"), "{refused:?}");
    let refused = stranger
        .get_metrics(with_token(
            GetMetricsRequest {
                scaled_object_ref: Some(acme_web.clone()),
                metric_name: "spillway-replicas".into(),
            },
            "agent-acme",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // Streams too.
    let refused = stranger
        .stream_is_active(spillway_tests::keda::with_deadline(acme_web.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // Without any client certificate the handshake itself is refused.
    let bare = tls::connect(fixture.spillway.grpc, &fixture.server_ca.cert_pem, None).await;
    let refused = match bare {
        Err(error) => error.to_string(),
        Ok(mut client) => format!("{:?}", spec(&mut client, acme_web.clone()).await),
    };
    assert!(refused.contains("rror"), "{refused}");
    // KEDA's own namespace claim is still held to the tenant's policy.
    let elsewhere = scaled_object(
        "globex-prod",
        "so",
        fixture.spillway.grpc,
        &[("tenant", "acme"), ("app", "web")],
    );
    let refused = spec(&mut keda, elsewhere).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let metrics = fixture.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "spillway_access_denied_total{input=\"keda\",reason=\"unauthenticated\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &metrics,
            "spillway_access_denied_total{input=\"keda\",reason=\"forbidden\"}"
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_borrow_only_what_is_lent_are_capped_and_expire() {
    let fixture = Fixture::start();
    let mut keda = fixture.keda().await;
    // checkout has its own entry: a ScaledObject cannot re-point it.
    let refused = spec(
        &mut keda,
        reference(&fixture, "acme", &[("app", "checkout"), ("policy", "web")]),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("has its own entry"),
        "{refused:?}"
    );
    // checkout is not lent.
    let refused = spec(
        &mut keda,
        reference(
            &fixture,
            "acme",
            &[("app", "checkout-canary"), ("policy", "checkout")],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("borrowable: true"),
        "{refused:?}"
    );

    // web is lent; acme may hold two aliases.
    let alias = |app: &str| reference(&fixture, "acme", &[("app", app), ("policy", "web")]);
    ask(&mut keda, alias("web-a")).await.expect("first alias");
    ask(&mut keda, alias("web-b")).await.expect("second alias");
    let refused = ask(&mut keda, alias("web-c")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("maxPerTenant"), "{refused:?}");
    assert!(fixture.workload("acme", "web-c").await.is_none());
    assert!(fixture.workload("acme", "web-a").await.is_some());
    // Writes for an alias land while it exists.
    let summary = fixture
        .push(
            Some("agent-acme"),
            vec![batch(
                "edge",
                vec![sample("acme", "web-a", 10.0), sample("acme", "web-c", 10.0)],
            )],
        )
        .await
        .expect("push");
    assert_eq!((summary.accepted, summary.rejected), (1, 1), "{summary:?}");

    // KEDA keeps asking for web-b only: web-a expires (10 s) and makes room for web-c.
    let accepted = wait::until(
        "web-a to expire and web-c to fit",
        Duration::from_secs(40),
        Duration::from_secs(1),
        || {
            let mut keda = keda.clone();
            let (b, c) = (alias("web-b"), alias("web-c"));
            async move {
                ask(&mut keda, b).await.expect("web-b is still asked for");
                ask(&mut keda, c).await.ok()
            }
        },
    )
    .await;
    assert_eq!(accepted, ());
    assert!(
        fixture.workload("acme", "web-a").await.is_none(),
        "the expired alias's workload is gone"
    );
    assert!(fixture.workload("acme", "web-b").await.is_some());
    assert!(fixture.workload("acme", "web").await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_replaces_the_old_one_and_a_deleted_one_is_revoked() {
    let fixture = Fixture::start();
    let path = token_path(fixture.dir.path(), "grafana-acme");
    assert_eq!(
        fixture.get("/api/v1/status", Some("grafana-acme")).await.0,
        200
    );
    let rotated = "grafana-acme-rotated-0123456789";
    tls::replace(&path, rotated.as_bytes());
    let http = fixture.http.clone();
    let url = format!("http://{}/api/v1/status", fixture.spillway.http);
    wait::until(
        "the rotated token to be read",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let status = http
                    .get(url)
                    .bearer_auth(rotated)
                    .send()
                    .await
                    .ok()?
                    .status();
                (status == 200).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        fixture.get("/api/v1/status", Some("grafana-acme")).await.0,
        401,
        "the old token no longer works"
    );
    std::fs::remove_file(&path).expect("delete the token");
    wait::until(
        "the deleted token to be revoked",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let status = http
                    .get(url)
                    .bearer_auth(rotated)
                    .send()
                    .await
                    .ok()?
                    .status();
                (status == 401).then_some(())
            }
        },
    )
    .await;
    // Other identities are untouched.
    assert_eq!(fixture.get("/api/v1/status", Some("sre")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_shard_answers_only_the_scalers_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway =
        spillway_tests::gateway::FakeGateway::start(spillway_tests::gateway::Mode::Healthy).await;
    std::fs::create_dir_all(dir.path().join("tokens")).expect("token dir");
    for identity in ["spillway-scaler", "grafana-acme", "sre"] {
        tls::replace(
            &token_path(dir.path(), identity),
            token(identity).as_bytes(),
        );
    }
    let access = "access:
  identities:
    spillway-scaler: { role: shard, tokenFile: tokens/spillway-scaler }
    grafana-acme: { role: reader, tenants: [acme], tokenFile: tokens/grafana-acme }
    sre: { role: admin, tokenFile: tokens/sre }
";
    let collector_dir = dir.path().join("collector");
    std::fs::create_dir_all(&collector_dir).expect("collector dir");
    std::fs::rename(dir.path().join("tokens"), collector_dir.join("tokens")).expect("tokens");
    let collector_config = write_serve_config(
        &collector_dir,
        &[],
        &format!(
            "scrape: {{ interval: 200ms, timeout: 150ms, targets: [{}] }}\n{access}",
            gateway.url()
        ),
    );
    let collector = Spillway::collector(BIN, &collector_config, "0/1", "127.0.0.1:0");
    let mut shard = spillway_proto::shard::shard_client::ShardClient::connect(format!(
        "http://{}",
        collector.grpc
    ))
    .await
    .expect("connect to the shard");
    let snapshot = |identity: Option<&str>| {
        let mut request = Request::new(spillway_proto::shard::SnapshotRequest {
            expected_index: 0,
            expected_count: 1,
        });
        if let Some(identity) = identity {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {}", token(identity))
                    .parse()
                    .expect("header"),
            );
        }
        request
    };
    let refused = shard.snapshot(snapshot(None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = shard
        .snapshot(snapshot(Some("grafana-acme")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    shard
        .snapshot(snapshot(Some("spillway-scaler")))
        .await
        .expect("the scalers' token");
    let http = spillway_tests::http();
    let metrics = format!("http://{}/metrics", collector.http);
    let status = |response: reqwest::Response| response.status().as_u16();
    assert_eq!(status(http.get(&metrics).send().await.expect("GET")), 401);
    assert_eq!(
        status(
            http.get(&metrics)
                .bearer_auth(token("sre"))
                .send()
                .await
                .expect("GET")
        ),
        200
    );

    // A scaler polling with the shard token counts the shard; one whose token is wrong
    // sees it refused.
    let scaler = |name: &str, token_file: &str| {
        let scaler_dir = dir.path().join(name);
        std::fs::create_dir_all(scaler_dir.join("tokens")).expect("scaler dir");
        tls::replace(
            &scaler_dir.join("tokens/shard"),
            token(token_file).as_bytes(),
        );
        tls::replace(&token_path(&scaler_dir, "sre"), token("sre").as_bytes());
        let acme = policy("acme", "    web: {}\n");
        let config = write_serve_config(
            &scaler_dir,
            &[("acme.yaml", &acme)],
            &format!(
                "collectors: {{ shards: [http://{}], interval: 200ms, timeout: 150ms, tokenFile: tokens/shard }}
access:
  insecure: [keda]
  identities:
    sre: {{ role: admin, tokenFile: tokens/sre }}
",
                collector.grpc
            ),
        );
        Spillway::serve(BIN, &config)
    };
    let good = scaler("good", "spillway-scaler");
    let bad = scaler("bad", "grafana-acme");
    let shard_status = |spillway: &Spillway| {
        let http = http.clone();
        let url = format!("http://{}/api/v1/status", spillway.http);
        async move {
            let body: serde_json::Value = http
                .get(url)
                .bearer_auth(token("sre"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(body["shards"][0].clone())
        }
    };
    wait::until(
        "the scaler with the shard token to count the shard",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { shard_status(&good).await.filter(|s| s["up"] == true) },
    )
    .await;
    let refused = wait::until(
        "the scaler with a wrong token to be refused",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            shard_status(&bad).await.filter(|s| {
                s["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("PermissionDenied"))
            })
        },
    )
    .await;
    assert_eq!(refused["up"], false, "{refused}");
}

/// Runs `spillway serve` on `config` and collects its stderr until `enough` says so
/// or the process exits (bounded); returns the lines and the exit status, if it exited.
fn serve_stderr(
    config: &Path,
    enough: impl Fn(&[String]) -> bool,
) -> (Vec<String>, Option<std::process::ExitStatus>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spillway");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while !enough(&lines) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            // Closed: the process exited. Timed out: the caller judges what it has.
            Err(_) => break,
        }
    }
    let mut exited = None;
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    while exited.is_none() && tokio::time::Instant::now() < settle {
        exited = child.try_wait().ok().flatten();
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    (lines, exited)
}

#[test]
fn serve_refuses_to_start_without_access_rules_and_names_open_inputs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acme = policy("acme", "    web: {}\n");
    // No access section at all: refused, with what to write.
    let config = dir.path().join("none.yaml");
    std::fs::create_dir_all(dir.path().join("policies")).expect("policies");
    std::fs::write(dir.path().join("policies/acme.yaml"), &acme).expect("policy");
    std::fs::write(
        &config,
        "listen: { grpc: 127.0.0.1:0, http: 127.0.0.1:0 }\npolicies: policies\n",
    )
    .expect("config");
    let (lines, exited) = serve_stderr(&config, |_| false);
    assert!(
        exited.is_some_and(|status| !status.success()),
        "a process without access rules must not serve: {exited:?}"
    );
    let text = lines.join("\n");
    assert!(text.contains("no `access:` section"), "{text}");
    assert!(
        text.contains("insecure: [keda, write, status, metrics, shard, control]"),
        "{text}"
    );

    // Open on purpose: it serves, and says so once per open input.
    let config = dir.path().join("open.yaml");
    std::fs::write(
        &config,
        "listen: { grpc: 127.0.0.1:0, http: 127.0.0.1:0 }\npolicies: policies\nremoteWrite: {}\n\
         access: { insecure: [keda, write, status, metrics] }\n",
    )
    .expect("config");
    let open = |lines: &[String]| lines.iter().filter(|l| l.contains("INSECURE")).count() >= 4;
    let (lines, exited) = serve_stderr(&config, open);
    assert_eq!(exited, None, "open on purpose, it serves: {lines:#?}");
    let warnings: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("INSECURE"))
        .map(|l| without_colours(l))
        .collect();
    assert_eq!(warnings.len(), 4, "{lines:#?}");
    for input in ["keda", "write", "status", "metrics"] {
        assert!(
            warnings
                .iter()
                .any(|l| l.contains("WARN") && l.contains(&format!("input=\"{input}\""))),
            "{input}: {warnings:#?}"
        );
    }
}

/// A log line without its terminal colour codes.
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The HTTP port over mTLS: a verified client certificate names the caller as a token
/// does (a tenant's reader sees its tenants, `/metrics` only for the metrics role), a
/// token still works on a connection without a certificate, a certificate naming no
/// identity is anonymous, one from another CA and plaintext never get a request in,
/// and `spillway status` connects with `--ca-file`, `--cert-file` and `--key-file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_over_mtls_names_callers_by_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server_ca = Ca::new("HTTP server CA");
    let client_ca = Ca::new("HTTP client CA");
    let files = ServerFiles::in_dir(dir.path());
    files.write(&server_ca.server(), Some(&client_ca));
    let rest = format!(
        "scrape: {{ interval: 1s, timeout: 500ms, targets: [http://127.0.0.1:9/metrics] }}
httpTls:
  certFile: {}
  keyFile: {}
  clientCaFile: {}
access:
  insecure: [keda]
  identities:
    grafana-acme: {{ role: reader, tenants: [acme] }}
    grafana-globex: {{ role: reader, tenants: [globex], tokenFile: tokens/grafana-globex }}
    prometheus: {{ role: metrics }}
",
        files.cert.display(),
        files.key.display(),
        files.client_ca.display()
    );
    std::fs::create_dir_all(dir.path().join("tokens")).expect("token dir");
    tls::replace(
        &token_path(dir.path(), "grafana-globex"),
        token("grafana-globex").as_bytes(),
    );
    let acme = policy("acme", "    web: {}\n");
    let globex = policy("globex", "    web: {}\n");
    let config = write_serve_config(
        dir.path(),
        &[("acme.yaml", &acme), ("globex.yaml", &globex)],
        &rest,
    );
    let spillway = Spillway::serve(BIN, &config);
    let base = format!("https://localhost:{}", spillway.http.port());
    let get = |client: reqwest::Client, path: &str, bearer: Option<String>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.text().await.unwrap_or_default()))
        }
    };

    let grafana_acme = client_ca.client("grafana-acme");
    let (status, body) = get(
        tls::https_client(&server_ca.cert_pem, Some(&grafana_acme)),
        "/api/v1/status",
        None,
    )
    .await
    .expect("status over mTLS");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"acme\"") && !body.contains("globex"),
        "{body}"
    );
    // No certificate and no token: the handshake passes (tokens are allowed on this
    // port), the request does not.
    let anonymous = tls::https_client(&server_ca.cert_pem, None);
    let (status, _) = get(anonymous.clone(), "/api/v1/status", None)
        .await
        .expect("status without credentials");
    assert_eq!(status, 401);
    // A token on a connection without a certificate.
    let (status, body) = get(anonymous, "/api/v1/status", Some(token("grafana-globex")))
        .await
        .expect("status with a token over TLS");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("globex") && !body.contains("\"acme\""),
        "{body}"
    );
    // A certificate of the right CA naming nobody is anonymous.
    let stranger = client_ca.client("stranger");
    let (status, _) = get(
        tls::https_client(&server_ca.cert_pem, Some(&stranger)),
        "/api/v1/status",
        None,
    )
    .await
    .expect("status as a stranger");
    assert_eq!(status, 401);
    // The reader's certificate may not read /metrics; the metrics role's may.
    let (status, _) = get(
        tls::https_client(&server_ca.cert_pem, Some(&grafana_acme)),
        "/metrics",
        None,
    )
    .await
    .expect("metrics as a reader");
    assert_eq!(status, 403);

    // A certificate from another CA, even one naming a known identity, and plaintext
    // on the TLS port: no request gets in.
    let rogue = Ca::new("rogue CA").client("grafana-acme");
    let refused = get(
        tls::https_client(&server_ca.cert_pem, Some(&rogue)),
        "/api/v1/status",
        None,
    )
    .await;
    assert!(
        refused.is_err(),
        "a rogue certificate was served: {refused:?}"
    );
    let plaintext = spillway_tests::http()
        .get(format!("http://{}/api/v1/status", spillway.http))
        .send()
        .await;
    assert!(
        plaintext.is_err() || !plaintext.as_ref().is_ok_and(|r| r.status().is_success()),
        "plaintext was served: {plaintext:?}"
    );

    let prometheus = client_ca.client("prometheus");
    let (status, body) = get(
        tls::https_client(&server_ca.cert_pem, Some(&prometheus)),
        "/metrics",
        None,
    )
    .await
    .expect("metrics over mTLS");
    assert_eq!(status, 200, "{body}");
    let failed = metric(&body, "spillway_http_tls_handshakes_failed_total");
    assert!(failed >= 2.0, "rogue and plaintext not counted: {failed}");

    // The CLI with the reader's certificate.
    let leaf_dir = dir.path().join("grafana");
    std::fs::create_dir_all(&leaf_dir).expect("leaf dir");
    let (cert, key, ca) = (
        leaf_dir.join("tls.crt"),
        leaf_dir.join("tls.key"),
        leaf_dir.join("ca.crt"),
    );
    tls::replace(&cert, grafana_acme.cert_pem.as_bytes());
    tls::replace(&key, grafana_acme.key_pem.as_bytes());
    tls::replace(&ca, server_ca.cert_pem.as_bytes());
    let path = |p: &PathBuf| p.display().to_string();
    let output = cli(&[
        "status",
        "--url",
        &base,
        "--ca-file",
        &path(&ca),
        "--cert-file",
        &path(&cert),
        "--key-file",
        &path(&key),
    ])
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text.contains("acme/web") && !text.contains("globex"),
        "{text}"
    );
    // Without its certificate the CLI says how to give one.
    let output = cli(&["status", "--url", &base, "--ca-file", &path(&ca)]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--cert-file"),
        "{output:?}"
    );
}
