//! The worker's task runners: a source task's poll → transform → convert → produce loop with
//! its offset commits, a sink task's consume → convert → transform → put → flush → commit
//! loop, and the error handling both share (`errors.*`, the dead letter queue).
//!
//! Source offsets are stored only after every record before them is acknowledged by the
//! cluster (at least once), or, with `exactly.once.source.support=enabled`, in the same
//! transaction as the records (exactly once). Sink offsets are committed only after the
//! task's `flush` says the target has the data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value as Json;
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
use strom_client::producer::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::converter::{self, Converter};
use crate::data::{ConnectRecord, Value};
use crate::metrics::Metrics;
use crate::plugin::{ConnectorPlugin, OffsetReader, Plugins};
use crate::props::Props;
use crate::store::{offset_key, ConfigStore, OffsetStore, Status, StatusKey, StatusStore};
use crate::transforms::Chain;

/// What every task runner of this worker shares.
pub struct Worker {
    /// `host:port` of this worker's REST listener: its id in statuses.
    pub id: String,
    pub bootstrap: String,
    pub config: Props,
    pub plugins: Plugins,
    pub configs: Arc<dyn ConfigStore>,
    pub statuses: Arc<dyn StatusStore>,
    pub offsets: Arc<dyn OffsetStore>,
    /// The producer of at-least-once source tasks and of dead letter queues.
    pub producer: Producer,
    /// `exactly.once.source.support=enabled` (distributed mode).
    pub exactly_once_source: bool,
    /// `offset.storage.topic`, where transactional source tasks write offsets.
    pub offset_topic: Option<String>,
    pub group_id: String,
    pub metrics: Metrics,
}

impl Worker {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    pub fn ms(&self, key: &str, default: u64) -> Duration {
        Duration::from_millis(
            self.setting(key)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default),
        )
    }

    /// A connector config's converter, or the worker's.
    fn converter(
        &self,
        connector: &Props,
        which: &str,
        plugin_default: Option<&str>,
    ) -> anyhow::Result<Arc<dyn Converter>> {
        if connector.contains_key(which) {
            return converter::from_config(connector, which).map_err(anyhow::Error::msg);
        }
        if let Some(class) = plugin_default {
            let mut only = Props::new();
            only.insert(which.to_string(), class.to_string());
            return converter::from_config(&only, which).map_err(anyhow::Error::msg);
        }
        converter::from_config(&self.config, which).map_err(anyhow::Error::msg)
    }

    /// The replication factor for topics the worker creates (-1: the broker's default).
    pub fn replication(&self, key: &str) -> i16 {
        self.setting(key).and_then(|v| v.parse().ok()).unwrap_or(-1)
    }
}

/// `errors.*` of a connector config.
#[derive(Clone)]
pub struct ErrorPolicy {
    pub tolerate_all: bool,
    pub retry_timeout: Duration,
    pub retry_delay_max: Duration,
    pub log: bool,
    pub log_messages: bool,
    pub dlq: Option<String>,
    pub dlq_context_headers: bool,
    pub dlq_replication: i16,
}

impl ErrorPolicy {
    pub fn from_config(c: &Props) -> Self {
        let ms = |k: &str, d: u64| {
            Duration::from_millis(c.get(k).and_then(|v| v.parse().ok()).unwrap_or(d))
        };
        Self {
            tolerate_all: c.get("errors.tolerance").is_some_and(|t| t == "all"),
            retry_timeout: ms("errors.retry.timeout", 0),
            retry_delay_max: ms("errors.retry.delay.max.ms", 60_000),
            log: c.get("errors.log.enable").is_some_and(|t| t == "true"),
            log_messages: c
                .get("errors.log.include.messages")
                .is_some_and(|t| t == "true"),
            dlq: c
                .get("errors.deadletterqueue.topic.name")
                .filter(|t| !t.is_empty())
                .cloned(),
            dlq_context_headers: c
                .get("errors.deadletterqueue.context.headers.enable")
                .is_some_and(|t| t == "true"),
            dlq_replication: c
                .get("errors.deadletterqueue.topic.replication.factor")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1),
        }
    }
}

