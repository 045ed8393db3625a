//! The conformance suite every [`LogStore`] engine must pass. Engines call [`run`] from their
//! own tests with a factory that makes a fresh, empty store; persistent engines also call
//! [`survives_reopen`].

use bytes::Bytes;
use uuid::Uuid;

use crate::{
    AbortedTxn, EpochEntry, LogStore, PartitionState, StorageError, StoredBatch, TimeIndexEntry,
    TopicPartition, WriteBatch,
};

/// A stand-in record batch: 61 header bytes (only `lastOffsetDelta` matters to the store)
/// plus `payload` filler bytes.
pub fn fake_batch(
    base_offset: i64,
    records: i32,
    max_timestamp: i64,
    payload: usize,
) -> StoredBatch {
    let mut data = vec![0u8; 61 + payload];
    data[0..8].copy_from_slice(&base_offset.to_be_bytes());
    data[23..27].copy_from_slice(&(records - 1).to_be_bytes());
    data[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    StoredBatch {
        base_offset,
        last_offset: base_offset + records as i64 - 1,
        max_timestamp,
        data: Bytes::from(data),
    }
}

fn tp(topic: u128, partition: u32) -> TopicPartition {
    TopicPartition::new(Uuid::from_u128(topic), partition)
}

/// Appends `batches` (given as (records, max_timestamp, payload)) and returns them.
fn append<S: LogStore>(
    store: &S,
    t: TopicPartition,
    batches: &[(i32, i64, usize)],
) -> Vec<StoredBatch> {
    let state = store
        .partitions()
        .expect("partitions")
        .into_iter()
        .find(|(p, _)| *p == t)
        .map(|(_, s)| s)
        .expect("partition exists");
    let mut write = WriteBatch::new(state);
    let mut out = Vec::new();
    for (records, ts, payload) in batches {
        let b = fake_batch(write.state().log_end_offset, *records, *ts, *payload);
        write.push(b.clone()).expect("contiguous");
        out.push(b);
    }
    store.append(t, write).expect("append");
    out
}

fn offsets(read: &[Bytes]) -> Vec<i64> {
    read.iter()
        .map(|b| i64::from_be_bytes(b[0..8].try_into().expect("8 bytes")))
        .collect()
}

/// Runs every case, each on a fresh store from `make`.
pub fn run<S: LogStore, F: FnMut() -> S>(mut make: F) {
    create_is_idempotent(&make());
    append_then_read_back(&make());
    read_starts_inside_a_batch(&make());
    read_honours_end_offset_and_max_bytes(&make());
    partitions_are_isolated(&make());
    time_index_is_monotonic(&make());
    write_batch_rejects_gaps();
    delete_partition_removes_only_it(&make());
    head_deletion_moves_the_start(&make());
    head_deletion_removes_every_batch_starting_below(&make());
    replacement_is_atomic_and_keeps_offsets(&make());
    producer_state_travels_with_appends(&make());
    truncation_removes_a_suffix_atomically(&make());
    truncation_in_a_compacted_gap_ends_at_the_offset(&make());
    aborted_transactions_follow_their_markers(&make());
    writes_after_close_are_refused(&make());
}

/// After `close`, every kind of write is refused with [`StorageError::Closed`] and changes
/// nothing; reads go on, and creating a partition that exists answers its state.
fn writes_after_close_are_refused<S: LogStore>(store: &S) {
    let (t, other, new) = (tp(15, 0), tp(15, 1), tp(15, 2));
    for p in [t, other] {
        store.create_partition(p).expect("create");
        append(store, p, &[(2, 10, 3), (3, 20, 3)]);
    }
    let everything = |store: &S| {
        let mut all = Vec::new();
        for p in [t, other, new] {
            all.push(format!(
                "{:?} {:?} {:?} {:?} {:?}",
                store.read(p, 0, i64::MAX, usize::MAX).expect("read"),
                store.lookup_timestamp(p, 0).expect("lookup"),
                store.producer_states(p).expect("producers"),
                store.leader_epochs(p).expect("epochs"),
                store.aborted_txns(p).expect("aborted"),
            ));
        }
        (store.partitions().expect("partitions"), all)
    };
    let mut before = everything(store);
    before.0.sort_by_key(|(p, _)| (p.topic_id, p.partition));
    store.close().expect("close");
    store.close().expect("a second close");
    let state = state_of(store, t);
    let mut write = WriteBatch::new(state);
    write
        .push(fake_batch(state.log_end_offset, 1, 30, 3))
        .expect("contiguous");
    let refused = [
        store.append(t, write),
        store.write_state(
            t,
            PartitionState {
                high_watermark: 5,
                ..state
            },
        ),
        store.delete_head(
            t,
            2,
            PartitionState {
                log_start_offset: 2,
                ..state
            },
        ),
        store.replace_batches(t, &[0], &[], &[], state),
        store.truncate(t, 2, state, &[]).map(|_| ()),
        store.delete_partition(other),
        store.create_partition(new).map(|_| ()),
    ];
    for (i, r) in refused.into_iter().enumerate() {
        assert_eq!(r, Err(StorageError::Closed), "write {i} after close");
    }
    assert_eq!(store.create_partition(t).expect("exists"), state);
    let mut after = everything(store);
    after.0.sort_by_key(|(p, _)| (p.topic_id, p.partition));
    assert_eq!(after, before);
}

/// The aborted-transaction index is written with the marker's batch, read in marker order,
/// and leaves with its marker: retention at the head, truncation of a suffix, deletion.
fn aborted_transactions_follow_their_markers<S: LogStore>(store: &S) {
    let (t, other) = (tp(14, 0), tp(14, 1));
    for p in [t, other] {
        store.create_partition(p).expect("create");
    }
    let txn = |pid, first, last| AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
    };
    // Offsets 0-9 in ten batches; aborts marked at 3 (data 0-2), 6 (data 1-5), 9 (data 7-8).
    let mut write = WriteBatch::new(state_of(store, t));
    for _ in 0..4 {
        let b = fake_batch(write.state().log_end_offset, 1, 1, 0);
        write.push(b).expect("push");
    }
    write.add_aborted_txn(txn(1, 0, 3));
    store.append(t, write).expect("append");
    let mut write = WriteBatch::new(state_of(store, t));
    for _ in 0..6 {
        let b = fake_batch(write.state().log_end_offset, 1, 1, 0);
        write.push(b).expect("push");
    }
    write.add_aborted_txn(txn(2, 1, 6));
    write.add_aborted_txn(txn(3, 7, 9));
    store.append(t, write).expect("append");
    let mut write = WriteBatch::new(state_of(store, other));
    write.push(fake_batch(0, 1, 1, 0)).expect("push");
    write.add_aborted_txn(txn(4, 0, 0));
    store.append(other, write).expect("append");
    assert_eq!(
        store.aborted_txns(t).expect("index"),
        vec![txn(1, 0, 3), txn(2, 1, 6), txn(3, 7, 9)]
    );

    // Retention removing offsets 0-3 takes the entry marked at 3 with it.
    let state = state_of(store, t);
    let moved = PartitionState {
        log_start_offset: 4,
        ..state
    };
    store.delete_head(t, 4, moved).expect("delete head");
    assert_eq!(
        store.aborted_txns(t).expect("index"),
        vec![txn(2, 1, 6), txn(3, 7, 9)]
    );
    // Truncating at 8 removes the marker at 9 and its entry.
    store
        .truncate(t, 8, state_of(store, t), &[])
        .expect("truncate");
    assert_eq!(store.aborted_txns(t).expect("index"), vec![txn(2, 1, 6)]);
    // Compaction removing the marker at 6 removes its entry in the same write.
    let state = state_of(store, t);
    store
        .replace_batches(t, &[6], &[], &[6], state)
        .expect("replace");
    assert_eq!(store.aborted_txns(t).expect("index"), vec![]);
    // Deleting the partition forgets its index, not the neighbour's.
    store.delete_partition(t).expect("delete");
    assert!(store.aborted_txns(t).expect("index").is_empty());
    assert_eq!(
        store.aborted_txns(other).expect("index"),
        vec![txn(4, 0, 0)]
    );
}

