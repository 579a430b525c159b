//! The emergency brake: scaling frozen for one app, one tenant or everything, with a
//! reason and an expiry. A frozen workload is served the replicas it runs (or a floor
//! given with the freeze, if higher) whatever the engine decides; the engine still
//! decides every tick, so `explain` shows what it would do, and nothing jumps when the
//! freeze goes.
//!
//! Two ways in, so the brake works when Spillway's own API does not:
//! - the status API (`POST`/`DELETE /api/v1/freezes`, admin role only) and
//!   `spillway freeze` / `spillway unfreeze`; held in memory, so such a freeze lasts
//!   until it expires, is lifted, or the process restarts;
//! - annotations on the ScaledObject ([`annotation`]), read by the Kubernetes side with
//!   the replica counts; they last as long as the annotation.
//!
//! An expired freeze stops holding and says so: the condition `Frozen` turns False with
//! reason `FreezeExpired`, `spillway_workload_freeze_expired` is 1 while it is still
//! set, and the expiry is in the audit trail. An expired API freeze is forgotten
//! [`EXPIRED_KEPT_MS`] after its expiry; an annotation stays expired until removed.
//!
//! Pure apart from the audit log it writes to: times are passed in.

pub mod annotation;
pub mod api;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use spillway_collector::WorkloadKey;

use crate::audit::{AuditEntry, AuditKind, AuditLog};

/// The longest freeze the API sets: a brake for an incident, not a configuration.
pub const MAX_FREEZE_MS: i64 = 7 * 24 * 3_600_000;
/// How long an expired API freeze stays listed (as expired) before it is forgotten.
pub const EXPIRED_KEPT_MS: i64 = 10 * 60_000;
/// The decision rule a frozen workload's decisions carry.
pub const RULE: &str = "frozen";

/// What a freeze covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every workload of every tenant.
    All,
    Tenant(String),
    App {
        tenant: String,
        app: String,
    },
}

impl Scope {
    pub fn covers(&self, key: &WorkloadKey) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(tenant) => **tenant == *key.tenant,
            Scope::App { tenant, app } => **tenant == *key.tenant && **app == *key.app,
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Tenant(tenant) | Scope::App { tenant, .. } => Some(tenant),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Tenant(_) => "tenant",
            Scope::App { .. } => "app",
        }
    }

    /// Narrower scopes win ties: an app's own freeze explains it better than its
    /// tenant's.
    fn specificity(&self) -> u8 {
        match self {
            Scope::All => 0,
            Scope::Tenant(_) => 1,
            Scope::App { .. } => 2,
        }
    }
}

impl From<&WorkloadKey> for Scope {
    fn from(key: &WorkloadKey) -> Self {
        Scope::App {
            tenant: key.tenant.to_string(),
            app: key.app.to_string(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::Tenant(tenant) => f.write_str(tenant),
            Scope::App { tenant, app } => write!(f, "{tenant}/{app}"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    /// `*` (everything), `TENANT` or `TENANT/APP`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match text.split_once('/') {
            _ if text == "*" => Ok(Scope::All),
            None if valid(text) => Ok(Scope::Tenant(text.to_owned())),
            Some((tenant, app)) if valid(tenant) && valid(app) => Ok(Scope::App {
                tenant: tenant.to_owned(),
                app: app.to_owned(),
            }),
            _ => Err(format!(
                "`{text}` is not a freeze scope; write `*` (everything), TENANT or TENANT/APP"
            )),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a freeze was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The status API (`spillway freeze`).
    Api,
    /// The ScaledObject's `spillway.io/freeze` annotation.
    Annotation,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Annotation => "annotation",
        }
    }
}

/// One freeze.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub scope: Scope,
    pub source: Source,
    pub reason: String,
    /// Who set it: the caller's identity, or `annotation`.
    pub by: String,
    /// Hold at least this many replicas; `None`: hold what runs.
    #[serde(default)]
    pub floor: Option<u32>,
    pub since_ms: i64,
    /// When it stops holding; `None` (annotations only): while the annotation is there.
    #[serde(default)]
    pub until_ms: Option<i64>,
    /// Something in the freeze could not be read (an annotation's floor or expiry); it
    /// holds anyway, since the brake was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Freeze {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.until_ms.is_some_and(|until| now_ms >= until)
    }

    /// The replicas held for a workload that runs `current`.
    pub fn held(&self, current: u32) -> u32 {
        current.max(self.floor.unwrap_or(0))
    }

