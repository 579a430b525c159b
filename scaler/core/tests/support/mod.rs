//! Shared test helpers: a Vec-backed `SignalView` and policies built from YAML snippets.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use spillway_core::policy::{AppPolicy, parse_policy};
use spillway_model::signal::{Signal, SignalView};

/// Per-second samples per signal, as the collector's store would hold them.
#[derive(Clone, Debug, Default)]
pub struct VecSignals {
    series: BTreeMap<Signal, BTreeMap<i64, f64>>,
    lower_bounds: BTreeMap<Signal, std::collections::BTreeSet<i64>>,
}

impl VecSignals {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, signal: Signal, at: i64, value: f64) {
        self.series.entry(signal).or_default().insert(at, value);
    }

    /// One value per second over `[from, to)`.
    pub fn fill(&mut self, signal: Signal, from: i64, to: i64, value: f64) {
        for t in from..to {
            self.set(signal, t, value);
        }
    }

    /// Marks the values in `[from, to)` as lower bounds (summed while a shard was lost).
    pub fn mark_lower_bound(&mut self, signal: Signal, from: i64, to: i64) {
        self.lower_bounds
            .entry(signal)
            .or_default()
            .extend(from..to);
    }

    pub fn clear(&mut self, signal: Signal) {
        self.series.remove(&signal);
    }

    /// Drops samples older than `before` (a bounded horizon, or a fresh start).
    pub fn forget_before(&mut self, before: i64) {
        for s in self.series.values_mut() {
            *s = s.split_off(&before);
        }
    }

    fn window(&self, signal: Signal, now: i64, window_secs: u32) -> impl Iterator<Item = f64> + '_ {
        let from = now - i64::from(window_secs) + 1;
        self.series
            .get(&signal)
            .into_iter()
            .flat_map(move |s| s.range(from..=now).map(|(_, v)| *v))
    }
}

impl SignalView for VecSignals {
    fn mean(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64> {
        let (n, sum) = self
            .window(signal, now, window_secs)
            .fold((0u32, 0.0), |(n, s), v| (n + 1, s + v));
        (n > 0).then(|| sum / f64::from(n))
    }
    fn max(&self, signal: Signal, now: i64, window_secs: u32) -> Option<f64> {
        self.window(signal, now, window_secs).reduce(f64::max)
    }
    fn newest(&self, signal: Signal) -> Option<i64> {
        self.series.get(&signal)?.keys().next_back().copied()
    }
    fn oldest(&self, signal: Signal) -> Option<i64> {
        self.series.get(&signal)?.keys().next().copied()
    }
    fn lower_bound(&self, signal: Signal, now: i64, window_secs: u32) -> bool {
        let from = now - i64::from(window_secs) + 1;
        self.lower_bounds
            .get(&signal)
            .is_some_and(|marked| marked.range(from..=now).next().is_some())
    }
}

/// A policy for app `web` of tenant `t`, whose `defaults` block is `defaults` (YAML, any
/// indentation-free lines, e.g. `replicas: { min: 1, max: 50 }`).
pub fn app_policy(defaults: &str) -> Arc<AppPolicy> {
    let indented: String = defaults.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!(
        "apiVersion: spillway.io/v1\nkind: ScalingPolicy\nmetadata: {{ tenant: t }}\nspec:\n  namespaces: [t]\n  defaults:\n{indented}  apps:\n    web: {{}}\n"
    );
    match parse_policy("test.yaml", &text) {
        Ok(p) => Arc::clone(&p.apps["web"]),
        Err(e) => panic!("test policy does not parse:\n{e}\n---\n{text}"),
    }
}

/// A QPS-only policy with no stabilization, no panic and wide-open limits, so each test
/// can switch on just the rule it is about.
pub fn bare_qps(extra: &str) -> Arc<AppPolicy> {
    let base = "replicas: { min: 1, max: 100 }\nsignals: { window: 10s, qps: { targetPerReplica: 100 } }\nhpaTolerance: 0\n";
    let mut text = String::from(base);
    let has = |k: &str| extra.lines().any(|l| l.starts_with(k));
    if !has("hysteresis") {
        text.push_str("hysteresis: { scaleUpAbove: 1.0, scaleDownBelow: 0.8, upWindow: 0s, downWindow: 0s }\n");
    }
    if !has("limits") {
        text.push_str(
            "limits: { up: { percent: 10000, per: 1s }, down: { percent: 100, per: 1s } }\n",
        );
    }
    if !has("panic") {
        text.push_str("panic: { enabled: false }\n");
    }
    let base_keys = ["replicas", "signals", "hpaTolerance"];
    let text: String = text
        .lines()
        .filter(|l| !base_keys.iter().any(|k| l.starts_with(k) && has(k)))
        .map(|l| format!("{l}\n"))
        .collect();
    app_policy(&format!("{text}{extra}"))
}
