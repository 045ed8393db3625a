use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::*;
use crate::group::{GroupCoordinator, TickWrites};

struct Topics(BTreeMap<String, (Uuid, i32)>);

impl Topics {
    fn new(list: &[(&str, i32)]) -> Self {
        Topics(
            list.iter()
                .map(|(n, p)| (n.to_string(), (Uuid::new_v4(), *p)))
                .collect(),
        )
    }
    fn id(&self, name: &str) -> Uuid {
        self.0[name].0
    }
}

impl TopicSource for Topics {
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.get(name).copied()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// A client as the protocol expects one to behave: it owns what the last assignment gave
/// it and reports what it owns in every heartbeat.
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
    instance: Option<String>,
    topics: Vec<String>,
    /// Partitions it was told to give up, over its life.
    revoked: usize,
}

impl Client {
    fn new(id: &str, topics: &[&str]) -> Self {
        Client {
            id: id.into(),
            epoch: 0,
            owned: Assignment::new(),
            instance: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            revoked: 0,
        }
    }

    fn request(&self) -> Heartbeat {
        let join = self.epoch == 0;
        Heartbeat {
            group_id: "g".into(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            instance_id: self.instance.clone(),
            rebalance_timeout_ms: if join { 60_000 } else { -1 },
            topics: join.then(|| self.topics.clone()),
            owned: Some(self.owned.clone()),
            client_id: "c".into(),
            version: 1,
            ..Default::default()
        }
    }

    fn heartbeat(&mut self, c: &GroupCoordinator, t: &Topics) -> HeartbeatOutcome {
        let out = c.consumer_heartbeat(self.request(), t);
        if out.error == 0 {
            self.epoch = out.member_epoch;
            if let Some(a) = &out.assignment {
                let gone = count(&self.owned) - count(&intersection(&self.owned, a));
                self.revoked += gone;
                self.owned = a.clone();
            }
        }
        out
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// No partition is owned by two clients at once.
fn assert_exclusive(clients: &[Client]) {
    let mut seen = HashSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "partition {t}/{p} owned twice");
            }
        }
    }
}

/// Heartbeats round-robin until the group is stable; checks exclusivity after each one.
fn converge(c: &GroupCoordinator, t: &Topics, clients: &mut [Client]) {
    for _ in 0..20 {
        for i in 0..clients.len() {
            let out = clients[i].heartbeat(c, t);
            assert_eq!(out.error, 0, "{:?}", out.message);
            assert_exclusive(clients);
        }
        if c.describe_consumer_group("g").expect("group").state == "Stable" {
            return;
        }
    }
    panic!(
        "no convergence: {:?}",
        c.describe_consumer_group("g").map(|v| v.state)
    );
}

#[test]
fn members_converge_on_a_balanced_exclusive_assignment_and_only_moved_partitions_are_revoked() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("orders", 6)]);
    let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
    converge(&c, &t, &mut clients);
    assert_eq!(
        clients.iter().map(|c| count(&c.owned)).collect::<Vec<_>>(),
        [3, 3]
    );
    let before: Vec<usize> = clients.iter().map(|c| c.revoked).collect();
    clients.push(Client::new("x", &["orders"]));
    converge(&c, &t, &mut clients);
    assert_eq!(
        clients.iter().map(|c| count(&c.owned)).collect::<Vec<_>>(),
        [2, 2, 2]
    );
    // Sticky: each old member gave up exactly the one partition the newcomer got from it.
    let revoked: usize = clients
        .iter()
        .zip(&before)
        .map(|(c, b)| c.revoked - b)
        .sum();
    assert_eq!(revoked, 2);
    let v = c.describe_consumer_group("g").expect("group");
    assert_eq!(v.state, "Stable");
    assert!(v.members.iter().all(|m| m.member_epoch == v.epoch));
    // A member leaving hands its partitions to the others.
    let out = c.consumer_heartbeat(
        Heartbeat {
            member_epoch: -1,
            ..clients[0].request()
        },
        &t,
    );
    assert_eq!((out.error, out.member_epoch), (0, -1));
    clients.remove(0);
    converge(&c, &t, &mut clients);
    assert_eq!(
        clients.iter().map(|c| count(&c.owned)).collect::<Vec<_>>(),
        [3, 3]
    );
}

#[test]
fn a_partition_moves_only_after_its_owner_reports_it_revoked() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 2)]);
    let mut a = Client::new("a", &["t"]);
    a.heartbeat(&c, &t);
    assert_eq!(count(&a.owned), 2);
    let mut b = Client::new("b", &["t"]);
    let out = b.heartbeat(&c, &t);
    // b is at the new epoch but gets nothing yet: a still holds both partitions.
    assert_eq!(out.error, 0);
    assert_eq!(count(&b.owned), 0);
    let v = c.describe_consumer_group("g").expect("group");
    assert_eq!(v.state, "Reconciling");
    // a is told to keep one; it keeps its epoch until it confirms.
    let epoch_a = a.epoch;
    a.heartbeat(&c, &t);
    assert_eq!((count(&a.owned), a.epoch), (1, epoch_a));
    // b still waits: a has not reported the revocation yet.
    b.heartbeat(&c, &t);
    assert_eq!(count(&b.owned), 0);
    // a confirms (its owned set no longer has the partition) and moves to the new epoch.
    a.heartbeat(&c, &t);
    assert_eq!(a.epoch, v.epoch);
    b.heartbeat(&c, &t);
    assert_eq!(count(&b.owned), 1);
    assert_exclusive(&[a, b]);
}

