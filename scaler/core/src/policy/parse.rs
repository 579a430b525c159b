//! Walks the located YAML tree into partial (unmerged) policy sections, collecting every
//! shape problem: unknown fields, wrong types, unparsable durations and quantities.
//! Range and cross-field checks happen after merging, in `validate`.

use serde_saphyr::Location;

use super::duration::parse_duration_secs;
use super::error::PolicyError;
use super::quantity::{parse_cpu_millis, parse_memory_bytes};
use super::yaml::{Node, Value};

/// Where a value was written: position and field path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub line: u64,
    pub column: u64,
    pub path: String,
}

/// A value with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct At<T> {
    pub value: T,
    pub loc: Loc,
}

#[derive(Clone, Debug, Default)]
pub struct RawDocument {
    pub root: Loc,
    pub tenant: Option<At<String>>,
    pub namespaces: Option<At<Vec<At<String>>>>,
    pub defaults: RawApp,
    pub apps: Vec<(At<String>, RawApp)>,
    pub apps_loc: Option<Loc>,
    /// `candidate:`, a spec decided beside the live one and never acted on
    /// ([`crate::policy::shadow`]): its own `defaults` and `apps`, no namespaces.
    pub candidate: Option<Box<RawDocument>>,
    /// A candidate's `grade` and `guards` ([`crate::policy::grade`]).
    pub rollout: super::grade::RawRollout,
}

/// One `defaults` block or one app's overrides; every field optional.
#[derive(Clone, Debug, Default)]
pub struct RawApp {
    pub loc: Loc,
    pub min: Option<At<u32>>,
    pub max: Option<At<u32>>,
    pub signal_window: Option<At<u32>>,
    pub stale_after: Option<At<u32>>,
    pub qps: Option<RawSignal>,
    pub cpu: Option<RawSignal>,
    pub memory: Option<RawSignal>,
    pub scale_up_above: Option<At<f64>>,
    pub scale_down_below: Option<At<f64>>,
    pub up_window: Option<At<u32>>,
    pub down_window: Option<At<u32>>,
    pub up: RawLimit,
    pub down: RawLimit,
    pub panic_enabled: Option<At<bool>>,
    pub panic_window: Option<At<u32>>,
    pub panic_threshold: Option<At<f64>>,
    pub panic_stable_window: Option<At<u32>>,
    pub schedules: Option<At<Vec<RawSchedule>>>,
    pub burst_enabled: Option<At<bool>>,
    pub burst_max: Option<At<u32>>,
    pub cpu_request: Option<At<u64>>,
    pub memory_request: Option<At<u64>>,
    pub hpa_tolerance: Option<At<f64>>,
    pub activation_window: Option<At<u32>>,
    pub borrowable: Option<At<bool>>,
}

#[derive(Clone, Debug, Default)]
pub struct RawSignal {
    pub loc: Loc,
    pub enabled: Option<At<bool>>,
    /// `targetPerReplica` for QPS, `targetUtilization` for CPU and memory.
    pub target: Option<At<f64>>,
    pub activation: Option<At<f64>>,
}

#[derive(Clone, Debug, Default)]
pub struct RawLimit {
    pub pods: Option<At<u32>>,
    pub percent: Option<At<u32>>,
    pub per: Option<At<u32>>,
    pub select: Option<At<super::model::SelectPolicy>>,
}

#[derive(Clone, Debug, Default)]
pub struct RawSchedule {
    pub loc: Loc,
    pub name: Option<At<String>>,
    pub cron: Option<At<String>>,
    pub timezone: Option<At<String>>,
    pub duration: Option<At<u32>>,
    pub min_replicas: Option<At<u32>>,
}

pub struct Reader<'s> {
    pub source_name: &'s str,
    pub errors: Vec<PolicyError>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn loc_of(node: &Node, path: &str) -> Loc {
    let l: Location = node.referenced;
    Loc {
        line: l.line(),
        column: l.column(),
        path: path.to_owned(),
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Str(s) => s.clone(),
        other => other.describe(),
    }
}

fn has_key(node: &Node, key: &str) -> bool {
    matches!(&node.value, Value::Map(entries)
        if entries.iter().any(|(k, _)| matches!(&k.value, Value::Str(x) if x == key)))
}

type Fields<'n> = Vec<(String, &'n Node, String)>;

