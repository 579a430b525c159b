//! Kubernetes-sourced collector inputs: CPU and memory from `metrics.k8s.io` PodMetrics,
//! and gateway scrape targets discovered by label selector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde_json::Value;
use spillway_collector::ingest::Ingest;
use spillway_collector::scrape::Target;
use spillway_collector::signal::{Signal, WorkloadKey};

use super::ClusterError;
use super::convert::pod_ready;
use crate::placement::{parse_cpu, parse_memory};
use crate::policy::PolicySet;

/// Which labels name a pod's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadLabels {
    /// Label holding the tenant; None: the tenant whose policy lists the namespace.
    pub tenant_label: Option<String>,
    /// Label holding the app name.
    pub app_label: String,
}

impl Default for WorkloadLabels {
    fn default() -> Self {
        WorkloadLabels {
            tenant_label: None,
            app_label: "app".into(),
        }
    }
}

/// Which tenants may own a namespace's pods: those whose policy lists it in
/// `spec.namespaces`, the same rule that admits a ScaledObject. A namespace's name is
/// never taken as a tenant's: any namespace could be called after another tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceTenants {
    by_namespace: BTreeMap<String, Vec<String>>,
}

impl NamespaceTenants {
    pub fn from_policies(set: &PolicySet) -> Self {
        let mut by_namespace: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for tenant in set.tenants() {
            for ns in &tenant.namespaces {
                by_namespace
                    .entry(ns.clone())
                    .or_default()
                    .push(tenant.tenant.clone());
            }
        }
        NamespaceTenants { by_namespace }
    }

    fn tenants(&self, namespace: &str) -> &[String] {
        self.by_namespace.get(namespace).map_or(&[], Vec::as_slice)
    }
}

/// Why a PodMetrics item fed no workload.
enum Unmapped {
    /// No app label, or a quantity that does not parse.
    Unreadable,
    /// No policy lists the namespace (or, with a tenant label, the labelled tenant's
    /// policy does not), or two policies list it and no label says which.
    UnlistedNamespace,
}

impl WorkloadLabels {
    fn key(
        &self,
        namespace: &str,
        labels: Option<&serde_json::Map<String, Value>>,
        tenants: &NamespaceTenants,
    ) -> Result<WorkloadKey, Unmapped> {
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let app = label(&self.app_label).ok_or(Unmapped::Unreadable)?;
        let allowed = tenants.tenants(namespace);
        let tenant = match &self.tenant_label {
            Some(k) => {
                let tenant = label(k).ok_or(Unmapped::Unreadable)?;
                allowed
                    .iter()
                    .find(|t| *t == tenant)
                    .ok_or(Unmapped::UnlistedNamespace)?
            }
            None => match allowed {
                [only] => only,
                _ => return Err(Unmapped::UnlistedNamespace),
            },
        };
        Ok(WorkloadKey::new(tenant.as_str(), app))
    }
}

/// CPU and memory per workload from a batch of PodMetrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usage {
    pub cpu_cores: Vec<(WorkloadKey, f64)>,
    pub memory_bytes: Vec<(WorkloadKey, f64)>,
    /// PodMetrics without the workload labels or with unreadable quantities.
    pub skipped: usize,
    /// PodMetrics from a namespace no tenant's policy lists (or that the labelled
    /// tenant's policy does not list): ignored.
    pub unlisted: usize,
}

