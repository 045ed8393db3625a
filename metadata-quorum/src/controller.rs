//! Controller logic as pure functions: an image and a request in, the records to append and
//! the response out (Kafka's `ControllerResult`). Nothing here does I/O, so every decision is
//! unit-tested by looking at the records it produces.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use strom_client::placement::{self, PlacedBroker};
use uuid::Uuid;

use crate::{Endpoint, MetadataError, MetadataImage, MetadataRecord, PartitionRecord};

/// Records to append and the answer to give once they are committed.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerResult<T> {
    pub records: Vec<MetadataRecord>,
    pub response: T,
}

impl<T> ControllerResult<T> {
    /// The same decision with nothing to append when `validate_only` (Kafka's validateOnly:
    /// the answer a real change would get, and no change).
    pub fn validate_only(mut self, validate_only: bool) -> Self {
        if validate_only {
            self.records.clear();
        }
        self
    }
}

/// Broker-wide defaults for topics created without explicit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicDefaults {
    pub num_partitions: u32,
    pub replication_factor: u16,
}

/// A topic to create, as CreateTopics or auto-creation asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub num_partitions: i32,
    /// -1: the broker default.
    pub replication_factor: i16,
    /// Explicit replicas per partition; empty to let the controller assign them.
    pub assignments: BTreeMap<u32, Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    pub name: String,
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's topic name rules: 1..=249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let invalid = |reason: &str| MetadataError::InvalidTopic {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), MetadataError> {
    configs
        .iter()
        .try_for_each(|(k, v)| crate::configs::validate(k, v))
}

/// Decides the topics to create. Live brokers are the unfenced ones; replicas are spread
/// round-robin over them starting at a per-topic offset so leaders spread too.
pub fn create_topics(
    image: &MetadataImage,
    topics: &[NewTopic],
    defaults: TopicDefaults,
    mut new_id: impl FnMut() -> Uuid,
) -> ControllerResult<Vec<Result<CreatedTopic, MetadataError>>> {
    let live = live_placed(image);
    let mut records = Vec::new();
    let mut response = Vec::with_capacity(topics.len());
    let mut seen = BTreeSet::new();
    for (n, t) in topics.iter().enumerate() {
        let result = plan_topic(image, t, defaults, &live, image.topics().count() + n)
            .and_then(|plan| {
                if !seen.insert(t.name.clone()) {
                    return Err(MetadataError::TopicAlreadyExists {
                        name: t.name.clone(),
                    });
                }
                Ok(plan)
            })
            .map(|partitions| {
                let topic_id = new_id();
                let created = CreatedTopic {
                    name: t.name.clone(),
                    topic_id,
                    num_partitions: partitions.len() as i32,
                    replication_factor: partitions.first().map_or(0, |p| p.replicas.len() as i16),
                    configs: t.configs.clone(),
                };
                records.push(MetadataRecord::CreateTopic {
                    name: t.name.clone(),
                    topic_id,
                    partitions,
                    configs: t.configs.clone(),
                });
                created
            });
        response.push(result);
    }
    ControllerResult { records, response }
}

fn plan_topic(
    image: &MetadataImage,
    t: &NewTopic,
    defaults: TopicDefaults,
    live: &[PlacedBroker],
    spread: usize,
) -> Result<Vec<PartitionRecord>, MetadataError> {
    validate_topic_name(&t.name)?;
    if image.topic(&t.name).is_some() {
        return Err(MetadataError::TopicAlreadyExists {
            name: t.name.clone(),
        });
    }
    validate_configs(&t.configs)?;
    let assignments: Vec<Vec<i32>> = if !t.assignments.is_empty() {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(MetadataError::InvalidReplicaAssignment {
                reason: "give either an assignment or partitions and replication factor".into(),
            });
        }
        let expected: Vec<u32> = (0..t.assignments.len() as u32).collect();
        if t.assignments.keys().copied().collect::<Vec<_>>() != expected {
            return Err(MetadataError::InvalidReplicaAssignment {
                reason: "partitions must be numbered 0..n without gaps".into(),
            });
        }
        for replicas in t.assignments.values() {
            check_replicas(image, replicas)?;
        }
        t.assignments.values().cloned().collect()
    } else {
        let partitions = match t.num_partitions {
            -1 => defaults.num_partitions as i32,
            n if n < 1 => {
                return Err(MetadataError::InvalidPartitions {
                    partitions: n,
                    reason: "must be at least 1".into(),
                })
            }
            n => n,
        };
        if partitions > 100_000 {
            return Err(MetadataError::InvalidPartitions {
                partitions,
                reason: "more than 100000 partitions in one topic".into(),
            });
        }
        let rf = match t.replication_factor {
            -1 => defaults.replication_factor as i32,
            n => n as i32,
        };
        if rf < 1 || rf as usize > live.len() {
            return Err(MetadataError::InvalidReplicationFactor {
                replication_factor: rf,
                reason: format!("must be between 1 and the {} live broker(s)", live.len()),
            });
        }
        placement::assign(live, spread, partitions as usize, rf as usize)
    };
    let live: Vec<i32> = live.iter().map(|b| b.id).collect();
    Ok(assignments
        .into_iter()
        .map(|replicas| new_partition(replicas, &live))
        .collect())
}

/// The live brokers with their racks, for [`placement::assign`].
fn live_placed(image: &MetadataImage) -> Vec<PlacedBroker> {
    image
        .live_brokers()
        .map(|b| PlacedBroker {
            id: b.broker_id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// A new partition on `replicas`: its live replicas start in sync and the first of them
/// leads. With none alive it is offline with the whole replica list as ISR, so the first
/// replica to register leads it.
fn new_partition(replicas: Vec<i32>, live: &[i32]) -> PartitionRecord {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|b| live.contains(b))
        .collect();
    PartitionRecord {
        leader: isr.first().copied().unwrap_or(-1),
        isr: if isr.is_empty() {
            replicas.clone()
        } else {
            isr
        },
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

/// One explicitly assigned replica list: not empty, distinct, registered brokers only.
fn check_replicas(image: &MetadataImage, replicas: &[i32]) -> Result<(), MetadataError> {
    let distinct: BTreeSet<_> = replicas.iter().collect();
    if replicas.is_empty() || distinct.len() != replicas.len() {
        return Err(MetadataError::InvalidReplicaAssignment {
            reason: "each partition needs distinct replicas".into(),
        });
    }
    if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
        return Err(MetadataError::InvalidReplicaAssignment {
            reason: format!("broker {b} is not registered"),
        });
    }
    Ok(())
}

/// A topic to delete, by name or id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

/// A topic a DeleteTopics request removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedTopic {
    pub name: String,
    pub topic_id: Uuid,
}

/// Decides which topics to delete.
pub fn delete_topics(
    image: &MetadataImage,
    topics: &[TopicRef],
) -> ControllerResult<Vec<Result<DeletedTopic, MetadataError>>> {
    let mut records = Vec::new();
    let mut deleted = BTreeSet::new();
    let response = topics
        .iter()
        .map(|t| {
            let topic = match t {
                TopicRef::Name(name) => image
                    .topic(name)
                    .ok_or_else(|| MetadataError::UnknownTopic { name: name.clone() }),
                TopicRef::Id(id) => image
                    .topic_by_id(id)
                    .ok_or(MetadataError::UnknownTopicId { topic_id: *id }),
            }?;
            if deleted.insert(topic.topic_id) {
                records.push(MetadataRecord::DeleteTopic {
                    topic_id: topic.topic_id,
                });
            }
            Ok(DeletedTopic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
            })
        })
        .collect();
    ControllerResult { records, response }
}

/// Records to append when a decision succeeded, none (and the error as the answer) if not.
fn decided(
    result: Result<Vec<MetadataRecord>, MetadataError>,
) -> ControllerResult<Result<(), MetadataError>> {
    match result {
        Ok(records) => ControllerResult {
            records,
            response: Ok(()),
        },
        Err(e) => ControllerResult {
            records: vec![],
            response: Err(e),
        },
    }
}

/// One change of AlterConfigs (replace: `Set`s plus `Delete`s of everything else) or
/// IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Adds to a list config (cleanup.policy).
    Append {
        key: String,
        value: String,
    },
    /// Removes from a list config.
    Subtract {
        key: String,
        value: String,
    },
}

/// Decides the ConfigChange records for one topic. With `replace`, configs not set by `ops`
/// go back to their defaults (AlterConfigs); otherwise only `ops` apply (Incremental).
pub fn alter_topic_configs(
    image: &MetadataImage,
    topic: &str,
    ops: &[ConfigOp],
    replace: bool,
) -> ControllerResult<Result<(), MetadataError>> {
    let decide = || -> Result<Vec<MetadataRecord>, MetadataError> {
        let t = image
            .topic(topic)
            .ok_or_else(|| MetadataError::UnknownTopic {
                name: topic.to_string(),
            })?;
        let mut next = if replace {
            BTreeMap::new()
        } else {
            t.configs.clone()
        };
        for op in ops {
            match op {
                ConfigOp::Set { key, value } => {
                    crate::configs::validate(key, value)?;
                    next.insert(key.clone(), value.trim().to_string());
                }
                ConfigOp::Delete { key } => {
                    crate::configs::lookup(key).ok_or_else(|| MetadataError::InvalidConfig {
                        key: key.clone(),
                        reason: "unknown topic config".into(),
                    })?;
                    next.remove(key);
                }
                ConfigOp::Append { key, value } | ConfigOp::Subtract { key, value } => {
                    let d = crate::configs::lookup(key).ok_or_else(|| {
                        MetadataError::InvalidConfig {
                            key: key.clone(),
                            reason: "unknown topic config".into(),
                        }
                    })?;
                    if d.ty != crate::configs::ConfigType::List {
                        return Err(MetadataError::InvalidConfig {
                            key: key.clone(),
                            reason: "APPEND and SUBTRACT work on list configs only".into(),
                        });
                    }
                    let current = next.get(key).map_or(d.default, String::as_str).to_string();
                    let mut items: Vec<String> = current
                        .split(',')
                        .map(|i| i.trim().to_string())
                        .filter(|i| !i.is_empty())
                        .collect();
                    for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                        let present = items.iter().any(|i| i == v);
                        match op {
                            ConfigOp::Append { .. } if !present => items.push(v.to_string()),
                            ConfigOp::Subtract { .. } => items.retain(|i| i != v),
                            _ => {}
                        }
                    }
                    if items.is_empty() {
                        next.remove(key);
                    } else {
                        let joined = items.join(",");
                        crate::configs::validate(key, &joined)?;
                        next.insert(key.clone(), joined);
                    }
                }
            }
        }
        let mut records = Vec::new();
        for (k, v) in &next {
            if t.configs.get(k) != Some(v) {
                records.push(MetadataRecord::ConfigChange {
                    topic_id: t.topic_id,
                    key: k.clone(),
                    value: Some(v.clone()),
                });
            }
        }
        for k in t.configs.keys() {
            if !next.contains_key(k) {
                records.push(MetadataRecord::ConfigChange {
                    topic_id: t.topic_id,
                    key: k.clone(),
                    value: None,
                });
            }
        }
        Ok(records)
    };
    decided(decide())
}

