//! Where a worker keeps connector configs, task statuses and source offsets.
//!
//! ```text
//!               standalone                      distributed (shared by the group)
//!   configs     in memory (+ the files given)   config.storage.topic  (1 partition, compacted)
//!   statuses    in memory                       status.storage.topic  (5 partitions, compacted)
//!   offsets     offset.storage.file.filename    offset.storage.topic  (25 partitions, compacted)
//! ```
//!
//! The topics hold Kafka Connect's keys: `connector-<name>`, `target-state-<name>`,
//! `status-connector-<name>`, `status-task-<name>-<id>`, and `["<connector>", {<source
//! partition>}]` for offsets, each with a JSON value. Every worker reads every topic from the
//! start, so all of them see the same configs in the same order. A write to the config topic
//! returns once this worker has read it back (read-your-writes for the REST API).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use strom_client::admin::{Admin, NewTopic, OffsetSpec};
use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, OffsetReset};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;
use tokio::sync::watch;

use crate::props::Props;

/// What the user asked a connector to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetState {
    #[default]
    Started,
    Paused,
    Stopped,
}

impl TargetState {
    pub fn name(self) -> &'static str {
        match self {
            TargetState::Started => "STARTED",
            TargetState::Paused => "PAUSED",
            TargetState::Stopped => "STOPPED",
        }
    }

    fn from_name(s: &str) -> Self {
        match s {
            "PAUSED" => TargetState::Paused,
            "STOPPED" => TargetState::Stopped,
            _ => TargetState::Started,
        }
    }
}

/// A restart request (`POST /connectors/{name}/restart`, or of one task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequest {
    /// Unique per request, so each worker applies it once.
    pub id: String,
    pub include_tasks: bool,
    pub only_failed: bool,
    /// Only this task (`POST /connectors/{name}/tasks/{id}/restart`).
    pub task: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorEntry {
    pub config: Props,
    pub target: TargetState,
    /// Task configs, and the hash of the connector config they were made from: when the
    /// config changes, the worker running the connector makes them again.
    pub tasks: Vec<Props>,
    pub tasks_hash: Option<String>,
    pub restart: Option<RestartRequest>,
}

impl ConnectorEntry {
    /// Task configs that still match the connector config, if there are any.
    pub fn current_tasks(&self) -> Option<&[Props]> {
        (self.tasks_hash.as_deref() == Some(config_hash(&self.config).as_str()))
            .then_some(self.tasks.as_slice())
    }
}

/// A stable hash of a config, to tell whether task configs are stale.
pub fn config_hash(config: &Props) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut sorted: Vec<_> = config.iter().collect();
    sorted.sort();
    sorted.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// All connectors' configs, as this worker has read them.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    pub connectors: BTreeMap<String, ConnectorEntry>,
    /// Records applied so far (the config topic's position).
    pub version: i64,
}

/// One change to the configs: what a config topic record says.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigOp {
    PutConnector(String, Props),
    DeleteConnector(String),
    Target(String, TargetState),
    Tasks(String, String, Vec<Props>),
    Restart(String, RestartRequest),
}

impl ConfigOp {
    /// The config topic record: key and JSON value (None: a tombstone).
    pub fn encode(&self) -> (String, Option<Json>) {
        match self {
            ConfigOp::PutConnector(n, p) => {
                (format!("connector-{n}"), Some(json!({ "properties": p })))
            }
            ConfigOp::DeleteConnector(n) => (format!("connector-{n}"), None),
            ConfigOp::Target(n, t) => (
                format!("target-state-{n}"),
                Some(json!({ "state": t.name() })),
            ),
            ConfigOp::Tasks(n, h, t) => (
                format!("tasks-{n}"),
                Some(json!({ "config_hash": h, "tasks": t })),
            ),
            ConfigOp::Restart(n, r) => (
                format!("restart-{n}"),
                Some(
                    json!({"id": r.id, "include_tasks": r.include_tasks, "only_failed": r.only_failed, "task": r.task}),
                ),
            ),
        }
    }