#[test]
fn a_lost_response_is_forgiven_but_a_wrong_epoch_is_fenced() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let mut a = Client::new("a", &["t"]);
    a.heartbeat(&c, &t);
    let mut b = Client::new("b", &["t"]);
    b.heartbeat(&c, &t);
    a.heartbeat(&c, &t); // told to revoke two
    let old = a.epoch;
    a.heartbeat(&c, &t); // confirms: new epoch
    assert!(a.epoch > old);
    // The answer with the new epoch was lost: the same owned set at the old epoch is fine.
    let mut lost = a.request();
    lost.member_epoch = old;
    assert_eq!(c.consumer_heartbeat(lost, &t).error, 0);
    // An epoch from the future, or an old one with partitions it may not have, is fenced.
    let mut ahead = a.request();
    ahead.member_epoch = a.epoch + 5;
    assert_eq!(c.consumer_heartbeat(ahead, &t).error, 110);
    let mut stale = a.request();
    stale.member_epoch = old;
    stale.owned = Some(BTreeMap::from([(t.id("t"), BTreeSet::from([0, 1, 2, 3]))]));
    assert_eq!(c.consumer_heartbeat(stale, &t).error, 110);
    // Unknown members are told so.
    let mut ghost = Client::new("ghost", &["t"]);
    ghost.epoch = 3;
    assert_eq!(c.consumer_heartbeat(ghost.request(), &t).error, 25);
}

#[test]
fn a_static_member_back_within_the_session_gets_its_partitions_and_nobody_else_moves() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 6)]);
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            let mut cl = Client::new(id, &["t"]);
            cl.instance = Some(format!("instance-{id}"));
            cl
        })
        .collect();
    converge(&c, &t, &mut clients);
    let epoch = c.describe_consumer_group("g").expect("group").epoch;
    let had = clients[1].owned.clone();
    let out = c.consumer_heartbeat(
        Heartbeat {
            member_epoch: -2,
            ..clients[1].request()
        },
        &t,
    );
    assert_eq!((out.error, out.member_epoch), (0, -2));
    // Another incarnation cannot take the place while the member holds it.
    let mut clash = Client::new("a2", &["t"]);
    clash.instance = Some("instance-a".into());
    assert_eq!(clash.heartbeat(&c, &t).error, 111);
    // The others heartbeat on and keep what they have.
    let (keep0, keep2) = (clients[0].owned.clone(), clients[2].owned.clone());
    clients[0].heartbeat(&c, &t);
    clients[2].heartbeat(&c, &t);
    assert_eq!((&clients[0].owned, &clients[2].owned), (&keep0, &keep2));
    // Back with a new member id: same partitions, same group epoch.
    let mut back = Client::new("b-restarted", &["t"]);
    back.instance = Some("instance-b".into());
    let out = back.heartbeat(&c, &t);
    assert_eq!(out.error, 0);
    assert_eq!(back.owned, had);
    let v = c.describe_consumer_group("g").expect("group");
    assert_eq!((v.epoch, v.members.len()), (epoch, 3));
    assert!(!v.members.iter().any(|m| m.member_id == "b"));
    // Leaving with -2 and coming back under the same member id: the same place and epoch.
    let had = clients[0].owned.clone();
    c.consumer_heartbeat(
        Heartbeat {
            member_epoch: -2,
            ..clients[0].request()
        },
        &t,
    );
    let mut same = Client::new("a", &["t"]);
    same.instance = Some("instance-a".into());
    let out = same.heartbeat(&c, &t);
    assert_eq!((out.error, out.member_epoch), (0, epoch));
    assert_eq!(same.owned, had);
}

