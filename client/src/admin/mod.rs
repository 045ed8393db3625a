//! The admin client: topics, partitions, configs, the cluster, consumer groups and their
//! offsets, transactions and producers ([`transactions`]), over the Kafka protocol (what
//! Java's `Admin` and the kafka-*.sh tools do).
//!
//! Requests that change metadata go to any broker, which forwards them to the active
//! controller; partition-scoped ones (ListOffsets, DeleteRecords) go to the leader; group
//! ones to the group's coordinator. Each failure is an [`AdminError`] carrying the Kafka
//! error the broker answered.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strom_client::admin::AdminError> {
//! use strom_client::admin::{Admin, NewTopic};
//! let mut admin = Admin::new("127.0.0.1:9092");
//! admin
//!     .create_topic(&NewTopic::new("orders", 3, 1).with_config("retention.ms", "86400000"))
//!     .await?;
//! for p in admin.describe_topic("orders").await?.partitions {
//!     println!("partition {} led by {}", p.partition, p.leader);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

pub mod acls;
mod elect;
mod features;
pub mod quotas;
mod reassign;
mod transactions;
mod users;

pub use elect::{ElectionResult, ElectionType};
pub use features::UpgradeType;
pub use reassign::OngoingReassignment;
pub use transactions::{ProducerState, TransactionDescription, TransactionListing};
pub use users::{ScramAlteration, ScramUser};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::DescribeClusterRequest;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    GroupId, IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest,
    OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{topic_name, ClusterClient, FindCoordinatorError};
use crate::consumer::OffsetAndMetadata;
use crate::{BrokerError, ClientError, TopicPartition};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("cannot reach the cluster: {0}")]
    Connection(String),
    /// The broker refused: `what` names the topic, group or partition.
    #[error("{what}: {error}")]
    Broker { what: String, error: BrokerError },
    #[error("malformed answer: {0}")]
    Decode(String),
}

impl AdminError {
    /// The Kafka error code, when the broker refused.
    pub fn code(&self) -> Option<i16> {
        match self {
            AdminError::Broker { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

impl From<ClientError> for AdminError {
    fn from(e: ClientError) -> Self {
        AdminError::Connection(e.to_string())
    }
}

fn refused(what: impl Into<String>, code: i16, message: Option<&str>) -> AdminError {
    AdminError::Broker {
        what: what.into(),
        error: BrokerError::new(code, message),
    }
}

/// The one item an answer about one topic, partition or group carries.
fn first<'a, T>(items: &'a [T], api: &str) -> Result<&'a T, AdminError> {
    items
        .first()
        .ok_or_else(|| AdminError::Decode(format!("empty {api} answer")))
}

/// Values per partition grouped by topic, as requests name them: topic → (partition, value).
fn by_topic<'a, T: Clone + 'a>(
    items: impl IntoIterator<Item = (&'a TopicPartition, &'a T)>,
) -> BTreeMap<&'a str, Vec<(i32, T)>> {
    let mut out: BTreeMap<&str, Vec<(i32, T)>> = BTreeMap::new();
    for (tp, v) in items {
        out.entry(&tp.topic)
            .or_default()
            .push((tp.partition, v.clone()));
    }
    out
}

fn check(what: impl Into<String>, code: i16, message: Option<&str>) -> Result<(), AdminError> {
    if code == 0 {
        Ok(())
    } else {
        Err(refused(what, code, message))
    }
}

/// A topic to create. -1 partitions or replication factor: the broker's default.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// What CreateTopics made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    pub name: String,
    pub topic_id: String,
    pub partitions: i32,
    pub replication_factor: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: i32,
    /// -1 while offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    /// -1 when the broker does not say.
    pub controller_id: i32,
    pub brokers: Vec<BrokerDescription>,
}

/// How errors name a config resource.
fn resource_label(resource_type: i8, name: &str) -> String {
    match (resource_type, name) {
        (2, t) => format!("topic '{t}'"),
        (32, g) => format!("group '{g}'"),
        (_, "") => "the brokers' default".to_string(),
        (_, b) => format!("broker {b}"),
    }
}

