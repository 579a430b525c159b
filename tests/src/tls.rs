//! Throwaway certificate authorities and certificates, generated per test (no private
//! key is ever committed), and TLS clients configured as KEDA configures them from a
//! TriggerAuthentication: `caCert` to verify the server, `tlsClientCert`/`tlsClientKey`
//! to present.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use spillway_proto::externalscaler::external_scaler_client::ExternalScalerClient;
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::keda::Client;

/// The name every test certificate is issued for; clients verify it.
pub const SERVER_NAME: &str = "localhost";

/// A certificate authority that exists only for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    /// The CA's private key, for peers that sign with it (the Kubernetes controller
    /// manager's certificate signer).
    pub key_pem: String,
}

/// A certificate and its key, in PEM, plus the certificate's DER to compare with what a
/// server presents.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        self.issue(
            "spillway",
            &[SERVER_NAME, "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate, as KEDA's operator would present.
    pub fn client(&self, name: &str) -> Leaf {
        self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        self.issue_for(name, None, sans, &[usage])
    }

    /// A leaf for `name` in `group` (the subject's organization, which Kubernetes reads
    /// as the user's group), valid for `sans` and each of `usages`.
    pub fn issue_for(
        &self,
        name: &str,
        group: Option<&str>,
        sans: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = usages.to_vec();
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }
}

/// The files a `tls:` section names, in one directory.
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl ServerFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: dir.join("ca.crt"),
        }
    }

    /// Writes each file whole (temp file, then rename), as a Secret volume update does,
    /// so a reload never sees half a file.
    pub fn write(&self, server: &Leaf, client_ca: Option<&Ca>) {
        replace(&self.cert, server.cert_pem.as_bytes());
        replace(&self.key, server.key_pem.as_bytes());
        if let Some(ca) = client_ca {
            replace(&self.client_ca, ca.cert_pem.as_bytes());
        }
    }

    /// The `tls:` section of a serve config for these files.
    pub fn config_section(&self, mutual: bool, reload: &str) -> String {
        let mut section = format!(
            "tls:\n  certFile: {}\n  keyFile: {}\n  reloadInterval: {reload}\n",
            self.cert.display(),
            self.key.display()
        );
        if mutual {
            section.push_str(&format!("  clientCaFile: {}\n", self.client_ca.display()));
        }
        section
    }
}

pub fn replace(path: &Path, contents: &[u8]) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, contents).expect("write temp file");
    std::fs::rename(&temp, path).expect("rename into place");
}

/// A gRPC client over TLS, trusting `ca_pem` and presenting `identity` if given.
/// Under TLS 1.3 a server that refuses the client certificate says so after the client
/// thinks the handshake is done, so a refusal can surface on connect or on the first call.
pub async fn connect(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Leaf>,
) -> Result<Client, tonic::transport::Error> {
    Ok(ExternalScalerClient::new(
        channel(addr, ca_pem, identity).await?,
    ))
}

/// The TLS channel [`connect`] uses, for any of Spillway's gRPC services.
pub async fn channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut tls = ClientTlsConfig::new()
        .domain_name(SERVER_NAME)
        .ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("valid URI")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(channel)
}

/// A rustls client config trusting `ca_pem`, presenting `identity` if given, offering
/// `alpn`.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&Leaf>,
    alpn: &[&[u8]],
) -> io::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => {
            let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(io::Error::other)?;
            let key =
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).map_err(io::Error::other)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(io::Error::other)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// An HTTPS client (HTTP/2 or HTTP/1.1 by ALPN) trusting `ca_pem`, presenting
/// `identity` if given; requests give up after 10 s.
pub fn https_client(ca_pem: &str, identity: Option<&Leaf>) -> reqwest::Client {
    let config =
        client_config(ca_pem, identity, &[b"h2", b"http/1.1"]).expect("a test TLS client config");
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(config)
        .build()
        .expect("an HTTPS client")
}

/// Completes a TLS handshake (and one round trip, so a refusal of the client certificate
/// is seen) and returns the certificate the server presented.
pub async fn served_certificate(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Leaf>,
) -> io::Result<Vec<u8>> {
    let config = client_config(ca_pem, identity, &[b"h2"])?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut stream = connector.connect(name, tcp).await?;
        // The HTTP/2 preface makes the server answer (SETTINGS) or, if it refused our
        // certificate, send its alert.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await?;
        let mut buf = [0u8; 9];
        stream.read_exact(&mut buf).await?;
        let (_, session) = stream.get_ref();
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| cert.to_vec())
            .ok_or_else(|| io::Error::other("server presented no certificate"))
    };
    tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}