#[test]
fn silent_members_expire_and_members_that_keep_partitions_too_long_are_fenced() {
    let config = ConsumerGroupConfig {
        session_timeout: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        ..Default::default()
    };
    let c = GroupCoordinator::new(Duration::ZERO).with_consumer_config(config);
    let t = Topics::new(&[("t", 4)]);
    let mut clients = vec![Client::new("a", &["t"]), Client::new("b", &["t"])];
    converge(&c, &t, &mut clients);
    let start = Instant::now();
    c.tick_at(start + Duration::from_secs(11));
    assert_eq!(
        c.describe_consumer_group("g").expect("group").members.len(),
        0
    );
    // A member told to revoke that does not, within its rebalance timeout, is removed.
    let mut a = Client::new("a2", &["t"]);
    a.heartbeat(&c, &t);
    let mut req = Client::new("b2", &["t"]).request();
    req.rebalance_timeout_ms = 2_000;
    c.consumer_heartbeat(req, &t);
    a.heartbeat(&c, &t); // must revoke now
    let v = c.describe_consumer_group("g").expect("group");
    assert_eq!(v.state, "Reconciling");
    // a's rebalance timeout is 60 s: past it, a is removed and b gets everything.
    c.tick_at(Instant::now() + Duration::from_secs(9));
    assert_eq!(
        c.describe_consumer_group("g").expect("group").members.len(),
        2
    );
    let c2 = GroupCoordinator::new(Duration::ZERO).with_consumer_config(ConsumerGroupConfig {
        session_timeout: Duration::from_secs(600),
        heartbeat_interval: Duration::from_secs(1),
        ..Default::default()
    });
    let mut a = Client::new("a", &["t"]);
    a.heartbeat(&c2, &t);
    let mut b = Client::new("b", &["t"]);
    b.heartbeat(&c2, &t);
    a.heartbeat(&c2, &t);
    c2.tick_at(Instant::now() + Duration::from_secs(61));
    let v = c2.describe_consumer_group("g").expect("group");
    assert_eq!(
        v.members
            .iter()
            .map(|m| m.member_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    b.heartbeat(&c2, &t);
    assert_eq!(count(&b.owned), 4);
}

#[test]
fn regex_subscriptions_follow_the_topics_that_match() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let mut t = Topics::new(&[("orders-eu", 2), ("orders-us", 2), ("payments", 3)]);
    let mut req = Client::new("a", &[]).request();
    req.topics = None;
    req.regex = Some("orders-.*".into());
    let out = c.consumer_heartbeat(req, &t);
    assert_eq!(out.error, 0);
    let a = out.assignment.expect("assignment");
    assert_eq!(
        a.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([t.id("orders-eu"), t.id("orders-us")])
    );
    let epoch = out.member_epoch;
    // A new matching topic: a new group epoch, and the member gets it.
    t.0.insert("orders-jp".into(), (Uuid::new_v4(), 1));
    let mut cl = Client::new("a", &[]);
    cl.epoch = epoch;
    cl.owned = a;
    let out = cl.heartbeat(&c, &t);
    assert!(out.member_epoch > epoch);
    assert!(cl.owned.contains_key(&t.id("orders-jp")));
    // Only whole names match: "xorders-eu" is not an orders- topic.
    t.0.insert("xorders-eu".into(), (Uuid::new_v4(), 1));
    cl.heartbeat(&c, &t);
    assert!(!cl.owned.contains_key(&t.id("xorders-eu")));
    // A pattern that does not compile is refused, and changes nothing.
    let mut bad = Client::new("b", &[]).request();
    bad.topics = None;
    bad.regex = Some("orders-(".into());
    assert_eq!(c.consumer_heartbeat(bad, &t).error, 128);
    assert_eq!(
        c.describe_consumer_group("g").expect("group").members.len(),
        1
    );
}

#[test]
fn malformed_heartbeats_are_refused() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 1)]);
    let ok = Client::new("a", &["t"]).request();
    let cases: Vec<(Heartbeat, i16)> = vec![
        (
            Heartbeat {
                group_id: String::new(),
                ..ok.clone()
            },
            42,
        ),
        (
            Heartbeat {
                member_id: String::new(),
                ..ok.clone()
            },
            42,
        ),
        (
            Heartbeat {
                rebalance_timeout_ms: -1,
                ..ok.clone()
            },
            42,
        ),
        (
            Heartbeat {
                owned: None,
                ..ok.clone()
            },
            42,
        ),
        (
            Heartbeat {
                topics: None,
                ..ok.clone()
            },
            42,
        ),
        (
            Heartbeat {
                member_epoch: -3,
                ..ok.clone()
            },
            42,
        ),
        (
            Heartbeat {
                assignor: Some("sticky".into()),
                ..ok.clone()
            },
            112,
        ),
    ];
    for (req, code) in cases {
        assert_eq!(c.consumer_heartbeat(req.clone(), &t).error, code, "{req:?}");
    }
    assert!(c.describe_consumer_group("g").is_none());
    // v0: the coordinator names a new member.
    let out = c.consumer_heartbeat(
        Heartbeat {
            member_id: String::new(),
            version: 0,
            ..ok
        },
        &t,
    );
    assert_eq!(out.error, 0);
    assert_eq!(out.member_id.len(), 32);
}

#[test]
fn range_gives_consecutive_partitions_per_topic() {
    let t = Topics::new(&[("a", 5), ("b", 2)]);
    let subs: BTreeMap<String, BTreeSet<String>> = [
        ("m1", vec!["a", "b"]),
        ("m2", vec!["a", "b"]),
        ("m3", vec!["a"]),
    ]
    .into_iter()
    .map(|(m, ts)| (m.to_string(), ts.into_iter().map(String::from).collect()))
    .collect();
    let out = range(&subs, &t.0);
    let (a, b) = (t.id("a"), t.id("b"));
    assert_eq!(out["m1"][&a], BTreeSet::from([0, 1]));
    assert_eq!(out["m2"][&a], BTreeSet::from([2, 3]));
    assert_eq!(out["m3"][&a], BTreeSet::from([4]));
    assert_eq!(out["m1"][&b], BTreeSet::from([0]));
    assert_eq!(out["m2"][&b], BTreeSet::from([1]));
    assert!(!out["m3"].contains_key(&b));
}

#[test]
fn uniform_respects_subscriptions_and_balances_what_it_can() {
    let t = Topics::new(&[("a", 4), ("b", 4)]);
    let subs: BTreeMap<String, BTreeSet<String>> =
        [("m1", vec!["a"]), ("m2", vec!["a", "b"]), ("m3", vec!["b"])]
            .into_iter()
            .map(|(m, ts)| (m.to_string(), ts.into_iter().map(String::from).collect()))
            .collect();
    let out = uniform(&subs, &t.0, &BTreeMap::new());
    let counts: Vec<usize> = out.values().map(count).collect();
    assert_eq!(counts.iter().sum::<usize>(), 8);
    assert!(counts.iter().all(|n| (2..=3).contains(n)), "{counts:?}");
    assert!(!out["m1"].contains_key(&t.id("b")));
    assert!(!out["m3"].contains_key(&t.id("a")));
    // The same input again changes nothing (sticky).
    assert_eq!(uniform(&subs, &t.0, &out), out);
}

