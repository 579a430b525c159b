//! A fake Kubernetes API server for tests: real HTTP/JSON on 127.0.0.1 that the real
//! `kube::Client` talks to, an in-memory object store, a log of every request (verb,
//! resource, namespace) for the RBAC cross-check, fault injection, and a tiny stand-in
//! for the ReplicaSet controller, scheduler and kubelet ([`FakeKube::run_controllers`])
//! so pods appear, bind and become Ready when a test says time passes.
//!
//! What it serves: list (with `resourceVersion` and equality `labelSelector`s), watch
//! (JSON lines replayed from any resourceVersion, then live), get, create, replace (with
//! resourceVersion conflicts), delete, JSON patch (all-or-nothing, `test` included),
//! JSON merge patch, strategic merge patch (as merge patch), the `scale` subresource of
//! Deployments and StatefulSets, and the Eviction API honouring PodDisruptionBudgets.
//! Any group/version/resource is stored, so `coordination.k8s.io` Leases,
//! `keda.sh/v1alpha1` ScaledObjects and `metrics.k8s.io` PodMetrics need nothing special.
//! What it does not cover is listed in README.md next to this file.

pub mod fixtures;
mod http;
mod sim;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use http::{parse_path, scale_json};
pub use sim::{Scheduled, SimReport};
pub use store::{ApiFailure, Collection, Store, apply_patch, labels_match, parse_selector};

/// One request the fake served (or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub verb: String,
    /// API group; "" for the core group.
    pub group: String,
    /// Plural resource, with `/subresource` when there is one (`pods/eviction`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Requests matching `verb` and `resource` fail with `code` while `remaining` > 0.
#[derive(Debug, Clone)]
struct Fault {
    verb: String,
    resource: String,
    skip: u32,
    remaining: u32,
    code: u16,
}

pub struct Inner {
    store: Mutex<Store>,
    /// Bumped to end every open watch, as an API server restart or timeout would.
    pub(crate) watch_generation: tokio::sync::watch::Sender<u64>,
    log: Mutex<Vec<Recorded>>,
    faults: Mutex<Vec<Fault>>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has already failed; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        relock(&self.store)
    }

    fn record_and_check_fault(&self, r: Recorded) -> Option<ApiFailure> {
        let mut faults = relock(&self.faults);
        let hit = faults
            .iter_mut()
            .find(|f| f.remaining > 0 && f.verb == r.verb && f.resource == r.resource)
            .and_then(|f| {
                if f.skip > 0 {
                    f.skip -= 1;
                    None
                } else {
                    f.remaining -= 1;
                    Some(ApiFailure::new(
                        f.code,
                        "InternalError",
                        format!("injected fault on {} {}", r.verb, r.resource),
                    ))
                }
            });
        relock(&self.log).push(r);
        hit
    }
}

/// The running fake API server. Dropping it stops the server.
pub struct FakeKube {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeKube {
    /// Starts on 127.0.0.1 on a free port.
    pub async fn start() -> std::io::Result<FakeKube> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::new()),
            watch_generation: tokio::sync::watch::Sender::new(0),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            // The server ends only when the test drops the fake.
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeKube {
            addr,
            inner,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, for `kube::Config::new(url)`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces an object directly (not logged as a request). The collection
    /// comes from the object's `apiVersion` and `kind`.
    pub fn put(&self, obj: Value) -> Value {
        let c = collection_of(&obj);
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut store = self.inner.lock();
        let result = if store.get(&c, ns.as_deref(), &name).is_some() {
            let mut obj = obj;
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            store.replace(&c, ns.as_deref(), &name, obj)
        } else {
            store.create(&c, ns.as_deref(), obj)
        };
        result.unwrap_or_else(|f| panic!("fake_kube put: {}", f.message))
    }

    pub fn get(&self, c: &Collection, ns: Option<&str>, name: &str) -> Option<Value> {
        self.inner.lock().get(c, ns, name)
    }

    pub fn list(&self, c: &Collection, ns: Option<&str>) -> Vec<Value> {
        self.inner.lock().list(c, ns)
    }

    pub fn delete(&self, c: &Collection, ns: Option<&str>, name: &str) -> bool {
        self.inner.lock().delete(c, ns, name).is_ok()
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<Recorded> {
        relock(&self.inner.log).clone()
    }

    /// Number of requests served so far, to take the ones after a point.
    pub fn request_count(&self) -> usize {
        relock(&self.inner.log).len()
    }

    /// The next `count` requests with this verb and resource (after letting `skip` pass)
    /// fail with HTTP `code`.
    pub fn fail(&self, verb: &str, resource: &str, skip: u32, count: u32, code: u16) {
        relock(&self.inner.faults).push(Fault {
            verb: verb.into(),
            resource: resource.into(),
            skip,
            remaining: count,
            code,
        });
    }

    /// Ends every open watch stream; clients must re-watch from their resourceVersion.
    pub fn close_watches(&self) {
        self.inner.watch_generation.send_modify(|g| *g += 1);
    }

    /// Number of watch requests served so far.
    pub fn watch_count(&self) -> usize {
        relock(&self.inner.log)
            .iter()
            .filter(|r| r.verb == "watch")
            .count()
    }

    /// One pass of the ReplicaSet controller, scheduler and kubelet (see [`sim`]).
    pub fn run_controllers(&self) -> SimReport {
        sim::run(&mut self.inner.lock())
    }

    /// Sets a Deployment's `spec.replicas` directly, as KEDA's HPA would.
    pub fn set_replicas(&self, ns: &str, deployment: &str, replicas: u32) {
        let c = Collection::new("apps", "v1", "deployments");
        let mut store = self.inner.lock();
        if let Some(mut d) = store.get(&c, Some(ns), deployment) {
            d["spec"]["replicas"] = Value::from(replicas);
            if let Some(m) = d.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let _ = store.replace(&c, Some(ns), deployment, d);
        }
    }
}

/// The collection an object belongs to, from its apiVersion and kind.
pub fn collection_of(obj: &Value) -> Collection {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let resource = match kind {
        "PodMetrics" => "pods".to_string(),
        "NodeMetrics" => "nodes".to_string(),
        "PodDisruptionBudget" => "poddisruptionbudgets".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    Collection::new(group, version, &resource)
}

/// Whether a pod's `Ready` condition is `True`.
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}
