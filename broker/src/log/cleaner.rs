//! Retention and compaction of one partition log, run by the broker's cleaner task.
//!
//! - Retention (`cleanup.policy` has `delete`): whole batches leave the head once their newest
//!   record is older than `retention.ms`, or while the partition is over `retention.bytes`.
//!   It is a move of the log start offset ([`PartitionLog::delete_records_before`]), one
//!   RocksDB range delete.
//! - Compaction (`compact`): every record whose key has a newer record below the high
//!   watermark is dropped; tombstones (null values) go too once older than
//!   `delete.retention.ms`. Only batches whose newest record is older than
//!   `min.compaction.lag.ms` are rewritten, never the newest batch. Offsets are kept (gaps are
//!   fine) and each partition's rewrite is one atomic RocksDB write: a crash leaves the log
//!   before or after, never broken.
//! - Transactions: compaction stops at the last stable offset (an open transaction's outcome
//!   is unknown). Records of aborted transactions are dropped (no reader may see them);
//!   committed transactional records compact like any other; transaction markers are kept
//!   (their keys are not record keys) so the aborted-transaction index stays truthful.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use strom_storage::{PartitionState, StoredBatch};
use tracing::{debug, info};

use super::PartitionLog;
use crate::error::LogError;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub batches_rewritten: usize,
    pub records_removed: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Batches read per step while scanning a log.
const SCAN_CHUNK: usize = 1024;

