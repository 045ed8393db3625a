//! The engine-free storage contract.

use bytes::Bytes;
use uuid::Uuid;

/// Identifies one partition of one topic. Topics are keyed by id, not name, so a topic that is
/// deleted and created again under the same name never sees the old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic_id: Uuid,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic_id: Uuid, partition: u32) -> Self {
        Self {
            topic_id,
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic_id, self.partition)
    }
}

/// What the store remembers about a partition besides its batches. It is persisted in the same
/// atomic write as the batches it accounts for, so after a crash it always matches the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// First offset still in the log.
    pub log_start_offset: i64,
    /// Offset the next appended record gets.
    pub log_end_offset: i64,
    /// Largest record timestamp seen so far (-1 when none), driving the time index.
    pub max_timestamp: i64,
    /// Bytes of batch data held.
    pub size_bytes: u64,
    /// The high watermark as last checkpointed: records below it were replicated to every
    /// in-sync replica. Never above `log_end_offset`.
    pub high_watermark: i64,
}

impl PartitionState {
    /// An empty partition whose first record will get `start_offset`.
    pub const fn empty(start_offset: i64) -> Self {
        Self {
            log_start_offset: start_offset,
            log_end_offset: start_offset,
            max_timestamp: -1,
            size_bytes: 0,
            high_watermark: start_offset,
        }
    }

    pub(crate) const ENCODED_LEN: usize = 40;
    /// The layout before the high watermark was stored (single-replica logs).
    const ENCODED_LEN_V0: usize = 32;

    pub(crate) fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0..8].copy_from_slice(&self.log_start_offset.to_be_bytes());
        out[8..16].copy_from_slice(&self.log_end_offset.to_be_bytes());
        out[16..24].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[24..32].copy_from_slice(&self.size_bytes.to_be_bytes());
        out[32..40].copy_from_slice(&self.high_watermark.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        if bytes.len() != Self::ENCODED_LEN && bytes.len() != Self::ENCODED_LEN_V0 {
            return Err(StorageError::Corrupt {
                what: format!("partition state of {} bytes", bytes.len()),
            });
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            b
        };
        let log_end_offset = i64::from_be_bytes(field(1));
        Ok(Self {
            log_start_offset: i64::from_be_bytes(field(0)),
            log_end_offset,
            max_timestamp: i64::from_be_bytes(field(2)),
            size_bytes: u64::from_be_bytes(field(3)),
            // A single-replica log written before replication: everything was committed.
            high_watermark: if bytes.len() == Self::ENCODED_LEN {
                i64::from_be_bytes(field(4)).min(log_end_offset)
            } else {
                log_end_offset
            },
        })
    }
}

/// A batch handed to the store: its bytes are already final (offsets assigned, CRC valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: i64,
    /// Offset of the last record in the batch (`base_offset + last_offset_delta`).
    pub last_offset: i64,
    /// The batch's `maxTimestamp` field.
    pub max_timestamp: i64,
    pub data: Bytes,
}

/// Where a stored batch sits and how big it is, read from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub size: u64,
}

/// An entry of the time index: the first batch whose records reach `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp: i64,
    pub base_offset: i64,
}

/// An aborted transaction of one producer on one partition: its data spans
/// `first_offset..last_offset`, and `last_offset` is the ABORT marker's offset. Kept in the
/// partition's aborted-transaction index so read_committed fetches can tell consumers which
/// records to drop (Fetch's `aborted_transactions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl AbortedTxn {
    pub(crate) const ENCODED_LEN: usize = 16;

    /// The value stored under the marker offset: producer id and first offset.
    pub(crate) fn encode_value(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0..8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.first_offset.to_be_bytes());
        out
    }

    pub(crate) fn decode_value(last_offset: i64, v: &[u8]) -> Result<Self, StorageError> {
        if v.len() != Self::ENCODED_LEN {
            return Err(StorageError::Corrupt {
                what: format!("aborted transaction entry of {} bytes", v.len()),
            });
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&v[0..8]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[8..16]);
        Ok(Self {
            producer_id: i64::from_be_bytes(a),
            first_offset: i64::from_be_bytes(b),
            last_offset,
        })
    }
}

/// One atomic append to a partition: batches, the time index entries they create, and the
/// partition state after them. Build it with [`WriteBatch::new`] and [`WriteBatch::push`],
/// which keep the three consistent.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    pub(crate) batches: Vec<StoredBatch>,
    pub(crate) index: Vec<TimeIndexEntry>,
    pub(crate) state: PartitionState,
    pub(crate) producers: Vec<(i64, Vec<u8>)>,
    pub(crate) epochs: Vec<EpochEntry>,
    pub(crate) aborted: Vec<AbortedTxn>,
}

