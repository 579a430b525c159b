//! The status report served as JSON and rendered by `spillway status` / `explain`.

use serde::{Deserialize, Serialize};

use crate::workloads::WorkloadEntry;
use spillway_collector::scrape::TargetHealth;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub workloads: Vec<WorkloadStatus>,
    pub targets: Vec<TargetStatus>,
    pub policy_errors: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionView {
    pub desired: u32,
    pub current: u32,
    pub active: bool,
    pub rule: String,
    pub reason: String,
    pub at_ms: i64,
    pub qps: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub tenant: String,
    pub app: String,
    pub latest: Option<DecisionView>,
    pub recent: Vec<DecisionView>,
    pub stream_subscribers: usize,
}

impl WorkloadStatus {
    pub fn from_entry(entry: &WorkloadEntry) -> Self {
        let view = |p: &crate::workloads::Published| DecisionView {
            desired: p.desired,
            current: p.current,
            active: p.active,
            rule: p.rule.to_owned(),
            reason: p.reason.clone(),
            at_ms: p.at_ms,
            qps: p.qps,
        };
        Self {
            tenant: entry.key.tenant.to_string(),
            app: entry.key.app.to_string(),
            latest: entry.latest().as_deref().map(view),
            recent: entry.history().iter().map(|p| view(p)).collect(),
            stream_subscribers: entry.active_subscribers(),
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
