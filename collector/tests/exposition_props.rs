//! Property tests: generated expositions round-trip through the writer, and arbitrary or
//! mutated bytes never panic the parser.
//!
//! The fuzzing here is bounded proptest rather than cargo-fuzz because cargo-fuzz needs a
//! nightly toolchain, which Spillway's build does not use. The byte alphabet is weighted
//! towards the format's own punctuation so that mutations reach deep into the grammar.

use proptest::prelude::*;
use spillway_collector::exposition::{
    Entry, Format, MetricKind, Parser, Sample, parse_samples, write,
};

#[derive(Debug, Clone)]
enum Item {
    Help(String, String),
    Type(String, MetricKind),
    Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
        timestamp_ms: Option<i64>,
    },
}

fn metric_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,24}"
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{0,8}",
        // Every character that matters to the label-set grammar, escapes included.
        "[\\\\\"\n,={} \ta-z\\r#]{0,16}",
        any::<String>(),
    ]
}

fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,12}", label_value()), 0..6).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|(n, _)| seen.insert(n.clone()));
        v
    })
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        (0u64..1 << 40).prop_map(|x| x as f64),
        -1e6..1e6f64,
    ]
}

fn kind() -> impl Strategy<Value = MetricKind> {
    prop::sample::select(vec![
        MetricKind::Counter,
        MetricKind::Gauge,
        MetricKind::Histogram,
        MetricKind::Summary,
        MetricKind::Untyped,
        MetricKind::GaugeHistogram,
        MetricKind::StateSet,
        MetricKind::Info,
    ])
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        // A trailing `\r` would read as part of a CRLF line ending; HELP text is the one
        // place the writer does not escape it.
        1 => (metric_name(), "[^\r]{0,30}").prop_map(|(n, t)| Item::Help(n, t)),
        1 => (metric_name(), kind()).prop_map(|(n, k)| Item::Type(n, k)),
        6 => (metric_name(), labels(), value(), proptest::option::of(any::<i64>())).prop_map(
            |(name, labels, value, timestamp_ms)| Item::Sample { name, labels, value, timestamp_ms }
        ),
    ]
}

fn render(items: &[Item]) -> String {
    let mut out = String::new();
    for it in items {
        match it {
            Item::Help(n, t) => write::help(&mut out, n, t),
            Item::Type(n, k) => write::type_line(&mut out, n, *k),
            Item::Sample {
                name,
                labels,
                value,
                timestamp_ms,
            } => write::sample(
                &mut out,
                name,
                labels.iter().map(|(a, b)| (a.as_str(), b.as_str())),
                *value,
                *timestamp_ms,
            ),
        }
    }
    out
}

fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fn check_sample(
    s: &Sample<'_>,
    name: &str,
    labels: &[(String, String)],
    value: f64,
    ts: Option<i64>,
) {
    assert_eq!(s.name, name);
    assert!(same_f64(s.value, value), "{} vs {}", s.value, value);
    assert_eq!(s.timestamp_ms, ts);
    let got: Vec<(String, String)> = s
        .labels()
        .map(|(n, v)| (n.to_owned(), v.to_cow().into_owned()))
        .collect();
    assert_eq!(got, labels);
    for (n, v) in labels {
        let lv = s.label(n).expect("label present");
        assert!(lv.eq_str(v), "eq_str({n}={v:?}) on raw {:?}", lv.raw());
        let mut other = v.clone();
        other.push('x');
        assert!(!lv.eq_str(&other));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip_through_writer(items in prop::collection::vec(item(), 0..24), crlf in any::<bool>()) {
        let mut text = render(&items);
        if crlf {
            text = text.replace('\n', "\r\n");
            // Escaped newlines inside values stay `\n` escapes; only line ends changed.
        }
        let entries: Vec<Entry<'_>> = Parser::new(text.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        prop_assert_eq!(entries.len(), items.len());
        for (entry, item) in entries.iter().zip(&items) {
            match (entry, item) {
                (Entry::Help { name, text }, Item::Help(n, t)) => {
                    let mut want = String::new();
                    write::help(&mut want, n, t);
                    let want = want.trim_end_matches('\n');
                    let want_text = want[("# HELP ".len() + n.len() + 1)..].trim_start_matches([' ', '\t']);
                    prop_assert_eq!(*name, n.as_str());
                    prop_assert_eq!(*text, want_text);
                }
                (Entry::Type { name, kind }, Item::Type(n, k)) => {
                    prop_assert_eq!(*name, n.as_str());
                    prop_assert_eq!(*kind, *k);
                }
                (Entry::Sample(s), Item::Sample { name, labels, value, timestamp_ms }) => {
                    check_sample(s, name, labels, *value, *timestamp_ms);
                }
                (e, i) => prop_assert!(false, "entry {:?} for item {:?}", e, i),
            }
        }
    }
}

/// Lines in `input` as the parser counts them.
fn line_count(input: &[u8]) -> usize {
    let newlines = input.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(input.last().is_some_and(|&b| b != b'\n'))
}

/// Parses `input` every way the API allows and checks the invariants that hold for any
/// input: no panic, error lines within the input, values self-consistent.
fn exercise(input: &[u8]) {
    let lines = line_count(input);
    let mut parser = Parser::new(input);
    let mut samples = 0u64;
    let mut errors = 0u64;
    let mut last_line = 0;
    for entry in parser.by_ref() {
        match entry {
            Ok(Entry::Sample(s)) => {
                samples += 1;
                assert!(valid_name(s.name, true), "metric name {:?}", s.name);
                for (name, v) in s.labels() {
                    assert!(valid_name(name, false), "label name {name:?}");
                    let owned = v.to_cow();
                    assert!(v.eq_str(&owned));
                    assert!(s.label(name).is_some());
                }
            }
            Ok(_) => {}
            Err(e) => {
                errors += 1;
                assert!(
                    e.line >= 1 && e.line <= lines,
                    "line {} of {}",
                    e.line,
                    lines
                );
                assert!(e.line > last_line, "errors out of order");
                last_line = e.line;
                let _ = e.to_string();
            }
        }
    }
    assert!(parser.line() <= lines);
    for entry in Parser::with_format(input, Format::OpenMetrics) {
        if let Err(e) = entry {
            assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {}",
                e.line,
                lines
            );
        }
    }
    let summary = parse_samples(input, |s| {
        let _ = s.label("le");
    });
    assert_eq!((summary.samples, summary.errors), (samples, errors));
}

fn valid_name(name: &str, metric: bool) -> bool {
    let extra = |c: u8| metric && c == b':';
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || extra(c))
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_' || extra(c))
}

fn fuzz_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => any::<u8>(),
        5 => prop::sample::select(b"a_:{}=\",\\\n\r #\t1.eE+-NaInfTYPEHLPUO\0".to_vec()),
    ]
}

fn mutated_exposition() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(item(), 1..12),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, fuzz_byte()), 1..8),
    )
        .prop_map(|(items, edits)| {
            let mut bytes = render(&items).into_bytes();
            for (at, op, b) in edits {
                if bytes.is_empty() {
                    bytes.push(b);
                    continue;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = b,
                    1 => bytes.insert(i, b),
                    2 => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(fuzz_byte(), 0..400)) {
        exercise(&input);
    }

    #[test]
    fn mutated_expositions_never_panic(input in mutated_exposition()) {
        exercise(&input);
    }
}
