//! The collector's counters on `/metrics`, read from its stats structs at scrape time.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Metrics;

/// The collector's own counters (samples by source, refusals, dropped samples, series
/// held), read from its stats structs when /metrics is scraped rather than mirrored.
#[derive(Clone, Debug, Default)]
pub struct CollectorStats {
    pub ingest: Option<std::sync::Arc<spillway_collector::ingest::Ingest>>,
    pub remote_write: Option<std::sync::Arc<spillway_collector::remote_write::RemoteWrite>>,
    pub push: Option<std::sync::Arc<spillway_collector::ingest_grpc::PushStats>>,
    pub promql: Option<std::sync::Arc<spillway_collector::promql::PromqlStats>>,
    pub scrape: Option<std::sync::Arc<spillway_collector::scrape::ScrapeStats>>,
    pub shards: Option<std::sync::Arc<spillway_collector::shard::FanOutStats>>,
    /// This process is a collector shard answering the scalers.
    pub shard_server: Option<std::sync::Arc<spillway_collector::shard::ShardServerStats>>,
}

impl Metrics {
    /// Adds the collector's counters to the registry (call before sharing `Metrics`).
    /// Calls refused by the access rules, by input and reason.
    pub fn register_access(&mut self, access: &crate::access::Access) {
        self.registry.register(
            "access_denied",
            "Calls refused by the access rules, by input (keda, write, status, metrics, shard) and reason (unauthenticated, bad_credential, forbidden)",
            access.denials(),
        );
    }

    /// A collector of another part's counts (e.g. the ScalingPolicy watcher's).
    pub fn register_collector(
        &mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) {
        self.registry.register_collector(collector);
    }

    pub fn register_collector_stats(&mut self, stats: CollectorStats) {
        self.registry.register_collector(Box::new(stats));
    }
}

type Rows = Vec<(&'static str, &'static str, u64)>;

/// The rows of the families every input adds to, gathered before they are written.
#[derive(Default)]
struct SourceRows {
    samples: Rows,
    dropped: Rows,
    series: Rows,
    refused: Rows,
}

/// One family of constant counters or gauges, each row one label; none when empty.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    rows: Rows,
) -> Result<(), std::fmt::Error> {
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
    Ok(())
}

impl CollectorStats {
    /// Samples, dropped samples, series and refusals of every input this process has.
    fn source_rows(&self) -> SourceRows {
        let mut rows = SourceRows::default();
        if let Some(rw) = &self.remote_write {
            let s = &rw.stats;
            rows.samples
                .push(("source", "remote_write", s.samples_used.load(Relaxed)));
            rows.dropped.push((
                "reason",
                "remote_write_series_limit",
                s.samples_dropped.load(Relaxed),
            ));
            rows.dropped.push((
                "reason",
                "remote_write_out_of_order",
                s.out_of_order.load(Relaxed),
            ));
            for (reason, counter) in [
                ("remote_write_tenant_quota", &s.samples_dropped_tenant_quota),
                ("remote_write_too_old", &s.too_old),
                ("remote_write_too_new", &s.too_new),
                ("remote_write_invalid_value", &s.invalid_value),
                ("remote_write_ha_not_elected", &s.ha_not_elected),
                ("remote_write_ha_too_many_clusters", &s.ha_too_many_clusters),
                ("remote_write_tenant_not_allowed", &s.tenant_not_allowed),
                ("remote_write_unknown_workload", &s.unknown_workload),
            ] {
                rows.dropped.push(("reason", reason, counter.load(Relaxed)));
            }
            rows.series
                .push(("source", "remote_write", rw.series_count() as u64));
            rows.refused
                .push(("reason", "bad_request", s.bad_requests.load(Relaxed)));
            rows.refused
                .push(("reason", "too_large", s.too_large.load(Relaxed)));
            rows.refused
                .push(("reason", "unsupported", s.unsupported.load(Relaxed)));
            rows.refused.push(("reason", "busy", s.busy.load(Relaxed)));
            rows.refused
                .push(("reason", "body_timeout", s.body_timeouts.load(Relaxed)));
        }
        if let Some(push) = &self.push {
            rows.samples
                .push(("source", "push", push.samples_accepted.load(Relaxed)));
            for (reason, counter) in [
                ("push_too_old", &push.rejected_too_old),
                ("push_too_new", &push.rejected_too_new),
                ("push_invalid_value", &push.rejected_invalid_value),
                ("push_malformed", &push.rejected_malformed),
                ("push_tenant_not_allowed", &push.rejected_tenant_not_allowed),
                ("push_unknown_workload", &push.rejected_unknown_workload),
            ] {
                rows.dropped.push(("reason", reason, counter.load(Relaxed)));
            }
        }
        if let Some(promql) = &self.promql {
            rows.samples
                .push(("source", "promql", promql.samples.load(Relaxed)));
            rows.dropped.push((
                "reason",
                "promql_unmapped",
                promql.samples_skipped.load(Relaxed),
            ));
        }
        if let Some(scrape) = &self.scrape {
            rows.dropped.push((
                "reason",
                "scrape_series_limit",
                scrape.dropped_samples.load(Relaxed),
            ));
        }
        if let Some(ingest) = &self.ingest {
            rows.dropped.push((
                "reason",
                "store_full",
                ingest.stats.values_refused.load(Relaxed),
            ));
            rows.dropped.push((
                "reason",
                "out_of_range",
                ingest.stats.values_out_of_range.load(Relaxed),
            ));
            rows.dropped.push((
                "reason",
                "unlisted_namespace",
                ingest.stats.values_unmapped.load(Relaxed),
            ));
            rows.dropped.push((
                "reason",
                "store_tenant_quota",
                ingest.stats.values_refused_tenant_quota.load(Relaxed),
            ));
            rows.dropped
                .push(("reason", "too_many_sources", ingest.refused_sources()));
        }
        rows
    }

