use super::error::{LineError, LineErrorKind};
use super::labels::{LabelValue, Labels};
use super::lex::{
    find2, is_blank, is_label_cont, is_label_start, is_name_cont, is_name_start, parse_timestamp,
    parse_value, skip_blanks, sub, token_end,
};

/// Which text format the input is, as told by the scrape response's `Content-Type`.
///
/// The two formats differ in what matters to the parser only in timestamps: 0.0.4 writes
/// integer milliseconds, OpenMetrics (possibly fractional) seconds. Timestamps with a
/// fraction or an exponent are read as seconds in both modes, since 0.0.4 cannot have
/// them; a bare integer is milliseconds under [`Format::PrometheusText`] and seconds under
/// [`Format::OpenMetrics`]. [`Sample::timestamp_ms`] is always milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    PrometheusText,
    OpenMetrics,
}

/// A metric family's type from a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// `untyped` (text 0.0.4) or `unknown` (OpenMetrics): the same thing under two names.
    Untyped,
    /// OpenMetrics only.
    GaugeHistogram,
    /// OpenMetrics only.
    StateSet,
    /// OpenMetrics only.
    Info,
}

impl MetricKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" | "unknown" => Self::Untyped,
            "gaugehistogram" => Self::GaugeHistogram,
            "stateset" => Self::StateSet,
            "info" => Self::Info,
            _ => return None,
        })
    }

    /// The name as written in a `# TYPE` line (`untyped` for [`MetricKind::Untyped`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
            Self::GaugeHistogram => "gaugehistogram",
            Self::StateSet => "stateset",
            Self::Info => "info",
        }
    }
}

/// One meaningful line of an exposition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry<'a> {
    Sample(Sample<'a>),
    /// `# HELP name text`; `text` is raw (escapes not processed), possibly empty.
    Help {
        name: &'a str,
        text: &'a str,
    },
    Type {
        name: &'a str,
        kind: MetricKind,
    },
    /// `# UNIT name unit` (OpenMetrics); `unit` may be empty.
    Unit {
        name: &'a str,
        unit: &'a str,
    },
}

/// One sample line, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub value: f64,
    /// Milliseconds since the Unix epoch, if the line had a timestamp (see [`Format`]).
    pub timestamp_ms: Option<i64>,
    /// Text between `{` and `}`, validated; empty if the sample has no labels.
    label_set: &'a str,
}

impl<'a> Sample<'a> {
    /// The labels in the order written, values still escaped (see [`LabelValue`]).
    pub fn labels(&self) -> Labels<'a> {
        Labels::new(self.label_set)
    }

    /// The first label called `name`, if any.
    pub fn label(&self, name: &str) -> Option<LabelValue<'a>> {
        self.labels().find_map(|(n, v)| (n == name).then_some(v))
    }

    /// The label set exactly as written between the braces. Identical text means an
    /// identical series from the same exporter, which makes it a cheap series key.
    pub fn label_set_raw(&self) -> &'a str {
        self.label_set
    }
}

/// Iterator over the entries of an exposition. See the [module docs](super).
///
/// Blank lines and comments are skipped; malformed lines come out as `Err` and parsing
/// goes on with the next line.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    input: &'a [u8],
    /// The whole input, if it is valid UTF-8 (the common case): lines are then cut from
    /// it without validating each one again.
    text: Option<&'a str>,
    pos: usize,
    line: usize,
    format: Format,
    done: bool,
    /// Name of the last sample, validated; see [`metric_name_end_cached`].
    previous_name: &'a str,
}

impl<'a> Parser<'a> {
    /// A parser for the Prometheus text format 0.0.4 (which also reads OpenMetrics, bar
    /// the unit of integer timestamps: see [`Format`]).
    pub fn new(input: &'a [u8]) -> Self {
        Self::with_format(input, Format::PrometheusText)
    }

    pub fn with_format(input: &'a [u8], format: Format) -> Self {
        Self {
            input,
            text: std::str::from_utf8(input).ok(),
            pos: 0,
            line: 0,
            format,
            done: false,
            previous_name: "",
        }
    }

    /// Number of lines consumed so far (the line of the last entry or error returned).
    pub fn line(&self) -> usize {
        self.line
    }

    fn next_line(&mut self) -> Option<Result<&'a str, LineErrorKind>> {
        if self.done || self.pos >= self.input.len() {
            return None;
        }
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        let end = match memchr::memchr(b'\n', rest) {
            Some(k) => start + k,
            None => self.input.len(),
        };
        self.pos = end + 1;
        self.line += 1;
        let mut line_end = end;
        if line_end > start && self.input[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        Some(match self.text {
            Some(text) => text.get(start..line_end).ok_or(LineErrorKind::InvalidUtf8),
            None => std::str::from_utf8(self.input.get(start..line_end).unwrap_or_default())
                .map_err(|_| LineErrorKind::InvalidUtf8),
        })
    }
}

