//! Spillway's KEDA side under load, on loopback, in one process:
//!
//! 1. **GetMetrics under load**: N ScaledObjects (10,000 by default) with data, many
//!    concurrent clients over a few HTTP/2 connections, for a fixed time: throughput and
//!    p50/p99/p999 latency, next to the same clients against an empty tonic
//!    `ExternalScaler` (a constant answer) in the same run, as the floor; 1 s slices
//!    alternate between the two.
//! 2. **Reaction**: a traffic step at the gateway → the changed value in `GetMetrics` and
//!    the `StreamIsActive` push, over many trials: median and p99.
//! 3. **Memory**: resident memory before Spillway starts and with every workload decided.
//!
//! Spillway runs through `spillway_scaler::serve::run`, as `spillway serve` does, scraping an
//! in-process gateway that serves every workload's request counter.
//!
//! `cargo run --release -p spillway-benches --bin keda_load -- [workloads] [seconds] [trials]`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use hdrhistogram::Histogram;
use spillway_collector::scrape::{ScrapeConfig, Target};
use spillway_collector::store::StoreLimits;
use spillway_proto::externalscaler::external_scaler_client::ExternalScalerClient;
use spillway_proto::externalscaler::external_scaler_server::{
    ExternalScaler, ExternalScalerServer,
};
use spillway_proto::externalscaler::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};
use spillway_scaler::keda::ServerSettings;
use spillway_scaler::policy::PolicyStore;
use spillway_scaler::serve::{self, Listeners, PolicySource, ProcessConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

const APPS_PER_TENANT: usize = 1000;
const CONNECTIONS: usize = 4;
const CLIENTS: usize = 64;
const SCRAPE: Duration = Duration::from_secs(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn tenant(i: usize) -> String {
    format!("t{:03}", i / APPS_PER_TENANT)
}
fn app_name(i: usize) -> String {
    format!("app-{:04}", i % APPS_PER_TENANT)
}

// === the gateway ===

/// Per workload: requests counted so far at `since`, and the rate since then.
#[derive(Clone, Copy)]
struct Counter {
    base: f64,
    rate: f64,
    since: Instant,
}

#[derive(Clone)]
struct Gateway {
    counters: Arc<Mutex<Vec<Counter>>>,
}

impl Gateway {
    fn set_rate(&self, i: usize, rate: f64) {
        let now = Instant::now();
        if let Ok(mut c) = self.counters.lock()
            && let Some(c) = c.get_mut(i)
        {
            c.base += c.rate * (now - c.since).as_secs_f64();
            c.since = now;
            c.rate = rate;
        }
    }
}

async fn exposition(State(g): State<Gateway>) -> String {
    let now = Instant::now();
    let counters = match g.counters.lock() {
        Ok(c) => c.clone(),
        Err(_) => return String::new(),
    };
    let mut body = String::with_capacity(counters.len() * 80);
    body.push_str("# TYPE gateway_requests_total counter\n");
    for (i, c) in counters.iter().enumerate() {
        let v = c.base + c.rate * (now - c.since).as_secs_f64();
        body.push_str(&format!(
            "gateway_requests_total{{tenant=\"{}\",app=\"{}\",code=\"200\"}} {v:.3}\n",
            tenant(i),
            app_name(i)
        ));
    }
    body
}

async fn start_gateway(
    workloads: usize,
    rate: impl Fn(usize) -> f64,
) -> Result<(Gateway, SocketAddr), BoxError> {
    let now = Instant::now();
    let gateway = Gateway {
        counters: Arc::new(Mutex::new(
            (0..workloads)
                .map(|i| Counter {
                    base: 0.0,
                    rate: rate(i),
                    since: now,
                })
                .collect(),
        )),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(exposition))
        .with_state(gateway.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((gateway, addr))
}

// === the empty handler ===

/// The floor: a tonic ExternalScaler that answers without looking at anything.
struct Empty;

type EmptyStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

type SpecStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<GetMetricSpecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Empty {
    async fn is_active(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        Ok(Response::new(IsActiveResponse { result: true }))
    }
    type StreamIsActiveStream = EmptyStream;
    async fn stream_is_active(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<EmptyStream>, Status> {
        Err(Status::unimplemented("empty"))
    }
    type StreamMetricSpecStream = SpecStream;
    async fn stream_metric_spec(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<SpecStream>, Status> {
        Err(Status::unimplemented("empty"))
    }
    async fn get_metric_spec(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        #[allow(deprecated)]
        let spec = MetricSpec {
            metric_name: "spillway-replicas".into(),
            target_size: 1,
            target_size_float: 1.0,
        };
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![spec],
        }))
    }
    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        #[allow(deprecated)]
        let value = MetricValue {
            metric_name: request.into_inner().metric_name,
            metric_value: 3,
            metric_value_float: 3.0,
        };
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![value],
        }))
    }
}

