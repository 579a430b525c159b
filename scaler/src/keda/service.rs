//! The `externalscaler.ExternalScaler` service KEDA calls.
//!
//! Every answer comes from memory: the policy snapshot and the latest published
//! decision. `GetMetricSpec` needs only the policy, so it keeps answering while metrics
//! are missing (KEDA's fallback only works if it does); `GetMetrics` fails with
//! `UNAVAILABLE` rather than invent a number when no decision exists yet.

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
use crate::policy::PolicyStore;
use crate::telemetry::{GrpcMethod, Metrics, StreamGuard};
use crate::workloads::{WorkloadEntry, Workloads};

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
    fn resolve(&self, reference: Option<&ScaledObjectRef>) -> Result<WorkloadRef, Status> {
        let workload = parse_ref(reference)?;
        self.policies
            .current()
            .lookup_for(
                &workload.key.tenant,
                &workload.key.app,
                &workload.policy_app,
                &workload.namespace,
            )
            .map_err(|error| lookup_status(&error, &workload))?;
        Ok(workload)
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
        let result = self.resolve(Some(request.get_ref())).and_then(|workload| {
            let entry = self.entry(&workload)?;
            // No decision yet means no evidence of traffic: inactive, not an error, so an
            // idle app at zero stays there quietly.
            let active = entry.latest().is_some_and(|d| d.active);
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
        let result = self.resolve(Some(request.get_ref())).and_then(|workload| {
            let entry = self.entry(&workload)?;
            let guard = self.metrics.stream_opened();
            Ok(Response::new(activity_stream(
                entry.subscribe_active(),
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
        let result = self.resolve(Some(request.get_ref())).map(|_| {
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
        let result = self
            .resolve(request.scaled_object_ref.as_ref())
            .and_then(|workload| {
                // KEDA strips its "sN-" prefix and may change case; compare accordingly.
                if !request.metric_name.eq_ignore_ascii_case(METRIC_NAME) {
                    return Err(Status::invalid_argument(format!(
                        "{workload}: unknown metric '{}'; Spillway serves only '{METRIC_NAME}' \
                         (as returned by GetMetricSpec)",
                        request.metric_name
                    )));
                }
                let entry = self.entry(&workload)?;
                let Some(decision) = entry.latest() else {
                    return Err(Status::unavailable(format!(
                        "{workload}: no decision yet: no signal data has been collected for \
                         {}, or this process started less than a scale-down window ago and \
                         holds; check the collector's targets with `spillway status`",
                        workload.key
                    )));
                };
                let replicas = entry.served_replicas(&decision);
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

/// Sends the current activity at once, then each transition as it is published. Ends
/// with OK on shutdown so KEDA reconnects without growing its backoff.
fn activity_stream(
    mut active: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    guard: StreamGuard,
) -> ActivityStream {
    let initial = *active.borrow_and_update();
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
