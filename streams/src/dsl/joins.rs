//! Joins, with Kafka Streams' semantics:
//!
//! | join                         | kinds              | triggered by        | result    |
//! |------------------------------|--------------------|---------------------|-----------|
//! | KStream–KTable               | inner, left        | stream records      | KStream   |
//! | KStream–KStream (windowed)   | inner, left, outer | records of each side| KStream   |
//! | KTable–KTable                | inner, left, outer | changes of each side| KTable    |
//! | KStream–GlobalKTable         | inner, left        | stream records      | KStream   |
//!
//! Except with a global table, both sides must be co-partitioned (same key, same partition
//! count): the join runs in one task per partition. `start` refuses topics with different
//! partition counts; a stream whose key changed must be repartitioned first (a build
//! error says so).
//!
//! A windowed stream-stream join buffers each side for the window. Under left and outer
//! joins a record that found no partner is emitted with `None` only once no partner can
//! still arrive (its window and the grace period are over), so no result is ever retracted.

use std::marker::PhantomData;
use std::sync::Arc;

use super::{Data, KStream, KTable};
use crate::record::{cast, Dyn};
use crate::serdes::{ErasedSerde, SerdeRef};
use crate::topology::{Getter, JoinFn, JoinKind, NodeKind, StoreKind};

/// How far apart in time two records may be to join (Kafka's `JoinWindows`).
#[derive(Debug, Clone, Copy)]
pub struct JoinWindows {
    pub(crate) before: i64,
    pub(crate) after: i64,
    pub(crate) grace: i64,
}

impl JoinWindows {
    /// Records at most `ms` apart join; no grace period for out-of-order records.
    pub fn of_time_difference(ms: i64) -> Self {
        Self {
            before: ms.max(0),
            after: ms.max(0),
            grace: 0,
        }
    }

    /// How long out-of-order records are still joined (and unmatched ones held back).
    pub fn grace(mut self, ms: i64) -> Self {
        self.grace = ms.max(0);
        self
    }

    /// How much earlier than a left record a right one may be.
    pub fn before(mut self, ms: i64) -> Self {
        self.before = ms.max(0);
        self
    }

    /// How much later than a left record a right one may be.
    pub fn after(mut self, ms: i64) -> Self {
        self.after = ms.max(0);
        self
    }
}

/// The serdes of a stream-stream join's buffers (Kafka's `StreamJoined`).
pub struct StreamJoined<K, V, VO> {
    pub(crate) key: SerdeRef<K>,
    pub(crate) value: SerdeRef<V>,
    pub(crate) other: SerdeRef<VO>,
    pub(crate) name: Option<String>,
}

impl<K, V, VO> StreamJoined<K, V, VO> {
    pub fn with(key: SerdeRef<K>, value: SerdeRef<V>, other: SerdeRef<VO>) -> Self {
        Self {
            key,
            value,
            other,
            name: None,
        }
    }

    /// Names the buffers' stores `<name>-this-join-store` and `<name>-other-join-store`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A table replicated whole on every instance (see [`super::StreamsBuilder::global_table`]).
pub struct GlobalKTable<K, V> {
    pub(crate) index: usize,
    pub(crate) _types: PhantomData<fn() -> (K, V)>,
}

/// An inner join's joiner: both sides are there.
fn inner<K: Data, A: Data, B: Data, R: Data>(
    joiner: impl Fn(&A, &B) -> R + Send + Sync + 'static,
) -> JoinFn {
    erase(move |_: &K, a: Option<&A>, b: Option<&B>| match (a, b) {
        (Some(a), Some(b)) => joiner(a, b),
        _ => unreachable_join(),
    })
}

/// A left join's joiner: the left side is there.
fn left<K: Data, A: Data, B: Data, R: Data>(
    joiner: impl Fn(&A, Option<&B>) -> R + Send + Sync + 'static,
) -> JoinFn {
    erase(move |_: &K, a: Option<&A>, b: Option<&B>| match a {
        Some(a) => joiner(a, b),
        None => unreachable_join(),
    })
}

fn erase<K: Data, A: Data, B: Data, R: Data>(
    f: impl Fn(&K, Option<&A>, Option<&B>) -> R + Send + Sync + 'static,
) -> JoinFn {
    Arc::new(move |k: &Dyn, a: Option<&Dyn>, b: Option<&Dyn>| {
        Arc::new(f(cast::<K>(k), a.map(cast::<A>), b.map(cast::<B>))) as Dyn
    })
}

impl<K: Data, V: Data> KStream<K, V> {
    fn table_getter<VT: Data>(&self, table: &KTable<K, VT>, what: &str) -> Option<Getter> {
        if self.key_changed {
            self.builder.error(format!(
                "{what}: the stream's key changed since it was read; repartition() it first so that it is co-partitioned with the table"
            ));
            return None;
        }
        match &table.getter {
            Some(g) => Some(g.clone()),
            None => {
                self.builder.error(format!(
                    "{what}: the table is not materialized (join a source table, an aggregation, or their filters and mapped values)"
                ));
                None
            }
        }
    }

