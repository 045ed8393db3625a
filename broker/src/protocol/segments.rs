//! Fetch answers as segments: each partition's records go to the socket as the buffer the
//! log read them into, instead of being copied into one response buffer first.
//!
//! The answer is encoded by `kafka-protocol` as usual, with each large `records` field
//! replaced by a 16-byte marker (a per-process random tag and the partition's index). In a
//! Fetch response nothing but a `records` field's own length prefix depends on the size of
//! the records (arrays count elements, and the tagged fields hold no records), so the real
//! answer is the encoded one with, at each marker, the marker's length prefix and the marker
//! swapped for the real length prefix and the real records. The segments concatenated are
//! byte for byte what [`super::encode_response`] gives (a test checks it for every Fetch
//! version served).

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

use super::encode_response;
use crate::error::ProtocolError;

/// Records below this size are copied into the answer as before: a segment of their own
/// would cost more (a slice in the writev, a header segment split) than the copy saves.
pub const SPLICE_MIN: usize = 16 << 10;

const MARKER_LEN: usize = 16;

/// A response frame as the segments to write, in order.
pub type Frame = Vec<Bytes>;

/// The random part of every marker, fixed for the process.
fn tag() -> &'static [u8; 12] {
    static TAG: OnceLock<[u8; 12]> = OnceLock::new();
    TAG.get_or_init(|| {
        let mut t = [0u8; 12];
        t.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..12]);
        t
    })
}

fn marker(index: u32) -> Bytes {
    let mut m = BytesMut::with_capacity(MARKER_LEN);
    m.extend_from_slice(tag());
    m.put_u32(index);
    m.freeze()
}

/// The length prefix of a `records` field of `len` bytes: INT32 before flexible versions
/// (Fetch v12), an unsigned varint of len + 1 (COMPACT_NULLABLE_BYTES) from them.
fn records_prefix(len: usize, flexible: bool, out: &mut BytesMut) {
    if flexible {
        let mut v = len as u64 + 1;
        while v >= 0x80 {
            out.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        out.put_u8(v as u8);
    } else {
        out.put_i32(len as i32);
    }
}

/// Encodes a response frame as segments: a Fetch answer with large records spliced (see
/// the module), anything else as one buffer.
pub fn encode_response_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: ResponseKind,
) -> Result<Frame, ProtocolError> {
    match response {
        ResponseKind::Fetch(r) if api_key == ApiKey::Fetch => {
            encode_fetch(version, correlation_id, r)
        }
        other => Ok(vec![encode_response(
            api_key,
            version,
            correlation_id,
            &other,
        )?]),
    }
}

