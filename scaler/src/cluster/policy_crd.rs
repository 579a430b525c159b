//! `scalingpolicies.spillway.io/v1`: a tenant's policy as a namespaced Kubernetes
//! resource.
//!
//! These types are the CRD's schema, nothing more: `kubectl explain` reads the doc
//! comments, the API server enforces the types, ranges, enums and the CEL rules below
//! at apply time. Spillway itself never deserializes a resource into them: the watcher
//! hands the object's `spec` to the same loader and validator as a policy file
//! ([`crate::policy::parse_policy`] through [`document_text`]), so a resource and a file mean
//! exactly the same, and what only Spillway can judge (values merged from `defaults`
//! and an app, time zones, cron fields) is reported in `.status` in the words
//! `spillway policy validate` uses.
//!
//! The tenant is not written in the resource: it is the `spillway.io/tenant` label of
//! the resource's namespace, which only the platform may set ([`TENANT_LABEL`]).

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::policy::resources::{TENANT_LABEL, document_text};

/// A duration as policy files write them: `15s`, `5m`, `1h30m`, `2d`, or `0`.
const DURATION: &str = r"^(0|[0-9]+d([0-9]+h)?([0-9]+m)?([0-9]+s)?|[0-9]+h([0-9]+m)?([0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s)$";

/// Five fields, or six with seconds first; what each field says only Spillway's cron
/// parser judges.
const CRON_FIELDS: &str = r"^\s*\S+(\s+\S+){4,5}\s*$";

/// A DNS-1123 label: namespace names.
const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A tenant's scaling policy: which namespaces may use it, the defaults every app
/// inherits, and the apps it scales. The tenant is the `spillway.io/tenant` label of
/// this resource's namespace.
// Several printer columns are strings: clippy reads their repeated `type_ = "string"`
// as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "spillway.io",
    version = "v1",
    kind = "ScalingPolicy",
    plural = "scalingpolicies",
    singular = "scalingpolicy",
    shortname = "sp",
    namespaced,
    status = "ScalingPolicyStatus",
    doc = "A tenant's scaling policy for Spillway: defaults and per-app overrides of replicas, signals, hysteresis, rate limits, panic mode, schedules and placement.",
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".status.tenant",
        description = "The tenant this policy serves (its namespace's spillway.io/tenant label)"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "True when this generation's spec is in force"
    ),
    printcolumn(
        name = "Serving",
        type_ = "integer",
        json_path = ".status.servingGeneration",
        description = "The generation whose spec is in force (an earlier one while the current is invalid)"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.defaults) || !has(self.defaults.borrowable)").message("borrowable is set per app (under `apps`), not in `defaults`").field_path(".defaults.borrowable"))]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicySpec {
    /// Namespaces whose ScaledObjects may use this policy. Each must belong to this
    /// policy's tenant (carry its `spillway.io/tenant` label).
    #[schemars(length(min = 1, max = 64), inner(regex(pattern = DNS_LABEL), length(max = 63)), extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Vec<String>,
    /// Values every app inherits unless it sets its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<AppSpec>,
    /// The apps this policy scales, by name (the ScaledObject's `app` metadata). An app
    /// must be listed to be scaled; `checkout: {}` (or `checkout:`) takes every value
    /// from `defaults`.
    #[schemars(extend("minProperties" = 1, "maxProperties" = 64))]
    pub apps: BTreeMap<String, Option<AppSpec>>,
}

/// One app's overrides, or the tenant's `defaults`: every field optional.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.schedules) || !has(self.replicas) || !has(self.replicas.max) || self.schedules.all(s, s.minReplicas <= self.replicas.max)").message("a schedule's minReplicas is above replicas.max; the schedule could never be honoured").field_path(".schedules"))]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<SignalsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<HysteresisSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<PanicSpec>,
    /// Minimum replicas over recurring time slices. An app's list replaces the tenant's
    /// list as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub schedules: Option<Vec<ScheduleSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationSpec>,
    /// The tolerance the HPA in front of Spillway applies: 0 when its `behavior` sets
    /// `tolerance: 0` (a pass-through), else Kubernetes' default 0.1. Default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0), extend("exclusiveMaximum" = true))]
    pub hpa_tolerance: Option<f64>,
    /// Other workloads of the tenant may be scaled by this app's entry (trigger metadata
    /// `policy: <this app>`, e.g. a canary). Per app only, never in `defaults`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowable: Option<bool>,
}

