//! Gateway pods followed as they come and go: the scrape target list is re-listed every
//! `gateways.refresh` and published on a watch channel the scrape loop follows.
//!
//! Gateways scale with the traffic. A list taken once at start-up would miss every
//! replica added during a peak. The requests those replicas serve would be invisible, and
//! the workloads behind them would look quieter than they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use spillway_collector::scrape::Target;
use tokio::sync::watch;

use super::ClusterError;
use super::runner::client;
use crate::config::kubernetes::{GatewayDiscovery, KubernetesSettings};

/// Which discovered targets this process scrapes (a collector shard keeps its own).
pub type TargetFilter = Arc<dyn Fn(&Target) -> bool + Send + Sync>;

/// Re-lists gateway pods and publishes the target list when it changes.
pub struct GatewayFollower {
    client: kube::Client,
    discovery: GatewayDiscovery,
    fixed: Vec<Target>,
    keep: TargetFilter,
    publish: watch::Sender<Vec<Target>>,
}

/// `fixed` plus `found`, kept by `keep`, without duplicates, in a stable order.
pub fn target_list(fixed: &[Target], found: Vec<Target>, keep: &TargetFilter) -> Vec<Target> {
    let mut by_id: BTreeMap<Arc<str>, Target> = BTreeMap::new();
    for target in fixed.iter().cloned().chain(found) {
        if keep(&target) {
            by_id.entry(target.id.clone()).or_insert(target);
        }
    }
    by_id.into_values().collect()
}

/// The targets to scrape: `fixed` plus the gateway pods `settings` finds now. The
/// follower, when discovery is configured, keeps the list current; without it the list
/// is `fixed` for good. A first LIST that fails is an error: starting blind would read as
/// no traffic at all.
pub async fn follow(
    settings: Option<&KubernetesSettings>,
    fixed: Vec<Target>,
    keep: TargetFilter,
) -> Result<(watch::Receiver<Vec<Target>>, Option<GatewayFollower>), ClusterError> {
    let discovery = settings.and_then(|s| s.gateways.clone().map(|g| (s, g)));
    let Some((settings, discovery)) = discovery else {
        let list = target_list(&fixed, Vec::new(), &keep);
        return Ok((watch::channel(list).1, None));
    };
    crate::serve::install_crypto_provider();
    let client = client(settings).await?;
    let found = list_gateways(&client, &discovery).await?;
    tracing::info!(found = found.len(), "gateway targets discovered");
    let (publish, receiver) = watch::channel(target_list(&fixed, found, &keep));
    Ok((
        receiver,
        Some(GatewayFollower {
            client,
            discovery,
            fixed,
            keep,
            publish,
        }),
    ))
}

async fn list_gateways(
    client: &kube::Client,
    discovery: &GatewayDiscovery,
) -> Result<Vec<Target>, ClusterError> {
    super::inputs::discover_gateways(
        client,
        &discovery.namespace,
        &discovery.selector,
        discovery.port,
        &discovery.path,
    )
    .await
}

impl GatewayFollower {
    /// Re-lists every `refresh` until `shutdown`. A failed LIST keeps the last list (a
    /// flaky API server must not empty the scrape loop) and is logged.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.discovery.refresh);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            match list_gateways(&self.client, &self.discovery).await {
                Ok(found) => {
                    let list = target_list(&self.fixed, found, &self.keep);
                    self.publish.send_if_modified(|current| {
                        if *current == list {
                            return false;
                        }
                        tracing::info!(
                            before = current.len(),
                            after = list.len(),
                            "gateway targets changed"
                        );
                        *current = list;
                        true
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "listing gateway pods failed; keeping the last list");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_found_targets_merge_without_duplicates_and_honour_the_filter() {
        let keep_all: TargetFilter = Arc::new(|_| true);
        let fixed = vec![Target::new("http://static:9113/metrics")];
        let found = vec![
            Target::new("http://10.0.0.2:9113/metrics"),
            Target::new("http://static:9113/metrics"),
            Target::new("http://10.0.0.1:9113/metrics"),
        ];
        let list = target_list(&fixed, found.clone(), &keep_all);
        let urls: Vec<&str> = list.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.1:9113/metrics",
                "http://10.0.0.2:9113/metrics",
                "http://static:9113/metrics"
            ]
        );
        let only_tens: TargetFilter = Arc::new(|t| t.url.contains("10.0.0."));
        assert_eq!(target_list(&fixed, found, &only_tens).len(), 2);
    }
}
