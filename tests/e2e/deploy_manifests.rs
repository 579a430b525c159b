//! Every manifest under `deploy/` parses into its typed Kubernetes struct (KEDA's
//! resources into strict structs of our own), and the pieces fit together: each
//! kustomization's files exist, each overlay's objects reference Services ports,
//! ConfigMaps, ServiceAccounts and selectors that exist, the serve config in the
//! ConfigMap is one `spillway serve` accepts, and the policy ConfigMap is the example
//! policies verbatim.
//!
//! Typed parsing alone would let a misspelt field through (k8s-openapi ignores unknown
//! fields), so every object is also serialized back and compared with its source: a
//! field that does not survive the round trip is one Kubernetes would drop.

// KEDA's structs exist to be checked by deserialization; most fields are never read.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PodTemplateSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `a/b/../c` as `a/c`, without touching the disk (the path may not exist).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    docs.into_iter().filter(|doc| !doc.is_null()).collect()
}

// ---- KEDA's resources, strictly -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObject {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ScaledObjectSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObjectSpec {
    scale_target_ref: ScaleTargetRef,
    polling_interval: Option<u32>,
    cooldown_period: Option<u32>,
    initial_cooldown_period: Option<u32>,
    idle_replica_count: Option<u32>,
    min_replica_count: Option<u32>,
    max_replica_count: Option<u32>,
    fallback: Option<Fallback>,
    advanced: Option<Advanced>,
    triggers: Vec<Trigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaleTargetRef {
    name: String,
    kind: Option<String>,
    api_version: Option<String>,
    env_source_container_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Fallback {
    failure_threshold: u32,
    replicas: u32,
    behavior: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Advanced {
    horizontal_pod_autoscaler_config: Option<HpaConfig>,
    restore_to_original_replica_count: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HpaConfig {
    name: Option<String>,
    behavior: Option<HorizontalPodAutoscalerBehavior>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Trigger {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    metric_type: Option<String>,
    use_cached_metrics: Option<bool>,
    metadata: BTreeMap<String, String>,
    authentication_ref: Option<AuthenticationRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthenticationRef {
    name: String,
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TriggerAuthentication {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: TriggerAuthenticationSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TriggerAuthenticationSpec {
    #[serde(default)]
    secret_target_ref: Vec<SecretTargetRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecretTargetRef {
    parameter: String,
    name: String,
    key: String,
}

/// `deploy/keda/hpa-passthrough.snippet`: not an object, a block to paste into a
/// ScaledObject (hence not a .yaml file, which `kubectl apply -f` would read).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviorFragment {
    behavior: HorizontalPodAutoscalerBehavior,
}

// ---- kustomize ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    kind: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    patches: Vec<Patch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    path: String,
}

fn kustomization(dir: &Path) -> Kustomization {
    let path = dir.join("kustomization.yaml");
    let [doc] = documents(&path)
        .try_into()
        .unwrap_or_else(|docs: Vec<Value>| {
            panic!("{}: {} documents, expected 1", path.display(), docs.len())
        });
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- typed parsing with a round trip --------------------------------------------------

/// Parses `doc` as `T` and checks nothing is lost by doing so.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, source: &str) -> T {
    let parsed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{source}: {e}"));
    let back = serde_json::to_value(&parsed).expect("serializes");
    let mut lost = Vec::new();
    lost_fields(doc, &back, String::new(), &mut lost);
    assert!(
        lost.is_empty(),
        "{source}: fields Kubernetes would drop: {lost:?}"
    );
    parsed
}

fn lost_fields(source: &Value, back: &Value, at: String, lost: &mut Vec<String>) {
    match (source, back) {
        (Value::Object(source), Value::Object(back)) => {
            for (key, value) in source {
                match back.get(key) {
                    Some(again) => lost_fields(value, again, format!("{at}.{key}"), lost),
                    None if value.is_null() => {}
                    None => lost.push(format!("{at}.{key}")),
                }
            }
        }
        (Value::Array(source), Value::Array(back)) => {
            for (i, (value, again)) in source.iter().zip(back).enumerate() {
                lost_fields(value, again, format!("{at}[{i}]"), lost);
            }
        }
        _ => {}
    }
}

/// One object of a built overlay, typed.
#[derive(Debug)]
enum Object {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    Service(Box<Service>),
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    Pdb(Box<PodDisruptionBudget>),
    Rbac,
    Other,
}

fn parse_object(doc: &Value, source: &str) -> Object {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("v1", "Namespace") => Object::Namespace(Box::new(typed(doc, source))),
        ("v1", "ServiceAccount") => Object::ServiceAccount(Box::new(typed(doc, source))),
        ("v1", "ConfigMap") => Object::ConfigMap(Box::new(typed(doc, source))),
        ("v1", "Secret") => Object::Secret(Box::new(typed(doc, source))),
        ("v1", "Service") => Object::Service(Box::new(typed(doc, source))),
        ("apps/v1", "Deployment") => Object::Deployment(Box::new(typed(doc, source))),
        ("apps/v1", "StatefulSet") => Object::StatefulSet(Box::new(typed(doc, source))),
        ("policy/v1", "PodDisruptionBudget") => Object::Pdb(Box::new(typed(doc, source))),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            typed::<ClusterRole>(doc, source);
            Object::Rbac
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            typed::<ClusterRoleBinding>(doc, source);
            Object::Rbac
        }
        ("rbac.authorization.k8s.io/v1", "Role") => {
            typed::<Role>(doc, source);
            Object::Rbac
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            typed::<RoleBinding>(doc, source);
            Object::Rbac
        }
        ("coordination.k8s.io/v1", "Lease") => {
            typed::<Lease>(doc, source);
            Object::Other
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            typed::<NetworkPolicy>(doc, source);
            Object::Other
        }
        ("keda.sh/v1alpha1", "ScaledObject") => {
            let so: ScaledObject =
                serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(
                (so.api_version.as_str(), so.kind.as_str()),
                (api_version, kind)
            );
            Object::Other
        }
        ("keda.sh/v1alpha1", "TriggerAuthentication" | "ClusterTriggerAuthentication") => {
            let _: TriggerAuthentication =
                serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{source}: {e}"));
            Object::Other
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            typed::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(doc, source);
            Object::Other
        }
        ("spillway.io/v1", "ScalingPolicy") => {
            // The resource's spec reads as a policy file's, through the same loader.
            let policy: spillway_scaler::cluster::policy_crd::ScalingPolicy =
                serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{source}: {e}"));
            let spec = serde_json::to_value(&policy.spec).expect("spec");
            let text = spillway_scaler::cluster::policy_crd::document_text("example", &spec);
            spillway_scaler::policy::parse_policy(source, &text)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            Object::Other
        }
        _ => panic!("{source}: no typed parser for {api_version}/{kind}; add one to this test"),
    }
}

/// A strategic-merge-patch approximation: maps merge, `null` deletes, lists of named
/// objects merge by name, other lists are replaced.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    base.remove(key);
                } else if let Some(existing) = base.get_mut(key) {
                    merge(existing, value);
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (Value::Array(base), Value::Array(patch))
            if patch.iter().all(|item| item.get("name").is_some()) =>
        {
            for item in patch {
                match base.iter_mut().find(|b| b.get("name") == item.get("name")) {
                    Some(existing) => merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

fn identity(doc: &Value) -> (String, String) {
    (
        doc["kind"].as_str().unwrap_or_default().to_owned(),
        doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Builds a kustomization the way kustomize does, as far as these manifests need:
/// resources (files and directories), components, then patches.
fn build(dir: &Path, used: &mut BTreeSet<PathBuf>) -> Vec<(String, Value)> {
    let k = kustomization(dir);
    used.insert(dir.join("kustomization.yaml"));
    let mut objects = Vec::new();
    for resource in &k.resources {
        let path = dir.join(resource);
        assert!(
            path.exists(),
            "{}: resource {resource} does not exist",
            dir.display()
        );
        if path.is_dir() {
            // kustomize refuses a directory without one.
            assert!(
                path.join("kustomization.yaml").exists(),
                "{}: resource {resource} is a directory without a kustomization.yaml",
                dir.display()
            );
            objects.extend(build(&path, used));
        } else {
            used.insert(path.clone());
            for doc in documents(&path) {
                objects.push((path.display().to_string(), doc));
            }
        }
    }
    let mut patches: Vec<PathBuf> = k.patches.iter().map(|p| dir.join(&p.path)).collect();
    for component in &k.components {
        let path = dir.join(component);
        let c = kustomization(&path);
        assert_eq!(c.kind, "Component", "{}: not a Component", path.display());
        used.insert(path.join("kustomization.yaml"));
        for resource in &c.resources {
            let file = path.join(resource);
            used.insert(file.clone());
            for doc in documents(&file) {
                objects.push((file.display().to_string(), doc));
            }
        }
        patches.extend(c.patches.iter().map(|p| path.join(&p.path)));
    }
    for patch_path in patches {
        assert!(
            patch_path.exists(),
            "patch {} does not exist",
            patch_path.display()
        );
        used.insert(patch_path.clone());
        for patch in documents(&patch_path) {
            let target = identity(&patch);
            let (_, base) = objects
                .iter_mut()
                .find(|(_, doc)| identity(doc) == target)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: patches {target:?}, which is not in the build",
                        patch_path.display()
                    )
                });
            merge(base, &patch);
        }
    }
    objects
}

fn components_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().join("kustomization.yaml").exists() {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

fn pod_template_checks(
    source: &str,
    template: &PodTemplateSpec,
    config_maps: &BTreeMap<String, ConfigMap>,
    accounts: &BTreeSet<String>,
) {
    let spec = template
        .spec
        .as_ref()
        .unwrap_or_else(|| panic!("{source}: no pod spec"));
    if let Some(account) = &spec.service_account_name {
        assert!(
            accounts.contains(account),
            "{source}: ServiceAccount {account} is not in the build"
        );
    }
    let security = spec.security_context.as_ref().expect("pod securityContext");
    assert_eq!(
        security.run_as_non_root,
        Some(true),
        "{source}: must run as non-root"
    );
    let volumes = spec.volumes.clone().unwrap_or_default();
    for volume in &volumes {
        if let Some(cm) = &volume.config_map {
            assert!(
                config_maps.contains_key(&cm.name),
                "{source}: volume {} mounts ConfigMap {}, which is not in the build",
                volume.name,
                cm.name
            );
        }
    }
    for container in &spec.containers {
        let c = container
            .security_context
            .as_ref()
            .expect("container securityContext");
        assert_eq!(
            c.read_only_root_filesystem,
            Some(true),
            "{source}: read-only root"
        );
        assert_eq!(c.allow_privilege_escalation, Some(false), "{source}");
        let resources = container.resources.as_ref().expect("resources");
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")),
            "{source}: requests"
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|l| l.contains_key("memory")),
            "{source}: memory limit"
        );
        let ports: BTreeSet<String> = container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.clone())
            .collect();
        for probe in [
            &container.liveness_probe,
            &container.readiness_probe,
            &container.startup_probe,
        ]
        .into_iter()
        .flatten()
        {
            if let Some(IntOrString::String(port)) = probe.http_get.as_ref().map(|h| &h.port) {
                assert!(
                    ports.contains(port),
                    "{source}: probe port {port} is not a container port"
                );
            }
        }
        let mounts = container.volume_mounts.clone().unwrap_or_default();
        for mount in &mounts {
            assert!(
                volumes.iter().any(|v| v.name == mount.name),
                "{source}: mount {} has no volume",
                mount.name
            );
        }
        // `--config PATH` points into a mounted ConfigMap that has that key.
        let args = container.args.clone().unwrap_or_default();
        if let Some(i) = args.iter().position(|a| a == "--config") {
            let path = Path::new(&args[i + 1]);
            let mount = mounts
                .iter()
                .find(|m| path.parent() == Some(Path::new(&m.mount_path)))
                .unwrap_or_else(|| panic!("{source}: --config {} is in no mount", path.display()));
            let volume = volumes
                .iter()
                .find(|v| v.name == mount.name)
                .expect("volume");
            let cm = &config_maps[&volume.config_map.as_ref().expect("a ConfigMap volume").name];
            let key = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("file name");
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .unwrap_or_else(|| panic!("{source}: ConfigMap has no key {key}"));
            if args.first().map(String::as_str) == Some("serve") {
                check_serve_config(source, text, &mounts, &ports, container);
            }
            if args.first().map(String::as_str) == Some("collector") {
                check_collector_args(source, text, &args);
            }
            check_token_files_mounted(source, text, &mounts);
        }
    }
}

/// Every token file the process reads (its identities', and the one it sends to the
/// collector shards) is in a mounted volume: a missing one stops the process at start.
fn check_token_files_mounted(
    source: &str,
    text: &str,
    mounts: &[k8s_openapi::api::core::v1::VolumeMount],
) {
    let config = spillway_scaler::config::ServeConfig::parse(source, text)
        .unwrap_or_else(|e| panic!("the config in {source} is refused: {e}"));
    let files = config
        .access
        .token_files
        .iter()
        .map(|(_, file)| file)
        .chain(config.inputs.collectors_token_file.as_ref());
    for file in files {
        assert!(
            mounts.iter().any(|m| file.starts_with(&m.mount_path)),
            "{source}: token file {} is in no mount",
            file.display()
        );
    }
}

/// A collector shard's `--shard I/N` agrees with the shard list the scalers poll.
fn check_collector_args(source: &str, text: &str, args: &[String]) {
    let config = spillway_scaler::config::ServeConfig::parse(source, text)
        .unwrap_or_else(|e| panic!("the config the collectors read in {source} is refused: {e}"));
    let shard = args
        .iter()
        .position(|a| a == "--shard")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{source}: a collector needs --shard I/N"));
    let count: usize = shard
        .rsplit_once('/')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("{source}: --shard {shard} is not I/N"));
    let collectors = config.inputs.collectors.as_ref().unwrap_or_else(|| {
        panic!("{source}: collectors run, but the scalers' config lists no shards")
    });
    assert_eq!(
        collectors.shards.len(),
        count,
        "{source}: --shard {shard} but collectors.shards lists {} addresses",
        collectors.shards.len()
    );
    assert!(
        !config.targets.is_empty(),
        "{source}: the collectors have no scrape targets to shard"
    );
}

fn check_serve_config(
    source: &str,
    text: &str,
    mounts: &[k8s_openapi::api::core::v1::VolumeMount],
    ports: &BTreeSet<String>,
    container: &k8s_openapi::api::core::v1::Container,
) {
    let config = spillway_scaler::config::ServeConfig::parse(source, text)
        .unwrap_or_else(|e| panic!("the serve config in {source} is refused: {e}"));
    config
        .serve_access()
        .unwrap_or_else(|e| panic!("`serve` refuses the access rules in {source}: {e}"));
    let mounted = |path: &Path| mounts.iter().any(|m| path.starts_with(&m.mount_path));
    assert!(
        mounted(&config.policies),
        "{source}: policies {} not mounted",
        config.policies.display()
    );
    assert!(
        mounts
            .iter()
            .any(|m| Path::new(&m.mount_path) == config.policies),
        "{source}: the policy directory must be a whole mount (not subPath) to hot-reload"
    );
    if let Some(tls) = &config.tls {
        for file in [&tls.files.cert, &tls.files.key]
            .into_iter()
            .chain(tls.files.client_ca.as_ref())
        {
            assert!(
                mounted(file),
                "{source}: TLS file {} not mounted",
                file.display()
            );
        }
    }
    let port_of = |name: &str| {
        container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port as u16)
    };
    assert!(ports.contains("grpc") && ports.contains("http"), "{source}");
    assert_eq!(
        port_of("grpc"),
        Some(config.grpc.port()),
        "{source}: grpc port"
    );
    assert_eq!(
        port_of("http"),
        Some(config.http.port()),
        "{source}: http port"
    );
}

/// Several scalers behind one Service must run in HA mode (pushed writes would reach one
/// of them only), and HA mode needs the headless Service that lists every replica.
fn check_ha_mode(dir: &Path, built: &[(String, Value)], config_maps: &BTreeMap<String, ConfigMap>) {
    let Some(replicas) = built
        .iter()
        .find(|(_, d)| identity(d) == ("Deployment".into(), "spillway".into()))
        .map(|(_, d)| d["spec"]["replicas"].as_i64().unwrap_or(1))
    else {
        return;
    };
    let text = config_maps
        .get("spillway-serve")
        .and_then(|cm| cm.data.as_ref())
        .and_then(|data| data.get("spillway.yaml"))
        .unwrap_or_else(|| panic!("{}: no serve config", dir.display()));
    let config = spillway_scaler::config::ServeConfig::parse("spillway.yaml", text)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(
        config.inputs.ha.is_some(),
        replicas >= 2,
        "{}: {replicas} scaler replicas, but the serve config's `ha:` is {:?}",
        dir.display(),
        config.inputs.ha
    );
    if config.inputs.ha.is_some() {
        let headless = built.iter().any(|(_, d)| {
            identity(d) == ("Service".into(), "spillway-replicas".into())
                && d["spec"]["clusterIP"] == "None"
        });
        assert!(
            headless,
            "{}: HA mode names the headless Service spillway-replicas, which is missing",
            dir.display()
        );
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Checks one overlay as this test builds it; returns the Services it defines
/// (namespace, name, ports).
fn check_overlay(dir: &Path, used: &mut BTreeSet<PathBuf>) -> Vec<(String, String, Vec<i32>)> {
    check_objects(dir, &build(dir, used))
}

/// Checks the objects of one overlay (built here or rendered by kustomize).
fn check_objects(dir: &Path, built: &[(String, Value)]) -> Vec<(String, String, Vec<i32>)> {
    let mut config_maps = BTreeMap::new();
    let mut accounts = BTreeSet::new();
    let mut services = Vec::new();
    let mut workloads: Vec<(String, PodTemplateSpec, BTreeMap<String, String>)> = Vec::new();
    let mut pdbs = Vec::new();
    let mut names = BTreeSet::new();
    for (source, doc) in built {
        let id = (identity(doc), doc["metadata"]["namespace"].clone());
        assert!(
            names.insert(format!("{id:?}")),
            "{}: {id:?} defined twice",
            dir.display()
        );
        match parse_object(doc, source) {
            Object::ConfigMap(cm) => {
                config_maps.insert(cm.metadata.name.clone().unwrap_or_default(), *cm);
            }
            Object::ServiceAccount(sa) => {
                accounts.insert(sa.metadata.name.clone().unwrap_or_default());
            }
            Object::Service(s) => services.push((source.clone(), *s)),
            Object::Deployment(d) => {
                let spec = d.spec.expect("deployment spec");
                let selector = spec.selector.match_labels.unwrap_or_default();
                workloads.push((source.clone(), spec.template, selector));
            }
            Object::StatefulSet(s) => {
                let spec = s.spec.expect("statefulset spec");
                let selector = spec.selector.match_labels.unwrap_or_default();
                workloads.push((source.clone(), spec.template, selector));
            }
            Object::Pdb(p) => pdbs.push((source.clone(), *p)),
            Object::Namespace(_) | Object::Secret(_) | Object::Rbac | Object::Other => {}
        }
    }
    assert!(!workloads.is_empty(), "{}: no workload", dir.display());
    check_ha_mode(dir, built, &config_maps);
    for (source, template, selector) in &workloads {
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        assert!(
            selects(selector, &labels),
            "{source}: selector does not match its pod template"
        );
        pod_template_checks(source, template, &config_maps, &accounts);
    }
    let mut out = Vec::new();
    for (source, service) in &services {
        let spec = service.spec.as_ref().expect("service spec");
        let selector = spec.selector.clone().unwrap_or_default();
        let selected: Vec<_> = workloads
            .iter()
            .filter(|(_, t, _)| {
                selects(
                    &selector,
                    &t.metadata
                        .as_ref()
                        .and_then(|m| m.labels.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert!(!selected.is_empty(), "{source}: the Service selects no pod");
        let mut ports = Vec::new();
        for port in spec.ports.iter().flatten() {
            ports.push(port.port);
            for (wsource, template, _) in &selected {
                let containers = &template.spec.as_ref().expect("pod spec").containers;
                let found = containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .any(|p| match &port.target_port {
                        Some(IntOrString::String(name)) => p.name.as_deref() == Some(name),
                        Some(IntOrString::Int(number)) => p.container_port == *number,
                        None => p.container_port == port.port,
                    });
                assert!(
                    found,
                    "{source}: port {:?} has no container port in {wsource}",
                    port.name
                );
            }
        }
        out.push((
            service.metadata.namespace.clone().unwrap_or_default(),
            service.metadata.name.clone().unwrap_or_default(),
            ports,
        ));
    }
    for (source, pdb) in &pdbs {
        let spec = pdb.spec.as_ref().expect("pdb spec");
        assert!(
            spec.min_available.is_some() != spec.max_unavailable.is_some(),
            "{source}: a PDB takes exactly one of minAvailable and maxUnavailable"
        );
        let selector = spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        assert!(
            workloads.iter().any(|(_, t, _)| selects(
                &selector,
                &t.metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default()
            )),
            "{source}: the PDB selects no pod"
        );
    }
    // The policy ConfigMap is the example policies, each one valid.
    let policies = config_maps
        .get("spillway-policies")
        .expect("the policy ConfigMap");
    let data = policies.data.clone().unwrap_or_default();
    let examples = deploy_dir().join("examples/policies");
    let mut expected = Vec::new();
    yaml_files(&examples, &mut expected);
    assert_eq!(
        data.len(),
        expected.len(),
        "the policy ConfigMap and {} differ",
        examples.display()
    );
    for file in expected {
        let key = file.file_name().and_then(|n| n.to_str()).expect("name");
        let text = std::fs::read_to_string(&file).expect("policy");
        assert_eq!(
            data.get(key),
            Some(&text),
            "ConfigMap key {key} differs from {}",
            file.display()
        );
        spillway_scaler::policy::parse_policy(key, &text).unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    out
}

#[test]
fn every_manifest_parses_and_every_overlay_fits_together() {
    let deploy = deploy_dir();
    let mut used = BTreeSet::new();
    let mut services = BTreeSet::new();
    let mut overlays = components_of(&deploy.join("overlays"));
    assert!(
        overlays.len() >= 3,
        "single, ha and sharded overlays: {overlays:?}"
    );
    overlays.push(deploy.join("base"));
    // Each component is checked in a build of the base with it.
    for component in components_of(&deploy.join("components")) {
        let dir = tempfile::tempdir().expect("temp dir");
        let relative = |p: &Path| p.canonicalize().expect("canonical path");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\ncomponents: [{}]\n",
                relative(&deploy.join("base")).display(),
                relative(&component).display()
            ),
        )
        .expect("write");
        for service in check_overlay(dir.path(), &mut used) {
            services.insert(service);
        }
    }
    for overlay in &overlays {
        for service in check_overlay(overlay, &mut used) {
            services.insert(service);
        }
    }
    let ha = build(&deploy.join("overlays/ha"), &mut BTreeSet::new());
    let replicas = ha
        .iter()
        .find(|(_, d)| identity(d) == ("Deployment".into(), "spillway".into()))
        .and_then(|(_, d)| d["spec"]["replicas"].as_i64());
    assert!(
        replicas.is_some_and(|r| r >= 2),
        "the ha overlay runs 2+ scalers: {replicas:?}"
    );

    // Everything else under deploy/: KEDA examples and anything not reached by a build.
    let mut files = Vec::new();
    yaml_files(&deploy, &mut files);
    let mut parsed = 0;
    let mut trigger_auths = BTreeSet::new();
    let mut references = Vec::new();
    for file in &files {
        let source = file.display().to_string();
        let used_already = used
            .iter()
            .any(|u| u.canonicalize().ok() == file.canonicalize().ok());
        if file.starts_with(deploy.join("examples/policies")) || used_already {
            parsed += 1;
            continue;
        }
        if file.file_name().is_some_and(|n| n == "kustomization.yaml") {
            kustomization(file.parent().expect("dir"));
            parsed += 1;
            continue;
        }
        for doc in documents(file) {
            parse_object(&doc, &source);
            let namespace = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match doc["kind"].as_str() {
                Some("TriggerAuthentication") => {
                    trigger_auths.insert((namespace, identity(&doc).1));
                }
                Some("ScaledObject") => {
                    for trigger in doc["spec"]["triggers"].as_array().into_iter().flatten() {
                        references.push((source.clone(), namespace.clone(), trigger.clone()));
                    }
                }
                _ => {}
            }
        }
        parsed += 1;
    }
    // KEDA's scalerAddress names a Service port of the install; authenticationRef exists.
    assert!(!references.is_empty());
    for (source, namespace, trigger) in references {
        let address = trigger["metadata"]["scalerAddress"]
            .as_str()
            .expect("scalerAddress");
        let (host, port) = address.rsplit_once(':').expect("host:port");
        let port: i32 = port.parse().expect("port");
        let mut parts = host.split('.');
        let (name, ns) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        assert!(
            services
                .iter()
                .any(|(sns, sname, ports)| sns == ns && sname == name && ports.contains(&port)),
            "{source}: scalerAddress {address} is no Service port of the install"
        );
        if let Some(auth) = trigger["authenticationRef"]["name"].as_str() {
            assert!(
                trigger_auths.contains(&(namespace.clone(), auth.to_owned())),
                "{source}: TriggerAuthentication {namespace}/{auth} is not in deploy/keda"
            );
            assert_eq!(
                trigger["metadata"]["enableTLS"], "true",
                "{source}: mTLS needs enableTLS"
            );
        }
    }
    assert_eq!(parsed, files.len());
    assert!(parsed >= 20, "only {parsed} manifests found under deploy/");
}

#[test]
fn a_misspelt_field_is_caught() {
    let doc: Value = serde_saphyr::from_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selectr: {a: b}}\n",
    )
    .expect("yaml");
    let caught = std::panic::catch_unwind(|| parse_object(&doc, "test"));
    assert!(caught.is_err(), "a misspelt Service field went through");
    let doc: Value = serde_saphyr::from_str(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\nspec: {scaleTargetRef: {name: a}, triggers: [], pollingIntervall: 3}\n",
    )
    .expect("yaml");
    let caught = std::panic::catch_unwind(|| parse_object(&doc, "test"));
    assert!(
        caught.is_err(),
        "a misspelt ScaledObject field went through"
    );
}

/// `deploy/keda/hpa-passthrough.snippet`'s behavior, as JSON after a typed round trip.
fn passthrough_snippet() -> Value {
    let path = deploy_dir().join("keda/hpa-passthrough.snippet");
    let [doc] = documents(&path)
        .try_into()
        .unwrap_or_else(|docs: Vec<Value>| {
            panic!("{}: {} documents, expected 1", path.display(), docs.len())
        });
    let snippet: BehaviorFragment =
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::to_value(&snippet.behavior).expect("serializes")
}

fn behavior_of(scaled_object: &Value, source: &str) -> Value {
    let behavior = scaled_object
        .pointer("/spec/advanced/horizontalPodAutoscalerConfig/behavior")
        .unwrap_or_else(|| panic!("{source}: no advanced.horizontalPodAutoscalerConfig.behavior"));
    let typed: HorizontalPodAutoscalerBehavior = typed(behavior, source);
    serde_json::to_value(&typed).expect("serializes")
}

/// Spillway serves a replica count: only an `AverageValue` target of 1 makes the HPA
/// take it as is (a `Value` target multiplies by the ready pods).
fn assert_average_value(scaled_object: &Value, source: &str) {
    for trigger in scaled_object["spec"]["triggers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(
            trigger["metricType"], "AverageValue",
            "{source}: Spillway's trigger needs metricType: AverageValue"
        );
    }
}

#[test]
fn what_kubectl_apply_reads_in_deploy_keda_is_objects_carrying_the_passthrough() {
    let keda = deploy_dir().join("keda");
    let want = passthrough_snippet();
    let mut scaled_objects = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&keda)
        .expect("deploy/keda")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let source = path.display().to_string();
        // `kubectl apply -f DIR` reads these extensions (and `-R` descends).
        let applied = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if path.is_dir() || !applied {
            assert!(
                path.extension().is_some_and(|e| e == "snippet"),
                "{source}: only objects and .snippet files belong in deploy/keda"
            );
            continue;
        }
        for doc in documents(&path) {
            assert!(
                doc["apiVersion"].as_str().is_some_and(|v| !v.is_empty())
                    && doc["kind"].as_str().is_some_and(|k| !k.is_empty()),
                "{source}: not an object (no apiVersion/kind); `kubectl apply -f deploy/keda/` would stop here"
            );
            if doc["kind"] == "ScaledObject" {
                scaled_objects += 1;
                assert_eq!(
                    behavior_of(&doc, &source),
                    want,
                    "{source}: the behavior differs from hpa-passthrough.snippet"
                );
                assert_average_value(&doc, &source);
            }
        }
    }
    assert!(
        scaled_objects >= 3,
        "{scaled_objects} ScaledObjects in deploy/keda"
    );
}

/// The README's ScaledObject is the one users copy: its behavior is the snippet too.
#[test]
fn the_readme_scaled_object_carries_the_passthrough() {
    let path = deploy_dir().join("../README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    let block = text
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block))
        .find(|block| block.contains("kind: ScaledObject"))
        .expect("a ScaledObject in the README");
    let doc: Value = serde_saphyr::from_str(block).expect("the README's ScaledObject is YAML");
    let source = "README.md's ScaledObject";
    let _: ScaledObject =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{source}: {e}"));
    assert_eq!(behavior_of(&doc, source), passthrough_snippet(), "{source}");
    assert_average_value(&doc, source);
}

// ---- real kustomize -------------------------------------------------------------------

/// `kubectl` from PATH, else from the real-peers build (`tests/peers/build.sh` prints the
/// directory to set as SPILLWAY_PEERS_DIR).
fn kubectl() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        std::env::var_os("SPILLWAY_PEERS_DIR")
            .map(|dir| PathBuf::from(dir).join("bin/kubectl"))
            .filter(|candidate| candidate.is_file())
    })
}

