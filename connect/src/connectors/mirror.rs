//! MirrorMaker 2's job as two connectors, with MM2's config names:
//!
//! - `MirrorSourceConnector` copies the topics matching `topics` (regexes, minus
//!   `topics.exclude`) from `source.cluster.bootstrap.servers` to the worker's cluster, under
//!   the replication policy's names (`<alias>.<topic>`, or the same name with
//!   `IdentityReplicationPolicy`): same partition numbers, keys, values, headers and
//!   timestamps; target topics are created with the source's partition count and topic
//!   configs (`sync.topic.configs.enabled`) and grow when the source's do. Each mirrored
//!   position is recorded as an offset sync `(upstream, downstream)` in
//!   `mm2-offset-syncs.<alias>.internal` on the target, whenever the offset difference changes
//!   and at least every 100 records.
//! - `MirrorCheckpointConnector` translates the committed offsets of the source's consumer
//!   groups (`groups`, minus `groups.exclude`) through those syncs, writes checkpoints to
//!   `<alias>.checkpoints.internal`, and with `sync.group.offsets.enabled` commits them to the
//!   same group on the target while it has no active members there, so the group resumes on
//!   the target where it stopped. A translation is exact between two syncs with the same
//!   difference and otherwise falls back to the last sync at or before the position: a
//!   consumer may see a few records again, never skip one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use regex::Regex;
use serde_json::{json, Value as Json};
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, IsolationLevel, OffsetReset};
use strom_client::TopicPartition;
use tracing::{info, warn};

use crate::data::{ConnectRecord, Value};
use crate::plugin::{
    ConfigKey, ConfigType, ConnectorPlugin, ConnectorType, OffsetReader, SourceTask,
};
use crate::props::Props;

pub struct MirrorSource;
pub struct MirrorCheckpoint;

const DEFAULT_TOPICS_EXCLUDE: &str = r".*[\-\.]internal, .*\.replica, __.*";
const DEFAULT_GROUPS_EXCLUDE: &str = r"console-consumer-.*, connect-.*, __.*";
/// An offset sync at least this often, even with no change in the offset difference.
const SYNC_EVERY: i64 = 100;

fn common_keys() -> Vec<ConfigKey> {
    vec![
        ConfigKey::new(
            "source.cluster.alias",
            ConfigType::String,
            "Alias of source cluster",
        )
        .default("source")
        .group("Mirror"),
        ConfigKey::new(
            "target.cluster.alias",
            ConfigType::String,
            "Alias of target cluster",
        )
        .default("target")
        .group("Mirror"),
        ConfigKey::new(
            "source.cluster.bootstrap.servers",
            ConfigType::String,
            "The source cluster's bootstrap servers.",
        )
        .required()
        .group("Mirror"),
        ConfigKey::new(
            "target.cluster.bootstrap.servers",
            ConfigType::String,
            "The target cluster's bootstrap servers (the worker's cluster).",
        )
        .required()
        .group("Mirror"),
        ConfigKey::new(
            "replication.policy.class",
            ConfigType::Class,
            "Class which defines the remote topic naming convention.",
        )
        .default("org.apache.kafka.connect.mirror.DefaultReplicationPolicy")
        .group("Mirror"),
        ConfigKey::new(
            "replication.policy.separator",
            ConfigType::String,
            "Separator used in remote topic naming convention.",
        )
        .default(".")
        .group("Mirror"),
    ]
}

/// A cluster's topic under the replication policy.
#[derive(Clone)]
struct Policy {
    alias: String,
    separator: String,
    identity: bool,
}

impl Policy {
    fn from(c: &Props) -> Self {
        Self {
            alias: c
                .get("source.cluster.alias")
                .cloned()
                .unwrap_or_else(|| "source".into()),
            separator: c
                .get("replication.policy.separator")
                .cloned()
                .unwrap_or_else(|| ".".into()),
            identity: c
                .get("replication.policy.class")
                .is_some_and(|p| p.ends_with("IdentityReplicationPolicy")),
        }
    }

    fn remote(&self, topic: &str) -> String {
        if self.identity {
            topic.to_string()
        } else {
            format!("{}{}{topic}", self.alias, self.separator)
        }
    }

    fn offset_syncs_topic(&self) -> String {
        format!("mm2-offset-syncs.{}.internal", self.alias)
    }
}

