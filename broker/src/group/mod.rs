//! The group coordinator: membership, rebalances and committed offsets; the classic
//! protocol here and in [`state`], the consumer protocol (KIP-848) in [`consumer`].
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

pub mod consumer;
mod offsets;
mod record;
mod state;

pub use consumer::{
    ConsumerGroupConfig, ConsumerGroupView, Heartbeat, HeartbeatOutcome, MigrationPolicy,
    TopicSource,
};
pub use offsets::{
    java_string_partition, offsets_partition, Committed, Loaded, PendingOffset, OFFSETS_PARTITIONS,
    OFFSETS_TOPIC, SHARE_STATE_SUFFIX,
};
pub use record::GroupRecord;
pub use state::{
    ConsumerGroupWrite, GroupCoordinator, GroupDescription, GroupWrite, JoinOutcome, JoinRequest,
    Reply, SyncOutcome, SyncReply, TickWrites,
};

/// Group configs (Kafka's GROUP config resource: `consumer.session.timeout.ms`,
/// `share.record.lock.duration.ms`, ...) as the latest metadata image holds them. Without
/// an image (unit tests) no group has any.
#[derive(Clone, Default)]
pub struct GroupConfigs(
    Option<tokio::sync::watch::Receiver<std::sync::Arc<metadata_quorum::MetadataImage>>>,
);

impl GroupConfigs {
    pub fn new(
        images: tokio::sync::watch::Receiver<std::sync::Arc<metadata_quorum::MetadataImage>>,
    ) -> Self {
        Self(Some(images))
    }

    /// The configs set on `group`, read from the image once (most groups have none).
    pub fn of(&self, group: &str) -> GroupConfigsOf {
        GroupConfigsOf(
            self.0
                .as_ref()
                .and_then(|images| images.borrow().group_configs.get(group).cloned()),
        )
    }
}

/// One group's configs, as [`GroupConfigs::of`] read them.
pub struct GroupConfigsOf(Option<std::collections::BTreeMap<String, String>>);

impl GroupConfigsOf {
    /// The config `key`, parsed (the controller validated it).
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.0.as_ref()?.get(key)?.trim().parse().ok()
    }

    /// A milliseconds config.
    pub fn ms(&self, key: &str) -> Option<std::time::Duration> {
        self.get::<u64>(key).map(std::time::Duration::from_millis)
    }
}

/// A consumer-protocol payload of a classic member (its subscription or its assignment): a
/// big-endian version, then the body at that version (versions above 3 read as 3). None if
/// the bytes are not one.
fn consumer_protocol<T: kafka_protocol::protocol::Decodable>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    T::decode(&mut bytes::Bytes::copy_from_slice(&bytes[2..]), version).ok()
}

/// A classic consumer's subscription, from its JoinGroup metadata.
pub(crate) fn consumer_subscription(
    bytes: &[u8],
) -> Option<kafka_protocol::messages::ConsumerProtocolSubscription> {
    consumer_protocol(bytes)
}

/// A classic consumer's assignment, from its SyncGroup answer.
pub(crate) fn consumer_assignment(
    bytes: &[u8],
) -> Option<kafka_protocol::messages::ConsumerProtocolAssignment> {
    consumer_protocol(bytes)
}
