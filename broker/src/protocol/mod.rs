//! The Kafka wire protocol, without I/O: framing, the versions Strom speaks, and turning a
//! frame into a typed request and a typed response into a frame. Message types come from the
//! `kafka-protocol` crate; nothing here hand-codes a message except the Produce v0-v1
//! response (see [`legacy`]).

pub mod codec;
pub mod legacy;
pub mod segments;
pub mod versions;

pub use segments::{encode_response_frame, Frame};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ProtocolError;

/// A decoded request with what is needed to answer it.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// What the first 8 bytes of every request say, read before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
}

pub fn preamble(frame: &[u8]) -> Result<Preamble, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::FrameTooShort {
            length: frame.len(),
        });
    }
    Ok(Preamble {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

fn api_name(key: ApiKey) -> &'static str {
    versions::name(key)
}

/// Decodes a whole request frame whose api and version are supported.
pub fn decode_request(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<Request, ProtocolError> {
    let malformed = |e: anyhow::Error| ProtocolError::Malformed {
        api: api_name(api_key),
        version,
        reason: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(malformed)?;
    let body = if api_key == ApiKey::Produce && version < 3 {
        legacy::decode_old_produce(frame).map_err(malformed)?
    } else {
        RequestKind::decode(api_key, &mut frame, version).map_err(malformed)?
    };
    Ok(Request {
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response frame: length prefix, response header, body.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let fail = |e: anyhow::Error| ProtocolError::Encode {
        api: api_name(api_key),
        reason: e.to_string(),
    };
    // A fetch answer carries up to fetch.max.bytes of records: sized once, it is copied into
    // place once, instead of again at every doubling of a growing buffer (and faulted in a
    // page at a time each time); in a catch-up consume this took the broker's CPU from 7.1 s
    // to 5.4 s on jemalloc's default settings (docs/perf.md).
    let body = match response {
        ResponseKind::Fetch(r) => r.compute_size(version).unwrap_or(0),
        ResponseKind::ShareFetch(r) => r.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(64 + body);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(fail)?;
    match (response, api_key) {
        (ResponseKind::Produce(r), ApiKey::Produce) if version < 3 => {
            legacy::encode_old_produce_response(r, version, &mut buf).map_err(fail)?
        }
        _ => response.encode(&mut buf, version).map_err(fail)?,
    }
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Reads the correlation id back from an encoded response frame (tests and tracing).
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame.get(4..8)?;
    Some(b.get_i32())
}