    /// Families only some inputs have: remote-write's, PromQL's, the shard server's.
    fn encode_input_families(
        &self,
        encoder: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        if let Some(rw) = &self.remote_write {
            let s = &rw.stats;
            family(
                encoder,
                "remote_write_requests",
                "Remote-write requests received",
                MetricType::Counter,
                vec![("api", "v1", s.requests.load(Relaxed))],
            )?;
            family(
                encoder,
                "remote_write_received_bytes",
                "Compressed remote-write body bytes received",
                MetricType::Counter,
                vec![("api", "v1", s.bytes.load(Relaxed))],
            )?;
            family(
                encoder,
                "remote_write_series_memory_bytes",
                "Approximate memory held by remote-write series state",
                MetricType::Gauge,
                vec![("api", "v1", rw.approximate_bytes() as u64)],
            )?;
            family(
                encoder,
                "remote_write_ha_failovers",
                "HA Prometheus clusters whose elected replica changed after it went silent",
                MetricType::Counter,
                vec![("api", "v1", rw.ha().failovers())],
            )?;
            family(
                encoder,
                "remote_write_ha_clusters",
                "HA Prometheus clusters with an elected replica",
                MetricType::Gauge,
                vec![("api", "v1", rw.ha().cluster_count() as u64)],
            )?;
        }
        if let Some(promql) = &self.promql {
            family(
                encoder,
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
        if let Some(server) = &self.shard_server {
            family(
                encoder,
                "shard_snapshots",
                "Snapshot calls this collector shard answered, by outcome",
                MetricType::Counter,
                vec![
                    ("outcome", "ok", server.snapshots.load(Relaxed)),
                    ("outcome", "wrong_shard", server.refused.load(Relaxed)),
                ],
            )?;
        }
        Ok(())
    }
}

/// Exact quantiles (3 significant digits) over the process's life from the collector's
/// hdrhistogram, beside the bucketed histogram Prometheus sums.
fn encode_scrape_quantiles(
    encoder: &mut DescriptorEncoder,
    scrape: &spillway_collector::scrape::ScrapeStats,
) -> Result<(), std::fmt::Error> {
    if scrape.scrapes.load(Relaxed) == 0 {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(
        "scrape_duration_quantile_seconds",
        "Scrape duration at each quantile since start (hdrhistogram)",
        None,
        MetricType::Gauge,
    )?;
    for (label, q) in [("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99), ("1", 1.0)] {
        // Not `quantile`: that label belongs to summaries, and this is a gauge.
        let labels = [("q", label)];
        ConstGauge::new(scrape.duration_quantile(q).as_secs_f64())
            .encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for CollectorStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.source_rows();
        let encoder = &mut encoder;
        family(
            encoder,
            "collector_samples",
            "Samples ingested, by source (scrapes are counted in spillway_ingested_samples)",
            MetricType::Counter,
            rows.samples,
        )?;
        family(
            encoder,
            "collector_dropped_samples",
            "Samples or values not used, by reason",
            MetricType::Counter,
            rows.dropped,
        )?;
        family(
            encoder,
            "collector_series",
            "Series whose state the collector holds, by source",
            MetricType::Gauge,
            rows.series,
        )?;
        family(
            encoder,
            "remote_write_refused_requests",
            "Remote-write requests refused, by reason (400, 413, 415; busy 503, body_timeout 408)",
            MetricType::Counter,
            rows.refused,
        )?;
        self.encode_input_families(encoder)?;
        if let Some(shards) = &self.shards {
            encode_shards(encoder, shards)?;
        }
        if let Some(scrape) = &self.scrape {
            encode_scrape_quantiles(encoder, scrape)?;
        }
        Ok(())
    }
}

/// Per-shard families of the scalers' fan-out: whether each shard is counted, how old its
/// answer is, its polls and targets; and whether the sums are complete.
fn encode_shards(
    encoder: &mut DescriptorEncoder,
    stats: &spillway_collector::shard::FanOutStats,
) -> Result<(), std::fmt::Error> {
    let shards = stats.shards();
    let now_ms = spillway_collector::clock::unix_ms();
    let index: Vec<String> = (0..shards.len()).map(|i| i.to_string()).collect();
    let mut up = encoder.encode_descriptor(
        "collector_shard_up",
        "1 if the collector shard's latest warm answer is counted in the sums",
        None,
        MetricType::Gauge,
    )?;
    for (shard, status) in index.iter().zip(&shards) {
        ConstGauge::new(i64::from(status.up))
            .encode(up.encode_family(&[("shard", shard.as_str())])?)?;
    }
    let mut age = encoder.encode_descriptor(
        "collector_shard_answer_age_seconds",
        "Seconds since the collector shard's latest warm answer (absent: never answered)",
        None,
        MetricType::Gauge,
    )?;
    for (shard, status) in index.iter().zip(&shards) {
        if let Some(at) = status.last_answer_ms {
            ConstGauge::new((now_ms - at).max(0) as f64 / 1000.0)
                .encode(age.encode_family(&[("shard", shard.as_str())])?)?;
        }
    }
    let mut polls = encoder.encode_descriptor(
        "collector_shard_polls",
        "Polls of each collector shard, by outcome",
        None,
        MetricType::Counter,
    )?;
    for (shard, status) in index.iter().zip(&shards) {
        for (outcome, n) in [("ok", status.polls_ok), ("failed", status.polls_failed)] {
            ConstCounter::new(n)
                .encode(polls.encode_family(&[("shard", shard.as_str()), ("outcome", outcome)])?)?;
        }
    }
    let mut targets = encoder.encode_descriptor(
        "collector_shard_targets",
        "Scrape targets each collector shard owns, and of those how many are up",
        None,
        MetricType::Gauge,
    )?;
    for (shard, status) in index.iter().zip(&shards) {
        for (state, n) in [("owned", status.targets_owned), ("up", status.targets_up)] {
            ConstGauge::new(i64::from(n))
                .encode(targets.encode_family(&[("shard", shard.as_str()), ("state", state)])?)?;
        }
    }
    let complete = encoder.encode_descriptor(
        "collector_shards_complete",
        "1 if every collector shard is counted; 0 means sums are lower bounds and scale-down is held",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(i64::from(stats.complete())).encode(complete)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spillway_collector::scrape::{ScrapeError, ScrapeOutcome};

    use super::*;

    #[test]
    fn scrape_duration_quantiles_come_from_the_collectors_histogram() {
        let scrape = std::sync::Arc::new(spillway_collector::scrape::ScrapeStats::new());
        let failed: Result<ScrapeOutcome, ScrapeError> =
            Err(ScrapeError::Timeout(Duration::from_millis(250)));
        for ms in 1..=100 {
            scrape.record(Duration::from_millis(ms), &failed);
        }
        let mut m = Metrics::new();
        m.register_collector_stats(CollectorStats {
            scrape: Some(scrape),
            ..CollectorStats::default()
        });
        let text = m.encode_text();
        let p99 = text
            .lines()
            .find(|l| l.starts_with("spillway_scrape_duration_quantile_seconds{q=\"0.99\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        assert!(
            p99.is_some_and(|v| (0.098..=0.1).contains(&v)),
            "p99 of 1..100 ms is 99 ms: {text}"
        );
    }
}
