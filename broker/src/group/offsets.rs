//! Committed offsets and group metadata, stored as records in `__consumer_offsets` and
//! cached in memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strom_client::records;
use tracing::info;

use super::record::{self, GroupRecord};
use super::state::GroupCoordinator;
use crate::error::LogError;
use crate::log::{batch, PartitionLog, ReadLimit};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's offsets.topic.num.partitions.
pub const OFFSETS_PARTITIONS: i32 = 50;

/// The `__consumer_offsets` partition of a group: Java's `abs(group.hashCode()) % 50`.
pub fn offsets_partition(group: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % OFFSETS_PARTITIONS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OffsetKey {
    group: String,
    topic: String,
    partition: i32,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp: i64,
}

impl Committed {
    /// What OffsetFetch answers for a partition with no commit: offset -1.
    pub fn none() -> Self {
        Committed {
            offset: -1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 0,
        }
    }
}

fn bin<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap_or_default())
}

/// Which `__consumer_offsets` partitions have been read into the cache.
#[derive(Default)]
pub struct Loaded(Mutex<HashSet<i32>>);

impl GroupCoordinator {
    /// Appends the commits to the group's `__consumer_offsets` partition, then caches them.
    /// Returns the log end after the write (what the ISR must reach for it to be durable).
    pub fn commit(
        &self,
        log: &PartitionLog,
        group: &str,
        entries: Vec<(String, i32, Committed)>,
    ) -> Result<i64, LogError> {
        let changes = entries
            .into_iter()
            .map(|(t, p, c)| (t, p, Some(c)))
            .collect();
        self.write_offsets(log, group, changes)
    }

