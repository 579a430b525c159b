//! Soak: 10,000 ScaledObjects (100 tenants × 100 apps) polled as KEDA polls them, over
//! one shared HTTP/2 connection: each ScaledObject gets GetMetricSpec → GetMetrics →
//! IsActive every 15 s (the HPA sync period), i.e. about 2,000 RPC/s. After a warm-up
//! cycle there must be no error, and the process's RSS must stay within a stated bound
//! of what it was after warm-up. Latency percentiles are printed.
//!
//! Runs 60 s of paced polling by default; `SPILLWAY_SOAK_SECS` sets another length.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use spillway_proto::externalscaler::ScaledObjectRef;
use spillway_tests::gateway::{FakeGateway, Mode};
use spillway_tests::keda::{self, scaled_object};
use spillway_tests::process::Spillway;
use tokio::sync::Mutex;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_spillway");
const TENANTS: usize = 100;
const APPS: usize = 100;
/// The HPA asks about every metric once per sync period.
const CYCLE: Duration = Duration::from_secs(15);
const WORKERS: usize = 32;
/// RSS may grow by this much over its post-warm-up value (allocator slack, histograms
/// filling up), and no more.
const RSS_SLACK_BYTES: u64 = 48 << 20;
const RSS_SLACK_RATIO: f64 = 0.25;

fn tenant(t: usize) -> String {
    format!("t{t:02}")
}

fn app(a: usize) -> String {
    format!("a{a:02}")
}

fn write_policies(dir: &Path) {
    std::fs::create_dir_all(dir).expect("policy dir");
    for t in 0..TENANTS {
        let mut text = format!(
            "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: {{ tenant: {} }}
spec:
  namespaces: [{}]
  defaults:
    replicas: {{ min: 1, max: 20 }}
    signals:
      window: 2s
      qps: {{ targetPerReplica: 100 }}
    hysteresis: {{ downWindow: 1s }}
  apps:
",
            tenant(t),
            tenant(t)
        );
        for a in 0..APPS {
            text.push_str(&format!("    {}: {{}}\n", app(a)));
        }
        std::fs::write(dir.join(format!("{}.yaml", tenant(t))), text).expect("policy file");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The upper bound of the bucket holding the 99th percentile of the server's own
/// handler time for `method` (from its /metrics), to tell handler time from queueing.
async fn server_side_p99(spillway: &Spillway, method: &str) -> String {
    let url = format!("http://{}/metrics", spillway.http);
    let Ok(response) = spillway_tests::http().get(url).send().await else {
        return "unknown".into();
    };
    let text = response.text().await.unwrap_or_default();
    let needle = format!("method=\"{method}\"");
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter(|l| l.starts_with("spillway_grpc_request_duration_seconds_bucket"))
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_owned();
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    let total = buckets.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    buckets
        .iter()
        .find(|(_, count)| *count >= 0.99 * total)
        .map_or_else(|| "unknown".into(), |(le, _)| format!("{le}s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_scaled_objects_polled_as_keda_does() {
    let soak = Duration::from_secs(
        std::env::var("SPILLWAY_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let gateway = FakeGateway::start(Mode::Healthy).await;
    for t in 0..TENANTS {
        for a in 0..APPS {
            gateway.add(&tenant(t), &app(a), 1.0);
        }
    }
    // A few workloads with traffic, so decisions change during the soak.
    {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            loop {
                ticker.tick().await;
                for t in 0..5 {
                    gateway.add(&tenant(t), &app(0), 45.0);
                }
            }
        });
    }
    let dir = tempfile::tempdir().expect("temp dir");
    write_policies(&dir.path().join("policies"));
    let config = dir.path().join("spillway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {{ grpc: 127.0.0.1:0, http: 127.0.0.1:0 }}
policies: policies
scrape: {{ interval: 1s, timeout: 900ms, targets: [{}] }}
{}",
            gateway.url(),
            spillway_tests::process::INSECURE_ACCESS,
        ),
    )
    .expect("config");
    let spillway = Spillway::serve(BIN, &config);
    let client = keda::connect(spillway.grpc).await;
    let references: Arc<Vec<ScaledObjectRef>> = Arc::new(
        (0..TENANTS * APPS)
            .map(|i| {
                let (t, a) = (tenant(i / APPS), app(i % APPS));
                scaled_object(
                    &t,
                    &a,
                    spillway.grpc,
                    &[("tenant", t.as_str()), ("app", a.as_str())],
                )
            })
            .collect(),
    );

    // Warm-up: every ScaledObject answers once (data scraped, first decisions made).
    let warm_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (client, references, next) = (client.clone(), references.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(reference) = references.get(i) else {
                    return;
                };
                while keda::poll(&mut client.clone(), reference).await.is_err() {
                    assert!(Instant::now() < deadline, "{i} never answered in warm-up");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("warm-up worker");
    }
    eprintln!(
        "soak: {} ScaledObjects answering after {:?}",
        references.len(),
        warm_start.elapsed()
    );

    // Paced polling: one poll per ScaledObject per CYCLE, spread evenly.
    let spacing = CYCLE / references.len() as u32;
    let start = Instant::now();
    let end = start + soak;
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(
        references.len() * (soak.as_secs() as usize / CYCLE.as_secs() as usize + 1),
    )));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (client, references, next) = (client.clone(), references.clone(), next.clone());
        let (latencies, errors) = (latencies.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let at = start + spacing * i as u32;
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(at).await;
                let reference = &references[i % references.len()];
                let began = Instant::now();
                match keda::poll(&mut client.clone(), reference).await {
                    Ok(_) => mine.push(began.elapsed()),
                    Err(status) => errors.lock().await.push(format!(
                        "{}/{}: {status:?}",
                        reference.namespace, reference.name
                    )),
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    // RSS after one full cycle is the baseline; sampled every 5 s after that.
    tokio::time::sleep(CYCLE.min(soak)).await;
    let baseline = spillway.rss_bytes();
    let mut peak = baseline;
    while Instant::now() + Duration::from_secs(5) < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        peak = peak.max(spillway.rss_bytes());
    }
    for task in tasks {
        task.await.expect("poll worker");
    }
    peak = peak.max(spillway.rss_bytes());
    let elapsed = start.elapsed();

    let server_p99 = server_side_p99(&spillway, "GetMetrics").await;
    let errors = errors.lock().await;
    let mut latencies = latencies.lock().await;
    latencies.sort();
    let polls = latencies.len();
    eprintln!(
        "soak: {polls} polls ({} RPCs) in {elapsed:?}, {:.0} RPC/s; poll latency (3 RPCs) p50 {:?} p99 {:?} p99.9 {:?} max {:?}; server-side GetMetrics p99 <= {server_p99}; RSS after warm-up {} MiB, peak {} MiB; {} errors",
        polls * 3,
        (polls * 3) as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        latencies.last().copied().unwrap_or_default(),
        baseline >> 20,
        peak >> 20,
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    let expected = (soak.as_secs_f64() / CYCLE.as_secs_f64() * references.len() as f64) as usize;
    assert!(
        polls + references.len() / 100 >= expected,
        "only {polls} of {expected} polls were made: the scaler did not keep up"
    );
    let bound = baseline + RSS_SLACK_BYTES.max((baseline as f64 * RSS_SLACK_RATIO) as u64);
    assert!(
        peak <= bound,
        "RSS grew from {} MiB after warm-up to {} MiB (bound {} MiB)",
        baseline >> 20,
        peak >> 20,
        bound >> 20
    );
}
