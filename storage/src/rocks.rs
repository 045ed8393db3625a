//! The RocksDB engine: one database per broker, a column family per kind of data.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options,
    ReadOptions, WriteOptions, DB,
};

use crate::keys::{self, PARTITION_PREFIX_LEN};
use crate::{
    AbortedTxn, BatchInfo, EpochEntry, LogStore, PartitionState, StorageError, StoredBatch,
    TimeIndexEntry, TopicPartition, WriteBatch,
};

const CF_LOG: &str = "log";
const CF_TIMEINDEX: &str = "timeindex";
const CF_STATE: &str = "state";
const CF_PRODUCERS: &str = "producers";
const CF_EPOCHS: &str = "epochs";
const CF_TXNINDEX: &str = "txnindex";

/// Tuning knobs for the RocksDB engine.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Block cache shared by all column families, in bytes.
    pub block_cache_bytes: usize,
    /// Size of one memtable of the `log` column family, in bytes.
    pub write_buffer_bytes: usize,
    /// fsync the WAL on every append. Off by default: like Kafka, Strom acknowledges once the
    /// data is in the OS (surviving a process crash) and relies on replication for machine loss.
    pub sync_writes: bool,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
            sync_writes: false,
        }
    }
}

pub struct RocksLogStore {
    db: Arc<DB>,
    sync_writes: bool,
}

fn engine(e: rocksdb::Error) -> StorageError {
    StorageError::Engine {
        message: e.into_string(),
    }
}

impl RocksLogStore {
    /// Opens (creating if needed) the store under `path`.
    pub fn open(path: &Path, options: &RocksOptions) -> Result<Self, StorageError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_bytes_per_sync(1 << 20);

        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);

        let mut log_opts = Options::default();
        log_opts.set_block_based_table_factory(&table);
        log_opts.set_write_buffer_size(options.write_buffer_bytes);
        // Batches are already compressed by producers as they chose; recompressing costs CPU.
        log_opts.set_compression_type(rocksdb::DBCompressionType::None);
        log_opts.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(
            PARTITION_PREFIX_LEN,
        ));

        let mut small_opts = Options::default();
        small_opts.set_block_based_table_factory(&table);

        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_LOG, log_opts),
            ColumnFamilyDescriptor::new(CF_TIMEINDEX, small_opts.clone()),
            ColumnFamilyDescriptor::new(CF_STATE, small_opts.clone()),
            ColumnFamilyDescriptor::new(CF_PRODUCERS, small_opts.clone()),
            ColumnFamilyDescriptor::new(CF_EPOCHS, small_opts.clone()),
            ColumnFamilyDescriptor::new(CF_TXNINDEX, small_opts),
        ];
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(engine)?;
        Ok(Self {
            db: Arc::new(db),
            sync_writes: options.sync_writes,
        })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StorageError::Corrupt {
                what: format!("column family {name} is missing"),
            })
    }

    fn write_options(&self) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(self.sync_writes);
        w
    }

    fn partition_bounds(tp: TopicPartition) -> ([u8; keys::KEY_LEN], [u8; keys::KEY_LEN]) {
        (keys::key(tp, 0), keys::key(tp, u64::MAX))
    }
}

/// RocksDB properties served as metrics, read on the partition log column family.
const ENGINE_PROPERTIES: [&str; 14] = [
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.num-immutable-mem-table",
    "rocksdb.mem-table-flush-pending",
    "rocksdb.num-running-flushes",
    "rocksdb.compaction-pending",
    "rocksdb.num-running-compactions",
    "rocksdb.estimate-pending-compaction-bytes",
    "rocksdb.is-write-stopped",
    "rocksdb.actual-delayed-write-rate",
    "rocksdb.background-errors",
    "rocksdb.total-sst-files-size",
    "rocksdb.live-sst-files-size",
    "rocksdb.block-cache-usage",
    "rocksdb.block-cache-capacity",
];

