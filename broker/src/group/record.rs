//! What `__consumer_offsets` holds about a group besides its offsets: its membership at the
//! last stable generation (Kafka's GroupMetadataValue), so a broker that becomes the group's
//! coordinator picks the group up where the old one left it, and members carry on with
//! their generation instead of rebalancing.
//!
//! Written when a generation's assignment is complete (before any member gets it, and
//! replicated to the ISR like an acks=all produce), when the group becomes empty, and when a
//! static member takes its place back; a tombstone when the group is deleted. Keys are
//! `0xFF` then the bincode group id: an offset commit's key (bincode `(group, topic,
//! partition)`) starts with a varint length, and bincode varints never begin with 0xFF.

use serde::{Deserialize, Serialize};

/// The first byte of a group metadata key.
pub const GROUP_KEY_TAG: u8 = 0xFF;
/// The first byte of a consumer-protocol (KIP-848) group's record key: its own key, so a
/// group id that changes type never has one value read as the other.
pub const CONSUMER_KEY_TAG: u8 = 0xFE;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub protocol_type: Option<String>,
    pub generation: i32,
    /// The chosen assignor; None for an empty group.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the longest-standing member first.
    pub members: Vec<MemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// The member's subscription for the chosen protocol.
    pub subscription: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// The key of `group`'s metadata record.
pub fn group_key(group: &str) -> Vec<u8> {
    let mut key = vec![GROUP_KEY_TAG];
    key.extend(
        bincode::serde::encode_to_vec(group, bincode::config::standard()).unwrap_or_default(),
    );
    key
}

/// The key of consumer-protocol group `group`'s record.
pub fn consumer_group_key(group: &str) -> Vec<u8> {
    let mut key = group_key(group);
    key[0] = CONSUMER_KEY_TAG;
    key
}

/// The group a consumer-protocol group's key names, if `key` is one.
pub fn parse_consumer_group_key(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(&[CONSUMER_KEY_TAG])?;
    bincode::serde::decode_from_slice::<String, _>(rest, bincode::config::standard())
        .ok()
        .map(|(g, _)| g)
}

pub fn encode_consumer(record: &super::consumer::ConsumerGroupRecord) -> Vec<u8> {
    bincode::serde::encode_to_vec(record, bincode::config::standard()).unwrap_or_default()
}

pub fn decode_consumer(value: &[u8]) -> Option<super::consumer::ConsumerGroupRecord> {
    bincode::serde::decode_from_slice(value, bincode::config::standard())
        .ok()
        .map(|(r, _)| r)
}

/// The group a metadata key names, if `key` is one.
pub fn parse_group_key(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(&[GROUP_KEY_TAG])?;
    bincode::serde::decode_from_slice::<String, _>(rest, bincode::config::standard())
        .ok()
        .map(|(g, _)| g)
}

pub fn encode(record: &GroupRecord) -> Vec<u8> {
    bincode::serde::encode_to_vec(record, bincode::config::standard()).unwrap_or_default()
}

pub fn decode(value: &[u8]) -> Option<GroupRecord> {
    bincode::serde::decode_from_slice(value, bincode::config::standard())
        .ok()
        .map(|(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_never_look_like_offset_keys() {
        let key = group_key("g");
        assert_eq!(parse_group_key(&key).as_deref(), Some("g"));
        // An offset key for the same group starts with the group's length.
        let offset_key = bincode::serde::encode_to_vec(
            ("g".to_string(), "t".to_string(), 0i32),
            bincode::config::standard(),
        )
        .expect("encode");
        assert_ne!(offset_key[0], GROUP_KEY_TAG);
        assert_eq!(parse_group_key(&offset_key), None);
        // A long group id still starts with its varint length, never 0xFF.
        let long = bincode::serde::encode_to_vec("x".repeat(70_000), bincode::config::standard())
            .expect("encode");
        assert_ne!(long[0], GROUP_KEY_TAG);
        assert_ne!(long[0], CONSUMER_KEY_TAG);
        // The two kinds of group record never read as each other.
        let consumer = consumer_group_key("g");
        assert_eq!(parse_consumer_group_key(&consumer).as_deref(), Some("g"));
        assert_eq!(parse_group_key(&consumer), None);
        assert_eq!(parse_consumer_group_key(&key), None);
        assert_eq!(parse_consumer_group_key(&offset_key), None);
    }

    #[test]
    fn records_round_trip() {
        let r = GroupRecord {
            protocol_type: Some("consumer".into()),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            members: vec![MemberRecord {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 300_000,
                subscription: vec![0, 1, 2],
                assignment: vec![3, 4],
            }],
        };
        assert_eq!(decode(&encode(&r)), Some(r));
        assert_eq!(decode(&[0xde, 0xad]), None);
    }
}
