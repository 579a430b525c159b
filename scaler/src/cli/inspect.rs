//! `spillway status` and `spillway explain`: read a running Spillway's status API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spillway_scaler::conditions::{Condition, ConditionStatus, ConditionType};
use spillway_scaler::http::status::{DecisionView, StatusReport, WorkloadStatus};
use spillway_scaler::serve::replicas::Placed;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Base URL of Spillway's HTTP port.
    #[arg(long, default_value = "http://127.0.0.1:9100", env = "SPILLWAY_URL")]
    pub url: String,
    #[command(flatten)]
    pub auth: TokenArgs,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The workload, as TENANT/APP.
    pub workload: String,
    #[arg(long, default_value = "http://127.0.0.1:9100", env = "SPILLWAY_URL")]
    pub url: String,
    #[command(flatten)]
    pub auth: TokenArgs,
}

/// Who the caller is: a bearer token read from a file (a token on the command line
/// would show in `ps` and in shell history), or a client certificate for an HTTP port
/// served over mTLS (`httpTls` with `clientCaFile`).
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// A file holding a reader's (or an admin's) bearer token, for a Spillway whose
    /// status API is not open.
    #[arg(long, env = "SPILLWAY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle that issued the HTTP port's certificate (for an `https://` URL).
    #[arg(long, env = "SPILLWAY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) whose CN or SAN names a reader or an admin.
    #[arg(long, env = "SPILLWAY_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, env = "SPILLWAY_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
}

fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// rustls with the process's one provider, trusting `--ca-file` (else nothing: a
/// status API over TLS is the platform's own CA, not the web's) and presenting the
/// client certificate when given.
fn tls_config(auth: &TokenArgs) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &auth.ca_file {
        for cert in CertificateDer::pem_slice_iter(&read_pem(path)?) {
            let cert =
                cert.with_context(|| format!("{}: not a PEM certificate", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("{}: not a CA certificate", path.display()))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = match (&auth.cert_file, &auth.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read_pem(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: not a PEM certificate", cert.display()))?;
            let key_der = PrivateKeyDer::from_pem_slice(&read_pem(key)?)
                .with_context(|| format!("{}: not a PEM private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .with_context(|| format!("{} with {}", cert.display(), key.display()))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn client(auth: &TokenArgs) -> anyhow::Result<reqwest::Client> {
    spillway_scaler::serve::install_crypto_provider();
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
    let builder = if auth.ca_file.is_some() || auth.cert_file.is_some() {
        builder.tls_backend_preconfigured(tls_config(auth)?)
    } else {
        builder
    };
    Ok(builder.build()?)
}

/// GETs `url` with the token, if any. A refusal (401, 403) or a missing workload
/// (404) is printed as the server wrote it and ends the command with a failure.
async fn get(url: &str, auth: &TokenArgs) -> anyhow::Result<Result<reqwest::Response, ExitCode>> {
    let mut request = client(auth)?.get(url);
    if let Some(path) = &auth.token_file {
        let token = spillway_scaler::access::tokens::read_token_file(path)?;
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    let status = response.status();
    if matches!(
        status,
        reqwest::StatusCode::UNAUTHORIZED
            | reqwest::StatusCode::FORBIDDEN
            | reqwest::StatusCode::NOT_FOUND
    ) {
        let text = response.text().await.unwrap_or_default();
        eprintln!("{url}: {status}: {}", text.trim());
        if status == reqwest::StatusCode::UNAUTHORIZED
            && auth.token_file.is_none()
            && auth.cert_file.is_none()
        {
            eprintln!(
                "  pass a reader's token with --token-file FILE (or SPILLWAY_TOKEN_FILE), or a \
                 client certificate with --cert-file and --key-file"
            );
        }
        return Ok(Err(ExitCode::FAILURE));
    }
    Ok(Ok(response.error_for_status()?))
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/api/v1/status", args.url.trim_end_matches('/'));
    let response = match get(&url, &args.auth).await? {
        Ok(response) => response,
        Err(code) => return Ok(code),
    };
    let report: StatusReport = response
        .json()
        .await
        .with_context(|| format!("reading {url}"))?;
    let mut out = render_status(&report.workloads);
    outln!(out);
    outln!(
        out,
        "SCRAPE TARGET                                   UP   LAST ERROR"
    );
    for target in &report.targets {
        outln!(
            out,
            "{:<47} {:<4} {}",
            target.url,
            if target.up { "yes" } else { "NO" },
            target.last_error.as_deref().unwrap_or("-")
        );
    }
    if !report.shards.is_empty() {
        outln!(out);
        outln!(
            out,
            "COLLECTOR SHARD                                 COUNTED TARGETS UP/OWNED  LAST ERROR"
        );
        for (index, shard) in report.shards.iter().enumerate() {
            let counted = match (shard.up, shard.warming) {
                (true, _) => "yes",
                (false, true) => "WARMING",
                (false, false) => "LOST",
            };
            outln!(
                out,
                "{:<47} {:<7} {:>5}/{:<12} {}",
                format!("{index}: {}", shard.url),
                counted,
                shard.targets_up,
                shard.targets_owned,
                shard.last_error.as_deref().unwrap_or("-")
            );
        }
        if report.shards.iter().any(|s| !s.up) {
            outln!(
                out,
                "  a shard is not counted: the workloads it fed are lower bounds and do not scale down"
            );
        }
    }
    if !report.policy_errors.is_empty() {
        outln!(out);
        outln!(
            out,
            "POLICY PROBLEMS (the last good version of each file keeps serving)"
        );
        for problem in &report.policy_errors {
            outln!(out, "  {problem}");
        }
    }
    super::emit(&out);
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
    let response = match get(&url, &args.auth).await? {
        Ok(response) => response,
        Err(code) => return Ok(code),
    };
    let workload: WorkloadStatus = response.json().await?;
    super::emit(&render_explain(&workload));
    Ok(ExitCode::SUCCESS)
}

/// The workload table, then every condition that needs a person's attention.
fn render_status(workloads: &[WorkloadStatus]) -> String {
    let mut out = format!(
        "{:<24} {:>7} {:>7} {:>5}  {:<18} {:<6}  {:<18} {:>8}\n",
        "WORKLOAD", "DESIRED", "CURRENT", "READY", "PLACEMENT", "ACTIVE", "RULE", "QPS"
    );
    let mut attention = Vec::new();
    for workload in workloads {
        let name = format!("{}/{}", workload.tenant, workload.app);
        match &workload.latest {
            Some(d) => out.push_str(&format!(
                "{name:<24} {:>7} {:>7} {:>5}  {:<18} {:<6}  {:<18} {:>8}\n",
                d.desired,
                d.current,
                d.ready,
                d.placement.as_ref().map_or("-".to_owned(), split),
                if d.active { "yes" } else { "no" },
                d.rule,
                d.qps.map_or("-".into(), |q| format!("{q:.1}"))
            )),
            None => out.push_str(&format!(
                "{name:<24} {:>7} {:>7} {:>5}  {:<18} {:<6}  {:<18} {:>8}\n",
                "-", "-", "-", "-", "-", "no data yet", "-"
            )),
        }
        for c in workload.conditions.iter().filter(|c| needs_attention(c)) {
            attention.push(format!("  {name}  {}", condition_line(c)));
        }
    }
    if !attention.is_empty() {
        out.push_str("\nCONDITIONS NEEDING ATTENTION\n");
        for line in attention {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Conditions in their unhealthy state.
fn needs_attention(c: &Condition) -> bool {
    match c.kind {
        ConditionType::DataFresh | ConditionType::PolicyValid => c.status == ConditionStatus::False,
        ConditionType::ScalingLimited
        | ConditionType::BurstShortfall
        | ConditionType::WarmingUp => c.status == ConditionStatus::True,
        ConditionType::Active => false,
        // Unknown: the HPA was not found or not readable (RBAC, API errors).
        ConditionType::HpaPassThrough => c.status != ConditionStatus::True,
    }
}

fn split(p: &Placed) -> String {
    if p.shortfall > 0 {
        format!("{}r + {}b, {} short", p.regular, p.burst, p.shortfall)
    } else {
        format!("{}r + {}b", p.regular, p.burst)
    }
}

fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn condition_line(c: &Condition) -> String {
    // A healthy condition confirmed every second is not news; a problem seen again is.
    let repeat = if c.count > 1 && needs_attention(c) {
        format!(", seen {} times", c.count)
    } else {
        String::new()
    };
    format!(
        "{:?}={:?} ({}, since {}, last checked {}{repeat}): {}",
        c.kind,
        c.status,
        c.reason,
        clock(c.last_transition_ms),
        clock(c.last_probe_ms),
        c.message
    )
}

/// A decision's rule as words.
fn rule_words(rule: &str) -> &'static str {
    match rule {
        "scaled_up" => "scaled up: load above the band",
        "scaled_down" => "scaled down: every signal below the band",
        "held_in_band" => "held: load inside the hysteresis band",
        "held_missing_data" => "held: a signal has no fresh or only partial data",
        "stabilized" => "held by the stabilization window",
        "rate_limited" => "limited by the scaling rate limit",
        "panic" => "panic mode: a burst of load, no scale-down",
        "schedule" => "raised by a schedule",
        "min_replicas" => "raised to the minimum",
        "max_replicas" => "capped at the maximum",
        "scaled_to_zero" => "scaled to zero: nothing active",
        "restart_warmup" => "held: not enough data since start",
        "hpa_tolerance" => "adjusted past the HPA's tolerance",
        _ => "decided",
    }
}

fn render_explain(workload: &WorkloadStatus) -> String {
    let mut out = format!("{}/{}\n", workload.tenant, workload.app);
    match &workload.latest {
        Some(d) => {
            let placed = d.placement.as_ref().map_or(String::new(), |p| {
                format!(
                    " ({} on regular nodes + {} burst{})",
                    p.regular,
                    p.burst,
                    if p.shortfall > 0 {
                        format!(", {} with no place", p.shortfall)
                    } else {
                        String::new()
                    }
                )
            });
            out.push_str(&format!(
                "  now: {} replicas{placed}, {}; running {} ({} ready)\n",
                d.desired,
                if d.active { "active" } else { "idle" },
                d.current,
                d.ready
            ));
            out.push_str(&format!(
                "  why: {} ({})\n       {}\n",
                rule_words(&d.rule),
                d.rule,
                d.reason
            ));
            for p in &d.proposals {
                let dominant = if d.dominant.as_deref() == Some(p.signal.as_str()) {
                    "  (dominant)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "  signal {}: {:.3} asks for {} replicas at {:.3} per replica{dominant}\n",
                    p.signal, p.value, p.replicas, p.target
                ));
            }
            if !d.missing.is_empty() {
                out.push_str(&format!("  no fresh data: {}\n", d.missing.join(", ")));
            }
            if !d.partial.is_empty() {
                out.push_str(&format!(
                    "  only partly known (a collector shard is lost; scale-down held): {}\n",
                    d.partial.join(", ")
                ));
            }
            if let Some(b) = &d.band {
                out.push_str(&format!(
                    "  band: load is {:.1} replicas' worth; scale up above {:.1}, down below {:.1}\n",
                    b.load_replicas, b.high_replicas, b.low_replicas
                ));
            }
            if let Some(p) = &d.placement {
                out.push_str(&format!(
                    "  placement: {}; costs {:.4}/h\n",
                    p.reason, p.cost_per_hour
                ));
            }
            if d.served != d.desired || d.expected != d.served {
                out.push_str(&format!(
                    "  served to KEDA: {} (the HPA runs {} against status.replicas {})\n",
                    d.served, d.expected, d.status_replicas
                ));
            }
        }
        None => out.push_str("  no decision yet: no signal data has been collected\n"),
    }
    if let Some(hpa) = &workload.hpa {
        out.push_str(&format!(
            "  hpa: {} ({}..{} replicas, {}), {}\n",
            hpa.name,
            hpa.min_replicas,
            hpa.max_replicas,
            hpa.tolerance,
            if hpa.passes_through() {
                "a pass-through"
            } else {
                "NOT a pass-through (see HpaPassThrough)"
            }
        ));
    }
    if !workload.conditions.is_empty() {
        out.push_str("  conditions:\n");
        for c in &workload.conditions {
            out.push_str(&format!("    {}\n", condition_line(c)));
        }
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
    let to = d.placement.as_ref().map_or(d.desired.to_string(), |p| {
        format!("{} ({})", d.desired, split(p))
    });
    format!(
        "{}  {} → {}  {}: {}",
        clock(d.at_ms),
        d.current,
        to,
        rule_words(&d.rule),
        d.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(kind: ConditionType, status: ConditionStatus, count: u64) -> Condition {
        Condition {
            kind,
            status,
            reason: "R".into(),
            message: "m".into(),
            last_transition_ms: 0,
            last_probe_ms: 1_000,
            count,
        }
    }

    fn workload(conditions: Vec<Condition>) -> WorkloadStatus {
        WorkloadStatus {
            tenant: "shop".into(),
            app: "cart".into(),
            latest: Some(DecisionView {
                desired: 12,
                served: 12,
                expected: 12,
                current: 9,
                status_replicas: 9,
                ready: 8,
                active: true,
                rule: "scaled_up".into(),
                reason: "qps 1800/s needs 12".into(),
                at_ms: 0,
                qps: Some(1800.0),
                cpu_cores: None,
                memory_bytes: None,
                dominant: Some("qps".into()),
                proposals: Vec::new(),
                missing: Vec::new(),
                partial: Vec::new(),
                band: None,
                placement: Some(Placed {
                    pods: 12,
                    ready: 8,
                    regular: 9,
                    burst: 3,
                    shortfall: 0,
                    cost_per_hour: 0.4,
                    reason: "regular nodes full at 9 replicas; 3 burst to virtual nodes".into(),
                }),
            }),
            recent: Vec::new(),
            conditions,
            stream_subscribers: 0,
            hpa: None,
        }
    }

    #[test]
    fn status_lists_only_conditions_in_trouble_with_their_repeat_count() {
        let out = render_status(&[workload(vec![
            condition(ConditionType::Active, ConditionStatus::True, 40),
            condition(ConditionType::PolicyValid, ConditionStatus::False, 7),
            condition(ConditionType::DataFresh, ConditionStatus::True, 40),
        ])]);
        assert!(out.contains("9r + 3b"), "{out}");
        assert!(out.contains("shop/cart  PolicyValid=False"), "{out}");
        assert!(out.contains("seen 7 times"), "{out}");
        assert!(
            !out.contains("Active="),
            "healthy conditions stay quiet: {out}"
        );
    }

    #[test]
    fn status_names_an_hpa_that_is_not_a_pass_through() {
        let mut hpa = condition(ConditionType::HpaPassThrough, ConditionStatus::False, 3);
        hpa.reason = "ScaleDownStabilization".into();
        hpa.message =
            "HPA keda-hpa-cart changes Spillway's count: scale-down stabilization window 300s"
                .into();
        let out = render_status(&[workload(vec![hpa])]);
        assert!(
            out.contains("shop/cart  HpaPassThrough=False (ScaleDownStabilization"),
            "{out}"
        );
        assert!(out.contains("keda-hpa-cart"), "{out}");
        let passing = condition(ConditionType::HpaPassThrough, ConditionStatus::True, 3);
        let out = render_status(&[workload(vec![passing])]);
        assert!(!out.contains("HpaPassThrough"), "{out}");
        let unread = condition(ConditionType::HpaPassThrough, ConditionStatus::Unknown, 1);
        let out = render_status(&[workload(vec![unread])]);
        assert!(out.contains("HpaPassThrough=Unknown"), "{out}");
    }

    #[test]
    fn explain_shows_the_hpa_as_read() {
        use spillway_scaler::cluster::hpa::{Finding, FindingReason, HpaView, Tolerances};
        let mut w = workload(Vec::new());
        w.hpa = Some(HpaView {
            name: "keda-hpa-cart".into(),
            tolerance: Tolerances {
                up: 0.0,
                down: 0.1,
                up_from_hpa: true,
                down_from_hpa: false,
            },
            min_replicas: 1,
            max_replicas: 100,
            findings: vec![Finding {
                reason: FindingReason::ValueTarget,
                message: "Value".into(),
            }],
        });
        let out = render_explain(&w);
        assert!(
            out.contains(
                "hpa: keda-hpa-cart (1..100 replicas, tolerance up 0%, down 10% (cluster default)), NOT a pass-through"
            ),
            "{out}"
        );
    }

    #[test]
    fn explain_says_the_split_and_the_rule_in_words() {
        let out = render_explain(&workload(vec![condition(
            ConditionType::Active,
            ConditionStatus::True,
            40,
        )]));
        assert!(
            out.contains(
                "now: 12 replicas (9 on regular nodes + 3 burst), active; running 9 (8 ready)"
            ),
            "{out}"
        );
        assert!(out.contains("why: scaled up: load above the band"), "{out}");
        assert!(!out.contains("seen 40 times"), "{out}");
    }
}
