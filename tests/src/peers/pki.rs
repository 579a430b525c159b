//! The cluster's certificates, generated for each run: nothing private is committed.
//!
//! The API server needs a serving certificate, a CA for client certificates, a key pair
//! for service-account tokens, and, for the aggregation layer that routes
//! `external.metrics.k8s.io` to KEDA's adapter, a separate front-proxy CA and client.
//! KEDA's operator and adapter talk mutual TLS to each other with one certificate that is
//! both server and client.

use std::path::{Path, PathBuf};

use rcgen::{ExtendedKeyUsagePurpose as Usage, KeyPair};

use crate::tls::{Ca, Leaf};

/// Every file the peers are pointed at, written into one directory.
pub struct ClusterPki {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub service_account_public: PathBuf,
    pub service_account_private: PathBuf,
    pub front_proxy_ca: PathBuf,
    pub front_proxy_cert: PathBuf,
    pub front_proxy_key: PathBuf,
    /// `ca.crt`, `tls.crt`, `tls.key` as KEDA's `--cert-dir` wants them; one copy for
    /// the operator and one for the adapter, which also writes its own serving pair there.
    pub keda_operator_dir: PathBuf,
    pub keda_adapter_dir: PathBuf,
}

impl ClusterPki {
    pub fn generate(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("pki dir");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pki file");
            path
        };
        let ca = Ca::new("spillway-test-cluster-ca");
        let apiserver = ca.issue_for(
            "kube-apiserver",
            None,
            &[
                "localhost",
                "127.0.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "10.0.0.1",
            ],
            &[Usage::ServerAuth],
        );
        let admin = ca.issue_for(
            "spillway-test-admin",
            Some("system:masters"),
            &[],
            &[Usage::ClientAuth],
        );
        let front_proxy_ca = Ca::new("spillway-test-front-proxy-ca");
        let front_proxy =
            front_proxy_ca.issue_for("front-proxy-client", None, &[], &[Usage::ClientAuth]);
        let keda_ca = Ca::new("spillway-test-keda-ca");
        let keda = keda_ca.issue_for(
            "keda",
            None,
            &["localhost", "127.0.0.1"],
            &[Usage::ServerAuth, Usage::ClientAuth],
        );
        // The API server signs service-account tokens with ES256 when given an EC key.
        let service_account = KeyPair::generate().expect("service-account key");

        let keda_dir = |name: &str, leaf: &Leaf| {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).expect("keda cert dir");
            std::fs::write(d.join("ca.crt"), &keda_ca.cert_pem).expect("keda ca");
            std::fs::write(d.join("tls.crt"), &leaf.cert_pem).expect("keda cert");
            std::fs::write(d.join("tls.key"), &leaf.key_pem).expect("keda key");
            d
        };
        Self {
            ca: write("ca.crt", &ca.cert_pem),
            ca_key: write("ca.key", &ca.key_pem),
            apiserver_cert: write("apiserver.crt", &apiserver.cert_pem),
            apiserver_key: write("apiserver.key", &apiserver.key_pem),
            admin_cert: write("admin.crt", &admin.cert_pem),
            admin_key: write("admin.key", &admin.key_pem),
            service_account_public: write("sa.pub", &service_account.public_key_pem()),
            service_account_private: write("sa.key", &service_account.serialize_pem()),
            front_proxy_ca: write("front-proxy-ca.crt", &front_proxy_ca.cert_pem),
            front_proxy_cert: write("front-proxy-client.crt", &front_proxy.cert_pem),
            front_proxy_key: write("front-proxy-client.key", &front_proxy.key_pem),
            keda_operator_dir: keda_dir("keda-operator", &keda),
            keda_adapter_dir: keda_dir("keda-adapter", &keda),
        }
    }
}
