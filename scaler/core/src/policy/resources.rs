//! ScalingPolicy resources to policies in force: who owns which namespace, one policy
//! per tenant, and the last good spec while the current one is refused. Pure: the
//! objects and the namespaces' tenant labels in, a verdict per object and the policies
//! to serve out. The watcher (`cluster::policy_watch`) does the I/O.
//!
//! Each spec goes through the same loader and validator as a policy file
//! ([`super::parse_policy`]), so a problem reads as `spillway policy validate` words it,
//! minus the line and column of a file.

use std::collections::{BTreeMap, BTreeSet};

use super::error::PolicyError;
use super::model::TenantPolicy;

/// The Namespace label naming the tenant that owns the namespace. Set by the platform
/// (tenants get no `patch` on Namespaces); a policy in, or naming, a namespace without
/// this label for its tenant is refused.
pub const TENANT_LABEL: &str = "spillway.io/tenant";

/// The policy-file text for a resource's `spec` serving `tenant`: the one loader
/// ([`super::parse_policy`]) reads it as it reads a file. JSON is YAML, so the spec
/// goes in as the API server returned it, unknown fields and all, for the validator to
/// judge.
pub fn document_text(tenant: &str, spec: &serde_json::Value) -> String {
    let doc = serde_json::json!({
        "apiVersion": "spillway.io/v1",
        "kind": "ScalingPolicy",
        "metadata": { "tenant": tenant },
        "spec": spec,
    });
    doc.to_string()
}

/// One ScalingPolicy as the API server has it.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyObject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    /// `metadata.creationTimestamp` (RFC 3339, so it sorts as text).
    pub created: String,
    pub spec: serde_json::Value,
    /// `status.servingGeneration` and `status.servingSpec` as Spillway last wrote them:
    /// what a restarted Spillway serves while the current spec is refused.
    pub recorded: Option<(i64, serde_json::Value)>,
}

impl PolicyObject {
    /// How messages and `spillway status` name the resource.
    pub fn source_name(&self) -> String {
        format!("scalingpolicy {}/{}", self.namespace, self.name)
    }
}

/// Why (part of) a resource is not in force.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// The current spec is refused: each problem with its field path.
    Invalid(Vec<PolicyError>),
    /// The resource's own namespace belongs to no tenant.
    NamespaceNotOwned { namespace: String },
    /// Another resource (or a policy file) already serves this tenant.
    TenantTaken { tenant: String, by: String },
}

impl Problem {
    /// The condition reason: one CamelCase word.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Invalid(errors) if !errors.is_empty() && errors.iter().all(is_ownership) => {
                "NamespaceNotOwned"
            }
            Problem::Invalid(_) => "InvalidSpec",
            Problem::NamespaceNotOwned { .. } => "NamespaceNotOwned",
            Problem::TenantTaken { .. } => "TenantTaken",
        }
    }

    /// Every problem, `field.path: what is wrong; what is expected`, one per line.
    pub fn message(&self) -> String {
        match self {
            Problem::Invalid(errors) => errors
                .iter()
                .map(|e| {
                    if e.path.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.path, e.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Problem::NamespaceNotOwned { namespace } => format!(
                "namespace `{namespace}` has no `{TENANT_LABEL}` label: the platform has not given it to a tenant, so policies in it are not used"
            ),
            Problem::TenantTaken { tenant, by } => format!(
                "tenant `{tenant}` is already served by {by}; expected one ScalingPolicy per tenant"
            ),
        }
    }
}

const OWNERSHIP_MARK: &str = "belongs to";

fn is_ownership(e: &PolicyError) -> bool {
    e.path.starts_with("spec.namespaces") && e.message.contains(OWNERSHIP_MARK)
}

/// What Spillway made of one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    /// The tenant of the resource's namespace, when it has one.
    pub tenant: Option<String>,
    /// The generation in force and its spec; `None`: nothing of this resource serves.
    pub serving: Option<(i64, serde_json::Value)>,
    /// Apps of the spec in force.
    pub apps: usize,
    /// Why the current generation is not (wholly) in force.
    pub problem: Option<Problem>,
}

impl Verdict {
    /// The current generation is in force.
    pub fn ready(&self) -> bool {
        self.problem.is_none()
            && self
                .serving
                .as_ref()
                .is_some_and(|(g, _)| *g == self.generation)
    }
}

