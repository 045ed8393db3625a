//! The Raft type configuration: what a log entry carries and what applying it returns.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::MetadataRecord;

/// Controller ids in the quorum (`--node-id` of `strom-quorum`).
pub type NodeId = u64;

/// One proposal of the active controller: records that apply together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub records: Vec<MetadataRecord>,
    /// When the controller proposed them (the time shown in the event history).
    pub timestamp_ms: i64,
}

/// The outcome of applying a proposal on the state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The metadata offset after the proposal (records applied so far).
    pub metadata_offset: u64,
    /// Set when the records did not apply to the image; nothing of the proposal was applied.
    pub error: Option<String>,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} record(s)", self.records.len())
    }
}

openraft::declare_raft_types!(
    /// Strom's metadata quorum.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;
