//! Replication with real processes (3 controllers + 3 brokers): an acks=all idempotent
//! producer while partition leaders are killed; a paused leader deposed, truncated and
//! rejoining; two replicas down refusing acks=all; and the canary, a broker that acks before
//! replicating, which the checker must catch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use integration_tests::checker::{self, Report};
use integration_tests::producer::{self, ProducerOptions, TestProducer};
use integration_tests::{http_json, Cluster};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;
use strom_client::Connection;

/// One cluster at a time: several 6-process clusters on 2 cores would test the scheduler.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SESSION_MS: &str = "1500";

fn start_cluster(dir: &std::path::Path, extra_broker_args: &[&str]) -> Cluster {
    let mut broker_args = vec![
        "--broker-heartbeat-interval-ms",
        "250",
        "--replica-lag-time-max-ms",
        "3000",
    ];
    broker_args.extend_from_slice(extra_broker_args);
    Cluster::start(
        dir,
        3,
        3,
        &["--broker-session-timeout-ms", SESSION_MS],
        &broker_args,
    )
    .expect("cluster")
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn kafka_addrs(c: &Cluster) -> Vec<SocketAddr> {
    c.brokers.iter().map(|b| b.kafka).collect()
}

async fn create_topic(broker: SocketAddr, topic: &str, partitions: i32, min_isr: &str) {
    let code = producer::create_topic(
        broker,
        topic,
        partitions,
        3,
        &[("min.insync.replicas", min_isr)],
    )
    .await
    .expect("create topics answered");
    assert_eq!(code, 0);
}

/// Polls `f` every 100 ms until it returns Some, or panics after `timeout`.
async fn until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// partition -> (leader, isr) from one broker's Kafka Metadata.
async fn partitions(broker: SocketAddr, topic: &str) -> Option<BTreeMap<i32, (i32, Vec<i32>)>> {
    let mut conn = Connection::connect(broker).await.ok()?;
    let md = tokio::time::timeout(
        Duration::from_secs(2),
        conn.send(
            kafka_protocol::messages::MetadataRequest::default()
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(name(topic))),
                ]))
                .with_allow_auto_topic_creation(false),
            12,
        ),
    )
    .await
    .ok()?
    .ok()?;
    Some(
        md.topics
            .first()?
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    (p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect()),
                )
            })
            .collect(),
    )
}

/// The leader and ISR of `partition` as the first answering running broker says.
async fn leadership(c: &mut Cluster, topic: &str, partition: i32) -> Option<(i32, Vec<i32>)> {
    for b in c.brokers.iter_mut() {
        if !b.is_running() {
            continue;
        }
        if let Some(p) = partitions(b.kafka, topic).await {
            return p.get(&partition).cloned();
        }
    }
    None
}

/// One plain (non-idempotent) produce; the partition's error code (0 on success) or None
/// when the broker did not answer within `timeout` + 2 s.
async fn produce(
    broker: SocketAddr,
    topic: &str,
    acks: i16,
    timeout: Duration,
    values: &[String],
) -> Option<i16> {
    let mut conn = Connection::connect(broker).await.ok()?;
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout.as_millis() as i32)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(producer::encode(
                    -1,
                    -1,
                    -1,
                    &values
                        .iter()
                        .map(|v| v.as_bytes().to_vec())
                        .collect::<Vec<_>>(),
                )))])]);
    let resp = tokio::time::timeout(timeout + Duration::from_secs(2), conn.send(req, 9))
        .await
        .ok()?
        .ok()?;
    Some(resp.responses[0].partition_responses[0].error_code)
}

/// `/v1/replicas` of one broker, the entry for `topic`/`partition`.
fn replica(
    http: SocketAddr,
    topic: &str,
    partition: i32,
    digest_below: Option<i64>,
) -> Option<Value> {
    let path = match digest_below {
        Some(d) => format!("/v1/replicas?digest_below={d}"),
        None => "/v1/replicas".to_string(),
    };
    let doc = http_json(http, &path).ok()?;
    doc.as_array()?
        .iter()
        .find(|r| r["topic"] == topic && r["partition"] == partition)
        .cloned()
}