/// `topics`-style regex lists: a name matches when one of `include` matches it whole and
/// none of `exclude` does.
#[derive(Clone)]
struct Filter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl Filter {
    fn new(include: &str, exclude: &str) -> Result<Self, String> {
        let parse = |s: &str| -> Result<Vec<Regex>, String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("bad regex '{p}': {e}"))
                })
                .collect()
        };
        Ok(Self {
            include: parse(include)?,
            exclude: parse(exclude)?,
        })
    }

    fn matches(&self, name: &str) -> bool {
        self.include.iter().any(|r| r.is_match(name))
            && !self.exclude.iter().any(|r| r.is_match(name))
    }
}

fn topic_filter(c: &Props) -> Result<Filter, String> {
    Filter::new(
        c.get("topics").map(String::as_str).unwrap_or(".*"),
        c.get("topics.exclude")
            .map(String::as_str)
            .unwrap_or(DEFAULT_TOPICS_EXCLUDE),
    )
}

fn group_filter(c: &Props) -> Result<Filter, String> {
    Filter::new(
        c.get("groups").map(String::as_str).unwrap_or(".*"),
        c.get("groups.exclude")
            .map(String::as_str)
            .unwrap_or(DEFAULT_GROUPS_EXCLUDE),
    )
}

fn ms(c: &Props, key: &str, default: u64) -> Duration {
    Duration::from_millis(c.get(key).and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// Creates a topic on the target if missing.
async fn ensure(admin: &mut Admin, topic: NewTopic) -> anyhow::Result<()> {
    let created = admin
        .create_topic_if_missing(&topic)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", topic.name))?;
    if created {
        info!(topic = %topic.name, partitions = topic.partitions, "created on the target");
    }
    Ok(())
}

impl ConnectorPlugin for MirrorSource {
    fn class(&self) -> &'static str {
        "org.apache.kafka.connect.mirror.MirrorSourceConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["MirrorSource"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Source
    }
    fn default_converter(&self) -> Option<&'static str> {
        Some("org.apache.kafka.connect.converters.ByteArrayConverter")
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        let mut keys = common_keys();
        keys.extend([
            ConfigKey::new("topics", ConfigType::List, "Topics to replicate. Supports comma-separated topic names and regexes.").default(".*").group("Mirror"),
            ConfigKey::new("topics.exclude", ConfigType::List, "Topics to exclude. Supports comma-separated topic names and regexes.").default(DEFAULT_TOPICS_EXCLUDE).group("Mirror"),
            ConfigKey::new("sync.topic.configs.enabled", ConfigType::Boolean, "Whether to periodically configure remote topics to match their corresponding upstream topics.").default("true").group("Mirror"),
            ConfigKey::new("refresh.topics.interval.ms", ConfigType::Long, "Frequency of topic refresh.").default("600000").group("Mirror"),
            ConfigKey::new("replication.factor", ConfigType::Int, "Replication factor for newly created remote topics.").default("-1").group("Mirror"),
        ]);
        keys
    }
    fn validate(&self, c: &Props) -> Vec<(String, String)> {
        match topic_filter(c) {
            Err(e) => vec![("topics".into(), e)],
            Ok(_) => Vec::new(),
        }
    }
    fn task_configs(&self, c: &Props, max_tasks: usize) -> anyhow::Result<Vec<Props>> {
        Ok((0..max_tasks)
            .map(|i| {
                let mut t = c.clone();
                t.insert("task.index".into(), i.to_string());
                t.insert("task.count".into(), max_tasks.to_string());
                t
            })
            .collect())
    }
    fn source_task(&self) -> Option<Box<dyn SourceTask>> {
        Some(Box::new(MirrorSourceTask::default()))
    }
}

/// What a mirror task knows of one partition's offset syncs.
#[derive(Default, Clone, Copy)]
struct SyncState {
    /// The last sync written: (upstream, downstream).
    synced: Option<(i64, i64)>,
    /// The last delivered position, not yet written as a sync.
    latest: Option<(i64, i64)>,
}

#[derive(Default)]
struct MirrorSourceTask {
    policy: Option<Policy>,
    filter: Option<Filter>,
    source_bootstrap: String,
    target_bootstrap: String,
    index: u64,
    count: u64,
    sync_configs: bool,
    replication: i16,
    refresh_every: Duration,
    next_refresh: Option<Instant>,
    consumer: Option<Consumer>,
    offsets: Option<Arc<dyn OffsetReader>>,
    /// Source partitions mirrored, and their partition count per topic.
    topics: BTreeMap<String, i32>,
    syncs: HashMap<TopicPartition, SyncState>,
    pending_syncs: VecDeque<ConnectRecord>,
}

