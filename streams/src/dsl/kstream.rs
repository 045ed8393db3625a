//! [`KStream`]: an unbounded sequence of records, each an independent event.

use std::marker::PhantomData;
use std::sync::Arc;

use super::{Data, Grouped, KGroupedStream, Produced, Repartitioned, StreamsBuilder};
use crate::record::{cast, Dyn, Rec};
use crate::serdes::{ErasedSerde, SerdeRef};
use crate::topology::{NodeKind, Partitioner, TopicRef};

/// A stream of key-value records (Kafka's `KStream<K, V>`).
pub struct KStream<K, V> {
    pub(crate) builder: StreamsBuilder,
    pub(crate) node: usize,
    /// The key may differ from the one records were partitioned by: a stateful step must
    /// repartition first.
    pub(crate) key_changed: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        Self {
            builder: self.builder.clone(),
            node: self.node,
            key_changed: self.key_changed,
            _types: PhantomData,
        }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(builder: StreamsBuilder, node: usize, key_changed: bool) -> Self {
        Self {
            builder,
            node,
            key_changed,
            _types: PhantomData,
        }
    }

    fn stateless<K2: Data, V2: Data>(
        &self,
        kind: &str,
        key_changed: bool,
        f: impl Fn(Rec, &mut Vec<Rec>) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let node = self
            .builder
            .add(kind, NodeKind::Stateless(Arc::new(f)), &[self.node]);
        KStream::new(self.builder.clone(), node, self.key_changed || key_changed)
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.stateless("KSTREAM-FILTER", false, move |r, out| {
            if f(cast::<K>(&r.key), cast::<V>(&r.value)) {
                out.push(r);
            }
        })
    }

    /// Drops the records for which `f` is true.
    pub fn filter_not(&self, f: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.filter(move |k, v| !f(k, v))
    }

    /// A new key and value for each record (the key changes: a later grouping
    /// repartitions).
    pub fn map<K2: Data, V2: Data>(
        &self,
        f: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        self.stateless("KSTREAM-MAP", true, move |r, out| {
            let (k, v) = f(cast::<K>(&r.key), cast::<V>(&r.value));
            out.push(Rec {
                key: Arc::new(k),
                value: Arc::new(v),
                ..r
            });
        })
    }