#[test]
fn commits_and_fetches_need_the_current_member_epoch() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 2)]);
    let mut a = Client::new("a", &["t"]);
    a.heartbeat(&c, &t);
    assert_eq!(c.validate_commit("g", a.epoch, "a", None), 0);
    assert_eq!(c.validate_commit("g", a.epoch - 1, "a", None), 113);
    assert_eq!(c.validate_commit("g", a.epoch, "nobody", None), 25);
    // Without a member (the admin client): not while the group has members.
    assert_eq!(c.validate_commit("g", -1, "", None), 25);
    assert_eq!(c.validate_fetch("g", Some("a"), a.epoch + 1), 113);
    assert_eq!(c.validate_fetch("g", None, -1), 0);
    // The topic is in use; the group is not deletable while it has members.
    assert!(c.consumes("g", "t"));
    assert_eq!(c.remove_group("g"), 68);
    assert_eq!(c.list()[0].2, "consumer");
    assert_eq!(c.group_type("g"), "consumer");
    let d = c.describe("g").expect("classic view");
    assert_eq!(
        (d.protocol_type.as_str(), d.protocol.as_str()),
        ("consumer", "uniform")
    );
    let assigned = crate::http::assigned(&d.members[0].5);
    assert_eq!(assigned, vec![("t".to_string(), vec![0, 1])]);
}

/// A classic JoinGroup of a new member of group "g" listing `protocols`.
fn classic_request(protocols: Vec<(String, bytes::Bytes)>) -> crate::group::JoinRequest {
    crate::group::JoinRequest {
        group_id: "g".into(),
        member_id: String::new(),
        instance_id: None,
        client_id: "classic".into(),
        host: String::new(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocol_type: "consumer".into(),
        protocols,
        require_known_member_id: false,
        supports_skip_assignment: true,
    }
}

#[test]
fn a_group_of_the_other_kind_is_refused_unless_it_is_empty_or_a_stable_classic_group() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 2)]);
    let mut a = Client::new("a", &["t"]);
    a.heartbeat(&c, &t);
    let reply = c.join(classic_request(vec![("range".into(), bytes::Bytes::new())]));
    match reply {
        crate::group::Reply::Now(o) => assert_eq!(o.error, 23),
        crate::group::Reply::Later(_) => panic!("a classic member joined a consumer group"),
    }
    // Once it is empty, the id can serve a classic group.
    c.consumer_heartbeat(
        Heartbeat {
            member_epoch: -1,
            ..a.request()
        },
        &t,
    );
    let reply = c.join(classic_request(vec![("range".into(), bytes::Bytes::new())]));
    assert!(matches!(reply, crate::group::Reply::Later(_)));
    // ... and a consumer member is refused while that classic group rebalances (only a
    // stable classic group converts).
    let out = Client::new("b", &["t"]).heartbeat(&c, &t);
    assert_eq!(out.error, 69);
}

#[test]
fn a_new_coordinator_carries_on_from_the_recorded_group() {
    let old = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let mut clients = vec![Client::new("a", &["t"]), Client::new("b", &["t"])];
    converge(&old, &t, &mut clients);
    let writes = old.consumer_writes();
    assert_eq!(writes.len(), 1);
    assert!(old.consumer_writes().is_empty(), "nothing changed since");
    let (group, record) = writes.into_iter().next().expect("write");
    let record = record.expect("record");
    // The record survives its encoding.
    let bytes = crate::group::record::encode_consumer(&record);
    assert_eq!(
        crate::group::record::decode_consumer(&bytes).as_ref(),
        Some(&record)
    );
    let new = GroupCoordinator::new(Duration::ZERO);
    new.restore_consumer(&group, record);
    let v = new.describe_consumer_group("g").expect("restored");
    assert_eq!((v.state, v.members.len()), ("Stable", 2));
    // Members heartbeat on at their epochs and keep their partitions.
    for cl in clients.iter_mut() {
        let had = cl.owned.clone();
        let out = cl.heartbeat(&new, &t);
        assert_eq!(out.error, 0, "{:?}", out.message);
        assert_eq!(cl.owned, had);
    }
    // Deleting the (now empty) group leaves a tombstone.
    for cl in &clients {
        new.consumer_heartbeat(
            Heartbeat {
                member_epoch: -1,
                ..cl.request()
            },
            &t,
        );
    }
    assert_eq!(new.remove_group("g"), 0);
    assert!(new
        .consumer_writes()
        .iter()
        .any(|(g, r)| g == "g" && r.is_none()));
}

/// A classic consumer's subscription metadata (consumer protocol v1: with owned partitions).
fn subscription(topics: &[&str], owned: &[(&str, Vec<i32>)]) -> bytes::Bytes {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let s = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.to_string()))
                .collect(),
        )
        .with_owned_partitions(
            owned
                .iter()
                .map(|(t, ps)| {
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps.clone())
                })
                .collect(),
        );
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&1i16.to_be_bytes());
    s.encode(&mut buf, 1).expect("encode");
    buf.freeze()
}

fn classic_join(
    c: &GroupCoordinator,
    t: &Topics,
    member_id: &str,
    owned: &[(&str, Vec<i32>)],
) -> crate::group::JoinOutcome {
    let reply = c.join_with(
        crate::group::JoinRequest {
            member_id: member_id.into(),
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(30),
            ..classic_request(vec![(
                "cooperative-sticky".into(),
                subscription(&["t"], owned),
            )])
        },
        t,
    );
    match reply {
        crate::group::Reply::Now(o) => o,
        crate::group::Reply::Later(mut rx) => rx.try_recv().expect("join answered"),
    }
}

