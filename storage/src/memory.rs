//! The in-memory engine: the same contract over ordered maps, for tests of the layers above.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parking_lot::{RwLock, RwLockWriteGuard};

use crate::{
    keys, AbortedTxn, BatchInfo, EpochEntry, LogStore, PartitionState, StorageError, StoredBatch,
    TimeIndexEntry, TopicPartition, WriteBatch,
};

#[derive(Default)]
struct Inner {
    log: BTreeMap<(TopicPartition, i64), Bytes>,
    index: BTreeMap<(TopicPartition, i64), i64>,
    state: HashMap<TopicPartition, PartitionState>,
    producers: BTreeMap<(TopicPartition, i64), Vec<u8>>,
    epochs: BTreeMap<(TopicPartition, i32), i64>,
    aborted: BTreeMap<(TopicPartition, i64), AbortedTxn>,
    /// Set by [`LogStore::close`]: writes are refused.
    closed: bool,
}

impl Inner {
    /// The batches of `tp` from the one holding `offset` up to (not including) any starting
    /// at `end_offset`: (base offset, last offset, bytes).
    fn batches(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
    ) -> impl Iterator<Item = Result<(i64, i64, &Bytes), StorageError>> {
        let start = self
            .log
            .range((tp, i64::MIN)..=(tp, offset))
            .next_back()
            .map_or(i64::MIN, |((_, base), _)| *base);
        let range = if offset < end_offset {
            Some(self.log.range((tp, start)..(tp, end_offset)))
        } else {
            None
        };
        range
            .into_iter()
            .flatten()
            .filter_map(
                move |((_, base), data)| match keys::last_offset_delta(data) {
                    None => Some(Err(StorageError::Corrupt {
                        what: format!("batch at offset {base} is truncated"),
                    })),
                    Some(delta) if base + delta >= offset => Some(Ok((*base, base + delta, data))),
                    Some(_) => None,
                },
            )
    }
}

/// Holds everything in memory; nothing survives a drop.
#[derive(Default)]
pub struct MemoryLogStore {
    inner: RwLock<Inner>,
}

impl MemoryLogStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The maps, to change them; refused once the store is closed.
    fn writable(&self) -> Result<RwLockWriteGuard<'_, Inner>, StorageError> {
        let inner = self.inner.write();
        if inner.closed {
            return Err(StorageError::Closed);
        }
        Ok(inner)
    }
}

impl LogStore for MemoryLogStore {
    fn create_partition(&self, tp: TopicPartition) -> Result<PartitionState, StorageError> {
        if let Some(state) = self.inner.read().state.get(&tp) {
            return Ok(*state);
        }
        let mut inner = self.writable()?;
        Ok(*inner
            .state
            .entry(tp)
            .or_insert_with(|| PartitionState::empty(0)))
    }

    fn append(&self, tp: TopicPartition, write: WriteBatch) -> Result<(), StorageError> {
        let mut inner = self.writable()?;
        for b in write.batches {
            inner.log.insert((tp, b.base_offset), b.data);
        }
        for e in write.index {
            inner.index.insert((tp, e.timestamp), e.base_offset);
        }
        inner.state.insert(tp, write.state);
        for (pid, bytes) in write.producers {
            inner.producers.insert((tp, pid), bytes);
        }
        for e in write.epochs {
            inner.epochs.insert((tp, e.epoch), e.start_offset);
        }
        for a in write.aborted {
            inner.aborted.insert((tp, a.last_offset), a);
        }
        Ok(())
    }