/// AlterConfigs / IncrementalAlterConfigs on a broker (`broker` None: the cluster-wide
/// default): only the dynamic broker configs ([`crate::configs::DYNAMIC_BROKER_CONFIGS`]).
pub fn alter_broker_configs(
    image: &MetadataImage,
    broker: Option<i32>,
    ops: &[ConfigOp],
    replace: bool,
) -> ControllerResult<Result<(), MetadataError>> {
    let decide = || -> Result<Vec<MetadataRecord>, MetadataError> {
        let current = image.broker_configs.get(&broker);
        let changes = config_changes(current, ops, replace, |key, value| {
            if value.is_none() && crate::configs::lookup_broker(key).is_some() {
                return Ok(());
            }
            crate::configs::validate_broker(key, value.unwrap_or(""))
        })?;
        Ok(changes
            .into_iter()
            .map(|(key, value)| MetadataRecord::BrokerConfigChange {
                broker_id: broker,
                key,
                value,
            })
            .collect())
    };
    decided(decide())
}

/// AlterConfigs / IncrementalAlterConfigs on a group: the configs of
/// [`crate::configs::GROUP_CONFIGS`]. A group need not exist to be configured (Kafka's
/// `kafka-configs.sh --entity-type groups` works ahead of the group).
pub fn alter_group_configs(
    image: &MetadataImage,
    group: &str,
    ops: &[ConfigOp],
    replace: bool,
) -> ControllerResult<Result<(), MetadataError>> {
    let decide = || -> Result<Vec<MetadataRecord>, MetadataError> {
        crate::configs::check_group_id(group)?;
        let current = image.group_configs.get(group);
        let changes = config_changes(current, ops, replace, check_group_config)?;
        Ok(changes
            .into_iter()
            .map(|(key, value)| MetadataRecord::GroupConfigChange {
                group: group.to_string(),
                key,
                value,
            })
            .collect())
    };
    decided(decide())
}

/// A group's configs as `ops` would leave them (checked as `alter_group_configs` checks
/// them): what a broker holds against its own settings before it asks the controller.
pub fn group_configs_after(
    image: &MetadataImage,
    group: &str,
    ops: &[ConfigOp],
    replace: bool,
) -> Result<BTreeMap<String, String>, MetadataError> {
    config_after(
        image.group_configs.get(group),
        ops,
        replace,
        check_group_config,
    )
}

fn check_group_config(key: &str, value: Option<&str>) -> Result<(), MetadataError> {
    match value {
        None if crate::configs::lookup_group(key).is_some() => Ok(()),
        v => crate::configs::validate_group(key, v.unwrap_or("")),
    }
}

/// A config map after `ops` (`replace`: AlterConfigs, which drops what it does not set).
/// `check` sees each set value, and each deleted key with None.
fn config_after(
    current: Option<&BTreeMap<String, String>>,
    ops: &[ConfigOp],
    replace: bool,
    check: impl Fn(&str, Option<&str>) -> Result<(), MetadataError>,
) -> Result<BTreeMap<String, String>, MetadataError> {
    let mut next = match (replace, current) {
        (false, Some(c)) => c.clone(),
        _ => BTreeMap::new(),
    };
    for op in ops {
        match op {
            ConfigOp::Set { key, value } => {
                check(key, Some(value))?;
                next.insert(key.clone(), value.trim().to_string());
            }
            ConfigOp::Delete { key } => {
                check(key, None)?;
                next.remove(key);
            }
            ConfigOp::Append { key, .. } | ConfigOp::Subtract { key, .. } => {
                return Err(MetadataError::InvalidConfig {
                    key: key.clone(),
                    reason: "APPEND and SUBTRACT work on list configs only".into(),
                })
            }
        }
    }
    Ok(next)
}

/// The changes `ops` make to a config map, as (key, new value or None to remove).
fn config_changes(
    current: Option<&BTreeMap<String, String>>,
    ops: &[ConfigOp],
    replace: bool,
    check: impl Fn(&str, Option<&str>) -> Result<(), MetadataError>,
) -> Result<Vec<(String, Option<String>)>, MetadataError> {
    let next = config_after(current, ops, replace, check)?;
    let empty = BTreeMap::new();
    let current = current.unwrap_or(&empty);
    let set = next
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())));
    let removed = current
        .keys()
        .filter(|k| !next.contains_key(*k))
        .map(|k| (k.clone(), None));
    Ok(set.chain(removed).collect())
}

/// Grows a topic to `total` partitions (CreatePartitions). New partitions are spread over the
/// live brokers like the first ones, or placed as `assignments` says.
pub fn create_partitions(
    image: &MetadataImage,
    topic: &str,
    total: i32,
    assignments: Option<&[Vec<i32>]>,
) -> ControllerResult<Result<(), MetadataError>> {
    let decide = || -> Result<Vec<MetadataRecord>, MetadataError> {
        let t = image
            .topic(topic)
            .ok_or_else(|| MetadataError::UnknownTopic {
                name: topic.to_string(),
            })?;
        let current = t.partitions.len() as i32;
        if total <= current {
            return Err(MetadataError::InvalidPartitions {
                partitions: total,
                reason: format!(
                    "topic '{topic}' already has {current} partitions; the count can only grow"
                ),
            });
        }
        if total > 100_000 {
            return Err(MetadataError::InvalidPartitions {
                partitions: total,
                reason: "more than 100000 partitions in one topic".into(),
            });
        }
        let adding = (total - current) as usize;
        let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
        let live = live_placed(image);
        let replicas: Vec<Vec<i32>> = match assignments {
            Some(a) => {
                if a.len() != adding {
                    return Err(MetadataError::InvalidReplicaAssignment {
                        reason: format!("{} assignments for {adding} new partitions", a.len()),
                    });
                }
                for r in a {
                    if r.len() != rf {
                        return Err(MetadataError::InvalidReplicaAssignment {
                            reason: format!("each new partition needs {rf} replicas"),
                        });
                    }
                    check_replicas(image, r)?;
                }
                a.to_vec()
            }
            None => {
                if rf > live.len() {
                    return Err(MetadataError::InvalidReplicationFactor {
                        replication_factor: rf as i32,
                        reason: format!("only {} live broker(s)", live.len()),
                    });
                }
                placement::assign(&live, current as usize, adding, rf)
            }
        };
        let live: Vec<i32> = live.iter().map(|b| b.id).collect();
        let partitions = replicas
            .into_iter()
            .map(|replicas| new_partition(replicas, &live))
            .collect();
        Ok(vec![MetadataRecord::AddPartitions {
            topic_id: t.topic_id,
            partitions,
        }])
    };
    decided(decide())
}

/// Hands `count` producer ids to a broker (it gives them out in InitProducerId).
pub fn allocate_producer_ids(
    image: &MetadataImage,
    broker_id: i32,
    count: i64,
) -> ControllerResult<(i64, i64)> {
    let first_id = image.next_producer_id;
    ControllerResult {
        records: vec![MetadataRecord::AllocateProducerIds {
            broker_id,
            first_id,
            count,
        }],
        response: (first_id, count),
    }
}

/// One ISR change a partition leader asks for (AlterPartition), stamped with the epochs the
/// leader knows, so a change decided on stale state is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrChange {
    pub topic_id: Uuid,
    pub partition: u32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// A partition's leadership after an accepted change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    pub leader: i32,
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// AlterPartition: the leader `broker_id` shrinks or expands ISRs. Each change must come from
/// the current leader at the current leader and partition epochs; the ISR must hold the
/// leader, only replicas, no duplicates, and every member it adds must be a live (registered,
/// unfenced) broker. An accepted change bumps the partition epoch and keeps leader and leader
/// epoch.
pub fn alter_partition(
    image: &MetadataImage,
    broker_id: i32,
    changes: &[IsrChange],
) -> ControllerResult<Vec<Result<Leadership, MetadataError>>> {
    let mut records = Vec::new();
    let mut seen = BTreeSet::new();
    let response = changes
        .iter()
        .map(|c| {
            let topic = image
                .topic_by_id(&c.topic_id)
                .ok_or(MetadataError::UnknownTopicId {
                    topic_id: c.topic_id,
                })?;
            let p = topic.partitions.get(c.partition as usize).ok_or(
                MetadataError::UnknownPartition {
                    topic_id: c.topic_id,
                    partition: c.partition,
                },
            )?;
            if p.leader != broker_id {
                return Err(MetadataError::NotLeader {
                    broker_id,
                    leader: p.leader,
                });
            }
            if c.leader_epoch != p.leader_epoch {
                return Err(MetadataError::FencedLeaderEpoch {
                    requested: c.leader_epoch,
                    current: p.leader_epoch,
                });
            }
            if c.partition_epoch != p.partition_epoch || !seen.insert((c.topic_id, c.partition)) {
                return Err(MetadataError::InvalidUpdateVersion {
                    requested: c.partition_epoch,
                    current: p.partition_epoch,
                });
            }
            let unique: BTreeSet<i32> = c.new_isr.iter().copied().collect();
            if unique.len() != c.new_isr.len() || !unique.contains(&broker_id) {
                return Err(MetadataError::InvalidIsr {
                    reason: format!("{:?} must name the leader {broker_id} once", c.new_isr),
                });
            }
            if let Some(b) = c.new_isr.iter().find(|b| !p.replicas.contains(b)) {
                return Err(MetadataError::InvalidIsr {
                    reason: format!("{b} is not a replica of the partition"),
                });
            }
            for b in c.new_isr.iter().filter(|b| !p.isr.contains(b)) {
                match image.brokers.get(b) {
                    Some(x) if !x.fenced => {}
                    Some(_) => {
                        return Err(MetadataError::IneligibleReplica {
                            broker_id: *b,
                            reason: "it is fenced".into(),
                        })
                    }
                    None => {
                        return Err(MetadataError::IneligibleReplica {
                            broker_id: *b,
                            reason: "it is not registered".into(),
                        })
                    }
                }
            }
            // Replica order, as Kafka lists ISRs.
            let isr: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| unique.contains(r))
                .collect();
            let mut partition_epoch = p.partition_epoch;
            if isr != p.isr {
                partition_epoch += 1;
                records.push(MetadataRecord::PartitionChange {
                    topic_id: c.topic_id,
                    partition: c.partition,
                    leader: p.leader,
                    isr: isr.clone(),
                    leader_epoch: p.leader_epoch,
                    partition_epoch,
                });
            }
            Ok(Leadership {
                leader: p.leader,
                isr,
                leader_epoch: p.leader_epoch,
                partition_epoch,
            })
        })
        .collect();
    ControllerResult { records, response }
}

