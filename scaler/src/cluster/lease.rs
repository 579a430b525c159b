//! The write gate: a `coordination.k8s.io` Lease. Only its holder writes, so several
//! Spillway replicas can run; a replica that cannot renew stops writing when its term
//! ends, and one that sees another holder stops at once.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use super::ApiCalls;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    pub duration_secs: i32,
    /// Renew when the last renewal is at least this old.
    pub renew_after_secs: i64,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration_secs: 15,
            renew_after_secs: 5,
        }
    }
}

/// What to do about the Lease, decided from its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// No Lease yet: create it naming us.
    Create,
    /// Ours and fresh: write.
    Hold,
    /// Ours but due for renewal.
    Renew,
    /// Someone else's and expired (or unnamed): take it over.
    TakeOver,
    /// Someone else's and current: do not write.
    Follow { holder: String },
}

fn millis(t: &Option<MicroTime>) -> Option<i64> {
    t.as_ref().map(|t| t.0.as_millisecond())
}

/// Pure: the step for a Lease's spec (None: no Lease) at `now_ms`.
pub fn lease_step(spec: Option<&LeaseSpec>, config: &LeaseConfig, now_ms: i64) -> LeaseStep {
    let Some(spec) = spec else {
        return LeaseStep::Create;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renewed = millis(&spec.renew_time)
        .or(millis(&spec.acquire_time))
        .unwrap_or(0);
    let duration_ms = i64::from(spec.lease_duration_seconds.unwrap_or(config.duration_secs)) * 1000;
    if holder == config.identity {
        if now_ms.saturating_sub(renewed) >= config.renew_after_secs * 1000 {
            LeaseStep::Renew
        } else {
            LeaseStep::Hold
        }
    } else if holder.is_empty() || now_ms >= renewed.saturating_add(duration_ms) {
        LeaseStep::TakeOver
    } else {
        LeaseStep::Follow { holder }
    }
}

/// Checks (and when due, renews or takes) the Lease before a reconcile writes.
pub struct LeaseGate {
    api: Api<Lease>,
    config: LeaseConfig,
    /// End of the term we last secured; writes stop when it passes unrenewed.
    held_until_ms: Option<i64>,
}

fn stamp(now_ms: i64) -> Option<MicroTime> {
    Timestamp::from_millisecond(now_ms).ok().map(MicroTime)
}

impl LeaseGate {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaseGate {
            api: Api::namespaced(client, &config.namespace),
            config,
            held_until_ms: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One GET, plus one write when creating, renewing or taking over. True: this
    /// replica may write now. API errors count as "not leader" unless our term still runs.
    pub async fn check(&mut self, now_ms: i64, calls: &mut ApiCalls) -> bool {
        calls.reads += 1;
        let current = match self.api.get_opt(&self.config.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "reading the Lease failed");
                return self.term_runs(now_ms);
            }
        };
        let step = lease_step(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.config,
            now_ms,
        );
        let duration_ms = i64::from(self.config.duration_secs) * 1000;
        match step {
            LeaseStep::Hold => {
                let renewed = current
                    .as_ref()
                    .and_then(|l| l.spec.as_ref())
                    .and_then(|s| millis(&s.renew_time))
                    .unwrap_or(now_ms);
                self.held_until_ms = Some(renewed.saturating_add(duration_ms));
                self.term_runs(now_ms)
            }
            LeaseStep::Follow { holder } => {
                if self.held_until_ms.take().is_some() {
                    tracing::warn!(%holder, "lost the Lease; writes stop");
                }
                false
            }
            LeaseStep::Create | LeaseStep::Renew | LeaseStep::TakeOver => {
                calls.writes += 1;
                let mut lease = current.clone().unwrap_or_default();
                lease.metadata.name = Some(self.config.name.clone());
                lease.metadata.namespace = Some(self.config.namespace.clone());
                let mut spec = lease.spec.clone().unwrap_or_default();
                if step != LeaseStep::Renew {
                    spec.acquire_time = stamp(now_ms);
                    if step == LeaseStep::TakeOver {
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                }
                spec.holder_identity = Some(self.config.identity.clone());
                spec.lease_duration_seconds = Some(self.config.duration_secs);
                spec.renew_time = stamp(now_ms);
                lease.spec = Some(spec);
                // The resourceVersion read above makes the write a compare-and-swap:
                // two replicas racing for the same Lease cannot both win.
                let written = if current.is_some() {
                    self.api
                        .replace(&self.config.name, &PostParams::default(), &lease)
                        .await
                } else {
                    self.api.create(&PostParams::default(), &lease).await
                };
                match written {
                    Ok(_) => {
                        self.held_until_ms = Some(now_ms.saturating_add(duration_ms));
                        true
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "writing the Lease failed");
                        if step == LeaseStep::Renew {
                            self.term_runs(now_ms)
                        } else {
                            false
                        }
                    }
                }
            }
        }
    }

    /// Hands the Lease back (holder cleared) if we hold it, so another replica takes
    /// over at once instead of after the Lease expires. For shutdown; errors are only
    /// logged, since expiry hands it over anyway.
    pub async fn release(&mut self) {
        if self.held_until_ms.take().is_none() {
            return;
        }
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.config.identity.as_str());
        if !ours {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "handing the Lease back failed; it expires instead");
        }
    }

    fn term_runs(&self, now_ms: i64) -> bool {
        self.held_until_ms.is_some_and(|until| now_ms < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_ms: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: stamp(renewed_ms),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn steps() {
        let c = LeaseConfig::new("ns", "spillway", "me");
        let t = 1_800_000_000_000;
        assert_eq!(lease_step(None, &c, t), LeaseStep::Create);
        assert_eq!(
            lease_step(Some(&spec("me", t - 1000)), &c, t),
            LeaseStep::Hold
        );
        assert_eq!(
            lease_step(Some(&spec("me", t - 5000)), &c, t),
            LeaseStep::Renew
        );
        assert_eq!(
            lease_step(Some(&spec("other", t - 14_999)), &c, t),
            LeaseStep::Follow {
                holder: "other".into()
            }
        );
        assert_eq!(
            lease_step(Some(&spec("other", t - 15_000)), &c, t),
            LeaseStep::TakeOver
        );
        assert_eq!(lease_step(Some(&spec("", t)), &c, t), LeaseStep::TakeOver);
    }
}
