//! TLS and mTLS on the gRPC port, with certificates reloaded from files. The HTTP port
//! uses the same reloading set ([`ReloadingTls::load_http`]), with its own files.
//!
//! KEDA's `enableTLS` trigger metadata turns TLS on; `caCert`, `tlsClientCert` and
//! `tlsClientKey` come from a TriggerAuthentication as PEM contents. So the server
//! presents `certFile`/`keyFile` (the chain KEDA's `caCert` must verify) and, when
//! `clientCaFile` is set, demands a client certificate issued by that CA.
//!
//! Certificates are rotated in place (cert-manager renews into the mounted Secret), so
//! the files are checked on a timer and a new [`ServerConfig`] is built when they change.
//! Each accepted connection takes the config current at its handshake: connections
//! already open keep the certificate they were served. A new set that fails to load
//! (half-written files, a key that does not match) is reported and the old one keeps
//! serving; it is retried when the files change again.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use futures::Stream;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

pub use rustls::ServerConfig;

/// A file larger than this is not a certificate bundle; refusing it bounds memory.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A client that opens TCP and never finishes its handshake must not hold a slot forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the gRPC server to pick them up.
const ACCEPTED_BACKLOG: usize = 256;

/// Handshakes in flight at once; past this, accepting waits, so a flood of idle TCP
/// connections costs bounded memory.
const MAX_HANDSHAKES: usize = 1024;

/// Where the certificates live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it issued (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(self.cert.as_path()), Some(self.key.as_path())]
            .into_iter()
            .chain(std::iter::once(self.client_ca.as_deref()))
            .flatten()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: String },
    #[error("client CA {path}: {message}")]
    ClientCa { path: String, message: String },
    #[error("certificate {cert} with key {key}: {source}")]
    KeyPair {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// The PEM contents of one certificate set, as read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl TlsPem {
    pub fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            cert: read_pem(&files.cert)?,
            key: read_pem(&files.key)?,
            client_ca: files.client_ca.as_deref().map(read_pem).transpose()?,
        })
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let name = || path.display().to_string();
    let read = |source| TlsError::Read {
        path: name(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read)?;
    if metadata.len() > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge { path: name() });
    }
    std::fs::read(path).map_err(read)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server's rustls config from PEM contents. `files` only names the sources
/// in errors.
pub fn server_config(pem: &TlsPem, files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(pem, files, ClientCertificate::Required)
}

/// Whether a client CA makes a client certificate a condition of the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertificate {
    /// gRPC: KEDA always presents one when mTLS is configured.
    Required,
    /// HTTP: verified when presented, else the caller may still show a bearer token
    /// (Prometheus, the CLI); the access rules refuse anonymous callers either way.
    Optional,
}

