//! Joins as a task runs them. See [`crate::dsl::joins`] for the semantics.
//!
//! A stream-stream join keeps each side's records in a store keyed
//! `[len u32][key][time][seq]`, so the partners of a record are one range scan. Left and
//! outer joins also keep unmatched records in a "pending" store keyed
//! `[close time][side][len u32][key][seq]`: when stream time passes a record's close time
//! and it is still there, it is emitted with `None` for the missing side. A record's close
//! time is the latest moment a partner could still be accepted: its time, plus the window
//! towards the other side, plus the largest window (a later partner's own lateness bound),
//! plus the grace period. A record later than `time + max window + grace < stream time` is
//! dropped as late, so a partner can never arrive after its unmatched record was emitted.

use std::sync::Arc;

use bytes::Bytes;

use super::windows::{flip, key_prefix, unflip};
use super::Task;
use crate::error::StreamsError;
use crate::record::{cast, Change, Dyn, Output, Rec};
use crate::store::KeyValueStore;
use crate::topology::{Getter, JoinFn, JoinKind, NodeKind};

/// A stream-stream join side's parameters.
pub(super) struct StreamJoinSide<'a> {
    pub this_store: usize,
    pub other_store: usize,
    pub pending: Option<usize>,
    pub this_is_left: bool,
    pub kind: JoinKind,
    pub before: i64,
    pub after: i64,
    pub grace: i64,
    pub time_key: usize,
    pub joiner: &'a JoinFn,
}

impl StreamJoinSide<'_> {
    fn max_window(&self) -> i64 {
        self.before.max(self.after)
    }

    /// How far past its own time a record of this (`left`) side can find partners.
    fn span(&self, left: bool) -> i64 {
        if left {
            self.after
        } else {
            self.before
        }
    }

    fn close_time(&self, left: bool, t: i64) -> i64 {
        t.saturating_add(self.span(left))
            .saturating_add(self.max_window())
            .saturating_add(self.grace)
    }
}

fn buffer_key(prefix: &[u8], t: i64, seq: u64) -> Bytes {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&flip(t).to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    Bytes::from(k)
}

/// (time, seq) from the end of a buffer key.
fn buffer_time_seq(k: &[u8]) -> Option<(i64, u64)> {
    let n = k.len();
    if n < 16 {
        return None;
    }
    Some((
        unflip(&k[n - 16..n - 8])?,
        u64::from_be_bytes(k[n - 8..].try_into().ok()?),
    ))
}

fn pending_key(close: i64, left: bool, prefix: &[u8], seq: u64) -> Bytes {
    let mut k = flip(close).to_be_bytes().to_vec();
    k.push(u8::from(!left));
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seq.to_be_bytes());
    Bytes::from(k)
}

impl Task {
    /// The table's current value for `key`, through the getter's view.
    pub(super) fn read_table(
        &mut self,
        getter: &Getter,
        key: &Dyn,
    ) -> Result<Option<Dyn>, StreamsError> {
        let topo = self.topo.clone();
        let def = &topo.stores[getter.store];
        let Some(kb) = def.key.serialize(key).map_err(StreamsError::Serde)? else {
            return Ok(None);
        };
        let Some(raw) = self.get(getter.store, &kb)? else {
            return Ok(None);
        };
        Ok(match &getter.view {
            Some(view) => view(key, raw),
            None => Some(raw),
        })
    }

    pub(super) fn stream_table_join(
        &mut self,
        table: &Getter,
        left: bool,
        joiner: &JoinFn,
        rec: Rec,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let t = self.read_table(table, &rec.key)?;
        if t.is_none() && !left {
            return Ok(());
        }
        let value = joiner(&rec.key, Some(&rec.value), t.as_ref());
        fwd.push(Rec { value, ..rec });
        Ok(())
    }

