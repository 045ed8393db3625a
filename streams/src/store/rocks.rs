//! A RocksDB store: one database per store per task, under
//! `<state.dir>/<application.id>/<task>/rocksdb/<store>`. Writes skip the WAL (the changelog
//! topic is the durable copy); `flush` writes the memtable to disk before a checkpoint
//! claims the data is there.

use std::path::Path;

use bytes::Bytes;
use rocksdb::{Direction, IteratorMode, Options, WriteOptions, DB};

use super::KeyValueStore;
use crate::error::StreamsError;

pub struct RocksStore {
    name: String,
    db: DB,
    write: WriteOptions,
}

impl RocksStore {
    pub fn open(name: &str, path: &Path) -> Result<Self, StreamsError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(2);
        let db = DB::open(&opts, path).map_err(|e| StreamsError::Store {
            store: name.to_string(),
            reason: format!("cannot open {}: {e}", path.display()),
        })?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Self {
            name: name.to_string(),
            db,
            write,
        })
    }

    fn err(&self, e: rocksdb::Error) -> StreamsError {
        StreamsError::Store {
            store: self.name.clone(),
            reason: e.to_string(),
        }
    }
}

impl KeyValueStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StreamsError> {
        self.db
            .get_pinned(key)
            .map(|v| v.map(|v| Bytes::copy_from_slice(&v)))
            .map_err(|e| self.err(e))
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StreamsError> {
        match value {
            Some(v) => self.db.put_opt(key, v, &self.write),
            None => self.db.delete_opt(key, &self.write),
        }
        .map_err(|e| self.err(e))
    }

    fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        let mode = match from {
            Some(f) => IteratorMode::From(f, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator(mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if to.is_some_and(|t| k.as_ref() >= t) {
                break;
            }
            out.push((Bytes::from(k.into_vec()), Bytes::from(v.into_vec())));
        }
        Ok(out)
    }

    fn approximate_len(&self) -> u64 {
        self.db
            .property_int_value("rocksdb.estimate-num-keys")
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    fn flush(&mut self) -> Result<(), StreamsError> {
        self.db.flush().map_err(|e| self.err(e))
    }
}