enum Line<'a> {
    Skip,
    Eof,
    Entry(Entry<'a>),
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let parsed = match self.next_line()? {
                Ok(line) => parse_line(line, self.format, self.previous_name),
                Err(kind) => Err(kind),
            };
            match parsed {
                Ok(Line::Skip) => continue,
                Ok(Line::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(Line::Entry(entry)) => {
                    if let Entry::Sample(sample) = &entry {
                        self.previous_name = sample.name;
                    }
                    return Some(Ok(entry));
                }
                Err(kind) => {
                    return Some(Err(LineError {
                        line: self.line,
                        kind,
                    }));
                }
            }
        }
    }
}

#[inline]
fn parse_line<'a>(
    line: &'a str,
    format: Format,
    previous_name: &str,
) -> Result<Line<'a>, LineErrorKind> {
    let b = line.as_bytes();
    let i = skip_blanks(b, 0);
    match b.get(i) {
        None => Ok(Line::Skip),
        Some(b'#') => parse_comment(line, i + 1),
        Some(_) => {
            parse_sample(line, i, format, previous_name).map(|s| Line::Entry(Entry::Sample(s)))
        }
    }
}

/// [`metric_name_end`], first trying the previous sample's name: samples of a family
/// come in runs, and comparing against a name already validated is a `memcmp` instead of
/// a table lookup per byte. If the line continues with more name bytes, it is a longer
/// name and gets the full check.
#[inline]
fn metric_name_end_cached(b: &[u8], i: usize, previous: &[u8]) -> Result<usize, LineErrorKind> {
    if !previous.is_empty() && b.get(i..i + previous.len()) == Some(previous) {
        let j = i + previous.len();
        match b.get(j) {
            None => return Ok(j),
            Some(&c) if is_blank(c) || c == b'{' => return Ok(j),
            Some(_) => {}
        }
    }
    metric_name_end(b, i, Some(b'{'))
}

/// Reads a metric name at `i`; returns its end. The name must be followed by a blank, by
/// `follow` (if any), or by the end of the line.
#[inline]
fn metric_name_end(b: &[u8], i: usize, follow: Option<u8>) -> Result<usize, LineErrorKind> {
    if !b.get(i).is_some_and(|&c| is_name_start(c)) {
        return Err(LineErrorKind::InvalidMetricName);
    }
    let mut j = i + 1;
    while j < b.len() && is_name_cont(b[j]) {
        j += 1;
    }
    match b.get(j) {
        None => Ok(j),
        Some(&c) if is_blank(c) || Some(c) == follow => Ok(j),
        Some(_) => Err(LineErrorKind::InvalidMetricName),
    }
}

#[cold]
fn parse_comment(line: &str, i: usize) -> Result<Line<'_>, LineErrorKind> {
    let b = line.as_bytes();
    // As in Prometheus: `#` must be followed by a blank to be HELP/TYPE/UNIT/EOF.
    if !b.get(i).is_some_and(|&c| is_blank(c)) {
        return Ok(Line::Skip);
    }
    let kw_start = skip_blanks(b, i);
    let kw_end = token_end(b, kw_start);
    let keyword = sub(line, kw_start, kw_end);
    let after_kw = skip_blanks(b, kw_end);
    let kw = match keyword {
        "EOF" if after_kw == b.len() => return Ok(Line::Eof),
        "HELP" => "HELP",
        "TYPE" => "TYPE",
        "UNIT" => "UNIT",
        _ => return Ok(Line::Skip),
    };
    if after_kw == b.len() {
        return Err(LineErrorKind::MissingMetricName(kw));
    }
    let name_end = metric_name_end(b, after_kw, None)?;
    let name = sub(line, after_kw, name_end);
    let rest_start = skip_blanks(b, name_end);
    let rest = sub(line, rest_start, b.len());
    Ok(Line::Entry(match kw {
        "HELP" => Entry::Help { name, text: rest },
        "UNIT" => Entry::Unit {
            name,
            unit: rest.trim_end_matches([' ', '\t']),
        },
        _ => {
            let word = rest.trim_end_matches([' ', '\t']);
            if word.is_empty() {
                return Err(LineErrorKind::MissingType);
            }
            let kind = MetricKind::parse(word)
                .ok_or_else(|| LineErrorKind::UnknownType(word.to_owned()))?;
            Entry::Type { name, kind }
        }
    }))
}

