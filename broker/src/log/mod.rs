//! Partition logs: offsets, appends, reads and the waiting of long-poll fetches.
//!
//! A [`PartitionLog`] serialises appends to one partition behind a mutex (offset assignment
//! must be a total order), hands the bytes to the [`LogStore`] in one atomic write, then
//! publishes the new end offset on a watch channel that parked fetches wait on.
//!
//! Transactions: a producer's transactional batches open a transaction on the partition
//! (its first offset is kept in the producer's state); the coordinator's marker (a control
//! batch, [`PartitionLog::write_marker`]) closes it, and an ABORT adds an entry to the
//! aborted-transaction index in the same store write. The last stable offset (LSO) is the
//! high watermark or the first offset of the oldest open transaction, whichever is lower;
//! read_committed fetches stop there and get the aborted transactions they cover.

pub mod batch;
pub mod cleaner;
pub mod producer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use metadata_quorum::controller::IsrChange;
use metadata_quorum::MetadataImage;
use metadata_quorum::PartitionImage;
use parking_lot::{Mutex, RwLock};
use strom_storage::{
    AbortedTxn, EpochEntry, LogStore, PartitionState, StoredBatch, TopicPartition, WriteBatch,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::LogError;
use crate::replica::isr::LeaderState;
use batch::BatchView;

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Consumers: only what every in-sync replica holds.
    HighWatermark,
    /// Followers replicating: everything the leader has.
    LogEnd,
    /// read_committed consumers: below the last stable offset.
    LastStable,
}

/// Who wrote a batch: a client's produce (sequence rules apply) or this broker's own
/// coordinators (transactional offset commits carry no sequence; markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Coordinator,
}

/// This broker's part in a partition, as the metadata image has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not yet told, or the partition has no leader.
    None,
    Leader(LeaderState),
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

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
    /// The high watermark, which consumers' fetches and acks=all produces wait on.
    high_watermark: watch::Sender<i64>,
    /// The log end offset, which followers' fetches wait on.
    log_end: watch::Sender<i64>,
    /// The leader epoch cache (KIP-101); locked only while `state` is held, for writes.
    epochs: Mutex<Vec<EpochEntry>>,
    /// Leader (with its followers' progress) or follower.
    role: Mutex<Role>,
    /// The aborted-transaction index, ordered by marker offset; written under `state`.
    aborted: Mutex<Vec<AbortedTxn>>,
    /// First offset of the oldest open transaction (i64::MAX: none); set under `state`.
    first_unstable: AtomicI64,
    /// As a follower, the leader's high watermark from its last fetch answer (-1: none yet).
    leader_high_watermark: AtomicI64,
    /// Set (under `state`) when this broker stops hosting the partition and its data is
    /// deleted: a fetch or append still in flight then writes nothing.
    deleted: std::sync::atomic::AtomicBool,
    /// KIP-890 verification guards: a producer whose transaction is not open here gets one
    /// before its coordinator is asked whether the partition is in the transaction; a marker
    /// for it removes it, so a batch verified before an abort is not appended after it.
    /// Locked after `producers`.
    verifications: Mutex<HashMap<i64, Guard>>,
    /// The offset of the metadata image this log was created from (0: recovered from the
    /// store at start-up). [`LogManager::sync`] with an older image leaves the log alone.
    created_by: u64,
}

/// A verification guard: its value, and the epoch and transaction version of the batch it
/// was taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Guard {
    value: u64,
    epoch: i16,
    tv2: bool,
}

impl Guard {
    /// Whether a marker at `marker_epoch` ends the transaction this guard verified. Under
    /// transaction version 2 a transaction's marker carries the epoch after its batches',
    /// so a marker at the guard's own epoch closes the transaction before it: the guard of
    /// the next one, added while that marker was on its way, stays.
    fn ended_by(&self, marker_epoch: i16) -> bool {
        !(self.tv2 && marker_epoch == self.epoch)
    }
}

