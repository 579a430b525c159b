//! A kubelet-style cAdvisor page scraped over loopback: CPU counters become cores and
//! working-set bytes are summed per workload, next to the gateway QPS path.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use spillway_collector::ingest::Ingest;
use spillway_collector::resources::ResourceMapping;
use spillway_collector::scrape::{ScrapeConfig, Scraper, Target};
use spillway_collector::store::StoreLimits;
use spillway_collector::{Signal, SignalView, WorkloadKey};
use tokio::time::Instant;

/// Two pods of acme/web using 0.5 and 0.25 cores, plus the pod-level and pause series
/// cAdvisor also exports (which must not be counted).
async fn cadvisor(State(started): State<Instant>) -> String {
    let seconds = started.elapsed().as_secs_f64();
    format!(
        "# TYPE container_cpu_usage_seconds_total counter\n\
         container_cpu_usage_seconds_total{{namespace=\"acme\",pod=\"web-5d8c9-aaaaa\",container=\"web\"}} {}\n\
         container_cpu_usage_seconds_total{{namespace=\"acme\",pod=\"web-5d8c9-bbbbb\",container=\"web\"}} {}\n\
         container_cpu_usage_seconds_total{{namespace=\"acme\",pod=\"web-5d8c9-aaaaa\",container=\"\"}} {}\n\
         container_cpu_usage_seconds_total{{namespace=\"acme\",pod=\"web-5d8c9-aaaaa\",container=\"POD\"}} {}\n\
         # TYPE container_memory_working_set_bytes gauge\n\
         container_memory_working_set_bytes{{namespace=\"acme\",pod=\"web-5d8c9-aaaaa\",container=\"web\"}} 200000000\n\
         container_memory_working_set_bytes{{namespace=\"acme\",pod=\"web-5d8c9-bbbbb\",container=\"web\"}} 100000000\n\
         container_memory_working_set_bytes{{namespace=\"acme\",pod=\"web-5d8c9-bbbbb\",container=\"\"}} 300000000\n",
        0.5 * seconds,
        0.25 * seconds,
        0.75 * seconds,
        0.01 * seconds
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cadvisor_pages_roll_up_into_cpu_and_memory_per_workload() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics/cadvisor", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/metrics/cadvisor", get(cadvisor))
        .with_state(Instant::now());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ingest = Ingest::new(StoreLimits::default());
    let config = ScrapeConfig {
        interval: Duration::from_millis(500),
        timeout: Duration::from_millis(400),
        resources: Some(ResourceMapping::default()),
        ..ScrapeConfig::default()
    };
    let scraper = Scraper::new(reqwest::Client::new(), config, ingest.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(scraper.run(vec![Target::new(url)], shutdown));

    let web = WorkloadKey::new("acme", "web");
    let deadline = Instant::now() + Duration::from_secs(15);
    let (cpu, memory) = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = spillway_collector::clock::unix_ms() / 1000;
        let view = ingest.store().view(&web);
        if let (Some(cpu), Some(memory)) = (
            view.mean(Signal::CpuCores, now, 2),
            view.mean(Signal::MemoryBytes, now, 2),
        ) {
            break (cpu, memory);
        }
        assert!(Instant::now() < deadline, "no CPU/memory for acme/web");
    };
    assert!((cpu - 0.75).abs() < 0.075, "cores {cpu}");
    assert_eq!(memory, 3e8);
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}