    pub fn decode(key: &str, value: Option<&Json>) -> Option<Self> {
        let props = |j: &Json| -> Props {
            j.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(n) = key.strip_prefix("connector-") {
            return Some(match value {
                None => ConfigOp::DeleteConnector(n.into()),
                Some(v) => ConfigOp::PutConnector(n.into(), props(&v["properties"])),
            });
        }
        let v = value?;
        if let Some(n) = key.strip_prefix("target-state-") {
            return Some(ConfigOp::Target(
                n.into(),
                TargetState::from_name(v["state"].as_str().unwrap_or("")),
            ));
        }
        if let Some(n) = key.strip_prefix("tasks-") {
            let tasks = v["tasks"]
                .as_array()
                .map(|a| a.iter().map(props).collect())
                .unwrap_or_default();
            return Some(ConfigOp::Tasks(
                n.into(),
                v["config_hash"].as_str().unwrap_or("").into(),
                tasks,
            ));
        }
        if let Some(n) = key.strip_prefix("restart-") {
            return Some(ConfigOp::Restart(
                n.into(),
                RestartRequest {
                    id: v["id"].as_str().unwrap_or("").into(),
                    include_tasks: v["include_tasks"].as_bool().unwrap_or(false),
                    only_failed: v["only_failed"].as_bool().unwrap_or(false),
                    task: v["task"].as_u64().map(|t| t as usize),
                },
            ));
        }
        None
    }
}

impl ClusterConfig {
    pub fn apply(&mut self, op: ConfigOp) {
        self.version += 1;
        match op {
            ConfigOp::PutConnector(n, p) => {
                let e = self.connectors.entry(n).or_default();
                e.config = p;
            }
            ConfigOp::DeleteConnector(n) => {
                self.connectors.remove(&n);
            }
            ConfigOp::Target(n, t) => {
                if let Some(e) = self.connectors.get_mut(&n) {
                    e.target = t;
                }
            }
            ConfigOp::Tasks(n, h, t) => {
                if let Some(e) = self.connectors.get_mut(&n) {
                    e.tasks = t;
                    e.tasks_hash = Some(h);
                }
            }
            ConfigOp::Restart(n, r) => {
                if let Some(e) = self.connectors.get_mut(&n) {
                    e.restart = Some(r);
                }
            }
        }
    }
}

#[async_trait]
pub trait ConfigStore: Send + Sync {
    fn watch(&self) -> watch::Receiver<Arc<ClusterConfig>>;
    /// Writes a change; returns once this worker's view includes it.
    async fn write(&self, op: ConfigOp) -> anyhow::Result<()>;
}

/// A connector's or task's state, as `GET /connectors/{name}/status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: String,
    pub trace: Option<String>,
    pub worker_id: String,
}

/// Whose status: a connector, or one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusKey {
    Connector(String),
    Task(String, usize),
    /// A topic a connector has used (`GET /connectors/{name}/topics`).
    Topic(String, String),
}

impl StatusKey {
    pub fn encode(&self) -> String {
        match self {
            StatusKey::Connector(n) => format!("status-connector-{n}"),
            StatusKey::Task(n, id) => format!("status-task-{n}-{id}"),
            StatusKey::Topic(n, t) => format!("topic-{t}-connector-{n}"),
        }
    }

    pub fn decode(key: &str) -> Option<Self> {
        if let Some(n) = key.strip_prefix("status-connector-") {
            return Some(StatusKey::Connector(n.into()));
        }
        if let Some(rest) = key.strip_prefix("topic-") {
            let (t, n) = rest.rsplit_once("-connector-")?;
            return Some(StatusKey::Topic(n.into(), t.into()));
        }
        let rest = key.strip_prefix("status-task-")?;
        let (n, id) = rest.rsplit_once('-')?;
        Some(StatusKey::Task(n.into(), id.parse().ok()?))
    }

    pub fn connector(&self) -> &str {
        match self {
            StatusKey::Connector(n) | StatusKey::Task(n, _) | StatusKey::Topic(n, _) => n,
        }
    }
}

