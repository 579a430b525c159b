//! `spillway policy diff TENANT[/APP]`: the live policy's decision next to the tenant's
//! candidate's, per workload, as a running Spillway makes them every tick; with
//! `--replay`, both replayed over each workload's recent request rate (the PromQL
//! source's history when Spillway has one, else the store's window) through the engine `spillway simulate` uses, as a table of
//! under/over-provisioning, actions and cost.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use spillway_scaler::http::status::{StatusReport, WorkloadStatus};

use super::inspect::TokenArgs;

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// TENANT or TENANT/APP.
    pub workload: String,
    #[arg(long, default_value = "http://127.0.0.1:9100", env = "SPILLWAY_URL")]
    pub url: String,
    #[command(flatten)]
    pub auth: TokenArgs,
    /// Replay both policies over each workload's recent request rate instead.
    #[arg(long)]
    pub replay: bool,
    /// How far back to replay, e.g. `6h` (at most a day): read from the PromQL source
    /// when Spillway has one (1 h unless given), else the last part of the store's window.
    #[arg(long, requires = "replay", value_parser = super::parse_duration)]
    pub window: Option<std::time::Duration>,
}

pub async fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let (tenant, app) = match args.workload.split_once('/') {
        Some((tenant, app)) => (tenant.to_owned(), Some(app.to_owned())),
        None => (args.workload.clone(), None),
    };
    let url = format!("{}/api/v1/status", args.url.trim_end_matches('/'));
    let response = match super::inspect::get(&url, &args.auth).await? {
        Ok(response) => response,
        Err(code) => return Ok(code),
    };
    let report: StatusReport = response
        .json()
        .await
        .with_context(|| format!("reading {url}"))?;
    let selected: Vec<&WorkloadStatus> = report
        .workloads
        .iter()
        .filter(|w| w.tenant == tenant && app.as_ref().is_none_or(|a| *a == w.app))
        .collect();
    if selected.is_empty() {
        eprintln!("no workload {} in Spillway's policies", args.workload);
        return Ok(ExitCode::FAILURE);
    }
    if !args.replay {
        super::emit(&render(&selected));
        return Ok(ExitCode::SUCCESS);
    }
    let base = args.url.trim_end_matches('/');
    let mut out = String::new();
    let mut replayed = 0;
    for w in selected {
        if w.latest.as_ref().and_then(|d| d.shadow.as_ref()).is_none() {
            outln!(
                out,
                "{}/{}: no candidate policy; nothing to replay",
                w.tenant,
                w.app
            );
            continue;
        }
        let mut url = format!("{base}/api/v1/workloads/{}/{}/preview", w.tenant, w.app);
        if let Some(window) = args.window {
            url.push_str(&format!("?window={}s", window.as_secs().max(1)));
        }
        let response = match super::inspect::get(&url, &args.auth).await? {
            Ok(response) => response,
            Err(code) => return Ok(code),
        };
        let preview: spillway_scaler::preview::Preview = response
            .json()
            .await
            .with_context(|| format!("reading {url}"))?;
        out.push_str(&preview.table());
        replayed += 1;
    }
    super::emit(&out);
    Ok(if replayed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn render(workloads: &[&WorkloadStatus]) -> String {
    let mut out = format!(
        "{:<24} {:>5} {:>9} {:>5}  {:<18} {:<18} {:<9}\n",
        "WORKLOAD", "LIVE", "CANDIDATE", "DIFF", "LIVE RULE", "CANDIDATE RULE", "SERVED"
    );
    let mut without = Vec::new();
    for w in workloads {
        let name = format!("{}/{}", w.tenant, w.app);
        let Some(shadow) = w.latest.as_ref().and_then(|d| d.shadow.as_ref()) else {
            without.push(name);
            continue;
        };
        outln!(
            out,
            "{name:<24} {:>5} {:>9} {:>+5}  {:<18} {:<18} {:<9}",
            shadow.live_desired,
            shadow.candidate_desired,
            shadow.difference,
            shadow.live_rule,
            shadow.candidate_rule,
            shadow.acting
        );
        if let Some(why) = &shadow.rolled_back {
            outln!(out, "  ROLLED BACK to the live spec: {why}");
        }
        if shadow.differs() {
            outln!(out, "  candidate: {}", shadow.candidate_reason);
        }
    }
    if !without.is_empty() {
        outln!(
            out,
            "no candidate (the tenant's file has no `candidate:` for them): {}",
            without.join(", ")
        );
    }
    out
}
