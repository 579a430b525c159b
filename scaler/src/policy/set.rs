//! All tenants' policies as one immutable snapshot, and the lookup the gRPC layer makes.

use std::collections::BTreeMap;
use std::sync::Arc;

use spillway_collector::signal::WorkloadKey;

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
