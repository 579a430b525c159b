//! The scrape loop follows a changing target list (gateway pods discovered as they come
//! and go): a new target is scraped at once, a removed one is no longer scraped and
//! leaves the health report, and the others are never restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use spillway_collector::ingest::Ingest;
use spillway_collector::scrape::{ScrapeConfig, Scraper, Target};
use spillway_collector::store::StoreLimits;
use spillway_collector::{Signal, WorkloadKey};
use tokio::time::Instant;

/// Per gateway path: a counter growing at 100 × (gateway number) per second, and how
/// often it was scraped.
#[derive(Clone)]
struct Gateways {
    started: Instant,
    scrapes: Arc<[AtomicU64; 3]>,
}

async fn metrics(State(g): State<Gateways>, Path(n): Path<usize>) -> String {
    g.scrapes[n].fetch_add(1, Ordering::Relaxed);
    let count = 100.0 * (n as f64 + 1.0) * g.started.elapsed().as_secs_f64();
    format!(
        "# TYPE gateway_requests_total counter\ngateway_requests_total{{tenant=\"acme\",app=\"web\"}} {count}\n"
    )
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_appear_are_scraped_and_targets_that_leave_are_dropped() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gateways = Gateways {
        started: Instant::now(),
        scrapes: Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]),
    };
    let app = axum::Router::new()
        .route("/gw/{n}", get(metrics))
        .with_state(gateways.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let target = |n: usize| Target::new(format!("{base}/gw/{n}"));

    let ingest = Ingest::new(StoreLimits::default());
    let config = ScrapeConfig {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(90),
        ..ScrapeConfig::default()
    };
    let scraper = Scraper::new(reqwest::Client::new(), config, ingest.clone());
    let health = scraper.health();
    let (publish, targets) = tokio::sync::watch::channel(vec![target(0), target(1)]);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(scraper.run_tracking(targets, shutdown));

    let web = WorkloadKey::new("acme", "web");
    let qps = || {
        ingest
            .totals()
            .into_iter()
            .find(|t| t.workload == web && t.signal == Signal::Qps)
            .map_or(0.0, |t| t.value)
    };
    // Gateways 0 and 1: 100 + 200 qps.
    until("300 qps from two gateways", || (qps() - 300.0).abs() < 15.0).await;
    assert_eq!(health.len(), 2);

    // Gateway 2 appears: scraped at once, its 300 qps added.
    publish.send(vec![target(0), target(1), target(2)]).unwrap();
    until("600 qps from three gateways", || {
        (qps() - 600.0).abs() < 30.0
    })
    .await;
    assert_eq!(health.len(), 3);

    // Gateway 0 leaves: no longer scraped, gone from the health report.
    publish.send(vec![target(1), target(2)]).unwrap();
    until("gateway 0 out of the health report", || health.len() == 2).await;
    assert!(!health.contains_key(&target(0).id));
    let after_removal = gateways.scrapes[0].load(Ordering::Relaxed);
    let kept = gateways.scrapes[1].load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        gateways.scrapes[0].load(Ordering::Relaxed) <= after_removal + 1,
        "a removed target is still scraped"
    );
    assert!(
        gateways.scrapes[1].load(Ordering::Relaxed) >= kept + 3,
        "the targets that stayed keep being scraped"
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}
