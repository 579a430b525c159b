//! What stands between Spillway and a Deployment: KEDA, the HPA it creates and the
//! Deployment controller. Scenarios drive them through [`Peer`], so the same scenario
//! runs against [`ModelPeer`] (the models of [`crate::keda`] and [`crate::hpa_model`]
//! around the real `spillway` binary) and, later, against a real KEDA and control plane.
//!
//! [`DeploymentModel`] is pure (time passed in). [`ModelPeer`] is the edge: it calls
//! Spillway over gRPC, on the models' schedule, in real time (the binary's clock is the
//! wall clock).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spillway_proto::externalscaler::ScaledObjectRef;
use tokio::time::Instant;

use crate::fake_kube::{Collection, FakeKube};
use crate::hpa_model::{HpaModel, HpaSpec, Scale, SyncOutcome};
use crate::keda::{self, Answer, KedaModel, ScaleAction, ScaledObjectSpec};

/// KEDA, the HPA and the Deployment, as the scenarios need them.
// The scenarios are generic over the peer, never boxed, so the futures' Send-ness is
// the implementation's own.
#[allow(async_fn_in_trait)]
pub trait Peer {
    /// Lets `duration` pass: KEDA polls, the HPA syncs and the Deployment rolls as due.
    async fn run_for(&mut self, duration: Duration);
    /// The Deployment's scale now.
    fn scale(&self) -> Scale;
    /// `KEDAScalerFailed` events so far.
    fn scaler_failures(&self) -> u64;
    /// The lowest `spec.replicas` since the last [`Peer::reset_low_water`].
    fn low_water(&self) -> u32;
    fn reset_low_water(&mut self);
    /// Starts a rolling update (a new pod template) with this `maxSurge`.
    fn start_rollout(&mut self, max_surge_percent: u32);
    fn rollout_done(&self) -> bool;
    /// Points the trigger at another scaler address (Spillway started elsewhere).
    async fn repoint(&mut self, scaler: SocketAddr);
    /// How long from one HPA sync to the next.
    fn hpa_sync_period(&self) -> Duration;
}

/// The Deployment controller's rolling update, reduced to what the HPA sees in the
/// scale subresource: `maxUnavailable: 0`, `maxSurge` as a percentage (rounded up, as
/// `deploymentutil.ResolveFenceposts`), pods Ready `ready_after_ms` after creation,
/// old pods removed as new ones become available. A count change mid-rollout goes to
/// the new ReplicaSet. Outside a rollout `status.replicas` follows `spec.replicas` at
/// once (a ReplicaSet creates or deletes its pods within a sync).
#[derive(Clone, Debug)]
pub struct DeploymentModel {
    pub spec: u32,
    /// Pods of the current template (creation times, ms).
    new: Vec<i64>,
    /// Pods of the previous template, during a rollout.
    old: u32,
    surge_percent: u32,
    pub ready_after_ms: i64,
}

impl DeploymentModel {
    pub fn new(replicas: u32, now_ms: i64) -> Self {
        Self {
            spec: replicas,
            new: vec![now_ms - 1_000_000; replicas as usize],
            old: 0,
            surge_percent: 25,
            ready_after_ms: 2_000,
        }
    }

    pub fn scale(&self) -> Scale {
        Scale {
            spec: self.spec,
            status: self.old + self.new.len() as u32,
        }
    }

    pub fn start_rollout(&mut self, max_surge_percent: u32) {
        self.surge_percent = max_surge_percent;
        self.old += self.new.len() as u32;
        self.new.clear();
    }

    pub fn rolling(&self) -> bool {
        self.old > 0
    }

    /// One pass of the controllers at `now_ms`.
    pub fn step(&mut self, now_ms: i64) {
        let spec = self.spec as usize;
        if self.old == 0 {
            self.new.truncate(spec);
            while self.new.len() < spec {
                self.new.push(now_ms);
            }
            return;
        }
        let surge = (self.spec * self.surge_percent).div_ceil(100) as usize;
        let max_total = spec + surge;
        if self.new.len() > spec {
            self.new.truncate(spec);
        }
        let available_new = self
            .new
            .iter()
            .filter(|&&t| now_ms - t >= self.ready_after_ms)
            .count();
        // maxUnavailable 0: old pods go only as far as the available ones exceed spec.
        let old = self.old as usize;
        let removable = (old + available_new).saturating_sub(spec).min(old);
        let old = old - removable;
        self.old = old as u32;
        // maxSurge: new pods up to spec + surge in all.
        let want_new = spec.min(max_total.saturating_sub(old));
        while self.new.len() < want_new {
            self.new.push(now_ms);
        }
    }
}

