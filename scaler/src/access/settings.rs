//! The `access:` section of the serve config.
//!
//! ```yaml
//! access:
//!   # Inputs open to anyone who reaches the port, on purpose (demo, loopback tests):
//!   # any of keda, write, status, metrics, shard. Each is named in a WARN line at start.
//!   insecure: []
//!   tokenReload: 10s            # token files are checked for changes this often
//!   aliases: { maxPerTenant: 32, expireAfter: 10m }
//!   identities:
//!     keda-operator: { role: keda }                  # the CN or a SAN of KEDA's client certificate
//!     agent-acme: { role: writer, tenants: [acme], tokenFile: /etc/spillway/tokens/agent-acme }
//!     grafana: { role: reader, tenants: ["*"], tokenFile: /etc/spillway/tokens/grafana }
//!     sre: { role: admin, tokenFile: /etc/spillway/tokens/sre }
//!     prometheus: { role: metrics, tokenFile: /etc/spillway/tokens/prometheus }
//!     spillway-scaler: { role: shard, tokenFile: /etc/spillway/tokens/shard }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::model::{AccessPolicy, AliasLimits, Grant, Input, Role, TenantScope};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawAccess {
    #[serde(default)]
    insecure: Vec<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    token_reload: Option<Duration>,
    #[serde(default)]
    aliases: Option<RawAliases>,
    #[serde(default)]
    identities: BTreeMap<String, RawIdentity>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAliases {
    #[serde(default)]
    max_per_tenant: Option<usize>,
    #[serde(default, deserialize_with = "optional_duration")]
    expire_after: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIdentity {
    role: String,
    #[serde(default)]
    tenants: Option<Vec<String>>,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    crate::durations::deserialize(deserializer).map(Some)
}

/// Which ports verify client certificates (their TLS section has a `clientCaFile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mtls {
    pub grpc: bool,
    pub http: bool,
}

/// The resolved section.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AccessSettings {
    pub policy: AccessPolicy,
    /// Identity → its bearer token's file.
    pub token_files: Vec<(Arc<str>, PathBuf)>,
    pub token_reload: Duration,
}

impl AccessSettings {
    /// Everything open, nothing to authenticate: the demo.
    pub fn insecure_everywhere() -> Self {
        Self {
            policy: AccessPolicy::insecure_everywhere(),
            token_files: Vec::new(),
            token_reload: Duration::ZERO,
        }
    }

    /// Whether `identity` can prove itself on `input`'s port: a token works on both
    /// ports, a client certificate on a port that verifies them.
    pub fn can_authenticate(&self, identity: &str, input: Input, mtls: Mtls) -> bool {
        let token = self.token_files.iter().any(|(name, _)| &**name == identity);
        // Writes come by gRPC push or by remote-write on the HTTP port.
        let on_grpc = matches!(input, Input::Keda | Input::Write | Input::Shard);
        let on_http = matches!(input, Input::Write | Input::Status | Input::Metrics);
        token || (mtls.grpc && on_grpc) || (mtls.http && on_http)
    }

    /// The start-up review of a process with `on` inputs.
    pub fn review(&self, on: &[Input], mtls: Mtls) -> super::Review {
        self.policy.review(on, |identity, input| {
            self.can_authenticate(identity, input, mtls)
        })
    }
}

