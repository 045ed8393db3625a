//! A stream thread's tasks: opening them (stores, checkpoints, restoring from changelogs),
//! feeding them records, sending what they write, committing, and closing them.
//!
//! A commit ties three things together:
//!
//! ```text
//!  at_least_once:  flush producer ─▶ every output and changelog record acked
//!                  ─▶ commit input offsets (OffsetCommit) ─▶ write checkpoints
//!  exactly_once_v2: [begin] outputs + changelog records ... ─▶ TxnOffsetCommit(input offsets)
//!                  ─▶ EndTxn(commit): all of it visible at once, or none of it
//! ```
//!
//! Checkpoints (`<state.dir>/<application.id>/<task>/.checkpoint`) say up to which changelog
//! offset a RocksDB store already holds the data. Under exactly-once a store may hold writes
//! of a transaction that was then aborted, so the checkpoint is written only when a task
//! closes cleanly after a commit, and removed when the task opens: a crash leaves none, and
//! the store is then wiped and rebuilt from the changelog.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use strom_client::consumer::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, ConsumerRecord, IsolationLevel, OffsetReset,
};
use strom_client::producer::{DeliveryFuture, Producer, ProducerError, ProducerRecord};
use strom_client::TopicPartition;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::assignor::ThreadAssignment;
use super::{ProcessingGuarantee, Shared};
use crate::error::StreamsError;
use crate::record::Output;
use crate::store::memory::MemoryStore;
use crate::store::rocks::RocksStore;
use crate::store::KeyValueStore;
use crate::task::{Task, TaskId, TaskSettings};
use crate::topology::StoreKind;

/// A changelog partition to read into a store: (partition, from offset, task, store).
type Restore = (TopicPartition, i64, TaskId, usize);

pub(crate) struct TaskManager {
    shared: Arc<Shared>,
    pub producer: Arc<Producer>,
    tasks: BTreeMap<TaskId, Task>,
    /// Records sent and not yet acknowledged, in send order, with the (task, store) of
    /// changelog records.
    deliveries: VecDeque<(Option<(TaskId, usize)>, DeliveryFuture)>,
    /// Next offset of each (task, store)'s changelog partition: what a checkpoint records.
    changelog_next: BTreeMap<(TaskId, usize), i64>,
    in_txn: bool,
    /// Records processed since the last commit.
    dirty: bool,
    pub last_commit: Instant,
    /// This member's identity, refreshed after each poll (TxnOffsetCommit checks it).
    pub group: Option<ConsumerGroupMetadata>,
    /// An error raised inside a rebalance callback, for the thread to act on after `poll`.
    pub error: Option<StreamsError>,
    /// Set before the consumer closes after a failure: give tasks up without committing.
    pub closing_dirty: bool,
    /// What the last rebalance assigned (the standbys to keep).
    assignment: Arc<parking_lot::Mutex<ThreadAssignment>>,
    /// Standby tasks: stores kept up to date from their changelogs, never processing.
    standbys: BTreeMap<TaskId, Task>,
    /// Next changelog offset per standby (task, store).
    standby_next: BTreeMap<(TaskId, usize), i64>,
    standby_consumer: Option<Consumer>,
    /// When repartition topics were last purged, and up to where.
    last_purge: Instant,
    purged_to: BTreeMap<TopicPartition, i64>,
    /// Records fetched and not processed yet, per input partition: a task with an empty
    /// partition may wait for it (`max.task.idle.ms`).
    queued: BTreeMap<TopicPartition, VecDeque<ConsumerRecord>>,
    /// Since when each task has waited for an empty partition with nothing left to fetch.
    idle_since: BTreeMap<TaskId, Instant>,
    /// Each open task's input partitions, as assigned (what it waits for).
    inputs: BTreeMap<TaskId, Vec<TopicPartition>>,
    /// Partitions whose queue grew past [`QUEUE_PAUSE`]: the thread pauses their fetching.
    paused: BTreeSet<TopicPartition>,
}

/// Queued records of a partition above which its fetching pauses (Kafka Streams'
/// `buffered.records.per.partition`), and under which it resumes.
const QUEUE_PAUSE: usize = 1000;
const QUEUE_RESUME: usize = 500;

impl TaskManager {
    pub fn new(
        shared: Arc<Shared>,
        producer: Arc<Producer>,
        assignment: Arc<parking_lot::Mutex<ThreadAssignment>>,
    ) -> Self {
        Self {
            shared,
            producer,
            tasks: BTreeMap::new(),
            deliveries: VecDeque::new(),
            changelog_next: BTreeMap::new(),
            in_txn: false,
            dirty: false,
            last_commit: Instant::now(),
            group: None,
            error: None,
            closing_dirty: false,
            assignment,
            standbys: BTreeMap::new(),
            standby_next: BTreeMap::new(),
            standby_consumer: None,
            last_purge: Instant::now(),
            purged_to: BTreeMap::new(),
            queued: BTreeMap::new(),
            idle_since: BTreeMap::new(),
            inputs: BTreeMap::new(),
            paused: BTreeSet::new(),
        }
    }

    fn eos(&self) -> bool {
        self.shared.config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2
    }

