//! KEDA, as Spillway meets it.
//!
//! - A client that calls Spillway as KEDA does: one shared HTTP/2 channel, the full
//!   trigger metadata (including `scalerAddress`), and per poll `GetMetricSpec` →
//!   `GetMetrics` → `IsActive` with the HPA path's 3 s deadline.
//! - [`KedaModel`]: a model of what KEDA v2.20 does with those answers for one
//!   ScaledObject: activation and `cooldownPeriod`, `minReplicaCount`, and `fallback`
//!   with each `behavior`, rule by rule, each rule naming its file and function. Pure:
//!   answers and time are passed in.

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

/// Polls as KEDA does (every 100 ms, for at most 30 s) until `GetMetrics` serves `want`.
pub async fn until_served(client: &Client, reference: &ScaledObjectRef, want: f64, what: &str) {
    crate::wait::until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut client = client.clone();
            let reference = reference.clone();
            async move {
                poll(&mut client, &reference)
                    .await
                    .ok()
                    .filter(|p| p.value == want)
            }
        },
    )
    .await;
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

/// `fallback.behavior` (`apis/keda/v1alpha1`, v2.17+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackBehavior {
    /// The default: `fallback.replicas`.
    Static,
    CurrentReplicas,
    CurrentReplicasIfHigher,
    CurrentReplicasIfLower,
}

/// `spec.fallback`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub failure_threshold: u32,
    pub replicas: u32,
    pub behavior: FallbackBehavior,
}

/// The parts of a ScaledObject that decide what KEDA does with a scaler's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaledObjectSpec {
    /// `minReplicaCount`, default 0 (`RequestScale`: "if scaledObject.Spec.MinReplicaCount
    /// is not set, then set the default value (0)").
    pub min_replica_count: u32,
    /// `maxReplicaCount`, default 100.
    pub max_replica_count: u32,
    /// `cooldownPeriod`, default 300 s (`scale_executor.go` `defaultCooldownPeriod`).
    pub cooldown_period_secs: u32,
    /// `initialCooldownPeriod`, default 0.
    pub initial_cooldown_period_secs: u32,
    pub fallback: Option<Fallback>,
}

impl Default for ScaledObjectSpec {
    fn default() -> Self {
        Self {
            min_replica_count: 0,
            max_replica_count: 100,
            cooldown_period_secs: 300,
            initial_cooldown_period_secs: 0,
            fallback: None,
        }
    }
}

/// What one `GetMetricsAndActivity` (`pkg/scalers/external_scaler.go`) got from the
/// scaler: the metric value and `IsActive`, or the error of either call.
pub type Answer = Result<(f64, bool), String>;

/// What a polling pass wrote, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleAction {
    /// `scaleFromZeroOrIdle`: `spec.replicas` from 0 to `minReplicaCount` (or 1).
    Activated { to: u32 },
    /// `scaleToZeroOrIdle`: after the cooldown, `spec.replicas` to `minReplicaCount`.
    Deactivated { to: u32 },
    /// Inactive with `spec.replicas` below `minReplicaCount`: raised to it.
    RaisedToMin { to: u32 },
}

/// One ScaledObject with an `external` trigger, as KEDA's operator and metrics adapter
/// keep it.
#[derive(Clone, Debug)]
pub struct KedaModel {
    pub spec: ScaledObjectSpec,
    created_at_ms: i64,
    /// `status.lastActiveTime`.
    pub last_active_ms: Option<i64>,
    /// `status.health[metric].numberOfFailures`.
    pub failures: u32,
    /// `KEDAScalerFailed` events recorded by the polling loop.
    pub scaler_failed_events: u64,
    /// Polling passes in which the fallback answered for the scaler.
    pub fallback_passes: u64,
}

impl KedaModel {
    pub fn new(spec: ScaledObjectSpec, created_at_ms: i64) -> Self {
        Self {
            spec,
            created_at_ms,
            last_active_ms: None,
            failures: 0,
            scaler_failed_events: 0,
            fallback_passes: 0,
        }
    }

