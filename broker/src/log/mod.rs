//! Partition logs: offsets, appends, reads and the waiting of long-poll fetches.
//!
//! A [`PartitionLog`] serialises appends to one partition behind a mutex (offset assignment
//! must be a total order), hands the bytes to the [`LogStore`] in one atomic write, then
//! publishes the new end offset on a watch channel that parked fetches wait on.

pub mod batch;
pub mod cleaner;
pub mod producer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use metadata_quorum::MetadataImage;
use parking_lot::{Mutex, RwLock};
use strom_storage::{LogStore, PartitionState, StoredBatch, TopicPartition, WriteBatch};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::LogError;
use batch::BatchView;

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
}

/// What a read returns: the batches and the partition's offsets at the time.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// An offset found by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

pub struct PartitionLog {
    tp: TopicPartition,
    store: Arc<dyn LogStore>,
    state: Mutex<PartitionState>,
    /// Idempotent producers' state; locked only while `state` is held.
    producers: Mutex<HashMap<i64, producer::ProducerEntry>>,
    /// The partition's leader epoch as the metadata image has it; stamped on every batch
    /// appended and checked against clients' `current_leader_epoch`.
    leader_epoch: AtomicI32,
    /// The high watermark, which parked fetches watch. With one replica it is the log end.
    high_watermark: watch::Sender<i64>,
}

impl PartitionLog {
    fn new(
        tp: TopicPartition,
        store: Arc<dyn LogStore>,
        state: PartitionState,
    ) -> Result<Self, LogError> {
        let (high_watermark, _) = watch::channel(state.log_end_offset);
        let mut producers = HashMap::new();
        for (pid, bytes) in store.producer_states(tp)? {
            let entry = producer::ProducerEntry::decode(&bytes).ok_or_else(|| {
                LogError::CorruptMessage {
                    reason: format!("producer state of {pid} in {tp} does not decode"),
                }
            })?;
            producers.insert(pid, entry);
        }
        Ok(Self {
            tp,
            store,
            state: Mutex::new(state),
            producers: Mutex::new(producers),
            leader_epoch: AtomicI32::new(0),
            high_watermark,
        })
    }

    pub fn topic_partition(&self) -> TopicPartition {
        self.tp
    }

    pub fn state(&self) -> PartitionState {
        *self.state.lock()
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Follows the metadata image's leader epoch for this partition.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// A receiver woken whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Checks a client's `current_leader_epoch` (-1: unknown, accept).
    pub fn check_leader_epoch(&self, requested: i32) -> Result<(), LogError> {
        let current = self.leader_epoch();
        if requested < 0 || requested == current {
            Ok(())
        } else if requested < current {
            Err(LogError::FencedLeaderEpoch { requested, current })
        } else {
            Err(LogError::UnknownLeaderEpoch { requested, current })
        }
    }

    /// Appends validated batches, giving them consecutive offsets, in one durable write.
    pub fn append(&self, batches: &[BatchView]) -> Result<AppendInfo, LogError> {
        let mut state = self.state.lock();
        let mut producers = self.producers.lock();
        let mut write = WriteBatch::new(*state);
        let mut updates: Vec<(i64, producer::ProducerEntry)> = Vec::new();
        let mut answer: Option<(i64, i64)> = None;
        for b in batches {
            let pid = b.producer_id;
            let mut seq = None;
            if pid >= 0 {
                let current = updates
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == pid)
                    .map(|(_, e)| e)
                    .or_else(|| producers.get(&pid));
                let (first, last) = b.sequences();
                match producer::check(current, pid, b.producer_epoch(), first, last)? {
                    producer::SeqCheck::Duplicate(d) => {
                        // A retry: answer with where it landed the first time.
                        answer.get_or_insert((d.first_offset, d.last_offset));
                        continue;
                    }
                    producer::SeqCheck::Append => seq = Some((current.cloned(), first, last)),
                }
            }
            let base_offset = write.state().log_end_offset;
            let last_offset = base_offset + b.last_offset_delta as i64;
            write.push(StoredBatch {
                base_offset,
                last_offset,
                max_timestamp: b.max_timestamp,
                data: b.with_offset(base_offset, self.leader_epoch()),
            })?;
            answer.get_or_insert((base_offset, last_offset));
            if let Some((current, first_seq, last_seq)) = seq {
                let entry = producer::record(
                    current.as_ref(),
                    b.producer_epoch(),
                    producer::BatchSeq {
                        first_seq,
                        last_seq,
                        first_offset: base_offset,
                        last_offset,
                    },
                );
                write.set_producer_state(pid, entry.encode());
                updates.push((pid, entry));
            }
        }
        let (base_offset, last_offset) =
            answer.unwrap_or((state.log_end_offset, state.log_end_offset - 1));
        let info = AppendInfo {
            base_offset,
            last_offset,
            log_start_offset: state.log_start_offset,
        };
        if write.is_empty() {
            return Ok(info);
        }
        let next = write.state();
        self.store.append(self.tp, write)?;
        *state = next;
        for (pid, entry) in updates {
            producers.insert(pid, entry);
        }
        drop(producers);
        drop(state);
        self.high_watermark.send_replace(next.log_end_offset);
        Ok(info)
    }