    fn stream_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        left: bool,
        joiner: JoinFn,
    ) -> KStream<K, VR> {
        let kind = if left {
            "KSTREAM-LEFTJOIN"
        } else {
            "KSTREAM-JOIN"
        };
        let Some(getter) = self.table_getter(table, kind) else {
            return KStream::new(self.builder.clone(), self.node, self.key_changed);
        };
        let owner = getter.owner;
        let node = self.builder.add(
            kind,
            NodeKind::StreamTableJoin {
                table: getter,
                left,
                joiner,
            },
            &[self.node],
        );
        self.builder.link(node, owner);
        KStream::new(self.builder.clone(), node, false)
    }

    /// Each record joined with the table's current value for its key; records whose key
    /// the table lacks are dropped.
    pub fn join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.stream_table(table, false, inner::<K, V, VT, VR>(joiner))
    }

    /// Each record joined with the table's current value for its key, or `None`.
    pub fn left_join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.stream_table(table, true, left::<K, V, VT, VR>(joiner))
    }

    fn global<KG: Data, VG: Data, VR: Data>(
        &self,
        global: &GlobalKTable<KG, VG>,
        key_mapper: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        left: bool,
        joiner: JoinFn,
    ) -> KStream<K, VR> {
        let node = self.builder.add(
            if left {
                "KSTREAM-LEFTJOIN-GLOBAL"
            } else {
                "KSTREAM-JOIN-GLOBAL"
            },
            NodeKind::GlobalJoin {
                global: global.index,
                key_mapper: Arc::new(move |k: &Dyn, v: &Dyn| {
                    Arc::new(key_mapper(cast::<K>(k), cast::<V>(v))) as Dyn
                }),
                left,
                joiner,
            },
            &[self.node],
        );
        KStream::new(self.builder.clone(), node, self.key_changed)
    }

    /// Each record joined with the global table's value under `key_mapper(key, value)`;
    /// records with no such entry are dropped.
    pub fn join_global<KG: Data, VG: Data, VR: Data>(
        &self,
        global: &GlobalKTable<KG, VG>,
        key_mapper: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        joiner: impl Fn(&V, &VG) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global(global, key_mapper, false, inner::<K, V, VG, VR>(joiner))
    }

    /// As [`join_global`](Self::join_global), keeping records with no entry (`None`).
    pub fn left_join_global<KG: Data, VG: Data, VR: Data>(
        &self,
        global: &GlobalKTable<KG, VG>,
        key_mapper: impl Fn(&K, &V) -> KG + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VG>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global(global, key_mapper, true, left::<K, V, VG, VR>(joiner))
    }

    fn stream_stream<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
        kind: JoinKind,
        joiner: JoinFn,
    ) -> KStream<K, VR> {
        if self.key_changed || other.key_changed {
            self.builder.error(
                "a stream-stream join: a side's key changed since it was read; repartition() it first".into(),
            );
            return KStream::new(self.builder.clone(), self.node, true);
        }
        let name = serdes
            .name
            .clone()
            .unwrap_or_else(|| self.builder.next_name("KSTREAM-JOIN"));
        let store = |suffix: &str, value: ErasedSerde| {
            self.builder.new_store(
                "",
                StoreKind::RocksDb,
                true,
                Some(format!("{name}-{suffix}")),
                ErasedSerde::new(serdes.key.clone()),
                value,
            )
        };
        let this_store = store("this-join-store", ErasedSerde::new(serdes.value.clone()));
        let other_store = store("other-join-store", ErasedSerde::new(serdes.other.clone()));
        let pending = (kind != JoinKind::Inner)
            .then(|| store("outer-join-store", ErasedSerde::new(serdes.value.clone())));
        let merge = self.builder.add(
            "KSTREAM-MERGE",
            NodeKind::Stateless(Arc::new(|r, out| out.push(r))),
            &[],
        );
        let side = |this_is_left: bool, parent: usize, this: usize, that: usize| {
            let n = self.builder.add(
                if this_is_left {
                    "KSTREAM-JOINTHIS"
                } else {
                    "KSTREAM-JOINOTHER"
                },
                NodeKind::StreamJoin {
                    this_store: this,
                    other_store: that,
                    pending,
                    this_is_left,
                    kind,
                    before: windows.before,
                    after: windows.after,
                    grace: windows.grace,
                    time_key: merge,
                    joiner: joiner.clone(),
                },
                &[parent],
            );
            self.builder.connect(n, merge);
            n
        };
        side(true, self.node, this_store, other_store);
        side(false, other.node, other_store, this_store);
        KStream::new(self.builder.clone(), merge, false)
    }

    /// Pairs of records of the two streams with the same key at most the window apart.
    pub fn join<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        self.stream_stream(
            other,
            windows,
            serdes,
            JoinKind::Inner,
            inner::<K, V, VO, VR>(joiner),
        )
    }

    /// As [`join`](Self::join); a left record that finds no partner is emitted with `None`
    /// once its window has closed.
    pub fn left_join<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        self.stream_stream(
            other,
            windows,
            serdes,
            JoinKind::Left,
            left::<K, V, VO, VR>(joiner),
        )
    }

    /// As [`join`](Self::join); a record of either side that finds no partner is emitted
    /// with `None` for the other once its window has closed.
    pub fn outer_join<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        serdes: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        self.stream_stream(
            other,
            windows,
            serdes,
            JoinKind::Outer,
            erase(move |_: &K, a: Option<&V>, b: Option<&VO>| joiner(a, b)),
        )
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    fn table_table<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        kind: JoinKind,
        joiner: JoinFn,
    ) -> KTable<K, VR> {
        let (Some(this_g), Some(other_g)) = (self.getter.clone(), other.getter.clone()) else {
            self.builder.error(
                "a table-table join needs both tables materialized (source tables, aggregations, or their filters and mapped values)".into(),
            );
            return KTable::new(self.builder.clone(), self.node);
        };
        let merge = self.builder.add(
            "KTABLE-MERGE",
            NodeKind::Stateless(Arc::new(|r, out| out.push(r))),
            &[],
        );
        let side = |parent: usize, this_is_left: bool, getter: Getter| {
            let owner = getter.owner;
            let n = self.builder.add(
                if this_is_left {
                    "KTABLE-JOINTHIS"
                } else {
                    "KTABLE-JOINOTHER"
                },
                NodeKind::TableJoin {
                    other: getter,
                    this_is_left,
                    kind,
                    joiner: joiner.clone(),
                },
                &[parent],
            );
            self.builder.link(n, owner);
            self.builder.connect(n, merge);
        };
        side(self.node, true, other_g);
        side(other.node, false, this_g);
        KTable::new(self.builder.clone(), merge)
    }

    /// A table with a value for each key both tables have, updated as either changes.
    pub fn join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_table(other, JoinKind::Inner, inner::<K, V, VO, VR>(joiner))
    }

    /// A value for each key of this table, with the other's value if it has one.
    pub fn left_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_table(other, JoinKind::Left, left::<K, V, VO, VR>(joiner))
    }

    /// A value for each key either table has.
    pub fn outer_join<VO: Data, VR: Data>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        self.table_table(
            other,
            JoinKind::Outer,
            erase(move |_: &K, a: Option<&V>, b: Option<&VO>| joiner(a, b)),
        )
    }
}

/// The join nodes call a typed joiner only with the sides its kind guarantees.
fn unreachable_join() -> ! {
    panic!("strom-streams: a joiner was called without a side its join kind guarantees (a bug in the join node)")
}
