//! Produce v0-v2, which Kafka 4 parses only to refuse. Strom does the same.
//!
//! A v0-v2 Produce request is a v3 request without `transactional_id`, so it is decoded by the
//! crate's v3 decoder after a null `transactional_id` is put in front. The v2 response has the
//! v3 layout; v0 and v1 responses (which the crate cannot encode) are written here field by
//! field: `[topic name, [partition, error_code, base_offset]]`, then `throttle_time_ms` in v1.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ProduceResponse, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable};

pub fn decode_old_produce(body: Bytes) -> anyhow::Result<RequestKind> {
    let mut v3 = BytesMut::with_capacity(body.len() + 2);
    v3.put_i16(-1);
    v3.extend_from_slice(&body);
    let mut v3 = v3.freeze();
    Ok(RequestKind::Produce(
        kafka_protocol::messages::ProduceRequest::decode(&mut v3, 3)?,
    ))
}

pub fn encode_old_produce_response(
    r: &ProduceResponse,
    version: i16,
    buf: &mut BytesMut,
) -> anyhow::Result<()> {
    if version == 2 {
        return r.encode(buf, 3);
    }
    buf.put_i32(r.responses.len() as i32);
    for t in &r.responses {
        let name = t.name.as_bytes();
        buf.put_i16(name.len() as i16);
        buf.put_slice(name);
        buf.put_i32(t.partition_responses.len() as i32);
        for p in &t.partition_responses {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.base_offset);
        }
    }
    if version == 1 {
        buf.put_i32(r.throttle_time_ms);
    }
    Ok(())
}