fn truncation_removes_a_suffix_atomically<S: LogStore>(store: &S) {
    let (t, other) = (tp(13, 0), tp(13, 1));
    for p in [t, other] {
        store.create_partition(p).expect("create");
    }
    // Epoch 0: offsets 0-3; epoch 2: offsets 4-8. Timestamps grow at batches 0, 2 and 3.
    let mut write = WriteBatch::new(state_of(store, t));
    write.set_epoch_start(0, 0);
    for (records, ts) in [(2, 10), (2, 5)] {
        let b = fake_batch(write.state().log_end_offset, records, ts, 9);
        write.push(b).expect("push");
    }
    write.set_producer_state(7, vec![7]);
    write.set_high_watermark(4);
    store.append(t, write).expect("append");
    let mut write = WriteBatch::new(state_of(store, t));
    write.set_epoch_start(2, 4);
    for (records, ts) in [(3, 20), (2, 30)] {
        let b = fake_batch(write.state().log_end_offset, records, ts, 9);
        write.push(b).expect("push");
    }
    write.set_producer_state(8, vec![8]);
    store.append(t, write).expect("append");
    append(store, other, &[(1, 1, 0)]);
    assert_eq!(state_of(store, t).high_watermark, 4);
    assert_eq!(
        store.leader_epochs(t).expect("epochs"),
        vec![
            EpochEntry {
                epoch: 0,
                start_offset: 0
            },
            EpochEntry {
                epoch: 2,
                start_offset: 4
            }
        ]
    );

    // Truncating at 5 (inside the batch 4-6) removes that batch and the one after it.
    let before = state_of(store, t);
    let after = store
        .truncate(t, 5, before, &[(7, vec![1])])
        .expect("truncate");
    assert_eq!(after.log_end_offset, 4);
    assert_eq!(after.max_timestamp, 10);
    assert_eq!(after.size_bytes, before.size_bytes - 140);
    assert_eq!(after.high_watermark, 4);
    assert_eq!(state_of(store, t), after);
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, usize::MAX).expect("read")),
        vec![0, 2]
    );
    assert_eq!(store.lookup_timestamp(t, 11).expect("lookup"), None);
    assert_eq!(
        store.leader_epochs(t).expect("epochs"),
        vec![EpochEntry {
            epoch: 0,
            start_offset: 0
        }]
    );
    assert_eq!(
        store.producer_states(t).expect("states"),
        vec![(7, vec![1])]
    );
    // The log continues where it now ends; the neighbour is untouched.
    append(store, t, &[(1, 40, 0)]);
    assert_eq!(state_of(store, t).log_end_offset, 5);
    assert_eq!(state_of(store, other).log_end_offset, 1);

    // Truncating at the end removes nothing; a checkpoint writes the state alone.
    let now = state_of(store, t);
    assert_eq!(
        store.truncate(t, 5, now, &[(7, vec![1])]).expect("noop"),
        now
    );
    let checkpoint = PartitionState {
        high_watermark: 5,
        ..now
    };
    store.write_state(t, checkpoint).expect("checkpoint");
    assert_eq!(state_of(store, t), checkpoint);
    // Truncating everything empties the log at its start.
    let all = store.truncate(t, 0, checkpoint, &[]).expect("truncate all");
    assert_eq!(
        (all.log_start_offset, all.log_end_offset, all.size_bytes),
        (0, 0, 0)
    );
    assert_eq!((all.max_timestamp, all.high_watermark), (-1, 0));
    assert!(store
        .read(t, 0, i64::MAX, usize::MAX)
        .expect("read")
        .is_empty());
    assert!(store.leader_epochs(t).expect("epochs").is_empty());
}