/// Replica bounds. Default min 1, max 100.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("replicas.min is above replicas.max; expected min ≤ max").field_path(".min"))]
pub struct ReplicasSpec {
    /// Fewest replicas; 0 allows scale to zero (KEDA's activation decides 0 ↔ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub min: Option<u32>,
    /// Most replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max: Option<u32>,
}

/// What the replica count follows. A signal is used when its block appears (in
/// `defaults` or the app) and is not `enabled: false`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SignalsSpec {
    /// Averaging window of the stable (non-panic) proposals, e.g. `60s`. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub window: Option<String>,
    /// A signal whose newest value is older than this counts as missing. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub stale_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<QpsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<UtilizationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<UtilizationSpec>,
}

/// Requests per second through the gateway.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QpsSpec {
    /// `false` turns off a signal `defaults` turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Requests per second one replica is meant to serve. Required (in `defaults` or the
    /// app) when the signal is used: there is no universal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0), extend("exclusiveMinimum" = true))]
    pub target_per_replica: Option<f64>,
    /// Requests per second above which the workload counts as active (scale from zero).
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub activation: Option<f64>,
}

/// CPU or memory usage over the pod's request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UtilizationSpec {
    /// `false` turns off a signal `defaults` turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Target usage as a fraction of the request, above 0 and at most 1. Default 0.7
    /// (CPU), 0.8 (memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0), extend("exclusiveMinimum" = true))]
    pub target_utilization: Option<f64>,
    /// Usage above which the workload counts as active, as a Kubernetes quantity: cores
    /// for CPU (`200m`), bytes for memory (`256Mi`). Absent: this signal never activates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Quantity>,
}

/// Scale up only above `scaleUpAbove` × target, down only below `scaleDownBelow` ×
/// target, each direction after its stabilization window.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HysteresisSpec {
    /// The high watermark, a ratio of load to target from 1.0 to 10.0. Default 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub scale_up_above: Option<f64>,
    /// The low watermark, above 0 and below 1.0. Default 0.8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0), extend("exclusiveMinimum" = true, "exclusiveMaximum" = true))]
    pub scale_down_below: Option<f64>,
    /// Scale-up stabilization window, at most 1h. Default 0s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub up_window: Option<String>,
    /// Scale-down stabilization window, at most 1h. Default 300s (the HPA's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub down_window: Option<String>,
}

/// How fast each direction may move, as the HPA's `behavior` policies.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.down) || !has(self.down.percent) || self.down.percent <= 100").message("expected limits.down.percent from 1 to 100").field_path(".down.percent"))]
pub struct LimitsSpec {
    /// Default max(4 pods, 100 %) per 15s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<RateLimitSpec>,
    /// Default 20 % per 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<RateLimitSpec>,
}

/// A change of at most `pods` and/or `percent` of the replicas at the period's start,
/// per `per`. The built-in pods/percent apply only when neither is written anywhere.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RateLimitSpec {
    /// At least 1 (`select: Disabled` forbids the direction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub pods: Option<u32>,
    /// From 1 (to 100 down, 10000 up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub percent: Option<u32>,
    /// The period, from 1s to 30m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub per: Option<String>,
    /// Which limit applies, as the HPA's `selectPolicy`. Default Max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Select>,
}

/// As the HPA's `selectPolicy`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The limit allowing the larger change.
    Max,
    /// The limit allowing the smaller change.
    Min,
    /// No change in this direction at all.
    Disabled,
}

/// Knative-style panic mode for bursts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.window) || !has(self.stableWindow) || self.window.contains('d') || self.stableWindow.contains('d') || duration(self.window) <= duration(self.stableWindow)").message("panic.stableWindow is shorter than panic.window; expected stableWindow ≥ window").field_path(".stableWindow"))]
#[serde(rename_all = "camelCase")]
pub struct PanicSpec {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The short window a burst is measured over, from 1s to signals.window. Default 6s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub window: Option<String>,
    /// Panic when the short window needs this many times the ready replicas, above 1
    /// and at most 100. Default 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 100.0), extend("exclusiveMinimum" = true))]
    pub threshold: Option<f64>,
    /// Panic ends only after this long below the threshold, at least panic.window.
    /// Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub stable_window: Option<String>,
}

