//! 1,000 scrape targets, each its own HTTP server on 127.0.0.1: most healthy, some slow
//! (past the scrape timeout), some down (connection refused), some answering garbage.
//! Every healthy target's workload gets its correct QPS within a bounded time, and the
//! broken ones are reported as down with their error.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use spillway_collector::ingest::Ingest;
use spillway_collector::scrape::{ScrapeConfig, Scraper, Target};
use spillway_collector::store::StoreLimits;
use spillway_collector::{Signal, SignalView, WorkloadKey};
use tokio::time::Instant;

const TARGETS: usize = 1_000;
/// Rates are computed from counters two scrapes apart, timestamped when each scrape
/// starts (as Prometheus does) while the counter is read when the response is built;
/// on a loaded machine that gap varies by up to the timeout, so one second's rate can be
/// off by tens of percent. A 5 s mean within 10% is what "correct" means here.
const TOLERANCE: f64 = 0.10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Healthy,
    Slow,
    Down,
    Garbage,
}

fn kind(index: usize) -> Kind {
    match index % 20 {
        0 => Kind::Slow,
        1 => Kind::Down,
        2 => Kind::Garbage,
        _ => Kind::Healthy,
    }
}

/// Requests per second target `index` serves: distinct per target, so a mix-up shows.
fn rate(index: usize) -> f64 {
    10.0 + (index % 37) as f64
}

#[derive(Clone)]
struct Served {
    index: usize,
    kind: Kind,
    started: Instant,
}

async fn metrics(State(served): State<Served>) -> String {
    match served.kind {
        Kind::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            String::new()
        }
        Kind::Garbage => "<html>upstream connect error</html>\n{}{}\n".into(),
        Kind::Healthy | Kind::Down => {
            // The counter grows continuously at the target's rate.
            let value = rate(served.index) * served.started.elapsed().as_secs_f64();
            format!(
                "# TYPE gateway_requests_total counter\n\
                 gateway_requests_total{{tenant=\"acme\",app=\"app-{}\",code=\"200\"}} {value}\n",
                served.index
            )
        }
    }
}

/// Starts target `index`; a down target's listener is returned so the caller closes it
/// only once every server is bound (else the port could be handed to a later server
/// and two targets would scrape the same one).
async fn start_target(index: usize, started: Instant) -> (Target, Option<tokio::net::TcpListener>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let kind = kind(index);
    let target = Target {
        id: format!("target-{index}").into(),
        url: format!("http://{addr}/metrics"),
    };
    if kind == Kind::Down {
        return (target, Some(listener));
    } else {
        let app = axum::Router::new()
            .route("/metrics", get(metrics))
            .with_state(Served {
                index,
                kind,
                started,
            });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    (target, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_targets_get_correct_qps_beside_slow_down_and_garbage_ones() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let mut targets = Vec::with_capacity(TARGETS);
    let mut down = Vec::new();
    for index in 0..TARGETS {
        let (target, listener) = start_target(index, started).await;
        targets.push(target);
        down.extend(listener);
    }
    // Nothing listens on these ports any more: connections are refused.
    drop(down);
    let config = ScrapeConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        max_concurrency: 64,
        staleness: Duration::from_secs(10),
        ..ScrapeConfig::default()
    };
    let client = reqwest::Client::builder()
        .connect_timeout(config.timeout)
        .build()
        .expect("client");
    let ingest = Ingest::new(StoreLimits::default());
    let scraper = Scraper::new(client, config, ingest.clone());
    let health = scraper.health();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(scraper.run(targets, shutdown));

    let healthy: Vec<usize> = (0..TARGETS).filter(|i| kind(*i) == Kind::Healthy).collect();
    let deadline = Duration::from_secs(30);
    let mut wrong: Vec<String> = Vec::new();
    let settled_after = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = spillway_collector::clock::unix_ms() / 1000;
        wrong.clear();
        for &index in &healthy {
            let workload = WorkloadKey::new("acme", format!("app-{index}"));
            let qps = ingest.store().view(&workload).mean(Signal::Qps, now, 5);
            let expected = rate(index);
            match qps {
                Some(qps) if (qps - expected).abs() / expected <= TOLERANCE => {}
                other => wrong.push(format!("app-{index}: {other:?} (want {expected})")),
            }
        }
        if wrong.is_empty() {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "{} of {} healthy workloads still wrong after {deadline:?}, e.g. {:?}",
            wrong.len(),
            healthy.len(),
            &wrong[..wrong.len().min(5)]
        );
    };
    println!(
        "{} healthy workloads correct {settled_after:?} after start",
        healthy.len()
    );

    // Every broken target is down with a reason; no healthy one is.
    for index in 0..TARGETS {
        let entry = health
            .get(format!("target-{index}").as_str())
            .expect("health entry");
        match kind(index) {
            Kind::Healthy => assert!(
                entry.last_success_ms.is_some(),
                "target-{index}: {:?}",
                entry.last_error
            ),
            broken => {
                if entry.last_scrape_ms.is_none() {
                    continue;
                }
                assert!(
                    !entry.up && entry.last_success_ms.is_none(),
                    "{broken:?} target-{index} reads as up"
                );
                let error = entry.last_error.clone().unwrap_or_default();
                let expected = match broken {
                    Kind::Slow => "timed out",
                    Kind::Down => "request failed",
                    _ => "not Prometheus text",
                };
                assert!(
                    error.contains(expected),
                    "{broken:?} target-{index}: {error}"
                );
            }
        }
    }
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("scraper stops")
        .expect("scraper task");
}
