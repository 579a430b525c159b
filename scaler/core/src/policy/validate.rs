//! Merging (built-in defaults ← tenant `defaults` ← app overrides) and the semantic checks
//! that refuse a policy which cannot work.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};

use super::model::*;
use super::parse::{At, Loc, RawApp, RawDocument, RawSchedule, Reader};

/// Built-in defaults, used for whatever neither the tenant's `defaults` nor the app sets.
pub mod defaults {
    pub const MIN_REPLICAS: u32 = 1;
    pub const MAX_REPLICAS: u32 = 100;
    pub const SIGNAL_WINDOW_SECS: u32 = 60;
    pub const STALE_AFTER_SECS: u32 = 30;
    pub const QPS_ACTIVATION: f64 = 0.0;
    pub const CPU_TARGET_UTILIZATION: f64 = 0.7;
    pub const MEMORY_TARGET_UTILIZATION: f64 = 0.8;
    pub const SCALE_UP_ABOVE: f64 = 1.0;
    pub const SCALE_DOWN_BELOW: f64 = 0.8;
    pub const UP_WINDOW_SECS: u32 = 0;
    pub const DOWN_WINDOW_SECS: u32 = 300;
    pub const UP_PODS: u32 = 4;
    pub const UP_PERCENT: u32 = 100;
    pub const UP_PERIOD_SECS: u32 = 15;
    pub const DOWN_PERCENT: u32 = 20;
    pub const DOWN_PERIOD_SECS: u32 = 60;
    pub const PANIC_WINDOW_SECS: u32 = 6;
    pub const PANIC_THRESHOLD: f64 = 2.0;
    pub const PANIC_STABLE_WINDOW_SECS: u32 = 60;
    pub const CPU_REQUEST_MILLIS: u64 = 500;
    pub const MEMORY_REQUEST_BYTES: u64 = 512 * 1024 * 1024;
    pub const HPA_TOLERANCE: f64 = 0.1;
    pub const ACTIVATION_WINDOW_SECS: u32 = 30;
}

/// Upper bounds that catch typos (a window of `300m` meant as `300s`) rather than taste.
const MAX_REPLICAS_LIMIT: u32 = 100_000;
const MAX_WINDOW_SECS: u32 = 3_600;
const MAX_PERIOD_SECS: u32 = 1_800;
const MAX_SCHEDULE_SECS: u32 = 31 * 86_400;

fn pick<'a, T>(app: &'a Option<At<T>>, def: &'a Option<At<T>>) -> Option<&'a At<T>> {
    app.as_ref().or(def.as_ref())
}

fn value<T: Copy>(app: &Option<At<T>>, def: &Option<At<T>>, builtin: T) -> T {
    pick(app, def).map_or(builtin, |a| a.value)
}

