//! The group coordinator (classic protocol): membership, rebalances and committed offsets.
//!
//! ```text
//!   Empty --join--> PreparingRebalance --all joined / deadline--> CompletingRebalance
//!     ^                  ^       |                                     | leader's SyncGroup
//!     |  last member     |       +-- members that did not rejoin --+   v
//!     +---- leaves ------+------------ join / leave / expiry ------- Stable
//! ```
//!
//! The broker does not assign partitions: it picks a protocol every member supports and hands
//! out the assignment the leader member computed. A JoinGroup or SyncGroup that must wait gets
//! a oneshot receiver; a 100 ms tick completes joins at their deadline and expires members
//! whose session lapsed. Committed offsets and each group's membership at its last stable
//! generation are records in `__consumer_offsets` (partition `hash(group) % 50`, like
//! Kafka), written through the normal log, replicated like any data, and reloaded from it by
//! the broker that becomes the partition's leader ([`record`] has the format).

mod offsets;
mod record;
mod state;

pub use offsets::{
    java_string_partition, offsets_partition, Committed, Loaded, PendingOffset, OFFSETS_PARTITIONS,
    OFFSETS_TOPIC,
};
pub use record::GroupRecord;
pub use state::{
    GroupCoordinator, GroupDescription, GroupWrite, JoinOutcome, JoinRequest, Reply, SyncOutcome,
    SyncReply,
};
