//! Who may do what, as plain values: identities with a role and the tenants they may
//! touch, the inputs left open on purpose, and the one function that decides a call.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// What an identity is for. One role per identity: an agent that writes and a
/// dashboard that reads are different callers with different credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// KEDA's operator: the ExternalScaler RPCs, whose namespace claim is trusted.
    Keda,
    /// Remote-write and gRPC push, for its tenants.
    Writer,
    /// The status API (`spillway status` / `explain`), for its tenants.
    Reader,
    /// Everything an SRE reads: every tenant's status, the scrape targets, policy
    /// errors, `/metrics`.
    Admin,
    /// A scaler polling a collector shard's Snapshot service.
    Shard,
    /// A Prometheus scraping `/metrics`.
    Metrics,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Keda,
        Role::Writer,
        Role::Reader,
        Role::Admin,
        Role::Shard,
        Role::Metrics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Keda => "keda",
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Admin => "admin",
            Role::Shard => "shard",
            Role::Metrics => "metrics",
        }
    }

    /// Roles scoped to a tenant list.
    pub fn has_tenants(self) -> bool {
        matches!(self, Role::Writer | Role::Reader)
    }

    /// May this role use `input`?
    pub fn may_use(self, input: Input) -> bool {
        matches!(
            (self, input),
            (Role::Keda, Input::Keda)
                | (Role::Writer, Input::Write)
                | (Role::Reader | Role::Admin, Input::Status)
                | (Role::Metrics | Role::Admin, Input::Metrics)
                | (Role::Shard | Role::Admin, Input::Shard)
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                format!("unknown role `{text}`; expected one of keda, writer, reader, admin, shard, metrics")
            })
    }
}

/// A door into the process, each with its own rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// The ExternalScaler RPCs on the gRPC port.
    Keda,
    /// Remote-write on the HTTP port and gRPC push.
    Write,
    /// `/api/v1/status` and `/api/v1/workloads/...` on the HTTP port.
    Status,
    /// `/metrics` on the HTTP port.
    Metrics,
    /// A collector shard's Snapshot service (`spillway collector`).
    Shard,
}

impl Input {
    pub const ALL: [Input; 5] = [
        Input::Keda,
        Input::Write,
        Input::Status,
        Input::Metrics,
        Input::Shard,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Input::Keda => "keda",
            Input::Write => "write",
            Input::Status => "status",
            Input::Metrics => "metrics",
            Input::Shard => "shard",
        }
    }

    /// What the door is, for the start-up warning of an open one.
    pub fn describe(self) -> &'static str {
        match self {
            Input::Keda => {
                "the KEDA ExternalScaler service (gRPC port): anyone can read any tenant's replica counts and claim any namespace"
            }
            Input::Write => {
                "writes (remote-write on the HTTP port, gRPC push): anyone can set any tenant's traffic and so its replicas"
            }
            Input::Status => "the status API (HTTP port): anyone can read every tenant's decisions",
            Input::Metrics => {
                "/metrics (HTTP port): anyone can read every tenant's signals and replicas"
            }
            Input::Shard => {
                "the collector shard service (gRPC port): anyone can read every workload's totals"
            }
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Input {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Input::ALL
            .into_iter()
            .find(|input| input.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown input `{text}`; expected one of keda, write, status, metrics, shard"
                )
            })
    }
}

/// The tenants a grant covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantScope {
    /// `tenants: ["*"]`, or a role that is not tenant-scoped.
    All,
    Only(BTreeSet<String>),
}

impl TenantScope {
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(tenants) => tenants.contains(tenant),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, TenantScope::All)
    }
}

/// What one identity may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub tenants: TenantScope,
}

/// Who is calling, as the transport established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credential at all.
    Anonymous,
    /// A token or a client certificate that maps to a configured identity.
    Identity(Arc<str>),
    /// A credential was presented and is wrong (an unknown token, a certificate
    /// naming two identities): refused even on an open input, so a misconfigured
    /// client finds out at once.
    BadCredential(String),
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credential, on an input that needs one.
    Unauthenticated {
        input: Input,
    },
    BadCredential {
        input: Input,
        reason: String,
    },
    /// An identity whose role does not cover the input.
    Forbidden {
        input: Input,
        identity: Arc<str>,
        role: Role,
    },
}