    fn producer_states(&self, tp: TopicPartition) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        let inner = self.inner.read();
        Ok(inner
            .producers
            .range((tp, i64::MIN)..=(tp, i64::MAX))
            .map(|((_, pid), b)| (*pid, b.clone()))
            .collect())
    }

    fn read(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StorageError> {
        let inner = self.inner.read();
        let mut out = Vec::new();
        let mut total = 0usize;
        for batch in inner.batches(tp, offset, end_offset) {
            let (_, _, data) = batch?;
            if !out.is_empty() && total + data.len() > max_bytes {
                break;
            }
            total += data.len();
            out.push(data.clone());
            if total >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn lookup_timestamp(
        &self,
        tp: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<TimeIndexEntry>, StorageError> {
        let inner = self.inner.read();
        Ok(inner
            .index
            .range((tp, timestamp)..=(tp, i64::MAX))
            .next()
            .map(|((_, ts), off)| TimeIndexEntry {
                timestamp: *ts,
                base_offset: *off,
            }))
    }

    fn last_time_index_entry(
        &self,
        tp: TopicPartition,
    ) -> Result<Option<TimeIndexEntry>, StorageError> {
        let inner = self.inner.read();
        Ok(inner
            .index
            .range((tp, i64::MIN)..=(tp, i64::MAX))
            .next_back()
            .map(|((_, ts), off)| TimeIndexEntry {
                timestamp: *ts,
                base_offset: *off,
            }))
    }

    fn partitions(&self) -> Result<Vec<(TopicPartition, PartitionState)>, StorageError> {
        let inner = self.inner.read();
        let mut out: Vec<_> = inner.state.iter().map(|(k, v)| (*k, *v)).collect();
        out.sort_by_key(|(tp, _)| *tp);
        Ok(out)
    }

    fn delete_partition(&self, tp: TopicPartition) -> Result<(), StorageError> {
        let mut inner = self.writable()?;
        inner.log.retain(|(t, _), _| *t != tp);
        inner.index.retain(|(t, _), _| *t != tp);
        inner.state.remove(&tp);
        inner.producers.retain(|(t, _), _| *t != tp);
        inner.epochs.retain(|(t, _), _| *t != tp);
        inner.aborted.retain(|(t, _), _| *t != tp);
        Ok(())
    }
    fn batch_infos(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, StorageError> {
        let inner = self.inner.read();
        inner
            .batches(tp, offset, end_offset)
            .take(limit)
            .map(|b| {
                b.map(|(base, last, data)| BatchInfo {
                    base_offset: base,
                    last_offset: last,
                    max_timestamp: keys::max_timestamp(data).unwrap_or(-1),
                    size: data.len() as u64,
                })
            })
            .collect()
    }

    fn delete_head(
        &self,
        tp: TopicPartition,
        remove_below: i64,
        state: PartitionState,
    ) -> Result<(), StorageError> {
        let mut inner = self.writable()?;
        inner
            .log
            .retain(|(t, base), _| *t != tp || *base >= remove_below);
        inner
            .index
            .retain(|(t, _), base| *t != tp || *base >= remove_below);
        inner
            .aborted
            .retain(|(t, last), _| *t != tp || *last >= remove_below);
        inner.state.insert(tp, state);
        Ok(())
    }

    fn replace_batches(
        &self,
        tp: TopicPartition,
        remove: &[i64],
        insert: &[StoredBatch],
        remove_aborted: &[i64],
        state: PartitionState,
    ) -> Result<(), StorageError> {
        let mut inner = self.writable()?;
        for base in remove {
            inner.log.remove(&(tp, *base));
        }
        for last in remove_aborted {
            inner.aborted.remove(&(tp, *last));
        }
        for b in insert {
            inner.log.insert((tp, b.base_offset), b.data.clone());
        }
        inner.state.insert(tp, state);
        Ok(())
    }

    fn leader_epochs(&self, tp: TopicPartition) -> Result<Vec<EpochEntry>, StorageError> {
        let inner = self.inner.read();
        Ok(inner
            .epochs
            .range((tp, i32::MIN)..=(tp, i32::MAX))
            .map(|((_, epoch), start)| EpochEntry {
                epoch: *epoch,
                start_offset: *start,
            })
            .collect())
    }

    fn aborted_txns(&self, tp: TopicPartition) -> Result<Vec<AbortedTxn>, StorageError> {
        let inner = self.inner.read();
        Ok(inner
            .aborted
            .range((tp, i64::MIN)..=(tp, i64::MAX))
            .map(|(_, a)| *a)
            .collect())
    }

    fn write_state(&self, tp: TopicPartition, state: PartitionState) -> Result<(), StorageError> {
        self.writable()?.state.insert(tp, state);
        Ok(())
    }

    fn truncate(
        &self,
        tp: TopicPartition,
        offset: i64,
        current: PartitionState,
        producers: &[(i64, Vec<u8>)],
    ) -> Result<PartitionState, StorageError> {
        Self::truncate_inner(&mut *self.writable()?, tp, offset, current, producers)
    }

    fn close(&self) -> Result<(), StorageError> {
        self.inner.write().closed = true;
        Ok(())
    }
}

impl MemoryLogStore {
    fn truncate_inner(
        inner: &mut Inner,
        tp: TopicPartition,
        offset: i64,
        current: PartitionState,
        producers: &[(i64, Vec<u8>)],
    ) -> Result<PartitionState, StorageError> {
        let removed: Vec<(i64, u64)> = inner
            .batches(tp, offset, i64::MAX)
            .map(|b| b.map(|(base, _, data)| (base, data.len() as u64)))
            .collect::<Result<_, _>>()?;
        let end = truncated_end(removed.first().map(|(b, _)| *b), offset, current);
        for (base, _) in &removed {
            inner.log.remove(&(tp, *base));
        }
        inner.index.retain(|(t, _), base| *t != tp || *base < end);
        inner
            .epochs
            .retain(|(t, _), start| *t != tp || *start < end);
        inner.aborted.retain(|(t, last), _| *t != tp || *last < end);
        inner.producers.retain(|(t, _), _| *t != tp);
        for (pid, bytes) in producers {
            inner.producers.insert((tp, *pid), bytes.clone());
        }
        let max_timestamp = inner
            .index
            .range((tp, i64::MIN)..=(tp, i64::MAX))
            .next_back()
            .map_or(-1, |((_, ts), _)| *ts);
        let state = truncated_state(
            current,
            end,
            removed.iter().map(|(_, s)| *s).sum(),
            max_timestamp,
        );
        inner.state.insert(tp, state);
        Ok(state)
    }
}

/// Where a truncation at `offset` leaves the log's end: at the first removed batch if that
/// batch holds `offset`, else at `offset` itself (it may lie in a gap compaction left), never
/// above the end. Below the log's start (a follower emptying its log) the end is the first
/// removed batch's base, or the end if nothing visible was removed.
pub(crate) fn truncated_end(
    first_removed: Option<i64>,
    offset: i64,
    current: PartitionState,
) -> i64 {
    match first_removed {
        Some(base) if base <= offset || offset < current.log_start_offset => base,
        None if offset < current.log_start_offset => current.log_end_offset,
        _ => offset,
    }
    .min(current.log_end_offset)
}

/// The state after a truncation that leaves the log ending at `end`.
pub(crate) fn truncated_state(
    current: PartitionState,
    end: i64,
    removed_bytes: u64,
    max_timestamp: i64,
) -> PartitionState {
    PartitionState {
        log_start_offset: current.log_start_offset.min(end),
        log_end_offset: end,
        max_timestamp,
        size_bytes: current.size_bytes.saturating_sub(removed_bytes),
        high_watermark: current.high_watermark.min(end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[test]
    fn conformance_suite() {
        conformance::run(MemoryLogStore::new);
    }
}
