//! Key encoding: big-endian fixed-width integers, so byte order is numeric order.

use crate::TopicPartition;

pub(crate) const PARTITION_PREFIX_LEN: usize = 20;
pub(crate) const KEY_LEN: usize = 28;

pub(crate) fn partition_prefix(tp: TopicPartition) -> [u8; PARTITION_PREFIX_LEN] {
    let mut key = [0u8; PARTITION_PREFIX_LEN];
    key[..16].copy_from_slice(tp.topic_id.as_bytes());
    key[16..20].copy_from_slice(&tp.partition.to_be_bytes());
    key
}

/// `topic_id | partition | value` where `value` is an offset (never negative) or a
/// sign-flipped timestamp, so that negative timestamps sort before positive ones.
pub(crate) fn key(tp: TopicPartition, value: u64) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    key[..PARTITION_PREFIX_LEN].copy_from_slice(&partition_prefix(tp));
    key[PARTITION_PREFIX_LEN..].copy_from_slice(&value.to_be_bytes());
    key
}

pub(crate) fn offset_key(tp: TopicPartition, offset: i64) -> [u8; KEY_LEN] {
    key(tp, offset.max(0) as u64)
}

pub(crate) fn timestamp_key(tp: TopicPartition, timestamp: i64) -> [u8; KEY_LEN] {
    key(tp, flip(timestamp))
}

pub(crate) fn flip(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

pub(crate) fn unflip(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

pub(crate) fn decode_partition(prefix: &[u8]) -> Option<TopicPartition> {
    if prefix.len() < PARTITION_PREFIX_LEN {
        return None;
    }
    let topic_id = uuid::Uuid::from_slice(&prefix[..16]).ok()?;
    let mut p = [0u8; 4];
    p.copy_from_slice(&prefix[16..20]);
    Some(TopicPartition::new(topic_id, u32::from_be_bytes(p)))
}

pub(crate) fn decode_suffix(key: &[u8]) -> Option<u64> {
    if key.len() != KEY_LEN {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[PARTITION_PREFIX_LEN..]);
    Some(u64::from_be_bytes(b))
}

/// Reads `lastOffsetDelta` from a v2 record batch header (bytes 23..27).
pub(crate) fn last_offset_delta(batch: &[u8]) -> Option<i64> {
    let b = batch.get(23..27)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64)
}

/// Reads `maxTimestamp` from a v2 record batch header (bytes 35..43).
pub(crate) fn max_timestamp(batch: &[u8]) -> Option<i64> {
    let b: [u8; 8] = batch.get(35..43)?.try_into().ok()?;
    Some(i64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_numerically_including_negative() {
        let tp = TopicPartition::new(uuid::Uuid::nil(), 0);
        let mut ts = [-5i64, i64::MIN, 0, 7, -1, i64::MAX, 1_700_000_000_000];
        let mut keys: Vec<_> = ts.iter().map(|t| timestamp_key(tp, *t)).collect();
        keys.sort();
        ts.sort();
        let back: Vec<i64> = keys
            .iter()
            .map(|k| unflip(decode_suffix(k).unwrap_or_default()))
            .collect();
        assert_eq!(back, ts);
    }

    #[test]
    fn partitions_sort_by_topic_then_partition() {
        let t = uuid::Uuid::from_u128(1);
        assert!(key(TopicPartition::new(t, 1), u64::MAX) < key(TopicPartition::new(t, 2), 0));
        assert_eq!(
            decode_partition(&partition_prefix(TopicPartition::new(t, 9))),
            Some(TopicPartition::new(t, 9))
        );
    }
}
