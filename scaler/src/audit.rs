//! The audit trail: every change of a policy (a reload accepted or refused), of a
//! freeze (set, lifted, expired, seen on or gone from a ScaledObject) and of a grade.
//!
//! Kept in memory, bounded to [`AUDIT_LEN`] entries (the oldest go first, and how many
//! went is counted), and written to the log as it happens (target `spillway::audit`,
//! one INFO line per entry), so the log is the record that outlives a restart and the
//! memory is what `spillway status` shows.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// How many entries the process keeps for `spillway status`.
pub const AUDIT_LEN: usize = 256;

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A policy file's new content took effect.
    PolicyAccepted,
    /// A policy file's new content was refused; its last good version keeps serving.
    PolicyRefused,
    /// A policy file went away.
    PolicyRemoved,
    FreezeSet,
    FreezeLifted,
    /// A freeze's expiry passed: it stopped holding.
    FreezeExpired,
    /// A candidate policy was promoted for more workloads, or rolled back.
    GradeChanged,
}

impl AuditKind {
    pub const ALL: [AuditKind; 7] = [
        AuditKind::PolicyAccepted,
        AuditKind::PolicyRefused,
        AuditKind::PolicyRemoved,
        AuditKind::FreezeSet,
        AuditKind::FreezeLifted,
        AuditKind::FreezeExpired,
        AuditKind::GradeChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::PolicyAccepted => "policy_accepted",
            AuditKind::PolicyRefused => "policy_refused",
            AuditKind::PolicyRemoved => "policy_removed",
            AuditKind::FreezeSet => "freeze_set",
            AuditKind::FreezeLifted => "freeze_lifted",
            AuditKind::FreezeExpired => "freeze_expired",
            AuditKind::GradeChanged => "grade_changed",
        }
    }
}

/// One change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub kind: AuditKind,
    /// The tenant it concerns; `None`: every tenant (a freeze of everything, the
    /// policy directory).
    pub tenant: Option<String>,
    /// What changed: a policy file, a freeze's scope.
    pub subject: String,
    /// Who made the change: an identity, `annotation`, `reload`, `expiry`.
    pub by: String,
    pub detail: String,
}

/// The bounded trail shared by everything that changes what Spillway does.
#[derive(Debug, Default)]
pub struct AuditLog {
    entries: Mutex<VecDeque<AuditEntry>>,
    recorded: [AtomicU64; AuditKind::ALL.len()],
    dropped: AtomicU64,
}

impl AuditLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, entry: AuditEntry) {
        tracing::info!(
            target: "spillway::audit",
            kind = entry.kind.as_str(),
            tenant = entry.tenant.as_deref().unwrap_or("*"),
            subject = %entry.subject,
            by = %entry.by,
            "{}",
            entry.detail
        );
        if let Some(slot) = AuditKind::ALL.iter().position(|k| *k == entry.kind) {
            self.recorded[slot].fetch_add(1, Ordering::Relaxed);
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() == AUDIT_LEN {
            entries.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        entries.push_back(entry);
    }

    /// Every entry kept, oldest first.
    pub fn list(&self) -> Vec<AuditEntry> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Entries recorded since start, by kind (including those no longer kept).
    pub fn counts(&self) -> Vec<(AuditKind, u64)> {
        AuditKind::ALL
            .iter()
            .zip(&self.recorded)
            .map(|(kind, n)| (*kind, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Entries that fell off the front of the trail.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records what a policy reload changed: each changed file accepted or refused,
    /// each removed one. `tenant_of` names the tenant a file serves (after the reload).
    pub fn record_reload(
        &self,
        outcome: &crate::policy::ReloadOutcome,
        tenant_of: impl Fn(&std::path::Path) -> Option<String>,
        now_ms: i64,
    ) {
        for path in &outcome.changed {
            let subject = path.display().to_string();
            let (kind, detail) = if outcome.removed.contains(path) {
                (AuditKind::PolicyRemoved, "file removed".to_owned())
            } else if let Some((_, errors)) = outcome.errors.iter().find(|(p, _)| p == path) {
                (
                    AuditKind::PolicyRefused,
                    format!("refused; the last good version keeps serving: {errors}"),
                )
            } else {
                (AuditKind::PolicyAccepted, "accepted".to_owned())
            };
            self.record(AuditEntry {
                at_ms: now_ms,
                kind,
                tenant: tenant_of(path),
                subject,
                by: "reload".to_owned(),
                detail,
            });
        }
        if let Some(error) = &outcome.dir_error {
            self.record(AuditEntry {
                at_ms: now_ms,
                kind: AuditKind::PolicyRefused,
                tenant: None,
                subject: "policy directory".to_owned(),
                by: "reload".to_owned(),
                detail: format!("unreadable; the current policies keep serving: {error}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: i64) -> AuditEntry {
        AuditEntry {
            at_ms,
            kind: AuditKind::FreezeSet,
            tenant: Some("acme".into()),
            subject: "acme/web".into(),
            by: "sre".into(),
            detail: "frozen".into(),
        }
    }

    #[test]
    fn the_trail_is_bounded_and_counts_what_fell_off() {
        let log = AuditLog::new();
        for at in 0..(AUDIT_LEN as i64 + 5) {
            log.record(entry(at));
        }
        let kept = log.list();
        assert_eq!(kept.len(), AUDIT_LEN);
        assert_eq!(kept.first().map(|e| e.at_ms), Some(5), "oldest go first");
        assert_eq!(log.dropped(), 5);
        let freezes = log
            .counts()
            .into_iter()
            .find(|(k, _)| *k == AuditKind::FreezeSet)
            .map(|(_, n)| n);
        assert_eq!(freezes, Some(AUDIT_LEN as u64 + 5), "counted since start");
    }
}
