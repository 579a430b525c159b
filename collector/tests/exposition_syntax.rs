//! Hand-written cases: accepted syntax, and every error kind with its exact line number.

use spillway_collector::exposition::{
    Entry, Format, LineError, LineErrorKind, MetricKind, ParseSummary, Parser, Sample,
    parse_samples, parse_samples_as,
};

fn samples(input: &str) -> Vec<Sample<'_>> {
    Parser::new(input.as_bytes())
        .map(|e| match e {
            Ok(e) => e,
            Err(e) => panic!("unexpected error: {e}"),
        })
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn one(input: &str) -> Sample<'_> {
    let mut all = samples(input);
    assert_eq!(all.len(), 1, "{input:?}");
    all.remove(0)
}

fn labels(s: &Sample<'_>) -> Vec<(String, String)> {
    s.labels()
        .map(|(n, v)| (n.to_owned(), v.to_cow().into_owned()))
        .collect()
}

fn errors(input: &[u8]) -> Vec<(usize, LineErrorKind)> {
    Parser::new(input)
        .filter_map(Result::err)
        .map(|e| (e.line, e.kind))
        .collect()
}

#[test]
fn metadata_entries() {
    let input = "# HELP http_requests_total Total requests.\n\
                 # TYPE http_requests_total counter\n\
                 # UNIT http_request_seconds seconds\n\
                 # a plain comment\n\
                 #HELP not_help because no blank\n\
                 # HELP empty_help\n\
                 # TYPE t_unknown unknown\n\
                 # TYPE t_gh gaugehistogram\n";
    let entries: Vec<_> = Parser::new(input.as_bytes()).map(Result::unwrap).collect();
    assert_eq!(
        entries,
        vec![
            Entry::Help {
                name: "http_requests_total",
                text: "Total requests."
            },
            Entry::Type {
                name: "http_requests_total",
                kind: MetricKind::Counter
            },
            Entry::Unit {
                name: "http_request_seconds",
                unit: "seconds"
            },
            Entry::Help {
                name: "empty_help",
                text: ""
            },
            Entry::Type {
                name: "t_unknown",
                kind: MetricKind::Untyped
            },
            Entry::Type {
                name: "t_gh",
                kind: MetricKind::GaugeHistogram
            },
        ]
    );
}