    /// Reads from `offset` up to `max_bytes` (at least one batch) below the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        let state = self.state();
        let hw = self.high_watermark();
        if offset < state.log_start_offset || offset > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: state.log_start_offset,
                log_end: hw,
            });
        }
        // One copy, engine to response buffer; sized for what is there, not what is asked.
        let available = state.size_bytes.min(max_bytes as u64) as usize;
        let mut buf = BytesMut::with_capacity(available.min(64 << 20));
        self.store
            .read_into(self.tp, offset, hw, max_bytes, &mut buf)?;
        let records = buf.freeze();
        Ok(ReadResult {
            records,
            high_watermark: hw,
            log_start_offset: state.log_start_offset,
        })
    }

    /// The first offset whose record timestamp is at or after `timestamp`, as ListOffsets
    /// asks. The time index names the batch; only that batch is decoded.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let Some(entry) = self.store.lookup_timestamp(self.tp, timestamp)? else {
            return Ok(None);
        };
        self.find_in_batch(entry.base_offset, |ts| ts >= timestamp)
    }

    /// The offset of the record with the largest timestamp (ListOffsets MAX_TIMESTAMP).
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampOffset>, LogError> {
        let Some(entry) = self.store.last_time_index_entry(self.tp)? else {
            return Ok(None);
        };
        self.find_in_batch(entry.base_offset, |ts| ts == entry.timestamp)
    }

    /// The first record at or after `base_offset` (scanning forward a few batches, for logs
    /// with compaction gaps) whose timestamp satisfies `pred`.
    fn find_in_batch(
        &self,
        base_offset: i64,
        pred: impl Fn(i64) -> bool,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let hw = self.high_watermark();
        let start = self.state().log_start_offset;
        let mut from = base_offset.max(start);
        for _ in 0..16 {
            let batches = self.store.read(self.tp, from, hw, 1)?;
            let Some(mut data) = batches.into_iter().next() else {
                return Ok(None);
            };
            let set =
                RecordBatchDecoder::decode(&mut data).map_err(|e| LogError::CorruptMessage {
                    reason: format!("stored batch at {from} does not decode: {e}"),
                })?;
            if let Some(r) = set
                .records
                .iter()
                .find(|r| pred(r.timestamp) && r.offset < hw && r.offset >= start)
            {
                return Ok(Some(TimestampOffset {
                    timestamp: r.timestamp,
                    offset: r.offset,
                }));
            }
            match set.records.last() {
                Some(last) => from = last.offset + 1,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Moves the log start offset to `offset` (DeleteRecords; -1 means the high watermark)
    /// and drops every batch wholly below it. Returns the new log start offset. The head is
    /// scanned without the partition lock, so appends and fetches carry on meanwhile; only
    /// the one RocksDB write happens under it.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let hw = self.high_watermark();
        let offset = if offset == -1 { hw } else { offset };
        loop {
            let seen = self.state();
            if offset < 0 || offset > hw {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: seen.log_start_offset,
                    log_end: hw,
                });
            }
            if offset <= seen.log_start_offset {
                return Ok(seen.log_start_offset);
            }
            let mut removed_bytes = 0u64;
            let mut remove_below = seen.log_start_offset;
            loop {
                let infos = self
                    .store
                    .batch_infos(self.tp, remove_below, offset, 1024)?;
                for b in &infos {
                    if b.last_offset < offset {
                        removed_bytes += b.size;
                        remove_below = b.last_offset + 1;
                    } else {
                        remove_below = b.base_offset;
                    }
                }
                if infos.len() < 1024 || infos.last().is_some_and(|b| b.last_offset >= offset) {
                    break;
                }
            }
            let mut state = self.state.lock();
            if state.log_start_offset != seen.log_start_offset {
                // Another deletion moved the head while we scanned: look again.
                continue;
            }
            let next = PartitionState {
                log_start_offset: offset,
                size_bytes: state.size_bytes.saturating_sub(removed_bytes),
                ..*state
            };
            self.store.delete_head(self.tp, remove_below, next)?;
            *state = next;
            return Ok(offset);
        }
    }
}