    /// A new value for each record; the key stays (no repartition).
    pub fn map_values<V2: Data>(
        &self,
        f: impl Fn(&V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.map_values_with_key(move |_, v| f(v))
    }

    /// A new value for each record, from its key and value.
    pub fn map_values_with_key<V2: Data>(
        &self,
        f: impl Fn(&K, &V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.stateless("KSTREAM-MAPVALUES", false, move |r, out| {
            let v = f(cast::<K>(&r.key), cast::<V>(&r.value));
            out.push(Rec {
                value: Arc::new(v),
                ..r
            });
        })
    }

    /// Zero or more records for each record, with new keys.
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        f: impl Fn(&K, &V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.stateless("KSTREAM-FLATMAP", true, move |r, out| {
            for (k, v) in f(cast::<K>(&r.key), cast::<V>(&r.value)) {
                out.push(Rec {
                    key: Arc::new(k),
                    value: Arc::new(v),
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                });
            }
        })
    }

    /// Zero or more values for each record, under its key.
    pub fn flat_map_values<V2: Data, I>(
        &self,
        f: impl Fn(&V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        self.stateless("KSTREAM-FLATMAPVALUES", false, move |r, out| {
            for v in f(cast::<V>(&r.value)) {
                out.push(Rec {
                    key: r.key.clone(),
                    value: Arc::new(v),
                    timestamp: r.timestamp,
                    headers: r.headers.clone(),
                });
            }
        })
    }

    /// A new key for each record (a later grouping repartitions).
    pub fn select_key<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        self.stateless("KSTREAM-KEY-SELECT", true, move |r, out| {
            let k = f(cast::<K>(&r.key), cast::<V>(&r.value));
            out.push(Rec {
                key: Arc::new(k),
                ..r
            });
        })
    }

    /// Calls `f` on each record and passes it on unchanged.
    pub fn peek(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        self.stateless("KSTREAM-PEEK", false, move |r, out| {
            f(cast::<K>(&r.key), cast::<V>(&r.value));
            out.push(r);
        })
    }

    /// Calls `f` on each record (a terminal step).
    pub fn foreach(&self, f: impl Fn(&K, &V) + Send + Sync + 'static) {
        let _: KStream<K, V> = self.stateless("KSTREAM-FOREACH", false, move |r, _| {
            f(cast::<K>(&r.key), cast::<V>(&r.value));
        });
    }

    /// Splits the stream: each record goes to the branch of the first predicate it
    /// matches, or nowhere. Add `|_, _| true` last for a default branch.
    pub fn branch(&self, predicates: Vec<BranchPredicate<K, V>>) -> Vec<KStream<K, V>> {
        let predicates = Arc::new(predicates);
        (0..predicates.len())
            .map(|i| {
                let preds = predicates.clone();
                self.stateless("KSTREAM-BRANCHCHILD", false, move |r, out| {
                    let (k, v) = (cast::<K>(&r.key), cast::<V>(&r.value));
                    if preds.iter().position(|p| p(k, v)) == Some(i) {
                        out.push(r);
                    }
                })
            })
            .collect()
    }

    /// One stream of this stream's records and `other`'s, interleaved as they arrive.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let node = self.builder.add(
            "KSTREAM-MERGE",
            NodeKind::Stateless(Arc::new(|r, out| out.push(r))),
            &[self.node, other.node],
        );
        KStream::new(
            self.builder.clone(),
            node,
            self.key_changed || other.key_changed,
        )
    }

    /// Writes the records to `topic`.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let partitioner = produced.partitioner.map(|p| {
            Arc::new(move |k: &Dyn, v: &Dyn, n: i32| p(cast::<K>(k), cast::<V>(v), n))
                as Partitioner
        });
        self.builder.add(
            "KSTREAM-SINK",
            NodeKind::Sink {
                topic: TopicRef::user(topic),
                key: ErasedSerde::new(produced.key),
                value: ErasedSerde::new(produced.value),
                partitioner,
            },
            &[self.node],
        );
    }

    /// Routes the records through an internal topic `<application.id>-<name>-repartition`,
    /// partitioned by their current key.
    pub fn repartition(&self, r: Repartitioned<K, V>) -> KStream<K, V> {
        let name = r
            .name
            .unwrap_or_else(|| self.builder.next_name("KSTREAM-REPARTITION"));
        self.through_internal(name, r.key, r.value, r.partitions)
    }

    pub(crate) fn through_internal(
        &self,
        name: String,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        partitions: Option<i32>,
    ) -> KStream<K, V> {
        let topic = TopicRef::internal(format!("{name}-repartition"));
        let sink = self.builder.add(
            "KSTREAM-SINK",
            NodeKind::Sink {
                topic: topic.clone(),
                key: ErasedSerde::new(key.clone()),
                value: ErasedSerde::new(value.clone()),
                partitioner: None,
            },
            &[self.node],
        );
        self.builder
            .add_repartition(topic.clone(), partitions, sink);
        let source = self.builder.add(
            "KSTREAM-SOURCE",
            NodeKind::Source {
                topics: vec![topic],
                key: ErasedSerde::new(key),
                value: ErasedSerde::new(value),
                table: false,
                timestamp: None,
            },
            &[],
        );
        KStream::new(self.builder.clone(), source, false)
    }

    /// Groups by the current key, for an aggregation. If the key changed since the
    /// records were read, they go through a repartition topic first.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self.clone(), grouped)
    }

    /// Groups by a new key computed from each record (always repartitions).
    pub fn group_by<K2: Data>(
        &self,
        f: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(f).group_by_key(grouped)
    }
}

/// A predicate of [`KStream::branch`].
pub type BranchPredicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;
