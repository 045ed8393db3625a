//! Unit tests of the group state machine: inputs in, replies and states out, time driven
//! by `tick_at` instead of sleeps.

use super::*;

/// A JoinGroup of a consumer using "range", dynamic unless `instance` is given.
fn request(group: &str, member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member.into(),
        instance_id: instance.map(Into::into),
        client_id: "c".into(),
        host: "h".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(10),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        // Static members (and pre-v4 clients) join without the MEMBER_ID_REQUIRED step.
        require_known_member_id: instance.is_none(),
        supports_skip_assignment: true,
    }
}

/// SyncGroup as the handler runs it: the leader's assignment is stored (as if written
/// and replicated) before any member gets it.
fn sync(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member: &str,
    assignments: Vec<(String, Bytes)>,
) -> Reply<SyncOutcome> {
    let r = c.sync(group, generation, member, None, assignments);
    if let Some((g, _)) = r.store {
        c.stored(group, g, true, 0);
    }
    r.reply
}

fn join(c: &GroupCoordinator, member: &str) -> Reply<JoinOutcome> {
    c.join(request("g", member, None))
}

fn now<T>(r: Reply<T>) -> T {
    match r {
        Reply::Now(v) => v,
        Reply::Later(mut rx) => rx.try_recv().expect("answered"),
    }
}

#[test]
fn two_members_form_a_stable_group() {
    // A new group waits its initial delay for more members before the first rebalance.
    let c = GroupCoordinator::new(Duration::from_secs(3));
    let a = now(join(&c, "")).member_id;
    let b = now(join(&c, "")).member_id;
    let mut ra = match join(&c, &a) {
        Reply::Later(rx) => rx,
        Reply::Now(o) => panic!("answered before the delay: {o:?}"),
    };
    let rb = join(&c, &b);
    c.tick();
    assert!(ra.try_recv().is_err(), "still within the initial delay");
    c.tick_at(Instant::now() + Duration::from_secs(4));
    let ra = Reply::Now(ra.try_recv().expect("joined at the deadline"));
    let (ja, jb) = (now(ra), now(rb));
    assert_eq!((ja.error, jb.error), (0, 0));
    assert_eq!(ja.generation, jb.generation);
    let leader = ja.leader.clone();
    let (lead, follow) = if leader == a {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    };
    let lj = if leader == a { &ja } else { &jb };
    assert_eq!(lj.members.len(), 2, "the leader sees every member");
    let follower_sync = sync(&c, "g", ja.generation, &follow, vec![]);
    let leader_sync = sync(
        &c,
        "g",
        ja.generation,
        &lead,
        vec![
            (lead.clone(), Bytes::from_static(b"p0")),
            (follow.clone(), Bytes::from_static(b"p1")),
        ],
    );
    assert_eq!(now(leader_sync).assignment, Bytes::from_static(b"p0"));
    assert_eq!(now(follower_sync).assignment, Bytes::from_static(b"p1"));
    assert_eq!(c.heartbeat("g", ja.generation, &a, None), 0);
    assert_eq!(
        c.heartbeat("g", ja.generation - 1, &a, None),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        c.heartbeat("g", ja.generation, "nobody", None),
        UNKNOWN_MEMBER_ID
    );
    // A member leaves: the other is told to rebalance.
    assert_eq!(c.leave("g", std::slice::from_ref(&b)), vec![0]);
    assert_eq!(
        c.heartbeat("g", ja.generation, &a, None),
        REBALANCE_IN_PROGRESS
    );
    let again = now(join(&c, &a));
    assert_eq!(again.generation, ja.generation + 1);
    assert_eq!(again.leader, a);
}

