//! CPU and memory per pod from cAdvisor-format series, rolled up per workload.
//!
//! cAdvisor (the kubelet's `/metrics/cadvisor`) exports one series per container:
//! `container_cpu_usage_seconds_total` is a counter of CPU seconds, so its rate is cores
//! in use; `container_memory_working_set_bytes` is a gauge. It also exports a pod-level
//! series (`container=""`) and the pause container (`container="POD"`) for the same
//! cgroups, which would count a pod twice: only real containers are rolled up.
//!
//! Which workload a pod belongs to is configured: either labels carry tenant and app
//! (after relabelling, or from pod labels joined in by an agent), or the tenant is a
//! label (usually `namespace`) and the app is the pod name without the suffixes its
//! controller generated (`checkout-7d9f8b6c5-x2x7k` → `checkout`).

mod scrape;

pub use scrape::{ResourceOutcome, ingest_resources_body};

use std::borrow::Cow;

use crate::signal::Signal;

/// How a resource series names its workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadFrom {
    /// Tenant and app are the values of these labels.
    Labels {
        tenant_label: String,
        app_label: String,
    },
    /// Tenant is a label's value; app is the pod name with its last `strip_segments`
    /// dash-separated parts removed (2 for a Deployment's pods, 1 for a StatefulSet's).
    PodName {
        tenant_label: String,
        pod_label: String,
        strip_segments: usize,
    },
}

/// Which series carry CPU and memory and how they map to workloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceMapping {
    pub cpu_metric: String,
    pub memory_metric: String,
    /// The label naming the container; empty and `POD` values are skipped.
    pub container_label: String,
    pub workload: WorkloadFrom,
}

impl Default for ResourceMapping {
    fn default() -> Self {
        Self {
            cpu_metric: "container_cpu_usage_seconds_total".into(),
            memory_metric: "container_memory_working_set_bytes".into(),
            container_label: "container".into(),
            workload: WorkloadFrom::PodName {
                tenant_label: "namespace".into(),
                pod_label: "pod".into(),
                strip_segments: 2,
            },
        }
    }
}

/// Whether a series' samples are a counter (rated) or a gauge (taken as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesKind {
    Counter,
    Gauge,
}

/// A series that feeds a workload's signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped<'a> {
    pub signal: Signal,
    pub kind: SeriesKind,
    pub tenant: Cow<'a, str>,
    pub app: Cow<'a, str>,
}

impl ResourceMapping {
    /// Maps one series, given its metric name and a label lookup; `None` for series that
    /// are not resource series of a known workload.
    pub fn classify<'a>(
        &self,
        name: &str,
        label: impl Fn(&str) -> Option<Cow<'a, str>>,
    ) -> Option<Mapped<'a>> {
        let (signal, kind) = if name == self.cpu_metric {
            (Signal::CpuCores, SeriesKind::Counter)
        } else if name == self.memory_metric {
            (Signal::MemoryBytes, SeriesKind::Gauge)
        } else {
            return None;
        };
        match label(&self.container_label) {
            Some(container) if !container.is_empty() && container != "POD" => {}
            _ => return None,
        }
        let (tenant, app) = match &self.workload {
            WorkloadFrom::Labels {
                tenant_label,
                app_label,
            } => (label(tenant_label)?, label(app_label)?),
            WorkloadFrom::PodName {
                tenant_label,
                pod_label,
                strip_segments,
            } => {
                let tenant = label(tenant_label)?;
                let app = match label(pod_label)? {
                    Cow::Borrowed(pod) => Cow::Borrowed(app_from_pod(pod, *strip_segments)?),
                    Cow::Owned(pod) => Cow::Owned(app_from_pod(&pod, *strip_segments)?.to_owned()),
                };
                (tenant, app)
            }
        };
        if tenant.is_empty() || app.is_empty() {
            return None;
        }
        Some(Mapped {
            signal,
            kind,
            tenant,
            app,
        })
    }
}

/// The controller's name in a pod name: `strip` trailing `-part`s removed. `None` when
/// the name has too few parts to be a controller's pod.
pub fn app_from_pod(pod: &str, strip: usize) -> Option<&str> {
    let mut end = pod.len();
    for _ in 0..strip {
        end = pod[..end].rfind('-')?;
    }
    let app = &pod[..end];
    (!app.is_empty()).then_some(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(labels: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<Cow<'a, str>> {
        move |name| {
            labels
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| Cow::Borrowed(*v))
        }
    }

    #[test]
    fn pod_names_lose_their_generated_suffixes() {
        assert_eq!(
            app_from_pod("checkout-7d9f8b6c5-x2x7k", 2),
            Some("checkout")
        );
        assert_eq!(app_from_pod("my-api-7d9f8b6c5-x2x7k", 2), Some("my-api"));
        assert_eq!(app_from_pod("db-0", 1), Some("db"));
        assert_eq!(app_from_pod("single", 1), None);
        assert_eq!(app_from_pod("-x", 1), None);
        assert_eq!(app_from_pod("web", 0), Some("web"));
    }

    #[test]
    fn container_series_map_and_pod_level_series_do_not() {
        let mapping = ResourceMapping::default();
        let labels = [
            ("namespace", "acme"),
            ("pod", "web-5c6b7d8f9-abcde"),
            ("container", "web"),
        ];
        let mapped = mapping
            .classify("container_cpu_usage_seconds_total", lookup(&labels))
            .unwrap();
        assert_eq!(mapped.signal, Signal::CpuCores);
        assert_eq!(mapped.kind, SeriesKind::Counter);
        assert_eq!((&*mapped.tenant, &*mapped.app), ("acme", "web"));
        let memory = mapping
            .classify("container_memory_working_set_bytes", lookup(&labels))
            .unwrap();
        assert_eq!(memory.kind, SeriesKind::Gauge);

        for container in ["", "POD"] {
            let labels = [
                ("namespace", "acme"),
                ("pod", "web-5c6b7d8f9-abcde"),
                ("container", container),
            ];
            assert!(
                mapping
                    .classify("container_cpu_usage_seconds_total", lookup(&labels))
                    .is_none()
            );
        }
        assert!(
            mapping
                .classify("gateway_requests_total", lookup(&labels))
                .is_none()
        );
    }

    #[test]
    fn label_mapping_reads_tenant_and_app_labels() {
        let mapping = ResourceMapping {
            workload: WorkloadFrom::Labels {
                tenant_label: "tenant".into(),
                app_label: "app".into(),
            },
            ..ResourceMapping::default()
        };
        let labels = [("tenant", "t1"), ("app", "api"), ("container", "api")];
        let mapped = mapping
            .classify("container_memory_working_set_bytes", lookup(&labels))
            .unwrap();
        assert_eq!((&*mapped.tenant, &*mapped.app), ("t1", "api"));
        let missing = [("tenant", "t1"), ("container", "api")];
        assert!(
            mapping
                .classify("container_memory_working_set_bytes", lookup(&missing))
                .is_none()
        );
    }
}
