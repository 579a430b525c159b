//! `spillway serve --config FILE`: the process's own configuration (listen addresses,
//! scrape targets, the policy directory). Tenants' policies live in their own files.

pub mod kubernetes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spillway_collector::budget::{Derived, MemoryBudget};
use spillway_collector::scrape::{QpsMapping, ScrapeConfig, Target};
use spillway_collector::store::StoreLimits;

use spillway_collector::Signal;
use spillway_collector::ingest_grpc::PushConfig;
use spillway_collector::promql::{PromqlConfig, PromqlQuery};
use spillway_collector::remote_write::{HaConfig, RemoteWriteConfig, WriteMapping};
use spillway_collector::resources::{ResourceMapping, WorkloadFrom};
use spillway_collector::shard::FanOutConfig;
use spillway_collector::timestamps::TimeBounds;

use crate::serve::CollectorInputs;

/// Largest config file read; a config is a few hundred lines at most.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    listen: RawListen,
    policies: PathBuf,
    #[serde(default, deserialize_with = "optional_duration")]
    policy_reload: Option<Duration>,
    #[serde(default)]
    scrape: RawScrape,
    #[serde(default)]
    qps: Option<RawMapping>,
    #[serde(default)]
    store: RawStore,
    /// One memory budget the tables' and in-flight limits derive from.
    #[serde(default)]
    memory: RawMemory,
    #[serde(default)]
    kubernetes: Option<crate::config::kubernetes::KubernetesSettings>,
    #[serde(default)]
    tls: Option<RawTls>,
    /// TLS (and with `clientCaFile`, client certificates as identities) on the HTTP
    /// port; absent: plaintext.
    #[serde(default)]
    http_tls: Option<RawTls>,
    /// Absent: no remote-write receiver (inputs are opt-in).
    #[serde(default)]
    remote_write: Option<RawRemoteWrite>,
    /// Absent: no gRPC push service.
    #[serde(default)]
    push: Option<RawPush>,
    #[serde(default)]
    promql: Option<RawPromql>,
    #[serde(default)]
    resources: Option<RawResources>,
    #[serde(default)]
    collectors: Option<RawCollectors>,
    #[serde(default)]
    ha: Option<crate::ha::HaSettings>,
    /// Where API freezes are kept across restarts; absent: in memory only.
    #[serde(default)]
    freeze_file: Option<PathBuf>,
    /// Required: who may call each input, or which inputs are open on purpose.
    #[serde(default)]
    access: Option<crate::access::settings::RawAccess>,
}

/// Sharded collectors: the scaler polls these instead of scraping `scrape.targets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCollectors {
    shards: Vec<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    lost_after: Option<Duration>,
    /// The bearer token (role `shard` on the collectors) sent with every poll.
    #[serde(default)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRemoteWrite {
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    max_series: Option<usize>,
    #[serde(default, deserialize_with = "optional_duration")]
    body_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    max_gap: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    max_past: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    max_future: Option<Duration>,
    #[serde(default)]
    ha: Option<RawHa>,
}

/// HA Prometheus pairs on remote-write.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHa {
    #[serde(default)]
    cluster_label: Option<String>,
    /// `[]` turns deduplication off.
    #[serde(default)]
    replica_labels: Option<Vec<String>>,
    #[serde(default, deserialize_with = "optional_duration")]
    failover_timeout: Option<Duration>,
    #[serde(default)]
    max_clusters: Option<usize>,
}

