use thiserror::Error;

/// A line the parser could not use. The line is skipped and parsing goes on with the
/// next one, so one bad series from a gateway never costs the rest of the scrape.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct LineError {
    /// 1-based line number in the input (lines end at `\n`; a `\r` before it is ignored).
    pub line: usize,
    pub kind: LineErrorKind,
}

/// What was wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid metric name (must match [a-zA-Z_:][a-zA-Z0-9_:]*)")]
    InvalidMetricName,
    #[error("missing metric name in # {0} line")]
    MissingMetricName(&'static str),
    #[error("invalid label name (must match [a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidLabelName,
    #[error("expected '=' after label name")]
    MissingEquals,
    #[error("expected '\"' to open the label value")]
    MissingQuote,
    #[error("label value has no closing '\"'")]
    UnterminatedLabelValue,
    #[error("expected ',' or '}}' after label value")]
    ExpectedCommaOrBrace,
    #[error("label set has no closing '}}'")]
    UnterminatedLabelSet,
    #[error("sample has no value")]
    MissingValue,
    #[error("invalid sample value")]
    InvalidValue,
    #[error("invalid timestamp")]
    InvalidTimestamp,
    #[error("unexpected text after the sample")]
    TrailingGarbage,
    #[error("missing metric type in # TYPE line")]
    MissingType,
    #[error("unknown metric type {0:?}")]
    UnknownType(String),
}
