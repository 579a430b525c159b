//! Who may do what: every caller is identified, and each input lets through only the
//! roles meant for it.
//!
//! - [`model`]: roles, inputs, grants and the decision for one call. Pure.
//! - [`settings`]: the `access:` section of the serve config.
//! - [`tokens`]: bearer tokens read from files and re-read when they change.
//! - [`certs`]: the names (subject CN, SANs) in a client certificate.
//! - [`writes`]: what an authorized writer may write: its tenants, and only workloads a
//!   policy names.
//!
//! [`Access`] puts them together for the transports: it turns a gRPC request or an HTTP
//! request's headers into a [`Caller`], decides, and counts refusals in `/metrics`
//! (`spillway_access_denied_total{input, reason}`).
//!
//! Identities come from two places: a client certificate verified by a port's mTLS
//! (`tls.clientCaFile` for gRPC, `httpTls.clientCaFile` for HTTP; the identity is the
//! certificate's CN or a SAN equal to a configured name), and a bearer token
//! (`Authorization: Bearer ...`) on either port. A token decides when both are present.

pub mod certs;
pub mod model;
pub mod settings;
pub mod tokens;
pub mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use model::{
    AccessPolicy, AliasLimits, Caller, Denied, Grant, Input, Permit, Review, Role, TenantScope,
};
pub use settings::{AccessSettings, Mtls};
pub use tokens::{TokenError, Tokens};

use crate::listener::PeerCertificate;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub input: String,
    pub reason: String,
}

/// Distinct client certificates whose caller is remembered; KEDA presents one, a
/// cluster a handful. Past this the memo starts over, so a flood of certificates costs
/// parsing time, not memory.
const CERTIFICATE_MEMO: usize = 256;

/// What an HTTP request shows of its caller: its `Authorization` header and the client
/// certificate its connection's TLS handshake verified (put there by the listener).
#[derive(Clone, Debug, Default)]
pub struct HttpCredentials {
    authorization: Option<HeaderValue>,
    certificate: Option<PeerCertificate>,
}

impl HttpCredentials {
    pub fn of(parts: &Parts) -> Self {
        Self {
            authorization: parts.headers.get(header::AUTHORIZATION).cloned(),
            certificate: parts.extensions.get::<PeerCertificate>().cloned(),
        }
    }

    /// A request's headers alone, as on a plaintext port.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            authorization: headers.get(header::AUTHORIZATION).cloned(),
            certificate: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for HttpCredentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

/// The access rules as the transports apply them.
#[derive(Debug)]
pub struct Access {
    policy: AccessPolicy,
    tokens: Arc<Tokens>,
    denied: Family<DenialLabels, Counter>,
    /// Every KEDA call on an mTLS connection presents the same certificate: it is
    /// parsed once, not once per call.
    certificates: Mutex<HashMap<Box<[u8]>, Caller>>,
}

impl Access {
    pub fn new(policy: AccessPolicy, tokens: Arc<Tokens>) -> Self {
        Self {
            policy,
            tokens,
            denied: Family::default(),
            certificates: Mutex::default(),
        }
    }

    /// Reads the token files of `settings`; fails if one cannot be read.
    pub fn load(settings: &AccessSettings) -> Result<Self, TokenError> {
        let tokens = Tokens::load(settings.token_files.clone(), settings.token_reload)?;
        Ok(Self::new(settings.policy.clone(), Arc::new(tokens)))
    }

    /// Everything open: the demo, benchmarks.
    pub fn insecure_everywhere() -> Self {
        Self::new(
            AccessPolicy::insecure_everywhere(),
            Arc::new(Tokens::default()),
        )
    }

    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }

    pub fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    /// The refusal counter, registered in `/metrics`.
    pub fn denials(&self) -> Family<DenialLabels, Counter> {
        self.denied.clone()
    }