/// A truncation at an offset no batch holds (compaction emptied its batch) ends the log at
/// that offset, as Kafka's truncateTo does, not at the next batch: a follower fetches from
/// there, so a log ending above it would skip the leader's records in between.
fn truncation_in_a_compacted_gap_ends_at_the_offset<S: LogStore>(store: &S) {
    let t = tp(15, 0);
    store.create_partition(t).expect("create");
    let written = append(store, t, &[(2, 10, 0), (2, 20, 0), (2, 30, 0)]); // 0-1, 2-3, 4-5
    let size = |i: usize| written[i].data.len() as u64;
    // Compaction leaves nothing of the batch 2-3.
    let mut state = state_of(store, t);
    state.size_bytes -= size(1);
    store
        .replace_batches(t, &[2], &[], &[], state)
        .expect("compact");
    let before = state_of(store, t);
    let after = store.truncate(t, 3, before, &[]).expect("truncate");
    assert_eq!(after.log_end_offset, 3);
    assert_eq!(after.size_bytes, before.size_bytes - size(2));
    // The time index keeps the emptied batch's entry (it is below the new end).
    assert_eq!(after.max_timestamp, 20);
    assert_eq!(state_of(store, t), after);
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, usize::MAX).expect("read")),
        vec![0]
    );
    // Past the log's end nothing moves; at the end of a kept batch the log ends there.
    let now = state_of(store, t);
    assert_eq!(
        store.truncate(t, 7, now, &[]).expect("noop").log_end_offset,
        3
    );
    let after = store.truncate(t, 2, now, &[]).expect("truncate");
    assert_eq!(
        (after.log_end_offset, after.size_bytes),
        (2, now.size_bytes)
    );
}