async fn start_empty() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ExternalScalerServer::new(Empty))
            .serve_with_incoming(incoming),
    );
    Ok(addr)
}

// === Spillway ===

fn write_policies(dir: &std::path::Path, workloads: usize) -> Result<(), BoxError> {
    for t in 0..workloads.div_ceil(APPS_PER_TENANT) {
        let mut text = format!(
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: t{t:03} }}\nspec:\n  namespaces: [t{t:03}]\n  defaults:\n    replicas: {{ min: 0, max: 100 }}\n    signals: {{ window: 10s, qps: {{ targetPerReplica: 10 }} }}\n    hysteresis: {{ upWindow: 0s, downWindow: 60s }}\n    activation: {{ window: 10s }}\n  apps:\n"
        );
        for i in (t * APPS_PER_TENANT..(t + 1) * APPS_PER_TENANT).take_while(|i| *i < workloads) {
            text.push_str(&format!("    {}: {{}}\n", app_name(i)));
        }
        std::fs::write(dir.join(format!("t{t:03}.yaml")), text)?;
    }
    Ok(())
}

async fn start_spillway(
    policies: &std::path::Path,
    gateway: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, BoxError> {
    let store = Arc::new(PolicyStore::new());
    let outcome = store.reload(policies);
    if outcome.dir_error.is_some() || !outcome.errors.is_empty() {
        return Err(format!(
            "policies refused: {:?} {:?}",
            outcome.dir_error, outcome.errors
        )
        .into());
    }
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let addr = grpc.local_addr()?;
    let config = ProcessConfig {
        scrape: ScrapeConfig {
            interval: SCRAPE,
            ..ScrapeConfig::default()
        },
        targets: vec![Target::new(format!("http://{gateway}/metrics"))],
        store: StoreLimits::default(),
        decision_tick: Duration::from_secs(1),
        server: ServerSettings::default(),
        policies: store,
        policy_source: PolicySource::Fixed,
        observer: None,
        // Measured like the demo: the process decides from its data at once.
        replicas: None,
        inputs: Default::default(),
        http: Default::default(),
        // Loopback only: the load is measured without authentication in the way.
        http_tls: None,
        access: Arc::new(spillway_scaler::access::Access::insecure_everywhere()),
        freeze_file: None,
    };
    tokio::spawn(async move {
        if let Err(e) = serve::run(config, Listeners { grpc, http }, shutdown).await {
            eprintln!("spillway stopped: {e}");
        }
    });
    Ok(addr)
}

fn reference(i: usize) -> ScaledObjectRef {
    let mut metadata = HashMap::new();
    metadata.insert("tenant".to_string(), tenant(i));
    metadata.insert("app".to_string(), app_name(i));
    ScaledObjectRef {
        name: app_name(i),
        namespace: tenant(i),
        scaler_metadata: metadata,
    }
}

fn request(i: usize) -> GetMetricsRequest {
    GetMetricsRequest {
        scaled_object_ref: Some(reference(i)),
        metric_name: "spillway-replicas".into(),
    }
}

async fn connect(addr: SocketAddr) -> Result<ExternalScalerClient<Channel>, BoxError> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(ExternalScalerClient::new(channel))
}

