//! Kafka v2 record batch headers: validated once on the way in, then stored verbatim.
//!
//! ```text
//! offset  size  field                 rewritten by the broker?
//!      0     8  baseOffset            yes (not covered by the CRC)
//!      8     4  batchLength
//!     12     4  partitionLeaderEpoch  yes (not covered by the CRC)
//!     16     1  magic (2)
//!     17     4  crc (CRC-32C of bytes 21..)
//!     21     2  attributes
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordsCount
//!     61        records...
//! ```
//! Nothing past the header is read on the produce path: no per-record work.

use bytes::{Bytes, BytesMut};

use crate::error::LogError;

pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts from: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;

const ATTR_TRANSACTIONAL: u16 = 1 << 4;
const ATTR_CONTROL: u16 = 1 << 5;

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The producer (id, epoch) of the first batch in `records` when it is transactional data
/// (not a marker), read from the header alone: what produce-time verification needs before
/// the batches are parsed. None for anything else, malformed input included.
pub fn peek_transactional(records: &[u8]) -> Option<(i64, i16)> {
    if records.len() < 61 || records[16] != 2 {
        return None;
    }
    let attributes = be_i16(records, 21) as u16;
    if attributes & ATTR_TRANSACTIONAL == 0 || attributes & ATTR_CONTROL != 0 {
        return None;
    }
    Some((be_i64(records, 43), be_i16(records, 51)))
}

/// A validated batch: its bytes and the header fields the log needs.
#[derive(Debug, Clone)]
pub struct BatchView {
    pub bytes: Bytes,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub records_count: i32,
    pub producer_id: i64,
}

impl BatchView {
    pub fn base_offset(&self) -> i64 {
        be_i64(&self.bytes, 0)
    }

    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(&self.bytes, 12)
    }

    pub fn base_timestamp(&self) -> i64 {
        be_i64(&self.bytes, 27)
    }

    pub fn producer_epoch(&self) -> i16 {
        be_i16(&self.bytes, 51)
    }

    pub fn attributes(&self) -> u16 {
        be_i16(&self.bytes, 21) as u16
    }

    /// Part of a transaction (data or marker).
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }

    /// A control batch: a transaction marker (COMMIT or ABORT).
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }

    /// The marker a control batch holds: (commit?, coordinator epoch). None for data batches
    /// and for control records of other types (Kafka's leader-change messages).
    pub fn marker(&self) -> Option<Marker> {
        if !self.is_control() {
            return None;
        }
        let mut data = self.bytes.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut data).ok()?;
        let r = set.records.first()?;
        let key = r.key.as_deref()?;
        if key.len() < 4 {
            return None;
        }
        let kind = be_i16(key, 2);
        let coordinator_epoch = r
            .value
            .as_deref()
            .filter(|v| v.len() >= 6)
            .map_or(-1, |v| be_i32(v, 2));
        match kind {
            0 => Some(Marker {
                commit: false,
                coordinator_epoch,
            }),
            1 => Some(Marker {
                commit: true,
                coordinator_epoch,
            }),
            _ => None,
        }
    }

    /// First and last sequence numbers (sequences wrap from i32::MAX to 0).
    pub fn sequences(&self) -> (i32, i32) {
        let first = be_i32(&self.bytes, 53);
        let last = (first as i64 + self.last_offset_delta as i64) % (i32::MAX as i64 + 1);
        (first, last as i32)
    }

    /// A copy with `baseOffset` and `partitionLeaderEpoch` set, as the log stores it.
    pub fn with_offset(&self, base_offset: i64, leader_epoch: i32) -> Bytes {
        let mut out = BytesMut::from(&self.bytes[..]);
        out[0..8].copy_from_slice(&base_offset.to_be_bytes());
        out[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
        out.freeze()
    }
}

/// A transaction marker: how a transaction ended and which coordinator epoch ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// A control batch holding one marker of `producer_id` at `producer_epoch`, as the
/// transaction coordinator has partition leaders write it (offset 0; the log assigns it).
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    timestamp: i64,
) -> Result<Bytes, LogError> {
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&(marker.commit as i16).to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut r =
        strom_client::records::record(0, Some(key.freeze()), Some(value.freeze()), timestamp);
    r.control = true;
    r.transactional = true;
    r.producer_id = producer_id;
    r.producer_epoch = producer_epoch;
    r.sequence = -1;
    strom_client::records::encode(&[r], strom_client::records::Compression::None).map_err(|e| {
        LogError::InvalidRecord {
            reason: format!("marker does not encode: {e}"),
        }
    })
}