/// A partition named in ElectLeaders.
pub type PartitionName = (String, u32);

/// ElectLeaders. PREFERRED (`unclean` false): each partition's first replica leads again if
/// it is alive and in the ISR (Kafka's preferred leader election, after a failover moved
/// leadership away). UNCLEAN: a partition with no live leader gets a live replica from
/// outside the ISR (what only the ISR held is lost). `partitions` None: every partition, and
/// only the ones elected are in the answer (as Kafka does).
pub fn elect_leaders(
    image: &MetadataImage,
    unclean: bool,
    partitions: Option<&[PartitionName]>,
) -> ControllerResult<Vec<(PartitionName, Result<(), MetadataError>)>> {
    let alive = |b: i32| image.brokers.get(&b).is_some_and(|x| !x.fenced);
    let all: Vec<PartitionName>;
    let wanted = match partitions {
        Some(p) => p,
        None => {
            all = image
                .topics()
                .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
                .collect();
            &all
        }
    };
    let mut records = Vec::new();
    let mut response = Vec::new();
    for (name, index) in wanted {
        let found = image
            .topic(name)
            .and_then(|t| t.partitions.get(*index as usize).map(|p| (t, p)));
        let Some((topic, p)) = found else {
            response.push((
                (name.clone(), *index),
                Err(MetadataError::UnknownTopic { name: name.clone() }),
            ));
            continue;
        };
        let elected = if unclean {
            if p.leader >= 0 && alive(p.leader) {
                Err(MetadataError::ElectionNotNeeded {
                    reason: format!("broker {} leads and is alive", p.leader),
                })
            } else if let Some(r) = p.isr.iter().copied().find(|r| alive(*r)) {
                Ok((r, p.isr.clone()))
            } else if let Some(r) = p.replicas.iter().copied().find(|r| alive(*r)) {
                Ok((r, vec![r]))
            } else {
                Err(MetadataError::EligibleLeadersNotAvailable {
                    reason: "no replica of the partition is alive".into(),
                })
            }
        } else {
            match p.replicas.first().copied() {
                Some(preferred) if preferred == p.leader => Err(MetadataError::ElectionNotNeeded {
                    reason: format!("the preferred replica {preferred} already leads"),
                }),
                Some(preferred) if alive(preferred) && p.isr.contains(&preferred) => {
                    Ok((preferred, p.isr.clone()))
                }
                Some(preferred) => Err(MetadataError::PreferredLeaderNotAvailable {
                    reason: format!(
                        "the preferred replica {preferred} is not alive and in the ISR {:?}",
                        p.isr
                    ),
                }),
                None => Err(MetadataError::PreferredLeaderNotAvailable {
                    reason: "the partition has no replicas".into(),
                }),
            }
        };
        match elected {
            Ok((leader, isr)) => {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.topic_id,
                    partition: p.partition,
                    leader,
                    isr,
                    leader_epoch: p.leader_epoch + 1,
                    partition_epoch: p.partition_epoch + 1,
                });
                response.push(((name.clone(), *index), Ok(())));
            }
            // Electing every partition, only elections are reported (as KRaft does).
            Err(_) if partitions.is_none() => {}
            Err(e) => response.push(((name.clone(), *index), Err(e))),
        }
    }
    ControllerResult { records, response }
}

/// One partition's AlterPartitionReassignments entry: the target replicas, or None to cancel.
pub type Reassignment = (PartitionName, Option<Vec<i32>>);

/// AlterPartitionReassignments (KIP-455). A target starts a reassignment: the partition's
/// replicas become the target followed by the replicas leaving; those joining catch up as
/// followers and [`complete_reassignments`] switches to the target once they are all in the
/// ISR. A target equal to the current replicas does nothing; a new target while one is in
/// progress replaces it (measured from the replicas before it started). None cancels: the
/// replicas before it started come back and the joining ones leave. Each entry is decided on
/// its own; a refused one changes nothing.
pub fn alter_partition_reassignments(
    image: &MetadataImage,
    requests: &[Reassignment],
) -> ControllerResult<Vec<(PartitionName, Result<(), MetadataError>)>> {
    let mut records = Vec::new();
    let mut response = Vec::new();
    let mut seen = BTreeSet::new();
    for ((name, index), target) in requests {
        let key = (name.clone(), *index);
        let result = (|| {
            if !seen.insert(key.clone()) {
                return Err(MetadataError::InvalidReplicaAssignment {
                    reason: format!("{name}-{index} is named twice"),
                });
            }
            let topic = image
                .topic(name)
                .ok_or_else(|| MetadataError::UnknownTopic { name: name.clone() })?;
            let p = topic
                .partitions
                .get(*index as usize)
                .ok_or_else(|| MetadataError::UnknownTopic { name: name.clone() })?;
            let record = match target {
                Some(t) => start_reassignment(image, topic.topic_id, p, t)?,
                None => Some(cancel_reassignment(image, topic.topic_id, p)?),
            };
            records.extend(record);
            Ok(())
        })();
        response.push((key, result));
    }
    ControllerResult { records, response }
}

fn alive_in(image: &MetadataImage, b: i32) -> bool {
    image.brokers.get(&b).is_some_and(|x| !x.fenced)
}

/// The leader a changed replica set keeps: the current one if it stays and lives, else the
/// first live member of `isr` with a new leader epoch (-1 with none).
fn leader_for(
    image: &MetadataImage,
    p: &crate::PartitionImage,
    replicas: &[i32],
    isr: &[i32],
) -> (i32, i32) {
    if p.leader >= 0 && replicas.contains(&p.leader) && isr.contains(&p.leader) {
        return (p.leader, p.leader_epoch);
    }
    let leader = isr
        .iter()
        .copied()
        .find(|b| alive_in(image, *b))
        .unwrap_or(-1);
    (leader, p.leader_epoch + 1)
}

fn start_reassignment(
    image: &MetadataImage,
    topic_id: Uuid,
    p: &crate::PartitionImage,
    target: &[i32],
) -> Result<Option<MetadataRecord>, MetadataError> {
    let unique: BTreeSet<i32> = target.iter().copied().collect();
    if target.is_empty() || unique.len() != target.len() {
        return Err(MetadataError::InvalidReplicaAssignment {
            reason: format!("{target:?}: the replicas must be distinct and at least one"),
        });
    }
    if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
        return Err(MetadataError::InvalidReplicaAssignment {
            reason: format!("broker {b} is not registered"),
        });
    }
    let original = p.original_replicas();
    if target == original.as_slice() {
        return if p.reassigning() {
            cancel_reassignment(image, topic_id, p).map(Some)
        } else {
            Ok(None)
        };
    }
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|b| !original.contains(b))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|b| !unique.contains(b))
        .collect();
    let replicas: Vec<i32> = target.iter().chain(&removing).copied().collect();
    reassignment_record(image, topic_id, p, replicas, adding, removing)
        .map(Some)
        .map_err(|()| MetadataError::InvalidReplicaAssignment {
            reason: "no replica of the partition would stay in sync".into(),
        })
}

/// The record giving partition `p` the replica set `replicas` (with `adding` and `removing`
/// while a move is in progress): the ISR keeps its members among them, the leader stays if
/// it is one of them, else the first live one leads with a new epoch. Err when no ISR member
/// would remain.
fn reassignment_record(
    image: &MetadataImage,
    topic_id: Uuid,
    p: &crate::PartitionImage,
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
) -> Result<MetadataRecord, ()> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|b| p.isr.contains(b))
        .collect();
    if isr.is_empty() {
        return Err(());
    }
    let (leader, mut leader_epoch) = leader_for(image, p, &replicas, &isr);
    // Removed replicas are fenced by a new leader epoch even where the leader stays.
    if leader_epoch == p.leader_epoch && p.replicas.iter().any(|b| !replicas.contains(b)) {
        leader_epoch += 1;
    }
    Ok(MetadataRecord::PartitionReassignment {
        topic_id,
        partition: p.partition,
        replicas,
        adding,
        removing,
        leader,
        isr,
        leader_epoch,
        partition_epoch: p.partition_epoch + 1,
    })
}

fn cancel_reassignment(
    image: &MetadataImage,
    topic_id: Uuid,
    p: &crate::PartitionImage,
) -> Result<MetadataRecord, MetadataError> {
    if !p.reassigning() {
        return Err(MetadataError::NoReassignmentInProgress {
            reason: format!("partition {} has no reassignment in progress", p.partition),
        });
    }
    reassignment_record(image, topic_id, p, p.original_replicas(), vec![], vec![]).map_err(|()| {
        MetadataError::InvalidReplicaAssignment {
            reason: "cannot cancel: none of the original replicas is in sync".into(),
        }
    })
}

/// Completes every reassignment whose target replicas are all in the ISR: the replicas
/// become the target, the leaving ones drop out of the ISR, and leadership moves to a target
/// replica in the ISR if the leader is leaving. The active controller runs this on every
/// tick, so a reassignment half-way through a controller failover completes under the next.
pub fn complete_reassignments(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for p in topic.partitions.iter().filter(|p| p.reassigning()) {
            // As KIP-455: every target replica in sync, not only the joining ones (else the
            // switch could leave fewer in-sync replicas than before).
            if !p.target_replicas().iter().all(|b| p.isr.contains(b)) {
                continue;
            }
            // Waits while no live target replica could lead.
            if let Ok(r @ MetadataRecord::PartitionReassignment { leader: 0.., .. }) =
                reassignment_record(
                    image,
                    topic.topic_id,
                    p,
                    p.target_replicas(),
                    vec![],
                    vec![],
                )
            {
                records.push(r);
            }
        }
    }
    records
}

