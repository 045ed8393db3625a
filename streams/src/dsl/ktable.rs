//! [`KGroupedStream`] (a stream grouped by key, ready to aggregate) and [`KTable`] (the
//! latest value per key, as a changelog of updates).

use std::marker::PhantomData;
use std::sync::Arc;

use super::{Data, Grouped, KStream, Materialized, StreamsBuilder};
use crate::record::{cast, Dyn};
use crate::serdes::{self, ErasedSerde, SerdeRef};
use crate::topology::NodeKind;

/// A stream grouped by key (Kafka's `KGroupedStream<K, V>`).
pub struct KGroupedStream<K, V> {
    stream: KStream<K, V>,
    grouped: Grouped<K, V>,
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(stream: KStream<K, V>, grouped: Grouped<K, V>) -> Self {
        Self { stream, grouped }
    }

    /// Cuts each key's records into time windows (tumbling or hopping).
    pub fn windowed_by(self, windows: super::TimeWindows) -> super::WindowedKStream<K, V> {
        super::WindowedKStream {
            stream: self.stream,
            key: self.grouped.key,
            value: self.grouped.value,
            spec: crate::topology::WindowSpec::Time(windows),
            _types: PhantomData,
        }
    }

    /// Cuts each key's records into sliding windows: every span of the windows' length
    /// that holds a distinct set of records (Kafka's `windowedBy(SlidingWindows)`).
    pub fn windowed_by_sliding(
        self,
        windows: super::SlidingWindows,
    ) -> super::WindowedKStream<K, V> {
        super::WindowedKStream {
            stream: self.stream,
            key: self.grouped.key,
            value: self.grouped.value,
            spec: crate::topology::WindowSpec::Sliding {
                diff: windows.diff,
                grace: windows.grace,
            },
            _types: PhantomData,
        }
    }

    /// Cuts each key's records into sessions of activity.
    pub fn windowed_by_sessions(
        self,
        windows: super::SessionWindows,
    ) -> super::WindowedKStream<K, V> {
        super::WindowedKStream {
            stream: self.stream,
            key: self.grouped.key,
            value: self.grouped.value,
            spec: crate::topology::WindowSpec::Session {
                gap: windows.gap,
                grace: windows.grace,
            },
            _types: PhantomData,
        }
    }

    /// The number of records per key.
    pub fn count(self, materialized: Materialized<i64>) -> KTable<K, i64> {
        let m = Materialized {
            value: Some(materialized.value.clone().unwrap_or_else(serdes::i64)),
            ..materialized
        };
        self.aggregate(|| 0i64, |_, _, n: &i64| n + 1, m)
    }

    /// Combines each key's values with `f` (the first value is the start).
    pub fn reduce(
        self,
        f: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized<V>,
    ) -> KTable<K, V> {
        let value = materialized
            .value
            .clone()
            .unwrap_or_else(|| self.grouped.value.clone());
        self.stateful(
            None,
            Arc::new(move |_: &Dyn, v: &Dyn, agg: &Dyn| {
                Arc::new(f(cast::<V>(agg), cast::<V>(v))) as Dyn
            }),
            value,
            materialized,
        )
    }

