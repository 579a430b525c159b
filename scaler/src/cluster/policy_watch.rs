//! ScalingPolicy resources followed by kube-runtime reflectors (one list, then watches;
//! no polling) and the namespaces' `spillway.io/tenant` labels, resolved by
//! [`crate::policy::resources::Resolver`] into the policies in force, each outcome
//! written back to the resource's `status`.
//!
//! Nothing is served from a half view: the resources are resolved only once both
//! reflectors hold a complete list, and a re-list swaps a store whole. Each change is
//! put in force on the event that carries it; the decision loop picks the new set up
//! on its next tick (1 s).
//!
//! Every replica watches and writes the same status for the same inputs; a status
//! already as it should be is not written again, so replicas do not fight over it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::ClusterError;
use super::policy_crd::{PolicyCondition, ScalingPolicy, ScalingPolicyStatus, TENANT_LABEL};
use crate::policy::resources::{PolicyObject, Resolver, Verdict};
use crate::policy::{FileStatus, PolicyStore};

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct PolicyWatchStats {
    /// Resources whose current generation is in force.
    pub ready: AtomicI64,
    /// Resources whose current generation is refused (an earlier one may serve).
    pub refused: AtomicI64,
    /// Changes put in force (a new set of policies served).
    pub applied: AtomicU64,
    /// Generations refused, counted once each.
    pub refusals: AtomicU64,
    /// Status writes that failed (retried on the next event).
    pub status_write_failures: AtomicU64,
}

/// [`PolicyWatchStats`] as a `/metrics` collector.
#[derive(Debug)]
pub struct PolicyWatchMetrics(pub Arc<PolicyWatchStats>);

impl prometheus_client::collector::Collector for PolicyWatchMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let stats = &self.0;
        for (name, help, value) in [
            (
                "policy_resources_ready",
                "ScalingPolicy resources whose current generation is in force",
                stats.ready.load(Ordering::Relaxed),
            ),
            (
                "policy_resources_refused",
                "ScalingPolicy resources whose current generation is refused (see their status; an earlier generation may serve)",
                stats.refused.load(Ordering::Relaxed),
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        for (name, help, value) in [
            (
                "policy_resource_changes_applied",
                "Changes of ScalingPolicy resources or namespace owners put in force",
                stats.applied.load(Ordering::Relaxed),
            ),
            (
                "policy_resource_refusals",
                "Generations of ScalingPolicy resources refused, once each",
                stats.refusals.load(Ordering::Relaxed),
            ),
            (
                "policy_status_write_failures",
                "ScalingPolicy status writes that failed (retried on the next change)",
                stats.status_write_failures.load(Ordering::Relaxed),
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        Ok(())
    }
}

fn stream_of<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<(), watcher::Error>> + Send
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .map(|event| {
            event.map(|e| match e {
                // The start of a re-list changes nothing yet: the store swaps at its end.
                watcher::Event::Init | watcher::Event::InitApply(_) => Err(()),
                _ => Ok(()),
            })
        })
        .filter_map(|r| async move {
            match r {
                Ok(Ok(())) => Some(Ok(())),
                Ok(Err(())) => None,
                Err(e) => Some(Err(e)),
            }
        })
}

/// How long start-up waits for the first complete view before serving without it.
const FIRST_VIEW: Duration = Duration::from_secs(10);

/// Starts following the resources (a task in `tasks`) and waits, bounded, until their
/// first complete view is in force, so the first decisions are made from it.
pub async fn start(
    settings: &crate::config::kubernetes::KubernetesSettings,
    store: Arc<PolicyStore>,
    stats: Arc<PolicyWatchStats>,
    tasks: &mut tokio::task::JoinSet<Result<(), crate::serve::RunError>>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    crate::serve::install_crypto_provider();
    let client = super::runner::client(settings).await?;
    let (first, first_view) = tokio::sync::oneshot::channel();
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        run(client, store, stats, Some(first), shutdown)
            .await
            .map_err(crate::serve::RunError::from)
    });
    if tokio::time::timeout(FIRST_VIEW, first_view).await.is_err() {
        tracing::warn!(
            "ScalingPolicy resources not listed within {FIRST_VIEW:?} of start; serving without them meanwhile"
        );
    }
    Ok(())
}

