//! The library's share consumer (`strom_client::share`, KIP-932) against live brokers:
//! members of one share group split a topic's records, each record to one member at a
//! time; what a member releases comes back (its delivery count one higher), what it rejects
//! or accepts never does; a member that closes leaves the group and its records go on to
//! the others; and the library and librdkafka-style behaviours hold across three brokers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use integration_tests::producer;
use integration_tests::{BrokerProcess, Cluster};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::share::{AcknowledgeType, ShareConsumer, ShareConsumerConfig, ShareRecord};

async fn produce(bootstrap: &str, topic: &str, n: usize, partitions: i32) {
    let producer = Producer::new(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    let mut ds = Vec::new();
    for i in 0..n {
        ds.push(
            producer
                .send(
                    ProducerRecord::new(topic, format!("v{i}"))
                        .with_partition(i as i32 % partitions),
                )
                .await
                .expect("queued"),
        );
    }
    for d in ds {
        d.await.expect("delivered");
    }
    producer.close().await;
}

fn consumer(bootstrap: &str, group: &str, explicit: bool) -> ShareConsumer {
    let mut config = ShareConsumerConfig::new(bootstrap, group);
    config.explicit_acknowledgement = explicit;
    let mut c = ShareConsumer::new(config).expect("share consumer");
    c.subscribe(&["jobs"]);
    c
}

/// Three brokers (share groups start at the earliest offset, heartbeats every 200 ms) and
/// their bootstrap list.
fn three_brokers(dir: &std::path::Path) -> (Cluster, String) {
    let cluster = Cluster::start(
        dir,
        1,
        3,
        &[],
        &[
            "--share-auto-offset-reset",
            "earliest",
            "--group-share-heartbeat-interval-ms",
            "200",
        ],
    )
    .expect("cluster");
    let bootstrap = cluster
        .brokers
        .iter()
        .map(|b| b.kafka.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (cluster, bootstrap)
}

/// Polls `c` until `enough` holds of everything it got, or 30 s pass.
async fn poll_until(
    c: &mut ShareConsumer,
    got: &mut Vec<ShareRecord>,
    enough: impl Fn(&[ShareRecord]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !enough(got) {
        assert!(
            Instant::now() < deadline,
            "timed out with {} records",
            got.len()
        );
        got.extend(c.poll(Duration::from_millis(500)).await.expect("poll"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_records_come_back_rejected_and_accepted_ones_never_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &[
            "--share-auto-offset-reset",
            "earliest",
            "--group-share-record-lock-duration-ms",
            "2000",
        ],
    )
    .expect("start");
    let bootstrap = broker.kafka.to_string();
    producer::create_replicated_topic(broker.kafka, "jobs", 1, 1).await;
    produce(&bootstrap, "jobs", 10, 1).await;

    // Offsets 0-3 accepted, 4-5 rejected, 6-9 released, each as it is polled.
    let mut a = consumer(&bootstrap, "workers", true);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "timed out with {} records",
            got.len()
        );
        let batch = a.poll(Duration::from_millis(500)).await.expect("poll");
        for r in &batch {
            let kind = match r.record.offset {
                0..=3 => AcknowledgeType::Accept,
                4 | 5 => AcknowledgeType::Reject,
                _ => AcknowledgeType::Release,
            };
            a.acknowledge(r, kind).expect("acknowledge");
        }
        got.extend(batch);
    }
    assert_eq!(
        got.iter().map(|r| r.record.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|r| r.delivery_count == 1));
    // Only records of the last poll can be acknowledged, once.
    assert!(a.acknowledge(&got[0], AcknowledgeType::Accept).is_err());
    a.commit().await.expect("commit");
    assert_eq!(a.refused_acknowledgements, 0);

    // The released ones come back, delivered twice now.
    let mut again = Vec::new();
    poll_until(&mut a, &mut again, |g| !g.is_empty()).await;
    // Explicit mode: the next poll wants every record of this one acknowledged first.
    assert!(a.poll(Duration::from_millis(100)).await.is_err());
    for r in &again {
        a.acknowledge(r, AcknowledgeType::Accept)
            .expect("acknowledge");
    }
    while again.len() < 4 {
        let batch = a.poll(Duration::from_millis(500)).await.expect("poll");
        for r in &batch {
            a.acknowledge(r, AcknowledgeType::Accept)
                .expect("acknowledge");
        }
        again.extend(batch);
    }
    let offsets: BTreeSet<i64> = again.iter().map(|r| r.record.offset).collect();
    assert_eq!(offsets, (6..10).collect());
    assert!(again.iter().all(|r| r.delivery_count == 2));
    a.close().await.expect("close");

    // Nothing is left for a new member, well past the 2 s locks: accepted, rejected and
    // re-accepted records stay done (a lost acknowledgement would bring one back).
    let mut b = consumer(&bootstrap, "workers", false);
    let started = Instant::now();
    let mut late = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        late.extend(b.poll(Duration::from_millis(500)).await.expect("poll"));
    }
    assert!(
        late.is_empty(),
        "{:?}",
        late.iter().map(|r| r.record.offset).collect::<Vec<_>>()
    );
    // New records go to it.
    produce(&bootstrap, "jobs", 3, 1).await;
    poll_until(&mut b, &mut late, |g| g.len() >= 3).await;
    assert_eq!(
        late.iter().map(|r| r.record.offset).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    b.close().await.expect("close");

    // The admin view (DescribeShareGroupOffsets): every record done, the start at the end.
    let mut admin = strom_client::admin::Admin::new(&bootstrap);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let g = admin
            .describe_share_group("workers")
            .await
            .expect("describe");
        let p = &g.partitions;
        if p.len() == 1 && (p[0].start, p[0].end, p[0].lag) == (13, Some(13), Some(0)) {
            break;
        }
        assert!(Instant::now() < deadline, "{g:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    describe_offsets_errors(broker.kafka).await;
}

/// DescribeShareGroupOffsets over a raw connection: an unknown topic, an unknown group and
/// no group id get their Kafka error codes.
async fn describe_offsets_errors(addr: std::net::SocketAddr) {
    use kafka_protocol::messages::describe_share_group_offsets_request::{
        DescribeShareGroupOffsetsRequestGroup as G, DescribeShareGroupOffsetsRequestTopic as T,
    };
    use kafka_protocol::messages::{DescribeShareGroupOffsetsRequest, GroupId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let mut conn = strom_client::Connection::connect(addr)
        .await
        .expect("connect");
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        G::default()
            .with_group_id(GroupId(s("workers")))
            .with_topics(Some(vec![
                T::default()
                    .with_topic_name(TopicName(s("jobs")))
                    .with_partitions(vec![0, 7]),
                T::default()
                    .with_topic_name(TopicName(s("nope")))
                    .with_partitions(vec![0]),
            ])),
        G::default()
            .with_group_id(GroupId(s("never-seen")))
            .with_topics(None),
        G::default().with_group_id(GroupId(s(""))).with_topics(None),
    ]);
    let r = conn.send(req, 0).await.expect("describe offsets");
    let g = &r.groups[0];
    assert_eq!(g.error_code, 0);
    let jobs = &g.topics[0].partitions;
    assert_eq!((jobs[0].start_offset, jobs[0].error_code), (13, 0));
    assert_eq!(jobs[1].error_code, 3, "partition 7 does not exist");
    assert_eq!(
        g.topics[1].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(r.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(r.groups[2].error_code, 24, "INVALID_GROUP_ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_three_brokers_split_the_work_each_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cluster, bootstrap) = three_brokers(dir.path());
    // Three partitions, led by different brokers; three members fetch from all of them.
    producer::create_replicated_topic(cluster.brokers[0].kafka, "jobs", 3, 3).await;
    let mut admin = strom_client::admin::Admin::new(&bootstrap);
    let leaders: BTreeSet<i32> = admin
        .describe_topic("jobs")
        .await
        .expect("describe")
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect();
    assert!(leaders.len() >= 2, "the partitions' leaders: {leaders:?}");
    let mut members: Vec<ShareConsumer> = (0..3)
        .map(|_| consumer(&bootstrap, "pool", false))
        .collect();
    // All three in the group first: a partition each.
    let deadline = Instant::now() + Duration::from_secs(30);
    while members
        .iter()
        .map(|m| m.assignment().len())
        .collect::<Vec<_>>()
        != [1, 1, 1]
    {
        assert!(
            Instant::now() < deadline,
            "no assignment of one partition each"
        );
        for m in members.iter_mut() {
            assert!(m
                .poll(Duration::from_millis(50))
                .await
                .expect("poll")
                .is_empty());
        }
    }
    produce(&bootstrap, "jobs", 600, 3).await;
    let mut got: BTreeMap<usize, Vec<(i32, i64)>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.values().map(Vec::len).sum::<usize>() < 600 {
        assert!(Instant::now() < deadline, "{got:?}");
        for (i, m) in members.iter_mut().enumerate() {
            for r in m.poll(Duration::from_millis(100)).await.expect("poll") {
                got.entry(i)
                    .or_default()
                    .push((r.record.partition, r.record.offset));
            }
        }
    }
    let all: Vec<(i32, i64)> = got.values().flatten().copied().collect();
    let distinct: BTreeSet<(i32, i64)> = all.iter().copied().collect();
    assert_eq!(all.len(), 600, "a record went to two members");
    assert_eq!(distinct.len(), 600);
    assert_eq!(
        distinct.iter().map(|(p, _)| *p).collect::<BTreeSet<_>>(),
        [0, 1, 2].into()
    );
    assert!(
        got.len() == 3,
        "every member got work: {:?}",
        got.iter().map(|(i, v)| (i, v.len())).collect::<Vec<_>>()
    );
    // Two leave: the third gets every partition, from three leaders at once.
    let mut last = members.pop().expect("member");
    for m in members {
        m.close().await.expect("close");
    }
    produce(&bootstrap, "jobs", 30, 3).await;
    let mut more = Vec::new();
    poll_until(&mut last, &mut more, |g| g.len() >= 30).await;
    assert_eq!(last.assignment().len(), 3);
    let offsets: BTreeSet<(i32, i64)> = more
        .iter()
        .map(|r| (r.record.partition, r.record.offset))
        .collect();
    assert_eq!(
        offsets,
        (0..3)
            .flat_map(|p| (200..210).map(move |o| (p, o)))
            .collect()
    );
    last.close().await.expect("close");
}

/// The share-partitions' start offsets, by partition, as DescribeShareGroupOffsets reports.
async fn starts(admin: &mut strom_client::admin::Admin, group: &str) -> BTreeMap<i32, i64> {
    admin
        .describe_share_group(group)
        .await
        .expect("describe")
        .partitions
        .iter()
        .map(|p| (p.tp.partition, p.start))
        .collect()
}

/// Waits until the group's start offsets are `want`.
async fn wait_starts(admin: &mut strom_client::admin::Admin, group: &str, want: &[(i32, i64)]) {
    let want: BTreeMap<i32, i64> = want.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = starts(admin, group).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "starts {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// AlterShareGroupOffsets and DeleteShareGroupOffsets (`kafka-share-groups.sh
/// --reset-offsets / --delete-offsets`) on three brokers: refused while the group has a
/// member; once it is empty the leaders, which still hold the old windows in memory, start
/// where they are told (and not where they were); a deleted topic is read again as
/// share.auto.offset.reset says; and the Kafka errors for bad input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_share_groups_start_offsets_move_and_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cluster, bootstrap) = three_brokers(dir.path());
    // Three partitions over three leaders: the coordinator asks the other brokers too.
    producer::create_replicated_topic(cluster.brokers[0].kafka, "jobs", 3, 3).await;
    produce(&bootstrap, "jobs", 90, 3).await;
    let mut admin = strom_client::admin::Admin::new(&bootstrap);

    let mut first = consumer(&bootstrap, "resets", false);
    let mut got = Vec::new();
    poll_until(&mut first, &mut got, |g| g.len() >= 90).await;
    // A member is in the group: nothing moves.
    let plan: BTreeMap<strom_client::TopicPartition, i64> = [(0, 10), (1, 25), (2, -1)]
        .into_iter()
        .map(|(p, o)| (strom_client::TopicPartition::new("jobs", p), o))
        .collect();
    let busy = admin.alter_share_group_offsets("resets", &plan).await;
    assert_eq!(busy.map_err(|e| e.code()), Err(Some(68)), "NON_EMPTY_GROUP");
    let busy = admin
        .delete_share_group_offsets("resets", &["jobs".to_string()])
        .await;
    assert_eq!(busy.map_err(|e| e.code()), Err(Some(68)), "NON_EMPTY_GROUP");
    first.close().await.expect("close");
    wait_starts(&mut admin, "resets", &[(0, 30), (1, 30), (2, 30)]).await;

    // Empty: partition 0 back to 10, 1 to 25, 2 to where share.auto.offset.reset says.
    admin
        .alter_share_group_offsets("resets", &plan)
        .await
        .expect("alter");
    assert_eq!(
        starts(&mut admin, "resets").await,
        [(0, 10), (1, 25), (2, 0)].into()
    );
    let mut second = consumer(&bootstrap, "resets", false);
    let mut again = Vec::new();
    poll_until(&mut second, &mut again, |g| g.len() >= 55).await;
    // Nothing else comes.
    for _ in 0..4 {
        again.extend(second.poll(Duration::from_millis(250)).await.expect("poll"));
    }
    let read: BTreeSet<(i32, i64)> = again
        .iter()
        .map(|r| (r.record.partition, r.record.offset))
        .collect();
    let want: BTreeSet<(i32, i64)> = (10..30)
        .map(|o| (0, o))
        .chain((25..30).map(|o| (1, o)))
        .chain((0..30).map(|o| (2, o)))
        .collect();
    assert_eq!(again.len(), 55, "each record once");
    assert_eq!(read, want);
    assert!(
        again.iter().all(|r| r.delivery_count == 1),
        "a reset window counts deliveries afresh"
    );
    second.close().await.expect("close");
    wait_starts(&mut admin, "resets", &[(0, 30), (1, 30), (2, 30)]).await;

    // Deleted: the group has no state for the topic, then reads it from the start again.
    let outcome = admin
        .delete_share_group_offsets("resets", &["jobs".to_string(), "nope".to_string()])
        .await
        .expect("delete");
    assert!(outcome[0].1.is_ok(), "{outcome:?}");
    assert_eq!(outcome[1].1.as_ref().map_err(|e| e.code()), Err(Some(3)));
    assert_eq!(starts(&mut admin, "resets").await, BTreeMap::new());
    let twice = admin
        .delete_share_group_offsets("resets", &["jobs".to_string()])
        .await
        .expect("delete");
    assert_eq!(
        twice[0].1.as_ref().map_err(|e| e.code()),
        Err(Some(3)),
        "no offset information to delete"
    );
    let mut third = consumer(&bootstrap, "resets", false);
    let mut all = Vec::new();
    poll_until(&mut third, &mut all, |g| g.len() >= 90).await;
    assert_eq!(
        all.iter()
            .map(|r| (r.record.partition, r.record.offset))
            .collect::<BTreeSet<_>>()
            .len(),
        90
    );
    third.close().await.expect("close");
    wait_starts(&mut admin, "resets", &[(0, 30), (1, 30), (2, 30)]).await;

    share_offsets_errors(&bootstrap, &cluster).await;
    // None of the refusals moved anything.
    assert_eq!(
        starts(&mut admin, "resets").await,
        [(0, 30), (1, 30), (2, 30)].into()
    );

    // The coordinator restarts: the group's members were in its memory only, its state is
    // durable. It is still a share group (Empty, its offsets as they were) and can be reset.
    let id = coordinator_id(&cluster, "resets").await;
    cluster.brokers[id as usize - 1].restart().expect("restart");
    cluster
        .wait_brokers_alive(3, Duration::from_secs(30))
        .expect("alive");
    let deadline = Instant::now() + Duration::from_secs(30);
    let g = loop {
        match admin.describe_share_group("resets").await {
            Ok(g) if g.partitions.len() == 3 => break g,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((g.state.as_str(), g.members.len()), ("Empty", 0), "{g:?}");
    admin
        .alter_share_group_offsets("resets", &plan)
        .await
        .expect("alter after the restart");
    assert_eq!(
        starts(&mut admin, "resets").await,
        [(0, 10), (1, 25), (2, 0)].into()
    );
}

/// The broker coordinating `group`.
async fn coordinator_id(cluster: &Cluster, group: &str) -> i32 {
    use kafka_protocol::messages::FindCoordinatorRequest;
    use kafka_protocol::protocol::StrBytes;
    let mut any = strom_client::Connection::connect(cluster.brokers[0].kafka)
        .await
        .expect("connect");
    let found = any
        .send(
            FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]),
            4,
        )
        .await
        .expect("find coordinator");
    found.coordinators[0].node_id.0
}

/// Bad input to the share offsets APIs over raw connections: the Kafka error codes.
async fn share_offsets_errors(bootstrap: &str, cluster: &Cluster) {
    use kafka_protocol::messages::alter_share_group_offsets_request::{
        AlterShareGroupOffsetsRequestPartition as P, AlterShareGroupOffsetsRequestTopic as T,
    };
    use kafka_protocol::messages::initialize_share_group_state_request::{
        InitializeStateData, PartitionData,
    };
    use kafka_protocol::messages::{
        AlterShareGroupOffsetsRequest, GroupId, InitializeShareGroupStateRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let s = |v: &str| StrBytes::from_string(v.to_string());
    // A connection to the coordinator of `group`.
    let coordinator_of = |group: &'static str| async move {
        let id = coordinator_id(cluster, group).await;
        strom_client::Connection::connect(cluster.brokers[id as usize - 1].kafka)
            .await
            .expect("connect")
    };
    let mut conn = coordinator_of("resets").await;
    let alter = |group: &str, topic: &str, partition: i32, offset: i64| {
        AlterShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(vec![T::default()
                .with_topic_name(TopicName(s(topic)))
                .with_partitions(vec![P::default()
                    .with_partition_index(partition)
                    .with_start_offset(offset)])])
    };
    let r = coordinator_of("never-seen")
        .await
        .send(alter("never-seen", "jobs", 0, 0), 0)
        .await
        .expect("alter");
    assert_eq!(r.error_code, 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(r.responses[0].partitions[0].error_code, 69);
    let r = conn
        .send(alter("resets", "nope", 0, 0), 0)
        .await
        .expect("alter");
    assert_eq!(
        (r.error_code, r.responses[0].partitions[0].error_code),
        (0, 3)
    );
    let r = conn
        .send(alter("resets", "jobs", 9, 0), 0)
        .await
        .expect("alter");
    assert_eq!(r.responses[0].partitions[0].error_code, 3, "no partition 9");
    let r = conn
        .send(alter("resets", "jobs", 0, -5), 0)
        .await
        .expect("alter");
    assert_eq!(
        r.responses[0].partitions[0].error_code, 42,
        "INVALID_REQUEST"
    );
    let r = coordinator_of("")
        .await
        .send(alter("", "jobs", 0, 0), 0)
        .await
        .expect("alter");
    assert_eq!(r.error_code, 24, "INVALID_GROUP_ID");
    // The leader-side request is for brokers only.
    let mut admin = strom_client::admin::Admin::new(bootstrap);
    let d = admin.describe_topic("jobs").await.expect("describe");
    let leader = &cluster.brokers[d.partitions[0].leader as usize - 1];
    let topic_id: uuid::Uuid = d.topic_id.parse().expect("topic id");
    let mut at_leader = strom_client::Connection::connect(leader.kafka)
        .await
        .expect("connect");
    let r = at_leader
        .send(
            InitializeShareGroupStateRequest::default()
                .with_group_id(s("resets"))
                .with_topics(vec![InitializeStateData::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![PartitionData::default()
                        .with_partition(0)
                        .with_start_offset(0)])]),
            0,
        )
        .await
        .expect("initialize");
    assert_eq!(
        r.results[0].partitions[0].error_code, 31,
        "CLUSTER_AUTHORIZATION_FAILED"
    );
}

/// A member that spends longer than the session timeout between polls stays in the group:
/// its heartbeats go from a task of their own (as the Java client's background thread).
/// With heartbeats sent from `poll` only, the coordinator expired it after 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_busy_between_polls_stays_in_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &[
            "--share-auto-offset-reset",
            "earliest",
            "--group-share-session-timeout-ms",
            "3000",
            "--group-share-heartbeat-interval-ms",
            "300",
        ],
    )
    .expect("start");
    let bootstrap = broker.kafka.to_string();
    producer::create_replicated_topic(broker.kafka, "jobs", 1, 1).await;
    produce(&bootstrap, "jobs", 5, 1).await;
    let mut busy = consumer(&bootstrap, "slow", false);
    let mut got = Vec::new();
    poll_until(&mut busy, &mut got, |g| g.len() >= 5).await;
    let mut admin = strom_client::admin::Admin::new(&bootstrap);
    // Twice the session timeout without a poll.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let g = admin.describe_share_group("slow").await.expect("describe");
    assert_eq!(
        g.members
            .iter()
            .map(|m| m.member_id.as_str())
            .collect::<Vec<_>>(),
        vec![busy.member_id()],
        "{g:?}"
    );
    // It goes on where it was: the next records, and nothing of the first five again.
    produce(&bootstrap, "jobs", 3, 1).await;
    let mut more = Vec::new();
    poll_until(&mut busy, &mut more, |g| g.len() >= 3).await;
    assert_eq!(
        more.iter().map(|r| r.record.offset).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    busy.close().await.expect("close");
    // close left the group.
    let g = admin.describe_share_group("slow").await.expect("describe");
    assert!(g.members.is_empty(), "{g:?}");
}