impl MirrorSourceTask {
    /// Finds new topics and partitions on the source, creates or grows them on the target,
    /// and starts reading new partitions from their stored offsets.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let (Some(policy), Some(filter)) = (self.policy.clone(), self.filter.clone()) else {
            return Ok(());
        };
        let mut source = Admin::new(&self.source_bootstrap);
        let mut target = Admin::new(&self.target_bootstrap);
        let mut changed = false;
        for topic in source.list_topics(false).await? {
            if !filter.matches(&topic)
                || crate::herder::stable_hash(&topic) % self.count.max(1) != self.index
            {
                continue;
            }
            let partitions = source.describe_topic(&topic).await?.partitions.len() as i32;
            let remote = policy.remote(&topic);
            match target.describe_topic(&remote).await {
                Ok(d) if (d.partitions.len() as i32) < partitions => {
                    target.create_partitions(&remote, partitions).await?;
                    info!(topic = %remote, partitions, "grew the remote topic");
                }
                Ok(_) => {}
                Err(e) if e.code() == Some(3) => {
                    let mut new = NewTopic::new(&remote, partitions, self.replication);
                    if self.sync_configs {
                        for c in source.describe_configs(&topic).await? {
                            if c.source == "TOPIC_CONFIG" && !c.sensitive {
                                if let Some(v) = c.value {
                                    new = new.with_config(c.name, v);
                                }
                            }
                        }
                    }
                    ensure(&mut target, new).await?;
                }
                Err(e) => return Err(e.into()),
            }
            if self.topics.get(&topic) != Some(&partitions) {
                self.topics.insert(topic, partitions);
                changed = true;
            }
        }
        if changed {
            let all: Vec<TopicPartition> = self
                .topics
                .iter()
                .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t, p)))
                .collect();
            let consumer = self
                .consumer
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("not started"))?;
            let before = consumer.assignment();
            consumer.assign(all.clone()).await?;
            let offsets = self
                .offsets
                .clone()
                .ok_or_else(|| anyhow::anyhow!("not started"))?;
            for tp in all.iter().filter(|tp| !before.contains(tp)) {
                let stored = offsets
                    .offset(&json!({"cluster": policy.alias, "topic": tp.topic, "partition": tp.partition}))
                    .await
                    .and_then(|o| o["offset"].as_i64());
                match stored {
                    Some(o) => consumer.seek(tp, o + 1)?,
                    None => consumer.seek_to_beginning(tp)?,
                }
            }
            info!(partitions = all.len(), "mirroring");
        }
        Ok(())
    }

    fn sync_record(&self, tp: &TopicPartition, (u, d): (i64, i64)) -> Option<ConnectRecord> {
        let policy = self.policy.as_ref()?;
        let value =
            json!({"topic": tp.topic, "partition": tp.partition, "upstream": u, "downstream": d});
        Some(ConnectRecord {
            topic: policy.offset_syncs_topic(),
            partition: Some(0),
            key: Value::Bytes(Bytes::from(format!("{}:{}", tp.topic, tp.partition))),
            value: Value::Bytes(Bytes::from(value.to_string())),
            ..ConnectRecord::default()
        })
    }
}

