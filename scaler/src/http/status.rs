//! The status report served as JSON and rendered by `spillway status` / `explain`.

use serde::{Deserialize, Serialize};

use crate::cluster::hpa::HpaView;
use crate::conditions::Condition;
use crate::serve::replicas::Placed;
use crate::serve::workloads::{BandView, ProposalView, Published, WorkloadEntry};
use spillway_collector::scrape::TargetHealth;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub workloads: Vec<WorkloadStatus>,
    pub targets: Vec<TargetStatus>,
    /// One line per refused policy file (the last good version of each keeps serving).
    pub policy_errors: Vec<String>,
    /// Collector shards and whether each is counted, when collectors are sharded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<spillway_collector::shard::ShardStatus>,
    /// Every freeze the caller's tenants are under (held in memory, or read from
    /// ScaledObjects), expired ones included until they go.
    #[serde(default)]
    pub freezes: Vec<crate::freeze::Freeze>,
    /// Recent changes of policy, freeze and grade, oldest first (the last
    /// [`crate::audit::AUDIT_LEN`]; the log has every one).
    #[serde(default)]
    pub audit: Vec<crate::audit::AuditEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionView {
    pub desired: u32,
    /// What `GetMetrics` answered for the decision (after placement and the HPA's
    /// tolerance), and what the HPA runs after it.
    #[serde(default)]
    pub served: u32,
    #[serde(default)]
    pub expected: u32,
    /// `spec.replicas` the decision started from.
    pub current: u32,
    /// `status.replicas` as the HPA reads it (assumed equal to spec without the
    /// Kubernetes side).
    #[serde(default)]
    pub status_replicas: u32,
    #[serde(default)]
    pub ready: u32,
    pub active: bool,
    pub rule: String,
    pub reason: String,
    pub at_ms: i64,
    pub qps: Option<f64>,
    #[serde(default)]
    pub cpu_cores: Option<f64>,
    #[serde(default)]
    pub memory_bytes: Option<f64>,
    #[serde(default)]
    pub dominant: Option<String>,
    #[serde(default)]
    pub proposals: Vec<ProposalView>,
    #[serde(default)]
    pub missing: Vec<String>,
    #[serde(default)]
    pub partial: Vec<String>,
    #[serde(default)]
    pub band: Option<BandView>,
    #[serde(default)]
    pub placement: Option<Placed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<crate::freeze::FreezeView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<crate::policy::shadow::ShadowView>,
}

impl From<&Published> for DecisionView {
    fn from(p: &Published) -> Self {
        Self {
            desired: p.desired,
            served: p.served,
            expected: p.expected,
            current: p.current,
            status_replicas: p.scale.status,
            ready: p.ready,
            active: p.active,
            rule: p.rule.to_owned(),
            reason: p.reason.clone(),
            at_ms: p.at_ms,
            qps: p.qps,
            cpu_cores: p.cpu_cores,
            memory_bytes: p.memory_bytes,
            dominant: p.dominant.map(str::to_owned),
            proposals: p.proposals.clone(),
            missing: p.missing.iter().map(|s| (*s).to_owned()).collect(),
            partial: p.partial.iter().map(|s| (*s).to_owned()).collect(),
            band: p.band.clone(),
            placement: p.placement.clone(),
            freeze: p.freeze.clone(),
            shadow: p.shadow.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub tenant: String,
    pub app: String,
    pub latest: Option<DecisionView>,
    /// Decisions that changed the count, activity or rule, oldest first.
    pub recent: Vec<DecisionView>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub stream_subscribers: usize,
    /// The HPA KEDA created, as last read (Kubernetes side only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa: Option<HpaView>,
}

impl WorkloadStatus {
    pub fn from_entry(entry: &WorkloadEntry) -> Self {
        Self {
            tenant: entry.key.tenant.to_string(),
            app: entry.key.app.to_string(),
            latest: entry.latest().as_deref().map(DecisionView::from),
            recent: entry
                .history()
                .iter()
                .map(|p| DecisionView::from(&**p))
                .collect(),
            conditions: entry.conditions(),
            stream_subscribers: entry.active_subscribers(),
            hpa: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetStatus {
    pub id: String,
    pub url: String,
    pub up: bool,
    pub last_scrape_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub last_duration_ms: f64,
    pub last_error: Option<String>,
    pub consecutive_failures: u64,
    pub samples: u64,
}

impl TargetStatus {
    pub fn from_health(id: &str, health: &TargetHealth) -> Self {
        Self {
            id: id.to_owned(),
            url: health.url.clone(),
            up: health.up,
            last_scrape_ms: health.last_scrape_ms,
            last_success_ms: health.last_success_ms,
            last_duration_ms: health.last_duration.as_secs_f64() * 1000.0,
            last_error: health.last_error.clone(),
            consecutive_failures: health.consecutive_failures,
            samples: health.samples,
        }
    }
}