/// A DNS-1123 label, as Kubernetes names tenants' namespaces and apps are.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn resolve(reader: &mut Reader<'_>, mut doc: RawDocument) -> Option<TenantPolicy> {
    let candidate = doc.candidate.take();
    let tenant = match &doc.tenant {
        Some(t) if is_dns_label(&t.value) => t.value.clone(),
        Some(t) => {
            reader.error(
                &t.loc,
                format!("expected a tenant name made of lowercase letters, digits and `-` (at most 63), found `{}`", t.value),
            );
            String::new()
        }
        None => String::new(),
    };
    let mut namespaces = Vec::new();
    if let Some(list) = &doc.namespaces {
        if list.value.is_empty() {
            reader.error(
                &list.loc,
                "expected at least one namespace; an empty list would refuse every ScaledObject",
            );
        }
        let mut seen = BTreeSet::new();
        for ns in &list.value {
            if !is_dns_label(&ns.value) {
                reader.error(
                    &ns.loc,
                    format!("expected a Kubernetes namespace name, found `{}`", ns.value),
                );
            } else if !seen.insert(ns.value.clone()) {
                reader.error(&ns.loc, format!("namespace `{}` is listed twice", ns.value));
            } else {
                namespaces.push(ns.value.clone());
            }
        }
    }
    if let Some(apps_loc) = &doc.apps_loc
        && doc.apps.is_empty()
    {
        reader.error(apps_loc, "expected at least one app; an app must be listed under `apps` to be scaled (`checkout: {}` is enough)");
    }
    let mut apps = BTreeMap::new();
    for (name, raw) in &doc.apps {
        if !is_dns_label(&name.value) {
            reader.error(
                &name.loc,
                format!("expected an app name made of lowercase letters, digits and `-` (at most 63), found `{}`", name.value),
            );
            continue;
        }
        if let Some(app) = resolve_app(reader, &tenant, &name.value, raw, &doc.defaults) {
            apps.insert(name.value.clone(), Arc::new(app));
        }
    }
    let rollout = super::grade::resolve(reader, &doc.rollout, &apps);
    let candidate = candidate.and_then(|candidate| {
        super::shadow::resolve_candidate(reader, *candidate, &doc, &apps).map(Box::new)
    });
    if !reader.errors.is_empty() {
        return None;
    }
    let (tenant_line, tenant_column) = doc
        .tenant
        .as_ref()
        .map_or((0, 0), |t| (t.loc.line, t.loc.column));
    Some(TenantPolicy {
        tenant,
        source_name: reader.source_name.to_owned(),
        tenant_line,
        tenant_column,
        namespaces,
        apps,
        candidate,
        rollout,
    })
}

/// Resolves one app's entry over the tenant's `defaults` and the built-in defaults, one
/// section at a time; every problem found is reported, and any makes the app `None`.
fn resolve_app(
    reader: &mut Reader<'_>,
    tenant: &str,
    name: &str,
    app: &RawApp,
    def: &RawApp,
) -> Option<AppPolicy> {
    let errors_before = reader.errors.len();
    let replicas = resolve_replicas(reader, name, app, def);
    let signals = resolve_signals(reader, name, app, def, replicas.min, errors_before);
    let hysteresis = resolve_hysteresis(reader, app, def);
    let limits = resolve_limits(reader, app, def);
    let panic = resolve_panic(reader, app, def, signals.window_secs);
    let schedules = resolve_schedules(reader, app, def, replicas.max);
    let placement = resolve_placement(app, def);
    let (hpa_tolerance, activation_window) = resolve_hpa_and_activation(reader, app, def);
    if reader.errors.len() != errors_before {
        return None;
    }
    let min = replicas.min;
    Some(AppPolicy {
        tenant: tenant.to_owned(),
        app: name.to_owned(),
        replicas,
        signals,
        hysteresis,
        limits,
        panic,
        schedules,
        placement,
        activation: Activation {
            scale_to_zero: min == 0,
            window_secs: activation_window,
        },
        hpa_tolerance,
        borrowable: app.borrowable.as_ref().is_some_and(|b| b.value),
    })
}

/// Errors about values inherited from built-in defaults point at the app's own entry.
fn here(app: &RawApp, loc: Option<&Loc>) -> Loc {
    loc.cloned().unwrap_or_else(|| app.loc.clone())
}

fn resolve_replicas(
    reader: &mut Reader<'_>,
    name: &str,
    app: &RawApp,
    def: &RawApp,
) -> ReplicaBounds {
    let min = value(&app.min, &def.min, defaults::MIN_REPLICAS);
    let max = value(&app.max, &def.max, defaults::MAX_REPLICAS);
    let max_loc = here(app, pick(&app.max, &def.max).map(|a| &a.loc));
    if max == 0 || max > MAX_REPLICAS_LIMIT {
        reader.error(
            &max_loc,
            format!("expected replicas.max from 1 to {MAX_REPLICAS_LIMIT}, found {max}"),
        );
    }
    if min > max {
        let loc = here(app, pick(&app.min, &def.min).map(|a| &a.loc));
        reader.error(
            &loc,
            format!("replicas.min ({min}) is above replicas.max ({max}) for app `{name}`; expected min ≤ max"),
        );
    }
    ReplicaBounds { min, max }
}