#[inline]
fn parse_sample<'a>(
    line: &'a str,
    start: usize,
    format: Format,
    previous_name: &str,
) -> Result<Sample<'a>, LineErrorKind> {
    let b = line.as_bytes();
    let name_end = metric_name_end_cached(b, start, previous_name.as_bytes())?;
    let name = sub(line, start, name_end);
    let mut i = skip_blanks(b, name_end);
    let mut label_set = "";
    if b.get(i) == Some(&b'{') {
        let close = scan_label_set(b, i + 1)?;
        label_set = sub(line, i + 1, close);
        i = skip_blanks(b, close + 1);
    }
    if i >= b.len() {
        return Err(LineErrorKind::MissingValue);
    }
    let value_end = token_end(b, i);
    let value = parse_value(sub(line, i, value_end)).ok_or(LineErrorKind::InvalidValue)?;
    i = skip_blanks(b, value_end);
    let mut timestamp_ms = None;
    if i < b.len() && b[i] != b'#' {
        let ts_end = token_end(b, i);
        let ts = parse_timestamp(sub(line, i, ts_end), format == Format::OpenMetrics)
            .ok_or(LineErrorKind::InvalidTimestamp)?;
        timestamp_ms = Some(ts);
        i = skip_blanks(b, ts_end);
    }
    // What remains may only be an OpenMetrics exemplar (`# {...} v [ts]`), which the
    // collector has no use for.
    if i < b.len() && b[i] != b'#' {
        return Err(LineErrorKind::TrailingGarbage);
    }
    Ok(Sample {
        name,
        value,
        timestamp_ms,
        label_set,
    })
}

/// Validates a label set starting just after `{`; returns the index of the closing `}`.
///
/// Blanks are legal around every token but rare in practice, so each step first looks
/// for the expected byte and only then for blanks.
#[inline]
fn scan_label_set(b: &[u8], mut i: usize) -> Result<usize, LineErrorKind> {
    loop {
        match b.get(i) {
            Some(&c) if is_label_start(c) => {}
            Some(b'}') => return Ok(i),
            Some(&c) if is_blank(c) => {
                i = skip_blanks(b, i);
                continue;
            }
            None => return Err(LineErrorKind::UnterminatedLabelSet),
            Some(_) => return Err(LineErrorKind::InvalidLabelName),
        }
        i += 1;
        while i < b.len() && is_label_cont(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            i = skip_blanks(b, i);
            match b.get(i) {
                Some(b'=') => {}
                None => return Err(LineErrorKind::UnterminatedLabelSet),
                Some(_) => return Err(LineErrorKind::MissingEquals),
            }
        }
        i += 1;
        if b.get(i) != Some(&b'"') {
            i = skip_blanks(b, i);
            if b.get(i) != Some(&b'"') {
                return Err(LineErrorKind::MissingQuote);
            }
        }
        i = scan_label_value(b, i + 1)? + 1;
        if b.get(i).is_some_and(|&c| is_blank(c)) {
            i = skip_blanks(b, i);
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i),
            None => return Err(LineErrorKind::UnterminatedLabelSet),
            Some(_) => return Err(LineErrorKind::ExpectedCommaOrBrace),
        }
    }
}

/// Finds the closing quote of a label value starting at `i`; returns its index.
#[inline]
fn scan_label_value(b: &[u8], mut i: usize) -> Result<usize, LineErrorKind> {
    loop {
        match find2(b, i, b'"', b'\\') {
            Some(p) if b.get(p) == Some(&b'"') => return Ok(p),
            // A backslash escapes whatever follows it, a quote included.
            Some(p) => i = p + 2,
            None => return Err(LineErrorKind::UnterminatedLabelValue),
        }
    }
}

/// What [`parse_samples`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseSummary {
    /// Samples passed to the callback.
    pub samples: u64,
    /// Malformed lines skipped.
    pub errors: u64,
    /// The first [`ParseSummary::MAX_ERRORS`] errors, for the target's health report.
    pub first_errors: Vec<LineError>,
}

impl ParseSummary {
    pub const MAX_ERRORS: usize = 16;
}

/// The hot path: calls `on_sample` for every sample of a Prometheus text 0.0.4 input,
/// skipping metadata, counting malformed lines and keeping the first few.
pub fn parse_samples<'a>(input: &'a [u8], on_sample: impl FnMut(&Sample<'a>)) -> ParseSummary {
    parse_samples_as(input, Format::PrometheusText, on_sample)
}

/// [`parse_samples`] for an explicit [`Format`].
pub fn parse_samples_as<'a>(
    input: &'a [u8],
    format: Format,
    mut on_sample: impl FnMut(&Sample<'a>),
) -> ParseSummary {
    let mut summary = ParseSummary::default();
    for entry in Parser::with_format(input, format) {
        match entry {
            Ok(Entry::Sample(sample)) => {
                summary.samples += 1;
                on_sample(&sample);
            }
            Ok(_) => {}
            Err(e) => {
                summary.errors += 1;
                if summary.first_errors.len() < ParseSummary::MAX_ERRORS {
                    summary.first_errors.push(e);
                }
            }
        }
    }
    summary
}