/// Automatic preferred leader balancing (`auto.leader.rebalance.enable`): for each broker, the
/// partitions whose first (preferred) replica it is but which another replica leads. When
/// that share passes `percentage` of the broker's preferred partitions
/// (`leader.imbalance.per.broker.percentage`), those partitions are named for a preferred
/// election, which moves only the ones whose preferred replica is alive and in the ISR.
pub fn imbalanced_partitions(image: &MetadataImage, percentage: u32) -> Vec<PartitionName> {
    let mut preferred: BTreeMap<i32, (usize, Vec<PartitionName>)> = BTreeMap::new();
    for topic in image.topics() {
        for p in &topic.partitions {
            let Some(&first) = p.replicas.first() else {
                continue;
            };
            let entry = preferred.entry(first).or_default();
            entry.0 += 1;
            // Offline partitions are not imbalanced (as the imbalance gauge counts): an
            // election could not move them.
            if p.leader >= 0 && p.leader != first {
                entry.1.push((topic.name.clone(), p.partition));
            }
        }
    }
    let mut out = Vec::new();
    for (broker, (total, mut moved)) in preferred {
        let alive = image.brokers.get(&broker).is_some_and(|b| !b.fenced);
        // Over the threshold: imbalance * 100 > percentage * total, in integers.
        if alive && !moved.is_empty() && moved.len() * 100 > percentage as usize * total {
            out.append(&mut moved);
        }
    }
    out
}

/// Whether `topic` allows electing a replica outside the ISR when no ISR member is alive.
fn unclean_allowed(topic: &crate::TopicImage) -> bool {
    topic
        .configs
        .get(crate::configs::UNCLEAN_LEADER_ELECTION_ENABLE)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Fences a broker whose session lapsed: it leaves every ISR it is in (unless it is the last
/// member, as KRaft keeps it), and every partition it led gets the first live ISR member as
/// leader, or goes offline (leader -1). Leader epochs grow whenever the leader changes.
pub fn fence_broker(image: &MetadataImage, broker_id: i32) -> ControllerResult<()> {
    let mut records = Vec::new();
    match image.brokers.get(&broker_id) {
        Some(b) if !b.fenced => records.push(MetadataRecord::FenceBroker { broker_id }),
        _ => {
            return ControllerResult {
                records,
                response: (),
            }
        }
    }
    records.extend(leave_isrs(image, broker_id, true, &|_| true));
    ControllerResult {
        records,
        response: (),
    }
}

/// `broker_id` leaves every ISR it is in but is not the last member of; where it led, the
/// first other live ISR member leads. With `sole`, partitions whose only ISR member it is lose
/// their leader too (fencing: it is gone); without, they keep it (a restart: it is back).
fn leave_isrs(
    image: &MetadataImage,
    broker_id: i32,
    sole: bool,
    live: &dyn Fn(i32) -> bool,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    let alive =
        |b: &i32| *b != broker_id && image.brokers.get(b).is_some_and(|x| !x.fenced) && live(*b);
    for topic in image.topics() {
        for p in &topic.partitions {
            if !p.isr.contains(&broker_id) && p.leader != broker_id {
                continue;
            }
            let mut isr: Vec<i32> = p.isr.iter().copied().filter(|b| *b != broker_id).collect();
            // A restart leaves an ISR only for another member that is alive now.
            if !sole && !isr.iter().any(alive) {
                continue;
            }
            if isr.is_empty() {
                isr = p.isr.clone();
            }
            let mut leader = if p.leader == broker_id || p.leader < 0 {
                isr.iter().copied().find(alive).unwrap_or(-1)
            } else {
                p.leader
            };
            if leader < 0 && unclean_allowed(topic) {
                // Unclean: a live replica outside the ISR leads; what only the ISR held is lost.
                if let Some(r) = p.replicas.iter().copied().find(alive) {
                    leader = r;
                    isr = vec![r];
                }
            }
            records.push(MetadataRecord::PartitionChange {
                topic_id: topic.topic_id,
                partition: p.partition,
                leader,
                isr,
                leader_epoch: if leader != p.leader {
                    p.leader_epoch + 1
                } else {
                    p.leader_epoch
                },
                partition_epoch: p.partition_epoch + 1,
            });
        }
    }
    records
}

/// Brings a fenced (or newly registered) broker back: it is unfenced and leads every offline
/// partition whose ISR names it.
pub fn unfence_broker(image: &MetadataImage, broker_id: i32) -> ControllerResult<()> {
    let mut records = Vec::new();
    if image.brokers.get(&broker_id).is_some_and(|b| b.fenced) {
        records.push(MetadataRecord::UnfenceBroker { broker_id });
    }
    records.extend(elect_offline(image, broker_id));
    ControllerResult {
        records,
        response: (),
    }
}

fn elect_offline(image: &MetadataImage, broker_id: i32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for p in &topic.partitions {
            if p.leader >= 0 {
                continue;
            }
            let isr = if p.isr.contains(&broker_id) {
                p.isr.clone()
            } else if p.replicas.contains(&broker_id) && unclean_allowed(topic) {
                vec![broker_id]
            } else {
                continue;
            };
            records.push(MetadataRecord::PartitionChange {
                topic_id: topic.topic_id,
                partition: p.partition,
                leader: broker_id,
                isr,
                leader_epoch: p.leader_epoch + 1,
                partition_epoch: p.partition_epoch + 1,
            });
        }
    }
    records
}

/// Registers a broker starting up (a new incarnation every start); it leads the offline
/// partitions whose ISR names it. `live` says which other brokers have a current session with
/// the controller (after a controller restart, unfenced in the image is not enough).
pub fn register_broker(
    image: &MetadataImage,
    broker_id: i32,
    incarnation: Uuid,
    endpoints: Vec<Endpoint>,
    rack: Option<String>,
    live: &dyn Fn(i32) -> bool,
) -> ControllerResult<Result<(), MetadataError>> {
    // An incarnation that was unregistered (decommissioned) stays out; the same broker id
    // started again (a new incarnation) registers as usual.
    if image.unregistered.get(&broker_id) == Some(&incarnation) {
        return decided(Err(MetadataError::BrokerIdNotRegistered {
            reason: format!(
                "broker {broker_id} was unregistered (decommissioned); restart it to register it again"
            ),
        }));
    }
    let mut records = vec![MetadataRecord::RegisterBroker {
        broker_id,
        incarnation,
        endpoints,
        rack,
    }];
    // A new incarnation of a broker the ISRs still name (it restarted before its session
    // lapsed, e.g. after kill -9) may have lost what it had not yet written out: it leaves
    // the ISRs where another member remains and rejoins them once it has caught up again, as
    // Kafka drops a broker with a new epoch from the ISR (KIP-841, KIP-903).
    let restarted = image
        .brokers
        .get(&broker_id)
        .is_some_and(|b| b.incarnation != incarnation && !b.fenced);
    let left = if restarted {
        leave_isrs(image, broker_id, false, live)
    } else {
        vec![]
    };
    let after = image.replay(&left).unwrap_or_else(|_| image.clone());
    records.extend(left);
    records.extend(elect_offline(&after, broker_id));
    ControllerResult {
        records,
        response: Ok(()),
    }
}

/// UpdateFeatures: every update is checked (`features::update`) and the records of all of
/// them are committed together, or, if any is refused, none (the first refusal answers).
pub fn update_features(
    image: &MetadataImage,
    updates: &[crate::features::FeatureUpdate],
) -> ControllerResult<Result<(), MetadataError>> {
    let decide = || -> Result<Vec<MetadataRecord>, MetadataError> {
        use crate::features::METADATA_VERSION;
        // Dependencies are checked against metadata.version as this request leaves it.
        let metadata_version = updates
            .iter()
            .find(|u| u.name == METADATA_VERSION)
            .map(|u| u.level)
            .or_else(|| image.features.get(METADATA_VERSION).copied())
            .unwrap_or(0);
        let mut records = Vec::new();
        for u in updates {
            if updates.iter().filter(|o| o.name == u.name).count() > 1 {
                return Err(MetadataError::FeatureUpdate {
                    reason: format!("feature {} is named more than once", u.name),
                });
            }
            records.extend(crate::features::update(image, u, metadata_version)?);
        }
        Ok(records)
    };
    decided(decide())
}

/// UnregisterBroker (KIP-500's `kafka-cluster.sh unregister`, the last step of a
/// decommission): the broker leaves the cluster metadata. Refused while any partition still
/// names it as a replica (move them off first: `strom cluster decommission` does), so no
/// partition is left pointing at a broker that is gone. Its running incarnation, if any, may
/// not register again; a restart (a new incarnation) may.
pub fn unregister_broker(
    image: &MetadataImage,
    broker_id: i32,
) -> ControllerResult<Result<(), MetadataError>> {
    let decide =
        || -> Result<Vec<MetadataRecord>, MetadataError> {
            let b = image.brokers.get(&broker_id).ok_or_else(|| {
                MetadataError::BrokerIdNotRegistered {
                    reason: format!("broker {broker_id} is not registered"),
                }
            })?;
            let hosted: Vec<String> = image
                .topics()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.replicas.contains(&broker_id))
                        .map(move |p| format!("{}-{}", t.name, p.partition))
                })
                .collect();
            if !hosted.is_empty() {
                let shown: Vec<&str> = hosted.iter().take(5).map(String::as_str).collect();
                return Err(MetadataError::InvalidRequest {
                    reason: format!(
                        "broker {broker_id} still hosts {} replica(s) ({}{}); reassign them first",
                        hosted.len(),
                        shown.join(", "),
                        if hosted.len() > shown.len() {
                            ", ..."
                        } else {
                            ""
                        }
                    ),
                });
            }
            Ok(vec![MetadataRecord::UnregisterBroker {
                broker_id,
                incarnation: b.incarnation,
            }])
        };
    decided(decide())
}

/// CreateAcls: each binding is checked and stored; one that exists already is not stored
/// twice (and is no error, as in Kafka).
pub fn create_acls(
    image: &MetadataImage,
    bindings: &[crate::acl::AclBinding],
) -> ControllerResult<Vec<Result<(), MetadataError>>> {
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for b in bindings {
        match b.invalid() {
            Some(reason) => results.push(Err(MetadataError::InvalidRequest { reason })),
            None => {
                if !image.acls.contains(b) && seen.insert(b.clone()) {
                    records.push(MetadataRecord::CreateAcl { binding: b.clone() });
                }
                results.push(Ok(()));
            }
        }
    }
    ControllerResult {
        records,
        response: results,
    }
}

/// DeleteAcls: the bindings each filter matches, all deleted.
pub fn delete_acls(
    image: &MetadataImage,
    filters: &[crate::acl::AclFilter],
) -> ControllerResult<Vec<Vec<crate::acl::AclBinding>>> {
    let mut gone = std::collections::BTreeSet::new();
    let matched: Vec<Vec<crate::acl::AclBinding>> = filters
        .iter()
        .map(|f| {
            image
                .acls
                .iter()
                .filter(|b| f.matches(b))
                .inspect(|b| {
                    gone.insert((*b).clone());
                })
                .cloned()
                .collect()
        })
        .collect();
    ControllerResult {
        records: gone
            .into_iter()
            .map(|binding| MetadataRecord::DeleteAcl { binding })
            .collect(),
        response: matched,
    }
}