/// The signals to scale on; `min` 0 needs one that can wake the app up. The "no signal"
/// checks speak only when the app's entry has no other error (`errors_before`).
fn resolve_signals(
    reader: &mut Reader<'_>,
    name: &str,
    app: &RawApp,
    def: &RawApp,
    min: u32,
    errors_before: usize,
) -> Signals {
    let window = value(
        &app.signal_window,
        &def.signal_window,
        defaults::SIGNAL_WINDOW_SECS,
    );
    check_range(
        reader,
        pick(&app.signal_window, &def.signal_window),
        window,
        1,
        MAX_WINDOW_SECS,
        "signals.window",
    );
    let stale = value(
        &app.stale_after,
        &def.stale_after,
        defaults::STALE_AFTER_SECS,
    );
    check_range(
        reader,
        pick(&app.stale_after, &def.stale_after),
        stale,
        1,
        MAX_WINDOW_SECS,
        "signals.staleAfter",
    );

    let qps = merged_signal(reader, app.qps.as_ref(), def.qps.as_ref(), None).and_then(|(target, activation, loc)| {
        match target {
            None => {
                reader.error(&loc, "missing field `targetPerReplica`; expected the requests per second one replica should serve, e.g. `targetPerReplica: 150`");
                None
            }
            Some(t) => Some(QpsTarget {
                target_per_replica: t,
                activation: activation.unwrap_or(defaults::QPS_ACTIVATION),
            }),
        }
    });
    let cpu = merged_signal(
        reader,
        app.cpu.as_ref(),
        def.cpu.as_ref(),
        Some(defaults::CPU_TARGET_UTILIZATION),
    )
    .map(|(t, a, _)| UtilizationTarget {
        target_utilization: t.unwrap_or(defaults::CPU_TARGET_UTILIZATION),
        activation: a,
    });
    let memory = merged_signal(
        reader,
        app.memory.as_ref(),
        def.memory.as_ref(),
        Some(defaults::MEMORY_TARGET_UTILIZATION),
    )
    .map(|(t, a, _)| UtilizationTarget {
        target_utilization: t.unwrap_or(defaults::MEMORY_TARGET_UTILIZATION),
        activation: a,
    });
    if qps.is_none() && cpu.is_none() && memory.is_none() && reader.errors.len() == errors_before {
        reader.error(
            &app.loc,
            format!("app `{name}` has no signal to scale on; expected at least one of signals.qps, signals.cpu or signals.memory (in `defaults` or the app)"),
        );
    }

    let can_activate = qps.is_some()
        || cpu.is_some_and(|c| c.activation.is_some())
        || memory.is_some_and(|m| m.activation.is_some());
    if min == 0 && !can_activate && reader.errors.len() == errors_before {
        let loc = here(app, pick(&app.min, &def.min).map(|a| &a.loc));
        reader.error(
            &loc,
            format!("replicas.min is 0 for app `{name}` but no signal can wake it up; expected signals.qps, or an `activation` threshold on signals.cpu or signals.memory"),
        );
    }
    Signals {
        window_secs: window,
        stale_after_secs: stale,
        qps,
        cpu,
        memory,
    }
}

