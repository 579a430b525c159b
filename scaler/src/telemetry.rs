//! Spillway's own metrics, exposed on `/metrics` in the Prometheus text format.
//!
//! One explicit [`Registry`] (no global state); per-workload series carry only
//! `tenant` and `app` labels so cardinality stays bounded by the policies.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use spillway_collector::WorkloadKey;
use spillway_collector::scrape::{ScrapeError, ScrapeOutcome};

use crate::policy::ReloadOutcome;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum GrpcMethod {
    IsActive,
    StreamIsActive,
    GetMetricSpec,
    GetMetrics,
    StreamMetricSpec,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: GrpcMethod,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabels {
    pub tenant: String,
    pub app: String,
}

impl From<&WorkloadKey> for WorkloadLabels {
    fn from(key: &WorkloadKey) -> Self {
        Self {
            tenant: key.tenant.to_string(),
            app: key.app.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub tenant: String,
    pub app: String,
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn grpc_histogram() -> Histogram {
    // 50 µs .. ~3.3 s: loopback answers sit at the bottom, KEDA's 3 s deadline at the top.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

fn scrape_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// Every metric Spillway exports.
pub struct Metrics {
    registry: Registry,
    pub grpc_duration: Family<GrpcLabels, Histogram, fn() -> Histogram>,
    pub grpc_streams: Gauge<i64, AtomicI64>,
    pub desired_replicas: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub current_replicas: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub active: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub qps: Family<WorkloadLabels, FloatGauge>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub scrape_duration: Histogram,
    pub scrape_up: Family<TargetLabels, Gauge<i64, AtomicI64>>,
    pub scrapes: Counter,
    pub scrape_failures: Counter,
    pub samples_scraped: Counter,
    pub malformed_lines: Counter,
    pub store_windows: Gauge<i64, AtomicI64>,
    pub store_bytes: Gauge<i64, AtomicI64>,
    pub workloads: Gauge<i64, AtomicI64>,
    pub policy_reloads: Counter,
    pub policy_reload_errors: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("spillway");
        let grpc_duration =
            Family::<GrpcLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                grpc_histogram as fn() -> Histogram,
            );
        registry.register_with_unit(
            "grpc_request_duration",
            "Time to answer a KEDA gRPC call, by method and status code",
            Unit::Seconds,
            grpc_duration.clone(),
        );
        let grpc_streams = Gauge::default();
        registry.register(
            "grpc_streams_open",
            "StreamIsActive streams currently open",
            grpc_streams.clone(),
        );
        let desired_replicas = Family::default();
        registry.register(
            "workload_desired_replicas",
            "Replicas Spillway last decided for the workload (what KEDA is served)",
            desired_replicas.clone(),
        );
        let current_replicas = Family::default();
        registry.register(
            "workload_current_replicas",
            "Replicas the last decision started from",
            current_replicas.clone(),
        );
        let active = Family::default();
        registry.register(
            "workload_active",
            "1 when the workload is active (IsActive answers true)",
            active.clone(),
        );
        let qps = Family::default();
        registry.register(
            "workload_qps",
            "Requests per second reaching the workload, summed over gateway instances",
            qps.clone(),
        );
        let decisions = Family::default();
        registry.register(
            "decisions",
            "Decisions made, by the rule that settled them",
            decisions.clone(),
        );
        let scrape_duration = scrape_histogram();
        registry.register_with_unit(
            "scrape_duration",
            "Time to fetch and ingest one scrape target",
            Unit::Seconds,
            scrape_duration.clone(),
        );
        let scrape_up = Family::default();
        registry.register(
            "scrape_target_up",
            "1 when the target's last scrape succeeded",
            scrape_up.clone(),
        );
        let scrapes = Counter::default();
        registry.register("scrapes", "Scrapes attempted", scrapes.clone());
        let scrape_failures = Counter::default();
        registry.register(
            "scrape_failures",
            "Scrapes that failed (network, status, timeout, size, garbage)",
            scrape_failures.clone(),
        );
        let samples_scraped = Counter::default();
        registry.register(
            "ingested_samples",
            "Exposition samples parsed from scrapes",
            samples_scraped.clone(),
        );
        let malformed_lines = Counter::default();
        registry.register(
            "exposition_malformed_lines",
            "Exposition lines skipped because they could not be parsed",
            malformed_lines.clone(),
        );
        let store_windows = Gauge::default();
        registry.register(
            "store_windows",
            "Signal windows held (one per workload and signal)",
            store_windows.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register_with_unit(
            "store_memory",
            "Approximate memory held by signal windows",
            Unit::Bytes,
            store_bytes.clone(),
        );
        let workloads = Gauge::default();
        registry.register(
            "workloads",
            "Workloads known from policies",
            workloads.clone(),
        );
        let policy_reloads = Counter::default();
        registry.register(
            "policy_reloads",
            "Policy directory reloads that changed something",
            policy_reloads.clone(),
        );
        let policy_reload_errors = Counter::default();
        registry.register(
            "policy_reload_errors",
            "Policy files refused on reload (the last good version keeps serving)",
            policy_reload_errors.clone(),
        );
        Self {
            registry,
            grpc_duration,
            grpc_streams,
            desired_replicas,
            current_replicas,
            active,
            qps,
            decisions,
            scrape_duration,
            scrape_up,
            scrapes,
            scrape_failures,
            samples_scraped,
            malformed_lines,
            store_windows,
            store_bytes,
            workloads,
            policy_reloads,
            policy_reload_errors,
        }
    }

    pub fn observe_grpc(&self, method: GrpcMethod, code: tonic::Code, elapsed: Duration) {
        self.grpc_duration
            .get_or_create(&GrpcLabels {
                method,
                code: code_label(code).to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_scrape(&self, duration: Duration, outcome: &Result<ScrapeOutcome, ScrapeError>) {
        self.scrape_duration.observe(duration.as_secs_f64());
        self.scrapes.inc();
        match outcome {
            Ok(scraped) => {
                self.samples_scraped.inc_by(scraped.samples);
                self.malformed_lines.inc_by(scraped.malformed_lines);
            }
            Err(_) => {
                self.scrape_failures.inc();
            }
        }
    }

    pub fn record_reload(&self, outcome: &ReloadOutcome) {
        if !outcome.changed.is_empty() || outcome.dir_error.is_some() {
            self.policy_reloads.inc();
        }
        let refused = outcome.errors.len() as u64 + u64::from(outcome.dir_error.is_some());
        self.policy_reload_errors.inc_by(refused);
        for (path, errors) in &outcome.errors {
            tracing::warn!(file = %path.display(), %errors, "policy refused; the last good version keeps serving");
        }
        if let Some(error) = &outcome.dir_error {
            tracing::warn!(%error, "policy directory unreadable; the current policies keep serving");
        }
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn stream_opened(&self) -> StreamGuard {
        self.grpc_streams.inc();
        StreamGuard {
            gauge: self.grpc_streams.clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the open-streams gauge when a stream ends for any reason.
pub struct StreamGuard {
    gauge: Gauge<i64, AtomicI64>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// gRPC status codes as the lowercase names dashboards filter on.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// The collector's own counters (samples by source, refusals, dropped samples, series
/// held), read from its stats structs when /metrics is scraped rather than mirrored.
#[derive(Clone, Debug, Default)]
pub struct CollectorStats {
    pub ingest: Option<std::sync::Arc<spillway_collector::ingest::Ingest>>,
    pub remote_write: Option<std::sync::Arc<spillway_collector::remote_write::RemoteWrite>>,
    pub push: Option<std::sync::Arc<spillway_collector::ingest_grpc::PushStats>>,
    pub promql: Option<std::sync::Arc<spillway_collector::promql::PromqlStats>>,
    pub scrape: Option<std::sync::Arc<spillway_collector::scrape::ScrapeStats>>,
}

impl Metrics {
    /// Adds the collector's counters to the registry (call before sharing `Metrics`).
    pub fn register_collector_stats(&mut self, stats: CollectorStats) {
        self.registry.register_collector(Box::new(stats));
    }
}

impl prometheus_client::collector::Collector for CollectorStats {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use std::sync::atomic::Ordering::Relaxed;

        type Rows = Vec<(&'static str, &'static str, u64)>;
        let mut family = |name: &'static str, help: &'static str, kind: MetricType, rows: Rows| {
            if rows.is_empty() {
                return Ok(());
            }
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for (label, value, number) in rows {
                let labels = [(label, value)];
                let row = metric.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(number).encode(row)?,
                    _ => ConstGauge::new(number as i64).encode(row)?,
                }
            }
            Ok::<(), std::fmt::Error>(())
        };
        let mut samples: Rows = Vec::new();
        let mut dropped: Rows = Vec::new();
        let mut series: Rows = Vec::new();
        let mut refused: Rows = Vec::new();
        if let Some(rw) = &self.remote_write {
            let s = &rw.stats;
            samples.push(("source", "remote_write", s.samples_used.load(Relaxed)));
            dropped.push((
                "reason",
                "remote_write_series_limit",
                s.samples_dropped.load(Relaxed),
            ));
            dropped.push((
                "reason",
                "remote_write_out_of_order",
                s.out_of_order.load(Relaxed),
            ));
            series.push(("source", "remote_write", rw.series_count() as u64));
            refused.push(("reason", "bad_request", s.bad_requests.load(Relaxed)));
            refused.push(("reason", "too_large", s.too_large.load(Relaxed)));
            refused.push(("reason", "unsupported", s.unsupported.load(Relaxed)));
        }
        if let Some(push) = &self.push {
            samples.push(("source", "push", push.samples_accepted.load(Relaxed)));
            dropped.push((
                "reason",
                "push_rejected",
                push.samples_rejected.load(Relaxed),
            ));
        }
        if let Some(promql) = &self.promql {
            samples.push(("source", "promql", promql.samples.load(Relaxed)));
            dropped.push((
                "reason",
                "promql_unmapped",
                promql.samples_skipped.load(Relaxed),
            ));
        }
        if let Some(scrape) = &self.scrape {
            dropped.push((
                "reason",
                "scrape_series_limit",
                scrape.dropped_samples.load(Relaxed),
            ));
        }
        if let Some(ingest) = &self.ingest {
            dropped.push((
                "reason",
                "store_full",
                ingest.stats.values_refused.load(Relaxed),
            ));
        }
        family(
            "collector_samples",
            "Samples ingested, by source (scrapes are counted in spillway_ingested_samples)",
            MetricType::Counter,
            samples,
        )?;
        family(
            "collector_dropped_samples",
            "Samples or values not used, by reason",
            MetricType::Counter,
            dropped,
        )?;
        family(
            "collector_series",
            "Series whose state the collector holds, by source",
            MetricType::Gauge,
            series,
        )?;
        family(
            "remote_write_refused_requests",
            "Remote-write requests refused, by reason (400, 413, 415)",
            MetricType::Counter,
            refused,
        )?;
        if let Some(rw) = &self.remote_write {
            let s = &rw.stats;
            family(
                "remote_write_requests",
                "Remote-write requests received",
                MetricType::Counter,
                vec![("api", "v1", s.requests.load(Relaxed))],
            )?;
            family(
                "remote_write_received_bytes",
                "Compressed remote-write body bytes received",
                MetricType::Counter,
                vec![("api", "v1", s.bytes.load(Relaxed))],
            )?;
            family(
                "remote_write_series_memory_bytes",
                "Approximate memory held by remote-write series state",
                MetricType::Gauge,
                vec![("api", "v1", rw.approximate_bytes() as u64)],
            )?;
        }
        if let Some(promql) = &self.promql {
            family(
                "promql_queries",
                "PromQL source queries, by outcome",
                MetricType::Counter,
                vec![
                    ("outcome", "ok", {
                        let all = promql.queries.load(Relaxed);
                        all.saturating_sub(promql.failures.load(Relaxed))
                    }),
                    ("outcome", "failed", promql.failures.load(Relaxed)),
                ],
            )?;
        }
        Ok(())
    }
}
