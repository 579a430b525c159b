//! Shared set-up for the tests against the fake API server: a cluster of two regular
//! nodes and one virtual node, a Deployment `shop/web` scaled by ScaledObject `shop/web`,
//! and a controller holding the Lease. Time is a plain counter the test advances.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use spillway_scaler::cluster::{
    ClusterCache, Controller, ControllerConfig, LeaseConfig, LeaseGate, PlacementGoal,
    ReconcileError, ReconcileReport, WorkloadRef,
};
use spillway_scaler::placement::{BurstRule, NodeClassifier, PlannerConfig, Resources};
use spillway_tests::fake_kube::{Collection, FakeKube, fixtures};

pub const NS: &str = "shop";
pub const T0_MS: i64 = 1_800_000_000_000;

pub fn pods_c() -> Collection {
    Collection::new("", "v1", "pods")
}

pub fn deployments_c() -> Collection {
    Collection::new("apps", "v1", "deployments")
}

pub fn leases_c() -> Collection {
    Collection::new("coordination.k8s.io", "v1", "leases")
}

pub async fn client(fake: &FakeKube) -> kube::Client {
    spillway_scaler::serve::install_crypto_provider();
    let config = spillway_scaler::cluster::runner::without_retry(kube::Config::new(
        fake.url().parse().expect("the fake's URL parses"),
    ));
    kube::Client::try_from(config).expect("kube client for the fake")
}

pub struct Harness {
    pub fake: FakeKube,
    pub controller: Controller,
    pub cache: Arc<ClusterCache>,
    pub workload: WorkloadRef,
    pub goal: PlacementGoal,
    pub now_ms: i64,
}

impl Harness {
    /// Two regular nodes with `regular_cpu` cores each, one virtual node, `shop/web` at
    /// `replicas` replicas of 1 CPU.
    pub async fn start(regular_cpu: &str, replicas: u32, burst: BurstRule) -> Harness {
        let fake = FakeKube::start().await.expect("fake API server starts");
        fake.put(fixtures::regular_node("ecs-1", regular_cpu));
        fake.put(fixtures::regular_node("ecs-2", regular_cpu));
        fake.put(fixtures::virtual_node("vk-1"));
        fake.put(fixtures::deployment(NS, "web", replicas, "1"));
        fake.put(fixtures::scaled_object(NS, "web", "web"));
        Harness::with_fake(fake, replicas, burst, "spillway-0").await
    }

    pub async fn with_fake(
        fake: FakeKube,
        replicas: u32,
        burst: BurstRule,
        identity: &str,
    ) -> Harness {
        let client = client(&fake).await;
        let cache = Arc::new(ClusterCache::start(client.clone()));
        assert!(cache.ready(Duration::from_secs(10)).await, "caches fill");
        let lease = LeaseGate::new(
            client.clone(),
            LeaseConfig::new("spillway", "spillway-placement", identity),
        );
        let controller = Controller::new(
            client,
            cache.clone(),
            lease,
            ControllerConfig {
                classifier: NodeClassifier::default(),
                planner: PlannerConfig::default(),
            },
        );
        Harness {
            fake,
            controller,
            cache,
            workload: WorkloadRef {
                namespace: NS.into(),
                scaled_object: "web".into(),
            },
            goal: PlacementGoal {
                desired: replicas,
                burst,
                requests: Resources::per_pod(1000, 1 << 30),
                frozen: false,
            },
            now_ms: T0_MS,
        }
    }

    /// KEDA's HPA applying a new replica count.
    pub fn hpa(&mut self, desired: u32) {
        self.goal.desired = desired;
        self.fake.set_replicas(NS, "web", desired);
    }

    pub async fn reconcile(&mut self) -> Result<ReconcileReport, ReconcileError> {
        let r = self
            .controller
            .reconcile(&self.workload, &self.goal, self.now_ms)
            .await;
        self.settle().await;
        r
    }

    /// One second passes: the controllers run once, and the watch caches catch up.
    pub async fn tick(&mut self) {
        self.now_ms += 1000;
        self.fake.run_controllers();
        self.settle().await;
    }

    /// Waits (bounded) until the pod cache holds exactly the fake's pods, at their
    /// current resourceVersions.
    pub async fn settle(&self) {
        let rv = |p: &Value| {
            (
                p.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                p.pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut want: Vec<(String, String)> =
                self.fake.list(&pods_c(), None).iter().map(rv).collect();
            want.sort();
            let mut have: Vec<(String, String)> = self
                .cache
                .pods()
                .iter()
                .map(|p| {
                    (
                        p.metadata.name.clone().unwrap_or_default(),
                        p.metadata.resource_version.clone().unwrap_or_default(),
                    )
                })
                .collect();
            have.sort();
            if want == have {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "pod cache never caught up: want {want:?} have {have:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn pods(&self) -> Vec<Value> {
        self.fake.list(&pods_c(), Some(NS))
    }

    /// (on regular nodes, on the virtual node, not scheduled)
    pub fn split(&self) -> (u32, u32, u32) {
        let mut out = (0, 0, 0);
        for p in self.pods() {
            match p.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(n) if n.starts_with("vk") => out.1 += 1,
                Some(_) => out.0 += 1,
                None => out.2 += 1,
            }
        }
        out
    }

    pub fn ready(&self) -> u32 {
        self.pods()
            .iter()
            .filter(|p| spillway_tests::fake_kube::pod_ready(p))
            .count() as u32
    }

    pub fn deletion_cost(&self, pod: &Value) -> Option<i64> {
        pod.pointer("/metadata/annotations/controller.kubernetes.io~1pod-deletion-cost")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
    }

    pub fn template(&self) -> Value {
        self.fake
            .get(&deployments_c(), Some(NS), "web")
            .and_then(|d| d.pointer("/spec/template/spec").cloned())
            .unwrap_or(Value::Null)
    }

    /// Reconcile, then a tick, `n` times (or until `done`), returning the reports.
    pub async fn run_until(
        &mut self,
        max: usize,
        mut done: impl FnMut(&Harness) -> bool,
    ) -> Vec<ReconcileReport> {
        let mut out = Vec::new();
        for _ in 0..max {
            let r = self.reconcile().await.expect("reconcile");
            out.push(r);
            self.tick().await;
            if done(self) {
                break;
            }
        }
        out
    }
}

pub fn is_write(verb: &str) -> bool {
    !matches!(verb, "get" | "list" | "watch")
}