    /// The caller an `Authorization` header value names; `None`: no header.
    pub fn bearer_caller(&self, authorization: Option<&[u8]>) -> Option<Caller> {
        let value = authorization?;
        let Some(token) = std::str::from_utf8(value).ok().and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        }) else {
            return Some(Caller::BadCredential(
                "the Authorization header is not `Bearer <token>`".into(),
            ));
        };
        Some(match self.tokens.identify(token.trim()) {
            Some(identity) => Caller::Identity(identity),
            None => Caller::BadCredential("the bearer token is not known".into()),
        })
    }

    /// The caller of an HTTP request: its bearer token, else its client certificate.
    pub fn http_caller(&self, credentials: &HttpCredentials) -> Caller {
        if let Some(caller) = self.bearer_caller(
            credentials
                .authorization
                .as_ref()
                .map(HeaderValue::as_bytes),
        ) {
            return caller;
        }
        match &credentials.certificate {
            Some(PeerCertificate(der)) => self.certificate_caller(der),
            None => Caller::Anonymous,
        }
    }

    /// The caller of a gRPC request: its bearer token, else its client certificate.
    pub fn grpc_caller<T>(&self, request: &tonic::Request<T>) -> Caller {
        let token = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        if let Some(caller) = self.bearer_caller(token) {
            return caller;
        }
        match request.peer_certs() {
            Some(chain) => match chain.first() {
                Some(leaf) => self.certificate_caller(leaf),
                None => Caller::Anonymous,
            },
            None => Caller::Anonymous,
        }
    }

    /// The caller a verified client certificate (DER) names.
    pub fn certificate_caller(&self, der: &[u8]) -> Caller {
        let mut memo = self
            .certificates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(caller) = memo.get(der) {
            return caller.clone();
        }
        let caller = self
            .policy
            .certificate_caller(&certs::certificate_names(der));
        if memo.len() >= CERTIFICATE_MEMO {
            memo.clear();
        }
        memo.insert(der.into(), caller.clone());
        caller
    }

    /// Decides one call, counting a refusal.
    pub fn authorize(&self, input: Input, caller: &Caller) -> Result<Permit, Denied> {
        self.policy.authorize(input, caller).inspect_err(|denied| {
            self.denied
                .get_or_create(&DenialLabels {
                    input: input.as_str().to_owned(),
                    reason: denied.reason().to_owned(),
                })
                .inc();
            tracing::debug!(%denied, "call refused");
        })
    }

    /// [`Self::authorize`] for a gRPC request.
    pub fn authorize_grpc<T>(
        &self,
        input: Input,
        request: &tonic::Request<T>,
    ) -> Result<Permit, tonic::Status> {
        self.authorize(input, &self.grpc_caller(request))
            .map_err(|denied| grpc_status(&denied))
    }

    /// [`Self::authorize`] for an HTTP request.
    pub fn authorize_http(
        &self,
        input: Input,
        credentials: &HttpCredentials,
    ) -> Result<Permit, Refused> {
        self.authorize(input, &self.http_caller(credentials))
            .map_err(Refused)
    }

    /// The WARN lines of a process's start-up: one per input open to everyone, one
    /// per input no identity can use.
    pub fn warn_at_start(review: &Review) {
        for input in &review.open {
            tracing::warn!(
                input = input.as_str(),
                "INSECURE: {} (listed in access.insecure)",
                input.describe()
            );
        }
        for closed in &review.closed {
            tracing::warn!("{closed}");
        }
    }
}

/// A refused HTTP request: 401 with `WWW-Authenticate: Bearer`, or 403.
#[derive(Debug)]
pub struct Refused(pub Denied);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        http_response(&self.0)
    }
}

pub fn grpc_status(denied: &Denied) -> tonic::Status {
    if denied.is_unauthenticated() {
        tonic::Status::unauthenticated(denied.to_string())
    } else {
        tonic::Status::permission_denied(denied.to_string())
    }
}