#[async_trait]
pub trait StatusStore: Send + Sync {
    async fn put(&self, key: StatusKey, status: Option<Status>);
    fn all(&self) -> BTreeMap<StatusKey, Status>;
}

/// Source offsets, by connector and source partition.
#[async_trait]
pub trait OffsetStore: Send + Sync {
    async fn get(&self, connector: &str, partition: &Json) -> anyhow::Result<Option<Json>>;
    /// Every (partition, offset) of a connector.
    async fn all(&self, connector: &str) -> anyhow::Result<Vec<(Json, Json)>>;
    /// Stores offsets (None: remove the partition's offset).
    async fn put(&self, connector: &str, offsets: Vec<(Json, Option<Json>)>) -> anyhow::Result<()>;
}

/// The offset topic key of a source partition: `["<connector>", {partition}]`.
pub fn offset_key(connector: &str, partition: &Json) -> String {
    json!([connector, partition]).to_string()
}

// ---------------------------------------------------------------- standalone

/// Configs in memory: standalone mode.
pub struct MemoryConfigStore {
    tx: watch::Sender<Arc<ClusterConfig>>,
}

impl MemoryConfigStore {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(Arc::new(ClusterConfig::default())).0,
        }
    }
}

impl Default for MemoryConfigStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ConfigStore for MemoryConfigStore {
    fn watch(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.tx.subscribe()
    }

    async fn write(&self, op: ConfigOp) -> anyhow::Result<()> {
        self.tx.send_modify(|c| Arc::make_mut(c).apply(op));
        Ok(())
    }
}

/// Statuses in memory: standalone mode.
#[derive(Default)]
pub struct MemoryStatusStore {
    all: Mutex<BTreeMap<StatusKey, Status>>,
}

#[async_trait]
impl StatusStore for MemoryStatusStore {
    async fn put(&self, key: StatusKey, status: Option<Status>) {
        let mut all = self.all.lock();
        match status {
            Some(s) => all.insert(key, s),
            None => all.remove(&key),
        };
    }

    fn all(&self) -> BTreeMap<StatusKey, Status> {
        self.all.lock().clone()
    }
}

/// Offsets in a local JSON file (`offset.storage.file.filename`): standalone mode. Written
/// whole to a temporary file and renamed, so a crash leaves the old or the new offsets.
pub struct FileOffsetStore {
    path: PathBuf,
    map: Mutex<BTreeMap<String, Json>>,
}

impl FileOffsetStore {
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let map = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<BTreeMap<String, Json>>(&bytes)
                .map_err(|e| anyhow::anyhow!("offset file {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            path,
            map: Mutex::new(map),
        })
    }
}

#[async_trait]
impl OffsetStore for FileOffsetStore {
    async fn get(&self, connector: &str, partition: &Json) -> anyhow::Result<Option<Json>> {
        Ok(self
            .map
            .lock()
            .get(&offset_key(connector, partition))
            .cloned())
    }

    async fn all(&self, connector: &str) -> anyhow::Result<Vec<(Json, Json)>> {
        Ok(entries_of(&self.map.lock(), connector))
    }

    async fn put(&self, connector: &str, offsets: Vec<(Json, Option<Json>)>) -> anyhow::Result<()> {
        let bytes = {
            let mut map = self.map.lock();
            for (p, o) in offsets {
                match o {
                    Some(o) => map.insert(offset_key(connector, &p), o),
                    None => map.remove(&offset_key(connector, &p)),
                };
            }
            serde_json::to_vec_pretty(&*map)?
        };
        let tmp = self.path.with_extension("tmp");
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::File::open(&tmp).await?.sync_all().await?;
        tokio::fs::rename(&tmp, &self.path).await?;
        Ok(())
    }
}

fn entries_of(map: &BTreeMap<String, Json>, connector: &str) -> Vec<(Json, Json)> {
    map.iter()
        .filter_map(|(k, v)| {
            let key: Json = serde_json::from_str(k).ok()?;
            (key[0].as_str() == Some(connector)).then(|| (key[1].clone(), v.clone()))
        })
        .collect()
}