/// Spillway's gRPC push on the gRPC port.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPush {
    #[serde(default, deserialize_with = "optional_duration")]
    max_past: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    max_future: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "optional_duration")]
    reload_interval: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPromql {
    url: String,
    #[serde(default, deserialize_with = "optional_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    timeout: Option<Duration>,
    queries: Vec<RawPromqlQuery>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPromqlQuery {
    signal: String,
    expr: String,
    #[serde(default)]
    tenant_label: Option<String>,
    #[serde(default)]
    app_label: Option<String>,
}

/// cAdvisor series mapping: `appLabel`, or `podLabel` (+ `stripSegments`) for the app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawResources {
    #[serde(default)]
    cpu_metric: Option<String>,
    #[serde(default)]
    memory_metric: Option<String>,
    #[serde(default)]
    container_label: Option<String>,
    #[serde(default)]
    tenant_label: Option<String>,
    #[serde(default)]
    app_label: Option<String>,
    #[serde(default)]
    pod_label: Option<String>,
    #[serde(default)]
    strip_segments: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawListen {
    grpc: SocketAddr,
    http: SocketAddr,
    /// HTTP connections open at once (default: from `memory.budget`).
    #[serde(default)]
    max_connections: Option<usize>,
    #[serde(default, deserialize_with = "optional_duration")]
    header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    idle_timeout: Option<Duration>,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            grpc: SocketAddr::from(([0, 0, 0, 0], 9090)),
            http: SocketAddr::from(([0, 0, 0, 0], 9100)),
            max_connections: None,
            header_timeout: None,
            idle_timeout: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScrape {
    #[serde(default, deserialize_with = "optional_duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    staleness: Option<Duration>,
    #[serde(default)]
    max_concurrency: Option<usize>,
    #[serde(default)]
    targets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMapping {
    metric: String,
    tenant_label: String,
    app_label: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMemory {
    /// A Kubernetes quantity: `512Mi`, `1Gi`.
    #[serde(default)]
    budget: Option<String>,
    /// Fraction (0, 1] of each table one tenant may fill.
    #[serde(default)]
    tenant_share: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStore {
    #[serde(default, deserialize_with = "optional_duration")]
    horizon: Option<Duration>,
    #[serde(default)]
    max_windows: Option<usize>,
}

fn memory_budget(raw: &RawMemory) -> Result<MemoryBudget, String> {
    let defaults = MemoryBudget::default();
    let bytes = match &raw.budget {
        Some(text) => {
            crate::policy::parse_memory_bytes(text).map_err(|e| format!("memory.budget: {e}"))?
        }
        None => defaults.bytes,
    };
    if bytes < 16 << 20 {
        return Err("memory.budget must be at least 16Mi".into());
    }
    let tenant_share = raw.tenant_share.unwrap_or(defaults.tenant_share);
    if !(tenant_share > 0.0 && tenant_share <= 1.0) {
        return Err(format!(
            "memory.tenantShare must be above 0 and at most 1, found {tenant_share}"
        ));
    }
    Ok(MemoryBudget {
        bytes,
        tenant_share,
    })
}

/// A tenant's quota of `total` at `share` (at least one).
fn per_tenant(total: usize, share: f64) -> usize {
    ((total as f64 * share).ceil() as usize).clamp(1, total.max(1))
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    crate::durations::deserialize(deserializer).map(Some)
}

/// The resolved configuration of `spillway serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub policies: PathBuf,
    /// API freezes kept across restarts (`freezeFile:`); `None`: in memory only.
    pub freeze_file: Option<PathBuf>,
    pub policy_reload: Duration,
    pub scrape: ScrapeConfig,
    pub targets: Vec<Target>,
    pub store: StoreLimits,
    pub inputs: CollectorInputs,
    /// The cluster side (replica counts, placement, PodMetrics); None: off.
    pub kubernetes: Option<crate::config::kubernetes::KubernetesSettings>,
    /// TLS on the gRPC port; plaintext when absent.
    pub tls: Option<TlsConfig>,
    /// TLS on the HTTP port; plaintext when absent.
    pub http_tls: Option<TlsConfig>,
    /// The memory budget the limits above were derived from.
    pub memory: MemoryBudget,
    pub http_limits: crate::listener::HttpLimits,
    /// Who may do what (`access:`).
    pub access: crate::access::AccessSettings,
}

const NO_ACCESS_SECTION: &str = "no `access:` section: without it every input would be open to \
anyone who can reach the ports. Name who may call what (access.identities, each with a role and, \
for writer and reader, its tenants), or open inputs on purpose for a demo or a loopback test, \
e.g. `access: { insecure: [keda, write, status, metrics, shard, control] }`";

/// The `tls:` section: PEM files (a mounted Secret) checked for changes every
/// `reload_every`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub files: crate::keda::tls::TlsFiles,
    pub reload_every: Duration,
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let read = |source| ConfigError::Read {
            path: name.clone(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(read)?;
        if metadata.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: name });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mut config = Self::parse(&name, &text)?;
        if let Some(dir) = path.parent() {
            let outgoing = config.inputs.collectors_token_file.as_mut();
            for file in config
                .access
                .token_files
                .iter_mut()
                .map(|(_, file)| file)
                .chain(outgoing)
            {
                if file.is_relative() {
                    *file = dir.join(&*file);
                }
            }
        }
        // Relative paths are relative to the config file, as people expect of a path
        // written in it; each path on its own (an absolute `policies` says nothing of
        // where the certificates are).
        if let Some(dir) = path.parent() {
            if config.policies.is_relative() {
                config.policies = dir.join(&config.policies);
            }
            if let Some(file) = config.freeze_file.as_mut().filter(|f| f.is_relative()) {
                *file = dir.join(&*file);
            }
            for tls in [config.tls.as_mut(), config.http_tls.as_mut()]
                .into_iter()
                .flatten()
            {
                for file in [&mut tls.files.cert, &mut tls.files.key]
                    .into_iter()
                    .chain(tls.files.client_ca.as_mut())
                {
                    if file.is_relative() {
                        *file = dir.join(&*file);
                    }
                }
            }
        }
        Ok(config)
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: name.to_owned(),
            message,
        };
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let memory = memory_budget(&raw.memory).map_err(invalid)?;
        let horizon_secs = raw
            .store
            .horizon
            .map_or(900, |h| h.as_secs().clamp(60, 86_400) as u32);
        let derived = memory.derive(horizon_secs);
        let defaults = ScrapeConfig::default();
        let resources = raw
            .resources
            .map(resource_mapping)
            .transpose()
            .map_err(invalid)?;
        let mapping = raw.qps.map_or_else(QpsMapping::default, |m| QpsMapping {
            metric: m.metric,
            tenant_label: m.tenant_label,
            app_label: m.app_label,
        });
        let scrape = ScrapeConfig {
            interval: raw.scrape.interval.unwrap_or(defaults.interval),
            timeout: raw.scrape.timeout.unwrap_or(defaults.timeout),
            staleness: raw.scrape.staleness.unwrap_or(defaults.staleness),
            max_concurrency: raw
                .scrape
                .max_concurrency
                .unwrap_or(derived.scrape_max_concurrency),
            max_body_bytes: derived.scrape_max_body_bytes,
            mapping,
            max_series_per_target: defaults.max_series_per_target,
            resources: resources.clone(),
        };
        if scrape.interval < Duration::from_millis(100) {
            return Err(invalid("scrape.interval must be at least 100ms".into()));
        }
        if scrape.timeout.is_zero() || scrape.timeout > scrape.interval {
            return Err(invalid(format!(
                "scrape.timeout must be > 0 and at most scrape.interval ({:?})",
                scrape.interval
            )));
        }
        let mut targets = Vec::with_capacity(raw.scrape.targets.len());
        for url in raw.scrape.targets {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(format!(
                    "scrape target '{url}' must be an http:// or https:// URL"
                )));
            }
            targets.push(Target::new(url));
        }
        let store = match raw.store.max_windows {
            Some(max_windows) => StoreLimits {
                horizon_secs,
                max_windows,
                max_windows_per_tenant: per_tenant(max_windows, memory.tenant_share),
            },
            None => memory.store(horizon_secs),
        };
        if let Some(k) = &raw.kubernetes {
            k.validate().map_err(invalid)?;
        }
        let tls = raw
            .tls
            .map(|tls| tls_config(tls, "tls"))
            .transpose()
            .map_err(invalid)?;
        let http_tls = raw
            .http_tls
            .map(|tls| tls_config(tls, "httpTls"))
            .transpose()
            .map_err(invalid)?;
        let collectors_token_file = raw.collectors.as_ref().and_then(|c| c.token_file.clone());
        let collectors = raw
            .collectors
            .map(collectors)
            .transpose()
            .map_err(invalid)?;
        let inputs = CollectorInputs {
            remote_write: raw
                .remote_write
                .map(|raw| remote_write(raw, resources, &scrape.mapping, &derived, memory))
                .transpose()
                .map_err(invalid)?,
            push: raw
                .push
                .map(|raw| push(raw, &derived))
                .transpose()
                .map_err(invalid)?,
            promql: raw
                .promql
                .map(|raw| promql(raw, scrape.staleness))
                .transpose()
                .map_err(invalid)?,
            collectors,
            collectors_token_file,
            ha: raw.ha,
        };
        // A sample the bounds accept must land inside every window's horizon: the store
        // takes a write further back than that for the clock having gone back.
        let horizon_ms = i64::from(store.horizon_secs) * 1000;
        for (section, bounds) in [
            (
                "remoteWrite",
                inputs.remote_write.as_ref().map(|r| r.bounds),
            ),
            ("push", inputs.push.as_ref().map(|p| p.bounds)),
        ] {
            if let Some(b) = bounds
                && b.max_past_ms.saturating_add(b.max_future_ms) >= horizon_ms
            {
                return Err(invalid(format!(
                    "{section}.maxPast + {section}.maxFuture must be below store.horizon ({}s)",
                    store.horizon_secs
                )));
            }
        }
        let access = raw
            .access
            .ok_or_else(|| invalid(NO_ACCESS_SECTION.into()))?
            .resolve()
            .map_err(invalid)?;
        Ok(Self {
            access,
            inputs,
            grpc: raw.listen.grpc,
            http: raw.listen.http,
            policies: raw.policies,
            freeze_file: raw.freeze_file,
            policy_reload: raw.policy_reload.unwrap_or(Duration::from_secs(5)),
            scrape,
            targets,
            store,
            kubernetes: raw.kubernetes,
            tls,
            http_tls,
            memory,
            http_limits: http_limits(&raw.listen, &derived)?,
        })
    }
}

