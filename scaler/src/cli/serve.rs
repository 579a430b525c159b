//! `spillway serve --config FILE`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use spillway_scaler::access::Access;
use spillway_scaler::config::ServeConfig;
use spillway_scaler::keda::ServerSettings;
use spillway_scaler::keda::tls::ReloadingTls;
use spillway_scaler::policy::PolicyStore;
use spillway_scaler::serve::{self, Listeners, PolicySource, ProcessConfig};
use tokio::net::TcpListener;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The process configuration (listen addresses, scrape targets, policy directory).
    #[arg(long, short)]
    pub config: PathBuf,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig::load(&args.config)?;
    let policies = PolicyStore::new();
    let outcome = policies.reload(&config.policies);
    if let Some(error) = &outcome.dir_error {
        anyhow::bail!("policy directory {}: {error}", config.policies.display());
    }
    for (path, errors) in &outcome.errors {
        tracing::error!(file = %path.display(), %errors, "policy refused");
    }
    // A broken certificate at start-up is fatal: serving plaintext instead would be worse.
    let tls = match &config.tls {
        Some(tls) => {
            serve::install_crypto_provider();
            let loaded = ReloadingTls::load(tls.files.clone(), tls.reload_every)
                .context("loading the gRPC TLS certificate")?;
            Some(Arc::new(loaded))
        }
        None => None,
    };
    let http_tls = load_http_tls(&config)?;
    let review = config
        .serve_access()
        .map_err(|error| anyhow::anyhow!("{}: {error}", args.config.display()))?;
    let access = Access::load(&config.access).context("reading the access token files")?;
    Access::warn_at_start(&review);
    if http_tls.is_none() && !config.access.token_files.is_empty() {
        // Fine behind a mesh that encrypts pod traffic; said so nobody assumes it.
        tracing::warn!(
            "bearer tokens reach the HTTP port in plaintext: set httpTls (or run behind a mesh that encrypts pod traffic)"
        );
    }
    let shutdown = super::shutdown_on_signal()?;
    let grpc = TcpListener::bind(config.grpc)
        .await
        .with_context(|| format!("binding gRPC {}", config.grpc))?;
    let http = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding HTTP {}", config.http))?;
    tracing::info!(grpc = %grpc.local_addr()?, tls = tls.is_some(), mtls = tls.as_ref().is_some_and(|t| t.mutual()), http_tls = http_tls.is_some(), http_mtls = http_tls.as_ref().is_some_and(|t| t.mutual()), http = %http.local_addr()?, targets = config.targets.len(), collector_shards = config.inputs.collectors.as_ref().map_or(0, |c| c.shards.len()), "spillway serving");
    println!("grpc={} http={}", grpc.local_addr()?, http.local_addr()?);
    let kubernetes = config.kubernetes.clone().map(|mut kubernetes| {
        if kubernetes.lease.identity.is_none() {
            kubernetes.lease.identity = pod_identity();
        }
        kubernetes
    });
    let process = ProcessConfig {
        scrape: config.scrape,
        targets: config.targets,
        store: config.store,
        decision_tick: Duration::from_secs(1),
        server: ServerSettings {
            tls,
            ..ServerSettings::default()
        },
        policies: Arc::new(policies),
        policy_source: PolicySource::Directory {
            path: config.policies,
            reload_every: config.policy_reload,
        },
        observer: None,
        replicas: None,
        inputs: config.inputs,
        http: config.http_limits,
        http_tls,
        access: Arc::new(access),
        freeze_file: config.freeze_file,
    };
    serve::run_with_cluster(process, Listeners { grpc, http }, shutdown, kubernetes).await?;
    Ok(())
}

/// The HTTP port's certificate set, loaded once: fatal when broken, as for gRPC (the
/// listener then checks the files for changes while it serves).
pub(super) fn load_http_tls(config: &ServeConfig) -> anyhow::Result<Option<Arc<ReloadingTls>>> {
    let Some(tls) = &config.http_tls else {
        return Ok(None);
    };
    serve::install_crypto_provider();
    let loaded = ReloadingTls::load_http(tls.files.clone(), tls.reload_every)
        .context("loading the HTTP TLS certificate (httpTls)")?;
    Ok(Some(Arc::new(loaded)))
}

/// The Lease holder's name when the config names none: the pod's name, from the
/// Downward API's `$POD_NAME`, else the hostname Kubernetes sets to it.
fn pod_identity() -> Option<String> {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
}
