//! The DSL: [`StreamsBuilder`] makes [`KStream`]s and [`KTable`]s from topics; their
//! operations add nodes to a graph that [`StreamsBuilder::build`] turns into a
//! [`Topology`].
//!
//! The API is typed (`KStream<K, V>`): closures take `&K` and `&V` and return new values,
//! and serdes are given where records meet bytes (sources, sinks, groupings that must
//! repartition, stores). A key change (`map`, `select_key`, `flat_map`, `group_by`) before a
//! stateful step routes records through an internal repartition topic, so that each key's
//! records reach the one task that holds its state.
//!
//! # Examples
//! ```
//! use strom_streams::{serdes, Grouped, Materialized, Produced, StreamsBuilder};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("text", serdes::unit(), serdes::string())
//!     .flat_map_values(|line: &String| {
//!         line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>()
//!     })
//!     .group_by(|_, word: &String| word.clone(), Grouped::with(serdes::string(), serdes::string()))
//!     .count(Materialized::as_("counts"))
//!     .to_stream()
//!     .map_values(|n: &Option<i64>| n.unwrap_or(0).to_string())
//!     .to("word-counts", Produced::with(serdes::string(), serdes::string()));
//! let topology = builder.build().unwrap();
//! assert_eq!(topology.internal_topics("wc"), ["wc-counts-repartition", "wc-counts-changelog"]);
//! ```

mod joins;
mod kstream;
mod ktable;
mod options;
mod processor;
mod windowed;

use std::cell::RefCell;
use std::rc::Rc;

pub use joins::{GlobalKTable, JoinWindows, StreamJoined};
pub use kstream::KStream;
pub use ktable::{KGroupedStream, KTable};
pub use options::{Grouped, Materialized, PartitionerFn, Produced, Repartitioned};
pub(crate) use processor::{CtxOps, ErasedProcessor, ProcessorSupplier};
pub use processor::{Processor, ProcessorContext, PunctuationType, Record};
pub use windowed::{
    windowed_serde, SessionWindows, SlidingWindows, TimeWindows, Window, Windowed, WindowedKStream,
};

use crate::error::StreamsError;
use crate::serdes::{ErasedSerde, SerdeRef};
use crate::topology::{Node, NodeKind, StoreDef, StoreKind, TopicRef, Topology};

/// An aggregation's initializer and adder with their types erased (shared by grouped and
/// windowed aggregations).
pub(crate) fn erase_aggregate<K: Data, V: Data, A: Data>(
    init: impl Fn() -> A + Send + Sync + 'static,
    add: impl Fn(&K, &V, &A) -> A + Send + Sync + 'static,
) -> (crate::topology::Initializer, crate::topology::Aggregator) {
    use crate::record::{cast, Dyn};
    (
        std::sync::Arc::new(move || std::sync::Arc::new(init()) as Dyn),
        std::sync::Arc::new(move |k: &Dyn, v: &Dyn, agg: &Dyn| {
            std::sync::Arc::new(add(cast::<K>(k), cast::<V>(v), cast::<A>(agg))) as Dyn
        }),
    )
}

/// What the DSL's key and value types must be: records are shared between nodes and
/// threads.
pub trait Data: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Data for T {}

#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<Node>,
    stores: Vec<StoreDef>,
    repartitions: Vec<(TopicRef, Option<i32>, usize)>,
    globals: Vec<crate::topology::GlobalDef>,
    counter: usize,
    errors: Vec<String>,
}

impl Graph {
    /// Kafka's generated names: `KSTREAM-MAPVALUES-0000000003`.
    fn name(&mut self, kind: &str) -> String {
        let n = format!("{kind}-{:010}", self.counter);
        self.counter += 1;
        n
    }

    fn add(&mut self, kind: &str, node: NodeKind, parents: &[usize]) -> usize {
        let name = self.name(kind);
        let idx = self.nodes.len();
        for &p in parents {
            self.nodes[p].children.push(idx);
        }
        self.nodes.push(Node {
            name,
            kind: node,
            parents: parents.to_vec(),
            children: Vec::new(),
            links: Vec::new(),
            subtopology: 0,
        });
        idx
    }

    fn add_store(&mut self, store: StoreDef) -> usize {
        self.stores.push(store);
        self.stores.len() - 1
    }
}

/// Builds a topology (Kafka's `StreamsBuilder`). Handles it gives out share it; call
/// [`build`](Self::build) once the graph is complete.
#[derive(Clone, Default)]
pub struct StreamsBuilder {
    pub(crate) graph: Rc<RefCell<Graph>>,
}