fn partitions_of_assignment(bytes: &bytes::Bytes) -> Vec<i32> {
    crate::http::assigned(bytes)
        .into_iter()
        .flat_map(|(_, ps)| ps)
        .collect()
}

/// A stable classic group "g" with one member owning all four partitions of "t": its member
/// id and generation.
fn classic_group_owning_all(c: &GroupCoordinator, t: &Topics) -> (String, i32) {
    let joined = classic_join(c, t, "", &[]);
    assert_eq!(joined.error, 0);
    let classic = joined.member_id.clone();
    let all = {
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_string("t".into())))
                .with_partitions(vec![0, 1, 2, 3]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        a.encode(&mut buf, 0).expect("encode");
        buf.freeze()
    };
    let synced = c.sync(
        "g",
        joined.generation,
        &classic,
        None,
        vec![(classic.clone(), all)],
    );
    let (generation, _) = synced.store.expect("leader's assignment to store");
    c.stored("g", generation, true, 0);
    assert_eq!(c.describe("g").expect("group").state, "Stable");
    (classic, generation)
}

#[test]
fn a_classic_group_upgrades_online_and_its_classic_member_gives_partitions_up_by_rejoining() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let (classic, generation) = classic_group_owning_all(&c, &t);

    // A consumer-protocol member joins: the group converts; the classic member keeps its
    // epoch (its generation) and its partitions until it rejoins.
    let mut new = Client::new("new", &["t"]);
    let out = new.heartbeat(&c, &t);
    assert_eq!(out.error, 0, "{:?}", out.message);
    assert_eq!(c.group_type("g"), "consumer");
    let v = c.describe_consumer_group("g").expect("consumer group");
    assert_eq!(v.members.len(), 2);
    let kinds: BTreeSet<i8> = v.members.iter().map(|m| m.member_type).collect();
    assert_eq!(kinds, BTreeSet::from([0, 1]));
    assert_eq!(count(&new.owned), 0, "nothing is free yet");
    // The classic member is told to rebalance, rejoins with what it owns, and is given
    // only what it keeps (cooperative: it revokes the rest, then rejoins).
    assert_eq!(c.heartbeat("g", generation, &classic, None), 27);
    let j = classic_join(&c, &t, &classic, &[("t", vec![0, 1, 2, 3])]);
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (0, generation, "")
    );
    let s = c.sync("g", j.generation, &classic, None, vec![]);
    let kept = match s.reply {
        crate::group::Reply::Now(o) => {
            assert_eq!(o.protocol_name.as_deref(), Some("cooperative-sticky"));
            partitions_of_assignment(&o.assignment)
        }
        crate::group::Reply::Later(_) => panic!("sync waits"),
    };
    assert_eq!(kept.len(), 2);
    // The new member still waits: the classic member has not rejoined without them.
    new.heartbeat(&c, &t);
    assert_eq!(count(&new.owned), 0);
    let j = classic_join(&c, &t, &classic, &[("t", kept.clone())]);
    assert!(j.generation > generation);
    assert_eq!(c.heartbeat("g", j.generation, &classic, None), 0);
    new.heartbeat(&c, &t);
    assert_eq!(count(&new.owned), 2);
    let theirs: BTreeSet<i32> = new.owned.values().flatten().copied().collect();
    assert!(kept.iter().all(|p| !theirs.contains(p)));
    // Commits are checked against each member's epoch, whichever its protocol.
    assert_eq!(c.validate_commit("g", j.generation, &classic, None), 0);
    // A classic member is told in its own terms: ILLEGAL_GENERATION.
    assert_eq!(c.validate_commit("g", generation, &classic, None), 22);
    // The classic member leaves with LeaveGroup: the new member gets everything.
    assert_eq!(c.leave("g", &[classic]), vec![0]);
    new.heartbeat(&c, &t);
    assert_eq!(count(&new.owned), 4);
}

#[test]
fn each_member_regex_is_matched_with_what_its_own_heartbeat_may_see() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let all = Topics::new(&[("rx-open", 1), ("rx-secret", 1)]);
    // What a's principal may see when matching: rx-open only (lookups by name are not
    // filtered, as the broker's VisibleTopics).
    struct Limited<'a>(&'a Topics);
    impl TopicSource for Limited<'_> {
        fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.lookup(name)
        }
        fn names(&self) -> Vec<String> {
            vec!["rx-open".to_string()]
        }
    }
    let limited = Limited(&all);
    let regex_member = |id: &str| {
        let mut r = Client::new(id, &[]).request();
        r.topics = None;
        r.regex = Some("rx-.*".into());
        r
    };
    let out_a = c.consumer_heartbeat(regex_member("a"), &limited);
    assert_eq!(out_a.error, 0);
    let out_b = c.consumer_heartbeat(regex_member("b"), &all);
    assert_eq!(out_b.error, 0);
    let resolved = |id: &str| {
        let v = c.describe_consumer_group("g").expect("group");
        let m = v
            .members
            .iter()
            .find(|m| m.member_id == id)
            .expect("member");
        m.target
            .keys()
            .map(|t| v.topic_names[t].clone())
            .collect::<BTreeSet<_>>()
    };
    // a's next heartbeat (with its own, limited view) does not take rx-secret from b, and
    // b's did not give it to a.
    let mut a = Client::new("a", &[]);
    a.epoch = out_a.member_epoch;
    a.owned = out_a.assignment.unwrap_or_default();
    let mut req = a.request();
    req.regex = None;
    c.consumer_heartbeat(req, &limited);
    assert!(!resolved("a").contains("rx-secret"), "{:?}", resolved("a"));
    assert!(resolved("b").contains("rx-secret"), "{:?}", resolved("b"));
}