fn producer_state_travels_with_appends<S: LogStore>(store: &S) {
    let (t, other) = (tp(12, 0), tp(12, 1));
    for p in [t, other] {
        store.create_partition(p).expect("create");
    }
    let mut write = WriteBatch::new(state_of(store, t));
    write.push(fake_batch(0, 1, 1, 0)).expect("push");
    write.set_producer_state(7, vec![1, 2, 3]);
    write.set_producer_state(7, vec![4]);
    write.set_producer_state(1_000_000, vec![9]);
    store.append(t, write).expect("append");
    assert_eq!(
        store.producer_states(t).expect("states"),
        vec![(7, vec![4]), (1_000_000, vec![9])]
    );
    assert!(store.producer_states(other).expect("states").is_empty());
    store.delete_partition(t).expect("delete");
    assert!(store.producer_states(t).expect("states").is_empty());
}

/// `t`'s state as the store reports it (the partition must exist).
pub(crate) fn state_of<S: LogStore + ?Sized>(store: &S, t: TopicPartition) -> PartitionState {
    store
        .partitions()
        .expect("partitions")
        .into_iter()
        .find(|(p, _)| *p == t)
        .map(|(_, s)| s)
        .expect("partition exists")
}

fn head_deletion_moves_the_start<S: LogStore>(store: &S) {
    let t = tp(10, 0);
    store.create_partition(t).expect("create");
    append(store, t, &[(2, 10, 9), (2, 20, 9), (2, 30, 9)]); // 70 bytes each, offsets 0-5
    let infos = store.batch_infos(t, 0, i64::MAX, 10).expect("infos");
    assert_eq!(
        infos
            .iter()
            .map(|i| (i.base_offset, i.last_offset, i.max_timestamp, i.size))
            .collect::<Vec<_>>(),
        vec![(0, 1, 10, 70), (2, 3, 20, 70), (4, 5, 30, 70)]
    );
    assert_eq!(
        store.batch_infos(t, 3, i64::MAX, 1).expect("infos")[0].base_offset,
        2
    );
    assert_eq!(
        store.batch_infos(t, 0, 4, 10).expect("infos").len(),
        2,
        "end offset bounds it"
    );
    let mut state = state_of(store, t);
    state.log_start_offset = 3;
    state.size_bytes -= 70;
    store.delete_head(t, 2, state).expect("delete head");
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, usize::MAX).expect("read")),
        vec![2, 4]
    );
    assert_eq!(state_of(store, t).log_start_offset, 3);
    assert_eq!(state_of(store, t).size_bytes, 140);
    // The index no longer names the removed batch.
    assert_eq!(
        store.lookup_timestamp(t, 0).expect("lookup"),
        Some(TimeIndexEntry {
            timestamp: 20,
            base_offset: 2
        })
    );
    // A follower emptying its log and starting again below the old start: the batches the
    // deletion removed never come back.
    let truncated = store
        .truncate(t, i64::MIN, state_of(store, t), &[])
        .expect("truncate");
    assert_eq!(truncated.log_end_offset, 2);
    store
        .write_state(t, PartitionState::empty(0))
        .expect("start again at 0");
    assert!(store
        .read(t, 0, i64::MAX, usize::MAX)
        .expect("read")
        .is_empty());
    append(store, t, &[(1, 40, 9)]);
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, usize::MAX).expect("read")),
        vec![0]
    );
    assert_eq!(
        store.batch_infos(t, 0, i64::MAX, 10).expect("infos").len(),
        1
    );
}