/// Timing of the model peer.
#[derive(Clone, Copy, Debug)]
pub struct ModelTiming {
    /// `--horizontal-pod-autoscaler-sync-period` (15 s in a real cluster).
    pub hpa_sync: Duration,
    /// The ScaledObject's `pollingInterval`.
    pub polling: Duration,
    /// How often the Deployment model steps.
    pub step: Duration,
}

impl Default for ModelTiming {
    fn default() -> Self {
        Self {
            hpa_sync: Duration::from_millis(1_000),
            polling: Duration::from_millis(1_000),
            step: Duration::from_millis(100),
        }
    }
}

/// One moment of a [`ModelPeer`] run.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub scale: Scale,
    /// What Spillway answered at this moment's HPA sync, if one happened.
    pub answer: Option<Answer>,
}

/// KEDA's model, the HPA's model and the Deployment model around the real Spillway.
pub struct ModelPeer {
    client: Option<keda::Client>,
    reference: ScaledObjectRef,
    namespace: String,
    name: String,
    metadata: Vec<(String, String)>,
    pub keda: KedaModel,
    pub hpa: HpaModel,
    pub deployment: DeploymentModel,
    timing: ModelTiming,
    started: Instant,
    next_sync_ms: i64,
    next_poll_ms: i64,
    low_water: u32,
    /// Every HPA sync and every change of the scale, oldest first.
    pub samples: Vec<Sample>,
    mirror: Option<KubeMirror>,
}

/// A Deployment in the fake API server that shows the model's scale, so Spillway's
/// Kubernetes side reads the `spec.replicas` and `status.replicas` the HPA model sees.
struct KubeMirror {
    fake: Arc<FakeKube>,
    namespace: String,
    deployment: String,
    shown: Option<Scale>,
}

impl KubeMirror {
    fn show(&mut self, scale: Scale) {
        if self.shown == Some(scale) {
            return;
        }
        let c = Collection::new("apps", "v1", "deployments");
        if let Some(mut d) = self.fake.get(&c, Some(&self.namespace), &self.deployment) {
            d["spec"]["replicas"] = scale.spec.into();
            d["status"]["replicas"] = scale.status.into();
            self.fake.put(d);
            self.shown = Some(scale);
        }
    }
}

