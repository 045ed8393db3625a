//! # strom-storage: where partition logs live
//!
//! A partition log is a sequence of Kafka v2 record batches, each stored verbatim under its
//! base offset. This crate defines the storage contract ([`LogStore`]) that the broker's log
//! layer programs against, with no RocksDB type in it, and two engines that honour it:
//!
//! ```text
//!              broker::log (offsets, validation, waiting readers)
//!                          |  LogStore (this crate, engine-free)
//!            +-------------+--------------+
//!            |                            |
//!     RocksLogStore                 MemoryLogStore
//!  (column families log,        (BTreeMaps behind a lock,
//!   timeindex, state)             for unit tests)
//! ```
//!
//! Both engines run the same [`conformance`] suite, so the broker can trust either one.
//!
//! Layout (the RocksDB engine; the in-memory one mirrors it):
//! - `log`: `topic_id(16) | partition(u32 BE) | base_offset(u64 BE)` -> the record batch bytes.
//! - `timeindex`: `topic_id | partition | max_timestamp(sign-flipped u64 BE)` -> base offset,
//!   one entry per batch that raised the partition's maximum timestamp, so the first entry at
//!   or after a timestamp names the first batch that can hold a record that new.
//! - `state`: `topic_id | partition` -> [`PartitionState`], written in the same atomic write
//!   as the batches it describes.
//! - `producers`, `epochs`: idempotent producer state and the leader epoch cache, likewise.
//! - `txnindex`: `topic_id | partition | abort marker offset(u64 BE)` -> producer id and first
//!   offset of an aborted transaction ([`AbortedTxn`]), written with the marker; keyed by the
//!   marker so retention and truncation drop entries with the same range deletes as batches.

mod api;
pub mod conformance;
mod keys;
mod memory;
mod rocks;
mod writer;

pub use api::{
    AbortedTxn, BatchInfo, EpochEntry, LogStore, PartitionState, StorageError, StoredBatch,
    TimeIndexEntry, TopicPartition, WriteBatch,
};
pub use memory::MemoryLogStore;
pub use rocks::{RocksLogStore, RocksOptions};
