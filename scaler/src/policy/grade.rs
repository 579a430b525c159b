//! Graded promotion of a candidate policy, with guards that roll it back.
//!
//! ```yaml
//! candidate:
//!   grade: { apps: [web] }          # or { percent: 20 }, or all
//!   guards: { underProvisionedReplicaSeconds: 600, reversals: 6, per: 1h }
//!   defaults: ...
//!   apps: ...
//! ```
//!
//! Apps in the grade are *acted on* with the candidate (KEDA is served its decision);
//! the other apps the candidate lists stay in the shadow ([`super::shadow`]). A
//! percentage picks apps by a stable hash of `tenant/app`, so raising it only adds apps.
//! A change of the promoted apps (an edit of the file) is recorded in the audit trail.
//!
//! Guards watch every promoted workload over a sliding `per` (default 1h):
//! under-provisioned replica-seconds (the dominant signal's load, in replicas at
//! target, above the Ready replicas, summed over time) and direction reversals (a
//! scale-up after a scale-down or the other way). A guard past its bound rolls the
//! workload back to the live spec at once and says why (audit, log, `policy diff`,
//! status); it stays rolled back until the candidate is edited.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use spillway_collector::WorkloadKey;

use super::model::AppPolicy;
use super::parse::{At, Loc, Reader};
use crate::audit::{AuditEntry, AuditKind, AuditLog};

/// `grade` and `guards` as written.
#[derive(Clone, Debug, Default)]
pub struct RawRollout {
    pub grade: Option<(Loc, RawGrade)>,
    pub under: Option<At<f64>>,
    pub reversals: Option<At<u32>>,
    pub per: Option<At<u32>>,
}

#[derive(Clone, Debug)]
pub enum RawGrade {
    Apps(Vec<At<String>>),
    Percent(At<u32>),
    All,
}

impl Reader<'_> {
    pub(super) fn rollout(
        &mut self,
        key: &str,
        node: &super::yaml::Node,
        path: &str,
        raw: &mut RawRollout,
    ) {
        use super::yaml::Value;
        if key == "guards" {
            let allowed = ["underProvisionedReplicaSeconds", "reversals", "per"];
            for (field, n, p) in self.fields(node, path, &allowed).unwrap_or_default() {
                match field.as_str() {
                    "underProvisionedReplicaSeconds" => raw.under = self.f64(n, &p),
                    "reversals" => raw.reversals = self.u32(n, &p),
                    _ => raw.per = self.duration(n, &p),
                }
            }
            return;
        }
        let loc = Loc {
            line: node.referenced.line(),
            column: node.referenced.column(),
            path: path.to_owned(),
        };
        if matches!(&node.value, Value::Str(s) if s == "all") {
            raw.grade = Some((loc, RawGrade::All));
            return;
        }
        let mut grade = None;
        for (field, n, p) in self
            .fields(node, path, &["apps", "percent"])
            .unwrap_or_default()
        {
            grade = match (field.as_str(), &n.value) {
                ("percent", _) => self.u32(n, &p).map(RawGrade::Percent),
                (_, Value::Seq(items)) => Some(RawGrade::Apps(
                    items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, item)| self.string(item, &format!("{p}[{i}]")))
                        .collect(),
                )),
                _ => {
                    self.error(
                        &loc,
                        format!(
                            "{p}: expected a list of app names, found {}",
                            n.value.describe()
                        ),
                    );
                    None
                }
            };
        }
        match grade {
            Some(grade) => raw.grade = Some((loc, grade)),
            None => self.error(
                &loc,
                "expected `all`, `{ apps: [NAME, ...] }` or `{ percent: 0..100 }`",
            ),
        }
    }
}

/// Which apps the candidate is acted on for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Grade {
    /// Shadow only.
    #[default]
    Shadow,
    Apps(BTreeSet<String>),
    Percent(u32),
    All,
}

impl Grade {
    pub fn includes(&self, key: &WorkloadKey) -> bool {
        match self {
            Grade::Shadow => false,
            Grade::Apps(apps) => apps.contains(&*key.app),
            Grade::Percent(percent) => bucket(key) < *percent,
            Grade::All => true,
        }
    }

