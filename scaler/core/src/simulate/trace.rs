//! Request-rate traces read into one value per second (requests per second).
//!
//! Formats:
//!
//! - **NASA per-second** (`workload.txt`): whitespace-separated integers, requests in each
//!   second, end to end.
//! - **Per-minute CSV** (`minute,requests`): requests in each minute; the trace starts at
//!   the first row's minute (so a slice starts at once), and a minute missing between two
//!   rows had no requests.
//! - **Azure Functions** (`HashFunction,HashApp,HashOwner,1..1440`): invocations per minute
//!   of many functions; one function (by hash) or the sum of all.
//! - **Generic** (`time,value`): seconds since the start and requests per second; each
//!   value holds until the next row.
//!
//! A per-minute count is spread evenly over its sixty seconds: the trace says nothing
//! finer, and inventing a shape would favour one autoscaler over another.

use std::fmt;

use thiserror::Error;

/// How to read a trace file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Decide from the first line (see [`detect`]).
    Auto,
    /// Whitespace-separated requests per second.
    NasaSeconds,
    /// `minute,requests`.
    PerMinute,
    /// Azure Functions 2019 invocations per function per minute.
    Azure,
    /// `time,value`: seconds since the start, requests per second.
    TimeValue,
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceFormat::Auto => "auto",
            TraceFormat::NasaSeconds => "nasa-seconds",
            TraceFormat::PerMinute => "per-minute",
            TraceFormat::Azure => "azure",
            TraceFormat::TimeValue => "time-value",
        })
    }
}

/// Which Azure function(s) a trace follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AzurePick {
    /// Every function's invocations summed: the platform's total.
    #[default]
    Sum,
    /// The function whose `HashFunction` is this (a unique prefix is enough).
    Function(String),
}

/// A trace problem, with the 1-based line it was found on (0 when it concerns the whole
/// input).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("line {line}: {message}")]
pub struct TraceError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> TraceError {
    TraceError {
        line,
        message: message.into(),
    }
}

/// Requests per second, one value per second from the trace's start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    pub rps: Vec<f64>,
    /// What it is, for reports (format and, for Azure, the pick).
    pub description: String,
}

impl Trace {
    /// Every value multiplied by `factor` (to model a busier service).
    pub fn scaled(mut self, factor: f64) -> Trace {
        for v in &mut self.rps {
            *v *= factor;
        }
        self
    }

    /// Removes seconds `[from, to)` and joins the ends (e.g. an outage that is not
    /// traffic). Out-of-range bounds are clamped.
    pub fn cut(mut self, from: usize, to: usize) -> Trace {
        let to = to.min(self.rps.len());
        let from = from.min(to);
        self.rps.drain(from..to);
        self
    }

    /// The largest per-second rate.
    pub fn peak(&self) -> f64 {
        self.rps.iter().copied().fold(0.0, f64::max)
    }
}

/// Reads `text` in `format`.
pub fn parse(text: &str, format: TraceFormat, azure: &AzurePick) -> Result<Trace, TraceError> {
    let format = match format {
        TraceFormat::Auto => detect(text)?,
        f => f,
    };
    let rps = match format {
        TraceFormat::NasaSeconds => nasa_seconds(text)?,
        TraceFormat::PerMinute => per_minute(text)?,
        TraceFormat::Azure => azure_minutes(text, azure)?,
        TraceFormat::TimeValue => time_value(text)?,
        TraceFormat::Auto => unreachable!("resolved above"),
    };
    if rps.is_empty() {
        return Err(err(0, "the trace holds no data"));
    }
    let description = match (format, azure) {
        (TraceFormat::Azure, AzurePick::Sum) => "azure (sum of all functions)".to_string(),
        (TraceFormat::Azure, AzurePick::Function(h)) => format!("azure (function {h})"),
        (f, _) => f.to_string(),
    };
    Ok(Trace { rps, description })
}

/// The format a trace's first non-empty line suggests: no comma means per-second
/// integers; a `HashFunction` header means Azure; a `minute` header means per-minute;
/// anything else with a comma is `time,value`.
pub fn detect(text: &str) -> Result<TraceFormat, TraceError> {
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Err(err(0, "the trace is empty"));
    };
    Ok(if !first.contains(',') {
        TraceFormat::NasaSeconds
    } else if first.starts_with("HashFunction") {
        TraceFormat::Azure
    } else if first.split(',').next().map(str::trim) == Some("minute") {
        TraceFormat::PerMinute
    } else {
        TraceFormat::TimeValue
    })
}