#[async_trait]
impl SourceTask for MirrorSourceTask {
    async fn start(&mut self, c: &Props, offsets: Arc<dyn OffsetReader>) -> anyhow::Result<()> {
        self.source_bootstrap = c
            .get("source.cluster.bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        self.target_bootstrap = c
            .get("target.cluster.bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        self.policy = Some(Policy::from(c));
        self.filter = Some(topic_filter(c).map_err(anyhow::Error::msg)?);
        self.index = c
            .get("task.index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.count = c
            .get("task.count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        self.sync_configs = c
            .get("sync.topic.configs.enabled")
            .is_none_or(|v| v == "true");
        self.replication = c
            .get("replication.factor")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        self.refresh_every = ms(c, "refresh.topics.interval.ms", 600_000);
        let mut cc = ConsumerConfig::new(&self.source_bootstrap);
        cc.auto_offset_reset = OffsetReset::Earliest;
        cc.isolation_level = IsolationLevel::ReadCommitted;
        cc.enable_auto_commit = false;
        cc.fetch_max_wait = Duration::from_millis(200);
        cc.max_poll_records = 2000;
        self.consumer = Some(Consumer::new(cc)?);
        self.offsets = Some(offsets);
        let syncs = self
            .policy
            .as_ref()
            .map(Policy::offset_syncs_topic)
            .unwrap_or_default();
        ensure(
            &mut Admin::new(&self.target_bootstrap),
            NewTopic::new(&syncs, 1, self.replication),
        )
        .await?;
        Ok(())
    }

    async fn poll(&mut self) -> anyhow::Result<Vec<ConnectRecord>> {
        if self.next_refresh.is_none_or(|t| Instant::now() >= t) {
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "refreshing the mirrored topics failed");
            }
            self.next_refresh = Some(Instant::now() + self.refresh_every);
        }
        let mut out: Vec<ConnectRecord> = self.pending_syncs.drain(..).collect();
        let Some(policy) = self.policy.clone() else {
            return Ok(out);
        };
        let consumer = self
            .consumer
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        if consumer.assignment().is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(out);
        }
        for r in consumer.poll(Duration::from_millis(200)).await? {
            out.push(ConnectRecord {
                topic: policy.remote(&r.topic),
                partition: Some(r.partition),
                key: r.key.map_or(Value::Null, Value::Bytes),
                value: r.value.map_or(Value::Null, Value::Bytes),
                timestamp: Some(r.timestamp),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k, v.map_or(Value::Null, Value::Bytes)))
                    .collect(),
                source_partition: Some(
                    json!({"cluster": policy.alias, "topic": r.topic, "partition": r.partition}),
                ),
                source_offset: Some(json!({"offset": r.offset})),
                ..ConnectRecord::default()
            });
        }
        Ok(out)
    }

    fn delivered(
        &mut self,
        source_partition: &Json,
        source_offset: &Json,
        _topic: &str,
        _partition: i32,
        offset: i64,
    ) {
        let (Some(topic), Some(p), Some(u)) = (
            source_partition["topic"].as_str(),
            source_partition["partition"].as_i64(),
            source_offset["offset"].as_i64(),
        ) else {
            return;
        };
        let tp = TopicPartition::new(topic, p as i32);
        let st = self.syncs.entry(tp.clone()).or_default();
        let due = match st.synced {
            None => true,
            Some((su, sd)) => su - sd != u - offset || u - su >= SYNC_EVERY || u < su,
        };
        if due {
            st.synced = Some((u, offset));
            st.latest = None;
            if let Some(r) = self.sync_record(&tp, (u, offset)) {
                self.pending_syncs.push_back(r);
            }
        } else {
            st.latest = Some((u, offset));
        }
    }

    async fn commit(&mut self) -> anyhow::Result<()> {
        // The newest position of each partition, so translations near the end are exact.
        let latest: Vec<(TopicPartition, (i64, i64))> = self
            .syncs
            .iter_mut()
            .filter_map(|(tp, st)| {
                let l = st.latest.take()?;
                st.synced = Some(l);
                Some((tp.clone(), l))
            })
            .collect();
        for (tp, l) in latest {
            if let Some(r) = self.sync_record(&tp, l) {
                self.pending_syncs.push_back(r);
            }
        }
        Ok(())
    }
}

/// Translates an upstream committed position through a partition's syncs (in the order
/// they were written): exact when the next sync shows the same offset difference, else the
/// last sync at or before it (a few records may be read again); None before the first sync.
pub fn translate(syncs: &[(i64, i64)], upstream: i64) -> Option<i64> {
    let i = syncs.iter().rposition(|(u, _)| *u <= upstream)?;
    let (u, d) = syncs[i];
    if u == upstream {
        return Some(d);
    }
    match syncs.get(i + 1) {
        Some((nu, nd)) if nu - nd == u - d => Some(d + (upstream - u)),
        _ => Some(d),
    }
}