    fn describe(&self) -> String {
        match self {
            Grade::Shadow => "shadow only".to_owned(),
            Grade::Apps(apps) => format!(
                "apps {}",
                apps.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            Grade::Percent(p) => format!("{p}% of the tenant's apps"),
            Grade::All => "all".to_owned(),
        }
    }
}

/// A stable bucket 0..100 per workload (FNV-1a: the same in every process and build).
fn bucket(key: &WorkloadKey) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.tenant.bytes().chain([b'/']).chain(key.app.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % 100
}

/// Bounds past which a promoted workload goes back to the live spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Guards {
    pub under_replica_seconds: Option<f64>,
    pub reversals: Option<u32>,
    pub per_secs: u32,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            under_replica_seconds: None,
            reversals: None,
            per_secs: 3600,
        }
    }
}

/// A candidate's grade and guards, resolved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollout {
    pub grade: Grade,
    pub guards: Guards,
}

pub(super) fn resolve(
    reader: &mut Reader<'_>,
    raw: &RawRollout,
    apps: &BTreeMap<String, std::sync::Arc<AppPolicy>>,
) -> Rollout {
    let grade = match &raw.grade {
        None => Grade::Shadow,
        Some((_, RawGrade::All)) => Grade::All,
        Some((loc, RawGrade::Percent(p))) => {
            if p.value > 100 {
                reader.error(
                    loc,
                    format!("grade.percent: expected 0 to 100, found {}", p.value),
                );
            }
            Grade::Percent(p.value.min(100))
        }
        Some((_, RawGrade::Apps(list))) => {
            for name in list {
                if !apps.contains_key(&name.value) {
                    reader.error(
                        &name.loc,
                        format!("`{}` is not an app of the candidate's apps; only those can be promoted", name.value),
                    );
                }
            }
            Grade::Apps(list.iter().map(|a| a.value.clone()).collect())
        }
    };
    let per_secs = raw.per.as_ref().map_or(3600, |p| p.value);
    if per_secs == 0
        && let Some(per) = &raw.per
    {
        reader.error(&per.loc, "guards.per: expected a window of at least 1s");
    }
    Rollout {
        grade,
        guards: Guards {
            under_replica_seconds: raw.under.as_ref().map(|u| u.value),
            reversals: raw.reversals.as_ref().map(|r| r.value),
            per_secs: per_secs.max(1),
        },
    }
}

/// What a candidate's content is, to tell an edit from a reload of the same file.
pub fn fingerprint(candidate: &AppPolicy, rollout: &Rollout) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{candidate:?}{rollout:?}").hash(&mut hasher);
    hasher.finish()
}

/// One promoted workload's guard readings over the sliding window.
#[derive(Debug, Default)]
struct Meter {
    last_ms: Option<i64>,
    under: VecDeque<(i64, f64)>,
    reversals: VecDeque<i64>,
    last_desired: Option<u32>,
    last_direction: i8,
}

impl Meter {
    /// Adds one decision; returns the readings (under replica-seconds, reversals).
    fn observe(
        &mut self,
        now_ms: i64,
        load: Option<f64>,
        ready: u32,
        desired: u32,
        per_secs: u32,
    ) -> (f64, u32) {
        let dt = self
            .last_ms
            .map_or(0.0, |last| (now_ms - last).max(0) as f64 / 1000.0);
        self.last_ms = Some(now_ms);
        if let Some(load) = load.filter(|l| l.is_finite()) {
            let short = (load - f64::from(ready)).max(0.0) * dt;
            if short > 0.0 {
                self.under.push_back((now_ms, short));
            }
        }
        if let Some(previous) = self.last_desired {
            let direction = match desired.cmp(&previous) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
            if direction != 0 {
                if self.last_direction != 0 && direction != self.last_direction {
                    self.reversals.push_back(now_ms);
                }
                self.last_direction = direction;
            }
        }
        self.last_desired = Some(desired);
        let since = now_ms - i64::from(per_secs) * 1000;
        while self.under.front().is_some_and(|(at, _)| *at <= since) {
            self.under.pop_front();
        }
        while self.reversals.front().is_some_and(|at| *at <= since) {
            self.reversals.pop_front();
        }
        (
            self.under.iter().map(|(_, v)| v).sum(),
            u32::try_from(self.reversals.len()).unwrap_or(u32::MAX),
        )
    }
}