/// `kubectl kustomize DIR`, bounded; the rendered objects.
fn kustomize(kubectl: &Path, dir: &Path) -> Vec<Value> {
    use std::io::Read;
    let mut child = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", kubectl.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    // At most 60 s: 3,000 checks 20 ms apart.
    let mut checks = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("kubectl status") {
            break status;
        }
        checks += 1;
        if checks > 3_000 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kubectl kustomize {} took over 60 s", dir.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        status.success(),
        "kubectl kustomize {} failed ({status}): {stderr}",
        dir.display()
    );
    let docs: Vec<Value> = serde_saphyr::from_multiple(&stdout).unwrap_or_else(|e| {
        panic!(
            "kubectl kustomize {}: output is not YAML: {e}",
            dir.display()
        )
    });
    docs.into_iter().filter(|doc| !doc.is_null()).collect()
}

#[test]
fn every_overlay_and_component_renders_with_kubectl_kustomize() {
    let Some(kubectl) = kubectl() else {
        if std::env::var("SPILLWAY_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!(
                "kubectl is not on PATH (nor in $SPILLWAY_PEERS_DIR/bin) and SPILLWAY_REQUIRE_PEERS=1"
            );
        }
        println!(
            "SKIPPED: kubectl is not on PATH; install it, or build the test peers with \
             tests/peers/build.sh and set SPILLWAY_PEERS_DIR to the directory it prints"
        );
        return;
    };
    let deploy = deploy_dir();
    let mut dirs = components_of(&deploy.join("overlays"));
    dirs.push(deploy.join("base"));
    dirs.push(deploy.join("rbac"));
    // A Component renders only inside a kustomization: each one on top of the base.
    let mut temps = Vec::new();
    for component in components_of(&deploy.join("components")) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{}]\ncomponents: [{}]\n",
                spillway_tests::relative_path(dir.path(), &deploy.join("base")).display(),
                spillway_tests::relative_path(dir.path(), &component).display()
            ),
        )
        .expect("write");
        dirs.push(dir.path().to_path_buf());
        temps.push(dir);
    }
    for dir in &dirs {
        let rendered: Vec<(String, Value)> = kustomize(&kubectl, dir)
            .into_iter()
            .map(|doc| (format!("{} (kubectl kustomize)", dir.display()), doc))
            .collect();
        assert!(!rendered.is_empty(), "{}: nothing rendered", dir.display());
        for (source, doc) in &rendered {
            parse_object(doc, source);
        }
        // This test's own build approximates kustomize: both must give the same objects.
        let ours: BTreeSet<(String, String)> = build(dir, &mut BTreeSet::new())
            .iter()
            .map(|(_, doc)| identity(doc))
            .collect();
        let theirs: BTreeSet<(String, String)> =
            rendered.iter().map(|(_, doc)| identity(doc)).collect();
        assert_eq!(
            ours,
            theirs,
            "{}: kustomize renders other objects",
            dir.display()
        );
        if dir.ends_with("rbac") {
            continue;
        }
        check_objects(dir, &rendered);
        if dir.ends_with("overlays/ha") || dir.ends_with("overlays/sharded") {
            let replicas = rendered
                .iter()
                .find(|(_, d)| identity(d) == ("Deployment".into(), "spillway".into()))
                .and_then(|(_, d)| d["spec"]["replicas"].as_i64());
            assert!(
                replicas.is_some_and(|r| r >= 2),
                "{}: {replicas:?}",
                dir.display()
            );
        }
        eprintln!(
            "{}: {} objects rendered and checked",
            dir.display(),
            rendered.len()
        );
    }
}