/// How long after a failed status write it is tried again (when no event came first).
const STATUS_RETRY: Duration = Duration::from_secs(5);

/// Runs until `shutdown`. `first` is told once the first complete view is in force.
pub async fn run(
    client: Client,
    store: Arc<PolicyStore>,
    stats: Arc<PolicyWatchStats>,
    first: Option<tokio::sync::oneshot::Sender<()>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ClusterError> {
    let resource = ApiResource::erase::<ScalingPolicy>(&());
    let policy_writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let policies = policy_writer.as_reader();
    let (namespaces, namespace_writer) = reflector::store();
    let policy_events = stream_of(
        Api::<DynamicObject>::all_with(client.clone(), &resource),
        watcher::Config::default(),
        policy_writer,
    );
    let namespace_events = stream_of(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().labels(TENANT_LABEL),
        namespace_writer,
    );
    let mut events = std::pin::pin!(futures::stream::select(policy_events, namespace_events));
    let mut resolver = Resolver::new();
    let mut first = first;
    let mut previous: Option<Vec<Verdict>> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = events.next() => event,
            // A status write failed and nothing has changed since: write it again.
            () = retry => Some(Ok(())),
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        retry_at = None;
        match event {
            None => return Ok(()),
            Some(Err(error)) => {
                // The backoff retries; what is in force keeps serving meanwhile.
                tracing::warn!(%error, "ScalingPolicy or Namespace watch failed; retrying");
                continue;
            }
            Some(Ok(())) => {}
        }
        if policies.wait_until_ready().now_or_never().is_none()
            || namespaces.wait_until_ready().now_or_never().is_none()
        {
            continue;
        }
        let objects = objects_of(&policies);
        let tenants = tenants_of(&namespaces);
        let resolution = resolver.resolve(&objects, &tenants, &store.file_tenants());
        let problems = resolution
            .verdicts
            .iter()
            .filter_map(|v| {
                v.problem.as_ref().map(|p| FileStatus {
                    path: format!("scalingpolicy {}/{}", v.namespace, v.name).into(),
                    serving_tenant: v.serving.as_ref().and(v.tenant.clone()),
                    error: Some(format!(
                        "{} ({}; {})",
                        p.message().replace('\n', "; "),
                        p.reason(),
                        serving_words(v)
                    )),
                })
            })
            .collect();
        if previous.as_ref() != Some(&resolution.verdicts) {
            store.replace_resources(resolution.policies, problems);
            stats.applied.fetch_add(1, Ordering::Relaxed);
            count(&stats, previous.as_deref(), &resolution.verdicts);
            for v in &resolution.verdicts {
                if let Some(p) = &v.problem {
                    tracing::warn!(policy = %format!("{}/{}", v.namespace, v.name), generation = v.generation, reason = p.reason(), problem = %p.message(), "ScalingPolicy not (wholly) in force");
                }
            }
        }
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        for verdict in &resolution.verdicts {
            if !write_status(&client, &resource, &policies, verdict, &stats).await {
                retry_at = Some(tokio::time::Instant::now() + STATUS_RETRY);
            }
        }
        previous = Some(resolution.verdicts);
    }
}

use futures::FutureExt as _;

fn count(stats: &PolicyWatchStats, previous: Option<&[Verdict]>, now: &[Verdict]) {
    let ready = now.iter().filter(|v| v.ready()).count();
    stats.ready.store(ready as i64, Ordering::Relaxed);
    stats
        .refused
        .store((now.len() - ready) as i64, Ordering::Relaxed);
    let seen = |v: &Verdict| {
        previous.is_some_and(|p| {
            p.iter().any(|q| {
                q.namespace == v.namespace
                    && q.name == v.name
                    && q.generation == v.generation
                    && q.problem.is_some()
            })
        })
    };
    let fresh = now
        .iter()
        .filter(|v| v.problem.is_some() && !seen(v))
        .count();
    stats.refusals.fetch_add(fresh as u64, Ordering::Relaxed);
}