impl LogStore for RocksLogStore {
    fn engine_stats(&self) -> Vec<(&'static str, u64)> {
        let Ok(cf) = self.cf(CF_LOG) else {
            return Vec::new();
        };
        ENGINE_PROPERTIES
            .iter()
            .filter_map(|&name| {
                let v = self.db.property_int_value_cf(cf, name).ok().flatten()?;
                Some((name, v))
            })
            .collect()
    }

    fn create_partition(&self, tp: TopicPartition) -> Result<PartitionState, StorageError> {
        let cf = self.cf(CF_STATE)?;
        let key = keys::partition_prefix(tp);
        if let Some(existing) = self.db.get_pinned_cf(cf, key).map_err(engine)? {
            return PartitionState::decode(&existing);
        }
        let state = PartitionState::empty(0);
        self.db
            .put_cf_opt(cf, key, state.encode(), &self.write_options())
            .map_err(engine)?;
        Ok(state)
    }

    fn append(&self, tp: TopicPartition, write: WriteBatch) -> Result<(), StorageError> {
        let log = self.cf(CF_LOG)?;
        let index = self.cf(CF_TIMEINDEX)?;
        let state = self.cf(CF_STATE)?;
        let mut batch = rocksdb::WriteBatch::default();
        for b in &write.batches {
            batch.put_cf(log, keys::offset_key(tp, b.base_offset), &b.data);
        }
        for e in &write.index {
            batch.put_cf(
                index,
                keys::timestamp_key(tp, e.timestamp),
                e.base_offset.to_be_bytes(),
            );
        }
        batch.put_cf(state, keys::partition_prefix(tp), write.state.encode());
        if !write.producers.is_empty() {
            let producers = self.cf(CF_PRODUCERS)?;
            for (pid, bytes) in &write.producers {
                batch.put_cf(producers, keys::key(tp, *pid as u64), bytes);
            }
        }
        if !write.epochs.is_empty() {
            let epochs = self.cf(CF_EPOCHS)?;
            for e in &write.epochs {
                batch.put_cf(
                    epochs,
                    keys::key(tp, e.epoch.max(0) as u64),
                    e.start_offset.to_be_bytes(),
                );
            }
        }
        if !write.aborted.is_empty() {
            let txns = self.cf(CF_TXNINDEX)?;
            for a in &write.aborted {
                batch.put_cf(txns, keys::offset_key(tp, a.last_offset), a.encode_value());
            }
        }
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(engine)
    }

    fn read(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StorageError> {
        let mut out = Vec::new();
        self.scan(tp, offset, end_offset, max_bytes, |v| {
            out.push(Bytes::copy_from_slice(v))
        })?;
        Ok(out)
    }

    fn read_into(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
        out: &mut bytes::BytesMut,
    ) -> Result<usize, StorageError> {
        self.scan(tp, offset, end_offset, max_bytes, |v| {
            out.extend_from_slice(v)
        })
    }

    fn lookup_timestamp(
        &self,
        tp: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<TimeIndexEntry>, StorageError> {
        let cf = self.cf(CF_TIMEINDEX)?;
        let (_, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, opts);
        it.seek(keys::timestamp_key(tp, timestamp));
        read_index_entry(&it)
    }

    fn last_time_index_entry(
        &self,
        tp: TopicPartition,
    ) -> Result<Option<TimeIndexEntry>, StorageError> {
        let cf = self.cf(CF_TIMEINDEX)?;
        let (lower, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(lower.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, opts);
        it.seek_for_prev(upper);
        read_index_entry(&it)
    }

    fn producer_states(&self, tp: TopicPartition) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        self.keyed(CF_PRODUCERS, tp, "producer", |id, value| {
            Ok((id as i64, value.to_vec()))
        })
    }

    fn partitions(&self) -> Result<Vec<(TopicPartition, PartitionState)>, StorageError> {
        let cf = self.cf(CF_STATE)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&[], Direction::Forward))
        {
            let (key, value) = item.map_err(engine)?;
            let tp = keys::decode_partition(&key).ok_or_else(|| StorageError::Corrupt {
                what: "state key of unexpected length".into(),
            })?;
            out.push((tp, PartitionState::decode(&value)?));
        }
        Ok(out)
    }