/// A classic JoinGroup of `member_id` (empty: a new member) with `instance` and one
/// protocol, subscribing to "t" and owning nothing.
fn classic_join_as(
    c: &GroupCoordinator,
    t: &Topics,
    member_id: &str,
    instance: Option<&str>,
    protocol: &str,
) -> crate::group::JoinOutcome {
    let reply = c.join_with(
        crate::group::JoinRequest {
            member_id: member_id.into(),
            instance_id: instance.map(String::from),
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(30),
            ..classic_request(vec![(protocol.into(), subscription(&["t"], &[]))])
        },
        t,
    );
    match reply {
        crate::group::Reply::Now(o) => o,
        crate::group::Reply::Later(mut rx) => rx.try_recv().expect("join answered"),
    }
}

/// A consumer group "g" started by consumer-protocol member "new", then joined by a classic
/// member: the consumer member and the classic member's id.
fn mixed_group(c: &GroupCoordinator, t: &Topics, instance: Option<&str>) -> (Client, String) {
    let mut new = Client::new("new", &["t"]);
    new.instance = instance.map(String::from);
    assert_eq!(new.heartbeat(c, t).error, 0);
    let j = classic_join_as(c, t, "", None, "cooperative-sticky");
    assert_eq!(j.error, 0);
    assert_eq!(c.group_type("g"), "consumer");
    (new, j.member_id)
}

fn leave(c: &GroupCoordinator, t: &Topics, member: &Client, epoch: i32) -> HeartbeatOutcome {
    c.consumer_heartbeat(
        Heartbeat {
            member_epoch: epoch,
            ..member.request()
        },
        t,
    )
}

#[test]
fn a_consumer_group_left_with_classic_members_only_is_classic_again() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let (classic, _) = classic_group_owning_all(&c, &t);
    let mut new = Client::new("new", &["t"]);
    assert_eq!(new.heartbeat(&c, &t).error, 0);
    // The classic member gives two partitions up and moves to the group's epoch.
    let j = classic_join(&c, &t, &classic, &[("t", vec![0, 1, 2, 3])]);
    let s = c.sync("g", j.generation, &classic, None, vec![]);
    let kept = match s.reply {
        crate::group::Reply::Now(o) => partitions_of_assignment(&o.assignment),
        crate::group::Reply::Later(_) => panic!("sync waits"),
    };
    let j = classic_join(&c, &t, &classic, &[("t", kept.clone())]);
    let held = j.generation;
    assert_eq!(c.describe_consumer_group("g").expect("group").epoch, held);
    new.heartbeat(&c, &t);
    assert_eq!(count(&new.owned), 2);
    c.tick();
    c.consumer_writes();

    // The consumer-protocol member leaves: the classic member is alone, so the group is a
    // classic group again at the generation the member holds, preparing a rebalance.
    let out = leave(&c, &t, &new, -1);
    assert_eq!(out.error, 0, "{:?}", out.message);
    assert_eq!(c.group_type("g"), "classic");
    let d = c.describe("g").expect("classic group");
    assert_eq!((d.state, d.generation), ("PreparingRebalance", held));
    assert_eq!(d.members.len(), 1);
    // It still shows what the member owns, and the member may commit, until it rejoins.
    assert_eq!(partitions_of_assignment(&d.members[0].5), kept);
    assert_eq!(c.validate_commit("g", held, &classic, None), 0);
    // The classic group's record and the consumer group's tombstone are written together.
    let TickWrites {
        classic: classic_writes,
        consumer: consumer_writes,
        ..
    } = c.tick_writes();
    let (_, record) = classic_writes
        .iter()
        .find(|(g, _)| g == "g")
        .expect("record");
    assert_eq!(record.as_ref().map(|r| r.generation), Some(held));
    assert!(consumer_writes.iter().any(|(g, r)| g == "g" && r.is_none()));
    // The member learns it from its heartbeat, rejoins, leads and assigns.
    assert_eq!(c.heartbeat("g", held, &classic, None), 27);
    let j = classic_join(&c, &t, &classic, &[("t", kept)]);
    assert_eq!(j.error, 0);
    assert_eq!(
        (j.generation, j.leader.as_str()),
        (held + 1, classic.as_str())
    );
    assert_eq!(
        j.members.len(),
        1,
        "the leader gets the members' subscriptions"
    );
    let s = c.sync("g", j.generation, &classic, None, vec![]);
    let (generation, _) = s.store.expect("leader's assignment to store");
    c.stored("g", generation, true, 0);
    assert_eq!(c.describe("g").expect("group").state, "Stable");
    assert_eq!(c.heartbeat("g", generation, &classic, None), 0);
    // A consumer-protocol member can upgrade it again.
    let mut again = Client::new("again", &["t"]);
    assert_eq!(again.heartbeat(&c, &t).error, 0);
    assert_eq!(c.group_type("g"), "consumer");
}

