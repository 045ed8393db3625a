//! Replication throttles (KIP-73): while a reassignment copies a partition to a new replica,
//! its catch-up can be held to a byte rate so it does not starve producers and consumers.
//!
//! Which replicas are throttled is a topic config, `leader.replication.throttled.replicas`
//! and `follower.replication.throttled.replicas` (`*`, or `partition:broker,...`); the rates
//! are dynamic broker configs, `leader.replication.throttled.rate` and
//! `follower.replication.throttled.rate` (per broker, or the cluster-wide default), all in
//! the metadata image. As in Kafka, only replicas outside the ISR are throttled (a member of
//! the ISR is never slowed down, or acks=all would be), and:
//! - the leader leaves a throttled partition out of a follower's fetch answer while its
//!   leader-side rate is spent, and counts what it sends for throttled partitions;
//! - a follower leaves its throttled partitions out of its fetch requests while its
//!   follower-side rate is spent, and counts what it receives for them.
//!
//! The rate is a token bucket holding one second's worth, so a long catch-up runs at the
//! rate after at most one second's burst.

use metadata_quorum::configs;
use metadata_quorum::MetadataImage;
use parking_lot::Mutex;

use crate::quota::{QuotaWindow, TokenBucket};

/// One side's throttle on this broker (leader or follower).
#[derive(Debug, Default)]
pub struct ReplicationThrottle {
    bucket: Mutex<TokenBucket>,
}

/// One second's worth of credit at most.
const WINDOW: QuotaWindow = QuotaWindow {
    samples: 1,
    sample_ms: 1000,
};

impl ReplicationThrottle {
    /// Whether the rate `limit` (bytes/s) is spent as of `now_ms`.
    pub fn exceeded(&self, limit: u64, now_ms: u64) -> bool {
        self.bucket.lock().record(WINDOW, limit as f64, 0.0, now_ms) > 0
    }

    /// Counts `bytes` sent or received for throttled replicas.
    pub fn record(&self, limit: u64, bytes: usize, now_ms: u64) {
        self.bucket
            .lock()
            .record(WINDOW, limit as f64, bytes as f64, now_ms);
    }
}

/// Which side of replication a throttle applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Leader,
    Follower,
}

impl Side {
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Side::Leader => (
                configs::LEADER_THROTTLED_RATE,
                configs::LEADER_THROTTLED_REPLICAS,
            ),
            Side::Follower => (
                configs::FOLLOWER_THROTTLED_RATE,
                configs::FOLLOWER_THROTTLED_REPLICAS,
            ),
        }
    }
}

/// The rate `broker` holds `side` to, if one is set (the default, Long.MAX, means none).
pub fn rate(image: &MetadataImage, broker: i32, side: Side) -> Option<u64> {
    let (rate_key, _) = side.keys();
    image
        .broker_config(broker, rate_key)?
        .parse::<u64>()
        .ok()
        .filter(|&r| r < i64::MAX as u64)
}

/// Whether replication of `topic`'s `partition` between `broker` (on `side`) and
/// `replica` (the follower) is throttled: the topic lists it, and the follower is outside
/// the ISR.
pub fn throttled(
    image: &MetadataImage,
    topic: &str,
    partition: u32,
    broker: i32,
    follower: i32,
    side: Side,
) -> bool {
    let (_, list_key) = side.keys();
    let Some(t) = image.topic(topic) else {
        return false;
    };
    let Some(list) = t.configs.get(list_key) else {
        return false;
    };
    let in_isr = t
        .partitions
        .get(partition as usize)
        .is_some_and(|p| p.isr.contains(&follower));
    !in_isr && configs::throttled(list, partition, broker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metadata_quorum::controller::{alter_broker_configs, alter_topic_configs, ConfigOp};
    use metadata_quorum::{MetadataRecord, PartitionRecord};
    use uuid::Uuid;

    #[test]
    fn only_listed_replicas_outside_the_isr_are_throttled_at_the_set_rate() {
        let mut records = vec![MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(1),
            partitions: vec![PartitionRecord {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            }],
            configs: Default::default(),
        }];
        records.extend((1..=3).map(|b| MetadataRecord::RegisterBroker {
            broker_id: b,
            incarnation: Uuid::nil(),
            endpoints: vec![],
            rack: None,
        }));
        let image = MetadataImage::default().replay(&records).expect("replay");
        assert!(
            !throttled(&image, "t", 0, 1, 3, Side::Leader),
            "nothing listed"
        );
        assert_eq!(rate(&image, 1, Side::Leader), None);

        let set = |k: &str, v: &str| ConfigOp::Set {
            key: k.into(),
            value: v.into(),
        };
        let topic = alter_topic_configs(
            &image,
            "t",
            &[
                set(configs::LEADER_THROTTLED_REPLICAS, "0:1,0:2"),
                set(configs::FOLLOWER_THROTTLED_REPLICAS, "0:3"),
            ],
            false,
        );
        let image = image.replay(&topic.records).expect("replay");
        let rates = alter_broker_configs(
            &image,
            None,
            &[set(configs::LEADER_THROTTLED_RATE, "1000000")],
            false,
        );
        let image = image.replay(&rates.records).expect("replay");
        assert_eq!(rate(&image, 1, Side::Leader), Some(1_000_000));
        assert_eq!(rate(&image, 3, Side::Follower), None);
        // Leader 1 serving 3 (outside the ISR): throttled; serving 2 (in the ISR): not.
        assert!(throttled(&image, "t", 0, 1, 3, Side::Leader));
        assert!(!throttled(&image, "t", 0, 1, 2, Side::Leader));
        // Follower 3 fetching its own replica: throttled; broker 2 is not listed.
        assert!(throttled(&image, "t", 0, 3, 3, Side::Follower));
        assert!(!throttled(&image, "t", 0, 2, 2, Side::Follower));
    }

    #[test]
    fn the_bucket_holds_a_second_of_credit() {
        let t = ReplicationThrottle::default();
        assert!(!t.exceeded(1000, 0));
        t.record(1000, 1500, 0);
        assert!(t.exceeded(1000, 0));
        assert!(t.exceeded(1000, 400));
        assert!(!t.exceeded(1000, 600));
    }
}
