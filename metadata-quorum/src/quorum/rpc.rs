//! Controller RPC between brokers and controllers: one bincode request, one bincode answer,
//! over `POST /controller`. Followers forward to the active controller.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::controller::{
    ConfigOp, CreatedTopic, DeletedTopic, IsrChange, Leadership, NewTopic, ScramChange, TopicRef,
};
use crate::{Endpoint, MetadataError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker {
        broker_id: i32,
        incarnation: Uuid,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    Heartbeat {
        broker_id: i32,
        incarnation: Uuid,
    },
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        topics: Vec<TopicRef>,
    },
    AlterConfigs {
        topic: String,
        ops: Vec<ConfigOp>,
        /// AlterConfigs (true) replaces every config; IncrementalAlterConfigs (false) doesn't.
        replace: bool,
        validate_only: bool,
    },
    CreatePartitions {
        topic: String,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    AllocateProducerIds {
        broker_id: i32,
    },
    /// A partition leader's ISR changes (Kafka's AlterPartition).
    AlterPartition {
        broker_id: i32,
        changes: Vec<IsrChange>,
    },
    AlterScramCredentials {
        changes: Vec<ScramChange>,
    },
    CreateAcls {
        bindings: Vec<crate::acl::AclBinding>,
    },
    DeleteAcls {
        filters: Vec<crate::acl::AclFilter>,
    },
    AlterClientQuotas {
        alterations: Vec<crate::quota::QuotaAlteration>,
        validate_only: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    Registered {
        metadata_offset: u64,
    },
    Heartbeat {
        /// The controller does not know this incarnation: register again.
        unknown: bool,
        fenced: bool,
        /// The controller's metadata log end: a broker behind it is catching up.
        metadata_offset: u64,
    },
    CreateTopics {
        results: Vec<Result<CreatedTopic, MetadataError>>,
        metadata_offset: u64,
    },
    DeleteTopics {
        results: Vec<Result<DeletedTopic, MetadataError>>,
        metadata_offset: u64,
    },
    ProducerIds {
        first_id: i64,
        count: i64,
    },
    /// The answer to AlterConfigs and CreatePartitions.
    Changed {
        result: Result<(), MetadataError>,
        metadata_offset: u64,
    },
    AlterPartition {
        results: Vec<Result<Leadership, MetadataError>>,
        metadata_offset: u64,
    },
    AclsCreated {
        results: Vec<Result<(), MetadataError>>,
        metadata_offset: u64,
    },
    AclsDeleted {
        deleted: Vec<Vec<crate::acl::AclBinding>>,
        metadata_offset: u64,
    },
    /// Per user, in request order.
    PerUser {
        results: Vec<(String, Result<(), MetadataError>)>,
        metadata_offset: u64,
    },
    /// One result per AlterClientQuotas entry.
    QuotasAltered {
        results: Vec<Result<(), MetadataError>>,
        metadata_offset: u64,
    },
}

/// Why a controller request failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    #[error("this controller is not the active one (leader: {leader:?})")]
    NotController { leader: Option<u64> },
    #[error("the quorum cannot commit: {reason}")]
    NoQuorum { reason: String },
    #[error("no controller reachable: {reason}")]
    Unreachable { reason: String },
    #[error("controller failed: {reason}")]
    Internal { reason: String },
}

impl ControllerError {
    /// The Kafka error code a client gets for a metadata change that failed this way.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ControllerError::NotController { .. } => 41,
            ControllerError::NoQuorum { .. } | ControllerError::Unreachable { .. } => 7, // REQUEST_TIMED_OUT
            ControllerError::Internal { .. } => -1,
        }
    }
}

pub type ControllerResult = Result<ControllerResponse, ControllerError>;
