//! Partition assignors: what the group's leader member computes between JoinGroup and
//! SyncGroup. The broker only picks a protocol every member supports and hands out the
//! leader's answer, so these are the whole of "who reads what", and they must match what
//! the Java client and librdkafka compute for a mixed group to be balanced.
//!
//! - `range`: per topic, the subscribed members in order each get a contiguous range; the
//!   first `partitions % members` get one more (Java's `RangeAssignor`).
//! - `roundrobin`: every partition of every subscribed topic, in order, dealt to the members
//!   subscribed to its topic in turn (`RoundRobinAssignor`).
//! - `cooperative-sticky`: as balanced as possible while keeping what each member already
//!   owns; a partition that must move is first only taken away (its owner revokes it and
//!   rejoins), and given to its new owner in the next round (KIP-429's
//!   `CooperativeStickyAssignor`).
//!
//! All three are pure functions of the members' subscriptions and the partition counts.

use std::collections::{BTreeMap, BTreeSet};

use crate::TopicPartition;

/// Which assignment strategy, by its protocol name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assignor {
    Range,
    RoundRobin,
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name members announce in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether members keep their partitions through a rebalance (KIP-429) instead of
    /// revoking everything before they rejoin.
    pub fn cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }

    /// The assignment of every member (members with nothing get an empty list).
    pub fn assign(
        self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut out = match self {
            Assignor::Range => range(members, partitions),
            Assignor::RoundRobin => round_robin(members, partitions),
            Assignor::CooperativeSticky => cooperative_sticky(members, partitions),
        };
        for m in members {
            out.entry(m.member_id.clone()).or_default().sort();
        }
        out
    }
}

/// One member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<String>,
    /// What the member owns now (subscription v1+; cooperative rebalancing).
    pub owned: Vec<TopicPartition>,
    /// The generation its `owned` is from (subscription v2+), -1 when unknown.
    pub generation: i32,
    /// What a custom assignor put in the member's subscription.
    pub user_data: Option<bytes::Bytes>,
}

/// A custom assignment strategy (Kafka's `ConsumerPartitionAssignor`), for a group whose
/// members all use it: Kafka Streams' task assignor is one. Members announce it by
/// [`name`](Self::name); rebalances with it are eager (everything is revoked first).
pub trait PartitionAssignor: Send + Sync {
    /// The protocol name in JoinGroup.
    fn name(&self) -> &str;

    /// Bytes this member adds to its subscription (`user_data`).
    fn subscription_user_data(&self) -> Option<bytes::Bytes> {
        None
    }

    /// The leader's part: each member's partitions and the bytes to hand it with them.
    fn assign(
        &self,
        members: &[MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, (Vec<TopicPartition>, Option<bytes::Bytes>)>;

    /// This member's assignment, before the rebalance listener hears of it.
    fn on_assignment(&self, partitions: &[TopicPartition], user_data: Option<&bytes::Bytes>) {
        let _ = (partitions, user_data);
    }
}

/// A [`PartitionAssignor`] in a [`super::ConsumerConfig`].
#[derive(Clone)]
pub struct CustomAssignor(pub std::sync::Arc<dyn PartitionAssignor>);

impl std::fmt::Debug for CustomAssignor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomAssignor({})", self.0.name())
    }
}

impl MemberSubscription {
    /// Java orders members by `group.instance.id` when they have one, then member id.
    fn sort_key(&self) -> (Option<&str>, &str) {
        (self.group_instance_id.as_deref(), self.member_id.as_str())
    }

    fn subscribes(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }
}

fn sorted(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut v: Vec<&MemberSubscription> = members.iter().collect();
    // Members with an instance id sort before those without, as in Java's MemberInfo.
    v.sort_by(|a, b| match (a.sort_key(), b.sort_key()) {
        ((Some(x), am), (Some(y), bm)) => x.cmp(y).then(am.cmp(bm)),
        ((Some(_), _), (None, _)) => std::cmp::Ordering::Less,
        ((None, _), (Some(_), _)) => std::cmp::Ordering::Greater,
        ((None, am), (None, bm)) => am.cmp(bm),
    });
    v
}

fn range(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let members = sorted(members);
    let mut out: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    for (topic, &count) in partitions {
        let subscribed: Vec<&&MemberSubscription> =
            members.iter().filter(|m| m.subscribes(topic)).collect();
        if subscribed.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribed.len() as i32;
        let (per, extra) = (count / n, count % n);
        for (i, m) in subscribed.iter().enumerate() {
            let i = i as i32;
            let start = per * i + i.min(extra);
            let len = per + i32::from(i < extra);
            out.entry(m.member_id.clone())
                .or_default()
                .extend((start..start + len).map(|p| TopicPartition::new(topic.as_str(), p)));
        }
    }
    out
}