/// Waits until every broker holds the same log end and high watermark for each partition,
/// then checks the stored bytes below it are identical on all three.
async fn assert_replicas_identical(c: &Cluster, topic: &str, partitions: &[i32]) {
    for p in partitions {
        let hw = until(Duration::from_secs(30), "replicas to converge", || async {
            let states: Vec<(i64, i64)> = c
                .brokers
                .iter()
                .map(|b| {
                    replica(b.http, topic, *p, None).map(|r| {
                        (
                            r["log_end_offset"].as_i64().unwrap_or(-1),
                            r["high_watermark"].as_i64().unwrap_or(-2),
                        )
                    })
                })
                .collect::<Option<_>>()?;
            (states.iter().all(|s| *s == states[0] && s.0 == s.1)).then_some(states[0].1)
        })
        .await;
        let digests: Vec<Value> = c
            .brokers
            .iter()
            .map(|b| replica(b.http, topic, *p, Some(hw)).expect("replica")["digest"].clone())
            .collect();
        assert!(
            digests.iter().all(|d| *d == digests[0]),
            "partition {p}: replica logs differ below {hw}: {digests:?}"
        );
        eprintln!("partition {p}: 3 replicas identical up to offset {hw}");
    }
}

/// Restarts every killed broker and waits until each partition's ISR is whole again.
async fn heal(c: &mut Cluster, topic: &str, n: i32) {
    for b in c.brokers.iter_mut() {
        if !b.is_running() {
            b.restart().expect("restart");
        }
    }
    let addr = c.brokers[0].kafka;
    until(Duration::from_secs(60), "every ISR to be whole", || async {
        let p = partitions(addr, topic).await?;
        (p.len() == n as usize && p.values().all(|(_, isr)| isr.len() == 3)).then_some(())
    })
    .await;
}

/// A fresh 3+3 cluster with a one-partition RF=3, min.insync.replicas=2 topic, and the index
/// (into `brokers`) of partition 0's leader.
async fn cluster_with_topic(
    dir: &std::path::Path,
    topic: &str,
    extra_broker_args: &[&str],
) -> (Cluster, usize) {
    let c = start_cluster(dir, extra_broker_args);
    create_topic(c.brokers[0].kafka, topic, 1, "2").await;
    let addr = c.brokers[0].kafka;
    let (leader, _) = until(Duration::from_secs(10), "a leader", || async move {
        partitions(addr, topic).await?.get(&0).cloned()
    })
    .await;
    (c, (leader - 1) as usize)
}

