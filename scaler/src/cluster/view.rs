//! The cluster as Spillway sees it: Nodes and Pods kept current by kube-runtime
//! reflectors (one list, then watches), read without API calls.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::convert::{LabelSelector, NodeError, build_view, pod_is_live};
use crate::placement::{ClusterView, NodeClassifier};

/// Nodes and pods cached by watches. Dropping it stops the watches.
pub struct ClusterCache {
    nodes: Store<KubeNode>,
    pods: Store<Pod>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ClusterCache {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn reflect<K>(api: Api<K>) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            // The backoff retries on its own; the error is only worth a log line.
            if let Err(e) = item {
                tracing::warn!(kind = %kind, error = %e, "watch failed; retrying");
            }
        }
    });
    (reader, task)
}

impl ClusterCache {
    /// Starts watching all Nodes and all Pods (every namespace: other tenants' pods
    /// take node capacity too).
    pub fn start(client: Client) -> ClusterCache {
        let (nodes, n) = reflect(Api::<KubeNode>::all(client.clone()));
        let (pods, p) = reflect(Api::<Pod>::all(client));
        ClusterCache {
            nodes,
            pods,
            tasks: vec![n, p],
        }
    }

    /// Waits until both caches hold a first full list, or `timeout`.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let both = async {
            self.nodes.wait_until_ready().await.is_ok()
                && self.pods.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(timeout, both).await.unwrap_or(false)
    }

    /// Nodes with their bound pods, classified regular or virtual.
    pub fn view(&self, classifier: &NodeClassifier) -> Result<ClusterView, NodeError> {
        let nodes = self.nodes.state();
        let pods = self.pods.state();
        build_view(
            nodes.iter().map(Arc::as_ref),
            pods.iter().map(Arc::as_ref),
            classifier,
        )
    }

    /// The live pods of a namespace that a workload's selector picks.
    pub fn workload_pods(&self, namespace: &str, selector: &LabelSelector) -> Vec<Arc<Pod>> {
        let mut pods = self.pods.state_filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && pod_is_live(p)
                && selector.matches(p.metadata.labels.as_ref())
        });
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }

    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.pods.state()
    }
}
