//! A task: one subtopology run for one partition number, with its own state stores. It
//! takes input records one at a time and returns what to write (outputs, repartition and
//! changelog records); it does no I/O itself, so the runtime and the test driver run the
//! same code.
//!
//! A record goes depth-first through the graph: each node's output reaches all of its
//! children before the next input record is taken, as in Kafka Streams.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use strom_client::consumer::ConsumerRecord;
use strom_client::TopicPartition;
use tracing::warn;

use crate::error::StreamsError;
use crate::record::{Change, Dyn, Output, Rec};
use crate::store::KeyValueStore;
use crate::topology::{MaybeValue, NodeKind, Topology, WindowSpec};

mod cache;
mod joins;
mod processor;
mod windows;
use joins::StreamJoinSide;
use windows::{Agg, Sliding};

/// A task's identity: `<subtopology>_<partition>`, as Kafka Streams prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: usize,
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// What to do with a record whose key or value cannot be deserialized
/// (`default.deserialization.exception.handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDeserializationError {
    /// Stop the thread with the error (Kafka's `LogAndFailExceptionHandler`, the default).
    #[default]
    Fail,
    /// Log it, count it, skip it (`LogAndContinueExceptionHandler`).
    LogAndContinue,
}

/// What to do when a processor fails on a record (`processing.exception.handler`, KIP-1033).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnProcessingError {
    /// Stop the thread with the error (Kafka's default).
    #[default]
    Fail,
    /// Log it, count it, skip the rest of that record's processing (and send the input
    /// record to the dead-letter topic, if one is set).
    LogAndContinue,
}

/// Per-task settings from the streams config.
#[derive(Clone, Default)]
pub(crate) struct TaskSettings {
    pub on_deserialization_error: OnDeserializationError,
    pub on_processing_error: OnProcessingError,
    /// `errors.dead.letter.queue.topic.name` (KIP-1034): skipped records go there, raw.
    pub dead_letter_topic: Option<String>,
    /// The instance's global tables, by index (shared by all its tasks).
    pub globals: Arc<crate::store::GlobalStores>,
    /// The aggregation cache's budget (0: no caching, every update forwarded at once).
    pub cache_max_bytes: usize,
}

pub(crate) struct Task {
    pub id: TaskId,
    topo: Arc<Topology>,
    /// Source topic (as named in the cluster) -> source node.
    sources: HashMap<String, usize>,
    /// By store index; `Some` for this subtopology's stores.
    stores: Vec<Option<Box<dyn KeyValueStore>>>,
    /// Changelog topic per store index, for logged stores.
    changelogs: Vec<Option<String>>,
    /// Resolved sink topic per sink node.
    sink_topics: HashMap<usize, String>,
    partition_counts: Arc<HashMap<String, i32>>,
    settings: TaskSettings,
    /// The next offset to read per input partition: what a commit records.
    pub consumed: BTreeMap<TopicPartition, i64>,
    /// The highest timestamp seen (Kafka's stream time).
    pub stream_time: i64,
    /// Records skipped by the deserialization handler.
    pub skipped: u64,
    /// Records a windowed aggregation dropped for arriving after the grace period.
    pub late_dropped: u64,
    /// Per windowed node: the highest timestamp it has seen (Kafka's observed stream time).
    node_time: HashMap<usize, i64>,
    /// Per windowed node: the stream time of its last retention purge.
    purged: HashMap<usize, i64>,
    /// Aggregations' cached updates, by store.
    caches: HashMap<usize, cache::StoreCache>,
    /// Processor API instances, by node.
    processors: HashMap<usize, Box<dyn crate::dsl::ErasedProcessor>>,
    schedules: Vec<processor::Schedule>,
    /// Makes buffered join records with equal keys and times distinct; starts from the
    /// clock so that a reopened task does not reuse numbers.
    seq: u64,
}