/// `remove_below` is a promise of its own, beside the new start: a batch starting below it
/// is gone even when it reaches the start.
fn head_deletion_removes_every_batch_starting_below<S: LogStore>(store: &S) {
    let t = tp(14, 0);
    store.create_partition(t).expect("create");
    append(store, t, &[(2, 10, 9), (2, 20, 9), (2, 30, 9), (2, 40, 9)]); // offsets 0-7
                                                                         // Compaction rewrites the batch at 4.
    let mut state = state_of(store, t);
    let rewritten = fake_batch(4, 2, 30, 3);
    state.size_bytes -= 70 - 64;
    store
        .replace_batches(t, &[4], std::slice::from_ref(&rewritten), &[], state)
        .expect("compact");
    let mut state = state_of(store, t);
    state.log_start_offset = 3;
    state.size_bytes -= 140;
    store.delete_head(t, 4, state).expect("delete head");
    let read = store.read(t, 0, i64::MAX, usize::MAX).expect("read");
    assert_eq!(offsets(&read), vec![4, 6]);
    assert_eq!(read[0], rewritten.data);
    assert_eq!(
        store
            .batch_infos(t, 0, i64::MAX, 10)
            .expect("infos")
            .iter()
            .map(|b| b.base_offset)
            .collect::<Vec<_>>(),
        vec![4, 6]
    );
}

fn replacement_is_atomic_and_keeps_offsets<S: LogStore>(store: &S) {
    let t = tp(11, 0);
    store.create_partition(t).expect("create");
    append(store, t, &[(3, 1, 0), (3, 2, 0), (3, 3, 0)]); // offsets 0-2, 3-5, 6-8
    let mut state = state_of(store, t);
    // Batch 3-5 shrinks to one record at offset 5 (a compacted batch); batch 0-2 goes.
    let mut shrunk = fake_batch(5, 1, 2, 0);
    shrunk.base_offset = 5;
    state.size_bytes = 61 + 61;
    store
        .replace_batches(t, &[0, 3], &[shrunk], &[], state)
        .expect("replace");
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, usize::MAX).expect("read")),
        vec![5, 6]
    );
    assert_eq!(
        offsets(&store.read(t, 4, i64::MAX, usize::MAX).expect("read")),
        vec![5, 6]
    );
    assert_eq!(
        state_of(store, t).log_end_offset,
        9,
        "the end offset does not move"
    );
}

fn create_is_idempotent<S: LogStore>(store: &S) {
    let t = tp(1, 0);
    assert_eq!(
        store.create_partition(t).expect("create"),
        PartitionState::empty(0)
    );
    append(store, t, &[(3, 10, 5)]);
    let again = store.create_partition(t).expect("create again");
    assert_eq!(
        again.log_end_offset, 3,
        "re-creating must not reset a partition"
    );
    assert_eq!(store.partitions().expect("partitions").len(), 1);
}

