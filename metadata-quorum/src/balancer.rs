//! Continuous replica balancing (opt-in, `--auto-replica-balance-enable` on strom-quorum),
//! through KIP-455 reassignments, the same safe path `strom partitions reassign` takes: the
//! new replicas catch up as followers and the switch happens once they are in sync. The
//! active controller plans a round when:
//! - a broker's partitions fill more than `--replica-balance-disk-threshold-percent` of its
//!   capacity, as the brokers report their log directories ([`DiskView`]): replicas move off
//!   it to the brokers with the most room until it is [`HEADROOM_PERCENT`] points under the
//!   threshold, each receiver staying that far under it too;
//! - otherwise, the live brokers hold very different numbers of replicas (typically a broker
//!   was just added): replicas move from the broker holding the most to the one holding the
//!   fewest, until the counts differ by at most one, never filling a broker to within
//!   [`HEADROOM_PERCENT`] points of the threshold.
//!
//! One round at a time: nothing is planned while any reassignment runs. A round moves at
//! most `max_moves` replicas. Every move keeps the replica's place in the list (a moved
//! preferred leader is still first), never lands on a broker already hosting the partition,
//! and lands in the leaving replica's rack or in a rack the partition does not use, so racks
//! stay spread.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::controller::Reassignment;
use crate::quorum::rpc::LogDirReport;
use crate::{MetadataImage, PartitionImage};

/// The brokers' disks as they last reported them to the active controller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskView {
    /// A broker whose partitions fill more than this share of its capacity gives replicas
    /// away, and no move fills a broker past it.
    pub threshold_percent: u64,
    /// Each reporting broker's capacity in bytes.
    pub capacity: BTreeMap<i32, u64>,
    /// Each partition's size: the most any of its replicas reported (the leader's log is the
    /// longest).
    pub partition_bytes: HashMap<(Uuid, u32), u64>,
    /// Each reporting broker's free file-system space, where it could read it.
    pub usable: BTreeMap<i32, u64>,
}

/// How far under its threshold a round leaves a broker it relieves or fills (percentage
/// points), so that a little growth does not start the next round at once.
pub const HEADROOM_PERCENT: u64 = 5;

impl DiskView {
    pub fn from_reports<'a>(
        threshold_percent: u64,
        reports: impl IntoIterator<Item = (i32, &'a LogDirReport)>,
    ) -> Self {
        let mut view = DiskView {
            threshold_percent,
            ..Default::default()
        };
        for (broker, report) in reports {
            if report.capacity_bytes > 0 {
                view.capacity.insert(broker, report.capacity_bytes);
            }
            if let Some(usable) = report.fs_usable_bytes {
                view.usable.insert(broker, usable);
            }
            for &(topic_id, partition, bytes) in &report.partitions {
                let size = view
                    .partition_bytes
                    .entry((topic_id, partition))
                    .or_default();
                *size = (*size).max(bytes);
            }
        }
        view
    }
}

/// One live broker's fill as the image places replicas (moves in progress count on both
/// sides), against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerFill {
    pub broker: i32,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
    /// `threshold_percent` of the capacity: past it, replicas move off.
    pub limit_bytes: u64,
    /// [`HEADROOM_PERCENT`] points under the limit: what a move fills a receiver to at
    /// most, and what relieving a broker brings it down to.
    pub target_bytes: u64,
    /// Free file-system space, when reported: a receiver keeps a margin of it.
    pub usable_bytes: Option<u64>,
}

impl BrokerFill {
    pub fn over(&self) -> bool {
        self.used_bytes > self.limit_bytes
    }

    fn ratio_with(&self, extra: u64) -> f64 {
        self.used_bytes.saturating_add(extra) as f64 / self.limit_bytes.max(1) as f64
    }

    /// Whether `bytes` more stay within the target and the file system's free space (less
    /// a twentieth of the capacity for everything else on it).
    fn takes(&self, bytes: u64) -> bool {
        self.used_bytes.saturating_add(bytes) <= self.target_bytes
            && self
                .usable_bytes
                .is_none_or(|u| bytes.saturating_add(self.capacity_bytes / 20) <= u)
    }
}