/// Every partition log this broker holds, kept in step with the metadata image.
pub struct LogManager {
    node_id: i32,
    store: Arc<dyn LogStore>,
    partitions: RwLock<HashMap<TopicPartition, Arc<PartitionLog>>>,
}

impl LogManager {
    /// Recovers every partition the store holds.
    pub fn open(node_id: i32, store: Arc<dyn LogStore>) -> Result<Self, LogError> {
        let mut partitions = HashMap::new();
        for (tp, state) in store.partitions()? {
            partitions.insert(tp, Arc::new(PartitionLog::new(tp, store.clone(), state)?));
        }
        info!(partitions = partitions.len(), "partition logs recovered");
        Ok(Self {
            node_id,
            store,
            partitions: RwLock::new(partitions),
        })
    }

    /// The log of `tp`, creating it if `image` says this broker hosts it.
    pub fn partition(
        &self,
        image: &MetadataImage,
        tp: TopicPartition,
    ) -> Result<Option<Arc<PartitionLog>>, LogError> {
        if let Some(p) = self.partitions.read().get(&tp) {
            return Ok(Some(p.clone()));
        }
        let Some(meta) = image
            .topic_by_id(&tp.topic_id)
            .and_then(|t| t.partitions.get(tp.partition as usize))
            .filter(|p| p.replicas.contains(&self.node_id))
        else {
            return Ok(None);
        };
        let mut partitions = self.partitions.write();
        if let Some(p) = partitions.get(&tp) {
            return Ok(Some(p.clone()));
        }
        let state = self.store.create_partition(tp)?;
        let log = Arc::new(PartitionLog::new(tp, self.store.clone(), state)?);
        log.set_leader_epoch(meta.leader_epoch);
        partitions.insert(tp, log.clone());
        Ok(Some(log))
    }

    /// Every partition log this broker holds.
    pub fn all(&self) -> Vec<Arc<PartitionLog>> {
        self.partitions.read().values().cloned().collect()
    }