impl ConnectorPlugin for MirrorCheckpoint {
    fn class(&self) -> &'static str {
        "org.apache.kafka.connect.mirror.MirrorCheckpointConnector"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["MirrorCheckpoint"]
    }
    fn kind(&self) -> ConnectorType {
        ConnectorType::Source
    }
    fn default_converter(&self) -> Option<&'static str> {
        Some("org.apache.kafka.connect.converters.ByteArrayConverter")
    }
    fn config_def(&self) -> Vec<ConfigKey> {
        let mut keys = common_keys();
        keys.extend([
            ConfigKey::new("groups", ConfigType::List, "Consumer groups to replicate. Supports comma-separated group IDs and regexes.").default(".*").group("Mirror"),
            ConfigKey::new("groups.exclude", ConfigType::List, "Exclude groups. Supports comma-separated group IDs and regexes.").default(DEFAULT_GROUPS_EXCLUDE).group("Mirror"),
            ConfigKey::new("emit.checkpoints.interval.ms", ConfigType::Long, "Frequency of checkpoints.").default("60000").group("Mirror"),
            ConfigKey::new("sync.group.offsets.enabled", ConfigType::Boolean, "Whether to periodically write the translated offsets to __consumer_offsets topic in target cluster, as long as no active consumers in that group are connected to the target cluster").default("false").group("Mirror"),
        ]);
        keys
    }
    fn validate(&self, c: &Props) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Err(e) = group_filter(c) {
            errors.push(("groups".into(), e));
        }
        if c.get("tasks.max")
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|n| n > 1)
        {
            errors.push((
                "tasks.max".into(),
                "MirrorCheckpointConnector runs a single task".into(),
            ));
        }
        errors
    }
    fn source_task(&self) -> Option<Box<dyn SourceTask>> {
        Some(Box::new(CheckpointTask::default()))
    }
}

#[derive(Default)]
struct CheckpointTask {
    policy: Option<Policy>,
    groups: Option<Filter>,
    source_bootstrap: String,
    target_bootstrap: String,
    every: Duration,
    sync_groups: bool,
    next: Option<Instant>,
    syncs_reader: Option<Consumer>,
    /// Offset syncs by upstream partition, in the order written.
    syncs: HashMap<TopicPartition, Vec<(i64, i64)>>,
}

