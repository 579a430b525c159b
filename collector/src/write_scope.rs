//! What one writer may write: pushed samples (remote-write, gRPC push) carry their own
//! tenant and app labels, so a writer could otherwise claim any workload on the
//! platform. The process that authenticates the writer builds a [`WriteScope`]; the
//! receivers check every sample against it before anything reaches the store.
//!
//! The collector knows nothing of identities or policies: the gate is whatever the
//! caller says it is.

use std::fmt;
use std::sync::Arc;

/// Why a sample was refused by its writer's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteDenied {
    /// The writer may not write this tenant.
    TenantNotAllowed,
    /// No policy names this workload: nothing would decide on it, it would only
    /// take memory.
    UnknownWorkload,
}

impl WriteDenied {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantNotAllowed => "tenant_not_allowed",
            Self::UnknownWorkload => "unknown_workload",
        }
    }
}

impl fmt::Display for WriteDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TenantNotAllowed => "the writer may not write this tenant",
            Self::UnknownWorkload => "no policy names this workload",
        })
    }
}

/// Decides, sample by sample, whether a writer may write a workload.
pub trait WriteGate: Send + Sync {
    fn check(&self, tenant: &str, app: &str) -> Result<(), WriteDenied>;
}

/// One authenticated writer: its name scopes what it writes (two writers never share a
/// source or a series), and its gate bounds which workloads it may write.
#[derive(Clone)]
pub struct WriteScope {
    /// The writer's identity (`anonymous` on an input left open).
    pub writer: Arc<str>,
    /// `None`: every workload (benchmarks and the collector's own tests).
    pub gate: Option<Arc<dyn WriteGate>>,
}

impl fmt::Debug for WriteScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteScope")
            .field("writer", &self.writer)
            .field("gated", &self.gate.is_some())
            .finish()
    }
}

impl WriteScope {
    /// Writes anything, as `writer`.
    pub fn unrestricted(writer: &str) -> Self {
        Self {
            writer: writer.into(),
            gate: None,
        }
    }

    pub fn check(&self, tenant: &str, app: &str) -> Result<(), WriteDenied> {
        match &self.gate {
            Some(gate) => gate.check(tenant, app),
            None => Ok(()),
        }
    }
}

/// Remembers the last verdict: a request carries many series of the same workload in a
/// row, so the gate is consulted about once per workload, not once per series.
pub(crate) struct CachedCheck<'a> {
    scope: &'a WriteScope,
    last: Option<(String, String, Result<(), WriteDenied>)>,
}

impl<'a> CachedCheck<'a> {
    pub(crate) fn new(scope: &'a WriteScope) -> Self {
        Self { scope, last: None }
    }

    pub(crate) fn check(&mut self, tenant: &str, app: &str) -> Result<(), WriteDenied> {
        if self.scope.gate.is_none() {
            return Ok(());
        }
        if let Some((t, a, verdict)) = &self.last
            && t == tenant
            && a == app
        {
            return *verdict;
        }
        let verdict = self.scope.check(tenant, app);
        self.last = Some((tenant.to_owned(), app.to_owned(), verdict));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct OnlyAcme(AtomicUsize);

    impl WriteGate for OnlyAcme {
        fn check(&self, tenant: &str, app: &str) -> Result<(), WriteDenied> {
            self.0.fetch_add(1, Ordering::Relaxed);
            match (tenant, app) {
                ("acme", "web") => Ok(()),
                ("acme", _) => Err(WriteDenied::UnknownWorkload),
                _ => Err(WriteDenied::TenantNotAllowed),
            }
        }
    }

    #[test]
    fn the_cache_asks_the_gate_once_per_run_of_one_workload() {
        let gate = Arc::new(OnlyAcme(AtomicUsize::new(0)));
        let scope = WriteScope {
            writer: "agent".into(),
            gate: Some(gate.clone()),
        };
        let mut cached = CachedCheck::new(&scope);
        for _ in 0..3 {
            assert_eq!(cached.check("acme", "web"), Ok(()));
        }
        assert_eq!(
            cached.check("globex", "web"),
            Err(WriteDenied::TenantNotAllowed)
        );
        assert_eq!(
            cached.check("acme", "nope"),
            Err(WriteDenied::UnknownWorkload)
        );
        assert_eq!(cached.check("acme", "web"), Ok(()));
        assert_eq!(gate.0.load(Ordering::Relaxed), 4);
        assert_eq!(
            WriteScope::unrestricted("bench").check("anyone", "anything"),
            Ok(())
        );
    }
}
