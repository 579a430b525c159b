//! Floods against a real `spillway serve` with a 128 MiB memory budget: remote-write at
//! its limits from many connections, slow-loris on the HTTP port, gRPC push with huge
//! names from more streams than allowed, and a store filled by workloads no policy
//! names. In each, the process's peak resident memory (`VmHWM`) stays under the budget,
//! and the workloads a policy names keep their numbers in KEDA's answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spillway_collector::remote_write::encode_write_request;
use spillway_proto::ingest::ingest_client::IngestClient;
use spillway_proto::ingest::{SampleBatch, Signal, WorkloadSample};
use spillway_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::policy::acme_policy;
use spillway_tests::process::Spillway;
use spillway_tests::wait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");
const BUDGET: u64 = 128 << 20;

fn policy() -> String {
    acme_policy(
        "replicas: { min: 1, max: 50 }
signals:
  window: 2s
  qps: { targetPerReplica: 100 }
# `serve` without cluster access holds until a full scale-down window of data. The
# band absorbs the scrape timing jitter of a machine the flood keeps busy (5 replicas
# hold from 350 to 650 requests/s), so what is checked is that no flood reaches acme.
hysteresis: { scaleUpAbove: 1.3, scaleDownBelow: 0.7, downWindow: 1s }",
        &["web", "api"],
    )
}

/// A process under attack, and the workload whose numbers must not move: acme/web,
/// scraped from a gateway at 450 requests/s (5 replicas at 100 per replica).
struct Target {
    _gateway: FakeGateway,
    _dir: tempfile::TempDir,
    spillway: Spillway,
    client: keda::Client,
}

impl Target {
    async fn start(listen_extra: &str, rest: &str) -> Target {
        Self::start_with(listen_extra, rest, &[], &[]).await
    }

    /// [`Self::start`] with more scrape targets and more tenants' policies.
    async fn start_with(
        listen_extra: &str,
        rest: &str,
        more_targets: &[String],
        more_policies: &[(String, String)],
    ) -> Target {
        let gateway = FakeGateway::start(Mode::Healthy).await;
        gateway.drive("acme", "web", 450, Duration::from_millis(50));
        let dir = tempfile::tempdir().expect("temp dir");
        let targets = std::iter::once(gateway.url())
            .chain(more_targets.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ");
        let config = write_config(
            dir.path(),
            listen_extra,
            &format!(
                "memory: {{ budget: {}Mi }}
scrape: {{ interval: 250ms, timeout: 200ms, targets: [{targets}] }}
{rest}",
                BUDGET >> 20,
            ),
            more_policies,
        );
        let spillway = Spillway::serve(BIN, &config);
        let client = keda::connect(spillway.grpc).await;
        let target = Target {
            _gateway: gateway,
            _dir: dir,
            spillway,
            client,
        };
        wait::until(
            "5 replicas for acme/web",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async { target.replicas("web").await.filter(|v| *v == 5.0) },
        )
        .await;
        target
    }

    async fn replicas(&self, app: &str) -> Option<f64> {
        let reference = scaled_object(
            "acme-prod",
            app,
            self.spillway.grpc,
            &[("tenant", "acme"), ("app", app)],
        );
        let mut client = self.client.clone();
        keda::poll(&mut client, &reference)
            .await
            .ok()
            .map(|p| p.value)
    }

    async fn metrics(&self) -> String {
        spillway_tests::http()
            .get(format!("http://{}/metrics", self.spillway.http))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("/metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Checks the budget held and prints the figure BENCHMARKS.md quotes.
    fn report(&self, flood: &str, detail: &str) {
        let peak = self.spillway.peak_rss_bytes();
        println!(
            "flood {flood}: peak RSS {:.1} MiB (budget {} MiB); {detail}",
            peak as f64 / f64::from(1 << 20),
            BUDGET >> 20
        );
        assert!(
            peak < BUDGET,
            "{flood}: peak RSS {} MiB over the {} MiB budget",
            peak >> 20,
            BUDGET >> 20
        );
    }
}

/// `spillway.yaml` on free loopback ports, `listen_extra` added to the listen section.
/// Every input is open: these tests are about memory, not about who may call.
fn write_config(
    dir: &Path,
    listen_extra: &str,
    rest: &str,
    more_policies: &[(String, String)],
) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).expect("policy dir");
    std::fs::write(policies.join("acme.yaml"), policy()).expect("policy");
    for (file, text) in more_policies {
        std::fs::write(policies.join(file), text).expect("policy");
    }
    let path = dir.join("spillway.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: {{ grpc: 127.0.0.1:0, http: 127.0.0.1:0{listen_extra} }}\npolicies: policies\n\
             access: {{ insecure: [keda, write, status, metrics] }}\n{rest}"
        ),
    )
    .expect("config");
    path
}

