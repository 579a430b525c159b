//! `kubernetes:` in serve's config: how Spillway finds the API server, which workloads
//! it observes and places, the Lease, gateway discovery and what makes a node virtual.
//! Absent: Spillway never talks to the API server.
//!
//! ```yaml
//! kubernetes:
//!   # apiServer: https://10.0.0.1:6443   # default: in-cluster, else the kubeconfig
//!   interval: 5s
//!   placement: true        # false: only read replica counts
//!   podMetrics: true       # CPU/memory from metrics.k8s.io (namespace = tenant, label app)
//!   lease: { namespace: spillway, name: spillway-placement }   # identity: $POD_NAME
//!   gateways: { namespace: ingress, selector: app=gateway, port: 9113 }
//!   virtualNodes:          # default: Alibaba's virtual-kubelet label and taint
//!     labels: { type: virtual-kubelet }
//!     taints: [{ key: virtual-kubelet.io/provider, value: alibabacloud, effect: NoSchedule }]
//!   workloads:
//!     - { tenant: acme, app: checkout, namespace: acme-prod, scaledObject: checkout }
//!   hpaRefresh: 30s        # how often each workload's HPA is read and judged (see hpa)
//!   scalingPolicies: true  # tenants' ScalingPolicy resources, beside the policy files
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::placement::{NodeClassifier, TaintEffect, TaintRule};

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn yes() -> bool {
    true
}

fn interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    crate::durations::deserialize(d)
}

/// `kubernetes:` in serve's config. Absent: Spillway never talks to the API server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesSettings {
    /// API server URL; absent: in-cluster service account, else the kubeconfig.
    #[serde(default)]
    pub api_server: Option<String>,
    #[serde(default = "default_interval", deserialize_with = "interval")]
    pub interval: Duration,
    /// Run the placement controller (it writes only while holding the Lease); false:
    /// only read replica counts.
    #[serde(default = "yes")]
    pub placement: bool,
    /// Read CPU and memory from `metrics.k8s.io` (the namespace is the tenant, the
    /// `app` label the app).
    #[serde(default)]
    pub pod_metrics: bool,
    #[serde(default)]
    pub lease: LeaseSettings,
    /// The workloads to observe and place: which ScaledObject each policy workload is.
    #[serde(default)]
    pub workloads: Vec<WorkloadBinding>,
    /// Gateway pods to scrape, found by label selector and re-listed every
    /// `gateways.refresh` as pods come and go.
    #[serde(default)]
    pub gateways: Option<GatewayDiscovery>,
    /// How virtual nodes are told apart; absent: Alibaba's `type=virtual-kubelet` label
    /// and `virtual-kubelet.io/provider=alibabacloud:NoSchedule` taint.
    #[serde(default)]
    pub virtual_nodes: Option<VirtualNodes>,
    /// How often each workload's HPA (the one KEDA created) is read again: it changes
    /// only when someone edits the ScaledObject, and costs 2 GETs.
    #[serde(default = "hpa_refresh", deserialize_with = "interval")]
    pub hpa_refresh: Duration,
    /// Serve tenants' `ScalingPolicy` resources (watched) beside the policy files; a
    /// tenant the files serve stays the files'. See [`crate::cluster::policy_watch`].
    #[serde(default)]
    pub scaling_policies: bool,
}

fn hpa_refresh() -> Duration {
    Duration::from_secs(30)
}

/// A node is virtual when it has any of these labels or any of these taints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualNodes {
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<VirtualTaint>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualTaint {
    pub key: String,
    /// Absent: any value.
    #[serde(default)]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; absent: any effect.
    #[serde(default)]
    pub effect: Option<String>,
}