impl Denied {
    /// The reason label counted in `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Unauthenticated { .. } => "unauthenticated",
            Denied::BadCredential { .. } => "bad_credential",
            Denied::Forbidden { .. } => "forbidden",
        }
    }

    pub fn input(&self) -> Input {
        match self {
            Denied::Unauthenticated { input }
            | Denied::BadCredential { input, .. }
            | Denied::Forbidden { input, .. } => *input,
        }
    }

    /// 401 or 403 on HTTP; UNAUTHENTICATED or PERMISSION_DENIED on gRPC.
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, Denied::Forbidden { .. })
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Unauthenticated { input } => write!(
                f,
                "{input}: a credential is required (a bearer token, or a client certificate on a port that verifies them)"
            ),
            Denied::BadCredential { input, reason } => write!(f, "{input}: {reason}"),
            Denied::Forbidden {
                input,
                identity,
                role,
            } => write!(
                f,
                "{input}: identity `{identity}` has role {role}, which may not use it"
            ),
        }
    }
}

/// A call let through, and what it may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permit {
    /// `None`: anonymous on an open input.
    pub identity: Option<Arc<str>>,
    pub tenants: TenantScope,
}

impl Permit {
    /// The caller's name: its identity, or `anonymous` on an open input. A writer's
    /// series and sources are scoped by it.
    pub fn name(&self) -> Arc<str> {
        self.identity
            .clone()
            .unwrap_or_else(|| Arc::from("anonymous"))
    }
}

/// Settings of `access.aliases`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AliasLimits {
    /// Aliases one tenant may hold at once.
    pub max_per_tenant: usize,
    /// An alias no ScaledObject asked for in this long is dropped.
    pub expire_after_ms: i64,
}

impl Default for AliasLimits {
    fn default() -> Self {
        Self {
            max_per_tenant: 32,
            // KEDA asks every pollingInterval (30 s) and the HPA every 15 s: ten minutes
            // of silence means the ScaledObject is gone, not slow.
            expire_after_ms: 10 * 60_000,
        }
    }
}

/// The whole access configuration, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AccessPolicy {
    /// Inputs open to anyone who reaches the port.
    pub insecure: BTreeSet<Input>,
    pub identities: BTreeMap<Arc<str>, Grant>,
    pub aliases: AliasLimits,
}

impl AccessPolicy {
    /// Every input open: the demo and loopback tests.
    pub fn insecure_everywhere() -> Self {
        Self {
            insecure: Input::ALL.into_iter().collect(),
            ..Self::default()
        }
    }

    pub fn is_open(&self, input: Input) -> bool {
        self.insecure.contains(&input)
    }

    /// Decides one call.
    pub fn authorize(&self, input: Input, caller: &Caller) -> Result<Permit, Denied> {
        match caller {
            Caller::BadCredential(reason) => Err(Denied::BadCredential {
                input,
                reason: reason.clone(),
            }),
            _ if self.is_open(input) => Ok(Permit {
                identity: match caller {
                    Caller::Identity(name) => Some(name.clone()),
                    _ => None,
                },
                tenants: TenantScope::All,
            }),
            Caller::Anonymous => Err(Denied::Unauthenticated { input }),
            Caller::Identity(name) => {
                let Some(grant) = self.identities.get(name) else {
                    // Callers are only ever built from configured identities.
                    return Err(Denied::BadCredential {
                        input,
                        reason: format!("identity `{name}` is not configured"),
                    });
                };
                if grant.role.may_use(input) {
                    Ok(Permit {
                        identity: Some(name.clone()),
                        tenants: grant.tenants.clone(),
                    })
                } else {
                    Err(Denied::Forbidden {
                        input,
                        identity: name.clone(),
                        role: grant.role,
                    })
                }
            }
        }
    }

