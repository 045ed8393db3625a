//! # strom-streams: stream processing on Strom
//!
//! A Rust counterpart of Kafka Streams, on [`strom_client`]: it runs against Strom or any
//! Kafka-compatible cluster.
//!
//! - [`StreamsBuilder`] builds a [`Topology`] with a typed DSL: [`KStream`] (events),
//!   [`KTable`] (latest value per key), groupings and aggregations.
//! - [`KafkaStreams`] runs it: stream threads join a consumer group named by
//!   `application.id`; each input partition number is a task with its own state stores
//!   (RocksDB or memory), each store backed by a compacted changelog topic that restores it
//!   anywhere. Under `exactly_once_v2`, one transaction per commit covers the outputs, the
//!   changelog writes and the input offsets.
//! - [`TopologyTestDriver`] runs a topology without a cluster, for unit tests.
//!
//! The design (task model, store layout, how a commit ties outputs, changelogs and offsets
//! together) is in `docs/decisions/0010-streams.md`.

pub mod driver;
pub mod dsl;
pub mod error;
mod record;
pub mod runtime;
pub mod serdes;
pub mod store;
mod task;
pub mod topology;

pub use driver::{TestInputTopic, TestOutputTopic, TopologyTestDriver};
pub use dsl::{
    Data, Grouped, KGroupedStream, KStream, KTable, Materialized, Produced, Repartitioned,
    StreamsBuilder,
};
pub use error::StreamsError;
pub use record::{Headers, Output};
pub use runtime::{
    KafkaStreams, ProcessingGuarantee, Queries, StreamsConfig, StreamsMetrics, StreamsState,
};
pub use task::{OnDeserializationError, OnProcessingError, TaskId};
pub use topology::{StoreKind, Topology};
