//! An in-memory store: a `BTreeMap`, restored from the changelog each time its task opens.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use super::KeyValueStore;
use crate::error::StreamsError;

#[derive(Default)]
pub struct MemoryStore {
    map: BTreeMap<Bytes, Bytes>,
}

impl KeyValueStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StreamsError> {
        Ok(self.map.get(key).cloned())
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StreamsError> {
        match value {
            Some(v) => {
                self.map
                    .insert(Bytes::copy_from_slice(key), Bytes::copy_from_slice(v));
            }
            None => {
                self.map.remove(key);
            }
        }
        Ok(())
    }

    fn range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<Vec<(Bytes, Bytes)>, StreamsError> {
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Ok(Vec::new());
            }
        }
        let lo = from.map_or(Bound::Unbounded, Bound::Included);
        let hi = to.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .map
            .range::<[u8], _>((lo, hi))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn approximate_len(&self) -> u64 {
        self.map.len() as u64
    }

    fn flush(&mut self) -> Result<(), StreamsError> {
        Ok(())
    }
}
