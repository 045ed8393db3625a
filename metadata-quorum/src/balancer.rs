//! Continuous replica balancing (opt-in, `--auto-replica-balance-enable` on strom-quorum):
//! when the live brokers hold very different numbers of replicas, typically because a
//! broker was just added, the active controller moves some through KIP-455 reassignments,
//! the same safe path `strom partitions reassign` takes: the new replicas catch up as
//! followers and the switch happens once they are in sync.
//!
//! One round at a time: nothing is planned while any reassignment runs. A round moves at
//! most `max_moves` replicas, each time one from the broker holding the most to the broker
//! holding the fewest:
//! - the replica keeps its place in the list, so a moved preferred leader is still first;
//! - the receiving broker must not already host the partition, and must be in the leaving
//!   replica's rack or in a rack the partition does not use, so racks stay spread.
//!
//! It stops when the counts differ by at most one.

use std::collections::{BTreeMap, BTreeSet};

use crate::controller::Reassignment;
use crate::MetadataImage;

/// Up to `max_moves` reassignments that even out the live brokers' replica counts, or none
/// while a reassignment is in progress or the counts are even.
pub fn replica_moves(image: &MetadataImage, max_moves: usize) -> Vec<Reassignment> {
    if image
        .topics()
        .any(|t| t.partitions.iter().any(|p| p.reassigning()))
    {
        return vec![];
    }
    let live: BTreeMap<i32, Option<String>> = image
        .live_brokers()
        .map(|b| (b.broker_id, b.rack.clone()))
        .collect();
    if live.len() < 2 {
        return vec![];
    }
    let mut load: BTreeMap<i32, usize> = live.keys().map(|&b| (b, 0)).collect();
    for t in image.topics() {
        for p in &t.partitions {
            for r in &p.replicas {
                if let Some(n) = load.get_mut(r) {
                    *n += 1;
                }
            }
        }
    }
    let mut moves: Vec<Reassignment> = Vec::new();
    let mut moved: BTreeSet<(String, u32)> = BTreeSet::new();
    let rack = |b: &i32| live.get(b).and_then(|r| r.as_deref());
    // Racks count only when every live broker has one (with some unracked, as in Kafka's
    // placement, they are ignored rather than piling replicas on the racked brokers).
    let racked = live.values().all(Option::is_some);
    while moves.len() < max_moves {
        // Pairs (fuller, emptier) by how far apart they are, widest first; a pair with no
        // allowed move (racks) gives way to the next rather than ending the round.
        let mut pairs: Vec<(i32, i32, usize)> = load
            .iter()
            .flat_map(|(&hi, &hi_n)| {
                load.iter()
                    .filter(move |(_, &lo_n)| hi_n > lo_n + 1)
                    .map(move |(&lo, &lo_n)| (hi, lo, hi_n - lo_n))
            })
            .collect();
        pairs.sort_by_key(|&(hi, lo, gap)| (std::cmp::Reverse(gap), std::cmp::Reverse(hi), lo));
        let found = pairs.iter().find_map(|&(hi, lo, _)| {
            image.topics().find_map(|t| {
                t.partitions.iter().find_map(|p| {
                    let key = (t.name.clone(), p.partition);
                    let slot = p.replicas.iter().position(|&r| r == hi)?;
                    if p.replicas.contains(&lo) || moved.contains(&key) {
                        return None;
                    }
                    if racked && rack(&lo) != rack(&hi) {
                        let others: Vec<Option<&str>> =
                            p.replicas.iter().filter(|&&r| r != hi).map(rack).collect();
                        if others.contains(&rack(&lo)) {
                            return None;
                        }
                    }
                    let mut target = p.replicas.clone();
                    target[slot] = lo;
                    Some((hi, lo, key, target))
                })
            })
        });
        let Some((hi, lo, key, target)) = found else {
            break;
        };
        moved.insert(key.clone());
        moves.push((key, Some(target)));
        if let Some(n) = load.get_mut(&hi) {
            *n -= 1;
        }
        if let Some(n) = load.get_mut(&lo) {
            *n += 1;
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{alter_partition_reassignments, complete_reassignments};
    use crate::{MetadataRecord, PartitionRecord};
    use uuid::Uuid;

    fn image(brokers: &[(i32, &str)], partitions: &[&[i32]]) -> MetadataImage {
        let mut records: Vec<MetadataRecord> = brokers
            .iter()
            .map(|&(b, rack)| MetadataRecord::RegisterBroker {
                broker_id: b,
                incarnation: Uuid::nil(),
                endpoints: vec![],
                rack: (!rack.is_empty()).then(|| rack.to_string()),
            })
            .collect();
        records.push(MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(1),
            partitions: partitions
                .iter()
                .map(|r| PartitionRecord {
                    replicas: r.to_vec(),
                    isr: r.to_vec(),
                    leader: r[0],
                    leader_epoch: 0,
                    partition_epoch: 0,
                })
                .collect(),
            configs: Default::default(),
        });
        MetadataImage::default().replay(&records).expect("replay")
    }

    /// Every joining replica catches up (its leader adds it to the ISR), then the moves
    /// complete.
    fn finish(img: MetadataImage) -> MetadataImage {
        let caught_up: Vec<MetadataRecord> = img
            .topics()
            .flat_map(|t| {
                t.partitions.iter().filter(|p| p.reassigning()).map(|p| {
                    MetadataRecord::PartitionChange {
                        topic_id: t.topic_id,
                        partition: p.partition,
                        leader: p.leader,
                        isr: p.replicas.clone(),
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch + 1,
                    }
                })
            })
            .collect();
        let img = img.replay(&caught_up).expect("replay");
        let done = complete_reassignments(&img);
        assert!(!done.is_empty());
        img.replay(&done).expect("replay")
    }

    fn counts(image: &MetadataImage) -> BTreeMap<i32, usize> {
        let mut c: BTreeMap<i32, usize> = image.brokers.keys().map(|&b| (b, 0)).collect();
        for t in image.topics() {
            for p in &t.partitions {
                for r in &p.replicas {
                    *c.entry(*r).or_default() += 1;
                }
            }
        }
        c
    }

    #[test]
    fn a_new_broker_gets_its_share_in_rounds() {
        // Twelve RF-2 partitions on 1-3 (eight replicas each); broker 4 joins empty.
        let parts: Vec<Vec<i32>> = (0..12).map(|p| vec![p % 3 + 1, (p + 1) % 3 + 1]).collect();
        let refs: Vec<&[i32]> = parts.iter().map(Vec::as_slice).collect();
        let mut img = image(&[(1, ""), (2, ""), (3, ""), (4, "")], &refs);
        let mut rounds = 0;
        loop {
            let moves = replica_moves(&img, 4);
            if moves.is_empty() {
                break;
            }
            rounds += 1;
            assert!(moves.len() <= 4);
            for (_, target) in &moves {
                let t = target.as_ref().expect("a target");
                assert_eq!(t.len(), 2);
                assert_ne!(t[0], t[1]);
            }
            let started = alter_partition_reassignments(&img, &moves);
            img = img.replay(&started.records).expect("replay");
            // Nothing more while those run.
            assert!(replica_moves(&img, 4).is_empty());
            img = finish(img);
        }
        assert_eq!(
            counts(&img),
            BTreeMap::from([(1, 6), (2, 6), (3, 6), (4, 6)])
        );
        assert_eq!(rounds, 2, "six moves, four per round");
    }

    #[test]
    fn a_pair_with_no_allowed_move_does_not_stop_the_round() {
        // 1 (rack a) is in every partition and fullest, but each partition already has a
        // rack-b replica, so 1 cannot give to 4 (rack b); 2 and 3 (rack b) can.
        let mut img = image(
            &[(1, "a"), (2, "b"), (3, "b"), (4, "b")],
            &[&[1, 2], &[1, 3], &[1, 2], &[1, 3], &[1, 2], &[1, 3]],
        );
        let moves = replica_moves(&img, 10);
        assert!(!moves.is_empty());
        for (_, t) in &moves {
            let t = t.as_ref().expect("target");
            assert!(t.contains(&1) && t.contains(&4), "{t:?}");
        }
        img = finish(
            img.replay(&alter_partition_reassignments(&img, &moves).records)
                .expect("replay"),
        );
        let c = counts(&img);
        assert_eq!((c[&2], c[&3], c[&4]), (2, 2, 2), "{c:?}");
    }

    #[test]
    fn racks_stay_spread_and_even_counts_stay_put() {
        // 1,2 in rack a; 3 in b; 4 (b) is new. Partitions span both racks.
        let mut img = image(
            &[(1, "a"), (2, "a"), (3, "b"), (4, "b")],
            &[&[1, 3], &[2, 3], &[1, 3], &[2, 3]],
        );
        let moves = replica_moves(&img, 10);
        // Broker 3 (b) gives two to 4 (b); rack a is already even.
        assert_eq!(moves.len(), 2, "{moves:?}");
        for (_, t) in &moves {
            let t = t.as_ref().expect("target");
            assert!(t.contains(&4) && !t.contains(&3), "{t:?}");
        }
        let started = alter_partition_reassignments(&img, &moves);
        img = finish(img.replay(&started.records).expect("replay"));
        assert!(replica_moves(&img, 10).is_empty());
    }
}