pub fn http_response(denied: &Denied) -> Response {
    let text = format!("{denied}\n");
    if denied.is_unauthenticated() {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            text,
        )
            .into_response()
    } else {
        (StatusCode::FORBIDDEN, text).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const TOKEN: &str = "a-token-of-thirty-two-characters";

    fn access(dir: &std::path::Path) -> Access {
        let file = dir.join("agent");
        std::fs::write(&file, TOKEN).unwrap();
        let tokens = Tokens::load(
            vec![("agent".into(), file)],
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        let policy = AccessPolicy {
            identities: BTreeMap::from([(
                Arc::from("agent"),
                Grant {
                    role: Role::Writer,
                    tenants: TenantScope::Only(["acme".to_string()].into()),
                },
            )]),
            ..AccessPolicy::default()
        };
        Access::new(policy, Arc::new(tokens))
    }

    #[test]
    fn bearer_headers_name_the_identity_or_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let access = access(dir.path());
        let mut headers = HeaderMap::new();
        let caller =
            |headers: &HeaderMap| access.http_caller(&HttpCredentials::from_headers(headers));
        assert_eq!(caller(&headers), Caller::Anonymous);
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().unwrap(),
        );
        assert_eq!(caller(&headers), Caller::Identity("agent".into()));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer guessed-token-123456789".parse().unwrap(),
        );
        assert!(matches!(caller(&headers), Caller::BadCredential(_)));
        headers.insert(
            header::AUTHORIZATION,
            "Basic YWRtaW46YWRtaW4=".parse().unwrap(),
        );
        assert!(matches!(caller(&headers), Caller::BadCredential(_)));
    }

    #[test]
    fn an_http_client_certificate_names_its_identity_unless_a_token_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let mut access = access(dir.path());
        access.policy.identities.insert(
            Arc::from("grafana"),
            Grant {
                role: Role::Reader,
                tenants: TenantScope::All,
            },
        );
        let ca = spillway_tests::tls::Ca::new("client CA");
        let grafana = PeerCertificate(Arc::from(ca.client("grafana").cert_der.as_slice()));
        let by_certificate = HttpCredentials {
            authorization: None,
            certificate: Some(grafana.clone()),
        };
        assert_eq!(
            access.http_caller(&by_certificate),
            Caller::Identity("grafana".into())
        );
        let both = HttpCredentials {
            authorization: Some(format!("Bearer {TOKEN}").parse().unwrap()),
            certificate: Some(grafana),
        };
        assert_eq!(access.http_caller(&both), Caller::Identity("agent".into()));
        // Only the listener puts a certificate in: headers alone never carry one.
        let mut headers = HeaderMap::new();
        headers.insert("x-client-cert", "grafana".parse().unwrap());
        assert_eq!(
            access.http_caller(&HttpCredentials::from_headers(&headers)),
            Caller::Anonymous
        );
    }

    #[test]
    fn refusals_are_counted_by_input_and_reason_and_map_to_401_and_403() {
        let dir = tempfile::tempdir().unwrap();
        let access = access(dir.path());
        let denied = access
            .authorize(Input::Write, &Caller::Anonymous)
            .unwrap_err();
        assert_eq!(http_response(&denied).status(), StatusCode::UNAUTHORIZED);
        assert_eq!(grpc_status(&denied).code(), tonic::Code::Unauthenticated);
        let denied = access
            .authorize(Input::Status, &Caller::Identity("agent".into()))
            .unwrap_err();
        assert_eq!(http_response(&denied).status(), StatusCode::FORBIDDEN);
        assert_eq!(grpc_status(&denied).code(), tonic::Code::PermissionDenied);
        let count = |input: &str, reason: &str| {
            access
                .denials()
                .get_or_create(&DenialLabels {
                    input: input.into(),
                    reason: reason.into(),
                })
                .get()
        };
        assert_eq!(count("write", "unauthenticated"), 1);
        assert_eq!(count("status", "forbidden"), 1);
        assert_eq!(count("keda", "unauthenticated"), 0);
    }

    #[test]
    fn a_certificate_names_its_identity_and_is_parsed_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut access = access(dir.path());
        access.policy.identities.insert(
            Arc::from("keda"),
            Grant {
                role: Role::Keda,
                tenants: TenantScope::All,
            },
        );
        let ca = spillway_tests::tls::Ca::new("client CA");
        let keda = ca.client("keda");
        let other = ca.client("someone");
        assert_eq!(
            access.certificate_caller(&keda.cert_der),
            Caller::Identity("keda".into())
        );
        assert_eq!(
            access.certificate_caller(&keda.cert_der),
            Caller::Identity("keda".into())
        );
        assert_eq!(
            access.certificate_caller(&other.cert_der),
            Caller::Anonymous
        );
        assert_eq!(access.certificates.lock().unwrap().len(), 2);
        for i in 0..CERTIFICATE_MEMO {
            let garbage = format!("not a certificate {i}");
            assert_eq!(
                access.certificate_caller(garbage.as_bytes()),
                Caller::Anonymous
            );
        }
        assert!(access.certificates.lock().unwrap().len() <= CERTIFICATE_MEMO);
    }
}
