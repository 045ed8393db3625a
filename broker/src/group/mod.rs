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
//! whose session lapsed. Committed offsets are records in `__consumer_offsets` (partition
//! `hash(group) % 50`, like Kafka), written through the normal log and reloaded from it.

mod offsets;
mod state;

pub use offsets::{offsets_partition, Committed, Loaded, OFFSETS_PARTITIONS, OFFSETS_TOPIC};
pub use state::{GroupCoordinator, GroupDescription, JoinOutcome, JoinRequest, Reply, SyncOutcome};
