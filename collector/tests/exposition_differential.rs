#![allow(clippy::type_complexity)] // test tables read clearer inline
//! Differential tests against the `prometheus-parse` crate (0.2.x), the parser Spillway's
//! own replaces.
//!
//! On the inputs it handles (plain `\w+` names, label values without `,` `=` `}` `"` or
//! backslashes) both must yield the same samples and values. `prometheus-parse` folds
//! histogram buckets and summary quantiles into one sample per series; the comparison
//! flattens them back into the per-line samples Spillway reports.
//!
//! The second half pins down the inputs `prometheus-parse` gets wrong, asserting both its
//! wrong answer (so the claim stays verified as the crate changes) and Spillway's right one.

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};
use proptest::prelude::*;
use spillway_collector::exposition::{self, MetricKind, write};

type Flat = (String, BTreeMap<String, String>, String, i64);

fn canon_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{v:?}")
    }
}

fn theirs(text: &str) -> Vec<Flat> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    // prometheus-parse stamps samples without a timestamp with a "now" of our choosing;
    // the epoch stands for "no timestamp", as generated timestamps are never 0.
    let sample_time = chrono::DateTime::from_timestamp_millis(0).expect("epoch");
    let scrape = Scrape::parse_at(lines, sample_time).expect("no io errors");
    let mut out = Vec::new();
    for s in &scrape.samples {
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ts = s.timestamp.timestamp_millis();
        match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                out.push((s.metric.clone(), labels, canon_f64(*v), ts))
            }
            Value::Histogram(buckets) => {
                for b in buckets {
                    let mut l = labels.clone();
                    l.insert("le".into(), canon_f64(b.less_than));
                    out.push((format!("{}_bucket", s.metric), l, canon_f64(b.count), ts));
                }
            }
            Value::Summary(qs) => {
                for q in qs {
                    let mut l = labels.clone();
                    l.insert("quantile".into(), canon_f64(q.quantile));
                    out.push((s.metric.clone(), l, canon_f64(q.count), ts));
                }
            }
        }
    }
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

fn ours(text: &str) -> Vec<Flat> {
    let mut out = Vec::new();
    let summary = exposition::parse_samples(text.as_bytes(), |s| {
        let labels = s
            .labels()
            .map(|(k, v)| {
                let v = v.to_cow().into_owned();
                // Bucket bounds and quantiles are numbers to prometheus-parse.
                let v = match k {
                    "le" | "quantile" => canon_f64(v.parse::<f64>().unwrap_or(f64::NAN)),
                    _ => v,
                };
                (k.to_owned(), v)
            })
            .collect();
        out.push((
            s.name.to_owned(),
            labels,
            canon_f64(s.value),
            s.timestamp_ms.unwrap_or(0),
        ));
    });
    assert_eq!(summary.errors, 0, "{:?}", summary.first_errors);
    out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    out
}

type LabelPairs = Vec<(String, String)>;

#[derive(Debug, Clone)]
enum Family {
    Plain {
        kind: Option<MetricKind>,
        series: Vec<(LabelPairs, f64, Option<i64>)>,
    },
    Histogram {
        series: Vec<(LabelPairs, Vec<f64>)>,
    },
    Summary {
        series: Vec<(LabelPairs, Vec<f64>)>,
    },
}

fn simple_labels() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map("[a-z][a-z0-9_]{0,8}", "[a-zA-Z0-9_ ./:-]{0,12}", 0..4).prop_map(
        |m| {
            m.into_iter()
                .filter(|(k, _)| k != "le" && k != "quantile")
                .collect()
        },
    )
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u64..1 << 40).prop_map(|x| x as f64),
        -1e9..1e9f64,
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ]
}

