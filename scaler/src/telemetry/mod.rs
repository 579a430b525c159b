//! Spillway's own metrics, exposed on `/metrics` in the Prometheus text format.
//!
//! One explicit [`Registry`] (no global state); per-workload series carry only
//! `tenant` and `app` labels so cardinality stays bounded by the policies.
//!
//! # Layout
//!
//! - this module: [`Metrics`], the families Spillway updates as it runs, and their labels.
//! - [`collector_stats`]: the collector's counters, read from its stats at scrape time.
//! - [`text`]: OpenMetrics rewritten as the Prometheus text format 0.0.4.

mod collector_stats;
mod text;

pub use collector_stats::CollectorStats;
pub use text::openmetrics_to_text;

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
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HpaFindingLabels {
    pub tenant: String,
    pub app: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HpaToleranceLabels {
    pub tenant: String,
    pub app: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InputLabels {
    pub input: String,
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
    pub cpu_cores: Family<WorkloadLabels, FloatGauge>,
    pub memory_bytes: Family<WorkloadLabels, FloatGauge>,
    pub ready_replicas: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub band_low_replicas: Family<WorkloadLabels, FloatGauge>,
    pub band_high_replicas: Family<WorkloadLabels, FloatGauge>,
    pub load_replicas: Family<WorkloadLabels, FloatGauge>,
    pub regular_replicas: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub burst_replicas: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub shortfall_replicas: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub cost_per_hour: Family<WorkloadLabels, FloatGauge>,
    pub ingested_values: Family<SourceLabels, Counter>,
    pub scrape_target_samples: Family<TargetLabels, Gauge<i64, AtomicI64>>,
    pub policy_files_refused: Gauge<i64, AtomicI64>,
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
    pub policy_reload_panics: Counter,
    /// The HTTP port's connections: refused at the cap, and open.
    pub http: crate::listener::HttpStats,
    pub hpa_passthrough: Family<WorkloadLabels, Gauge<i64, AtomicI64>>,
    pub hpa_findings: Family<HpaFindingLabels, Gauge<i64, AtomicI64>>,
    pub hpa_tolerance: Family<HpaToleranceLabels, FloatGauge>,
    pub writes_refused: Family<InputLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("spillway"),
            grpc_duration: Family::<GrpcLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                grpc_histogram as fn() -> Histogram,
            ),
            grpc_streams: Gauge::default(),
            desired_replicas: Family::default(),
            current_replicas: Family::default(),
            active: Family::default(),
            qps: Family::default(),
            cpu_cores: Family::default(),
            memory_bytes: Family::default(),
            ready_replicas: Family::default(),
            band_low_replicas: Family::default(),
            band_high_replicas: Family::default(),
            load_replicas: Family::default(),
            regular_replicas: Family::default(),
            burst_replicas: Family::default(),
            shortfall_replicas: Family::default(),
            cost_per_hour: Family::default(),
            ingested_values: Family::default(),
            scrape_target_samples: Family::default(),
            policy_files_refused: Gauge::default(),
            decisions: Family::default(),
            scrape_duration: scrape_histogram(),
            scrape_up: Family::default(),
            scrapes: Counter::default(),
            scrape_failures: Counter::default(),
            samples_scraped: Counter::default(),
            malformed_lines: Counter::default(),
            store_windows: Gauge::default(),
            store_bytes: Gauge::default(),
            workloads: Gauge::default(),
            policy_reloads: Counter::default(),
            policy_reload_errors: Counter::default(),
            http: crate::listener::HttpStats::default(),
            policy_reload_panics: Counter::default(),
            hpa_passthrough: Family::default(),
            hpa_findings: Family::default(),
            hpa_tolerance: Family::default(),
            writes_refused: Family::default(),
        };
        // Registration order is the order /metrics lists the families in.
        metrics.register_grpc();
        metrics.register_workloads();
        metrics.register_inputs();
        metrics.register_process();
        metrics
    }

    /// The KEDA gRPC service.
    fn register_grpc(&mut self) {
        self.registry.register_with_unit(
            "grpc_request_duration",
            "Time to answer a KEDA gRPC call, by method and status code",
            Unit::Seconds,
            self.grpc_duration.clone(),
        );
        self.registry.register(
            "grpc_streams_open",
            "StreamIsActive streams currently open",
            self.grpc_streams.clone(),
        );
    }

    /// Per-workload series: the decision, its inputs, the band and the placement.
    fn register_workloads(&mut self) {
        self.registry.register(
            "workload_desired_replicas",
            "Replicas Spillway last decided for the workload (what KEDA is served)",
            self.desired_replicas.clone(),
        );
        self.registry.register(
            "workload_current_replicas",
            "Replicas the last decision started from",
            self.current_replicas.clone(),
        );
        self.registry.register(
            "workload_active",
            "1 when the workload is active (IsActive answers true)",
            self.active.clone(),
        );
        self.registry.register(
            "workload_qps",
            "Requests per second reaching the workload, summed over gateway instances",
            self.qps.clone(),
        );
        self.registry.register(
            "workload_cpu_cores",
            "CPU in use by the workload's pods, in cores (5 s mean)",
            self.cpu_cores.clone(),
        );
        self.registry.register_with_unit(
            "workload_memory",
            "Memory in use by the workload's pods (5 s mean)",
            Unit::Bytes,
            self.memory_bytes.clone(),
        );
        self.registry.register(
            "workload_ready_replicas",
            "Ready replicas the last decision started from",
            self.ready_replicas.clone(),
        );
        self.registry.register(
            "workload_band_low_replicas",
            "Hysteresis band low edge: the dominant signal's load, in replicas at target, below which the workload scales down",
            self.band_low_replicas.clone(),
        );
        self.registry.register(
            "workload_band_high_replicas",
            "Hysteresis band high edge: the dominant signal's load, in replicas at target, above which the workload scales up",
            self.band_high_replicas.clone(),
        );
        self.registry.register(
            "workload_load_replicas",
            "The dominant signal's load expressed in replicas at target (compare with the band edges)",
            self.load_replicas.clone(),
        );
        self.registry.register(
            "workload_regular_replicas",
            "Desired replicas placed on regular nodes",
            self.regular_replicas.clone(),
        );
        self.registry.register(
            "workload_burst_replicas",
            "Desired replicas placed on virtual (burst) nodes",
            self.burst_replicas.clone(),
        );
        self.registry.register(
            "workload_shortfall_replicas",
            "Desired replicas with no place (regular nodes full, burst disabled, capped or full)",
            self.shortfall_replicas.clone(),
        );
        self.registry.register(
            "workload_cost_per_hour",
            "What the workload's bound pods cost per hour, in the cost model's currency",
            self.cost_per_hour.clone(),
        );
    }

    /// Ingest, scrapes, policy refusals and decisions by rule.
    fn register_inputs(&mut self) {
        self.registry.register(
            "ingested_values",
            "Per-workload signal values ingested, by source (scrape, or a replica source reporting pod usage)",
            self.ingested_values.clone(),
        );
        self.registry.register(
            "scrape_target_samples",
            "Samples parsed from the target's last successful scrape",
            self.scrape_target_samples.clone(),
        );
        self.registry.register(
            "policy_files_refused",
            "Policy files whose latest version is refused (the last good version serves)",
            self.policy_files_refused.clone(),
        );
        self.registry.register(
            "decisions",
            "Decisions made, by the rule that settled them",
            self.decisions.clone(),
        );
        self.registry.register_with_unit(
            "scrape_duration",
            "Time to fetch and ingest one scrape target",
            Unit::Seconds,
            self.scrape_duration.clone(),
        );
        self.registry.register(
            "scrape_target_up",
            "1 when the target's last scrape succeeded",
            self.scrape_up.clone(),
        );
        self.registry
            .register("scrapes", "Scrapes attempted", self.scrapes.clone());
        self.registry.register(
            "scrape_failures",
            "Scrapes that failed (network, status, timeout, size, garbage)",
            self.scrape_failures.clone(),
        );
        self.registry.register(
            "ingested_samples",
            "Exposition samples parsed from scrapes",
            self.samples_scraped.clone(),
        );
        self.registry.register(
            "exposition_malformed_lines",
            "Exposition lines skipped because they could not be parsed",
            self.malformed_lines.clone(),
        );
    }

    /// The store, policy reloads, the HTTP port, the HPA views and HA refusals.
    fn register_process(&mut self) {
        self.registry.register(
            "store_windows",
            "Signal windows held (one per workload and signal)",
            self.store_windows.clone(),
        );
        self.registry.register_with_unit(
            "store_memory",
            "Approximate memory held by signal windows",
            Unit::Bytes,
            self.store_bytes.clone(),
        );
        self.registry.register(
            "workloads",
            "Workloads known from policies",
            self.workloads.clone(),
        );
        self.registry.register(
            "policy_reloads",
            "Policy directory reloads that changed something",
            self.policy_reloads.clone(),
        );
        self.registry.register(
            "policy_reload_errors",
            "Policy files refused on reload (the last good version keeps serving)",
            self.policy_reload_errors.clone(),
        );
        self.registry.register(
            "http_connections_refused",
            "HTTP connections closed on arrival because the connection cap was reached",
            self.http.connections_refused.clone(),
        );
        self.registry.register(
            "http_connections",
            "HTTP connections open",
            self.http.connections_open.clone(),
        );
        self.registry.register(
            "http_tls_handshakes_failed",
            "HTTP connections closed because their TLS handshake failed (no or an untrusted client certificate, plaintext on the TLS port) or did not finish within listen.headerTimeout",
            self.http.tls_handshakes_failed.clone(),
        );
        self.registry.register(
            "policy_reload_panics",
            "Panics caught while reloading policies (the file, or the whole reload, is refused; what serves keeps serving)",
            self.policy_reload_panics.clone(),
        );
        self.registry.register(
            "hpa_passthrough",
            "1 when the HPA KEDA created applies Spillway's count as is, 0 when it changes it (see spillway_hpa_findings)",
            self.hpa_passthrough.clone(),
        );
        self.registry.register(
            "hpa_findings",
            "1 for each way the workload's HPA is not a pass-through, by reason",
            self.hpa_findings.clone(),
        );
        self.registry.register(
            "hpa_tolerance",
            "The tolerance the workload's HPA applies, by direction (set on the HPA, or the cluster default 0.1)",
            self.hpa_tolerance.clone(),
        );
        self.registry.register(
            "ha_writes_refused",
            "Writes (remote-write, gRPC push) refused because this replica runs in HA mode and one write would reach only it",
            self.writes_refused.clone(),
        );
    }

    /// Mirrors the HPA views, read at scrape time: every series is rebuilt, so a
    /// workload or a finding that went away leaves none behind.
    pub fn refresh_hpa(
        &self,
        views: &[(WorkloadKey, std::sync::Arc<crate::cluster::hpa::HpaView>)],
    ) {
        self.hpa_passthrough.clear();
        self.hpa_findings.clear();
        self.hpa_tolerance.clear();
        for (key, view) in views {
            let labels = WorkloadLabels::from(key);
            self.hpa_passthrough
                .get_or_create(&labels)
                .set(i64::from(view.passes_through()));
            for finding in &view.findings {
                self.hpa_findings
                    .get_or_create(&HpaFindingLabels {
                        tenant: labels.tenant.clone(),
                        app: labels.app.clone(),
                        reason: finding.reason.as_str().to_owned(),
                    })
                    .set(1);
            }
            for (direction, value) in [("up", view.tolerance.up), ("down", view.tolerance.down)] {
                self.hpa_tolerance
                    .get_or_create(&HpaToleranceLabels {
                        tenant: labels.tenant.clone(),
                        app: labels.app.clone(),
                        direction: direction.to_owned(),
                    })
                    .set(value);
            }
        }
    }

    pub fn count_refused_write(&self, input: &str) {
        self.writes_refused
            .get_or_create(&InputLabels {
                input: input.to_owned(),
            })
            .inc();
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
                self.count_ingested("scrape", scraped.rates.len());
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
        self.policy_reload_panics
            .inc_by(outcome.file_panics + u64::from(outcome.panicked.is_some()));
        if let Some(message) = &outcome.panicked {
            tracing::error!(%message, "policy reload panicked; the policies in force keep serving");
        }
        // A file that stays bad is reported by every reload; count and log it when its
        // content changes, and let `policy_files_refused` show that it is still bad.
        let fresh: Vec<_> = outcome
            .errors
            .iter()
            .filter(|(path, _)| outcome.changed.contains(path))
            .collect();
        let refused = fresh.len() as u64 + u64::from(outcome.dir_error.is_some());
        self.policy_reload_errors.inc_by(refused);
        for (path, errors) in fresh {
            tracing::warn!(file = %path.display(), %errors, "policy refused; the last good version keeps serving");
        }
        if let Some(error) = &outcome.dir_error {
            tracing::warn!(%error, "policy directory unreadable; the current policies keep serving");
        }
    }

    /// Counts per-workload values a source handed to ingest.
    pub fn count_ingested(&self, source: &str, values: usize) {
        self.ingested_values
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .inc_by(values as u64);
    }

    /// Drops every per-workload series of a workload no longer in any policy, so removed
    /// workloads do not linger on dashboards.
    pub fn forget_workload(&self, labels: &WorkloadLabels) {
        for family in [
            &self.desired_replicas,
            &self.current_replicas,
            &self.ready_replicas,
            &self.active,
            &self.regular_replicas,
            &self.burst_replicas,
            &self.shortfall_replicas,
        ] {
            family.remove(labels);
        }
        for family in [
            &self.qps,
            &self.cpu_cores,
            &self.memory_bytes,
            &self.band_low_replicas,
            &self.band_high_replicas,
            &self.load_replicas,
            &self.cost_per_hour,
        ] {
            family.remove(labels);
        }
        for rule in crate::engine::Rule::ALL {
            self.decisions.remove(&DecisionLabels {
                tenant: labels.tenant.clone(),
                app: labels.app.clone(),
                rule: rule.label().to_owned(),
            });
        }
    }

    /// Counts a stream as open until the returned guard is dropped.
    pub fn stream_opened(&self) -> StreamGuard {
        self.grpc_streams.inc();
        StreamGuard {
            gauge: self.grpc_streams.clone(),
        }
    }

    /// The Prometheus text format 0.0.4 (what `promtool check metrics` and older
    /// scrapers read): see [`openmetrics_to_text`].
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode())
    }

    /// The OpenMetrics text exposition of every metric.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_workload_series_carry_only_tenant_and_app() {
        let m = Metrics::new();
        let labels = WorkloadLabels {
            tenant: "acme".into(),
            app: "web".into(),
        };
        m.burst_replicas.get_or_create(&labels).set(2);
        m.cpu_cores.get_or_create(&labels).set(1.5);
        let text = m.encode_text();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap_or_default();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
        assert!(text.contains("spillway_workload_burst_replicas{tenant=\"acme\",app=\"web\"} 2"));
        assert!(text.contains("spillway_workload_cpu_cores{tenant=\"acme\",app=\"web\"} 1.5"));
    }

    #[test]
    fn a_removed_workload_leaves_no_series() {
        let m = Metrics::new();
        let labels = WorkloadLabels {
            tenant: "acme".into(),
            app: "gone".into(),
        };
        m.desired_replicas.get_or_create(&labels).set(3);
        m.qps.get_or_create(&labels).set(10.0);
        m.decisions
            .get_or_create(&DecisionLabels {
                tenant: "acme".into(),
                app: "gone".into(),
                rule: "scaled_up".into(),
            })
            .inc();
        assert!(m.encode_text().contains("app=\"gone\""));
        m.forget_workload(&labels);
        assert!(!m.encode_text().contains("app=\"gone\""));
    }

    #[test]
    fn hpa_series_mirror_the_views_and_go_with_them() {
        use crate::cluster::hpa::{Finding, FindingReason, HpaView, Tolerances};
        let m = Metrics::new();
        let view = |findings: Vec<Finding>| {
            std::sync::Arc::new(HpaView {
                name: "keda-hpa-web".into(),
                tolerance: Tolerances {
                    up: 0.0,
                    down: 0.1,
                    up_from_hpa: true,
                    down_from_hpa: false,
                },
                min_replicas: 1,
                max_replicas: 100,
                findings,
            })
        };
        let web = WorkloadKey::new("acme", "web");
        let api = WorkloadKey::new("acme", "api");
        let stabilized = Finding {
            reason: FindingReason::ScaleDownStabilization,
            message: "300s".into(),
        };
        m.refresh_hpa(&[(web.clone(), view(vec![stabilized])), (api, view(vec![]))]);
        let text = m.encode_text();
        for series in [
            "spillway_hpa_passthrough{tenant=\"acme\",app=\"web\"} 0",
            "spillway_hpa_passthrough{tenant=\"acme\",app=\"api\"} 1",
            "spillway_hpa_findings{tenant=\"acme\",app=\"web\",reason=\"ScaleDownStabilization\"} 1",
            "spillway_hpa_tolerance{tenant=\"acme\",app=\"web\",direction=\"up\"} 0",
            "spillway_hpa_tolerance{tenant=\"acme\",app=\"web\",direction=\"down\"} 0.1",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        assert!(
            !text.contains("app=\"api\",reason"),
            "no findings, no series"
        );
        // Fixed: the finding's series goes; the workload gone: all of its series go.
        m.refresh_hpa(&[(web, view(vec![]))]);
        let text = m.encode_text();
        assert!(text.contains("spillway_hpa_passthrough{tenant=\"acme\",app=\"web\"} 1"));
        assert!(
            !text.contains("reason=\"ScaleDownStabilization\""),
            "{text}"
        );
        assert!(!text.contains("app=\"api\""), "{text}");
    }
}