/// The header fields of one batch whose length is already known to cover a header.
fn view(bytes: Bytes) -> BatchView {
    BatchView {
        last_offset_delta: be_i32(&bytes, 23),
        max_timestamp: be_i64(&bytes, 35),
        records_count: be_i32(&bytes, 57),
        producer_id: be_i64(&bytes, 43),
        bytes,
    }
}

/// One batch as this broker stored it (one value of the log store): its header, without
/// the produce-time checks (a compacted batch has fewer records than its offset span).
pub fn stored(bytes: Bytes) -> Result<BatchView, LogError> {
    if bytes.len() < HEADER_LEN {
        return Err(LogError::CorruptMessage {
            reason: format!(
                "stored batch of {} bytes is shorter than a header",
                bytes.len()
            ),
        });
    }
    Ok(view(bytes))
}

/// Splits a produce request's `records` into batches and validates each header: magic 2, a
/// length that fits, a matching CRC-32C, a sane record count, and a size within `max_bytes`.
/// Control batches are refused: only the transaction coordinator writes markers.
pub fn parse_batches(records: &Bytes, max_bytes: usize) -> Result<Vec<BatchView>, LogError> {
    let views = split(records, max_bytes, true)?;
    if views.iter().any(|v| v.is_control()) {
        return Err(LogError::InvalidRecord {
            reason: "control batches are written by the transaction coordinator only".into(),
        });
    }
    if views
        .iter()
        .any(|v| v.is_transactional() && v.producer_id < 0)
    {
        return Err(LogError::InvalidRecord {
            reason: "a transactional batch needs a producer id".into(),
        });
    }
    Ok(views)
}

/// Splits batches the broker made itself (markers, the coordinators' records): framing
/// and CRC checked, control batches allowed.
pub fn parse_internal(records: &Bytes) -> Result<Vec<BatchView>, LogError> {
    split(records, usize::MAX, true)
}

/// Splits batches fetched from a partition leader: framing, magic and CRC are checked as for
/// produced ones, but not the producer's rules — the leader stored them, and a compacted
/// batch holds fewer records than its offset span.
pub fn parse_replicated(records: &Bytes) -> Result<Vec<BatchView>, LogError> {
    split(records, usize::MAX, false)
}

