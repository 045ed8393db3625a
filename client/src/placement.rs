//! Rack-aware replica placement, shared by the controller (new topics and partitions) and
//! `strom partitions reassign --generate` (a proposed plan).
//!
//! The brokers are put in rack-alternating order (the first broker of each rack, then the
//! second of each, ...: Kafka's `AdminUtils` order). Partition `p`'s first replica, its
//! preferred leader, is the `start + p`-th broker of that order, so leaders spread evenly;
//! each further replica is the next broker in the order on a rack the partition does not
//! use yet, and once every rack is used, the next broker not chosen yet. With no racks (or
//! one) this is plain round-robin; with `rf` no larger than the number of racks, no two
//! replicas of a partition share a rack. Racks count only when every broker has one: a
//! cluster being given racks one broker at a time places round-robin until it is done.

use std::collections::BTreeMap;

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedBroker {
    pub id: i32,
    pub rack: Option<String>,
}

/// `brokers` in rack-alternating order: by rack name, the lowest id of each rack first.
/// Racks count only when every broker has one; with some unracked they are ignored (Kafka
/// refuses to place then; counting "no rack" as a rack would pile replicas on the few
/// racked brokers).
pub fn rack_alternated(brokers: &[PlacedBroker]) -> Vec<PlacedBroker> {
    let racked = brokers.iter().all(|b| b.rack.is_some());
    let mut racks: BTreeMap<Option<&str>, Vec<&PlacedBroker>> = BTreeMap::new();
    for b in brokers {
        let rack = if racked { b.rack.as_deref() } else { None };
        racks.entry(rack).or_default().push(b);
    }
    for members in racks.values_mut() {
        members.sort_by_key(|b| b.id);
        members.dedup_by_key(|b| b.id);
    }
    let longest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| {
            racks
                .values()
                .filter_map(move |m| m.get(i).copied().cloned())
        })
        .collect()
}

/// `count` replica lists of `rf` brokers each over `brokers`, the first starting at position
/// `start` of the rack-alternating order. `rf` must not exceed the number of brokers.
pub fn assign(brokers: &[PlacedBroker], start: usize, count: usize, rf: usize) -> Vec<Vec<i32>> {
    let order = rack_alternated(brokers);
    let n = order.len();
    debug_assert!(rf <= n, "replication factor {rf} over {n} brokers");
    (0..count)
        .map(|p| {
            let first = (start + p) % n;
            let racked = order.iter().all(|b| b.rack.is_some());
            let mut chosen: Vec<usize> = vec![first];
            while chosen.len() < rf.min(n) {
                let candidates = (1..n).map(|k| (first + k) % n);
                let unused_rack = candidates.clone().find(|&i| {
                    !chosen.contains(&i)
                        && racked
                        && chosen.iter().all(|&c| order[c].rack != order[i].rack)
                });
                let next = unused_rack.or_else(|| candidates.clone().find(|i| !chosen.contains(i)));
                match next {
                    Some(i) => chosen.push(i),
                    None => break,
                }
            }
            chosen.into_iter().map(|i| order[i].id).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn brokers(spec: &[(i32, Option<&str>)]) -> Vec<PlacedBroker> {
        spec.iter()
            .map(|(id, rack)| PlacedBroker {
                id: *id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn without_racks_it_is_round_robin() {
        let b = brokers(&[(3, None), (1, None), (2, None)]);
        assert_eq!(
            assign(&b, 0, 4, 2),
            vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]
        );
        assert_eq!(assign(&b, 2, 1, 3), vec![vec![3, 1, 2]]);
    }

    #[test]
    fn replicas_of_a_partition_never_share_a_rack_while_racks_remain() {
        // Unbalanced racks: a has three brokers, b two, c one.
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("a")),
            (4, Some("b")),
            (5, Some("b")),
            (6, Some("c")),
        ]);
        let rack = |id: i32| {
            b.iter()
                .find(|x| x.id == id)
                .expect("a broker")
                .rack
                .clone()
        };
        let plan = assign(&b, 0, 60, 3);
        let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
        for replicas in &plan {
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), 3, "{replicas:?}");
            let racks: BTreeSet<_> = replicas.iter().map(|&r| rack(r)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?} share a rack");
            *leaders.entry(replicas[0]).or_default() += 1;
        }
        // Every broker leads the same number of partitions.
        assert_eq!(leaders.len(), 6);
        assert!(leaders.values().all(|&n| n == 10), "{leaders:?}");
        // More replicas than racks: every rack used, then the rest without repeats.
        for replicas in assign(&b, 0, 6, 4) {
            let racks: BTreeSet<_> = replicas.iter().map(|&r| rack(r)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 4);
        }
    }

    #[test]
    fn alternating_order_takes_one_broker_per_rack_in_turn() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("c")),
            (5, Some("b")),
        ]);
        let ids: Vec<i32> = rack_alternated(&b).iter().map(|x| x.id).collect();
        assert_eq!(ids, vec![1, 3, 4, 2, 5]);
    }

    #[test]
    fn with_some_brokers_unracked_racks_are_ignored() {
        let b = brokers(&[(1, None), (2, None), (3, None), (4, Some("a"))]);
        let plan = assign(&b, 0, 8, 2);
        let with_4 = plan.iter().filter(|r| r.contains(&4)).count();
        assert_eq!(
            with_4, 4,
            "broker 4 takes its share, not every partition: {plan:?}"
        );
        assert_eq!(plan[0], vec![1, 2]);
    }
}
