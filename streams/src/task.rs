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

use crate::dsl::{TimeWindows, Window};
use crate::error::StreamsError;
use crate::record::{Change, Dyn, Output, Rec};
use crate::store::KeyValueStore;
use crate::topology::{
    Aggregator, Initializer, MaybeValue, Merger, NodeKind, Topology, WindowSpec, WindowedKeyFn,
};

/// The functions of a windowed aggregation node.
struct Agg<'a> {
    store: usize,
    init: Option<&'a Initializer>,
    add: &'a Aggregator,
    merge: Option<&'a Merger>,
    wrap: &'a WindowedKeyFn,
}

/// Flips the sign bit so that signed timestamps sort as unsigned big-endian bytes.
fn flip(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

fn unflip(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// `[len u32][key]`: a key's windows are one contiguous range.
fn key_prefix(kb: &[u8]) -> Vec<u8> {
    let mut p = (kb.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(kb);
    p
}

/// A window store's key: `[len u32][key][end][start]`, times sign-flipped big-endian.
fn window_key(kb: &[u8], end: i64, start: i64) -> Bytes {
    let mut k = key_prefix(kb);
    k.extend_from_slice(&flip(end).to_be_bytes());
    k.extend_from_slice(&flip(start).to_be_bytes());
    Bytes::from(k)
}

fn decode_window(k: &[u8], prefix: usize) -> Option<Window> {
    let rest = k.get(prefix..)?;
    if rest.len() != 16 {
        return None;
    }
    Some(Window {
        end: unflip(&rest[..8])?,
        start: unflip(&rest[8..])?,
    })
}

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

/// Per-task settings from the streams config.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskSettings {
    pub on_deserialization_error: OnDeserializationError,
    /// `errors.dead.letter.queue.topic.name` (KIP-1034): skipped records go there, raw.
    pub dead_letter_topic: Option<String>,
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
    ) -> Self {
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
        Self {
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
        }
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
            self.run(c, rec.clone(), out)?;
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
        warn!(task = %self.id, topic = %r.topic, partition = r.partition, offset = r.offset, part, reason = %reason, "skipping a record that cannot be deserialized");
        self.skipped += 1;
        if let Some(dlq) = &self.settings.dead_letter_topic {
            let mut headers = r.headers.clone();
            for (k, v) in [
                (
                    "__streams.errors.exception",
                    "DeserializationException".to_string(),
                ),
                ("__streams.errors.message", format!("{part}: {reason}")),
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
        Ok(())
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
                init,
                add,
                merge,
                wrap,
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

    #[allow(clippy::too_many_arguments)]
    fn time_windows(
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
    fn sessions(
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
    fn suppress(
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

    fn store(&mut self, store: usize) -> Result<&mut Box<dyn KeyValueStore>, StreamsError> {
        let name = &self.topo.stores[store].name;
        self.stores
            .get_mut(store)
            .and_then(Option::as_mut)
            .ok_or_else(|| StreamsError::Store {
                store: name.clone(),
                reason: format!("not open in task {}", self.id),
            })
    }

    fn get(&mut self, store: usize, key: &[u8]) -> Result<Option<Dyn>, StreamsError> {
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
    fn put(
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
    fn put_raw(
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
}