#[test]
fn names_with_colons_and_label_specials() {
    let s = one(
        r#"job:http_requests:rate5m{path="/a,b=c}{d", msg="say \"hi\"\nbye \\o/", sp=" x "} 3"#,
    );
    assert_eq!(s.name, "job:http_requests:rate5m");
    assert_eq!(
        labels(&s),
        vec![
            ("path".into(), "/a,b=c}{d".into()),
            ("msg".into(), "say \"hi\"\nbye \\o/".into()),
            ("sp".into(), " x ".into()),
        ]
    );
    let msg = s.label("msg").unwrap();
    assert!(msg.has_escapes());
    assert!(msg.eq_str("say \"hi\"\nbye \\o/"));
    assert_eq!(msg.raw(), r#"say \"hi\"\nbye \\o/"#);
    assert!(s.label("path").unwrap().eq_str("/a,b=c}{d"));
    assert!(s.label("nope").is_none());
}

#[test]
fn empty_label_set_trailing_comma_and_whitespace() {
    assert_eq!(labels(&one("foo{} 1")), vec![]);
    assert_eq!(
        labels(&one("foo{a=\"1\",} 1")),
        vec![("a".into(), "1".into())]
    );
    let s = one("  \tfoo \t{ a = \"1\" ,\tb=\"2\" , }  \t 1.5 \t 1700000000000 \t ");
    assert_eq!(s.name, "foo");
    assert_eq!(s.value, 1.5);
    assert_eq!(s.timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(
        labels(&s),
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    // No blank needed between `}` and the value, as in client_golang's parser.
    assert_eq!(one("foo{a=\"1\"}2").value, 2.0);
}

#[test]
fn values_and_timestamps() {
    let vals: Vec<f64> = samples("a NaN\nb +Inf\nc -Inf\nd Inf\ne 1e3\nf -2.5E-2\ng 17\nh 0.1\n")
        .iter()
        .map(|s| s.value)
        .collect();
    assert!(vals[0].is_nan());
    assert_eq!(
        &vals[1..],
        &[
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            1000.0,
            -0.025,
            17.0,
            0.1
        ]
    );
    assert_eq!(one("a 1 -1500").timestamp_ms, Some(-1500));
    // A fractional timestamp can only be OpenMetrics seconds.
    assert_eq!(
        one("a 1 1700000000.250").timestamp_ms,
        Some(1_700_000_000_250)
    );
    let om: Vec<_> = Parser::with_format(b"a 1 1700000000\n# EOF\n", Format::OpenMetrics)
        .collect::<Result<_, _>>()
        .unwrap();
    match om[0] {
        Entry::Sample(s) => assert_eq!(s.timestamp_ms, Some(1_700_000_000_000)),
        _ => panic!("expected a sample"),
    }
}

#[test]
fn histogram_and_summary_series_are_plain_samples() {
    let input = "# TYPE lat histogram\n\
                 lat_bucket{le=\"0.1\"} 3\nlat_bucket{le=\"+Inf\"} 5\nlat_sum 1.2\nlat_count 5\n\
                 # TYPE q summary\nq{quantile=\"0.99\"} 0.3\nq_sum 9\nq_count 30\n";
    let all = samples(input);
    let names: Vec<_> = all.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "lat_bucket",
            "lat_bucket",
            "lat_sum",
            "lat_count",
            "q",
            "q_sum",
            "q_count"
        ]
    );
    assert!(all[1].label("le").unwrap().eq_str("+Inf"));
    assert!(all[4].label("quantile").unwrap() == "0.99");
}

#[test]
fn exemplars_are_skipped_and_eof_ends_input() {
    let input = "# TYPE r counter\n\
                 r_total{a=\"b\"} 7 # {trace_id=\"abc\"} 1.0 1700000000.5\n\
                 r_total{a=\"c\"} 8 1700000000 # {trace_id=\"d\"} 2\n\
                 # EOF\n\
                 after_eof 1\n";
    let s: Vec<_> = Parser::with_format(input.as_bytes(), Format::OpenMetrics)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(s.len(), 3);
    match (s[1], s[2]) {
        (Entry::Sample(a), Entry::Sample(b)) => {
            assert_eq!((a.value, a.timestamp_ms), (7.0, None));
            assert_eq!((b.value, b.timestamp_ms), (8.0, Some(1_700_000_000_000)));
        }
        _ => panic!("expected samples"),
    }
}

#[test]
fn crlf_and_missing_final_newline() {
    let all = samples("a{x=\"1\"} 1\r\nb 2\r\n\r\nc 3");
    let got: Vec<_> = all.iter().map(|s| (s.name, s.value)).collect();
    assert_eq!(got, [("a", 1.0), ("b", 2.0), ("c", 3.0)]);
    assert!(all[0].label("x").unwrap().eq_str("1"));
}

#[test]
fn each_error_kind_with_its_line_number() {
    use LineErrorKind::*;
    let input = b"ok 1\n\
        9bad 1\n\
        foo-bar 1\n\
        foo{9a=\"1\"} 1\n\
        foo{a:\"1\"} 1\n\
        foo{a=1} 1\n\
        foo{a=\"1} 1\n\
        foo{a=\"1\" b=\"2\"} 1\n\
        foo{a=\"1\"\n\
        foo\n\
        foo{a=\"1\"}\n\
        foo abc\n\
        foo 1 12x\n\
        foo 1 2 3\n\
        # TYPE\n\
        # TYPE foo\n\
        # TYPE foo bogus\n\
        # HELP 1foo text\n\
        foo \xff\xfe 1\n\
        # UNIT\n\
        foo{a\n\
        ok 2";
    assert_eq!(
        errors(input),
        vec![
            (2, InvalidMetricName),
            (3, InvalidMetricName),
            (4, InvalidLabelName),
            (5, MissingEquals),
            (6, MissingQuote),
            (7, UnterminatedLabelValue),
            (8, ExpectedCommaOrBrace),
            (9, UnterminatedLabelSet),
            (10, MissingValue),
            (11, MissingValue),
            (12, InvalidValue),
            (13, InvalidTimestamp),
            (14, TrailingGarbage),
            (15, MissingMetricName("TYPE")),
            (16, MissingType),
            (17, UnknownType("bogus".into())),
            (18, InvalidMetricName),
            (19, InvalidUtf8),
            (20, MissingMetricName("UNIT")),
            (21, UnterminatedLabelSet),
        ]
    );
    // Every good line around the bad ones still comes through.
    let good: Vec<_> = samples_lossy(input);
    assert_eq!(good, [("ok".to_owned(), 1.0), ("ok".to_owned(), 2.0)]);
}

fn samples_lossy(input: &[u8]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    parse_samples(input, |s| out.push((s.name.to_owned(), s.value)));
    out
}

#[test]
fn invalid_utf8_costs_only_its_line() {
    let input = b"a 1\nb{x=\"\xc3\x28\"} 2\nc{x=\"\xc3\xa9\"} 3\n";
    assert_eq!(errors(input), vec![(2, LineErrorKind::InvalidUtf8)]);
    let mut seen = Vec::new();
    parse_samples(input, |s| {
        seen.push((s.name, s.label("x").map(|v| v.to_cow().into_owned())))
    });
    assert_eq!(seen, [("a", None), ("c", Some("é".to_owned()))]);
}

#[test]
fn nul_bytes_and_crlf_errors_keep_line_numbers() {
    let input = b"a 1\r\n\0\r\nb\0 2\r\nc 3\r\n";
    assert_eq!(
        errors(input),
        vec![
            (2, LineErrorKind::InvalidMetricName),
            (3, LineErrorKind::InvalidMetricName)
        ]
    );
}

#[test]
fn display_names_line_and_problem() {
    let e = LineError {
        line: 42,
        kind: LineErrorKind::InvalidValue,
    };
    assert_eq!(e.to_string(), "line 42: invalid sample value");
}

#[test]
fn summary_caps_kept_errors() {
    let mut input = String::new();
    for _ in 0..100 {
        input.push_str("bad line here\n");
    }
    input.push_str("good 1\n");
    let summary: ParseSummary = parse_samples_as(input.as_bytes(), Format::PrometheusText, |_| {});
    assert_eq!(summary.samples, 1);
    assert_eq!(summary.errors, 100);
    assert_eq!(summary.first_errors.len(), ParseSummary::MAX_ERRORS);
    assert_eq!(summary.first_errors[15].line, 16);
}

#[test]
fn huge_line_is_fine() {
    let mut input = String::from("big{v=\"");
    input.push_str(&"x".repeat(4 << 20));
    input.push_str("\"} 1\nnext 2\n");
    let all = samples(&input);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].label("v").unwrap().raw().len(), 4 << 20);
}

/// The parser reuses the previous sample's validated name when a line starts with it;
/// longer names and invalid continuations must still get the full check.
#[test]
fn names_sharing_a_prefix_with_the_previous_sample() {
    let input = "foo 1\nfoo_bar 2\nfoo{a=\"b\"} 3\nfoo:x 4\nfoo-x 5\nfoo\t6\nfo 7\nfoo";
    let mut names = Vec::new();
    let summary = parse_samples(input.as_bytes(), |s| names.push(s.name));
    assert_eq!(names, ["foo", "foo_bar", "foo", "foo:x", "foo", "fo"]);
    let errs: Vec<_> = summary
        .first_errors
        .iter()
        .map(|e| (e.line, e.kind.clone()))
        .collect();
    assert_eq!(
        errs,
        [
            (5, LineErrorKind::InvalidMetricName),
            (8, LineErrorKind::MissingValue)
        ]
    );
}