    /// `pkg/fallback/fallback.go` `GetMetricsWithFallback`, shared by the polling loop
    /// and the metrics adapter (one health counter for both): the value to use and
    /// whether the fallback made it, or `None` when the error goes through.
    /// `current_spec` is what `resolver.GetCurrentReplicas` reads: `spec.replicas`.
    fn with_fallback(&mut self, answer: &Answer, current_spec: u32) -> Option<(f64, bool)> {
        let fallback = self.spec.fallback;
        match answer {
            Ok((value, _)) => {
                // suppressedError == nil: health reset to 0 when a fallback is configured.
                if fallback.is_some() {
                    self.failures = 0;
                }
                Some((*value, false))
            }
            Err(_) => {
                let fallback = fallback?;
                // IncrementFailure
                self.failures += 1;
                // NumberOfFailures > FailureThreshold: doFallback.
                (self.failures > fallback.failure_threshold)
                    .then(|| (f64::from(do_fallback(fallback, current_spec)), true))
            }
        }
    }

    /// The metrics adapter answering the HPA (`pkg/scaling/scale_handler.go`
    /// `GetScaledObjectMetrics` → `processMetricsWithFallback`): the value the HPA
    /// reads for Spillway's metric, or `None` when the HPA gets an error.
    pub fn metric_for_hpa(&mut self, answer: &Answer, current_spec: u32) -> Option<f64> {
        self.with_fallback(answer, current_spec)
            .map(|(value, _)| value)
    }

    /// One polling-loop pass (`scale_handler.go` `getScaledObjectState` /
    /// `getScalerState`, then `pkg/scaling/executor/scale_scaledobjects.go`
    /// `RequestScale`): what KEDA writes to `spec.replicas`, if anything.
    pub fn poll(&mut self, now_ms: i64, answer: &Answer, current_spec: u32) -> Option<ScaleAction> {
        let fallback = self.with_fallback(answer, current_spec);
        // getScalerState: isActiveOrFallback := fallbackActive || isMetricActive; an
        // error that the fallback did not absorb records KEDAScalerFailed.
        let (is_active, is_error) = match (answer, fallback) {
            (Ok((_, active)), _) => (*active, false),
            (Err(_), Some((_, true))) => {
                self.fallback_passes += 1;
                (true, false)
            }
            (Err(_), _) => {
                self.scaler_failed_events += 1;
                (false, true)
            }
        };
        let min = self.spec.min_replica_count;
        if is_active {
            // scaleFromZeroOrIdle when at 0; otherwise only lastActiveTime moves.
            if current_spec == 0 {
                let to = if min > 0 { min } else { 1 };
                self.last_active_ms = Some(now_ms);
                return Some(ScaleAction::Activated { to });
            }
            if !is_error {
                self.last_active_ms = Some(now_ms);
            }
            return None;
        }
        match self.spec.fallback {
            // "ScaleTarget will fallback to Fallback.Replicas after FailureThreshold"
            Some(f) if is_error && f.replicas != 0 => None,
            // TriggerError, nothing scaled.
            None if is_error => None,
            _ if current_spec > 0 && min == 0 => self.scale_to_zero(now_ms),
            _ if current_spec < min => Some(ScaleAction::RaisedToMin { to: min }),
            _ => None,
        }
    }

    /// `scaleToZeroOrIdle`: only once the cooldown since the last active time (or the
    /// initial cooldown since creation) has passed.
    fn scale_to_zero(&self, now_ms: i64) -> Option<ScaleAction> {
        let cooled = match self.last_active_ms {
            None => {
                self.created_at_ms + i64::from(self.spec.initial_cooldown_period_secs) * 1000
                    < now_ms
            }
            Some(last) => last + i64::from(self.spec.cooldown_period_secs) * 1000 < now_ms,
        };
        cooled.then_some(ScaleAction::Deactivated {
            to: self.spec.min_replica_count,
        })
    }
}

