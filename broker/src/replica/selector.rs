//! Fetch from the closest replica (KIP-392): which replica a consumer that names its rack
//! (`client.rack`, Fetch v11+) should read from, as pure logic. The leader answers such a
//! fetch with `preferred_read_replica` instead of records; the consumer then fetches from
//! that follower, which serves up to the high watermark it has learnt from the leader (so a
//! consumer never sees an uncommitted record, only, at worst, committed ones a moment later).
//!
//! Kafka's `RackAwareReplicaSelector`: the leader when it is in the consumer's rack;
//! otherwise the in-sync follower in that rack whose log reaches furthest (and at least to
//! the fetch offset); otherwise the leader.

use crate::config::ReplicaSelector;

/// An in-sync follower as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadCandidate {
    pub broker_id: i32,
    pub rack: Option<String>,
    /// As of its last fetch.
    pub log_end_offset: i64,
}

/// The follower a consumer in `client_rack` fetching from `fetch_offset` should read from;
/// None means the leader (no redirect).
pub fn preferred_read_replica(
    selector: ReplicaSelector,
    client_rack: &str,
    leader_rack: Option<&str>,
    fetch_offset: i64,
    followers: &[ReadCandidate],
) -> Option<i32> {
    if selector != ReplicaSelector::RackAware || client_rack.is_empty() {
        return None;
    }
    if leader_rack == Some(client_rack) {
        return None;
    }
    followers
        .iter()
        .filter(|f| f.rack.as_deref() == Some(client_rack) && f.log_end_offset >= fetch_offset)
        // Furthest log end first; the lowest id among equals, so the choice is stable.
        .max_by_key(|f| (f.log_end_offset, std::cmp::Reverse(f.broker_id)))
        .map(|f| f.broker_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(broker_id: i32, rack: &str, log_end_offset: i64) -> ReadCandidate {
        ReadCandidate {
            broker_id,
            rack: Some(rack.to_string()),
            log_end_offset,
        }
    }

    #[test]
    fn picks_the_most_caught_up_in_sync_follower_in_the_consumers_rack() {
        let followers = [
            f(2, "b", 90),
            f(3, "c", 100),
            f(4, "c", 120),
            f(5, "c", 120),
        ];
        let pick = |rack, offset| {
            preferred_read_replica(
                ReplicaSelector::RackAware,
                rack,
                Some("a"),
                offset,
                &followers,
            )
        };
        assert_eq!(pick("c", 50), Some(4));
        assert_eq!(pick("b", 90), Some(2));
        // A follower behind the fetch offset cannot serve it.
        assert_eq!(pick("b", 91), None);
        // No replica in the rack, or the leader is there: the leader.
        assert_eq!(pick("d", 0), None);
        assert_eq!(pick("a", 0), None);
        assert_eq!(pick("", 0), None);
    }

    #[test]
    fn the_leader_selector_never_redirects() {
        let followers = [f(2, "b", 100)];
        assert_eq!(
            preferred_read_replica(ReplicaSelector::Leader, "b", Some("a"), 0, &followers),
            None
        );
    }
}
