//! Shared helpers for Spillway benchmarks: deterministic inputs and the small pieces of
//! ingest logic the benchmarks time, kept here so they are unit-tested too; and
//! [`parsers`], every parser of outside input as one table for the property tests and
//! the `parser_fuzz` long run.

pub mod parsers;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use spillway_collector::exposition::{ParseSummary, parse_samples};

/// A tiny xorshift64 generator: deterministic inputs without a `rand` dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A generated exposition and what is in it.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub lines: u64,
    pub samples: u64,
}

const APPS: [&str; 16] = [
    "checkout",
    "search",
    "cart",
    "payments",
    "catalog",
    "auth",
    "profile",
    "reviews",
    "shipping",
    "inventory",
    "pricing",
    "recommend",
    "media",
    "notify",
    "ledger",
    "gateway",
];
const CODES: [&str; 5] = ["200", "201", "404", "500", "503"];
const METHODS: [&str; 2] = ["GET", "POST"];
const ROUTES: [&str; 3] = ["/api/v1/items", "/api/v1/orders", "/healthz"];
/// Some gateways put raw request data in labels; these exercise the escape path.
const ODD_ROUTE: &str = r#"/search/\"q\"/C:\\tmp"#;
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// Lines per workload: 30 request counters, 14 histogram lines, 2 gauges, 1 byte counter.
const LINES_PER_WORKLOAD: u64 = 47;
const META_LINES: u64 = 10;

/// A realistic gateway `/metrics` page of about `target_lines` lines (never more): HELP and
/// TYPE per family, request counters per tenant/app/code/method/route, a latency
/// histogram per workload, a few gauges, and one workload in 25 with escaped route labels.
pub fn gateway_exposition(seed: u64, target_lines: u64) -> Exposition {
    let mut rng = XorShift::new(seed);
    let workloads = target_lines.saturating_sub(META_LINES) / LINES_PER_WORKLOAD;
    let workload = |i: u64| {
        let tenant = format!("t{}", i / APPS.len() as u64);
        let app = APPS[(i % APPS.len() as u64) as usize];
        (tenant, app)
    };
    let route = |i: u64, r: usize| {
        if i % 25 == 7 && r == 0 {
            ODD_ROUTE
        } else {
            ROUTES[r]
        }
    };
    let mut t = String::with_capacity((target_lines * 110) as usize);
    let mut lines = 0u64;
    let mut samples = 0u64;

    t.push_str("# HELP gateway_requests_total Requests handled by the gateway.\n");
    t.push_str("# TYPE gateway_requests_total counter\n");
    lines += 2;
    for i in 0..workloads {
        let (tenant, app) = workload(i);
        for code in CODES {
            for method in METHODS {
                for r in 0..ROUTES.len() {
                    let _ = writeln!(
                        t,
                        "gateway_requests_total{{tenant=\"{tenant}\",app=\"{app}\",code=\"{code}\",method=\"{method}\",route=\"{}\"}} {}",
                        route(i, r),
                        rng.below(10_000_000)
                    );
                    lines += 1;
                    samples += 1;
                }
            }
        }
    }

    t.push_str("# HELP gateway_request_duration_seconds Request latency at the gateway.\n");
    t.push_str("# TYPE gateway_request_duration_seconds histogram\n");
    lines += 2;
    for i in 0..workloads {
        let (tenant, app) = workload(i);
        let mut cumulative = 0u64;
        for le in BUCKETS {
            cumulative += rng.below(5_000);
            let _ = writeln!(
                t,
                "gateway_request_duration_seconds_bucket{{tenant=\"{tenant}\",app=\"{app}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = rng.below(100_000_000) as f64 / 1000.0;
        let _ = writeln!(
            t,
            "gateway_request_duration_seconds_sum{{tenant=\"{tenant}\",app=\"{app}\"}} {sum}"
        );
        let _ = writeln!(
            t,
            "gateway_request_duration_seconds_count{{tenant=\"{tenant}\",app=\"{app}\"}} {cumulative}"
        );
        lines += BUCKETS.len() as u64 + 2;
        samples += BUCKETS.len() as u64 + 2;
    }

    t.push_str("# HELP gateway_active_connections Open downstream connections.\n");
    t.push_str("# TYPE gateway_active_connections gauge\n");
    t.push_str("# HELP gateway_upstream_bytes_total Bytes sent upstream.\n");
    t.push_str("# TYPE gateway_upstream_bytes_total counter\n");
    t.push_str("# HELP gateway_pool_utilisation Upstream pool use, 0..1.\n");
    t.push_str("# TYPE gateway_pool_utilisation gauge\n");
    lines += 6;
    for i in 0..workloads {
        let (tenant, app) = workload(i);
        let _ = writeln!(
            t,
            "gateway_active_connections{{tenant=\"{tenant}\",app=\"{app}\"}} {}",
            rng.below(2_000)
        );
        let _ = writeln!(
            t,
            "gateway_upstream_bytes_total{{tenant=\"{tenant}\",app=\"{app}\"}} {}e3",
            rng.below(1 << 40)
        );
        let _ = writeln!(
            t,
            "gateway_pool_utilisation{{tenant=\"{tenant}\",app=\"{app}\"}} 0.{:04}",
            rng.below(10_000)
        );
        lines += 3;
        samples += 3;
    }
    Exposition {
        text: t,
        lines,
        samples,
    }
}

/// A `(tenant, app)` key that can be borrowed from an owned `(String, String)`, so a map
/// keyed by owned strings can be probed with borrowed ones: no allocation on a hit.
pub trait WorkloadRef {
    fn tenant(&self) -> &str;
    fn app(&self) -> &str;
}

impl WorkloadRef for (String, String) {
    fn tenant(&self) -> &str {
        &self.0
    }
    fn app(&self) -> &str {
        &self.1
    }
}

impl WorkloadRef for (&str, &str) {
    fn tenant(&self) -> &str {
        self.0
    }
    fn app(&self) -> &str {
        self.1
    }
}

impl<'a> Borrow<dyn WorkloadRef + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn WorkloadRef + 'a) {
        self
    }
}

