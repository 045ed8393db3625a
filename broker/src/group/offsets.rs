//! Committed offsets and group metadata, stored as records in `__consumer_offsets` and
//! cached in memory.
//!
//! A transactional offset commit (TxnOffsetCommit) is a transactional batch of offset
//! records from the producer's id and epoch. It stays pending until the transaction's marker
//! reaches this partition ([`GroupCoordinator::complete_txn`]): COMMIT makes the offsets
//! visible, ABORT drops them. A coordinator replaying the partition does the same with the
//! batches and markers it reads.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strom_client::records;
use tracing::info;

use super::record::{self, GroupRecord};
use super::state::GroupCoordinator;
use crate::error::LogError;
use crate::log::{batch, Origin, PartitionLog};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's offsets.topic.num.partitions.
pub const OFFSETS_PARTITIONS: i32 = 50;

/// The `__consumer_offsets` partition of a group: Java's `abs(group.hashCode()) % 50`.
/// A share group's durable state (`<group>\0share`, [`SHARE_STATE_SUFFIX`]) is placed by
/// the group's id, so the group's coordinator holds it: DescribeShareGroupOffsets,
/// AlterShareGroupOffsets and DeleteShareGroupOffsets read and write it there.
pub fn offsets_partition(group: &str) -> i32 {
    let placed_by = group.strip_suffix(SHARE_STATE_SUFFIX).unwrap_or(group);
    java_string_partition(placed_by, OFFSETS_PARTITIONS)
}

/// What a share group's id is followed by in the id its durable state is committed under.
pub const SHARE_STATE_SUFFIX: &str = "\0share";

/// Java's `abs(s.hashCode()) % partitions` (Kafka's `Utils.abs`, which maps
/// Integer.MIN_VALUE to 0): where Kafka places a group or a transactional id.
pub fn java_string_partition(s: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    // Utils.abs, not the producer partitioner's `& 0x7fffffff`: the two differ for every
    // negative hash, and clients, tools and tests that locate a coordinator as Kafka does
    // must find it where Strom put it.
    (if h == i32::MIN { 0 } else { h.abs() }) % partitions
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

/// A transactional offset commit awaiting its marker: (group, topic, partition, offset).
pub type PendingOffset = (String, String, i32, Committed);

fn bin<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap_or_default())
}

/// Appends `batch` (records numbered from 0) to `log` as one batch; the log end after it.
fn append(log: &PartitionLog, batch: &[records::Record]) -> Result<i64, LogError> {
    let bytes = records::encode(batch, records::Compression::None).map_err(|e| {
        LogError::InvalidRecord {
            reason: e.to_string(),
        }
    })?;
    let info = log.append(&batch::parse_batches(&bytes, usize::MAX)?)?;
    Ok(info.last_offset + 1)
}

