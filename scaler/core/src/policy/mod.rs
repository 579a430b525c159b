//! Tenants' scaling policies: the YAML format, its validation, lookup and hot reload.
//!
//! # Format
//!
//! One file per tenant:
//!
//! ```yaml
//! apiVersion: spillway.io/v1
//! kind: ScalingPolicy
//! metadata: { tenant: acme }
//! spec:
//!   namespaces: [acme-prod, acme-staging]   # ScaledObjects elsewhere are refused
//!   defaults:                               # applies to every app below
//!     replicas: { min: 2, max: 200 }
//!     signals:
//!       window: 60s                          # averaging window of the stable proposals
//!       staleAfter: 30s                      # older data counts as missing
//!       qps:    { targetPerReplica: 150, activation: 1 }
//!       cpu:    { targetUtilization: 0.6 }
//!       memory: { targetUtilization: 0.75 }
//!     hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.8, upWindow: 0s, downWindow: 300s }
//!     limits: { up: { pods: 10, percent: 100, per: 15s }, down: { percent: 20, per: 60s } }
//!     panic: { window: 6s, threshold: 2.0, stableWindow: 60s }
//!     schedules:
//!       - { name: double-11, cron: "0 50 23 10 11 *", timezone: Asia/Shanghai, duration: 3h, minReplicas: 50 }
//!     placement: { burst: { enabled: true, maxReplicas: 100 }, requests: { cpu: 500m, memory: 1Gi } }
//!     activation: { window: 30s }
//!     hpaTolerance: 0.1
//!   apps:
//!     checkout: { replicas: { max: 400 }, signals: { qps: { targetPerReplica: 80 } } }
//!     search: {}
//! ```
//!
//! An app must be listed under `apps` to be known. Its values are merged field by field:
//! the app's override, else the tenant's `defaults`, else the built-in default. Two
//! exceptions: an app's `schedules` list replaces the tenant's list whole, and a limit's
//! built-in `pods`/`percent` apply only when neither is written anywhere. A signal is used
//! when its block appears (in `defaults` or the app) and is not `enabled: false`.
//!
//! Durations: `15s`, `5m`, `1h30m`, `2d` (whole seconds). Quantities as Kubernetes writes
//! them: `500m`, `2`, `1Gi`, `512Mi`. Cron: 5 fields, or 6 with seconds first; time zones
//! by IANA name (default `UTC`). `select` is `Max` (default), `Min` or `Disabled`, as the
//! HPA's `selectPolicy`. `signals.cpu.activation` is in cores, `memory.activation` in bytes.
//!
//! # Built-in defaults
//!
//! | field | default | why |
//! |---|---|---|
//! | `replicas` | min 1, max 100 | KEDA's default max; min 1 keeps scale-to-zero opt-in (`min: 0`) |
//! | `signals.window` / `staleAfter` | 60s / 30s | about the HPA's metric window; two missed scrapes make data stale |
//! | `qps.targetPerReplica` | required | no universal value exists |
//! | `qps.activation` | 0 | any traffic activates |
//! | `cpu` / `memory.targetUtilization` | 0.7 / 0.8 | headroom for bursts, memory is slower to move |
//! | `hysteresis` | up above 1.0, down below 0.8, up window 0s, down window 300s | the target is a ceiling; 20 % slack before shrinking; HPA's 300 s down stabilization |
//! | `limits.up` | max(4 pods, 100 %) per 15s | the HPA's default `behavior` |
//! | `limits.down` | 20 % per 60s | slower than the HPA's 100 %/15 s, as Datadog's WPA |
//! | `panic` | enabled, window 6s, threshold 2.0, stable window 60s | Knative's KPA |
//! | `placement.burst` | enabled, no cap | spill over rather than under-serve |
//! | `placement.requests` | cpu 500m, memory 512Mi | only used for utilization; set them to the pod's real requests |
//! | `activation.window` | 30s | quick scale-from-zero; KEDA's cooldown delays 1 → 0 |
//! | `hpaTolerance` | 0.1 | what an HPA applies unless configured with `tolerance: 0` |
//!
//! # As a Kubernetes resource
//!
//! The same spec, as a namespaced `scalingpolicies.spillway.io/v1` resource: [`resources`]
//! turns the resources into policies through this module's loader, with the tenant
//! taken from the namespace's `spillway.io/tenant` label. The resource's types (the
//! CRD's schema, printed by `spillway crd`) and its watcher live at the edge, in the
//! scaler's `cluster::policy_crd` and `cluster::policy_watch`.
//!
//! # Errors
//!
//! Every problem is reported at once, each as `file:line:column: field.path: what is
//! wrong; what is expected`. Unknown fields are errors. Files are limited to 1 MiB and
//! YAML alias expansion is capped, so a hostile file cannot exhaust memory.

mod cron_check;
mod duration;
mod error;
mod load;
mod model;
mod parse;
mod quantity;
pub mod resources;
mod set;
mod store;
mod validate;
mod yaml;

pub use duration::{format_secs, parse_duration_secs};
pub use error::{PolicyError, PolicyErrors};
pub use load::{FileReport, LoadReport, load_dir, validate_files};
pub use model::*;
pub use quantity::{parse_cpu_millis, parse_memory_bytes, parse_quantity};
pub use set::{LookupError, PolicySet};
pub use store::{FileStatus, PolicyStore, ReloadOutcome};
pub use validate::defaults;
pub use yaml::MAX_POLICY_BYTES;

/// Parses and validates one tenant's policy. `source_name` names the file in errors.
pub fn parse_policy(source_name: &str, text: &str) -> Result<TenantPolicy, PolicyErrors> {
    let root = yaml::parse_tree(source_name, text)?;
    let mut reader = parse::Reader::new(source_name);
    let doc = reader.document(&root);
    let policy = validate::resolve(&mut reader, doc);
    match policy {
        Some(p) if reader.errors.is_empty() => Ok(p),
        _ => {
            let mut errors = reader.errors;
            errors.sort_by_key(|e| (e.line, e.column));
            Err(PolicyErrors(errors))
        }
    }
}
