//! [`TopologyTestDriver`]: runs a topology without a cluster, for unit tests (Kafka's
//! `TopologyTestDriver`). Every topic has one partition; records piped in are processed at
//! once, and what the topology writes to a topic it also reads (a repartition topic) is
//! processed in turn, so a test sees the final outputs as soon as `pipe` returns. Stores are
//! in memory (whatever the topology asked for) and their changelog records are kept
//! apart, for inspection.
//!
//! # Examples
//! ```
//! use strom_streams::{serdes, Produced, StreamsBuilder, TopologyTestDriver};
//!
//! let b = StreamsBuilder::new();
//! b.stream("in", serdes::string(), serdes::string())
//!     .map_values(|v: &String| v.to_uppercase())
//!     .to("out", Produced::with(serdes::string(), serdes::string()));
//! let driver = TopologyTestDriver::new(b.build().unwrap());
//! let input = driver.input_topic("in", serdes::string(), serdes::string());
//! let output = driver.output_topic("out", serdes::string(), serdes::string());
//! input.pipe("k".to_string(), "hello".to_string()).unwrap();
//! assert_eq!(output.read_key_value(), Some(("k".to_string(), "HELLO".to_string())));
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use strom_client::consumer::ConsumerRecord;

use crate::error::StreamsError;
use crate::record::{Dyn, Output};
use crate::serdes::{ErasedSerde, SerdeRef};
use crate::store::memory::MemoryStore;
use crate::store::KeyValueStore;
use crate::task::{OnDeserializationError, OnProcessingError, Task, TaskId, TaskSettings};
use crate::topology::Topology;

const APPLICATION_ID: &str = "test-driver";

/// (topic, key, value, timestamp, headers) of a record on its way into the topology.
type Piped = (
    String,
    Option<Bytes>,
    Option<Bytes>,
    i64,
    Vec<(String, Option<Bytes>)>,
);

struct Inner {
    topo: Arc<Topology>,
    tasks: BTreeMap<usize, Task>,
    /// Topic (cluster name) -> the subtopology that reads it.
    readers: HashMap<String, usize>,
    offsets: HashMap<String, i64>,
    outputs: HashMap<String, VecDeque<Output>>,
    settings: TaskSettings,
    /// Timestamps of piped records without one.
    clock: i64,
    /// The wall clock punctuations see ([`TopologyTestDriver::advance_wall_clock`]).
    wall_clock: i64,
}

impl Inner {
    fn pipe(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
    ) -> Result<(), StreamsError> {
        let mut queue = VecDeque::from([(topic.to_string(), key, value, timestamp, Vec::new())]);
        while let Some((topic, key, value, timestamp, headers)) = queue.pop_front() {
            if let Some(g) = self.topo.globals.iter().position(|g| g.topic == topic) {
                // A global table's topic: straight into its store.
                if let Some(k) = key {
                    self.settings.globals[g].write().put(&k, value.as_deref())?;
                }
                continue;
            }
            let Some(&sub) = self.readers.get(&topic) else {
                return Err(StreamsError::Topology(format!(
                    "the topology does not read topic '{topic}'"
                )));
            };
            let offset = self.offsets.entry(topic.clone()).or_insert(0);
            let record = ConsumerRecord {
                topic,
                partition: 0,
                offset: *offset,
                timestamp,
                key,
                value,
                headers,
                leader_epoch: 0,
            };
            *offset += 1;
            let mut out = Vec::new();
            let task = self.task(sub)?;
            task.process(&record, &mut out)?;
            task.maintain(&mut out)?;
            queue.extend(self.file(out));
        }
        Ok(())
    }

    /// Keeps outputs for reading; returns those the topology itself reads (repartition
    /// topics), to process next.
    fn file(&mut self, out: Vec<Output>) -> Vec<Piped> {
        let mut again = Vec::new();
        for o in out {
            if o.changelog_of.is_none() && self.readers.contains_key(&o.topic) {
                again.push((
                    o.topic.clone(),
                    o.key.clone(),
                    o.value.clone(),
                    o.timestamp,
                    o.headers.clone(),
                ));
            }
            self.outputs
                .entry(o.topic.clone())
                .or_default()
                .push_back(o);
        }
        again
    }

    /// Files outputs and processes those the topology reads.
    fn route(&mut self, out: Vec<Output>) -> Result<(), StreamsError> {
        for (topic, key, value, ts, _) in self.file(out) {
            self.pipe(&topic, key, value, ts)?;
        }
        Ok(())
    }