/// `pkg/fallback/fallback.go` `doFallback` for an `AverageValue` target of 1: the
/// replica count the fallback metric makes the HPA compute.
pub fn do_fallback(fallback: Fallback, current_replicas: u32) -> u32 {
    match fallback.behavior {
        FallbackBehavior::Static => fallback.replicas,
        FallbackBehavior::CurrentReplicas => current_replicas,
        FallbackBehavior::CurrentReplicasIfHigher => current_replicas.max(fallback.replicas),
        FallbackBehavior::CurrentReplicasIfLower => current_replicas.min(fallback.replicas),
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;

    fn fallback(behavior: FallbackBehavior) -> Option<Fallback> {
        Some(Fallback {
            failure_threshold: 3,
            replicas: 4,
            behavior,
        })
    }

    #[test]
    fn an_inactive_trigger_takes_the_workload_to_min_replica_count_after_the_cooldown() {
        let mut keda = KedaModel::new(
            ScaledObjectSpec {
                cooldown_period_secs: 60,
                ..ScaledObjectSpec::default()
            },
            0,
        );
        assert_eq!(keda.poll(1_000, &Ok((2.0, true)), 2), None);
        assert_eq!(keda.last_active_ms, Some(1_000));
        assert_eq!(
            keda.poll(30_000, &Ok((2.0, false)), 2),
            None,
            "cooling down"
        );
        assert_eq!(
            keda.poll(61_001, &Ok((2.0, false)), 2),
            Some(ScaleAction::Deactivated { to: 0 }),
            "minReplicaCount 0 (the default): a min-2 app goes to 0 if IsActive says false"
        );
        // Active again at 0: scaled from zero to 1.
        assert_eq!(
            keda.poll(62_000, &Ok((1.0, true)), 0),
            Some(ScaleAction::Activated { to: 1 })
        );
    }

    #[test]
    fn min_replica_count_above_zero_never_deactivates_and_raises() {
        let mut keda = KedaModel::new(
            ScaledObjectSpec {
                min_replica_count: 2,
                cooldown_period_secs: 0,
                ..ScaledObjectSpec::default()
            },
            0,
        );
        assert_eq!(keda.poll(10_000, &Ok((0.0, false)), 3), None);
        assert_eq!(
            keda.poll(20_000, &Ok((0.0, false)), 1),
            Some(ScaleAction::RaisedToMin { to: 2 })
        );
        assert_eq!(
            keda.poll(30_000, &Ok((0.0, true)), 0),
            Some(ScaleAction::Activated { to: 2 })
        );
    }

    #[test]
    fn errors_are_scaler_failures_until_the_fallback_answers() {
        let mut keda = KedaModel::new(
            ScaledObjectSpec {
                fallback: fallback(FallbackBehavior::Static),
                ..ScaledObjectSpec::default()
            },
            0,
        );
        let error: Answer = Err("unavailable".into());
        for _ in 0..3 {
            assert_eq!(keda.metric_for_hpa(&error, 10), None);
        }
        assert_eq!(keda.failures, 3);
        // The fourth failure exceeds the threshold: the HPA reads fallback.replicas.
        assert_eq!(keda.metric_for_hpa(&error, 10), Some(4.0));
        // The polling loop shares the counter; in fallback the trigger is active, so an
        // app at zero is woken.
        assert_eq!(
            keda.poll(1_000, &error, 0),
            Some(ScaleAction::Activated { to: 1 })
        );
        assert_eq!(keda.scaler_failed_events, 0);
        // One good answer resets the count.
        assert_eq!(keda.metric_for_hpa(&Ok((7.0, true)), 10), Some(7.0));
        assert_eq!(keda.failures, 0);
        // Without a fallback every failing poll is a KEDAScalerFailed event.
        let mut bare = KedaModel::new(ScaledObjectSpec::default(), 0);
        assert_eq!(bare.poll(1_000, &error, 3), None);
        assert_eq!(bare.poll(2_000, &error, 3), None);
        assert_eq!(bare.scaler_failed_events, 2);
    }

    #[test]
    fn each_fallback_behavior() {
        let f = |behavior| Fallback {
            failure_threshold: 0,
            replicas: 4,
            behavior,
        };
        assert_eq!(do_fallback(f(FallbackBehavior::Static), 10), 4);
        assert_eq!(do_fallback(f(FallbackBehavior::CurrentReplicas), 10), 10);
        assert_eq!(
            do_fallback(f(FallbackBehavior::CurrentReplicasIfHigher), 10),
            10
        );
        assert_eq!(
            do_fallback(f(FallbackBehavior::CurrentReplicasIfHigher), 2),
            4
        );
        assert_eq!(
            do_fallback(f(FallbackBehavior::CurrentReplicasIfLower), 10),
            4
        );
        assert_eq!(
            do_fallback(f(FallbackBehavior::CurrentReplicasIfLower), 2),
            2
        );
    }
}