#[test]
fn a_restarted_static_member_takes_its_place_back_without_a_rebalance() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let static_join = |member: &str| c.join(request("s", member, Some("instance-1")));
    let leader = now(join_group(&c, "s", "")).member_id;
    let leader_join = now(join_group(&c, "s", &leader));
    assert_eq!(leader_join.error, 0);
    // The new member's join starts a rebalance; it completes when the leader rejoins.
    let pending = static_join("");
    let lj = now(join_group(&c, "s", &leader));
    let first = now(pending);
    assert_eq!(first.error, 0);
    let gen = lj.generation;
    assert_eq!(first.generation, gen);
    now(sync(
        &c,
        "s",
        gen,
        &leader,
        vec![(first.member_id.clone(), Bytes::from_static(b"a1"))],
    ));
    // The static member restarts: a new member id, no new generation, same assignment.
    let again = now(static_join(""));
    assert_eq!(again.error, 0);
    assert_ne!(again.member_id, first.member_id);
    assert_eq!(again.generation, gen, "no rebalance");
    assert_eq!(
        now(sync(&c, "s", gen, &again.member_id, vec![])).assignment,
        Bytes::from_static(b"a1")
    );
    // The old incarnation is fenced, whatever it sends.
    assert_eq!(now(static_join(&first.member_id)).error, FENCED_INSTANCE_ID);
    assert_eq!(
        c.heartbeat("s", gen, &first.member_id, Some("instance-1")),
        FENCED_INSTANCE_ID
    );
    assert_eq!(
        now(c
            .sync("s", gen, &first.member_id, Some("instance-1"), vec![])
            .reply)
        .error,
        FENCED_INSTANCE_ID
    );
    assert_eq!(
        c.validate_commit("s", gen, &first.member_id, Some("instance-1")),
        FENCED_INSTANCE_ID
    );
    assert_eq!(
        c.heartbeat("s", gen, &again.member_id, Some("instance-1")),
        0
    );
}

#[test]
fn a_restarted_static_leader_keeps_the_generation() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let static_join = |member: &str, v9: bool| {
        c.join(JoinRequest {
            supports_skip_assignment: v9,
            ..request("sl", member, Some("leader-instance"))
        })
    };
    let first = now(static_join("", true));
    assert_eq!(first.leader, first.member_id, "the only member leads");
    let gen = first.generation;
    now(sync(
        &c,
        "sl",
        gen,
        &first.member_id,
        vec![(first.member_id.clone(), Bytes::from_static(b"mine"))],
    ));
    // Back with JoinGroup v9: told it leads, with the members, and to skip the assignment.
    let again = now(static_join("", true));
    assert_eq!((again.error, again.generation), (0, gen), "no rebalance");
    assert_eq!(again.leader, again.member_id);
    assert!(again.skip_assignment);
    assert_eq!(again.members.len(), 1);
    // The stable group keeps its assignment, whatever the leader sends.
    let synced = now(sync(
        &c,
        "sl",
        gen,
        &again.member_id,
        vec![(again.member_id.clone(), Bytes::from_static(b"other"))],
    ));
    assert_eq!(synced.assignment, Bytes::from_static(b"mine"));
    // Back with an older JoinGroup: told the previous member id leads, so it runs no assignor.
    let old_client = now(static_join("", false));
    assert_eq!((old_client.error, old_client.generation), (0, gen));
    assert_eq!(old_client.leader, again.member_id);
    assert!(old_client.members.is_empty() && !old_client.skip_assignment);
    assert_eq!(
        now(sync(&c, "sl", gen, &old_client.member_id, vec![])).assignment,
        Bytes::from_static(b"mine")
    );
}

#[test]
fn members_vote_for_the_protocol() {
    // The leader prefers roundrobin; the two others prefer range: range wins (Kafka's
    // selectProtocol), and a protocol one member lacks is never chosen.
    let c = GroupCoordinator::new(Duration::from_secs(3));
    let with = |member: &str, protocols: &[&str]| JoinRequest {
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from_static(b"m")))
            .collect(),
        ..request("v", member, None)
    };
    let ids: Vec<String> = (0..3)
        .map(|_| now(c.join(with("", &["range"]))).member_id)
        .collect();
    let r0 = c.join(with(&ids[0], &["roundrobin", "range", "sticky"]));
    let r1 = c.join(with(&ids[1], &["range", "roundrobin"]));
    let r2 = c.join(with(&ids[2], &["range", "roundrobin", "sticky"]));
    c.tick_at(Instant::now() + Duration::from_secs(4));
    let outcomes = [now(r0), now(r1), now(r2)];
    assert_eq!(outcomes[0].leader, ids[0], "the first to join leads");
    for o in &outcomes {
        assert_eq!(o.protocol_name.as_deref(), Some("range"));
    }
}