/// A connector's record pipeline: its converters, transforms and error policy.
pub struct Pipeline {
    pub key: Arc<dyn Converter>,
    pub value: Arc<dyn Converter>,
    pub chain: Chain,
    pub policy: ErrorPolicy,
}

impl Pipeline {
    pub fn new(
        w: &Worker,
        connector: &Props,
        plugin: &dyn ConnectorPlugin,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            key: w.converter(connector, "key.converter", plugin.default_converter())?,
            value: w.converter(connector, "value.converter", plugin.default_converter())?,
            chain: Chain::from_config(connector).map_err(|(k, e)| anyhow::anyhow!("{k}: {e}"))?,
            policy: ErrorPolicy::from_config(connector),
        })
    }
}

/// Where in the pipeline a record failed (Kafka's `__connect.errors.stage`).
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    KeyConverter,
    ValueConverter,
    Transformation,
    TaskPut,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
        }
    }
}

/// Identifies a task in logs, statuses and DLQ headers.
#[derive(Debug, Clone)]
pub struct TaskId {
    pub connector: String,
    pub task: usize,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.connector, self.task)
    }
}

/// Handles a record that failed at `stage`: Err (the task fails) under `errors.tolerance=none`,
/// otherwise logged, sent to the DLQ when there is one, and skipped.
async fn tolerate(
    w: &Worker,
    policy: &ErrorPolicy,
    id: &TaskId,
    stage: Stage,
    error: &str,
    original: Option<&ConsumerRecord>,
) -> anyhow::Result<()> {
    w.metrics.record_error(id);
    if !policy.tolerate_all {
        return Err(anyhow::anyhow!("{} failed: {error}", stage.name()));
    }
    if policy.log {
        match (policy.log_messages, original) {
            (true, Some(r)) => {
                warn!(task = %id, stage = stage.name(), error, topic = %r.topic, partition = r.partition, offset = r.offset, value = ?r.value, "skipping a record that failed")
            }
            _ => warn!(task = %id, stage = stage.name(), error, "skipping a record that failed"),
        }
    }
    if let (Some(dlq), Some(r)) = (&policy.dlq, original) {
        let mut rec = ProducerRecord {
            topic: dlq.clone(),
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: Some(r.timestamp),
            ..ProducerRecord::default()
        };
        if policy.dlq_context_headers {
            let h = |k: &str, v: String| (k.to_string(), Some(Bytes::from(v)));
            rec.headers.extend([
                h("__connect.errors.topic", r.topic.clone()),
                h("__connect.errors.partition", r.partition.to_string()),
                h("__connect.errors.offset", r.offset.to_string()),
                h("__connect.errors.connector.name", id.connector.clone()),
                h("__connect.errors.task.id", id.task.to_string()),
                h("__connect.errors.stage", stage.name().to_string()),
                h(
                    "__connect.errors.exception.class.name",
                    "org.apache.kafka.connect.errors.DataException".into(),
                ),
                h("__connect.errors.exception.message", error.to_string()),
            ]);
        }
        w.producer.send(rec).await?.await?;
    }
    Ok(())
}

/// Creates the DLQ topic when it does not exist (as Kafka Connect does).
async fn ensure_topic(bootstrap: &str, topic: &str, replication: i16) -> anyhow::Result<()> {
    Admin::new(bootstrap)
        .create_topic_if_missing(&NewTopic::new(topic, 1, replication))
        .await
        .map(drop)
        .map_err(|e| anyhow::anyhow!("cannot create topic {topic}: {e}"))
}