    /// Folds each key's values into an aggregate: `init()` to start, then
    /// `add(key, value, aggregate)`. The aggregate's serde goes in `materialized`.
    pub fn aggregate<A: Data>(
        self,
        init: impl Fn() -> A + Send + Sync + 'static,
        add: impl Fn(&K, &V, &A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<K, A> {
        let Some(value) = materialized.value.clone() else {
            self.stream.builder.error(
                "aggregate needs the aggregate's serde: Materialized::with_value_serde".into(),
            );
            return KTable::new(self.stream.builder.clone(), self.stream.node);
        };
        let (init, add) = super::erase_aggregate(init, add);
        self.stateful(Some(init), add, value, materialized)
    }

    fn stateful<A: Data>(
        self,
        init: Option<crate::topology::Initializer>,
        add: crate::topology::Aggregator,
        value: SerdeRef<A>,
        materialized: Materialized<A>,
    ) -> KTable<K, A> {
        let b = self.stream.builder.clone();
        let store = b.new_store(
            "KSTREAM-AGGREGATE-STATE-STORE",
            materialized.kind,
            materialized.logging,
            materialized.name,
            ErasedSerde::new(self.grouped.key.clone()),
            ErasedSerde::new(value),
        );
        let input = if self.stream.key_changed {
            // Kafka names the repartition topic after the grouping, else the store.
            let name = self.grouped.name.unwrap_or_else(|| b.store_name(store));
            self.stream
                .through_internal(name, self.grouped.key, self.grouped.value, None)
        } else {
            self.stream
        };
        let node = b.add(
            "KSTREAM-AGGREGATE",
            NodeKind::Aggregate { store, init, add },
            &[input.node],
        );
        let mut t = KTable::new(b, node);
        t.getter = Some(crate::topology::Getter {
            store,
            owner: node,
            view: None,
        });
        t
    }
}

/// The latest value per key (Kafka's `KTable<K, V>`), kept in a state store and updated by
/// each record; downstream sees each update.
pub struct KTable<K, V> {
    pub(crate) builder: StreamsBuilder,
    pub(crate) node: usize,
    /// Set for windowed aggregations' tables (suppression needs the windows).
    pub(crate) window: Option<crate::topology::WindowSpec>,
    /// How a join reads this table's current values (materialized tables and their views).
    pub(crate) getter: Option<crate::topology::Getter>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(builder: StreamsBuilder, node: usize) -> Self {
        Self {
            builder,
            node,
            window: None,
            getter: None,
            _types: PhantomData,
        }
    }

    /// Keeps the keys whose value satisfies `f` (a key whose new value fails it is deleted
    /// downstream).
    pub fn filter(&self, f: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        let pred: crate::topology::TablePredicate =
            Arc::new(move |k: &Dyn, v: &Dyn| f(cast::<K>(k), cast::<V>(v)));
        let node = self.builder.add(
            "KTABLE-FILTER",
            NodeKind::TableFilter(pred.clone()),
            &[self.node],
        );
        let mut t = KTable::new(self.builder.clone(), node);
        t.window = self.window;
        t.getter = self.then_view(move |k, v| pred(k, &v).then_some(v));
        t
    }

    /// This table's getter, with `step` applied after its view (so that a join reads
    /// what this table's derived table holds).
    fn then_view(
        &self,
        step: impl Fn(&Dyn, Dyn) -> Option<Dyn> + Send + Sync + 'static,
    ) -> Option<crate::topology::Getter> {
        self.getter.clone().map(|g| {
            let inner = g.view.clone();
            crate::topology::Getter {
                view: Some(Arc::new(move |k: &Dyn, raw: Dyn| {
                    let v = match &inner {
                        Some(view) => view(k, raw)?,
                        None => raw,
                    };
                    step(k, v)
                })),
                ..g
            }
        })
    }

    /// A new value per key.
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(&V) -> V2 + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let map: crate::topology::TableMapper =
            Arc::new(move |_: &Dyn, v: &Dyn| Arc::new(f(cast::<V>(v))) as Dyn);
        let node = self.builder.add(
            "KTABLE-MAPVALUES",
            NodeKind::TableMapValues(map.clone()),
            &[self.node],
        );
        let mut t = KTable::new(self.builder.clone(), node);
        t.window = self.window;
        t.getter = self.then_view(move |k, v| Some(map(k, &v)));
        t
    }

    /// The table's updates as a stream: `Some(value)` for each new value, `None` when a key
    /// is deleted (a tombstone; write it with [`serdes::nullable`]).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let node = self.builder.add(
            "KTABLE-TOSTREAM",
            NodeKind::ToStream(Arc::new(|new: Option<&Dyn>| {
                Arc::new(new.map(|v| cast::<V>(v).clone())) as Dyn
            })),
            &[self.node],
        );
        KStream::new(self.builder.clone(), node, false)
    }
}