#[test]
fn unused_member_ids_expire() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let id = now(join(&c, "")).member_id;
    // Within its session timeout (10 s) the id may be used; after it, it is unknown.
    c.tick_at(Instant::now() + Duration::from_secs(11));
    assert_eq!(now(join(&c, &id)).error, UNKNOWN_MEMBER_ID);
    let fresh = now(join(&c, "")).member_id;
    c.tick_at(Instant::now() + Duration::from_secs(5));
    assert_eq!(now(join(&c, &fresh)).error, 0);
}

#[test]
fn silent_members_expire_and_laggards_miss_the_rebalance() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let t0 = Instant::now();
    let state = |c: &GroupCoordinator| c.describe("g").map(|d| d.state);
    let a = now(join(&c, "")).member_id;
    let first = now(join(&c, &a));
    // B has a shorter session (5 s) than A (10 s).
    let short = |member: &str| JoinRequest {
        session_timeout: Duration::from_secs(5),
        ..request("g", member, None)
    };
    let b = now(c.join(short(""))).member_id;
    // B's join starts a rebalance that completes when A rejoins.
    let pending_b = c.join(short(&b));
    let ja = now(join(&c, &a));
    let jb = now(pending_b);
    assert_eq!(ja.generation, first.generation + 1);
    assert_eq!(state(&c), Some("CompletingRebalance"));
    now(sync(&c, "g", ja.generation, &ja.leader, vec![]));
    assert_eq!(state(&c), Some("Stable"));
    // B falls silent past its session timeout: it is removed, a rebalance starts.
    assert_eq!(c.heartbeat("g", jb.generation, &a, None), 0);
    c.tick_at(t0 + Duration::from_secs(7));
    assert_eq!(state(&c), Some("PreparingRebalance"));
    assert_eq!(c.heartbeat("g", jb.generation, &b, None), UNKNOWN_MEMBER_ID);
    assert_eq!(
        c.heartbeat("g", ja.generation, &a, None),
        REBALANCE_IN_PROGRESS
    );
    // A neither rejoins within the rebalance timeout (max.poll.interval.ms, 10 s) nor
    // heartbeats: when the join phase ends it is out too, and the group is empty.
    c.tick_at(t0 + Duration::from_secs(30));
    assert_eq!(state(&c), Some("Empty"));
    assert_eq!(c.heartbeat("g", ja.generation, &a, None), UNKNOWN_MEMBER_ID);
}

fn join_group(c: &GroupCoordinator, group: &str, member: &str) -> Reply<JoinOutcome> {
    c.join(request(group, member, None))
}