/// A minimum replica count from each cron firing, for `duration`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// Unique within the list.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// 5 fields, or 6 with seconds first, e.g. `0 50 23 10 11 *`.
    #[schemars(length(max = 128), regex(pattern = CRON_FIELDS))]
    pub cron: String,
    /// IANA time zone, e.g. `Asia/Shanghai`. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub timezone: Option<String>,
    /// How long each slice lasts, from 1s to 31d, e.g. `3h`.
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub duration: String,
    /// The minimum replicas during the slice, at most replicas.max.
    #[schemars(range(min = 0, max = 100000))]
    pub min_replicas: u32,
}

/// Where replicas run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PlacementSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstSpec>,
    /// One pod's requests; CPU/memory utilization is usage over these. Default 500m, 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestsSpec>,
}

/// Spilling over to virtual (burst) nodes once regular nodes are full.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BurstSpec {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// At most this many replicas on burst nodes. Default: no cap beyond replicas.max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_replicas: Option<u32>,
}

/// Kubernetes quantities, as in a pod's `resources.requests`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RequestsSpec {
    /// e.g. `500m`, `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// e.g. `512Mi`, `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// When the workload counts as active (KEDA's `IsActive`, 0 ↔ 1).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ActivationSpec {
    /// The window activation thresholds are compared over, from 1s to 1h. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION), length(max = 32))]
    pub window: Option<String>,
}

/// A Kubernetes quantity: a number or a string such as `500m` or `1Gi`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Quantity {
    Number(f64),
    Text(String),
}

impl JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [{ "type": "integer" }, { "type": "string" }],
            "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$",
        })
    }
}

/// An object the API server stores as written, nested values and all (no
/// `additionalProperties`: that would give the values an empty schema, and they would
/// be pruned to `{}`).
fn kept_whole(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "The spec in force (of `servingGeneration`), so a restarted Spillway keeps serving it while the current spec is invalid.",
    })
}

/// What Spillway made of the resource; written by Spillway only (the status subresource).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicyStatus {
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The tenant, from the namespace's `spillway.io/tenant` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The generation whose spec is in force; an earlier one than `observedGeneration`
    /// while the current spec is invalid; absent when nothing of this resource is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_generation: Option<i64>,
    /// The spec in force (of `servingGeneration`), so a restarted Spillway keeps serving
    /// it while the current spec is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "kept_whole")]
    pub serving_spec: Option<serde_json::Map<String, serde_json::Value>>,
    /// `Ready`: this generation is in force. `Invalid`: this generation was refused, with
    /// each problem's field path and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<PolicyCondition>,
}

