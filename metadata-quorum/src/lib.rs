//! # metadata-quorum: cluster metadata as a Raft-replicated log of records
//!
//! Every change to cluster state (a broker registering, a topic created, a partition's leader
//! moving) is one [`MetadataRecord`], decided by the active controller (the Raft leader) with
//! the pure functions in [`controller`], committed through openraft, and replayed in order into
//! an immutable [`MetadataImage`] on every controller and every broker.
//!
//! ```text
//!  broker --ControllerRequest (HTTP, bincode)--> any controller --forward--> active controller
//!                                                                               |
//!                                        controller::* (image + request -> records + response)
//!                                                                               |
//!                                                  openraft: replicate, commit, apply
//!                                                                               v
//!  broker <--records after offset N (long-poll)-- state machine: records -> MetadataImage
//! ```
//!
//! - [`quorum::QuorumNode`]: one controller (openraft node, RocksDB log, snapshots, HTTP).
//! - [`quorum::client::RemoteController`]: what a broker uses to register, heartbeat, follow
//!   the metadata log and forward admin requests.

pub mod acl;
pub mod balancer;
pub mod configs;
pub mod controller;
mod error;
pub mod features;
pub mod identity;
mod image;
pub mod quorum;
pub mod quota;
mod records;

pub use error::MetadataError;
pub use image::{BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use records::{Endpoint, LoggedRecord, MetadataRecord, PartitionRecord};
