//! Building record batches: the one place Strom turns records into Kafka v2 batch bytes, for
//! the producer and the CLI here, and for the broker's group coordinator and compaction and
//! the tests, which depend on this crate.

use bytes::{Bytes, BytesMut};
pub use kafka_protocol::records::{Compression, Record};
use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use crate::ClientError;

/// The `i`-th record of a batch from a plain (non-idempotent) producer, without headers.
/// Its sequence is `i`: the crate's encoder keeps records in one batch while offset minus
/// sequence stays constant.
pub fn record(i: usize, key: Option<Bytes>, value: Option<Bytes>, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i as i64,
        sequence: i as i32,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// Makes `records` (one batch, in order) come from idempotent producer `producer_id` at
/// `epoch`, with sequences from `base_seq` (wrapping as Kafka's do).
pub fn idempotent(records: &mut [Record], producer_id: i64, epoch: i16, base_seq: i32) {
    for (i, r) in records.iter_mut().enumerate() {
        r.producer_id = producer_id;
        r.producer_epoch = epoch;
        r.sequence = (base_seq as i64 + i as i64).rem_euclid(i32::MAX as i64 + 1) as i32;
    }
}

/// Encodes `records` as v2 record batches.
pub fn encode(records: &[Record], compression: Compression) -> Result<Bytes, ClientError> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| ClientError::Encode {
        reason: e.to_string(),
    })?;
    Ok(buf.freeze())
}

/// Milliseconds since the Unix epoch: record timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
