//! The topology: a graph of processor nodes, the state stores they use, and the topics that
//! connect it to the cluster, as [`crate::StreamsBuilder`] built it. It is immutable and
//! shared by every task that runs it.
//!
//! ```text
//!  input ─▶ SOURCE ─▶ FLATMAPVALUES ─▶ KEY-SELECT ─▶ SINK ──▶ <app>-counts-repartition
//!                                      (subtopology 0)              │
//!  ┌────────────────────────────────────────────────────────────────┘
//!  └▶ SOURCE ─▶ AGGREGATE [store counts] ─▶ TOSTREAM ─▶ SINK ─▶ output
//!     (subtopology 1)        │
//!                            └─▶ <app>-counts-changelog (compacted)
//! ```
//!
//! A **subtopology** is a connected part of the graph; repartition topics are the only links
//! between subtopologies. A **task** runs one subtopology for one partition number of its
//! source topics, which must therefore have the same partition count (be co-partitioned).
//! Internal topics are named without the application id here; the runtime (and the test
//! driver) prefix `<application.id>-`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::record::{Dyn, Rec};
use crate::serdes::ErasedSerde;

/// A topic a node reads or writes: a user's, or an internal one named without the
/// application id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TopicRef {
    pub name: String,
    pub internal: bool,
}

impl TopicRef {
    pub fn user(name: &str) -> Self {
        Self {
            name: name.to_string(),
            internal: false,
        }
    }

    pub fn internal(name: String) -> Self {
        Self {
            name,
            internal: true,
        }
    }

