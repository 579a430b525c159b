//! `spillway serve --config FILE`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use spillway_scaler::app::{self, Listeners, PolicySource, ProcessConfig};
use spillway_scaler::config::ServeConfig;
use spillway_scaler::keda::ServerSettings;
use spillway_scaler::policy::PolicyStore;
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
    let grpc = TcpListener::bind(config.grpc)
        .await
        .with_context(|| format!("binding gRPC {}", config.grpc))?;
    let http = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding HTTP {}", config.http))?;
    tracing::info!(grpc = %grpc.local_addr()?, http = %http.local_addr()?, targets = config.targets.len(), "spillway serving");
    println!("grpc={} http={}", grpc.local_addr()?, http.local_addr()?);
    let process = ProcessConfig {
        scrape: config.scrape,
        targets: config.targets,
        store: config.store,
        decision_tick: Duration::from_secs(1),
        server: ServerSettings::default(),
        policies: Arc::new(policies),
        policy_source: PolicySource::Directory {
            path: config.policies,
            reload_every: config.policy_reload,
        },
        observer: None,
        inputs: config.inputs,
    };
    app::run(
        process,
        Listeners { grpc, http },
        super::shutdown_on_signal(),
    )
    .await?;
    Ok(())
}
