//! A PromQL source: for installations whose traffic already lives in a Prometheus,
//! Thanos, Mimir or VictoriaMetrics, query its `/api/v1/query` on an interval with one
//! expression per signal (e.g. `sum by (tenant, app) (rate(gateway_requests_total[1m]))`)
//! and feed the instant vector, mapped by tenant/app labels, into [`Ingest`].
//!
//! A failed query leaves the source's last values in place until staleness drops them,
//! as a failed scrape does: a slow TSDB must not read as traffic vanishing.

mod range;
mod response;

pub use range::{History, MAX_HISTORY_SECONDS, history, parse_matrix, per_second, workload_expr};
pub use response::{VectorResult, parse_vector};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::ingest::Ingest;
use crate::signal::Signal;

/// One expression and how its result names workloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromqlQuery {
    pub signal: Signal,
    pub expr: String,
    pub tenant_label: String,
    pub app_label: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromqlConfig {
    /// Base URL of the Prometheus-compatible API, e.g. `http://prometheus:9090`.
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub queries: Vec<PromqlQuery>,
}

/// Why a query produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum PromqlError {
    #[error("invalid URL '{url}': {message}")]
    Url { url: String, message: String },
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("response is not Prometheus API JSON: {0}")]
    Json(String),
    #[error("query failed ({error_type}): {error}")]
    Failed { error_type: String, error: String },
    #[error("expected an instant vector, got a {0}")]
    NotVector(String),
    #[error("expected a range vector (matrix), got a {0}")]
    NotMatrix(String),
    #[error("no query for the {0} signal is configured")]
    NoQuery(&'static str),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

#[derive(Debug, Default)]
pub struct PromqlStats {
    pub queries: AtomicU64,
    pub failures: AtomicU64,
    pub samples: AtomicU64,
    /// Result samples without the tenant/app labels or with a non-finite value.
    pub samples_skipped: AtomicU64,
}

/// Largest response read: a vector of every workload is far smaller.
const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Runs the configured queries on their interval.
pub struct PromqlSource {
    client: reqwest::Client,
    config: PromqlConfig,
    ingest: Arc<Ingest>,
    stats: Arc<PromqlStats>,
}

/// Oldest timestamp an answer is stored at (the accepted past of pushed samples).
const MAX_ANSWER_AGE_MS: i64 = 5 * 60_000;

impl PromqlSource {
    pub fn new(client: reqwest::Client, config: PromqlConfig, ingest: Arc<Ingest>) -> Self {
        Self {
            client,
            config,
            ingest,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<PromqlStats> {
        self.stats.clone()
    }

    /// Runs every query once and applies the results; one error per failed query.
    pub async fn query_all(&self, now_ms: i64) -> Vec<PromqlError> {
        let mut errors = Vec::new();
        for (index, query) in self.config.queries.iter().enumerate() {
            self.stats.queries.fetch_add(1, Ordering::Relaxed);
            match self.query(query, now_ms).await {
                Ok(result) => {
                    self.stats
                        .samples
                        .fetch_add(result.values.len() as u64, Ordering::Relaxed);
                    self.stats
                        .samples_skipped
                        .fetch_add(result.skipped, Ordering::Relaxed);
                    let source: Arc<str> = format!("promql/{index}").into();
                    // Asked for `time=now`: an answer stamped otherwise is a broken or
                    // hostile server's, and must not write into the far past.
                    let at_ms = result
                        .at_ms
                        .unwrap_or(now_ms)
                        .clamp(now_ms.saturating_sub(MAX_ANSWER_AGE_MS), now_ms);
                    self.ingest
                        .apply(&source, query.signal, result.values, at_ms);
                }
                Err(error) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(expr = %query.expr, %error, "PromQL query failed");
                    errors.push(error);
                }
            }
        }
        errors
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            self.query_all(crate::clock::unix_ms()).await;
        }
    }

    async fn query(&self, query: &PromqlQuery, now_ms: i64) -> Result<VectorResult, PromqlError> {
        let time = format!("{:.3}", now_ms as f64 / 1000.0);
        let body = get(
            &self.client,
            &self.config,
            "query",
            &[("query", query.expr.as_str()), ("time", time.as_str())],
        )
        .await?;
        parse_vector(&body, query)
    }
}

/// One GET of the Prometheus API at `{url}/api/v1/{endpoint}`, bounded by the config's
/// timeout and the response size; the body of a success, or of an error Prometheus
/// explains in JSON.
pub(crate) async fn get(
    client: &reqwest::Client,
    config: &PromqlConfig,
    endpoint: &str,
    params: &[(&str, &str)],
) -> Result<Vec<u8>, PromqlError> {
    let base = config.url.trim_end_matches('/');
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/{endpoint}")).map_err(|e| {
        PromqlError::Url {
            url: config.url.clone(),
            message: e.to_string(),
        }
    })?;
    url.query_pairs_mut().extend_pairs(params);
    let timeout = config.timeout;
    tokio::time::timeout(timeout, async {
        let mut response = client.get(url).send().await.map_err(PromqlError::Request)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(PromqlError::Request)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(PromqlError::TooLarge(MAX_RESPONSE_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        // Prometheus answers query errors with 4xx/5xx and a JSON body that says why.
        if !status.is_success() && !body.starts_with(b"{") {
            return Err(PromqlError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            });
        }
        Ok(body)
    })
    .await
    .map_err(|_| PromqlError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query the parsers' tests map answers with.
    pub(super) fn query() -> PromqlQuery {
        PromqlQuery {
            signal: Signal::Qps,
            expr: "sum by (tenant, app) (rate(gateway_requests_total[1m]))".into(),
            tenant_label: "tenant".into(),
            app_label: "app".into(),
        }
    }
}