fn split(records: &Bytes, max_bytes: usize, produced: bool) -> Result<Vec<BatchView>, LogError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0usize;
    if records.is_empty() {
        return Err(LogError::InvalidRecord {
            reason: "the produce request holds no record batch".into(),
        });
    }
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < HEADER_LEN {
            return Err(LogError::CorruptMessage {
                reason: format!("{} trailing bytes are not a record batch", rest.len()),
            });
        }
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(LogError::InvalidRecord {
                reason: format!("record batch magic {magic}: only v2 batches are supported"),
            });
        }
        let batch_length = be_i32(rest, 8);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(LogError::CorruptMessage {
                reason: format!("batch length {batch_length} is shorter than a header"),
            });
        }
        let size = batch_length as usize + LOG_OVERHEAD;
        if size > max_bytes {
            return Err(LogError::MessageTooLarge {
                size,
                max: max_bytes,
            });
        }
        if size > rest.len() {
            return Err(LogError::CorruptMessage {
                reason: format!("batch of {size} bytes but only {} present", rest.len()),
            });
        }
        let bytes = records.slice(pos..pos + size);
        let stored_crc = be_i32(&bytes, 17) as u32;
        let crc = crc32c::crc32c(&bytes[21..]);
        if crc != stored_crc {
            return Err(LogError::CorruptMessage {
                reason: format!(
                    "CRC mismatch: batch says {stored_crc:#010x}, bytes give {crc:#010x}"
                ),
            });
        }
        if !produced {
            out.push(view(bytes));
            pos += size;
            continue;
        }
        let last_offset_delta = be_i32(&bytes, 23);
        let records_count = be_i32(&bytes, 57);
        if records_count < 1 || last_offset_delta != records_count - 1 {
            return Err(LogError::InvalidRecord {
                reason: format!("{records_count} records with lastOffsetDelta {last_offset_delta}"),
            });
        }
        out.push(view(bytes));
        pos += size;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn peeking_at_a_transactional_batch_reads_the_header_only() {
        use strom_client::records;
        let mut recs = vec![records::record(
            0,
            None,
            Some(bytes::Bytes::from_static(b"v")),
            1,
        )];
        records::idempotent(&mut recs, 42, 3, 0);
        let plain = records::encode(&recs, Compression::None).expect("encode");
        assert_eq!(peek_transactional(&plain), None, "not transactional");
        recs[0].transactional = true;
        let txn = records::encode(&recs, Compression::None).expect("encode");
        assert_eq!(peek_transactional(&txn), Some((42, 3)));
        recs[0].control = true;
        recs[0].key = Some(bytes::Bytes::from_static(&[0, 0, 0, 0]));
        let control = records::encode(&recs, Compression::None).expect("encode");
        assert_eq!(peek_transactional(&control), None, "markers are not data");
        // Short, empty or of another magic: nothing, and no panic.
        for n in 0..=txn.len() {
            let got = peek_transactional(&txn[..n]);
            assert_eq!(got, (n >= 61).then_some((42, 3)), "{n} bytes");
        }
        let mut v1 = txn.to_vec();
        v1[16] = 1;
        assert_eq!(peek_transactional(&v1), None);
    }

    use super::*;
    use strom_client::records::{self, Compression};

    /// Encodes `n` records with the crate's encoder, as a client would.
    pub(crate) fn encode_batch(n: usize, base_ts: i64, compression: Compression) -> Bytes {
        let batch: Vec<_> = (0..n)
            .map(|i| {
                records::record(
                    i,
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(format!("value-{i}"))),
                    base_ts + i as i64,
                )
            })
            .collect();
        records::encode(&batch, compression).expect("encode")
    }

    #[test]
    fn compacted_batches_replicate_but_are_not_produced() {
        // Offsets 0 and 2 in one batch: what compaction leaves after dropping offset 1.
        let kept: Vec<_> = [0usize, 2]
            .iter()
            .map(|i| records::record(*i, None, Some(Bytes::from_static(b"v")), 1))
            .collect();
        let compacted = records::encode(&kept, Compression::None).expect("encode");
        assert!(matches!(
            parse_batches(&compacted, 1 << 20),
            Err(LogError::InvalidRecord { .. })
        ));
        let views = parse_replicated(&compacted).expect("a leader's compacted batch");
        assert_eq!((views[0].records_count, views[0].last_offset_delta), (2, 2));
        // Corruption is still refused.
        let mut bad = BytesMut::from(&compacted[..]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            parse_replicated(&bad.freeze()),
            Err(LogError::CorruptMessage { .. })
        ));
    }

    #[test]
    fn accepts_real_batches_of_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encode_batch(10, 1000, c);
            let views = parse_batches(&b, 1 << 20).expect("valid");
            assert_eq!(views.len(), 1);
            assert_eq!(views[0].records_count, 10);
            assert_eq!(views[0].last_offset_delta, 9);
            assert_eq!(views[0].max_timestamp, 1009);
        }
    }

    #[test]
    fn several_batches_in_one_request() {
        let mut two = BytesMut::new();
        two.extend_from_slice(&encode_batch(3, 0, Compression::None));
        two.extend_from_slice(&encode_batch(2, 0, Compression::Gzip));
        let views = parse_batches(&two.freeze(), 1 << 20).expect("valid");
        assert_eq!(
            views.iter().map(|v| v.records_count).collect::<Vec<_>>(),
            vec![3, 2]
        );
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_the_crc_valid() {
        let b = encode_batch(4, 0, Compression::Lz4);
        let view = &parse_batches(&b, 1 << 20).expect("valid")[0];
        let stored = view.with_offset(1234, 7);
        let again = &parse_batches(&stored, 1 << 20).expect("still valid")[0];
        assert_eq!(again.base_offset(), 1234);
        assert_eq!(again.partition_leader_epoch(), 7);
    }

    #[test]
    fn rejects_corruption_and_oversize() {
        let b = encode_batch(4, 0, Compression::None);
        let mut flipped = BytesMut::from(&b[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(matches!(
            parse_batches(&flipped.freeze(), 1 << 20),
            Err(LogError::CorruptMessage { .. })
        ));
        assert!(matches!(
            parse_batches(&b, 10),
            Err(LogError::MessageTooLarge { .. })
        ));
        assert!(matches!(
            parse_batches(&b.slice(..b.len() - 3), 1 << 20),
            Err(LogError::CorruptMessage { .. })
        ));
        let mut magic1 = BytesMut::from(&b[..]);
        magic1[16] = 1;
        assert!(matches!(
            parse_batches(&magic1.freeze(), 1 << 20),
            Err(LogError::InvalidRecord { .. })
        ));
        assert!(parse_batches(&Bytes::new(), 1 << 20).is_err());
        let mut lying_len = BytesMut::from(&b[..]);
        lying_len[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_batches(&lying_len.freeze(), usize::MAX).is_err());
    }
}
