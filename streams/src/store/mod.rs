//! State stores: sorted key-value maps of bytes, one per store per task. The trait has no
//! RocksDB in it; [`memory::MemoryStore`] and [`rocks::RocksStore`] implement it and one
//! conformance suite (below) runs against both.
//!
//! Stores hold serialized keys and values, so a write is also, unchanged, the record sent
//! to the store's changelog topic. RocksDB stores write without a WAL: the changelog is what
//! makes them durable, and a store is trusted after a crash only up to its checkpoint.

pub mod memory;
pub mod rocks;

use bytes::Bytes;

use crate::error::StreamsError;

/// The global tables of one instance: every task reads them, one updater writes them.
pub(crate) type GlobalStores = Vec<parking_lot::RwLock<memory::MemoryStore>>;

/// A sorted map of byte strings.
pub trait KeyValueStore: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StreamsError>;
    /// Writes `value` under `key`, or deletes `key` when `value` is `None`.
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StreamsError>;
    /// Entries with `from <= key < to` (unbounded where `None`), in key order.
    fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, StreamsError>;
    /// The number of keys (exact for memory, estimated for RocksDB).
    fn approximate_len(&self) -> u64;
    /// Makes what was written survive a restart of the process (a no-op in memory).
    fn flush(&mut self) -> Result<(), StreamsError>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod conformance {
    //! The suite every store implementation passes.
    use super::*;

    pub fn basic_ops(s: &mut dyn KeyValueStore) {
        assert_eq!(s.get(b"a").unwrap(), None);
        s.put(b"b", Some(b"2")).unwrap();
        s.put(b"a", Some(b"1")).unwrap();
        s.put(b"c", Some(b"3")).unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        s.put(b"a", Some(b"one")).unwrap();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"one"[..]));
        s.put(b"c", None).unwrap();
        assert_eq!(s.get(b"c").unwrap(), None);
        s.put(b"zz", None).unwrap(); // deleting an absent key is fine
        let all = s.range(None, None).unwrap();
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, [&b"a"[..], b"b"]);
        assert!(s.approximate_len() >= 1);
        s.flush().unwrap();
    }

    pub fn ranges(s: &mut dyn KeyValueStore) {
        for k in [&b"apple"[..], b"banana", b"cherry", b"date", b"\xff\x00"] {
            s.put(k, Some(k)).unwrap();
        }
        let keys = |from: Option<&[u8]>, to: Option<&[u8]>| -> Vec<Vec<u8>> {
            s.range(from, to)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k.to_vec())
                .collect()
        };
        assert_eq!(
            keys(Some(b"b"), Some(b"d")),
            [b"banana".to_vec(), b"cherry".to_vec()]
        );
        assert_eq!(keys(Some(b"cherry"), None).len(), 3);
        assert_eq!(keys(None, Some(b"banana")), [b"apple".to_vec()]);
        assert_eq!(keys(Some(b"\xff"), None), [b"\xff\x00".to_vec()]);
        assert!(keys(Some(b"x"), Some(b"b")).is_empty());
    }

    #[test]
    fn memory_store() {
        let mut m = memory::MemoryStore::default();
        basic_ops(&mut m);
        assert_eq!(m.approximate_len(), 2);
        ranges(&mut memory::MemoryStore::default());
    }

    #[test]
    fn rocksdb_store() {
        let dir = tempfile::tempdir().unwrap();
        basic_ops(&mut rocks::RocksStore::open("s", &dir.path().join("a")).unwrap());
        ranges(&mut rocks::RocksStore::open("s", &dir.path().join("b")).unwrap());
    }

    #[test]
    fn rocksdb_keeps_flushed_data_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        {
            let mut s = rocks::RocksStore::open("s", &path).unwrap();
            s.put(b"k", Some(b"v")).unwrap();
            s.flush().unwrap();
        }
        let s = rocks::RocksStore::open("s", &path).unwrap();
        assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
