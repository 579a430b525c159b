//! Reading and checking what KEDA sends: the ScaledObject reference and its trigger
//! metadata. Everything here comes from outside, so every problem becomes a gRPC status
//! a person can act on, never a panic.

use spillway_collector::WorkloadKey;
use spillway_proto::externalscaler::ScaledObjectRef;
use tonic::Status;

use crate::policy::LookupError;

/// Trigger metadata keys Spillway reads.
pub const TENANT_KEY: &str = "tenant";
pub const APP_KEY: &str = "app";
pub const POLICY_KEY: &str = "policy";

/// Bounds on what one request may carry; KEDA's real metadata is a handful of keys.
const MAX_METADATA_ENTRIES: usize = 64;
const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_NAME_LEN: usize = 253;

/// The workload a ScaledObject names, and the policy entry it is scaled by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadRef {
    pub key: WorkloadKey,
    /// The app entry in the tenant's policy (`policy` metadata, defaulting to `app`).
    pub policy_app: String,
    pub namespace: String,
    pub scaled_object: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ScaledObject {}/{} ({})",
            self.namespace, self.scaled_object, self.key
        )
    }
}

/// Validates a ScaledObjectRef and extracts the workload it names.
pub fn parse_ref(reference: Option<&ScaledObjectRef>) -> Result<WorkloadRef, Status> {
    let Some(reference) = reference else {
        return Err(Status::invalid_argument(
            "request carries no scaledObjectRef; KEDA always sends one",
        ));
    };
    let metadata = &reference.scaler_metadata;
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(Status::invalid_argument(format!(
            "trigger metadata has {} keys; at most {MAX_METADATA_ENTRIES} are accepted",
            metadata.len()
        )));
    }
    let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_METADATA_BYTES {
        return Err(Status::invalid_argument(format!(
            "trigger metadata is {size} bytes; at most {MAX_METADATA_BYTES} are accepted"
        )));
    }
    let scaled_object = format!("{}/{}", reference.namespace, reference.name);
    let field = |key: &str| -> Result<Option<String>, Status> {
        match metadata.get(key).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(value) if value.len() > MAX_NAME_LEN || value.chars().any(char::is_control) => {
                Err(Status::invalid_argument(format!(
                    "trigger metadata '{key}' of ScaledObject {scaled_object} is not a valid name \
                     (at most {MAX_NAME_LEN} printable characters)"
                )))
            }
            Some(value) => Ok(Some(value.to_owned())),
        }
    };
    let missing = |key: &str| {
        Status::invalid_argument(format!(
            "ScaledObject {scaled_object}: trigger metadata '{key}' is required; set \
             metadata.{TENANT_KEY} and metadata.{APP_KEY} on the external trigger"
        ))
    };
    let tenant = field(TENANT_KEY)?.ok_or_else(|| missing(TENANT_KEY))?;
    let app = field(APP_KEY)?.ok_or_else(|| missing(APP_KEY))?;
    let policy_app = field(POLICY_KEY)?.unwrap_or_else(|| app.clone());
    if reference.namespace.is_empty() {
        return Err(Status::invalid_argument(format!(
            "ScaledObject '{}' has no namespace; the tenant's policy binds namespaces",
            reference.name
        )));
    }
    Ok(WorkloadRef {
        key: WorkloadKey::new(tenant, app),
        policy_app,
        namespace: reference.namespace.clone(),
        scaled_object: reference.name.clone(),
    })
}

/// Maps a policy lookup failure to the status KEDA (and the person reading its events)
/// should see.
pub fn lookup_status(error: &LookupError, workload: &WorkloadRef) -> Status {
    let message = format!("{workload}: {error}");
    match error {
        LookupError::NamespaceNotAllowed { .. }
        | LookupError::AliasRepointsApp { .. }
        | LookupError::NotBorrowable { .. } => Status::permission_denied(message),
        _ => Status::not_found(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tonic::Code;

    fn reference(metadata: &[(&str, &str)]) -> ScaledObjectRef {
        ScaledObjectRef {
            name: "web".into(),
            namespace: "acme-prod".into(),
            scaler_metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn tenant_and_app_are_required() {
        let error = parse_ref(Some(&reference(&[("app", "web")]))).unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(
            error.message().contains("'tenant' is required"),
            "{}",
            error.message()
        );
        let error = parse_ref(Some(&reference(&[("tenant", "acme"), ("app", " ")]))).unwrap_err();
        assert!(error.message().contains("'app' is required"));
        assert_eq!(parse_ref(None).unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn policy_defaults_to_app_and_extra_keys_are_ignored() {
        let parsed = parse_ref(Some(&reference(&[
            ("tenant", "acme"),
            ("app", "web"),
            ("scalerAddress", "spillway:9090"),
        ])))
        .unwrap();
        assert_eq!(parsed.key, WorkloadKey::new("acme", "web"));
        assert_eq!(parsed.policy_app, "web");
        let parsed = parse_ref(Some(&reference(&[
            ("tenant", "acme"),
            ("app", "web-canary"),
            ("policy", "web"),
        ])))
        .unwrap();
        assert_eq!(parsed.policy_app, "web");
    }

    #[test]
    fn oversized_or_control_character_metadata_is_refused() {
        let long = "x".repeat(300);
        let error = parse_ref(Some(&reference(&[("tenant", &long), ("app", "a")]))).unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        let error =
            parse_ref(Some(&reference(&[("tenant", "a\u{0}b"), ("app", "a")]))).unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        let big = "y".repeat(4_000);
        let many: Vec<(String, String)> = (0..5).map(|i| (format!("k{i}"), big.clone())).collect();
        let mut r = reference(&[("tenant", "acme"), ("app", "web")]);
        r.scaler_metadata.extend(many);
        assert_eq!(
            parse_ref(Some(&r)).unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