impl CheckpointTask {
    async fn read_syncs(&mut self) -> anyhow::Result<()> {
        let reader = self
            .syncs_reader
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        loop {
            let batch = reader.poll(Duration::from_millis(100)).await?;
            if batch.is_empty() {
                return Ok(());
            }
            for r in batch {
                let Some(v) = r
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<Json>(v).ok())
                else {
                    continue;
                };
                let (Some(t), Some(p), Some(u), Some(d)) = (
                    v["topic"].as_str(),
                    v["partition"].as_i64(),
                    v["upstream"].as_i64(),
                    v["downstream"].as_i64(),
                ) else {
                    continue;
                };
                let list = self
                    .syncs
                    .entry(TopicPartition::new(t, p as i32))
                    .or_default();
                // A partition mirrored again after a crash supersedes the syncs it repeats.
                while list.last().is_some_and(|(lu, _)| *lu >= u) {
                    list.pop();
                }
                list.push((u, d));
                if list.len() > 10_000 {
                    list.drain(..list.len() - 10_000);
                }
            }
        }
    }

    async fn checkpoints(&mut self) -> anyhow::Result<Vec<ConnectRecord>> {
        self.read_syncs().await?;
        let (Some(policy), Some(groups)) = (self.policy.clone(), self.groups.clone()) else {
            return Ok(Vec::new());
        };
        let mut source = Admin::new(&self.source_bootstrap);
        let mut target = Admin::new(&self.target_bootstrap);
        let mut out = Vec::new();
        for g in source.list_groups().await? {
            if !groups.matches(&g.group_id) {
                continue;
            }
            let committed = source.list_group_offsets(&g.group_id).await?;
            let mut translated = BTreeMap::new();
            for (tp, o) in committed {
                let Some(d) = self.syncs.get(&tp).and_then(|s| translate(s, o.offset)) else {
                    continue;
                };
                let remote = TopicPartition::new(policy.remote(&tp.topic), tp.partition);
                out.push(ConnectRecord {
                    topic: format!("{}.checkpoints.internal", policy.alias),
                    partition: Some(0),
                    key: Value::Bytes(Bytes::from(json!({"group": g.group_id, "topic": remote.topic, "partition": remote.partition}).to_string())),
                    value: Value::Bytes(Bytes::from(json!({"upstreamOffset": o.offset, "downstreamOffset": d, "metadata": o.metadata.unwrap_or_default()}).to_string())),
                    ..ConnectRecord::default()
                });
                translated.insert(remote, d);
            }
            if !self.sync_groups || translated.is_empty() {
                continue;
            }
            // Only while nobody consumes as this group on the target, and never backwards.
            let state = match target.describe_group(&g.group_id).await {
                Ok(d) if !d.members.is_empty() => continue,
                Ok(d) => d.state,
                Err(_) => "Dead".into(),
            };
            let current = target
                .list_group_offsets(&g.group_id)
                .await
                .unwrap_or_default();
            translated.retain(|tp, d| current.get(tp).is_none_or(|c| c.offset < *d));
            if translated.is_empty() {
                continue;
            }
            match target.alter_group_offsets(&g.group_id, &translated).await {
                Ok(()) => {
                    info!(group = %g.group_id, state = %state, partitions = translated.len(), "synced the group's offsets to the target")
                }
                Err(e) => {
                    warn!(group = %g.group_id, error = %e, "syncing the group's offsets failed")
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl SourceTask for CheckpointTask {
    async fn start(&mut self, c: &Props, _offsets: Arc<dyn OffsetReader>) -> anyhow::Result<()> {
        self.source_bootstrap = c
            .get("source.cluster.bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        self.target_bootstrap = c
            .get("target.cluster.bootstrap.servers")
            .cloned()
            .unwrap_or_default();
        let policy = Policy::from(c);
        self.groups = Some(group_filter(c).map_err(anyhow::Error::msg)?);
        self.every = ms(c, "emit.checkpoints.interval.ms", 60_000);
        self.sync_groups = c
            .get("sync.group.offsets.enabled")
            .is_some_and(|v| v == "true");
        let mut admin = Admin::new(&self.target_bootstrap);
        ensure(
            &mut admin,
            NewTopic::new(policy.offset_syncs_topic(), 1, -1),
        )
        .await?;
        ensure(
            &mut admin,
            NewTopic::new(format!("{}.checkpoints.internal", policy.alias), 1, -1)
                .with_config("cleanup.policy", "compact"),
        )
        .await?;
        let mut cc = ConsumerConfig::new(&self.target_bootstrap);
        cc.auto_offset_reset = OffsetReset::Earliest;
        cc.enable_auto_commit = false;
        cc.fetch_max_wait = Duration::from_millis(100);
        let mut reader = Consumer::new(cc)?;
        reader
            .assign(vec![TopicPartition::new(policy.offset_syncs_topic(), 0)])
            .await?;
        self.syncs_reader = Some(reader);
        self.policy = Some(policy);
        Ok(())
    }

    async fn poll(&mut self) -> anyhow::Result<Vec<ConnectRecord>> {
        if let Some(t) = self.next {
            let now = Instant::now();
            if now < t {
                tokio::time::sleep((t - now).min(Duration::from_millis(500))).await;
                return Ok(Vec::new());
            }
        }
        self.next = Some(Instant::now() + self.every);
        self.checkpoints().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_is_exact_between_equal_syncs_and_conservative_elsewhere() {
        // Upstream 0..99 -> downstream 0..99; a transaction marker at upstream 100 is not
        // mirrored, so upstream 101 -> downstream 100.
        let syncs = [(0, 0), (99, 99), (101, 100), (201, 200)];
        assert_eq!(translate(&syncs, 50), Some(50));
        assert_eq!(translate(&syncs, 99), Some(99));
        assert_eq!(
            translate(&syncs, 100),
            Some(99),
            "across a change: the last sync"
        );
        assert_eq!(translate(&syncs, 150), Some(150 - 1));
        assert_eq!(
            translate(&syncs, 500),
            Some(200),
            "past the last sync: the last sync"
        );
        assert_eq!(translate(&[(10, 0)], 5), None);
    }

    #[test]
    fn names_and_filters() {
        let mut c = Props::new();
        c.insert("source.cluster.alias".into(), "us".into());
        assert_eq!(Policy::from(&c).remote("orders"), "us.orders");
        c.insert(
            "replication.policy.class".into(),
            "org.apache.kafka.connect.mirror.IdentityReplicationPolicy".into(),
        );
        assert_eq!(Policy::from(&c).remote("orders"), "orders");
        let f = topic_filter(&Props::new()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            f.matches("orders")
                && !f.matches("__consumer_offsets")
                && !f.matches("mm2-offset-syncs.us.internal")
        );
        let g = group_filter(&Props::new()).unwrap_or_else(|e| panic!("{e}"));
        assert!(g.matches("billing") && !g.matches("connect-sink"));
    }
}