async fn value(client: &mut ExternalScalerClient<Channel>, i: usize) -> Option<f64> {
    let mut r = Request::new(request(i));
    r.set_timeout(Duration::from_secs(3));
    let resp = client.get_metrics(r).await.ok()?.into_inner();
    resp.metric_values.first().map(|v| v.metric_value_float)
}

// === measurements ===

struct Load {
    requests: u64,
    errors: u64,
    seconds: f64,
    latency: Histogram<u64>,
}

/// CLIENTS tasks over CONNECTIONS channels, each calling GetMetrics back to back on
/// workloads spread over all of them, for `seconds`.
async fn load(addr: SocketAddr, workloads: usize, seconds: f64) -> Result<Load, BoxError> {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(addr).await?);
    }
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = channels[c % CONNECTIONS].clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?;
            let (mut n, mut errors) = (0u64, 0u64);
            let mut i = c * 7919 % workloads.max(1);
            while Instant::now() < end {
                let t = Instant::now();
                let mut r = Request::new(request(i));
                r.set_timeout(Duration::from_secs(3));
                match client.get_metrics(r).await {
                    Ok(_) => {
                        h.saturating_record(t.elapsed().as_micros() as u64);
                        n += 1;
                    }
                    Err(_) => errors += 1,
                }
                i = (i + 1) % workloads.max(1);
            }
            Ok::<_, BoxError>((h, n, errors))
        }));
    }
    let mut total = Load {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latency: Histogram::new_with_bounds(1, 10_000_000, 3)?,
    };
    for t in tasks {
        let (h, n, e) = t.await??;
        total.latency.add(h)?;
        total.requests += n;
        total.errors += e;
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

impl Load {
    fn merge(&mut self, other: Load) -> Result<(), BoxError> {
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.latency.add(other.latency)?;
        Ok(())
    }
}

fn print_load(name: &str, l: &Load) {
    println!(
        "| {name} | {:.0} | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
        l.requests as f64 / l.seconds,
        l.errors,
        l.latency.value_at_quantile(0.5) as f64,
        l.latency.value_at_quantile(0.99) as f64,
        l.latency.value_at_quantile(0.999) as f64,
        l.latency.max() as f64,
    );
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Trials: workload `first + k` is idle (0 req/s, inactive, 0 replicas); at a random
/// moment it steps to 50 req/s. Measures until GetMetrics returns a new value and until
/// StreamIsActive pushes `true`.
async fn reaction(
    addr: SocketAddr,
    gateway: &Gateway,
    first: usize,
    trials: usize,
) -> Result<(Histogram<u64>, Histogram<u64>, usize), BoxError> {
    let mut client = connect(addr).await?;
    let mut to_value = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut to_push = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut missed = 0;
    let mut rng = spillway_benches::XorShift::new(0x5eed);
    for k in 0..trials {
        let i = first + k;
        let before = value(&mut client, i).await;
        let mut stream = client.stream_is_active(reference(i)).await?.into_inner();
        // The stream's first message is the current state.
        let initial = stream.message().await?.map(|m| m.result);
        if before != Some(0.0) || initial != Some(false) {
            return Err(
                format!("workload {i} not idle before its step: {before:?} {initial:?}").into(),
            );
        }
        // A random phase against the scrape interval.
        tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
        let step = Instant::now();
        gateway.set_rate(i, 50.0);
        let push = tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(m)) if m.result => return Some(step.elapsed()),
                    Ok(Some(_)) => continue,
                    _ => return None,
                }
            }
        });
        let mut seen = None;
        // Bounded: at most 10 s of polling every millisecond.
        for _ in 0..10_000 {
            if let Some(v) = value(&mut client, i).await
                && v != 0.0
            {
                seen = Some(step.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let pushed = tokio::time::timeout(Duration::from_secs(10), push).await;
        match (seen, pushed) {
            (Some(v), Ok(Ok(Some(p)))) => {
                to_value.saturating_record(v.as_micros() as u64);
                to_push.saturating_record(p.as_micros() as u64);
            }
            _ => missed += 1,
        }
        gateway.set_rate(i, 0.0);
    }
    Ok((to_value, to_push, missed))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |k: usize, d: f64| args.get(k).and_then(|a| a.parse().ok()).unwrap_or(d);
    let workloads = arg(0, 10_000.0) as usize;
    let seconds = arg(1, 10.0);
    let trials = arg(2, 40.0) as usize;
    // The last `trials` workloads stay idle for the reaction trials; the rest carry load.
    let busy = workloads.saturating_sub(trials);
    println!(
        "workloads {workloads}, load {seconds} s × {CLIENTS} clients over {CONNECTIONS} HTTP/2 connections, reaction trials {trials}, scrape every {SCRAPE:?}"
    );

    let rss_start = rss_kib();
    let (gateway, gateway_addr) = start_gateway(workloads, |i| {
        if i < busy { 5.0 + (i % 50) as f64 } else { 0.0 }
    })
    .await?;
    let dir = tempfile::tempdir()?;
    write_policies(dir.path(), workloads)?;
    let rss_before = rss_kib();
    let (stop, shutdown) = watch::channel(false);
    let addr = start_spillway(dir.path(), gateway_addr, shutdown).await?;

    // Every workload decided: bounded by 60 s.
    let mut client = connect(addr).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 0;
    while next < workloads {
        if value(&mut client, next).await.is_some() {
            next += 1;
        } else if Instant::now() > deadline {
            return Err(format!("workload {next} has no decision after 60 s").into());
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A few decision ticks with full windows before measuring memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_ready = rss_kib();

    let empty = start_empty().await?;
    println!();
    println!("| server | requests/s | errors | p50 | p99 | p99.9 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // Warm both, then alternate 1 s slices so both see the same background (the other
    // builds on the machine, Spillway's own scrapes and decision ticks).
    let _ = load(empty, workloads, 1.0).await?;
    let _ = load(addr, workloads, 1.0).await?;
    let mut floor = load(empty, workloads, 1.0).await?;
    let mut spill = load(addr, workloads, 1.0).await?;
    for _ in 1..seconds.round().max(1.0) as usize {
        floor.merge(load(empty, workloads, 1.0).await?)?;
        spill.merge(load(addr, workloads, 1.0).await?)?;
    }
    print_load("empty tonic ExternalScaler", &floor);
    print_load("Spillway GetMetrics", &spill);
    let ratio = spill.latency.value_at_quantile(0.99) as f64
        / floor.latency.value_at_quantile(0.99).max(1) as f64;
    println!("p99 ratio Spillway / empty: {ratio:.2}");

    let (to_value, to_push, missed) = reaction(addr, &gateway, busy, trials).await?;
    println!();
    println!(
        "| reaction ({} trials, {missed} missed) | median | p99 | max |",
        to_value.len()
    );
    println!("|---|---:|---:|---:|");
    for (name, h) in [
        ("step → GetMetrics value", &to_value),
        ("step → StreamIsActive push", &to_push),
    ] {
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }

    println!();
    let mib =
        |k: Option<u64>| k.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "resident memory: at start {}, gateway + policies written {}, Spillway with {workloads} workloads decided {} (after load: {})",
        mib(rss_start),
        mib(rss_before),
        mib(rss_ready),
        mib(rss_kib())
    );
    if let (Some(a), Some(b)) = (rss_before, rss_ready) {
        println!(
            "Spillway's share: {:.1} MiB, {:.0} bytes per workload",
            (b.saturating_sub(a)) as f64 / 1024.0,
            (b.saturating_sub(a) * 1024) as f64 / workloads as f64
        );
    }
    let _ = stop.send(true);
    Ok(())
}
