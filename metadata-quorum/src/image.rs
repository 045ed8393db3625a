//! The metadata image: cluster state at one metadata offset, immutable once built.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use crate::{Endpoint, MetadataError, MetadataRecord};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerImage {
    pub broker_id: i32,
    pub incarnation: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
}

impl BrokerImage {
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// `host:port` other brokers reach this one at: its replication endpoint, else its Kafka
    /// one.
    pub fn inter_broker_addr(&self) -> Option<String> {
        let e = self.endpoint("replication").or(self.endpoint("kafka"))?;
        Some(format!("{}:{}", e.host, e.port))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionImage {
    pub partition: u32,
    /// Every replica; during a reassignment the target's, then those leaving.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds (catching up as followers).
    pub adding_replicas: Vec<i32>,
    /// Replicas a reassignment in progress removes once the adding ones are in sync.
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    fn set_leadership(
        &mut self,
        leader: i32,
        isr: &[i32],
        leader_epoch: i32,
        partition_epoch: i32,
    ) {
        self.leader = leader;
        self.isr = isr.to_vec();
        self.leader_epoch = leader_epoch;
        self.partition_epoch = partition_epoch;
    }

    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas once the reassignment in progress completes (the current ones if none).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// The replicas before the reassignment in progress started.
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// Cluster metadata as of `offset` (the number of records applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    pub offset: u64,
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// SCRAM credentials by (user, mechanism code).
    pub scram: BTreeMap<(String, i8), crate::controller::ScramSecret>,
    /// Every ACL, shared between images until one changes.
    pub acls: Arc<crate::acl::AclIndex>,
    /// Every client quota, shared between images until one changes.
    pub quotas: Arc<crate::quota::QuotaIndex>,
    /// Broker incarnations unregistered (decommissioned), which may not register again.
    pub unregistered: BTreeMap<i32, Uuid>,
    /// Dynamic broker configs by broker (None: the cluster-wide default).
    pub broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    /// Dynamic group configs by group id, shared between images until one changes.
    pub group_configs: Arc<BTreeMap<String, BTreeMap<String, String>>>,
    /// Finalized feature levels (`metadata.version`, `kraft.version`).
    pub features: BTreeMap<String, i16>,
    /// The offset of the record that last changed a feature level (ApiVersions'
    /// `finalized_features_epoch`).
    pub features_epoch: i64,
    topics: BTreeMap<String, Arc<TopicImage>>,
    topic_names: HashMap<Uuid, String>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    /// A dynamic broker config of `broker_id`: its own value, else the cluster-wide default.
    pub fn broker_config(&self, broker_id: i32, key: &str) -> Option<&str> {
        [Some(broker_id), None]
            .iter()
            .find_map(|b| self.broker_configs.get(b)?.get(key))
            .map(String::as_str)
    }

    /// A dynamic config set on `group`, if any.
    pub fn group_config(&self, group: &str, key: &str) -> Option<&str> {
        self.group_configs.get(group)?.get(key).map(String::as_str)
    }

    /// Brokers that are registered and not fenced, in id order.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The image after `records`, leaving `self` untouched. A record that does not apply (it
    /// names a topic that does not exist, say) is an error and nothing is applied.
    pub fn replay<'a>(
        &self,
        records: impl IntoIterator<Item = &'a MetadataRecord>,
    ) -> Result<MetadataImage, MetadataError> {
        let mut next = self.clone();
        for r in records {
            next.apply(r)?;
        }
        Ok(next)
    }

    fn apply(&mut self, record: &MetadataRecord) -> Result<(), MetadataError> {
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if !self.cluster_id.is_empty() {
                    return Err(MetadataError::InvalidRecord {
                        reason: format!("the cluster is already named {}", self.cluster_id),
                    });
                }
                self.cluster_id = cluster_id.clone();
            }
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation,
                endpoints,
                rack,
            } => {
                self.unregistered.remove(broker_id);
                self.brokers.insert(
                    *broker_id,
                    BrokerImage {
                        broker_id: *broker_id,
                        incarnation: *incarnation,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: false,
                    },
                );
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                incarnation,
            } => {
                self.broker_mut(*broker_id)?;
                self.brokers.remove(broker_id);
                self.unregistered.insert(*broker_id, *incarnation);
            }
            MetadataRecord::FeatureLevel { name, level } => {
                if *level > 0 {
                    self.features.insert(name.clone(), *level);
                } else {
                    self.features.remove(name);
                }
                self.features_epoch = self.offset as i64;
            }
            MetadataRecord::GroupConfigChange { group, key, value } => {
                let groups = Arc::make_mut(&mut self.group_configs);
                let configs = groups.entry(group.clone()).or_default();
                match value {
                    Some(v) => {
                        configs.insert(key.clone(), v.clone());
                    }
                    None => {
                        configs.remove(key);
                    }
                }
                if configs.is_empty() {
                    groups.remove(group);
                }
            }
            MetadataRecord::BrokerConfigChange {
                broker_id,
                key,
                value,
            } => {
                let configs = self.broker_configs.entry(*broker_id).or_default();
                match value {
                    Some(v) => {
                        configs.insert(key.clone(), v.clone());
                    }
                    None => {
                        configs.remove(key);
                    }
                }
                if configs.is_empty() {
                    self.broker_configs.remove(broker_id);
                }
            }
            MetadataRecord::FenceBroker { broker_id } => self.broker_mut(*broker_id)?.fenced = true,
            MetadataRecord::UnfenceBroker { broker_id } => {
                self.broker_mut(*broker_id)?.fenced = false
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(MetadataError::TopicAlreadyExists { name: name.clone() });
                }
                let topic = TopicImage {
                    name: name.clone(),
                    topic_id: *topic_id,
                    partitions: partitions
                        .iter()
                        .enumerate()
                        .map(|(i, p)| PartitionImage {
                            partition: i as u32,
                            replicas: p.replicas.clone(),
                            isr: p.isr.clone(),
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                            adding_replicas: vec![],
                            removing_replicas: vec![],
                        })
                        .collect(),
                    configs: configs.clone(),
                };
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(name.clone(), Arc::new(topic));
            }
            MetadataRecord::DeleteTopic { topic_id } => {
                let name =
                    self.topic_names
                        .remove(topic_id)
                        .ok_or(MetadataError::UnknownTopicId {
                            topic_id: *topic_id,
                        })?;
                self.topics.remove(&name);
            }
            MetadataRecord::AllocateProducerIds {
                first_id, count, ..
            } => {
                if *first_id != self.next_producer_id || *count <= 0 {
                    return Err(MetadataError::InvalidRecord {
                        reason: format!(
                            "producer ids {first_id}+{count} do not continue at {}",
                            self.next_producer_id
                        ),
                    });
                }
                self.next_producer_id = first_id + count;
            }
            MetadataRecord::UserScramCredential {
                user,
                mechanism,
                salt,
                iterations,
                stored_key,
                server_key,
            } => {
                self.scram.insert(
                    (user.clone(), *mechanism),
                    crate::controller::ScramSecret {
                        salt: salt.clone(),
                        iterations: *iterations,
                        stored_key: stored_key.clone(),
                        server_key: server_key.clone(),
                    },
                );
            }
            MetadataRecord::RemoveUserScramCredential { user, mechanism } => {
                self.scram.remove(&(user.clone(), *mechanism));
            }
            MetadataRecord::CreateAcl { binding } => {
                Arc::make_mut(&mut self.acls).add(binding.clone());
            }
            MetadataRecord::DeleteAcl { binding } => {
                Arc::make_mut(&mut self.acls).remove(binding);
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                Arc::make_mut(&mut self.quotas).set(entity, key, value.map(|v| v.0));
            }
            MetadataRecord::AddPartitions {
                topic_id,
                partitions,
            } => {
                let topic = self.topic_mut(topic_id)?;
                let first = topic.partitions.len();
                topic
                    .partitions
                    .extend(partitions.iter().enumerate().map(|(i, p)| PartitionImage {
                        partition: (first + i) as u32,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        adding_replicas: vec![],
                        removing_replicas: vec![],
                    }));
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
            } => {
                let p = self.partition_mut(topic_id, *partition)?;
                p.set_leadership(*leader, isr, *leader_epoch, *partition_epoch);
            }
            MetadataRecord::PartitionReassignment {
                topic_id,
                partition,
                replicas,
                adding,
                removing,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
            } => {
                let p = self.partition_mut(topic_id, *partition)?;
                p.replicas = replicas.clone();
                p.adding_replicas = adding.clone();
                p.removing_replicas = removing.clone();
                p.set_leadership(*leader, isr, *leader_epoch, *partition_epoch);
            }
            MetadataRecord::ConfigChange {
                topic_id,
                key,
                value,
            } => {
                let topic = self.topic_mut(topic_id)?;
                match value {
                    Some(v) => topic.configs.insert(key.clone(), v.clone()),
                    None => topic.configs.remove(key),
                };
            }
        }
        self.offset += 1;
        Ok(())
    }

    fn broker_mut(&mut self, broker_id: i32) -> Result<&mut BrokerImage, MetadataError> {
        self.brokers
            .get_mut(&broker_id)
            .ok_or_else(|| MetadataError::InvalidRecord {
                reason: format!("broker {broker_id} is not registered"),
            })
    }

    fn partition_mut(
        &mut self,
        topic_id: &Uuid,
        partition: u32,
    ) -> Result<&mut PartitionImage, MetadataError> {
        self.topic_mut(topic_id)?
            .partitions
            .get_mut(partition as usize)
            .ok_or_else(|| MetadataError::InvalidRecord {
                reason: format!("partition {partition} of {topic_id} does not exist"),
            })
    }

    fn topic_mut(&mut self, topic_id: &Uuid) -> Result<&mut TopicImage, MetadataError> {
        let name = self
            .topic_names
            .get(topic_id)
            .ok_or(MetadataError::UnknownTopicId {
                topic_id: *topic_id,
            })?;
        let topic = self
            .topics
            .get_mut(name)
            .ok_or(MetadataError::UnknownTopicId {
                topic_id: *topic_id,
            })?;
        Ok(Arc::make_mut(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PartitionRecord;

    fn create(name: &str, id: u128, partitions: usize) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
            partitions: (0..partitions)
                .map(|_| PartitionRecord {
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                })
                .collect(),
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn replay_builds_a_new_image_and_leaves_the_old_one() {
        let empty = MetadataImage::default();
        let image = empty
            .replay(&[create("a", 1, 3), create("b", 2, 1)])
            .expect("replay");
        assert_eq!(empty.topics().count(), 0);
        assert_eq!(image.offset, 2);
        assert_eq!(image.topic("a").map(|t| t.partitions.len()), Some(3));
        assert_eq!(
            image
                .topic_by_id(&Uuid::from_u128(2))
                .map(|t| t.name.as_str()),
            Some("b")
        );
    }

    #[test]
    fn delete_and_partition_change() {
        let image = MetadataImage::default()
            .replay(&[
                create("a", 1, 2),
                MetadataRecord::PartitionChange {
                    topic_id: Uuid::from_u128(1),
                    partition: 1,
                    leader: -1,
                    isr: vec![],
                    leader_epoch: 1,
                    partition_epoch: 1,
                },
            ])
            .expect("replay");
        let p = &image.topic("a").expect("topic").partitions[1];
        assert_eq!((p.leader, p.leader_epoch), (-1, 1));
        let gone = image
            .replay(&[MetadataRecord::DeleteTopic {
                topic_id: Uuid::from_u128(1),
            }])
            .expect("replay");
        assert!(gone.topic("a").is_none());
        assert!(gone.topic_by_id(&Uuid::from_u128(1)).is_none());
    }

    #[test]
    fn a_record_that_does_not_apply_changes_nothing() {
        let image = MetadataImage::default()
            .replay(&[create("a", 1, 1)])
            .expect("replay");
        let err = image.replay(&[create("c", 3, 1), create("a", 4, 1)]);
        assert!(matches!(err, Err(MetadataError::TopicAlreadyExists { .. })));
        assert!(image.topic("c").is_none());
        assert_eq!(image.offset, 1);
    }
}