    /// The topic's name in the cluster.
    pub fn resolve(&self, application_id: &str) -> String {
        if self.internal {
            format!("{application_id}-{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

pub(crate) type StatelessFn = Arc<dyn Fn(Rec, &mut Vec<Rec>) + Send + Sync>;
pub(crate) type Initializer = Arc<dyn Fn() -> Dyn + Send + Sync>;
/// (key, value, aggregate so far) -> new aggregate.
pub(crate) type Aggregator = Arc<dyn Fn(&Dyn, &Dyn, &Dyn) -> Dyn + Send + Sync>;
pub(crate) type Partitioner = Arc<dyn Fn(&Dyn, &Dyn, i32) -> i32 + Send + Sync>;
pub(crate) type TablePredicate = Arc<dyn Fn(&Dyn, &Dyn) -> bool + Send + Sync>;
pub(crate) type TableMapper = Arc<dyn Fn(&Dyn, &Dyn) -> Dyn + Send + Sync>;
/// A KTable's change to a KStream value (`Option<V>`, `None` for a deletion).
pub(crate) type ToStreamFn = Arc<dyn Fn(Option<&Dyn>) -> Dyn + Send + Sync>;

/// (key, aggregate a, aggregate b) -> merged aggregate (session windows).
pub(crate) type Merger = Arc<dyn Fn(&Dyn, &Dyn, &Dyn) -> Dyn + Send + Sync>;
/// Wraps a key and its window into a `Windowed<K>`.
pub(crate) type WindowedKeyFn = Arc<dyn Fn(&Dyn, crate::dsl::Window) -> Dyn + Send + Sync>;
/// Reads a `Windowed<K>`'s window end.
pub(crate) type WindowEndFn = Arc<dyn Fn(&Dyn) -> i64 + Send + Sync>;
/// (key, value, the record's timestamp) -> event time.
pub(crate) type TimestampFn = Arc<dyn Fn(&Dyn, &Dyn, i64) -> i64 + Send + Sync>;

/// (key, this side's value, the other side's value) -> joined value. Which of the two may be
/// absent depends on the join's kind; the DSL's typed wrapper only sees what it accepts.
pub(crate) type JoinFn = Arc<dyn Fn(&Dyn, Option<&Dyn>, Option<&Dyn>) -> Dyn + Send + Sync>;
/// A table view: (key, stored value) -> the value after filters and mappers, if any.
pub(crate) type ViewFn = Arc<dyn Fn(&Dyn, Dyn) -> Option<Dyn> + Send + Sync>;
/// (stream key, stream value) -> the key to look up in a global table.
pub(crate) type KeyMapper = Arc<dyn Fn(&Dyn, &Dyn) -> Dyn + Send + Sync>;

/// How a join reads a table: its store, the node that owns the store (the join must run in
/// the same subtopology), and the filters and mappers applied since.
#[derive(Clone)]
pub(crate) struct Getter {
    pub store: usize,
    pub owner: usize,
    pub view: Option<ViewFn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKind {
    Inner,
    Left,
    Outer,
}

/// A global table: every instance reads all of `topic` into a store of its own.
pub(crate) struct GlobalDef {
    pub name: String,
    pub topic: String,
    pub key: ErasedSerde,
    pub value: ErasedSerde,
}

/// How a windowed aggregation cuts time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WindowSpec {
    Time(crate::dsl::TimeWindows),
    Session {
        gap: i64,
        grace: i64,
    },
    /// Kafka's `SlidingWindows`: windows of `diff` ms (both ends included) that the records
    /// define.
    Sliding {
        diff: i64,
        grace: i64,
    },
}

/// A KTable source's value: `None` for a tombstone.
pub(crate) struct MaybeValue(pub Option<Dyn>);

pub(crate) enum NodeKind {
    /// Reads `topics`. For a table source (`table`), null values are deletions and the
    /// value is wrapped in [`MaybeValue`].
    Source {
        topics: Vec<TopicRef>,
        key: ErasedSerde,
        value: ErasedSerde,
        table: bool,
        /// Event time from the record (Kafka's `TimestampExtractor`); else its timestamp.
        timestamp: Option<TimestampFn>,
    },
    /// Filter, map, flat-map, peek, foreach, select-key: a record in, zero or more out.
    Stateless(StatelessFn),
    Sink {
        topic: TopicRef,
        key: ErasedSerde,
        value: ErasedSerde,
        partitioner: Option<Partitioner>,
    },
    /// count / reduce / aggregate into `store`, forwarding each key's [`crate::record::Change`].
    /// Without an initializer (reduce), a key's first value is its aggregate.
    Aggregate {
        store: usize,
        init: Option<Initializer>,
        add: Aggregator,
    },
    /// A windowed count / reduce / aggregate: time windows or sessions, records later than
    /// the grace period dropped. Forwards changes keyed by `Windowed<K>`.
    WindowAggregate {
        store: usize,
        spec: WindowSpec,
        /// Windows ending more than this before stream time are purged from the store.
        retention: i64,
        /// Sliding windows: the key's records by timestamp (a list of values each), which
        /// a new window's aggregate is folded from; purged like the windows.
        records: Option<usize>,
        init: Option<Initializer>,
        add: Aggregator,
        merge: Option<Merger>,
        wrap: WindowedKeyFn,
    },
    /// Buffers a windowed table's updates in `store` and forwards each window's final value
    /// once `window end + wait < stream time`.
    Suppress {
        store: usize,
        wait: i64,
        window_end: WindowEndFn,
    },
    /// Looks each stream record's key up in a table (inner, or left with `left`).
    StreamTableJoin {
        table: Getter,
        left: bool,
        joiner: JoinFn,
    },
    /// Looks each stream record up in a global table under a key mapped from it.
    GlobalJoin {
        global: usize,
        key_mapper: KeyMapper,
        left: bool,
        joiner: JoinFn,
    },
    /// One side of a table-table join: a change on this side, joined with the other side's
    /// current value.
    TableJoin {
        other: Getter,
        this_is_left: bool,
        kind: JoinKind,
        joiner: JoinFn,
    },
    /// One side of a windowed stream-stream join: buffers this side's records, joins each
    /// with the other side's within the window, and (left/outer) emits records that found
    /// no match once no match can come.
    StreamJoin {
        this_store: usize,
        other_store: usize,
        pending: Option<usize>,
        this_is_left: bool,
        kind: JoinKind,
        before: i64,
        after: i64,
        grace: i64,
        /// Both sides share one stream time, kept under this node index.
        time_key: usize,
        joiner: JoinFn,
    },
    /// A Processor API node: one processor instance per task, using `stores`.
    Process {
        supplier: crate::dsl::ProcessorSupplier,
        stores: Vec<usize>,
    },
    /// Materializes a table source into `store` (puts and deletes), forwarding changes.
    TableMaterialize {
        store: usize,
    },
    TableFilter(TablePredicate),
    TableMapValues(TableMapper),
    ToStream(ToStreamFn),
}

impl NodeKind {
    fn label(&self) -> &'static str {
        match self {
            NodeKind::Source { .. } => "Source",
            NodeKind::Stateless(_) => "Processor",
            NodeKind::Sink { .. } => "Sink",
            NodeKind::Aggregate { .. } => "Processor",
            NodeKind::WindowAggregate { .. } => "Processor",
            NodeKind::StreamTableJoin { .. } => "Processor",
            NodeKind::GlobalJoin { .. } => "Processor",
            NodeKind::TableJoin { .. } => "Processor",
            NodeKind::StreamJoin { .. } => "Processor",
            NodeKind::Process { .. } => "Processor",
            NodeKind::Suppress { .. } => "Processor",
            NodeKind::TableMaterialize { .. } => "Processor",
            NodeKind::TableFilter(_) => "Processor",
            NodeKind::TableMapValues(_) => "Processor",
            NodeKind::ToStream(_) => "Processor",
        }
    }
}

pub(crate) struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub parents: Vec<usize>,
    pub children: Vec<usize>,
    /// Nodes whose stores this node reads (a join's table): same subtopology, no records.
    pub links: Vec<usize>,
    pub subtopology: usize,
}

/// Where a state store keeps its data locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// RocksDB under `state.dir`: survives restarts; a clean shutdown's checkpoint spares a
    /// restore.
    RocksDb,
    /// A sorted map in memory, restored from the changelog whenever its task opens.
    InMemory,
}

pub(crate) struct StoreDef {
    pub name: String,
    pub kind: StoreKind,
    /// Backed by `<application.id>-<name>-changelog`.
    pub logged: bool,
    pub key: ErasedSerde,
    pub value: ErasedSerde,
    pub subtopology: usize,
}

impl StoreDef {
    pub fn changelog(&self) -> TopicRef {
        TopicRef::internal(format!("{}-changelog", self.name))
    }
}

pub(crate) struct Subtopology {
    /// Topics its sources read (a task reads one partition number of each).
    pub sources: BTreeSet<TopicRef>,
    /// Source node per topic.
    pub source_nodes: BTreeMap<TopicRef, usize>,
    pub stores: Vec<usize>,
}

/// A repartition topic: its partition count is that of the subtopology that writes it,
/// unless the DSL fixed one.
pub(crate) struct RepartitionTopic {
    pub topic: TopicRef,
    pub partitions: Option<i32>,
    /// The subtopology whose sink writes it.
    pub writer: usize,
}

/// A processing graph built by [`crate::StreamsBuilder::build`].
pub struct Topology {
    pub(crate) nodes: Vec<Node>,
    pub(crate) stores: Vec<StoreDef>,
    pub(crate) globals: Vec<GlobalDef>,
    pub(crate) subtopologies: Vec<Subtopology>,
    pub(crate) repartitions: Vec<RepartitionTopic>,
}

impl Topology {
    /// Finds the subtopologies (connected parts of the graph) and checks what the graph
    /// itself can tell: a topic read twice, a store used by two subtopologies.
    pub(crate) fn new(
        mut nodes: Vec<Node>,
        mut stores: Vec<StoreDef>,
        repartitions: Vec<(TopicRef, Option<i32>, usize)>,
        globals: Vec<GlobalDef>,
    ) -> Result<Self, String> {
        if nodes.is_empty() && globals.is_empty() {
            return Err("the topology has no nodes: add a stream or a table".into());
        }
        // Union-find over parent edges.
        let mut root: Vec<usize> = (0..nodes.len()).collect();
        fn find(root: &mut [usize], mut x: usize) -> usize {
            while root[x] != x {
                root[x] = root[root[x]];
                x = root[x];
            }
            x
        }
        let edges: Vec<(usize, usize)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.parents.iter().chain(&n.links).map(move |&p| (i, p)))
            .collect();
        for (i, p) in edges {
            let (a, b) = (find(&mut root, i), find(&mut root, p));
            root[a] = b;
        }
        // Number subtopologies in order of their first node, as Kafka does.
        let mut ids: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, node) in nodes.iter_mut().enumerate() {
            let r = find(&mut root, i);
            let next = ids.len();
            node.subtopology = *ids.entry(r).or_insert(next);
        }
        let mut subs: Vec<Subtopology> = (0..ids.len())
            .map(|_| Subtopology {
                sources: BTreeSet::new(),
                source_nodes: BTreeMap::new(),
                stores: Vec::new(),
            })
            .collect();
        let mut read_by: BTreeMap<TopicRef, String> = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if let NodeKind::Source { topics, .. } = &n.kind {
                for t in topics {
                    if let Some(other) = read_by.insert(t.clone(), n.name.clone()) {
                        return Err(format!(
                            "topic '{}' is read by two sources ({other} and {}); read it once and share the stream",
                            t.name, n.name
                        ));
                    }
                    subs[n.subtopology].sources.insert(t.clone());
                    subs[n.subtopology].source_nodes.insert(t.clone(), i);
                }
            }
        }
        for n in &nodes {
            let used: Vec<usize> = match &n.kind {
                NodeKind::WindowAggregate { store, records, .. } => {
                    std::iter::once(*store).chain(*records).collect()
                }
                NodeKind::Aggregate { store, .. }
                | NodeKind::Suppress { store, .. }
                | NodeKind::TableMaterialize { store } => vec![*store],
                NodeKind::StreamJoin {
                    this_store,
                    other_store,
                    pending,
                    ..
                } => [Some(*this_store), Some(*other_store), *pending]
                    .into_iter()
                    .flatten()
                    .collect(),
                NodeKind::Process { stores, .. } => stores.clone(),
                _ => continue,
            };
            for store in used {
                let s = &mut stores[store];
                if s.subtopology != usize::MAX && s.subtopology != n.subtopology {
                    return Err(format!(
                        "state store '{}' is used by two subtopologies",
                        s.name
                    ));
                }
                s.subtopology = n.subtopology;
                if !subs[n.subtopology].stores.contains(&store) {
                    subs[n.subtopology].stores.push(store);
                }
            }
        }
        let mut names = BTreeSet::new();
        for s in &stores {
            if !names.insert(s.name.as_str()) {
                return Err(format!("two state stores are named '{}'", s.name));
            }
        }
        let repartitions = repartitions
            .into_iter()
            .map(|(topic, partitions, sink)| RepartitionTopic {
                topic,
                partitions,
                writer: nodes[sink].subtopology,
            })
            .collect();
        for g in &globals {
            if read_by.contains_key(&TopicRef::user(&g.topic)) {
                return Err(format!(
                    "topic '{}' is read as a global table and as a stream or table",
                    g.topic
                ));
            }
        }
        Ok(Self {
            nodes,
            stores,
            globals,
            subtopologies: subs,
            repartitions,
        })
    }

    /// Every topic the topology reads from the cluster that is not internal.
    pub fn source_topics(&self) -> Vec<String> {
        self.subtopologies
            .iter()
            .flat_map(|s| s.sources.iter())
            .filter(|t| !t.internal)
            .map(|t| t.name.clone())
            .collect()
    }

    /// The internal topics the runtime creates, with this application id: repartition
    /// topics and the changelogs of logged stores.
    pub fn internal_topics(&self, application_id: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .repartitions
            .iter()
            .map(|r| r.topic.resolve(application_id))
            .collect();
        out.extend(
            self.stores
                .iter()
                .filter(|s| s.logged)
                .map(|s| s.changelog().resolve(application_id)),
        );
        out
    }

    /// The number of subtopologies (independent parts joined by repartition topics).
    pub fn subtopologies_len(&self) -> usize {
        self.subtopologies.len()
    }

    /// The state store names.
    pub fn store_names(&self) -> Vec<String> {
        self.stores.iter().map(|s| s.name.clone()).collect()
    }

    /// A description in the shape of Kafka's `Topology#describe()`.
    pub fn describe(&self) -> String {
        let mut out = String::from("Topologies:\n");
        for id in 0..self.subtopologies.len() {
            let _ = writeln!(out, "   Sub-topology: {id}");
            for n in self.nodes.iter().filter(|n| n.subtopology == id) {
                let _ = write!(out, "    {}: {}", n.kind.label(), n.name);
                match &n.kind {
                    NodeKind::Source { topics, .. } => {
                        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
                        let _ = write!(out, " (topics: [{}])", names.join(", "));
                    }
                    NodeKind::Sink { topic, .. } => {
                        let _ = write!(out, " (topic: {})", topic.name);
                    }
                    NodeKind::Aggregate { store, .. }
                    | NodeKind::WindowAggregate { store, .. }
                    | NodeKind::Suppress { store, .. }
                    | NodeKind::TableMaterialize { store } => {
                        let _ = write!(out, " (stores: [{}])", self.stores[*store].name);
                    }
                    _ => {}
                }
                out.push('\n');
                let kids: Vec<&str> = n
                    .children
                    .iter()
                    .map(|c| self.nodes[*c].name.as_str())
                    .collect();
                if !kids.is_empty() {
                    let _ = writeln!(out, "      --> {}", kids.join(", "));
                }
                let parents: Vec<&str> = n
                    .parents
                    .iter()
                    .map(|c| self.nodes[*c].name.as_str())
                    .collect();
                if !parents.is_empty() {
                    let _ = writeln!(out, "      <-- {}", parents.join(", "));
                }
            }
        }
        out
    }
}