    fn delete_partition(&self, tp: TopicPartition) -> Result<(), StorageError> {
        let (lower, upper) = Self::partition_bounds(tp);
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_range_cf(self.cf(CF_LOG)?, lower, upper);
        batch.delete_cf(self.cf(CF_LOG)?, upper);
        batch.delete_range_cf(self.cf(CF_TIMEINDEX)?, lower, upper);
        batch.delete_cf(self.cf(CF_TIMEINDEX)?, upper);
        batch.delete_cf(self.cf(CF_STATE)?, keys::partition_prefix(tp));
        batch.delete_range_cf(self.cf(CF_PRODUCERS)?, lower, upper);
        batch.delete_cf(self.cf(CF_PRODUCERS)?, upper);
        batch.delete_range_cf(self.cf(CF_EPOCHS)?, lower, upper);
        batch.delete_cf(self.cf(CF_EPOCHS)?, upper);
        batch.delete_range_cf(self.cf(CF_TXNINDEX)?, lower, upper);
        batch.delete_cf(self.cf(CF_TXNINDEX)?, upper);
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(engine)
    }
    fn batch_infos(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        limit: usize,
    ) -> Result<Vec<BatchInfo>, StorageError> {
        let cf = self.cf(CF_LOG)?;
        let mut out = Vec::new();
        if offset >= end_offset || limit == 0 {
            return Ok(out);
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(keys::key(tp, 0).to_vec());
        opts.set_iterate_upper_bound(keys::offset_key(tp, end_offset).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, opts);
        it.seek_for_prev(keys::offset_key(tp, offset));
        if !it.valid() {
            it.seek_to_first();
        }
        while it.valid() && out.len() < limit {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            let info = batch_info(key, value)?;
            if info.last_offset >= offset {
                out.push(info);
            }
            it.next();
        }
        it.status().map_err(engine)?;
        Ok(out)
    }

    fn delete_head(
        &self,
        tp: TopicPartition,
        remove_below: i64,
        state: PartitionState,
    ) -> Result<(), StorageError> {
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_LOG)?,
            keys::key(tp, 0),
            keys::offset_key(tp, remove_below),
        );
        // Aborted transactions are keyed by their marker: those below go with the batches.
        batch.delete_range_cf(
            self.cf(CF_TXNINDEX)?,
            keys::key(tp, 0),
            keys::offset_key(tp, remove_below),
        );
        // Time index entries naming removed batches are a prefix of the index (both grow).
        let index = self.cf(CF_TIMEINDEX)?;
        let (lower, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(index, opts);
        it.seek(lower);
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            let base: [u8; 8] = value.try_into().map_err(|_| StorageError::Corrupt {
                what: "time index value of unexpected length".into(),
            })?;
            if i64::from_be_bytes(base) >= remove_below {
                break;
            }
            batch.delete_cf(index, key);
            it.next();
        }
        it.status().map_err(engine)?;
        batch.put_cf(
            self.cf(CF_STATE)?,
            keys::partition_prefix(tp),
            state.encode(),
        );
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(engine)
    }

    fn replace_batches(
        &self,
        tp: TopicPartition,
        remove: &[i64],
        insert: &[StoredBatch],
        remove_aborted: &[i64],
        state: PartitionState,
    ) -> Result<(), StorageError> {
        let log = self.cf(CF_LOG)?;
        let mut batch = rocksdb::WriteBatch::default();
        for base in remove {
            batch.delete_cf(log, keys::offset_key(tp, *base));
        }
        if !remove_aborted.is_empty() {
            let txns = self.cf(CF_TXNINDEX)?;
            for last in remove_aborted {
                batch.delete_cf(txns, keys::offset_key(tp, *last));
            }
        }
        for b in insert {
            batch.put_cf(log, keys::offset_key(tp, b.base_offset), &b.data);
        }
        batch.put_cf(
            self.cf(CF_STATE)?,
            keys::partition_prefix(tp),
            state.encode(),
        );
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(engine)
    }

    fn leader_epochs(&self, tp: TopicPartition) -> Result<Vec<EpochEntry>, StorageError> {
        self.keyed(CF_EPOCHS, tp, "epoch", |epoch, value| {
            let start: [u8; 8] = value.try_into().map_err(|_| StorageError::Corrupt {
                what: "epoch value of unexpected length".into(),
            })?;
            Ok(EpochEntry {
                epoch: epoch as i32,
                start_offset: i64::from_be_bytes(start),
            })
        })
    }

    fn aborted_txns(&self, tp: TopicPartition) -> Result<Vec<AbortedTxn>, StorageError> {
        self.keyed(CF_TXNINDEX, tp, "aborted transaction", |last, value| {
            AbortedTxn::decode_value(last as i64, value)
        })
    }

    fn write_state(&self, tp: TopicPartition, state: PartitionState) -> Result<(), StorageError> {
        self.db
            .put_cf_opt(
                self.cf(CF_STATE)?,
                keys::partition_prefix(tp),
                state.encode(),
                &self.write_options(),
            )
            .map_err(engine)
    }

    fn truncate(
        &self,
        tp: TopicPartition,
        offset: i64,
        current: PartitionState,
        producers: &[(i64, Vec<u8>)],
    ) -> Result<PartitionState, StorageError> {
        let log = self.cf(CF_LOG)?;
        let (lower, upper) = Self::partition_bounds(tp);
        let mut batch = rocksdb::WriteBatch::default();
        // Batches to remove: the one holding `offset` (if it reaches it) and all after it.
        let removed = self.batch_infos(tp, offset, i64::MAX, usize::MAX)?;
        for b in &removed {
            batch.delete_cf(log, keys::offset_key(tp, b.base_offset));
        }
        let first_removed = removed.first().map(|b| b.base_offset);
        let removed_bytes: u64 = removed.iter().map(|b| b.size).sum();
        let end = first_removed
            .unwrap_or(current.log_end_offset)
            .min(current.log_end_offset);
        // Time index entries naming removed batches are a suffix of the index; the newest
        // entry left gives the max timestamp.
        let index = self.cf(CF_TIMEINDEX)?;
        let mut max_timestamp = -1;
        {
            let mut opts = ReadOptions::default();
            opts.set_iterate_lower_bound(lower.to_vec());
            let mut it = self.db.raw_iterator_cf_opt(index, opts);
            it.seek_for_prev(upper);
            while let Some(entry) = read_index_entry(&it)? {
                if entry.base_offset < end {
                    max_timestamp = entry.timestamp;
                    break;
                }
                batch.delete_cf(index, keys::timestamp_key(tp, entry.timestamp));
                it.prev();
            }
        }
        let epochs = self.cf(CF_EPOCHS)?;
        for e in self.leader_epochs(tp)? {
            if e.start_offset >= end {
                batch.delete_cf(epochs, keys::key(tp, e.epoch.max(0) as u64));
            }
        }
        // Aborted transactions whose marker was in the removed suffix.
        let txns = self.cf(CF_TXNINDEX)?;
        batch.delete_range_cf(txns, keys::offset_key(tp, end), upper);
        batch.delete_cf(txns, upper);
        let producer_cf = self.cf(CF_PRODUCERS)?;
        batch.delete_range_cf(producer_cf, lower, upper);
        batch.delete_cf(producer_cf, upper);
        for (pid, bytes) in producers {
            batch.put_cf(producer_cf, keys::key(tp, *pid as u64), bytes);
        }
        let state = crate::memory::truncated_state(current, end, removed_bytes, max_timestamp);
        batch.put_cf(
            self.cf(CF_STATE)?,
            keys::partition_prefix(tp),
            state.encode(),
        );
        self.db
            .write_opt(batch, &self.write_options())
            .map_err(engine)?;
        Ok(state)
    }
}