impl StreamsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of the records of `topic`.
    pub fn stream<K: Data, V: Data>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> KStream<K, V> {
        self.stream_from(&[topic], key, value)
    }

    /// One stream of the records of several topics (which must be co-partitioned).
    pub fn stream_from<K: Data, V: Data>(
        &self,
        topics: &[&str],
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> KStream<K, V> {
        let node = self.graph.borrow_mut().add(
            "KSTREAM-SOURCE",
            NodeKind::Source {
                topics: topics.iter().map(|t| TopicRef::user(t)).collect(),
                key: ErasedSerde::new(key),
                value: ErasedSerde::new(value),
                table: false,
                timestamp: None,
            },
            &[],
        );
        KStream::new(self.clone(), node, false)
    }

    /// A stream of `topic` whose event time comes from each record (Kafka's
    /// `TimestampExtractor`): `extract(key, value, record timestamp)`. Windows, stream time
    /// and output timestamps use it.
    pub fn stream_with_timestamps<K: Data, V: Data>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        extract: impl Fn(&K, &V, i64) -> i64 + Send + Sync + 'static,
    ) -> KStream<K, V> {
        let node = self.graph.borrow_mut().add(
            "KSTREAM-SOURCE",
            NodeKind::Source {
                topics: vec![TopicRef::user(topic)],
                key: ErasedSerde::new(key),
                value: ErasedSerde::new(value),
                table: false,
                timestamp: Some(std::sync::Arc::new(
                    move |k: &crate::record::Dyn, v: &crate::record::Dyn, ts| {
                        extract(crate::record::cast::<K>(k), crate::record::cast::<V>(v), ts)
                    },
                )),
            },
            &[],
        );
        KStream::new(self.clone(), node, false)
    }

    /// A table of the latest value per key of `topic` (a null value deletes the key),
    /// materialized in a store (backed by its own changelog topic unless `without_logging`).
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
        materialized: Materialized<V>,
    ) -> KTable<K, V> {
        let mut g = self.graph.borrow_mut();
        let source = g.add(
            "KTABLE-SOURCE",
            NodeKind::Source {
                topics: vec![TopicRef::user(topic)],
                key: ErasedSerde::new(key.clone()),
                value: ErasedSerde::new(value.clone()),
                table: true,
                timestamp: None,
            },
            &[],
        );
        let name = materialized
            .name
            .clone()
            .unwrap_or_else(|| g.name(&format!("{topic}-STATE-STORE")));
        let store = g.add_store(StoreDef {
            name,
            kind: materialized.kind,
            logged: materialized.logging,
            key: ErasedSerde::new(key),
            value: ErasedSerde::new(materialized.value.unwrap_or(value)),
            subtopology: usize::MAX,
        });
        let node = g.add(
            "KTABLE-MATERIALIZE",
            NodeKind::TableMaterialize { store },
            &[source],
        );
        drop(g);
        let mut t = KTable::new(self.clone(), node);
        t.getter = Some(crate::topology::Getter {
            store,
            owner: node,
            view: None,
        });
        t
    }

    /// A table of `topic` replicated whole on every instance (Kafka's `GlobalKTable`):
    /// streams join it under any key, with no co-partitioning. It is read from the
    /// beginning before processing starts and kept up to date as the topic changes.
    pub fn global_table<K: Data, V: Data>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> GlobalKTable<K, V> {
        let mut g = self.graph.borrow_mut();
        let name = g.name(&format!("{topic}-GLOBAL-STORE"));
        g.globals.push(crate::topology::GlobalDef {
            name,
            topic: topic.to_string(),
            key: ErasedSerde::new(key),
            value: ErasedSerde::new(value),
        });
        GlobalKTable {
            index: g.globals.len() - 1,
            _types: std::marker::PhantomData,
        }
    }

    /// Checks the graph and returns the topology to run.
    pub fn build(&self) -> Result<Topology, StreamsError> {
        let mut g = self.graph.borrow_mut();
        if let Some(e) = g.errors.first() {
            return Err(StreamsError::Topology(e.clone()));
        }
        let g = std::mem::take(&mut *g);
        Topology::new(g.nodes, g.stores, g.repartitions, g.globals).map_err(StreamsError::Topology)
    }

    pub(crate) fn add(&self, kind: &str, node: NodeKind, parents: &[usize]) -> usize {
        self.graph.borrow_mut().add(kind, node, parents)
    }

    /// Adds an edge: `to` gets what `from` forwards.
    pub(crate) fn connect(&self, from: usize, to: usize) {
        let mut g = self.graph.borrow_mut();
        g.nodes[from].children.push(to);
        g.nodes[to].parents.push(from);
    }

    /// Puts `node` in the same subtopology as `owner` (whose store it reads).
    pub(crate) fn link(&self, node: usize, owner: usize) {
        self.graph.borrow_mut().nodes[node].links.push(owner);
    }

    pub(crate) fn error(&self, e: String) {
        self.graph.borrow_mut().errors.push(e);
    }

    pub(crate) fn new_store(
        &self,
        prefix: &str,
        kind: StoreKind,
        logged: bool,
        name: Option<String>,
        key: ErasedSerde,
        value: ErasedSerde,
    ) -> usize {
        let mut g = self.graph.borrow_mut();
        let name = name.unwrap_or_else(|| g.name(prefix));
        g.add_store(StoreDef {
            name,
            kind,
            logged,
            key,
            value,
            subtopology: usize::MAX,
        })
    }

    pub(crate) fn store_index(&self, name: &str) -> Option<usize> {
        self.graph
            .borrow()
            .stores
            .iter()
            .position(|s| s.name == name)
    }

    pub(crate) fn store_name(&self, store: usize) -> String {
        self.graph.borrow().stores[store].name.clone()
    }

    pub(crate) fn next_name(&self, kind: &str) -> String {
        self.graph.borrow_mut().name(kind)
    }

    pub(crate) fn add_repartition(&self, topic: TopicRef, partitions: Option<i32>, sink: usize) {
        self.graph
            .borrow_mut()
            .repartitions
            .push((topic, partitions, sink));
    }
}
