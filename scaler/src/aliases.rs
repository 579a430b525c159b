//! Workloads scaled by another app's policy entry (trigger metadata `policy`), e.g. a
//! canary scaled like its main app.
//!
//! An alias exists because a ScaledObject asks for it, so it lives only while one does:
//! each KEDA call refreshes it, and one not asked for in `expireAfter` is dropped with
//! its workload. Each tenant may hold a bounded number, so ScaledObjects naming made-up
//! apps cannot grow the process without limit. Which entries may be borrowed is the
//! policy's call ([`crate::policy::PolicySet::lookup_for`]); this only keeps the book.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use dashmap::DashMap;
use spillway_collector::WorkloadKey;

use crate::access::AliasLimits;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AliasRefused {
    #[error(
        "tenant `{tenant}` already has {max} aliased workloads (ScaledObjects whose `policy` metadata names another app), the most access.aliases.maxPerTenant allows; remove unused ScaledObjects or raise the limit"
    )]
    TooMany { tenant: String, max: usize },
}

#[derive(Debug)]
struct Alias {
    policy_app: RwLock<Arc<str>>,
    last_asked_ms: AtomicI64,
}

/// Every alias, with when it was last asked for.
#[derive(Debug, Default)]
pub struct AliasBook {
    aliases: DashMap<WorkloadKey, Alias>,
    /// Aliases per tenant, changed only when one is added or dropped: a KEDA call for
    /// a known alias touches one atomic, not a lock.
    per_tenant: Mutex<HashMap<Arc<str>, usize>>,
    limits: RwLock<AliasLimits>,
}

impl AliasBook {
    pub fn set_limits(&self, limits: AliasLimits) {
        *self.limits.write().unwrap_or_else(PoisonError::into_inner) = limits;
    }