    /// The identity a client certificate names: the configured identity equal to its
    /// subject CN or one of its SANs. A certificate naming none is anonymous (a valid
    /// client of the CA with no role here); one naming two is refused, since which
    /// rights it carries would depend on the order of its names.
    pub fn certificate_caller(&self, names: &[String]) -> Caller {
        let mut matched: Vec<&Arc<str>> = self
            .identities
            .keys()
            .filter(|identity| names.iter().any(|name| name == &***identity))
            .collect();
        matched.dedup();
        match matched.as_slice() {
            [] => Caller::Anonymous,
            [one] => Caller::Identity((*one).clone()),
            several => Caller::BadCredential(format!(
                "the client certificate names several identities ({}); issue one per identity",
                several
                    .iter()
                    .map(|s| s.as_ref())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// What start-up must say about the inputs a process has on: an error for an
    /// input that is on, not open, and that no identity could ever use (a process
    /// that would refuse every KEDA call is misconfigured, not secure), and a warning
    /// per open input.
    pub fn review(&self, on: &[Input], can_authenticate: impl Fn(&str, Input) -> bool) -> Review {
        let mut review = Review::default();
        for &input in on {
            if self.is_open(input) {
                review.open.push(input);
                continue;
            }
            let usable = self
                .identities
                .iter()
                .any(|(name, grant)| grant.role.may_use(input) && can_authenticate(name, input));
            if usable {
                continue;
            }
            let roles: Vec<&str> = Role::ALL
                .into_iter()
                .filter(|role| role.may_use(input))
                .map(Role::as_str)
                .collect();
            let message = format!(
                "access: no identity can use {input} ({}): give an identity role {} with a \
                 tokenFile (or a client certificate: on the gRPC port with tls.clientCaFile, on \
                 the HTTP port with httpTls.clientCaFile), or open it on purpose with `access: {{ insecure: [{input}] }}`",
                input.describe_short(),
                roles.join(" or "),
            );
            match input {
                // Turned on and unusable: every call would fail.
                Input::Keda | Input::Write | Input::Shard => review.errors.push(message),
                // Closed to everyone is a safe, if odd, state.
                Input::Status | Input::Metrics => review.closed.push(message),
            }
        }
        review
    }
}

impl Input {
    fn describe_short(self) -> &'static str {
        match self {
            Input::Keda => "the KEDA ExternalScaler service",
            Input::Write => "remote-write and gRPC push",
            Input::Status => "the status API",
            Input::Metrics => "/metrics",
            Input::Shard => "the collector shard service",
        }
    }
}

/// The outcome of [`AccessPolicy::review`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// Start-up must fail.
    pub errors: Vec<String>,
    /// Inputs open to everyone: one WARN line each.
    pub open: Vec<Input>,
    /// Inputs no identity can use: one WARN line each.
    pub closed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        let grant = |role, tenants: &[&str]| Grant {
            role,
            tenants: if tenants == ["*"] {
                TenantScope::All
            } else {
                TenantScope::Only(tenants.iter().map(|t| t.to_string()).collect())
            },
        };
        AccessPolicy {
            insecure: BTreeSet::new(),
            identities: [
                ("keda", grant(Role::Keda, &["*"])),
                ("agent-acme", grant(Role::Writer, &["acme"])),
                ("central", grant(Role::Writer, &["*"])),
                ("grafana-acme", grant(Role::Reader, &["acme"])),
                ("sre", grant(Role::Admin, &["*"])),
                ("prometheus", grant(Role::Metrics, &["*"])),
                ("scaler", grant(Role::Shard, &["*"])),
            ]
            .into_iter()
            .map(|(name, grant)| (Arc::from(name), grant))
            .collect(),
            aliases: AliasLimits::default(),
        }
    }

    fn who(name: &str) -> Caller {
        Caller::Identity(name.into())
    }

    #[test]
    fn each_role_reaches_its_own_inputs_only() {
        let policy = policy();
        let allowed: Vec<(&str, Vec<Input>)> = [
            "keda",
            "agent-acme",
            "grafana-acme",
            "sre",
            "prometheus",
            "scaler",
        ]
        .into_iter()
        .map(|name| {
            let inputs = Input::ALL
                .into_iter()
                .filter(|input| policy.authorize(*input, &who(name)).is_ok())
                .collect();
            (name, inputs)
        })
        .collect();
        assert_eq!(
            allowed,
            vec![
                ("keda", vec![Input::Keda]),
                ("agent-acme", vec![Input::Write]),
                ("grafana-acme", vec![Input::Status]),
                ("sre", vec![Input::Status, Input::Metrics, Input::Shard]),
                ("prometheus", vec![Input::Metrics]),
                ("scaler", vec![Input::Shard]),
            ]
        );
        let denied = policy.authorize(Input::Keda, &who("sre")).unwrap_err();
        assert_eq!(denied.reason(), "forbidden");
        assert!(denied.to_string().contains("role admin"), "{denied}");
    }

    #[test]
    fn a_permit_carries_the_grants_tenants() {
        let policy = policy();
        let permit = policy.authorize(Input::Write, &who("agent-acme")).unwrap();
        assert!(permit.tenants.allows("acme"));
        assert!(!permit.tenants.allows("globex"));
        assert_eq!(&*permit.name(), "agent-acme");
        let central = policy.authorize(Input::Write, &who("central")).unwrap();
        assert!(central.tenants.is_all());
        let reader = policy
            .authorize(Input::Status, &who("grafana-acme"))
            .unwrap();
        assert_eq!(
            reader.tenants,
            TenantScope::Only(["acme".to_string()].into())
        );
    }

    #[test]
    fn open_inputs_let_anyone_in_but_never_a_wrong_credential() {
        let mut policy = policy();
        assert_eq!(
            policy.authorize(Input::Write, &Caller::Anonymous),
            Err(Denied::Unauthenticated {
                input: Input::Write
            })
        );
        policy.insecure.insert(Input::Write);
        let permit = policy.authorize(Input::Write, &Caller::Anonymous).unwrap();
        assert_eq!(permit.tenants, TenantScope::All);
        assert_eq!(&*permit.name(), "anonymous");
        // An identified caller keeps its name on an open input, so its sources stay its own.
        let named = policy.authorize(Input::Write, &who("agent-acme")).unwrap();
        assert_eq!(&*named.name(), "agent-acme");
        let bad = Caller::BadCredential("unknown bearer token".into());
        assert_eq!(
            policy.authorize(Input::Write, &bad).unwrap_err().reason(),
            "bad_credential"
        );
        // Only the input named is open.
        assert!(policy.authorize(Input::Keda, &Caller::Anonymous).is_err());
    }

    #[test]
    fn a_certificate_is_the_identity_its_cn_or_a_san_names() {
        let policy = policy();
        assert_eq!(
            policy.certificate_caller(&["keda".into(), "keda.keda.svc".into()]),
            who("keda")
        );
        assert_eq!(
            policy.certificate_caller(&["someone-else".into()]),
            Caller::Anonymous
        );
        match policy.certificate_caller(&["keda".into(), "sre".into()]) {
            Caller::BadCredential(reason) => assert!(reason.contains("keda, sre"), "{reason}"),
            other => panic!("two identities in one certificate accepted: {other:?}"),
        }
    }

    #[test]
    fn start_up_review_fails_unusable_inputs_and_lists_open_ones() {
        let mut policy = policy();
        let review = policy.review(&[Input::Keda, Input::Status, Input::Metrics], |_, _| true);
        assert_eq!(review, Review::default());
        // Without any credential that could authenticate, KEDA could never call.
        let review = policy.review(&[Input::Keda, Input::Status], |_, _| false);
        assert_eq!(review.errors.len(), 1);
        assert!(review.errors[0].contains("insecure: [keda]"), "{review:?}");
        assert_eq!(review.closed.len(), 1, "status closed to all is a warning");
        policy.insecure.extend([Input::Keda, Input::Status]);
        let review = policy.review(&[Input::Keda, Input::Status], |_, _| false);
        assert!(review.errors.is_empty());
        assert_eq!(review.open, vec![Input::Keda, Input::Status]);
    }

    #[test]
    fn names_parse_and_unknown_ones_say_what_is_expected() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        for input in Input::ALL {
            assert_eq!(input.as_str().parse::<Input>(), Ok(input));
        }
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("expected one of")
        );
        assert!(
            "grpc"
                .parse::<Input>()
                .unwrap_err()
                .contains("expected one of")
        );
    }
}
