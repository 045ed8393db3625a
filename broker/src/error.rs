//! Broker errors, each mapped to the Kafka error code a client can act on.

use kafka_protocol::ResponseError;
use metadata_quorum::MetadataError;
use strom_storage::StorageError;

/// Errors of the partition log layer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("corrupt record batch: {reason}")]
    CorruptMessage { reason: String },
    #[error("invalid record batch: {reason}")]
    InvalidRecord { reason: String },
    #[error("record batch of {size} bytes exceeds the limit of {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("offset {offset} is outside the log [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("leader epoch {requested} is older than the current {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("leader epoch {requested} is newer than the current {current}")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    #[error("producer {producer_id}: sequence {got} where {expected} was expected")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {epoch} is older than the current {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id} is unknown here and starts at sequence {first_seq}, not 0")]
    UnknownProducerId { producer_id: i64, first_seq: i32 },
    #[error("producer {producer_id}: marker from coordinator epoch {coordinator_epoch}, older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
    #[error("this broker no longer holds a replica of {tp}")]
    ReplicaDeleted { tp: String },
    #[error("invalid transaction state: {reason}")]
    InvalidTxnState { reason: String },
    #[error("this broker does not lead {tp} at its current leader epoch")]
    NotLeader { tp: String },
    #[error("this broker does not follow {tp} at leader epoch {leader_epoch}")]
    NotFollower { tp: String, leader_epoch: i32 },
    #[error("storage failed: {source}")]
    Storage {
        #[from]
        source: StorageError,
    },
}

impl LogError {
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            LogError::CorruptMessage { .. } => ResponseError::CorruptMessage,
            LogError::InvalidRecord { .. } => ResponseError::InvalidRecord,
            LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            LogError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
            LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            LogError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
            LogError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
            LogError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
            LogError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
            LogError::NotFollower { .. } => ResponseError::NotLeaderOrFollower,
            LogError::ReplicaDeleted { .. } => ResponseError::NotLeaderOrFollower,
            LogError::Storage { .. } => ResponseError::KafkaStorageError,
        }
    }

    pub fn code(&self) -> i16 {
        self.kafka_error().code()
    }
}

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame length {length} is negative")]
    NegativeLength { length: i32 },
    #[error("frame of {length} bytes exceeds the limit of {max} (socket.request.max.bytes, or sasl.server.max.receive.size before authentication)")]
    FrameTooLarge { length: usize, max: usize },
    #[error("frame of {length} bytes is too short for a request header")]
    FrameTooShort { length: usize },
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("api {api} is not supported")]
    UnsupportedApi { api: &'static str },
    #[error("{api} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        api: &'static str,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api} v{version} request: {reason}")]
    Malformed {
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("could not encode the {api} response: {reason}")]
    Encode { api: &'static str, reason: String },
    #[error("unexpected Kafka request of type {api} during SASL handshake")]
    Unauthenticated { api: &'static str },
    #[error("{api} refused: {reason}")]
    Unauthorized {
        api: &'static str,
        reason: &'static str,
    },
    #[error("the SASL session expired (connections.max.reauth.ms) and the client did not re-authenticate")]
    SessionExpired,
    #[error("connection i/o failed: {source}")]
    Io {
        #[from]
        source: std::io::Error,
    },
}

/// Maps a metadata error to its Kafka error code.
pub fn metadata_code(e: &MetadataError) -> i16 {
    e.kafka_code()
}
