//! The library consumer (`strom_client::consumer`) against live brokers: assign and seek,
//! `auto.offset.reset`, commits that a new consumer resumes from, groups that share and move
//! partitions (range and cooperative-sticky) with the rebalance listener called as Java's
//! is, a crashed member's partitions moving within the session timeout, a member too slow to
//! poll losing its partitions, and reading on across a leader kill.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use integration_tests::producer::{self, leaders};
use integration_tests::{BrokerProcess, Cluster};
use strom_client::consumer::{
    Assignor, Consumer, ConsumerConfig, ConsumerError, ConsumerRecord, OffsetAndMetadata,
    OffsetReset, RebalanceContext, RebalanceListener,
};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;
use tokio::sync::watch;

async fn create_topic(broker: SocketAddr, topic: &str, partitions: i32, rf: i16) {
    producer::create_replicated_topic(broker, topic, partitions, rf).await
}

/// A broker whose groups start rebalancing at once (no initial delay).
fn broker(dir: &std::path::Path) -> BrokerProcess {
    BrokerProcess::start(dir, &["--group-initial-rebalance-delay-ms", "0"]).expect("start")
}

/// Three controllers and three brokers that fence a silent broker within 1.5 s and start
/// group rebalances at once; their Kafka addresses, and those as a bootstrap list.
fn cluster(dir: &std::path::Path) -> (Cluster, Vec<SocketAddr>, String) {
    let c = Cluster::start(
        dir,
        3,
        3,
        &["--broker-session-timeout-ms", "1500"],
        &[
            "--broker-heartbeat-interval-ms",
            "250",
            "--group-initial-rebalance-delay-ms",
            "0",
        ],
    )
    .expect("cluster");
    let brokers: Vec<SocketAddr> = c.brokers.iter().map(|b| b.kafka).collect();
    let bootstrap = brokers
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (c, brokers, bootstrap)
}