impl ModelPeer {
    /// A peer for ScaledObject `namespace/name` with `metadata`, whose Deployment runs
    /// `replicas` now.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        scaler: SocketAddr,
        namespace: &str,
        name: &str,
        metadata: &[(&str, &str)],
        scaled_object: ScaledObjectSpec,
        hpa: HpaSpec,
        replicas: u32,
        timing: ModelTiming,
    ) -> Self {
        let metadata: Vec<(String, String)> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let borrowed: Vec<(&str, &str)> = metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reference = keda::scaled_object(namespace, name, scaler, &borrowed);
        Self {
            client: Some(keda::connect(scaler).await),
            reference,
            namespace: namespace.into(),
            name: name.into(),
            metadata,
            keda: KedaModel::new(scaled_object, 0),
            hpa: HpaModel::new(hpa),
            deployment: DeploymentModel::new(replicas, 0),
            timing,
            started: Instant::now(),
            next_sync_ms: 0,
            next_poll_ms: 0,
            low_water: replicas,
            samples: Vec::new(),
            mirror: None,
        }
    }

    /// Shows the model's scale in Deployment `namespace/deployment` of `fake` from now
    /// on (the Deployment must exist there).
    pub fn mirror_to(&mut self, fake: Arc<FakeKube>, namespace: &str, deployment: &str) {
        let mut mirror = KubeMirror {
            fake,
            namespace: namespace.into(),
            deployment: deployment.into(),
            shown: None,
        };
        mirror.show(self.deployment.scale());
        self.mirror = Some(mirror);
    }

    fn show(&mut self) {
        let scale = self.deployment.scale();
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.show(scale);
        }
    }

    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    async fn ask(&mut self) -> Answer {
        let Some(client) = self.client.as_mut() else {
            return Err("no scaler connection".into());
        };
        keda::poll(client, &self.reference)
            .await
            .map(|poll| (poll.value, poll.active))
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    }

    fn write_spec(&mut self, now_ms: i64, replicas: u32) {
        if self.deployment.spec != replicas {
            self.deployment.spec = replicas;
            self.deployment.step(now_ms);
            self.low_water = self.low_water.min(replicas);
            self.samples.push(Sample {
                at_ms: now_ms,
                scale: self.deployment.scale(),
                answer: None,
            });
        }
    }

    /// What the scale was at each HPA sync from `since_ms` on, with the answer given.
    pub fn syncs_since(&self, since_ms: i64) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.at_ms >= since_ms && s.answer.is_some())
    }

    pub fn elapsed_ms(&self) -> i64 {
        self.now_ms()
    }

    async fn tick(&mut self) {
        let now = self.now_ms();
        self.deployment.step(now);
        self.show();
        if now >= self.next_poll_ms {
            self.next_poll_ms = now + self.timing.polling.as_millis() as i64;
            let answer = self.ask().await;
            let spec = self.deployment.spec;
            match self.keda.poll(now, &answer, spec) {
                Some(
                    ScaleAction::Activated { to }
                    | ScaleAction::Deactivated { to }
                    | ScaleAction::RaisedToMin { to },
                ) => self.write_spec(now, to),
                None => {}
            }
        }
        if now >= self.next_sync_ms {
            self.next_sync_ms = now + self.timing.hpa_sync.as_millis() as i64;
            let answer = self.ask().await;
            let scale = self.deployment.scale();
            let metric = self.keda.metric_for_hpa(&answer, scale.spec);
            let outcome = self.hpa.sync(now, scale, metric);
            self.samples.push(Sample {
                at_ms: now,
                scale,
                answer: Some(answer),
            });
            if let SyncOutcome::Rescaled { to, .. } = outcome {
                self.write_spec(now, to);
            }
        }
        self.show();
    }
}

impl Peer for ModelPeer {
    async fn run_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.tick().await;
            tokio::time::sleep(self.timing.step).await;
        }
    }

    fn scale(&self) -> Scale {
        self.deployment.scale()
    }

    fn scaler_failures(&self) -> u64 {
        self.keda.scaler_failed_events
    }

    fn low_water(&self) -> u32 {
        self.low_water
    }

    fn reset_low_water(&mut self) {
        self.low_water = self.deployment.spec;
    }

    fn start_rollout(&mut self, max_surge_percent: u32) {
        self.deployment.start_rollout(max_surge_percent);
    }

    fn rollout_done(&self) -> bool {
        !self.deployment.rolling()
    }

    async fn repoint(&mut self, scaler: SocketAddr) {
        let borrowed: Vec<(&str, &str)> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.reference = keda::scaled_object(&self.namespace, &self.name, scaler, &borrowed);
        self.client = Some(keda::connect(scaler).await);
    }

    fn hpa_sync_period(&self) -> Duration {
        self.timing.hpa_sync
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_surges_then_settles_at_spec() {
        let mut d = DeploymentModel::new(20, 0);
        d.start_rollout(25);
        d.step(0);
        assert_eq!(
            d.scale(),
            Scale {
                spec: 20,
                status: 25
            },
            "5 surge pods at once"
        );
        d.step(1_000);
        assert_eq!(d.scale().status, 25, "nothing Ready yet");
        d.step(2_000);
        assert_eq!(
            d.scale().status,
            25,
            "5 old gone, 5 more new in the same pass"
        );
        let mut t = 2_000;
        while d.rolling() {
            t += 500;
            d.step(t);
            assert!(d.scale().status <= 25 && d.scale().status >= 20);
            assert!(t < 60_000, "the rollout ends");
        }
        assert_eq!(
            d.scale(),
            Scale {
                spec: 20,
                status: 20
            }
        );
    }

    #[test]
    fn outside_a_rollout_status_follows_spec() {
        let mut d = DeploymentModel::new(3, 0);
        d.spec = 7;
        d.step(10);
        assert_eq!(d.scale(), Scale { spec: 7, status: 7 });
        d.spec = 2;
        d.step(20);
        assert_eq!(d.scale(), Scale { spec: 2, status: 2 });
    }
}