/// An entry of the leader epoch cache (KIP-101): the first offset written in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

impl WriteBatch {
    /// Starts an append on top of the partition's current state.
    pub fn new(current: PartitionState) -> Self {
        Self {
            batches: Vec::new(),
            index: Vec::new(),
            state: current,
            producers: Vec::new(),
            epochs: Vec::new(),
            aborted: Vec::new(),
        }
    }

    /// Adds an entry to the aborted-transaction index with this write (the write that holds
    /// its ABORT marker at `txn.last_offset`).
    pub fn add_aborted_txn(&mut self, txn: AbortedTxn) {
        self.aborted.push(txn);
    }

    /// Records that leader epoch `epoch` starts at `start_offset`, with this write.
    pub fn set_epoch_start(&mut self, epoch: i32, start_offset: i64) {
        self.epochs.push(EpochEntry {
            epoch,
            start_offset,
        });
    }

    /// Sets the high watermark stored with this write (clamped to the log end).
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.state.high_watermark = hw;
    }

    /// Stores the (opaque, caller-encoded) state of producer `producer_id` with this write,
    /// so idempotence survives a crash exactly as far as the log does.
    pub fn set_producer_state(&mut self, producer_id: i64, state: Vec<u8>) {
        self.producers.retain(|(p, _)| *p != producer_id);
        self.producers.push((producer_id, state));
    }

    /// Adds a batch. It must start exactly at the current log end offset.
    pub fn push(&mut self, batch: StoredBatch) -> Result<(), StorageError> {
        if batch.base_offset != self.state.log_end_offset || batch.last_offset < batch.base_offset {
            return Err(StorageError::NonContiguous {
                expected: self.state.log_end_offset,
                base_offset: batch.base_offset,
                last_offset: batch.last_offset,
            });
        }
        if batch.max_timestamp > self.state.max_timestamp {
            self.state.max_timestamp = batch.max_timestamp;
            self.index.push(TimeIndexEntry {
                timestamp: batch.max_timestamp,
                base_offset: batch.base_offset,
            });
        }
        self.state.log_end_offset = batch.last_offset + 1;
        self.state.size_bytes += batch.data.len() as u64;
        self.batches.push(batch);
        Ok(())
    }

    /// Adds a batch copied from the leader. It may start past the log end: the leader's
    /// compaction can remove whole batches, leaving a gap in its offsets that a new replica
    /// copies as it is (Kafka's followers accept any batch at or past their log end).
    pub fn push_replicated(&mut self, batch: StoredBatch) -> Result<(), StorageError> {
        if batch.base_offset > self.state.log_end_offset && batch.last_offset >= batch.base_offset {
            self.state.log_end_offset = batch.base_offset;
        }
        self.push(batch)
    }

    /// The partition state once this write is applied.
    pub fn state(&self) -> PartitionState {
        PartitionState {
            high_watermark: self.state.high_watermark.min(self.state.log_end_offset),
            ..self.state
        }
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("storage engine failed: {message}")]
    Engine { message: String },
    #[error("stored data is corrupt: {what}")]
    Corrupt { what: String },
    #[error("batch {base_offset}..={last_offset} does not continue the log at {expected}")]
    NonContiguous {
        expected: i64,
        base_offset: i64,
        last_offset: i64,
    },
    #[error("partition {partition} does not exist in the store")]
    UnknownPartition { partition: TopicPartition },
    /// A write after [`LogStore::close`]: the broker is stopping.
    #[error("the log store is closed: the broker is stopping")]
    Closed,
}

