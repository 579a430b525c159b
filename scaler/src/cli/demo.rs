//! `spillway demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use spillway_collector::WorkloadKey;
use spillway_collector::scrape::{ScrapeConfig, Target};
use spillway_collector::store::StoreLimits;
use spillway_scaler::access::{Access, Input};
use spillway_scaler::demo::POLICIES;
use spillway_scaler::demo::gateway::DemoGateway;
use spillway_scaler::demo::pool::{DemoPool, PoolConfig};
use spillway_scaler::demo::profile::{DEFAULT_PROFILE, Profile};
use spillway_scaler::keda::ServerSettings;
use spillway_scaler::placement::Resources;
use spillway_scaler::policy::{self, PolicySet, PolicyStore};
use spillway_scaler::serve::replicas::ReplicaSource;
use spillway_scaler::serve::workloads::Published;
use spillway_scaler::serve::{self, Listeners, PolicySource, ProcessConfig};
use tokio::net::TcpListener;

use super::{ListenArgs, parse_duration};

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Address of the built-in demo gateway's /metrics.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub gateway: SocketAddr,
    /// A traffic profile YAML replacing the built-in one.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// A policy directory replacing the built-in demo tenants (hot-reloaded).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// How often the demo gateway is scraped.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub scrape_interval: Duration,
    /// Print no line per decision.
    #[arg(long)]
    pub quiet: bool,
    /// Boxed: the pool's flags would make `demo` the one large variant of the CLI enum.
    #[command(flatten)]
    pub pool: Box<PoolArgs>,
}

/// The simulated node pool the demo's replicas run on.
#[derive(Args, Debug)]
pub struct PoolArgs {
    /// Regular nodes in the simulated pool (one virtual node is always there).
    #[arg(long = "nodes", default_value_t = 3)]
    pub regular_nodes: u32,
    /// Allocatable CPU of each regular node (Kubernetes quantity: 4, 3500m).
    #[arg(long, default_value = "4")]
    pub node_cpu: String,
    /// Allocatable memory of each regular node (Kubernetes quantity: 16Gi).
    #[arg(long, default_value = "16Gi")]
    pub node_memory: String,
    /// Time from scheduling to Ready for a pod on a regular node.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub pod_start: Duration,
    /// Time from scheduling to Ready for a pod on the virtual node.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub burst_start: Duration,
    /// Run without the simulated pool: decisions start from the last desired count.
    #[arg(long)]
    pub no_node_pool: bool,
}