/// The outcome of one resolution.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    /// One per resource, in namespace/name order.
    pub verdicts: Vec<Verdict>,
    /// The policies to serve, one per tenant.
    pub policies: Vec<TenantPolicy>,
}

/// Remembers, across resolutions, each resource's last good spec and which resource
/// served each tenant, so an invalid edit or a second resource never displaces one in
/// force.
#[derive(Debug, Default)]
pub struct Resolver {
    last_good: BTreeMap<String, (i64, serde_json::Value)>,
    owners: BTreeMap<String, String>,
    /// Each (uid, generation, tenant) parsed once: a generation's spec never changes, and
    /// every event (Spillway's own status writes included) resolves every resource.
    parsed: BTreeMap<(String, i64, String), Result<TenantPolicy, Vec<PolicyError>>>,
}

impl Resolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// `objects`: every ScalingPolicy; `tenants`: each namespace's `spillway.io/tenant`
    /// label; `reserved`: tenants whose policy comes from the platform's files (a
    /// resource cannot take those).
    pub fn resolve(
        &mut self,
        objects: &[PolicyObject],
        tenants: &BTreeMap<String, String>,
        reserved: &BTreeSet<String>,
    ) -> Resolution {
        let mut candidates: Vec<(Verdict, Option<TenantPolicy>, &PolicyObject)> = Vec::new();
        for object in objects {
            let (verdict, policy) = self.judge(object, tenants);
            candidates.push((verdict, policy, object));
        }
        let present: BTreeSet<&str> = objects.iter().map(|o| o.uid.as_str()).collect();
        self.last_good
            .retain(|uid, _| present.contains(uid.as_str()));

        // One resource per tenant: the one serving it before keeps it, else the oldest.
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by_key(|&i| {
            let (v, _, o) = &candidates[i];
            let served_before = v
                .tenant
                .as_ref()
                .and_then(|t| self.owners.get(t))
                .is_some_and(|uid| *uid == o.uid);
            (
                !served_before,
                o.created.clone(),
                o.namespace.clone(),
                o.name.clone(),
            )
        });
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        let mut by: BTreeMap<String, String> = BTreeMap::new();
        let mut policies = Vec::new();
        for i in order {
            let (verdict, policy, object) = &mut candidates[i];
            let Some(p) = policy.take() else { continue };
            let taken_by = if reserved.contains(&p.tenant) {
                Some("the platform's policy files".to_owned())
            } else {
                by.get(&p.tenant).cloned()
            };
            if let Some(taken_by) = taken_by {
                verdict.serving = None;
                verdict.apps = 0;
                verdict.problem = Some(Problem::TenantTaken {
                    tenant: p.tenant.clone(),
                    by: taken_by,
                });
                continue;
            }
            owners.insert(p.tenant.clone(), object.uid.clone());
            by.insert(p.tenant.clone(), object.source_name());
            policies.push(p);
        }
        self.owners = owners;
        let mut verdicts: Vec<Verdict> = candidates.into_iter().map(|(v, _, _)| v).collect();
        verdicts.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Resolution { verdicts, policies }
    }

    /// One resource on its own: the current spec, else the last good one, checked by
    /// the validator and against the namespaces' owners.
    fn judge(
        &mut self,
        object: &PolicyObject,
        tenants: &BTreeMap<String, String>,
    ) -> (Verdict, Option<TenantPolicy>) {
        let mut verdict = Verdict {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            generation: object.generation,
            tenant: None,
            serving: None,
            apps: 0,
            problem: None,
        };
        let Some(tenant) = tenants.get(&object.namespace) else {
            verdict.problem = Some(Problem::NamespaceNotOwned {
                namespace: object.namespace.clone(),
            });
            return (verdict, None);
        };
        verdict.tenant = Some(tenant.clone());
        let current = self.load(object, object.generation, &object.spec, tenant, tenants);
        let (generation, spec, policy) = match current {
            Ok(policy) => (object.generation, object.spec.clone(), policy),
            Err(errors) => {
                verdict.problem = Some(Problem::Invalid(errors));
                // The previous good spec keeps serving: first this process's memory of
                // it, then what an earlier process recorded in the status.
                let earlier: Vec<(i64, serde_json::Value)> = self
                    .last_good
                    .get(&object.uid)
                    .cloned()
                    .into_iter()
                    .chain(object.recorded.clone())
                    .filter(|(g, _)| *g != object.generation)
                    .collect();
                let Some((g, spec, policy)) = earlier.into_iter().find_map(|(g, spec)| {
                    self.load(object, g, &spec, tenant, tenants)
                        .ok()
                        .map(|p| (g, spec, p))
                }) else {
                    return (verdict, None);
                };
                (g, spec, policy)
            }
        };
        self.last_good
            .insert(object.uid.clone(), (generation, spec.clone()));
        verdict.apps = policy.apps.len();
        verdict.serving = Some((generation, spec));
        (verdict, Some(policy))
    }
}