impl RawAccess {
    pub(crate) fn resolve(self) -> Result<AccessSettings, String> {
        let mut insecure = BTreeSet::new();
        for name in &self.insecure {
            let input: Input = name.parse().map_err(|e| format!("access.insecure: {e}"))?;
            insecure.insert(input);
        }
        let mut identities = BTreeMap::new();
        let mut token_files = Vec::new();
        for (name, raw) in self.identities {
            let at = format!("access.identities.{name}");
            if name.is_empty() || name.len() > 1024 || name.chars().any(char::is_control) {
                return Err(format!(
                    "{at}: an identity name must be 1 to 1024 printable characters"
                ));
            }
            let role: Role = raw.role.parse().map_err(|e| format!("{at}.role: {e}"))?;
            let tenants = match (role.has_tenants(), raw.tenants) {
                (true, None) => {
                    return Err(format!(
                        "{at}.tenants: role {role} needs the tenants it may touch (`[\"*\"]` for all)"
                    ));
                }
                (true, Some(list)) if list.is_empty() => {
                    return Err(format!(
                        "{at}.tenants: an empty list lets the identity do nothing; name its tenants"
                    ));
                }
                (true, Some(list)) if list.iter().any(|t| t == "*") => {
                    if list.len() > 1 {
                        return Err(format!(
                            "{at}.tenants: `*` already means every tenant; list it alone"
                        ));
                    }
                    TenantScope::All
                }
                (true, Some(list)) => {
                    if let Some(bad) = list.iter().find(|t| t.trim().is_empty()) {
                        return Err(format!("{at}.tenants: `{bad}` is not a tenant name"));
                    }
                    TenantScope::Only(list.into_iter().collect())
                }
                (false, Some(_)) => {
                    return Err(format!(
                        "{at}.tenants: role {role} is not scoped to tenants; remove the list"
                    ));
                }
                (false, None) => TenantScope::All,
            };
            let name: Arc<str> = name.into();
            if let Some(file) = raw.token_file {
                token_files.push((name.clone(), file));
            }
            identities.insert(name, Grant { role, tenants });
        }
        let defaults = AliasLimits::default();
        let aliases = self.aliases.unwrap_or_default();
        let aliases = AliasLimits {
            max_per_tenant: aliases.max_per_tenant.unwrap_or(defaults.max_per_tenant),
            expire_after_ms: aliases.expire_after.map_or(defaults.expire_after_ms, |d| {
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            }),
        };
        // KEDA asks once per pollingInterval (30 s by default): keep it well above that.
        if aliases.expire_after_ms < 10_000 {
            return Err(
                "access.aliases.expireAfter must be at least 10s, and well above KEDA's pollingInterval (30s by default)"
                    .into(),
            );
        }
        let token_reload = self.token_reload.unwrap_or(Duration::from_secs(10));
        if token_reload < Duration::from_millis(100) {
            return Err("access.tokenReload must be at least 100ms".into());
        }
        Ok(AccessSettings {
            policy: AccessPolicy {
                insecure,
                identities,
                aliases,
            },
            token_files,
            token_reload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AccessSettings, String> {
        let raw: RawAccess = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        raw.resolve()
    }

    #[test]
    fn identities_get_their_role_tenants_and_token_files() {
        let settings = parse(
            "insecure: [metrics]\n\
             tokenReload: 2s\n\
             aliases: {maxPerTenant: 4, expireAfter: 5m}\n\
             identities:\n  \
               keda-operator: {role: keda}\n  \
               agent-acme: {role: writer, tenants: [acme, shop], tokenFile: /t/agent}\n  \
               grafana: {role: reader, tenants: ['*'], tokenFile: /t/grafana}\n",
        )
        .unwrap();
        let policy = &settings.policy;
        assert_eq!(policy.insecure, [Input::Metrics].into());
        assert_eq!(policy.identities.len(), 3);
        assert_eq!(policy.identities["keda-operator"].role, Role::Keda);
        assert_eq!(
            policy.identities["agent-acme"].tenants,
            TenantScope::Only(["acme".to_string(), "shop".to_string()].into())
        );
        assert_eq!(policy.identities["grafana"].tenants, TenantScope::All);
        assert_eq!(
            settings.token_files,
            vec![
                (Arc::from("agent-acme"), PathBuf::from("/t/agent")),
                (Arc::from("grafana"), PathBuf::from("/t/grafana"))
            ]
        );
        assert_eq!(settings.token_reload, Duration::from_secs(2));
        assert_eq!(policy.aliases.max_per_tenant, 4);
        assert_eq!(policy.aliases.expire_after_ms, 300_000);
        let none = Mtls::default();
        let grpc = Mtls {
            grpc: true,
            http: false,
        };
        let http = Mtls {
            grpc: false,
            http: true,
        };
        assert!(settings.can_authenticate("grafana", Input::Status, none));
        assert!(!settings.can_authenticate("keda-operator", Input::Keda, none));
        assert!(settings.can_authenticate("keda-operator", Input::Keda, grpc));
        assert!(
            !settings.can_authenticate("keda-operator", Input::Status, grpc),
            "no client certificates on a plaintext HTTP port"
        );
        assert!(settings.can_authenticate("keda-operator", Input::Status, http));
        assert!(!settings.can_authenticate("keda-operator", Input::Keda, http));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("insecure: [everything]", "access.insecure: unknown input"),
            ("identities: {x: {role: root}}", "access.identities.x.role"),
            ("identities: {x: {role: writer}}", "needs the tenants"),
            ("identities: {x: {role: reader, tenants: []}}", "empty list"),
            (
                "identities: {x: {role: reader, tenants: ['*', a]}}",
                "alone",
            ),
            ("identities: {x: {role: keda, tenants: [a]}}", "not scoped"),
            ("identities: {x: {role: keda, token: abc}}", "token"),
            ("aliases: {expireAfter: 5s}", "expireAfter"),
            ("tokenReload: 1ms", "tokenReload"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
