//! Length-prefixed Kafka frames and the request preamble.
//!
//! Every Kafka request and response is an `i32` big-endian length followed by that many bytes.
//! The length comes from the peer, so it is checked against [`FRAME_BYTES_MAX`] before anything
//! is allocated for the frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Largest frame accepted from a peer, matching Kafka's `socket.request.max.bytes` default
/// (100 MiB). A produce request must fit in one frame, so this also bounds a produce request.
pub const FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Bytes of the length prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Smallest possible request: api key (2), api version (2), correlation id (4).
pub const REQUEST_PREAMBLE_BYTES: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame length {0} exceeds the limit of {FRAME_BYTES_MAX} bytes")]
    TooLarge(usize),
    #[error("frame of {0} bytes is shorter than a request preamble")]
    TooShort(usize),
    #[error("malformed request header: {0}")]
    BadHeader(String),
}

/// Validates a frame length prefix; returns the body length to read.
pub fn frame_len(prefix: [u8; FRAME_PREFIX_BYTES]) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(FrameError::NegativeLength(len));
    }
    let len = len as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// The fixed first fields of every request, readable before the API is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPreamble {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPreamble {
    pub fn parse(frame: &[u8]) -> Result<RequestPreamble, FrameError> {
        if frame.len() < REQUEST_PREAMBLE_BYTES {
            return Err(FrameError::TooShort(frame.len()));
        }
        let mut buf = &frame[..REQUEST_PREAMBLE_BYTES];
        Ok(RequestPreamble {
            api_key: buf.get_i16(),
            api_version: buf.get_i16(),
            correlation_id: buf.get_i32(),
        })
    }
}

/// Decodes the request header of a known API, leaving `frame` at the start of the body.
pub fn decode_request_header(
    api_key: ApiKey,
    api_version: i16,
    frame: &mut Bytes,
) -> Result<RequestHeader, FrameError> {
    let header_version = api_key.request_header_version(api_version);
    RequestHeader::decode(frame, header_version).map_err(|e| FrameError::BadHeader(e.to_string()))
}

/// Encodes a complete response frame: length prefix, response header, body.
///
/// ApiVersions responses always use header version 0 so that a client that does not yet know
/// the broker's versions can read them; `kafka-protocol` encodes that rule in
/// `response_header_version`.
pub fn encode_response<M: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &M,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(api_version);
    let size = header.compute_size(header_version)? + body.compute_size(api_version)?;
    anyhow::ensure!(
        size <= i32::MAX as usize,
        "response of {size} bytes is too large"
    );
    let mut out = BytesMut::with_capacity(FRAME_PREFIX_BYTES + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version)?;
    body.encode(&mut out, api_version)?;
    debug_assert_eq!(out.len(), FRAME_PREFIX_BYTES + size);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_len_limits() {
        assert_eq!(frame_len(0i32.to_be_bytes()), Ok(0));
        assert_eq!(frame_len(12i32.to_be_bytes()), Ok(12));
        assert_eq!(
            frame_len((-1i32).to_be_bytes()),
            Err(FrameError::NegativeLength(-1))
        );
        let over = FRAME_BYTES_MAX as i32 + 1;
        assert_eq!(
            frame_len(over.to_be_bytes()),
            Err(FrameError::TooLarge(over as usize))
        );
        assert_eq!(
            frame_len(i32::MAX.to_be_bytes()),
            Err(FrameError::TooLarge(i32::MAX as usize))
        );
    }

    #[test]
    fn preamble_needs_eight_bytes() {
        assert_eq!(
            RequestPreamble::parse(&[0; 7]),
            Err(FrameError::TooShort(7))
        );
        let p = RequestPreamble::parse(&[0, 18, 0, 3, 0, 0, 0, 7, 99]).unwrap();
        assert_eq!(
            p,
            RequestPreamble {
                api_key: 18,
                api_version: 3,
                correlation_id: 7
            }
        );
    }
}