/// The contract every storage engine fulfils. Methods are synchronous: engines answer from
/// memory or the OS page cache in microseconds; callers on an async runtime call them inline.
pub trait LogStore: Send + Sync + 'static {
    /// Creates an empty partition (idempotent: an existing partition is left as it is) and
    /// returns its state.
    fn create_partition(&self, tp: TopicPartition) -> Result<PartitionState, StorageError>;

    /// Applies `write` atomically and durably against a process crash: once this returns, a
    /// restart finds every batch of it, or (if it failed) none.
    fn append(&self, tp: TopicPartition, write: WriteBatch) -> Result<(), StorageError>;

    /// Batches of `tp` starting with the one that holds `offset`, in order, stopping before any
    /// batch that starts at or after `end_offset`, and once `max_bytes` are collected. The first
    /// batch is returned even when it alone exceeds `max_bytes`, so a reader always progresses.
    fn read(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StorageError>;

    /// [`LogStore::read`] appending the batches to `out` (one copy from the engine, no
    /// per-batch buffers); returns how many batches it appended.
    fn read_into(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
        out: &mut bytes::BytesMut,
    ) -> Result<usize, StorageError> {
        let batches = self.read(tp, offset, end_offset, max_bytes)?;
        for b in &batches {
            out.extend_from_slice(b);
        }
        Ok(batches.len())
    }

    /// The first time index entry whose timestamp is at or after `timestamp`.
    fn lookup_timestamp(
        &self,
        tp: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<TimeIndexEntry>, StorageError>;

    /// The time index entry with the largest timestamp.
    fn last_time_index_entry(
        &self,
        tp: TopicPartition,
    ) -> Result<Option<TimeIndexEntry>, StorageError>;

    /// The producer states written with [`WriteBatch::set_producer_state`], by producer id.
    fn producer_states(&self, tp: TopicPartition) -> Result<Vec<(i64, Vec<u8>)>, StorageError>;

    /// Every partition the store holds, with its state: what a broker recovers at start-up.
    fn partitions(&self) -> Result<Vec<(TopicPartition, PartitionState)>, StorageError>;

    /// Removes a partition and all its data.
    fn delete_partition(&self, tp: TopicPartition) -> Result<(), StorageError>;

    /// Headers of up to `limit` batches of `tp`, in order, starting with the one that holds
    /// `offset` and stopping before any that starts at or after `end_offset`.
    fn batch_infos(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, StorageError>;

    /// Removes every batch starting below `remove_below` (and the time index entries and
    /// aborted-transaction entries that name them) and writes `state`, atomically. Retention and DeleteRecords use it.
    fn delete_head(
        &self,
        tp: TopicPartition,
        remove_below: i64,
        state: PartitionState,
    ) -> Result<(), StorageError>;

    /// Removes the batches starting at `remove`, stores `insert`, drops the aborted-transaction
    /// entries whose markers are at `remove_aborted` (markers compaction removes), and writes
    /// `state`, in one atomic write: a crash leaves the log before or after, never between.
    fn replace_batches(
        &self,
        tp: TopicPartition,
        remove: &[i64],
        insert: &[StoredBatch],
        remove_aborted: &[i64],
        state: PartitionState,
    ) -> Result<(), StorageError>;

    /// The leader epoch cache: every [`EpochEntry`] written, in epoch order.
    fn leader_epochs(&self, tp: TopicPartition) -> Result<Vec<EpochEntry>, StorageError>;

    /// The aborted-transaction index of `tp`, ordered by `last_offset` (the marker offset).
    /// [`LogStore::delete_head`] drops entries whose marker it removes, and
    /// [`LogStore::truncate`] those whose marker lies in the removed suffix.
    fn aborted_txns(&self, tp: TopicPartition) -> Result<Vec<AbortedTxn>, StorageError>;

    /// Writes `state` alone (the high watermark checkpoint).
    fn write_state(&self, tp: TopicPartition, state: PartitionState) -> Result<(), StorageError>;

    /// Removes every batch whose last offset is at or above `offset` (the log then ends at the
    /// first removed batch's base offset), the time index and epoch entries that name them,
    /// replaces all producer states with `producers`, and writes the state that follows from
    /// `current` (end offset, size, max timestamp, high watermark clamped), atomically: a
    /// follower discarding a divergent suffix (KIP-101). Returns the state written.
    fn truncate(
        &self,
        tp: TopicPartition,
        offset: i64,
        current: PartitionState,
        producers: &[(i64, Vec<u8>)],
    ) -> Result<PartitionState, StorageError>;

    /// The engine's own gauges (memtable and block cache sizes, pending compaction, write
    /// stalls), by the engine's names, for `/metrics`. None by default.
    fn engine_stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Writes out the in-memory write buffers that took no write since the previous call
    /// (and hold something), so memory that idle partitions held goes back. How many were
    /// written. Nothing by default (engines without such buffers).
    fn flush_idle(&self) -> usize {
        0
    }

    /// At a controlled shutdown: refuses every write from now on ([`StorageError::Closed`];
    /// a write already handed to the engine is written first), then writes out every
    /// in-memory write buffer, so the next start replays nothing and a write-ahead log kept
    /// in memory (`RocksOptions::wal_dir`) may go with the host: no write can land after the
    /// flush, only in the WAL. What a write accepted before the close does outside the WAL
    /// (dropping a deleted partition's files) may finish after it. Reads go on. Idempotent.
    fn close(&self) -> Result<(), StorageError>;
}