    pub fn task_ids(&self) -> Vec<TaskId> {
        self.tasks.keys().copied().collect()
    }

    fn task_of(&self, tp: &TopicPartition) -> Option<TaskId> {
        self.shared.readers.get(&tp.topic).map(|&sub| TaskId {
            subtopology: sub,
            partition: tp.partition,
        })
    }

    /// Task `id`'s input partitions as assigned (co-partitioned sources share its number).
    fn task_partitions(&self, id: TaskId) -> Vec<TopicPartition> {
        match self.inputs.get(&id) {
            Some(inputs) => inputs.clone(),
            // Not opened through an assignment: what it has queued.
            None => self
                .queued
                .keys()
                .filter(|tp| self.task_of(tp) == Some(id))
                .cloned()
                .collect(),
        }
    }

    /// The partitions to pause and to resume fetching, by how many records they have queued.
    pub fn backpressure(&mut self) -> (Vec<TopicPartition>, Vec<TopicPartition>) {
        let mut pause = Vec::new();
        let mut resume = Vec::new();
        for (tp, q) in &self.queued {
            if q.len() > QUEUE_PAUSE && self.paused.insert(tp.clone()) {
                pause.push(tp.clone());
            }
        }
        self.paused.retain(|tp| {
            let low = self.queued.get(tp).is_none_or(|q| q.len() < QUEUE_RESUME);
            if low {
                resume.push(tp.clone());
            }
            !low
        });
        (pause, resume)
    }

    /// Takes the queued records each task may process now (see [`take_in_order`]).
    fn ready(
        &mut self,
        lag: &impl Fn(&TopicPartition) -> Option<i64>,
        now: Instant,
    ) -> Vec<ConsumerRecord> {
        let ids: BTreeSet<TaskId> = self
            .queued
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .filter_map(|(tp, _)| self.task_of(tp))
            .collect();
        let idle_ms = self.shared.config.max_task_idle_ms;
        let mut out = Vec::new();
        for id in ids {
            let partitions = self.task_partitions(id);
            let mut since = self.idle_since.get(&id).copied();
            let mut waited = false;
            take_in_order(
                &mut self.queued,
                &partitions,
                |empty| {
                    let go = may_skip_empty(empty, lag, idle_ms, &mut since, now);
                    waited |= !go;
                    go
                },
                &mut out,
            );
            let starved = partitions
                .iter()
                .any(|tp| self.queued.get(tp).is_none_or(VecDeque::is_empty));
            match since {
                // Still short of a partition: the idle time runs on.
                Some(t) if starved => {
                    self.idle_since.insert(id, t);
                }
                _ => {
                    self.idle_since.remove(&id);
                }
            }
            if waited {
                debug!(task = %id, "waiting for an empty input partition (max.task.idle.ms)");
            }
        }
        out
    }

    /// Drops the queued records of tasks that closed: whoever opens them next reads from
    /// the committed offsets.
    fn forget_queued(&mut self, ids: &[TaskId]) {
        let readers = &self.shared.readers;
        self.queued.retain(|tp, _| {
            let id = readers.get(&tp.topic).map(|&sub| TaskId {
                subtopology: sub,
                partition: tp.partition,
            });
            id.is_none_or(|id| !ids.contains(&id))
        });
        for id in ids {
            self.idle_since.remove(id);
            if let Some(inputs) = self.inputs.remove(id) {
                // The consumer forgets the pause of a partition it gives up.
                for tp in inputs {
                    self.paused.remove(&tp);
                }
            }
        }
    }

    fn task_dir(&self, id: TaskId) -> PathBuf {
        self.shared
            .config
            .state_dir
            .join(&self.shared.config.application_id)
            .join(id.to_string())
    }

    /// Opens the tasks of newly assigned partitions and restores their stores.
    pub async fn open(&mut self, assigned: &[TopicPartition]) -> Result<(), StreamsError> {
        for tp in assigned {
            if let Some(id) = self.task_of(tp) {
                let inputs = self.inputs.entry(id).or_default();
                if !inputs.contains(tp) {
                    inputs.push(tp.clone());
                    inputs.sort();
                }
            }
        }
        let mut new: Vec<TaskId> = assigned.iter().filter_map(|tp| self.task_of(tp)).collect();
        new.sort();
        new.dedup();
        new.retain(|id| !self.tasks.contains_key(id));
        let mut restores: Vec<Restore> = Vec::new();
        for id in new {
            if let Some(task) = self.standbys.remove(&id) {
                // A warm standby: only the changelog tail since its last update.
                let app = self.shared.config.application_id.clone();
                let topo = self.shared.topo.clone();
                for ((t, store), next) in std::mem::take(&mut self.standby_next) {
                    if t != id {
                        self.standby_next.insert((t, store), next);
                        continue;
                    }
                    self.changelog_next.insert((id, store), next);
                    let tp = TopicPartition::new(
                        topo.stores[store].changelog().resolve(&app),
                        id.partition,
                    );
                    restores.push((tp, next, id, store));
                }
                info!(task = %id, "standby task becomes active");
                self.tasks.insert(id, task);
                continue;
            }
            let (task, from) = self.open_task(id)?;
            restores.extend(from);
            self.tasks.insert(id, task);
        }
        if !restores.is_empty() {
            self.restore(restores).await?;
        }
        Ok(())
    }