#[test]
fn a_consumer_member_that_expires_or_is_removed_downgrades_the_group_too() {
    let c = GroupCoordinator::new(Duration::ZERO).with_consumer_config(ConsumerGroupConfig {
        session_timeout: Duration::from_secs(1),
        ..Default::default()
    });
    let t = Topics::new(&[("t", 4)]);
    mixed_group(&c, &t, None);
    let epoch = c.describe_consumer_group("g").expect("group").epoch;
    // The classic member's session (30 s) outlives the consumer member's (1 s).
    c.tick_at(Instant::now() + Duration::from_secs(5));
    assert_eq!(c.group_type("g"), "classic");
    let d = c.describe("g").expect("classic group");
    assert_eq!((d.state, d.generation), ("PreparingRebalance", epoch));

    // LeaveGroup does not remove a consumer-protocol member (Kafka answers
    // UNKNOWN_MEMBER_ID: it leaves with its own heartbeat), so nothing downgrades.
    let c = GroupCoordinator::new(Duration::ZERO);
    mixed_group(&c, &t, None);
    assert_eq!(c.leave("g", &["new".to_string()]), vec![25]);
    assert_eq!(c.group_type("g"), "consumer");
}

#[test]
fn a_static_members_temporary_leave_does_not_downgrade() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let (new, _) = mixed_group(&c, &t, Some("i1"));
    assert_eq!(leave(&c, &t, &new, -2).error, 0);
    assert_eq!(c.group_type("g"), "consumer");
}

#[test]
fn the_migration_policy_decides_which_conversions_happen() {
    let t = Topics::new(&[("t", 4)]);
    let with = |migration| {
        GroupCoordinator::new(Duration::ZERO).with_consumer_config(ConsumerGroupConfig {
            migration,
            ..Default::default()
        })
    };
    // Downgrades happen under downgrade and bidirectional only.
    for (policy, after) in [
        (MigrationPolicy::Downgrade, "classic"),
        (MigrationPolicy::Bidirectional, "classic"),
        (MigrationPolicy::Upgrade, "consumer"),
        (MigrationPolicy::Disabled, "consumer"),
    ] {
        let c = with(policy);
        let (new, _) = mixed_group(&c, &t, None);
        assert_eq!(leave(&c, &t, &new, -1).error, 0);
        assert_eq!(c.group_type("g"), after, "{policy:?}");
    }
    // Upgrades under upgrade and bidirectional only: otherwise a consumer-protocol member
    // is refused as Kafka refuses it (GROUP_ID_NOT_FOUND) and the classic group carries on.
    for (policy, error, after) in [
        (MigrationPolicy::Upgrade, 0, "consumer"),
        (MigrationPolicy::Downgrade, 69, "classic"),
        (MigrationPolicy::Disabled, 69, "classic"),
    ] {
        let c = with(policy);
        classic_group_owning_all(&c, &t);
        let out = Client::new("new", &["t"]).heartbeat(&c, &t);
        assert_eq!((out.error, c.group_type("g")), (error, after), "{policy:?}");
    }
    assert_eq!(
        MigrationPolicy::parse("BIDIRECTIONAL"),
        Some(MigrationPolicy::Bidirectional)
    );
    assert_eq!(MigrationPolicy::parse("both"), None);
}

#[test]
fn classic_members_of_a_consumer_group_are_static_and_share_a_protocol() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let mut new = Client::new("new", &["t"]);
    assert_eq!(new.heartbeat(&c, &t).error, 0);
    let first = classic_join_as(&c, &t, "", Some("i1"), "cooperative-sticky");
    assert_eq!(
        first.error, 0,
        "a static member needs no MEMBER_ID_REQUIRED round"
    );
    // Restarted: a new member id takes the place; the old incarnation is fenced.
    let second = classic_join_as(&c, &t, "", Some("i1"), "cooperative-sticky");
    assert_eq!(second.error, 0);
    assert_ne!(second.member_id, first.member_id);
    let v = c.describe_consumer_group("g").expect("group");
    assert_eq!(
        v.members.len(),
        2,
        "the consumer member and one classic member"
    );
    let old = classic_join_as(&c, &t, &first.member_id, Some("i1"), "cooperative-sticky");
    assert_eq!(old.error, 82);
    // A classic member sharing no protocol with the others is refused.
    let other = classic_join_as(&c, &t, "", None, "range");
    assert_eq!(other.error, 23);
    // The group downgrades with one member per instance id.
    assert_eq!(leave(&c, &t, &new, -1).error, 0);
    let d = c.describe("g").expect("classic group");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].0, second.member_id);
}

#[test]
fn a_downgrade_record_still_queued_gives_way_to_the_next_generations() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let (new, classic) = mixed_group(&c, &t, None);
    assert_eq!(leave(&c, &t, &new, -1).error, 0);
    let generation = c.describe("g").expect("classic group").generation;
    // The member rejoins and its assignment is stored before the next tick.
    let j = classic_join_as(&c, &t, &classic, None, "cooperative-sticky");
    assert_eq!(j.generation, generation + 1);
    let s = c.sync("g", j.generation, &classic, None, vec![]);
    assert!(s.store.is_some());
    let TickWrites {
        classic: classic_writes,
        consumer: consumer_writes,
        ..
    } = c.tick_writes();
    assert!(
        !classic_writes.iter().any(|(g, r)| g == "g" && r.is_some()),
        "the conversion's record (generation {generation}) would follow the stored one"
    );
    assert!(consumer_writes.iter().any(|(g, r)| g == "g" && r.is_none()));
}