/// CPU cores and memory bytes per workload, summed over its pods' containers. Pods
/// without the workload labels, unreadable quantities and namespaces no policy lists
/// are skipped (and counted) rather than failing the whole batch.
pub fn usage_by_workload(
    items: &[Value],
    labels: &WorkloadLabels,
    tenants: &NamespaceTenants,
) -> Usage {
    let mut cpu: BTreeMap<WorkloadKey, f64> = BTreeMap::new();
    let mut mem: BTreeMap<WorkloadKey, f64> = BTreeMap::new();
    let mut skipped = 0;
    let mut unlisted = 0;
    for item in items {
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = match labels.key(
            ns,
            item.pointer("/metadata/labels").and_then(Value::as_object),
            tenants,
        ) {
            Ok(key) => key,
            Err(Unmapped::Unreadable) => {
                skipped += 1;
                continue;
            }
            Err(Unmapped::UnlistedNamespace) => {
                unlisted += 1;
                continue;
            }
        };
        let mut c_sum = 0.0;
        let mut m_sum = 0.0;
        let mut ok = true;
        for c in item
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let q = |k: &str| c.pointer(&format!("/usage/{k}")).and_then(Value::as_str);
            match (q("cpu").map(parse_cpu), q("memory").map(parse_memory)) {
                (Some(Ok(cm)), Some(Ok(mb))) => {
                    c_sum += cm as f64 / 1000.0;
                    m_sum += mb as f64;
                }
                _ => ok = false,
            }
        }
        if !ok {
            skipped += 1;
            continue;
        }
        *cpu.entry(key.clone()).or_default() += c_sum;
        *mem.entry(key).or_default() += m_sum;
    }
    Usage {
        cpu_cores: cpu.into_iter().collect(),
        memory_bytes: mem.into_iter().collect(),
        skipped,
        unlisted,
    }
}

pub fn pod_metrics_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.k8s.io", "v1beta1", "PodMetrics"),
        "pods",
    )
}

/// What one PodMetrics read fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodMetricsRead {
    /// Workloads that got CPU and memory values.
    pub workloads: usize,
    pub skipped: usize,
    /// Pods in namespaces no policy lists, ignored (also counted in the ingest stats).
    pub unlisted: usize,
}

/// Reads PodMetrics (one LIST, all namespaces or one) and feeds CPU and memory to the
/// collector under source `source`, each pod to the tenant whose policy lists its
/// namespace.
pub async fn ingest_pod_metrics(
    client: &Client,
    namespace: Option<&str>,
    labels: &WorkloadLabels,
    policies: &PolicySet,
    ingest: &Ingest,
    source: &Arc<str>,
    at_ms: i64,
) -> Result<PodMetricsRead, ClusterError> {
    let ar = pod_metrics_resource();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| ClusterError::api("list pod metrics", e))?;
    let items: Vec<Value> = list
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    let Usage {
        cpu_cores: cpu,
        memory_bytes: mem,
        skipped,
        unlisted,
    } = usage_by_workload(&items, labels, &NamespaceTenants::from_policies(policies));
    if skipped > 0 {
        tracing::debug!(
            skipped,
            "PodMetrics without workload labels or with bad quantities"
        );
    }
    if unlisted > 0 {
        ingest
            .stats
            .values_unmapped
            .fetch_add(unlisted as u64, Ordering::Relaxed);
        tracing::debug!(
            unlisted,
            "PodMetrics in namespaces no tenant's policy lists; ignored"
        );
    }
    let workloads = cpu.len();
    ingest.apply(source, Signal::CpuCores, cpu, at_ms);
    ingest.apply(source, Signal::MemoryBytes, mem, at_ms);
    Ok(PodMetricsRead {
        workloads,
        skipped,
        unlisted,
    })
}

/// Gateway scrape targets: Ready pods matching `selector` in `namespace` (one LIST),
/// as `http://POD_IP:PORT/PATH`.
pub async fn discover_gateways(
    client: &Client,
    namespace: &str,
    selector: &str,
    port: u16,
    path: &str,
) -> Result<Vec<Target>, ClusterError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| ClusterError::api("list gateway pods", e))?;
    Ok(gateway_targets(&pods.items, port, path))
}