impl PartitionLog {
    /// Applies `retention.ms` (-1: none) and `retention.bytes` (-1: none) at time `now_ms`.
    /// Returns the new log start offset when it moved.
    pub fn apply_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<Option<i64>, LogError> {
        let state = self.state();
        let hw = self.high_watermark();
        let mut remaining = state.size_bytes;
        let mut new_start = state.log_start_offset;
        let mut from = state.log_start_offset;
        'scan: loop {
            let infos = self.store.batch_infos(self.tp, from, hw, SCAN_CHUNK)?;
            for b in &infos {
                let too_old =
                    retention_ms >= 0 && b.max_timestamp < now_ms.saturating_sub(retention_ms);
                let too_big = retention_bytes >= 0 && remaining > retention_bytes as u64;
                if !(too_old || too_big) {
                    break 'scan;
                }
                remaining = remaining.saturating_sub(b.size);
                new_start = b.last_offset + 1;
            }
            match infos.last() {
                Some(last) if infos.len() == SCAN_CHUNK => from = last.last_offset + 1,
                _ => break,
            }
        }
        if new_start <= state.log_start_offset {
            return Ok(None);
        }
        let start = self.delete_records_before(new_start.min(hw))?;
        info!(tp = %self.tp, log_start_offset = start, "retention moved the log start");
        Ok(Some(start))
    }

    /// One compaction pass (see the module docs).
    pub fn compact(
        &self,
        now_ms: i64,
        min_compaction_lag_ms: i64,
        delete_retention_ms: i64,
    ) -> Result<CompactionStats, LogError> {
        let hw = self.last_stable_offset();
        let start = self.state().log_start_offset;
        let aborted = self.aborted_txns();
        let is_aborted = |r: &kafka_protocol::records::Record| {
            r.transactional
                && !r.control
                && aborted.iter().any(|a| {
                    a.producer_id == r.producer_id
                        && a.first_offset <= r.offset
                        && r.offset <= a.last_offset
                })
        };
        // Pass 1: the newest offset of every key below the last stable offset.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        let mut batches = Vec::new();
        let mut from = start;
        loop {
            let chunk = self.store.read(self.tp, from, hw, 8 << 20)?;
            if chunk.is_empty() {
                break;
            }
            for data in chunk {
                let mut buf = data.clone();
                let set =
                    RecordBatchDecoder::decode(&mut buf).map_err(|e| LogError::CorruptMessage {
                        reason: format!("stored batch does not decode: {e}"),
                    })?;
                for r in &set.records {
                    if r.control || is_aborted(r) {
                        continue;
                    }
                    if let Some(k) = &r.key {
                        latest.insert(k.clone(), r.offset);
                    }
                }
                // The header's span, not the last record: compaction may have emptied a
                // batch's tail, and reading from inside it would return it again.
                let view = super::batch::stored(data.clone())?;
                from = view.base_offset() + view.last_offset_delta as i64 + 1;
                batches.push((data, set));
            }
        }
        debug!(tp = %self.tp, batches = batches.len(), keys = latest.len(), "compaction pass planned");
        // Pass 2: rewrite the old enough batches, never the newest one.
        let mut stats = CompactionStats::default();
        let mut remove = Vec::new();
        let mut insert = Vec::new();
        let lag_horizon = now_ms.saturating_sub(min_compaction_lag_ms);
        let tombstone_horizon = now_ms.saturating_sub(delete_retention_ms);
        let n = batches.len();
        // Per producer: whether the transaction being walked still holds a record after this
        // pass. A marker whose transaction holds none is removed once older than
        // delete.retention.ms (Kafka's cleaner does the same), with its aborted-transaction
        // index entry in the same write.
        let mut txn_has_data: HashMap<i64, bool> = HashMap::new();
        let mut remove_aborted: Vec<i64> = Vec::new();
        for (i, (data, set)) in batches.into_iter().enumerate() {
            let max_ts = set
                .records
                .iter()
                .map(|r| r.timestamp)
                .max()
                .unwrap_or(i64::MIN);
            // Never the newest batch, nor one younger than min.compaction.lag.ms.
            let eligible = i + 1 < n && max_ts <= lag_horizon;
            let (control, transactional, pid) =
                set.records.first().map_or((false, false, -1), |r| {
                    (r.control, r.transactional, r.producer_id)
                });
            if control {
                let had_data = txn_has_data.remove(&pid).unwrap_or(false);
                if !eligible || had_data || max_ts >= tombstone_horizon {
                    continue;
                }
                let view = super::batch::stored(data.clone())?;
                let marker_offset = view.base_offset();
                if view.marker().is_some_and(|m| !m.commit) {
                    remove_aborted.push(marker_offset);
                }
                stats.batches_rewritten += 1;
                stats.records_removed += set.records.len();
                stats.bytes_before += data.len() as u64;
                remove.push(marker_offset);
                continue;
            }
            if !eligible {
                if transactional {
                    txn_has_data.insert(pid, true);
                }
                continue;
            }
            let keep: Vec<_> = set
                .records
                .iter()
                .filter(|r| match &r.key {
                    _ if r.control => true,
                    _ if is_aborted(r) => false,
                    None => true,
                    Some(k) => {
                        latest.get(k) == Some(&r.offset)
                            && !(r.value.is_none() && r.timestamp < tombstone_horizon)
                    }
                })
                .cloned()
                .collect();
            if transactional && !keep.is_empty() {
                txn_has_data.insert(pid, true);
            } else if transactional {
                txn_has_data.entry(pid).or_insert(false);
            }
            if keep.len() == set.records.len() {
                continue;
            }
            let base = i64::from_be_bytes(data[0..8].try_into().map_err(|_| {
                LogError::CorruptMessage {
                    reason: "stored batch shorter than its header".into(),
                }
            })?);
            stats.batches_rewritten += 1;
            stats.records_removed += set.records.len() - keep.len();
            stats.bytes_before += data.len() as u64;
            remove.push(base);
            if keep.is_empty() {
                continue;
            }
            // The encoder groups records whose offset - sequence is constant; give plain
            // (non-idempotent) records sequences that keep one batch.
            let first = keep[0].offset;
            let records: Vec<_> = keep
                .into_iter()
                .map(|mut r| {
                    if r.producer_id < 0 {
                        r.sequence = (r.offset - first) as i32;
                    }
                    r
                })
                .collect();
            let out = strom_client::records::encode(&records, set.compression).map_err(|e| {
                LogError::CorruptMessage {
                    reason: format!("compacted batch does not encode: {e}"),
                }
            })?;
            stats.bytes_after += out.len() as u64;
            for b in split_batches(&out)? {
                insert.push(b);
            }
        }
        if remove.is_empty() {
            return Ok(stats);
        }
        let mut state = self.state.lock();
        self.check_hosted()?;
        if state.log_start_offset != start {
            // A DeleteRecords moved the head while we read: the plan may name removed batches.
            return Ok(CompactionStats::default());
        }
        let next = PartitionState {
            size_bytes: (state.size_bytes + stats.bytes_after).saturating_sub(stats.bytes_before),
            ..*state
        };
        self.store
            .replace_batches(self.tp, &remove, &insert, &remove_aborted, next)?;
        *state = next;
        drop(state);
        if !remove_aborted.is_empty() {
            self.aborted
                .lock()
                .retain(|a| !remove_aborted.contains(&a.last_offset));
        }
        info!(
            tp = %self.tp,
            batches = stats.batches_rewritten,
            records_removed = stats.records_removed,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            "compacted"
        );
        Ok(stats)
    }
}