impl<'s> Reader<'s> {
    pub fn new(source_name: &'s str) -> Self {
        Self {
            source_name,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, loc: &Loc, message: impl Into<String>) {
        self.errors.push(PolicyError {
            source_name: self.source_name.to_owned(),
            line: loc.line,
            column: loc.column,
            path: loc.path.clone(),
            message: message.into(),
        });
    }

    /// The entries of a mapping whose keys must be among `allowed`. A null node reads as an
    /// empty mapping, so `checkout:` and `checkout: {}` mean the same.
    pub(super) fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let entries = match &node.value {
            Value::Map(entries) => entries,
            Value::Null => return Some(Vec::new()),
            other => {
                let what = if allowed.is_empty() {
                    "a mapping".to_owned()
                } else {
                    format!("a mapping with fields {}", allowed.join(", "))
                };
                self.error(
                    &loc_of(node, path),
                    format!("expected {what}, found {}", other.describe()),
                );
                return None;
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let key: &str = match &k.value {
                Value::Str(key) => key,
                // Numeric-looking names (an app called `2048`) are names too.
                Value::Int(_) | Value::UInt(_) if allowed.is_empty() => {
                    let text = scalar_text(&k.value);
                    let child = join(path, &text);
                    out.push((text, v, child));
                    continue;
                }
                other => {
                    self.error(
                        &loc_of(k, path),
                        format!("expected a field name, found {}", other.describe()),
                    );
                    continue;
                }
            };
            if !allowed.is_empty() && !allowed.contains(&key) {
                self.error(
                    &loc_of(k, &join(path, key)),
                    format!(
                        "unknown field `{key}`; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            out.push((key.to_owned(), v, join(path, key)));
        }
        Some(out)
    }

    /// A scalar of one type: `get` extracts it, or the error says what was `expected`
    /// and what the file has instead.
    fn typed<T>(
        &mut self,
        node: &Node,
        path: &str,
        expected: &str,
        get: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<At<T>> {
        let loc = loc_of(node, path);
        match get(&node.value) {
            Some(value) => Some(At { value, loc }),
            None => {
                self.error(
                    &loc,
                    format!("expected {expected}, found {}", node.value.describe()),
                );
                None
            }
        }
    }

    /// A string that must be exactly `expected` (apiVersion, kind).
    fn literal(&mut self, node: &Node, path: &str, expected: &str) {
        if let Some(v) = self.string(node, path)
            && v.value != expected
        {
            self.error(
                &v.loc,
                format!("expected `{expected}`, found `{}`", v.value),
            );
        }
    }

    pub(super) fn u32(&mut self, node: &Node, path: &str) -> Option<At<u32>> {
        let expected = format!("a whole number from 0 to {}", u32::MAX);
        self.typed(node, path, &expected, |value| match *value {
            Value::UInt(u) => u32::try_from(u).ok(),
            Value::Int(i) => u32::try_from(i).ok(),
            _ => None,
        })
    }

    pub(super) fn f64(&mut self, node: &Node, path: &str) -> Option<At<f64>> {
        self.typed(node, path, "a number", |value| match *value {
            Value::UInt(u) => Some(u as f64),
            Value::Int(i) => Some(i as f64),
            Value::Float(x) if x.is_finite() => Some(x),
            _ => None,
        })
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<At<bool>> {
        self.typed(node, path, "true or false", |value| match *value {
            Value::Bool(b) => Some(b),
            _ => None,
        })
    }

    pub(super) fn string(&mut self, node: &Node, path: &str) -> Option<At<String>> {
        self.typed(node, path, "a string", |value| match value {
            Value::Str(s) => Some(s.clone()),
            v @ (Value::Int(_) | Value::UInt(_)) => Some(scalar_text(v)),
            _ => None,
        })
    }

    pub(super) fn duration(&mut self, node: &Node, path: &str) -> Option<At<u32>> {
        let loc = loc_of(node, path);
        let parsed = match &node.value {
            Value::Str(s) => parse_duration_secs(s),
            Value::UInt(0) | Value::Int(0) => Ok(0),
            other => Err(format!(
                "expected a duration such as `15s`, `5m` or `1h30m`, found {}",
                other.describe()
            )),
        };
        match parsed {
            Ok(value) => Some(At { value, loc }),
            Err(msg) => {
                self.error(&loc, msg);
                None
            }
        }
    }

    fn quantity(
        &mut self,
        node: &Node,
        path: &str,
        parse: fn(&str) -> Result<u64, String>,
    ) -> Option<At<u64>> {
        let loc = loc_of(node, path);
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::UInt(u) => u.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            other => {
                self.error(
                    &loc,
                    format!(
                        "expected a Kubernetes quantity such as `500m` or `1Gi`, found {}",
                        other.describe()
                    ),
                );
                return None;
            }
        };
        match parse(&text) {
            Ok(value) => Some(At { value, loc }),
            Err(msg) => {
                self.error(&loc, msg);
                None
            }
        }
    }

    fn select(&mut self, node: &Node, path: &str) -> Option<At<super::model::SelectPolicy>> {
        use super::model::SelectPolicy;
        let at = self.string(node, path)?;
        let value = match at.value.as_str() {
            "Max" | "max" => SelectPolicy::Max,
            "Min" | "min" => SelectPolicy::Min,
            "Disabled" | "disabled" => SelectPolicy::Disabled,
            other => {
                self.error(
                    &at.loc,
                    format!("expected one of Max, Min, Disabled, found `{other}`"),
                );
                return None;
            }
        };
        Some(At { value, loc: at.loc })
    }

    pub fn document(&mut self, root: &Node) -> RawDocument {
        let mut doc = RawDocument {
            root: loc_of(root, ""),
            ..RawDocument::default()
        };
        let Some(fields) = self.fields(
            root,
            "",
            &["apiVersion", "kind", "metadata", "spec", "candidate"],
        ) else {
            return doc;
        };
        let (mut api, mut kind, mut spec_seen, mut meta_seen) = (false, false, false, false);
        for (key, node, path) in fields {
            match key.as_str() {
                "apiVersion" => {
                    api = true;
                    self.literal(node, &path, "spillway.io/v1");
                }
                "kind" => {
                    kind = true;
                    self.literal(node, &path, "ScalingPolicy");
                }
                "metadata" => {
                    if let Some(meta) = self.fields(node, &path, &["tenant"]) {
                        for (_, n, p) in meta {
                            doc.tenant = self.string(n, &p);
                        }
                    }
                    if matches!(node.value, Value::Map(_) | Value::Null) && !has_key(node, "tenant")
                    {
                        self.missing(
                            node,
                            &path,
                            "tenant",
                            "the tenant's name, e.g. `tenant: acme`",
                        );
                    }
                    meta_seen = true;
                }
                "spec" => {
                    spec_seen = true;
                    self.spec(node, &path, &mut doc);
                }
                "candidate" => {
                    let mut candidate = RawDocument {
                        root: loc_of(node, &path),
                        ..RawDocument::default()
                    };
                    self.spec(node, &path, &mut candidate);
                    doc.candidate = Some(Box::new(candidate));
                }
                _ => {}
            }
        }
        let root_loc = doc.root.clone();
        if !api {
            self.error(
                &root_loc,
                "missing field `apiVersion`; expected `apiVersion: spillway.io/v1`",
            );
        }
        if !kind {
            self.error(
                &root_loc,
                "missing field `kind`; expected `kind: ScalingPolicy`",
            );
        }
        if !meta_seen {
            self.error(
                &root_loc,
                "missing field `metadata`; expected `metadata: { tenant: NAME }`",
            );
        }
        if !spec_seen {
            self.error(
                &root_loc,
                "missing field `spec`; expected the tenant's namespaces, defaults and apps",
            );
        }
        doc
    }

    fn missing(&mut self, parent: &Node, parent_path: &str, field: &str, expected: &str) {
        let loc = loc_of(parent, parent_path);
        self.error(
            &loc,
            format!("missing field `{field}`; expected {expected}"),
        );
    }

    fn spec(&mut self, node: &Node, path: &str, doc: &mut RawDocument) {
        // A candidate changes how the live spec's apps scale, not who may use them.
        let candidate = path == "candidate";
        let allowed: &[&str] = if candidate {
            &["defaults", "apps", "grade", "guards"]
        } else {
            &["namespaces", "defaults", "apps"]
        };
        let Some(fields) = self.fields(node, path, allowed) else {
            return;
        };
        for (key, n, p) in fields {
            match key.as_str() {
                "namespaces" => {
                    let loc = loc_of(n, &p);
                    match &n.value {
                        Value::Seq(items) => {
                            let list = items
                                .iter()
                                .enumerate()
                                .filter_map(|(i, item)| self.string(item, &format!("{p}[{i}]")))
                                .collect();
                            doc.namespaces = Some(At { value: list, loc });
                        }
                        other => self.error(
                            &loc,
                            format!(
                                "expected a list of namespace names, found {}",
                                other.describe()
                            ),
                        ),
                    }
                }
                "defaults" => {
                    doc.defaults = self.app(n, &p);
                    // Lending an app's policy is a decision about that app, not a default.
                    if let Some(borrowable) = &doc.defaults.borrowable {
                        let loc = borrowable.loc.clone();
                        self.error(
                            &loc,
                            "borrowable is set per app (under `apps`), not in `defaults`",
                        );
                    }
                }
                "apps" => {
                    doc.apps_loc = Some(loc_of(n, &p));
                    if let Some(apps) = self.fields(n, &p, &[]) {
                        for (name, app_node, app_path) in apps {
                            let name = At {
                                value: name.to_owned(),
                                loc: loc_of(app_node, &app_path),
                            };
                            let raw = self.app(app_node, &app_path);
                            doc.apps.push((name, raw));
                        }
                    }
                }
                "grade" | "guards" => self.rollout(&key, n, &p, &mut doc.rollout),
                _ => {}
            }
        }
        if doc.namespaces.is_none() && !candidate {
            self.missing(
                node,
                path,
                "namespaces",
                "the list of namespaces allowed to use this policy",
            );
        }
        if doc.apps_loc.is_none() {
            self.missing(
                node,
                path,
                "apps",
                "a mapping of app names to overrides (`checkout: {}` is enough)",
            );
        }
    }

    fn app(&mut self, node: &Node, path: &str) -> RawApp {
        let mut app = RawApp {
            loc: loc_of(node, path),
            ..RawApp::default()
        };
        let allowed = [
            "replicas",
            "signals",
            "hysteresis",
            "limits",
            "panic",
            "schedules",
            "placement",
            "activation",
            "hpaTolerance",
            "borrowable",
        ];
        let Some(fields) = self.fields(node, path, &allowed) else {
            return app;
        };
        for (key, n, p) in fields {
            match key.as_str() {
                "replicas" => {
                    for (k, v, vp) in self.fields(n, &p, &["min", "max"]).unwrap_or_default() {
                        let x = self.u32(v, &vp);
                        if k == "min" { app.min = x } else { app.max = x }
                    }
                }
                "signals" => self.signals(n, &p, &mut app),
                "hysteresis" => {
                    let allowed = ["scaleUpAbove", "scaleDownBelow", "upWindow", "downWindow"];
                    for (k, v, vp) in self.fields(n, &p, &allowed).unwrap_or_default() {
                        match k.as_str() {
                            "scaleUpAbove" => app.scale_up_above = self.f64(v, &vp),
                            "scaleDownBelow" => app.scale_down_below = self.f64(v, &vp),
                            "upWindow" => app.up_window = self.duration(v, &vp),
                            _ => app.down_window = self.duration(v, &vp),
                        }
                    }
                }
                "limits" => {
                    for (k, v, vp) in self.fields(n, &p, &["up", "down"]).unwrap_or_default() {
                        let limit = self.limit(v, &vp);
                        if k == "up" {
                            app.up = limit
                        } else {
                            app.down = limit
                        }
                    }
                }
                "panic" => {
                    let allowed = ["enabled", "window", "threshold", "stableWindow"];
                    for (k, v, vp) in self.fields(n, &p, &allowed).unwrap_or_default() {
                        match k.as_str() {
                            "enabled" => app.panic_enabled = self.bool(v, &vp),
                            "window" => app.panic_window = self.duration(v, &vp),
                            "threshold" => app.panic_threshold = self.f64(v, &vp),
                            _ => app.panic_stable_window = self.duration(v, &vp),
                        }
                    }
                }
                "schedules" => {
                    let loc = loc_of(n, &p);
                    match &n.value {
                        Value::Seq(items) => {
                            let list = items
                                .iter()
                                .enumerate()
                                .map(|(i, item)| self.schedule(item, &format!("{p}[{i}]")))
                                .collect();
                            app.schedules = Some(At { value: list, loc });
                        }
                        Value::Null => {
                            app.schedules = Some(At {
                                value: Vec::new(),
                                loc,
                            })
                        }
                        other => self.error(
                            &loc,
                            format!("expected a list of schedules, found {}", other.describe()),
                        ),
                    }
                }
                "placement" => {
                    for (k, v, vp) in self
                        .fields(n, &p, &["burst", "requests"])
                        .unwrap_or_default()
                    {
                        if k == "burst" {
                            for (bk, bv, bp) in self
                                .fields(v, &vp, &["enabled", "maxReplicas"])
                                .unwrap_or_default()
                            {
                                if bk == "enabled" {
                                    app.burst_enabled = self.bool(bv, &bp);
                                } else {
                                    app.burst_max = self.u32(bv, &bp);
                                }
                            }
                        } else {
                            for (rk, rv, rp) in
                                self.fields(v, &vp, &["cpu", "memory"]).unwrap_or_default()
                            {
                                if rk == "cpu" {
                                    app.cpu_request = self.quantity(rv, &rp, parse_cpu_millis);
                                } else {
                                    app.memory_request = self.quantity(rv, &rp, parse_memory_bytes);
                                }
                            }
                        }
                    }
                }
                "activation" => {
                    for (_, v, vp) in self.fields(n, &p, &["window"]).unwrap_or_default() {
                        app.activation_window = self.duration(v, &vp);
                    }
                }
                "borrowable" => app.borrowable = self.bool(n, &p),
                _ => app.hpa_tolerance = self.f64(n, &p),
            }
        }
        app
    }

    fn signals(&mut self, node: &Node, path: &str, app: &mut RawApp) {
        let allowed = ["window", "staleAfter", "qps", "cpu", "memory"];
        for (k, v, vp) in self.fields(node, path, &allowed).unwrap_or_default() {
            match k.as_str() {
                "window" => app.signal_window = self.duration(v, &vp),
                "staleAfter" => app.stale_after = self.duration(v, &vp),
                "qps" => app.qps = Some(self.signal(v, &vp, "targetPerReplica")),
                "cpu" => app.cpu = Some(self.signal(v, &vp, "targetUtilization")),
                _ => app.memory = Some(self.signal(v, &vp, "targetUtilization")),
            }
        }
    }

    fn signal(&mut self, node: &Node, path: &str, target_name: &str) -> RawSignal {
        let mut sig = RawSignal {
            loc: loc_of(node, path),
            ..RawSignal::default()
        };
        for (k, v, vp) in self
            .fields(node, path, &["enabled", target_name, "activation"])
            .unwrap_or_default()
        {
            match k.as_str() {
                "enabled" => sig.enabled = self.bool(v, &vp),
                "activation" => {
                    sig.activation = if target_name == "targetUtilization" && path.ends_with("cpu")
                    {
                        self.quantity(v, &vp, parse_cpu_millis).map(|a| At {
                            value: a.value as f64 / 1000.0,
                            loc: a.loc,
                        })
                    } else if target_name == "targetUtilization" {
                        self.quantity(v, &vp, parse_memory_bytes).map(|a| At {
                            value: a.value as f64,
                            loc: a.loc,
                        })
                    } else {
                        self.f64(v, &vp)
                    }
                }
                _ => sig.target = self.f64(v, &vp),
            }
        }
        sig
    }

    fn limit(&mut self, node: &Node, path: &str) -> RawLimit {
        let mut limit = RawLimit::default();
        for (k, v, vp) in self
            .fields(node, path, &["pods", "percent", "per", "select"])
            .unwrap_or_default()
        {
            match k.as_str() {
                "pods" => limit.pods = self.u32(v, &vp),
                "percent" => limit.percent = self.u32(v, &vp),
                "per" => limit.per = self.duration(v, &vp),
                _ => limit.select = self.select(v, &vp),
            }
        }
        limit
    }

    fn schedule(&mut self, node: &Node, path: &str) -> RawSchedule {
        let mut s = RawSchedule {
            loc: loc_of(node, path),
            ..RawSchedule::default()
        };
        let allowed = ["name", "cron", "timezone", "duration", "minReplicas"];
        let Some(fields) = self.fields(node, path, &allowed) else {
            return s;
        };
        for (k, v, vp) in fields {
            match k.as_str() {
                "name" => s.name = self.string(v, &vp),
                "cron" => s.cron = self.string(v, &vp),
                "timezone" => s.timezone = self.string(v, &vp),
                "duration" => s.duration = self.duration(v, &vp),
                _ => s.min_replicas = self.u32(v, &vp),
            }
        }
        let have = [
            ("name", s.name.is_some(), "a name for the schedule"),
            (
                "cron",
                s.cron.is_some(),
                "a cron expression such as \"0 50 23 10 11 *\"",
            ),
            (
                "duration",
                s.duration.is_some(),
                "how long each slice lasts, e.g. `3h`",
            ),
            (
                "minReplicas",
                s.min_replicas.is_some(),
                "the minimum replicas during the slice",
            ),
        ];
        for (field, present, expected) in have {
            // A field that was written but failed to parse already has its own error.
            if !present && !has_key(node, field) {
                self.missing(node, path, field, expected);
            }
        }
        s
    }
}