fn tls_config(raw: RawTls, section: &str) -> Result<TlsConfig, String> {
    let reload_every = raw.reload_interval.unwrap_or(Duration::from_secs(10));
    if reload_every < Duration::from_millis(100) {
        return Err(format!("{section}.reloadInterval must be at least 100ms"));
    }
    Ok(TlsConfig {
        files: crate::keda::tls::TlsFiles {
            cert: raw.cert_file,
            key: raw.key_file,
            client_ca: raw.client_ca_file,
        },
        reload_every,
    })
}

fn http_limits(
    raw: &RawListen,
    derived: &Derived,
) -> Result<crate::listener::HttpLimits, ConfigError> {
    let defaults = crate::listener::HttpLimits::default();
    let limits = crate::listener::HttpLimits {
        max_connections: raw.max_connections.unwrap_or(derived.http_max_connections),
        header_timeout: raw.header_timeout.unwrap_or(defaults.header_timeout),
        idle_timeout: raw.idle_timeout.unwrap_or(defaults.idle_timeout),
        ..defaults
    };
    let invalid = |message: &str| ConfigError::Invalid {
        path: "listen".into(),
        message: message.into(),
    };
    if limits.max_connections == 0 {
        return Err(invalid("listen.maxConnections must be at least 1"));
    }
    if limits.header_timeout < Duration::from_millis(100)
        || limits.idle_timeout < Duration::from_secs(1)
    {
        return Err(invalid(
            "listen.headerTimeout must be at least 100ms and listen.idleTimeout at least 1s",
        ));
    }
    Ok(limits)
}