    /// One line for reasons and logs.
    pub fn describe(&self) -> String {
        let hold = match self.floor {
            Some(floor) => format!("held at no fewer than {floor} replicas"),
            None => "held where they are".to_owned(),
        };
        let until = match self.until_ms {
            Some(until) => format!("until {}", timestamp(until)),
            None => "until the annotation is removed".to_owned(),
        };
        let problem = self
            .problem
            .as_ref()
            .map_or(String::new(), |p| format!(" ({p})"));
        format!(
            "frozen ({} {}, by {}): {}; {hold}, {until}{problem}",
            self.source.as_str(),
            self.scope,
            self.by,
            self.reason
        )
    }
}

/// RFC 3339 in UTC, to the second.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// A freeze as asked for through the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FreezeRequest {
    pub scope: Scope,
    pub reason: String,
    /// How long it holds, e.g. `30m`.
    #[serde(rename = "for")]
    pub duration: String,
    #[serde(default)]
    pub floor: Option<u32>,
}

impl FreezeRequest {
    /// The freeze this request sets, or why it is refused.
    pub fn into_freeze(self, by: &str, now_ms: i64) -> Result<Freeze, String> {
        let reason = self.reason.trim().to_owned();
        if reason.is_empty() {
            return Err("a freeze needs a reason (who asked, and why)".to_owned());
        }
        if reason.len() > 512 {
            return Err("a freeze's reason is at most 512 bytes".to_owned());
        }
        let duration = crate::durations::parse(&self.duration).map_err(|e| e.to_string())?;
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        if ms <= 0 || ms > MAX_FREEZE_MS {
            return Err(format!(
                "a freeze lasts more than 0s and at most 168h, not {}",
                self.duration
            ));
        }
        Ok(Freeze {
            scope: self.scope,
            source: Source::Api,
            reason,
            by: by.to_owned(),
            floor: self.floor,
            since_ms: now_ms,
            until_ms: Some(now_ms.saturating_add(ms)),
            problem: None,
        })
    }
}

/// What the freezes say about one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This freeze holds it (the one with the highest floor, the narrowest on a tie).
    Holding(Freeze),
    /// Only expired freezes apply: scaling goes on, and the freeze is still listed.
    Expired(Freeze),
}

impl Verdict {
    pub fn freeze(&self) -> &Freeze {
        match self {
            Verdict::Holding(f) | Verdict::Expired(f) => f,
        }
    }
}

/// The freezes over one workload, decided.
pub fn verdict<'a>(applying: impl IntoIterator<Item = &'a Freeze>, now_ms: i64) -> Option<Verdict> {
    let (live, expired): (Vec<&Freeze>, Vec<&Freeze>) =
        applying.into_iter().partition(|f| !f.expired(now_ms));
    if let Some(holding) = live
        .into_iter()
        .max_by_key(|f| (f.floor.unwrap_or(0), f.scope.specificity()))
    {
        return Some(Verdict::Holding(holding.clone()));
    }
    expired
        .into_iter()
        .max_by_key(|f| f.until_ms)
        .map(|f| Verdict::Expired(f.clone()))
}

/// A freeze as a decision publishes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FreezeView {
    /// False: the freeze expired and no longer holds.
    pub holding: bool,
    pub freeze: Freeze,
    /// What the engine decided meanwhile, and why.
    pub engine_desired: u32,
    pub engine_rule: String,
}

/// What a frozen workload is served: `held`, as a plan the HPA seam serves
/// ([`crate::workloads::serve_plan`]). No burst cap, warm-up floor or `replicas.max`
/// applies (the brake overrides the policy); a floor within the HPA's tolerance of what
/// runs may be raised to the first count the HPA applies, so the floor is reached.
pub fn frozen_plan(held: u32) -> crate::workloads::ServePlan {
    crate::workloads::ServePlan {
        desired: held,
        ceiling: u32::MAX,
        max: held,
        warming_up: false,
        frozen: true,
    }
}

/// The verdict as a decision publishes it, next to what the engine decided.
pub fn view(verdict: Verdict, decision: &crate::engine::Decision) -> FreezeView {
    let holding = matches!(verdict, Verdict::Holding(_));
    let freeze = match verdict {
        Verdict::Holding(f) | Verdict::Expired(f) => f,
    };
    FreezeView {
        holding,
        freeze,
        engine_desired: decision.desired,
        engine_rule: decision.rule.label().to_owned(),
    }
}

/// The rule and reason of a frozen decision: the freeze, the count held, and what the
/// engine would do (`engine_reason`) once it goes.
pub fn explain(view: &FreezeView, engine_reason: &str, held: u32) -> (&'static str, String) {
    (
        RULE,
        format!(
            "{}; serving {held}; without the freeze: {} ({}): {engine_reason}",
            view.freeze.describe(),
            view.engine_desired,
            view.engine_rule
        ),
    )
}