fn resolve_hysteresis(reader: &mut Reader<'_>, app: &RawApp, def: &RawApp) -> Hysteresis {
    let up_above = value(
        &app.scale_up_above,
        &def.scale_up_above,
        defaults::SCALE_UP_ABOVE,
    );
    let down_below = value(
        &app.scale_down_below,
        &def.scale_down_below,
        defaults::SCALE_DOWN_BELOW,
    );
    if !(1.0..=10.0).contains(&up_above) {
        let loc = here(
            app,
            pick(&app.scale_up_above, &def.scale_up_above).map(|a| &a.loc),
        );
        reader.error(&loc, format!("expected hysteresis.scaleUpAbove from 1.0 to 10.0 (a ratio of load to target), found {up_above}"));
    }
    if !(down_below > 0.0 && down_below < 1.0) {
        let loc = here(
            app,
            pick(&app.scale_down_below, &def.scale_down_below).map(|a| &a.loc),
        );
        reader.error(&loc, format!("expected hysteresis.scaleDownBelow above 0 and below 1.0 (a ratio of load to target), found {down_below}"));
    }
    let up_window = value(&app.up_window, &def.up_window, defaults::UP_WINDOW_SECS);
    check_range(
        reader,
        pick(&app.up_window, &def.up_window),
        up_window,
        0,
        MAX_WINDOW_SECS,
        "hysteresis.upWindow",
    );
    let down_window = value(
        &app.down_window,
        &def.down_window,
        defaults::DOWN_WINDOW_SECS,
    );
    check_range(
        reader,
        pick(&app.down_window, &def.down_window),
        down_window,
        0,
        MAX_WINDOW_SECS,
        "hysteresis.downWindow",
    );
    Hysteresis {
        scale_up_above: up_above,
        scale_down_below: down_below,
        up_window_secs: up_window,
        down_window_secs: down_window,
    }
}

fn resolve_limits(reader: &mut Reader<'_>, app: &RawApp, def: &RawApp) -> Limits {
    let up = merged_limit(
        reader,
        &app.up,
        &def.up,
        "up",
        (
            Some(defaults::UP_PODS),
            Some(defaults::UP_PERCENT),
            defaults::UP_PERIOD_SECS,
        ),
    );
    let down = merged_limit(
        reader,
        &app.down,
        &def.down,
        "down",
        (
            None,
            Some(defaults::DOWN_PERCENT),
            defaults::DOWN_PERIOD_SECS,
        ),
    );
    Limits { up, down }
}

/// The panic rule; its window is at most the signal window.
fn resolve_panic(reader: &mut Reader<'_>, app: &RawApp, def: &RawApp, window: u32) -> PanicRule {
    let panic = PanicRule {
        enabled: value(&app.panic_enabled, &def.panic_enabled, true),
        window_secs: value(
            &app.panic_window,
            &def.panic_window,
            defaults::PANIC_WINDOW_SECS,
        ),
        threshold: value(
            &app.panic_threshold,
            &def.panic_threshold,
            defaults::PANIC_THRESHOLD,
        ),
        stable_window_secs: value(
            &app.panic_stable_window,
            &def.panic_stable_window,
            defaults::PANIC_STABLE_WINDOW_SECS,
        ),
    };
    check_range(
        reader,
        pick(&app.panic_window, &def.panic_window),
        panic.window_secs,
        1,
        window,
        "panic.window (at most signals.window)",
    );
    check_range(
        reader,
        pick(&app.panic_stable_window, &def.panic_stable_window),
        panic.stable_window_secs,
        panic.window_secs.max(1),
        MAX_WINDOW_SECS,
        "panic.stableWindow (at least panic.window)",
    );
    if !(panic.threshold > 1.0 && panic.threshold <= 100.0) {
        let loc = here(
            app,
            pick(&app.panic_threshold, &def.panic_threshold).map(|a| &a.loc),
        );
        reader.error(&loc, format!("expected panic.threshold above 1.0 and at most 100 (needed replicas ÷ ready replicas), found {}", panic.threshold));
    }
    panic
}

/// Schedules: an app's list replaces the tenant's list as a whole.
fn resolve_schedules(
    reader: &mut Reader<'_>,
    app: &RawApp,
    def: &RawApp,
    max: u32,
) -> Vec<Schedule> {
    let raw_schedules = app.schedules.as_ref().or(def.schedules.as_ref());
    let mut schedules = Vec::new();
    if let Some(list) = raw_schedules {
        let mut names = BTreeSet::new();
        for raw in &list.value {
            if let Some(s) = resolve_schedule(reader, raw, max) {
                if !names.insert(s.name.clone()) {
                    reader.error(
                        &raw.loc,
                        format!(
                            "schedule name `{}` is used twice; expected unique names",
                            s.name
                        ),
                    );
                }
                schedules.push(s);
            }
        }
    }
    schedules
}