    fn task(&mut self, sub: usize) -> Result<&mut Task, StreamsError> {
        let topo = self.topo.clone();
        let settings = self.settings.clone();
        if let std::collections::btree_map::Entry::Vacant(e) = self.tasks.entry(sub) {
            let stores = topo
                .stores
                .iter()
                .map(|s| {
                    (s.subtopology == sub)
                        .then(|| Box::new(MemoryStore::default()) as Box<dyn KeyValueStore>)
                })
                .collect();
            e.insert(Task::new(
                TaskId {
                    subtopology: sub,
                    partition: 0,
                },
                topo,
                APPLICATION_ID,
                stores,
                Arc::new(HashMap::new()),
                settings,
            )?);
        }
        self.tasks
            .get_mut(&sub)
            .ok_or_else(|| StreamsError::Topology("no task".into()))
    }
}

/// Runs a topology in-process, without a cluster.
pub struct TopologyTestDriver {
    inner: Rc<RefCell<Inner>>,
}

impl TopologyTestDriver {
    pub fn new(topology: Topology) -> Self {
        Self::with_error_handling(topology, OnDeserializationError::Fail, None)
    }

    /// A driver whose tasks handle undeserializable records, and processors' failures, as
    /// configured (the runtime's `default.deserialization.exception.handler`,
    /// `processing.exception.handler` and `errors.dead.letter.queue.topic.name`).
    pub fn with_error_handling(
        topology: Topology,
        on_deserialization_error: OnDeserializationError,
        dead_letter_topic: Option<&str>,
    ) -> Self {
        let globals = topology.globals.len();
        let mut readers = HashMap::new();
        for (i, s) in topology.subtopologies.iter().enumerate() {
            for t in &s.sources {
                readers.insert(t.resolve(APPLICATION_ID), i);
            }
        }
        Self {
            inner: Rc::new(RefCell::new(Inner {
                topo: Arc::new(topology),
                tasks: BTreeMap::new(),
                readers,
                offsets: HashMap::new(),
                outputs: HashMap::new(),
                settings: TaskSettings {
                    on_deserialization_error,
                    // One switch for both handlers in tests: fail, or log and continue.
                    on_processing_error: match on_deserialization_error {
                        OnDeserializationError::Fail => OnProcessingError::Fail,
                        OnDeserializationError::LogAndContinue => OnProcessingError::LogAndContinue,
                    },
                    dead_letter_topic: dead_letter_topic.map(str::to_string),
                    cache_max_bytes: 0,
                    globals: Arc::new(
                        (0..globals)
                            .map(|_| parking_lot::RwLock::new(MemoryStore::default()))
                            .collect(),
                    ),
                },
                clock: 0,
                wall_clock: 0,
            })),
        }
    }

    /// The application id internal topics are named with here (`test-driver`).
    pub fn application_id(&self) -> &'static str {
        APPLICATION_ID
    }

    /// A handle to pipe typed records into `topic`.
    pub fn input_topic<K: 'static + Send + Sync, V: 'static + Send + Sync>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            inner: self.inner.clone(),
            topic: topic.to_string(),
            key,
            value,
        }
    }

    /// A handle to read what the topology wrote to `topic` (internal topics by their full
    /// name: `test-driver-<name>-changelog`).
    pub fn output_topic<K, V>(
        &self,
        topic: &str,
        key: SerdeRef<K>,
        value: SerdeRef<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            inner: self.inner.clone(),
            topic: topic.to_string(),
            key,
            value,
        }
    }

    /// Records the deserialization handler skipped so far.
    pub fn skipped(&self) -> u64 {
        self.inner.borrow().tasks.values().map(|t| t.skipped).sum()
    }

    /// A driver whose aggregations cache their updates (`statestore.cache.max.bytes`)
    /// until [`commit`](Self::commit), as a running application does between commits.
    pub fn with_cache(topology: Topology, cache_max_bytes: usize) -> Self {
        let d = Self::new(topology);
        d.inner.borrow_mut().settings.cache_max_bytes = cache_max_bytes;
        d
    }

    /// What a commit does to the tasks: cached aggregate updates are written and forwarded.
    pub fn commit(&self) -> Result<(), StreamsError> {
        let mut inner = self.inner.borrow_mut();
        let subs: Vec<usize> = inner.tasks.keys().copied().collect();
        for sub in subs {
            let mut out = Vec::new();
            inner.task(sub)?.flush_cache(&mut out)?;
            inner.route(out)?;
        }
        Ok(())
    }

    /// Moves the wall clock forward by `ms` and fires the wall-clock punctuations due;
    /// what they write is processed like any output.
    pub fn advance_wall_clock(&self, ms: i64) -> Result<(), StreamsError> {
        let mut inner = self.inner.borrow_mut();
        inner.wall_clock += ms;
        let now = inner.wall_clock;
        let subs: Vec<usize> = (0..inner.topo.subtopologies.len()).collect();
        for sub in subs {
            let mut out = Vec::new();
            inner.task(sub)?.punctuate_wall_clock(now, &mut out)?;
            inner.route(out)?;
        }
        Ok(())
    }

    /// Records windowed aggregations dropped as late (beyond the grace period).
    pub fn late_dropped(&self) -> u64 {
        self.inner
            .borrow()
            .tasks
            .values()
            .map(|t| t.late_dropped)
            .sum()
    }

    /// The raw records written to `topic` and not read yet (headers included).
    pub fn read_raw(&self, topic: &str) -> Vec<Output> {
        self.inner
            .borrow_mut()
            .outputs
            .get_mut(topic)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// The value of `key` in store `store`, if present.
    pub fn store_get<K: Send + Sync + 'static, V: Clone + 'static>(
        &self,
        store: &str,
        key: K,
    ) -> Result<Option<V>, StreamsError> {
        let mut inner = self.inner.borrow_mut();
        let topo = inner.topo.clone();
        let Some(idx) = topo.stores.iter().position(|s| s.name == store) else {
            return Err(StreamsError::Store {
                store: store.to_string(),
                reason: "no such store".into(),
            });
        };
        let def = &topo.stores[idx];
        let kb = def
            .key
            .serialize(&(Arc::new(key) as Dyn))
            .map_err(StreamsError::Serde)?;
        let task = inner.task(def.subtopology)?;
        let Some(s) = task.store_ref(idx) else {
            return Ok(None);
        };
        let Some(vb) = kb.map(|k| s.get(&k)).transpose()?.flatten() else {
            return Ok(None);
        };
        let v = def
            .value
            .deserialize(Some(&vb))
            .map_err(StreamsError::Serde)?;
        Ok((*v).downcast_ref::<V>().cloned())
    }
}