/// Must hash exactly as `(String, String)` does: a tuple hashes its fields in order and
/// `String` hashes as `str`.
impl Hash for dyn WorkloadRef + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.tenant().hash(state);
        self.app().hash(state);
    }
}

impl PartialEq for dyn WorkloadRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.tenant() == other.tenant() && self.app() == other.app()
    }
}

impl Eq for dyn WorkloadRef + '_ {}

pub type WorkloadTotals = HashMap<(String, String), f64>;

/// The collector's ingest step in miniature: for every `metric` sample, read its `tenant`
/// and `app` labels and add the value to that workload's total. Allocates only for a
/// workload seen for the first time or for label values with escapes.
pub fn ingest_workloads(input: &[u8], metric: &str, totals: &mut WorkloadTotals) -> ParseSummary {
    parse_samples(input, |s| {
        if s.name != metric {
            return;
        }
        // One pass over the label set for both labels, rather than a scan per lookup.
        let (mut tenant, mut app) = (None, None);
        for (name, value) in s.labels() {
            match name {
                "tenant" => tenant = Some(value),
                "app" => app = Some(value),
                _ => continue,
            }
            if tenant.is_some() && app.is_some() {
                break;
            }
        }
        let (Some(tenant), Some(app)) = (tenant, app) else {
            return;
        };
        let (tenant, app) = (tenant.to_cow(), app.to_cow());
        let key = (&*tenant, &*app);
        if let Some(total) = totals.get_mut(&key as &dyn WorkloadRef) {
            *total += s.value;
        } else {
            totals.insert((tenant.into_owned(), app.into_owned()), s.value);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_sized() {
        let a = gateway_exposition(7, 10_000);
        let b = gateway_exposition(7, 10_000);
        assert_eq!(a.text, b.text);
        assert!(a.lines <= 10_000 && a.lines > 9_900, "{}", a.lines);
        assert_eq!(a.text.lines().count() as u64, a.lines);
        assert_ne!(a.text, gateway_exposition(8, 10_000).text);
    }

    #[test]
    fn generated_input_parses_cleanly() {
        let e = gateway_exposition(1, 5_000);
        let summary = parse_samples(e.text.as_bytes(), |_| {});
        assert_eq!(summary.errors, 0, "{:?}", summary.first_errors);
        assert_eq!(summary.samples, e.samples);
        assert!(e.text.contains(r#"\"q\""#));
    }

    #[test]
    fn borrowed_lookup_finds_owned_keys() {
        let mut m: WorkloadTotals = HashMap::new();
        m.insert(("t1".into(), "checkout".into()), 1.0);
        let probe = ("t1", "checkout");
        assert_eq!(m.get(&probe as &dyn WorkloadRef), Some(&1.0));
        let miss = ("t1", "search");
        assert_eq!(m.get(&miss as &dyn WorkloadRef), None);
    }

    #[test]
    fn ingest_matches_a_naive_sum() {
        let e = gateway_exposition(3, 3_000);
        let mut totals = WorkloadTotals::new();
        ingest_workloads(e.text.as_bytes(), "gateway_requests_total", &mut totals);
        let mut naive: HashMap<(String, String), f64> = HashMap::new();
        parse_samples(e.text.as_bytes(), |s| {
            if s.name == "gateway_requests_total" {
                let t = s.label("tenant").map(|v| v.to_cow().into_owned());
                let a = s.label("app").map(|v| v.to_cow().into_owned());
                if let (Some(t), Some(a)) = (t, a) {
                    *naive.entry((t, a)).or_default() += s.value;
                }
            }
        });
        assert!(!naive.is_empty());
        assert_eq!(totals, naive);
    }
}