/// The plugin a connector config names.
pub fn plugin_for(w: &Worker, config: &Props) -> anyhow::Result<Arc<dyn ConnectorPlugin>> {
    let class = config
        .get("connector.class")
        .ok_or_else(|| anyhow::anyhow!("connector.class is missing"))?;
    w.plugins.find(class).ok_or_else(|| {
        anyhow::anyhow!(
            "Failed to find any class that implements Connector and which name matches {class}"
        )
    })
}

struct StoredOffsets {
    store: Arc<dyn OffsetStore>,
    connector: String,
}

#[async_trait]
impl OffsetReader for StoredOffsets {
    async fn offset(&self, partition: &Json) -> Option<Json> {
        match self.store.get(&self.connector, partition).await {
            Ok(o) => o,
            Err(e) => {
                warn!(connector = %self.connector, error = %e, "reading source offsets failed");
                None
            }
        }
    }
}

/// Runs a source task until `stop` says so or it fails.
pub async fn run_source(
    w: Arc<Worker>,
    id: TaskId,
    connector: Props,
    task_config: Props,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let plugin = plugin_for(&w, &connector)?;
    let mut task = plugin
        .source_task()
        .ok_or_else(|| anyhow::anyhow!("{} is not a source connector", plugin.class()))?;
    let pipe = Pipeline::new(&w, &connector, &*plugin)?;
    let reader = Arc::new(StoredOffsets {
        store: w.offsets.clone(),
        connector: id.connector.clone(),
    });
    // Exactly once: a transactional producer per task. Initialising it fences any older
    // copy of the task and aborts what that copy left open, so the offsets read next are
    // the last committed ones.
    let txn = if w.exactly_once_source {
        let tid = format!("{}-{}-{}", w.group_id, id.connector, id.task);
        let mut pc = ProducerConfig::new(&w.bootstrap).with_transactional_id(tid);
        pc.linger = Duration::from_millis(5);
        let p = Producer::new(pc).await?;
        p.init_transactions().await?;
        Some(p)
    } else {
        None
    };
    task.start(&task_config, reader).await?;
    let flush_every = w.ms("offset.flush.interval.ms", 60_000);
    let mut last_flush = Instant::now();
    // Each record sent, with its source position, until the cluster acknowledges it.
    let mut pending: Vec<(DeliveryFuture, Option<(Json, Json)>)> = Vec::new();
    let mut offsets: BTreeMap<String, (Json, Json)> = BTreeMap::new();
    let mut topics_seen = std::collections::HashSet::new();
    info!(task = %id, exactly_once = txn.is_some(), "source task running");
    let result: anyhow::Result<()> = async {
        loop {
            let records = tokio::select! {
                _ = stop.changed() => break,
                r = task.poll() => r?,
            };
            if records.is_empty()
                && txn.is_none()
                && last_flush.elapsed() < flush_every
                && !task.wants_commit()
            {
                continue;
            }
            if let Some(p) = &txn {
                if records.is_empty() {
                    continue;
                }
                p.begin_transaction().await?;
            }
            let producer = txn.as_ref().unwrap_or(&w.producer);
            for rec in records {
                let position = rec.source_partition.clone().zip(rec.source_offset.clone());
                if let Some((p, o)) = &position {
                    offsets.insert(offset_key(&id.connector, p), (p.clone(), o.clone()));
                }
                let Some(out) = source_record(&w, &pipe, &id, rec).await? else {
                    continue;
                };
                w.metrics.record_polled(&id, 1);
                if !topics_seen.contains(&out.topic) {
                    ensure_source_topic(&w, &connector, &out.topic).await?;
                    topics_seen.insert(out.topic.clone());
                    let active = Status {
                        state: "ACTIVE".into(),
                        trace: None,
                        worker_id: w.id.clone(),
                    };
                    w.statuses
                        .put(
                            StatusKey::Topic(id.connector.clone(), out.topic.clone()),
                            Some(active),
                        )
                        .await;
                }
                pending.push((producer.send(out).await?, position));
            }
            if let Some(p) = &txn {
                // The offsets go in the same transaction as the records they cover.
                if let Some(topic) = &w.offset_topic {
                    for (key, (_, o)) in std::mem::take(&mut offsets) {
                        p.send(ProducerRecord {
                            topic: topic.clone(),
                            key: Some(Bytes::from(key)),
                            value: Some(Bytes::from(o.to_string())),
                            ..ProducerRecord::default()
                        })
                        .await?;
                    }
                }
                await_deliveries(&mut *task, &mut pending).await?;
                p.commit_transaction().await?;
                task.commit().await?;
            } else if last_flush.elapsed() >= flush_every || task.wants_commit() {
                flush_source(&w, &id, &mut *task, &mut pending, &mut offsets).await?;
                task.commit().await?;
                last_flush = Instant::now();
            }
        }
        Ok(())
    }
    .await;
    if result.is_ok() && txn.is_none() {
        flush_source(&w, &id, &mut *task, &mut pending, &mut offsets).await?;
    }
    task.stop().await;
    if let Some(p) = txn {
        p.close().await;
    }
    result
}