impl PoolArgs {
    fn build(&self) -> anyhow::Result<Option<DemoPool>> {
        if self.no_node_pool {
            return Ok(None);
        }
        let node = Resources::parse_allocatable(&self.node_cpu, &self.node_memory, "110")
            .with_context(|| {
                format!(
                    "--node-cpu {} / --node-memory {}",
                    self.node_cpu, self.node_memory
                )
            })?;
        Ok(Some(DemoPool::new(PoolConfig {
            regular_nodes: self.regular_nodes,
            regular_node: node,
            regular_start_secs: i64::try_from(self.pod_start.as_secs()).unwrap_or(i64::MAX),
            virtual_start_secs: i64::try_from(self.burst_start.as_secs()).unwrap_or(i64::MAX),
            ..PoolConfig::default()
        })))
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let profile_text = match &args.profile {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading traffic profile {}", path.display()))?,
        None => DEFAULT_PROFILE.to_owned(),
    };
    let profile = Profile::parse(&profile_text)?;
    let pool = args.pool.build()?;
    let (policies, policy_source) = match &args.policies {
        Some(dir) => {
            let store = PolicyStore::new();
            let outcome = store.reload(dir);
            if let Some(error) = outcome.dir_error {
                anyhow::bail!("policy directory {}: {error}", dir.display());
            }
            for (path, errors) in &outcome.errors {
                eprintln!("policy {} refused:\n{errors}", path.display());
            }
            let source = PolicySource::Directory {
                path: dir.clone(),
                reload_every: Duration::from_secs(2),
            };
            (store, source)
        }
        None => {
            let parsed = POLICIES
                .iter()
                .map(|(name, text)| policy::parse_policy(name, text))
                .collect::<Result<Vec<_>, _>>()
                .context("the built-in demo policies")?;
            let set = PolicySet::from_policies(parsed).context("the built-in demo policies")?;
            (PolicyStore::from_set(set), PolicySource::Fixed)
        }
    };

    let shutdown = super::shutdown_on_signal()?;
    let grpc = bind(args.listen.grpc, "KEDA gRPC").await?;
    let http = bind(args.listen.http, "metrics/status HTTP").await?;
    let gateway_listener = bind(args.gateway, "demo gateway").await?;
    let gateway_addr = gateway_listener.local_addr()?;
    println!("Spillway demo");
    println!("  KEDA gRPC        grpc={}", grpc.local_addr()?);
    println!(
        "  metrics, status  http={}   (http://{0}/metrics)",
        http.local_addr()?
    );
    println!("  demo gateway     gateway={gateway_addr}   (http://{gateway_addr}/metrics)");
    match &pool {
        Some(pool) => {
            let c = pool.config();
            println!(
                "  node pool        {} regular nodes ({} CPU, {} GiB each) + 1 virtual node; pods Ready after {}s (regular) / {}s (virtual)",
                c.regular_nodes,
                c.regular_node.cpu_millis as f64 / 1000.0,
                c.regular_node.memory_bytes >> 30,
                c.regular_start_secs,
                c.virtual_start_secs
            );
        }
        None => println!("  node pool        off"),
    }
    println!(
        "  access           INSECURE: every port is open to anyone who reaches it (demo only; `spillway serve` needs an access: section)"
    );
    println!("  Ctrl-C stops.");
    let access = Access::insecure_everywhere();
    Access::warn_at_start(
        &access
            .policy()
            .review(&[Input::Keda, Input::Status, Input::Metrics], |_, _| false),
    );

    let gateway = DemoGateway::new(profile);
    let mut gateway_shutdown = shutdown.clone();
    let gateway_task = tokio::spawn(gateway.serve(gateway_listener, async move {
        let _ = gateway_shutdown.wait_for(|stop| *stop).await;
    }));

    let scrape = ScrapeConfig {
        interval: args.scrape_interval,
        timeout: args.scrape_interval.min(Duration::from_secs(2)),
        staleness: args.scrape_interval * 10,
        ..ScrapeConfig::default()
    };
    let observer: Option<spillway_scaler::serve::decision_loop::DecisionObserver> = if args.quiet {
        None
    } else {
        Some(Arc::new(print_decision))
    };
    let config = ProcessConfig {
        scrape,
        targets: vec![Target::new(format!("http://{gateway_addr}/metrics"))],
        store: StoreLimits::default(),
        decision_tick: Duration::from_secs(1),
        server: ServerSettings::default(),
        policies: Arc::new(policies),
        policy_source,
        observer,
        replicas: pool.map(|p| Arc::new(p) as Arc<dyn ReplicaSource>),
        inputs: Default::default(),
        http: Default::default(),
        http_tls: None,
        access: Arc::new(access),
        // The demo starts fresh every time.
        freeze_file: None,
    };
    serve::run(config, Listeners { grpc, http }, shutdown).await?;
    gateway_task.await??;
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("binding the {what} port {addr} (pass another address, or port 0)")
    })
}

/// One readable line per decision that changed something.
fn print_decision(key: &WorkloadKey, latest: &Published, previous: Option<&Published>) {
    let time = chrono::DateTime::from_timestamp_millis(latest.at_ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    let from = previous.map_or(latest.current, |p| p.desired);
    let qps = latest
        .qps
        .map_or_else(|| "    -".to_owned(), |q| format!("{q:7.1}"));
    let to = match &latest.placement {
        Some(p) if p.shortfall > 0 => format!(
            "{} ({} regular + {} burst, {} unplaced)",
            latest.desired, p.regular, p.burst, p.shortfall
        ),
        Some(p) => format!(
            "{} ({} regular + {} burst)",
            latest.desired, p.regular, p.burst
        ),
        None => latest.desired.to_string(),
    };
    println!(
        "{time}  {:<16} {from:>3} → {to:<26} {:<8} qps {qps}  [{}] {}",
        key.to_string(),
        if latest.active { "active" } else { "idle" },
        latest.rule,
        latest.reason
    );
}