    /// Writes tombstones for committed offsets and drops them from the cache.
    pub fn delete_offsets(
        &self,
        log: &PartitionLog,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<i64, LogError> {
        let changes = partitions
            .iter()
            .map(|(t, p)| (t.clone(), *p, None))
            .collect();
        self.write_offsets(log, group, changes)
    }

    /// One batch of offset records (a `None` is a tombstone) through the log, then the cache.
    fn write_offsets(
        &self,
        log: &PartitionLog,
        group: &str,
        changes: Vec<(String, i32, Option<Committed>)>,
    ) -> Result<i64, LogError> {
        if changes.is_empty() {
            return Ok(log.log_end_offset());
        }
        let now = records::now_ms();
        let batch: Vec<records::Record> = changes
            .iter()
            .enumerate()
            .map(|(i, (topic, partition, c))| {
                let key = bin(&OffsetKey {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                });
                let ts = c.as_ref().map_or(now, |c| c.commit_timestamp);
                records::record(i, Some(key), c.as_ref().map(bin), ts)
            })
            .collect();
        let bytes = records::encode(&batch, records::Compression::None).map_err(|e| {
            LogError::InvalidRecord {
                reason: e.to_string(),
            }
        })?;
        let info = log.append(&batch::parse_batches(&bytes, usize::MAX)?)?;
        let mut offsets = self.offsets.lock();
        let cache = offsets.entry(group.to_string()).or_default();
        for (topic, partition, c) in changes {
            match c {
                Some(c) => cache.insert((topic, partition), c),
                None => cache.remove(&(topic, partition)),
            };
        }
        if cache.is_empty() {
            offsets.remove(group);
        }
        Ok(info.last_offset + 1)
    }

    /// Appends `group`'s metadata record (None: its tombstone) to its `__consumer_offsets`
    /// partition. Returns the log end after the write.
    pub fn write_group(
        &self,
        log: &PartitionLog,
        group: &str,
        record: Option<&GroupRecord>,
    ) -> Result<i64, LogError> {
        let batch = vec![records::record(
            0,
            Some(Bytes::from(record::group_key(group))),
            record.map(|r| Bytes::from(record::encode(r))),
            records::now_ms(),
        )];
        let bytes = records::encode(&batch, records::Compression::None).map_err(|e| {
            LogError::InvalidRecord {
                reason: e.to_string(),
            }
        })?;
        let info = log.append(&batch::parse_batches(&bytes, usize::MAX)?)?;
        Ok(info.last_offset + 1)
    }

    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        self.offsets
            .lock()
            .get(group)?
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every committed offset of a group.
    pub fn committed_all(&self, group: &str) -> Vec<(String, i32, Committed)> {
        self.offsets
            .lock()
            .get(group)
            .map(|m| {
                m.iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets every group of `__consumer_offsets` partition `index` (this broker no longer
    /// leads it): their offsets and members. Leading it again reloads from the log.
    pub fn unload(&self, loaded: &Loaded, index: i32) {
        if !loaded.0.lock().remove(&index) {
            return;
        }
        self.offsets
            .lock()
            .retain(|group, _| offsets_partition(group) != index);
        self.forget_groups(|group| offsets_partition(group) == index);
        info!(partition = index, "group coordinator unloaded");
    }

    /// Reads partition `index` of `__consumer_offsets` into the cache, once.
    pub fn ensure_loaded(
        &self,
        loaded: &Loaded,
        index: i32,
        log: &Arc<PartitionLog>,
    ) -> Result<(), LogError> {
        if loaded.0.lock().contains(&index) {
            return Ok(());
        }
        let mut from = log.state().log_start_offset;
        let mut n = 0usize;
        let mut groups: HashMap<String, Option<GroupRecord>> = HashMap::new();
        loop {
            // To the log end: a new leader's high watermark may trail commits the old leader
            // already acknowledged.
            let r = log.read_up_to(from, 8 << 20, ReadLimit::LogEnd)?;
            if r.records.is_empty() {
                break;
            }
            let mut data = r.records;
            let sets = RecordBatchDecoder::decode_all(&mut data).map_err(|e| {
                LogError::CorruptMessage {
                    reason: format!("__consumer_offsets batch does not decode: {e}"),
                }
            })?;
            let mut offsets = self.offsets.lock();
            for rec in sets.into_iter().flat_map(|s| s.records) {
                from = rec.offset + 1;
                if let Some(group) = rec.key.as_deref().and_then(record::parse_group_key) {
                    // The latest record of a group wins; a tombstone forgets it.
                    groups.insert(group, rec.value.as_deref().and_then(record::decode));
                    n += 1;
                    continue;
                }
                let Some((key, _)) = rec.key.as_ref().and_then(|k| {
                    bincode::serde::decode_from_slice::<OffsetKey, _>(
                        k,
                        bincode::config::standard(),
                    )
                    .ok()
                }) else {
                    continue;
                };
                let cache = offsets.entry(key.group).or_default();
                match rec.value.as_ref().and_then(|v| {
                    bincode::serde::decode_from_slice::<Committed, _>(
                        v,
                        bincode::config::standard(),
                    )
                    .ok()
                }) {
                    Some((c, _)) => {
                        cache.insert((key.topic, key.partition), c);
                    }
                    None => {
                        cache.remove(&(key.topic, key.partition));
                    }
                }
                n += 1;
            }
        }
        let mut restored = 0usize;
        for (group, rec) in groups {
            if let Some(rec) = rec {
                self.restore(&group, rec);
                restored += 1;
            }
        }
        loaded.0.lock().insert(index);
        info!(
            partition = index,
            records = n,
            groups = restored,
            "group offsets and metadata loaded"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hash() {
        // "hello".hashCode() == 99162322 in Java; 99162322 % 50 == 22.
        assert_eq!(offsets_partition("hello"), 22);
        // A negative hash: "polygenelubricants".hashCode() == Integer.MIN_VALUE -> 0.
        assert_eq!(offsets_partition("polygenelubricants"), 0);
        assert!((0..50).contains(&offsets_partition("my-consumer-group")));
    }
}
