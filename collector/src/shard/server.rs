//! The shard side: `spillway.shard.v1.Shard/Snapshot` answers with the current sum of
//! every workload's signals over the targets this shard owns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use spillway_proto::ingest::Signal as WireSignal;
use spillway_proto::shard::shard_server::{Shard, ShardServer as ShardRpcServer};
use spillway_proto::shard::{SnapshotRequest, SnapshotResponse, WorkloadTotal};
use tonic::{Request, Response, Status};

use super::ShardSpec;
use crate::ingest::Ingest;
use crate::scrape::TargetHealth;
use crate::signal::Signal;

#[derive(Debug, Default)]
pub struct ShardServerStats {
    pub snapshots: AtomicU64,
    /// Callers that expected another shard (a misconfigured scaler).
    pub refused: AtomicU64,
}

/// Serves this shard's totals.
#[derive(Clone, Debug)]
pub struct ShardServer {
    spec: ShardSpec,
    ingest: Arc<Ingest>,
    targets: Arc<DashMap<Arc<str>, TargetHealth>>,
    /// Before this instant (unix ms) not every target has had the two scrapes a rate
    /// needs, so the totals would understate the shard's share.
    warm_at_ms: i64,
    stats: Arc<ShardServerStats>,
}

impl ShardServer {
    pub fn new(
        spec: ShardSpec,
        ingest: Arc<Ingest>,
        targets: Arc<DashMap<Arc<str>, TargetHealth>>,
        warm_at_ms: i64,
    ) -> Self {
        Self {
            spec,
            ingest,
            targets,
            warm_at_ms,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<ShardServerStats> {
        self.stats.clone()
    }

    pub fn is_warm(&self, now_ms: i64) -> bool {
        now_ms >= self.warm_at_ms
    }

    pub fn into_service(self) -> ShardRpcServer<Self> {
        ShardRpcServer::new(self).max_encoding_message_size(64 << 20)
    }

    /// The answer to `request` at `now_ms`.
    pub fn snapshot(
        &self,
        request: &SnapshotRequest,
        now_ms: i64,
    ) -> Result<SnapshotResponse, Status> {
        if request.expected_count != self.spec.count || request.expected_index != self.spec.index {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Status::failed_precondition(format!(
                "this is collector shard {}, not {}/{}: check the scaler's collectors.shards order",
                self.spec, request.expected_index, request.expected_count
            )));
        }
        self.stats.snapshots.fetch_add(1, Ordering::Relaxed);
        let totals = self
            .ingest
            .totals()
            .into_iter()
            .map(|total| WorkloadTotal {
                tenant: total.workload.tenant.to_string(),
                app: total.workload.app.to_string(),
                signal: wire_signal(total.signal) as i32,
                value: total.value,
            })
            .collect();
        let targets_up = self.targets.iter().filter(|t| t.up).count();
        Ok(SnapshotResponse {
            shard_index: self.spec.index,
            shard_count: self.spec.count,
            taken_at_ms: now_ms,
            warm: self.is_warm(now_ms),
            targets_owned: u32::try_from(self.targets.len()).unwrap_or(u32::MAX),
            targets_up: u32::try_from(targets_up).unwrap_or(u32::MAX),
            totals,
        })
    }
}

pub(crate) fn wire_signal(signal: Signal) -> WireSignal {
    match signal {
        Signal::Qps => WireSignal::Qps,
        Signal::CpuCores => WireSignal::CpuCores,
        Signal::MemoryBytes => WireSignal::MemoryBytes,
    }
}

pub(crate) fn from_wire(signal: i32) -> Option<Signal> {
    match WireSignal::try_from(signal) {
        Ok(WireSignal::Qps) => Some(Signal::Qps),
        Ok(WireSignal::CpuCores) => Some(Signal::CpuCores),
        Ok(WireSignal::MemoryBytes) => Some(Signal::MemoryBytes),
        Ok(WireSignal::Unspecified) | Err(_) => None,
    }
}

#[tonic::async_trait]
impl Shard for ShardServer {
    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotResponse>, Status> {
        let now_ms = crate::clock::unix_ms();
        ShardServer::snapshot(self, request.get_ref(), now_ms).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::WorkloadKey;
    use crate::store::StoreLimits;

    #[test]
    fn answers_its_totals_and_refuses_callers_expecting_another_shard() {
        let ingest = Ingest::new(StoreLimits::default());
        let target: Arc<str> = "http://gw-a:9113/metrics".into();
        ingest.apply(
            &target,
            Signal::Qps,
            vec![(WorkloadKey::new("acme", "web"), 25.0)],
            1_000,
        );
        let health = Arc::new(DashMap::new());
        let mut up = TargetHealth::new(&target);
        up.up = true;
        health.insert(target.clone(), up);
        let server = ShardServer::new(ShardSpec::new(1, 3).unwrap(), ingest, health, 5_000);

        let wrong = SnapshotRequest {
            expected_index: 0,
            expected_count: 3,
        };
        let error = server.snapshot(&wrong, 6_000).unwrap_err();
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        assert!(error.message().contains("shard 1/3"), "{}", error.message());

        let right = SnapshotRequest {
            expected_index: 1,
            expected_count: 3,
        };
        let cold = server.snapshot(&right, 4_999).unwrap();
        assert!(!cold.warm);
        let answer = server.snapshot(&right, 6_000).unwrap();
        assert!(answer.warm);
        assert_eq!((answer.targets_owned, answer.targets_up), (1, 1));
        assert_eq!(answer.totals.len(), 1);
        assert_eq!(answer.totals[0].value, 25.0);
        assert_eq!(from_wire(answer.totals[0].signal), Some(Signal::Qps));
        assert_eq!(server.stats().refused.load(Ordering::Relaxed), 1);
    }
}