fn count(field: &str, line: usize, what: &str) -> Result<f64, TraceError> {
    let field = field.trim();
    match field.parse::<u64>() {
        // Counts in these traces stay far below 2^53, so the conversion is exact.
        Ok(n) => Ok(n as f64),
        Err(_) => Err(err(
            line,
            format!("{what} `{field}` is not a non-negative integer"),
        )),
    }
}

fn nasa_seconds(text: &str) -> Result<Vec<f64>, TraceError> {
    let mut out = Vec::with_capacity(text.len() / 2);
    for (i, line) in text.lines().enumerate() {
        for token in line.split_ascii_whitespace() {
            out.push(count(token, i + 1, "requests in a second")?);
        }
    }
    Ok(out)
}

/// Splits CSV data rows, skipping blank lines and one leading header (a first field that
/// is not a number).
fn rows(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .enumerate()
        .filter(|(k, (_, l))| {
            let first = l.split(',').next().unwrap_or("").trim();
            !(*k == 0 && first.parse::<f64>().is_err())
        })
        .map(|(_, row)| row)
}

fn two_fields(line: usize, row: &str) -> Result<(&str, &str), TraceError> {
    let mut fields = row.split(',');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(a), Some(b), None) => Ok((a, b)),
        _ => Err(err(line, format!("expected two fields, got `{row}`"))),
    }
}

fn per_minute(text: &str) -> Result<Vec<f64>, TraceError> {
    let mut out = Vec::new();
    let mut next_minute: Option<u64> = None;
    for (line, row) in rows(text) {
        let (minute, requests) = two_fields(line, row)?;
        let minute = count(minute, line, "minute")? as u64;
        let requests = count(requests, line, "requests")?;
        let next_minute = next_minute.get_or_insert(minute);
        if minute < *next_minute {
            return Err(err(
                line,
                format!("minute {minute} is not after the previous row's"),
            ));
        }
        out.resize(out.len() + 60 * (minute - *next_minute) as usize, 0.0);
        out.extend(std::iter::repeat_n(requests / 60.0, 60));
        *next_minute = minute + 1;
    }
    Ok(out)
}

fn azure_minutes(text: &str, pick: &AzurePick) -> Result<Vec<f64>, TraceError> {
    let mut minutes: Vec<f64> = Vec::new();
    let mut matched = 0usize;
    for (line, row) in rows(text) {
        let mut fields = row.split(',');
        let hash = fields.next().unwrap_or("").trim();
        if let AzurePick::Function(want) = pick
            && !hash.starts_with(want.as_str())
        {
            continue;
        }
        // HashApp and HashOwner.
        if fields.next().is_none() || fields.next().is_none() {
            return Err(err(line, "expected HashFunction,HashApp,HashOwner,counts…"));
        }
        matched += 1;
        let mut n = 0;
        for field in fields {
            let v = count(field, line, "invocations in a minute")?;
            match minutes.get_mut(n) {
                Some(m) => *m += v,
                None => minutes.push(v),
            }
            n += 1;
        }
        if n == 0 {
            return Err(err(line, "a function row without counts"));
        }
    }
    match (pick, matched) {
        (AzurePick::Function(h), 0) => {
            return Err(err(0, format!("no function hash starts with `{h}`")));
        }
        (AzurePick::Function(h), n) if n > 1 => {
            return Err(err(
                0,
                format!("{n} function hashes start with `{h}`; give more of it"),
            ));
        }
        _ => {}
    }
    Ok(minutes
        .into_iter()
        .flat_map(|m| std::iter::repeat_n(m / 60.0, 60))
        .collect())
}