fn encode_fetch(
    version: i16,
    correlation_id: i32,
    mut r: FetchResponse,
) -> Result<Frame, ProtocolError> {
    // Take the large records out, leaving a marker in their place.
    let mut taken: Vec<Bytes> = Vec::new();
    for t in r.responses.iter_mut() {
        for p in t.partitions.iter_mut() {
            if p.records.as_ref().is_some_and(|b| b.len() >= SPLICE_MIN) {
                let records = p
                    .records
                    .replace(marker(taken.len() as u32))
                    .unwrap_or_default();
                taken.push(records);
            }
        }
    }
    if taken.is_empty() {
        return Ok(vec![encode_response(
            ApiKey::Fetch,
            version,
            correlation_id,
            &ResponseKind::Fetch(r),
        )?]);
    }
    let flexible = version >= 12;
    let encoded = encode_response(
        ApiKey::Fetch,
        version,
        correlation_id,
        &ResponseKind::Fetch(r),
    )?;
    let mut marker_prefix = BytesMut::new();
    records_prefix(MARKER_LEN, flexible, &mut marker_prefix);
    let total = encoded.len() - taken.len() * (marker_prefix.len() + MARKER_LEN)
        + taken
            .iter()
            .map(|b| {
                let mut p = BytesMut::new();
                records_prefix(b.len(), flexible, &mut p);
                p.len() + b.len()
            })
            .sum::<usize>();
    // The frame's length prefix counted the markers: the real one is its own segment, and
    // the encoded bytes around the markers are slices of `encoded` (no copy).
    let mut frame: Frame = Vec::with_capacity(3 * taken.len() + 2);
    frame.push(Bytes::copy_from_slice(&((total - 4) as i32).to_be_bytes()));
    let mut cursor = 4usize;
    for (index, records) in taken.into_iter().enumerate() {
        let m = marker(index as u32);
        let at = find(&encoded[cursor..], &m)
            .map(|i| cursor + i)
            .filter(|at| *at >= cursor + marker_prefix.len())
            .filter(|at| encoded[at - marker_prefix.len()..*at] == marker_prefix[..])
            .ok_or_else(|| ProtocolError::Encode {
                api: "Fetch",
                reason: format!("records marker {index} not found in the encoded answer"),
            })?;
        frame.push(encoded.slice(cursor..at - marker_prefix.len()));
        let mut prefix = BytesMut::with_capacity(5);
        records_prefix(records.len(), flexible, &mut prefix);
        frame.push(prefix.freeze());
        frame.push(records);
        cursor = at + MARKER_LEN;
    }
    frame.push(encoded.slice(cursor..));
    Ok(frame)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// The bytes of a frame.
    fn concat(frame: &Frame) -> Bytes {
        let mut out = BytesMut::with_capacity(frame.iter().map(|b| b.len()).sum());
        for b in frame {
            out.extend_from_slice(b);
        }
        out.freeze()
    }

    fn records(len: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<_>>(),
        )
    }

    /// A Fetch answer with every field `version` has set, and records of several sizes.
    fn response(version: i16) -> FetchResponse {
        let partition = |i: i32, records: Option<Bytes>| {
            let mut p = PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(1000 + i as i64)
                .with_last_stable_offset(900)
                .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                    .with_producer_id(ProducerId(7))
                    .with_first_offset(3)]))
                .with_records(records);
            if version >= 5 {
                p = p.with_log_start_offset(5);
            }
            if version >= 12 {
                // A tagged field (sized): it holds no records.
                p = p.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(2))
                        .with_leader_epoch(4),
                );
            }
            p
        };
        let topic = |name: &'static str, id: u128| {
            let t = FetchableTopicResponse::default();
            if version >= 13 {
                t.with_topic_id(uuid::Uuid::from_u128(id))
            } else {
                t.with_topic(TopicName(StrBytes::from_static_str(name)))
            }
        };
        let r = FetchResponse::default();
        let r = if version >= 7 {
            r.with_session_id(42)
        } else {
            r
        };
        r.with_responses(vec![
            topic("a", 1).with_partitions(vec![
                partition(0, Some(records(SPLICE_MIN, 1))),
                partition(1, None),
                partition(2, Some(records(100, 2))),
                partition(3, Some(records(300_000, 3))),
            ]),
            topic("b", 2).with_partitions(vec![
                partition(0, Some(Bytes::new())),
                partition(1, Some(records(1000, 4))),
                partition(2, Some(records(16_384 + 5, 5))),
            ]),
        ])
    }

    #[test]
    fn segments_are_byte_for_byte_the_whole_answer_at_every_fetch_version() {
        for version in 4..=13 {
            let whole = encode_response(
                ApiKey::Fetch,
                version,
                77,
                &ResponseKind::Fetch(response(version)),
            )
            .expect("encode");
            let frame = encode_response_frame(
                ApiKey::Fetch,
                version,
                77,
                ResponseKind::Fetch(response(version)),
            )
            .expect("segments");
            assert_eq!(concat(&frame), whole, "Fetch v{version}");
            // The large records are their own segments: the read buffers, not copies.
            let big: Vec<usize> = frame
                .iter()
                .map(|b| b.len())
                .filter(|l| *l >= SPLICE_MIN)
                .collect();
            assert_eq!(big, [SPLICE_MIN, 300_000, 16_384 + 5], "v{version}");
        }
    }

    #[test]
    fn answers_without_large_records_are_one_buffer() {
        let small =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_partitions(vec![
                    PartitionData::default().with_records(Some(records(10, 0)))
                ])]);
        let whole = encode_response(ApiKey::Fetch, 11, 1, &ResponseKind::Fetch(small.clone()))
            .expect("encode");
        let frame =
            encode_response_frame(ApiKey::Fetch, 11, 1, ResponseKind::Fetch(small)).expect("frame");
        assert_eq!(frame, vec![whole]);
    }
}