/// The source of verification guard values.
static NEXT_GUARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl PartitionLog {
    fn new(
        tp: TopicPartition,
        store: Arc<dyn LogStore>,
        state: PartitionState,
    ) -> Result<Self, LogError> {
        let (high_watermark, _) = watch::channel(state.high_watermark.min(state.log_end_offset));
        let (log_end, _) = watch::channel(state.log_end_offset);
        let epochs = store.leader_epochs(tp)?;
        let mut producers = HashMap::new();
        for (pid, bytes) in store.producer_states(tp)? {
            let entry = producer::ProducerEntry::decode(&bytes).ok_or_else(|| {
                LogError::CorruptMessage {
                    reason: format!("producer state of {pid} in {tp} does not decode"),
                }
            })?;
            producers.insert(pid, entry);
        }
        let aborted = store.aborted_txns(tp)?;
        let first_unstable = oldest_open(&producers);
        Ok(Self {
            tp,
            store,
            state: Mutex::new(state),
            producers: Mutex::new(producers),
            leader_epoch: AtomicI32::new(0),
            high_watermark,
            log_end,
            epochs: Mutex::new(epochs),
            role: Mutex::new(Role::None),
            aborted: Mutex::new(aborted),
            first_unstable: AtomicI64::new(first_unstable),
            leader_high_watermark: AtomicI64::new(-1),
            deleted: std::sync::atomic::AtomicBool::new(false),
            verifications: Mutex::new(HashMap::new()),
            created_by: 0,
        })
    }

    /// The last stable offset: below it every transaction has its marker (and the high
    /// watermark covers it).
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark().min(self.first_unstable())
    }

    /// First offset of the oldest open transaction (i64::MAX: none), never below the log
    /// start: retention may remove the head of a transaction still open.
    fn first_unstable(&self) -> i64 {
        match self.first_unstable.load(Ordering::Acquire) {
            // No transaction open (the common case): no lock on the fetch path.
            i64::MAX => i64::MAX,
            first => first.max(self.state().log_start_offset),
        }
    }

    /// Aborted transactions a read_committed fetch of `from..to` must be told about: those
    /// whose marker is at or after `from` and whose data starts before `to`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let aborted = self.aborted.lock();
        let start = aborted.partition_point(|a| a.last_offset < from);
        aborted[start..]
            .iter()
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Every aborted transaction still in the log (for compaction).
    pub fn aborted_txns(&self) -> Vec<AbortedTxn> {
        self.aborted.lock().clone()
    }

    /// Producers with state here: (producer id, entry), for DescribeProducers.
    pub fn producer_entries(&self) -> Vec<(i64, producer::ProducerEntry)> {
        let mut v: Vec<_> = self
            .producers
            .lock()
            .iter()
            .map(|(p, e)| (*p, e.clone()))
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    /// Writes a transaction marker (COMMIT or ABORT) of `producer_id` at `producer_epoch`
    /// from the coordinator at `coordinator_epoch`: a control batch, closing the producer's
    /// open transaction here; an ABORT adds it to the aborted-transaction index in the same
    /// write. A marker of an older producer or coordinator epoch is fenced.
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<AppendInfo, LogError> {
        let bytes = batch::control_batch(
            producer_id,
            producer_epoch,
            batch::Marker {
                commit,
                coordinator_epoch,
            },
            now_ms(),
        )?;
        self.append_from(&batch::parse_internal(&bytes)?, Origin::Coordinator)
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

    pub fn log_end_offset(&self) -> i64 {
        *self.log_end.borrow()
    }

    /// A receiver woken whenever the log grows (what followers' fetches wait on).
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// What [`ReadLimit`] says a fetch waits on (the LSO moves with the high watermark, or
    /// with a marker's append, which moves the high watermark too).
    pub fn subscribe_for(&self, limit: ReadLimit) -> watch::Receiver<i64> {
        match limit {
            ReadLimit::HighWatermark | ReadLimit::LastStable => self.subscribe(),
            ReadLimit::LogEnd => self.subscribe_log_end(),
        }
    }

    pub fn role(&self) -> Role {
        self.role.lock().clone()
    }

    pub fn is_leader(&self) -> bool {
        matches!(*self.role.lock(), Role::Leader(_))
    }

    /// The committed ISR's size while this broker leads (what min.insync.replicas is checked
    /// against), None otherwise.
    pub fn isr_len(&self) -> Option<usize> {
        match &*self.role.lock() {
            Role::Leader(l) => Some(l.isr.len()),
            _ => None,
        }
    }

    /// Follows the metadata image's view of this partition: leads it (at `meta`'s leader
    /// epoch and ISR), follows `meta.leader`, or (leader -1) neither. Losing a leadership
    /// wakes everything waiting on the high watermark (acks=all produces), so they answer
    /// NOT_LEADER_OR_FOLLOWER at once.
    pub fn apply_metadata(&self, node_id: i32, meta: &PartitionImage, now_ms: i64) {
        self.set_leader_epoch(meta.leader_epoch);
        let mut role = self.role.lock();
        let led = match &*role {
            Role::Leader(l) => Some(l.leader_epoch),
            _ => None,
        };
        if meta.leader == node_id {
            match &mut *role {
                Role::Leader(l) if l.leader_epoch == meta.leader_epoch => {
                    l.update_metadata(meta.partition_epoch, &meta.replicas, &meta.isr, now_ms)
                }
                _ => {
                    info!(
                        tp = %self.tp,
                        leader_epoch = meta.leader_epoch,
                        isr = ?meta.isr,
                        log_end_offset = self.log_end_offset(),
                        high_watermark = self.high_watermark(),
                        "became leader"
                    );
                    // Guards from an earlier leadership are of no use; a new epoch of a
                    // leadership kept keeps them (verified appends in flight go on). Markers
                    // replicated meanwhile clear guards too.
                    if led.is_none() {
                        self.verifications.lock().clear();
                    }
                    *role = Role::Leader(LeaderState::new(
                        node_id,
                        meta.leader_epoch,
                        meta.partition_epoch,
                        &meta.replicas,
                        &meta.isr,
                        self.log_end_offset(),
                        now_ms,
                    ))
                }
            }
        } else {
            let next = if meta.leader < 0 {
                Role::None
            } else {
                Role::Follower {
                    leader: meta.leader,
                    leader_epoch: meta.leader_epoch,
                }
            };
            if *role != next && meta.leader >= 0 {
                info!(
                    tp = %self.tp,
                    leader = meta.leader,
                    leader_epoch = meta.leader_epoch,
                    "became follower"
                );
            }
            *role = next;
        }
        drop(role);
        if led.is_some_and(|e| meta.leader != node_id || e != meta.leader_epoch) {
            self.high_watermark.send_modify(|_| {});
        }
        self.advance_high_watermark();
    }

    /// A follower's fetch from `fetch_offset` reached this leader: its progress moves the
    /// high watermark. Errors when this broker does not lead or `replica` is not a replica.
    pub fn follower_fetched(
        &self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<(), kafka_protocol::ResponseError> {
        {
            let mut role = self.role.lock();
            let Role::Leader(l) = &mut *role else {
                return Err(kafka_protocol::ResponseError::NotLeaderOrFollower);
            };
            if !l.follower_fetched(replica, fetch_offset, self.log_end_offset(), now_ms) {
                return Err(kafka_protocol::ResponseError::NotLeaderOrFollower);
            }
        }
        self.advance_high_watermark();
        Ok(())
    }

    /// As leader, moves the high watermark up to what the maximal ISR holds.
    fn advance_high_watermark(&self) {
        let role = self.role.lock();
        let Role::Leader(l) = &*role else {
            return;
        };
        let candidate = l.high_watermark(self.log_end_offset());
        drop(role);
        self.high_watermark.send_if_modified(|hw| {
            if candidate > *hw {
                *hw = candidate;
                true
            } else {
                false
            }
        });
    }

    /// As leader, the other members of the committed ISR with their log end offsets as of
    /// their last fetch (where a consumer may be sent to read, KIP-392). Empty otherwise.
    pub fn in_sync_followers(&self) -> Vec<(i32, i64)> {
        let role = self.role.lock();
        let Role::Leader(l) = &*role else {
            return vec![];
        };
        l.isr
            .iter()
            .filter(|&&b| b != l.node_id)
            .filter_map(|&b| l.follower(b).map(|f| (b, f.log_end_offset)))
            .collect()
    }

    /// As follower, takes the leader's high watermark (never past this log's end).
    pub fn follow_high_watermark(&self, leader_hw: i64) {
        self.leader_high_watermark
            .store(leader_hw, Ordering::Relaxed);
        let hw = leader_hw.min(self.log_end_offset());
        self.high_watermark.send_if_modified(|cur| {
            if hw > *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
    }

    /// As a follower, how many records this replica is behind its leader's high watermark
    /// as of the last fetch (0 before any).
    pub fn follower_lag(&self) -> i64 {
        (self.leader_high_watermark.load(Ordering::Relaxed) - self.log_end_offset()).max(0)
    }

    /// As leader, the ISR change due now (marked pending), stamped with the epochs.
    pub fn isr_change_due(
        &self,
        now_ms: i64,
        max_lag_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<IsrChange> {
        let mut role = self.role.lock();
        let Role::Leader(l) = &mut *role else {
            return None;
        };
        let new_isr = l.isr_change(self.high_watermark(), now_ms, max_lag_ms, eligible)?;
        l.proposed(new_isr.clone());
        Some(IsrChange {
            topic_id: self.tp.topic_id,
            partition: self.tp.partition,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        })
    }

    /// The controller refused (or never got) the pending ISR change.
    pub fn isr_change_failed(&self) {
        if let Role::Leader(l) = &mut *self.role.lock() {
            l.change_failed();
        }
        self.advance_high_watermark();
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` this log knows and the
    /// offset where it ends (the next epoch's start, or the log end for the latest), or
    /// (-1, -1) when the log knows no such epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let epochs = self.epochs.lock();
        let Some(i) = epochs.iter().rposition(|e| e.epoch <= epoch) else {
            return (-1, -1);
        };
        let end = epochs
            .get(i + 1)
            .map_or_else(|| self.log_end_offset(), |next| next.start_offset);
        (epochs[i].epoch, end)
    }

    /// The leader epoch cache.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.epochs.lock().clone()
    }

    /// CRC-32C over the stored bytes of every batch ending below `offset`.
    pub fn digest_below(&self, offset: i64) -> Result<u32, LogError> {
        let mut crc = 0u32;
        self.scan_below(self.state().log_start_offset, offset, |b, _, _| {
            crc = crc32c::crc32c_append(crc, &b.bytes);
        })?;
        Ok(crc)
    }

    /// Calls `f(batch, base offset, last offset)` for every stored batch from the one holding
    /// `from` that ends below `offset`, in order, reading a few MiB at a time.
    fn scan_below(
        &self,
        from: i64,
        offset: i64,
        mut f: impl FnMut(&BatchView, i64, i64),
    ) -> Result<(), LogError> {
        let mut from = from;
        while from < offset {
            let chunk = self.store.read(self.tp, from, offset, 4 << 20)?;
            let mut progressed = false;
            for data in chunk {
                let b = batch::stored(data)?;
                let base = b.base_offset();
                let last = base + b.last_offset_delta as i64;
                if last < from || last >= offset {
                    continue;
                }
                f(&b, base, last);
                from = last + 1;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// The latest epoch in the leader epoch cache (-1 when empty).
    pub fn latest_epoch(&self) -> i32 {
        self.epochs.lock().last().map_or(-1, |e| e.epoch)
    }

    /// Writes the high watermark to the store if it moved since the last write.
    pub fn checkpoint_high_watermark(&self) -> Result<(), LogError> {
        let mut state = self.state.lock();
        self.check_hosted()?;
        let hw = self.high_watermark().min(state.log_end_offset);
        if state.high_watermark == hw {
            return Ok(());
        }
        let next = PartitionState {
            high_watermark: hw,
            ..*state
        };
        self.store.write_state(self.tp, next)?;
        *state = next;
        Ok(())
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

    /// Deletes the log's data: waits for any write in progress, marks the log deleted (every
    /// writer checks under the same lock, so nothing written later lands), and removes its
    /// keys while still holding the lock.
    fn delete(&self) -> Result<(), strom_storage::StorageError> {
        let _state = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        self.store.delete_partition(self.tp)
    }

    pub(crate) fn check_hosted(&self) -> Result<(), LogError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(LogError::ReplicaDeleted {
                tp: self.tp.to_string(),
            });
        }
        Ok(())
    }

    /// Appends validated batches from a client, giving them consecutive offsets, in one
    /// durable write.
    pub fn append(&self, batches: &[BatchView]) -> Result<AppendInfo, LogError> {
        self.append_from(batches, Origin::Client)
    }

    /// Appends batches as [`PartitionLog::append`] does; `origin` decides the producer
    /// checks: a client's batches follow the sequence rules, the coordinators' carry none
    /// (only their producer and coordinator epochs are checked).
    pub fn append_from(
        &self,
        batches: &[BatchView],
        origin: Origin,
    ) -> Result<AppendInfo, LogError> {
        self.append_guarded(batches, origin, None)
    }

    /// Whether `producer_id` at `epoch` has a transaction open here, so its next
    /// transactional batch needs no verification.
    pub fn transaction_open(&self, producer_id: i64, epoch: i16) -> bool {
        let _state = self.state.lock();
        self.producers
            .lock()
            .get(&producer_id)
            .is_some_and(|e| e.epoch == epoch && e.txn_first_offset.is_some())
    }

    /// The verification guard of `producer_id` for a batch at `epoch` (KIP-890): the one
    /// already waiting at that epoch, else a new one. `tv2`: the partition is being added
    /// to the transaction (transaction version 2), not only checked. Pass it to
    /// [`PartitionLog::append_verified`] once the coordinator has said the partition is in
    /// the producer's transaction.
    pub fn verification_guard(&self, producer_id: i64, epoch: i16, tv2: bool) -> u64 {
        let mut guards = self.verifications.lock();
        let g = guards.entry(producer_id).or_insert_with(|| Guard {
            value: NEXT_GUARD.fetch_add(1, Ordering::Relaxed),
            epoch,
            tv2,
        });
        if epoch < g.epoch {
            // A late batch of an older epoch: it is fenced at the append anyway, and must
            // neither take nor (when its verification fails) drop the newer guard.
            return NEXT_GUARD.fetch_add(1, Ordering::Relaxed);
        }
        if epoch > g.epoch {
            // A verification at a newer epoch supersedes the waiting one.
            *g = Guard {
                value: NEXT_GUARD.fetch_add(1, Ordering::Relaxed),
                epoch,
                tv2,
            };
        }
        g.tv2 |= tv2;
        g.value
    }

    /// A marker ends its producer's transaction here: a verification begun before it no
    /// longer holds (markers written here and replicated ones alike), unless it was for the
    /// next transaction ([`Guard::ended_by`]).
    fn clear_guards_of_markers(&self, batches: &[BatchView]) {
        let mut guards = self.verifications.lock();
        for b in batches.iter().filter(|b| b.is_control()) {
            if guards
                .get(&b.producer_id)
                .is_some_and(|g| g.ended_by(b.producer_epoch()))
            {
                guards.remove(&b.producer_id);
            }
        }
    }

    /// Drops `producer_id`'s verification guard if it is still `guard` (its verification
    /// failed: no marker will come to clear it).
    pub fn drop_verification_guard(&self, producer_id: i64, guard: u64) {
        let mut guards = self.verifications.lock();
        if guards.get(&producer_id).map(|g| g.value) == Some(guard) {
            guards.remove(&producer_id);
        }
    }

    /// Appends a client's batches as [`PartitionLog::append`] does, but a transactional
    /// batch that opens its producer's transaction here is refused (INVALID_TXN_STATE) unless
    /// `guard` is still the producer's verification guard: no marker has been written for it
    /// since the coordinator was asked.
    pub fn append_verified(
        &self,
        batches: &[BatchView],
        guard: u64,
    ) -> Result<AppendInfo, LogError> {
        self.append_guarded(batches, Origin::Client, Some(guard))
    }

    /// Whether this replica follows the leader of `leader_epoch`; called with `state` held
    /// (the lock order of [`PartitionLog::append_guarded`]), so a leadership taken after
    /// the check waits for the follower's write to finish before its first append.
    fn check_follows(&self, leader_epoch: i32) -> Result<(), LogError> {
        match &*self.role.lock() {
            Role::Follower {
                leader_epoch: e, ..
            } if *e == leader_epoch => Ok(()),
            _ => Err(LogError::NotFollower {
                tp: self.tp.to_string(),
                leader_epoch,
            }),
        }
    }

    /// Whether `image` is at least as new as the image this log was created from (else a
    /// sync of `image` must leave the log alone; see [`LogManager::sync`]).
    pub fn known_to(&self, image: &MetadataImage) -> bool {
        self.created_by <= image.offset
    }

    fn append_guarded(
        &self,
        batches: &[BatchView],
        origin: Origin,
        guard: Option<u64>,
    ) -> Result<AppendInfo, LogError> {
        let mut state = self.state.lock();
        self.check_hosted()?;
        // Leadership may have moved since the caller looked: only the leader at the current
        // epoch appends (a demoted one would stamp the new epoch on a batch the new leader
        // never saw, which the followers' truncation could not detect).
        let leads = match &*self.role.lock() {
            Role::Leader(l) => l.leader_epoch == self.leader_epoch(),
            _ => false,
        };
        if !leads {
            return Err(LogError::NotLeader {
                tp: self.tp.to_string(),
            });
        }
        let mut producers = self.producers.lock();
        let mut write = WriteBatch::new(*state);
        write.set_high_watermark(self.high_watermark());
        let epoch = self.leader_epoch();
        let mut epochs = self.epochs.lock();
        let new_epoch = epochs.last().is_none_or(|e| e.epoch < epoch);
        let mut updates: Vec<(i64, producer::ProducerEntry)> = Vec::new();
        let mut answer: Option<(i64, i64)> = None;
        let mut aborted: Vec<AbortedTxn> = Vec::new();
        for b in batches {
            let pid = b.producer_id;
            if pid >= 0 {
                let current = latest_entry(&updates, &producers, pid);
                if b.is_control() {
                    let m = b.marker().ok_or_else(|| LogError::InvalidRecord {
                        reason: "a control batch without a transaction marker".into(),
                    })?;
                    producer::check_marker(current, pid, b.producer_epoch(), m.coordinator_epoch)?;
                } else if origin == Origin::Coordinator && b.sequences().0 < 0 {
                    if let Some(e) = current.filter(|e| b.producer_epoch() < e.epoch) {
                        return Err(LogError::InvalidProducerEpoch {
                            producer_id: pid,
                            epoch: b.producer_epoch(),
                            current: e.epoch,
                        });
                    }
                } else {
                    if let (Some(guard), true) = (guard, b.is_transactional()) {
                        let opens = current.is_none_or(|e| {
                            e.epoch != b.producer_epoch() || e.txn_first_offset.is_none()
                        });
                        // A batch of an older epoch is fenced below, whatever its guard.
                        let stale = current.is_some_and(|e| b.producer_epoch() < e.epoch);
                        if opens
                            && !stale
                            && self.verifications.lock().get(&pid).map(|g| g.value) != Some(guard)
                        {
                            return Err(LogError::InvalidTxnState {
                                reason: format!(
                                    "producer {pid}'s transaction ended while this partition was being verified"
                                ),
                            });
                        }
                    }
                    let (first, last) = b.sequences();
                    let check = producer::check(current, pid, b.producer_epoch(), first, last)?;
                    if let producer::SeqCheck::Duplicate(d) = check {
                        // A retry: answer with where it landed the first time.
                        answer.get_or_insert((d.first_offset, d.last_offset));
                        continue;
                    }
                }
            }
            let base_offset = write.state().log_end_offset;
            let last_offset = base_offset + b.last_offset_delta as i64;
            if new_epoch && write.is_empty() {
                write.set_epoch_start(epoch, base_offset);
            }
            write.push(StoredBatch {
                base_offset,
                last_offset,
                max_timestamp: b.max_timestamp,
                data: b.with_offset(base_offset, epoch),
            })?;
            answer.get_or_insert((base_offset, last_offset));
            if let Some(a) = track_producer(
                &mut write,
                &mut updates,
                &producers,
                b,
                base_offset,
                last_offset,
            ) {
                aborted.push(a);
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
        if new_epoch {
            epochs.push(EpochEntry {
                epoch,
                start_offset: base_offset,
            });
        }
        self.apply_producer_updates(&mut producers, updates, aborted);
        self.clear_guards_of_markers(batches);
        drop(epochs);
        drop(producers);
        drop(state);
        self.log_end.send_replace(next.log_end_offset);
        self.advance_high_watermark();
        Ok(info)
    }

    /// After a store write: the producers' new entries, the aborted transactions it added,
    /// and the oldest open transaction (before the new end offset is published, so a
    /// read_committed reader woken by it sees the LSO that goes with it).
    fn apply_producer_updates(
        &self,
        producers: &mut HashMap<i64, producer::ProducerEntry>,
        updates: Vec<(i64, producer::ProducerEntry)>,
        aborted: Vec<AbortedTxn>,
    ) {
        let mut txn_changed = !aborted.is_empty();
        for (pid, entry) in updates {
            let before = producers.get(&pid).and_then(|e| e.txn_first_offset);
            txn_changed |= before != entry.txn_first_offset;
            producers.insert(pid, entry);
        }
        if !aborted.is_empty() {
            self.aborted.lock().extend(aborted);
        }
        if txn_changed {
            self.first_unstable
                .store(oldest_open(producers), Ordering::Release);
        }
    }

    /// Appends batches fetched from the leader as they are (offsets, leader epochs and
    /// producer fields kept), after checking each one's CRC and that it starts at or past this
    /// log's end (past it: offsets the leader's compaction removed whole).
    /// Producer state and the epoch cache follow the batches, so a follower that becomes
    /// leader answers retries and OffsetForLeaderEpoch as the old leader would have.
    pub fn append_replicated(&self, records: &bytes::Bytes) -> Result<usize, LogError> {
        self.append_replicated_inner(records, None)
    }

    /// [`PartitionLog::append_replicated`] for a fetch that started at `fetched_from` from
    /// the leader of `leader_epoch`: if the log no longer ends there (another fetcher
    /// truncated or extended it meanwhile), nothing is appended and the answer is an error;
    /// if this replica no longer follows that leader epoch, it is [`LogError::NotFollower`].
    pub fn append_replicated_at(
        &self,
        records: &bytes::Bytes,
        fetched_from: i64,
        leader_epoch: i32,
    ) -> Result<usize, LogError> {
        self.append_replicated_inner(records, Some((fetched_from, leader_epoch)))
    }

    fn append_replicated_inner(
        &self,
        records: &bytes::Bytes,
        fetched: Option<(i64, i32)>,
    ) -> Result<usize, LogError> {
        let views = batch::parse_replicated(records)?;
        let mut state = self.state.lock();
        self.check_hosted()?;
        if let Some((from, leader_epoch)) = fetched {
            self.check_follows(leader_epoch)?;
            if from != state.log_end_offset {
                return Err(LogError::InvalidRecord {
                    reason: format!(
                        "fetched from offset {from}, but the log now ends at {}",
                        state.log_end_offset
                    ),
                });
            }
        }
        let mut producers = self.producers.lock();
        let mut epochs = self.epochs.lock();
        let mut write = WriteBatch::new(*state);
        write.set_high_watermark(self.high_watermark());
        let mut new_epochs: Vec<EpochEntry> = Vec::new();
        let mut updates: Vec<(i64, producer::ProducerEntry)> = Vec::new();
        let mut aborted: Vec<AbortedTxn> = Vec::new();
        let mut count = 0usize;
        for b in &views {
            let base_offset = b.base_offset();
            let last_offset = base_offset + b.last_offset_delta as i64;
            if last_offset < write.state().log_end_offset {
                continue; // already held
            }
            let epoch = b.partition_leader_epoch();
            let latest = new_epochs.last().or(epochs.last()).map_or(-1, |e| e.epoch);
            if epoch > latest {
                write.set_epoch_start(epoch, base_offset);
                new_epochs.push(EpochEntry {
                    epoch,
                    start_offset: base_offset,
                });
            }
            write.push_replicated(StoredBatch {
                base_offset,
                last_offset,
                max_timestamp: b.max_timestamp,
                data: b.bytes.clone(),
            })?;
            count += 1;
            if let Some(a) = track_producer(
                &mut write,
                &mut updates,
                &producers,
                b,
                base_offset,
                last_offset,
            ) {
                aborted.push(a);
            }
        }
        if write.is_empty() {
            return Ok(0);
        }
        let next = write.state();
        self.store.append(self.tp, write)?;
        *state = next;
        epochs.extend(new_epochs);
        self.apply_producer_updates(&mut producers, updates, aborted);
        self.clear_guards_of_markers(&views);
        drop(epochs);
        drop(producers);
        drop(state);
        self.log_end.send_replace(next.log_end_offset);
        Ok(count)
    }

    /// Discards every record at or above `offset` (a follower's divergent suffix, KIP-101):
    /// batches, time index, epoch cache entries, and producer state, atomically. The high
    /// watermark drops to the new end if it was above it. Unchecked, for tests: the fetcher
    /// truncates through [`PartitionLog::truncate_as_follower`].
    #[cfg(test)]
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        self.truncate_inner(offset, None)
    }

    /// Discards every record at or above `offset` (a follower's divergent suffix, KIP-101),
    /// for the fetcher of `leader_epoch`'s leader: refused ([`LogError::NotFollower`]) unless
    /// this replica still follows that epoch, so a fetcher's late answer never cuts a log
    /// this broker has come to lead.
    pub fn truncate_as_follower(&self, offset: i64, leader_epoch: i32) -> Result<(), LogError> {
        self.truncate_inner(offset, Some(leader_epoch))
    }

    fn truncate_inner(&self, offset: i64, follows: Option<i32>) -> Result<(), LogError> {
        let mut state = self.state.lock();
        self.check_hosted()?;
        if let Some(leader_epoch) = follows {
            self.check_follows(leader_epoch)?;
        }
        if offset >= state.log_end_offset {
            return Ok(());
        }
        let mut producers = self.producers.lock();
        let mut epochs = self.epochs.lock();
        let rebuilt = self.producers_below(&producers, offset, state.log_start_offset)?;
        let encoded: Vec<(i64, Vec<u8>)> = rebuilt.iter().map(|(p, e)| (*p, e.encode())).collect();
        let before = *state;
        let next = self.store.truncate(self.tp, offset, before, &encoded)?;
        *state = next;
        *producers = rebuilt;
        self.first_unstable
            .store(oldest_open(&producers), Ordering::Release);
        self.aborted
            .lock()
            .retain(|a| a.last_offset < next.log_end_offset);
        epochs.retain(|e| e.start_offset < next.log_end_offset);
        drop(epochs);
        drop(producers);
        drop(state);
        self.high_watermark.send_if_modified(|hw| {
            let above = *hw > next.log_end_offset;
            if above {
                *hw = next.log_end_offset;
            }
            above
        });
        self.log_end.send_replace(next.log_end_offset);
        info!(
            tp = %self.tp,
            from = before.log_end_offset,
            to = next.log_end_offset,
            "truncated divergent records"
        );
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (a follower of `leader_epoch` whose log
    /// ends below the leader's log start).
    pub fn truncate_fully_and_start_at(
        &self,
        offset: i64,
        leader_epoch: i32,
    ) -> Result<(), LogError> {
        let mut state = self.state.lock();
        self.check_hosted()?;
        self.check_follows(leader_epoch)?;
        let mut producers = self.producers.lock();
        let mut epochs = self.epochs.lock();
        self.store.truncate(self.tp, i64::MIN, *state, &[])?;
        let next = PartitionState::empty(offset);
        self.store.write_state(self.tp, next)?;
        *state = next;
        producers.clear();
        self.first_unstable.store(i64::MAX, Ordering::Release);
        self.aborted.lock().clear();
        epochs.clear();
        drop(epochs);
        drop(producers);
        drop(state);
        self.high_watermark.send_replace(offset);
        self.log_end.send_replace(offset);
        info!(tp = %self.tp, offset, "log emptied to restart at the leader's log start");
        Ok(())
    }

    /// Producer state as of `offset`: entries keep their batches below it; a producer whose
    /// remembered batches all lie at or above it is looked up again in the log below.
    fn producers_below(
        &self,
        current: &HashMap<i64, producer::ProducerEntry>,
        offset: i64,
        log_start: i64,
    ) -> Result<HashMap<i64, producer::ProducerEntry>, LogError> {
        let mut out = HashMap::new();
        let mut lost = Vec::new();
        for (pid, e) in current {
            let mut e = e.clone();
            e.batches.retain(|b| b.last_offset < offset);
            // A transactional producer's open transaction depends on markers that may be in
            // the removed suffix: its state is rebuilt from the log below.
            let transactional = e.txn_first_offset.is_some() || e.coordinator_epoch >= 0;
            if e.batches.is_empty() || transactional {
                lost.push(*pid);
            } else {
                out.insert(*pid, e);
            }
        }
        if lost.is_empty() {
            return Ok(out);
        }
        // Rare (a producer's last five batches were all divergent): scan the log below.
        self.scan_below(log_start, offset, |b, base, last| {
            if lost.contains(&b.producer_id) {
                let (entry, _) = after_batch(out.get(&b.producer_id), b, base, last);
                out.insert(b.producer_id, entry);
            }
        })?;
        debug!(tp = %self.tp, producers = lost.len(), "producer state rebuilt from the log");
        Ok(out)
    }

    /// Calls `f` with every record from the log start to the log end, in order: how a new
    /// leader's coordinators replay their partition (to the log end, since a new leader's
    /// high watermark may trail what the old one acknowledged). Reading moves on by batch
    /// headers, so a batch compaction emptied at its tail is read once. Returns the count.
    pub fn replay(
        &self,
        mut f: impl FnMut(kafka_protocol::records::Record),
    ) -> Result<usize, LogError> {
        let mut from = self.state().log_start_offset;
        let mut n = 0usize;
        loop {
            let r = self.read_up_to(from, 8 << 20, ReadLimit::LogEnd)?;
            if r.records.is_empty() {
                return Ok(n);
            }
            let mut progressed = false;
            for view in batch::parse_replicated(&r.records)? {
                let next = view.base_offset() + view.last_offset_delta as i64 + 1;
                if next <= from {
                    continue;
                }
                let mut data = view.bytes.clone();
                let set = RecordBatchDecoder::decode(&mut data).map_err(|e| {
                    LogError::CorruptMessage {
                        reason: format!(
                            "stored batch at {} does not decode: {e}",
                            view.base_offset()
                        ),
                    }
                })?;
                for rec in set.records.into_iter().filter(|r| r.offset >= from) {
                    n += 1;
                    f(rec);
                }
                from = next;
                progressed = true;
            }
            if !progressed {
                return Ok(n);
            }
        }
    }

    /// Reads from `offset` up to `max_bytes` (at least one batch) below the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        self.read_up_to(offset, max_bytes, ReadLimit::HighWatermark)
    }

    /// Reads from `offset` up to `max_bytes` (at least one batch) below `limit`. An offset
    /// between the high watermark and the log end is valid and reads nothing for consumers
    /// (a new leader's HW may trail the old one's for a moment); past the log end it is out
    /// of range.
    pub fn read_up_to(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: ReadLimit,
    ) -> Result<ReadResult, LogError> {
        let state = self.state();
        let hw = self.high_watermark();
        if offset < state.log_start_offset || offset > state.log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: state.log_start_offset,
                log_end: state.log_end_offset,
            });
        }
        let end = match limit {
            ReadLimit::HighWatermark => hw,
            ReadLimit::LogEnd => state.log_end_offset,
            ReadLimit::LastStable => hw.min(self.first_unstable()),
        };
        // One copy, engine to response buffer; sized for what is there, not what is asked.
        let available = state.size_bytes.min(max_bytes as u64) as usize;
        let mut buf = BytesMut::with_capacity(available.min(64 << 20));
        self.store
            .read_into(self.tp, offset, end, max_bytes, &mut buf)?;
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
            self.check_hosted()?;
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
            self.aborted
                .lock()
                .retain(|a| a.last_offset >= remove_below);
            return Ok(offset);
        }
    }
}

/// A producer's entry once batch `b`, stored at `first_offset..=last_offset`, is appended,
/// and the aborted transaction it closes if it is an ABORT marker. Transactional data opens
/// a transaction (if none is open); a marker closes it.
fn after_batch(
    current: Option<&producer::ProducerEntry>,
    b: &BatchView,
    first_offset: i64,
    last_offset: i64,
) -> (producer::ProducerEntry, Option<AbortedTxn>) {
    if let Some(m) = b.marker() {
        let mut next = producer::at_epoch(current, b.producer_epoch());
        let open = next.txn_first_offset.take();
        next.coordinator_epoch = next.coordinator_epoch.max(m.coordinator_epoch);
        let aborted = match open {
            Some(first) if !m.commit => Some(AbortedTxn {
                producer_id: b.producer_id,
                first_offset: first,
                last_offset,
            }),
            _ => None,
        };
        return (next, aborted);
    }
    let (first_seq, last_seq) = b.sequences();
    let mut next = producer::record(
        current,
        b.producer_epoch(),
        producer::BatchSeq {
            first_seq,
            last_seq,
            first_offset,
            last_offset,
        },
    );
    if b.is_transactional() && next.txn_first_offset.is_none() {
        next.txn_first_offset = Some(first_offset);
    }
    next.last_timestamp = b.max_timestamp;
    (next, None)
}

/// The first offset of the oldest open transaction among `producers` (i64::MAX: none).
fn oldest_open(producers: &HashMap<i64, producer::ProducerEntry>) -> i64 {
    producers
        .values()
        .filter_map(|e| e.txn_first_offset)
        .min()
        .unwrap_or(i64::MAX)
}

/// Records in `write` (and in `updates`, for later batches of the same write) the state of
/// batch `b`'s producer after it, and the aborted-transaction entry an ABORT marker makes;
/// nothing for batches without a producer id.
fn track_producer(
    write: &mut WriteBatch,
    updates: &mut Vec<(i64, producer::ProducerEntry)>,
    producers: &HashMap<i64, producer::ProducerEntry>,
    b: &BatchView,
    first_offset: i64,
    last_offset: i64,
) -> Option<AbortedTxn> {
    if b.producer_id < 0 {
        return None;
    }
    let (entry, aborted) = after_batch(
        latest_entry(updates, producers, b.producer_id),
        b,
        first_offset,
        last_offset,
    );
    write.set_producer_state(b.producer_id, entry.encode());
    if let Some(a) = aborted {
        write.add_aborted_txn(a);
    }
    updates.push((b.producer_id, entry));
    aborted
}

/// A producer's entry as of the batches of this write so far (`updates`, newest last), else
/// as stored.
fn latest_entry<'a>(
    updates: &'a [(i64, producer::ProducerEntry)],
    producers: &'a HashMap<i64, producer::ProducerEntry>,
    pid: i64,
) -> Option<&'a producer::ProducerEntry> {
    updates
        .iter()
        .rev()
        .find(|(p, _)| *p == pid)
        .map(|(_, e)| e)
        .or_else(|| producers.get(&pid))
}

/// Wall-clock milliseconds, the time base of replica lag.
pub use strom_client::records::now_ms;

/// Every partition log this broker holds, kept in step with the metadata image.
pub struct LogManager {
    node_id: i32,
    store: Arc<dyn LogStore>,
    partitions: RwLock<HashMap<TopicPartition, Arc<PartitionLog>>>,
    /// The offset of the newest image [`LogManager::sync`] applied. A request handler holds
    /// the image it started with; one older than this must not create a log, or a replica the
    /// sync just deleted (moved away, topic deleted) would come back and stay until the next
    /// metadata change.
    synced_offset: AtomicU64,
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
            synced_offset: AtomicU64::new(0),
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
        if image.offset < self.synced_offset.load(Ordering::SeqCst) {
            // Everything a newer image hosts here, sync created; so this image is stale and
            // the log was deleted since (see `synced_offset`).
            return Ok(None);
        }
        let state = self.store.create_partition(tp)?;
        let mut log = PartitionLog::new(tp, self.store.clone(), state)?;
        log.created_by = image.offset;
        let log = Arc::new(log);
        log.apply_metadata(self.node_id, meta, now_ms());
        partitions.insert(tp, log.clone());
        Ok(Some(log))
    }

    /// The storage engine's own gauges (see [`LogStore::engine_stats`]).
    pub fn engine_stats(&self) -> Vec<(&'static str, u64)> {
        self.store.engine_stats()
    }

    /// Writes out the engine's buffers that took no write since the last call (see
    /// [`LogStore::flush_idle`]).
    pub fn flush_idle(&self) -> usize {
        self.store.flush_idle()
    }

    /// Writes out every in-memory buffer of the store and refuses every later write (see
    /// [`LogStore::close`]): at shutdown, after the last high watermark checkpoint.
    pub fn close(&self) -> Result<(), LogError> {
        Ok(self.store.close()?)
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
    /// longer exist. Returns the ISR changes it saw on partitions led here before and after:
    /// (shrinks, expands), whether this leader or the controller (fencing a broker) made them.
    ///
    /// A log that a request handler created from a newer image than this one (a produce to a
    /// topic created while this sync ran) is left alone: this image does not know it, and
    /// the sync of the newer image, which follows, applies it.
    pub fn sync(&self, image: &MetadataImage) -> (u64, u64) {
        let (mut shrinks, mut expands) = (0, 0);
        for topic in image.topics() {
            for p in &topic.partitions {
                let tp = TopicPartition::new(topic.topic_id, p.partition);
                // One lookup that creates the log if missing; then this image's metadata
                // applies to the log whatever made it (a handler with an older image may
                // have created it since this sync began), unless a newer image did.
                match self.partition(image, tp) {
                    Ok(Some(log)) if log.known_to(image) => {
                        let before = log.isr_len();
                        log.apply_metadata(self.node_id, p, now_ms());
                        if let (Some(before), Some(after)) = (before, log.isr_len()) {
                            shrinks += u64::from(after < before);
                            expands += u64::from(after > before);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(%tp, topic = %topic.name, error = %e, "could not create partition log")
                    }
                }
            }
        }
        // Deleted topics, and partitions whose replicas no longer include this broker (a
        // reassignment moved them away). From here on a handler with an older image creates
        // no log; one that created a log before this line has it deleted below.
        self.synced_offset.fetch_max(image.offset, Ordering::SeqCst);
        let gone: Vec<(TopicPartition, &str)> = self
            .partitions
            .read()
            .iter()
            .filter(|(_, log)| log.known_to(image))
            .filter_map(|(tp, _)| match image.topic_by_id(&tp.topic_id) {
                None => Some((*tp, "topic deleted")),
                Some(t) => t
                    .partitions
                    .get(tp.partition as usize)
                    .is_none_or(|p| !p.replicas.contains(&self.node_id))
                    .then_some((*tp, "replica moved to other brokers")),
            })
            .collect();
        for (tp, reason) in gone {
            let removed = self.partitions.write().remove(&tp);
            let deleted = match removed {
                Some(log) => log.delete(),
                None => self.store.delete_partition(tp),
            };
            match deleted {
                Ok(()) => info!(%tp, reason, "partition log deleted"),
                Err(e) => warn!(%tp, error = %e, "could not delete partition log"),
            }
        }
        (shrinks, expands)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use batch::tests::encode_batch;
    use metadata_quorum::{MetadataRecord, PartitionRecord};
    use strom_client::records::{self, Compression};
    use strom_storage::MemoryLogStore;
    use uuid::Uuid;

    /// `image` with topic `name` (`id`) created: one partition on `replicas`, all in sync,
    /// led by `leader` at `leader_epoch`.
    fn with_topic(
        image: &MetadataImage,
        name: &str,
        id: Uuid,
        replicas: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
    ) -> MetadataImage {
        image
            .replay(&[MetadataRecord::CreateTopic {
                name: name.into(),
                topic_id: id,
                partitions: vec![PartitionRecord {
                    isr: replicas.clone(),
                    replicas,
                    leader,
                    leader_epoch,
                    partition_epoch: 0,
                }],
                configs: Default::default(),
            }])
            .expect("replay")
    }

    fn image_with_topic(id: Uuid) -> MetadataImage {
        with_topic(&MetadataImage::default(), "t", id, vec![1], 1, 0)
    }

    pub(crate) fn setup() -> (LogManager, Arc<PartitionLog>, MetadataImage) {
        let id = Uuid::from_u128(7);
        let image = image_with_topic(id);
        let logs = LogManager::open(1, Arc::new(MemoryLogStore::new())).expect("open");
        let p = logs
            .partition(&image, TopicPartition::new(id, 0))
            .expect("partition")
            .expect("hosted");
        (logs, p, image)
    }

    /// At shutdown the store is closed after its last flush: a produce racing it is refused
    /// with KAFKA_STORAGE_ERROR (retriable: the client goes to the new leader) and leaves the
    /// log as it was; reads go on.
    #[test]
    fn appends_after_close_are_refused_and_change_nothing() {
        let (logs, p, _) = setup();
        append(&p, &encode_batch(5, 0, Compression::None));
        logs.close().expect("close");
        let views_of = |b: &bytes::Bytes| batch::parse_batches(b, 1 << 20).expect("valid");
        let late = encode_batch(3, 1000, Compression::None);
        let err = p.append(&views_of(&late)).expect_err("closed");
        assert_eq!(
            err.kafka_error(),
            kafka_protocol::ResponseError::KafkaStorageError,
            "{err}"
        );
        assert_eq!((p.log_end_offset(), p.high_watermark()), (5, 5));
        let r = p.read(0, 1 << 20).expect("read");
        let sets = RecordBatchDecoder::decode_all(&mut r.records.clone()).expect("decode");
        assert_eq!(sets.iter().map(|s| s.records.len()).sum::<usize>(), 5);
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

    /// The metadata follower can still be applying an older image when a client, answered
    /// from the newer one, produces to a topic just created: the older image's sync must
    /// not take the new log for a deleted topic and lose what was acknowledged in it.
    #[test]
    fn a_sync_of_an_older_image_keeps_a_log_a_newer_image_created() {
        let (logs, _, image) = setup();
        let id = Uuid::from_u128(8);
        let newer = with_topic(&image, "new", id, vec![1], 1, 0);
        let tp = TopicPartition::new(id, 0);
        let log = logs
            .partition(&newer, tp)
            .expect("partition")
            .expect("hosted");
        let b = encode_batch(3, 0, Compression::None);
        log.append(&batch::parse_batches(&b, 1 << 20).expect("valid"))
            .expect("append");
        logs.sync(&image);
        let kept = logs.get(&tp).expect("the older image's sync kept the log");
        assert!(Arc::ptr_eq(&kept, &log));
        assert_eq!(kept.state().log_end_offset, 3);
        logs.sync(&newer);
        assert_eq!(logs.get(&tp).expect("hosted").state().log_end_offset, 3);
        // Once an image deletes the topic, its sync deletes the log.
        let deleted = newer
            .replay(&[MetadataRecord::DeleteTopic { topic_id: id }])
            .expect("replay");
        logs.sync(&deleted);
        assert!(logs.get(&tp).is_none());
    }

    /// The same race on a topic both images know: the older one has this broker following,
    /// the newer one made it leader and a produce opened the log from it. The older image's
    /// sync must not turn the leader back into a follower (whose fetcher would truncate).
    #[test]
    fn a_sync_of_an_older_image_keeps_the_leadership_a_newer_image_gave() {
        let id = Uuid::from_u128(10);
        let older = with_topic(&MetadataImage::default(), "t", id, vec![2, 1], 2, 0);
        let newer = older
            .replay(&[MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: 1,
                isr: vec![1],
                leader_epoch: 1,
                partition_epoch: 1,
            }])
            .expect("replay");
        let logs = LogManager::open(1, Arc::new(MemoryLogStore::new())).expect("open");
        let tp = TopicPartition::new(id, 0);
        let log = logs
            .partition(&newer, tp)
            .expect("partition")
            .expect("hosted");
        assert!(log.is_leader());
        logs.sync(&older);
        assert!(log.is_leader(), "the older image took the leadership back");
        assert_eq!(log.leader_epoch(), 1);
        assert!(log.check_leader_epoch(1).is_ok());
    }

    #[test]
    fn sync_drops_replicas_moved_away_and_late_writes_land_nowhere() {
        let (logs, p, image) = setup();
        let tp = p.topic_partition();
        let b = encode_batch(2, 0, Compression::None);
        p.append(&batch::parse_batches(&b, 1 << 20).expect("valid"))
            .expect("append");
        // A reassignment moves the partition to brokers 2 and 3.
        let moved = image
            .replay(&[MetadataRecord::PartitionReassignment {
                topic_id: tp.topic_id,
                partition: 0,
                replicas: vec![2, 3],
                adding: vec![],
                removing: vec![],
                leader: 2,
                isr: vec![2, 3],
                leader_epoch: 1,
                partition_epoch: 1,
            }])
            .expect("replay");
        logs.sync(&moved);
        assert!(logs.get(&tp).is_none());
        assert!(logs.partition(&moved, tp).expect("lookup").is_none());
        // A produce or fetch that started before the move holds the old image: it must not
        // bring the deleted log back (nothing would delete it until the next metadata change).
        assert!(logs.partition(&image, tp).expect("lookup").is_none());
        assert!(logs.get(&tp).is_none());
        // A fetch that was in flight with the old log writes nothing.
        let late = p.append(&batch::parse_batches(&b, 1 << 20).expect("valid"));
        assert!(
            matches!(late, Err(LogError::ReplicaDeleted { .. })),
            "{late:?}"
        );
        assert!(matches!(
            p.truncate_to(0),
            Err(LogError::ReplicaDeleted { .. })
        ));
        // Moved back, the broker starts the partition from nothing.
        let back = moved
            .replay(&[MetadataRecord::PartitionReassignment {
                topic_id: tp.topic_id,
                partition: 0,
                replicas: vec![2, 3, 1],
                adding: vec![1],
                removing: vec![],
                leader: 2,
                isr: vec![2, 3],
                leader_epoch: 1,
                partition_epoch: 2,
            }])
            .expect("replay");
        logs.sync(&back);
        let fresh = logs.get(&tp).expect("hosted again");
        assert_eq!(fresh.state().log_end_offset, 0);
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

    /// An idempotent batch of `n` records from producer `pid` starting at sequence `seq`.
    fn idempotent(pid: i64, seq: i32, n: usize) -> bytes::Bytes {
        let mut batch: Vec<_> = (0..n)
            .map(|i| {
                let v = format!("v{}", seq + i as i32);
                records::record(i, None, Some(bytes::Bytes::from(v)), 1000 + i as i64)
            })
            .collect();
        records::idempotent(&mut batch, pid, 0, seq);
        records::encode(&batch, Compression::None).expect("encode")
    }

    /// A log of partition `t` on broker `node` of replicas [1, 2, 3] led by `leader`.
    fn replica_log(node: i32, leader: i32, leader_epoch: i32) -> Arc<PartitionLog> {
        let id = Uuid::from_u128(9);
        let image = with_topic(
            &MetadataImage::default(),
            "r",
            id,
            vec![1, 2, 3],
            leader,
            leader_epoch,
        );
        let logs = LogManager::open(node, Arc::new(MemoryLogStore::new())).expect("open");
        logs.partition(&image, TopicPartition::new(id, 0))
            .expect("partition")
            .expect("hosted")
    }

    fn append(log: &PartitionLog, b: &bytes::Bytes) -> AppendInfo {
        log.append(&batch::parse_batches(b, 1 << 20).expect("valid"))
            .expect("append")
    }

    #[test]
    fn the_high_watermark_waits_for_every_in_sync_follower() {
        let leader = replica_log(1, 1, 4);
        append(&leader, &encode_batch(10, 0, Compression::None));
        assert_eq!((leader.log_end_offset(), leader.high_watermark()), (10, 0));
        // Consumers see nothing above the HW; an offset between HW and log end is valid.
        assert!(leader.read(0, 1 << 20).expect("read").records.is_empty());
        assert!(leader.read(5, 1 << 20).expect("read").records.is_empty());
        assert!(matches!(
            leader.read(11, 1 << 20),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // A follower reads to the log end.
        let r = leader
            .read_up_to(0, 1 << 20, ReadLimit::LogEnd)
            .expect("replica read");
        assert!(!r.records.is_empty());
        leader.follower_fetched(2, 10, 1).expect("2");
        assert_eq!(leader.high_watermark(), 0, "3 has not fetched yet");
        leader.follower_fetched(3, 6, 1).expect("3");
        assert_eq!(leader.high_watermark(), 6);
        leader.follower_fetched(3, 10, 2).expect("3");
        assert_eq!(leader.high_watermark(), 10);
        assert_eq!(
            leader.follower_fetched(7, 10, 3),
            Err(kafka_protocol::ResponseError::NotLeaderOrFollower)
        );
    }

    /// Partition 0 of replicas 1-3, now led by broker 2 at leader epoch 5 (ISR 2, 3).
    fn led_by_2_at_epoch_5() -> PartitionImage {
        PartitionImage {
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![2, 3],
            leader: 2,
            leader_epoch: 5,
            partition_epoch: 1,
            adding_replicas: vec![],
            removing_replicas: vec![],
        }
    }

    #[test]
    fn losing_leadership_wakes_high_watermark_waiters() {
        let log = replica_log(1, 1, 4);
        let mut hw = log.subscribe();
        hw.borrow_and_update();
        let moved = led_by_2_at_epoch_5();
        log.apply_metadata(1, &moved, 0);
        assert!(
            hw.has_changed().expect("open"),
            "an acks=all waiter must wake"
        );
        assert!(!log.is_leader());
    }

    #[test]
    fn a_demoted_leader_appends_nothing() {
        let log = replica_log(1, 1, 4);
        append(&log, &idempotent(77, 0, 2));
        let moved = led_by_2_at_epoch_5();
        log.apply_metadata(1, &moved, 0);
        let views = batch::parse_batches(&idempotent(77, 2, 1), 1 << 20).expect("valid");
        let err = log.append(&views).expect_err("not the leader");
        assert_eq!(
            err.kafka_error(),
            kafka_protocol::ResponseError::NotLeaderOrFollower
        );
        assert_eq!(log.log_end_offset(), 2);
        assert!(
            log.latest_epoch() < 5,
            "no batch was stamped with the new leader's epoch"
        );
    }

    #[test]
    fn a_fetch_answer_applies_only_at_the_log_end_it_was_asked_from() {
        let leader = replica_log(1, 1, 4);
        let follower = replica_log(2, 1, 4);
        append(&leader, &idempotent(77, 0, 3));
        let data = leader
            .read_up_to(0, 1 << 20, ReadLimit::LogEnd)
            .expect("read")
            .records;
        // Asked from 0, but the log moved on (another fetcher) meanwhile: refused.
        assert!(follower.append_replicated_at(&data, 1, 4).is_err());
        assert_eq!(follower.log_end_offset(), 0);
        // From a leader of another epoch than the one this replica follows: refused.
        assert!(matches!(
            follower.append_replicated_at(&data, 0, 3),
            Err(LogError::NotFollower { .. })
        ));
        assert!(matches!(
            follower.truncate_as_follower(0, 5),
            Err(LogError::NotFollower { .. })
        ));
        assert!(matches!(
            leader.truncate_as_follower(0, 4),
            Err(LogError::NotFollower { .. })
        ));
        assert_eq!(leader.log_end_offset(), 3);
        assert_eq!(
            follower.append_replicated_at(&data, 0, 4).expect("applies"),
            1
        );
        assert_eq!(follower.log_end_offset(), 3);
    }

    #[test]
    fn a_follower_copies_batches_epochs_and_producer_state() {
        let leader = replica_log(1, 1, 4);
        let follower = replica_log(2, 1, 4);
        append(&leader, &idempotent(77, 0, 3));
        append(&leader, &idempotent(77, 3, 2));
        let data = leader
            .read_up_to(0, 1 << 20, ReadLimit::LogEnd)
            .expect("read")
            .records;
        assert_eq!(follower.append_replicated(&data).expect("replicate"), 2);
        // Again: already held, nothing appended.
        assert_eq!(follower.append_replicated(&data).expect("replicate"), 0);
        assert_eq!(follower.log_end_offset(), 5);
        assert_eq!(
            follower
                .read_up_to(0, 1 << 20, ReadLimit::LogEnd)
                .expect("read")
                .records,
            data,
            "byte for byte"
        );
        assert_eq!(follower.epoch_entries(), leader.epoch_entries());
        assert_eq!(follower.end_offset_for_epoch(4), (4, 5));
        follower.follow_high_watermark(5);
        assert_eq!(follower.high_watermark(), 5);

        // The follower becomes leader (epoch 5): a retry of the last batch gets its original
        // offsets; the next sequence appends.
        let promoted = led_by_2_at_epoch_5();
        follower.apply_metadata(2, &promoted, 0);
        assert!(follower.is_leader());
        let retry = append(&follower, &idempotent(77, 3, 2));
        assert_eq!((retry.base_offset, retry.last_offset), (3, 4));
        assert_eq!(follower.log_end_offset(), 5);
        let next = append(&follower, &idempotent(77, 5, 1));
        assert_eq!(next.base_offset, 5);
        assert_eq!(follower.end_offset_for_epoch(4), (4, 5));
        assert_eq!(follower.end_offset_for_epoch(5), (5, 6));
        assert_eq!(follower.end_offset_for_epoch(3), (-1, -1));
    }

    #[test]
    fn truncation_drops_the_divergent_suffix_and_its_producer_state() {
        let log = replica_log(1, 1, 4);
        append(&log, &idempotent(5, 0, 2)); // 0-1, epoch 4
        let moved = PartitionImage {
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1],
            leader: 1,
            leader_epoch: 6,
            partition_epoch: 1,
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        log.apply_metadata(1, &moved, 0);
        append(&log, &idempotent(5, 2, 3)); // 2-4, epoch 6
        append(&log, &idempotent(9, 0, 1)); // 5, epoch 6, another producer
        assert_eq!(log.high_watermark(), 6, "a one-member ISR commits at once");
        assert_eq!(log.end_offset_for_epoch(4), (4, 2));
        assert_eq!(
            log.end_offset_for_epoch(5),
            (4, 2),
            "largest epoch at or below 5"
        );

        log.truncate_to(2).expect("truncate");
        assert_eq!((log.log_end_offset(), log.high_watermark()), (2, 2));
        assert_eq!(log.epoch_entries().len(), 1);
        assert_eq!(log.end_offset_for_epoch(6), (4, 2));
        // Producer 5 continues from sequence 2 again; producer 9 is unknown here now.
        let again = append(&log, &idempotent(5, 2, 3));
        assert_eq!(again.base_offset, 2);
        assert!(matches!(
            log.append(&batch::parse_batches(&idempotent(9, 1, 1), 1 << 20).expect("valid")),
            Err(LogError::UnknownProducerId { .. })
        ));
        // Truncating at or past the end does nothing.
        log.truncate_to(100).expect("noop");
        assert_eq!(log.log_end_offset(), 5);
    }

    #[test]
    fn a_producer_cut_entirely_is_rebuilt_from_the_log() {
        let log = replica_log(1, 1, 0);
        // Seven batches of producer 3: only the last five are remembered.
        for i in 0..7 {
            append(&log, &idempotent(3, i, 1));
        }
        log.truncate_to(2).expect("truncate");
        // Sequences 0 and 1 remain; 2 is next, and a retry of 1 is a duplicate.
        let dup = append(&log, &idempotent(3, 1, 1));
        assert_eq!(dup.base_offset, 1);
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(append(&log, &idempotent(3, 2, 1)).base_offset, 2);
    }

    /// A transactional batch of `n` records from producer `pid` at `epoch`.
    fn transactional(pid: i64, epoch: i16, seq: i32, n: usize) -> bytes::Bytes {
        let mut batch: Vec<_> = (0..n)
            .map(|i| records::record(i, None, Some(bytes::Bytes::from_static(b"t")), 1000))
            .collect();
        records::idempotent(&mut batch, pid, epoch, seq);
        for r in &mut batch {
            r.transactional = true;
        }
        records::encode(&batch, Compression::None).expect("encode")
    }

    #[test]
    fn a_verification_outlived_by_a_marker_does_not_open_a_transaction() {
        let (_, p, _) = setup();
        let parse = |b: &bytes::Bytes| batch::parse_batches(b, 1 << 20).expect("valid");
        // Verified, then appended: the transaction opens; later batches need no guard.
        assert!(!p.transaction_open(7, 0));
        let g = p.verification_guard(7, 0, false);
        assert_eq!(
            p.verification_guard(7, 0, false),
            g,
            "concurrent requests share one guard"
        );
        p.append_verified(&parse(&transactional(7, 0, 0, 2)), g)
            .expect("verified");
        assert!(p.transaction_open(7, 0));
        p.append_verified(&parse(&transactional(7, 0, 2, 1)), 0)
            .expect("open already");
        p.write_marker(7, 0, false, 0).expect("abort");
        assert!(!p.transaction_open(7, 0));

        // A guard taken before the marker no longer holds after it.
        let stale = p.verification_guard(7, 0, false);
        p.write_marker(7, 0, false, 0).expect("abort again");
        let end = p.log_end_offset();
        let err = p
            .append_verified(&parse(&transactional(7, 0, 3, 1)), stale)
            .expect_err("stale guard");
        assert_eq!(
            err.kafka_error(),
            kafka_protocol::ResponseError::InvalidTxnState
        );
        assert_eq!(p.log_end_offset(), end, "nothing written");
        assert_eq!(p.last_stable_offset(), end, "no transaction hangs");
        // A fresh verification lets it through.
        let fresh = p.verification_guard(7, 0, false);
        assert_ne!(fresh, stale);
        p.append_verified(&parse(&transactional(7, 0, 3, 1)), fresh)
            .expect("fresh guard");

        // Seen open (so not verified), then a marker, then the append (guard 0, which
        // matches none): refused, as the transaction is no longer open at the append.
        assert!(p.transaction_open(7, 0));
        p.write_marker(7, 0, false, 0).expect("abort");
        let end = p.log_end_offset();
        assert!(p
            .append_verified(&parse(&transactional(7, 0, 4, 1)), 0)
            .is_err());
        assert_eq!(p.log_end_offset(), end);

        // A failed verification leaves no guard behind.
        let g = p.verification_guard(9, 0, false);
        p.drop_verification_guard(9, g + 1);
        assert_eq!(
            p.verification_guard(9, 0, false),
            g,
            "someone else's guard stays"
        );
        p.drop_verification_guard(9, g);
        assert_ne!(
            p.verification_guard(9, 0, false),
            g,
            "gone: the next one is new"
        );
    }

    /// Transaction version 2: a transaction's marker carries the epoch after its batches'.
    /// The next transaction's first batch (at that new epoch) may be added to the
    /// transaction before the marker reaches this partition; the marker must not undo that,
    /// while a late batch of the ended transaction is fenced.
    #[test]
    fn tv2_markers_end_the_transaction_before_and_fence_its_epoch() {
        let (_, p, _) = setup();
        let parse = |b: &bytes::Bytes| batch::parse_batches(b, 1 << 20).expect("valid");
        let g = p.verification_guard(5, 0, true);
        p.append_verified(&parse(&transactional(5, 0, 0, 2)), g)
            .expect("first transaction");
        // The next transaction (epoch 1) is added at the coordinator; its guard is taken
        // before the commit marker (at epoch 1) lands here.
        let next = p.verification_guard(5, 1, true);
        // A late batch of epoch 0 asking meanwhile neither takes nor drops that guard.
        let zombie = p.verification_guard(5, 0, true);
        assert_ne!(zombie, next);
        p.drop_verification_guard(5, zombie);
        assert_eq!(p.verification_guard(5, 1, true), next);
        p.write_marker(5, 1, true, 0)
            .expect("commit at the bumped epoch");
        assert_eq!(p.last_stable_offset(), p.log_end_offset());
        let late = p
            .append_verified(&parse(&transactional(5, 0, 2, 1)), 0)
            .expect_err("a late batch of the ended transaction");
        assert_eq!(
            late.kafka_error(),
            kafka_protocol::ResponseError::InvalidProducerEpoch
        );
        p.append_verified(&parse(&transactional(5, 1, 0, 1)), next)
            .expect("the next transaction starts at sequence 0 of the new epoch");
        assert!(p.transaction_open(5, 1));
        // Its own marker (epoch 2) does end a guard taken for it.
        let stale = p.verification_guard(5, 1, true);
        p.write_marker(5, 2, false, 0)
            .expect("abort at the bumped epoch");
        assert!(p
            .append_verified(&parse(&transactional(5, 1, 1, 1)), stale)
            .is_err());
    }

    #[test]
    fn open_transactions_hold_the_lso_and_aborts_are_indexed() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryLogStore::new());
        let image = image_with_topic(Uuid::from_u128(7));
        let tp = TopicPartition::new(Uuid::from_u128(7), 0);
        let logs = LogManager::open(1, store.clone()).expect("open");
        let p = logs.partition(&image, tp).expect("p").expect("hosted");
        append(&p, &encode_batch(2, 0, Compression::None)); // 0-1
        append(&p, &transactional(7, 0, 0, 3)); // 2-4, producer 7
        append(&p, &encode_batch(1, 0, Compression::None)); // 5
        assert_eq!((p.high_watermark(), p.last_stable_offset()), (6, 2));
        let committed = p
            .read_up_to(0, 1 << 20, ReadLimit::LastStable)
            .expect("read");
        let sets = RecordBatchDecoder::decode_all(&mut committed.records.clone()).expect("decode");
        assert_eq!(
            sets.len(),
            1,
            "read_committed stops before the open transaction"
        );
        append(&p, &transactional(8, 0, 0, 2)); // 6-7, producer 8
        let abort = p.write_marker(7, 0, false, 0).expect("abort marker"); // 8
        assert_eq!(abort.base_offset, 8);
        assert_eq!(p.last_stable_offset(), 6, "producer 8 is still open");
        let aborted = AbortedTxn {
            producer_id: 7,
            first_offset: 2,
            last_offset: 8,
        };
        assert_eq!(p.aborted_between(0, 100), vec![aborted]);
        assert_eq!(p.aborted_between(9, 100), vec![], "marker before the fetch");
        assert_eq!(p.aborted_between(0, 2), vec![], "data after the range");
        p.write_marker(8, 0, true, 0).expect("commit marker"); // 9
        assert_eq!(p.last_stable_offset(), 10);
        let stored = p.read(8, 1 << 20).expect("read").records;
        let views = batch::parse_internal(&stored).expect("stored");
        assert_eq!(
            views.iter().map(|v| v.marker()).collect::<Vec<_>>(),
            vec![
                Some(batch::Marker {
                    commit: false,
                    coordinator_epoch: 0
                }),
                Some(batch::Marker {
                    commit: true,
                    coordinator_epoch: 0
                })
            ]
        );
        // Clients cannot write markers.
        assert!(matches!(
            batch::parse_batches(&stored, 1 << 20),
            Err(LogError::InvalidRecord { .. })
        ));
        // A bumped epoch's transaction; the old epoch's and an old coordinator's markers are
        // fenced and write nothing.
        append(&p, &transactional(7, 1, 0, 1)); // 10
        assert!(matches!(
            p.write_marker(7, 0, true, 0),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        p.write_marker(7, 1, true, 3).expect("coordinator epoch 3"); // 11
        append(&p, &transactional(7, 1, 1, 1)); // 12
        assert!(matches!(
            p.write_marker(7, 1, false, 2),
            Err(LogError::CoordinatorFenced { .. })
        ));
        assert_eq!(p.log_end_offset(), 13);
        assert_eq!(p.last_stable_offset(), 12);
        // All of it survives a restart.
        drop(p);
        drop(logs);
        let logs = LogManager::open(1, store).expect("reopen");
        let p = logs.get(&tp).expect("recovered");
        p.apply_metadata(1, &image.topic("t").expect("t").partitions[0], 0);
        assert_eq!(p.aborted_between(0, 100), vec![aborted]);
        assert_eq!(p.first_unstable.load(Ordering::Acquire), 12);
    }

    #[test]
    fn replay_reads_a_batch_emptied_at_its_tail_once() {
        // What compaction leaves: records 0 and 1 of a batch spanning 0..=4, then 5.
        let follower = replica_log(2, 1, 0);
        let recs: Vec<_> = (0..2)
            .map(|i| records::record(i, None, Some(bytes::Bytes::from(format!("v{i}"))), 1))
            .collect();
        let mut b = records::encode(&recs, Compression::None)
            .expect("encode")
            .to_vec();
        b[23..27].copy_from_slice(&4i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut next = encode_batch(1, 0, Compression::None).to_vec();
        next[0..8].copy_from_slice(&5i64.to_be_bytes());
        b.extend(next);
        follower
            .append_replicated(&bytes::Bytes::from(b))
            .expect("replicate");
        let mut seen = Vec::new();
        let n = follower.replay(|r| seen.push(r.offset)).expect("replay");
        assert_eq!((n, seen), (3, vec![0, 1, 5]));
    }

    #[test]
    fn a_new_replica_copies_the_gaps_compaction_left() {
        // The leader's compaction removed offsets 0-2 whole: its first batch is 3..=3, then
        // 7..=8. A replica starting empty copies both, gaps included.
        let follower = replica_log(2, 1, 0);
        let at = |base: i64, n: usize| {
            let mut b = encode_batch(n, 0, Compression::None).to_vec();
            b[0..8].copy_from_slice(&base.to_be_bytes());
            b
        };
        let mut data = at(3, 1);
        data.extend(at(7, 2));
        assert_eq!(
            follower
                .append_replicated(&bytes::Bytes::from(data))
                .expect("a gap is what compaction leaves, not an error"),
            2
        );
        assert_eq!(follower.log_end_offset(), 9);
        let mut seen = Vec::new();
        follower.replay(|r| seen.push(r.offset)).expect("replay");
        assert_eq!(seen, vec![3, 7, 8]);
        // Overlapping what it holds is still refused.
        let overlap = bytes::Bytes::from(at(8, 2));
        assert!(follower.append_replicated(&overlap).is_err());
    }

    #[test]
    fn the_lso_never_falls_below_the_log_start() {
        let (_, p, _) = setup();
        append(&p, &transactional(3, 0, 0, 3)); // 0-2, open
        append(&p, &encode_batch(2, 0, Compression::None)); // 3-4
        assert_eq!(p.last_stable_offset(), 0);
        assert_eq!(p.delete_records_before(4).expect("delete"), 4);
        assert_eq!(
            p.last_stable_offset(),
            4,
            "the open transaction's head is gone"
        );
        // Reading there is valid (no OFFSET_OUT_OF_RANGE) and waits for the transaction.
        let r = p
            .read_up_to(4, 1 << 20, ReadLimit::LastStable)
            .expect("read");
        assert!(r.records.is_empty());
        p.write_marker(3, 0, false, 0).expect("abort"); // 5
        assert_eq!(p.last_stable_offset(), 6);
        let r = p
            .read_up_to(4, 1 << 20, ReadLimit::LastStable)
            .expect("read");
        assert!(!r.records.is_empty());
    }

    #[test]
    fn followers_copy_transactions_and_truncation_reopens_them() {
        let leader = replica_log(1, 1, 4);
        let follower = replica_log(2, 1, 4);
        append(&leader, &transactional(5, 0, 0, 2)); // 0-1
        leader.write_marker(5, 0, false, 1).expect("abort"); // 2
        append(&leader, &transactional(5, 0, 2, 2)); // 3-4
        leader.write_marker(5, 0, true, 1).expect("commit"); // 5
        append(&leader, &transactional(6, 0, 0, 1)); // 6, open
        let data = leader
            .read_up_to(0, 1 << 20, ReadLimit::LogEnd)
            .expect("read")
            .records;
        assert_eq!(follower.append_replicated(&data).expect("replicate"), 5);
        follower.follow_high_watermark(7);
        assert_eq!(
            follower.aborted_between(0, 100),
            leader.aborted_between(0, 100)
        );
        assert_eq!(follower.last_stable_offset(), 6);
        // Truncating away the commit marker reopens producer 5's transaction at 3.
        follower.truncate_to(5).expect("truncate");
        assert_eq!(follower.first_unstable.load(Ordering::Acquire), 3);
        // Truncating away the abort marker drops its index entry and reopens at 0.
        follower.truncate_to(2).expect("truncate");
        assert_eq!(follower.aborted_between(0, 100), vec![]);
        assert_eq!(follower.first_unstable.load(Ordering::Acquire), 0);
    }

    #[test]
    fn the_high_watermark_survives_a_restart() {
        let store: Arc<dyn LogStore> = Arc::new(MemoryLogStore::new());
        let image = image_with_topic(Uuid::from_u128(7));
        let tp = TopicPartition::new(Uuid::from_u128(7), 0);
        {
            let logs = LogManager::open(1, store.clone()).expect("open");
            let p = logs.partition(&image, tp).expect("p").expect("hosted");
            append(&p, &encode_batch(4, 0, Compression::None));
            p.checkpoint_high_watermark().expect("checkpoint");
        }
        let logs = LogManager::open(2, store).expect("reopen");
        let p = logs.get(&tp).expect("recovered");
        assert_eq!(p.high_watermark(), 4);
        assert!(!p.read(0, 1 << 20).expect("read").records.is_empty());
    }
}