/// Makes sure a source task's topic exists: Kafka Connect's topic creation (KIP-158) when
/// the connector sets `topic.creation.default.replication.factor` and `.partitions`
/// (other `topic.creation.default.*` keys become topic configs), otherwise a clear error.
async fn ensure_source_topic(w: &Worker, connector: &Props, topic: &str) -> anyhow::Result<()> {
    let mut admin = Admin::new(&w.bootstrap);
    match admin.describe_topic(topic).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(3) => {}
        Err(e) => return Err(anyhow::anyhow!("cannot describe topic {topic}: {e}")),
    }
    let creation_enabled = w.setting("topic.creation.enable") != Some("false");
    let prefix = "topic.creation.default.";
    let rf = connector
        .get("topic.creation.default.replication.factor")
        .and_then(|v| v.parse::<i16>().ok());
    let partitions = connector
        .get("topic.creation.default.partitions")
        .and_then(|v| v.parse::<i32>().ok());
    let (Some(rf), Some(partitions), true) = (rf, partitions, creation_enabled) else {
        anyhow::bail!(
            "topic '{topic}' does not exist: create it, or set topic.creation.default.replication.factor and topic.creation.default.partitions on the connector"
        );
    };
    let mut new = NewTopic::new(topic, partitions, rf);
    for (k, v) in connector {
        if let Some(cfg) = k.strip_prefix(prefix) {
            if cfg != "replication.factor" && cfg != "partitions" {
                new = new.with_config(cfg, v);
            }
        }
    }
    let created = admin
        .create_topic_if_missing(&new)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create topic {topic}: {e}"))?;
    if created {
        info!(
            topic,
            partitions,
            replication_factor = rf,
            "created the source topic (topic.creation.default.*)"
        );
    }
    Ok(())
}

/// Waits for every record sent so far, telling the task where each went.
async fn await_deliveries(
    task: &mut dyn crate::plugin::SourceTask,
    pending: &mut Vec<(DeliveryFuture, Option<(Json, Json)>)>,
) -> anyhow::Result<()> {
    for (d, position) in pending.drain(..) {
        let meta = d.await?;
        if let Some((p, o)) = position {
            task.delivered(&p, &o, &meta.topic, meta.partition, meta.offset);
        }
    }
    Ok(())
}

/// Waits for every record sent so far, then stores the offsets they cover.
async fn flush_source(
    w: &Worker,
    id: &TaskId,
    task: &mut dyn crate::plugin::SourceTask,
    pending: &mut Vec<(DeliveryFuture, Option<(Json, Json)>)>,
    offsets: &mut BTreeMap<String, (Json, Json)>,
) -> anyhow::Result<()> {
    await_deliveries(task, pending).await?;
    if offsets.is_empty() {
        return Ok(());
    }
    let batch: Vec<(Json, Option<Json>)> = std::mem::take(offsets)
        .into_values()
        .map(|(p, o)| (p, Some(o)))
        .collect();
    w.offsets.put(&id.connector, batch).await
}