fn family() -> impl Strategy<Value = Family> {
    let plain_kind = prop::option::of(prop::sample::select(vec![
        MetricKind::Counter,
        MetricKind::Gauge,
        MetricKind::Untyped,
    ]));
    let series_vals = prop::collection::vec(0u32..1000, 1..5)
        .prop_map(|v| v.into_iter().map(f64::from).collect::<Vec<_>>());
    prop_oneof![
        3 => (
            plain_kind,
            prop::collection::vec(
                (simple_labels(), value(), prop::option::of(1i64..4_000_000_000_000)),
                1..4
            )
        )
            .prop_map(|(kind, series)| Family::Plain { kind, series }),
        1 => prop::collection::vec((simple_labels(), series_vals.clone()), 1..3)
            .prop_map(|series| Family::Histogram { series }),
        1 => prop::collection::vec((simple_labels(), series_vals), 1..3)
            .prop_map(|series| Family::Summary { series }),
    ]
}

const BOUNDS: [&str; 5] = ["0.005", "0.1", "1", "2.5", "+Inf"];

fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for (i, f) in families.iter().enumerate() {
        // Distinct names per family, so no family's name is another's `_bucket` series.
        let name = format!("fam{i}_metric");
        let with = |labels: &[(String, String)], extra: Option<(&'static str, &str)>| {
            let mut l: Vec<(String, String)> = labels.to_vec();
            if let Some((k, v)) = extra {
                l.push((k.to_owned(), v.to_owned()));
            }
            l
        };
        let emit = |out: &mut String, n: &str, l: Vec<(String, String)>, v: f64, ts| {
            write::sample(
                out,
                n,
                l.iter().map(|(a, b)| (a.as_str(), b.as_str())),
                v,
                ts,
            )
        };
        write::help(&mut out, &name, "Generated family.");
        match f {
            Family::Plain { kind, series } => {
                if let Some(k) = kind {
                    write::type_line(&mut out, &name, *k);
                }
                for (labels, v, ts) in series {
                    emit(&mut out, &name, with(labels, None), *v, *ts);
                }
            }
            Family::Histogram { series } => {
                write::type_line(&mut out, &name, MetricKind::Histogram);
                for (si, (labels, counts)) in series.iter().enumerate() {
                    // Series of one family must differ, or prometheus-parse merges them.
                    let mut labels = labels.clone();
                    labels.push(("series".into(), si.to_string()));
                    for (b, c) in BOUNDS.iter().zip(counts) {
                        emit(
                            &mut out,
                            &format!("{name}_bucket"),
                            with(&labels, Some(("le", b))),
                            *c,
                            None,
                        );
                    }
                    emit(
                        &mut out,
                        &format!("{name}_sum"),
                        with(&labels, None),
                        1.5,
                        None,
                    );
                    emit(
                        &mut out,
                        &format!("{name}_count"),
                        with(&labels, None),
                        9.0,
                        None,
                    );
                }
            }
            Family::Summary { series } => {
                write::type_line(&mut out, &name, MetricKind::Summary);
                for (si, (labels, counts)) in series.iter().enumerate() {
                    let mut labels = labels.clone();
                    labels.push(("series".into(), si.to_string()));
                    for (q, c) in ["0.5", "0.9", "0.99", "1"].iter().zip(counts) {
                        emit(
                            &mut out,
                            &name,
                            with(&labels, Some(("quantile", q))),
                            *c,
                            None,
                        );
                    }
                    emit(
                        &mut out,
                        &format!("{name}_sum"),
                        with(&labels, None),
                        2.0,
                        None,
                    );
                    emit(
                        &mut out,
                        &format!("{name}_count"),
                        with(&labels, None),
                        4.0,
                        None,
                    );
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_samples_as_prometheus_parse(families in prop::collection::vec(family(), 1..8)) {
        let text = render(&families);
        let ours = ours(&text);
        prop_assert!(!ours.is_empty());
        prop_assert_eq!(ours, theirs(&text), "input:\n{}", text);
    }
}

#[test]
fn realistic_gateway_block_matches() {
    let text = "# HELP gateway_requests_total Requests.\n\
                # TYPE gateway_requests_total counter\n\
                gateway_requests_total{tenant=\"t1\",app=\"checkout\",code=\"200\",route=\"/api/v1/items\"} 1027 1700000000000\n\
                gateway_requests_total{tenant=\"t2\",app=\"search\",code=\"503\",route=\"/q\"} 3\n\
                # TYPE gateway_request_seconds histogram\n\
                gateway_request_seconds_bucket{app=\"checkout\",le=\"0.1\"} 10\n\
                gateway_request_seconds_bucket{app=\"checkout\",le=\"+Inf\"} 12\n\
                gateway_request_seconds_sum{app=\"checkout\"} 3.25\n\
                gateway_request_seconds_count{app=\"checkout\"} 12\n";
    let ours = ours(text);
    assert_eq!(ours.len(), 6);
    assert_eq!(ours, theirs(text));
}

fn their_samples(text: &str) -> Vec<prometheus_parse::Sample> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("no io errors")
        .samples
}

fn our_label(text: &str, label: &str) -> Vec<String> {
    let mut out = Vec::new();
    let summary = exposition::parse_samples(text.as_bytes(), |s| {
        out.push(
            s.label(label)
                .map(|v| v.to_cow().into_owned())
                .unwrap_or_default(),
        )
    });
    assert_eq!(summary.errors, 0);
    out
}

/// Names may contain `:` (recording rules write `level:metric:operations`).
/// prometheus-parse matches names with `\w+`, so the whole line fails to match and the
/// sample silently disappears.
#[test]
fn prometheus_parse_drops_names_with_colons() {
    let text = "job:http_requests:rate5m{app=\"a\"} 4\nplain_total 2\n";
    let theirs: Vec<_> = their_samples(text).into_iter().map(|s| s.metric).collect();
    assert_eq!(theirs, ["plain_total"]);
    let mut names = Vec::new();
    exposition::parse_samples(text.as_bytes(), |s| names.push(s.name));
    assert_eq!(names, ["job:http_requests:rate5m", "plain_total"]);
}

/// prometheus-parse splits the label set on every `,`, so a comma inside a quoted value
/// cuts the value short and the rest is dropped.
#[test]
fn prometheus_parse_truncates_values_with_commas() {
    let text = "m{path=\"/a,b\"} 1\n";
    assert_eq!(their_samples(text)[0].labels.get("path"), Some("/a"));
    assert_eq!(our_label(text, "path"), ["/a,b"]);
}

/// prometheus-parse finds the label set with `\{[^}]+\}`, so a `}` inside a quoted value
/// ends the set early, the line stops matching and the sample is dropped.
#[test]
fn prometheus_parse_drops_values_with_closing_brace() {
    let text = "m{path=\"a}b\"} 1\nok 2\n";
    let theirs: Vec<_> = their_samples(text).into_iter().map(|s| s.metric).collect();
    assert_eq!(theirs, ["ok"]);
    assert_eq!(our_label(text, "path"), ["a}b", ""]);
}

/// prometheus-parse neither honours nor removes escapes: `\"` stays escaped and the
/// quote-trimming eats the escaped quote at the end.
#[test]
fn prometheus_parse_mangles_escaped_quotes() {
    let text = "m{msg=\"say \\\"hi\\\"\"} 1\n";
    assert_eq!(
        their_samples(text)[0].labels.get("msg"),
        Some("say \\\"hi\\")
    );
    assert_eq!(our_label(text, "msg"), ["say \"hi\""]);
}

/// A value containing `=` splits into three parts and prometheus-parse drops the label.
#[test]
fn prometheus_parse_drops_labels_with_equals_in_value() {
    let text = "m{q=\"a=b\",x=\"1\"} 1\n";
    let theirs = &their_samples(text)[0];
    assert_eq!(theirs.labels.get("q"), None);
    assert_eq!(theirs.labels.get("x"), Some("1"));
    assert_eq!(our_label(text, "q"), ["a=b"]);
}

/// `{}` is valid (an explicitly empty label set); prometheus-parse drops the sample.
#[test]
fn prometheus_parse_drops_empty_label_sets() {
    let text = "m{} 1\n";
    assert!(their_samples(text).is_empty());
    let mut n = 0;
    exposition::parse_samples(text.as_bytes(), |_| n += 1);
    assert_eq!(n, 1);
}