/// Every freeze: those set through the API, and those read from ScaledObjects.
#[derive(Debug, Default)]
pub struct FreezeBook {
    api: Mutex<BTreeMap<Scope, Freeze>>,
    annotations: Mutex<BTreeMap<WorkloadKey, Freeze>>,
    /// Freezes whose expiry was recorded already (source, scope, since).
    expiry_recorded: Mutex<BTreeSet<(Source, Scope, i64)>>,
}

impl FreezeBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an API freeze, replacing the one of the same scope.
    pub fn set(&self, freeze: Freeze, audit: &AuditLog) -> Option<Freeze> {
        audit.record(AuditEntry {
            at_ms: freeze.since_ms,
            kind: AuditKind::FreezeSet,
            tenant: freeze.scope.tenant().map(str::to_owned),
            subject: freeze.scope.to_string(),
            by: freeze.by.clone(),
            detail: freeze.describe(),
        });
        self.api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(freeze.scope.clone(), freeze)
    }

    /// Lifts the API freeze of `scope`, if there is one.
    pub fn lift(&self, scope: &Scope, by: &str, audit: &AuditLog, now_ms: i64) -> Option<Freeze> {
        let lifted = self
            .api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(scope)?;
        audit.record(AuditEntry {
            at_ms: now_ms,
            kind: AuditKind::FreezeLifted,
            tenant: scope.tenant().map(str::to_owned),
            subject: scope.to_string(),
            by: by.to_owned(),
            detail: format!("lifted: {}", lifted.describe()),
        });
        Some(lifted)
    }

    /// What a read of `key`'s ScaledObject found; a change is audited. Only called after
    /// a successful read: an API server that cannot be reached leaves the last state.
    pub fn observe_annotation(
        &self,
        key: &WorkloadKey,
        found: Option<Freeze>,
        audit: &AuditLog,
        now_ms: i64,
    ) {
        let mut annotations = self
            .annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = annotations.get(key);
        let same = match (previous, &found) {
            (Some(p), Some(f)) => {
                p.reason == f.reason && p.floor == f.floor && p.until_ms == f.until_ms
            }
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let entry = |kind, detail| AuditEntry {
            at_ms: now_ms,
            kind,
            tenant: Some(key.tenant.to_string()),
            subject: key.to_string(),
            by: "annotation".to_owned(),
            detail,
        };
        match found {
            Some(freeze) => {
                audit.record(entry(AuditKind::FreezeSet, freeze.describe()));
                annotations.insert(key.clone(), freeze);
            }
            None => {
                if let Some(gone) = annotations.remove(key) {
                    audit.record(entry(
                        AuditKind::FreezeLifted,
                        format!("annotation removed: {}", gone.describe()),
                    ));
                }
            }
        }
    }

    /// Every freeze that applies to `key`, expired ones included.
    pub fn applying(&self, key: &WorkloadKey) -> Vec<Freeze> {
        let mut out: Vec<Freeze> = self
            .api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|f| f.scope.covers(key))
            .cloned()
            .collect();
        if let Some(f) = self
            .annotations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            out.push(f.clone());
        }
        out
    }

    pub fn verdict(&self, key: &WorkloadKey, now_ms: i64) -> Option<Verdict> {
        verdict(&self.applying(key), now_ms)
    }

    /// Every freeze, API ones first.
    pub fn list(&self) -> Vec<Freeze> {
        let mut out: Vec<Freeze> = self
            .api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        out.extend(
            self.annotations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .cloned(),
        );
        out
    }

    /// Records each freeze whose expiry passed since the last sweep (once), and forgets
    /// API freezes expired for longer than [`EXPIRED_KEPT_MS`].
    pub fn sweep(&self, audit: &AuditLog, now_ms: i64) {
        let all = self.list();
        let mut recorded = self
            .expiry_recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for freeze in all.iter().filter(|f| f.expired(now_ms)) {
            let id = (freeze.source, freeze.scope.clone(), freeze.since_ms);
            if recorded.insert(id) {
                audit.record(AuditEntry {
                    at_ms: now_ms,
                    kind: AuditKind::FreezeExpired,
                    tenant: freeze.scope.tenant().map(str::to_owned),
                    subject: freeze.scope.to_string(),
                    by: "expiry".to_owned(),
                    detail: format!("expired, scaling resumed: {}", freeze.describe()),
                });
            }
        }
        self.api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, f| {
                f.until_ms
                    .is_none_or(|until| now_ms < until.saturating_add(EXPIRED_KEPT_MS))
            });
        // Only freezes still listed need remembering.
        let listed: BTreeSet<(Source, Scope, i64)> = self
            .list()
            .into_iter()
            .map(|f| (f.source, f.scope, f.since_ms))
            .collect();
        recorded.retain(|id| listed.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn api(scope: &str, floor: Option<u32>, minutes: i64) -> Freeze {
        FreezeRequest {
            scope: scope.parse().expect("a scope"),
            reason: "double-11 change freeze".into(),
            duration: format!("{minutes}m"),
            floor,
        }
        .into_freeze("sre", T0)
        .expect("a valid freeze")
    }

    #[test]
    fn scopes_parse_and_cover_what_they_name() {
        let web = WorkloadKey::new("acme", "web");
        let other = WorkloadKey::new("shop", "web");
        for (text, covers_web, covers_other) in [
            ("*", true, true),
            ("acme", true, false),
            ("acme/web", true, false),
            ("acme/api", false, false),
        ] {
            let scope: Scope = text.parse().expect("valid");
            assert_eq!(scope.to_string(), text);
            assert_eq!(
                (scope.covers(&web), scope.covers(&other)),
                (covers_web, covers_other),
                "{text}"
            );
        }
        for bad in ["", "acme/", "/web", "acme/web/x", "ac me", "**"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_request_needs_a_reason_and_a_bounded_expiry() {
        let request = |reason: &str, duration: &str| FreezeRequest {
            scope: Scope::All,
            reason: reason.into(),
            duration: duration.into(),
            floor: None,
        };
        let f = request("incident 42", "30m")
            .into_freeze("sre", T0)
            .expect("valid");
        assert_eq!((f.until_ms, f.source), (Some(T0 + 1_800_000), Source::Api));
        assert!(request("  ", "30m").into_freeze("sre", T0).is_err());
        assert!(request("x", "0s").into_freeze("sre", T0).is_err());
        assert!(request("x", "169h").into_freeze("sre", T0).is_err());
        assert!(request("x", "soon").into_freeze("sre", T0).is_err());
    }

    #[test]
    fn the_highest_floor_holds_and_an_expired_freeze_only_says_so() {
        let everything = api("*", None, 60);
        let tenant = api("acme", Some(8), 10);
        let app = api("acme/web", Some(8), 60);
        // Same floor: the narrower scope explains it.
        let v = verdict([&everything, &tenant, &app], T0).expect("frozen");
        assert_eq!(v, Verdict::Holding(app.clone()));
        assert_eq!(v.freeze().held(5), 8, "raised to the floor");
        assert_eq!(v.freeze().held(12), 12, "a floor never lowers");
        assert_eq!(everything.held(5), 5, "held where it is");
        // Past the tenant's and app's expiry only the freeze of everything holds.
        let later = T0 + 60 * 60_000 - 1;
        assert_eq!(
            verdict([&tenant, &everything], later),
            Some(Verdict::Holding(everything.clone()))
        );
        let after = T0 + 60 * 60_000;
        assert_eq!(
            verdict([&tenant, &app], after),
            Some(Verdict::Expired(app.clone())),
            "the latest expiry is the one reported"
        );
        assert_eq!(verdict([], T0), None);
    }

    #[test]
    fn changes_are_audited_once_and_expired_api_freezes_are_forgotten() {
        let book = FreezeBook::new();
        let audit = AuditLog::new();
        let web = WorkloadKey::new("acme", "web");
        book.set(api("acme", None, 1), &audit);
        let annotated = Freeze {
            scope: Scope::from(&web),
            source: Source::Annotation,
            reason: "db migration".into(),
            by: "annotation".into(),
            floor: Some(3),
            since_ms: T0,
            until_ms: None,
            problem: None,
        };
        book.observe_annotation(&web, Some(annotated.clone()), &audit, T0);
        // Seen again on the next read: not a change.
        book.observe_annotation(&web, Some(annotated.clone()), &audit, T0 + 1_000);
        assert_eq!(book.applying(&web).len(), 2);
        assert_eq!(
            book.verdict(&web, T0),
            Some(Verdict::Holding(annotated.clone()))
        );
        let expiry = T0 + 60_000;
        book.sweep(&audit, expiry);
        book.sweep(&audit, expiry + 1_000);
        assert_eq!(book.applying(&web).len(), 2, "expired, still listed");
        book.sweep(&audit, expiry + EXPIRED_KEPT_MS);
        assert_eq!(book.applying(&web), vec![annotated.clone()], "forgotten");
        book.observe_annotation(&web, None, &audit, expiry + EXPIRED_KEPT_MS);
        assert_eq!(book.verdict(&web, expiry + EXPIRED_KEPT_MS), None);
        assert!(book.lift(&Scope::All, "sre", &audit, T0).is_none());
        let kinds: Vec<AuditKind> = audit.list().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                AuditKind::FreezeSet,
                AuditKind::FreezeSet,
                AuditKind::FreezeExpired,
                AuditKind::FreezeLifted,
            ]
        );
        assert_eq!(audit.list()[1].by, "annotation");
    }
}

#[cfg(test)]
mod decision_tests;