impl Resolver {
    /// The one loader (once per generation), then ownership against today's labels.
    fn load(
        &mut self,
        object: &PolicyObject,
        generation: i64,
        spec: &serde_json::Value,
        tenant: &str,
        tenants: &BTreeMap<String, String>,
    ) -> Result<TenantPolicy, Vec<PolicyError>> {
        let source = object.source_name();
        let policy = self
            .parsed
            .entry((object.uid.clone(), generation, tenant.to_owned()))
            .or_insert_with(|| {
                super::parse_policy(&source, &document_text(tenant, spec)).map_err(|e| e.0)
            })
            .clone()?;
        owned_by(&source, tenant, policy, tenants)
    }
}

/// Every namespace the spec names must carry the resource's tenant.
fn owned_by(
    source: &str,
    tenant: &str,
    policy: TenantPolicy,
    tenants: &BTreeMap<String, String>,
) -> Result<TenantPolicy, Vec<PolicyError>> {
    let errors: Vec<PolicyError> = policy
        .namespaces
        .iter()
        .enumerate()
        .filter_map(|(i, ns)| {
            let owner = tenants.get(ns);
            (owner.map(String::as_str) != Some(tenant)).then(|| PolicyError {
                source_name: source.to_owned(),
                line: 0,
                column: 0,
                path: format!("spec.namespaces[{i}]"),
                message: match owner {
                    Some(other) => format!(
                        "namespace `{ns}` {OWNERSHIP_MARK} tenant `{other}`, not `{tenant}`; expected only namespaces labelled {TENANT_LABEL}={tenant}"
                    ),
                    None => format!(
                        "namespace `{ns}` {OWNERSHIP_MARK} no tenant (no {TENANT_LABEL} label); expected only namespaces labelled {TENANT_LABEL}={tenant}"
                    ),
                },
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(ns: &str, name: &str, generation: i64, spec: serde_json::Value) -> PolicyObject {
        PolicyObject {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("uid-{ns}-{name}"),
            generation,
            created: format!("2026-01-01T00:00:0{generation}Z"),
            spec,
            recorded: None,
        }
    }

    fn spec(ns: &[&str], max: u32) -> serde_json::Value {
        json!({
            "namespaces": ns,
            "defaults": { "replicas": { "max": max }, "signals": { "qps": { "targetPerReplica": 100 } } },
            "apps": { "checkout": {} },
        })
    }

    fn tenants(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, t)| ((*n).into(), (*t).into()))
            .collect()
    }

    fn max_of(r: &Resolution, tenant: &str) -> Option<u32> {
        r.policies
            .iter()
            .find(|p| p.tenant == tenant)
            .map(|p| p.apps["checkout"].replicas.max)
    }

    #[test]
    fn a_valid_spec_serves_its_namespace_tenant() {
        let t = tenants(&[("acme-prod", "acme")]);
        let r = Resolver::new().resolve(
            &[object("acme-prod", "p", 1, spec(&["acme-prod"], 7))],
            &t,
            &BTreeSet::new(),
        );
        assert_eq!(max_of(&r, "acme"), Some(7));
        assert!(r.verdicts[0].ready(), "{:?}", r.verdicts[0]);
        assert_eq!(r.verdicts[0].apps, 1);
    }

    #[test]
    fn an_invalid_edit_keeps_the_last_good_generation_and_says_where() {
        let t = tenants(&[("acme-prod", "acme")]);
        let mut resolver = Resolver::new();
        resolver.resolve(
            &[object("acme-prod", "p", 1, spec(&["acme-prod"], 7))],
            &t,
            &BTreeSet::new(),
        );
        // min above the inherited max: only the merge can tell.
        let mut bad = spec(&["acme-prod"], 7);
        bad["apps"]["checkout"] = json!({ "replicas": { "min": 9 } });
        let r = resolver.resolve(&[object("acme-prod", "p", 2, bad)], &t, &BTreeSet::new());
        assert_eq!(max_of(&r, "acme"), Some(7), "generation 1 keeps serving");
        let v = &r.verdicts[0];
        assert!(!v.ready());
        assert_eq!(v.serving.as_ref().map(|(g, _)| *g), Some(1));
        let problem = v.problem.as_ref().expect("a problem");
        assert_eq!(problem.reason(), "InvalidSpec");
        assert!(
            problem.message().starts_with(
                "spec.apps.checkout.replicas.min: replicas.min (9) is above replicas.max (7)"
            ),
            "{}",
            problem.message()
        );
    }

    #[test]
    fn a_restart_serves_the_recorded_spec_while_the_current_is_refused() {
        let t = tenants(&[("acme-prod", "acme")]);
        let mut o = object(
            "acme-prod",
            "p",
            3,
            json!({ "namespaces": ["acme-prod"], "apps": {} }),
        );
        o.recorded = Some((2, spec(&["acme-prod"], 5)));
        let r = Resolver::new().resolve(&[o], &t, &BTreeSet::new());
        assert_eq!(max_of(&r, "acme"), Some(5));
        assert_eq!(r.verdicts[0].serving.as_ref().map(|(g, _)| *g), Some(2));
    }

    #[test]
    fn unowned_namespaces_and_other_tenants_namespaces_get_nothing() {
        let t = tenants(&[("acme-prod", "acme"), ("globex-prod", "globex")]);
        let objects = [
            object("scratch", "p", 1, spec(&["scratch"], 3)),
            object(
                "acme-prod",
                "grab",
                1,
                spec(&["acme-prod", "globex-prod"], 3),
            ),
        ];
        let r = Resolver::new().resolve(&objects, &t, &BTreeSet::new());
        assert!(r.policies.is_empty(), "{:?}", r.policies);
        let grab = &r.verdicts[0];
        assert_eq!(
            grab.problem.as_ref().map(Problem::reason),
            Some("NamespaceNotOwned")
        );
        assert!(
            grab.problem
                .as_ref()
                .unwrap()
                .message()
                .contains("spec.namespaces[1]: namespace `globex-prod` belongs to tenant `globex`")
        );
        let scratch = &r.verdicts[1];
        assert_eq!(scratch.tenant, None);
        assert_eq!(
            scratch.problem.as_ref().map(Problem::reason),
            Some("NamespaceNotOwned")
        );
    }

    #[test]
    fn a_second_resource_for_a_tenant_never_displaces_the_one_in_force() {
        let t = tenants(&[("acme-prod", "acme"), ("acme-dev", "acme")]);
        let mut resolver = Resolver::new();
        let mut second = object("acme-dev", "b", 1, spec(&["acme-dev"], 9));
        second.created = "2020-01-01T00:00:00Z".into();
        resolver.resolve(
            &[object("acme-prod", "a", 1, spec(&["acme-prod"], 4))],
            &t,
            &BTreeSet::new(),
        );
        let r = resolver.resolve(
            &[object("acme-prod", "a", 1, spec(&["acme-prod"], 4)), second],
            &t,
            &BTreeSet::new(),
        );
        assert_eq!(
            max_of(&r, "acme"),
            Some(4),
            "the older creation time does not win over the one serving"
        );
        let b = r.verdicts.iter().find(|v| v.name == "b").unwrap();
        assert_eq!(b.problem.as_ref().map(Problem::reason), Some("TenantTaken"));
        assert!(b.serving.is_none());
        // Files reserve their tenants.
        let r = Resolver::new().resolve(
            &[object("acme-prod", "a", 1, spec(&["acme-prod"], 4))],
            &t,
            &BTreeSet::from(["acme".to_owned()]),
        );
        assert!(r.policies.is_empty());
    }

    #[test]
    fn a_namespace_given_to_another_tenant_takes_the_policy_out_of_force() {
        let mut resolver = Resolver::new();
        let o = object("acme-prod", "p", 1, spec(&["acme-prod"], 7));
        resolver.resolve(
            std::slice::from_ref(&o),
            &tenants(&[("acme-prod", "acme")]),
            &BTreeSet::new(),
        );
        // The last good spec is checked against today's owners too.
        let r = resolver.resolve(&[o], &tenants(&[("acme-prod", "globex")]), &BTreeSet::new());
        let globex = r.policies.iter().find(|p| p.tenant == "globex");
        assert!(
            globex.is_some(),
            "the namespace's tenant is who the policy serves"
        );
        assert!(r.policies.iter().all(|p| p.tenant != "acme"));
    }
}