/// Pipes typed records into one topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<K, V> {
    inner: Rc<RefCell<Inner>>,
    topic: String,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
}

impl<K: Send + Sync + 'static, V: Send + Sync + 'static> TestInputTopic<K, V> {
    /// Pipes a record timestamped by the driver's clock (which then advances by 1 ms).
    pub fn pipe(&self, key: K, value: V) -> Result<(), StreamsError> {
        let ts = {
            let mut i = self.inner.borrow_mut();
            i.clock += 1;
            i.clock
        };
        self.pipe_at(key, value, ts)
    }

    /// Pipes a record with this event timestamp (ms).
    pub fn pipe_at(&self, key: K, value: V, timestamp: i64) -> Result<(), StreamsError> {
        let k = ErasedSerde::new(self.key.clone())
            .serialize(&(Arc::new(key) as Dyn))
            .map_err(StreamsError::Serde)?;
        let v = ErasedSerde::new(self.value.clone())
            .serialize(&(Arc::new(value) as Dyn))
            .map_err(StreamsError::Serde)?;
        self.pipe_raw(k, v, timestamp)
    }

    /// Pipes raw bytes (to test what happens with input the serdes cannot read).
    pub fn pipe_raw(
        &self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        timestamp: i64,
    ) -> Result<(), StreamsError> {
        self.inner
            .borrow_mut()
            .pipe(&self.topic, key, value, timestamp)
    }
}

/// Reads, in order, what a topology wrote to one topic.
pub struct TestOutputTopic<K, V> {
    inner: Rc<RefCell<Inner>>,
    topic: String,
    key: SerdeRef<K>,
    value: SerdeRef<V>,
}

impl<K: 'static, V: 'static> TestOutputTopic<K, V> {
    /// The next record, or `None` when all were read.
    pub fn read_key_value(&self) -> Option<(K, V)> {
        self.read_record().map(|(k, v, _)| (k, v))
    }

    /// The next record with its timestamp.
    pub fn read_record(&self) -> Option<(K, V, i64)> {
        let o = self
            .inner
            .borrow_mut()
            .outputs
            .get_mut(&self.topic)?
            .pop_front()?;
        let k = self.key.deserialize(o.key.as_deref()).ok()?;
        let v = self.value.deserialize(o.value.as_deref()).ok()?;
        Some((k, v, o.timestamp))
    }

    /// Every record not read yet.
    pub fn read_key_values(&self) -> Vec<(K, V)> {
        std::iter::from_fn(|| self.read_key_value()).collect()
    }

    /// The latest value per key of the records not read yet.
    pub fn read_key_values_to_map(&self) -> BTreeMap<K, V>
    where
        K: Ord,
    {
        self.read_key_values().into_iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .borrow()
            .outputs
            .get(&self.topic)
            .is_none_or(VecDeque::is_empty)
    }

    /// The number of records not read yet.
    pub fn len(&self) -> usize {
        self.inner
            .borrow()
            .outputs
            .get(&self.topic)
            .map_or(0, VecDeque::len)
    }
}