/// A condition, as Kubernetes' `metav1.Condition`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCondition {
    /// `Ready` or `Invalid`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word: `Applied`, `InvalidSpec`, `NamespaceNotOwned`, `TenantTaken`, ...
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD as YAML, as `spillway crd` prints it and `deploy/crd/` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = ScalingPolicy::crd();
    let header = "# Generated by `spillway crd` from the Rust types in scaler/src/cluster/policy_crd.rs;\n\
                  # a test fails when this file and the generator differ.\n";
    let body = serde_saphyr::to_string(&crd).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    format!("{header}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeSet;

    /// Every field of the file format, once.
    fn every_field() -> Value {
        let app = json!({
            "replicas": { "min": 2, "max": 200 },
            "signals": {
                "window": "60s", "staleAfter": "30s",
                "qps": { "enabled": true, "targetPerReplica": 150, "activation": 1 },
                "cpu": { "enabled": true, "targetUtilization": 0.6, "activation": "200m" },
                "memory": { "enabled": false, "targetUtilization": 0.75, "activation": "256Mi" },
            },
            "hysteresis": { "scaleUpAbove": 1.0, "scaleDownBelow": 0.8, "upWindow": "0s", "downWindow": "300s" },
            "limits": {
                "up": { "pods": 10, "percent": 100, "per": "15s", "select": "Max" },
                "down": { "pods": 1, "percent": 20, "per": "60s", "select": "Min" },
            },
            "panic": { "enabled": true, "window": "6s", "threshold": 2.0, "stableWindow": "60s" },
            "schedules": [{ "name": "double-11", "cron": "0 50 23 10 11 *", "timezone": "Asia/Shanghai", "duration": "3h", "minReplicas": 50 }],
            "placement": { "burst": { "enabled": true, "maxReplicas": 100 }, "requests": { "cpu": "500m", "memory": "1Gi" } },
            "activation": { "window": "30s" },
            "hpaTolerance": 0.1,
        });
        let mut checkout = app.clone();
        checkout["borrowable"] = json!(true);
        json!({ "namespaces": ["acme-prod"], "defaults": app, "apps": { "checkout": checkout } })
    }

    /// Numbers as f64, so `150` and `150.0` compare equal.
    fn normalized(v: &Value) -> Value {
        match v {
            Value::Number(n) => json!(n.as_f64()),
            Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), normalized(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Dotted paths of every leaf property of a schema (`apps.*` for map values,
    /// `schedules[]` for list items).
    fn schema_paths(schema: &Value, at: &str, out: &mut BTreeSet<String>) {
        let join = |k: &str| {
            if at.is_empty() {
                k.to_owned()
            } else {
                format!("{at}.{k}")
            }
        };
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                schema_paths(v, &join(k), out);
            }
        } else if let Some(items) = schema.get("items") {
            schema_paths(items, &format!("{at}[]"), out);
        } else if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            schema_paths(values, &join("*"), out);
        } else {
            out.insert(at.to_owned());
        }
    }

    fn value_paths(v: &Value, at: &str, map_at: &[&str], out: &mut BTreeSet<String>) {
        let join = |k: &str| {
            if at.is_empty() {
                k.to_owned()
            } else {
                format!("{at}.{k}")
            }
        };
        match v {
            Value::Object(map) if map_at.contains(&at) => {
                for v in map.values() {
                    value_paths(v, &join("*"), map_at, out);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    value_paths(v, &join(k), map_at, out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for v in items {
                    value_paths(v, &format!("{at}[]"), map_at, out);
                }
            }
            _ => {
                out.insert(at.to_owned());
            }
        }
    }

    fn spec_schema() -> Value {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(ScalingPolicy::crd()).expect("crd");
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
            .cloned()
            .expect("spec schema")
    }

    #[test]
    fn the_schema_and_the_file_format_have_the_same_fields() {
        let spec = every_field();
        // The file loader takes it (it refuses unknown fields)...
        let policy = crate::policy::parse_policy("every-field", &document_text("acme", &spec))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.apps.len(), 1);
        // ...the resource type keeps every field of it...
        let typed: ScalingPolicySpec = serde_json::from_value(spec.clone()).expect("typed");
        let back = serde_json::to_value(&typed).expect("back");
        assert_eq!(normalized(&back), normalized(&spec));
        // ...and the schema has no field the example lacks.
        let mut in_schema = BTreeSet::new();
        schema_paths(&spec_schema(), "", &mut in_schema);
        let mut in_example = BTreeSet::new();
        value_paths(&spec, "", &["apps"], &mut in_example);
        // `borrowable` is one type for `defaults` and apps; a CEL rule (and the loader)
        // refuse it in `defaults`.
        in_example.insert("defaults.borrowable".into());
        assert_eq!(in_schema, in_example);
    }

    #[test]
    fn the_schema_documents_every_field() {
        fn undocumented(schema: &Value, at: &str, out: &mut Vec<String>) {
            for (k, v) in schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let path = format!("{at}.{k}");
                let leaf = v.get("properties").is_none();
                if leaf && v.get("description").is_none() && v.get("items").is_none() {
                    out.push(path.clone());
                }
                undocumented(v, &path, out);
                if let Some(items) = v.get("items") {
                    undocumented(items, &format!("{path}[]"), out);
                }
                if let Some(values) = v.get("additionalProperties") {
                    undocumented(values, &format!("{path}.*"), out);
                }
            }
        }
        let mut missing = Vec::new();
        undocumented(&spec_schema(), "spec", &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }

    #[test]
    fn deploy_crd_is_what_the_generator_prints() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/crd/scalingpolicies.spillway.io.yaml");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == crd_yaml(),
            "deploy/crd/ differs from the generator: run `spillway crd > deploy/crd/scalingpolicies.spillway.io.yaml`"
        );
    }
}