fn resolve_placement(app: &RawApp, def: &RawApp) -> PlacementRule {
    let burst_max = pick(&app.burst_max, &def.burst_max).map(|a| a.value);
    PlacementRule {
        burst: BurstRule {
            enabled: value(&app.burst_enabled, &def.burst_enabled, true),
            max_replicas: burst_max,
        },
        requests: ResourceRequests {
            cpu_millis: value(
                &app.cpu_request,
                &def.cpu_request,
                defaults::CPU_REQUEST_MILLIS,
            ),
            memory_bytes: value(
                &app.memory_request,
                &def.memory_request,
                defaults::MEMORY_REQUEST_BYTES,
            ),
        },
    }
}

/// `hpaTolerance` and `activation.window`.
fn resolve_hpa_and_activation(reader: &mut Reader<'_>, app: &RawApp, def: &RawApp) -> (f64, u32) {
    let hpa_tolerance = value(
        &app.hpa_tolerance,
        &def.hpa_tolerance,
        defaults::HPA_TOLERANCE,
    );
    if !(0.0..1.0).contains(&hpa_tolerance) {
        let loc = here(
            app,
            pick(&app.hpa_tolerance, &def.hpa_tolerance).map(|a| &a.loc),
        );
        reader.error(&loc, format!("expected hpaTolerance from 0 (HPA configured as pass-through) to below 1.0 (Kubernetes' default is 0.1), found {hpa_tolerance}"));
    }
    let activation_window = value(
        &app.activation_window,
        &def.activation_window,
        defaults::ACTIVATION_WINDOW_SECS,
    );
    check_range(
        reader,
        pick(&app.activation_window, &def.activation_window),
        activation_window,
        1,
        MAX_WINDOW_SECS,
        "activation.window",
    );
    (hpa_tolerance, activation_window)
}

fn check_range(
    reader: &mut Reader<'_>,
    at: Option<&At<u32>>,
    v: u32,
    lo: u32,
    hi: u32,
    what: &str,
) {
    if let Some(at) = at
        && !(lo..=hi).contains(&v)
    {
        reader.error(
            &at.loc,
            format!("expected {what} from {lo}s to {hi}s, found {v}s"),
        );
    }
}

/// Merges one signal's blocks. Returns `None` when the signal is not configured or is
/// disabled; otherwise (target, activation, where to point errors).
fn merged_signal(
    reader: &mut Reader<'_>,
    app: Option<&super::parse::RawSignal>,
    def: Option<&super::parse::RawSignal>,
    utilization_default: Option<f64>,
) -> Option<(Option<f64>, Option<f64>, Loc)> {
    if app.is_none() && def.is_none() {
        return None;
    }
    let none = super::parse::RawSignal::default();
    let a = app.unwrap_or(&none);
    let d = def.unwrap_or(&none);
    let loc = app.or(def).map(|s| s.loc.clone()).unwrap_or_default();
    if !value(&a.enabled, &d.enabled, true) {
        return None;
    }
    let target = pick(&a.target, &d.target);
    if let Some(t) = target {
        match utilization_default {
            Some(_) if !(t.value > 0.0 && t.value <= 1.0) => reader.error(
                &t.loc,
                format!("expected targetUtilization above 0 and at most 1.0 (a fraction of the pod's request), found {}", t.value),
            ),
            None if t.value <= 0.0 => reader.error(
                &t.loc,
                format!("expected targetPerReplica above 0 (requests per second per replica), found {}", t.value),
            ),
            _ => {}
        }
    }
    let activation = pick(&a.activation, &d.activation);
    if let Some(act) = activation
        && act.value < 0.0
    {
        reader.error(
            &act.loc,
            format!("expected activation of 0 or more, found {}", act.value),
        );
    }
    Some((target.map(|t| t.value), activation.map(|a| a.value), loc))
}