/// Kafka's bounds on a SCRAM credential's iteration count.
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;
pub const SCRAM_MAX_ITERATIONS: u32 = 16384;

/// One change of AlterUserScramCredentials: a credential to set (already salted and derived by
/// the broker) or, with `credential` `None`, one to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramChange {
    pub user: String,
    /// 1: SCRAM-SHA-256, 2: SCRAM-SHA-512.
    pub mechanism: i8,
    pub credential: Option<ScramSecret>,
}

/// A user's SCRAM credential for one mechanism (what a broker checks a SCRAM exchange or a
/// PLAIN password against): salt, iterations and the derived keys, never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramSecret {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// AlterUserScramCredentials: every user's changes are applied together or not at all; the
/// answer is one result per user, in first-seen order (Kafka's per-user results).
pub fn alter_scram_credentials(
    image: &MetadataImage,
    changes: &[ScramChange],
) -> ControllerResult<Vec<(String, Result<(), MetadataError>)>> {
    let mut users: Vec<&str> = Vec::new();
    for c in changes {
        if !users.contains(&c.user.as_str()) {
            users.push(&c.user);
        }
    }
    let mut records = Vec::new();
    let mut results = Vec::new();
    for user in users {
        let mine: Vec<&ScramChange> = changes.iter().filter(|c| c.user == user).collect();
        let check = || -> Result<Vec<MetadataRecord>, MetadataError> {
            if user.is_empty() {
                return Err(MetadataError::UnacceptableCredential {
                    reason: "Username must not be empty".into(),
                });
            }
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for c in &mine {
                if !(1..=2).contains(&c.mechanism) {
                    return Err(MetadataError::UnsupportedSaslMechanism {
                        reason: format!("Unknown SCRAM mechanism {}", c.mechanism),
                    });
                }
                if seen.contains(&c.mechanism) {
                    return Err(MetadataError::DuplicateResource {
                        reason: "A user credential cannot be altered twice in the same request"
                            .into(),
                    });
                }
                seen.push(c.mechanism);
                match &c.credential {
                    Some(s) => {
                        if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&s.iterations) {
                            return Err(MetadataError::UnacceptableCredential {
                                reason: format!(
                                    "Iterations {} must be between {SCRAM_MIN_ITERATIONS} and {SCRAM_MAX_ITERATIONS}",
                                    s.iterations
                                ),
                            });
                        }
                        if s.salt.is_empty() || s.stored_key.is_empty() || s.server_key.is_empty() {
                            return Err(MetadataError::UnacceptableCredential {
                                reason: "the salt and the salted password must not be empty".into(),
                            });
                        }
                        out.push(MetadataRecord::UserScramCredential {
                            user: user.to_string(),
                            mechanism: c.mechanism,
                            salt: s.salt.clone(),
                            iterations: s.iterations,
                            stored_key: s.stored_key.clone(),
                            server_key: s.server_key.clone(),
                        });
                    }
                    None => {
                        if !image.scram.contains_key(&(user.to_string(), c.mechanism)) {
                            return Err(MetadataError::ResourceNotFound {
                                reason: "Attempt to delete a user credential that does not exist"
                                    .into(),
                            });
                        }
                        out.push(MetadataRecord::RemoveUserScramCredential {
                            user: user.to_string(),
                            mechanism: c.mechanism,
                        });
                    }
                }
            }
            Ok(out)
        };
        match check() {
            Ok(r) => {
                records.extend(r);
                results.push((user.to_string(), Ok(())));
            }
            Err(e) => results.push((user.to_string(), Err(e))),
        }
    }
    ControllerResult {
        records,
        response: results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: TopicDefaults = TopicDefaults {
        num_partitions: 1,
        replication_factor: 1,
    };

    fn cluster(brokers: &[i32]) -> MetadataImage {
        let records: Vec<_> = brokers
            .iter()
            .map(|b| MetadataRecord::RegisterBroker {
                broker_id: *b,
                incarnation: Uuid::nil(),
                endpoints: vec![],
                rack: None,
            })
            .collect();
        MetadataImage::default().replay(&records).expect("replay")
    }

    fn ids() -> impl FnMut() -> Uuid {
        let mut n = 0u128;
        move || {
            n += 1;
            Uuid::from_u128(n)
        }
    }

    fn secret(iterations: u32) -> Option<ScramSecret> {
        Some(ScramSecret {
            salt: vec![1; 16],
            iterations,
            stored_key: vec![2; 32],
            server_key: vec![3; 32],
        })
    }

    fn scram(user: &str, mechanism: i8, credential: Option<ScramSecret>) -> ScramChange {
        ScramChange {
            user: user.into(),
            mechanism,
            credential,
        }
    }

    #[test]
    fn scram_changes_apply_per_user_all_or_nothing() {
        let image = cluster(&[1]);
        let r = alter_scram_credentials(
            &image,
            &[
                scram("alice", 1, secret(4096)),
                scram("alice", 2, secret(8192)),
                // bob's second change is bad, so neither of his applies.
                scram("bob", 1, secret(4096)),
                scram("bob", 2, secret(100)),
                scram("carol", 3, secret(4096)),
                scram("dave", 1, secret(4096)),
                scram("dave", 1, secret(4096)),
                scram("erin", 1, None),
                scram("", 1, secret(4096)),
            ],
        );
        let codes: Vec<(&str, i16)> = r
            .response
            .iter()
            .map(|(u, e)| {
                (
                    u.as_str(),
                    e.as_ref().map_or_else(|e| e.kafka_code(), |_| 0),
                )
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                ("alice", 0),
                ("bob", 93),
                ("carol", 33),
                ("dave", 92),
                ("erin", 91),
                ("", 93)
            ]
        );
        let next = image.replay(&r.records).expect("replay");
        assert_eq!(
            next.scram.keys().cloned().collect::<Vec<_>>(),
            vec![("alice".to_string(), 1), ("alice".to_string(), 2)]
        );
        assert_eq!(next.scram[&("alice".to_string(), 2)].iterations, 8192);
        // Deleting an existing credential works; the other mechanism stays.
        let r = alter_scram_credentials(&next, &[scram("alice", 1, None)]);
        assert!(r.response[0].1.is_ok());
        let after = next.replay(&r.records).expect("replay");
        assert_eq!(
            after.scram.keys().cloned().collect::<Vec<_>>(),
            vec![("alice".to_string(), 2)]
        );
    }

    fn topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            ..Default::default()
        }
    }

    #[test]
    fn spreads_replicas_and_leaders_over_live_brokers() {
        let image = cluster(&[1, 2, 3]);
        let r = create_topics(&image, &[topic("t", 3, 2)], DEFAULTS, ids());
        let Some(MetadataRecord::CreateTopic { partitions, .. }) = r.records.first() else {
            panic!("expected a CreateTopic record, got {:?}", r.records);
        };
        let replicas: Vec<_> = partitions.iter().map(|p| p.replicas.clone()).collect();
        assert_eq!(replicas, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
        let leaders: Vec<_> = partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![1, 2, 3]);
        assert!(partitions.iter().all(|p| p.isr == p.replicas));
        let created = r.response[0].as_ref().expect("created");
        assert_eq!((created.num_partitions, created.replication_factor), (3, 2));
    }

    #[test]
    fn places_replicas_across_racks() {
        let records: Vec<_> = [(1, "a"), (2, "a"), (3, "b"), (4, "b")]
            .iter()
            .map(|&(b, rack)| MetadataRecord::RegisterBroker {
                broker_id: b,
                incarnation: Uuid::nil(),
                endpoints: vec![],
                rack: Some(rack.into()),
            })
            .collect();
        let image = MetadataImage::default().replay(&records).expect("replay");
        let r = create_topics(&image, &[topic("t", 8, 2)], DEFAULTS, ids());
        let Some(MetadataRecord::CreateTopic { partitions, .. }) = r.records.first() else {
            panic!("expected a CreateTopic record, got {:?}", r.records);
        };
        let rack = |b: i32| if b <= 2 { 'a' } else { 'b' };
        for p in partitions {
            assert_ne!(rack(p.replicas[0]), rack(p.replicas[1]), "{:?}", p.replicas);
        }
        let mut leaders: Vec<i32> = partitions.iter().map(|p| p.leader).collect();
        leaders.sort_unstable();
        assert_eq!(leaders, vec![1, 1, 2, 2, 3, 3, 4, 4]);
        // Partitions added later keep to the rule.
        let image = image.replay(&r.records).expect("replay");
        let grown = create_partitions(&image, "t", 12, None);
        let Some(MetadataRecord::AddPartitions { partitions, .. }) = grown.records.first() else {
            panic!("expected AddPartitions, got {:?}", grown.records);
        };
        assert_eq!(partitions.len(), 4);
        for p in partitions {
            assert_ne!(rack(p.replicas[0]), rack(p.replicas[1]), "{:?}", p.replicas);
        }
    }

    #[test]
    fn unregistering_needs_an_empty_broker_and_keeps_its_incarnation_out() {
        let image = cluster(&[1, 2, 3]);
        let mut topic_on_1 = topic("t", -1, -1);
        topic_on_1.assignments = BTreeMap::from([(0, vec![1, 2])]);
        let r = create_topics(&image, &[topic_on_1], DEFAULTS, ids());
        let image = image.replay(&r.records).expect("replay");

        // Hosting a replica, or unknown: refused, nothing to append.
        let refused = unregister_broker(&image, 1);
        assert!(refused.records.is_empty());
        assert!(
            matches!(&refused.response, Err(MetadataError::InvalidRequest { reason }) if reason.contains("t-0")),
            "{:?}",
            refused.response
        );
        let unknown = unregister_broker(&image, 9);
        assert_eq!(unknown.response.map_err(|e| e.kafka_code()), Err(102));
        assert!(unknown.records.is_empty());

        // Broker 3 hosts nothing: it goes, and its incarnation may not come back.
        let r = unregister_broker(&image, 3);
        assert_eq!(r.response, Ok(()));
        let image = image.replay(&r.records).expect("replay");
        assert!(!image.brokers.contains_key(&3));
        let again = register_broker(&image, 3, Uuid::nil(), vec![], None, &|_| true);
        assert!(again.records.is_empty());
        assert_eq!(again.response.map_err(|e| e.kafka_code()), Err(102));
        // A restart (a new incarnation) registers as usual.
        let fresh = register_broker(&image, 3, Uuid::from_u128(7), vec![], None, &|_| true);
        assert_eq!(fresh.response, Ok(()));
        let image = image.replay(&fresh.records).expect("replay");
        assert!(image.brokers.contains_key(&3) && image.unregistered.is_empty());
    }

    #[test]
    fn dynamic_broker_configs_per_broker_and_by_default() {
        let image = cluster(&[1, 2]);
        let set = |k: &str, v: &str| ConfigOp::Set {
            key: k.into(),
            value: v.into(),
        };
        let rate = crate::configs::LEADER_THROTTLED_RATE;
        let r = alter_broker_configs(&image, None, &[set(rate, "1000")], false);
        assert_eq!(r.response, Ok(()));
        let image = image.replay(&r.records).expect("replay");
        let r = alter_broker_configs(&image, Some(2), &[set(rate, "500")], false);
        let image = image.replay(&r.records).expect("replay");
        assert_eq!(image.broker_config(1, rate), Some("1000"));
        assert_eq!(image.broker_config(2, rate), Some("500"));
        // Refused without a record: a static config, a bad value, a list operation.
        for bad in [
            set("log.retention.ms", "1"),
            set(rate, "-5"),
            ConfigOp::Append {
                key: rate.into(),
                value: "1".into(),
            },
        ] {
            let r = alter_broker_configs(&image, Some(2), std::slice::from_ref(&bad), false);
            assert!(r.response.is_err() && r.records.is_empty(), "{bad:?}");
        }
        // Removing broker 2's own value falls back to the default.
        let del = ConfigOp::Delete { key: rate.into() };
        let r = alter_broker_configs(&image, Some(2), &[del], false);
        let image = image.replay(&r.records).expect("replay");
        assert_eq!(image.broker_config(2, rate), Some("1000"));
        assert!(!image.broker_configs.contains_key(&Some(2)));
    }

    #[test]
    fn group_configs_are_set_replaced_and_removed_per_group() {
        use crate::configs::{SHARE_AUTO_OFFSET_RESET, SHARE_RECORD_LOCK_DURATION_MS};
        let image = cluster(&[1]);
        let set = |k: &str, v: &str| ConfigOp::Set {
            key: k.into(),
            value: v.into(),
        };
        let r = alter_group_configs(
            &image,
            "orders",
            &[
                set(SHARE_AUTO_OFFSET_RESET, "earliest"),
                set(SHARE_RECORD_LOCK_DURATION_MS, "5000"),
            ],
            false,
        );
        assert_eq!((r.response.clone(), r.records.len()), (Ok(()), 2));
        let image = image.replay(&r.records).expect("replay");
        assert_eq!(
            image.group_config("orders", SHARE_AUTO_OFFSET_RESET),
            Some("earliest")
        );
        assert_eq!(image.group_config("other", SHARE_AUTO_OFFSET_RESET), None);
        // Setting a value it already has writes nothing.
        let r = alter_group_configs(
            &image,
            "orders",
            &[set(SHARE_RECORD_LOCK_DURATION_MS, "5000")],
            false,
        );
        assert!(r.records.is_empty());
        // Refused without a record: all or nothing, bad names and values, no group id.
        for (group, ops) in [
            (
                "orders",
                vec![
                    set(SHARE_RECORD_LOCK_DURATION_MS, "6000"),
                    set("no.such", "1"),
                ],
            ),
            ("orders", vec![set(SHARE_RECORD_LOCK_DURATION_MS, "10")]),
            (
                "orders",
                vec![ConfigOp::Delete {
                    key: "no.such".into(),
                }],
            ),
            ("", vec![set(SHARE_RECORD_LOCK_DURATION_MS, "6000")]),
            ("a\0share", vec![set(SHARE_RECORD_LOCK_DURATION_MS, "6000")]),
        ] {
            let r = alter_group_configs(&image, group, &ops, false);
            assert!(
                r.response.is_err() && r.records.is_empty(),
                "{group:?} {ops:?}"
            );
        }
        // AlterConfigs replaces: what it does not name goes; the last one gone drops the group.
        let r = alter_group_configs(
            &image,
            "orders",
            &[set(SHARE_RECORD_LOCK_DURATION_MS, "7000")],
            true,
        );
        let image = image.replay(&r.records).expect("replay");
        assert_eq!(image.group_config("orders", SHARE_AUTO_OFFSET_RESET), None);
        assert_eq!(
            image.group_config("orders", SHARE_RECORD_LOCK_DURATION_MS),
            Some("7000")
        );
        let del = ConfigOp::Delete {
            key: SHARE_RECORD_LOCK_DURATION_MS.into(),
        };
        let r = alter_group_configs(&image, "orders", &[del], false);
        let image = image.replay(&r.records).expect("replay");
        assert!(image.group_configs.is_empty());
    }

    #[test]
    fn defaults_apply_for_minus_one() {
        let image = cluster(&[1]);
        let defaults = TopicDefaults {
            num_partitions: 4,
            replication_factor: 1,
        };
        let r = create_topics(&image, &[topic("t", -1, -1)], defaults, ids());
        assert_eq!(r.response[0].as_ref().map(|c| c.num_partitions), Ok(4));
    }

    #[test]
    fn refuses_bad_requests_without_records() {
        let image = cluster(&[1])
            .replay(
                &create_topics(&cluster(&[1]), &[topic("exists", 1, 1)], DEFAULTS, ids()).records,
            )
            .expect("replay");
        let cases = [
            (topic("exists", 1, 1), 36),
            (topic("bad/name", 1, 1), 17),
            (topic("..", 1, 1), 17),
            (topic(&"x".repeat(250), 1, 1), 17),
            (topic("zero", 0, 1), 37),
            (topic("rf", 1, 2), 38),
            (topic("rf0", 1, 0), 38),
        ];
        for (t, code) in cases {
            let r = create_topics(&image, std::slice::from_ref(&t), DEFAULTS, ids());
            assert!(r.records.is_empty(), "{}: no records", t.name);
            assert_eq!(
                r.response[0].as_ref().map_err(|e| e.kafka_code()).err(),
                Some(code),
                "{}",
                t.name
            );
        }
        let mut bad_config = topic("cfg", 1, 1);
        bad_config
            .configs
            .insert("no.such.config".into(), "1".into());
        let r = create_topics(&image, &[bad_config], DEFAULTS, ids());
        assert!(r.records.is_empty());
        assert_eq!(
            r.response[0].as_ref().map_err(|e| e.kafka_code()).err(),
            Some(40)
        );
        let mut bad_value = topic("cfg", 1, 1);
        bad_value
            .configs
            .insert("retention.ms".into(), "soon".into());
        let r = create_topics(&image, &[bad_value], DEFAULTS, ids());
        assert_eq!(
            r.response[0].as_ref().map_err(|e| e.kafka_code()).err(),
            Some(40)
        );
    }

    #[test]
    fn duplicate_names_in_one_request_create_once() {
        let image = cluster(&[1]);
        let r = create_topics(
            &image,
            &[topic("d", 1, 1), topic("d", 1, 1)],
            DEFAULTS,
            ids(),
        );
        assert_eq!(r.records.len(), 1);
        assert!(r.response[0].is_ok());
        assert!(r.response[1].is_err());
        image.replay(&r.records).expect("the records apply");
    }

    #[test]
    fn explicit_assignment_is_checked() {
        let image = cluster(&[1, 2]);
        let mut t = topic("a", -1, -1);
        t.assignments = BTreeMap::from([(0, vec![2, 1]), (1, vec![1])]);
        let r = create_topics(&image, &[t.clone()], DEFAULTS, ids());
        let Some(MetadataRecord::CreateTopic { partitions, .. }) = r.records.first() else {
            panic!("expected a CreateTopic record");
        };
        assert_eq!(partitions[0].leader, 2);
        assert_eq!(partitions[1].replicas, vec![1]);
        t.assignments.insert(2, vec![9]);
        let r = create_topics(&image, &[t], DEFAULTS, ids());
        assert!(r.records.is_empty());
    }

    #[test]
    fn delete_by_name_and_id() {
        let base = cluster(&[1]);
        let image = base
            .replay(
                &create_topics(
                    &base,
                    &[topic("a", 1, 1), topic("b", 1, 1)],
                    DEFAULTS,
                    ids(),
                )
                .records,
            )
            .expect("replay");
        let b_id = image.topic("b").expect("b").topic_id;
        let r = delete_topics(
            &image,
            &[
                TopicRef::Name("a".into()),
                TopicRef::Id(b_id),
                TopicRef::Name("zz".into()),
            ],
        );
        assert_eq!(r.records.len(), 2);
        assert_eq!(
            r.response[2].as_ref().map_err(|e| e.kafka_code()).err(),
            Some(3)
        );
        let after = image.replay(&r.records).expect("replay");
        assert_eq!(after.topics().count(), 0);
    }

    #[test]
    fn preferred_election_returns_leadership_once_the_preferred_replica_is_back_in_sync() {
        let base = cluster(&[1, 2, 3]);
        let image = base
            .replay(&create_topics(&base, &[topic("t", 3, 3)], DEFAULTS, ids()).records)
            .expect("replay");
        let code = |r: &Result<(), MetadataError>| r.as_ref().err().map(|e| e.kafka_code());
        // Every preferred replica leads: nothing to do, and for all partitions nothing said.
        let none = elect_leaders(&image, false, Some(&[("t".into(), 0)]));
        assert_eq!(code(&none.response[0].1), Some(84));
        assert!(elect_leaders(&image, false, None).response.is_empty());
        // Broker 1 fenced: its partition moves; back unfenced but out of the ISR, it cannot
        // lead yet; back in the ISR, it can.
        let fenced = image
            .replay(&fence_broker(&image, 1).records)
            .expect("replay");
        let moved: Vec<u32> = fenced
            .topic("t")
            .expect("t")
            .partitions
            .iter()
            .filter(|p| p.replicas[0] == 1)
            .map(|p| p.partition)
            .collect();
        assert_eq!(moved.len(), 1);
        let wanted: Vec<PartitionName> = moved.iter().map(|p| ("t".to_string(), *p)).collect();
        let dead = elect_leaders(&fenced, false, Some(&wanted));
        assert_eq!(code(&dead.response[0].1), Some(80));
        assert!(dead.records.is_empty());
        let back = fenced
            .replay(&unfence_broker(&fenced, 1).records)
            .expect("replay");
        assert_eq!(
            code(&elect_leaders(&back, false, Some(&wanted)).response[0].1),
            Some(80),
            "not in the ISR yet"
        );
        let p = &back.topic("t").expect("t").partitions[moved[0] as usize];
        let mut isr = p.isr.clone();
        isr.push(1);
        let in_sync = back
            .replay(&[MetadataRecord::PartitionChange {
                topic_id: back.topic("t").expect("t").topic_id,
                partition: p.partition,
                leader: p.leader,
                isr,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch + 1,
            }])
            .expect("replay");
        let r = elect_leaders(&in_sync, false, None);
        assert_eq!(r.response.len(), 1, "only the partition that moved");
        assert!(r.response[0].1.is_ok());
        let after = in_sync.replay(&r.records).expect("replay");
        let now = &after.topic("t").expect("t").partitions[moved[0] as usize];
        assert_eq!(now.leader, 1);
        assert_eq!(now.leader_epoch, p.leader_epoch + 1);
        // Unclean: not needed while the leader lives; an unknown topic is named.
        let unclean = elect_leaders(&after, true, Some(&[("t".into(), 0), ("zz".into(), 0)]));
        assert_eq!(code(&unclean.response[0].1), Some(84));
        assert_eq!(code(&unclean.response[1].1), Some(3));
    }

    #[test]
    fn auto_rebalance_names_partitions_of_brokers_past_the_imbalance_threshold() {
        let base = cluster(&[1, 2, 3]);
        let image = base
            .replay(&create_topics(&base, &[topic("t", 30, 3)], DEFAULTS, ids()).records)
            .expect("replay");
        assert!(
            imbalanced_partitions(&image, 10).is_empty(),
            "balanced at creation"
        );
        // Broker 1 prefers 10 partitions; moving 1 of them away is 10 %: not past 10 %.
        let mine: Vec<&crate::PartitionImage> = image
            .topic("t")
            .expect("t")
            .partitions
            .iter()
            .filter(|p| p.replicas[0] == 1)
            .collect();
        assert_eq!(mine.len(), 10);
        let topic_id = image.topic("t").expect("t").topic_id;
        let move_to_second = |img: &MetadataImage, p: &crate::PartitionImage| {
            img.replay(&[MetadataRecord::PartitionChange {
                topic_id,
                partition: p.partition,
                leader: p.replicas[1],
                isr: p.isr.clone(),
                leader_epoch: p.leader_epoch + 1,
                partition_epoch: p.partition_epoch + 1,
            }])
            .expect("replay")
        };
        let one = move_to_second(&image, mine[0]);
        assert!(imbalanced_partitions(&one, 10).is_empty());
        assert_eq!(
            imbalanced_partitions(&one, 0),
            vec![("t".to_string(), mine[0].partition)]
        );
        // Two of ten (20 %) is past it: both are named, and a preferred election of them
        // moves them back.
        let two = move_to_second(&one, mine[1]);
        let named = imbalanced_partitions(&two, 10);
        assert_eq!(named.len(), 2);
        let elected = elect_leaders(&two, false, Some(&named));
        assert!(elected.response.iter().all(|(_, r)| r.is_ok()));
        let back = two.replay(&elected.records).expect("replay");
        assert!(imbalanced_partitions(&back, 0).is_empty());
        // A fenced preferred broker is not named: there is nothing it could lead.
        let fenced = two
            .replay(&[MetadataRecord::FenceBroker { broker_id: 1 }])
            .expect("replay");
        assert!(imbalanced_partitions(&fenced, 10).is_empty());
    }

    #[test]
    fn reassignment_adds_catches_up_switches_and_can_be_cancelled() {
        let base = cluster(&[1, 2, 3, 4]);
        let created = create_topics(
            &base,
            &[NewTopic {
                name: "t".into(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: BTreeMap::from([(0, vec![1, 2, 3])]),
                configs: BTreeMap::new(),
            }],
            DEFAULTS,
            ids(),
        );
        let image = base.replay(&created.records).expect("replay");
        let code = |r: &Result<(), MetadataError>| r.as_ref().err().map(|e| e.kafka_code());
        let part = |img: &MetadataImage| img.topic("t").expect("t").partitions[0].clone();
        let tp: PartitionName = ("t".into(), 0);
        assert_eq!(part(&image).leader, 1);

        // Refused without a change: unknown partition, duplicate or unregistered replicas,
        // a cancel with nothing in progress.
        let bad = alter_partition_reassignments(
            &image,
            &[
                (("t".into(), 5), Some(vec![1])),
                (("zz".into(), 0), Some(vec![1])),
                (tp.clone(), Some(vec![2, 2])),
                (("t".into(), 0), Some(vec![9])),
            ],
        );
        assert!(bad.records.is_empty());
        let codes: Vec<_> = bad.response.iter().map(|(_, r)| code(r)).collect();
        assert_eq!(codes, vec![Some(3), Some(3), Some(39), Some(39)]);
        let none = alter_partition_reassignments(&image, &[(tp.clone(), None)]);
        assert_eq!(code(&none.response[0].1), Some(85));
        let same = alter_partition_reassignments(&image, &[(tp.clone(), Some(vec![1, 2, 3]))]);
        assert!(same.records.is_empty() && same.response[0].1.is_ok());

        // 1,2,3 -> 2,3,4: 4 joins, 1 leaves once 4 is in sync; 1 leads until then.
        let started = alter_partition_reassignments(&image, &[(tp.clone(), Some(vec![2, 3, 4]))]);
        assert!(started.response[0].1.is_ok());
        let moving = image.replay(&started.records).expect("replay");
        let p = part(&moving);
        assert_eq!(p.replicas, vec![2, 3, 4, 1]);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![4], vec![1])
        );
        assert_eq!((p.leader, p.isr.clone()), (1, vec![2, 3, 1]));
        assert!(
            complete_reassignments(&moving).is_empty(),
            "4 is not in sync yet"
        );

        // Cancelled half-way: the original replicas come back (in the merged order, as
        // KRaft reverts), 4 leaves.
        let cancelled = alter_partition_reassignments(&moving, &[(tp.clone(), None)]);
        let back = moving.replay(&cancelled.records).expect("replay");
        let p = part(&back);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![2, 3, 1], vec![2, 3, 1], 1)
        );
        assert!(!p.reassigning());

        // 4 catches up (the leader adds it to the ISR): the switch happens, leadership moves
        // off the leaving broker 1 with a new epoch.
        let p = part(&moving);
        let in_sync = moving
            .replay(
                &alter_partition(
                    &moving,
                    1,
                    &[IsrChange {
                        topic_id: moving.topic("t").expect("t").topic_id,
                        partition: 0,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        new_isr: vec![2, 3, 4, 1],
                    }],
                )
                .records,
            )
            .expect("replay");
        // Not while another target replica (3) is out of the ISR: the switch would leave
        // fewer in-sync replicas than the move started with.
        let q = part(&in_sync);
        let lagging = in_sync
            .replay(&[MetadataRecord::PartitionChange {
                topic_id: in_sync.topic("t").expect("t").topic_id,
                partition: 0,
                leader: q.leader,
                isr: vec![2, 4, 1],
                leader_epoch: q.leader_epoch,
                partition_epoch: q.partition_epoch + 1,
            }])
            .expect("replay");
        assert!(complete_reassignments(&lagging).is_empty());
        let done = in_sync
            .replay(&complete_reassignments(&in_sync))
            .expect("replay");
        let q = part(&done);
        assert_eq!(
            (q.replicas.clone(), q.isr.clone()),
            (vec![2, 3, 4], vec![2, 3, 4])
        );
        assert_eq!((q.leader, q.leader_epoch), (2, p.leader_epoch + 1));
        assert!(!q.reassigning());
        assert!(complete_reassignments(&done).is_empty());
        // A preferred election now prefers the target's first replica.
        assert!(elect_leaders(&done, false, None).response.is_empty());
    }

    #[test]
    fn a_restarted_broker_leaves_shared_isrs_until_it_catches_up() {
        let base = cluster(&[1, 2, 3]);
        let image = base
            .replay(
                &create_topics(
                    &base,
                    &[topic("t", 3, 3), topic("solo", 1, 1)],
                    DEFAULTS,
                    ids(),
                )
                .records,
            )
            .expect("replay");
        let led_by_1: Vec<u32> = image
            .topic("t")
            .expect("t")
            .partitions
            .iter()
            .filter(|p| p.leader == 1)
            .map(|p| p.partition)
            .collect();
        assert_eq!(led_by_1.len(), 1);
        let again = register_broker(&image, 1, Uuid::from_u128(99), vec![], None, &|_| true);
        let after = image.replay(&again.records).expect("replay");
        for p in &after.topic("t").expect("t").partitions {
            assert!(!p.isr.contains(&1), "{p:?}");
            assert_eq!(p.isr.len(), 2);
            if led_by_1.contains(&p.partition) {
                assert_ne!(p.leader, 1);
                assert_eq!(p.leader_epoch, 1);
            }
        }
        // Where it is the only in-sync replica it stays (and leads if it did).
        let solo = &after.topic("solo").expect("solo").partitions[0];
        let before = &image.topic("solo").expect("solo").partitions[0];
        assert_eq!(
            (solo.isr.clone(), solo.leader),
            (before.isr.clone(), before.leader)
        );
        // With no other broker heard from (a controller that just took office), a restart
        // leaves no ISR: nobody could take over.
        let alone = register_broker(&image, 1, Uuid::from_u128(98), vec![], None, &|_| false);
        assert_eq!(alone.records.len(), 1);
        // The same registration replayed (the same incarnation) changes no ISR.
        let same = register_broker(&after, 1, Uuid::from_u128(99), vec![], None, &|_| true);
        assert_eq!(same.records.len(), 1);
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_and_bumps_epochs() {
        let base = cluster(&[1, 2, 3]);
        let image = base
            .replay(&create_topics(&base, &[topic("t", 3, 3)], DEFAULTS, ids()).records)
            .expect("replay");
        let r = fence_broker(&image, 1);
        let after = image.replay(&r.records).expect("replay");
        assert!(after.brokers[&1].fenced);
        let t = after.topic("t").expect("t");
        for (before, now) in image
            .topic("t")
            .expect("t")
            .partitions
            .iter()
            .zip(&t.partitions)
        {
            assert!(!now.isr.contains(&1), "fenced broker leaves the ISR");
            assert_ne!(now.leader, 1);
            assert!(now.isr.contains(&now.leader));
            if before.leader == 1 {
                assert_eq!(now.leader_epoch, before.leader_epoch + 1);
            } else {
                assert_eq!(now.leader_epoch, before.leader_epoch);
            }
        }
        assert!(
            fence_broker(&after, 1).records.is_empty(),
            "fencing twice does nothing"
        );
    }

    fn change(image: &MetadataImage, new_isr: &[i32]) -> IsrChange {
        let t = image.topic("t").expect("t");
        let p = &t.partitions[0];
        IsrChange {
            topic_id: t.topic_id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: new_isr.to_vec(),
        }
    }

    #[test]
    fn alter_partition_checks_leader_epochs_and_eligibility() {
        let base = cluster(&[1, 2, 3]);
        let image = base
            .replay(&create_topics(&base, &[topic("t", 1, 3)], DEFAULTS, ids()).records)
            .expect("replay");
        let p0 = image.topic("t").expect("t").partitions[0].clone();
        let leader = p0.leader;
        let others: Vec<i32> = p0
            .replicas
            .iter()
            .copied()
            .filter(|r| *r != leader)
            .collect();

        // The leader shrinks the ISR: partition epoch +1, leader epoch kept, replica order.
        let r = alter_partition(&image, leader, &[change(&image, &[others[0], leader])]);
        let after = image.replay(&r.records).expect("replay");
        let p1 = &after.topic("t").expect("t").partitions[0];
        let mut expected: Vec<i32> = vec![leader, others[0]];
        expected.sort_by_key(|b| p0.replicas.iter().position(|r| r == b));
        assert_eq!(p1.isr, expected);
        assert_eq!(p1.partition_epoch, p0.partition_epoch + 1);
        assert_eq!(p1.leader_epoch, p0.leader_epoch);
        assert_eq!(r.response[0].as_ref().expect("ok").isr, expected);

        // The same change again carries a stale partition epoch.
        let stale = alter_partition(&after, leader, &[change(&image, &[leader])]);
        assert!(stale.records.is_empty());
        assert!(matches!(
            stale.response[0],
            Err(MetadataError::InvalidUpdateVersion { .. })
        ));
        // Not the leader; a stale leader epoch; an ISR without the leader or with a stranger.
        let cases = [
            (others[0], change(&after, &[others[0]]), 6),
            (
                leader,
                IsrChange {
                    leader_epoch: p1.leader_epoch - 1,
                    ..change(&after, &[leader])
                },
                74,
            ),
            (leader, change(&after, &[others[0]]), 42),
            (leader, change(&after, &[leader, 9]), 42),
            (leader, change(&after, &[leader, leader]), 42),
        ];
        for (broker, c, code) in cases {
            let r = alter_partition(&after, broker, std::slice::from_ref(&c));
            assert!(r.records.is_empty(), "{c:?}");
            assert_eq!(
                r.response[0].as_ref().expect_err("refused").kafka_code(),
                code,
                "{c:?}"
            );
        }
        // A fenced broker cannot be added back; once unfenced it can.
        let fenced = after
            .replay(&[MetadataRecord::FenceBroker {
                broker_id: others[1],
            }])
            .expect("replay");
        let full = [leader, others[0], others[1]];
        let r = alter_partition(&fenced, leader, &[change(&fenced, &full)]);
        assert!(matches!(
            r.response[0],
            Err(MetadataError::IneligibleReplica { .. })
        ));
        let r = alter_partition(&after, leader, &[change(&after, &full)]);
        let back = after.replay(&r.records).expect("replay");
        assert_eq!(back.topic("t").expect("t").partitions[0].isr, p0.replicas);
        // Two changes to one partition in one request: only the first applies.
        let twice = alter_partition(
            &after,
            leader,
            &[change(&after, &full), change(&after, &[leader])],
        );
        assert_eq!(twice.records.len(), 1);
        assert!(twice.response[1].is_err());
    }

    #[test]
    fn unclean_election_only_when_enabled() {
        let base = cluster(&[1, 2, 3]);
        let mut t = topic("t", -1, -1);
        t.assignments = BTreeMap::from([(0, vec![1, 2, 3])]);
        let image = base
            .replay(&create_topics(&base, &[t], DEFAULTS, ids()).records)
            .expect("replay");
        // The ISR shrinks to the leader alone, then the leader dies: offline.
        let r = alter_partition(&image, 1, &[change(&image, &[1])]);
        let image = image.replay(&r.records).expect("replay");
        let dead = image
            .replay(&fence_broker(&image, 1).records)
            .expect("replay");
        assert_eq!(dead.topic("t").expect("t").partitions[0].leader, -1);
        // With unclean election enabled, the same failure elects a live out-of-sync replica.
        let unclean = image
            .replay(&[MetadataRecord::ConfigChange {
                topic_id: image.topic("t").expect("t").topic_id,
                key: crate::configs::UNCLEAN_LEADER_ELECTION_ENABLE.into(),
                value: Some("true".into()),
            }])
            .expect("replay");
        let after = unclean
            .replay(&fence_broker(&unclean, 1).records)
            .expect("replay");
        let p = &after.topic("t").expect("t").partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn last_isr_member_fenced_goes_offline_then_returns() {
        let base = cluster(&[1]);
        let image = base
            .replay(&create_topics(&base, &[topic("solo", 2, 1)], DEFAULTS, ids()).records)
            .expect("replay");
        let fenced = image
            .replay(&fence_broker(&image, 1).records)
            .expect("replay");
        for p in &fenced.topic("solo").expect("solo").partitions {
            assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (-1, vec![1], 1));
        }
        let back = fenced
            .replay(&unfence_broker(&fenced, 1).records)
            .expect("replay");
        assert!(!back.brokers[&1].fenced);
        for p in &back.topic("solo").expect("solo").partitions {
            assert_eq!((p.leader, p.leader_epoch), (1, 2));
        }
    }

    /// xorshift64*: a tiny seeded generator, so a failing seed replays exactly.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn check_invariants(seed: u64, step: usize, prev: &MetadataImage, image: &MetadataImage) {
        for t in image.topics() {
            for p in &t.partitions {
                let ctx = format!("seed {seed} step {step} {}-{}: {p:?}", t.name, p.partition);
                assert!(!p.isr.is_empty(), "{ctx}: empty ISR");
                let unique: BTreeSet<i32> = p.replicas.iter().copied().collect();
                assert_eq!(unique.len(), p.replicas.len(), "{ctx}: a replica twice");
                assert!(
                    p.adding_replicas
                        .iter()
                        .chain(&p.removing_replicas)
                        .all(|b| unique.contains(b)),
                    "{ctx}: adding/removing outside replicas"
                );
                assert!(
                    !p.adding_replicas
                        .iter()
                        .any(|b| p.removing_replicas.contains(b)),
                    "{ctx}: adding and removing the same replica"
                );
                assert!(!p.target_replicas().is_empty(), "{ctx}: empty target");
                assert!(
                    p.isr.iter().all(|b| p.replicas.contains(b)),
                    "{ctx}: ISR outside replicas"
                );
                if p.leader >= 0 {
                    assert!(p.isr.contains(&p.leader), "{ctx}: leader outside ISR");
                    assert!(!image.brokers[&p.leader].fenced, "{ctx}: fenced leader");
                } else {
                    assert!(
                        p.isr.iter().all(|b| image.brokers[b].fenced),
                        "{ctx}: offline although an ISR member is alive"
                    );
                }
                if let Some(old) = prev
                    .topic(&t.name)
                    .map(|o| &o.partitions[p.partition as usize])
                {
                    assert!(
                        p.leader_epoch >= old.leader_epoch,
                        "{ctx}: leader epoch went back"
                    );
                    assert!(
                        p.partition_epoch >= old.partition_epoch,
                        "{ctx}: partition epoch went back"
                    );
                    if p.leader != old.leader {
                        assert!(
                            p.leader_epoch > old.leader_epoch,
                            "{ctx}: new leader, same epoch"
                        );
                    }
                }
            }
        }
    }

    /// Seeded simulation of the controller's failure handling: brokers register, lapse,
    /// come back and re-register while topics are created and partitions are reassigned,
    /// cancelled, caught up and switched, in many random orders.
    #[test]
    fn simulated_failures_keep_the_invariants() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut image = cluster(&[1, 2, 3, 4, 5]);
            let mut ids = ids();
            for step in 0..200 {
                let broker = 1 + rng.below(5) as i32;
                // A random partition, for the reassignment steps.
                let names: Vec<String> = image.topics().map(|t| t.name.clone()).collect();
                let picked = (!names.is_empty()).then(|| {
                    let t = image
                        .topic(&names[rng.below(names.len() as u64) as usize])
                        .expect("t");
                    let p = &t.partitions[rng.below(t.partitions.len() as u64) as usize];
                    ((t.name.clone(), p.partition), p.clone(), t.topic_id)
                });
                let result = match rng.below(9) {
                    0 => fence_broker(&image, broker).records,
                    1 => unfence_broker(&image, broker).records,
                    2 => {
                        register_broker(
                            &image,
                            broker,
                            Uuid::from_u128(step as u128),
                            vec![],
                            None,
                            &|_| true,
                        )
                        .records
                    }
                    3 => {
                        let live = image.live_brokers().count() as i16;
                        if live == 0 {
                            continue;
                        }
                        let t = topic(
                            &format!("t{step}"),
                            1 + rng.below(4) as i32,
                            1 + rng.below(live as u64) as i16,
                        );
                        create_topics(&image, &[t], DEFAULTS, &mut ids).records
                    }
                    5 | 6 => {
                        let Some((name, _, _)) = picked.clone() else {
                            continue;
                        };
                        let target = if rng.below(4) == 0 {
                            None
                        } else {
                            let mut t: Vec<i32> = (1..=5).collect();
                            t.retain(|_| rng.below(2) == 0);
                            (!t.is_empty()).then_some(t)
                        };
                        alter_partition_reassignments(&image, &[(name, target)]).records
                    }
                    7 => complete_reassignments(&image),
                    8 => {
                        // The leader takes every live replica into the ISR (it caught up).
                        let Some((_, p, topic_id)) = picked.clone() else {
                            continue;
                        };
                        if p.leader < 0 {
                            continue;
                        }
                        let new_isr: Vec<i32> = p
                            .replicas
                            .iter()
                            .copied()
                            .filter(|b| !image.brokers[b].fenced)
                            .collect();
                        let change = IsrChange {
                            topic_id,
                            partition: p.partition,
                            leader_epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                            new_isr,
                        };
                        alter_partition(&image, p.leader, &[change]).records
                    }
                    _ => continue,
                };
                let next = image.replay(&result).unwrap_or_else(|e| {
                    panic!("seed {seed} step {step}: records do not apply: {e}")
                });
                check_invariants(seed, step, &image, &next);
                image = next;
            }
        }
    }
}
