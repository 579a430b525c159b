//! What an authorized writer may write: samples for its own tenants, and only for
//! workloads Spillway decides for (an app a policy names, or an alias a ScaledObject
//! asked for). Everything else is refused per sample, counted, and never stored: a
//! writer cannot move another tenant's replicas, nor fill memory with workloads that
//! exist only in its labels.

use std::sync::Arc;

use axum::response::IntoResponse;
use spillway_collector::WorkloadKey;
use spillway_collector::remote_write::Authorize;
use spillway_collector::write_scope::{WriteDenied, WriteGate, WriteScope};

use super::{Access, Input, Permit, TenantScope};
use crate::policy::{PolicySet, PolicyStore};
use crate::serve::workloads::Workloads;

/// Turns an authorized writer into the scope its samples are checked against.
pub struct WriteAuthority {
    access: Arc<Access>,
    policies: Arc<PolicyStore>,
    workloads: Arc<Workloads>,
}

impl WriteAuthority {
    pub fn new(access: Arc<Access>, policies: Arc<PolicyStore>, workloads: Arc<Workloads>) -> Self {
        Self {
            access,
            policies,
            workloads,
        }
    }

    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// The scope of one request, against the policies as they are now.
    pub fn scope(&self, permit: &Permit) -> WriteScope {
        WriteScope {
            writer: permit.name(),
            gate: Some(Arc::new(PolicyGate {
                tenants: permit.tenants.clone(),
                policies: self.policies.current(),
                workloads: self.workloads.clone(),
            })),
        }
    }

    /// Authorizes a gRPC push stream.
    pub fn authorize_push<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> Result<WriteScope, tonic::Status> {
        let permit = self.access.authorize_grpc(Input::Write, request)?;
        Ok(self.scope(&permit))
    }

    /// The remote-write receiver's authorization: the request's bearer token.
    pub fn remote_write(self: &Arc<Self>) -> Authorize {
        let authority = self.clone();
        Arc::new(move |head| {
            let permit = authority
                .access
                .authorize_http(Input::Write, &super::HttpCredentials::of(head))
                .map_err(|refused| Box::new(refused.into_response()))?;
            Ok(authority.scope(&permit))
        })
    }
}

struct PolicyGate {
    tenants: TenantScope,
    policies: Arc<PolicySet>,
    workloads: Arc<Workloads>,
}

impl WriteGate for PolicyGate {
    fn check(&self, tenant: &str, app: &str) -> Result<(), WriteDenied> {
        admit(&self.tenants, &self.policies, tenant, app, || {
            self.workloads.is_alias(&WorkloadKey::new(tenant, app))
        })
    }
}

/// The rule, as plain values: the tenant first (so a writer learns nothing about
/// another tenant's apps), then whether anything decides for the workload.
pub fn admit(
    tenants: &TenantScope,
    policies: &PolicySet,
    tenant: &str,
    app: &str,
    is_alias: impl FnOnce() -> bool,
) -> Result<(), WriteDenied> {
    if !tenants.allows(tenant) {
        return Err(WriteDenied::TenantNotAllowed);
    }
    if policies.names(tenant, app) || is_alias() {
        Ok(())
    } else {
        Err(WriteDenied::UnknownWorkload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> PolicySet {
        let acme = crate::policy::parse_policy(
            "acme.yaml",
            "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: { tenant: acme }\n\
             spec:\n  namespaces: [acme]\n  defaults:\n    signals:\n      qps: { targetPerReplica: 10 }\n  \
             apps:\n    web: {}\n",
        )
        .unwrap();
        PolicySet::from_policies(vec![acme]).unwrap()
    }

    #[test]
    fn writes_need_the_tenant_and_a_workload_something_decides_for() {
        let set = policies();
        let acme = TenantScope::Only(["acme".to_string()].into());
        assert_eq!(admit(&acme, &set, "acme", "web", || false), Ok(()));
        assert_eq!(
            admit(&acme, &set, "acme", "ghost", || false),
            Err(WriteDenied::UnknownWorkload)
        );
        assert_eq!(
            admit(&acme, &set, "acme", "web-canary", || true),
            Ok(()),
            "an alias a ScaledObject asked for is decided for"
        );
        // Another tenant is refused whether or not it exists, so a writer cannot probe.
        for tenant in ["globex", "nobody"] {
            assert_eq!(
                admit(&acme, &set, tenant, "web", || true),
                Err(WriteDenied::TenantNotAllowed)
            );
        }
        assert_eq!(
            admit(&TenantScope::All, &set, "globex", "web", || false),
            Err(WriteDenied::UnknownWorkload),
            "even an open input stores nothing no policy names"
        );
    }
}