/// The inputs `spillway serve` has on with these settings.
pub fn serve_inputs(inputs: &CollectorInputs) -> Vec<crate::access::Input> {
    use crate::access::Input;
    let mut on = vec![Input::Keda, Input::Status, Input::Metrics];
    if inputs.remote_write.is_some() || inputs.push.is_some() {
        on.push(Input::Write);
    }
    on
}

impl ServeConfig {
    /// What `spillway serve` needs of the access rules with these inputs: an error for
    /// an input it has on that no identity could use (KEDA with neither client
    /// certificates nor a token, writes without a writer, shards without the scaler's
    /// token), else the review whose open inputs start-up names. `spillway collector`
    /// reads the same file and reviews its own inputs.
    pub fn serve_access(&self) -> Result<crate::access::Review, String> {
        let shard_open = self.access.policy.is_open(crate::access::Input::Shard);
        if self.inputs.collectors.is_some()
            && self.inputs.collectors_token_file.is_none()
            && !shard_open
        {
            return Err(
                "collectors.tokenFile: the collector shards only answer an identity with role \
                 shard; give the scaler its token file, or open the shard service on purpose \
                 with access.insecure: [shard]"
                    .into(),
            );
        }
        let mutual =
            |tls: &Option<TlsConfig>| tls.as_ref().is_some_and(|t| t.files.client_ca.is_some());
        let mtls = crate::access::Mtls {
            grpc: mutual(&self.tls),
            http: mutual(&self.http_tls),
        };
        let review = self.access.review(&serve_inputs(&self.inputs), mtls);
        if review.errors.is_empty() {
            Ok(review)
        } else {
            Err(review.errors.join("; "))
        }
    }
}

fn remote_write(
    raw: RawRemoteWrite,
    resources: Option<ResourceMapping>,
    qps: &QpsMapping,
    derived: &Derived,
    memory: MemoryBudget,
) -> Result<RemoteWriteConfig, String> {
    let defaults = RemoteWriteConfig::default();
    let max_body_bytes = raw
        .max_body_bytes
        .unwrap_or(derived.remote_write_max_body_bytes);
    let max_series = raw.max_series.unwrap_or(derived.remote_write_max_series);
    let max_decoded_bytes = derived
        .remote_write_max_decoded_bytes
        .max(2 * max_body_bytes);
    let max_in_flight_bytes = derived
        .remote_write_in_flight_bytes
        .max(max_body_bytes + 2 * max_decoded_bytes);
    Ok(RemoteWriteConfig {
        max_body_bytes,
        max_decoded_bytes,
        max_in_flight_bytes,
        body_timeout: raw.body_timeout.unwrap_or(defaults.body_timeout),
        max_series,
        max_series_per_tenant: per_tenant(max_series, memory.tenant_share),
        max_gap_ms: raw.max_gap.map_or(defaults.max_gap_ms, millis),
        mapping: WriteMapping {
            qps: qps.clone(),
            resources,
        },
        bounds: time_bounds("remoteWrite", raw.max_past, raw.max_future)?,
        ha: ha(raw.ha.unwrap_or_default())?,
        ..defaults
    })
}

fn push(raw: RawPush, derived: &Derived) -> Result<PushConfig, String> {
    Ok(PushConfig {
        bounds: time_bounds("push", raw.max_past, raw.max_future)?,
        max_message_bytes: derived.push_max_message_bytes,
        max_streams: derived.push_max_streams,
        ..PushConfig::default()
    })
}

fn time_bounds(
    section: &str,
    max_past: Option<Duration>,
    max_future: Option<Duration>,
) -> Result<TimeBounds, String> {
    let defaults = TimeBounds::default();
    let bounds = TimeBounds {
        max_past_ms: max_past.map_or(defaults.max_past_ms, millis),
        max_future_ms: max_future.map_or(defaults.max_future_ms, millis),
    };
    if bounds.max_past_ms < 1_000 {
        return Err(format!(
            "{section}.maxPast must be at least 1s: samples are always a little old when they arrive"
        ));
    }
    Ok(bounds)
}