fn round_robin(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let members = sorted(members);
    let mut out: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    if members.is_empty() {
        return out;
    }
    let mut next = 0usize;
    for (topic, &count) in partitions {
        for p in 0..count {
            // The next member in the circle that subscribes to this topic.
            for step in 0..members.len() {
                let m = members[(next + step) % members.len()];
                if m.subscribes(topic) {
                    out.entry(m.member_id.clone())
                        .or_default()
                        .push(TopicPartition::new(topic.as_str(), p));
                    next = (next + step + 1) % members.len();
                    break;
                }
            }
        }
    }
    out
}

fn cooperative_sticky(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let all: BTreeSet<TopicPartition> = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.subscribes(t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t.as_str(), p)))
        .collect();

    // Who owns what now: a claim counts if the partition still exists and its claimant still
    // subscribes to the topic; of two claims the newer generation wins (a member that missed
    // a rebalance still claims what was moved away from it), and a tie keeps neither.
    let mut owner: BTreeMap<TopicPartition, (&str, i32)> = BTreeMap::new();
    let mut contested: BTreeSet<TopicPartition> = BTreeSet::new();
    for m in members {
        for tp in &m.owned {
            if !all.contains(tp) || !m.subscribes(&tp.topic) {
                continue;
            }
            match owner.get(tp) {
                None => {
                    owner.insert(tp.clone(), (m.member_id.as_str(), m.generation));
                }
                Some(&(_, g)) if m.generation > g => {
                    owner.insert(tp.clone(), (m.member_id.as_str(), m.generation));
                    contested.remove(tp);
                }
                Some(&(_, g)) if m.generation == g => {
                    contested.insert(tp.clone());
                }
                Some(_) => {}
            }
        }
    }
    for tp in &contested {
        owner.remove(tp);
    }

    let mut assignment: BTreeMap<&str, BTreeSet<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.as_str(), BTreeSet::new()))
        .collect();
    for (tp, (m, _)) in &owner {
        if let Some(set) = assignment.get_mut(m) {
            set.insert(tp.clone());
        }
    }
    let by_id: BTreeMap<&str, &MemberSubscription> =
        members.iter().map(|m| (m.member_id.as_str(), m)).collect();

    // Each unowned partition to the least-loaded member subscribed to its topic.
    for tp in all.iter().filter(|tp| !owner.contains_key(*tp)) {
        let target = assignment
            .iter()
            .filter(|(m, _)| by_id[*m].subscribes(&tp.topic))
            .min_by_key(|(m, set)| (set.len(), **m))
            .map(|(m, _)| *m);
        if let Some(m) = target {
            if let Some(set) = assignment.get_mut(m) {
                set.insert(tp.clone());
            }
        }
    }

    // Balance: move one partition at a time from a member holding two more than another
    // member that could take it. Each move lowers the sum of squared loads, so this ends.
    loop {
        let mut moved = false;
        let mut loads: Vec<(&str, usize)> = assignment.iter().map(|(m, s)| (*m, s.len())).collect();
        loads.sort_by_key(|(m, n)| (std::cmp::Reverse(*n), *m));
        'search: for &(from, from_n) in &loads {
            for &(to, to_n) in loads.iter().rev() {
                if from_n < to_n + 2 {
                    break;
                }
                // Prefer moving what the donor was given this round over what it owned.
                let candidate = assignment[from]
                    .iter()
                    .filter(|tp| by_id[to].subscribes(&tp.topic))
                    .max_by_key(|tp| (owner.get(*tp).map(|(o, _)| *o) != Some(from), *tp))
                    .cloned();
                if let Some(tp) = candidate {
                    if let Some(s) = assignment.get_mut(from) {
                        s.remove(&tp);
                    }
                    if let Some(s) = assignment.get_mut(to) {
                        s.insert(tp);
                    }
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }

    // Cooperative: a partition is withheld from a member that does not hold it yet while
    // any other member still claims it (even a claim that did not count above: a topic it
    // left, a tie, an older generation); the claimant, seeing it gone from its assignment,
    // revokes it and rejoins, and the next round gives it out. This is the rule the Java
    // leader enforces (`validateCooperativeAssignment`): nothing is added to one member in
    // the round it is revoked from another.
    let claims: BTreeMap<&TopicPartition, Vec<&str>> =
        members.iter().fold(BTreeMap::new(), |mut acc, m| {
            for tp in &m.owned {
                acc.entry(tp)
                    .or_insert_with(Vec::new)
                    .push(m.member_id.as_str());
            }
            acc
        });
    assignment
        .into_iter()
        .map(|(m, set)| {
            let kept = set
                .into_iter()
                .filter(|tp| {
                    let claimants = claims.get(tp).map(Vec::as_slice).unwrap_or_default();
                    claimants.contains(&m) || claimants.is_empty()
                })
                .collect();
            (m.to_string(), kept)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            group_instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
            generation: 1,
            user_data: None,
        }
    }

    fn parts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn short(a: &BTreeMap<String, Vec<TopicPartition>>) -> BTreeMap<String, Vec<String>> {
        a.iter()
            .map(|(m, tps)| {
                (
                    m.clone(),
                    tps.iter()
                        .map(|tp| format!("{}-{}", tp.topic, tp.partition))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn range_matches_javas_range_assignor() {
        // Java: 7 partitions over 3 consumers -> 3, 2, 2 in member order, per topic.
        let members = [
            member("c", &["t"], &[]),
            member("a", &["t", "u"], &[]),
            member("b", &["t"], &[]),
        ];
        let a = Assignor::Range.assign(&members, &parts(&[("t", 7), ("u", 2)]));
        let s = short(&a);
        assert_eq!(s["a"], ["t-0", "t-1", "t-2", "u-0", "u-1"]);
        assert_eq!(s["b"], ["t-3", "t-4"]);
        assert_eq!(s["c"], ["t-5", "t-6"]);
    }

    #[test]
    fn range_orders_static_members_by_instance_id() {
        let mut m1 = member("zzz", &["t"], &[]);
        m1.group_instance_id = Some("i-1".into());
        let mut m2 = member("aaa", &["t"], &[]);
        m2.group_instance_id = Some("i-2".into());
        let s = short(&Assignor::Range.assign(&[m2, m1], &parts(&[("t", 2)])));
        assert_eq!(s["zzz"], ["t-0"]);
        assert_eq!(s["aaa"], ["t-1"]);
    }

    #[test]
    fn round_robin_deals_partitions_in_turn() {
        let members = [member("a", &["t", "u"], &[]), member("b", &["t", "u"], &[])];
        let s = short(&Assignor::RoundRobin.assign(&members, &parts(&[("t", 3), ("u", 2)])));
        assert_eq!(s["a"], ["t-0", "t-2", "u-1"]);
        assert_eq!(s["b"], ["t-1", "u-0"]);
    }

    #[test]
    fn round_robin_skips_members_not_subscribed() {
        let members = [member("a", &["t"], &[]), member("b", &["u"], &[])];
        let s = short(&Assignor::RoundRobin.assign(&members, &parts(&[("t", 2), ("u", 2)])));
        assert_eq!(s["a"], ["t-0", "t-1"]);
        assert_eq!(s["b"], ["u-0", "u-1"]);
    }

    #[test]
    fn every_assignor_gives_each_partition_to_exactly_one_member() {
        for assignor in [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::CooperativeSticky,
        ] {
            for n_members in 1..6 {
                for n_parts in 0..13 {
                    let members: Vec<MemberSubscription> = (0..n_members)
                        .map(|i| member(&format!("m{i}"), &["t"], &[]))
                        .collect();
                    let a = assignor.assign(&members, &parts(&[("t", n_parts)]));
                    let mut all: Vec<i32> = a.values().flatten().map(|tp| tp.partition).collect();
                    all.sort();
                    assert_eq!(all, (0..n_parts).collect::<Vec<_>>(), "{assignor:?}");
                    let loads: Vec<usize> = a.values().map(Vec::len).collect();
                    let (min, max) = (loads.iter().min(), loads.iter().max());
                    assert!(
                        max.unwrap_or(&0) - min.unwrap_or(&0) <= 1,
                        "{assignor:?} {loads:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn cooperative_sticky_keeps_what_members_own() {
        // Two members had 3 each; nothing changes, so nothing moves.
        let members = [
            member("a", &["t"], &[("t", 0), ("t", 2), ("t", 4)]),
            member("b", &["t"], &[("t", 1), ("t", 3), ("t", 5)]),
        ];
        let s = short(&Assignor::CooperativeSticky.assign(&members, &parts(&[("t", 6)])));
        assert_eq!(s["a"], ["t-0", "t-2", "t-4"]);
        assert_eq!(s["b"], ["t-1", "t-3", "t-5"]);
    }

    #[test]
    fn cooperative_sticky_moves_in_two_rounds() {
        // A third member joins: first round, the two old members each give up one partition
        // (withheld from the newcomer); second round, the newcomer gets both.
        let first = [
            member("a", &["t"], &[("t", 0), ("t", 1), ("t", 2)]),
            member("b", &["t"], &[("t", 3), ("t", 4), ("t", 5)]),
            member("c", &["t"], &[]),
        ];
        let r1 = Assignor::CooperativeSticky.assign(&first, &parts(&[("t", 6)]));
        let s1 = short(&r1);
        assert_eq!(s1["a"].len(), 2);
        assert_eq!(s1["b"].len(), 2);
        assert!(s1["c"].is_empty(), "withheld until revoked: {s1:?}");
        // Nothing a member kept was taken from another.
        assert!(s1["a"]
            .iter()
            .all(|p| ["t-0", "t-1", "t-2"].contains(&p.as_str())));

        let second: Vec<MemberSubscription> = ["a", "b", "c"]
            .iter()
            .map(|m| MemberSubscription {
                owned: r1[*m].clone(),
                generation: 2,
                ..member(m, &["t"], &[])
            })
            .collect();
        let s2 = short(&Assignor::CooperativeSticky.assign(&second, &parts(&[("t", 6)])));
        assert_eq!(s2["a"], s1["a"]);
        assert_eq!(s2["b"], s1["b"]);
        assert_eq!(s2["c"].len(), 2);
    }

    #[test]
    fn cooperative_sticky_hands_a_leavers_partitions_out_at_once() {
        // c left: its partitions are owned by nobody, so they move in one round.
        let members = [
            member("a", &["t"], &[("t", 0), ("t", 1)]),
            member("b", &["t"], &[("t", 2), ("t", 3)]),
        ];
        let s = short(&Assignor::CooperativeSticky.assign(&members, &parts(&[("t", 6)])));
        assert_eq!(s["a"].len(), 3);
        assert_eq!(s["b"].len(), 3);
        assert!(s["a"].starts_with(&["t-0".to_string(), "t-1".to_string()]));
    }

    #[test]
    fn cooperative_sticky_resolves_double_claims_by_generation() {
        let mut stale = member("a", &["t"], &[("t", 0), ("t", 1)]);
        stale.generation = 1;
        let mut fresh = member("b", &["t"], &[("t", 1)]);
        fresh.generation = 2;
        let s = short(&Assignor::CooperativeSticky.assign(&[stale, fresh], &parts(&[("t", 2)])));
        assert_eq!(s["a"], ["t-0"]);
        assert_eq!(s["b"], ["t-1"]);
    }

    #[test]
    fn cooperative_sticky_drops_claims_on_unsubscribed_topics() {
        // a left topic t but still holds t-0: b gets t-0 only once a has revoked it.
        let members = [member("a", &["u"], &[("t", 0)]), member("b", &["t"], &[])];
        let parts = parts(&[("t", 1), ("u", 1)]);
        let s = short(&Assignor::CooperativeSticky.assign(&members, &parts));
        assert_eq!(s["a"], ["u-0"]);
        assert!(s["b"].is_empty(), "withheld while a still claims it: {s:?}");
        let next = [member("a", &["u"], &[("u", 0)]), member("b", &["t"], &[])];
        let s = short(&Assignor::CooperativeSticky.assign(&next, &parts));
        assert_eq!(s["b"], ["t-0"]);
    }

    #[test]
    fn cooperative_sticky_never_adds_what_another_member_still_claims() {
        // Every combination of stale, tied and valid claims over three members: whatever is
        // added to a member is claimed by nobody else (Java's validateCooperativeAssignment).
        let topics = parts(&[("t", 4)]);
        for mask in 0u32..(1 << 12) {
            let members: Vec<MemberSubscription> = (0..3)
                .map(|i| {
                    let owned: Vec<(&str, i32)> = (0..4)
                        .filter(|p| mask & (1 << (i * 4 + p)) != 0)
                        .map(|p| ("t", p))
                        .collect();
                    let mut m = member(&format!("m{i}"), &["t"], &owned);
                    m.generation = (mask as i32 >> i) & 1;
                    m
                })
                .collect();
            let a = Assignor::CooperativeSticky.assign(&members, &topics);
            let mut seen = BTreeSet::new();
            for m in &members {
                for tp in &a[&m.member_id] {
                    assert!(seen.insert(tp.clone()), "{tp} given twice: {a:?}");
                    if !m.owned.contains(tp) {
                        assert!(
                            members
                                .iter()
                                .all(|o| o.member_id == m.member_id || !o.owned.contains(tp)),
                            "{tp} added to {} while claimed: {members:?} -> {a:?}",
                            m.member_id
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for a in [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::CooperativeSticky,
        ] {
            assert_eq!(Assignor::from_name(a.name()), Some(a));
        }
        assert_eq!(Assignor::from_name("sticky"), None);
    }
}
