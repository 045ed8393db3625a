//! The record cache of aggregations (Kafka's `statestore.cache.max.bytes`): an aggregate's
//! updates stay in memory until the next commit (or until the cache is full), so a key
//! updated many times between commits costs one store write, one changelog record and one
//! downstream update. Reads of the store (the aggregation itself, joins) see the cache
//! first. With a budget of 0 every update goes through at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::Task;
use crate::error::StreamsError;
use crate::record::{Change, Dyn, Headers, Output, Rec};

/// A cached aggregate: the latest value and the one before the first cached update.
pub(super) struct Entry {
    pub node: usize,
    pub key: Dyn,
    pub new: Dyn,
    pub old: Option<Dyn>,
    pub timestamp: i64,
    pub headers: Headers,
    pub size: usize,
}

/// Per store: the dirty entries by key bytes (flushed in key order), and their size.
#[derive(Default)]
pub(super) struct StoreCache {
    pub entries: BTreeMap<Bytes, Entry>,
    pub bytes: usize,
}

impl Task {
    /// The cached value of `key` in `store`, if any.
    pub(super) fn cached(&self, store: usize, key: &[u8]) -> Option<Dyn> {
        self.caches
            .get(&store)
            .and_then(|c| c.entries.get(key))
            .map(|e| e.new.clone())
    }

    /// Caches an aggregate's update; flushes when the cache is over budget.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cache_put(
        &mut self,
        node: usize,
        store: usize,
        kb: Bytes,
        rec: &Rec,
        new: Dyn,
        old: Option<Dyn>,
        out: &mut Vec<Output>,
    ) -> Result<(), StreamsError> {
        let size = kb.len() + 64;
        let cache = self.caches.entry(store).or_default();
        let old = match cache.entries.remove(&kb) {
            Some(e) => {
                cache.bytes -= e.size;
                e.old
            }
            None => old,
        };
        cache.bytes += size;
        cache.entries.insert(
            kb,
            Entry {
                node,
                key: rec.key.clone(),
                new,
                old,
                timestamp: rec.timestamp,
                headers: rec.headers.clone(),
                size,
            },
        );
        let total: usize = self.caches.values().map(|c| c.bytes).sum();
        if total > self.settings.cache_max_bytes {
            self.flush_cache(out)?;
        }
        Ok(())
    }

    /// Writes every cached update to its store (and changelog) and forwards it downstream.
    pub fn flush_cache(&mut self, out: &mut Vec<Output>) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        let caches = std::mem::take(&mut self.caches);
        for (store, cache) in caches {
            for (kb, e) in cache.entries {
                self.put(store, &kb, Some(&e.new), e.timestamp, out)?;
                let rec = Rec {
                    key: e.key,
                    value: Arc::new(Change {
                        new: Some(e.new),
                        old: e.old,
                    }),
                    timestamp: e.timestamp,
                    headers: e.headers,
                };
                for &c in &topo.nodes[e.node].children {
                    self.run(c, rec.clone(), out)?;
                }
            }
        }
        Ok(())
    }
}
