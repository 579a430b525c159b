//! The remote-write 1.0 wire format: a snappy *block* (not framed) compressed protobuf
//! `prometheus.WriteRequest`.

use prost::Message;
use spillway_proto::prometheus::WriteRequest;

/// Why a body was refused. Each maps to one HTTP status (see `status_code`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("body is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("body decompresses to {size} bytes, over the {limit} byte limit")]
    DecodedTooLarge { size: usize, limit: usize },
    #[error("body is not snappy block-compressed: {0}")]
    Snappy(String),
    #[error("body is not a protobuf prometheus.WriteRequest: {0}")]
    Protobuf(String),
    #[error("unsupported Content-Encoding '{0}': remote-write 1.0 bodies are snappy")]
    Encoding(String),
    #[error(
        "unsupported remote-write version '{0}': Spillway accepts 1.0 (prometheus.WriteRequest)"
    )]
    Version(String),
}

impl DecodeError {
    /// The HTTP status the sender should see. Prometheus retries only 5xx and 429, so a
    /// body that can never be read gets a 4xx and is not re-sent forever.
    pub fn status_code(&self) -> u16 {
        match self {
            DecodeError::TooLarge { .. } | DecodeError::DecodedTooLarge { .. } => 413,
            DecodeError::Encoding(_) | DecodeError::Version(_) => 415,
            DecodeError::Snappy(_) | DecodeError::Protobuf(_) => 400,
        }
    }
}

/// Decompresses and decodes one body, refusing it before allocating when the size the
/// snappy header announces is over `max_decoded`.
pub fn decode_write_request(body: &[u8], max_decoded: usize) -> Result<WriteRequest, DecodeError> {
    let raw = decompress(body, max_decoded)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// The snappy block decompression step alone, with the same size check.
pub fn decompress(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > max_decoded {
        return Err(DecodeError::DecodedTooLarge {
            size,
            limit: max_decoded,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))
}

/// Checks the headers remote-write 1.0 senders set. A missing Content-Encoding is read
/// as snappy, since some agents omit it; anything else is refused.
pub fn check_headers(
    content_encoding: Option<&str>,
    content_type: Option<&str>,
    version: Option<&str>,
) -> Result<(), DecodeError> {
    if let Some(encoding) = content_encoding
        && !encoding.trim().eq_ignore_ascii_case("snappy")
    {
        return Err(DecodeError::Encoding(encoding.to_owned()));
    }
    if let Some(content_type) = content_type
        && content_type.contains("io.prometheus.write.v2")
    {
        return Err(DecodeError::Version(content_type.to_owned()));
    }
    if let Some(version) = version
        && !version.trim().starts_with("0.1.")
        && !version.trim().starts_with("1.")
    {
        return Err(DecodeError::Version(version.to_owned()));
    }
    Ok(())
}

/// Encodes a request as a sender would (tests, benches, and the e2e harness).
pub fn encode_write_request(request: &WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    // Compressing a Vec cannot fail except for inputs over snappy's 4 GiB limit.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_proto::prometheus::{Label, Sample, TimeSeries};

    fn request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_000,
                }],
            }],
            metadata: vec![],
        }
    }

    #[test]
    fn a_sender_body_round_trips() {
        let body = encode_write_request(&request());
        assert_eq!(decode_write_request(&body, 1 << 20).unwrap(), request());
    }

    #[test]
    fn bad_bodies_get_the_right_error() {
        let body = encode_write_request(&request());
        let truncated = &body[..body.len() - 3];
        let error = decode_write_request(truncated, 1 << 20).unwrap_err();
        assert_eq!(error.status_code(), 400, "{error}");
        let uncompressed = prost::Message::encode_to_vec(&request());
        assert_eq!(
            decode_write_request(&uncompressed, 1 << 20)
                .unwrap_err()
                .status_code(),
            400
        );
        let not_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff\xff garbage")
            .unwrap();
        assert!(matches!(
            decode_write_request(&not_protobuf, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
        assert!(matches!(
            decode_write_request(&body, 4),
            Err(DecodeError::DecodedTooLarge { .. })
        ));
    }

    #[test]
    fn headers_of_other_protocols_are_refused() {
        assert!(
            check_headers(
                Some("snappy"),
                Some("application/x-protobuf"),
                Some("0.1.0")
            )
            .is_ok()
        );
        assert!(check_headers(None, None, None).is_ok());
        assert_eq!(
            check_headers(Some("gzip"), None, None)
                .unwrap_err()
                .status_code(),
            415
        );
        assert!(
            check_headers(
                Some("snappy"),
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                Some("2.0.0")
            )
            .is_err()
        );
        assert!(check_headers(None, None, Some("2.0.0")).is_err());
    }
}
