//! The placement controller against the fake API server: burst, scale-in, drain-back,
//! a lost Lease and API errors mid-reconcile.

use crate::cluster_support::*;
use serde_json::{Value, json};
use spillway_scaler::cluster::Write;
use spillway_scaler::placement::BurstRule;
use spillway_tests::fake_kube::fixtures;

const BURST: BurstRule = BurstRule {
    enabled: true,
    max_replicas: None,
};

fn on_virtual(p: &Value) -> bool {
    p.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with("vk"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_fills_regular_nodes_then_the_virtual_node() {
    // Two regular nodes of 2 CPU: 4 replicas of 1 CPU fit, the rest must burst.
    let mut h = Harness::start("2", 2, BURST).await;
    h.hpa(6);
    let first = h.reconcile().await.expect("reconcile");
    assert!(first.leader);
    assert_eq!(
        (first.plan.regular, first.plan.burst, first.plan.shortfall),
        (4, 2, 0)
    );
    assert!(first.writes.contains(&Write::Template {
        tolerate_burst: true
    }));
    let tmpl = h.template();
    assert_eq!(tmpl["tolerations"][0]["key"], "virtual-kubelet.io/provider");
    assert_eq!(
        tmpl["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]
            ["matchExpressions"][0],
        json!({"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]})
    );

    h.run_until(6, |h| h.ready() == 6).await;
    assert_eq!(
        h.split(),
        (4, 2, 0),
        "regular nodes fill first, the rest lands on the virtual node"
    );

    // Burst pods carry negative deletion costs (newest lowest), regular ones none.
    let r = h.reconcile().await.expect("reconcile");
    for p in h.pods() {
        let cost = h.deletion_cost(&p).unwrap_or(0);
        if on_virtual(&p) {
            assert!(cost <= -2, "burst pod cost {cost}");
        } else {
            assert_eq!(cost, 0);
        }
    }
    eprintln!("burst: costs reconcile made {} ({:?})", r.calls, r.writes);

    // Steady state: 4 GETs, no writes.
    let steady = h.reconcile().await.expect("reconcile");
    assert!(steady.writes.is_empty(), "{:?}", steady.writes);
    assert_eq!((steady.calls.reads, steady.calls.writes), (4, 0));
    eprintln!("steady reconcile: {}", steady.calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_disabled_reports_shortfall_and_never_tolerates() {
    let mut h = Harness::start(
        "2",
        2,
        BurstRule {
            enabled: false,
            max_replicas: None,
        },
    )
    .await;
    h.hpa(6);
    h.run_until(5, |_| false).await;
    let r = h.reconcile().await.expect("reconcile");
    assert_eq!((r.plan.regular, r.plan.burst, r.plan.shortfall), (4, 0, 2));
    assert!(
        r.plan.reason.to_string().contains("burst is disabled"),
        "{}",
        r.plan.reason
    );
    assert!(
        h.template()
            .get("tolerations")
            .is_none_or(|t| t.as_array().is_some_and(Vec::is_empty))
    );
    assert_eq!(
        h.split(),
        (4, 0, 2),
        "without the toleration the extra pods stay Pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_removes_virtual_pods_first() {
    let mut h = Harness::start("2", 2, BURST).await;
    h.hpa(6);
    h.run_until(6, |h| h.ready() == 6).await;
    h.reconcile().await.expect("deletion costs written");
    assert_eq!(h.split(), (4, 2, 0));

    h.hpa(4);
    h.tick().await;
    assert_eq!(
        h.split(),
        (4, 0, 0),
        "the ReplicaSet removed the burst pods first"
    );
    assert!(h.pods().iter().all(|p| !on_virtual(p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_back_moves_burst_pods_home_without_losing_ready_replicas() {
    let mut h = Harness::start("2", 2, BURST).await;
    // Another team's batch job holds ecs-2, so 2 of our 4 replicas burst.
    h.fake
        .put(fixtures::bound_pod("batch", "batch-1", "ecs-2", "2"));
    h.fake.put(fixtures::pdb(NS, "web", "web", 4));
    h.hpa(4);
    h.run_until(6, |h| h.ready() == 4).await;
    h.reconcile().await.expect("costs");
    assert_eq!(h.split(), (2, 2, 0));

    // The batch job ends: ecs-2 has room for 2 replicas.
    h.fake.delete(&pods_c(), Some("batch"), "batch-1");
    h.settle().await;
    let start = h.now_ms;
    let mut timeline = Vec::new();
    let mut max_surge = 0;
    for _ in 0..20 {
        let r = h.reconcile().await.expect("reconcile");
        // KEDA's HPA would undo a surge it is not told about: the served count carries it.
        assert_eq!(r.adjustment().serve(4), 4 + r.surging);
        max_surge = max_surge.max(r.surging);
        let (regular, burst, pending) = h.split();
        let ready = h.ready();
        timeline.push(format!(
            "t={:>2}s regular={regular} burst={burst} pending={pending} ready={ready} in_flight={} actions=[{}] calls={} writes={:?}",
            (h.now_ms - start) / 1000,
            r.in_flight,
            r.drain_actions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            r.calls,
            r.writes,
        ));
        assert!(
            ready >= 4,
            "ready replicas dropped below desired: {}",
            timeline.join("\n")
        );
        if (regular, burst, pending) == (4, 0, 0) && r.in_flight == 0 {
            break;
        }
        h.tick().await;
        assert!(
            h.ready() >= 4,
            "ready replicas dropped below desired after a tick: {}",
            timeline.join("\n")
        );
    }
    eprintln!("drain-back timeline:\n{}", timeline.join("\n"));
    assert_eq!(h.split(), (4, 0, 0), "{}", timeline.join("\n"));
    assert!(max_surge > 0, "the drain surged before evicting");
    let spec = h
        .fake
        .get(&deployments_c(), Some(NS), "web")
        .and_then(|d| d.pointer("/spec/replicas").and_then(Value::as_u64));
    assert_eq!(spec, Some(4), "the surge is handed back");
    let evictions = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.resource == "pods/eviction")
        .count();
    assert_eq!(evictions, 2, "each burst pod left through the Eviction API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_every_write() {
    let mut h = Harness::start("2", 2, BURST).await;
    let r = h.reconcile().await.expect("reconcile");
    assert!(r.leader);
    // Another replica takes the Lease (as if ours had expired).
    let mut lease = h
        .fake
        .get(&leases_c(), Some("spillway"), "spillway-placement")
        .expect("lease created");
    lease["spec"]["holderIdentity"] = json!("spillway-1");
    lease["spec"]["renewTime"] = json!("2027-01-15T08:00:00.000000Z");
    lease["spec"]["leaseDurationSeconds"] = json!(3600);
    h.fake.put(lease);

    // A leader would now take the toleration away and burst nothing.
    let template = h.template();
    h.goal.burst = BurstRule {
        enabled: false,
        max_replicas: None,
    };
    h.hpa(6);
    let before = h.fake.request_count();
    for _ in 0..5 {
        let r = h.reconcile().await.expect("reconcile");
        assert!(!r.leader);
        assert!(r.writes.is_empty());
        assert_eq!(
            r.plan.shortfall, 2,
            "still plans (and reports), just does not write"
        );
        h.tick().await;
    }
    let writes: Vec<_> = h.fake.requests()[before..]
        .iter()
        .filter(|r| is_write(&r.verb))
        .cloned()
        .collect();
    assert!(
        writes.is_empty(),
        "writes after losing the Lease: {writes:?}"
    );
    assert_eq!(h.template(), template, "template untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_by_the_next_replica_at_once() {
    let mut h = Harness::start("2", 2, BURST).await;
    assert!(h.reconcile().await.expect("reconcile").leader);
    h.controller.release_lease().await;
    let lease = h
        .fake
        .get(&leases_c(), Some("spillway"), "spillway-placement")
        .expect("lease");
    assert!(
        lease
            .pointer("/spec/holderIdentity")
            .is_none_or(Value::is_null)
    );

    // A second replica, well inside the released Lease's term, becomes the writer.
    let client = client(&h.fake).await;
    let mut gate = spillway_scaler::cluster::LeaseGate::new(
        client,
        spillway_scaler::cluster::LeaseConfig::new("spillway", "spillway-placement", "spillway-1"),
    );
    let mut calls = spillway_scaler::cluster::ApiCalls::default();
    assert!(gate.check(h.now_ms + 1000, &mut calls).await);
    let lease = h
        .fake
        .get(&leases_c(), Some("spillway"), "spillway-placement")
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "spillway-1");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    // The first replica now follows.
    assert!(!h.reconcile().await.expect("reconcile").leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_mid_reconcile_leave_nothing_half_applied() {
    let mut h = Harness::start("2", 2, BURST).await;
    h.hpa(6);

    // The template PATCH fails: JSON patch is all-or-nothing, so nothing changed.
    h.fake.fail("patch", "deployments", 0, 1, 500);
    let e = h.reconcile().await.expect_err("injected failure");
    assert!(e.to_string().contains("patch pod template"), "{e}");
    assert!(e.writes.is_empty());
    assert!(h.template().get("tolerations").is_none());
    let r = h.reconcile().await.expect("retried");
    assert!(r.writes.contains(&Write::Template {
        tolerate_burst: true
    }));

    h.run_until(6, |h| h.ready() == 6).await;
    assert_eq!(h.split(), (4, 2, 0));

    // Two more burst pods need deletion costs.
    h.hpa(8);
    for _ in 0..3 {
        h.tick().await;
    }
    assert_eq!(h.split(), (4, 4, 0));

    // The second deletion-cost PATCH fails: the first stays (it is already right), the
    // next reconcile writes only the missing one, and the one after writes nothing.
    h.fake.fail("patch", "pods", 1, 1, 500);
    let e = h.reconcile().await.expect_err("injected failure");
    assert_eq!(e.writes.len(), 1, "{:?}", e.writes);
    let r = h.reconcile().await.expect("retried");
    assert_eq!(r.writes.len(), 1, "{:?}", r.writes);
    let r = h.reconcile().await.expect("converged");
    assert!(r.writes.is_empty(), "{:?}", r.writes);
    let costs: Vec<i64> = h
        .pods()
        .iter()
        .filter(|p| on_virtual(p))
        .map(|p| h.deletion_cost(p).unwrap_or(0))
        .collect();
    assert_eq!(costs.len(), 4);
    assert!(costs.iter().all(|c| *c <= -2), "{costs:?}");

    // A 503 is not retried inside the reconcile (the next reconcile is the retry): the
    // reconcile stops before any write, and the next one succeeds.
    h.fake.fail("get", "deployments/scale", 0, 1, 503);
    let before = h.fake.request_count();
    h.reconcile().await.expect_err("503 surfaces");
    assert!(
        h.fake.requests()[before..]
            .iter()
            .all(|r| !is_write(&r.verb))
    );
    h.reconcile().await.expect("the next reconcile succeeds");

    // A scale GET failing for good stops the reconcile before any write.
    h.fake.fail("get", "deployments/scale", 0, 1, 500);
    let before = h.fake.request_count();
    let e = h.reconcile().await.expect_err("injected failure");
    assert!(e.to_string().contains("get scale"), "{e}");
    assert!(
        h.fake.requests()[before..]
            .iter()
            .all(|r| !is_write(&r.verb))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_back_waits_while_the_disruption_budget_says_no() {
    let mut h = Harness::start("2", 2, BURST).await;
    h.fake
        .put(fixtures::bound_pod("batch", "batch-1", "ecs-2", "2"));
    // Five must stay Ready: with 4 desired and one surge, only one burst pod may go.
    h.fake.put(fixtures::pdb(NS, "web", "web", 5));
    h.hpa(4);
    h.run_until(6, |h| h.ready() == 4).await;
    h.reconcile().await.expect("costs");
    h.fake.delete(&pods_c(), Some("batch"), "batch-1");
    h.settle().await;

    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        let r = h
            .reconcile()
            .await
            .expect("a refused eviction is not an error");
        assert!(h.ready() >= 4, "ready below desired");
        assert!(r.in_flight <= 2);
        h.tick().await;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a refused eviction must not stall the loop (took {:?})",
        started.elapsed()
    );
    let evictions = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.resource == "pods/eviction")
        .count();
    assert!(evictions >= 2, "the second eviction was tried and refused");
    let (regular, burst, _) = h.split();
    assert_eq!(burst, 1, "one burst pod stays while the budget says no");
    assert!(regular >= 4);

    // The budget relaxes; after the retry interval the move finishes.
    h.fake.put(fixtures::pdb(NS, "web", "web", 4));
    h.now_ms += 300_000;
    h.run_until(10, |h| h.split() == (4, 0, 0)).await;
    let r = h.reconcile().await.expect("reconcile");
    assert_eq!(h.split(), (4, 0, 0));
    assert_eq!(r.in_flight, 0);
    let spec = h
        .fake
        .get(&deployments_c(), Some(NS), "web")
        .and_then(|d| d.pointer("/spec/replicas").and_then(Value::as_u64));
    assert_eq!(spec, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_cap_is_planned_and_reported() {
    let capped = BurstRule {
        enabled: true,
        max_replicas: Some(1),
    };
    let mut h = Harness::start("2", 2, capped).await;
    h.hpa(6);
    let r = h.reconcile().await.expect("reconcile");
    assert_eq!((r.plan.regular, r.plan.burst, r.plan.shortfall), (4, 1, 1));
    assert_eq!(r.plan.replicas, 5, "the replica past the cap is withheld");
    assert_eq!(
        r.adjustment().serve(6),
        5,
        "KEDA is served the capped count, so the HPA does not add the withheld replica back"
    );
    assert!(
        r.plan.reason.to_string().contains("burst capped at 1"),
        "{}",
        r.plan.reason
    );
    assert!(r.writes.contains(&Write::Template {
        tolerate_burst: true
    }));
}

/// Two replicas whose clocks disagree by an hour, through the API server: the follower
/// judges the holder by when it saw the Lease change, not by the holder's `renewTime`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_liveness_ignores_how_far_the_holders_clock_is_off() {
    const HOUR_MS: i64 = 3_600_000;
    for (offset, case) in [(HOUR_MS, "an hour ahead"), (-HOUR_MS, "an hour behind")] {
        let fake = spillway_tests::fake_kube::FakeKube::start()
            .await
            .expect("fake API server starts");
        let gate = |identity: &str| {
            let identity = identity.to_owned();
            let fake = &fake;
            async move {
                spillway_scaler::cluster::LeaseGate::new(
                    client(fake).await,
                    spillway_scaler::cluster::LeaseConfig::new(
                        "spillway",
                        "spillway-placement",
                        &identity,
                    ),
                )
            }
        };
        let mut holder = gate("spillway-0").await;
        let mut follower = gate("spillway-1").await;
        let mut calls = spillway_scaler::cluster::ApiCalls::default();
        let t = T0_MS;
        // The holder renews every 5 s on its own clock; the follower never writes.
        for s in (0..60).step_by(5) {
            let local = t + s * 1000;
            assert!(
                holder.check(local + offset, &mut calls).await,
                "{case}: holder at +{s}s"
            );
            assert!(
                !follower.check(local, &mut calls).await,
                "{case}: follower at +{s}s"
            );
        }
        // The holder stops at +55 s; the follower takes over one term after the last
        // change it saw, not when the holder's renewTime says.
        let last_seen = t + 55_000;
        assert!(
            !follower.check(last_seen + 14_999, &mut calls).await,
            "{case}"
        );
        assert!(
            follower.check(last_seen + 15_000, &mut calls).await,
            "{case}"
        );
        let lease = fake
            .get(&leases_c(), Some("spillway"), "spillway-placement")
            .expect("lease");
        assert_eq!(lease["spec"]["holderIdentity"], "spillway-1", "{case}");
        assert!(
            !holder.check(last_seen + 16_000 + offset, &mut calls).await,
            "{case}"
        );
    }
}