// ---------------------------------------------------------------- distributed

/// A compacted topic every worker reads in full: the base of the three distributed stores.
pub struct TopicLog {
    topic: String,
    bootstrap: String,
    producer: Producer,
    partitions: i32,
    /// Per partition, how far the reader has applied.
    positions: watch::Receiver<HashMap<i32, i64>>,
}

impl TopicLog {
    /// Creates the topic if needed (compacted) and starts reading it from the beginning;
    /// `apply` sees every record in order, then every later one.
    pub async fn open(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        replication: i16,
        apply: impl FnMut(&str, Option<&Json>) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let mut admin = Admin::new(bootstrap);
        let new =
            NewTopic::new(topic, partitions, replication).with_config("cleanup.policy", "compact");
        if admin
            .create_topic_if_missing(&new)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create topic {topic}: {e}"))?
        {
            tracing::info!(topic, partitions, "created the worker topic");
        }
        let partitions = admin.describe_topic(topic).await?.partitions.len() as i32;
        let mut pc = ProducerConfig::new(bootstrap);
        pc.linger = Duration::ZERO;
        let producer = Producer::new(pc).await?;
        let mut cc = ConsumerConfig::new(bootstrap);
        cc.auto_offset_reset = OffsetReset::Earliest;
        cc.enable_auto_commit = false;
        cc.isolation_level = IsolationLevel::ReadCommitted;
        cc.fetch_max_wait = Duration::from_millis(100);
        let mut consumer = Consumer::new(cc)?;
        consumer
            .assign(
                (0..partitions)
                    .map(|p| TopicPartition::new(topic, p))
                    .collect(),
            )
            .await?;
        let (tx, positions) = watch::channel(HashMap::new());
        let topic_name = topic.to_string();
        tokio::spawn(read_loop(consumer, topic_name, partitions, tx, apply));
        Ok(Self {
            topic: topic.into(),
            bootstrap: bootstrap.into(),
            producer,
            partitions,
            positions,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    fn record(&self, key: &str, value: Option<&Json>) -> ProducerRecord {
        ProducerRecord {
            topic: self.topic.clone(),
            // One partition: no need for the partitioner.
            partition: (self.partitions == 1).then_some(0),
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            ..ProducerRecord::default()
        }
    }

    /// Writes a record and waits until the reader has applied it.
    pub async fn write(&self, key: &str, value: Option<&Json>) -> anyhow::Result<()> {
        let meta = self.producer.send(self.record(key, value)).await?.await?;
        self.wait_for(meta.partition, meta.offset + 1).await;
        Ok(())
    }

    /// Writes records, all sent before any acknowledgement is awaited, without waiting to
    /// read them back.
    pub async fn write_all(&self, records: &[(String, Option<Json>)]) -> anyhow::Result<()> {
        let mut acks = Vec::with_capacity(records.len());
        for (k, v) in records {
            acks.push(self.producer.send(self.record(k, v.as_ref())).await?);
        }
        for a in acks {
            a.await?;
        }
        Ok(())
    }

    async fn wait_for(&self, partition: i32, offset: i64) {
        let mut rx = self.positions.clone();
        let _ = rx
            .wait_for(|p| p.get(&partition).copied().unwrap_or(0) >= offset)
            .await;
    }

    /// Waits until the reader has applied everything written before this call.
    pub async fn read_to_end(&self) -> anyhow::Result<()> {
        let mut admin = Admin::new(&self.bootstrap);
        for p in 0..self.partitions {
            let end = admin
                .list_offset(&TopicPartition::new(&self.topic, p), OffsetSpec::Latest)
                .await?;
            tokio::time::timeout(Duration::from_secs(60), self.wait_for(p, end))
                .await
                .map_err(|_| anyhow::anyhow!("reading {} to its end timed out", self.topic))?;
        }
        Ok(())
    }
}

async fn read_loop(
    mut consumer: Consumer,
    topic: String,
    partitions: i32,
    tx: watch::Sender<HashMap<i32, i64>>,
    mut apply: impl FnMut(&str, Option<&Json>) + Send + 'static,
) {
    loop {
        let batch = match consumer.poll(Duration::from_millis(500)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "reading the worker topic failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for r in &batch {
            let key = r
                .key
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let value = r
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Json>(v).ok());
            apply(&key, value.as_ref());
        }
        // Positions move past control records too, so they come from the consumer.
        let mut pos = HashMap::new();
        for p in 0..partitions {
            if let Ok(o) = consumer.position(&TopicPartition::new(&topic, p)).await {
                pos.insert(p, o);
            }
        }
        if tx.send(pos).is_err() {
            return;
        }
    }
}

/// Configs in `config.storage.topic`.
pub struct TopicConfigStore {
    log: TopicLog,
    rx: watch::Receiver<Arc<ClusterConfig>>,
}

impl TopicConfigStore {
    pub async fn open(bootstrap: &str, topic: &str, replication: i16) -> anyhow::Result<Self> {
        let (tx, rx) = watch::channel(Arc::new(ClusterConfig::default()));
        let log = TopicLog::open(bootstrap, topic, 1, replication, move |k, v| {
            if let Some(op) = ConfigOp::decode(k, v) {
                tx.send_modify(|c| Arc::make_mut(c).apply(op));
            }
        })
        .await?;
        log.read_to_end().await?;
        Ok(Self { log, rx })
    }
}

#[async_trait]
impl ConfigStore for TopicConfigStore {
    fn watch(&self) -> watch::Receiver<Arc<ClusterConfig>> {
        self.rx.clone()
    }

    async fn write(&self, op: ConfigOp) -> anyhow::Result<()> {
        let (k, v) = op.encode();
        self.log.write(&k, v.as_ref()).await
    }
}

/// Statuses in `status.storage.topic`.
pub struct TopicStatusStore {
    log: TopicLog,
    all: Arc<Mutex<BTreeMap<StatusKey, Status>>>,
}

impl TopicStatusStore {
    pub async fn open(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        replication: i16,
    ) -> anyhow::Result<Self> {
        let all: Arc<Mutex<BTreeMap<StatusKey, Status>>> = Default::default();
        let sink = all.clone();
        let log = TopicLog::open(bootstrap, topic, partitions, replication, move |k, v| {
            let Some(key) = StatusKey::decode(k) else {
                return;
            };
            let mut all = sink.lock();
            match v {
                None => {
                    all.remove(&key);
                }
                Some(v) => {
                    all.insert(
                        key,
                        Status {
                            state: v["state"].as_str().unwrap_or("UNASSIGNED").into(),
                            trace: v["trace"].as_str().map(str::to_string),
                            worker_id: v["worker_id"].as_str().unwrap_or("").into(),
                        },
                    );
                }
            }
        })
        .await?;
        log.read_to_end().await?;
        Ok(Self { log, all })
    }
}

#[async_trait]
impl StatusStore for TopicStatusStore {
    async fn put(&self, key: StatusKey, status: Option<Status>) {
        let value = status.as_ref().map(|s| {
            json!({"state": s.state, "trace": s.trace, "worker_id": s.worker_id, "generation": 0})
        });
        // The local view changes at once; the topic tells the other workers.
        {
            let mut all = self.all.lock();
            match &status {
                Some(s) => all.insert(key.clone(), s.clone()),
                None => all.remove(&key),
            };
        }
        if let Err(e) = self.log.write_all(&[(key.encode(), value)]).await {
            tracing::warn!(key = %key.encode(), error = %e, "writing a status failed");
        }
    }

    fn all(&self) -> BTreeMap<StatusKey, Status> {
        self.all.lock().clone()
    }
}

/// Offsets in `offset.storage.topic`.
pub struct TopicOffsetStore {
    log: TopicLog,
    map: Arc<Mutex<BTreeMap<String, Json>>>,
}

impl TopicOffsetStore {
    pub async fn open(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        replication: i16,
    ) -> anyhow::Result<Self> {
        let map: Arc<Mutex<BTreeMap<String, Json>>> = Default::default();
        let sink = map.clone();
        let log = TopicLog::open(bootstrap, topic, partitions, replication, move |k, v| {
            let mut map = sink.lock();
            match v {
                Some(v) => map.insert(k.to_string(), v.clone()),
                None => map.remove(k),
            };
        })
        .await?;
        Ok(Self { log, map })
    }

    pub fn topic(&self) -> &str {
        self.log.topic()
    }
}

#[async_trait]
impl OffsetStore for TopicOffsetStore {
    async fn get(&self, connector: &str, partition: &Json) -> anyhow::Result<Option<Json>> {
        self.log.read_to_end().await?;
        Ok(self
            .map
            .lock()
            .get(&offset_key(connector, partition))
            .cloned())
    }

    async fn all(&self, connector: &str) -> anyhow::Result<Vec<(Json, Json)>> {
        self.log.read_to_end().await?;
        Ok(entries_of(&self.map.lock(), connector))
    }

    async fn put(&self, connector: &str, offsets: Vec<(Json, Option<Json>)>) -> anyhow::Result<()> {
        let records: Vec<(String, Option<Json>)> = offsets
            .into_iter()
            .map(|(p, o)| (offset_key(connector, &p), o))
            .collect();
        self.log.write_all(&records).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_records_round_trip() {
        let mut p = Props::new();
        p.insert("connector.class".into(), "FileStreamSource".into());
        let ops = [
            ConfigOp::PutConnector("a-b".into(), p.clone()),
            ConfigOp::Target("a-b".into(), TargetState::Paused),
            ConfigOp::Tasks("a-b".into(), config_hash(&p), vec![p.clone()]),
            ConfigOp::DeleteConnector("a-b".into()),
        ];
        let mut c = ClusterConfig::default();
        for op in ops {
            let (k, v) = op.encode();
            assert_eq!(ConfigOp::decode(&k, v.as_ref()).as_ref(), Some(&op));
            c.apply(op.clone());
            if let ConfigOp::Tasks(..) = op {
                let e = &c.connectors["a-b"];
                assert_eq!(e.target, TargetState::Paused);
                assert_eq!(e.current_tasks().map(<[Props]>::len), Some(1));
            }
        }
        assert!(c.connectors.is_empty());
    }

    #[test]
    fn stale_task_configs_are_not_current() {
        let mut c = ClusterConfig::default();
        let mut p = Props::new();
        p.insert("file".into(), "a".into());
        c.apply(ConfigOp::PutConnector("x".into(), p.clone()));
        c.apply(ConfigOp::Tasks(
            "x".into(),
            config_hash(&p),
            vec![p.clone()],
        ));
        p.insert("file".into(), "b".into());
        c.apply(ConfigOp::PutConnector("x".into(), p));
        assert_eq!(c.connectors["x"].current_tasks(), None);
    }

    #[test]
    fn status_keys_with_dashes() {
        let k = StatusKey::Task("my-conn-2".into(), 11);
        assert_eq!(StatusKey::decode(&k.encode()), Some(k));
        let t = StatusKey::Topic("my-conn".into(), "the-topic".into());
        assert_eq!(StatusKey::decode(&t.encode()), Some(t));
        let c = StatusKey::Connector("my-conn".into());
        assert_eq!(StatusKey::decode(&c.encode()), Some(c));
    }

    #[tokio::test]
    async fn file_offsets_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("offsets.json");
        let part = json!({"filename": "/tmp/in.txt"});
        {
            let s = FileOffsetStore::open(path.clone()).unwrap_or_else(|e| panic!("{e}"));
            s.put("src", vec![(part.clone(), Some(json!({"position": 42})))])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let s = FileOffsetStore::open(path).unwrap_or_else(|e| panic!("{e}"));
        let got = s.get("src", &part).await.ok().flatten();
        assert_eq!(got, Some(json!({"position": 42})));
        assert_eq!(s.all("other").await.map(|v| v.len()).ok(), Some(0));
    }
}