async fn source_record(
    w: &Worker,
    pipe: &Pipeline,
    id: &TaskId,
    rec: ConnectRecord,
) -> anyhow::Result<Option<ProducerRecord>> {
    let rec = match pipe.chain.apply(rec) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => {
            tolerate(w, &pipe.policy, id, Stage::Transformation, &e, None).await?;
            return Ok(None);
        }
    };
    let key = match pipe
        .key
        .from_connect(&rec.topic, rec.key_schema.as_ref(), &rec.key)
    {
        Ok(k) => k,
        Err(e) => {
            tolerate(w, &pipe.policy, id, Stage::KeyConverter, &e.0, None).await?;
            return Ok(None);
        }
    };
    let value = match pipe
        .value
        .from_connect(&rec.topic, rec.value_schema.as_ref(), &rec.value)
    {
        Ok(v) => v,
        Err(e) => {
            tolerate(w, &pipe.policy, id, Stage::ValueConverter, &e.0, None).await?;
            return Ok(None);
        }
    };
    Ok(Some(ProducerRecord {
        topic: rec.topic,
        partition: rec.partition,
        key,
        value,
        headers: rec
            .headers
            .into_iter()
            .map(|(k, v)| {
                let bytes = match v {
                    Value::Null => None,
                    Value::Bytes(b) => Some(b),
                    v => Some(Bytes::from(v.to_text())),
                };
                (k, bytes)
            })
            .collect(),
        timestamp: rec.timestamp,
    }))
}

/// The topics a sink connector reads (`topics`, comma separated).
pub fn sink_topics(connector: &Props) -> Vec<String> {
    crate::props::list(connector, "topics")
}

/// The consumer group of a sink connector (Kafka Connect's `connect-<name>`).
pub fn sink_group(connector: &str) -> String {
    format!("connect-{connector}")
}

