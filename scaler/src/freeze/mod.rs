//! The emergency brake: scaling frozen for one app, one tenant or everything, with a
//! reason and an expiry. A frozen workload is served the replicas it runs (or a floor
//! given with the freeze, if higher) whatever the engine decides; the engine still
//! decides every tick, so `explain` shows what it would do, and nothing jumps when the
//! freeze goes. Placement stops changing things too: no new drain-back move starts while
//! a workload is frozen (a move already under way finishes, or its surge pod would stay).
//!
//! Two ways in, so the brake works when Spillway's own API does not:
//! - the status API (`POST`/`DELETE /api/v1/freezes`, admin role only) and
//!   `spillway freeze` / `spillway unfreeze`; such a freeze lasts until it expires or
//!   is lifted, across restarts when `freezeFile:` is set ([`file`]), else until the
//!   process restarts;
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
pub mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use spillway_collector::WorkloadKey;
pub use spillway_core::freeze::*;

use crate::audit::{AuditEntry, AuditKind, AuditLog};

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

    /// The API freezes, for the freeze file.
    pub fn api_freezes(&self) -> Vec<Freeze> {
        self.api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// API freezes read back from the freeze file at start; recorded as restored.
    pub fn restore(&self, freezes: Vec<Freeze>, audit: &AuditLog, now_ms: i64) {
        let mut api = self.api.lock().unwrap_or_else(PoisonError::into_inner);
        for freeze in freezes {
            audit.record(AuditEntry {
                at_ms: now_ms,
                kind: AuditKind::FreezeSet,
                tenant: freeze.scope.tenant().map(str::to_owned),
                subject: freeze.scope.to_string(),
                by: freeze.by.clone(),
                detail: format!("restored from the freeze file: {}", freeze.describe()),
            });
            api.insert(freeze.scope.clone(), freeze);
        }
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