/// `n` keyed records "{prefix}-{i}" with a header, every one acknowledged.
async fn produce(bootstrap: &str, topic: &str, prefix: &str, n: usize) {
    let producer = Producer::new(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    let mut ds = Vec::new();
    for i in 0..n {
        ds.push(
            producer
                .send(
                    ProducerRecord::new(topic, format!("{prefix}-{i}"))
                        .with_key(format!("key-{}", i % 13))
                        .with_header("i", i.to_string()),
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

fn value(r: &ConsumerRecord) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

fn config(bootstrap: &str, group: Option<&str>) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(bootstrap);
    c.group_id = group.map(str::to_string);
    c.auto_offset_reset = OffsetReset::Earliest;
    c.enable_auto_commit = false;
    c.session_timeout = Duration::from_secs(6);
    c.heartbeat_interval = Duration::from_millis(300);
    c.max_poll_interval = Duration::from_secs(20);
    c.fetch_max_wait = Duration::from_millis(200);
    c
}

/// Polls until `n` records arrived or `within` passed.
async fn poll_n(c: &mut Consumer, n: usize, within: Duration) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(c.poll(Duration::from_millis(200)).await.expect("poll"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_seek_and_reset_read_what_was_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("data"));
    let bootstrap = b.kafka.to_string();
    create_topic(b.kafka, "reads", 3, 1).await;
    produce(&bootstrap, "reads", "a", 300).await;

    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("reads", p)).collect();
    let mut c = Consumer::new(config(&bootstrap, None)).expect("consumer");
    c.assign(tps.clone()).await.expect("assign");
    let got = poll_n(&mut c, 300, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 300);
    assert!(c.at_end(), "read every partition to its high watermark");
    // Per partition: offsets 0.. with no gap, in send order, keys on murmur2's partition,
    // headers as sent.
    let mut by_partition: BTreeMap<i32, Vec<&ConsumerRecord>> = BTreeMap::new();
    for r in &got {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for (p, recs) in &by_partition {
        let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (0..recs.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
        let mut last = -1i64;
        for r in recs {
            let i: i64 = value(r).trim_start_matches("a-").parse().expect("number");
            assert!(i > last, "send order");
            last = i;
            let key = format!("key-{}", i % 13);
            assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
            assert_eq!(
                strom_client::partitioner::partition_for_key(key.as_bytes(), 3),
                *p
            );
            assert_eq!(
                r.headers,
                vec![("i".to_string(), Some(i.to_string().into()))]
            );
            assert!(r.timestamp > 0);
        }
    }
    // Nothing more until something is written; then exactly that.
    assert!(c
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());
    produce(&bootstrap, "reads", "b", 5).await;
    let more = poll_n(&mut c, 5, Duration::from_secs(10)).await;
    let mut values: Vec<String> = more.iter().map(value).collect();
    values.sort();
    assert_eq!(values, ["b-0", "b-1", "b-2", "b-3", "b-4"]);

    // seek: partition 0 from offset 3 again; seek_to_beginning; seek_to_end.
    let p0 = &tps[0];
    let p0_len =
        by_partition[&0].len() as i64 + more.iter().filter(|r| r.partition == 0).count() as i64;
    c.seek(p0, 3).expect("seek");
    assert_eq!(c.position(p0).await.expect("position"), 3);
    let again = poll_n(&mut c, (p0_len - 3) as usize, Duration::from_secs(10)).await;
    assert_eq!(again.first().map(|r| r.offset), Some(3));
    assert!(again.iter().all(|r| r.partition == 0));
    c.seek_to_beginning(p0).expect("seek");
    assert_eq!(c.position(p0).await.expect("position"), 0);
    c.seek_to_end(p0).expect("seek");
    assert_eq!(c.position(p0).await.expect("position"), p0_len);
    assert!(c
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());

    // auto.offset.reset=latest starts at the end; none refuses without a committed offset.
    let mut latest = config(&bootstrap, None);
    latest.auto_offset_reset = OffsetReset::Latest;
    let mut l = Consumer::new(latest).expect("consumer");
    l.assign(tps.clone()).await.expect("assign");
    assert!(l
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());
    produce(&bootstrap, "reads", "c", 3).await;
    let late = poll_n(&mut l, 3, Duration::from_secs(10)).await;
    assert_eq!(late.len(), 3);
    assert!(late.iter().all(|r| value(r).starts_with("c-")));
    let mut none = config(&bootstrap, None);
    none.auto_offset_reset = OffsetReset::None;
    let mut n = Consumer::new(none).expect("consumer");
    n.assign(vec![p0.clone()]).await.expect("assign");
    assert_eq!(
        n.poll(Duration::from_millis(100)).await,
        Err(ConsumerError::NoOffset(p0.clone()))
    );
    // An offset past the end is reset by the policy (earliest here): partition 0 again
    // from 0 (the other partitions go on with the "c" records).
    c.seek(p0, 1_000_000).expect("seek");
    let reset = poll_n(&mut c, 3 + p0_len as usize, Duration::from_secs(10)).await;
    let first_p0 = reset.iter().find(|r| r.partition == 0).map(|r| r.offset);
    assert_eq!(first_p0, Some(0), "reset to the earliest offset");
    // A topic that does not exist is a clear error for a manual assignment.
    let mut m = Consumer::new(config(&bootstrap, None)).expect("consumer");
    m.assign(vec![TopicPartition::new("no-such-topic", 0)])
        .await
        .expect("assign");
    assert_eq!(
        m.poll(Duration::from_millis(500)).await,
        Err(ConsumerError::UnknownTopic("no-such-topic".into()))
    );
    // As a Stream.
    let mut s = Consumer::new(config(&bootstrap, None)).expect("consumer");
    s.assign(vec![tps[1].clone()]).await.expect("assign");
    let first: Vec<ConsumerRecord> = s
        .stream()
        .take(4)
        .map(|r| r.expect("record"))
        .collect()
        .await;
    assert_eq!(
        first.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_where_the_next_consumer_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("data"));
    let bootstrap = b.kafka.to_string();
    create_topic(b.kafka, "commits", 2, 1).await;
    produce(&bootstrap, "commits", "a", 100).await;

    // Manual commit after processing 100 records.
    let mut c = Consumer::new(config(&bootstrap, Some("g-commit"))).expect("consumer");
    c.subscribe(&["commits"]).expect("subscribe");
    let got = poll_n(&mut c, 100, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 100);
    assert_eq!(c.assignment().len(), 2);
    c.commit_sync().await.expect("commit");
    let tp0 = TopicPartition::new("commits", 0);
    let tp1 = TopicPartition::new("commits", 1);
    let committed = c
        .committed(&[tp0.clone(), tp1.clone()])
        .await
        .expect("committed");
    let total: i64 = committed.values().map(|o| o.offset).sum();
    assert_eq!(total, 100, "{committed:?}");
    // Metadata round-trips; an async commit lands in order after it.
    c.commit_offsets_sync(vec![(
        tp0.clone(),
        OffsetAndMetadata {
            offset: committed[&tp0].offset,
            metadata: Some("checkpoint-7".into()),
        },
    )])
    .await
    .expect("commit");
    let again = c
        .committed(std::slice::from_ref(&tp0))
        .await
        .expect("committed");
    assert_eq!(again[&tp0].metadata.as_deref(), Some("checkpoint-7"));
    c.commit_async()
        .expect("queued")
        .await
        .expect("async commit");
    c.close().await;

    // The next member of the group starts at the commits: it sees only new records.
    produce(&bootstrap, "commits", "b", 10).await;
    let mut d = Consumer::new(config(&bootstrap, Some("g-commit"))).expect("consumer");
    d.subscribe(&["commits"]).expect("subscribe");
    let next = poll_n(&mut d, 10, Duration::from_secs(30)).await;
    let mut values: Vec<String> = next.iter().map(value).collect();
    values.sort();
    let expected: Vec<String> = (0..10).map(|i| format!("b-{i}")).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(values, expected_sorted);
    assert!(d
        .poll(Duration::from_millis(300))
        .await
        .expect("poll")
        .is_empty());

    // Auto-commit: positions committed on the interval and at close.
    let mut auto = config(&bootstrap, Some("g-auto"));
    auto.enable_auto_commit = true;
    auto.auto_commit_interval = Duration::from_millis(200);
    let mut e = Consumer::new(auto.clone()).expect("consumer");
    e.subscribe(&["commits"]).expect("subscribe");
    assert_eq!(
        poll_n(&mut e, 110, Duration::from_secs(30)).await.len(),
        110
    );
    e.close().await;
    let mut f = Consumer::new(auto).expect("consumer");
    f.subscribe(&["commits"]).expect("subscribe");
    assert!(
        f.poll(Duration::from_secs(2))
            .await
            .expect("poll")
            .is_empty(),
        "auto-committed to the end"
    );
    let at = f.committed(&[tp0, tp1]).await.expect("committed");
    assert_eq!(at.values().map(|o| o.offset).sum::<i64>(), 110);
    f.close().await;
    d.close().await;
}

/// What one group member saw: its current assignment and every callback in order.
#[derive(Default)]
struct Seen {
    assignment: BTreeSet<TopicPartition>,
    events: Vec<(String, Vec<TopicPartition>)>,
    values: Vec<String>,
    /// The group generation after the last poll.
    generation: Option<i32>,
}

#[derive(Clone)]
struct Recorder(Arc<Mutex<Seen>>);

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, revoked: &[TopicPartition], _: &mut RebalanceContext) {
        let mut s = self.0.lock().expect("lock");
        for tp in revoked {
            s.assignment.remove(tp);
        }
        s.events.push(("revoked".into(), revoked.to_vec()));
    }
    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition], _: &mut RebalanceContext) {
        let mut s = self.0.lock().expect("lock");
        s.assignment.extend(assigned.iter().cloned());
        s.events.push(("assigned".into(), assigned.to_vec()));
    }
    fn on_partitions_lost(&mut self, lost: &[TopicPartition], _: &mut RebalanceContext) {
        let mut s = self.0.lock().expect("lock");
        for tp in lost {
            s.assignment.remove(tp);
        }
        s.events.push(("lost".into(), lost.to_vec()));
    }
}

/// A group member polling in a task of its own until told to stop (then it closes), or to
/// crash (dropped without leaving).
struct Member {
    seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

const RUN: u8 = 0;
const CLOSE: u8 = 1;
const CRASH: u8 = 2;
const STALL: u8 = 3;

fn member(config: ConsumerConfig, topic: &'static str) -> Member {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop, mut rx) = watch::channel(RUN);
    let recorder = Recorder(seen.clone());
    let task = tokio::spawn(async move {
        let mut c = Consumer::new(config).expect("consumer");
        c.set_rebalance_listener(recorder.clone());
        c.subscribe(&[topic]).expect("subscribe");
        loop {
            let state = *rx.borrow_and_update();
            match state {
                CLOSE => {
                    c.commit_sync().await.ok();
                    c.close().await;
                    return;
                }
                CRASH => return, // dropped: no LeaveGroup, no more heartbeats
                STALL => {
                    // Stop polling (heartbeats go on) until told to run again.
                    let _ = rx.changed().await;
                    continue;
                }
                _ => {}
            }
            let records = c.poll(Duration::from_millis(100)).await.expect("poll");
            recorder.0.lock().expect("lock").generation = c.generation();
            if !records.is_empty() {
                recorder
                    .0
                    .lock()
                    .expect("lock")
                    .values
                    .extend(records.iter().map(value));
                c.commit_sync().await.ok();
            }
        }
    });
    Member { seen, stop, task }
}

impl Member {
    fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.seen.lock().expect("lock").assignment.clone()
    }
    fn events(&self) -> Vec<(String, Vec<TopicPartition>)> {
        self.seen.lock().expect("lock").events.clone()
    }
}

/// Waits until member `m` has consumed `n` records.
async fn wait_values(m: &Member, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while m.seen.lock().expect("lock").values.len() < n {
        assert!(Instant::now() < deadline, "{n} records were never consumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `c` until it holds `n` partitions (20 s at most).
async fn poll_until_holding(c: &mut Consumer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.assignment().len() < n {
        assert!(Instant::now() < deadline, "never assigned {n} partitions");
        c.poll(Duration::from_millis(100)).await.expect("poll");
    }
}

/// Waits until the members' assignments have these sizes (in any order) and together cover
/// every one of `partitions` exactly once.
async fn wait_balanced(members: &[&Member], sizes: &[usize], partitions: i32, within: Duration) {
    let deadline = Instant::now() + within;
    let mut want: Vec<usize> = sizes.to_vec();
    want.sort();
    loop {
        let all: Vec<BTreeSet<TopicPartition>> = members.iter().map(|m| m.assignment()).collect();
        let mut got: Vec<usize> = all.iter().map(BTreeSet::len).collect();
        got.sort();
        let union: BTreeSet<&TopicPartition> = all.iter().flatten().collect();
        if got == want && union.len() == partitions as usize {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "assignments never became {want:?}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn group_shares_and_moves_partitions(assignor: Assignor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("data"));
    let bootstrap = b.kafka.to_string();
    let topic: &'static str = match assignor {
        Assignor::CooperativeSticky => "share-coop",
        _ => "share-range",
    };
    create_topic(b.kafka, topic, 6, 1).await;
    let mut cfg = config(&bootstrap, Some(topic));
    cfg.assignors = vec![assignor];

    let m1 = member(cfg.clone(), topic);
    let m2 = member(cfg.clone(), topic);
    let m3 = member(cfg.clone(), topic);
    wait_balanced(&[&m1, &m2, &m3], &[2, 2, 2], 6, Duration::from_secs(30)).await;
    produce(&bootstrap, topic, "v", 600).await;

    // A fourth member: the assignment spreads to 2/2/1/1.
    let before: Vec<BTreeSet<TopicPartition>> =
        [&m1, &m2, &m3].iter().map(|m| m.assignment()).collect();
    let events_before: Vec<usize> = [&m1, &m2, &m3].iter().map(|m| m.events().len()).collect();
    let m4 = member(cfg.clone(), topic);
    wait_balanced(
        &[&m1, &m2, &m3, &m4],
        &[2, 2, 1, 1],
        6,
        Duration::from_secs(30),
    )
    .await;
    if assignor == Assignor::CooperativeSticky {
        // Cooperative: members only ever gave up what moved, and kept the rest throughout.
        for (i, m) in [&m1, &m2, &m3].iter().enumerate() {
            let after = m.assignment();
            assert!(
                after.is_subset(&before[i]),
                "sticky: {after:?} within {:?}",
                before[i]
            );
            for (kind, tps) in &m.events()[events_before[i]..] {
                if kind == "revoked" {
                    assert!(
                        tps.iter().all(|tp| !after.contains(tp)),
                        "revoked only what moved away: {tps:?}, kept {after:?}"
                    );
                }
                assert_ne!(kind, "lost");
            }
        }
    } else {
        // Eager: every member revoked everything before rejoining.
        for (i, m) in [&m1, &m2, &m3].iter().enumerate() {
            let revoked_all = m.events()[events_before[i]..].iter().any(|(k, tps)| {
                k == "revoked" && tps.iter().cloned().collect::<BTreeSet<_>>() == before[i]
            });
            assert!(
                revoked_all,
                "eager revocation of {:?}: {:?}",
                before[i],
                m.events()
            );
        }
    }

    // One leaves cleanly: its partitions move at once (no session timeout to wait for).
    let left = m4.assignment();
    m4.stop.send(CLOSE).expect("stop");
    let Member {
        seen: seen4,
        task: task4,
        ..
    } = m4;
    task4.await.expect("member");
    let t = Instant::now();
    wait_balanced(&[&m1, &m2, &m3], &[2, 2, 2], 6, Duration::from_secs(20)).await;
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "a leave moves partitions without waiting for the 6 s session timeout"
    );
    assert!(left
        .iter()
        .all(|tp| [&m1, &m2, &m3].iter().any(|m| m.assignment().contains(tp))));

    // One crashes (no LeaveGroup, heartbeats stop): its partitions move after the session
    // timeout (6 s).
    let crashed = m3.assignment();
    let t = Instant::now();
    m3.stop.send(CRASH).expect("crash");
    let Member {
        seen: seen3,
        task: task3,
        ..
    } = m3;
    task3.await.expect("member");
    wait_balanced(&[&m1, &m2], &[3, 3], 6, Duration::from_secs(30)).await;
    let moved_after = t.elapsed();
    assert!(
        moved_after >= Duration::from_secs(4) && moved_after < Duration::from_secs(20),
        "moved {moved_after:?} after the crash"
    );
    assert!(crashed
        .iter()
        .all(|tp| m1.assignment().contains(tp) || m2.assignment().contains(tp)));

    // Everything produced was consumed by someone (commits after processing: a record is
    // seen again only by the member that took over a partition past the last commit).
    produce(&bootstrap, topic, "w", 60).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let values_of = |s: &Arc<Mutex<Seen>>| s.lock().expect("lock").values.clone();
    let everyone = || -> Vec<String> {
        [&m1.seen, &m2.seen, &seen3, &seen4]
            .iter()
            .flat_map(|s| values_of(s))
            .collect()
    };
    let all_values = || -> BTreeSet<String> { everyone().into_iter().collect() };
    while all_values().len() < 660 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(all_values().len(), 660, "every record consumed");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for v in everyone() {
        *counts.entry(v).or_default() += 1;
    }
    let dups = counts.values().filter(|n| **n > 1).count();
    eprintln!("{assignor:?}: 660 records, {dups} seen twice (after the crash)");
    for m in [m1, m2] {
        m.stop.send(CLOSE).expect("stop");
        m.task.await.expect("member");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_group_shares_spreads_and_moves_partitions() {
    group_shares_and_moves_partitions(Assignor::Range).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_group_moves_only_what_must_move() {
    group_shares_and_moves_partitions(Assignor::CooperativeSticky).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_polling_loses_its_partitions_and_rejoins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("data"));
    let bootstrap = b.kafka.to_string();
    create_topic(b.kafka, "slow", 4, 1).await;
    let mut cfg = config(&bootstrap, Some("g-slow"));
    cfg.max_poll_interval = Duration::from_secs(3);
    let fast = member(cfg.clone(), "slow");
    let slow = member(cfg.clone(), "slow");
    wait_balanced(&[&fast, &slow], &[2, 2], 4, Duration::from_secs(30)).await;
    // The slow one stops polling (its heartbeats go on): after max.poll.interval it leaves,
    // and the fast one takes everything.
    slow.stop.send(STALL).expect("stall");
    wait_balanced(&[&fast], &[4], 4, Duration::from_secs(20)).await;
    // Polling again, it learns its partitions were lost, rejoins, and gets its share back.
    slow.stop.send(RUN).expect("run");
    wait_balanced(&[&fast, &slow], &[2, 2], 4, Duration::from_secs(30)).await;
    assert!(
        slow.events().iter().any(|(k, _)| k == "lost"),
        "on_partitions_lost: {:?}",
        slow.events()
    );
    for m in [fast, slow] {
        m.stop.send(CLOSE).expect("stop");
        m.task.await.expect("member");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reads_on_across_a_leader_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut c, brokers, bootstrap) = cluster(dir.path());
    create_topic(brokers[0], "moving", 1, 3).await;
    produce(&bootstrap, "moving", "a", 200).await;
    let mut consumer = Consumer::new(config(&bootstrap, None)).expect("consumer");
    consumer
        .assign(vec![TopicPartition::new("moving", 0)])
        .await
        .expect("assign");
    let first = poll_n(&mut consumer, 200, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 200);
    let leader = leaders(&brokers, "moving").await.expect("leaders")[&0];
    let i = brokers.iter().position(|b| *b == leader).expect("known");
    c.brokers[i].kill9().expect("kill");
    // Written through the new leader; read from it by the same consumer.
    produce(&bootstrap, "moving", "b", 100).await;
    let second = poll_n(&mut consumer, 100, Duration::from_secs(30)).await;
    let values: Vec<String> = second.iter().map(value).collect();
    assert_eq!(
        values,
        (0..100).map(|i| format!("b-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(second.first().map(|r| r.offset), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_failover_keeps_the_generation_assignment_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut c, brokers, bootstrap) = cluster(dir.path());
    create_topic(brokers[0], "coord", 2, 3).await;
    let mut cfg = config(&bootstrap, Some("g-coord"));
    cfg.session_timeout = Duration::from_secs(15);
    let m = member(cfg, "coord");
    wait_balanced(&[&m], &[2], 2, Duration::from_secs(60)).await;
    produce(&bootstrap, "coord", "a", 100).await;
    wait_values(&m, 100, Duration::from_secs(30)).await;
    let generation = m.seen.lock().expect("lock").generation.expect("joined");
    let events_before = m.events().len();

    // Kill the coordinator: the broker leading the group's __consumer_offsets partition.
    let mut admin = strom_client::admin::Admin::new(&bootstrap);
    let before = admin.describe_group("g-coord").await.expect("describe");
    let coordinator = before.coordinator;
    assert_eq!(before.members.len(), 1);
    let port = port_of(&mut admin, coordinator).await;
    let i = c
        .brokers
        .iter()
        .position(|b| b.kafka.port() == port)
        .expect("the coordinator is one of ours");
    c.brokers[i].kill9().expect("kill");
    let live: String = brokers
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, b)| b.to_string())
        .collect::<Vec<_>>()
        .join(",");

    // Another broker coordinates the group now, at the same generation, from the records.
    let mut admin = strom_client::admin::Admin::new(&live);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        if let Ok(d) = admin.describe_group("g-coord").await {
            if d.coordinator != coordinator && d.state == "Stable" {
                break d;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new coordinator took the group over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(after.members.len(), 1);
    assert_eq!(after.members[0].member_id, before.members[0].member_id);
    assert_eq!(after.members[0].assignment.len(), 2);
    let committed = admin.list_group_offsets("g-coord").await.expect("offsets");
    assert_eq!(
        committed.values().map(|o| o.offset).sum::<i64>(),
        100,
        "{committed:?}"
    );

    // The member goes on reading through the new leaders, never rebalancing.
    produce(&live, "coord", "b", 50).await;
    wait_values(&m, 150, Duration::from_secs(60)).await;
    assert_eq!(m.seen.lock().expect("lock").generation, Some(generation));
    assert_eq!(
        m.events().len(),
        events_before,
        "no revocation or assignment: {:?}",
        m.events()
    );
    m.stop.send(CLOSE).expect("stop");
    m.task.await.expect("member");
}

/// The Kafka port of broker `id`, from the cluster's metadata.
async fn port_of(admin: &mut strom_client::admin::Admin, id: i32) -> u16 {
    admin
        .describe_cluster()
        .await
        .expect("cluster")
        .brokers
        .iter()
        .find(|b| b.id == id)
        .map(|b| b.port as u16)
        .expect("broker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_commits_cover_exactly_what_was_handed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("data"));
    let bootstrap = b.kafka.to_string();
    create_topic(b.kafka, "one-by-one", 1, 1).await;
    produce(&bootstrap, "one-by-one", "r", 50).await;
    let tp = TopicPartition::new("one-by-one", 0);
    let mut c = Consumer::new(config(&bootstrap, Some("g-recv"))).expect("consumer");
    c.subscribe(&["one-by-one"]).expect("subscribe");
    for i in 0..3 {
        assert_eq!(c.recv().await.expect("record").offset, i);
    }
    // All 50 were fetched in one go; only 3 were handed out, so only 3 are committed.
    c.commit_sync().await.expect("commit");
    let committed = c
        .committed(std::slice::from_ref(&tp))
        .await
        .expect("committed");
    assert_eq!(committed[&tp].offset, 3);
    assert_eq!(c.position(&tp).await.expect("position"), 3);
    c.close().await;
    let mut d = Consumer::new(config(&bootstrap, Some("g-recv"))).expect("consumer");
    d.subscribe(&["one-by-one"]).expect("subscribe");
    assert_eq!(
        d.recv().await.expect("record").offset,
        3,
        "resumes after the third"
    );
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_instance_id_fences_the_first_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(&dir.path().join("data"));
    let bootstrap = b.kafka.to_string();
    create_topic(b.kafka, "static", 2, 1).await;
    let mut cfg = config(&bootstrap, Some("g-static"));
    cfg.group_instance_id = Some("worker-1".into());
    let mut first = Consumer::new(cfg.clone()).expect("consumer");
    first.subscribe(&["static"]).expect("subscribe");
    poll_until_holding(&mut first, 2).await;
    // The same instance id from another process (say, a restart while the old one lingers).
    let mut second = Consumer::new(cfg).expect("consumer");
    second.subscribe(&["static"]).expect("subscribe");
    poll_until_holding(&mut second, 2).await;
    // The first learns it is fenced (at its next heartbeat) and stays out: it does not
    // rejoin and fence the second in turn.
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match first.poll(Duration::from_millis(100)).await {
            Err(e) => break e,
            Ok(_) => assert!(Instant::now() < deadline, "the first was never fenced"),
        }
    };
    assert!(
        matches!(&err, ConsumerError::Broker(b) if b.name == "FENCED_INSTANCE_ID"),
        "{err}"
    );
    assert!(
        first.poll(Duration::from_millis(100)).await.is_err(),
        "fatal"
    );
    let generation = second.generation();
    for _ in 0..20 {
        second.poll(Duration::from_millis(100)).await.expect("poll");
    }
    assert_eq!(second.generation(), generation, "no fencing ping-pong");
    assert_eq!(second.assignment().len(), 2);
}
