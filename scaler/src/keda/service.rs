//! The `externalscaler.ExternalScaler` service KEDA calls.
//!
//! Every answer comes from memory: the policy snapshot, the latest published decision
//! and the newest replica counts. Errors are only for requests that are wrong (unknown
//! tenant or app, a namespace the policy does not list, missing metadata, an unknown
//! metric): KEDA shows any error as a trigger failure on every poll and, with
//! `fallback` configured, counts the trigger as active, which wakes an app at zero.
//!
//! - `GetMetricSpec` needs only the policy, so it answers whatever the data.
//! - `GetMetrics` answers from the first moment: every configured workload is decided
//!   before the server listens. With no data and no replica count the answer is the
//!   effective minimum (`replicas.min`, or a schedule in force), which with `min: 0` is
//!   0; with data but no replica count (no `kubernetes:` section) it is what the data
//!   asks for, and during warm-up the highest count asked for since start; with the
//!   replica count known it never goes below `spec.replicas` during warm-up. Warm-up
//!   may forbid lowering a workload, never raising one. The number is the decision
//!   after placement's burst cap and drain surge, through the HPA's tolerance
//!   ([`crate::hpa::serve`]).
//! - `IsActive` (and `StreamIsActive`) is true while load is above the activation
//!   threshold, and always while the effective minimum is above 0: KEDA's own
//!   `minReplicaCount` defaults to 0, and an inactive trigger would let KEDA take a
//!   `min: 2` app to 0 after its `cooldownPeriod`. Going to zero follows the policy's
//!   scale-down limits down to 1; from 1 the inactive trigger lets KEDA take it to 0.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use spillway_proto::externalscaler::external_scaler_server::ExternalScaler;
use spillway_proto::externalscaler::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::request::{WorkloadRef, lookup_status, parse_ref};
use crate::engine;
use crate::policy::{AppPolicy, PolicyStore};
use crate::serve::workloads::{WorkloadEntry, Workloads};
use crate::telemetry::{GrpcMethod, Metrics, StreamGuard};

/// The one metric Spillway serves: the desired replica count, with target 1, so KEDA's
/// AverageValue HPA computes `ceil(desired / 1)` and applies Spillway's decision as is.
pub const METRIC_NAME: &str = "spillway-replicas";

/// The service's shared state; cheap to clone.
#[derive(Clone)]
pub struct KedaService {
    policies: Arc<PolicyStore>,
    workloads: Arc<Workloads>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
}

impl KedaService {
    pub fn new(
        policies: Arc<PolicyStore>,
        workloads: Arc<Workloads>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            policies,
            workloads,
            metrics,
            shutdown,
        }
    }

    /// Parses the reference and checks it against the tenant's policy.
    fn resolve(
        &self,
        reference: Option<&ScaledObjectRef>,
    ) -> Result<(WorkloadRef, Arc<AppPolicy>), Status> {
        let workload = parse_ref(reference)?;
        let policy = self
            .policies
            .current()
            .lookup_for(
                &workload.key.tenant,
                &workload.key.app,
                &workload.policy_app,
                &workload.namespace,
            )
            .map_err(|error| lookup_status(&error, &workload))?;
        Ok((workload, policy))
    }

    /// The workload's live state. A policy that was just loaded, or an alias named for
    /// the first time, may not have reached the decision loop yet: the entry is created
    /// here and decided from the next tick on.
    fn entry(&self, workload: &WorkloadRef) -> Result<Arc<WorkloadEntry>, Status> {
        self.workloads
            .alias(
                &workload.key,
                &workload.policy_app,
                spillway_collector::clock::unix_ms(),
            )
            .map_err(|refused| Status::resource_exhausted(format!("{workload}: {refused}")))
    }

    fn timed<T>(
        &self,
        method: GrpcMethod,
        started: tokio::time::Instant,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics.observe_grpc(method, code, started.elapsed());
        result
    }
}

type ActivityStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;
type SpecStream = Pin<Box<dyn Stream<Item = Result<GetMetricSpecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for KedaService {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let started = tokio::time::Instant::now();
        let result = self
            .resolve(Some(request.get_ref()))
            .and_then(|(workload, policy)| {
                let entry = self.entry(&workload)?;
                // No decision yet (an alias named a moment ago) means no evidence of
                // traffic: active only if the minimum says so.
                let active = entry.latest().is_some_and(|d| d.active) || floor_active(&policy);
                Ok(Response::new(IsActiveResponse { result: active }))
            });
        self.timed(GrpcMethod::IsActive, started, result)
    }

    type StreamIsActiveStream = ActivityStream;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let started = tokio::time::Instant::now();
        let result = self
            .resolve(Some(request.get_ref()))
            .and_then(|(workload, policy)| {
                let entry = self.entry(&workload)?;
                let guard = self.metrics.stream_opened();
                Ok(Response::new(activity_stream(
                    entry.subscribe_active(),
                    floor_active(&policy),
                    self.shutdown.clone(),
                    guard,
                )))
            });
        self.timed(GrpcMethod::StreamIsActive, started, result)
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let started = tokio::time::Instant::now();
        let result = self.resolve(Some(request.get_ref())).map(|(workload, _)| {
            // KEDA asks for the spec before it asks for metrics: a workload named here
            // for the first time (an alias) is decided before its first GetMetrics.
            // An alias past the cap is refused by GetMetrics; the spec answers from the
            // policy alone, so KEDA's fallback still applies.
            let _ = self.workloads.alias(
                &workload.key,
                &workload.policy_app,
                spillway_collector::clock::unix_ms(),
            );
            #[allow(deprecated)]
            let spec = MetricSpec {
                metric_name: METRIC_NAME.to_owned(),
                target_size: 1,
                target_size_float: 1.0,
            };
            Response::new(GetMetricSpecResponse {
                metric_specs: vec![spec],
            })
        });
        self.timed(GrpcMethod::GetMetricSpec, started, result)
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let started = tokio::time::Instant::now();
        let request = request.get_ref();
        let result =
            self.resolve(request.scaled_object_ref.as_ref())
                .and_then(|(workload, policy)| {
                    // KEDA strips its "sN-" prefix and may change case; compare accordingly.
                    if !request.metric_name.eq_ignore_ascii_case(METRIC_NAME) {
                        return Err(Status::invalid_argument(format!(
                            "{workload}: unknown metric '{}'; Spillway serves only '{METRIC_NAME}' \
                         (as returned by GetMetricSpec)",
                            request.metric_name
                        )));
                    }
                    let entry = self.entry(&workload)?;
                    // Not decided yet (an alias named a moment ago, decided on the next
                    // tick): what a decision with nothing known would answer.
                    let replicas = match entry.latest() {
                        Some(decision) => entry.serve(&decision).replicas,
                        None => engine::effective_min(&policy, unix_secs()),
                    };
                    #[allow(deprecated)]
                    let value = MetricValue {
                        metric_name: request.metric_name.clone(),
                        metric_value: i64::from(replicas),
                        metric_value_float: f64::from(replicas),
                    };
                    Ok(Response::new(GetMetricsResponse {
                        metric_values: vec![value],
                    }))
                });
        self.timed(GrpcMethod::GetMetrics, started, result)
    }

    type StreamMetricSpecStream = SpecStream;

    async fn stream_metric_spec(
        &self,
        _request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let started = tokio::time::Instant::now();
        let result = Err(Status::unimplemented(
            "Spillway's metric spec is static; use GetMetricSpec",
        ));
        self.timed(GrpcMethod::StreamMetricSpec, started, result)
    }
}

/// Whether the policy alone makes the workload active now: an effective minimum above 0.
fn floor_active(policy: &AppPolicy) -> bool {
    engine::effective_min(policy, unix_secs()) > 0
}

fn unix_secs() -> i64 {
    spillway_collector::clock::unix_ms().div_euclid(1000)
}

/// Sends the current activity at once (true when `floor_active`, whatever has been
/// published so far), then each transition as it is published. Ends with OK on shutdown
/// so KEDA reconnects without growing its backoff.
fn activity_stream(
    mut active: watch::Receiver<bool>,
    floor_active: bool,
    shutdown: watch::Receiver<bool>,
    guard: StreamGuard,
) -> ActivityStream {
    let initial = *active.borrow_and_update() || floor_active;
    let first = futures::stream::once(async move { Ok(IsActiveResponse { result: initial }) });
    let rest = futures::stream::unfold((active, guard), move |(mut active, guard)| {
        let mut shutdown = shutdown.clone();
        async move {
            if *shutdown.borrow_and_update() {
                return None;
            }
            tokio::select! {
                changed = active.changed() => {
                    changed.ok()?;
                    let result = *active.borrow_and_update();
                    Some((Ok(IsActiveResponse { result }), (active, guard)))
                }
                _ = shutdown.changed() => None,
            }
        }
    });
    Box::pin(futures::StreamExt::chain(first, rest))
}
