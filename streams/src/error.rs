//! The crate's errors. Build-time mistakes (a topology that cannot run) are distinct from
//! what goes wrong while running (the cluster, a store, a record that cannot be read), so a
//! caller can tell "fix your code" from "look at the cluster".

use strom_client::admin::AdminError;
use strom_client::consumer::ConsumerError;
use strom_client::producer::ProducerError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamsError {
    /// The topology or the configuration cannot run as written.
    #[error("invalid topology: {0}")]
    Topology(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A record's key or value could not be deserialized (and the handler fails).
    #[error("cannot deserialize the {part} of {topic}-{partition}@{offset}: {reason}")]
    Deserialize {
        topic: String,
        partition: i32,
        offset: i64,
        part: &'static str,
        reason: String,
    },
    /// A processor (Processor API) failed on a record: what `processing.exception.handler`
    /// handles. Return it from your processor with [`StreamsError::processing`].
    #[error("processing failed: {0}")]
    Processing(String),
    /// A serde refused a value (a serializer bug or a value it cannot encode).
    #[error("serde: {0}")]
    Serde(String),
    #[error("state store '{store}': {reason}")]
    Store { store: String, reason: String },
    #[error("consumer: {0}")]
    Consumer(#[from] ConsumerError),
    #[error("producer: {0}")]
    Producer(#[from] ProducerError),
    #[error("admin: {0}")]
    Admin(String),
    /// Another instance took this thread's tasks (a newer generation or producer epoch):
    /// what was uncommitted is dropped and the thread rejoins.
    #[error("tasks migrated: {0}")]
    TaskMigrated(String),
    #[error("the streams instance is closed")]
    Closed,
    /// An interactive query for a key whose task is active on another instance (`host`,
    /// its `application.server`, when known) or on none right now (rebalancing).
    #[error("store '{store}': the key is not hosted here{}", host.as_deref().map(|h| format!(" but on {h}")).unwrap_or_default())]
    NotLocal { store: String, host: Option<String> },
}

impl From<AdminError> for StreamsError {
    fn from(e: AdminError) -> Self {
        StreamsError::Admin(e.to_string())
    }
}

impl StreamsError {
    /// A processor's own failure on the current record.
    pub fn processing(reason: impl std::fmt::Display) -> Self {
        StreamsError::Processing(reason.to_string())
    }
}

pub type Result<T, E = StreamsError> = std::result::Result<T, E>;