/// Splits encoder output into stored batches (offsets come from each header).
fn split_batches(bytes: &Bytes) -> Result<Vec<StoredBatch>, LogError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < super::batch::HEADER_LEN {
            return Err(LogError::CorruptMessage {
                reason: "compacted output ends in a partial batch".into(),
            });
        }
        let int = |at: usize, n: usize| -> i64 {
            let mut v = 0i64;
            for b in &rest[at..at + n] {
                v = (v << 8) | *b as i64;
            }
            v
        };
        let base = int(0, 8);
        let size = int(8, 4) as usize + super::batch::LOG_OVERHEAD;
        let last_delta = int(23, 4) as i32 as i64;
        let max_ts = int(35, 8);
        out.push(StoredBatch {
            base_offset: base,
            last_offset: base + last_delta,
            max_timestamp: max_ts,
            data: bytes.slice(pos..pos + size),
        });
        pos += size;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::setup;
    use super::*;
    use strom_client::records::{self, Compression, Record};

    fn keyed(offset_hint: i64, key: &str, value: Option<&str>, ts: i64) -> Record {
        records::record(
            offset_hint as usize,
            Some(Bytes::from(key.to_string())),
            value.map(|v| Bytes::from(v.to_string())),
            ts,
        )
    }

    fn produce(log: &PartitionLog, batch: &[Record], c: Compression) {
        let bytes = records::encode(batch, c).expect("encode");
        let views = super::super::batch::parse_batches(&bytes, 1 << 20).expect("valid");
        log.append(&views).expect("append");
    }

    fn read_all(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let r = log
            .read(log.state().log_start_offset, 1 << 30)
            .expect("read");
        let mut data = r.records;
        RecordBatchDecoder::decode_all(&mut data)
            .expect("decode")
            .into_iter()
            .flat_map(|s| s.records)
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string(),
                    r.value.map(|v| String::from_utf8_lossy(&v).to_string()),
                )
            })
            .collect()
    }

    /// One transactional record of producer `pid` (sequence `seq`).
    fn txn_record(pid: i64, seq: i32, key: &str, value: &str) -> Record {
        let mut r = keyed(0, key, Some(value), 1000);
        records::idempotent(std::slice::from_mut(&mut r), pid, 0, seq);
        r.transactional = true;
        r
    }

    #[test]
    fn compaction_drops_aborted_records_then_markers_whose_transactions_are_empty() {
        let (_, log, _) = setup();
        produce(
            &log,
            &[txn_record(5, 0, "k1", "aborted")],
            Compression::None,
        ); // 0
        log.write_marker(5, 0, false, 0).expect("abort"); // 1
        produce(
            &log,
            &[txn_record(6, 0, "k1", "superseded")],
            Compression::None,
        ); // 2
        log.write_marker(6, 0, true, 0).expect("commit"); // 3
        produce(&log, &[txn_record(7, 0, "k3", "kept")], Compression::None); // 4
        log.write_marker(7, 0, true, 0).expect("commit"); // 5
        produce(
            &log,
            &[keyed(0, "k1", Some("latest"), 1000)],
            Compression::None,
        ); // 6
        produce(
            &log,
            &[keyed(0, "k2", Some("newest"), 1000)],
            Compression::None,
        ); // 7
        assert_eq!(log.aborted_txns().len(), 1);
        let later = crate::log::now_ms() + 3_600_000;

        // Markers younger than delete.retention.ms stay, though their data goes.
        log.compact(later, 0, 7_200_000).expect("compact");
        let offsets: Vec<i64> = read_all(&log).iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            vec![1, 3, 4, 5, 6, 7],
            "aborted and superseded records are gone, the markers (1, 3, 5) stay"
        );
        let markers = log.read(0, 1 << 20).expect("read").records;
        let views = super::super::batch::parse_internal(&markers).expect("batches");
        assert_eq!(views.iter().filter(|v| v.is_control()).count(), 3);
        assert_eq!(log.aborted_txns().len(), 1);

        // Once old enough, markers of emptied transactions go (with the abort's index
        // entry); the marker of a transaction that still holds a record stays.
        log.compact(later, 0, 0).expect("compact");
        let stored = log.read(0, 1 << 20).expect("read").records;
        let views = super::super::batch::parse_internal(&stored).expect("batches");
        let kinds: Vec<(i64, bool)> = views
            .iter()
            .map(|v| (v.base_offset(), v.is_control()))
            .collect();
        assert_eq!(kinds, vec![(4, false), (5, true), (6, false), (7, false)]);
        assert!(log.aborted_txns().is_empty());
        assert!(log.aborted_between(0, 100).is_empty());
        assert_eq!(log.last_stable_offset(), 8);
    }

    #[test]
    fn compaction_keeps_the_latest_per_key_and_expires_tombstones() {
        let (_, log, _) = setup();
        produce(
            &log,
            &[
                keyed(0, "a", Some("a1"), 100),
                keyed(1, "b", Some("b1"), 100),
                keyed(2, "c", Some("c1"), 100),
            ],
            Compression::Lz4,
        );
        produce(
            &log,
            &[keyed(0, "a", Some("a2"), 200), keyed(1, "b", None, 200)],
            Compression::None,
        );
        produce(&log, &[keyed(0, "d", Some("d1"), 300)], Compression::None); // newest batch: untouched
        let before = log.state().size_bytes;
        // Tombstones younger than delete.retention.ms stay.
        let stats = log.compact(1_000, 0, 10_000).expect("compact");
        assert_eq!(stats.records_removed, 2);
        assert_eq!(
            read_all(&log),
            vec![
                (2, "c".into(), Some("c1".into())),
                (3, "a".into(), Some("a2".into())),
                (4, "b".into(), None),
                (5, "d".into(), Some("d1".into())),
            ]
        );
        assert!(log.state().size_bytes < before);
        assert_eq!(log.state().log_end_offset, 6, "offsets are kept");
        // Later, the tombstone is older than delete.retention.ms and goes too.
        log.compact(20_000, 0, 10_000).expect("compact");
        assert_eq!(
            read_all(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![2, 3, 5]
        );
        // Reading from inside a gap starts at the next record.
        let r = log
            .read(0, 1 << 20)
            .expect("read from a compacted-away offset");
        assert!(!r.records.is_empty());
    }

    #[test]
    fn min_compaction_lag_protects_young_batches() {
        let (_, log, _) = setup();
        produce(&log, &[keyed(0, "a", Some("a1"), 1_000)], Compression::None);
        produce(&log, &[keyed(0, "a", Some("a2"), 1_000)], Compression::None);
        produce(&log, &[keyed(0, "z", Some("z"), 1_000)], Compression::None);
        let stats = log.compact(1_500, 1_000, 0).expect("compact");
        assert_eq!(
            stats.records_removed, 0,
            "younger than min.compaction.lag.ms"
        );
        let stats = log.compact(5_000, 1_000, 0).expect("compact");
        assert_eq!(stats.records_removed, 1);
    }

    #[test]
    fn retention_by_time_and_size_moves_the_start() {
        let (_, log, _) = setup();
        for ts in [1_000, 2_000, 3_000, 4_000] {
            produce(
                &log,
                &[keyed(0, "k", Some("v"), ts), keyed(1, "k", Some("v"), ts)],
                Compression::None,
            );
        }
        assert_eq!(
            log.apply_retention(2_500, 1_000, -1).expect("retention"),
            Some(2)
        );
        assert_eq!(log.state().log_start_offset, 2);
        assert!(matches!(
            log.read(0, 100),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        let one_batch = log.state().size_bytes / 3;
        assert_eq!(
            log.apply_retention(2_500, -1, (one_batch + 1) as i64)
                .expect("retention"),
            Some(6)
        );
        assert_eq!(log.state().size_bytes, one_batch);
        assert_eq!(log.apply_retention(2_500, -1, -1).expect("retention"), None);
        assert_eq!(log.delete_records_before(7).expect("delete records"), 7);
        assert!(!log.read(7, 1 << 20).expect("read").records.is_empty());
        assert!(
            log.delete_records_before(99).is_err(),
            "past the high watermark"
        );
    }
}
