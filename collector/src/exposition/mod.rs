//! Prometheus text exposition (0.0.4) and OpenMetrics text parser.
//!
//! Parsing scrape responses is the collector's hot path: every gateway pod is scraped
//! every interval, and a large gateway exposes ~100k series. The parser therefore does
//! as little as a correct parser can:
//!
//! - **Zero-copy.** [`Parser`] walks the response bytes and hands out [`Entry`] values
//!   that borrow from them (`&'a str` names, raw label sets). Nothing is allocated per
//!   sample; the caller decides what, if anything, to copy out (usually nothing: the
//!   collector only keeps samples whose name and tenant/app labels it cares about).
//! - **UTF-8 checked once.** The whole input is validated in one pass up front (the
//!   standard library's validator runs at memory speed on ASCII); per-line validation is
//!   only the fallback when that fails, so one bad byte costs one line, not the scrape.
//! - **Labels scanned lazily.** A sample keeps the raw text of its label set. The parser
//!   validates it once (it must, to find the closing `}` past quoted `}`/`,` in values),
//!   and [`Sample::labels`] / [`Sample::label`] re-scan it on demand. A `Vec` per sample
//!   would allocate; the alternative without allocation, recording label offsets in a
//!   fixed array during validation, was measured on the benchmark's gateway exposition
//!   and lost: the sample grows from 56 to ~220 bytes and is copied through the
//!   iterator, making parsing ~15% and parse-plus-ingest ~25% slower, and it only broke
//!   even when every label of every sample was read. The collector reads two labels of
//!   the samples it keeps and skips the rest by name.
//! - **Unescape only when needed.** A [`LabelValue`] is the raw value plus a flag saying
//!   whether it has a backslash; [`LabelValue::eq_str`] compares without allocating and
//!   [`LabelValue::to_cow`] borrows unless there really were escapes.
//! - **Bad lines do not stop the scrape.** A malformed line yields a [`LineError`] with
//!   its 1-based line number; parsing resumes on the next line. No input, however
//!   broken (invalid UTF-8, NUL bytes, CRLF, no final newline, huge lines), panics.
//!
//! Accepted syntax follows Prometheus' own parsers: metric names
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`, blanks (spaces and
//! tabs) around tokens, `{}` and a trailing comma in label sets, label value escapes
//! `\\`, `\"`, `\n` (other escapes are kept literally), values as Go's `ParseFloat`
//! reads them (`NaN`, `Inf`, `+Inf`, `-Inf`, exponents), an optional timestamp, and
//! `# HELP` / `# TYPE` / `# UNIT` lines. Other `#` lines are comments. `# EOF` ends the
//! input. OpenMetrics exemplars (`# {...} value [ts]` after a sample) are skipped.
//! Histogram and summary series (`_bucket`, `_sum`, `_count`, `quantile`) are plain
//! samples here; grouping them is the consumer's business.
//!
//! Timestamps are reported in milliseconds: see [`Format`] for how integer and
//! fractional timestamps are read. Duplicate label names are not rejected (that would
//! cost a quadratic check per sample); [`Sample::label`] returns the first.
//!
//! `HELP` text and `UNIT` strings are returned raw (HELP escapes `\\` and `\n` are not
//! processed); they are for display, not for matching.

mod error;
mod labels;
mod lex;
mod parser;
pub mod write;

pub use error::{LineError, LineErrorKind};
pub use labels::{LabelValue, Labels};
pub use parser::{
    Entry, Format, MetricKind, ParseSummary, Parser, Sample, parse_samples, parse_samples_as,
};