    fn open_task(&mut self, id: TaskId) -> Result<(Task, Vec<Restore>), StreamsError> {
        let topo = self.shared.topo.clone();
        let app = &self.shared.config.application_id;
        let dir = self.task_dir(id);
        let io = |e: std::io::Error, what: &Path| StreamsError::Store {
            store: format!("task {id}"),
            reason: format!("{}: {e}", what.display()),
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
        let checkpoint = read_checkpoint(&dir.join(".checkpoint"));
        if self.eos() {
            // Trusted once: a crash from here on must leave no checkpoint behind.
            let _ = std::fs::remove_file(dir.join(".checkpoint"));
        }
        let mut stores: Vec<Option<Box<dyn KeyValueStore>>> = Vec::new();
        let mut restores = Vec::new();
        for (idx, def) in topo.stores.iter().enumerate() {
            if def.subtopology != id.subtopology {
                stores.push(None);
                continue;
            }
            let start = match def.kind {
                StoreKind::InMemory => None,
                StoreKind::RocksDb => checkpoint.get(&def.name).copied(),
            };
            let store: Box<dyn KeyValueStore> = match def.kind {
                StoreKind::InMemory => Box::new(MemoryStore::default()),
                StoreKind::RocksDb => {
                    let path = dir.join("rocksdb").join(&def.name);
                    if start.is_none() && def.logged && path.exists() {
                        // Nothing vouches for what it holds: rebuild it from the changelog.
                        info!(task = %id, store = %def.name, "no checkpoint: wiping the store to restore it");
                        std::fs::remove_dir_all(&path).map_err(|e| io(e, &path))?;
                    }
                    std::fs::create_dir_all(&path).map_err(|e| io(e, &path))?;
                    Box::new(RocksStore::open(&def.name, &path)?)
                }
            };
            stores.push(Some(store));
            if def.logged {
                let from = start.unwrap_or(0);
                self.changelog_next.insert((id, idx), from);
                restores.push((
                    TopicPartition::new(def.changelog().resolve(app), id.partition),
                    from,
                    id,
                    idx,
                ));
            }
        }
        let task = Task::new(
            id,
            topo,
            app,
            stores,
            self.shared.partition_counts.clone(),
            TaskSettings {
                on_deserialization_error: self.shared.config.on_deserialization_error,
                on_processing_error: self.shared.config.on_processing_error,
                dead_letter_topic: self.shared.config.dead_letter_topic.clone(),
                globals: self.shared.globals.clone(),
                cache_max_bytes: self.shared.config.cache_max_bytes
                    / self.shared.config.num_stream_threads.max(1)
                    / (self.tasks.len() + 1),
            },
        )?;
        Ok((task, restores))
    }

    /// Reads each changelog partition from its start offset to its end into the store.
    async fn restore(&mut self, restores: Vec<Restore>) -> Result<(), StreamsError> {
        let started = Instant::now();
        let mut cfg = ConsumerConfig::new(self.shared.config.bootstrap_servers.clone());
        cfg.enable_auto_commit = false;
        cfg.auto_offset_reset = OffsetReset::Earliest;
        cfg.max_poll_records = 10_000;
        cfg.fetch_max_wait = Duration::from_millis(50);
        if self.eos() {
            cfg.isolation_level = IsolationLevel::ReadCommitted;
        }
        let mut consumer = Consumer::new(cfg)?;
        consumer
            .assign(restores.iter().map(|r| r.0.clone()).collect())
            .await?;
        let mut target: HashMap<TopicPartition, (TaskId, usize)> = HashMap::new();
        for (tp, from, id, store) in &restores {
            consumer.seek(tp, *from)?;
            target.insert(tp.clone(), (*id, *store));
        }
        let mut restored = 0u64;
        loop {
            let records = consumer.poll(Duration::from_millis(200)).await?;
            if records.is_empty() && consumer.at_end() {
                break;
            }
            for r in records {
                let tp = TopicPartition::new(r.topic.as_str(), r.partition);
                let Some(&(id, store)) = target.get(&tp) else {
                    continue;
                };
                let Some(key) = r.key.as_deref() else {
                    continue;
                };
                if let Some(task) = self.tasks.get_mut(&id) {
                    task.restore(store, key, r.value.as_deref())?;
                }
                restored += 1;
            }
        }
        for (tp, (id, store)) in &target {
            let next = consumer.position(tp).await?;
            self.changelog_next.insert((*id, *store), next);
        }
        consumer.close().await;
        info!(
            partitions = restores.len(),
            records = restored,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored state stores"
        );
        self.shared
            .metrics
            .restored
            .fetch_add(restored, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Queues a poll's records and runs what their tasks may process now through them
    /// (see [`TaskManager::ready`]), sending what they write. `lag` is the consumer's lag of
    /// a partition: records it has not fetched yet (None: not known).
    pub async fn process(
        &mut self,
        records: Vec<ConsumerRecord>,
        lag: impl Fn(&TopicPartition) -> Option<i64>,
    ) -> Result<(), StreamsError> {
        // The consumer hands records out a partition at a time: one lookup per run.
        let mut records = records.into_iter().peekable();
        while let Some(r) = records.next() {
            let tp = TopicPartition::new(r.topic.as_str(), r.partition);
            let q = self.queued.entry(tp).or_default();
            q.push_back(r);
            while let Some(next) = records.next_if(|n| {
                n.partition == q.back().map_or(-1, |b| b.partition)
                    && q.back().is_some_and(|b| b.topic == n.topic)
            }) {
                q.push_back(next);
            }
        }
        let records = self.ready(&lag, Instant::now());
        if records.is_empty() {
            return Ok(());
        }
        let mut out: Vec<(TaskId, Output)> = Vec::new();
        let mut buf = Vec::new();
        let skipped_before = self.skipped();
        let late_before: u64 = self.tasks.values().map(|t| t.late_dropped).sum();
        let count = records.len() as u64;
        for r in &records {
            let tp = TopicPartition::new(r.topic.as_str(), r.partition);
            let Some(id) = self.task_of(&tp) else {
                return Err(StreamsError::Topology(format!(
                    "no subtopology reads '{}'",
                    r.topic
                )));
            };
            let Some(task) = self.tasks.get_mut(&id) else {
                return Err(StreamsError::TaskMigrated(format!(
                    "a record of {tp} arrived, but task {id} is not open here"
                )));
            };
            task.process(r, &mut buf)?;
            out.extend(buf.drain(..).map(|o| (id, o)));
        }
        self.dirty = true;
        self.shared.metrics.skipped.fetch_add(
            self.skipped() - skipped_before,
            std::sync::atomic::Ordering::Relaxed,
        );
        let late: u64 = self.tasks.values().map(|t| t.late_dropped).sum();
        self.shared
            .metrics
            .late_dropped
            .fetch_add(late - late_before, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .metrics
            .processed
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        self.send(out).await
    }

    async fn send(&mut self, out: Vec<(TaskId, Output)>) -> Result<(), StreamsError> {
        if out.is_empty() {
            return Ok(());
        }
        if self.eos() && !self.in_txn {
            self.producer.begin_transaction().await?;
            self.in_txn = true;
        }
        for (id, o) in out {
            let tag = o.changelog_of.map(|s| (id, s));
            let record = ProducerRecord {
                topic: o.topic,
                partition: o.partition,
                key: o.key,
                value: o.value,
                headers: o.headers,
                timestamp: Some(o.timestamp),
            };
            let delivery = self.producer.send(record).await?;
            self.deliveries.push_back((tag, delivery));
        }
        self.collect_deliveries(false).await
    }

    /// Takes in acknowledgements, oldest first: those already in (or, with `all`, every
    /// one outstanding). Past `MAX_IN_FLIGHT` unacknowledged records it waits for the
    /// oldest, so memory stays bounded between commits.
    pub async fn collect_deliveries(&mut self, all: bool) -> Result<(), StreamsError> {
        const MAX_IN_FLIGHT: usize = 100_000;
        loop {
            let block = all || self.deliveries.len() > MAX_IN_FLIGHT;
            let Some((_, front)) = self.deliveries.front_mut() else {
                break;
            };
            let result = if block {
                front.await
            } else {
                match (&mut *front).now_or_never() {
                    Some(r) => r,
                    None => return Ok(()),
                }
            };
            let tag = self.deliveries.pop_front().and_then(|(tag, _)| tag);
            let meta = result?;
            if let Some(key) = tag {
                let next = self.changelog_next.entry(key).or_insert(0);
                *next = (*next).max(meta.offset + 1);
            }
        }
        Ok(())
    }

    /// The next offset to read of every input partition processed, for a commit.
    pub fn offsets(&self, of: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64)> {
        self.tasks
            .values()
            .flat_map(|t| t.consumed.iter())
            .filter(|(tp, _)| of.is_none_or(|of| of.contains(tp)))
            .map(|(tp, o)| (tp.clone(), *o))
            .collect()
    }

    /// Purges join buffers no partner can reach any more (before a commit, so that their
    /// changelog tombstones are part of it).
    pub async fn maintain(&mut self) -> Result<(), StreamsError> {
        let mut out = Vec::new();
        for (id, task) in self.tasks.iter_mut() {
            let mut buf = Vec::new();
            task.flush_cache(&mut buf)?;
            task.maintain(&mut buf)?;
            out.extend(buf.into_iter().map(|o| (*id, o)));
        }
        if !out.is_empty() {
            self.dirty = true;
            self.send(out).await?;
        }
        Ok(())
    }

    /// Fires wall-clock punctuations that are due and sends what they write.
    pub async fn punctuate_wall_clock(&mut self) -> Result<(), StreamsError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut out = Vec::new();
        for (id, task) in self.tasks.iter_mut() {
            let mut buf = Vec::new();
            task.punctuate_wall_clock(now, &mut buf)?;
            out.extend(buf.into_iter().map(|o| (*id, o)));
        }
        if !out.is_empty() {
            self.dirty = true;
            self.send(out).await?;
        }
        Ok(())
    }

    pub fn commit_due(&self) -> bool {
        self.last_commit.elapsed() >= self.shared.config.commit_interval()
    }

    /// Exactly once: commits the open transaction with the input offsets.
    pub async fn commit_transaction(&mut self) -> Result<(), StreamsError> {
        self.last_commit = Instant::now();
        if !self.dirty && !self.in_txn {
            return Ok(());
        }
        let group = self.group.clone().ok_or_else(|| {
            StreamsError::TaskMigrated("no group generation to commit under".into())
        })?;
        if !self.in_txn {
            self.producer.begin_transaction().await?;
            self.in_txn = true;
        }
        let offsets = self.offsets(None);
        let result = async {
            if !offsets.is_empty() {
                self.producer
                    .send_offsets_to_transaction(&offsets, &group)
                    .await?;
            }
            self.producer.commit_transaction().await
        }
        .await;
        if let Err(e) = result {
            return Err(migrated_or(e));
        }
        self.in_txn = false;
        self.dirty = false;
        self.collect_deliveries(true).await?;
        self.shared
            .metrics
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        debug!(partitions = offsets.len(), "committed a transaction");
        Ok(())
    }

    /// At least once, before the offsets are committed: every output and changelog record
    /// is acknowledged. Returns the offsets to commit.
    pub async fn flush_for_commit(&mut self) -> Result<Vec<(TopicPartition, i64)>, StreamsError> {
        self.last_commit = Instant::now();
        self.producer.flush().await;
        self.collect_deliveries(true).await?;
        Ok(if self.dirty {
            self.offsets(None)
        } else {
            Vec::new()
        })
    }

    /// At least once, after the offsets are committed.
    pub fn committed(&mut self) -> Result<(), StreamsError> {
        self.dirty = false;
        self.shared
            .metrics
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ids = self.task_ids();
        for id in ids {
            self.checkpoint(id)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, id: TaskId) -> Result<(), StreamsError> {
        let topo = self.shared.topo.clone();
        let Some(task) = self.tasks.get_mut(&id) else {
            return Ok(());
        };
        task.flush()?;
        let offsets: BTreeMap<String, i64> = self
            .changelog_next
            .range((id, 0)..=(id, usize::MAX))
            .map(|((_, s), o)| (topo.stores[*s].name.clone(), *o))
            .collect();
        let path = self.task_dir(id).join(".checkpoint");
        write_checkpoint(&path, &offsets).map_err(|e| StreamsError::Store {
            store: format!("task {id}"),
            reason: format!("writing {}: {e}", path.display()),
        })
    }

    /// Gives up `revoked` partitions' tasks after committing what they did.
    pub async fn revoke(&mut self, revoked: &[TopicPartition]) -> Result<(), StreamsError> {
        let mut ids: Vec<TaskId> = revoked.iter().filter_map(|tp| self.task_of(tp)).collect();
        ids.sort();
        ids.dedup();
        ids.retain(|id| self.tasks.contains_key(id));
        if ids.is_empty() {
            return Ok(());
        }
        if self.closing_dirty {
            self.close_dirty(&ids).await;
            return Ok(());
        }
        // Cached aggregate updates go out (and into the changelogs) before the commit.
        self.maintain().await?;
        if self.eos() {
            // One transaction covers every task of the thread: commit it whole.
            if let Err(e) = self.commit_transaction().await {
                self.close_dirty(&ids).await;
                return Err(e);
            }
        } else {
            // The offsets of these partitions are committed by the consumer once this
            // returns (the listener queued them); their outputs must be acked first.
            self.producer.flush().await;
            self.collect_deliveries(true).await?;
        }
        for id in &ids {
            self.checkpoint(*id)?;
            self.tasks.remove(id);
            self.changelog_next.retain(|(t, _), _| t != id);
        }
        self.forget_queued(&ids);
        info!(tasks = ?ids.iter().map(ToString::to_string).collect::<Vec<_>>(), "closed tasks cleanly");
        Ok(())
    }

    /// Drops tasks without committing (lost partitions, a failed commit): under
    /// exactly-once the open transaction is aborted and no checkpoint is left, so their
    /// stores are rebuilt from the changelogs next time.
    pub async fn close_dirty(&mut self, ids: &[TaskId]) {
        if self.in_txn {
            if let Err(e) = self.producer.abort_transaction().await {
                debug!(error = %e, "aborting the transaction failed (the coordinator aborts it on timeout)");
            }
            self.in_txn = false;
        }
        self.deliveries.clear();
        self.forget_queued(ids);
        for id in ids {
            self.tasks.remove(id);
            self.changelog_next.retain(|(t, _), _| t != id);
            if !self.eos() {
                // At least once, a checkpoint from the last commit stays valid.
                continue;
            }
            let _ = std::fs::remove_file(self.task_dir(*id).join(".checkpoint"));
        }
        self.dirty = false;
        if !ids.is_empty() {
            warn!(tasks = ?ids.iter().map(ToString::to_string).collect::<Vec<_>>(), "closed tasks without committing");
        }
    }

    /// The partitions' tasks are gone (this member was dropped from the group).
    pub async fn lose(&mut self, lost: &[TopicPartition]) {
        let mut ids: Vec<TaskId> = lost.iter().filter_map(|tp| self.task_of(tp)).collect();
        ids.sort();
        ids.dedup();
        self.close_dirty(&ids).await;
    }

    /// Opens the standbys the last rebalance assigned and closes those it took away.
    pub async fn sync_standbys(&mut self) -> Result<(), StreamsError> {
        let desired: BTreeSet<TaskId> = self
            .assignment
            .lock()
            .standby
            .iter()
            .copied()
            .filter(|id| !self.tasks.contains_key(id))
            .collect();
        let have: BTreeSet<TaskId> = self.standbys.keys().copied().collect();
        if desired == have {
            return Ok(());
        }
        for id in have.difference(&desired) {
            self.close_standby(*id)?;
        }
        let mut seeks = Vec::new();
        for id in desired.difference(&have) {
            let (task, from) = self.open_task(*id)?;
            for (tp, offset, id, store) in from {
                self.standby_next.insert((id, store), offset);
                seeks.push((tp, offset));
            }
            self.standbys.insert(*id, task);
        }
        let app = self.shared.config.application_id.clone();
        let topo = self.shared.topo.clone();
        let tps: Vec<TopicPartition> = self
            .standby_next
            .keys()
            .map(|(id, store)| {
                TopicPartition::new(topo.stores[*store].changelog().resolve(&app), id.partition)
            })
            .collect();
        if tps.is_empty() {
            self.standby_consumer = None;
            return Ok(());
        }
        if self.standby_consumer.is_none() {
            let mut cfg = ConsumerConfig::new(self.shared.config.bootstrap_servers.clone());
            cfg.enable_auto_commit = false;
            cfg.auto_offset_reset = OffsetReset::Earliest;
            cfg.fetch_max_wait = Duration::from_millis(20);
            if self.eos() {
                cfg.isolation_level = IsolationLevel::ReadCommitted;
            }
            self.standby_consumer = Some(Consumer::new(cfg)?);
        }
        if let Some(c) = self.standby_consumer.as_mut() {
            c.assign(tps).await?;
            for (tp, offset) in seeks {
                c.seek(&tp, offset)?;
            }
        }
        info!(standbys = ?self.standbys.keys().map(ToString::to_string).collect::<Vec<_>>(), "standby tasks");
        Ok(())
    }

    /// Applies what the standbys' changelogs gained since the last call.
    pub async fn update_standbys(&mut self) -> Result<(), StreamsError> {
        let Some(c) = self.standby_consumer.as_mut() else {
            return Ok(());
        };
        let records = c.poll(Duration::from_millis(5)).await?;
        let topo = self.shared.topo.clone();
        let app = &self.shared.config.application_id;
        for r in records {
            let Some(store) = topo
                .stores
                .iter()
                .position(|s| s.logged && s.changelog().resolve(app) == r.topic)
            else {
                continue;
            };
            let id = TaskId {
                subtopology: topo.stores[store].subtopology,
                partition: r.partition,
            };
            let (Some(task), Some(key)) = (self.standbys.get_mut(&id), r.key.as_deref()) else {
                continue;
            };
            task.restore(store, key, r.value.as_deref())?;
            self.standby_next.insert((id, store), r.offset + 1);
        }
        Ok(())
    }

    /// Closes every standby with a checkpoint (clean shutdown).
    pub fn close_standbys(&mut self) -> Result<(), StreamsError> {
        let ids: Vec<TaskId> = self.standbys.keys().copied().collect();
        for id in ids {
            self.close_standby(id)?;
        }
        self.standby_consumer = None;
        Ok(())
    }

    fn close_standby(&mut self, id: TaskId) -> Result<(), StreamsError> {
        let Some(mut task) = self.standbys.remove(&id) else {
            return Ok(());
        };
        task.flush()?;
        let topo = self.shared.topo.clone();
        let mut offsets = BTreeMap::new();
        for ((t, store), next) in std::mem::take(&mut self.standby_next) {
            if t == id {
                offsets.insert(topo.stores[store].name.clone(), next);
            } else {
                self.standby_next.insert((t, store), next);
            }
        }
        let path = self.task_dir(id).join(".checkpoint");
        write_checkpoint(&path, &offsets).map_err(|e| StreamsError::Store {
            store: format!("task {id}"),
            reason: format!("writing {}: {e}", path.display()),
        })
    }

    /// An interactive query: `None` if `task` is not active here, else the value (or
    /// `Some(None)` for an absent key).
    pub fn query(
        &self,
        task: TaskId,
        store: usize,
        key: &[u8],
    ) -> Result<Option<Option<crate::record::Dyn>>, StreamsError> {
        let Some(t) = self.tasks.get(&task) else {
            return Ok(None);
        };
        let Some(s) = t.store_ref(store) else {
            return Ok(None);
        };
        // The record cache holds the newest values until the next commit.
        if let Some(v) = t.cached_value(store, key) {
            return Ok(Some(Some(v)));
        }
        let def = &self.shared.topo.stores[store];
        match s.get(key)? {
            Some(b) => def
                .value
                .deserialize(Some(&b))
                .map(|v| Some(Some(v)))
                .map_err(StreamsError::Serde),
            None => Ok(Some(None)),
        }
    }

    /// The entries of `store` with `from <= key bytes < to` in this thread's active tasks.
    pub fn scan(
        &self,
        store: usize,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<Vec<(crate::record::Dyn, crate::record::Dyn)>, StreamsError> {
        let def = &self.shared.topo.stores[store];
        let mut out = Vec::new();
        for t in self.tasks.values() {
            let Some(s) = t.store_ref(store) else {
                continue;
            };
            // The store's entries, with the record cache's newer values over them.
            let mut entries: BTreeMap<bytes::Bytes, crate::record::Dyn> = BTreeMap::new();
            for (k, v) in s.range(from, to)? {
                let v = def
                    .value
                    .deserialize(Some(&v))
                    .map_err(StreamsError::Serde)?;
                entries.insert(k, v);
            }
            entries.extend(t.cached_range(store, from, to));
            for (k, v) in entries {
                out.push((
                    def.key.deserialize(Some(&k)).map_err(StreamsError::Serde)?,
                    v,
                ));
            }
        }
        Ok(out)
    }

    /// Application server -> active tasks, from the last rebalance.
    pub fn hosts(&self) -> BTreeMap<String, BTreeSet<TaskId>> {
        self.assignment.lock().hosts.clone()
    }

    /// After a commit: deletes what the tasks consumed and committed of repartition topics
    /// (DeleteRecords), every `repartition.purge.interval.ms`. Failures only log: the next
    /// purge deletes up to a later offset anyway.
    pub async fn purge_repartitions(&mut self) {
        if self.last_purge.elapsed() < self.shared.config.repartition_purge_interval {
            return;
        }
        self.last_purge = Instant::now();
        let app = &self.shared.config.application_id;
        let internal: BTreeSet<String> = self
            .shared
            .topo
            .repartitions
            .iter()
            .map(|r| r.topic.resolve(app))
            .collect();
        let due: Vec<(TopicPartition, i64)> = self
            .offsets(None)
            .into_iter()
            .filter(|(tp, o)| {
                internal.contains(&tp.topic) && self.purged_to.get(tp).is_none_or(|p| o > p)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let mut admin = strom_client::admin::Admin::new(&self.shared.config.bootstrap_servers);
        for (tp, offset) in due {
            match admin.delete_records(&tp, offset).await {
                Ok(_) => {
                    self.purged_to.insert(tp, offset);
                }
                Err(e) => debug!(%tp, offset, error = %e, "purging a repartition topic failed"),
            }
        }
    }

    /// Records skipped by the deserialization handler, over open tasks.
    pub fn skipped(&self) -> u64 {
        self.tasks.values().map(|t| t.skipped).sum()
    }
}

/// Takes, from a task's partition queues, the records it may process now, in the order it
/// should see them: each partition's in offset order, and across partitions the lowest
/// timestamp first (Kafka Streams' choice among a task's partition queues), so that a
/// stream record meets the table as of its time. While one of `partitions` is empty, the
/// task goes on only if `may_skip_empty` allows it (`max.task.idle.ms`).
fn take_in_order(
    queues: &mut BTreeMap<TopicPartition, VecDeque<ConsumerRecord>>,
    partitions: &[TopicPartition],
    mut may_skip_empty: impl FnMut(&[&TopicPartition]) -> bool,
    out: &mut Vec<ConsumerRecord>,
) {
    if let [only] = partitions {
        // One input: nothing to wait for or merge.
        if let Some(q) = queues.get_mut(only) {
            out.extend(q.drain(..));
        }
        return;
    }
    loop {
        let empty: Vec<&TopicPartition> = partitions
            .iter()
            .filter(|tp| queues.get(*tp).is_none_or(VecDeque::is_empty))
            .collect();
        if empty.len() == partitions.len() || (!empty.is_empty() && !may_skip_empty(&empty)) {
            return;
        }
        let next = partitions
            .iter()
            .filter_map(|tp| queues.get(tp)?.front().map(|r| (r.timestamp, tp)))
            .min_by_key(|&(ts, _)| ts);
        let Some((_, tp)) = next else {
            return;
        };
        if let Some(r) = queues.get_mut(tp).and_then(VecDeque::pop_front) {
            out.push(r);
        }
    }
}

/// Kafka Streams' readiness of a task that has an empty input partition (KIP-695): not
/// while an empty partition has records still to fetch (lag above 0, or not known yet);
/// then at once with `max_task_idle_ms` 0, after idling that long above 0, always with -1.
fn may_skip_empty(
    empty: &[&TopicPartition],
    lag: &impl Fn(&TopicPartition) -> Option<i64>,
    max_task_idle_ms: i64,
    idle_since: &mut Option<Instant>,
    now: Instant,
) -> bool {
    if max_task_idle_ms < 0 {
        return true;
    }
    if empty.iter().any(|tp| lag(tp).is_none_or(|l| l > 0)) {
        return false;
    }
    if max_task_idle_ms == 0 {
        return true;
    }
    let since = *idle_since.get_or_insert(now);
    now.duration_since(since) >= Duration::from_millis(max_task_idle_ms as u64)
}

/// Fencing and generation errors mean another member owns the tasks now.
fn migrated_or(e: ProducerError) -> StreamsError {
    let s = e.to_string();
    if e.is_fatal()
        || s.contains("ILLEGAL_GENERATION")
        || s.contains("UNKNOWN_MEMBER_ID")
        || s.contains("FENCED_INSTANCE_ID")
        || s.contains("REBALANCE_IN_PROGRESS")
    {
        StreamsError::TaskMigrated(s)
    } else {
        StreamsError::Producer(e)
    }
}

fn read_checkpoint(path: &Path) -> BTreeMap<String, i64> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_checkpoint(path: &Path, offsets: &BTreeMap<String, i64>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(offsets).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, partition: i32, offset: i64, timestamp: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.into(),
            partition,
            offset,
            timestamp,
            key: None,
            value: None,
            headers: Vec::new(),
            leader_epoch: 0,
        }
    }

    #[test]
    fn records_merge_by_timestamp_keeping_each_partition_in_order() {
        let (mut queues, parts) = queued(vec![
            rec("orders", 0, 10, 50),
            rec("orders", 0, 11, 20), // out of order in its partition: stays after 10
            rec("users", 0, 3, 30),
            rec("users", 0, 4, 60),
        ]);
        let mut out = Vec::new();
        take_in_order(&mut queues, &parts, |_| true, &mut out);
        assert_eq!(
            names(&out),
            [("users", 3), ("orders", 10), ("orders", 11), ("users", 4)]
        );
        assert!(queues.values().all(VecDeque::is_empty));
    }

    fn queued(
        records: Vec<ConsumerRecord>,
    ) -> (
        BTreeMap<TopicPartition, VecDeque<ConsumerRecord>>,
        Vec<TopicPartition>,
    ) {
        let mut queues: BTreeMap<TopicPartition, VecDeque<ConsumerRecord>> = BTreeMap::new();
        for r in records {
            queues
                .entry(TopicPartition::new(r.topic.as_str(), r.partition))
                .or_default()
                .push_back(r);
        }
        let parts = vec![
            TopicPartition::new("orders", 0),
            TopicPartition::new("users", 0),
        ];
        (queues, parts)
    }

    fn names(records: &[ConsumerRecord]) -> Vec<(&str, i64)> {
        records
            .iter()
            .map(|r| (r.topic.as_str(), r.offset))
            .collect()
    }

    #[test]
    fn a_task_waits_for_an_empty_partition_with_records_still_to_fetch() {
        // Only orders came in; users has 5 records the consumer has not handed out yet.
        let (mut queues, parts) = queued(vec![rec("orders", 0, 0, 100), rec("orders", 0, 1, 200)]);
        let now = Instant::now();
        let lag_of = |users: Option<i64>| {
            move |tp: &TopicPartition| if tp.topic == "users" { users } else { Some(0) }
        };
        for idle in [0, 500] {
            let mut since = None;
            let mut out = Vec::new();
            for (users, why) in [
                (Some(5), "waits while users has a lag"),
                (None, "and while its lag is not known"),
            ] {
                let lag = lag_of(users);
                take_in_order(
                    &mut queues,
                    &parts,
                    |e| may_skip_empty(e, &lag, idle, &mut since, now),
                    &mut out,
                );
                assert!(out.is_empty(), "{why} (idle {idle})");
            }
        }
        // -1 never waits.
        let mut out = Vec::new();
        let (mut q, _) = queued(vec![rec("orders", 0, 0, 100)]);
        let lag = lag_of(Some(5));
        take_in_order(
            &mut q,
            &parts,
            |e| may_skip_empty(e, &lag, -1, &mut None, now),
            &mut out,
        );
        assert_eq!(names(&out), [("orders", 0)]);

        // Caught up (lag 0): 0 goes on at once; 500 waits 500 ms first.
        let caught_up = lag_of(Some(0));
        let mut out = Vec::new();
        take_in_order(
            &mut queues,
            &parts,
            |e| may_skip_empty(e, &caught_up, 0, &mut None, now),
            &mut out,
        );
        assert_eq!(names(&out), [("orders", 0), ("orders", 1)]);
        let (mut queues, _) = queued(vec![rec("orders", 0, 0, 100)]);
        let mut since = None;
        let mut out = Vec::new();
        let at = |ms: u64| now + Duration::from_millis(ms);
        for ms in [0, 499] {
            take_in_order(
                &mut queues,
                &parts,
                |e| may_skip_empty(e, &caught_up, 500, &mut since, at(ms)),
                &mut out,
            );
            assert!(out.is_empty(), "idling at {ms} ms");
        }
        assert_eq!(since, Some(now), "the idle time counts from the first wait");
        take_in_order(
            &mut queues,
            &parts,
            |e| may_skip_empty(e, &caught_up, 500, &mut since, at(500)),
            &mut out,
        );
        assert_eq!(names(&out), [("orders", 0)]);
    }
}
