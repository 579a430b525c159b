//! Series the shipped alert rules (`deploy/alerts/`) need that no other family carries,
//! read from the published decisions and the audit trail when `/metrics` is scraped:
//!
//! - `spillway_workload_frozen{tenant,app,source}`: 1 while a freeze holds the workload;
//! - `spillway_workload_freeze_expired{tenant,app,source}`: 1 while an expired freeze is
//!   still set (scaling resumed, the freeze was not removed);
//! - `spillway_workload_freeze_held_replicas` / `_engine_replicas`: what the freeze serves
//!   and what the engine would (the difference a freeze is holding back);
//! - `spillway_workload_shadow_desired_replicas` / `_shadow_difference_replicas`: what
//!   the tenant's candidate policy decides, and how far from the live one;
//! - `spillway_workload_candidate_acting`: 1 where a candidate's grade promotes it;
//! - `spillway_workload_signal_stale{tenant,app,signal}`: 1 for each configured signal
//!   without fresh data (scale-down is held meanwhile);
//! - `spillway_audit_entries{kind}`: changes of policy, freeze and grade since start.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::serve::workloads::Workloads;

#[derive(Debug)]
pub struct AlertingSeries {
    pub workloads: Arc<Workloads>,
}

impl Collector for AlertingSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let decided: Vec<_> = self
            .workloads
            .all()
            .into_iter()
            .filter_map(|entry| entry.latest().map(|d| (entry.key.clone(), d)))
            .collect();
        let frozen: Vec<_> = decided
            .iter()
            .filter_map(|(key, d)| d.freeze.as_ref().map(|f| (key, d, f)))
            .collect();
        for (name, help, holding) in [
            (
                "workload_frozen",
                "1 while an emergency freeze holds the workload's replicas, by where it was set (api, annotation)",
                true,
            ),
            (
                "workload_freeze_expired",
                "1 while a freeze whose expiry passed is still set: it no longer holds and scaling resumed",
                false,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (key, _, f) in frozen.iter().filter(|(_, _, f)| f.holding == holding) {
                let labels = [
                    ("tenant", &*key.tenant),
                    ("app", &*key.app),
                    ("source", f.freeze.source.as_str()),
                ];
                ConstGauge::new(1).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, engine) in [
            (
                "workload_freeze_held_replicas",
                "Replicas a freeze holds the workload at",
                false,
            ),
            (
                "workload_freeze_engine_replicas",
                "Replicas the engine decides for a frozen workload (served once the freeze goes)",
                true,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (key, d, f) in frozen.iter().filter(|(_, _, f)| f.holding) {
                let labels = [("tenant", &*key.tenant), ("app", &*key.app)];
                let number = if engine { f.engine_desired } else { d.desired };
                ConstGauge::new(i64::from(number)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, difference) in [
            (
                "workload_shadow_desired_replicas",
                "Replicas the tenant's candidate policy decides for the workload (never acted on)",
                false,
            ),
            (
                "workload_shadow_difference_replicas",
                "The candidate policy's desired replicas minus the live policy's",
                true,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (key, d) in &decided {
                let Some(shadow) = &d.shadow else { continue };
                let labels = [("tenant", &*key.tenant), ("app", &*key.app)];
                let number = if difference {
                    shadow.difference
                } else {
                    i64::from(shadow.candidate_desired)
                };
                ConstGauge::new(number).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut acting = encoder.encode_descriptor(
            "workload_candidate_acting",
            "1 where the tenant's candidate policy is promoted by its grade and KEDA is served its decision; 0 where it is shadow only or was rolled back",
            None,
            MetricType::Gauge,
        )?;
        for (key, d) in &decided {
            let Some(shadow) = &d.shadow else { continue };
            let labels = [("tenant", &*key.tenant), ("app", &*key.app)];
            ConstGauge::new(i64::from(shadow.acting == "candidate"))
                .encode(acting.encode_family(&labels)?)?;
        }
        let mut stale = encoder.encode_descriptor(
            "workload_signal_stale",
            "1 for each configured signal of the workload without fresh data (scale-down is held until it returns)",
            None,
            MetricType::Gauge,
        )?;
        for (key, d) in &decided {
            for signal in &d.missing {
                let labels = [
                    ("tenant", &*key.tenant),
                    ("app", &*key.app),
                    ("signal", *signal),
                ];
                ConstGauge::new(1).encode(stale.encode_family(&labels)?)?;
            }
        }
        let mut audit = encoder.encode_descriptor(
            "audit_entries",
            "Changes of policy, freeze and grade recorded in the audit trail since start, by kind",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in self.workloads.audit().counts() {
            ConstCounter::new(n).encode(audit.encode_family(&[("kind", kind.as_str())])?)?;
        }
        Ok(())
    }
}
