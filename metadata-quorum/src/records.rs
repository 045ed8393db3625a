//! The metadata records: the only way cluster state changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A listener a broker can be reached at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// "kafka" for the Kafka protocol, "http" for the HTTP API.
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// One partition's replicas and leadership as a record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when the partition has no leader (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// Stored with bincode, which encodes the variant index: add new variants at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The first record of every metadata log: names the cluster.
    InitCluster {
        cluster_id: String,
    },
    /// A broker (re)starting. A new incarnation replaces the previous registration.
    RegisterBroker {
        broker_id: i32,
        incarnation: Uuid,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    FenceBroker {
        broker_id: i32,
    },
    UnfenceBroker {
        broker_id: i32,
    },
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: Vec<PartitionRecord>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        topic_id: Uuid,
    },
    PartitionChange {
        topic_id: Uuid,
        partition: u32,
        leader: i32,
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// Sets (`Some`) or removes (`None`) one topic config.
    ConfigChange {
        topic_id: Uuid,
        key: String,
        value: Option<String>,
    },
    /// New partitions appended to a topic (CreatePartitions).
    AddPartitions {
        topic_id: Uuid,
        partitions: Vec<PartitionRecord>,
    },
    /// A block of producer ids handed to a broker for InitProducerId.
    AllocateProducerIds {
        broker_id: i32,
        first_id: i64,
        count: i64,
    },
    /// Sets a user's SCRAM credential for one mechanism (1: SCRAM-SHA-256, 2: SCRAM-SHA-512):
    /// the salt and the derived keys, never the password.
    UserScramCredential {
        user: String,
        mechanism: i8,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    },
    RemoveUserScramCredential {
        user: String,
        mechanism: i8,
    },
    CreateAcl {
        binding: crate::acl::AclBinding,
    },
    DeleteAcl {
        binding: crate::acl::AclBinding,
    },
    /// Sets (`Some`) or removes (`None`) one client quota key of an entity.
    ClientQuota {
        entity: crate::quota::QuotaEntity,
        key: String,
        value: Option<crate::quota::QuotaValue>,
    },
    /// A partition's replica set changes (KIP-455): a reassignment starts (replicas are the
    /// target followed by the replicas leaving, `adding`/`removing` name the difference),
    /// completes or is cancelled (both empty). Carries the whole resulting assignment.
    PartitionReassignment {
        topic_id: Uuid,
        partition: u32,
        replicas: Vec<i32>,
        adding: Vec<i32>,
        removing: Vec<i32>,
        leader: i32,
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// A broker leaves the cluster (UnregisterBroker); `incarnation` may not register again.
    UnregisterBroker {
        broker_id: i32,
        incarnation: Uuid,
    },
    /// Sets (`Some`) or removes (`None`) a dynamic broker config of one broker, or with
    /// `broker_id` None the cluster-wide default (Kafka's `<default>` broker entity).
    BrokerConfigChange {
        broker_id: Option<i32>,
        key: String,
        value: Option<String>,
    },
    /// Finalizes a feature at `level` (Kafka's FeatureLevelRecord); 0 removes it.
    FeatureLevel {
        name: String,
        level: i16,
    },
    /// Sets (`Some`) or removes (`None`) a dynamic config of one group (Kafka's GROUP config
    /// resource, e.g. `share.auto.offset.reset`).
    GroupConfigChange {
        group: String,
        key: String,
        value: Option<String>,
    },
}

impl MetadataRecord {
    /// A short name for logs and the HTTP event stream.
    pub fn kind(&self) -> &'static str {
        match self {
            MetadataRecord::InitCluster { .. } => "InitCluster",
            MetadataRecord::RegisterBroker { .. } => "RegisterBroker",
            MetadataRecord::FenceBroker { .. } => "FenceBroker",
            MetadataRecord::UnfenceBroker { .. } => "UnfenceBroker",
            MetadataRecord::CreateTopic { .. } => "CreateTopic",
            MetadataRecord::DeleteTopic { .. } => "DeleteTopic",
            MetadataRecord::AddPartitions { .. } => "AddPartitions",
            MetadataRecord::AllocateProducerIds { .. } => "AllocateProducerIds",
            MetadataRecord::UserScramCredential { .. } => "UserScramCredential",
            MetadataRecord::RemoveUserScramCredential { .. } => "RemoveUserScramCredential",
            MetadataRecord::CreateAcl { .. } => "CreateAcl",
            MetadataRecord::DeleteAcl { .. } => "DeleteAcl",
            MetadataRecord::ClientQuota { .. } => "ClientQuota",
            MetadataRecord::PartitionChange { .. } => "PartitionChange",
            MetadataRecord::ConfigChange { .. } => "ConfigChange",
            MetadataRecord::PartitionReassignment { .. } => "PartitionReassignment",
            MetadataRecord::UnregisterBroker { .. } => "UnregisterBroker",
            MetadataRecord::BrokerConfigChange { .. } => "BrokerConfigChange",
            MetadataRecord::FeatureLevel { .. } => "FeatureLevel",
            MetadataRecord::GroupConfigChange { .. } => "GroupConfigChange",
        }
    }
}

/// A record as the metadata log holds it: its offset and when it was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub record: MetadataRecord,
}