fn time_value(text: &str) -> Result<Vec<f64>, TraceError> {
    let mut out: Vec<f64> = Vec::new();
    let mut last: Option<(usize, f64)> = None;
    for (line, row) in rows(text) {
        let (time, value) = two_fields(line, row)?;
        let time: f64 = time
            .trim()
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| {
                err(
                    line,
                    format!(
                        "time `{}` is not a non-negative number of seconds",
                        time.trim()
                    ),
                )
            })?;
        let value: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                err(
                    line,
                    format!("value `{}` is not a non-negative rate", value.trim()),
                )
            })?;
        // Whole seconds: the engine sees the world once a second.
        let second = time.floor() as usize;
        if let Some((prev_second, prev_value)) = last {
            if second < prev_second {
                return Err(err(line, format!("time {time} goes back")));
            }
            out.resize(second, prev_value);
        } else {
            out.resize(second, 0.0);
        }
        last = Some((second, value));
    }
    if let Some((second, value)) = last {
        out.resize(second + 1, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, format: TraceFormat) -> Result<Vec<f64>, TraceError> {
        parse(text, format, &AzurePick::Sum).map(|t| t.rps)
    }

    #[test]
    fn nasa_seconds_across_lines() {
        assert_eq!(
            read("1 0 2\n3\n", TraceFormat::Auto),
            Ok(vec![1.0, 0.0, 2.0, 3.0])
        );
    }

    #[test]
    fn nasa_seconds_bad_token_names_its_line() {
        let e = read("1 2\n3 x 4\n", TraceFormat::NasaSeconds).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("`x`"), "{e}");
    }

    #[test]
    fn per_minute_spreads_and_fills_gaps() {
        let rps = read("minute,requests\n7,60\n9,120\n", TraceFormat::Auto).unwrap();
        assert_eq!(rps.len(), 180);
        assert_eq!(
            (rps[0], rps[59], rps[60], rps[119], rps[120]),
            (1.0, 1.0, 0.0, 0.0, 2.0)
        );
    }

    #[test]
    fn per_minute_errors_name_the_line() {
        let e = read("minute,requests\n0,6\n1,-3\n", TraceFormat::PerMinute).unwrap_err();
        assert_eq!(e.line, 3);
        let e = read("minute,requests\n5,6\n\n4,6\n", TraceFormat::PerMinute).unwrap_err();
        assert_eq!((e.line, e.message.contains("not after")), (4, true));
        let e = read("0,6,7\n", TraceFormat::PerMinute).unwrap_err();
        assert_eq!(e.line, 1);
    }

    const AZURE: &str = "HashFunction,HashApp,HashOwner,1,2\naaa1,x,y,60,0\nbbb2,x,y,0,120\n";

    #[test]
    fn azure_sum_and_pick() {
        let sum = read(AZURE, TraceFormat::Auto).unwrap();
        assert_eq!((sum.len(), sum[0], sum[60]), (120, 1.0, 2.0));
        let one = parse(
            AZURE,
            TraceFormat::Azure,
            &AzurePick::Function("bbb".into()),
        )
        .unwrap();
        assert_eq!((one.rps[0], one.rps[60]), (0.0, 2.0));
        assert!(one.description.contains("bbb"));
        let none = parse(
            AZURE,
            TraceFormat::Azure,
            &AzurePick::Function("ccc".into()),
        );
        assert!(none.unwrap_err().message.contains("no function"));
    }

    #[test]
    fn azure_bad_count_names_its_line() {
        let e = read(
            "HashFunction,HashApp,HashOwner,1\nf,x,y,7\ng,x,y,1.5\n",
            TraceFormat::Azure,
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn time_value_holds_each_value() {
        let rps = read("time,value\n0,5\n3,1.5\n4,0\n", TraceFormat::Auto).unwrap();
        assert_eq!(rps, vec![5.0, 5.0, 5.0, 1.5, 0.0]);
    }

    #[test]
    fn time_value_errors_name_the_line() {
        let e = read("time,value\n0,5\n3,nan\n", TraceFormat::TimeValue).unwrap_err();
        assert_eq!(e.line, 3);
        let e = read("time,value\n5,5\n3,1\n", TraceFormat::TimeValue).unwrap_err();
        assert_eq!((e.line, e.message.contains("goes back")), (3, true));
    }

    #[test]
    fn empty_input_is_an_error() {
        assert!(read("", TraceFormat::Auto).is_err());
        assert!(read("minute,requests\n", TraceFormat::Auto).is_err());
    }

    #[test]
    fn cut_and_scale() {
        let t = Trace {
            rps: vec![1.0, 2.0, 0.0, 0.0, 3.0],
            description: String::new(),
        };
        let t = t.cut(2, 4).scaled(2.0);
        assert_eq!(t.rps, vec![2.0, 4.0, 6.0]);
        assert_eq!(t.peak(), 6.0);
    }
}