/// Every live broker's fill, or None while one of them has not reported its capacity.
pub fn disk_fill(image: &MetadataImage, view: &DiskView) -> Option<BTreeMap<i32, BrokerFill>> {
    let mut fill = BTreeMap::new();
    for b in image.live_brokers() {
        let capacity = *view.capacity.get(&b.broker_id)?;
        let share = |percent: u64| (capacity as u128 * percent as u128 / 100) as u64;
        fill.insert(
            b.broker_id,
            BrokerFill {
                broker: b.broker_id,
                used_bytes: 0,
                capacity_bytes: capacity,
                limit_bytes: share(view.threshold_percent),
                target_bytes: share(view.threshold_percent.saturating_sub(HEADROOM_PERCENT)),
                usable_bytes: view.usable.get(&b.broker_id).copied(),
            },
        );
    }
    for t in image.topics() {
        for p in &t.partitions {
            let size = partition_size(view, t.topic_id, p);
            for r in &p.replicas {
                if let Some(f) = fill.get_mut(r) {
                    f.used_bytes = f.used_bytes.saturating_add(size);
                }
            }
        }
    }
    Some(fill)
}

/// A planned move of `size` bytes from `hi` to `lo`: the receiver's fill grows and its free
/// space shrinks, so later moves of the round see it.
fn move_bytes(fill: &mut BTreeMap<i32, BrokerFill>, hi: i32, lo: i32, size: u64) {
    if let Some(f) = fill.get_mut(&hi) {
        f.used_bytes = f.used_bytes.saturating_sub(size);
    }
    if let Some(f) = fill.get_mut(&lo) {
        f.used_bytes = f.used_bytes.saturating_add(size);
        f.usable_bytes = f.usable_bytes.map(|u| u.saturating_sub(size));
    }
}

fn partition_size(view: &DiskView, topic_id: Uuid, p: &PartitionImage) -> u64 {
    view.partition_bytes
        .get(&(topic_id, p.partition))
        .copied()
        .unwrap_or(0)
}