/// Runs a sink task until `stop` says so or it fails.
pub async fn run_sink(
    w: Arc<Worker>,
    id: TaskId,
    connector: Props,
    task_config: Props,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let plugin = plugin_for(&w, &connector)?;
    let mut task = plugin
        .sink_task()
        .ok_or_else(|| anyhow::anyhow!("{} is not a sink connector", plugin.class()))?;
    let pipe = Pipeline::new(&w, &connector, &*plugin)?;
    let policy = &pipe.policy;
    if let Some(dlq) = &policy.dlq {
        ensure_topic(&w.bootstrap, dlq, policy.dlq_replication).await?;
    }
    let topics = sink_topics(&connector);
    let mut cc = ConsumerConfig::new(&w.bootstrap);
    cc.group_id = Some(sink_group(&id.connector));
    cc.enable_auto_commit = false;
    cc.auto_offset_reset = OffsetReset::Earliest;
    cc.fetch_max_wait = Duration::from_millis(200);
    if let Some(n) = connector
        .get("consumer.override.max.poll.records")
        .and_then(|v| v.parse().ok())
    {
        cc.max_poll_records = n;
    }
    let mut consumer = Consumer::new(cc)?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    task.start(&task_config).await?;
    let flush_every = w.ms("offset.flush.interval.ms", 60_000);
    let mut last_flush = Instant::now();
    let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    info!(task = %id, topics = ?topics, "sink task running");
    let result: anyhow::Result<()> = async {
        loop {
            let batch = tokio::select! {
                _ = stop.changed() => break,
                b = consumer.poll(Duration::from_millis(500)) => b?,
            };
            let mut out = Vec::with_capacity(batch.len());
            for r in &batch {
                next.insert(TopicPartition::new(&r.topic, r.partition), r.offset + 1);
                if let Some(rec) = sink_record(&w, &pipe, &id, r).await? {
                    out.push(rec);
                }
            }
            if !out.is_empty() {
                let n = out.len();
                // A failing put is retried with backoff for errors.retry.timeout, then
                // fails the task (which the herder restarts: the batch is redelivered).
                let deadline = Instant::now() + policy.retry_timeout;
                let mut delay = Duration::from_millis(300);
                loop {
                    match task.put(out.clone()).await {
                        Ok(()) => break,
                        Err(e) if Instant::now() + delay < deadline => {
                            warn!(task = %id, error = %e, delay_ms = delay.as_millis() as u64, "put failed; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(policy.retry_delay_max);
                        }
                        Err(e) => return Err(e),
                    }
                }
                w.metrics.record_put(&id, n as u64);
                for (rec, error) in task.take_errant() {
                    // A transform may have renamed the topic: partition and offset decide then.
                    let same = |r: &&ConsumerRecord| Some(r.partition) == rec.partition && Some(r.offset) == rec.kafka_offset;
                    let original = batch.iter().filter(same).find(|r| r.topic == rec.topic).or_else(|| batch.iter().find(same));
                    tolerate(&w, policy, &id, Stage::TaskPut, &error, original).await?;
                }
            }
            if last_flush.elapsed() >= flush_every && !next.is_empty() {
                commit_sink(&mut consumer, &mut *task, &mut next).await?;
                last_flush = Instant::now();
            }
        }
        Ok(())
    }
    .await;
    if result.is_ok() {
        commit_sink(&mut consumer, &mut *task, &mut next).await?;
    }
    task.stop().await;
    consumer.close().await;
    result
}

/// The target first, then the offsets: a crash between the two redelivers, never loses.
async fn commit_sink(
    consumer: &mut Consumer,
    task: &mut dyn crate::plugin::SinkTask,
    next: &mut BTreeMap<TopicPartition, i64>,
) -> anyhow::Result<()> {
    task.flush().await?;
    let owned = consumer.assignment();
    let offsets: Vec<_> = std::mem::take(next)
        .into_iter()
        .filter(|(tp, _)| owned.contains(tp))
        .map(|(tp, o)| (tp, strom_client::consumer::OffsetAndMetadata::new(o)))
        .collect();
    if offsets.is_empty() {
        return Ok(());
    }
    if let Err(e) = consumer.commit_offsets_sync(offsets).await {
        // A rebalance took the partitions: their records will be redelivered to the new
        // owner, which the sink must (and ours do) take idempotently.
        warn!(error = %e, "committing sink offsets failed");
    }
    Ok(())
}

async fn sink_record(
    w: &Worker,
    pipe: &Pipeline,
    id: &TaskId,
    r: &ConsumerRecord,
) -> anyhow::Result<Option<ConnectRecord>> {
    let (key_schema, key) = match pipe.key.to_connect(&r.topic, r.key.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            tolerate(w, &pipe.policy, id, Stage::KeyConverter, &e.0, Some(r)).await?;
            return Ok(None);
        }
    };
    let (value_schema, value) = match pipe.value.to_connect(&r.topic, r.value.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            tolerate(w, &pipe.policy, id, Stage::ValueConverter, &e.0, Some(r)).await?;
            return Ok(None);
        }
    };
    let rec = ConnectRecord {
        topic: r.topic.clone(),
        partition: Some(r.partition),
        key_schema,
        key,
        value_schema,
        value,
        timestamp: Some(r.timestamp),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().map_or(Value::Null, |b| Value::Bytes(b.clone())),
                )
            })
            .collect(),
        kafka_offset: Some(r.offset),
        ..ConnectRecord::default()
    };
    match pipe.chain.apply(rec) {
        Ok(r) => Ok(r),
        Err(e) => {
            tolerate(w, &pipe.policy, id, Stage::Transformation, &e, Some(r)).await?;
            Ok(None)
        }
    }
}