impl RocksLogStore {
    /// Every entry of `tp` in column family `cf`, in key order, as `decode(key suffix,
    /// value)` makes it; `what` names the data in corruption errors.
    fn keyed<T>(
        &self,
        cf: &str,
        tp: TopicPartition,
        what: &str,
        decode: impl Fn(u64, &[u8]) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        let cf = self.cf(cf)?;
        let (lower, upper) = Self::partition_bounds(tp);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper.to_vec());
        let mut out = Vec::new();
        for item in
            self.db
                .iterator_cf_opt(cf, opts, IteratorMode::From(&lower, Direction::Forward))
        {
            let (key, value) = item.map_err(engine)?;
            let suffix = keys::decode_suffix(&key).ok_or_else(|| StorageError::Corrupt {
                what: format!("{what} key of unexpected length"),
            })?;
            out.push(decode(suffix, &value)?);
        }
        Ok(out)
    }

    /// Walks the batches a read returns, handing each value to `take`; returns the count.
    fn scan(
        &self,
        tp: TopicPartition,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
        mut take: impl FnMut(&[u8]),
    ) -> Result<usize, StorageError> {
        let cf = self.cf(CF_LOG)?;
        let mut count = 0usize;
        if offset >= end_offset {
            return Ok(0);
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(keys::key(tp, 0).to_vec());
        opts.set_iterate_upper_bound(keys::offset_key(tp, end_offset).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, opts);
        // The batch holding `offset` is the last one starting at or before it.
        it.seek_for_prev(keys::offset_key(tp, offset));
        if !it.valid() {
            it.seek_to_first();
        }
        let mut total = 0usize;
        while it.valid() {
            let (Some(key), Some(value)) = (it.key(), it.value()) else {
                break;
            };
            let base = keys::decode_suffix(key).ok_or_else(|| StorageError::Corrupt {
                what: "log key of unexpected length".into(),
            })? as i64;
            let last = base
                + keys::last_offset_delta(value).ok_or_else(|| StorageError::Corrupt {
                    what: format!("batch at offset {base} is truncated"),
                })?;
            if last >= offset {
                if count > 0 && total + value.len() > max_bytes {
                    break;
                }
                total += value.len();
                take(value);
                count += 1;
                if total >= max_bytes {
                    break;
                }
            }
            it.next();
        }
        it.status().map_err(engine)?;
        Ok(count)
    }
}