fn ha(raw: RawHa) -> Result<HaConfig, String> {
    let defaults = HaConfig::default();
    let config = HaConfig {
        cluster_label: raw.cluster_label.unwrap_or(defaults.cluster_label),
        replica_labels: raw.replica_labels.unwrap_or(defaults.replica_labels),
        failover_timeout_ms: raw
            .failover_timeout
            .map_or(defaults.failover_timeout_ms, millis),
        max_clusters: raw.max_clusters.unwrap_or(defaults.max_clusters),
    };
    if config.cluster_label.is_empty() || config.replica_labels.iter().any(String::is_empty) {
        return Err("remoteWrite.ha: label names must not be empty".into());
    }
    if config.failover_timeout_ms < 1_000 {
        return Err("remoteWrite.ha.failoverTimeout must be at least 1s".into());
    }
    if config.max_clusters == 0 {
        return Err("remoteWrite.ha.maxClusters must be at least 1".into());
    }
    Ok(config)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn collectors(raw: RawCollectors) -> Result<FanOutConfig, String> {
    let defaults = FanOutConfig::default();
    if raw.shards.is_empty() {
        return Err("collectors.shards must list every shard's address, shard 0 first".into());
    }
    for url in &raw.shards {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "collectors.shards: '{url}' must be an http:// or https:// URL"
            ));
        }
    }
    let interval = raw.interval.unwrap_or(defaults.interval);
    let timeout = raw.timeout.unwrap_or(defaults.timeout.min(interval));
    let lost_after = raw
        .lost_after
        .unwrap_or(defaults.lost_after.max(3 * interval));
    if interval < Duration::from_millis(100) {
        return Err("collectors.interval must be at least 100ms".into());
    }
    if timeout.is_zero() || timeout > interval {
        return Err(format!(
            "collectors.timeout must be > 0 and at most collectors.interval ({interval:?})"
        ));
    }
    if lost_after < 2 * interval {
        return Err(format!(
            "collectors.lostAfter must be at least twice collectors.interval ({interval:?}): \
             one slow answer must not count as a lost shard"
        ));
    }
    Ok(FanOutConfig {
        shards: raw.shards,
        interval,
        timeout,
        lost_after,
    })
}

fn resource_mapping(raw: RawResources) -> Result<ResourceMapping, String> {
    let defaults = ResourceMapping::default();
    let tenant_label = raw.tenant_label.unwrap_or_else(|| "namespace".into());
    let workload = match (raw.app_label, raw.pod_label) {
        (Some(_), Some(_)) => {
            return Err("resources: set appLabel or podLabel, not both".into());
        }
        (Some(app_label), None) => WorkloadFrom::Labels {
            tenant_label,
            app_label,
        },
        (None, pod_label) => WorkloadFrom::PodName {
            tenant_label,
            pod_label: pod_label.unwrap_or_else(|| "pod".into()),
            strip_segments: raw.strip_segments.unwrap_or(2),
        },
    };
    Ok(ResourceMapping {
        cpu_metric: raw.cpu_metric.unwrap_or(defaults.cpu_metric),
        memory_metric: raw.memory_metric.unwrap_or(defaults.memory_metric),
        container_label: raw.container_label.unwrap_or(defaults.container_label),
        workload,
    })
}