/// One config of a topic as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's ConfigSource: `TOPIC_CONFIG`, `DEFAULT_CONFIG`, `STATIC_BROKER_CONFIG`, ...
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
}

/// A change for IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    /// Back to the default.
    Delete(String),
}

/// Where ListOffsets looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the group chose (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    pub coordinator: i32,
    pub members: Vec<MemberDescription>,
}

/// A share group (KIP-932) as its coordinator describes it, with each share-partition's
/// start against the partition's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupDescription {
    pub group_id: String,
    pub state: String,
    pub epoch: i32,
    pub coordinator: i32,
    pub members: Vec<MemberDescription>,
    pub partitions: Vec<SharePartitionOffsets>,
}

/// One share-partition: its start offset (every record before it is done), the partition's
/// end, and the records between them (delivered or not, not all acknowledged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionOffsets {
    pub tp: TopicPartition,
    /// -1 while the group has not read the partition.
    pub start: i64,
    pub end: Option<i64>,
    pub lag: Option<i64>,
}

/// A group's committed offset of one partition against the partition's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub tp: TopicPartition,
    pub committed: i64,
    pub end: Option<i64>,
    pub lag: Option<i64>,
}

/// An admin client. Cheap to create; connects on first use.
pub struct Admin {
    cluster: ClusterClient,
}