/// A rollback to the live spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    pub at_ms: i64,
    pub reason: String,
    /// The candidate content it applies to; an edit clears it.
    #[serde(skip)]
    fingerprint: u64,
}

/// Promotions and rollbacks, per workload.
#[derive(Debug, Default)]
pub struct GradeBook {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The promoted workloads as of the last policy set seen, per tenant.
    promoted: BTreeMap<String, BTreeSet<String>>,
    meters: HashMap<WorkloadKey, Meter>,
    rollbacks: HashMap<WorkloadKey, Rollback>,
}

impl GradeBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records which workloads each tenant's candidate is promoted for, when that
    /// changed since the last call (a reload of an edited file).
    pub fn observe_set(&self, set: &super::PolicySet, audit: &AuditLog, now_ms: i64) {
        let mut now_promoted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut grades: BTreeMap<String, String> = BTreeMap::new();
        for tenant in set.tenants() {
            let Some(candidate) = &tenant.candidate else {
                continue;
            };
            let apps: BTreeSet<String> = candidate
                .apps
                .keys()
                .filter(|app| {
                    candidate
                        .rollout
                        .grade
                        .includes(&WorkloadKey::new(tenant.tenant.as_str(), app.as_str()))
                })
                .cloned()
                .collect();
            grades.insert(tenant.tenant.clone(), candidate.rollout.grade.describe());
            now_promoted.insert(tenant.tenant.clone(), apps);
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let tenants: BTreeSet<String> = inner
            .promoted
            .keys()
            .chain(now_promoted.keys())
            .cloned()
            .collect();
        for tenant in tenants {
            let before = inner.promoted.get(&tenant).cloned().unwrap_or_default();
            let after = now_promoted.get(&tenant).cloned().unwrap_or_default();
            if before == after {
                continue;
            }
            let list = |apps: &BTreeSet<String>| {
                if apps.is_empty() {
                    "none".to_owned()
                } else {
                    apps.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            };
            audit.record(AuditEntry {
                at_ms: now_ms,
                kind: AuditKind::GradeChanged,
                tenant: Some(tenant.clone()),
                subject: tenant.clone(),
                by: "reload".to_owned(),
                detail: format!(
                    "candidate promoted for {} (was {}; grade: {})",
                    list(&after),
                    list(&before),
                    grades.get(&tenant).map_or("no candidate", String::as_str)
                ),
            });
        }
        inner.promoted = now_promoted;
    }

    /// Whether `key` is decided by its candidate: promoted by the grade and not rolled
    /// back for this candidate's content.
    pub fn acting(&self, key: &WorkloadKey, candidate: &AppPolicy, rollout: &Rollout) -> bool {
        if !rollout.grade.includes(key) {
            return false;
        }
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .rollbacks
            .get(key)
            .is_none_or(|r| r.fingerprint != fingerprint(candidate, rollout))
    }

    /// The rollback in force for `key`'s current candidate, if any.
    pub fn rollback(
        &self,
        key: &WorkloadKey,
        candidate: &AppPolicy,
        rollout: &Rollout,
    ) -> Option<Rollback> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .rollbacks
            .get(key)
            .filter(|r| r.fingerprint == fingerprint(candidate, rollout))
            .cloned()
    }

    /// Feeds one decision of a promoted workload to its guards; a guard past its bound
    /// rolls it back (recorded and logged) and the next decision is the live spec's.
    #[allow(clippy::too_many_arguments)]
    pub fn guard(
        &self,
        key: &WorkloadKey,
        candidate: &AppPolicy,
        rollout: &Rollout,
        load_replicas: Option<f64>,
        ready: u32,
        desired: u32,
        audit: &AuditLog,
        now_ms: i64,
    ) -> Option<Rollback> {
        let guards = &rollout.guards;
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (under, reversals) = inner.meters.entry(key.clone()).or_default().observe(
            now_ms,
            load_replicas,
            ready,
            desired,
            guards.per_secs,
        );
        let per = crate::policy::format_secs(guards.per_secs);
        let reason = match (guards.under_replica_seconds, guards.reversals) {
            (Some(bound), _) if under > bound => format!(
                "guard underProvisionedReplicaSeconds: {under:.0} replica·s under-provisioned in the last {per}, above {bound}"
            ),
            (_, Some(bound)) if reversals > bound => format!(
                "guard reversals: {reversals} direction reversals in the last {per}, above {bound}"
            ),
            _ => return None,
        };
        inner.meters.remove(key);
        let rollback = Rollback {
            at_ms: now_ms,
            reason: reason.clone(),
            fingerprint: fingerprint(candidate, rollout),
        };
        inner.rollbacks.insert(key.clone(), rollback.clone());
        drop(inner);
        tracing::warn!(workload = %key, %reason, "candidate policy rolled back to the live spec");
        audit.record(AuditEntry {
            at_ms: now_ms,
            kind: AuditKind::GradeChanged,
            tenant: Some(key.tenant.to_string()),
            subject: key.to_string(),
            by: "guard".to_owned(),
            detail: format!("rolled back to the live spec: {reason}; it stays live until the candidate is edited"),
        });
        Some(rollback)
    }

    /// Forgets the meter of a workload not acted on by a candidate.
    pub fn idle(&self, key: &WorkloadKey) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .meters
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentage_is_stable_and_only_grows() {
        let keys: Vec<WorkloadKey> = (0..200)
            .map(|i| WorkloadKey::new("acme", format!("app-{i}")))
            .collect();
        let picked = |p| {
            keys.iter()
                .filter(|k| Grade::Percent(p).includes(k))
                .count()
        };
        let (ten, fifty) = (picked(10), picked(50));
        assert!((5..=40).contains(&ten), "about 10% of 200: {ten}");
        assert!((70..=130).contains(&fifty), "about 50% of 200: {fifty}");
        assert!(
            keys.iter()
                .filter(|k| Grade::Percent(10).includes(k))
                .all(|k| Grade::Percent(50).includes(k))
        );
        assert_eq!(picked(0), 0);
        assert_eq!(picked(100), 200);
    }

    #[test]
    fn meters_count_under_provisioning_and_reversals_over_the_window() {
        let mut m = Meter::default();
        // 10 s at 2 replicas short: 20 replica·s.
        for s in 0..=10 {
            m.observe(s * 1000, Some(7.0), 5, 5, 60);
        }
        assert_eq!(m.observe(11_000, Some(5.0), 5, 5, 60), (20.0, 0));
        // Up, down, up, down: 3 reversals.
        for (s, d) in [(12, 6), (13, 5), (14, 6), (15, 5)] {
            m.observe(s * 1000, None, 5, d, 60);
        }
        assert_eq!(m.observe(16_000, None, 5, 5, 60).1, 3);
        // A minute later it has all left the window.
        assert_eq!(m.observe(80_000, None, 5, 5, 60), (0.0, 0));
    }
}

