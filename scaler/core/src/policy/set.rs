//! All tenants' policies as one immutable snapshot, and the lookup the gRPC layer makes.

use std::collections::BTreeMap;
use std::sync::Arc;

use spillway_model::signal::WorkloadKey;

use super::error::{PolicyError, PolicyErrors};
use super::model::{AppPolicy, TenantPolicy};

/// Every tenant's policy. Immutable; share it in an `Arc` and swap the whole set on reload.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    tenants: BTreeMap<String, TenantPolicy>,
}

/// Why a ScaledObject's workload has no policy. The Display text says what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error(
        "no scaling policy for tenant `{tenant}`: add a ScalingPolicy file with `metadata: {{ tenant: {tenant} }}` to the policy directory, or fix the ScaledObject's `tenant` metadata"
    )]
    UnknownTenant { tenant: String },
    #[error(
        "tenant `{tenant}` has no app `{app}` in its policy ({source_name}): list it under `spec.apps` (an empty override `{app}: {{}}` is enough), or fix the ScaledObject's `app` metadata"
    )]
    UnknownApp {
        tenant: String,
        app: String,
        source_name: String,
    },
    #[error(
        "app `{app}` of tenant `{tenant}` has its own entry in {source_name}, so a ScaledObject cannot scale it by `{policy_app}` instead: remove the `policy` metadata"
    )]
    AliasRepointsApp {
        tenant: String,
        app: String,
        policy_app: String,
        source_name: String,
    },
    #[error(
        "tenant `{tenant}`'s app `{policy_app}` is not borrowable, so `{app}` cannot be scaled by it: set `borrowable: true` on `{policy_app}` in {source_name}, or give `{app}` an entry of its own"
    )]
    NotBorrowable {
        tenant: String,
        app: String,
        policy_app: String,
        source_name: String,
    },
    #[error(
        "namespace `{namespace}` may not use tenant `{tenant}`'s policy (allowed: {allowed}): add it to `spec.namespaces` in {source_name}, or move the ScaledObject"
    )]
    NamespaceNotAllowed {
        tenant: String,
        namespace: String,
        allowed: String,
        source_name: String,
    },
}

impl PolicySet {
    /// Builds a set; two policies for the same tenant are refused.
    pub fn from_policies(policies: Vec<TenantPolicy>) -> Result<Self, PolicyErrors> {
        let mut tenants: BTreeMap<String, TenantPolicy> = BTreeMap::new();
        let mut errors = Vec::new();
        for p in policies {
            if let Some(first) = tenants.get(&p.tenant) {
                errors.push(PolicyError {
                    source_name: p.source_name.clone(),
                    line: p.tenant_line,
                    column: p.tenant_column,
                    path: "metadata.tenant".into(),
                    message: format!(
                        "tenant `{}` is already defined in {}; expected one policy file per tenant",
                        p.tenant, first.source_name
                    ),
                });
                continue;
            }
            tenants.insert(p.tenant.clone(), p);
        }
        if errors.is_empty() {
            Ok(Self { tenants })
        } else {
            Err(PolicyErrors(errors))
        }
    }

    /// The policy for a ScaledObject naming `tenant`/`app` from `namespace`.
    pub fn lookup(
        &self,
        tenant: &str,
        app: &str,
        namespace: &str,
    ) -> Result<Arc<AppPolicy>, LookupError> {
        let t = self
            .tenants
            .get(tenant)
            .ok_or_else(|| LookupError::UnknownTenant {
                tenant: tenant.to_owned(),
            })?;
        if !t.namespaces.iter().any(|n| n == namespace) {
            return Err(LookupError::NamespaceNotAllowed {
                tenant: tenant.to_owned(),
                namespace: namespace.to_owned(),
                allowed: t.namespaces.join(", "),
                source_name: t.source_name.clone(),
            });
        }
        t.apps
            .get(app)
            .cloned()
            .ok_or_else(|| LookupError::UnknownApp {
                tenant: tenant.to_owned(),
                app: app.to_owned(),
                source_name: t.source_name.clone(),
            })
    }

