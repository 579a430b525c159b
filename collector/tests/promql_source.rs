//! The PromQL source against an in-test Prometheus HTTP API on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use spillway_collector::ingest::Ingest;
use spillway_collector::promql::{PromqlConfig, PromqlQuery, PromqlSource};
use spillway_collector::store::StoreLimits;
use spillway_collector::{Signal, SignalView, WorkloadKey};

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<String>>>,
    answer: Arc<Mutex<(u16, String)>>,
}

async fn query(
    State(fake): State<Fake>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> (axum::http::StatusCode, String) {
    fake.seen
        .lock()
        .unwrap()
        .push(params.get("query").cloned().unwrap_or_default());
    let (status, body) = fake.answer.lock().unwrap().clone();
    (axum::http::StatusCode::from_u16(status).unwrap(), body)
}

#[tokio::test]
async fn query_results_land_per_workload_and_failures_keep_the_last_values() {
    let fake = Fake::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v1/query", get(query))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let now_s = spillway_collector::clock::unix_ms() / 1000;
    *fake.answer.lock().unwrap() = (
        200,
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[
            {{"metric":{{"tenant":"acme","app":"web"}},"value":[{now_s},"42.5"]}}]}}}}"#
        ),
    );
    let ingest = Ingest::new(StoreLimits::default());
    let expr = r#"sum by (tenant, app) (rate(gateway_requests_total{code!~"5.."}[1m]))"#;
    let source = PromqlSource::new(
        client(),
        PromqlConfig {
            url: url.clone(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            queries: vec![PromqlQuery {
                signal: Signal::Qps,
                expr: expr.into(),
                tenant_label: "tenant".into(),
                app_label: "app".into(),
            }],
        },
        ingest.clone(),
    );
    assert!(source.query_all(now_s * 1000).await.is_empty());
    assert_eq!(fake.seen.lock().unwrap().as_slice(), [expr.to_string()]);
    let web = WorkloadKey::new("acme", "web");
    assert_eq!(
        ingest.store().view(&web).mean(Signal::Qps, now_s, 1),
        Some(42.5)
    );

    *fake.answer.lock().unwrap() = (
        400,
        r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error"}"#.into(),
    );
    let errors = source.query_all(now_s * 1000 + 1000).await;
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].to_string().contains("parse error"),
        "{}",
        errors[0]
    );
    *fake.answer.lock().unwrap() = (503, "overloaded".into());
    let errors = source.query_all(now_s * 1000 + 2000).await;
    assert!(errors[0].to_string().contains("503"), "{}", errors[0]);
    assert_eq!(
        ingest.store().view(&web).newest(Signal::Qps),
        Some(now_s),
        "a failed query writes nothing"
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(source.stats().failures.load(Relaxed), 2);
}

fn client() -> reqwest::Client {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
