//! `spillway collector --shard I/N --config FILE`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use spillway_collector::shard::ShardSpec;
use std::sync::Arc;

use spillway_scaler::access::{Access, Input, Mtls};
use spillway_scaler::config::ServeConfig;
use spillway_scaler::serve::Listeners;
use spillway_scaler::serve::shard_collector::{self, ShardProcess};
use tokio::net::TcpListener;

#[derive(Args, Debug)]
pub struct CollectorArgs {
    /// This process's shard, `I/N`: it scrapes the targets whose address hashes to I
    /// (Prometheus' hashmod over host:port, modulus N).
    #[arg(long, value_parser = parse_shard)]
    pub shard: ShardSpec,
    /// The same configuration file `spillway serve` reads; its scrape section is used.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Address of the shard service the scalers poll (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:9091")]
    pub grpc: SocketAddr,
    /// Address of /metrics, /healthz, /readyz and /api/v1/status.
    #[arg(long, default_value = "0.0.0.0:9100")]
    pub http: SocketAddr,
}

fn parse_shard(text: &str) -> Result<ShardSpec, String> {
    text.parse()
        .map_err(|e: spillway_collector::shard::ShardSpecError| e.to_string())
}

pub async fn run(args: CollectorArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(&args.config)?;
    let access = Access::load(&config.access).context("reading the access token files")?;
    // The shard service (gRPC) has no TLS of its own: tokens are its only credentials
    // there. Its HTTP port takes `httpTls` like the scaler's.
    let http_tls = super::serve::load_http_tls(&config)?;
    let mtls = Mtls {
        grpc: false,
        http: http_tls.as_ref().is_some_and(|tls| tls.mutual()),
    };
    let review = config
        .access
        .review(&[Input::Shard, Input::Status, Input::Metrics], mtls);
    if !review.errors.is_empty() {
        anyhow::bail!("{}: {}", args.config.display(), review.errors.join("; "));
    }
    Access::warn_at_start(&review);
    let shutdown = super::shutdown_on_signal()?;
    let grpc = TcpListener::bind(args.grpc)
        .await
        .with_context(|| format!("binding gRPC {}", args.grpc))?;
    let http = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding HTTP {}", args.http))?;
    println!("grpc={} http={}", grpc.local_addr()?, http.local_addr()?);
    let process = ShardProcess {
        shard: args.shard,
        scrape: config.scrape,
        targets: config.targets,
        kubernetes: config.kubernetes,
        max_windows: config.store.max_windows,
        http_tls,
        access: Arc::new(access),
    };
    shard_collector::run(process, Listeners { grpc, http }, shutdown).await?;
    Ok(())
}
