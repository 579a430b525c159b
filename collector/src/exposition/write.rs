//! Renders samples and metadata back to the text format, escaping as the parser expects.
//!
//! Spillway uses it in tests (round-trips through the parser) and to re-expose series.
//! The output parses back to the same values: floats are written in Rust's shortest
//! round-tripping form, `NaN` and infinities in Prometheus' spelling.

use std::fmt::Write as _;

use super::MetricKind;

/// Appends `value` escaped for use between the quotes of a label value.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a float the way Prometheus' parsers read it back exactly.
pub fn value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Debug is the shortest representation that parses back to the same bits.
        let _ = write!(out, "{v:?}");
    }
}

/// Appends one sample line, labels in the given order, with a trailing newline.
pub fn sample<'l>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'l str, &'l str)>,
    v: f64,
    timestamp_ms: Option<i64>,
) {
    out.push_str(name);
    let mut first = true;
    for (label, label_value) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, label_value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    value(out, v);
    if let Some(ts) = timestamp_ms {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

/// Appends a `# HELP` line; backslashes and newlines in `text` are escaped.
pub fn help(out: &mut String, name: &str, text: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\n');
}

/// Appends a `# TYPE` line.
pub fn type_line(out: &mut String, name: &str, kind: MetricKind) {
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}
