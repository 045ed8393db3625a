//! The consumer protocol's messages inside JoinGroup and SyncGroup: a member's
//! subscription (ConsumerProtocolSubscription v3: topics, owned partitions, generation) and
//! an assignment (ConsumerProtocolAssignment v1), each a big-endian i16 version followed by
//! the body; and the committed offsets of an OffsetFetch answer. Pure encoding, no I/O.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, OffsetFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tracing::warn;

use super::{ConsumerError, MemberSubscription, OffsetAndMetadata};
use crate::cluster::topic_name;
use crate::{partitions_by_topic, TopicPartition};

/// `message` at `version`, behind its version.
fn versioned(message: &impl Encodable, version: i16) -> Result<Bytes, ConsumerError> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message
        .encode(&mut buf, version)
        .map_err(|e| ConsumerError::Config(format!("cannot encode a group message: {e}")))?;
    Ok(buf.freeze())
}

/// The version and body of a versioned message; None for fewer than two bytes (an empty
/// message). Versions past the newest known are read as it (fields are only ever added).
fn unversioned<M: Decodable>(bytes: &Bytes, newest: i16) -> Option<Result<(i16, M), String>> {
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut body = bytes.slice(2..);
    Some(
        M::decode(&mut body, version.clamp(0, newest))
            .map(|m| (version, m))
            .map_err(|e| e.to_string()),
    )
}

/// This member's JoinGroup metadata.
pub(super) fn subscription(
    topics: &[String],
    owned: &[TopicPartition],
    generation: i32,
    user_data: Option<Bytes>,
) -> Result<Bytes, ConsumerError> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(
            partitions_by_topic(owned)
                .into_iter()
                .map(|(t, p)| {
                    OwnedPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(p)
                })
                .collect(),
        )
        .with_generation_id(generation)
        .with_user_data(user_data);
    versioned(&subscription, 3)
}

/// One member's assignment, as the leader hands it to SyncGroup.
pub(super) fn assignment(
    tps: &[TopicPartition],
    user_data: Option<Bytes>,
) -> Result<Bytes, ConsumerError> {
    let assignment = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            partitions_by_topic(tps)
                .into_iter()
                .map(|(t, p)| {
                    AssignedPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(p)
                })
                .collect(),
        )
        .with_user_data(user_data);
    versioned(&assignment, 1)
}

/// A member's subscription from its JoinGroup metadata; undecodable metadata subscribes to
/// nothing (that member gets no partitions rather than breaking the group).
pub(super) fn decode_subscription(
    member_id: &str,
    instance_id: Option<String>,
    metadata: &Bytes,
) -> MemberSubscription {
    let mut m = MemberSubscription {
        member_id: member_id.to_string(),
        group_instance_id: instance_id,
        topics: Vec::new(),
        owned: Vec::new(),
        generation: -1,
        user_data: None,
    };
    match unversioned::<ConsumerProtocolSubscription>(metadata, 3) {
        None => {}
        Some(Err(e)) => warn!(member = member_id, error = %e, "undecodable subscription"),
        Some(Ok((version, s))) => {
            m.topics = s.topics.iter().map(|t| t.to_string()).collect();
            m.owned = s
                .owned_partitions
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| TopicPartition::new(tp.topic.as_str(), *p))
                })
                .collect();
            if version >= 2 {
                m.generation = s.generation_id;
            }
            m.user_data = s.user_data.clone();
        }
    }
    m
}

/// The partitions of a consumer-protocol assignment (any version); empty bytes are an empty
/// assignment.
pub(crate) fn decode_assignment(bytes: &Bytes) -> Result<BTreeSet<TopicPartition>, ConsumerError> {
    decode_assignment_with_data(bytes).map(|(tps, _)| tps)
}

/// The partitions and the assignor's user data of an assignment.
pub(crate) fn decode_assignment_with_data(
    bytes: &Bytes,
) -> Result<(BTreeSet<TopicPartition>, Option<Bytes>), ConsumerError> {
    match unversioned::<ConsumerProtocolAssignment>(bytes, 3) {
        None => Ok((BTreeSet::new(), None)),
        Some(Err(e)) => Err(ConsumerError::Decode(format!("assignment: {e}"))),
        Some(Ok((_, a))) => Ok((
            a.assigned_partitions
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| TopicPartition::new(tp.topic.as_str(), *p))
                })
                .collect(),
            a.user_data.clone(),
        )),
    }
}

/// The committed offsets in an OffsetFetch answer (single-group form): partitions with an
/// offset, without an error.
pub(crate) fn committed_offsets(
    r: &OffsetFetchResponse,
) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                .map(move |p| {
                    (
                        TopicPartition::new(t.name.as_str(), p.partition_index),
                        OffsetAndMetadata {
                            offset: p.committed_offset,
                            metadata: p.metadata.as_ref().map(|m| m.to_string()),
                        },
                    )
                })
        })
        .collect()
}