fn append_then_read_back<S: LogStore>(store: &S) {
    let t = tp(2, 0);
    store.create_partition(t).expect("create");
    let written = append(store, t, &[(1, 5, 10), (4, 6, 10), (2, 7, 10)]);
    let read = store.read(t, 0, i64::MAX, usize::MAX).expect("read");
    assert_eq!(
        read,
        written.iter().map(|b| b.data.clone()).collect::<Vec<_>>()
    );
    let (_, state) = store
        .partitions()
        .expect("partitions")
        .into_iter()
        .find(|(p, _)| *p == t)
        .expect("state");
    assert_eq!(state.log_end_offset, 7);
    assert_eq!(state.log_start_offset, 0);
    assert_eq!(state.max_timestamp, 7);
    assert_eq!(state.size_bytes, 3 * 71);
    // read_into appends exactly what read returns, in one buffer.
    for (from, max) in [(0, usize::MAX), (1, 80), (6, 1)] {
        let batches = store.read(t, from, i64::MAX, max).expect("read");
        let mut buf = bytes::BytesMut::new();
        let n = store
            .read_into(t, from, i64::MAX, max, &mut buf)
            .expect("read_into");
        assert_eq!(n, batches.len());
        assert_eq!(buf.freeze(), batches.concat());
    }
    assert!(store
        .read(t, 7, i64::MAX, usize::MAX)
        .expect("read at end")
        .is_empty());
    assert!(store
        .read(t, 100, i64::MAX, usize::MAX)
        .expect("read past end")
        .is_empty());
}

fn read_starts_inside_a_batch<S: LogStore>(store: &S) {
    let t = tp(3, 0);
    store.create_partition(t).expect("create");
    append(store, t, &[(5, 1, 0), (5, 2, 0), (5, 3, 0)]);
    assert_eq!(
        offsets(&store.read(t, 7, i64::MAX, usize::MAX).expect("read")),
        vec![5, 10]
    );
    assert_eq!(
        offsets(&store.read(t, 10, i64::MAX, usize::MAX).expect("read")),
        vec![10]
    );
    assert_eq!(
        offsets(&store.read(t, 14, i64::MAX, usize::MAX).expect("read")),
        vec![10]
    );
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, usize::MAX).expect("read")),
        vec![0, 5, 10]
    );
}

fn read_honours_end_offset_and_max_bytes<S: LogStore>(store: &S) {
    let t = tp(4, 0);
    store.create_partition(t).expect("create");
    append(store, t, &[(2, 1, 100), (2, 2, 100), (2, 3, 100)]); // 161 bytes each
                                                                // Batches starting at or after end_offset are not returned.
    assert_eq!(
        offsets(&store.read(t, 0, 4, usize::MAX).expect("read")),
        vec![0, 2]
    );
    assert!(store.read(t, 4, 4, usize::MAX).expect("read").is_empty());
    // The first batch comes back even when larger than max_bytes; later ones only if they fit.
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, 1).expect("read")),
        vec![0]
    );
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, 322).expect("read")),
        vec![0, 2]
    );
    assert_eq!(
        offsets(&store.read(t, 0, i64::MAX, 400).expect("read")),
        vec![0, 2]
    );
}

fn partitions_are_isolated<S: LogStore>(store: &S) {
    let (a0, a1, b0) = (tp(5, 0), tp(5, 1), tp(6, 0));
    for t in [a0, a1, b0] {
        store.create_partition(t).expect("create");
    }
    append(store, a0, &[(1, 1, 1)]);
    append(store, b0, &[(1, 1, 2), (1, 2, 2)]);
    // a1 is empty: no read may spill over from a neighbour, before or after it.
    assert!(store
        .read(a1, 0, i64::MAX, usize::MAX)
        .expect("read")
        .is_empty());
    assert!(store
        .read(a1, 5, i64::MAX, usize::MAX)
        .expect("read")
        .is_empty());
    assert_eq!(store.lookup_timestamp(a1, 0).expect("lookup"), None);
    assert_eq!(store.last_time_index_entry(a1).expect("last"), None);
    assert_eq!(
        store.read(b0, 0, i64::MAX, usize::MAX).expect("read").len(),
        2
    );
    assert_eq!(
        store.read(a0, 0, i64::MAX, usize::MAX).expect("read").len(),
        1
    );
}