fn config_source(code: i8) -> &'static str {
    match code {
        1 => "TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

impl Admin {
    pub fn new(bootstrap: &str) -> Self {
        Self {
            cluster: ClusterClient::new(bootstrap),
        }
    }

    /// An admin client whose connections run TLS and SASL as `security` says.
    pub fn with_security(bootstrap: &str, security: crate::security::Security) -> Self {
        Self {
            cluster: ClusterClient::with_security(bootstrap, security),
        }
    }

    pub async fn create_topic(&mut self, topic: &NewTopic) -> Result<CreatedTopic, AdminError> {
        self.create_topic_with(topic, false).await
    }

    /// With `validate_only`, the broker checks the request and creates nothing.
    pub async fn create_topic_with(
        &mut self,
        topic: &NewTopic,
        validate_only: bool,
    ) -> Result<CreatedTopic, AdminError> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_validate_only(validate_only)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                )]);
        let r = self.any_send(req, 7).await?;
        let t = first(&r.topics, "CreateTopics")?;
        check(
            format!("topic '{}'", topic.name),
            t.error_code,
            t.error_message.as_deref(),
        )?;
        Ok(CreatedTopic {
            name: topic.name.clone(),
            topic_id: t.topic_id.to_string(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
        })
    }

    /// Creates `topic` unless a topic of that name exists (TOPIC_ALREADY_EXISTS is not an
    /// error here); true when this call created it.
    pub async fn create_topic_if_missing(&mut self, topic: &NewTopic) -> Result<bool, AdminError> {
        match self.create_topic(topic).await {
            Ok(_) => Ok(true),
            Err(e)
                if e.code() == Some(kafka_protocol::ResponseError::TopicAlreadyExists.code()) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn delete_topic(&mut self, name: &str) -> Result<(), AdminError> {
        let req = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(vec![topic_name(name)]);
        let r = self.any_send(req, 5).await?;
        let t = first(&r.responses, "DeleteTopics")?;
        check(
            format!("topic '{name}'"),
            t.error_code,
            t.error_message.as_deref(),
        )
    }

    /// Every topic's name, sorted; internal ones (`__consumer_offsets`) only if asked.
    pub async fn list_topics(&mut self, include_internal: bool) -> Result<Vec<String>, AdminError> {
        let md = self.cluster.metadata(None).await?;
        let mut names: Vec<String> = md
            .topics
            .iter()
            .filter(|t| include_internal || !t.is_internal)
            .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
            .collect();
        names.sort();
        Ok(names)
    }

    pub async fn describe_topic(&mut self, name: &str) -> Result<TopicDescription, AdminError> {
        let md = self.cluster.metadata(Some(&[name])).await?;
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(name))
            .ok_or_else(|| AdminError::Decode(format!("no metadata for '{name}'")))?;
        check(format!("topic '{name}'"), t.error_code, None)?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
        let mut partitions: Vec<PartitionDescription> = t
            .partitions
            .iter()
            .map(|p| PartitionDescription {
                partition: p.partition_index,
                leader: p.leader_id.0,
                leader_epoch: p.leader_epoch,
                replicas: ids(&p.replica_nodes),
                isr: ids(&p.isr_nodes),
                offline: ids(&p.offline_replicas),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(TopicDescription {
            name: name.to_string(),
            topic_id: t.topic_id.to_string(),
            internal: t.is_internal,
            partitions,
        })
    }

    pub async fn describe_cluster(&mut self) -> Result<ClusterDescription, AdminError> {
        let md = self.cluster.metadata(Some(&[])).await?;
        let mut brokers: Vec<BrokerDescription> = md
            .brokers
            .iter()
            .map(|b| BrokerDescription {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription {
            cluster_id: md.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: md.controller_id.0,
            brokers,
        })
    }

    /// Every registered broker, fenced ones included, each with whether the controller has
    /// fenced it (DescribeCluster v2 with `include_fenced_brokers`): a fenced broker missed
    /// its heartbeats, and [`describe_cluster`](Self::describe_cluster) leaves it out until
    /// it is back.
    pub async fn registered_brokers(
        &mut self,
    ) -> Result<Vec<(BrokerDescription, bool)>, AdminError> {
        let req = DescribeClusterRequest::default().with_include_fenced_brokers(true);
        let r = self.any_send(req, 2).await?;
        check("DescribeCluster", r.error_code, r.error_message.as_deref())?;
        let mut out: Vec<(BrokerDescription, bool)> = r
            .brokers
            .iter()
            .map(|b| {
                (
                    BrokerDescription {
                        id: b.broker_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                    b.is_fenced,
                )
            })
            .collect();
        out.sort_by_key(|(b, _)| b.id);
        Ok(out)
    }

    /// A topic's configs, every one with its value and where it comes from.
    pub async fn describe_configs(&mut self, topic: &str) -> Result<Vec<ConfigEntry>, AdminError> {
        self.describe_resource_configs(2, topic).await
    }

    /// A group's configs (`share.auto.offset.reset`, `consumer.session.timeout.ms`, ...):
    /// its own values and the broker's for the rest. The group need not exist.
    pub async fn describe_group_configs(
        &mut self,
        group: &str,
    ) -> Result<Vec<ConfigEntry>, AdminError> {
        self.describe_resource_configs(32, group).await
    }

    /// Sets or resets a group's configs (IncrementalAlterConfigs); all or nothing.
    pub async fn alter_group_configs(
        &mut self,
        group: &str,
        ops: &[ConfigOp],
    ) -> Result<(), AdminError> {
        self.alter_resource_configs(32, group, ops).await
    }

    async fn describe_resource_configs(
        &mut self,
        resource_type: i8,
        name: &str,
    ) -> Result<Vec<ConfigEntry>, AdminError> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None),
        ]);
        let r = self.any_send(req, 4).await?;
        let res = first(&r.results, "DescribeConfigs")?;
        check(
            resource_label(resource_type, name),
            res.error_code,
            res.error_message.as_deref(),
        )?;
        let mut out: Vec<ConfigEntry> = res
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: config_source(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Sets or resets topic configs (IncrementalAlterConfigs); all or nothing.
    pub async fn alter_configs(&mut self, topic: &str, ops: &[ConfigOp]) -> Result<(), AdminError> {
        self.alter_resource_configs(2, topic, ops).await
    }

    /// Sets or resets a broker's dynamic configs (`broker` None: the cluster-wide default),
    /// such as `leader.replication.throttled.rate`; all or nothing.
    pub async fn alter_broker_configs(
        &mut self,
        broker: Option<i32>,
        ops: &[ConfigOp],
    ) -> Result<(), AdminError> {
        let name = broker.map(|b| b.to_string()).unwrap_or_default();
        self.alter_resource_configs(4, &name, ops).await
    }

    async fn alter_resource_configs(
        &mut self,
        resource_type: i8,
        name: &str,
        ops: &[ConfigOp],
    ) -> Result<(), AdminError> {
        let configs = ops
            .iter()
            .map(|op| match op {
                ConfigOp::Set(k, v) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone()))),
                ConfigOp::Delete(k) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(1)
                    .with_value(None),
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(configs),
        ]);
        let r = self.any_send(req, 1).await?;
        let res = first(&r.responses, "IncrementalAlterConfigs")?;
        check(
            resource_label(resource_type, name),
            res.error_code,
            res.error_message.as_deref(),
        )
    }

    /// Grows `topic` to `total` partitions.
    pub async fn create_partitions(&mut self, topic: &str, total: i32) -> Result<(), AdminError> {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total)
                .with_assignments(None)]);
        let r = self.any_send(req, 3).await?;
        let res = first(&r.results, "CreatePartitions")?;
        check(
            format!("topic '{topic}'"),
            res.error_code,
            res.error_message.as_deref(),
        )
    }

    /// The offset ListOffsets finds at the partition's leader.
    pub async fn list_offset(
        &mut self,
        tp: &TopicPartition,
        spec: OffsetSpec,
    ) -> Result<i64, AdminError> {
        let ts = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        };
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(&tp.topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(ts)])]);
        let r = self.leader_send(tp, req, 7).await?;
        let p = first(&first(&r.topics, "ListOffsets")?.partitions, "ListOffsets")?;
        check(format!("partition {tp}"), p.error_code, None)?;
        Ok(p.offset)
    }

    /// Deletes `tp`'s records before `offset` (-1: all); returns the new log start.
    pub async fn delete_records(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<i64, AdminError> {
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(&tp.topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_offset(offset)])]);
        let r = self.leader_send(tp, req, 2).await?;
        let p = first(
            &first(&r.topics, "DeleteRecords")?.partitions,
            "DeleteRecords",
        )?;
        check(format!("partition {tp}"), p.error_code, None)?;
        Ok(p.low_watermark)
    }

    /// Every group any broker coordinates, sorted by id.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, AdminError> {
        let md = self.cluster.metadata(Some(&[])).await?;
        let mut all: BTreeMap<String, GroupListing> = BTreeMap::new();
        for b in &md.brokers {
            let conn = self.cluster.broker(b.node_id.0).await?;
            let r = match conn.send(ListGroupsRequest::default(), 4).await {
                Ok(r) => r,
                Err(e) => {
                    self.cluster.drop_broker(b.node_id.0);
                    return Err(e.into());
                }
            };
            check(format!("broker {}", b.node_id.0), r.error_code, None)?;
            for g in r.groups {
                all.insert(
                    g.group_id.to_string(),
                    GroupListing {
                        group_id: g.group_id.to_string(),
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                    },
                );
            }
        }
        Ok(all.into_values().collect())
    }

    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription, AdminError> {
        let coordinator = self.coordinator(group).await?;
        let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let r = self.send_to(coordinator, req, 5).await?;
        let g = first(&r.groups, "DescribeGroups")?;
        check(
            format!("group '{group}'"),
            g.error_code,
            g.error_message.as_deref(),
        )?;
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            coordinator,
            members: g
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: crate::consumer::decode_assignment(&m.member_assignment)
                        .map(|a| a.into_iter().collect())
                        .unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// A share group: members and assignments (ShareGroupDescribe), and each
    /// share-partition's start offset (DescribeShareGroupOffsets) against the end.
    pub async fn describe_share_group(
        &mut self,
        group: &str,
    ) -> Result<ShareGroupDescription, AdminError> {
        use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
        use kafka_protocol::messages::{
            DescribeShareGroupOffsetsRequest, ShareGroupDescribeRequest,
        };
        let coordinator = self.coordinator(group).await?;
        let r = self
            .send_to(
                coordinator,
                ShareGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]),
                1,
            )
            .await?;
        let g = first(&r.groups, "ShareGroupDescribe")?;
        check(
            format!("share group '{group}'"),
            g.error_code,
            g.error_message.as_deref(),
        )?;
        let md = self.cluster.metadata(None).await?;
        let names: BTreeMap<uuid::Uuid, String> = md
            .topics
            .iter()
            .filter_map(|t| Some((t.topic_id, t.name.as_ref()?.to_string())))
            .collect();
        let members = g
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: None,
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: m
                    .assignment
                    .topic_partitions
                    .iter()
                    .flat_map(|t| {
                        let name = names.get(&t.topic_id).cloned().unwrap_or_default();
                        t.partitions
                            .iter()
                            .map(move |p| TopicPartition::new(name.as_str(), *p))
                    })
                    .collect(),
            })
            .collect();
        let (state, epoch) = (g.group_state.to_string(), g.group_epoch);
        let r = self
            .send_to(
                coordinator,
                DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                    DescribeShareGroupOffsetsRequestGroup::default()
                        .with_group_id(group_id(group))
                        .with_topics(None),
                ]),
                0,
            )
            .await?;
        let g = first(&r.groups, "DescribeShareGroupOffsets")?;
        check(
            format!("share group '{group}'"),
            g.error_code,
            g.error_message.as_deref(),
        )?;
        let mut partitions = Vec::new();
        for t in &g.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.topic_name.as_str(), p.partition_index);
                check(
                    format!("partition {tp}"),
                    p.error_code,
                    p.error_message.as_deref(),
                )?;
                let end = self.list_offset(&tp, OffsetSpec::Latest).await.ok();
                partitions.push(SharePartitionOffsets {
                    lag: end
                        .filter(|_| p.start_offset >= 0)
                        .map(|e| (e - p.start_offset).max(0)),
                    tp,
                    start: p.start_offset,
                    end,
                });
            }
        }
        Ok(ShareGroupDescription {
            group_id: group.to_string(),
            state,
            epoch,
            coordinator,
            members,
            partitions,
        })
    }

    /// The group's committed offsets, every partition it has one for.
    pub async fn list_group_offsets(
        &mut self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>, AdminError> {
        let coordinator = self.coordinator(group).await?;
        let req = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(None);
        let r = self.send_to(coordinator, req, 7).await?;
        check(format!("group '{group}'"), r.error_code, None)?;
        Ok(crate::consumer::committed_offsets(&r))
    }

    /// Committed offset, log end and lag of every partition the group has committed.
    pub async fn group_lag(&mut self, group: &str) -> Result<Vec<PartitionLag>, AdminError> {
        let offsets = self.list_group_offsets(group).await?;
        let mut out = Vec::new();
        for (tp, om) in offsets {
            let end = self.list_offset(&tp, OffsetSpec::Latest).await.ok();
            out.push(PartitionLag {
                lag: end.map(|e| (e - om.offset).max(0)),
                tp,
                committed: om.offset,
                end,
            });
        }
        Ok(out)
    }

    /// Commits `offsets` for a group that has no active members (moving its position, as
    /// `kafka-consumer-groups --reset-offsets --execute` does).
    pub async fn alter_group_offsets(
        &mut self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), AdminError> {
        let coordinator = self.coordinator(group).await?;
        let req = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                by_topic(offsets)
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, o)| {
                                        OffsetCommitRequestPartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let r = self.send_to(coordinator, req, 8).await?;
        for t in &r.topics {
            for p in &t.partitions {
                check(
                    format!(
                        "group '{group}' partition {}-{}",
                        t.name.as_str(),
                        p.partition_index
                    ),
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Moves an empty share group's start offsets (AlterShareGroupOffsets, what
    /// `kafka-share-groups.sh --reset-offsets --execute` sends): each partition's leader
    /// drops the records it had in flight for the group and starts at the offset given
    /// (-1: where the group's `share.auto.offset.reset` says). The first refusal is the error
    /// (NON_EMPTY_GROUP while the group has members).
    pub async fn alter_share_group_offsets(
        &mut self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), AdminError> {
        use kafka_protocol::messages::alter_share_group_offsets_request::{
            AlterShareGroupOffsetsRequestPartition as P, AlterShareGroupOffsetsRequestTopic as T,
        };
        use kafka_protocol::messages::AlterShareGroupOffsetsRequest;
        let coordinator = self.coordinator(group).await?;
        let req = AlterShareGroupOffsetsRequest::default()
            .with_group_id(group_id(group))
            .with_topics(
                by_topic(offsets)
                    .into_iter()
                    .map(|(t, ps)| {
                        T::default().with_topic_name(topic_name(t)).with_partitions(
                            ps.into_iter()
                                .map(|(p, o)| {
                                    P::default().with_partition_index(p).with_start_offset(o)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            );
        let r = self.send_to(coordinator, req, 0).await?;
        check(
            format!("share group '{group}'"),
            r.error_code,
            r.error_message.as_deref(),
        )?;
        for t in &r.responses {
            for p in &t.partitions {
                check(
                    format!(
                        "share group '{group}' partition {}-{}",
                        t.topic_name.as_str(),
                        p.partition_index
                    ),
                    p.error_code,
                    p.error_message.as_deref(),
                )?;
            }
        }
        Ok(())
    }

    /// Makes an empty share group forget `topics` (DeleteShareGroupOffsets, what
    /// `kafka-share-groups.sh --delete-offsets` sends): its next read of them starts where
    /// `share.auto.offset.reset` says. Each topic's outcome; the group's own refusal
    /// (NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND) is the error.
    pub async fn delete_share_group_offsets(
        &mut self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, Result<(), AdminError>)>, AdminError> {
        use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic as T;
        use kafka_protocol::messages::DeleteShareGroupOffsetsRequest;
        let coordinator = self.coordinator(group).await?;
        let req = DeleteShareGroupOffsetsRequest::default()
            .with_group_id(group_id(group))
            .with_topics(
                topics
                    .iter()
                    .map(|t| T::default().with_topic_name(topic_name(t)))
                    .collect(),
            );
        let r = self.send_to(coordinator, req, 0).await?;
        check(
            format!("share group '{group}'"),
            r.error_code,
            r.error_message.as_deref(),
        )?;
        Ok(r.responses
            .iter()
            .map(|t| {
                let name = t.topic_name.to_string();
                let outcome = check(
                    format!("topic '{name}'"),
                    t.error_code,
                    t.error_message.as_deref(),
                );
                (name, outcome)
            })
            .collect())
    }

    /// Deletes groups that have no members (and their committed offsets).
    pub async fn delete_group(&mut self, group: &str) -> Result<(), AdminError> {
        let coordinator = self.coordinator(group).await?;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let r = self.send_to(coordinator, req, 2).await?;
        let res = first(&r.results, "DeleteGroups")?;
        check(format!("group '{group}'"), res.error_code, None)
    }

    async fn coordinator(&mut self, group: &str) -> Result<i32, AdminError> {
        // Broker addresses first: the coordinator is one of them.
        self.cluster.metadata(Some(&[])).await?;
        match self.cluster.find_coordinator(group).await {
            Ok(id) => Ok(id),
            Err(FindCoordinatorError::Client(e)) => Err(e.into()),
            Err(FindCoordinatorError::Broker(error)) => Err(AdminError::Broker {
                what: format!("group '{group}'"),
                error,
            }),
        }
    }

    async fn any_send<R: kafka_protocol::protocol::Request>(
        &mut self,
        req: R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        let conn = self.cluster.any().await?;
        match conn.send(req, version).await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.cluster.reset();
                Err(e.into())
            }
        }
    }

    async fn send_to<R: kafka_protocol::protocol::Request>(
        &mut self,
        broker: i32,
        req: R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        let conn = self.cluster.broker(broker).await?;
        match conn.send(req, version).await {
            Ok(r) => Ok(r),
            Err(e) => {
                self.cluster.drop_broker(broker);
                Err(e.into())
            }
        }
    }

    async fn leader_send<R: kafka_protocol::protocol::Request>(
        &mut self,
        tp: &TopicPartition,
        req: R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        let md = self.cluster.metadata(Some(&[tp.topic.as_str()])).await?;
        if let Some(t) = md.topics.first() {
            check(format!("topic '{}'", tp.topic), t.error_code, None)?;
        }
        let leader = self
            .cluster
            .leader(&tp.topic, tp.partition)
            .ok_or_else(|| refused(format!("partition {tp}"), 3, Some("no such partition")))?
            .leader;
        if leader < 0 {
            return Err(refused(
                format!("partition {tp}"),
                5,
                Some("the partition has no leader"),
            ));
        }
        self.send_to(leader, req, version).await
    }
}