    /// The log of `tp` if this broker already holds it.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<PartitionLog>> {
        self.partitions.read().get(tp).cloned()
    }

    /// Creates logs for partitions the image assigns here and deletes logs of topics that no
    /// longer exist.
    pub fn sync(&self, image: &MetadataImage) {
        for topic in image.topics() {
            for p in &topic.partitions {
                let tp = TopicPartition::new(topic.topic_id, p.partition);
                if let Some(log) = self.get(&tp) {
                    log.set_leader_epoch(p.leader_epoch);
                }
                if let Err(e) = self.partition(image, tp) {
                    warn!(%tp, topic = %topic.name, error = %e, "could not create partition log");
                }
            }
        }
        let gone: Vec<TopicPartition> = self
            .partitions
            .read()
            .keys()
            .filter(|tp| image.topic_by_id(&tp.topic_id).is_none())
            .copied()
            .collect();
        for tp in gone {
            self.partitions.write().remove(&tp);
            match self.store.delete_partition(tp) {
                Ok(()) => info!(%tp, "partition log deleted"),
                Err(e) => warn!(%tp, error = %e, "could not delete partition log"),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use batch::tests::encode_batch;
    use kafka_protocol::records::Compression;
    use metadata_quorum::{MetadataRecord, PartitionRecord};
    use strom_storage::MemoryLogStore;
    use uuid::Uuid;

    fn image_with_topic(id: Uuid) -> MetadataImage {
        MetadataImage::default()
            .replay(&[MetadataRecord::CreateTopic {
                name: "t".into(),
                topic_id: id,
                partitions: vec![PartitionRecord {
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                }],
                configs: Default::default(),
            }])
            .expect("replay")
    }

    pub(super) fn setup() -> (LogManager, Arc<PartitionLog>, MetadataImage) {
        let id = Uuid::from_u128(7);
        let image = image_with_topic(id);
        let logs = LogManager::open(1, Arc::new(MemoryLogStore::new())).expect("open");
        let p = logs
            .partition(&image, TopicPartition::new(id, 0))
            .expect("partition")
            .expect("hosted");
        (logs, p, image)
    }

    #[test]
    fn appends_get_consecutive_offsets_and_read_back() {
        let (_, p, _) = setup();
        for i in 0..3 {
            let b = encode_batch(5, 1000 * i, Compression::None);
            let views = batch::parse_batches(&b, 1 << 20).expect("valid");
            let info = p.append(&views).expect("append");
            assert_eq!(info.base_offset, 5 * i);
            assert_eq!(info.last_offset, 5 * i + 4);
        }
        assert_eq!(p.high_watermark(), 15);
        let r = p.read(7, 1 << 20).expect("read");
        let sets = RecordBatchDecoder::decode_all(&mut r.records.clone()).expect("decode");
        let offsets: Vec<i64> = sets
            .iter()
            .flat_map(|s| s.records.iter().map(|r| r.offset))
            .collect();
        assert_eq!(offsets, (5..15).collect::<Vec<_>>());
        assert!(p.read(15, 1 << 20).expect("read at end").records.is_empty());
        assert!(matches!(
            p.read(16, 100),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            p.read(-1, 100),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn timestamp_lookup_finds_the_first_record_at_or_after() {
        let (_, p, _) = setup();
        for base in [1000, 2000, 1500] {
            let b = encode_batch(10, base, Compression::Zstd);
            p.append(&batch::parse_batches(&b, 1 << 20).expect("valid"))
                .expect("append");
        }
        // batch 0: offsets 0-9 ts 1000-1009, batch 1: 10-19 ts 2000-2009, batch 2: 20-29 ts 1500-1509
        let at = |ts| {
            p.offset_for_timestamp(ts)
                .expect("lookup")
                .map(|t| t.offset)
        };
        assert_eq!(at(0), Some(0));
        assert_eq!(at(1005), Some(5));
        assert_eq!(at(1010), Some(10));
        assert_eq!(at(2009), Some(19));
        assert_eq!(at(2010), None);
        let max = p.offset_of_max_timestamp().expect("max").expect("some");
        assert_eq!((max.offset, max.timestamp), (19, 2009));
    }

    #[test]
    fn waiting_readers_are_woken_by_appends() {
        let (_, p, _) = setup();
        let mut rx = p.subscribe();
        rx.borrow_and_update();
        let b = encode_batch(1, 0, Compression::None);
        p.append(&batch::parse_batches(&b, 1 << 20).expect("valid"))
            .expect("append");
        assert!(rx.has_changed().expect("alive"));
        assert_eq!(*rx.borrow(), 1);
    }

    #[test]
    fn sync_drops_deleted_topics() {
        let (logs, p, image) = setup();
        let tp = p.topic_partition();
        let after = image
            .replay(&[MetadataRecord::DeleteTopic {
                topic_id: tp.topic_id,
            }])
            .expect("replay");
        logs.sync(&after);
        assert!(logs.get(&tp).is_none());
        assert!(logs.partition(&after, tp).expect("lookup").is_none());
    }

    #[test]
    fn leader_epoch_checks() {
        let (logs, p, image) = setup();
        assert!(p.check_leader_epoch(-1).is_ok());
        assert!(p.check_leader_epoch(0).is_ok());
        assert!(matches!(
            p.check_leader_epoch(1),
            Err(LogError::UnknownLeaderEpoch { .. })
        ));
        // A new leader epoch in the metadata reaches the log: clients that learned it from a
        // Metadata answer are served, older epochs are fenced, new batches carry it.
        let tp = p.topic_partition();
        let moved = image
            .replay(&[MetadataRecord::PartitionChange {
                topic_id: tp.topic_id,
                partition: 0,
                leader: 1,
                isr: vec![1],
                leader_epoch: 3,
                partition_epoch: 1,
            }])
            .expect("replay");
        logs.sync(&moved);
        assert!(p.check_leader_epoch(3).is_ok());
        assert!(matches!(
            p.check_leader_epoch(2),
            Err(LogError::FencedLeaderEpoch { .. })
        ));
        let b = encode_batch(1, 0, Compression::None);
        p.append(&batch::parse_batches(&b, 1 << 20).expect("valid"))
            .expect("append");
        let stored = p.read(0, 1 << 20).expect("read").records;
        let view = &batch::parse_batches(&stored, 1 << 20).expect("stored batch")[0];
        assert_eq!(view.partition_leader_epoch(), 3);
    }
}
