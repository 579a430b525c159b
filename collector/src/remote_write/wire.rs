//! A zero-copy reader of `prometheus.WriteRequest`: labels are borrowed `&str`s into the
//! decompressed body, and the whole request lands in three flat vectors, so decoding
//! allocates three times per request instead of twice per label (as the generated
//! prost types do). Fields Spillway does not read (metadata, exemplars, native
//! histograms, anything newer) are skipped by wire type, as protobuf requires.

use std::ops::Range;

/// One decoded request, borrowing from the decompressed body.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded<'a> {
    labels: Vec<(&'a str, &'a str)>,
    samples: Vec<(f64, i64)>,
    series: Vec<(Range<u32>, Range<u32>)>,
}

/// One series of a [`Decoded`] request.
#[derive(Clone, Copy, Debug)]
pub struct SeriesRef<'d, 'a> {
    pub labels: &'d [(&'a str, &'a str)],
    /// `(value, timestamp_ms)` in the order sent.
    pub samples: &'d [(f64, i64)],
}

impl<'a> SeriesRef<'_, 'a> {
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| *value)
    }
}

impl<'a> Decoded<'a> {
    pub fn series(&self) -> impl Iterator<Item = SeriesRef<'_, 'a>> + '_ {
        self.series.iter().map(|(labels, samples)| SeriesRef {
            labels: &self.labels[labels.start as usize..labels.end as usize],
            samples: &self.samples[samples.start as usize..samples.end as usize],
        })
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }
}

/// Why bytes are not a `WriteRequest`; `at` is the byte offset in the decompressed body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} at byte {at}")]
pub struct WireError {
    pub what: &'static str,
    pub at: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole body, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn error(&self, what: &'static str) -> WireError {
        WireError {
            what,
            at: self.base + self.pos,
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.error("truncated varint"));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    fn take(&mut self, len: usize) -> Result<(&'a [u8], usize), WireError> {
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| self.error("length past the end of the message"))?;
        self.pos = end;
        Ok((&self.buf[start..end], self.base + start))
    }

    fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.error("length too large"))?;
        self.take(len)
    }

    fn fixed64(&mut self) -> Result<u64, WireError> {
        let (bytes, _) = self.take(8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(raw))
    }

    /// Field number and wire type of the next field.
    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(self.error("field number 0"));
        }
        Ok((field, (key & 7) as u8))
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            _ => Err(self.error("unsupported wire type (groups are not used by remote-write)")),
        }
    }

    fn string(&mut self) -> Result<&'a str, WireError> {
        let (bytes, at) = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| WireError {
            what: "label is not UTF-8",
            at,
        })
    }
}

/// Reads a whole request; fails on the first malformed byte without returning a part.
pub fn decode(body: &[u8]) -> Result<Decoded<'_>, WireError> {
    let mut decoded = Decoded::default();
    let mut request = Reader::new(body, 0);
    while !request.done() {
        match request.key()? {
            (1, 2) => {
                let (series, at) = request.bytes()?;
                read_series(series, at, &mut decoded)?;
            }
            (1, _) => return Err(request.error("timeseries is not length-delimited")),
            (_, wire_type) => request.skip(wire_type)?,
        }
    }
    Ok(decoded)
}