/// A policy for tenant `tenant` naming `apps` apps `app-0`, `app-1`, ...: writes are
/// only taken for workloads a policy names.
fn tenant_policy(tenant: &str, apps: usize) -> (String, String) {
    let names: String = (0..apps).map(|i| format!("    app-{i}: {{}}\n")).collect();
    (
        format!("{tenant}.yaml"),
        format!(
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: {tenant} }}\n\
             spec:\n  namespaces: [{tenant}]\n  defaults:\n    signals:\n      qps: {{ targetPerReplica: 100 }}\n  \
             apps:\n{names}"
        ),
    )
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{series} not exported"))
}

fn label(name: &str, value: String) -> Label {
    Label {
        name: name.into(),
        value,
    }
}

/// `series` distinct counter series of tenant `noisy-{sender % 3}` in one request.
fn flood_body(sender: usize, request: usize, series: usize, timestamp: i64) -> Vec<u8> {
    let timeseries = (0..series)
        .map(|i| TimeSeries {
            labels: vec![
                label("__name__", "gateway_requests_total".into()),
                label("app", format!("app-{}", i % 100)),
                label("pod", format!("pod-{sender}-{request}-{i}-{:0>40}", i)),
                label("tenant", format!("noisy-{}", sender % 3)),
            ],
            samples: vec![Sample {
                value: i as f64,
                timestamp,
            }],
        })
        .collect();
    encode_write_request(&WriteRequest {
        timeseries,
        metadata: vec![],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_from_many_connections_stays_in_its_budget() {
    const SENDERS: usize = 32;
    const REQUESTS: usize = 8;
    const SERIES: usize = 4_000;
    // The noisy tenants have policies: a write for a workload no policy names is refused
    // before it takes any place, so only named workloads can flood the series table.
    let noisy: Vec<_> = (0..3)
        .map(|t| tenant_policy(&format!("noisy-{t}"), 100))
        .collect();
    let target = Target::start_with("", "remoteWrite: {}\n", &[], &noisy).await;
    let url = format!("http://{}/api/v1/write", target.spillway.http);
    let (accepted, busy, cut_off) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let now_ms = spillway_collector::clock::unix_ms();
    // Encoded up front, off the runtime that drives the gateway: the test's own CPU use
    // must not slow the traffic acme/web is measured by.
    let bodies = tokio::task::spawn_blocking(move || {
        (0..SENDERS)
            .map(|sender| {
                (0..REQUESTS)
                    .map(|request| flood_body(sender, request, SERIES, now_ms))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("bodies encoded");
    let mut senders = tokio::task::JoinSet::new();
    for (sender, bodies) in bodies.into_iter().enumerate() {
        let (url, accepted, busy, cut_off) =
            (url.clone(), accepted.clone(), busy.clone(), cut_off.clone());
        // One client each: its own connection, as Prometheus' shards have.
        let http = spillway_tests::http();
        senders.spawn(async move {
            for (request, body) in bodies.into_iter().enumerate() {
                let response = http
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .timeout(Duration::from_secs(30))
                    .body(body)
                    .send()
                    .await;
                // A 503 is sent before the body is read, and the connection closed after
                // it: a sender still writing its body sees the close instead (and retries,
                // as it would a 503).
                match response.map(|r| r.status().as_u16()) {
                    Ok(204) => accepted.fetch_add(1, Ordering::Relaxed),
                    Ok(503) => busy.fetch_add(1, Ordering::Relaxed),
                    Err(e) if e.is_request() => cut_off.fetch_add(1, Ordering::Relaxed),
                    other => panic!("sender {sender} request {request}: {other:?}"),
                };
            }
        });
    }
    let mut checks = 0;
    while !senders.is_empty() {
        tokio::select! {
            done = senders.join_next() => { done.expect("a sender").expect("sender ran"); }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                assert_eq!(target.replicas("web").await, Some(5.0), "acme/web during the flood");
                checks += 1;
            }
        }
    }
    assert_eq!(target.replicas("web").await, Some(5.0), "acme/web after");
    let text = target.metrics().await;
    let held = metric(&text, "spillway_collector_series{source=\"remote_write\"}");
    let quota = metric(
        &text,
        "spillway_collector_dropped_samples_total{reason=\"remote_write_tenant_quota\"}",
    );
    let (accepted, busy, cut_off) = (
        accepted.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
        cut_off.load(Ordering::Relaxed),
    );
    target.report(
        "remote-write",
        &format!(
            "{SENDERS} connections x {REQUESTS} requests of {SERIES} series: {accepted} accepted, \
             {busy} answered 503 (bytes in flight at the limit) and {cut_off} cut off by the \
             close after one; {held} series held, {quota} samples over tenant quotas; acme/web \
             5 replicas in {checks} checks during"
        ),
    );
    assert!(
        busy + cut_off > 0,
        "32 senders at once exceed the bytes in flight"
    );
    assert!(accepted > 0, "requests that fit are applied");
    assert!(
        quota > 0.0,
        "each noisy tenant is held to its share of series"
    );
}

/// A connection sending a request head one header line at a time, slowly.
async fn slow_headers(addr: std::net::SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"POST /api/v1/write HTTP/1.1\r\nHost: spillway\r\n")
        .await
        .ok()?;
    Some(stream)
}

/// Whether the server closed `stream` (read returns 0 or fails) within `limit`,
/// trickling a header line every 300 ms meanwhile.
async fn closed_while_trickling(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 512];
    while tokio::time::Instant::now() < deadline {
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            return true;
        }
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 from hyper or a reset: either way the server let go.
            Ok(Ok(_)) => return true,
            Err(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_capped_and_cut_off() {
    const ATTACKERS: usize = 300;
    let target = Target::start(", headerTimeout: 2s", "remoteWrite: { bodyTimeout: 2s }\n").await;
    let addr = target.spillway.http;
    // Slow bodies first: whole headers, then a body that never finishes.
    const BODIES: usize = 20;
    let mut bodies = Vec::new();
    for _ in 0..BODIES {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = "POST /api/v1/write HTTP/1.1\r\nHost: spillway\r\nContent-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: 500000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.expect("head sent");
        bodies.push(stream);
    }
    let mut streams = Vec::new();
    for _ in 0..ATTACKERS {
        if let Some(stream) = slow_headers(addr).await {
            streams.push(stream);
        }
    }
    let started = tokio::time::Instant::now();
    assert_eq!(
        target.replicas("web").await,
        Some(5.0),
        "acme/web under the attack"
    );
    // Every attacker is let go: over the cap at once, the rest at the header deadline.
    let mut trickling = tokio::task::JoinSet::new();
    for mut stream in streams.drain(..) {
        trickling.spawn(async move {
            closed_while_trickling(&mut stream, Duration::from_secs(8)).await
        });
    }
    let mut timed_out = tokio::task::JoinSet::new();
    for mut stream in bodies.drain(..) {
        timed_out.spawn(async move {
            // A byte every 300 ms: never idle, never done; answered 408 at the deadline.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
            let mut buf = [0u8; 512];
            while tokio::time::Instant::now() < deadline {
                if stream.write_all(&[0]).await.is_err() {
                    return false;
                }
                if let Ok(read) =
                    tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await
                {
                    return read.is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.1 408"));
                }
            }
            false
        });
    }
    let mut answered_408 = 0;
    while let Some(answered) = timed_out.join_next().await {
        answered_408 += usize::from(answered.expect("slow body task"));
    }
    let mut let_go = 0;
    while let Some(closed) = trickling.join_next().await {
        let_go += usize::from(closed.expect("attacker task"));
    }
    let elapsed = started.elapsed();
    assert_eq!(let_go, ATTACKERS, "every slow-header connection was closed");
    assert_eq!(answered_408, BODIES, "every slow body was answered 408");
    assert_eq!(target.replicas("web").await, Some(5.0), "acme/web after");
    let text = target.metrics().await;
    let refused = metric(&text, "spillway_http_connections_refused_total");
    target.report(
        "slow-loris",
        &format!(
            "{BODIES} slow-body connections answered 408 at the 2 s body deadline; \
             {ATTACKERS} slow-header connections: {refused} refused at the connection cap, the \
             rest closed at the 2 s header deadline; all gone after {:.1} s; acme/web 5 \
             replicas throughout",
            elapsed.as_secs_f64()
        ),
    );
    assert!(refused > 0.0, "more attackers than the connection cap");
}

fn huge_batch(name_bytes: usize, value: f64) -> SampleBatch {
    SampleBatch {
        source: "flood".into(),
        timestamp_ms: 0,
        samples: vec![WorkloadSample {
            tenant: "t".repeat(name_bytes),
            app: "web".into(),
            signal: Signal::Qps as i32,
            value,
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_huge_names_from_too_many_streams_stays_in_its_budget() {
    const STREAMS: usize = 128;
    const CHANNELS: usize = 8;
    let target = Target::start("", "push: {}\n").await;
    let mut channels = Vec::new();
    for _ in 0..CHANNELS {
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            IngestClient::connect(format!("http://{}", target.spillway.grpc)),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        channels.push(client);
    }
    // Open every stream first, each with one batch whose tenant name is 60 KB.
    let mut senders = Vec::new();
    let mut calls = tokio::task::JoinSet::new();
    for stream in 0..STREAMS {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(huge_batch(60_000, 1e6)).await.expect("queued");
        let mut client = channels[stream % CHANNELS].clone();
        calls.spawn(async move {
            client
                .push(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        senders.push(tx);
    }
    // Refused streams answer at once; the others wait for their end.
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while refused < STREAMS / 2 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(result)) =
            tokio::time::timeout(Duration::from_millis(500), calls.join_next()).await
        {
            match result.expect("call task") {
                Err(status) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
                other => panic!("a stream ended early: {other:?}"),
            }
        }
    }
    assert_eq!(
        refused,
        STREAMS / 2,
        "the push stream limit at this budget is 64"
    );
    // The open streams keep pushing huge names, then one message over the size limit.
    for round in 0..20 {
        for tx in &senders {
            let _ = tx.send(huge_batch(60_000, round as f64)).await;
        }
        if round % 5 == 4 {
            assert_eq!(
                target.replicas("web").await,
                Some(5.0),
                "acme/web during the flood"
            );
        }
    }
    for tx in &senders {
        let _ = tx.send(huge_batch(400_000, 1.0)).await;
    }
    drop(senders);
    let mut too_large = 0;
    while let Some(result) = tokio::time::timeout(Duration::from_secs(20), calls.join_next())
        .await
        .expect("streams end in time")
    {
        if let Err(status) = result.expect("call task") {
            too_large += usize::from(status.code() == tonic::Code::OutOfRange);
        }
    }
    assert_eq!(target.replicas("web").await, Some(5.0), "acme/web after");
    let text = target.metrics().await;
    let malformed = metric(
        &text,
        "spillway_collector_dropped_samples_total{reason=\"push_malformed\"}",
    );
    let windows = metric(&text, "spillway_store_windows");
    target.report(
        "push",
        &format!(
            "{STREAMS} streams over {CHANNELS} connections: {refused} refused (limit 64), \
             {malformed} samples with 60 KB names refused, {too_large} streams ended by a \
             400 KB message; {windows} store windows (no huge name stored)"
        ),
    );
    assert_eq!(
        malformed,
        (STREAMS / 2 * 21) as f64,
        "every huge name refused"
    );
    assert_eq!(
        too_large,
        STREAMS / 2,
        "every oversize message ended its stream"
    );
}

/// A gateway page of `tenants` x `apps` counters no policy names (rate 0: the counters
/// stand still), served on a free loopback port.
async fn unnamed_workloads_page(tenants: usize, apps: usize) -> String {
    let mut page = String::from("# TYPE gateway_requests_total counter\n");
    for t in 0..tenants {
        for a in 0..apps {
            page.push_str(&format!(
                "gateway_requests_total{{tenant=\"noisy-{t:02}\",app=\"app-{a:04}\",code=\"200\"}} 1000\n"
            ));
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}/metrics", listener.local_addr().expect("address"));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let page = page.clone();
            async move { page }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_filled_by_unnamed_workloads_keeps_room_for_named_ones() {
    const TENANTS: usize = 15;
    const APPS: usize = 1_000;
    // Scraped gateways may list any workload; 15,000 no policy names fill the store
    // (12,500 windows at this budget) within each tenant's quota.
    let page = unnamed_workloads_page(TENANTS, APPS).await;
    let target = Target::start_with("", "push: {}\n", &[page], &[]).await;
    let full = wait::until(
        "the store full",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let text = target.metrics().await;
            let full = metric(
                &text,
                "spillway_collector_dropped_samples_total{reason=\"store_full\"}",
            );
            (full > 0.0).then_some(full)
        },
    )
    .await;
    let text = target.metrics().await;
    let windows = metric(&text, "spillway_store_windows");
    assert_eq!(
        target.replicas("web").await,
        Some(5.0),
        "acme/web with the store full"
    );

    // acme/api, named by the policy, starts reporting only now: it still gets a window.
    let mut push = tokio::time::timeout(
        Duration::from_secs(10),
        IngestClient::connect(format!("http://{}", target.spillway.grpc)),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let agent = || SampleBatch {
        source: "edge-agent".into(),
        timestamp_ms: 0,
        samples: vec![WorkloadSample {
            tenant: "acme".into(),
            app: "api".into(),
            signal: Signal::Qps as i32,
            value: 300.0,
        }],
    };
    let api = wait::until(
        "3 replicas for acme/api",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let mut push = push.clone();
            let target = &target;
            async move {
                push.push(tokio_stream::iter(vec![agent()])).await.ok()?;
                target.replicas("api").await.filter(|v| *v == 3.0)
            }
        },
    )
    .await;
    assert_eq!(api, 3.0);
    push.push(tokio_stream::iter(vec![agent()]))
        .await
        .expect("push");
    assert_eq!(target.replicas("web").await, Some(5.0), "acme/web after");
    let text = target.metrics().await;
    let after = metric(&text, "spillway_store_windows");
    let full_after = metric(
        &text,
        "spillway_collector_dropped_samples_total{reason=\"store_full\"}",
    );
    target.report(
        "store full",
        &format!(
            "{} scraped workloads no policy names: {windows} windows held, {full} values \
             refused store_full when it filled ({full_after} by the end); acme/api \
             arriving afterwards got its window ({after} held) and 3 replicas; acme/web 5 \
             replicas throughout",
            TENANTS * APPS,
        ),
    );
    assert!(
        after <= windows,
        "a named workload displaced an unnamed one"
    );
}