/// Pure: Ready pods with an IP, as scrape targets, sorted.
pub fn gateway_targets(pods: &[Pod], port: u16, path: &str) -> Vec<Target> {
    let path = path.trim_start_matches('/');
    let mut urls: Vec<String> = pods
        .iter()
        .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .map(|ip| {
            if ip.contains(':') {
                format!("http://[{ip}]:{port}/{path}")
            } else {
                format!("http://{ip}:{port}/{path}")
            }
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls.into_iter().map(Target::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pm(ns: &str, app: Option<&str>, cpu: &str, mem: &str) -> Value {
        let labels = app.map_or(json!({}), |a| json!({"app": a}));
        json!({"metadata": {"namespace": ns, "labels": labels},
               "containers": [{"usage": {"cpu": cpu, "memory": mem}}, {"usage": {"cpu": "0", "memory": "0"}}]})
    }

    /// `(namespace, tenants whose policy lists it)`.
    fn tenants(pairs: &[(&str, &[&str])]) -> NamespaceTenants {
        NamespaceTenants {
            by_namespace: pairs
                .iter()
                .map(|(ns, ts)| (ns.to_string(), ts.iter().map(|t| t.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn sums_per_workload_under_the_tenant_that_lists_the_namespace() {
        let items = [
            pm("shop", Some("web"), "250m", "100Mi"),
            pm("shop", Some("web"), "1500000n", "1Mi"),
            pm("shop", None, "1", "1Mi"),
            pm("shop", Some("api"), "lots", "1Mi"),
        ];
        let Usage {
            cpu_cores: cpu,
            memory_bytes: mem,
            skipped,
            unlisted,
        } = usage_by_workload(
            &items,
            &WorkloadLabels::default(),
            &tenants(&[("shop", &["acme"])]),
        );
        assert_eq!((skipped, unlisted), (2, 0));
        assert_eq!(cpu.len(), 1);
        assert_eq!(&*cpu[0].0.tenant, "acme");
        // metrics-server reports nanocores; the quantity parser keeps millicores
        // (rounding up), which is finer than any scaling decision needs.
        assert!((cpu[0].1 - 0.252).abs() < 1e-9, "{}", cpu[0].1);
        assert_eq!(mem[0].1, (101 * 1024 * 1024) as f64);
    }

    #[test]
    fn a_namespace_no_policy_lists_feeds_nobody_even_when_named_after_a_tenant() {
        // globex's policy lists globex-prod only; a namespace called `globex` (anyone
        // could create it) must not write globex's CPU.
        let map = tenants(&[("globex-prod", &["globex"])]);
        let items = [
            pm("globex", Some("web"), "8", "1Gi"),
            pm("stray", Some("web"), "8", "1Gi"),
            pm("globex-prod", Some("web"), "1", "1Gi"),
        ];
        let usage = usage_by_workload(&items, &WorkloadLabels::default(), &map);
        assert_eq!((usage.skipped, usage.unlisted), (0, 2));
        assert_eq!(
            usage.cpu_cores,
            vec![(WorkloadKey::new("globex", "web"), 1.0)]
        );
    }

    #[test]
    fn a_tenant_label_must_name_a_tenant_that_lists_the_namespace() {
        let labels = WorkloadLabels {
            tenant_label: Some("tenant".into()),
            app_label: "app".into(),
        };
        let map = tenants(&[("shared", &["acme", "initech"])]);
        let item = |ns: &str, tenant: &str| {
            json!({"metadata": {"namespace": ns, "labels": {"tenant": tenant, "app": "web"}},
                   "containers": [{"usage": {"cpu": "1", "memory": "1"}}]})
        };
        let usage = usage_by_workload(
            &[
                item("shared", "initech"),
                item("shared", "globex"),
                item("other", "acme"),
            ],
            &labels,
            &map,
        );
        assert_eq!(
            usage.cpu_cores,
            vec![(WorkloadKey::new("initech", "web"), 1.0)]
        );
        assert_eq!(usage.unlisted, 2);
        // Without a label, a namespace two policies list belongs to neither.
        let usage = usage_by_workload(
            &[pm("shared", Some("web"), "1", "1")],
            &WorkloadLabels::default(),
            &map,
        );
        assert!(usage.cpu_cores.is_empty());
        assert_eq!(usage.unlisted, 1);
    }
}