#[test]
fn stale_commits_are_fenced() {
    let c = GroupCoordinator::new(Duration::ZERO);
    assert_eq!(
        c.validate_commit("g", -1, "", None),
        0,
        "standalone commits to no group"
    );
    assert_eq!(c.validate_commit("g", 3, "m", None), ILLEGAL_GENERATION);
    let a = now(join(&c, "")).member_id;
    let j = now(join(&c, &a));
    // Joined, not yet synced: the leader's assignment is awaited.
    assert_eq!(
        c.validate_commit("g", j.generation, &a, None),
        REBALANCE_IN_PROGRESS
    );
    now(sync(
        &c,
        "g",
        j.generation,
        &a,
        vec![(a.clone(), Bytes::from_static(b"p"))],
    ));
    assert_eq!(c.validate_commit("g", j.generation, &a, None), 0);
    assert_eq!(
        c.validate_commit("g", j.generation + 5, &a, None),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        c.validate_commit("g", -1, "", None),
        UNKNOWN_MEMBER_ID,
        "only members commit to a group with members"
    );
    assert_eq!(
        c.validate_commit("g", j.generation, "made-up", None),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(now(join(&c, "made-up")).error, UNKNOWN_MEMBER_ID);
    // A second member joining starts a rebalance: the current generation still commits.
    let b = now(join(&c, "")).member_id;
    let _pending = c.join(request("g", &b, None));
    assert_eq!(c.validate_commit("g", j.generation, &a, None), 0);
}

/// A one-member group "g" that is Stable at its first generation.
fn stable_group(c: &GroupCoordinator) -> (String, i32) {
    let a = now(join(c, "")).member_id;
    let j = now(join(c, &a));
    now(sync(
        c,
        "g",
        j.generation,
        &a,
        vec![(a.clone(), Bytes::from_static(b"p0"))],
    ));
    (a, j.generation)
}

/// A one-member group whose leader has sent its SyncGroup (assigning itself "p0"): the
/// member, its join, the receiver of the SyncGroup's answer (which the store has not
/// released yet) and the (generation, record) to store.
fn leader_synced_awaiting_store(
    c: &GroupCoordinator,
) -> (
    String,
    JoinOutcome,
    oneshot::Receiver<SyncOutcome>,
    (i32, GroupRecord),
) {
    let a = now(join(c, "")).member_id;
    let j = now(join(c, &a));
    let r = c.sync(
        "g",
        j.generation,
        &a,
        None,
        vec![(a.clone(), Bytes::from_static(b"p0"))],
    );
    let store = r
        .store
        .expect("the leader's SyncGroup leaves a record to store");
    match r.reply {
        Reply::Later(rx) => (a, j, rx, store),
        Reply::Now(o) => panic!("answered before the store: {o:?}"),
    }
}

#[test]
fn the_leaders_assignment_is_handed_out_only_once_stored() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let (a, j, _, (generation, record)) = leader_synced_awaiting_store(&c);
    // The leader's SyncGroup sent again while the record is being written: it waits for the
    // same store and writes nothing itself.
    let again = c.sync("g", j.generation, &a, None, vec![]);
    assert!(
        again.store.is_none(),
        "written once: a SyncGroup arriving meanwhile does not write it again"
    );
    let Reply::Later(mut waiting) = again.reply else {
        panic!("answered before the store");
    };
    assert_eq!(generation, j.generation);
    assert_eq!(record.members.len(), 1);
    assert_eq!(record.members[0].assignment, b"p0");
    assert_eq!(record.protocol.as_deref(), Some("range"));
    assert!(
        waiting.try_recv().is_err(),
        "not before the store completes"
    );
    c.stored("g", generation, true, 0);
    let got = waiting.try_recv().expect("answered");
    assert_eq!((got.error, got.assignment), (0, Bytes::from_static(b"p0")));
    assert_eq!(c.heartbeat("g", generation, &a, None), 0);
}

#[test]
fn a_failed_store_sends_members_to_rebalance() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let (a, _, mut waiting, (generation, _)) = leader_synced_awaiting_store(&c);
    c.stored("g", generation, false, 16);
    let got = waiting.try_recv().expect("answered");
    assert_eq!(got.error, 16);
    assert!(got.assignment.is_empty());
    assert_eq!(
        c.heartbeat("g", generation, &a, None),
        REBALANCE_IN_PROGRESS
    );
}

#[test]
fn a_new_coordinator_takes_the_group_over_at_its_generation() {
    let old = GroupCoordinator::new(Duration::from_secs(3));
    let a = now(join(&old, "")).member_id;
    let b = now(join(&old, "")).member_id;
    let ra = join(&old, &a);
    let rb = join(&old, &b);
    old.tick_at(Instant::now() + Duration::from_secs(4));
    let (ja, _) = (now(ra), now(rb));
    let leader = ja.leader.clone();
    let other = if leader == a { b.clone() } else { a.clone() };
    let synced = old.sync(
        "g",
        ja.generation,
        &leader,
        None,
        vec![
            (leader.clone(), Bytes::from_static(b"p0")),
            (other.clone(), Bytes::from_static(b"p1")),
        ],
    );
    let (generation, record) = synced.store.expect("record");
    old.stored("g", generation, true, 0);

    // The broker that leads the offsets partition next replays the record.
    let new = GroupCoordinator::new(Duration::ZERO);
    assert_eq!(new.heartbeat("g", generation, &a, None), UNKNOWN_MEMBER_ID);
    new.restore("g", record.clone());
    assert_eq!(
        new.heartbeat("g", generation, &a, None),
        0,
        "no rebalance for the members"
    );
    assert_eq!(new.heartbeat("g", generation, &b, None), 0);
    let d = new.describe("g").expect("described");
    assert_eq!(
        (d.state, d.generation, d.protocol.as_str()),
        ("Stable", generation, "range")
    );
    let assignment_of = |m: &str| {
        d.members
            .iter()
            .find(|row| row.0 == m)
            .map(|row| row.5.clone())
            .expect("member")
    };
    assert_eq!(assignment_of(&leader), Bytes::from_static(b"p0"));
    assert_eq!(assignment_of(&other), Bytes::from_static(b"p1"));
    assert_eq!(new.validate_commit("g", generation, &a, None), 0);
    // A restore never overwrites what the coordinator already knows.
    let mut stale = record;
    stale.generation = 1;
    new.restore("g", stale);
    assert_eq!(new.describe("g").expect("group").generation, generation);
    // The subscription survived: a follower rejoining with it is answered at once, at
    // the same generation, with the same leader.
    let rejoin = now(new.join(request("g", &other, None)));
    assert_eq!(
        (rejoin.error, rejoin.generation, rejoin.leader),
        (0, generation, leader.clone())
    );
    // Sessions restart at the takeover: silent members expire a session later.
    new.tick_at(Instant::now() + Duration::from_secs(11));
    assert!(new.describe("g").is_none_or(|d| d.members.is_empty()));
}

