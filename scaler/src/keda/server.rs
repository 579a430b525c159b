//! The gRPC server KEDA connects to.
//!
//! KEDA keeps one HTTP/2 connection per scaler address and multiplexes every
//! ScaledObject's calls and every `StreamIsActive` stream over it, so the server allows
//! many concurrent streams per connection and probes idle connections with keepalive
//! (KEDA's client configures none, so a dead peer is only noticed from this side).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use spillway_proto::externalscaler::external_scaler_server::ExternalScalerServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use super::service::KedaService;
use super::tls::ReloadingTls;
use crate::access::{Access, Input};
use tonic::service::interceptor::InterceptedService;

/// Connection-level settings.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// KEDA's requests are a few hundred bytes; anything far larger is refused early.
    /// Each open stream may buffer up to this much of a request being received.
    pub max_request_bytes: usize,
    /// TLS (mTLS when it has a client CA) on the gRPC port; plaintext when `None`.
    pub tls: Option<Arc<ReloadingTls>>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 16_384,
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            max_request_bytes: 64 * 1024,
            tls: None,
        }
    }
}

/// Serves KEDA's ExternalScaler (plus gRPC health) on `listener` until `shutdown`
/// resolves. Taking the listener lets tests bind 127.0.0.1:0.
pub async fn serve(
    listener: TcpListener,
    service: KedaService,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send,
    push: Option<crate::ha::PushGate>,
    access: Arc<Access>,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ExternalScalerServer<KedaService>>()
        .await;
    // Every ExternalScaler call, before its handler: only KEDA's identity may read
    // replica counts and claim a ScaledObject's namespace.
    let scaler = InterceptedService::new(
        ExternalScalerServer::new(service).max_decoding_message_size(settings.max_request_bytes),
        move |request: tonic::Request<()>| {
            access.authorize_grpc(Input::Keda, &request)?;
            Ok(request)
        },
    );
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(Some(settings.max_concurrent_streams))
        .http2_keepalive_interval(Some(settings.keepalive_interval))
        .http2_keepalive_timeout(Some(settings.keepalive_timeout))
        .http2_max_header_list_size(16 * 1024)
        .add_service(health_service)
        .add_service(scaler)
        .add_optional_service(push.map(|push| push.into_server()));
    match settings.tls {
        None => {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
        }
        Some(tls) => {
            let watch = tls.spawn_watch();
            let served = router
                .serve_with_incoming_shutdown(super::tls::incoming(listener, tls), shutdown)
                .await;
            watch.abort();
            served
        }
    }
}