fn time_index_is_monotonic<S: LogStore>(store: &S) {
    let t = tp(7, 0);
    store.create_partition(t).expect("create");
    // max timestamps 100, 90 (not indexed: older), 150, 150 (not indexed), 200
    append(store, t, &[(2, 100, 0), (2, 90, 0), (2, 150, 0)]);
    append(store, t, &[(2, 150, 0), (2, 200, 0)]);
    let at = |ts| store.lookup_timestamp(t, ts).expect("lookup");
    assert_eq!(
        at(-5),
        Some(TimeIndexEntry {
            timestamp: 100,
            base_offset: 0
        })
    );
    assert_eq!(
        at(100),
        Some(TimeIndexEntry {
            timestamp: 100,
            base_offset: 0
        })
    );
    assert_eq!(
        at(101),
        Some(TimeIndexEntry {
            timestamp: 150,
            base_offset: 4
        })
    );
    assert_eq!(
        at(151),
        Some(TimeIndexEntry {
            timestamp: 200,
            base_offset: 8
        })
    );
    assert_eq!(at(201), None);
    assert_eq!(
        store.last_time_index_entry(t).expect("last"),
        Some(TimeIndexEntry {
            timestamp: 200,
            base_offset: 8
        })
    );
}

fn write_batch_rejects_gaps() {
    let mut write = WriteBatch::new(PartitionState::empty(10));
    assert!(
        write.push(fake_batch(11, 1, 0, 0)).is_err(),
        "a gap is refused"
    );
    assert!(
        write.push(fake_batch(9, 1, 0, 0)).is_err(),
        "an overlap is refused"
    );
    write.push(fake_batch(10, 3, 0, 0)).expect("contiguous");
    assert_eq!(write.state().log_end_offset, 13);
    assert!(!write.is_empty());
}

fn delete_partition_removes_only_it<S: LogStore>(store: &S) {
    let (x, y) = (tp(8, 0), tp(8, 1));
    for t in [x, y] {
        store.create_partition(t).expect("create");
        append(store, t, &[(3, 5, 5)]);
    }
    store.delete_partition(x).expect("delete");
    assert!(store
        .read(x, 0, i64::MAX, usize::MAX)
        .expect("read")
        .is_empty());
    assert_eq!(store.lookup_timestamp(x, 0).expect("lookup"), None);
    assert_eq!(store.partitions().expect("partitions").len(), 1);
    assert_eq!(
        store.read(y, 0, i64::MAX, usize::MAX).expect("read").len(),
        1
    );
    // A re-created partition starts empty.
    assert_eq!(
        store.create_partition(x).expect("create"),
        PartitionState::empty(0)
    );
}

/// Writes, drops the store, opens it again with `open`, and checks that everything is back.
pub fn survives_reopen<S: LogStore, F: FnMut() -> S>(mut open: F) {
    let t = tp(9, 3);
    let written = {
        let store = open();
        store.create_partition(t).expect("create");
        let mut w = append(&store, t, &[(2, 10, 3), (3, 20, 3)]);
        let mut write = WriteBatch::new(state_of(&store, t));
        write.set_producer_state(42, vec![42]);
        write.set_epoch_start(3, 5);
        write.set_high_watermark(5);
        store.append(t, write).expect("producer state only");
        w.extend(append(&store, t, &[(1, 30, 3)]));
        w
    };
    let store = open();
    let parts = store.partitions().expect("partitions");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0, t);
    assert_eq!(parts[0].1.log_end_offset, 6);
    assert_eq!(parts[0].1.max_timestamp, 30);
    assert_eq!(parts[0].1.high_watermark, 5);
    assert_eq!(
        store.leader_epochs(t).expect("epochs"),
        vec![EpochEntry {
            epoch: 3,
            start_offset: 5
        }]
    );
    let read = store.read(t, 0, i64::MAX, usize::MAX).expect("read");
    assert_eq!(
        read,
        written.iter().map(|b| b.data.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        store.lookup_timestamp(t, 15).expect("lookup"),
        Some(TimeIndexEntry {
            timestamp: 20,
            base_offset: 2
        })
    );
}
