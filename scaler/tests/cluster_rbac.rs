//! RBAC cross-check: runs the controller, the cluster caches, PodMetrics ingestion,
//! gateway discovery and the HPA read against the fake API server, then checks every
//! request the code made against deploy/rbac (each one allowed) and every rule there
//! (each one used).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster_support::*;
use serde::Deserialize;
use serde_json::json;
use spillway_collector::ingest::Ingest;
use spillway_collector::store::StoreLimits;
use spillway_scaler::cluster::hpa::{HpaRead, read_hpa};
use spillway_scaler::cluster::{WorkloadLabels, discover_gateways, ingest_pod_metrics};
use spillway_scaler::placement::BurstRule;
use spillway_scaler::policy::{PolicySet, parse_policy};
use spillway_tests::fake_kube::{Recorded, fixtures};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Role {
    kind: String,
    metadata: Meta,
    rules: Vec<Rule>,
}

fn load(name: &str) -> Role {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/rbac")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (verb, group, resource) triples a role grants, with the namespace it is limited to.
fn grants(role: &Role) -> Vec<(Option<String>, String, String, String)> {
    let ns = (role.kind == "Role").then(|| role.metadata.namespace.clone().unwrap_or_default());
    let mut out = Vec::new();
    for r in &role.rules {
        for g in &r.api_groups {
            for res in &r.resources {
                for v in &r.verbs {
                    out.push((ns.clone(), v.clone(), g.clone(), res.clone()));
                }
            }
        }
    }
    out
}

fn allowed_by(req: &Recorded, g: &(Option<String>, String, String, String)) -> bool {
    g.0.as_ref()
        .is_none_or(|ns| req.namespace.as_deref() == Some(ns.as_str()))
        && g.1 == req.verb
        && g.2 == req.group
        && g.3 == req.resource
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_call_is_granted_and_every_grant_is_used() {
    let burst = BurstRule {
        enabled: true,
        max_replicas: None,
    };
    let mut h = Harness::start("2", 2, burst).await;
    h.fake
        .put(fixtures::bound_pod("batch", "batch-1", "ecs-2", "2"));
    h.fake.put(fixtures::pod_metrics(
        NS,
        "web-1",
        json!({"app": "web"}),
        "250m",
        "300Mi",
    ));
    let mut gw = fixtures::bound_pod("ingress", "gw-1", "ecs-1", "0");
    gw["metadata"]["labels"] = json!({"app": "gateway"});
    gw["status"]["podIP"] = json!("127.0.0.1");
    h.fake.put(gw);

    // Burst, then drain back once the batch job ends; ticks renew the Lease.
    h.hpa(4);
    h.run_until(8, |h| h.ready() == 4).await;
    h.fake.delete(&pods_c(), Some("batch"), "batch-1");
    h.settle().await;
    h.run_until(20, |h| h.split() == (4, 0, 0)).await;
    let r = h.reconcile().await.expect("reconcile");
    assert_eq!(r.in_flight, 0);
    assert_eq!(h.split(), (4, 0, 0));

    let client = client(&h.fake).await;
    let ingest = Ingest::new(StoreLimits::default());
    let source: Arc<str> = "kubernetes-metrics".into();
    let policies = PolicySet::from_policies(vec![
        parse_policy(
            "shop.yaml",
            &format!(
                "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: shop }}\nspec:\n  namespaces: [{NS}]\n  apps:\n    web: {{ signals: {{ cpu: {{ targetUtilization: 0.6 }} }} }}\n"
            ),
        )
        .expect("valid policy"),
    ])
    .expect("one tenant");
    let read = ingest_pod_metrics(
        &client,
        None,
        &WorkloadLabels::default(),
        &policies,
        &ingest,
        &source,
        T0_MS,
    )
    .await
    .expect("pod metrics");
    assert_eq!(read.workloads, 1);
    h.fake.put(fixtures::keda_hpa(
        NS,
        "web",
        "web",
        Some(fixtures::passthrough_behavior(None)),
    ));
    assert!(matches!(
        read_hpa(&client, NS, "web").await.expect("the HPA"),
        HpaRead::Found(_)
    ));
    let targets = discover_gateways(&client, "ingress", "app=gateway", 8080, "/metrics")
        .await
        .expect("discovery");
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].url, "http://127.0.0.1:8080/metrics");

    let mut all = grants(&load("clusterrole.yaml"));
    all.extend(grants(&load("role.yaml")));
    let requests = h.fake.requests();
    let denied: Vec<&Recorded> = requests
        .iter()
        .filter(|req| !all.iter().any(|g| allowed_by(req, g)))
        .collect();
    assert!(
        denied.is_empty(),
        "calls the RBAC does not allow: {denied:#?}"
    );
    let unused: Vec<_> = all
        .iter()
        .filter(|g| !requests.iter().any(|req| allowed_by(req, g)))
        .collect();
    assert!(unused.is_empty(), "grants the code never uses: {unused:#?}");

    let seen: BTreeSet<(String, String, String)> = requests
        .iter()
        .map(|r| (r.verb.clone(), r.group.clone(), r.resource.clone()))
        .collect();
    eprintln!(
        "{} requests, {} distinct (verb, group, resource):",
        requests.len(),
        seen.len()
    );
    for s in &seen {
        eprintln!("  {s:?}");
    }
}

#[test]
fn the_cross_check_catches_a_missing_grant_and_a_namespace_escape() {
    let eviction = Recorded {
        verb: "create".into(),
        group: String::new(),
        resource: "pods/eviction".into(),
        namespace: Some("shop".into()),
        name: Some("web-1".into()),
    };
    let mut role = load("clusterrole.yaml");
    let all = grants(&role);
    assert!(all.iter().any(|g| allowed_by(&eviction, g)));
    role.rules
        .retain(|r| !r.resources.iter().any(|x| x == "pods/eviction"));
    assert!(!grants(&role).iter().any(|g| allowed_by(&eviction, g)));

    // The Lease Role is namespaced: the same call elsewhere is not allowed.
    let lease = |ns: &str| Recorded {
        verb: "update".into(),
        group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        namespace: Some(ns.into()),
        name: Some("spillway-placement".into()),
    };
    let lease_grants = grants(&load("role.yaml"));
    assert!(
        lease_grants
            .iter()
            .any(|g| allowed_by(&lease("spillway"), g))
    );
    assert!(
        !lease_grants
            .iter()
            .any(|g| allowed_by(&lease("kube-system"), g))
    );
}
