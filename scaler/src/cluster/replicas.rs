//! Current and ready replicas of a ScaledObject's target: the ScaledObject names its
//! `scaleTargetRef`, whose `scale` subresource gives the replica counts and selector.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::Value;

use super::ClusterError;
use super::convert::{LabelSelector, pod_ready};
use super::view::ClusterCache;

/// The object a ScaledObject scales (`spec.scaleTargetRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleTarget {
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl ScaleTarget {
    /// From a ScaledObject's JSON; KEDA's defaults when `apiVersion`/`kind` are absent.
    pub fn from_scaled_object(namespace: &str, so: &Value) -> Option<ScaleTarget> {
        let r = so.pointer("/spec/scaleTargetRef")?;
        let name = r.get("name")?.as_str()?.to_string();
        let field = |k: &str, default: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(default)
                .to_string()
        };
        Some(ScaleTarget {
            namespace: namespace.to_string(),
            api_version: field("apiVersion", "apps/v1"),
            kind: field("kind", "Deployment"),
            name,
        })
    }

    /// The resource to address. Plurals are the lower-cased kind plus "s", which holds
    /// for Deployment and StatefulSet, the kinds Spillway places.
    pub fn api_resource(&self) -> ApiResource {
        let (group, version) = self
            .api_version
            .split_once('/')
            .unwrap_or(("", self.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &self.kind);
        ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", self.kind.to_lowercase()))
    }

    pub fn api(&self, client: Client) -> Api<DynamicObject> {
        Api::namespaced_with(client, &self.namespace, &self.api_resource())
    }
}

/// Replica counts as Kubernetes reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    pub target: ScaleTarget,
    /// `spec.replicas`: what the target was last asked for.
    pub spec: u32,
    /// `status.replicas`: pods that exist.
    pub current: u32,
    /// Live pods matching the selector whose Ready condition is True (from the cache).
    pub ready: u32,
    pub selector: LabelSelector,
    /// The ScaledObject's annotations (where an emergency freeze may be written).
    pub annotations: std::collections::BTreeMap<String, String>,
}

pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

/// Reads the ScaledObject (1 GET) and its target's scale subresource (1 GET).
pub async fn read_replicas(
    client: &Client,
    cache: &ClusterCache,
    namespace: &str,
    scaled_object: &str,
) -> Result<Replicas, ClusterError> {
    let so_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &scaled_object_resource());
    let so = so_api
        .get(scaled_object)
        .await
        .map_err(|e| ClusterError::api("get scaledobject", e))?;
    let target = ScaleTarget::from_scaled_object(namespace, &so.data).ok_or_else(|| {
        ClusterError::Invalid(format!(
            "ScaledObject {namespace}/{scaled_object} has no spec.scaleTargetRef.name"
        ))
    })?;
    let scale = target
        .api(client.clone())
        .get_scale(&target.name)
        .await
        .map_err(|e| ClusterError::api("get scale", e))?;
    let spec = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    let status = scale.status.unwrap_or_default();
    let selector = LabelSelector::parse(status.selector.as_deref().unwrap_or_default())
        .map_err(|e| ClusterError::Invalid(format!("{}/{}: {e}", target.kind, target.name)))?;
    let ready = cache
        .workload_pods(namespace, &selector)
        .iter()
        .filter(|p| pod_ready(p))
        .count();
    Ok(Replicas {
        target,
        spec: u32::try_from(spec).unwrap_or(0),
        current: u32::try_from(status.replicas).unwrap_or(0),
        ready: u32::try_from(ready).unwrap_or(u32::MAX),
        selector,
        annotations: so.metadata.annotations.clone().unwrap_or_default(),
    })
}