    pub(super) fn global_join(
        &mut self,
        global: usize,
        key_mapper: &crate::topology::KeyMapper,
        left: bool,
        joiner: &JoinFn,
        rec: Rec,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        let def = &topo.globals[global];
        let gk = key_mapper(&rec.key, &rec.value);
        let found = match def.key.serialize(&gk).map_err(StreamsError::Serde)? {
            Some(kb) => {
                let bytes = match self.settings.globals.get(global) {
                    Some(store) => store.read().get(&kb)?,
                    None => None,
                };
                match bytes {
                    Some(b) => Some(def.value.deserialize(Some(&b)).map_err(|reason| {
                        StreamsError::Store {
                            store: def.name.clone(),
                            reason,
                        }
                    })?),
                    None => None,
                }
            }
            None => None,
        };
        if found.is_none() && !left {
            return Ok(());
        }
        let value = joiner(&rec.key, Some(&rec.value), found.as_ref());
        fwd.push(Rec { value, ..rec });
        Ok(())
    }

    pub(super) fn table_join(
        &mut self,
        other: &Getter,
        this_is_left: bool,
        kind: JoinKind,
        joiner: &JoinFn,
        rec: Rec,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let c = cast::<Change>(&rec.value);
        let o = self.read_table(other, &rec.key)?;
        let join = |this: Option<&Dyn>| -> Option<Dyn> {
            let (l, r) = if this_is_left {
                (this, o.as_ref())
            } else {
                (o.as_ref(), this)
            };
            let produce = match kind {
                JoinKind::Inner => l.is_some() && r.is_some(),
                JoinKind::Left => l.is_some(),
                JoinKind::Outer => l.is_some() || r.is_some(),
            };
            produce.then(|| joiner(&rec.key, l, r))
        };
        let (new, old) = (join(c.new.as_ref()), join(c.old.as_ref()));
        if new.is_some() || old.is_some() {
            fwd.push(Rec {
                value: Arc::new(Change { new, old }),
                ..rec
            });
        }
        Ok(())
    }

    pub(super) fn stream_join(
        &mut self,
        j: &StreamJoinSide<'_>,
        rec: Rec,
        out: &mut Vec<Output>,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        let t = rec.timestamp;
        let now = self.observe(j.time_key, t);
        if t.saturating_add(j.max_window()).saturating_add(j.grace) < now {
            self.late_dropped += 1;
            return Ok(());
        }
        let this_def = &topo.stores[j.this_store];
        let other_def = &topo.stores[j.other_store];
        let Some(kb) = this_def
            .key
            .serialize(&rec.key)
            .map_err(StreamsError::Serde)?
        else {
            self.skipped += 1;
            return Ok(());
        };
        let prefix = key_prefix(&kb);
        self.seq += 1;
        let seq = self.seq;
        self.put(
            j.this_store,
            &buffer_key(&prefix, t, seq),
            Some(&rec.value),
            t,
            out,
        )?;
        // The other side's records within the window.
        let (lo, hi) = if j.this_is_left {
            (t.saturating_sub(j.before), t.saturating_add(j.after))
        } else {
            (t.saturating_sub(j.after), t.saturating_add(j.before))
        };
        let mut from = prefix.clone();
        from.extend_from_slice(&flip(lo).to_be_bytes());
        let mut to = prefix.clone();
        to.extend_from_slice(&flip(hi.saturating_add(1)).to_be_bytes());
        let partners = self.store(j.other_store)?.range(Some(&from), Some(&to))?;
        let matched = !partners.is_empty();
        for (k, v) in partners {
            let Some((t_o, seq_o)) = buffer_time_seq(&k) else {
                continue;
            };
            let other = other_def
                .value
                .deserialize(Some(&v))
                .map_err(StreamsError::Serde)?;
            let (l, r) = if j.this_is_left {
                (&rec.value, &other)
            } else {
                (&other, &rec.value)
            };
            fwd.push(Rec {
                key: rec.key.clone(),
                value: (j.joiner)(&rec.key, Some(l), Some(r)),
                timestamp: t.max(t_o),
                headers: rec.headers.clone(),
            });
            // The partner is matched now: it no longer waits to be emitted alone.
            if let Some(p) = j.pending {
                let pk = pending_key(
                    j.close_time(!j.this_is_left, t_o),
                    !j.this_is_left,
                    &prefix,
                    seq_o,
                );
                if self.store(p)?.get(&pk)?.is_some() {
                    self.put_raw(p, &pk, None, t, out)?;
                }
            }
        }
        let waits_alone = match j.kind {
            JoinKind::Inner => false,
            JoinKind::Left => j.this_is_left,
            JoinKind::Outer => true,
        };
        if let (false, true, Some(p)) = (matched, waits_alone, j.pending) {
            let vb = this_def
                .value
                .serialize(&rec.value)
                .map_err(StreamsError::Serde)?;
            let pk = pending_key(
                j.close_time(j.this_is_left, t),
                j.this_is_left,
                &prefix,
                seq,
            );
            self.put_raw(p, &pk, vb, t, out)?;
        }
        if let Some(p) = j.pending {
            self.emit_unmatched(j, p, now, out, fwd)?;
        }
        Ok(())
    }