fn serving_words(v: &Verdict) -> String {
    match &v.serving {
        Some((g, _)) if *g != v.generation => format!("generation {g} keeps serving"),
        Some(_) => "in force".into(),
        None => "nothing of it is in force".into(),
    }
}

fn objects_of(store: &Store<DynamicObject>) -> Vec<PolicyObject> {
    let mut out: Vec<PolicyObject> = store
        .state()
        .iter()
        .map(|o| {
            let status = o.data.get("status");
            let recorded = status.and_then(|s| {
                let g = s.get("servingGeneration")?.as_i64()?;
                let spec = s.get("servingSpec")?.clone();
                Some((g, spec))
            });
            PolicyObject {
                namespace: o.namespace().unwrap_or_default(),
                name: o.name_any(),
                uid: o.uid().unwrap_or_default(),
                generation: o.metadata.generation.unwrap_or(0),
                created: o
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
                spec: o.data.get("spec").cloned().unwrap_or(Value::Null),
                recorded,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn tenants_of(store: &Store<Namespace>) -> BTreeMap<String, String> {
    store
        .state()
        .iter()
        .filter_map(|ns| {
            let tenant = ns.labels().get(TENANT_LABEL)?;
            Some((ns.name_any(), tenant.clone()))
        })
        .collect()
}

/// The status a verdict calls for; transition times carried over from `old` where the
/// condition did not change.
pub fn status_for(
    verdict: &Verdict,
    old: Option<&ScalingPolicyStatus>,
    now: &str,
) -> ScalingPolicyStatus {
    let ready = verdict.ready();
    let (ready_reason, ready_message) = match &verdict.problem {
        None => (
            "Applied".to_owned(),
            format!(
                "generation {} is in force ({} apps)",
                verdict.generation, verdict.apps
            ),
        ),
        Some(p) => (
            p.reason().to_owned(),
            format!(
                "generation {} is not in force: {}",
                verdict.generation,
                serving_words(verdict)
            ),
        ),
    };
    let invalid = matches!(
        verdict.problem,
        Some(crate::policy::resources::Problem::Invalid(_))
    );
    let conditions = [
        (
            "Ready",
            if ready { "True" } else { "False" },
            ready_reason,
            ready_message,
        ),
        (
            "Invalid",
            if invalid { "True" } else { "False" },
            if invalid {
                verdict
                    .problem
                    .as_ref()
                    .map(|p| p.reason())
                    .unwrap_or("InvalidSpec")
                    .to_owned()
            } else {
                "Valid".to_owned()
            },
            match &verdict.problem {
                Some(p) if invalid => p.message(),
                _ => String::new(),
            },
        ),
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| {
        let before = old.and_then(|o| o.conditions.iter().find(|c| c.type_ == type_));
        let since = match before {
            Some(b) if b.status == status => b.last_transition_time.clone(),
            _ => Some(now.to_owned()),
        };
        PolicyCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason,
            message,
            last_transition_time: since,
            observed_generation: Some(verdict.generation),
        }
    })
    .collect();
    ScalingPolicyStatus {
        observed_generation: Some(verdict.generation),
        tenant: verdict.tenant.clone(),
        serving_generation: verdict.serving.as_ref().map(|(g, _)| *g),
        serving_spec: verdict
            .serving
            .as_ref()
            .and_then(|(_, s)| s.as_object().cloned()),
        conditions,
    }
}

/// Writes the status a verdict calls for, when it differs; false: the write failed.
async fn write_status(
    client: &Client,
    resource: &ApiResource,
    policies: &Store<DynamicObject>,
    verdict: &Verdict,
    stats: &PolicyWatchStats,
) -> bool {
    let key =
        reflector::ObjectRef::new_with(&verdict.name, resource.clone()).within(&verdict.namespace);
    let Some(object) = policies.get(&key) else {
        return true;
    };
    // The object moved on since this verdict: its own event brings the next one.
    if object.metadata.generation.unwrap_or(0) != verdict.generation {
        return true;
    }
    let old: Option<ScalingPolicyStatus> = object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let want = status_for(verdict, old.as_ref(), &now);
    if old.as_ref() == Some(&want) {
        return true;
    }
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &verdict.namespace, resource);
    // The whole status, replaced: a merge patch would keep keys dropped from servingSpec.
    let patch: json_patch::Patch = match serde_json::from_value(json!([
        { "op": "add", "path": "/status", "value": want }
    ])) {
        Ok(p) => p,
        Err(_) => return true,
    };
    if let Err(error) = api
        .patch_status(
            &verdict.name,
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
    {
        stats.status_write_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(policy = %format!("{}/{}", verdict.namespace, verdict.name), %error, "ScalingPolicy status not written; retried");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::resources::Problem;

    fn verdict(generation: i64, serving: Option<i64>, problem: Option<Problem>) -> Verdict {
        Verdict {
            namespace: "acme-prod".into(),
            name: "acme".into(),
            generation,
            tenant: Some("acme".into()),
            serving: serving.map(|g| (g, json!({ "namespaces": ["acme-prod"] }))),
            apps: 1,
            problem,
        }
    }

    fn condition<'s>(status: &'s ScalingPolicyStatus, kind: &str) -> &'s PolicyCondition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("no {kind} condition"))
    }

    #[test]
    fn a_refused_generation_says_which_one_serves_and_keeps_unchanged_transition_times() {
        let ready = status_for(&verdict(1, Some(1), None), None, "t1");
        assert_eq!(condition(&ready, "Ready").status, "True");
        assert_eq!(condition(&ready, "Invalid").status, "False");
        assert_eq!(ready.serving_generation, Some(1));

        let error = crate::policy::PolicyError {
            source_name: "scalingpolicy acme-prod/acme".into(),
            line: 1,
            column: 2,
            path: "spec.apps.checkout.replicas.min".into(),
            message: "replicas.min (9) is above replicas.max (7)".into(),
        };
        let refused = status_for(
            &verdict(2, Some(1), Some(Problem::Invalid(vec![error]))),
            Some(&ready),
            "t2",
        );
        let r = condition(&refused, "Ready");
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(
            r.message.contains("generation 1 keeps serving"),
            "{}",
            r.message
        );
        assert_eq!(r.last_transition_time.as_deref(), Some("t2"));
        let i = condition(&refused, "Invalid");
        assert_eq!(
            i.message,
            "spec.apps.checkout.replicas.min: replicas.min (9) is above replicas.max (7)"
        );
        assert_eq!(refused.observed_generation, Some(2));
        assert_eq!(refused.serving_generation, Some(1));

        // Recomputed later with nothing changed: the same status, so nothing is written.
        let again = status_for(
            &verdict(2, Some(1), refused_problem(&refused)),
            Some(&refused),
            "t3",
        );
        assert_eq!(again, refused);
    }

    fn refused_problem(status: &ScalingPolicyStatus) -> Option<Problem> {
        let message = &condition(status, "Invalid").message;
        let (path, message) = message.split_once(": ")?;
        Some(Problem::Invalid(vec![crate::policy::PolicyError {
            source_name: String::new(),
            line: 0,
            column: 0,
            path: path.into(),
            message: message.into(),
        }]))
    }

    #[test]
    fn a_policy_of_no_tenant_serves_nothing_and_says_so() {
        let mut v = verdict(
            1,
            None,
            Some(Problem::NamespaceNotOwned {
                namespace: "scratch".into(),
            }),
        );
        v.tenant = None;
        let status = status_for(&v, None, "t1");
        let r = condition(&status, "Ready");
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "NamespaceNotOwned")
        );
        assert!(
            r.message.contains("nothing of it is in force"),
            "{}",
            r.message
        );
        assert_eq!(condition(&status, "Invalid").status, "False");
        assert_eq!(status.serving_generation, None);
        assert_eq!(status.serving_spec, None);
    }
}
