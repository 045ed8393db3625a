//! # metadata-quorum: cluster metadata as a log of records
//!
//! Every change to cluster state (a broker registering, a topic created, a partition's leader
//! moving) is one [`MetadataRecord`] appended to the metadata log and replayed, in order, into
//! an immutable [`MetadataImage`]. Brokers never mutate metadata: they read images.
//!
//! ```text
//!  request --> controller::*  (pure: image + request -> records + response)
//!                   |
//!                   v records
//!             MetadataLog (append, durable) --> replay into MetadataImage --> watch channel
//!                                                                            (brokers, HTTP)
//! ```
//!
//! In this stage the log is local ([`LocalController`], one node, RocksDB); the controller
//! logic and the records are exactly what the Raft quorum replicates later.

pub mod controller;
mod error;
mod image;
mod local;
mod log;
mod records;

pub use error::MetadataError;
pub use image::{BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use local::LocalController;
pub use log::{LoggedRecord, MetadataLog};
pub use records::{Endpoint, MetadataRecord, PartitionRecord};