    /// The policy for a ScaledObject naming `tenant`/`app` and scaled by the entry
    /// `policy_app` (its `policy` metadata, or `app`). An app scaled by another entry
    /// (an alias) may only borrow an entry that says `borrowable: true`, and never
    /// when it has an entry of its own: a ScaledObject must not re-point an app the
    /// tenant configured.
    pub fn lookup_for(
        &self,
        tenant: &str,
        app: &str,
        policy_app: &str,
        namespace: &str,
    ) -> Result<Arc<AppPolicy>, LookupError> {
        let policy = self.lookup(tenant, policy_app, namespace)?;
        if app == policy_app {
            return Ok(policy);
        }
        let source_name = || {
            self.tenants
                .get(tenant)
                .map(|t| t.source_name.clone())
                .unwrap_or_default()
        };
        let owns_entry = self
            .tenants
            .get(tenant)
            .is_some_and(|t| t.apps.contains_key(app));
        if owns_entry {
            return Err(LookupError::AliasRepointsApp {
                tenant: tenant.to_owned(),
                app: app.to_owned(),
                policy_app: policy_app.to_owned(),
                source_name: source_name(),
            });
        }
        if !policy.borrowable {
            return Err(LookupError::NotBorrowable {
                tenant: tenant.to_owned(),
                app: app.to_owned(),
                policy_app: policy_app.to_owned(),
                source_name: source_name(),
            });
        }
        Ok(policy)
    }

    /// Whether `tenant`'s policy has an entry for `app`.
    pub fn names(&self, tenant: &str, app: &str) -> bool {
        self.tenants
            .get(tenant)
            .is_some_and(|t| t.apps.contains_key(app))
    }

    /// Every known workload with its policy, in (tenant, app) order.
    pub fn workloads(&self) -> impl Iterator<Item = (WorkloadKey, Arc<AppPolicy>)> + '_ {
        self.tenants.values().flat_map(|t| {
            t.apps.iter().map(move |(app, p)| {
                (
                    WorkloadKey::new(t.tenant.as_str(), app.as_str()),
                    Arc::clone(p),
                )
            })
        })
    }

    /// The candidate policy of a workload's policy entry, if its file carries one.
    pub fn candidate(&self, key: &WorkloadKey) -> Option<Arc<AppPolicy>> {
        self.tenants
            .get(&*key.tenant)?
            .candidate
            .as_ref()?
            .apps
            .get(&*key.app)
            .cloned()
    }

    /// The grade and guards of a tenant's candidate, if its file carries one.
    pub fn rollout(&self, tenant: &str) -> Option<&super::grade::Rollout> {
        self.tenants
            .get(tenant)?
            .candidate
            .as_ref()
            .map(|c| &c.rollout)
    }

    pub fn tenant(&self, tenant: &str) -> Option<&TenantPolicy> {
        self.tenants.get(tenant)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &TenantPolicy> {
        self.tenants.values()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PolicySet {
        let acme = crate::policy::parse_policy(
            "acme.yaml",
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme }\n\
             spec:\n  namespaces: [acme]\n  defaults:\n    signals:\n      qps: { targetPerReplica: 10 }\n  \
             apps:\n    web: { borrowable: true }\n    checkout: {}\n",
        )
        .unwrap();
        PolicySet::from_policies(vec![acme]).unwrap()
    }

    #[test]
    fn an_alias_borrows_only_a_borrowable_entry_and_never_re_points_an_app() {
        let set = set();
        let canary = set.lookup_for("acme", "web-canary", "web", "acme").unwrap();
        assert_eq!(canary.app, "web");
        assert!(canary.borrowable);
        assert!(matches!(
            set.lookup_for("acme", "checkout", "web", "acme"),
            Err(LookupError::AliasRepointsApp { .. })
        ));
        let error = set
            .lookup_for("acme", "checkout-canary", "checkout", "acme")
            .unwrap_err();
        assert!(matches!(error, LookupError::NotBorrowable { .. }));
        assert!(error.to_string().contains("borrowable: true"), "{error}");
        // The namespace binding applies to the borrowed entry as to any other.
        assert!(matches!(
            set.lookup_for("acme", "web-canary", "web", "elsewhere"),
            Err(LookupError::NamespaceNotAllowed { .. })
        ));
        assert!(
            set.lookup_for("acme", "checkout", "checkout", "acme")
                .is_ok()
        );
        assert!(set.names("acme", "checkout") && !set.names("acme", "web-canary"));
    }

    #[test]
    fn borrowable_is_a_choice_per_app_not_a_default() {
        let errors = crate::policy::parse_policy(
            "acme.yaml",
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme }\n\
             spec:\n  namespaces: [acme]\n  defaults:\n    borrowable: true\n    signals:\n      qps: { targetPerReplica: 10 }\n  \
             apps:\n    web: {}\n",
        )
        .unwrap_err();
        assert!(errors.to_string().contains("per app"), "{errors}");
    }
}
