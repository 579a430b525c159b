//! The HTTP port's server, bounded so slow or many clients cannot hold memory: a cap on
//! connections (over it a connection is closed at once rather than queued), a deadline
//! for a request's headers, a cap on their size, an idle limit on every read, and
//! HTTP/2 windows and streams kept small. Bodies have their own deadline where they are
//! read (remote-write).
//!
//! With `httpTls` in the serve config the port speaks TLS only, and with its
//! `clientCaFile` it asks for a client certificate: a verified one names the caller
//! ([`PeerCertificate`]) as on the gRPC port, and a connection without one may still
//! present a bearer token. The handshake counts against the header deadline and holds
//! a connection slot, so half-open handshakes are bounded like slow headers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::keda::tls::ReloadingTls;

/// Limits of the HTTP server.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// A request's headers must arrive whole within this (HTTP/1.1; also how long an
    /// idle keep-alive connection is kept).
    pub header_timeout: Duration,
    /// A connection with a read pending and no byte arriving for this long is closed
    /// (a stalled body, an HTTP/2 connection that stopped answering).
    pub idle_timeout: Duration,
    /// Largest request head, and the most one connection buffers.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        let derived = spillway_collector::budget::MemoryBudget::default().derive(900);
        Self {
            max_connections: derived.http_max_connections,
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: spillway_collector::budget::CONNECTION_BUFFER_BYTES,
        }
    }
}

/// What the server refused and holds, for /metrics.
#[derive(Clone, Debug, Default)]
pub struct HttpStats {
    /// Connections closed on arrival because the cap was reached.
    pub connections_refused: Counter,
    pub connections_open: Gauge<i64, AtomicI64>,
    /// TLS handshakes that failed or did not finish within the header deadline.
    pub tls_handshakes_failed: Counter,
}

/// How long shutdown waits for open connections to finish their requests.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The verified client certificate (leaf, DER) of a connection served over mTLS, put
/// in every request's extensions so access rules can name the caller. Only the
/// listener inserts it: a client cannot send one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate(pub Arc<[u8]>);

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; over TLS
/// (and mTLS when its set has a client CA) when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Option<Arc<ReloadingTls>>,
    stats: Arc<HttpStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let builder = builder(&limits);
    let (stop, stopping) = watch::channel(false);
    let reloading = tls.as_ref().map(ReloadingTls::spawn_watch);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: back off instead of spinning.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The slot is taken before the handshake: a flood of TCP connections that
        // never finish one holds no more than the cap.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = IdleLimit::new(stream, limits.idle_timeout);
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            stopping: stopping.clone(),
        };
        let stats = stats.clone();
        let tls = tls.clone();
        let handshake_limit = limits.header_timeout;
        stats.connections_open.inc();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(io, None).await,
                Some(tls) => {
                    let acceptor = TlsAcceptor::from(tls.current());
                    match tokio::time::timeout(handshake_limit, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| PeerCertificate(Arc::from(leaf.as_ref())));
                            connection.serve(stream, certificate).await;
                        }
                        Ok(Err(error)) => {
                            stats.tls_handshakes_failed.inc();
                            tracing::debug!(%peer, %error, "HTTP TLS handshake refused");
                        }
                        Err(_) => {
                            stats.tls_handshakes_failed.inc();
                            tracing::debug!(%peer, "HTTP TLS handshake timed out");
                        }
                    }
                }
            }
            stats.connections_open.dec();
            drop(slot);
        });
    }
    let _ = stop.send(true);
    if let Some(reloading) = reloading {
        reloading.abort();
    }
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_LIMIT, slots.acquire_many(all)).await;
    Ok(())
}

/// What serving one accepted connection needs.
struct Connection {
    router: axum::Router,
    builder: auto::Builder<TokioExecutor>,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    /// Serves requests on `io` until the client goes or shutdown asks it to finish.
    async fn serve<S>(self, io: S, certificate: Option<PeerCertificate>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            router,
            builder,
            mut stopping,
        } = self;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // Replaces anything under that type: only the handshake may say who it is.
            request.extensions_mut().remove::<PeerCertificate>();
            if let Some(certificate) = &certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            router.clone().call(request)
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(connection);
        let stopped = tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                false
            }
            _ = stopping.wait_for(|stop| *stop) => true,
        };
        if stopped {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

fn builder(limits: &HttpLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    // HTTP/2 (by prior knowledge in plaintext, by ALPN over TLS): few streams and
    // small windows, so one connection buffers little; pings find dead peers.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(16)
        .initial_connection_window_size(128 << 10)
        .initial_stream_window_size(64 << 10)
        .max_header_list_size(16 << 10)
        .keep_alive_interval(limits.idle_timeout / 3)
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// A socket whose pending read fails once no byte has arrived for `limit`.
struct IdleLimit {
    stream: TcpStream,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl IdleLimit {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            deadline: None,
        }
    }
}

impl AsyncRead for IdleLimit {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = this.limit;
                let deadline = this.deadline.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + limit))
                });
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no bytes from the client within the idle limit",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for IdleLimit {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(
        limits: HttpLimits,
    ) -> (std::net::SocketAddr, Arc<HttpStats>, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let stats = Arc::new(HttpStats::default());
        let (stop, mut stopped) = watch::channel(false);
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tokio::spawn(serve(
            listener,
            router,
            limits,
            None,
            stats.clone(),
            shutdown,
        ));
        (addr, stats, stop)
    }

    /// Reads until the server closes the connection (or the limit passes).
    async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(limit, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        read.await.is_ok()
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_slow_headers_time_out() {
        let (addr, stats, _stop) = start(HttpLimits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(5),
            max_header_bytes: 8192,
        })
        .await;
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("write");
            slow.push(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_within(&mut third, Duration::from_millis(200)).await);
        assert_eq!(stats.connections_refused.get(), 1);
        for s in &mut slow {
            assert!(
                closed_within(s, Duration::from_secs(2)).await,
                "headers never finished"
            );
        }
        // The slots are free again: a whole request is answered.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut ok = TcpStream::connect(addr).await.expect("connect");
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        ok.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }

    #[tokio::test]
    async fn a_connection_that_never_speaks_is_closed_at_the_idle_limit() {
        let (addr, stats, _stop) = start(HttpLimits {
            max_connections: 4,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(300),
            max_header_bytes: 8192,
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(stats.connections_open.get(), 0);
    }

    #[tokio::test]
    async fn oversized_headers_are_refused() {
        let (addr, _stats, _stop) = start(HttpLimits {
            max_connections: 4,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            max_header_bytes: 8192,
        })
        .await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 << 10)
        );
        let _ = s.write_all(head.as_bytes()).await;
        let mut reply = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut reply))
            .await
            .expect("answered")
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&reply[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 431"), "{text}");
    }
}
