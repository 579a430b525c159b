//! One scrape of one target: fetch, parse, map samples to workloads, compute rates.

use std::hash::Hasher;

use super::{ScrapeConfig, Target};
use crate::exposition::{self, Format, LineError};
use crate::rate::CounterTracker;
use crate::signal::WorkloadKey;

/// Which counter carries gateway requests and which labels name tenant and app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QpsMapping {
    pub metric: String,
    pub tenant_label: String,
    pub app_label: String,
}

impl Default for QpsMapping {
    fn default() -> Self {
        Self {
            metric: "gateway_requests_total".into(),
            tenant_label: "tenant".into(),
            app_label: "app".into(),
        }
    }
}

/// A scrape that returned a body.
#[derive(Debug)]
pub struct ScrapeOutcome {
    /// Requests per second this target contributes, per workload (empty on a first scrape).
    pub rates: Vec<(WorkloadKey, f64)>,
    pub samples: u64,
    pub matched: u64,
    pub bytes: usize,
    /// Lines that could not be parsed: counted and skipped.
    pub malformed_lines: u64,
    pub first_malformed: Option<LineError>,
}

/// Why a scrape produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("response larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error(
        "response is not Prometheus text: {malformed} malformed lines and no samples (first: {first})"
    )]
    Garbage { malformed: u64, first: String },
}

impl ScrapeError {
    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Request(_) => "request",
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Status(_) => "status",
            ScrapeError::TooLarge { .. } => "too_large",
            ScrapeError::Garbage { .. } => "garbage",
        }
    }
}

/// Fetches and ingests one scrape of `target` into `tracker`.
pub async fn scrape_once(
    client: &reqwest::Client,
    target: &Target,
    config: &ScrapeConfig,
    tracker: &mut CounterTracker,
    at_ms: i64,
) -> Result<ScrapeOutcome, ScrapeError> {
    let (body, format) =
        tokio::time::timeout(config.timeout, fetch(client, target, config.max_body_bytes))
            .await
            .map_err(|_| ScrapeError::Timeout(config.timeout))??;
    ingest_body(&body, format, &config.mapping, tracker, at_ms)
}

/// [`scrape_once`], plus CPU and memory from the same page when the config maps
/// cAdvisor series (`cpu` holds the target's CPU counter state).
pub async fn scrape_with_resources(
    client: &reqwest::Client,
    target: &Target,
    config: &ScrapeConfig,
    tracker: &mut CounterTracker,
    cpu: &mut CounterTracker,
    at_ms: i64,
) -> (
    Result<ScrapeOutcome, ScrapeError>,
    Option<crate::resources::ResourceOutcome>,
) {
    let fetched =
        tokio::time::timeout(config.timeout, fetch(client, target, config.max_body_bytes))
            .await
            .map_err(|_| ScrapeError::Timeout(config.timeout))
            .and_then(|fetched| fetched);
    let (body, format) = match fetched {
        Ok(fetched) => fetched,
        Err(error) => return (Err(error), None),
    };
    let outcome = ingest_body(&body, format, &config.mapping, tracker, at_ms);
    let resources = match (&outcome, &config.resources) {
        (Ok(_), Some(mapping)) => Some(crate::resources::ingest_resources_body(
            &body, format, mapping, cpu, at_ms,
        )),
        _ => None,
    };
    (outcome, resources)
}

async fn fetch(
    client: &reqwest::Client,
    target: &Target,
    limit: usize,
) -> Result<(Vec<u8>, Format), ScrapeError> {
    let response = client
        .get(&target.url)
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(ScrapeError::Request)?;
    if !response.status().is_success() {
        return Err(ScrapeError::Status(response.status()));
    }
    let format = match response.headers().get(reqwest::header::CONTENT_TYPE) {
        Some(value)
            if value
                .as_bytes()
                .starts_with(b"application/openmetrics-text") =>
        {
            Format::OpenMetrics
        }
        _ => Format::PrometheusText,
    };
    if response
        .content_length()
        .is_some_and(|len| len as usize > limit)
    {
        return Err(ScrapeError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(
        response
            .content_length()
            .unwrap_or(16 << 10)
            .min(limit as u64) as usize,
    );
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(ScrapeError::Request)? {
        if body.len() + chunk.len() > limit {
            return Err(ScrapeError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, format))
}

/// Parses a scraped body and feeds the mapped counters to `tracker`. Pure apart from the
/// tracker's state, so it is tested without a network.
pub fn ingest_body(
    body: &[u8],
    format: Format,
    mapping: &QpsMapping,
    tracker: &mut CounterTracker,
    at_ms: i64,
) -> Result<ScrapeOutcome, ScrapeError> {
    tracker.begin(at_ms);
    let mut matched = 0u64;
    let summary = exposition::parse_samples_as(body, format, |sample| {
        if sample.name != mapping.metric {
            return;
        }
        let (Some(tenant), Some(app)) = (
            sample.label(&mapping.tenant_label),
            sample.label(&mapping.app_label),
        ) else {
            return;
        };
        let (tenant, app) = (tenant.to_cow(), app.to_cow());
        if tenant.is_empty() || app.is_empty() {
            return;
        }
        let mut series = tracker.series_hasher();
        series.write(sample.name.as_bytes());
        series.write_u8(0xff);
        series.write(sample.label_set_raw().as_bytes());
        let id = series.finish();
        tracker.observe(id, &tenant, &app, sample.value);
        matched += 1;
    });
    if summary.samples == 0 && summary.errors > 0 {
        // Not finishing the scrape keeps the tracker's previous points: a garbled
        // response says nothing about traffic, and the next good scrape's rate spans
        // both intervals.
        let first = summary
            .first_errors
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(ScrapeError::Garbage {
            malformed: summary.errors,
            first,
        });
    }
    Ok(ScrapeOutcome {
        rates: tracker.finish(),
        samples: summary.samples,
        matched,
        bytes: body.len(),
        malformed_lines: summary.errors,
        first_malformed: summary.first_errors.into_iter().next(),
    })
}