    /// Emits (and forgets) every pending record whose close time has passed.
    fn emit_unmatched(
        &mut self,
        j: &StreamJoinSide<'_>,
        pending: usize,
        now: i64,
        out: &mut Vec<Output>,
        fwd: &mut Vec<Rec>,
    ) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        let upper = flip(now).to_be_bytes();
        let due = self.store(pending)?.range(None, Some(&upper))?;
        for (k, v) in due {
            self.put_raw(pending, &k, None, now, out)?;
            // [close 8][side 1][len 4][key][seq 8]
            if k.len() < 21 {
                continue;
            }
            let left = k[8] == 0;
            let key_bytes = &k[13..k.len() - 8];
            // The left side's buffer is `this_store` of the left node.
            let (left_store, right_store) = if j.this_is_left {
                (j.this_store, j.other_store)
            } else {
                (j.other_store, j.this_store)
            };
            let def = &topo.stores[if left { left_store } else { right_store }];
            let key = def
                .key
                .deserialize(Some(key_bytes))
                .map_err(StreamsError::Serde)?;
            let value = def
                .value
                .deserialize(Some(&v))
                .map_err(StreamsError::Serde)?;
            let close = unflip(&k[..8]).unwrap_or(now);
            let t = close
                .saturating_sub(j.span(left))
                .saturating_sub(j.max_window())
                .saturating_sub(j.grace);
            let joined = if left {
                (j.joiner)(&key, Some(&value), None)
            } else {
                (j.joiner)(&key, None, Some(&value))
            };
            fwd.push(Rec {
                key,
                value: joined,
                timestamp: t,
                headers: Arc::new(Vec::new()),
            });
        }
        Ok(())
    }

    /// Deletes buffered join records no partner can reach any more (stream time is past
    /// their close time). Run at commits: a full scan of each buffer.
    pub fn maintain(&mut self, out: &mut Vec<Output>) -> Result<(), StreamsError> {
        self.purge_windows(out)?;
        let topo = self.topo.clone();
        for n in &topo.nodes {
            let NodeKind::StreamJoin {
                this_store,
                other_store,
                pending,
                this_is_left: true,
                kind,
                before,
                after,
                grace,
                time_key,
                joiner,
            } = &n.kind
            else {
                continue;
            };
            if n.subtopology != self.id.subtopology {
                continue;
            }
            let Some(&now) = self.node_time.get(time_key) else {
                continue;
            };
            let j = StreamJoinSide {
                this_store: *this_store,
                other_store: *other_store,
                pending: *pending,
                this_is_left: true,
                kind: *kind,
                before: *before,
                after: *after,
                grace: *grace,
                time_key: *time_key,
                joiner,
            };
            for (store, left) in [(*this_store, true), (*other_store, false)] {
                let all = self.store(store)?.range(None, None)?;
                for (k, _) in all {
                    let Some((t, _)) = buffer_time_seq(&k) else {
                        continue;
                    };
                    if j.close_time(left, t) < now {
                        self.put_raw(store, &k, None, now, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}