/// `staleness`: contributions older than this are dropped, so a query interval as long
/// would make the PromQL values blink out between queries.
fn promql(raw: RawPromql, staleness: Duration) -> Result<PromqlConfig, String> {
    if !(raw.url.starts_with("http://") || raw.url.starts_with("https://")) {
        return Err(format!(
            "promql.url '{}' must be an http:// or https:// URL",
            raw.url
        ));
    }
    let interval = raw.interval.unwrap_or(Duration::from_secs(15));
    let timeout = raw.timeout.unwrap_or(interval.min(Duration::from_secs(10)));
    if interval < Duration::from_secs(1) || timeout.is_zero() || timeout > interval {
        return Err("promql.interval must be at least 1s and promql.timeout within it".into());
    }
    if interval >= staleness {
        return Err(format!(
            "promql.interval ({interval:?}) must be shorter than scrape.staleness ({staleness:?}), \
             which drops values older than it"
        ));
    }
    if raw.queries.is_empty() {
        return Err("promql.queries must name at least one expression".into());
    }
    let mut queries = Vec::with_capacity(raw.queries.len());
    for query in raw.queries {
        let signal = Signal::ALL
            .into_iter()
            .find(|signal| signal.as_str() == query.signal)
            .ok_or_else(|| {
                format!(
                    "promql query signal '{}' is not one of qps, cpu, memory",
                    query.signal
                )
            })?;
        queries.push(PromqlQuery {
            signal,
            expr: query.expr,
            tenant_label: query.tenant_label.unwrap_or_else(|| "tenant".into()),
            app_label: query.app_label.unwrap_or_else(|| "app".into()),
        });
    }
    Ok(PromqlConfig {
        url: raw.url,
        interval,
        timeout,
        queries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_config_gets_defaults() {
        let config = ServeConfig::parse(
            "c.yaml",
            "policies: ./policies\naccess: {insecure: [keda]}\n",
        )
        .unwrap();
        assert_eq!(config.grpc.port(), 9090);
        assert_eq!(config.scrape.interval, Duration::from_secs(5));
        assert_eq!(config.scrape.mapping.metric, "gateway_requests_total");
        assert!(
            config.inputs.remote_write.is_none() && config.inputs.push.is_none(),
            "remote-write and push are off unless configured"
        );
    }

    #[test]
    fn one_memory_budget_sets_every_limit_unless_one_is_set_itself() {
        let small = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nmemory: { budget: 128Mi, tenantShare: 0.5 }\nremoteWrite: {}\npush: {}\n",
        )
        .unwrap();
        let big = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nmemory: { budget: 2Gi }\nremoteWrite: {}\npush: {}\n",
        )
        .unwrap();
        assert_eq!(small.memory.bytes, 128 << 20);
        assert!(small.store.max_windows * 4 <= big.store.max_windows + 4);
        assert_eq!(
            small.store.max_windows_per_tenant,
            small.store.max_windows.div_ceil(2)
        );
        let (s, b) = (
            small.inputs.remote_write.as_ref().unwrap(),
            big.inputs.remote_write.as_ref().unwrap(),
        );
        assert!(s.max_series < b.max_series && s.max_in_flight_bytes < b.max_in_flight_bytes);
        assert!(s.max_in_flight_bytes >= s.max_body_bytes + 2 * s.max_decoded_bytes);
        assert!(small.http_limits.max_connections < big.http_limits.max_connections);
        assert!(small.scrape.max_body_bytes * small.scrape.max_concurrency <= (128 << 20) / 10);
        // An explicit limit wins; the tenant's share follows it.
        let set = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nstore: { maxWindows: 1000 }\nremoteWrite: { maxSeries: 400 }\nlisten: { grpc: '127.0.0.1:0', http: '127.0.0.1:0', maxConnections: 7 }\n",
        )
        .unwrap();
        assert_eq!(
            (set.store.max_windows, set.store.max_windows_per_tenant),
            (1000, 250)
        );
        let rw = set.inputs.remote_write.unwrap();
        assert_eq!((rw.max_series, rw.max_series_per_tenant), (400, 100));
        assert_eq!(set.http_limits.max_connections, 7);
        for (text, needle) in [
            ("memory: { budget: 1Mi }", "at least 16Mi"),
            ("memory: { budget: lots }", "memory.budget"),
            ("memory: { tenantShare: 0 }", "tenantShare"),
        ] {
            let error = ServeConfig::parse(
                "c.yaml",
                &format!("policies: p\n{text}\naccess: {{insecure: [keda]}}\n"),
            )
            .unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn pushed_inputs_are_turned_on_and_bounded_by_their_sections() {
        let config = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\n\
             remoteWrite:\n  maxPast: 2m\n  maxFuture: 10s\n  \
             ha: {clusterLabel: prometheus, replicaLabels: [prometheus_replica], failoverTimeout: 20s}\n\
             push: {maxFuture: 5s}\n",
        )
        .unwrap();
        let remote_write = config.inputs.remote_write.unwrap();
        assert_eq!(
            remote_write.bounds,
            TimeBounds {
                max_past_ms: 120_000,
                max_future_ms: 10_000
            }
        );
        assert_eq!(remote_write.ha.cluster_label, "prometheus");
        assert_eq!(remote_write.ha.replica_labels, ["prometheus_replica"]);
        assert_eq!(remote_write.ha.failover_timeout_ms, 20_000);
        let push = config.inputs.push.unwrap();
        assert_eq!(push.bounds.max_future_ms, 5_000);
        assert_eq!(push.bounds.max_past_ms, TimeBounds::default().max_past_ms);
        let on = ServeConfig::parse("c.yaml", "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nremoteWrite: {}\npush: {}\n").unwrap();
        assert!(on.inputs.remote_write.is_some() && on.inputs.push.is_some());
        for (text, needle) in [
            ("remoteWrite: {maxPast: 0s}", "maxPast"),
            ("push: {maxPast: 10ms}", "push.maxPast"),
            (
                "remoteWrite: {ha: {failoverTimeout: 100ms}}",
                "failoverTimeout",
            ),
            ("remoteWrite: {ha: {replicaLabels: ['']}}", "empty"),
            ("remoteWrite: {ha: {maxClusters: 0}}", "maxClusters"),
            (
                "remoteWrite: {maxPast: 14m, maxFuture: 1m}",
                "remoteWrite.maxPast + remoteWrite.maxFuture must be below store.horizon (900s)",
            ),
            (
                "store: {horizon: 2m}\npush: {}",
                "push.maxPast + push.maxFuture must be below store.horizon (120s)",
            ),
        ] {
            let error = ServeConfig::parse(
                "c.yaml",
                &format!(
                    "policies: p\naccess: {{insecure: [keda, write, status, metrics]}}\n{text}\n"
                ),
            )
            .unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let error = ServeConfig::parse("c.yaml", "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nscrape: {targets: [gw:9113]}\n")
            .unwrap_err();
        assert!(error.to_string().contains("must be an http"), "{error}");
        let error = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nscrape: {interval: 1s, timeout: 2s}\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
        let error = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nunknown: 1\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("c.yaml"), "{error}");
        let error =
            ServeConfig::parse("c.yaml", "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nscrape: {interval: fast}\n").unwrap_err();
        assert!(error.to_string().contains("not a duration"), "{error}");
        let error =
            ServeConfig::parse("c.yaml", "policies: p\naccess: {insecure: [keda, write, status, metrics]}\ntls: {certFile: a.crt}\n").unwrap_err();
        assert!(error.to_string().contains("keyFile"), "{error}");
    }

    #[test]
    fn collector_shards_are_configured_and_checked() {
        let config = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\ncollectors:\n  shards: [http://c-0:9091, http://c-1:9091]\n  interval: 2s\n",
        )
        .unwrap();
        let collectors = config.inputs.collectors.unwrap();
        assert_eq!(collectors.shards.len(), 2);
        assert_eq!(collectors.interval, Duration::from_secs(2));
        assert_eq!(collectors.timeout, Duration::from_millis(800));
        assert_eq!(collectors.lost_after, Duration::from_secs(6));
        for (text, needle) in [
            ("collectors: {shards: []}", "every shard"),
            ("collectors: {shards: [c-0:9091]}", "http://"),
            (
                "collectors: {shards: [http://c], interval: 1s, lostAfter: 1s}",
                "twice",
            ),
            (
                "collectors: {shards: [http://c], interval: 1s, timeout: 2s}",
                "timeout",
            ),
        ] {
            let error = ServeConfig::parse(
                "c.yaml",
                &format!(
                    "policies: p\naccess: {{insecure: [keda, write, status, metrics]}}\n{text}\n"
                ),
            )
            .unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn ha_mode_is_a_section_of_its_own() {
        let off = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\n",
        )
        .unwrap();
        assert_eq!(off.inputs.ha, None);
        let on = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nha: {}\n",
        )
        .unwrap();
        assert_eq!(on.inputs.ha, Some(crate::ha::HaSettings::default()));
        let error = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nha: {writes: all}\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("writes"), "{error}");
    }

    #[test]
    fn tls_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.yaml");
        std::fs::write(
            &path,
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\ntls:\n  certFile: tls/tls.crt\n  keyFile: /abs/tls.key\n  clientCaFile: ca.crt\n  reloadInterval: 2s\n",
        )
        .unwrap();
        let config = ServeConfig::load(&path).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.files.cert, dir.path().join("tls/tls.crt"));
        assert_eq!(tls.files.key, PathBuf::from("/abs/tls.key"));
        assert_eq!(tls.files.client_ca, Some(dir.path().join("ca.crt")));
        assert_eq!(tls.reload_every, Duration::from_secs(2));
        assert!(
            ServeConfig::parse(
                "c.yaml",
                "policies: p\naccess: {insecure: [keda, write, status, metrics]}\n"
            )
            .unwrap()
            .tls
            .is_none()
        );
    }

    #[test]
    fn certificate_paths_are_rebased_even_when_policies_is_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.yaml");
        std::fs::write(
            &path,
            "policies: /etc/spillway/policies\naccess: {insecure: [keda, write, status, metrics]}\ntls: {certFile: grpc.crt, keyFile: grpc.key}\nhttpTls: {certFile: http.crt, keyFile: /abs/http.key, clientCaFile: clients.crt}\n",
        )
        .unwrap();
        let config = ServeConfig::load(&path).unwrap();
        assert_eq!(config.policies, PathBuf::from("/etc/spillway/policies"));
        assert_eq!(config.tls.unwrap().files.cert, dir.path().join("grpc.crt"));
        let http = config.http_tls.unwrap();
        assert_eq!(http.files.cert, dir.path().join("http.crt"));
        assert_eq!(http.files.key, PathBuf::from("/abs/http.key"));
        assert_eq!(http.files.client_ca, Some(dir.path().join("clients.crt")));
        let error = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nhttpTls: {certFile: a, keyFile: b, reloadInterval: 1ms}\n",
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("httpTls.reloadInterval"),
            "{error}"
        );
    }

    #[test]
    fn a_client_certificate_on_the_http_port_counts_as_a_credential_for_its_inputs() {
        // A reader with no token: only a port that verifies client certificates lets
        // it prove who it is.
        let reader = "access:\n  insecure: [keda, metrics]\n  identities:\n    dashboards: {role: reader, tenants: [acme]}\n";
        let plain = ServeConfig::parse("c.yaml", &format!("policies: p\n{reader}")).unwrap();
        let review = plain.serve_access().unwrap();
        assert!(
            review.closed.iter().any(|c| c.contains("status API")),
            "{:?}",
            review.closed
        );
        let mtls = ServeConfig::parse(
            "c.yaml",
            &format!(
                "policies: p\n{reader}httpTls: {{certFile: a, keyFile: b, clientCaFile: c}}\n"
            ),
        )
        .unwrap();
        let review = mtls.serve_access().unwrap();
        assert!(review.closed.is_empty(), "{:?}", review.closed);
    }

    #[test]
    fn collector_inputs_are_configured_and_checked() {
        let config = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\n\
             remoteWrite: {maxSeries: 1000}\n\
             resources: {podLabel: pod, stripSegments: 1}\n\
             promql:\n  url: http://prometheus:9090\n  interval: 10s\n  queries:\n  \
             - {signal: qps, expr: 'sum by (tenant, app) (rate(x[1m]))'}\n",
        )
        .unwrap();
        let remote_write = config.inputs.remote_write.as_ref().unwrap();
        assert_eq!(remote_write.max_series, 1000);
        assert_eq!(remote_write.bounds, TimeBounds::default());
        assert_eq!(remote_write.ha, HaConfig::default());
        assert!(matches!(
            remote_write.mapping.resources,
            Some(ResourceMapping {
                workload: WorkloadFrom::PodName {
                    strip_segments: 1,
                    ..
                },
                ..
            })
        ));
        let promql = config.inputs.promql.unwrap();
        assert_eq!(promql.queries[0].signal, Signal::Qps);
        assert_eq!(promql.timeout, Duration::from_secs(10));

        let error = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\npromql: {url: http://p, queries: [{signal: rps, expr: x}]}\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("rps"), "{error}");
        let error = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\nresources: {appLabel: app, podLabel: pod}\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("not both"), "{error}");
        let error = ServeConfig::parse(
            "c.yaml",
            "policies: p\naccess: {insecure: [keda, write, status, metrics]}\npromql: {url: http://p, interval: 60s, queries: [{signal: qps, expr: x}]}\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("staleness"), "{error}");
    }

    #[test]
    fn access_is_required_and_an_input_no_one_could_use_is_refused() {
        let error = ServeConfig::parse("c.yaml", "policies: p\n").unwrap_err();
        assert!(
            error.to_string().contains("no `access:` section"),
            "{error}"
        );
        let error =
            ServeConfig::parse("c.yaml", "policies: p\naccess: {insecure: [all]}\n").unwrap_err();
        assert!(error.to_string().contains("access.insecure"), "{error}");
        let serve = |text: &str| ServeConfig::parse("c.yaml", text).unwrap().serve_access();
        // KEDA would be refused on every call: no certificate is verified, no token.
        let error = serve(
            "policies: p\naccess: {identities: {keda: {role: keda}}, insecure: [status, metrics]}\n",
        )
        .unwrap_err();
        assert!(error.contains("no identity can use keda"), "{error}");
        // With client certificates verified on the gRPC port, KEDA's CN is enough.
        let review = serve(
            "policies: p\ntls: {certFile: a, keyFile: b, clientCaFile: c}\n\
             access: {identities: {keda: {role: keda}}}\n",
        )
        .unwrap();
        assert!(review.open.is_empty());
        assert_eq!(review.closed.len(), 2, "status and /metrics: closed to all");
        // Writes turned on need a writer, or to be open on purpose.
        let error =
            serve("policies: p\nremoteWrite: {}\naccess: {insecure: [keda]}\n").unwrap_err();
        assert!(error.contains("no identity can use write"), "{error}");
        // Polling shards needs their token, or the shard service open on purpose.
        let error = serve(
            "policies: p\ncollectors: {shards: ['http://c:9091']}\naccess: {insecure: [keda]}\n",
        )
        .unwrap_err();
        assert!(error.contains("collectors.tokenFile"), "{error}");
        let open = serve("policies: p\naccess: {insecure: [keda, metrics]}\n").unwrap();
        assert_eq!(
            open.open,
            [crate::access::Input::Keda, crate::access::Input::Metrics]
        );
    }

    #[test]
    fn token_files_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.yaml");
        std::fs::write(
            &path,
            "policies: p\naccess:\n  insecure: [keda]\n  identities:\n    agent: {role: writer, tenants: [acme], tokenFile: tokens/agent}\n",
        )
        .unwrap();
        let config = ServeConfig::load(&path).unwrap();
        assert_eq!(
            config.access.token_files,
            vec![(
                std::sync::Arc::from("agent"),
                dir.path().join("tokens/agent")
            )]
        );
    }
}
