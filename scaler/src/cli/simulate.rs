//! `spillway simulate --policy FILE --trace FILE`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use spillway_scaler::placement::{CostModel, Resources, parse_cpu, parse_memory};
use spillway_scaler::policy::parse_policy;
use spillway_scaler::simulate::trace::{self, AzurePick, TraceFormat};
use spillway_scaler::simulate::{World, simulate, svg};

use super::parse_duration;

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// A tenant policy file; the app replayed must use `signals.qps`.
    #[arg(long)]
    pub policy: PathBuf,
    /// The app in the policy file (needed when it lists more than one).
    #[arg(long)]
    pub app: Option<String>,
    /// The request-rate trace.
    #[arg(long)]
    pub trace: PathBuf,
    /// The trace's format (auto: decided from its first line).
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Azure traces: follow the function whose hash starts with this (default: the sum
    /// of all functions).
    #[arg(long)]
    pub function: Option<String>,
    /// Multiply every rate by this (to model a busier service).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Remove seconds FROM..TO (since the trace's start, before any other cut) and join
    /// the ends, e.g. an outage. Repeatable.
    #[arg(long, value_parser = parse_range)]
    pub cut: Vec<(usize, usize)>,
    /// Requests/s one Ready replica serves (default: the policy's qps.targetPerReplica).
    #[arg(long)]
    pub capacity: Option<f64>,
    /// Regular nodes in the fixed pool.
    #[arg(long, default_value_t = 3)]
    pub regular_nodes: u32,
    /// CPU allocatable of each regular node (Kubernetes quantity).
    #[arg(long, default_value = "4")]
    pub node_cpu: String,
    /// Memory allocatable of each regular node (Kubernetes quantity).
    #[arg(long, default_value = "16Gi")]
    pub node_memory: String,
    /// Pod slots of each regular node.
    #[arg(long, default_value_t = 110)]
    pub node_pods: u64,
    /// Time from binding to Ready on a regular node.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub regular_start: Duration,
    /// Time from binding to Ready on a virtual node.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub virtual_start: Duration,
    /// Price of a replica-second on a regular node.
    #[arg(long)]
    pub price_regular: Option<f64>,
    /// Price of a replica-second on a virtual node.
    #[arg(long)]
    pub price_burst: Option<f64>,
    /// The HPA's sync period.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub hpa_sync: Duration,
    /// KEDA's pollingInterval for the Prometheus scaler baseline.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub keda_polling: Duration,
    /// The window the baselines' request-rate metric is averaged over.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub metric_window: Duration,
    /// The unix time of the trace's first second (matters for schedules).
    #[arg(long)]
    pub start: Option<i64>,
    /// Write an SVG chart here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Auto,
    NasaSeconds,
    PerMinute,
    Azure,
    TimeValue,
}

fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("`{text}`: expected FROM..TO in seconds"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("`{a}` is not a second"))?;
    let b: usize = b
        .trim()
        .parse()
        .map_err(|_| format!("`{b}` is not a second"))?;
    if b <= a {
        return Err(format!("`{text}`: TO must be after FROM"));
    }
    Ok((a, b))
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("reading policy {}", args.policy.display()))?;
    let tenant = parse_policy(&args.policy.display().to_string(), &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = match &args.app {
        Some(app) => tenant.apps.get(app).with_context(|| {
            format!(
                "policy {} has no app `{app}` (apps: {})",
                args.policy.display(),
                tenant.apps.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?,
        None if tenant.apps.len() == 1 => tenant.apps.values().next().context("one app")?,
        None => bail!(
            "policy {} lists {} apps; pick one with --app ({})",
            args.policy.display(),
            tenant.apps.len(),
            tenant.apps.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    let Some(qps) = policy.signals.qps else {
        bail!(
            "{}/{} has no signals.qps; a request-rate trace can only drive qps",
            policy.tenant,
            policy.app
        );
    };

    let text = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("reading trace {}", args.trace.display()))?;
    let format = match args.format {
        Format::Auto => TraceFormat::Auto,
        Format::NasaSeconds => TraceFormat::NasaSeconds,
        Format::PerMinute => TraceFormat::PerMinute,
        Format::Azure => TraceFormat::Azure,
        Format::TimeValue => TraceFormat::TimeValue,
    };
    let pick = args
        .function
        .clone()
        .map_or(AzurePick::Sum, AzurePick::Function);
    let mut trace = trace::parse(&text, format, &pick)
        .with_context(|| format!("trace {}", args.trace.display()))?;
    let mut cuts = args.cut.clone();
    // Later cuts first, so every range keeps meaning seconds of the original trace; that
    // only holds when they do not overlap.
    cuts.sort_by(|a, b| b.cmp(a));
    if let Some(w) = cuts.windows(2).find(|w| w[1].1 > w[0].0) {
        bail!(
            "--cut {}..{} and {}..{} overlap; give one range",
            w[1].0,
            w[1].1,
            w[0].0,
            w[0].1
        );
    }
    for (from, to) in cuts {
        trace = trace.cut(from, to);
    }
    if !(args.scale.is_finite() && args.scale > 0.0) {
        bail!("--scale must be a positive number, got {}", args.scale);
    }
    let trace = trace.scaled(args.scale);
    if trace.rps.is_empty() {
        bail!("nothing left of the trace after the cuts");
    }

    let defaults = CostModel::default();
    let world = World {
        capacity_per_replica: args.capacity.unwrap_or(qps.target_per_replica),
        regular_nodes: args.regular_nodes,
        regular_node: Resources::new(
            parse_cpu(&args.node_cpu).context("--node-cpu")?,
            parse_memory(&args.node_memory).context("--node-memory")?,
            args.node_pods,
        ),
        regular_start_secs: secs(args.regular_start),
        virtual_start_secs: secs(args.virtual_start),
        cost: CostModel {
            regular_per_replica_second: args
                .price_regular
                .unwrap_or(defaults.regular_per_replica_second),
            burst_per_replica_second: args
                .price_burst
                .unwrap_or(defaults.burst_per_replica_second),
        },
        hpa_sync_secs: secs(args.hpa_sync).max(1),
        keda_polling_secs: secs(args.keda_polling).max(1),
        metric_window_secs: u32::try_from(args.metric_window.as_secs())
            .unwrap_or(u32::MAX)
            .max(1),
        start_unix: args.start.unwrap_or(World::new(1.0).start_unix),
        ..World::new(1.0)
    };
    let report = simulate(policy, &trace, &world)?;

    let hours = report.seconds as f64 / 3600.0;
    let mut out = String::new();
    outln!(
        out,
        "trace {} ({}), {:.1} h, ×{} → mean {:.1} req/s, peak {:.1} req/s",
        args.trace.display(),
        trace.description,
        hours,
        args.scale,
        trace.rps.iter().sum::<f64>() / trace.rps.len() as f64,
        trace.peak()
    );
    outln!(
        out,
        "policy {}/{}: target {} req/s per replica, replicas {}..{}; world: {} req/s per Ready replica, {} regular nodes ({} CPU, {} memory; {} replicas of {}m/{} B each fit), pods Ready after {} s regular / {} s virtual, prices {}/{} per replica-second regular/burst",
        policy.tenant,
        policy.app,
        qps.target_per_replica,
        policy.replicas.min,
        policy.replicas.max,
        world.capacity_per_replica,
        world.regular_nodes,
        args.node_cpu,
        args.node_memory,
        regular_fit(
            &world,
            policy.placement.requests.cpu_millis,
            policy.placement.requests.memory_bytes
        ),
        policy.placement.requests.cpu_millis,
        policy.placement.requests.memory_bytes,
        world.regular_start_secs,
        world.virtual_start_secs,
        world.cost.regular_per_replica_second,
        world.cost.burst_per_replica_second,
    );
    outln!(out);
    out.push_str(&report.to_string());

    if let Some(path) = &args.svg {
        let title = format!(
            "{} ×{}: {}/{} vs HPA baselines",
            args.trace
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            args.scale,
            policy.tenant,
            policy.app
        );
        std::fs::write(path, svg::chart(&report, &title))
            .with_context(|| format!("writing {}", path.display()))?;
        outln!(out);
        outln!(out, "chart: {}", path.display());
    }
    super::emit(&out);
    Ok(())
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Replicas of the given requests the regular pool holds (per node, then summed).
fn regular_fit(world: &World, cpu_millis: u64, memory_bytes: u64) -> u64 {
    let n = world.regular_node;
    let by_cpu = n.cpu_millis.checked_div(cpu_millis).unwrap_or(n.pods);
    let by_mem = n.memory_bytes.checked_div(memory_bytes).unwrap_or(n.pods);
    by_cpu.min(by_mem).min(n.pods) * u64::from(world.regular_nodes)
}
