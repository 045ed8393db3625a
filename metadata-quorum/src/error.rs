//! Errors of the metadata layer, each with the Kafka error code a client can act on.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MetadataError {
    #[error("topic '{name}' already exists")]
    TopicAlreadyExists { name: String },
    #[error("topic '{name}' does not exist")]
    UnknownTopic { name: String },
    #[error("topic id {topic_id} does not exist")]
    UnknownTopicId { topic_id: Uuid },
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("invalid number of partitions {partitions}: {reason}")]
    InvalidPartitions { partitions: i32, reason: String },
    #[error("invalid replication factor {replication_factor}: {reason}")]
    InvalidReplicationFactor {
        replication_factor: i32,
        reason: String,
    },
    #[error("invalid replica assignment: {reason}")]
    InvalidReplicaAssignment { reason: String },
    #[error("invalid config '{key}': {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("record cannot be applied: {reason}")]
    InvalidRecord { reason: String },
    #[error("metadata log failed: {message}")]
    Log { message: String },
    #[error("no active controller can take the change: {reason}")]
    NotController { reason: String },
    #[error("partition {partition} of topic {topic_id} does not exist")]
    UnknownPartition { topic_id: Uuid, partition: u32 },
    #[error("broker {broker_id} does not lead the partition (leader: {leader})")]
    NotLeader { broker_id: i32, leader: i32 },
    #[error("leader epoch {requested} is not the current {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("partition epoch {requested} is not the current {current}")]
    InvalidUpdateVersion { requested: i32, current: i32 },
    #[error("{reason}")]
    FeatureUpdate { reason: String },
    #[error("replica {broker_id} cannot join the ISR: {reason}")]
    IneligibleReplica { broker_id: i32, reason: String },
    #[error("invalid ISR: {reason}")]
    InvalidIsr { reason: String },
    #[error("{reason}")]
    UnsupportedSaslMechanism { reason: String },
    #[error("{reason}")]
    ResourceNotFound { reason: String },
    #[error("{reason}")]
    DuplicateResource { reason: String },
    #[error("{reason}")]
    UnacceptableCredential { reason: String },
    #[error("{reason}")]
    InvalidRequest { reason: String },
    #[error("{reason}")]
    ElectionNotNeeded { reason: String },
    #[error("{reason}")]
    PreferredLeaderNotAvailable { reason: String },
    #[error("{reason}")]
    EligibleLeadersNotAvailable { reason: String },
    #[error("{reason}")]
    NoReassignmentInProgress { reason: String },
    #[error("{reason}")]
    BrokerIdNotRegistered { reason: String },
}

impl MetadataError {
    /// The Kafka protocol error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            MetadataError::TopicAlreadyExists { .. } => 36,
            MetadataError::UnknownTopic { .. } => 3,
            MetadataError::UnknownTopicId { .. } => 100,
            MetadataError::InvalidTopic { .. } => 17,
            MetadataError::InvalidPartitions { .. } => 37,
            MetadataError::InvalidReplicationFactor { .. } => 38,
            MetadataError::InvalidReplicaAssignment { .. } => 39,
            MetadataError::InvalidConfig { .. } => 40,
            MetadataError::NotController { .. } => 41,
            MetadataError::InvalidRecord { .. } | MetadataError::Log { .. } => -1,
            MetadataError::UnknownPartition { .. } => 3,
            MetadataError::NotLeader { .. } => 6,
            MetadataError::FencedLeaderEpoch { .. } => 74,
            MetadataError::InvalidUpdateVersion { .. } | MetadataError::FeatureUpdate { .. } => 95,
            MetadataError::IneligibleReplica { .. } => 107,
            MetadataError::InvalidIsr { .. } => 42, // INVALID_REQUEST
            MetadataError::UnsupportedSaslMechanism { .. } => 33,
            MetadataError::ResourceNotFound { .. } => 91,
            MetadataError::DuplicateResource { .. } => 92,
            MetadataError::UnacceptableCredential { .. } => 93,
            MetadataError::InvalidRequest { .. } => 42,
            MetadataError::ElectionNotNeeded { .. } => 84,
            MetadataError::PreferredLeaderNotAvailable { .. } => 80,
            MetadataError::EligibleLeadersNotAvailable { .. } => 83,
            MetadataError::NoReassignmentInProgress { .. } => 85,
            MetadataError::BrokerIdNotRegistered { .. } => 102,
        }
    }

    /// A stable snake_case code for JSON APIs.
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::TopicAlreadyExists { .. } => "topic_already_exists",
            MetadataError::UnknownTopic { .. } => "unknown_topic",
            MetadataError::UnknownTopicId { .. } => "unknown_topic_id",
            MetadataError::InvalidTopic { .. } => "invalid_topic",
            MetadataError::InvalidPartitions { .. } => "invalid_partitions",
            MetadataError::InvalidReplicationFactor { .. } => "invalid_replication_factor",
            MetadataError::InvalidReplicaAssignment { .. } => "invalid_replica_assignment",
            MetadataError::InvalidConfig { .. } => "invalid_config",
            MetadataError::InvalidRecord { .. } => "invalid_record",
            MetadataError::Log { .. } => "metadata_log_failed",
            MetadataError::NotController { .. } => "not_controller",
            MetadataError::UnknownPartition { .. } => "unknown_partition",
            MetadataError::NotLeader { .. } => "not_leader",
            MetadataError::FencedLeaderEpoch { .. } => "fenced_leader_epoch",
            MetadataError::InvalidUpdateVersion { .. } | MetadataError::FeatureUpdate { .. } => {
                "invalid_update_version"
            }
            MetadataError::IneligibleReplica { .. } => "ineligible_replica",
            MetadataError::InvalidIsr { .. } => "invalid_isr",
            MetadataError::UnsupportedSaslMechanism { .. } => "unsupported_sasl_mechanism",
            MetadataError::ResourceNotFound { .. } => "resource_not_found",
            MetadataError::DuplicateResource { .. } => "duplicate_resource",
            MetadataError::UnacceptableCredential { .. } => "unacceptable_credential",
            MetadataError::InvalidRequest { .. } => "invalid_request",
            MetadataError::ElectionNotNeeded { .. } => "election_not_needed",
            MetadataError::PreferredLeaderNotAvailable { .. } => "preferred_leader_not_available",
            MetadataError::EligibleLeadersNotAvailable { .. } => "eligible_leaders_not_available",
            MetadataError::NoReassignmentInProgress { .. } => "no_reassignment_in_progress",
            MetadataError::BrokerIdNotRegistered { .. } => "broker_id_not_registered",
        }
    }
}