/// Which `__consumer_offsets` partitions have been read into the cache, and at which of
/// their leader epochs: leading a partition again (a later epoch) reloads it, even if the
/// unload in between was missed.
#[derive(Default)]
pub struct Loaded {
    epochs: Mutex<HashMap<i32, i32>>,
    /// One load at a time, so two first requests do not replay the log over each other.
    loading: Mutex<()>,
}

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

    /// TxnOffsetCommit: appends the offsets as a transactional batch of `producer_id` at
    /// `producer_epoch` (fenced if the partition knows a newer epoch) and keeps them pending
    /// until the transaction's marker. Returns the log end after the write.
    pub fn commit_txn(
        &self,
        log: &PartitionLog,
        index: i32,
        group: &str,
        producer_id: i64,
        producer_epoch: i16,
        entries: Vec<(String, i32, Committed)>,
    ) -> Result<i64, LogError> {
        if entries.is_empty() {
            return Ok(log.log_end_offset());
        }
        let mut batch: Vec<records::Record> = entries
            .iter()
            .enumerate()
            .map(|(i, (topic, partition, c))| {
                let key = bin(&OffsetKey {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                });
                records::record(i, Some(key), Some(bin(c)), c.commit_timestamp)
            })
            .collect();
        for r in &mut batch {
            r.transactional = true;
            r.producer_id = producer_id;
            r.producer_epoch = producer_epoch;
            r.sequence = -1;
        }
        let bytes = records::encode(&batch, records::Compression::None).map_err(|e| {
            LogError::InvalidRecord {
                reason: e.to_string(),
            }
        })?;
        let info = log.append_from(&batch::parse_internal(&bytes)?, Origin::Coordinator)?;
        let mut pending = self.pending_txn.lock();
        let list = pending.entry((index, producer_id)).or_default();
        for (t, p, c) in entries {
            list.retain(|(g, t2, p2, _)| !(g == group && *t2 == t && *p2 == p));
            list.push((group.to_string(), t, p, c));
        }
        Ok(info.last_offset + 1)
    }

    /// A transaction marker of `producer_id` reached offsets partition `index`: COMMIT makes
    /// its pending offsets committed, ABORT drops them.
    ///
    /// The pending lock is held until the offsets are in the cache: an OffsetFetch that finds
    /// nothing pending (require_stable) must find the committed offsets already there.
    pub fn complete_txn(&self, index: i32, producer_id: i64, commit: bool) {
        let mut pending = self.pending_txn.lock();
        let Some(list) = pending.remove(&(index, producer_id)) else {
            return;
        };
        if !commit {
            return;
        }
        let mut offsets = self.offsets.lock();
        for (group, topic, partition, c) in list {
            offsets
                .entry(group)
                .or_default()
                .insert((topic, partition), c);
        }
    }

    /// The partitions of `group` a transaction holds an uncommitted offset for (OffsetFetch
    /// with require_stable answers UNSTABLE_OFFSET_COMMIT for them).
    pub fn pending_txn_partitions(&self, group: &str) -> std::collections::HashSet<(String, i32)> {
        let index = offsets_partition(group);
        self.pending_txn
            .lock()
            .iter()
            .filter(|((i, _), _)| *i == index)
            .flat_map(|(_, list)| list.iter())
            .filter(|(g, ..)| g == group)
            .map(|(_, t, p, _)| (t.clone(), *p))
            .collect()
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
        let end = append(log, &batch)?;
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
        Ok(end)
    }

    /// Appends `group`'s metadata record (None: its tombstone) to its `__consumer_offsets`
    /// partition. Returns the log end after the write.
    pub fn write_group(
        &self,
        log: &PartitionLog,
        group: &str,
        record: Option<&GroupRecord>,
    ) -> Result<i64, LogError> {
        append(
            log,
            &[records::record(
                0,
                Some(Bytes::from(record::group_key(group))),
                record.map(|r| Bytes::from(record::encode(r))),
                records::now_ms(),
            )],
        )
    }

    /// Appends consumer-protocol group `group`'s record (None: its tombstone).
    pub fn write_consumer_group(
        &self,
        log: &PartitionLog,
        group: &str,
        record: Option<&super::consumer::ConsumerGroupRecord>,
    ) -> Result<i64, LogError> {
        append(
            log,
            &[records::record(
                0,
                Some(Bytes::from(record::consumer_group_key(group))),
                record.map(|r| Bytes::from(record::encode_consumer(r))),
                records::now_ms(),
            )],
        )
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
        if loaded.epochs.lock().remove(&index).is_none() {
            return;
        }
        self.forget_partition(index);
        info!(partition = index, "group coordinator unloaded");
    }

    /// Drops the offsets and membership of every group of offsets partition `index`.
    fn forget_partition(&self, index: i32) {
        self.offsets
            .lock()
            .retain(|group, _| offsets_partition(group) != index);
        self.pending_txn.lock().retain(|(i, _), _| *i != index);
        self.forget_groups(|group| offsets_partition(group) == index);
    }

    /// Reads partition `index` of `__consumer_offsets` into the cache, once.
    pub fn ensure_loaded(
        &self,
        loaded: &Loaded,
        index: i32,
        log: &Arc<PartitionLog>,
    ) -> Result<(), LogError> {
        let epoch = log.leader_epoch();
        if loaded.epochs.lock().get(&index) == Some(&epoch) {
            return Ok(());
        }
        let _one_at_a_time = loaded.loading.lock();
        if loaded.epochs.lock().get(&index) == Some(&epoch) {
            return Ok(()); // loaded while this request waited
        }
        // Never loaded, or at an older leadership: what this broker knew of these groups
        // may be stale, so the log alone decides.
        self.forget_partition(index);
        let mut groups: HashMap<String, Option<GroupRecord>> = HashMap::new();
        let mut consumer_groups: HashMap<String, Option<super::consumer::ConsumerGroupRecord>> =
            HashMap::new();
        let decode = |v: Option<&Bytes>| {
            v.and_then(|v| {
                bincode::serde::decode_from_slice::<Committed, _>(v, bincode::config::standard())
                    .ok()
                    .map(|(c, _)| c)
            })
        };
        let n = log.replay(|rec| {
            if rec.control {
                // A transaction marker: its producer's pending offsets count or go.
                let commit = rec
                    .key
                    .as_deref()
                    .is_some_and(|k| k.len() >= 4 && k[3] == 1);
                self.complete_txn(index, rec.producer_id, commit);
                return;
            }
            // The latest record of a group wins, whichever protocol's: a group converted
            // between the protocols is the kind written last even if the other kind's
            // tombstone was never written. A tombstone forgets it.
            if let Some(group) = rec.key.as_deref().and_then(record::parse_group_key) {
                let record = rec.value.as_deref().and_then(record::decode);
                if record.is_some() {
                    consumer_groups.remove(&group);
                }
                groups.insert(group, record);
                return;
            }
            if let Some(group) = rec
                .key
                .as_deref()
                .and_then(record::parse_consumer_group_key)
            {
                let record = rec.value.as_deref().and_then(record::decode_consumer);
                if record.is_some() {
                    groups.remove(&group);
                }
                consumer_groups.insert(group, record);
                return;
            }
            let Some((key, _)) = rec.key.as_ref().and_then(|k| {
                bincode::serde::decode_from_slice::<OffsetKey, _>(k, bincode::config::standard())
                    .ok()
            }) else {
                return;
            };
            if rec.transactional {
                // Pending until its transaction's marker, read later in the log.
                if let Some(c) = decode(rec.value.as_ref()) {
                    self.pending_txn
                        .lock()
                        .entry((index, rec.producer_id))
                        .or_default()
                        .push((key.group, key.topic, key.partition, c));
                }
                return;
            }
            if offsets_partition(&key.group) != index {
                // Not this partition's group (a share group's state written where earlier
                // builds placed it): its own partition has the current offsets.
                return;
            }
            let mut offsets = self.offsets.lock();
            let cache = offsets.entry(key.group).or_default();
            match decode(rec.value.as_ref()) {
                Some(c) => cache.insert((key.topic, key.partition), c),
                None => cache.remove(&(key.topic, key.partition)),
            };
        })?;
        let mut restored = 0usize;
        for (group, rec) in groups {
            if let Some(rec) = rec {
                self.restore(&group, rec);
                restored += 1;
            }
        }
        for (group, rec) in consumer_groups {
            if let Some(rec) = rec {
                self.restore_consumer(&group, rec);
                restored += 1;
            }
        }
        loaded.epochs.lock().insert(index, epoch);
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

    fn commit(c: &GroupCoordinator, log: &PartitionLog, group: &str, offset: i64) {
        c.commit(
            log,
            group,
            vec![(
                "t".into(),
                0,
                Committed {
                    offset,
                    leader_epoch: 0,
                    metadata: None,
                    commit_timestamp: 1,
                },
            )],
        )
        .expect("commit");
    }

    #[test]
    fn a_later_leadership_reloads_even_if_the_unload_was_missed() {
        // "polygenelubricants" lives in partition 0.
        let group = "polygenelubricants";
        let (_logs, log, _) = crate::log::tests::setup();
        let here = GroupCoordinator::new(std::time::Duration::ZERO);
        let loaded = Loaded::default();
        here.ensure_loaded(&loaded, 0, &log).expect("load");
        commit(&here, &log, group, 5);
        // Leadership moves away and back while this broker misses the unload; meanwhile
        // another coordinator commits 9 to the same partition.
        let elsewhere = GroupCoordinator::new(std::time::Duration::ZERO);
        commit(&elsewhere, &log, group, 9);
        assert_eq!(here.committed(group, "t", 0).map(|c| c.offset), Some(5));
        here.ensure_loaded(&loaded, 0, &log)
            .expect("same epoch: cached");
        assert_eq!(here.committed(group, "t", 0).map(|c| c.offset), Some(5));
        log.set_leader_epoch(1);
        here.ensure_loaded(&loaded, 0, &log).expect("reload");
        assert_eq!(
            here.committed(group, "t", 0).map(|c| c.offset),
            Some(9),
            "a new leadership reads the log again"
        );
    }

    #[test]
    fn a_partition_loads_only_the_offsets_of_its_own_groups() {
        // "polygenelubricants" lives in partition 0, and so does its share group's state;
        // "hello" lives in partition 22, but earlier builds put "hello\0share" wherever
        // its whole id hashed: such a record, found in partition 0, is not hello's state.
        let (_logs, log, _) = crate::log::tests::setup();
        let old = GroupCoordinator::new(std::time::Duration::ZERO);
        commit(&old, &log, "polygenelubricants\0share", 4);
        commit(&old, &log, "hello\0share", 7);
        let new = GroupCoordinator::new(std::time::Duration::ZERO);
        new.ensure_loaded(&Loaded::default(), 0, &log)
            .expect("load");
        let offset = |g: &str| new.committed(g, "t", 0).map(|c| c.offset);
        assert_eq!(offset("polygenelubricants\0share"), Some(4));
        assert_eq!(offset("hello\0share"), None);
    }

    #[test]
    fn group_records_replay_into_a_new_coordinator() {
        let group = "polygenelubricants";
        let (_logs, log, _) = crate::log::tests::setup();
        let old = GroupCoordinator::new(std::time::Duration::ZERO);
        let record = GroupRecord {
            protocol_type: Some("consumer".into()),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            members: vec![super::super::record::MemberRecord {
                member_id: "m1".into(),
                instance_id: None,
                client_id: "c".into(),
                host: String::new(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                subscription: vec![1],
                assignment: vec![2],
            }],
        };
        old.write_group(&log, group, Some(&record)).expect("write");
        old.write_group(&log, "deleted-group", Some(&record))
            .expect("write");
        old.write_group(&log, "deleted-group", None)
            .expect("tombstone");
        commit(&old, &log, group, 3);
        let new = GroupCoordinator::new(std::time::Duration::ZERO);
        new.ensure_loaded(&Loaded::default(), 0, &log)
            .expect("load");
        let d = new.describe(group).expect("restored");
        assert_eq!((d.state, d.generation, d.members.len()), ("Stable", 4, 1));
        assert_eq!(new.heartbeat(group, 4, "m1", None), 0);
        assert_eq!(new.committed(group, "t", 0).map(|c| c.offset), Some(3));
        assert!(
            new.describe("deleted-group").is_none(),
            "a tombstone forgets"
        );
    }

    #[test]
    fn partition_matches_java_string_hash() {
        // "hello".hashCode() == 99162322 in Java; 99162322 % 50 == 22.
        assert_eq!(offsets_partition("hello"), 22);
        // A negative hash: "polygenelubricants".hashCode() == Integer.MIN_VALUE -> 0.
        assert_eq!(offsets_partition("polygenelubricants"), 0);
        assert!((0..50).contains(&offsets_partition("my-consumer-group")));
        // Negative hashes take Java's Math.abs: "my-group".hashCode() == -1906497762, so
        // partition 12 (masking the sign bit instead would give 36).
        assert_eq!(offsets_partition("my-group"), 12);
        // "kafka-txn-0".hashCode() == -1469191130: partition 30 of __transaction_state.
        assert_eq!(crate::txn::txn_partition("kafka-txn-0"), 30);
        // A share group's state lives with the group.
        assert_eq!(offsets_partition("hello\0share"), 22);
    }
}
