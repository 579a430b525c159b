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
//! status); it stays rolled back until the candidate is edited. The bookkeeping of
//! promotions and rollbacks is the serve process's (`spillway_scaler::grades`);
//! what is here is pure.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};

use spillway_model::WorkloadKey;

use super::model::AppPolicy;
use super::parse::{At, Loc, Reader};

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

    pub fn describe(&self) -> String {
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
pub struct Meter {
    last_ms: Option<i64>,
    under: VecDeque<(i64, f64)>,
    reversals: VecDeque<i64>,
    last_desired: Option<u32>,
    last_direction: i8,
}

impl Meter {
    /// Adds one decision; returns the readings (under replica-seconds, reversals).
    pub fn observe(
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