fn batch_info(key: &[u8], value: &[u8]) -> Result<BatchInfo, StorageError> {
    let base = keys::decode_suffix(key).ok_or_else(|| StorageError::Corrupt {
        what: "log key of unexpected length".into(),
    })? as i64;
    let delta = keys::last_offset_delta(value).ok_or_else(|| StorageError::Corrupt {
        what: format!("batch at offset {base} is truncated"),
    })?;
    Ok(BatchInfo {
        base_offset: base,
        last_offset: base + delta,
        max_timestamp: keys::max_timestamp(value).unwrap_or(-1),
        size: value.len() as u64,
    })
}

fn read_index_entry(
    it: &rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
) -> Result<Option<TimeIndexEntry>, StorageError> {
    if !it.valid() {
        it.status().map_err(engine)?;
        return Ok(None);
    }
    let (Some(key), Some(value)) = (it.key(), it.value()) else {
        return Ok(None);
    };
    let ts = keys::decode_suffix(key).ok_or_else(|| StorageError::Corrupt {
        what: "time index key of unexpected length".into(),
    })?;
    let offset: [u8; 8] = value.try_into().map_err(|_| StorageError::Corrupt {
        what: "time index value of unexpected length".into(),
    })?;
    Ok(Some(TimeIndexEntry {
        timestamp: keys::unflip(ts),
        base_offset: i64::from_be_bytes(offset),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[test]
    fn conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = 0;
        conformance::run(|| {
            n += 1;
            RocksLogStore::open(&dir.path().join(n.to_string()), &RocksOptions::default())
                .expect("open")
        });
    }

    #[test]
    fn everything_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::survives_reopen(|| {
            RocksLogStore::open(dir.path(), &RocksOptions::default()).expect("open")
        });
    }
}
