//! The local metadata log: records in order, in their own RocksDB, each write synced.

use std::path::Path;

use rocksdb::{IteratorMode, Options, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::{MetadataError, MetadataRecord};

/// A record as the log holds it: where and when it was appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub record: MetadataRecord,
}

pub struct MetadataLog {
    db: DB,
    next_offset: u64,
}

fn log_err(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Log {
        message: e.to_string(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl MetadataLog {
    pub fn open(path: &Path) -> Result<Self, MetadataError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path).map_err(log_err)?;
        let next_offset = match db.iterator(IteratorMode::End).next() {
            Some(item) => {
                let (key, _) = item.map_err(log_err)?;
                decode_offset(&key)? + 1
            }
            None => 0,
        };
        Ok(Self { db, next_offset })
    }

    /// Appends records atomically and syncs them to disk before returning.
    pub fn append(
        &mut self,
        records: &[MetadataRecord],
    ) -> Result<Vec<LoggedRecord>, MetadataError> {
        let timestamp_ms = now_ms();
        let mut batch = rocksdb::WriteBatch::default();
        let mut logged = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let entry = LoggedRecord {
                offset: self.next_offset + i as u64,
                timestamp_ms,
                record: record.clone(),
            };
            let bytes = bincode::serde::encode_to_vec(&entry, bincode::config::standard())
                .map_err(log_err)?;
            batch.put(entry.offset.to_be_bytes(), bytes);
            logged.push(entry);
        }
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(batch, &w).map_err(log_err)?;
        self.next_offset += records.len() as u64;
        Ok(logged)
    }

    /// Up to `limit` records starting at `from`.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<LoggedRecord>, MetadataError> {
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, rocksdb::Direction::Forward))
            .take(limit)
        {
            let (_, value) = item.map_err(log_err)?;
            let (entry, _): (LoggedRecord, usize) =
                bincode::serde::decode_from_slice(&value, bincode::config::standard())
                    .map_err(log_err)?;
            out.push(entry);
        }
        Ok(out)
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }
}

fn decode_offset(key: &[u8]) -> Result<u64, MetadataError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| MetadataError::Log {
        message: format!("metadata log key of {} bytes", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_survive_reopen_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut log = MetadataLog::open(dir.path()).expect("open");
            log.append(&[MetadataRecord::InitCluster {
                cluster_id: "c".into(),
            }])
            .expect("append");
            log.append(&[
                MetadataRecord::FenceBroker { broker_id: 1 },
                MetadataRecord::UnfenceBroker { broker_id: 1 },
            ])
            .expect("append");
        }
        let log = MetadataLog::open(dir.path()).expect("reopen");
        assert_eq!(log.next_offset(), 3);
        let all = log.read(0, 100).expect("read");
        assert_eq!(
            all.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(
            all[2].record,
            MetadataRecord::UnfenceBroker { broker_id: 1 }
        );
        assert_eq!(log.read(1, 1).expect("read").len(), 1);
    }
}