impl VirtualNodes {
    pub fn classifier(&self) -> Result<NodeClassifier, String> {
        let mut taints = Vec::with_capacity(self.taints.len());
        for t in &self.taints {
            let effect = match &t.effect {
                None => None,
                Some(e) => Some(TaintEffect::from_api(e).ok_or_else(|| {
                    format!(
                        "kubernetes.virtualNodes.taints: effect '{e}' is not NoSchedule, PreferNoSchedule or NoExecute"
                    )
                })?),
            };
            taints.push(TaintRule {
                key: t.key.clone(),
                value: t.value.clone(),
                effect,
            });
        }
        if self.labels.is_empty() && taints.is_empty() {
            return Err("kubernetes.virtualNodes needs at least one label or taint".into());
        }
        Ok(NodeClassifier {
            virtual_labels: self.labels.clone().into_iter().collect(),
            virtual_taints: taints,
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayDiscovery {
    pub namespace: String,
    /// Equality label selector, `app=gateway,tier=edge`.
    pub selector: String,
    pub port: u16,
    #[serde(default = "metrics_path")]
    pub path: String,
    /// How often the pods are listed again; gateways scale with the traffic, and a new
    /// replica's requests are invisible until it is listed.
    #[serde(default = "gateway_refresh", deserialize_with = "interval")]
    pub refresh: Duration,
}

fn gateway_refresh() -> Duration {
    Duration::from_secs(10)
}

fn metrics_path() -> String {
    "/metrics".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity; absent: `spillway serve` takes `$POD_NAME`, then
    /// `$HOSTNAME`.
    #[serde(default)]
    pub identity: Option<String>,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            namespace: "spillway".into(),
            name: "spillway-placement".into(),
            identity: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadBinding {
    pub tenant: String,
    pub app: String,
    pub namespace: String,
    pub scaled_object: String,
}

impl KubernetesSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(1) {
            return Err("kubernetes.interval must be at least 1s".into());
        }
        if let Some(g) = &self.gateways
            && g.refresh < Duration::from_secs(1)
        {
            return Err("kubernetes.gateways.refresh must be at least 1s".into());
        }
        if self.hpa_refresh < Duration::from_secs(1) {
            return Err("kubernetes.hpaRefresh must be at least 1s".into());
        }
        if let Some(url) = &self.api_server
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "kubernetes.apiServer '{url}' must be an http:// or https:// URL"
            ));
        }
        self.classifier().map(|_| ())
    }

    /// The node classifier these settings name.
    pub fn classifier(&self) -> Result<NodeClassifier, String> {
        self.virtual_nodes
            .as_ref()
            .map_or_else(|| Ok(NodeClassifier::default()), VirtualNodes::classifier)
    }

    /// The identity this replica holds the Lease under: `lease.identity`, which the
    /// command line fills from the pod's name when the file leaves it out.
    pub fn identity(&self) -> String {
        self.lease
            .identity
            .clone()
            .unwrap_or_else(|| format!("spillway-{}", std::process::id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_errors() {
        let s: KubernetesSettings = serde_saphyr::from_str(
            "workloads: [{tenant: acme, app: web, namespace: shop, scaledObject: web}]\n",
        )
        .expect("valid");
        assert_eq!(s.interval, Duration::from_secs(5));
        assert!(s.placement);
        assert!(!s.pod_metrics);
        assert_eq!(s.lease.namespace, "spillway");
        assert_eq!(s.workloads[0].scaled_object, "web");
        assert!(s.validate().is_ok());
        assert!(s.gateways.is_none());
        assert_eq!(s.hpa_refresh, Duration::from_secs(30));
        let g: KubernetesSettings = serde_saphyr::from_str(
            "gateways: {namespace: ingress, selector: app=gateway, port: 9113}\n",
        )
        .expect("valid");
        assert_eq!(g.gateways.map(|g| g.path).as_deref(), Some("/metrics"));
        let bad: KubernetesSettings =
            serde_saphyr::from_str("apiServer: 127.0.0.1:6443\n").expect("parses");
        assert!(bad.validate().is_err());
        assert!(serde_saphyr::from_str::<KubernetesSettings>("unknown: 1\n").is_err());
    }

    #[test]
    fn virtual_nodes_are_configurable() {
        let s: KubernetesSettings = serde_saphyr::from_str(
            "virtualNodes:\n  labels: {k8s.aliyun.com/vnode: \"true\"}\n  taints: [{key: k8s.aliyun.com/vnode}]\n",
        )
        .expect("valid");
        let c = s.classifier().expect("classifier");
        assert_eq!(
            c.virtual_labels,
            vec![("k8s.aliyun.com/vnode".to_string(), "true".to_string())]
        );
        assert_eq!(c.virtual_taints[0].effect, None);
        assert_eq!(
            KubernetesSettings {
                virtual_nodes: None,
                ..s.clone()
            }
            .classifier(),
            Ok(NodeClassifier::default())
        );
        let bad: KubernetesSettings =
            serde_saphyr::from_str("virtualNodes: {taints: [{key: a, effect: Sometimes}]}\n")
                .expect("parses");
        assert!(bad.validate().unwrap_err().contains("Sometimes"));
        let empty: KubernetesSettings =
            serde_saphyr::from_str("virtualNodes: {}\n").expect("parses");
        assert!(empty.validate().is_err());
    }
}