/// Every value in partition 0, read from its leader.
async fn partition0_values(c: &Cluster, topic: &str) -> Vec<String> {
    producer::read_all(&kafka_addrs(c), topic, &[0])
        .await
        .expect("read")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

fn options(topic: &str, partitions: Vec<i32>, pace_ms: u64) -> ProducerOptions {
    ProducerOptions {
        producer: 1,
        topic: topic.into(),
        partitions,
        records_per_batch: 20,
        request_timeout: Duration::from_secs(3),
        pace: Duration::from_millis(pace_ms),
        started: Instant::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_loses_nothing_while_leaders_are_killed() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = start_cluster(dir.path(), &[]);
    let topic = "numbers";
    create_topic(c.brokers[0].kafka, topic, 3, "2").await;
    let parts = vec![0, 1, 2];
    let opts = options(topic, parts.clone(), 5);
    let started = opts.started;
    let p = TestProducer::start(kafka_addrs(&c), opts)
        .await
        .expect("producer");

    // Kill partition 0's leader every few seconds, restarting it after a while.
    let run_for = Duration::from_secs(
        std::env::var("STROM_KILL_TEST_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut kills: Vec<(i32, u64)> = Vec::new();
    while started.elapsed() < run_for {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let Some((leader, _)) = leadership(&mut c, topic, 0).await else {
            continue;
        };
        if leader < 1 {
            continue;
        }
        c.brokers[(leader - 1) as usize].kill9().expect("kill");
        kills.push((leader, started.elapsed().as_millis() as u64));
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.brokers[(leader - 1) as usize].restart().expect("restart");
    }
    let acked_during = p.acked().await;
    let (history, sequence_errors) = p.stop(Duration::from_secs(20)).await;
    heal(&mut c, topic, 3).await;
    let read = producer::read_all(&kafka_addrs(&c), topic, &parts)
        .await
        .expect("read all");
    let report = checker::check(&history, &read);
    eprintln!("{} leader kills; {report}", kills.len());

    // The write gap per kill on partition 0: kill -> first acknowledgement after it.
    let mut acks0: Vec<u64> = history
        .iter()
        .filter(|s| s.partition == 0)
        .filter_map(|s| s.acked_at_ms)
        .collect();
    acks0.sort_unstable();
    acks0.dedup();
    let gaps: Vec<u64> = kills
        .iter()
        .filter_map(|(_, at)| acks0.iter().find(|a| **a > *at).map(|a| a - at))
        .collect();
    eprintln!("write gap after each kill of partition 0's leader (ms): {gaps:?}");

    assert!(kills.len() >= 3, "only {} kills", kills.len());
    assert!(
        acked_during > 100,
        "only {acked_during} records acknowledged"
    );
    assert_eq!(
        sequence_errors, 0,
        "an idempotent producer got sequence errors"
    );
    assert!(report.ok(), "{report}");
    assert_replicas_identical(&c, topic, &parts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_deposed_truncates_and_rejoins() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = "diverge";
    let (mut c, old_i) = cluster_with_topic(dir.path(), topic, &[]).await;
    let old = old_i as i32 + 1;
    let followers: Vec<usize> = (0..3).filter(|i| *i != old_i).collect();
    let committed: Vec<String> = (0..10).map(|i| format!("committed-{i}")).collect();
    let leader_addr = c.brokers[old_i].kafka;
    assert_eq!(
        produce(leader_addr, topic, -1, Duration::from_secs(5), &committed).await,
        Some(0)
    );

    // Followers stopped: acks=1 writes land on the leader alone (a follower's parked fetch
    // may still carry the first one out, in its socket buffer).
    for f in &followers {
        c.brokers[*f].pause().expect("pause");
    }
    let mut divergent = Vec::new();
    for i in 0..5 {
        let v = vec![format!("divergent-{i}")];
        assert_eq!(
            produce(leader_addr, topic, 1, Duration::from_secs(2), &v).await,
            Some(0)
        );
        divergent.push(v[0].clone());
    }
    // Now the leader stops and the followers come back: one of them must take over.
    c.brokers[old_i].pause().expect("pause leader");
    for f in &followers {
        c.brokers[*f].resume().expect("resume");
    }
    let f_addr = c.brokers[followers[0]].kafka;
    let (new, isr) = until(Duration::from_secs(15), "a new leader", || async move {
        let (l, isr) = partitions(f_addr, topic).await?.get(&0).cloned()?;
        (l >= 1 && l != old).then_some((l, isr))
    })
    .await;
    assert!(
        !isr.contains(&old),
        "the deposed leader left the ISR: {isr:?}"
    );
    let new_addr = c.brokers[(new - 1) as usize].kafka;
    let after: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    let code = until(
        Duration::from_secs(15),
        "acks=all on the new leader",
        || {
            let after = after.clone();
            async move {
                produce(new_addr, topic, -1, Duration::from_secs(3), &after)
                    .await
                    .filter(|c| *c == 0)
            }
        },
    )
    .await;
    assert_eq!(code, 0);

    // The old leader wakes up believing it leads: it must acknowledge nothing more.
    c.brokers[old_i].resume().expect("resume old leader");
    let late = produce(
        leader_addr,
        topic,
        -1,
        Duration::from_secs(2),
        &["late".to_string()],
    )
    .await;
    assert!(
        matches!(late, Some(6 | 7)),
        "a deposed leader must answer NOT_LEADER_OR_FOLLOWER or time out, got {late:?}"
    );

    // It truncates what diverged, catches up and rejoins the ISR.
    heal(&mut c, topic, 1).await;
    let log = std::fs::read_to_string(c.brokers[old_i].data_dir.with_extension("log"))
        .expect("broker log");
    assert!(
        log.contains("truncated divergent records"),
        "the old leader did not truncate"
    );
    let values = partition0_values(&c, topic).await;
    for v in committed.iter().chain(&after) {
        assert_eq!(
            values.iter().filter(|x| *x == v).count(),
            1,
            "{v} must be there exactly once: {values:?}"
        );
    }
    assert!(
        !values.contains(&divergent[4]),
        "the last acks=1 write reached only the old leader and must be gone: {values:?}"
    );
    assert!(!values.iter().any(|v| v == "late"), "{values:?}");
    assert_replicas_identical(&c, topic, &[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_down_refuses_acks_all_until_they_return() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = "quorum";
    let (mut c, li) = cluster_with_topic(dir.path(), topic, &[]).await;
    let leader = li as i32 + 1;
    let l_addr = c.brokers[li].kafka;
    let l_http = c.brokers[li].http;
    let v = |s: &str| vec![s.to_string()];
    assert_eq!(
        produce(l_addr, topic, -1, Duration::from_secs(5), &v("first")).await,
        Some(0)
    );
    for i in (0..3).filter(|i| *i != li) {
        c.brokers[i].kill9().expect("kill");
    }
    // Before the controller notices, the ISR still names the dead: the write cannot be
    // replicated and is not acknowledged.
    let early = produce(l_addr, topic, -1, Duration::from_secs(1), &v("early")).await;
    assert!(
        matches!(early, Some(7 | 19 | 20)),
        "with two replicas dead: REQUEST_TIMED_OUT or NOT_ENOUGH_REPLICAS(_AFTER_APPEND), got {early:?}"
    );
    // Once they are fenced the ISR is the leader alone: refused up front, nothing appended.
    until(
        Duration::from_secs(15),
        "the ISR to shrink to the leader",
        || async move {
            let (_, isr) = partitions(l_addr, topic).await?.get(&0).cloned()?;
            (isr == vec![leader]).then_some(())
        },
    )
    .await;
    let end_before = replica(l_http, topic, 0, None).expect("replica")["log_end_offset"].as_i64();
    for _ in 0..3 {
        assert_eq!(
            produce(l_addr, topic, -1, Duration::from_secs(2), &v("refused")).await,
            Some(19),
            "NOT_ENOUGH_REPLICAS"
        );
    }
    let end_after = replica(l_http, topic, 0, None).expect("replica")["log_end_offset"].as_i64();
    assert_eq!(end_before, end_after, "a refused write appended something");
    // acks=1 still works (that is what it promises).
    assert_eq!(
        produce(l_addr, topic, 1, Duration::from_secs(2), &v("acks1")).await,
        Some(0)
    );
    // They come back, catch up, rejoin: acks=all works again.
    for i in (0..3).filter(|i| *i != li) {
        c.brokers[i].restart().expect("restart");
    }
    until(
        Duration::from_secs(30),
        "acks=all to work again",
        || async move {
            produce(l_addr, topic, -1, Duration::from_secs(2), &v("back"))
                .await
                .filter(|c| *c == 0)
        },
    )
    .await;
    heal(&mut c, topic, 1).await;
    let values = partition0_values(&c, topic).await;
    assert!(values.contains(&"first".to_string()));
    assert!(values.contains(&"back".to_string()));
    assert!(!values.contains(&"refused".to_string()), "{values:?}");
    assert_replicas_identical(&c, topic, &[0]).await;
}

/// Followers stopped, the leader keeps getting writes, then the leader dies and the
/// followers return. With real acks=all nothing acknowledged is lost; with the canary
/// (`--unsafe-ack-before-replication`) the checker must report lost writes.
async fn followers_stalled_then_leader_killed(canary: bool) -> Report {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra: &[&str] = if canary {
        &["--unsafe-ack-before-replication"]
    } else {
        &[]
    };
    let topic = "canary";
    let (mut c, li) = cluster_with_topic(dir.path(), topic, extra).await;
    let p = TestProducer::start(kafka_addrs(&c), options(topic, vec![0], 0))
        .await
        .expect("producer");
    // A steady stream first: a thousand records acknowledged.
    until(Duration::from_secs(30), "acknowledged writes", || async {
        (p.acked().await >= 1000).then_some(())
    })
    .await;
    for i in (0..3).filter(|i| *i != li) {
        c.brokers[i].pause().expect("pause");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.brokers[li].kill9().expect("kill leader");
    let acked_at_kill = p.acked().await;
    for i in (0..3).filter(|i| *i != li) {
        c.brokers[i].resume().expect("resume");
    }
    let survivor = c.brokers[(li + 1) % 3].kafka;
    let old = li as i32 + 1;
    until(Duration::from_secs(15), "a new leader", || async move {
        let (l, _) = partitions(survivor, topic).await?.get(&0).cloned()?;
        (l >= 1 && l != old).then_some(())
    })
    .await;
    if !canary {
        // Real acks=all: the producer's retried batch lands on the new leader and it goes on.
        until(
            Duration::from_secs(15),
            "acknowledgements after the failover",
            || async { (p.acked().await > acked_at_kill).then_some(()) },
        )
        .await;
    }
    let (history, sequence_errors) = p.stop(Duration::from_secs(20)).await;
    heal(&mut c, topic, 1).await;
    let read = producer::read_all(&kafka_addrs(&c), topic, &[0])
        .await
        .expect("read");
    let report = checker::check(&history, &read);
    eprintln!("canary={canary}: {report}; sequence errors {sequence_errors}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_followers_and_a_dead_leader_lose_nothing_acknowledged() {
    let report = followers_stalled_then_leader_killed(false).await;
    assert!(report.acked > 0, "{report}");
    assert!(report.ok(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_a_broker_that_acks_before_replicating() {
    let report = followers_stalled_then_leader_killed(true).await;
    assert!(
        !report.lost.is_empty(),
        "the canary acked before replicating, yet the checker saw no loss: {report}"
    );
}