impl Task {
    /// A task with its stores already opened (`stores[i]` for each of the subtopology's
    /// stores). `partition_counts` serve custom partitioners.
    pub fn new(
        id: TaskId,
        topo: Arc<Topology>,
        application_id: &str,
        stores: Vec<Option<Box<dyn KeyValueStore>>>,
        partition_counts: Arc<HashMap<String, i32>>,
        settings: TaskSettings,
    ) -> Result<Self, StreamsError> {
        let sub = &topo.subtopologies[id.subtopology];
        let sources = sub
            .source_nodes
            .iter()
            .map(|(t, n)| (t.resolve(application_id), *n))
            .collect();
        let changelogs = topo
            .stores
            .iter()
            .map(|s| s.logged.then(|| s.changelog().resolve(application_id)))
            .collect();
        let sink_topics = topo
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.kind {
                NodeKind::Sink { topic, .. } => Some((i, topic.resolve(application_id))),
                _ => None,
            })
            .collect();
        let mut task = Self {
            id,
            topo,
            sources,
            stores,
            changelogs,
            sink_topics,
            partition_counts,
            settings,
            consumed: BTreeMap::new(),
            stream_time: i64::MIN,
            skipped: 0,
            late_dropped: 0,
            node_time: HashMap::new(),
            purged: HashMap::new(),
            caches: HashMap::new(),
            processors: HashMap::new(),
            schedules: Vec::new(),
            seq: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        task.init_processors()?;
        Ok(task)
    }

    /// Runs one input record through the graph; what it writes is appended to `out`.
    pub fn process(
        &mut self,
        r: &ConsumerRecord,
        out: &mut Vec<Output>,
    ) -> Result<(), StreamsError> {
        self.consumed.insert(
            TopicPartition::new(r.topic.as_str(), r.partition),
            r.offset + 1,
        );
        let Some(&node) = self.sources.get(&r.topic) else {
            return Err(StreamsError::Topology(format!(
                "task {} got a record of '{}', which none of its sources reads",
                self.id, r.topic
            )));
        };
        let topo = self.topo.clone();
        let NodeKind::Source {
            key,
            value,
            table,
            timestamp,
            ..
        } = &topo.nodes[node].kind
        else {
            return Err(StreamsError::Topology(
                "a source is not a source node".into(),
            ));
        };
        let k = key.deserialize(r.key.as_deref());
        let v = if *table && r.value.is_none() {
            Ok(Arc::new(MaybeValue(None)) as Dyn)
        } else {
            value.deserialize(r.value.as_deref()).map(|v| {
                if *table {
                    Arc::new(MaybeValue(Some(v))) as Dyn
                } else {
                    v
                }
            })
        };
        let (k, v) = match (k, v) {
            (Ok(k), Ok(v)) => (k, v),
            (Err(reason), _) => return self.undeserializable(r, "key", reason, out),
            (_, Err(reason)) => return self.undeserializable(r, "value", reason, out),
        };
        let ts = match timestamp {
            Some(f) if !*table => f(&k, &v, r.timestamp),
            _ => r.timestamp,
        };
        self.stream_time = self.stream_time.max(ts);
        let rec = Rec {
            key: k,
            value: v,
            timestamp: ts,
            headers: Arc::new(r.headers.clone()),
        };
        for &c in &topo.nodes[node].children {
            match self.run(c, rec.clone(), out) {
                Err(StreamsError::Processing(reason))
                    if self.settings.on_processing_error == OnProcessingError::LogAndContinue =>
                {
                    self.skip(
                        r,
                        "ProcessingException",
                        format!("processing: {reason}"),
                        out,
                    );
                }
                other => other?,
            }
        }
        if !self.schedules.is_empty() {
            self.punctuate(
                crate::dsl::PunctuationType::StreamTime,
                self.stream_time,
                out,
            )?;
        }
        Ok(())
    }

    fn undeserializable(
        &mut self,
        r: &ConsumerRecord,
        part: &'static str,
        reason: String,
        out: &mut Vec<Output>,
    ) -> Result<(), StreamsError> {
        if self.settings.on_deserialization_error == OnDeserializationError::Fail {
            return Err(StreamsError::Deserialize {
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.offset,
                part,
                reason,
            });
        }
        self.skip(
            r,
            "DeserializationException",
            format!("{part}: {reason}"),
            out,
        );
        Ok(())
    }

