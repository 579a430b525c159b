//! Subcommands of the `spillway` binary.

/// `println!` into a `String` (writing into a `String` cannot fail), so a command's
/// output goes out in one [`emit`].
macro_rules! outln {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

mod collector;
mod demo;
mod inspect;
mod serve;
mod simulate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(
    name = "spillway",
    version,
    about = "KEDA external scaler: traffic-driven replicas with hysteresis, regular nodes first, burst to virtual nodes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `spillway_scaler=debug`.
    #[arg(long, global = true, env = "SPILLWAY_LOG")]
    pub log: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run Spillway on an embedded default: a built-in demo gateway with a traffic
    /// profile, the demo tenants' policies, real gRPC and /metrics ports. No cluster.
    Demo(demo::DemoArgs),
    /// Run Spillway for real from a config file.
    Serve(serve::ServeArgs),
    /// Run one collector shard on its own: scrape the targets of hash shard I of N and
    /// answer the scalers (whose config lists the shards under `collectors:`).
    Collector(collector::CollectorArgs),
    /// Work with tenants' policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show every workload's decision, scrape targets and policy problems.
    Status(inspect::StatusArgs),
    /// Explain a workload's recent decisions: `spillway explain TENANT/APP`.
    Explain(inspect::ExplainArgs),
    /// Replay a request-rate trace through Spillway and the HPA baselines; print a table.
    Simulate(simulate::SimulateArgs),
    /// Print the `scalingpolicies.spillway.io` CustomResourceDefinition (YAML), generated
    /// from the policy types: `spillway crd | kubectl apply -f -`.
    Crd,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check policy files; prints every problem and exits non-zero if there is any.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Listen addresses shared by `demo` and (through the config file) `serve`.
#[derive(Args, Debug, Clone)]
pub struct ListenArgs {
    /// Address of the KEDA gRPC service (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub grpc: SocketAddr,
    /// Address of /metrics and the status API.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub http: SocketAddr,
}

/// Writes a command's output to stdout. A reader that went away (`spillway status |
/// head`) ends the output quietly, where `println!` would panic.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("spillway: writing the output: {error}");
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    spillway_scaler::durations::parse(text).map_err(|e| e.to_string())
}

pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Collector(args) => collector::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Policy(PolicyCommand::Validate { files }) => Ok(validate(&files)),
        Command::Crd => {
            emit(&spillway_scaler::cluster::policy_crd::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => inspect::status(args).await,
        Command::Explain(args) => inspect::explain(args).await,
        Command::Simulate(args) => simulate::run(args).map(|()| ExitCode::SUCCESS),
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let reports = spillway_scaler::policy::validate_files(files);
    let mut failed = 0;
    let mut out = String::new();
    for report in &reports {
        match &report.result {
            Ok(policy) => outln!(
                out,
                "ok    {}  tenant {} ({} apps)",
                report.path.display(),
                policy.tenant,
                policy.apps.len()
            ),
            Err(errors) => {
                failed += 1;
                outln!(out, "FAIL  {}", report.path.display());
                for line in errors.to_string().lines() {
                    outln!(out, "      {line}");
                }
            }
        }
    }
    if failed > 0 {
        outln!(
            out,
            "{failed} of {} policy files have problems",
            reports.len()
        );
    }
    emit(&out);
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A channel that flips to `true` on Ctrl-C or SIGTERM. The handlers are registered
/// before this returns, so call it before announcing the listen addresses: a supervisor
/// that signals right after reading them must get a clean shutdown, not a kill.
pub fn shutdown_on_signal() -> anyhow::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            eprintln!("spillway: shutting down");
            let _ = tx.send(true);
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("spillway: shutting down");
        let _ = tx.send(true);
    });
    Ok(rx)
}
