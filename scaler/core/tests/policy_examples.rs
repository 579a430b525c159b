//! The example policies shipped in deploy/examples/policies must validate.

use std::path::PathBuf;

use spillway_core::policy::{load_dir, validate_files};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/policies")
}

#[test]
fn every_example_validates() {
    let report = load_dir(&examples_dir());
    assert!(report.dir_error.is_none(), "{:?}", report.dir_error);
    assert!(
        report.files.len() >= 3,
        "expected at least 3 examples, found {}",
        report.files.len()
    );
    for f in &report.files {
        if let Err(e) = &f.result {
            panic!("{} does not validate:\n{e}", f.path.display());
        }
    }
    let paths: Vec<PathBuf> = report.files.iter().map(|f| f.path.clone()).collect();
    assert!(validate_files(&paths).iter().all(|r| r.result.is_ok()));
}

#[test]
fn examples_resolve_as_documented() {
    let report = load_dir(&examples_dir());
    let set = spillway_core::policy::PolicySet::from_policies(report.policies().cloned().collect())
        .expect("distinct tenants");
    let checkout = set
        .lookup("acme", "checkout", "acme-prod")
        .expect("acme/checkout");
    assert_eq!(checkout.replicas.min, 2);
    assert_eq!(checkout.replicas.max, 400);
    assert_eq!(
        checkout.signals.qps.map(|q| q.target_per_replica),
        Some(80.0)
    );
    assert_eq!(
        checkout.signals.cpu.map(|c| c.target_utilization),
        Some(0.6)
    );
    assert_eq!(checkout.placement.requests.cpu_millis, 500);
    assert_eq!(checkout.placement.requests.memory_bytes, 1 << 30);
    assert_eq!(checkout.limits.up.pods, Some(10));
    let reports = set
        .lookup("acme", "reports", "acme-prod")
        .expect("acme/reports");
    assert!(reports.activation.scale_to_zero);
    assert!(reports.signals.cpu.is_none());
    let cart = set.lookup("shop", "cart", "shop").expect("shop/cart");
    assert_eq!(cart.schedules.len(), 2);
    assert_eq!(cart.schedules[0].timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(cart.schedules[0].duration_secs, 3 * 3600);
    let postings = set
        .lookup("ledger", "postings", "ledger-prod")
        .expect("ledger/postings");
    assert!(!postings.placement.burst.enabled);
    assert!(!postings.panic.enabled);
    assert_eq!(postings.hpa_tolerance, 0.0);
    assert_eq!(postings.limits.up.percent, None);
    assert_eq!(postings.limits.down.pods, Some(1));
    assert_eq!(set.workloads().count(), 7);
}