    /// Counts a record an error handler skips, logs it, and sends it raw to the dead-letter
    /// topic (with KIP-1034's headers) if one is set.
    fn skip(
        &mut self,
        r: &ConsumerRecord,
        exception: &str,
        message: String,
        out: &mut Vec<Output>,
    ) {
        warn!(task = %self.id, topic = %r.topic, partition = r.partition, offset = r.offset, exception, reason = %message, "skipping a record");
        self.skipped += 1;
        if let Some(dlq) = &self.settings.dead_letter_topic {
            let mut headers = r.headers.clone();
            for (k, v) in [
                ("__streams.errors.exception", exception.to_string()),
                ("__streams.errors.message", message),
                ("__streams.errors.topic", r.topic.clone()),
                ("__streams.errors.partition", r.partition.to_string()),
                ("__streams.errors.offset", r.offset.to_string()),
            ] {
                headers.push((k.to_string(), Some(Bytes::from(v))));
            }
            out.push(Output {
                topic: dlq.clone(),
                partition: None,
                key: r.key.clone(),
                value: r.value.clone(),
                timestamp: r.timestamp,
                headers,
                changelog_of: None,
            });
        }
    }

    fn run(&mut self, node: usize, rec: Rec, out: &mut Vec<Output>) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        let n = &topo.nodes[node];
        let mut fwd: Vec<Rec> = Vec::new();
        match &n.kind {
            NodeKind::Source { .. } => {
                return Err(StreamsError::Topology(format!(
                    "{} has a parent, but sources read topics",
                    n.name
                )))
            }
            NodeKind::Stateless(f) => f(rec, &mut fwd),
            NodeKind::Sink {
                key,
                value,
                partitioner,
                ..
            } => {
                let topic = self.sink_topics.get(&node).cloned().unwrap_or_default();
                let partition = match partitioner {
                    Some(p) => {
                        let count = self.partition_counts.get(&topic).copied().unwrap_or(1);
                        Some(p(&rec.key, &rec.value, count).clamp(0, count - 1))
                    }
                    None => None,
                };
                out.push(Output {
                    topic,
                    partition,
                    key: key.serialize(&rec.key).map_err(StreamsError::Serde)?,
                    value: value.serialize(&rec.value).map_err(StreamsError::Serde)?,
                    timestamp: rec.timestamp,
                    headers: rec.headers.as_ref().clone(),
                    changelog_of: None,
                });
            }
            NodeKind::Aggregate { store, init, add } => {
                let def = &topo.stores[*store];
                let Some(kb) = def.key.serialize(&rec.key).map_err(StreamsError::Serde)? else {
                    // Kafka drops null-key records from aggregations.
                    self.skipped += 1;
                    return Ok(());
                };
                let old = self.get(*store, &kb)?;
                let new = match (&old, init) {
                    (Some(agg), _) => add(&rec.key, &rec.value, agg),
                    (None, Some(init)) => add(&rec.key, &rec.value, &init()),
                    (None, None) => rec.value.clone(),
                };
                if self.settings.cache_max_bytes > 0 {
                    return self.cache_put(node, *store, kb, &rec, new, old, out);
                }
                self.put(*store, &kb, Some(&new), rec.timestamp, out)?;
                fwd.push(Rec {
                    value: Arc::new(Change {
                        new: Some(new),
                        old,
                    }),
                    ..rec
                });
            }
            NodeKind::TableMaterialize { store } => {
                let def = &topo.stores[*store];
                let Some(kb) = def.key.serialize(&rec.key).map_err(StreamsError::Serde)? else {
                    self.skipped += 1;
                    return Ok(());
                };
                let new = crate::record::cast::<MaybeValue>(&rec.value).0.clone();
                let old = self.get(*store, &kb)?;
                self.put(*store, &kb, new.as_ref(), rec.timestamp, out)?;
                if old.is_some() || new.is_some() {
                    fwd.push(Rec {
                        value: Arc::new(Change { new, old }),
                        ..rec
                    });
                }
            }
            NodeKind::TableFilter(pred) => {
                let c = crate::record::cast::<Change>(&rec.value);
                let keep = |v: &Option<Dyn>| v.clone().filter(|v| pred(&rec.key, v));
                let (new, old) = (keep(&c.new), keep(&c.old));
                if new.is_some() || old.is_some() {
                    fwd.push(Rec {
                        value: Arc::new(Change { new, old }),
                        ..rec
                    });
                }
            }
            NodeKind::TableMapValues(f) => {
                let c = crate::record::cast::<Change>(&rec.value);
                let map = |v: &Option<Dyn>| v.as_ref().map(|v| f(&rec.key, v));
                let (new, old) = (map(&c.new), map(&c.old));
                fwd.push(Rec {
                    value: Arc::new(Change { new, old }),
                    ..rec
                });
            }
            NodeKind::WindowAggregate {
                store,
                spec,
                records,
                init,
                add,
                merge,
                wrap,
                ..
            } => {
                let def = &topo.stores[*store];
                let Some(kb) = def.key.serialize(&rec.key).map_err(StreamsError::Serde)? else {
                    self.skipped += 1;
                    return Ok(());
                };
                let now = self.observe(node, rec.timestamp);
                let agg = Agg {
                    store: *store,
                    init: init.as_ref(),
                    add,
                    merge: merge.as_ref(),
                    wrap,
                };
                match spec {
                    WindowSpec::Time(w) => {
                        self.time_windows(&agg, w, &kb, rec, now, out, &mut fwd)?
                    }
                    WindowSpec::Session { gap, grace } => {
                        self.sessions(&agg, *gap, *grace, &kb, rec, now, out, &mut fwd)?
                    }
                    WindowSpec::Sliding { diff, grace } => {
                        let Some(records) = *records else {
                            return Err(StreamsError::Store {
                                store: topo.stores[*store].name.clone(),
                                reason: "a sliding window aggregation without its records".into(),
                            });
                        };
                        let w = Sliding {
                            records,
                            diff: *diff,
                            grace: *grace,
                        };
                        self.sliding(&agg, &w, &kb, rec, now, out, &mut fwd)?
                    }
                }
            }
            NodeKind::Suppress {
                store,
                wait,
                window_end,
            } => {
                let now = self.observe(node, rec.timestamp);
                self.suppress(*store, *wait, window_end, rec, now, out, &mut fwd)?;
            }
            NodeKind::StreamTableJoin {
                table,
                left,
                joiner,
            } => self.stream_table_join(table, *left, joiner, rec, &mut fwd)?,
            NodeKind::GlobalJoin {
                global,
                key_mapper,
                left,
                joiner,
            } => self.global_join(*global, key_mapper, *left, joiner, rec, &mut fwd)?,
            NodeKind::TableJoin {
                other,
                this_is_left,
                kind,
                joiner,
            } => self.table_join(other, *this_is_left, *kind, joiner, rec, &mut fwd)?,
            NodeKind::StreamJoin {
                this_store,
                other_store,
                pending,
                this_is_left,
                kind,
                before,
                after,
                grace,
                time_key,
                joiner,
            } => {
                let j = StreamJoinSide {
                    this_store: *this_store,
                    other_store: *other_store,
                    pending: *pending,
                    this_is_left: *this_is_left,
                    kind: *kind,
                    before: *before,
                    after: *after,
                    grace: *grace,
                    time_key: *time_key,
                    joiner,
                };
                self.stream_join(&j, rec, out, &mut fwd)?;
            }
            NodeKind::Process { .. } => {
                fwd = self.run_processor(node, rec, out)?;
            }
            NodeKind::ToStream(f) => {
                let c = crate::record::cast::<Change>(&rec.value);
                let value = f(c.new.as_ref());
                fwd.push(Rec { value, ..rec });
            }
        }
        for r in fwd {
            for &c in &n.children {
                self.run(c, r.clone(), out)?;
            }
        }
        Ok(())
    }

    /// Advances and returns `node`'s observed stream time.
    fn observe(&mut self, node: usize, ts: i64) -> i64 {
        let t = self.node_time.entry(node).or_insert(i64::MIN);
        *t = (*t).max(ts);
        *t
    }

    pub(super) fn store(
        &mut self,
        store: usize,
    ) -> Result<&mut Box<dyn KeyValueStore>, StreamsError> {
        let name = &self.topo.stores[store].name;
        self.stores
            .get_mut(store)
            .and_then(Option::as_mut)
            .ok_or_else(|| StreamsError::Store {
                store: name.clone(),
                reason: format!("not open in task {}", self.id),
            })
    }

    pub(super) fn get(&mut self, store: usize, key: &[u8]) -> Result<Option<Dyn>, StreamsError> {
        if let Some(v) = self.cached(store, key) {
            return Ok(Some(v));
        }
        let topo = self.topo.clone();
        let def = &topo.stores[store];
        let Some(bytes) = self.store(store)?.get(key)? else {
            return Ok(None);
        };
        def.value
            .deserialize(Some(&bytes))
            .map(Some)
            .map_err(|reason| StreamsError::Store {
                store: def.name.clone(),
                reason: format!("cannot read a stored value: {reason}"),
            })
    }

    /// Writes to the store and, for a logged store, its changelog record.
    pub(super) fn put(
        &mut self,
        store: usize,
        key: &Bytes,
        value: Option<&Dyn>,
        timestamp: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), StreamsError> {
        let topo = self.topo.clone();
        let def = &topo.stores[store];
        let vb = match value {
            Some(v) => def.value.serialize(v).map_err(StreamsError::Serde)?,
            None => None,
        };
        self.put_raw(store, key, vb, timestamp, out)
    }

    /// Writes bytes to the store and, for a logged store, its changelog record.
    pub(super) fn put_raw(
        &mut self,
        store: usize,
        key: &Bytes,
        vb: Option<Bytes>,
        timestamp: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), StreamsError> {
        self.store(store)?.put(key, vb.as_deref())?;
        if let Some(changelog) = &self.changelogs[store] {
            out.push(Output {
                topic: changelog.clone(),
                partition: Some(self.id.partition),
                key: Some(key.clone()),
                value: vb,
                timestamp,
                headers: Vec::new(),
                changelog_of: Some(store),
            });
        }
        Ok(())
    }

    /// Applies a changelog record to a store while restoring (no changelog write back).
    pub fn restore(
        &mut self,
        store: usize,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StreamsError> {
        self.store(store)?.put(key, value)
    }

    /// Flushes every store (before a checkpoint).
    pub fn flush(&mut self) -> Result<(), StreamsError> {
        for s in self.stores.iter_mut().flatten() {
            s.flush()?;
        }
        Ok(())
    }

    /// The stores of this task, by index (for queries and the test driver).
    pub fn store_ref(&self, store: usize) -> Option<&dyn KeyValueStore> {
        self.stores.get(store).and_then(|s| s.as_deref())
    }

    /// The record cache's values of `store` for keys in `[from, to)`.
    pub fn cached_range(
        &self,
        store: usize,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Vec<(Bytes, Dyn)> {
        let Some(c) = self.caches.get(&store) else {
            return Vec::new();
        };
        c.entries
            .iter()
            .filter(|(k, _)| {
                from.is_none_or(|f| k.as_ref() >= f) && to.is_none_or(|t| k.as_ref() < t)
            })
            .map(|(k, e)| (k.clone(), e.new.clone()))
            .collect()
    }

    /// A value of `store` the record cache holds and the store does not have yet.
    pub fn cached_value(&self, store: usize, key: &[u8]) -> Option<Dyn> {
        self.cached(store, key)
    }
}