#[cfg(test)]
mod loop_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use spillway_collector::Signal;
    use spillway_collector::ingest::Ingest;
    use spillway_collector::store::StoreLimits;

    use super::*;
    use crate::policy::{PolicySet, PolicyStore, parse_policy};
    use crate::runtime::DecisionLoop;
    use crate::telemetry::Metrics;
    use crate::workloads::Workloads;

    const FILE: &str = "apiVersion: spillway.io/v1
kind: ScalingPolicy
metadata: { tenant: acme }
spec:
  namespaces: [acme]
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 2s, qps: { targetPerReplica: 100 } }
    hysteresis: { upWindow: 0s, downWindow: 1s }
    panic: { enabled: false }
    limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }
  apps: { web: {}, api: {} }
candidate:
  grade: { apps: [web] }
  guards: { underProvisionedReplicaSeconds: 30, per: 10m }
  defaults:
    replicas: { min: 1, max: 100 }
    signals: { window: 2s, qps: { targetPerReplica: 300 } }
    hysteresis: { upWindow: 0s, downWindow: 1s }
    panic: { enabled: false }
    limits: { up: { percent: 1000, per: 1s }, down: { percent: 100, per: 1s } }
  apps: { web: {}, api: {} }
";

    #[test]
    fn a_promoted_candidate_is_served_until_a_guard_rolls_it_back_and_says_why() {
        let set = PolicySet::from_policies(vec![parse_policy("acme.yaml", FILE).expect("parses")])
            .expect("valid");
        let decisions = DecisionLoop {
            policies: Arc::new(PolicyStore::from_set(set)),
            ingest: Ingest::new(StoreLimits::default()),
            workloads: Arc::new(Workloads::new()),
            metrics: Arc::new(Metrics::new()),
            observer: None,
            tick: Duration::from_secs(1),
            replicas: None,
        };
        let t0: i64 = 1_800_000_000_000;
        let source: Arc<str> = Arc::from("gateway");
        let feed = |s: i64| {
            for app in ["web", "api"] {
                decisions.ingest.apply(
                    &source,
                    Signal::Qps,
                    vec![(WorkloadKey::new("acme", app), 900.0)],
                    t0 + s * 1000,
                );
            }
        };
        for s in 0..3 {
            feed(s);
        }
        decisions.prime_at(t0 + 2_000);
        let latest = |app: &str| {
            decisions
                .workloads
                .get(&WorkloadKey::new("acme", app))
                .and_then(|e| e.latest())
                .expect("decided")
        };
        // web is promoted: the candidate's 300 per replica is served (3); api only
        // shadows it and serves the live 9.
        let web = latest("web");
        let shadow = web.shadow.clone().expect("shadowed");
        assert_eq!((web.desired, shadow.acting.as_str()), (3, "candidate"));
        assert_eq!((shadow.live_desired, shadow.candidate_desired), (9, 3));
        assert!(web.reason.starts_with("candidate policy"), "{}", web.reason);
        let api = latest("api");
        assert_eq!(
            (api.desired, api.shadow.as_ref().map(|s| s.acting.as_str())),
            (9, Some("live"))
        );
        // 6 replicas short of the live spec's demand every second: past 30 replica·s
        // the guard rolls web back.
        let mut rolled_back_at = None;
        for s in 3..20 {
            feed(s);
            let entry = decisions
                .workloads
                .get(&WorkloadKey::new("acme", "web"))
                .expect("web");
            let policy = decisions
                .policies
                .current()
                .workloads()
                .find(|(k, _)| *k == entry.key)
                .map(|(_, p)| p)
                .expect("live web");
            decisions.decide(&entry, &policy, t0 + s * 1000);
            if rolled_back_at.is_none()
                && latest("web")
                    .shadow
                    .as_ref()
                    .is_some_and(|s| s.rolled_back.is_some())
            {
                rolled_back_at = Some(s);
            }
        }
        let at = rolled_back_at.expect("the guard tripped");
        assert!(
            (6..=10).contains(&at),
            "about 30 replica·s at 6 a second: {at}"
        );
        let web = latest("web");
        let shadow = web.shadow.clone().expect("shadowed");
        assert_eq!(
            (web.desired, shadow.acting.as_str()),
            (9, "live"),
            "back on the live spec"
        );
        let why = shadow.rolled_back.expect("says why");
        assert!(why.contains("underProvisionedReplicaSeconds"), "{why}");
        let trail: Vec<(AuditKind, String)> = decisions
            .workloads
            .audit()
            .list()
            .into_iter()
            .map(|e| (e.kind, e.by))
            .collect();
        assert_eq!(
            trail,
            [
                (AuditKind::GradeChanged, "reload".to_owned()),
                (AuditKind::GradeChanged, "guard".to_owned())
            ]
        );
    }

    #[test]
    fn grades_name_only_candidate_apps_and_percentages_up_to_100() {
        for (grade, error) in [
            (
                "{ apps: [shop] }",
                "`shop` is not an app of the candidate's apps",
            ),
            ("{ percent: 150 }", "expected 0 to 100"),
            ("sometimes", "expected `all`"),
        ] {
            let text = FILE.replace("{ apps: [web] }", grade);
            let errors = parse_policy("acme.yaml", &text).expect_err("refused");
            assert!(errors.to_string().contains(error), "{grade}: {errors}");
        }
        for grade in ["all", "{ percent: 50 }"] {
            parse_policy("acme.yaml", &FILE.replace("{ apps: [web] }", grade)).expect(grade);
        }
    }
}