#[test]
fn empty_groups_and_deletions_leave_records_to_write() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let (a, generation) = stable_group(&c);
    assert!(
        c.tick().is_empty(),
        "the stable record was written by the sync"
    );
    assert_eq!(c.leave("g", std::slice::from_ref(&a)), vec![0]);
    let records = c.tick();
    assert_eq!(records.len(), 1);
    let (group, record) = &records[0];
    let record = record
        .as_ref()
        .expect("an empty-group record, not a tombstone");
    assert_eq!(group, "g");
    assert!(record.members.is_empty());
    assert!(record.generation > generation);
    assert!(c.tick().is_empty(), "written once");
    assert_eq!(c.remove_group("g"), 0);
    assert_eq!(c.tick(), vec![("g".to_string(), None)]);
    // Unloaded groups leave nothing to write.
    let (_, _) = stable_group(&c);
    assert_eq!(c.remove_group("g"), 68);
    c.forget_groups(|g| g == "g");
    assert!(c.tick().is_empty());
    // Deleted, then formed again and stored within one tick: the tombstone would follow
    // the new group's record, so it is not written.
    let (b, _) = stable_group(&c);
    assert_eq!(c.leave("g", std::slice::from_ref(&b)), vec![0]);
    c.tick();
    assert_eq!(c.remove_group("g"), 0);
    let (_, _) = stable_group(&c);
    assert!(
        !c.tick().iter().any(|(g, r)| g == "g" && r.is_none()),
        "a tombstone after the stored record"
    );
}

#[test]
fn leave_group_checks_instances_and_forgets_pending_member_ids() {
    let c = GroupCoordinator::new(Duration::ZERO);
    let first = now(c.join(request("s", "", Some("i1"))));
    assert_eq!(first.error, 0);
    let s = |x: &str| x.to_string();
    // An older incarnation of i1, unknown instances, and no id at all: refused.
    assert_eq!(
        c.leave_members(
            "s",
            &[
                (s("stale"), Some(s("i1"))),
                (s("x"), Some(s("nope"))),
                (s(""), Some(s("nope"))),
                (s(""), None),
            ]
        ),
        vec![
            (s("stale"), FENCED_INSTANCE_ID),
            (s("x"), UNKNOWN_MEMBER_ID),
            (s(""), UNKNOWN_MEMBER_ID),
            (s(""), UNKNOWN_MEMBER_ID),
        ]
    );
    assert_eq!(
        c.member_for_instance("s", "i1"),
        Some(first.member_id.clone())
    );
    // A member id handed out with MEMBER_ID_REQUIRED may leave before it joins; it is
    // forgotten, so joining with it afterwards is refused.
    let pending = now(c.join(request("s", "", None)));
    assert_eq!(pending.error, MEMBER_ID_REQUIRED);
    assert_eq!(
        c.leave_members("s", &[(pending.member_id.clone(), None)]),
        vec![(pending.member_id.clone(), 0)]
    );
    assert_eq!(
        now(c.join(request("s", &pending.member_id, None))).error,
        UNKNOWN_MEMBER_ID
    );
    // By instance id alone: the static member leaves; a classic group echoes the request.
    assert_eq!(
        c.leave_members("s", &[(s(""), Some(s("i1")))]),
        vec![(s(""), 0)]
    );
    assert_eq!(c.describe("s").expect("group").state, "Empty");
}