fn read_series<'a>(buf: &'a [u8], base: usize, out: &mut Decoded<'a>) -> Result<(), WireError> {
    let labels_start = out.labels.len() as u32;
    let samples_start = out.samples.len() as u32;
    let mut series = Reader::new(buf, base);
    while !series.done() {
        match series.key()? {
            (1, 2) => {
                let (label, at) = series.bytes()?;
                let mut label = Reader::new(label, at);
                let (mut name, mut value) = ("", "");
                while !label.done() {
                    match label.key()? {
                        (1, 2) => name = label.string()?,
                        (2, 2) => value = label.string()?,
                        (_, wire_type) => label.skip(wire_type)?,
                    }
                }
                out.labels.push((name, value));
            }
            (2, 2) => {
                let (sample, at) = series.bytes()?;
                let mut sample = Reader::new(sample, at);
                let (mut value, mut timestamp) = (0.0, 0i64);
                while !sample.done() {
                    match sample.key()? {
                        (1, 1) => value = f64::from_bits(sample.fixed64()?),
                        // int64 is sent as the two's complement varint.
                        (2, 0) => timestamp = sample.varint()? as i64,
                        (_, wire_type) => sample.skip(wire_type)?,
                    }
                }
                out.samples.push((value, timestamp));
            }
            (1 | 2, _) => return Err(series.error("label or sample is not length-delimited")),
            (_, wire_type) => series.skip(wire_type)?,
        }
    }
    out.series.push((
        labels_start..out.labels.len() as u32,
        samples_start..out.samples.len() as u32,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;
    use spillway_proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};

    fn as_prost(decoded: &Decoded<'_>) -> Vec<TimeSeries> {
        decoded
            .series()
            .map(|series| TimeSeries {
                labels: series
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: (*name).into(),
                        value: (*value).into(),
                    })
                    .collect(),
                samples: series
                    .samples
                    .iter()
                    .map(|&(value, timestamp)| Sample { value, timestamp })
                    .collect(),
            })
            .collect()
    }

    fn request() -> impl Strategy<Value = WriteRequest> {
        let label = ("[a-z_]{0,8}", "\\PC{0,12}").prop_map(|(name, value)| Label { name, value });
        let sample =
            (any::<f64>(), any::<i64>()).prop_map(|(value, timestamp)| Sample { value, timestamp });
        let series = (
            prop::collection::vec(label, 0..6),
            prop::collection::vec(sample, 0..4),
        )
            .prop_map(|(labels, samples)| TimeSeries { labels, samples });
        (
            prop::collection::vec(series, 0..8),
            prop::collection::vec("[a-z]{0,6}", 0..3),
        )
            .prop_map(|(timeseries, names)| WriteRequest {
                timeseries,
                metadata: names
                    .into_iter()
                    .map(|metric_family_name| MetricMetadata {
                        r#type: 1,
                        metric_family_name,
                        help: "h".into(),
                        unit: String::new(),
                    })
                    .collect(),
            })
    }

    fn same_bits(a: &[TimeSeries], b: &[TimeSeries]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.labels == y.labels
                    && x.samples.len() == y.samples.len()
                    && x.samples.iter().zip(&y.samples).all(|(s, t)| {
                        s.value.to_bits() == t.value.to_bits() && s.timestamp == t.timestamp
                    })
            })
    }

    proptest! {
        /// Agrees with prost on every request prost encodes.
        #[test]
        fn agrees_with_prost(request in request()) {
            let bytes = request.encode_to_vec();
            let decoded = decode(&bytes).unwrap();
            // Compared with prost's decoding, not the input: proto3 does not send
            // default values, so -0.0 comes back as 0.0 from both.
            let theirs = WriteRequest::decode(bytes.as_slice()).unwrap();
            prop_assert!(same_bits(&as_prost(&decoded), &theirs.timeseries));
        }

        /// Any truncation of a non-empty request is an error or a shorter valid prefix,
        /// and arbitrary bytes never panic.
        #[test]
        fn truncations_and_garbage_never_panic(request in request(), cut in any::<prop::sample::Index>(), junk in prop::collection::vec(any::<u8>(), 0..64)) {
            let bytes = request.encode_to_vec();
            if !bytes.is_empty() {
                let cut = cut.index(bytes.len());
                let ours = decode(&bytes[..cut]).is_ok();
                let theirs = WriteRequest::decode(&bytes[..cut]).is_ok();
                prop_assert_eq!(ours, theirs, "cut at {}", cut);
            }
            let _ = decode(&junk);
        }
    }
}