fn merged_limit(
    reader: &mut Reader<'_>,
    app: &super::parse::RawLimit,
    def: &super::parse::RawLimit,
    direction: &str,
    builtin: (Option<u32>, Option<u32>, u32),
) -> RateLimit {
    let pods = pick(&app.pods, &def.pods);
    let percent = pick(&app.percent, &def.percent);
    let select = value(&app.select, &def.select, SelectPolicy::Max);
    let period = value(&app.per, &def.per, builtin.2);
    if let Some(p) = pick(&app.per, &def.per)
        && !(1..=MAX_PERIOD_SECS).contains(&p.value)
    {
        reader.error(
            &p.loc,
            format!(
                "expected limits.{direction}.per from 1s to {MAX_PERIOD_SECS}s, found {}s",
                p.value
            ),
        );
    }
    if let Some(p) = pods
        && p.value == 0
    {
        reader.error(&p.loc, format!("expected limits.{direction}.pods of at least 1 (use `select: Disabled` to forbid scaling {direction})"));
    }
    if let Some(p) = percent {
        let hi = if direction == "down" { 100 } else { 10_000 };
        if !(1..=hi).contains(&p.value) {
            reader.error(
                &p.loc,
                format!(
                    "expected limits.{direction}.percent from 1 to {hi}, found {}",
                    p.value
                ),
            );
        }
    }
    // Built-in pods/percent apply only when the tenant set neither, so that writing
    // `percent: 50` alone means "50%", not "max(4 pods, 50%)".
    let (pods, percent) = if pods.is_none() && percent.is_none() {
        (builtin.0, builtin.1)
    } else {
        (pods.map(|p| p.value), percent.map(|p| p.value))
    };
    RateLimit {
        pods,
        percent,
        period_secs: period,
        select,
    }
}

pub fn cron_parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Optional).build()
}

fn resolve_schedule(reader: &mut Reader<'_>, raw: &RawSchedule, max: u32) -> Option<Schedule> {
    let before = reader.errors.len();
    let cron = raw.cron.as_ref().and_then(|c| match cron_parser().parse(&c.value) {
        Ok(cron) => Some(cron),
        Err(e) => {
            reader.error(
                &c.loc,
                format!("expected a cron expression (5 fields, or 6 with seconds first, e.g. \"0 50 23 10 11 *\"), found `{}`: {e}", c.value),
            );
            None
        }
    });
    let timezone = match &raw.timezone {
        None => Some(Tz::UTC),
        Some(tz) => {
            match Tz::from_str(&tz.value) {
                Ok(tz) => Some(tz),
                Err(_) => {
                    reader.error(&tz.loc, format!("expected an IANA time zone such as `Asia/Shanghai` or `UTC`, found `{}`", tz.value));
                    None
                }
            }
        }
    };
    if let (Some(c), Some(cron), Some(tz)) = (&raw.cron, &cron, timezone)
        && let Some(problem) = super::cron_check::evaluation_problem(cron, tz)
    {
        reader.error(&c.loc, format!("`{}`: {problem}", c.value));
    }
    if let Some(d) = &raw.duration
        && !(1..=MAX_SCHEDULE_SECS).contains(&d.value)
    {
        reader.error(
            &d.loc,
            format!("expected a duration from 1s to 31d, found {}s", d.value),
        );
    }
    if let Some(m) = &raw.min_replicas
        && m.value > max
    {
        reader.error(&m.loc, format!("minReplicas ({}) is above replicas.max ({max}); the schedule could never be honoured", m.value));
    }
    if let Some(n) = &raw.name
        && n.value.trim().is_empty()
    {
        reader.error(&n.loc, "expected a non-empty schedule name");
    }
    if reader.errors.len() != before {
        return None;
    }
    Some(Schedule {
        name: raw.name.as_ref()?.value.clone(),
        cron_text: raw.cron.as_ref()?.value.clone(),
        cron: cron?,
        timezone: timezone?,
        duration_secs: raw.duration.as_ref()?.value,
        min_replicas: raw.min_replicas.as_ref()?.value,
    })
}
