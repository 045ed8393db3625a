//! Windowed aggregation and suppression: how a task updates window and session stores,
//! drops late records, and holds results back until their window closes.
//!
//! Window stores key each entry `[len u32][key][end][start]` (times sign-flipped
//! big-endian), so a key's windows are one contiguous range in end order.

use std::sync::Arc;

use bytes::Bytes;

use super::Task;
use crate::dsl::{TimeWindows, Window};
use crate::error::StreamsError;
use crate::record::{Change, Dyn, Output, Rec};
use crate::topology::{Aggregator, Initializer, Merger, WindowedKeyFn};

/// The functions of a windowed aggregation node.
pub(super) struct Agg<'a> {
    pub store: usize,
    pub init: Option<&'a Initializer>,
    pub add: &'a Aggregator,
    pub merge: Option<&'a Merger>,
    pub wrap: &'a WindowedKeyFn,
}

/// Flips the sign bit so that signed timestamps sort as unsigned big-endian bytes.
pub(super) fn flip(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

pub(super) fn unflip(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// `[len u32][key]`: a key's windows are one contiguous range.
pub(super) fn key_prefix(kb: &[u8]) -> Vec<u8> {
    let mut p = (kb.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(kb);
    p
}

/// A window store's key: `[len u32][key][end][start]`, times sign-flipped big-endian.
pub(super) fn window_key(kb: &[u8], end: i64, start: i64) -> Bytes {
    let mut k = key_prefix(kb);
    k.extend_from_slice(&flip(end).to_be_bytes());
    k.extend_from_slice(&flip(start).to_be_bytes());
    Bytes::from(k)
}

pub(super) fn decode_window(k: &[u8], prefix: usize) -> Option<Window> {
    let rest = k.get(prefix..)?;
    if rest.len() != 16 {
        return None;
    }
    Some(Window {
        end: unflip(&rest[..8])?,
        start: unflip(&rest[8..])?,
    })
}

impl Task {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn time_windows(
        &mut self,
        agg: &Agg<'_>,
        w: &TimeWindows,
        kb: &Bytes,
        rec: Rec,
        now: i64,
        out: &mut Vec<Output>,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        for win in w.windows_for(rec.timestamp) {
            if win.end.saturating_add(w.grace) <= now {
                self.late_dropped += 1;
                continue;
            }
            let skey = window_key(kb, win.end, win.start);
            let old = self.get(agg.store, &skey)?;
            let new = match (&old, agg.init) {
                (Some(a), _) => (agg.add)(&rec.key, &rec.value, a),
                (None, Some(init)) => (agg.add)(&rec.key, &rec.value, &init()),
                (None, None) => rec.value.clone(),
            };
            self.put(agg.store, &skey, Some(&new), rec.timestamp, out)?;
            fwd.push(Rec {
                key: (agg.wrap)(&rec.key, win),
                value: Arc::new(Change {
                    new: Some(new),
                    old,
                }),
                timestamp: rec.timestamp,
                headers: rec.headers.clone(),
            });
        }
        Ok(())
    }

    /// Session windows: the record joins (and bridges) every session of its key within
    /// `gap`; it is late if it would form or touch a session already closed (`end + gap +
    /// grace < stream time`), so a closed session never changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sessions(
        &mut self,
        agg: &Agg<'_>,
        gap: i64,
        grace: i64,
        kb: &Bytes,
        rec: Rec,
        now: i64,
        out: &mut Vec<Output>,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let t = rec.timestamp;
        let closed = |end: i64| end.saturating_add(gap).saturating_add(grace) < now;
        let prefix = key_prefix(kb);
        let mut from = prefix.to_vec();
        from.extend_from_slice(&flip(t.saturating_sub(gap)).to_be_bytes());
        let mut to = prefix.to_vec();
        to.extend_from_slice(&[0xff; 17]);
        let mut touching = Vec::new();
        for (k, v) in self.store(agg.store)?.range(Some(&from), Some(&to))? {
            let Some(win) = decode_window(&k, prefix.len()) else {
                continue;
            };
            if win.end >= t.saturating_sub(gap) && win.start <= t.saturating_add(gap) {
                touching.push((win, k, v));
            }
        }
        if closed(t) || touching.iter().any(|(w, _, _)| closed(w.end)) {
            self.late_dropped += 1;
            return Ok(());
        }
        let def_value = self.topo.stores[agg.store].value.clone();
        let mut merged = Window { start: t, end: t };
        let mut acc: Option<Dyn> = None;
        for (win, k, v) in touching {
            let a = def_value
                .deserialize(Some(&v))
                .map_err(StreamsError::Serde)?;
            merged.start = merged.start.min(win.start);
            merged.end = merged.end.max(win.end);
            acc = Some(match (acc, agg.merge) {
                (None, _) => a.clone(),
                (Some(x), Some(m)) => m(&rec.key, &x, &a),
                (Some(x), None) => x,
            });
            self.put(agg.store, &k, None, t, out)?;
            fwd.push(Rec {
                key: (agg.wrap)(&rec.key, win),
                value: Arc::new(Change {
                    new: None,
                    old: Some(a),
                }),
                timestamp: t,
                headers: rec.headers.clone(),
            });
        }
        let base = match (acc, agg.init) {
            (Some(a), _) => Some(a),
            (None, Some(init)) => Some(init()),
            (None, None) => None,
        };
        let new = match base {
            Some(a) => (agg.add)(&rec.key, &rec.value, &a),
            None => rec.value.clone(),
        };
        let skey = window_key(kb, merged.end, merged.start);
        self.put(agg.store, &skey, Some(&new), t, out)?;
        fwd.push(Rec {
            key: (agg.wrap)(&rec.key, merged),
            value: Arc::new(Change {
                new: Some(new),
                old: None,
            }),
            timestamp: t,
            headers: rec.headers,
        });
        Ok(())
    }

    /// Buffers the update (by window end, then windowed key) and forwards, in window-end
    /// order, every buffered window that has closed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn suppress(
        &mut self,
        store: usize,
        wait: i64,
        window_end: &crate::topology::WindowEndFn,
        rec: Rec,
        now: i64,
        out: &mut Vec<Output>,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        let def = &topo.stores[store];
        let change = crate::record::cast::<Change>(&rec.value);
        let Some(wk) = def.key.serialize(&rec.key).map_err(StreamsError::Serde)? else {
            return Ok(());
        };
        let end = window_end(&rec.key);
        let mut bkey = flip(end).to_be_bytes().to_vec();
        bkey.extend_from_slice(&wk);
        let bval = match &change.new {
            Some(v) => {
                let vb = def.value.serialize(v).map_err(StreamsError::Serde)?;
                let mut b = rec.timestamp.to_be_bytes().to_vec();
                b.extend_from_slice(vb.as_deref().unwrap_or_default());
                Some(Bytes::from(b))
            }
            // A window deleted before it closed (a session merged into another) was never
            // emitted: forget it.
            None => None,
        };
        self.put_raw(store, &Bytes::from(bkey), bval, rec.timestamp, out)?;
        // Evict: every window with end + wait < now.
        let Some(limit) = now.checked_sub(wait) else {
            return Ok(());
        };
        let upper = flip(limit).to_be_bytes();
        let due = self.store(store)?.range(None, Some(&upper))?;
        for (k, v) in due {
            self.put_raw(store, &k, None, rec.timestamp, out)?;
            if v.len() < 8 || k.len() < 8 {
                continue;
            }
            let ts = i64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
            let key = def
                .key
                .deserialize(Some(&k[8..]))
                .map_err(StreamsError::Serde)?;
            let value = def
                .value
                .deserialize(Some(&v[8..]))
                .map_err(StreamsError::Serde)?;
            fwd.push(Rec {
                key,
                value: Arc::new(Change {
                    new: Some(value),
                    old: None,
                }),
                timestamp: ts,
                headers: Arc::new(Vec::new()),
            });
        }
        Ok(())
    }

    /// Deletes windows that ended more than their store's retention before stream time.
    /// A full scan of the store, so it runs at most once per tenth of the retention (and
    /// at least a second) of stream time.
    pub(super) fn purge_windows(&mut self, out: &mut Vec<Output>) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        for (i, n) in topo.nodes.iter().enumerate() {
            let crate::topology::NodeKind::WindowAggregate {
                store, retention, ..
            } = &n.kind
            else {
                continue;
            };
            if n.subtopology != self.id.subtopology {
                continue;
            }
            let Some(&now) = self.node_time.get(&i) else {
                continue;
            };
            let every = (*retention / 10).max(1000);
            let last = self.purged.get(&i).copied().unwrap_or(i64::MIN);
            if now.saturating_sub(last) < every {
                continue;
            }
            self.purged.insert(i, now);
            let all = self.store(*store)?.range(None, None)?;
            for (k, _) in all {
                // [len u32][key][end][start]
                let Some(end) = k
                    .len()
                    .checked_sub(16)
                    .and_then(|at| unflip(&k[at..at + 8]))
                else {
                    continue;
                };
                if end.saturating_add(*retention) < now {
                    self.put_raw(*store, &k, None, now, out)?;
                }
            }
        }
        Ok(())
    }
}