    pub fn limits(&self) -> AliasLimits {
        *self.limits.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that a ScaledObject asked for `key` scaled by `policy_app` at `now_ms`.
    pub fn ask(
        &self,
        key: &WorkloadKey,
        policy_app: &str,
        now_ms: i64,
    ) -> Result<(), AliasRefused> {
        if let Some(alias) = self.aliases.get(key) {
            alias.last_asked_ms.fetch_max(now_ms, Ordering::Relaxed);
            let same = **alias
                .policy_app
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                == *policy_app;
            if !same {
                *alias
                    .policy_app
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = policy_app.into();
            }
            return Ok(());
        }
        let max = self.limits().max_per_tenant;
        let mut per_tenant = self
            .per_tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: another call may have added it meanwhile.
        if self.aliases.contains_key(key) {
            return Ok(());
        }
        let count = per_tenant.entry(key.tenant.clone()).or_insert(0);
        if *count >= max {
            return Err(AliasRefused::TooMany {
                tenant: key.tenant.to_string(),
                max,
            });
        }
        *count += 1;
        self.aliases.insert(
            key.clone(),
            Alias {
                policy_app: RwLock::new(policy_app.into()),
                last_asked_ms: AtomicI64::new(now_ms),
            },
        );
        Ok(())
    }

    /// The entry `key` is scaled by, if it is an alias.
    pub fn policy_app(&self, key: &WorkloadKey) -> Option<Arc<str>> {
        self.aliases.get(key).map(|alias| {
            alias
                .policy_app
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    pub fn contains(&self, key: &WorkloadKey) -> bool {
        self.aliases.contains_key(key)
    }

    /// Every alias with the entry it follows.
    pub fn list(&self) -> Vec<(WorkloadKey, Arc<str>)> {
        self.aliases
            .iter()
            .map(|alias| {
                let app = alias
                    .policy_app
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                (alias.key().clone(), app)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.aliases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
    }

    /// Drops every alias `drop` says to, and returns them.
    pub fn remove_where(&self, drop: impl Fn(&WorkloadKey, i64) -> bool) -> Vec<WorkloadKey> {
        let mut per_tenant = self
            .per_tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut removed = Vec::new();
        self.aliases.retain(|key, alias| {
            let gone = drop(key, alias.last_asked_ms.load(Ordering::Relaxed));
            if gone {
                removed.push(key.clone());
            }
            !gone
        });
        for key in &removed {
            if let Some(count) = per_tenant.get_mut(&key.tenant) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_tenant.remove(&key.tenant);
                }
            }
        }
        removed
    }

    /// Drops the aliases not asked for since `expireAfter` before `now_ms`, except
    /// those `in_use` says are still listened to (an open `StreamIsActive`), and every
    /// alias `superseded` says has an entry of its own now.
    pub fn expire(
        &self,
        now_ms: i64,
        in_use: impl Fn(&WorkloadKey) -> bool,
        superseded: impl Fn(&WorkloadKey) -> bool,
    ) -> Vec<WorkloadKey> {
        let expire_after = self.limits().expire_after_ms;
        self.remove_where(|key, last_asked_ms| {
            superseded(key) || (now_ms.saturating_sub(last_asked_ms) > expire_after && !in_use(key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(max: usize) -> AliasBook {
        let book = AliasBook::default();
        book.set_limits(AliasLimits {
            max_per_tenant: max,
            expire_after_ms: 60_000,
        });
        book
    }

    #[test]
    fn each_tenant_holds_at_most_its_cap() {
        let book = book(2);
        let key = |tenant: &str, app: &str| WorkloadKey::new(tenant, app);
        book.ask(&key("acme", "a"), "web", 0).unwrap();
        book.ask(&key("acme", "b"), "web", 0).unwrap();
        assert_eq!(
            book.ask(&key("acme", "c"), "web", 0),
            Err(AliasRefused::TooMany {
                tenant: "acme".into(),
                max: 2
            })
        );
        // Asking again for one already held is not a new alias.
        book.ask(&key("acme", "a"), "web", 10).unwrap();
        // Another tenant has a cap of its own.
        book.ask(&key("shop", "a"), "web", 0).unwrap();
        assert_eq!(book.len(), 3);
        // Dropping one makes room again.
        book.remove_where(|k, _| *k == key("acme", "b"));
        book.ask(&key("acme", "c"), "web", 0).unwrap();
        assert_eq!(book.policy_app(&key("acme", "c")).as_deref(), Some("web"));
    }

    #[test]
    fn an_alias_not_asked_for_expires_unless_a_stream_listens() {
        let book = book(10);
        let canary = WorkloadKey::new("acme", "web-canary");
        let streamed = WorkloadKey::new("acme", "api-canary");
        book.ask(&canary, "web", 0).unwrap();
        book.ask(&streamed, "api", 0).unwrap();
        book.ask(&canary, "web", 30_000).unwrap();
        let never = |_: &WorkloadKey| false;
        let listened = |key: &WorkloadKey| *key == streamed;
        assert!(
            book.expire(90_000, listened, never).is_empty(),
            "asked 60 s ago: kept"
        );
        let removed = book.expire(90_001, listened, never);
        assert_eq!(removed, vec![canary.clone()]);
        assert!(!book.contains(&canary));
        assert!(book.contains(&streamed), "an open stream keeps it");
        assert_eq!(
            book.expire(10_000_000, never, never),
            vec![streamed.clone()]
        );
        assert!(book.is_empty());
        book.ask(&streamed, "api", 10_000_000).unwrap();
        assert_eq!(
            book.expire(10_000_000, never, |key| *key == streamed),
            vec![streamed.clone()],
            "an app that got its own entry is no alias any more"
        );
        assert!(book.is_empty());
        // The cap counts only what is held.
        book.set_limits(AliasLimits {
            max_per_tenant: 1,
            expire_after_ms: 60_000,
        });
        book.ask(&canary, "web", 0).unwrap();
    }

    #[test]
    fn a_new_policy_name_re_points_the_alias() {
        let book = book(1);
        let canary = WorkloadKey::new("acme", "web-canary");
        book.ask(&canary, "web", 0).unwrap();
        book.ask(&canary, "api", 1).unwrap();
        assert_eq!(book.policy_app(&canary).as_deref(), Some("api"));
        assert_eq!(book.list(), vec![(canary, Arc::from("api"))]);
    }
}
