//! Several scalers behind one Service (the `ha` and `sharded` overlays): every replica
//! must see every input, or KEDA gets different answers depending on which replica its
//! connection landed on.
//!
//! Pulled inputs already reach every replica: each one scrapes the same targets, polls
//! the same PromQL source, the same collector shards and the same `metrics.k8s.io`.
//! Pushed inputs do not: a remote-write request or a gRPC push stream goes through the
//! Service to one replica only. So a process started with `ha:` in its serve config
//! refuses them, with an error that says what to do instead, unless the operator states
//! that every writer sends every write to every replica:
//!
//! ```yaml
//! ha:
//!   # true only when each agent writes to each replica's own address (the headless
//!   # Service spillway-replicas lists them), never through the spillway Service.
//!   writesReachEveryReplica: false
//! ```
//!
//! Refusing rather than forwarding to peers keeps one rule an SRE can check: an agent
//! that gets this error is pointed at one replica and must be pointed at all of them,
//! or replaced by scraping. Forwarding would make one replica's view depend on another
//! replica being up and reachable at that moment.

use std::sync::Arc;

use serde::Deserialize;
use spillway_collector::ingest_grpc::PushService;
use spillway_proto::ingest::ingest_server::{Ingest as IngestRpc, IngestServer};
use spillway_proto::ingest::{PushSummary, SampleBatch};
use tonic::{Request, Response, Status, Streaming};

use crate::access::writes::WriteAuthority;
use crate::telemetry::Metrics;

/// The `ha:` section of the serve config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HaSettings {
    /// Every writer sends every write to every replica, so writes are accepted.
    #[serde(default)]
    pub writes_reach_every_replica: bool,
}

impl HaSettings {
    /// The error a write gets, or `None` when writes are accepted.
    pub fn write_refusal(&self) -> Option<Arc<str>> {
        (!self.writes_reach_every_replica).then(|| Arc::from(REFUSAL))
    }
}

const REFUSAL: &str = "this Spillway runs in HA mode (`ha:` in its serve config) with other \
replicas behind the same Service, so a write sent here reaches this replica only and the \
others would answer KEDA differently; feed every replica the same data instead: scrape the \
source from every replica (scrape.targets or kubernetes.gateways), or send every write to \
every replica's own address (the headless Service spillway-replicas lists them) and set \
ha.writesReachEveryReplica: true";

/// Spillway's push ingest for authorized writers, or its refusal in HA mode.
#[derive(Clone)]
pub struct PushGate {
    push: PushService,
    refusal: Option<Arc<str>>,
    metrics: Arc<Metrics>,
    writes: Arc<WriteAuthority>,
}

impl PushGate {
    pub fn new(
        push: PushService,
        refusal: Option<Arc<str>>,
        metrics: Arc<Metrics>,
        writes: Arc<WriteAuthority>,
    ) -> Self {
        Self {
            push,
            refusal,
            metrics,
            writes,
        }
    }

    /// The push service's own limits, as [`PushService::into_server`] sets them.
    pub fn into_server(self) -> IngestServer<Self> {
        let limit = self.push.config().max_message_bytes;
        IngestServer::new(self).max_decoding_message_size(limit)
    }
}

#[tonic::async_trait]
impl IngestRpc for PushGate {
    async fn push(
        &self,
        request: Request<Streaming<SampleBatch>>,
    ) -> Result<Response<PushSummary>, Status> {
        // Who is writing comes first: a caller that may not write learns nothing more.
        let scope = self.writes.authorize_push(&request)?;
        match &self.refusal {
            Some(refusal) => {
                self.metrics.count_refused_write("push");
                Err(Status::failed_precondition(refusal.to_string()))
            }
            None => self.push.push_as(request, Some(scope)).await,
        }
    }
}

/// `POST /api/v1/write` in HA mode: 409, which remote-write senders treat as final
/// (they log it and drop the batch instead of retrying forever).
pub async fn refuse_remote_write(
    axum::extract::State((refusal, metrics)): axum::extract::State<(Arc<str>, Arc<Metrics>)>,
) -> (axum::http::StatusCode, String) {
    metrics.count_refused_write("remote_write");
    (axum::http::StatusCode::CONFLICT, format!("{refusal}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_unless_they_reach_every_replica() {
        let refusal = HaSettings::default().write_refusal().expect("refused");
        for needle in [
            "HA mode",
            "every replica",
            "writesReachEveryReplica: true",
            "scrape",
        ] {
            assert!(refusal.contains(needle), "{needle}: {refusal}");
        }
        assert_eq!(
            HaSettings {
                writes_reach_every_replica: true
            }
            .write_refusal(),
            None
        );
        let parsed: HaSettings =
            serde_saphyr::from_str("writesReachEveryReplica: true\n").expect("parses");
        assert!(parsed.writes_reach_every_replica);
        assert!(serde_saphyr::from_str::<HaSettings>("fanOut: true\n").is_err());
    }
}
