//! A client that calls Spillway as KEDA does: one shared HTTP/2 channel, the full trigger
//! metadata (including `scalerAddress`), and per poll `GetMetricSpec` → `GetMetrics` →
//! `IsActive` with the HPA path's 3 s deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use spillway_proto::externalscaler::external_scaler_client::ExternalScalerClient;
use spillway_proto::externalscaler::{GetMetricsRequest, ScaledObjectRef};
use tonic::transport::Channel;
use tonic::{Request, Status};

pub type Client = ExternalScalerClient<Channel>;

/// KEDA's deadline on the HPA path (its metrics adapter's default service config).
pub const DEADLINE: Duration = Duration::from_secs(3);

pub async fn connect(addr: SocketAddr) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to spillway at {addr}: {e}"));
    ExternalScalerClient::new(channel)
}

/// A ScaledObject reference as KEDA builds it from an `external` trigger.
pub fn scaled_object(
    namespace: &str,
    name: &str,
    scaler: SocketAddr,
    metadata: &[(&str, &str)],
) -> ScaledObjectRef {
    let mut scaler_metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    scaler_metadata.insert("scalerAddress".into(), scaler.to_string());
    ScaledObjectRef {
        name: name.into(),
        namespace: namespace.into(),
        scaler_metadata,
    }
}

pub fn with_deadline<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

/// What one KEDA poll saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub metric_name: String,
    pub target: f64,
    pub value: f64,
    pub active: bool,
}

/// One poll exactly as KEDA's scale loop makes it. The value is read as KEDA reads it:
/// the float field when > 0, else the int field.
pub async fn poll(client: &mut Client, reference: &ScaledObjectRef) -> Result<Poll, Status> {
    let spec = client
        .get_metric_spec(with_deadline(reference.clone()))
        .await?
        .into_inner();
    let [spec] = spec.metric_specs.as_slice() else {
        return Err(Status::internal(format!(
            "expected exactly one metric spec, got {}",
            spec.metric_specs.len()
        )));
    };
    #[allow(deprecated)]
    let target = if spec.target_size_float > 0.0 {
        spec.target_size_float
    } else {
        spec.target_size as f64
    };
    let metrics = client
        .get_metrics(with_deadline(GetMetricsRequest {
            scaled_object_ref: Some(reference.clone()),
            metric_name: spec.metric_name.clone(),
        }))
        .await?
        .into_inner();
    let [value] = metrics.metric_values.as_slice() else {
        return Err(Status::internal(format!(
            "expected exactly one metric value, got {}",
            metrics.metric_values.len()
        )));
    };
    #[allow(deprecated)]
    let value = if value.metric_value_float > 0.0 {
        value.metric_value_float
    } else {
        value.metric_value as f64
    };
    let active = client
        .is_active(with_deadline(reference.clone()))
        .await?
        .into_inner()
        .result;
    Ok(Poll {
        metric_name: spec.metric_name.clone(),
        target,
        value,
        active,
    })
}
