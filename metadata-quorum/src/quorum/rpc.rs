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
    /// The Raft quorum's state, from the active controller (DescribeQuorum).
    DescribeQuorum,
    /// ElectLeaders: preferred, or `unclean`; `partitions` None for every partition.
    ElectLeaders {
        unclean: bool,
        partitions: Option<Vec<crate::controller::PartitionName>>,
    },
    /// A broker stopping cleanly (Kafka's BrokerHeartbeat with `want_shut_down`): it hands
    /// over every leadership and leaves every ISR it can, and heartbeats no more.
    ControlledShutdown {
        broker_id: i32,
        incarnation: Uuid,
    },
    /// AlterPartitionReassignments (KIP-455): a target per partition, None to cancel.
    AlterReassignments {
        reassignments: Vec<crate::controller::Reassignment>,
    },
    /// UnregisterBroker: the broker leaves the cluster metadata (it must host no replica).
    UnregisterBroker {
        broker_id: i32,
    },
    /// UpdateFeatures (KIP-584): new finalized levels, all or none.
    UpdateFeatures {
        updates: Vec<crate::features::FeatureUpdate>,
        validate_only: bool,
    },
    /// AlterConfigs / IncrementalAlterConfigs on a broker (None: the cluster-wide default).
    AlterBrokerConfigs {
        broker: Option<i32>,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    },
    /// KIP-853 AddRaftVoter: controller `id` at `addr` catches up as a learner, then joins
    /// the voters.
    AddVoter {
        id: u64,
        addr: String,
    },
    /// KIP-853 RemoveRaftVoter: controller `id` leaves the voters.
    RemoveVoter {
        id: u64,
    },
    /// What a broker's log directory holds, sent every `--log-dir-report-interval-ms`: the
    /// continuous balancer's view of the disks. Kept in the active controller's memory only,
    /// like heartbeats; answered with [`ControllerResponse::Changed`].
    ReportLogDir {
        broker_id: i32,
        incarnation: Uuid,
        report: LogDirReport,
    },
    /// AlterConfigs / IncrementalAlterConfigs on a group's dynamic configs.
    AlterGroupConfigs {
        group: String,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    },
}

impl ControllerRequest {
    /// The request's name, for traces and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RegisterBroker { .. } => "RegisterBroker",
            Self::Heartbeat { .. } => "Heartbeat",
            Self::CreateTopics { .. } => "CreateTopics",
            Self::DeleteTopics { .. } => "DeleteTopics",
            Self::AlterConfigs { .. } => "AlterConfigs",
            Self::CreatePartitions { .. } => "CreatePartitions",
            Self::AllocateProducerIds { .. } => "AllocateProducerIds",
            Self::AlterPartition { .. } => "AlterPartition",
            Self::AlterScramCredentials { .. } => "AlterScramCredentials",
            Self::CreateAcls { .. } => "CreateAcls",
            Self::DeleteAcls { .. } => "DeleteAcls",
            Self::AlterClientQuotas { .. } => "AlterClientQuotas",
            Self::DescribeQuorum => "DescribeQuorum",
            Self::ElectLeaders { .. } => "ElectLeaders",
            Self::ControlledShutdown { .. } => "ControlledShutdown",
            Self::AlterReassignments { .. } => "AlterReassignments",
            Self::UnregisterBroker { .. } => "UnregisterBroker",
            Self::UpdateFeatures { .. } => "UpdateFeatures",
            Self::AlterBrokerConfigs { .. } => "AlterBrokerConfigs",
            Self::AlterGroupConfigs { .. } => "AlterGroupConfigs",
            Self::AddVoter { .. } => "AddVoter",
            Self::RemoveVoter { .. } => "RemoveVoter",
            Self::ReportLogDir { .. } => "ReportLogDir",
        }
    }
}

/// A broker's log directory as it reports it to the controller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDirReport {
    /// The bytes of partition data this broker is meant to hold at most
    /// (`--log-dir-capacity-bytes`; by default the size of its file system).
    pub capacity_bytes: u64,
    /// The file system's size and free space, when the broker could read them.
    pub fs_total_bytes: Option<u64>,
    pub fs_usable_bytes: Option<u64>,
    /// Every partition replica it holds: topic id, partition, bytes.
    pub partitions: Vec<(Uuid, u32, u64)>,
    /// How often it reports (`--log-dir-report-interval-ms`): a report three intervals old
    /// is no longer used.
    pub report_interval_ms: u64,
}

impl LogDirReport {
    /// The partition bytes it holds in all.
    pub fn used_bytes(&self) -> u64 {
        self.partitions
            .iter()
            .fold(0u64, |sum, &(_, _, b)| sum.saturating_add(b))
    }
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
    Quorum(QuorumDescription),
    Elected {
        results: Vec<(crate::controller::PartitionName, Result<(), MetadataError>)>,
        metadata_offset: u64,
    },
    /// The answer to ControlledShutdown: the broker leads nothing once its image reaches
    /// `metadata_offset`; `unknown` when the controller does not know this incarnation
    /// (nothing was changed).
    ShutDown {
        unknown: bool,
        metadata_offset: u64,
        /// Partitions it led that went offline: no other replica was in sync to take over.
        offline: usize,
    },
    /// The answer to AddVoter / RemoveVoter: the voters (id, address) after the change.
    Voters {
        result: Result<Vec<(u64, String)>, MetadataError>,
    },
}

/// The metadata quorum as its active controller sees it (what DescribeQuorum reports). Offsets
/// are Raft log indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader_id: i32,
    /// The Raft term.
    pub leader_epoch: i32,
    /// The last committed index applied by the leader.
    pub high_watermark: i64,
    pub voters: Vec<ReplicaProgress>,
    /// The brokers, which follow the metadata log without voting.
    pub observers: Vec<ReplicaProgress>,
    /// Each voter's `host:port`.
    pub voter_addrs: Vec<(i32, String)>,
}

/// How far one replica of the metadata log is: its last index known to the leader (-1 when
/// unknown), and when it was last heard from (epoch ms, -1 when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProgress {
    pub replica_id: i32,
    pub log_end_offset: i64,
    pub last_fetch_timestamp: i64,
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
    #[error("the controller refused: {reason}")]
    Refused { reason: String },
}

impl ControllerError {
    /// The Kafka error code a client gets for a metadata change that failed this way.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ControllerError::NotController { .. } => 41,
            ControllerError::NoQuorum { .. } | ControllerError::Unreachable { .. } => 7, // REQUEST_TIMED_OUT
            ControllerError::Internal { .. } => -1,
            ControllerError::Refused { .. } => 102, // BROKER_ID_NOT_REGISTERED
        }
    }
}

pub type ControllerResult = Result<ControllerResponse, ControllerError>;