#[test]
fn a_restarted_static_classic_member_gets_its_partitions_back_and_fences_the_old_one() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let mut new = Client::new("new", &["t"]);
    assert_eq!(new.heartbeat(&c, &t).error, 0);
    assert_eq!(count(&new.owned), 4);
    let first = classic_join_as(&c, &t, "", Some("i1"), "cooperative-sticky");
    assert_eq!(first.error, 0);
    // The consumer member gives two up; the classic member then gets them by rejoining.
    new.heartbeat(&c, &t);
    new.heartbeat(&c, &t);
    assert_eq!(count(&new.owned), 2);
    let j = classic_join_as(&c, &t, &first.member_id, Some("i1"), "cooperative-sticky");
    let assigned = |member: &str, generation: i32| match c
        .sync("g", generation, member, Some("i1"), vec![])
        .reply
    {
        crate::group::Reply::Now(o) => {
            assert_eq!(o.error, 0);
            partitions_of_assignment(&o.assignment)
        }
        crate::group::Reply::Later(_) => panic!("sync waits"),
    };
    let before = assigned(&first.member_id, j.generation);
    assert_eq!(before.len(), 2);
    assert_eq!(
        c.heartbeat("g", j.generation, &first.member_id, Some("i1")),
        0
    );

    // Restarted: a new member id, owning nothing, gets the same two partitions at once.
    let second = classic_join_as(&c, &t, "", Some("i1"), "cooperative-sticky");
    assert_eq!((second.error, second.generation), (0, j.generation));
    assert_eq!(assigned(&second.member_id, second.generation), before);
    assert_eq!(
        c.member_for_instance("g", "i1").as_deref(),
        Some(second.member_id.as_str())
    );
    // The old incarnation is fenced on every path.
    assert_eq!(
        c.heartbeat("g", j.generation, &first.member_id, Some("i1")),
        82
    );
    assert_eq!(
        c.validate_commit("g", j.generation, &first.member_id, Some("i1")),
        82
    );
    match c
        .sync("g", j.generation, &first.member_id, Some("i1"), vec![])
        .reply
    {
        crate::group::Reply::Now(o) => assert_eq!(o.error, 82),
        crate::group::Reply::Later(_) => panic!("sync waits"),
    }
}

#[test]
fn leave_group_in_a_consumer_group_names_classic_members_only_as_kafka_does() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    let mut new = Client::new("new", &["t"]);
    assert_eq!(new.heartbeat(&c, &t).error, 0);
    let j = classic_join_as(&c, &t, "", Some("i1"), "cooperative-sticky");
    assert_eq!(j.error, 0);
    // A member id with an instance nobody holds: "instance id is unknown".
    let ghost = classic_join_as(&c, &t, "made-up", Some("i9"), "cooperative-sticky");
    assert_eq!(ghost.error, 25);
    assert!(
        c.member_for_instance("g", "i9").is_none(),
        "nothing created"
    );
    let s = |x: &str| x.to_string();
    // Another incarnation of i1, an unknown instance, and a consumer-protocol member (which
    // leaves with its own heartbeat): refused, and nobody leaves.
    assert_eq!(
        c.leave_members(
            "g",
            &[
                (s("stale"), Some(s("i1"))),
                (s(""), Some(s("i9"))),
                (s("new"), None),
            ]
        ),
        vec![(s("stale"), 82), (s(""), 25), (s("new"), 25)]
    );
    assert_eq!(
        c.member_for_instance("g", "i1").as_deref(),
        Some(j.member_id.as_str())
    );
    // By instance id alone (an administrative removal): the member that left is echoed.
    assert_eq!(
        c.leave_members("g", &[(s(""), Some(s("i1")))]),
        vec![(j.member_id.clone(), 0)]
    );
    assert!(c.member_for_instance("g", "i1").is_none());
    assert_eq!(c.group_type("g"), "consumer");
}

#[test]
fn an_upgraded_groups_classic_tombstone_is_written_after_its_consumer_record() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t = Topics::new(&[("t", 4)]);
    classic_group_owning_all(&c, &t);
    c.tick_writes();
    let mut new = Client::new("new", &["t"]);
    assert_eq!(new.heartbeat(&c, &t).error, 0);
    assert_eq!(c.group_type("g"), "consumer");
    let w = c.tick_writes();
    // Written in this order: nothing classic first, then the consumer record, then the
    // classic tombstone (a failed consumer append leaves the classic record, not nothing).
    assert!(!w.classic.iter().any(|(g, _)| g == "g"));
    assert!(w.consumer.iter().any(|(g, r)| g == "g" && r.is_some()));
    assert_eq!(w.upgraded, ["g"]);
    assert!(c.tick_writes().upgraded.is_empty(), "written once");

    // Upgraded and downgraded again within one tick: the classic record is the last word,
    // no tombstone after it.
    let c = GroupCoordinator::new(Duration::ZERO);
    classic_group_owning_all(&c, &t);
    c.tick_writes();
    let mut new = Client::new("new", &["t"]);
    assert_eq!(new.heartbeat(&c, &t).error, 0);
    assert_eq!(leave(&c, &t, &new, -1).error, 0);
    assert_eq!(c.group_type("g"), "classic");
    let w = c.tick_writes();
    assert!(w.classic.iter().any(|(g, r)| g == "g" && r.is_some()));
    assert!(w.upgraded.is_empty());
}