fn server_config_with(
    pem: &TlsPem,
    files: &TlsFiles,
    client_certificate: ClientCertificate,
) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_name = files.cert.display().to_string();
    let key_name = files.key.display().to_string();
    let certs = CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_name.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_name });
    }
    let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| TlsError::Pem {
        path: key_name.clone(),
        message: e.to_string(),
    })?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::KeyPair {
            cert: cert_name.clone(),
            key: key_name.clone(),
            source,
        })?;
    let builder = match (&pem.client_ca, &files.client_ca) {
        (Some(ca), Some(ca_path)) => {
            let ca_name = ca_path.display().to_string();
            let client_ca = |message: String| TlsError::ClientCa {
                path: ca_name.clone(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| client_ca(e.to_string()))?;
                roots.add(cert).map_err(|e| client_ca(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(client_ca("no certificate in the file".into()));
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if client_certificate == ClientCertificate::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| client_ca(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::KeyPair {
            cert: cert_name,
            key: key_name,
            source,
        })?;
    // gRPC clients (grpc-go in KEDA since 1.67) refuse a TLS server that does not
    // negotiate h2 by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// `config` offering `alpn` instead of gRPC's h2 alone.
fn with_alpn(config: Arc<ServerConfig>, alpn: &[Vec<u8>]) -> Arc<ServerConfig> {
    if config.alpn_protocols == alpn {
        return config;
    }
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = alpn.to_vec();
    Arc::new(config)
}

/// What one reload check did.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Reloaded,
    /// The files changed but do not load; the previous certificate keeps serving.
    Failed(TlsError),
}

/// The files' modification times, sizes and inodes, so an unchanged set is not
/// re-parsed. File times are coarse (a few ms on Linux): two same-sized certificates
/// written within one tick have the same mtime, but a file replaced by rename (as
/// Secret volumes and cert tools do) has a new inode.
type Stamps = Vec<Option<(SystemTime, u64, u64)>>;

fn stamps(files: &TlsFiles) -> Stamps {
    files
        .paths()
        .map(|path| {
            // Follows symlinks: a mounted Secret swaps its `..data` link on update.
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len(), inode(&metadata)))
        })
        .collect()
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The certificate set currently served, and what it was loaded from.
pub struct ReloadingTls {
    files: TlsFiles,
    reload_every: Duration,
    /// Which port serves it, for the log lines.
    port: &'static str,
    alpn: Vec<Vec<u8>>,
    client_certificate: ClientCertificate,
    current: RwLock<Arc<ServerConfig>>,
    loaded: Mutex<(Stamps, TlsPem)>,
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("files", &self.files)
            .field("reload_every", &self.reload_every)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ReloadingTls {
    /// Loads the gRPC port's files once; a process must not start serving with a
    /// broken set.
    pub fn load(files: TlsFiles, reload_every: Duration) -> Result<Self, TlsError> {
        Self::load_for(
            "gRPC",
            vec![b"h2".to_vec()],
            ClientCertificate::Required,
            files,
            reload_every,
        )
    }

    /// The same for the HTTP port, which speaks HTTP/2 and HTTP/1.1 (Prometheus,
    /// curl and `spillway status` pick by ALPN).
    pub fn load_http(files: TlsFiles, reload_every: Duration) -> Result<Self, TlsError> {
        Self::load_for(
            "HTTP",
            vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ClientCertificate::Optional,
            files,
            reload_every,
        )
    }

    fn load_for(
        port: &'static str,
        alpn: Vec<Vec<u8>>,
        client_certificate: ClientCertificate,
        files: TlsFiles,
        reload_every: Duration,
    ) -> Result<Self, TlsError> {
        let seen = stamps(&files);
        let pem = TlsPem::read(&files)?;
        let config = with_alpn(server_config_with(&pem, &files, client_certificate)?, &alpn);
        Ok(Self {
            files,
            reload_every,
            port,
            alpn,
            client_certificate,
            current: RwLock::new(config),
            loaded: Mutex::new((seen, pem)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The config new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the files if their stamps changed, and swaps the config if their
    /// contents did and load.
    pub fn check(&self) -> Reload {
        let mut loaded = match self.loaded.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let seen = stamps(&self.files);
        if seen == loaded.0 {
            return Reload::Unchanged;
        }
        // Remember these stamps even if loading fails, so a broken set is reported once
        // and retried only when the files change again.
        loaded.0 = seen;
        let pem = match TlsPem::read(&self.files) {
            Ok(pem) => pem,
            Err(error) => return Reload::Failed(error),
        };
        if pem == loaded.1 {
            return Reload::Unchanged;
        }
        match server_config_with(&pem, &self.files, self.client_certificate) {
            Ok(config) => {
                let config = with_alpn(config, &self.alpn);
                loaded.1 = pem;
                match self.current.write() {
                    Ok(mut current) => *current = config,
                    Err(poisoned) => *poisoned.into_inner() = config,
                }
                Reload::Reloaded
            }
            Err(error) => Reload::Failed(error),
        }
    }

    /// Checks the files every `reload_every` until the returned task is aborted.
    pub fn spawn_watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(tls.reload_every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let checking = tls.clone();
                let outcome = tokio::task::spawn_blocking(move || checking.check()).await;
                match outcome {
                    Ok(Reload::Unchanged) => {}
                    Ok(Reload::Reloaded) => {
                        tracing::info!(port = tls.port, cert = %tls.files.cert.display(), "TLS certificate reloaded");
                    }
                    Ok(Reload::Failed(error)) => {
                        tracing::error!(port = tls.port, %error, "new TLS certificate refused; still serving the previous one");
                    }
                    Err(error) => {
                        tracing::error!(port = tls.port, %error, "TLS reload check failed")
                    }
                }
            }
        })
    }
}

/// Accepts TCP connections and completes TLS handshakes concurrently, yielding only
/// connections whose handshake succeeded. Stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                permit = handshakes.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%peer, %error, "gRPC TLS handshake refused");
                    }
                    Err(_) => tracing::warn!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, mutual: bool) -> TlsFiles {
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: mutual.then(|| dir.join("ca.crt")),
        }
    }

    #[test]
    fn missing_and_garbage_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), false);
        let error = ReloadingTls::load(files.clone(), Duration::from_secs(1)).unwrap_err();
        assert!(error.to_string().contains("tls.crt"), "{error}");

        std::fs::write(&files.cert, "not a certificate").unwrap();
        std::fs::write(&files.key, "not a key").unwrap();
        let error = ReloadingTls::load(files.clone(), Duration::from_secs(1)).unwrap_err();
        assert!(
            error.to_string().contains("no certificate") || error.to_string().contains("tls."),
            "{error}"
        );
    }

    fn write(path: &Path, text: &str) {
        spillway_tests::tls::replace(path, text.as_bytes());
    }

    #[test]
    fn a_changed_set_is_swapped_in_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), true);
        let ca = spillway_tests::tls::Ca::new("server CA");
        let clients = spillway_tests::tls::Ca::new("client CA");
        let first = ca.server();
        write(&files.cert, &first.cert_pem);
        write(&files.key, &first.key_pem);
        write(files.client_ca.as_ref().unwrap(), &clients.cert_pem);
        let tls = ReloadingTls::load(files.clone(), Duration::from_secs(1)).unwrap();
        assert!(tls.mutual());
        let original = tls.current();
        assert!(matches!(tls.check(), Reload::Unchanged));

        // A key that belongs to another certificate: refused, the old config stays.
        let second = ca.server();
        write(&files.cert, &second.cert_pem);
        match tls.check() {
            Reload::Failed(error) => assert!(error.to_string().contains("tls.crt"), "{error}"),
            other => panic!("a mismatched key was not refused: {other:?}"),
        }
        assert!(Arc::ptr_eq(&original, &tls.current()));
        // Reported once, not on every tick while the files stay as they are.
        assert!(matches!(tls.check(), Reload::Unchanged));

        write(&files.key, &second.key_pem);
        assert!(matches!(tls.check(), Reload::Reloaded));
        let swapped = tls.current();
        assert!(!Arc::ptr_eq(&original, &swapped));
        assert_eq!(swapped.alpn_protocols, vec![b"h2".to_vec()]);

        // A file that disappears is an error, not a crash, and changes nothing.
        std::fs::remove_file(files.client_ca.as_ref().unwrap()).unwrap();
        assert!(matches!(tls.check(), Reload::Failed(TlsError::Read { .. })));
        assert!(Arc::ptr_eq(&swapped, &tls.current()));
    }

    #[test]
    fn the_http_set_offers_http1_and_keeps_it_across_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), true);
        let ca = spillway_tests::tls::Ca::new("server CA");
        let clients = spillway_tests::tls::Ca::new("client CA");
        let first = ca.server();
        write(&files.cert, &first.cert_pem);
        write(&files.key, &first.key_pem);
        write(files.client_ca.as_ref().unwrap(), &clients.cert_pem);
        let http_alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = ReloadingTls::load_http(files.clone(), Duration::from_secs(1)).unwrap();
        assert_eq!(tls.current().alpn_protocols, http_alpn);
        let second = ca.server();
        write(&files.cert, &second.cert_pem);
        write(&files.key, &second.key_pem);
        assert!(matches!(tls.check(), Reload::Reloaded));
        assert_eq!(tls.current().alpn_protocols, http_alpn);
        // The gRPC set from the same files stays h2 only.
        let grpc = ReloadingTls::load(files, Duration::from_secs(1)).unwrap();
        assert_eq!(grpc.current().alpn_protocols, vec![b"h2".to_vec()]);
    }

    #[test]
    fn an_empty_client_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path(), true);
        let pem = TlsPem {
            cert: Vec::new(),
            key: Vec::new(),
            client_ca: Some(Vec::new()),
        };
        assert!(server_config(&pem, &files).is_err());
    }
}
