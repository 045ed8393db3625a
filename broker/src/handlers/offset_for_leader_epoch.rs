//! OffsetForLeaderEpoch (2-4, KIP-101/279): where the leader's log ends a given leader epoch.
//! Followers of a new leader ask it before fetching, and truncate what diverged; clients ask
//! it after a leader change to detect a truncated log.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::leader_log;
use crate::Broker;

pub fn handle(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let image = broker.image();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = image.topic(t.topic.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let log = match leader_log(broker, &image, topic, p.partition) {
                        Ok(log) => log,
                        Err(e) => return base.with_error_code(e.code()),
                    };
                    if let Err(e) = log.check_leader_epoch(p.current_leader_epoch) {
                        return base.with_error_code(e.code());
                    }
                    let (epoch, end) = log.end_offset_for_epoch(p.leader_epoch);
                    base.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