/// Up to `max_moves` reassignments: off brokers filled past the disk threshold first (when
/// `disk` is given and every live broker has reported), else evening out the live brokers'
/// replica counts. None while a reassignment is in progress or nothing needs to move.
pub fn replica_moves(
    image: &MetadataImage,
    max_moves: usize,
    disk: Option<&DiskView>,
) -> Vec<Reassignment> {
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
    // Racks count only when every live broker has one (with some unracked, as in Kafka's
    // placement, they are ignored rather than piling replicas on the racked brokers).
    let racked = live.values().all(Option::is_some);
    let rack = |b: &i32| live.get(b).and_then(|r| r.as_deref());
    // May `lo` take `hi`'s place among `replicas`?
    let allowed = |replicas: &[i32], hi: i32, lo: i32| {
        if replicas.contains(&lo) {
            return false;
        }
        if racked && rack(&lo) != rack(&hi) {
            let others: Vec<Option<&str>> =
                replicas.iter().filter(|&&r| r != hi).map(rack).collect();
            if others.contains(&rack(&lo)) {
                return false;
            }
        }
        true
    };
    let mut fill = disk.and_then(|d| disk_fill(image, d).map(|f| (d, f)));
    if disk.is_some() && fill.is_none() {
        // Disks count, but one live broker's report is missing or stale: no move can be
        // judged safe for it, so none is planned until it reports.
        return vec![];
    }
    let mut moves: Vec<Reassignment> = Vec::new();
    let mut moved: BTreeSet<(String, u32)> = BTreeSet::new();

    if let Some((view, fill)) = &mut fill {
        let view: &DiskView = view;
        // Relieve the broker furthest past its limit, down to its target; one with nothing
        // that can go anywhere is left for the count round (which will not add to it).
        let relieving: BTreeSet<i32> = fill
            .values()
            .filter(|f| f.over())
            .map(|f| f.broker)
            .collect();
        let mut stuck: BTreeSet<i32> = BTreeSet::new();
        while moves.len() < max_moves {
            let Some(hi) = fill
                .values()
                .filter(|f| {
                    relieving.contains(&f.broker)
                        && f.used_bytes > f.target_bytes
                        && !stuck.contains(&f.broker)
                })
                .max_by(|a, b| a.ratio_with(0).total_cmp(&b.ratio_with(0)))
                .map(|f| f.broker)
            else {
                break;
            };
            let excess = fill[&hi].used_bytes - fill[&hi].target_bytes;
            // The smallest partition that brings it under in one move; else the largest.
            let mut candidates: Vec<(u64, &str, Uuid, &PartitionImage)> = image
                .topics()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| (partition_size(view, t.topic_id, p), t, p))
                })
                .filter(|(size, t, p)| {
                    *size > 0
                        && p.replicas.contains(&hi)
                        && !moved.contains(&(t.name.clone(), p.partition))
                })
                .map(|(size, t, p)| (size, t.name.as_str(), t.topic_id, p))
                .collect();
            candidates.sort_by_key(|&(size, name, _, p)| {
                let order = if size >= excess {
                    size
                } else {
                    u64::MAX - size
                };
                (size < excess, order, name, p.partition)
            });
            let found = candidates.iter().find_map(|&(size, name, _, p)| {
                let lo = fill
                    .values()
                    .filter(|f| {
                        f.broker != hi && f.takes(size) && allowed(&p.replicas, hi, f.broker)
                    })
                    .min_by(|a, b| {
                        a.ratio_with(size)
                            .total_cmp(&b.ratio_with(size))
                            .then(a.broker.cmp(&b.broker))
                    })?
                    .broker;
                Some((size, name, p, lo))
            });
            let Some((size, name, p, lo)) = found else {
                stuck.insert(hi);
                continue;
            };
            let slot = p.replicas.iter().position(|&r| r == hi).expect("hosts it");
            let mut target = p.replicas.clone();
            target[slot] = lo;
            moved.insert((name.to_string(), p.partition));
            moves.push(((name.to_string(), p.partition), Some(target)));
            move_bytes(fill, hi, lo, size);
        }
        if !moves.is_empty() {
            return moves;
        }
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
    while moves.len() < max_moves {
        // Pairs (fuller, emptier) by how far apart they are, widest first; a pair with no
        // allowed move (racks, room) gives way to the next rather than ending the round.
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
                    if moved.contains(&key) || !allowed(&p.replicas, hi, lo) {
                        return None;
                    }
                    let size = match &fill {
                        Some((view, fill)) => {
                            let size = partition_size(view, t.topic_id, p);
                            if !fill[&lo].takes(size) {
                                return None;
                            }
                            size
                        }
                        None => 0,
                    };
                    let mut target = p.replicas.clone();
                    target[slot] = lo;
                    Some((hi, lo, key, target, size))
                })
            })
        });
        let Some((hi, lo, key, target, size)) = found else {
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
        if let Some((_, fill)) = &mut fill {
            move_bytes(fill, hi, lo, size);
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
            let moves = replica_moves(&img, 4, None);
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
            assert!(replica_moves(&img, 4, None).is_empty());
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
        let moves = replica_moves(&img, 10, None);
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
        let moves = replica_moves(&img, 10, None);
        // Broker 3 (b) gives two to 4 (b); rack a is already even.
        assert_eq!(moves.len(), 2, "{moves:?}");
        for (_, t) in &moves {
            let t = t.as_ref().expect("target");
            assert!(t.contains(&4) && !t.contains(&3), "{t:?}");
        }
        let started = alter_partition_reassignments(&img, &moves);
        img = finish(img.replay(&started.records).expect("replay"));
        assert!(replica_moves(&img, 10, None).is_empty());
    }

    /// A disk view: every broker's capacity, and topic t's partition sizes by index.
    fn disk(capacity: &[(i32, u64)], sizes: &[u64]) -> DiskView {
        DiskView {
            threshold_percent: 80,
            capacity: capacity.iter().copied().collect(),
            partition_bytes: sizes
                .iter()
                .enumerate()
                .map(|(p, &b)| ((Uuid::from_u128(1), p as u32), b))
                .collect(),
            usable: BTreeMap::new(),
        }
    }

    #[test]
    fn an_overfull_broker_gives_the_smallest_sufficient_replica_to_the_emptiest() {
        // Broker 1 holds 50 + 40 of 100 (past 80); the 40 alone brings it under, and 2 has
        // the most room. Counts are even enough that only the disk moves anything.
        let img = image(&[(1, ""), (2, ""), (3, "")], &[&[1], &[1], &[2], &[3]]);
        let view = disk(&[(1, 100), (2, 100), (3, 100)], &[50, 40, 10, 30]);
        let fill = disk_fill(&img, &view).expect("every broker reported");
        assert!(fill[&1].over() && !fill[&2].over() && !fill[&3].over());
        let moves = replica_moves(&img, 10, Some(&view));
        assert_eq!(moves, vec![(("t".to_string(), 1), Some(vec![2]))]);
        let img = finish(
            img.replay(&alter_partition_reassignments(&img, &moves).records)
                .expect("replay"),
        );
        let fill = disk_fill(&img, &view).expect("fill");
        assert_eq!(
            (
                fill[&1].used_bytes,
                fill[&2].used_bytes,
                fill[&3].used_bytes
            ),
            (50, 50, 30)
        );
        assert!(replica_moves(&img, 10, Some(&view)).is_empty(), "balanced");
    }

    #[test]
    fn no_move_fills_a_broker_past_the_threshold() {
        // 1 is past 80 but neither of its replicas fits on 2 (65 + 20 > 80, 65 + 70 > 80):
        // nothing moves.
        let img = image(&[(1, ""), (2, "")], &[&[1], &[1], &[2]]);
        let view = disk(&[(1, 100), (2, 100)], &[70, 20, 65]);
        assert!(replica_moves(&img, 10, Some(&view)).is_empty());

        // The count round would move one of 1's four small replicas to 2, but 2 is too full.
        let img = image(&[(1, ""), (2, "")], &[&[1], &[1], &[1], &[1], &[2]]);
        let view = disk(&[(1, 100), (2, 100)], &[5, 5, 5, 5, 78]);
        assert!(replica_moves(&img, 10, Some(&view)).is_empty());
        assert_eq!(
            replica_moves(&img, 10, None).len(),
            1,
            "without disks it would"
        );
        // With room on 2, counts even out as before.
        let roomy = disk(&[(1, 100), (2, 1000)], &[5, 5, 5, 5, 78]);
        assert_eq!(replica_moves(&img, 10, Some(&roomy)).len(), 1);
    }

    #[test]
    fn nothing_moves_while_a_live_broker_has_not_reported() {
        // Broker 1 is past its threshold and counts are uneven, but 3 has not reported:
        // no move can be judged, so none is planned (with disks left out, counts move).
        let img = image(
            &[(1, ""), (2, ""), (3, "")],
            &[&[1], &[1], &[1], &[1], &[2], &[3]],
        );
        let view = disk(&[(1, 100), (2, 100)], &[50, 40, 1, 1, 1, 1]);
        assert!(disk_fill(&img, &view).is_none());
        assert!(replica_moves(&img, 10, Some(&view)).is_empty());
        assert!(!replica_moves(&img, 10, None).is_empty());
    }

    #[test]
    fn disk_moves_keep_racks_spread() {
        // 1 (rack a) is past its threshold with [1, 2]; 3 is in rack b like 2, so it may not
        // take 1's place, and nothing moves.
        let img = image(&[(1, "a"), (2, "b"), (3, "b")], &[&[1, 2]]);
        let view = disk(&[(1, 100), (2, 1000), (3, 1000)], &[85]);
        assert!(replica_moves(&img, 10, Some(&view)).is_empty());
        // With 4 in rack a, it goes there.
        let img = image(&[(1, "a"), (2, "b"), (3, "b"), (4, "a")], &[&[1, 2]]);
        let view = disk(&[(1, 100), (2, 1000), (3, 1000), (4, 1000)], &[85]);
        assert_eq!(
            replica_moves(&img, 10, Some(&view)),
            vec![(("t".to_string(), 0), Some(vec![4, 2]))]
        );
    }

    #[test]
    fn a_partition_is_as_big_as_its_largest_reported_replica() {
        let report = |bytes: u64| LogDirReport {
            capacity_bytes: 100,
            partitions: vec![(Uuid::from_u128(1), 0, bytes)],
            ..Default::default()
        };
        let (a, b) = (report(10), report(25));
        let view = DiskView::from_reports(80, [(1, &a), (2, &b)]);
        assert_eq!(view.partition_bytes[&(Uuid::from_u128(1), 0)], 25);
        assert_eq!(view.capacity, BTreeMap::from([(1, 100), (2, 100)]));
    }

    #[test]
    fn growth_after_a_round_does_not_start_another_and_free_space_counts() {
        // Threshold 80, so rounds leave brokers at 75 at most.
        let img = image(&[(1, ""), (2, ""), (3, "")], &[&[1], &[1], &[2], &[3]]);
        let view = disk(&[(1, 100), (2, 100), (3, 100)], &[50, 40, 10, 30]);
        let moves = replica_moves(&img, 10, Some(&view));
        assert_eq!(moves, vec![(("t".to_string(), 1), Some(vec![2]))]);
        let img = finish(
            img.replay(&alter_partition_reassignments(&img, &moves).records)
                .expect("replay"),
        );
        // Every partition grows a little, no broker past 80: nothing moves.
        let grown = disk(&[(1, 100), (2, 100), (3, 100)], &[52, 42, 12, 32]);
        assert!(replica_moves(&img, 10, Some(&grown)).is_empty());

        // Broker 2's file system has 30 bytes free: the 40 goes to 3 (30 + 40 <= 75).
        let img = image(&[(1, ""), (2, ""), (3, "")], &[&[1], &[1], &[2], &[3]]);
        let mut tight = view.clone();
        tight.usable = BTreeMap::from([(2, 30), (3, 1000)]);
        assert_eq!(
            replica_moves(&img, 10, Some(&tight)),
            vec![(("t".to_string(), 1), Some(vec![3]))]
        );
    }
}
