//! Windowed aggregation and suppression: how a task updates window, sliding window and
//! session stores, drops late records, and holds results back until their window closes.
//!
//! Window stores key each entry `[len u32][key][end][start]` (times sign-flipped
//! big-endian), so a key's windows are one contiguous range in end order.

use std::collections::BTreeSet;
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

/// A sliding window aggregation's settings: the store of the key's records, the windows'
/// length and the grace period.
pub(super) struct Sliding {
    pub records: usize,
    pub diff: i64,
    pub grace: i64,
}

/// Splits a records entry (`[len u32][value]` repeated, in arrival order) into its values.
fn record_values(mut b: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        out.push(b.get(4..4 + len)?);
        b = &b[4 + len..];
    }
    Some(out)
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

    /// Sliding windows (KIP-450). The record is kept with the key's records, then every
    /// window it concerns is brought up to date: the windows it falls in (its own left window
    /// `[t - diff, t]`, the left windows of later records and the right windows of earlier
    /// ones) and its right window `[t + 1, t + 1 + diff]` when a record is in it. A window
    /// that exists gets the record added; one that does not is folded from the records it
    /// holds (timestamp order, arrival order within one timestamp). A window is closed once
    /// `end + grace <= stream time`; a record is late once its right window, the last it
    /// could make, is closed (Kafka's rule). An update carries the window's newest record
    /// time, as Kafka's timestamped window store does.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sliding(
        &mut self,
        agg: &Agg<'_>,
        w: &Sliding,
        kb: &Bytes,
        rec: Rec,
        now: i64,
        out: &mut Vec<Output>,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let (t, diff) = (rec.timestamp, w.diff);
        let open = |end: i64| end.saturating_add(w.grace) > now;
        if !open(t.saturating_add(diff).saturating_add(1)) {
            self.late_dropped += 1;
            return Ok(());
        }
        let values = self.topo.stores[w.records].value.clone();
        let records_name = self.topo.stores[w.records].name.clone();
        // Keep the record: the values at one timestamp are a list, in arrival order.
        let vb = values
            .serialize(&rec.value)
            .map_err(StreamsError::Serde)?
            .unwrap_or_default();
        let rkey = window_key(kb, t, t);
        let mut list = self
            .store(w.records)?
            .get(&rkey)?
            .map(|b| b.to_vec())
            .unwrap_or_default();
        list.extend_from_slice(&(vb.len() as u32).to_be_bytes());
        list.extend_from_slice(&vb);
        self.put_raw(w.records, &rkey, Some(Bytes::from(list)), t, out)?;

        // The key's records that any window concerned can hold: within diff + 1 of t.
        let prefix = key_prefix(kb);
        let at = |ts: i64| {
            let mut k = prefix.clone();
            k.extend_from_slice(&flip(ts).to_be_bytes());
            k
        };
        let (lo, hi) = (
            t.saturating_sub(diff).saturating_sub(1),
            t.saturating_add(diff).saturating_add(1),
        );
        let mut near: Vec<(i64, Vec<Dyn>)> = Vec::new();
        let entries = self
            .store(w.records)?
            .range(Some(&at(lo)), Some(&at(hi.saturating_add(1))))?;
        for (k, v) in entries {
            let Some(ts) = decode_window(&k, prefix.len()).map(|w| w.end) else {
                continue;
            };
            let list = record_values(&v).ok_or_else(|| StreamsError::Store {
                store: records_name.clone(),
                reason: "a records entry is cut short".into(),
            })?;
            let decoded = list
                .into_iter()
                .map(|b| values.deserialize(Some(b)).map_err(StreamsError::Serde))
                .collect::<Result<Vec<_>, _>>()?;
            near.push((ts, decoded));
        }

        let mut windows = BTreeSet::new();
        windows.insert(Window {
            start: t.saturating_sub(diff),
            end: t,
        });
        if near.iter().any(|(x, _)| *x > t && *x <= hi) {
            windows.insert(Window {
                start: t.saturating_add(1),
                end: hi,
            });
        }
        for (x, _) in &near {
            if *x < t && *x >= lo {
                // An earlier record's right window, which t falls in.
                windows.insert(Window {
                    start: x.saturating_add(1),
                    end: x.saturating_add(diff).saturating_add(1),
                });
            } else if *x >= t && *x <= t.saturating_add(diff) {
                // A later record's left window, which t falls in.
                windows.insert(Window {
                    start: x.saturating_sub(diff),
                    end: *x,
                });
            }
        }
        for win in windows {
            if !open(win.end) {
                continue;
            }
            let skey = window_key(kb, win.end, win.start);
            let old = self.get(agg.store, &skey)?;
            let holds_t = win.start <= t && t <= win.end;
            let new = match &old {
                Some(a) if holds_t => (agg.add)(&rec.key, &rec.value, a),
                // The record's own right window, already made by a record in it.
                Some(_) => continue,
                None => {
                    let mut acc = agg.init.map(|init| init());
                    for v in near
                        .iter()
                        .filter(|(x, _)| win.start <= *x && *x <= win.end)
                        .flat_map(|(_, vs)| vs)
                    {
                        acc = Some(match acc {
                            Some(a) => (agg.add)(&rec.key, v, &a),
                            None => v.clone(),
                        });
                    }
                    match acc {
                        Some(a) => a,
                        None => continue,
                    }
                }
            };
            let newest = near
                .iter()
                .map(|(x, _)| *x)
                .filter(|x| win.start <= *x && *x <= win.end)
                .max()
                .unwrap_or(t);
            self.put(agg.store, &skey, Some(&new), newest, out)?;
            fwd.push(Rec {
                key: (agg.wrap)(&rec.key, win),
                value: Arc::new(Change {
                    new: Some(new),
                    old,
                }),
                timestamp: newest,
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
                store,
                spec,
                retention,
                records,
                ..
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
            // A sliding aggregation's records are keyed like windows (end = start = the
            // record's timestamp) and go once no open window can hold them: diff + grace.
            let keep = match spec {
                crate::topology::WindowSpec::Sliding { diff, grace } => {
                    diff.saturating_add(*grace).saturating_add(1)
                }
                _ => *retention,
            };
            let stores = std::iter::once((*store, *retention)).chain(records.map(|r| (r, keep)));
            for (s, keep_for) in stores {
                // Each store at most once per tenth of its own keeping time (and at least a
                // second) of stream time.
                let every = (keep_for / 10).max(1000);
                let last = self.purged.get(&s).copied().unwrap_or(i64::MIN);
                if now.saturating_sub(last) < every {
                    continue;
                }
                self.purged.insert(s, now);
                let all = self.store(s)?.range(None, None)?;
                for (k, _) in all {
                    // [len u32][key][end][start]
                    let Some(end) = k
                        .len()
                        .checked_sub(16)
                        .and_then(|at| unflip(&k[at..at + 8]))
                    else {
                        continue;
                    };
                    if end.saturating_add(keep_for) < now {
                        self.put_raw(s, &k, None, now, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}
