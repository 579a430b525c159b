//! `spillway status` and `spillway explain`: read a running Spillway's status API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use spillway_scaler::status::{DecisionView, StatusReport, WorkloadStatus};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Base URL of Spillway's HTTP port.
    #[arg(long, default_value = "http://127.0.0.1:9100", env = "SPILLWAY_URL")]
    pub url: String,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The workload, as TENANT/APP.
    pub workload: String,
    #[arg(long, default_value = "http://127.0.0.1:9100", env = "SPILLWAY_URL")]
    pub url: String,
}

fn client() -> anyhow::Result<reqwest::Client> {
    spillway_scaler::app::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/api/v1/status", args.url.trim_end_matches('/'));
    let report: StatusReport = client()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("reading {url}"))?;
    println!("WORKLOAD                 DESIRED  ACTIVE  RULE                  QPS");
    for workload in &report.workloads {
        let name = format!("{}/{}", workload.tenant, workload.app);
        match &workload.latest {
            Some(d) => println!(
                "{name:<24} {:>7}  {:<6}  {:<20} {}",
                d.desired,
                if d.active { "yes" } else { "no" },
                d.rule,
                d.qps.map_or("-".into(), |q| format!("{q:.1}"))
            ),
            None => println!("{name:<24} {:>7}  {:<6}  {:<20} -", "-", "-", "no data yet"),
        }
    }
    println!();
    println!("SCRAPE TARGET                                   UP   LAST ERROR");
    for target in &report.targets {
        println!(
            "{:<47} {:<4} {}",
            target.url,
            if target.up { "yes" } else { "NO" },
            target.last_error.as_deref().unwrap_or("-")
        );
    }
    if !report.policy_errors.is_empty() {
        println!();
        println!("POLICY PROBLEMS (the last good version of each file keeps serving)");
        for problem in &report.policy_errors {
            println!("  {problem}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let Some((tenant, app)) = args.workload.split_once('/') else {
        anyhow::bail!("write the workload as TENANT/APP, e.g. acme/checkout");
    };
    let url = format!(
        "{}/api/v1/workloads/{tenant}/{app}",
        args.url.trim_end_matches('/')
    );
    let response = client()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        eprintln!("{}", response.text().await.unwrap_or_default().trim());
        return Ok(ExitCode::FAILURE);
    }
    let workload: WorkloadStatus = response.error_for_status()?.json().await?;
    print!("{}", render_explain(&workload));
    Ok(ExitCode::SUCCESS)
}

fn render_explain(workload: &WorkloadStatus) -> String {
    let mut out = format!("{}/{}\n", workload.tenant, workload.app);
    match &workload.latest {
        Some(d) => out.push_str(&format!(
            "  now: {} replicas ({}), because: {}\n",
            d.desired,
            if d.active { "active" } else { "idle" },
            d.reason
        )),
        None => out.push_str("  no decision yet: no signal data has been collected\n"),
    }
    out.push_str(&format!(
        "  StreamIsActive subscribers: {}\n  recent decisions (oldest first):\n",
        workload.stream_subscribers
    ));
    for d in &workload.recent {
        out.push_str(&format!("    {}\n", line(d)));
    }
    out
}

fn line(d: &DecisionView) -> String {
    let time = chrono::DateTime::from_timestamp_millis(d.at_ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    format!(
        "{time}  {} → {}  [{}] {}",
        d.current, d.desired, d.rule, d.reason
    )
}
