//! Windowed aggregations on event time: tumbling and hopping [`TimeWindows`],
//! [`SlidingWindows`] (every span of a fixed length that records define), and
//! [`SessionWindows`] (activity separated by a gap of inactivity), each with a grace period
//! for out-of-order records. A record later than its window's end plus the grace period is
//! dropped and counted (`late_dropped`). Results are a `KTable<Windowed<K>, V>`, updated on
//! every record, or once per window when it closes with
//! [`KTable::suppress_until_window_closes`] (Kafka's `suppress(untilWindowCloses)`).

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::{Data, KStream, KTable, Materialized, StreamsBuilder};
use crate::record::{cast, Dyn};
use crate::serdes::{ErasedSerde, Serde, SerdeRef};
use crate::topology::{NodeKind, WindowSpec};

/// A window: `[start, end)` for time windows, `[start, end]` for sliding windows and
/// sessions (for sessions the first and last record's timestamps), in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// A key with the window it was aggregated in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    pub key: K,
    pub window: Window,
}

/// Fixed-size windows: tumbling (`of`) or hopping (`advance_by`), aligned to the epoch.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindows {
    pub(crate) size: i64,
    pub(crate) advance: i64,
    pub(crate) grace: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size_ms` with no grace period (Kafka's
    /// `ofSizeWithNoGrace`); add one with [`grace`](Self::grace).
    pub fn of(size_ms: i64) -> Self {
        Self {
            size: size_ms.max(1),
            advance: size_ms.max(1),
            grace: 0,
        }
    }

    /// Hopping windows: a new window every `advance_ms` (at most the size).
    pub fn advance_by(mut self, advance_ms: i64) -> Self {
        self.advance = advance_ms.clamp(1, self.size);
        self
    }

    /// How long after a window's end out-of-order records are still accepted.
    pub fn grace(mut self, grace_ms: i64) -> Self {
        self.grace = grace_ms.max(0);
        self
    }

    /// The windows a record at `ts` falls in, oldest first.
    pub fn windows_for(&self, ts: i64) -> Vec<Window> {
        let last_start = ts - ts.rem_euclid(self.advance);
        let mut out = Vec::new();
        let mut start = last_start;
        while start > ts - self.size {
            out.push(Window {
                start,
                end: start + self.size,
            });
            start -= self.advance;
        }
        out.reverse();
        out
    }
}

/// Sliding windows (Kafka's `SlidingWindows`, KIP-450): every window of `diff` ms, both
/// ends included, that holds a distinct set of a key's records. Each record at `t` has its
/// window `[t - diff, t]`, and `[t + 1, t + 1 + diff]` once a record falls in that; a record
/// updates every window it falls in. Unlike hopping windows there are no empty or duplicate
/// windows, and an aggregate over "the last `diff` ms" is exact at every record.
#[derive(Debug, Clone, Copy)]
pub struct SlidingWindows {
    pub(crate) diff: i64,
    pub(crate) grace: i64,
}

impl SlidingWindows {
    /// Windows of `diff_ms`, accepting records up to `grace_ms` after a window's end.
    pub fn of_time_difference_and_grace(diff_ms: i64, grace_ms: i64) -> Self {
        Self {
            diff: diff_ms.max(0),
            grace: grace_ms.max(0),
        }
    }

    /// Windows of `diff_ms` with no grace period.
    pub fn of_time_difference_with_no_grace(diff_ms: i64) -> Self {
        Self::of_time_difference_and_grace(diff_ms, 0)
    }
}

/// Sessions: records of a key less than `gap` apart belong to one session.
#[derive(Debug, Clone, Copy)]
pub struct SessionWindows {
    pub(crate) gap: i64,
    pub(crate) grace: i64,
}

impl SessionWindows {
    /// Sessions closed by `gap_ms` of inactivity, with no grace period.
    pub fn with_inactivity_gap(gap_ms: i64) -> Self {
        Self {
            gap: gap_ms.max(1),
            grace: 0,
        }
    }

    pub fn grace(mut self, grace_ms: i64) -> Self {
        self.grace = grace_ms.max(0);
        self
    }
}

/// A serde for `Windowed<K>`: the key's bytes, then the window's start and end as 8-byte
/// big-endian integers.
pub fn windowed_serde<K: Send + Sync + 'static>(inner: SerdeRef<K>) -> SerdeRef<Windowed<K>> {
    Arc::new(WindowedSerde(inner))
}

struct WindowedSerde<K>(SerdeRef<K>);

impl<K: Send + Sync + 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, v: &Windowed<K>) -> Result<Option<Bytes>, String> {
        let k = self.0.serialize(&v.key)?.unwrap_or_default();
        let mut b = BytesMut::with_capacity(k.len() + 16);
        b.put_slice(&k);
        b.put_i64(v.window.start);
        b.put_i64(v.window.end);
        Ok(Some(b.freeze()))
    }

    fn deserialize(&self, bytes: Option<&[u8]>) -> Result<Windowed<K>, String> {
        let b = bytes.ok_or("a windowed key cannot be null")?;
        if b.len() < 16 {
            return Err(format!(
                "a windowed key is at least 16 bytes, not {}",
                b.len()
            ));
        }
        let (k, w) = b.split_at(b.len() - 16);
        let n = |s: &[u8]| i64::from_be_bytes(s.try_into().unwrap_or([0; 8]));
        Ok(Windowed {
            key: self.0.deserialize(Some(k))?,
            window: Window {
                start: n(&w[..8]),
                end: n(&w[8..]),
            },
        })
    }
}

/// A grouped stream cut into time or session windows, ready to aggregate.
pub struct WindowedKStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) key: SerdeRef<K>,
    pub(crate) value: SerdeRef<V>,
    pub(crate) spec: WindowSpec,
    pub(crate) _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> WindowedKStream<K, V> {
    /// The number of records per key and window.
    pub fn count(self, materialized: Materialized<i64>) -> KTable<Windowed<K>, i64> {
        let m = Materialized {
            value: Some(
                materialized
                    .value
                    .clone()
                    .unwrap_or_else(crate::serdes::i64),
            ),
            ..materialized
        };
        self.aggregate_merging(|| 0i64, |_, _, n: &i64| n + 1, |_, a, b| a + b, m)
    }

    /// Combines the values of each key and window with `f`.
    pub fn reduce(
        self,
        f: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized<V>,
    ) -> KTable<Windowed<K>, V> {
        let value = materialized
            .value
            .clone()
            .unwrap_or_else(|| self.value.clone());
        let f = Arc::new(f);
        let g = f.clone();
        self.build(
            None,
            Arc::new(move |_: &Dyn, v: &Dyn, agg: &Dyn| {
                Arc::new(f(cast::<V>(agg), cast::<V>(v))) as Dyn
            }),
            Some(Arc::new(move |_: &Dyn, a: &Dyn, b: &Dyn| {
                Arc::new(g(cast::<V>(a), cast::<V>(b))) as Dyn
            })),
            value,
            materialized,
        )
    }

    /// Folds each key's values per window: `init()`, then `add(key, value, aggregate)`.
    /// For session windows use [`aggregate_merging`](Self::aggregate_merging): sessions
    /// that a record joins together need their aggregates merged.
    pub fn aggregate<A: Data>(
        self,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&K, &V, &A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A> {
        if matches!(self.spec, WindowSpec::Session { .. }) {
            self.stream
                .builder
                .error("session windows need a merger: use aggregate_merging".into());
        }
        self.aggregate_with(init, add, None, materialized)
    }

    /// As [`aggregate`](Self::aggregate), with `merge(key, a, b)` to combine two sessions'
    /// aggregates when a record bridges them (Kafka's session `Merger`).
    pub fn aggregate_merging<A: Data>(
        self,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&K, &V, &A) -> A + Send + Sync + 'static,
        merge: impl Fn(&K, &A, &A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A> {
        let merge: crate::topology::Merger = Arc::new(move |k: &Dyn, a: &Dyn, b: &Dyn| {
            Arc::new(merge(cast::<K>(k), cast::<A>(a), cast::<A>(b))) as Dyn
        });
        self.aggregate_with(init, add, Some(merge), materialized)
    }

    fn aggregate_with<A: Data>(
        self,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&K, &V, &A) -> A + Send + Sync + 'static,
        merge: Option<crate::topology::Merger>,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A> {
        let Some(value) = materialized.value.clone() else {
            self.stream.builder.error(
                "aggregate needs the aggregate's serde: Materialized::with_value_serde".into(),
            );
            return KTable::new(self.stream.builder.clone(), self.stream.node);
        };
        let (init, add) = super::erase_aggregate(init, add);
        self.build(Some(init), add, merge, value, materialized)
    }

    fn build<A: Data>(
        self,
        init: Option<crate::topology::Initializer>,
        add: crate::topology::Aggregator,
        merge: Option<crate::topology::Merger>,
        value: SerdeRef<A>,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A> {
        let b: StreamsBuilder = self.stream.builder.clone();
        const DAY: i64 = 86_400_000;
        let minimum = match self.spec {
            WindowSpec::Time(w) => w.size + w.grace,
            WindowSpec::Session { gap, grace } => gap + grace,
            WindowSpec::Sliding { diff, grace } => diff + grace,
        };
        let retention = match materialized.retention {
            Some(r) if r < minimum => {
                b.error(format!(
                    "a window store's retention ({r} ms) must be at least the window size (or gap) plus the grace period ({minimum} ms)"
                ));
                minimum
            }
            Some(r) => r,
            None => DAY.max(minimum),
        };
        // Sliding windows keep the records too (with a changelog when the windows have
        // one), named after the windows' store when that is named.
        let records = matches!(self.spec, WindowSpec::Sliding { .. }).then(|| {
            b.new_store(
                "KSTREAM-SLIDING-RECORDS-STATE-STORE",
                materialized.kind,
                materialized.logging,
                materialized.name.as_ref().map(|n| format!("{n}-records")),
                ErasedSerde::new(self.key.clone()),
                ErasedSerde::new(self.value.clone()),
            )
        });
        let store = b.new_store(
            "KSTREAM-AGGREGATE-STATE-STORE",
            materialized.kind,
            materialized.logging,
            materialized.name,
            ErasedSerde::new(self.key.clone()),
            ErasedSerde::new(value),
        );
        let input = if self.stream.key_changed {
            let name = b.store_name(store);
            self.stream
                .through_internal(name, self.key, self.value, None)
        } else {
            self.stream
        };
        let wrap: crate::topology::WindowedKeyFn = Arc::new(|k: &Dyn, w: Window| {
            Arc::new(Windowed {
                key: cast::<K>(k).clone(),
                window: w,
            }) as Dyn
        });
        let kind = match self.spec {
            WindowSpec::Time(_) => "KSTREAM-WINDOWED-AGGREGATE",
            WindowSpec::Session { .. } => "KSTREAM-SESSION-AGGREGATE",
            WindowSpec::Sliding { .. } => "KSTREAM-SLIDING-WINDOWED-AGGREGATE",
        };
        let node = b.add(
            kind,
            NodeKind::WindowAggregate {
                store,
                spec: self.spec,
                retention,
                records,
                init,
                add,
                merge,
                wrap,
            },
            &[input.node],
        );
        let mut t = KTable::new(b, node);
        t.window = Some(self.spec);
        t
    }
}

impl<K: Data, V: Data> KTable<Windowed<K>, V> {
    /// Holds each window's updates back and emits only its final result, once the window
    /// has closed (stream time passed its end plus the grace period). The buffer is a
    /// store with a changelog, so a restart neither loses nor repeats a final result.
    pub fn suppress_until_window_closes(
        &self,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> KTable<Windowed<K>, V> {
        let Some(spec) = self.window else {
            self.builder
                .error("suppress_until_window_closes needs a windowed aggregation".into());
            return KTable::new(self.builder.clone(), self.node);
        };
        // When can no record change a window any more: time and sliding windows at their
        // end plus the grace; sessions also wait one gap (a record that close would extend
        // them).
        let wait = match spec {
            // Closed once `end + grace <= stream time`, that is `end + grace - 1 < time`.
            WindowSpec::Time(w) => w.grace - 1,
            WindowSpec::Sliding { grace, .. } => grace - 1,
            WindowSpec::Session { gap, grace } => gap + grace,
        };
        let store = self.builder.new_store(
            "KTABLE-SUPPRESS-STATE-STORE",
            crate::topology::StoreKind::InMemory,
            true,
            None,
            ErasedSerde::new(windowed_serde(key)),
            ErasedSerde::new(value),
        );
        let node = self.builder.add(
            "KTABLE-SUPPRESS",
            NodeKind::Suppress {
                store,
                wait,
                window_end: Arc::new(|k: &Dyn| cast::<Windowed<K>>(k).window.end),
            },
            &[self.node],
        );
        let mut t = KTable::new(self.builder.clone(), node);
        t.window = self.window;
        t
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_hopping_windows() {
        let w = |v: Vec<Window>| v.iter().map(|w| (w.start, w.end)).collect::<Vec<_>>();
        assert_eq!(w(TimeWindows::of(10).windows_for(25)), [(20, 30)]);
        assert_eq!(w(TimeWindows::of(10).windows_for(20)), [(20, 30)]);
        assert_eq!(w(TimeWindows::of(10).windows_for(-1)), [(-10, 0)]);
        assert_eq!(
            w(TimeWindows::of(10).advance_by(5).windows_for(12)),
            [(5, 15), (10, 20)]
        );
        assert_eq!(
            w(TimeWindows::of(10).advance_by(3).windows_for(9)),
            [(0, 10), (3, 13), (6, 16), (9, 19)]
        );
    }

    #[test]
    fn windowed_serde_round_trips() {
        let s = windowed_serde(crate::serdes::string());
        let v = Windowed {
            key: "user".to_string(),
            window: Window { start: 5, end: 15 },
        };
        let b = s.serialize(&v).unwrap().unwrap();
        assert_eq!(b.len(), 4 + 16);
        assert_eq!(s.deserialize(Some(&b)).unwrap(), v);
        assert!(s.deserialize(Some(b"short")).is_err());
    }
}
