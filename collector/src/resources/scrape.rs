//! Resource series from a scraped exposition (a kubelet's `/metrics/cadvisor`).

use std::collections::HashMap;
use std::hash::Hasher;

use super::{ResourceMapping, SeriesKind};
use crate::exposition::{self, Format};
use crate::rate::CounterTracker;
use crate::signal::{Signal, WorkloadKey};

/// What one scrape of a cAdvisor endpoint says per workload.
#[derive(Debug, Default)]
pub struct ResourceOutcome {
    /// CPU cores in use (empty on a target's first scrape: a counter needs two points).
    pub cpu_cores: Vec<(WorkloadKey, f64)>,
    /// Working-set bytes, summed over the workload's containers on this target.
    pub memory_bytes: Vec<(WorkloadKey, f64)>,
    pub matched: u64,
    pub malformed_lines: u64,
}

/// Parses a scraped body and rolls CPU (through `cpu`, which holds the counter state of
/// this target) and memory up per workload.
pub fn ingest_resources_body(
    body: &[u8],
    format: Format,
    mapping: &ResourceMapping,
    cpu: &mut CounterTracker,
    at_ms: i64,
) -> ResourceOutcome {
    cpu.begin(at_ms);
    let mut memory: HashMap<(String, String), f64> = HashMap::new();
    let mut matched = 0u64;
    let summary = exposition::parse_samples_as(body, format, |sample| {
        let Some(mapped) = mapping.classify(sample.name, |name| {
            sample.label(name).map(|value| value.to_cow())
        }) else {
            return;
        };
        matched += 1;
        match (mapped.signal, mapped.kind) {
            (Signal::MemoryBytes, SeriesKind::Gauge)
                if sample.value.is_finite() && sample.value >= 0.0 =>
            {
                *memory
                    .entry((mapped.tenant.into_owned(), mapped.app.into_owned()))
                    .or_default() += sample.value;
            }
            (Signal::CpuCores, SeriesKind::Counter) => {
                let mut series = cpu.series_hasher();
                series.write(sample.name.as_bytes());
                series.write_u8(0xff);
                series.write(sample.label_set_raw().as_bytes());
                cpu.observe(series.finish(), &mapped.tenant, &mapped.app, sample.value);
            }
            _ => {}
        }
    });
    ResourceOutcome {
        cpu_cores: cpu.finish(),
        memory_bytes: memory
            .into_iter()
            .map(|((tenant, app), bytes)| (WorkloadKey::new(tenant, app), bytes))
            .collect(),
        matched,
        malformed_lines: summary.errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(cpu_web: f64, cpu_api: f64) -> String {
        format!(
            "# TYPE container_cpu_usage_seconds_total counter\n\
             container_cpu_usage_seconds_total{{namespace=\"acme\",pod=\"web-6f7d-a1\",container=\"web\"}} {cpu_web}\n\
             container_cpu_usage_seconds_total{{namespace=\"acme\",pod=\"web-6f7d-a1\",container=\"\"}} 99999\n\
             container_cpu_usage_seconds_total{{namespace=\"acme\",pod=\"api-5b4c-z9\",container=\"api\"}} {cpu_api}\n\
             container_memory_working_set_bytes{{namespace=\"acme\",pod=\"web-6f7d-a1\",container=\"web\"}} 1000\n\
             container_memory_working_set_bytes{{namespace=\"acme\",pod=\"web-6f7d-b2\",container=\"web\"}} 500\n\
             container_memory_working_set_bytes{{namespace=\"acme\",pod=\"web-6f7d-b2\",container=\"POD\"}} 7\n"
        )
    }

    fn as_map(values: &[(WorkloadKey, f64)]) -> HashMap<String, f64> {
        values.iter().map(|(w, v)| (w.to_string(), *v)).collect()
    }

    #[test]
    fn cpu_counters_become_cores_and_memory_sums_per_workload() {
        let mapping = ResourceMapping::default();
        let mut cpu = CounterTracker::new(60_000);
        let first = ingest_resources_body(
            body(100.0, 10.0).as_bytes(),
            Format::PrometheusText,
            &mapping,
            &mut cpu,
            0,
        );
        assert!(first.cpu_cores.is_empty());
        assert_eq!(as_map(&first.memory_bytes)["acme/web"], 1500.0);
        assert_eq!(first.matched, 4);

        let second = ingest_resources_body(
            body(103.0, 10.5).as_bytes(),
            Format::PrometheusText,
            &mapping,
            &mut cpu,
            2_000,
        );
        let cores = as_map(&second.cpu_cores);
        assert_eq!(cores["acme/web"], 1.5);
        assert_eq!(cores["acme/api"], 0.25);
    }
}
