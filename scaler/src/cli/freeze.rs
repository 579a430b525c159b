//! `spillway freeze` and `spillway unfreeze`: the emergency brake on a running
//! Spillway's status API (an admin's token). When that API is unreachable, annotate the
//! ScaledObject instead (see `spillway freeze --help`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use spillway_scaler::freeze::api::FreezeAnswer;
use spillway_scaler::freeze::{FreezeRequest, Scope, annotation};

use super::inspect::TokenArgs;

#[derive(Args, Debug)]
#[command(after_help = concat!(
    "Without Spillway's API (or in HA mode), freeze one workload on its ScaledObject:\n",
    "  kubectl annotate scaledobject NAME spillway.io/freeze=\"REASON\" \\\n",
    "    [spillway.io/freeze-floor=N] [spillway.io/freeze-until=2026-11-12T02:00:00Z]\n",
    "and remove the annotation (kubectl annotate scaledobject NAME spillway.io/freeze-) to lift it."
))]
pub struct FreezeArgs {
    /// What to freeze: TENANT/APP, TENANT, or `*` for everything.
    pub scope: String,
    /// Why (shown in status, explain, the condition and the audit trail).
    #[arg(long)]
    pub reason: String,
    /// How long it holds, e.g. 30m or 4h (at most 168h); it stops holding after that.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Hold at least this many replicas (default: hold what runs).
    #[arg(long)]
    pub floor: Option<u32>,
    #[arg(long, default_value = "http://127.0.0.1:9100", env = "SPILLWAY_URL")]
    pub url: String,
    #[command(flatten)]
    pub auth: TokenArgs,
}

#[derive(Args, Debug)]
pub struct UnfreezeArgs {
    /// The scope the freeze was set on: TENANT/APP, TENANT, or `*`.
    pub scope: String,
    #[arg(long, default_value = "http://127.0.0.1:9100", env = "SPILLWAY_URL")]
    pub url: String,
    #[command(flatten)]
    pub auth: TokenArgs,
}

fn request(
    method: reqwest::Method,
    url: &str,
    auth: &TokenArgs,
) -> anyhow::Result<reqwest::RequestBuilder> {
    // The same client as `status` and `explain`: the token, and TLS options if given.
    let mut request = super::inspect::client(auth)?.request(method, url);
    if let Some(path) = &auth.token_file {
        request = request.bearer_auth(spillway_scaler::access::tokens::read_token_file(path)?);
    }
    Ok(request)
}

/// The answer, or the server's refusal printed with a hint and a failing exit code.
async fn answer(
    url: &str,
    response: reqwest::Response,
) -> anyhow::Result<Result<FreezeAnswer, ExitCode>> {
    let status = response.status();
    if status.is_success() {
        return Ok(Ok(response
            .json()
            .await
            .with_context(|| format!("reading {url}"))?));
    }
    let text = response.text().await.unwrap_or_default();
    eprintln!("{url}: {status}: {}", text.trim());
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        eprintln!("  freezes need an admin's token: --token-file FILE (or SPILLWAY_TOKEN_FILE)");
    }
    if status.is_server_error() || status == reqwest::StatusCode::CONFLICT {
        eprintln!(
            "  or freeze on the ScaledObject: kubectl annotate scaledobject NAME {}=\"REASON\"",
            annotation::FREEZE
        );
    }
    Ok(Err(ExitCode::FAILURE))
}

fn unreachable_hint(error: anyhow::Error) -> anyhow::Error {
    error.context(format!(
        "Spillway's API is unreachable; freeze on the ScaledObject instead: kubectl annotate scaledobject NAME {}=\"REASON\"",
        annotation::FREEZE
    ))
}

pub async fn freeze(args: FreezeArgs) -> anyhow::Result<ExitCode> {
    let scope: Scope = args.scope.parse().map_err(anyhow::Error::msg)?;
    let url = format!("{}/api/v1/freezes", args.url.trim_end_matches('/'));
    let body = FreezeRequest {
        scope,
        reason: args.reason,
        duration: args.duration,
        floor: args.floor,
    };
    let response = request(reqwest::Method::POST, &url, &args.auth)?
        .json(&body)
        .send()
        .await
        .map_err(|e| unreachable_hint(e.into()))?;
    let answer = match answer(&url, response).await? {
        Ok(answer) => answer,
        Err(code) => return Ok(code),
    };
    let mut out = String::new();
    outln!(out, "{}", answer.freeze.describe());
    outln!(
        out,
        "covers {} workload(s) now; takes effect at the next decision",
        answer.covers
    );
    if answer.covers == 0 {
        outln!(
            out,
            "  note: no workload Spillway decides is in `{}` (yet); check the spelling",
            answer.freeze.scope
        );
    }
    if !answer.durable {
        outln!(
            out,
            "  note: kept in memory only, so a restart of Spillway releases it (set freezeFile: in the serve config, or annotate the ScaledObject)"
        );
    }
    super::emit(&out);
    Ok(ExitCode::SUCCESS)
}

pub async fn unfreeze(args: UnfreezeArgs) -> anyhow::Result<ExitCode> {
    let scope: Scope = args.scope.parse().map_err(anyhow::Error::msg)?;
    let url = format!("{}/api/v1/freezes", args.url.trim_end_matches('/'));
    // A scope is letters, digits, `-_.`, one `/` or `*`: nothing to escape in a query.
    let target = format!("{url}?scope={scope}");
    let response = request(reqwest::Method::DELETE, &target, &args.auth)?
        .send()
        .await
        .map_err(|e| unreachable_hint(e.into()))?;
    let answer = match answer(&url, response).await? {
        Ok(answer) => answer,
        Err(code) => return Ok(code),
    };
    super::emit(&format!(
        "lifted: {}\n{} workload(s) scale again at the next decision\n",
        answer.freeze.describe(),
        answer.covers
    ));
    Ok(ExitCode::SUCCESS)
}
