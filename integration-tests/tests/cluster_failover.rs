//! 3 controllers + 3 brokers as real processes: topic creation with RF 3, active controller
//! killed, a partition-leading broker killed and restarted, two controllers down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::{http_json, producer, wait_for, Cluster};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest,
    MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom_client::{records, Connection};

const SESSION_MS: &str = "1500";

/// The cluster tests run one at a time: two 5-6 process clusters on 2 cores would make
/// heartbeat timing, not the code under test, decide the outcome.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create_topic(broker: SocketAddr, topic: &str, partitions: i32, rf: i16) -> i16 {
    producer::create_topic(broker, topic, partitions, rf, &[])
        .await
        .expect("create topics answered")
}

async fn metadata(broker: SocketAddr, topic: &str) -> MetadataResponse {
    let mut conn = Connection::connect(broker).await.expect("connect");
    conn.send(
        MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(name(topic))),
            ]))
            .with_allow_auto_topic_creation(false),
        12,
    )
    .await
    .expect("metadata")
}

/// partition -> (leader, leader_epoch, isr) as a broker reports it.
async fn leaders(broker: SocketAddr, topic: &str) -> BTreeMap<i32, (i32, i32, Vec<i32>)> {
    let md = metadata(broker, topic).await;
    md.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                (
                    p.leader_id.0,
                    p.leader_epoch,
                    p.isr_nodes.iter().map(|b| b.0).collect(),
                ),
            )
        })
        .collect()
}

fn batch() -> Bytes {
    let record = records::record(0, None, Some(Bytes::from_static(b"still here")), 1);
    records::encode(&[record], records::Compression::None).expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_and_brokers_fail_over() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(
        dir.path(),
        3,
        3,
        &["--broker-session-timeout-ms", SESSION_MS],
        &["--broker-heartbeat-interval-ms", "250"],
    )
    .expect("cluster");
    let b1 = cluster.brokers[0].kafka;
    let b2 = cluster.brokers[1].kafka;

    // Topics with RF 3 spread leadership over the three brokers.
    assert_eq!(create_topic(b1, "rf3", 6, 3).await, 0);
    assert_eq!(
        create_topic(b1, "rf4", 1, 4).await,
        38,
        "INVALID_REPLICATION_FACTOR with 3 brokers"
    );
    let before = leaders(b2, "rf3").await;
    assert_eq!(before.len(), 6);
    assert!(before
        .values()
        .all(|(l, _, isr)| isr.len() == 3 && isr.contains(l)));
    let md = metadata(b2, "rf3").await;
    assert_eq!(md.brokers.len(), 3, "all live brokers are listed");

    // A config change made through one broker is seen by every broker, without a restart.
    let mut conn = Connection::connect(b1).await.expect("connect");
    let altered = conn
        .send(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("rf3"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("3600000")))]),
            ]),
            1,
        )
        .await
        .expect("alter");
    assert_eq!(altered.responses[0].error_code, 0);
    for b in &cluster.brokers {
        let addr = b.kafka;
        wait_for(
            Duration::from_secs(10),
            "the config on every broker",
            || {
                let described = futures_lite_block(async {
                    let mut c = Connection::connect(addr).await.ok()?;
                    c.send(
                        DescribeConfigsRequest::default().with_resources(vec![
                            DescribeConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("rf3"))
                                .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                                    "retention.ms",
                                )])),
                        ]),
                        4,
                    )
                    .await
                    .ok()
                })?;
                let entry = described.results.first()?.configs.first()?;
                (entry.value.as_deref() == Some("3600000") && entry.config_source == 1)
                    .then_some(())
            },
        )
        .expect("config visible");
    }

    // Kill the active controller: another takes over, no metadata is lost, changes work again.
    let active = cluster
        .active_controller(Duration::from_secs(10))
        .expect("active");
    cluster.controllers[(active - 1) as usize]
        .kill9()
        .expect("kill controller");
    let killed_at = Instant::now();
    let next = cluster
        .active_controller(Duration::from_secs(10))
        .expect("new active");
    assert_ne!(next, active);
    println!("new active controller after {:?}", killed_at.elapsed());
    let survivor = cluster.any_controller().expect("survivor").addr;
    let topics = http_json(survivor, "/v1/topics").expect("topics");
    assert!(topics
        .as_array()
        .expect("list")
        .iter()
        .any(|t| t["name"] == "rf3"));
    assert_eq!(create_topic(b2, "after-failover", 2, 3).await, 0);

    // Kill broker 1: every partition it led gets a new leader from its ISR, with a higher epoch.
    cluster.brokers[0].kill9().expect("kill broker");
    let killed_at = Instant::now();
    let led: Vec<i32> = before
        .iter()
        .filter(|(_, (l, _, _))| *l == 1)
        .map(|(p, _)| *p)
        .collect();
    assert!(!led.is_empty(), "broker 1 led something: {before:?}");
    let moved = wait_for(
        Duration::from_secs(15),
        "leaders to move off broker 1",
        || {
            let now = futures_lite_block(leaders(b2, "rf3"));
            led.iter()
                .all(|p| {
                    let (leader, epoch, isr) = &now[p];
                    *leader != 1 && *leader > 0 && isr.contains(leader) && *epoch > before[p].1
                })
                .then_some(now)
        },
    )
    .expect("failover");
    println!("partition leaders moved after {:?}", killed_at.elapsed());
    assert!(moved.values().all(|(l, _, _)| *l != 1));
    // The new leader serves clients that know the new epoch (and fences the old one).
    for p in &led {
        let (leader, epoch, _) = moved[p];
        let mut c = Connection::connect(cluster.brokers[(leader - 1) as usize].kafka)
            .await
            .expect("connect");
        let ask = |e: i32| {
            ListOffsetsRequest::default()
                .with_replica_id((-1).into())
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name("rf3"))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(*p)
                        .with_current_leader_epoch(e)
                        .with_timestamp(-1)])])
        };
        let r = c.send(ask(epoch), 7).await.expect("list offsets");
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "current epoch {epoch} accepted"
        );
        assert_eq!(r.topics[0].partitions[0].leader_epoch, epoch);
        let r = c.send(ask(epoch - 1), 7).await.expect("list offsets");
        assert_eq!(
            r.topics[0].partitions[0].error_code, 74,
            "FENCED_LEADER_EPOCH for the old epoch"
        );
    }
    let over_http = http_json(survivor, "/v1/topics/rf3").expect("topic");
    for p in over_http["partitions"].as_array().expect("partitions") {
        assert_ne!(p["leader"], 1, "the controller agrees: {p}");
    }
    let brokers = http_json(survivor, "/v1/brokers").expect("brokers");
    assert!(brokers
        .as_array()
        .expect("list")
        .iter()
        .any(|b| b["id"] == 1 && b["state"] == "fenced"));

    // Restart it: it registers again and is alive.
    cluster.brokers[0].restart().expect("restart broker");
    cluster
        .wait_brokers_alive(3, Duration::from_secs(15))
        .expect("rejoined");

    // Two of three controllers down: metadata changes are refused with an error, while the
    // partitions that exist keep taking writes.
    let second = cluster
        .active_controller(Duration::from_secs(10))
        .expect("active");
    cluster.controllers[(second - 1) as usize]
        .kill9()
        .expect("kill second controller");
    let code = create_topic(b2, "no-quorum", 1, 1).await;
    assert!(
        code == 7 || code == 41,
        "REQUEST_TIMED_OUT or NOT_CONTROLLER, got {code}"
    );
    let led_by_b2 = leaders(b2, "rf3")
        .await
        .into_iter()
        .find(|(_, (l, _, _))| *l == 2)
        .map(|(p, _)| p);
    if let Some(p) = led_by_b2 {
        let mut conn = Connection::connect(b2).await.expect("connect");
        let r = conn
            .send(
                ProduceRequest::default()
                    .with_acks(1)
                    .with_timeout_ms(5000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(name("rf3"))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(batch()))])]),
                9,
            )
            .await
            .expect("produce");
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "existing partitions keep working"
        );
    }
}

/// Runs a future to completion from the synchronous polling closure of `wait_for`.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// (term, node) pairs of every controller that says it leads, as observed.
fn observe_leaders(
    cluster: &mut Cluster,
    seen: &mut BTreeMap<u64, std::collections::BTreeSet<u64>>,
) {
    for c in cluster.controllers.iter_mut() {
        if !c.is_running() {
            continue;
        }
        if let Ok(doc) = c.cluster() {
            if doc["raft"]["state"] == "Leader" {
                if let (Some(term), Some(node)) =
                    (doc["raft"]["term"].as_u64(), doc["node_id"].as_u64())
                {
                    seen.entry(term).or_default().insert(node);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_controller_and_broker_recover() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(
        dir.path(),
        3,
        2,
        &["--broker-session-timeout-ms", SESSION_MS],
        &["--broker-heartbeat-interval-ms", "250"],
    )
    .expect("cluster");
    let mut leaders_by_term = BTreeMap::new();

    // SIGSTOP the active controller past the election timeout: another is elected; SIGCONT it:
    // it rejoins as a follower. Never two leaders in one term.
    let first = cluster
        .active_controller(Duration::from_secs(10))
        .expect("active");
    observe_leaders(&mut cluster, &mut leaders_by_term);
    cluster.controllers[(first - 1) as usize]
        .pause()
        .expect("pause");
    let second = wait_for(
        Duration::from_secs(10),
        "a new leader while the old one sleeps",
        || {
            observe_leaders(&mut cluster, &mut leaders_by_term);
            let ids: Vec<u64> = cluster
                .controllers
                .iter()
                .filter(|c| c.id != first)
                .filter_map(|c| c.cluster().ok())
                .filter(|d| d["raft"]["state"] == "Leader")
                .filter_map(|d| d["node_id"].as_u64())
                .collect();
            ids.first().copied()
        },
    )
    .expect("re-election");
    assert_ne!(second, first);
    cluster.controllers[(first - 1) as usize]
        .resume()
        .expect("resume");
    wait_for(
        Duration::from_secs(10),
        "the old leader to step down",
        || {
            observe_leaders(&mut cluster, &mut leaders_by_term);
            let doc = cluster.controllers[(first - 1) as usize].cluster().ok()?;
            (doc["raft"]["state"] == "Follower" && doc["controller_id"].as_u64() == Some(second))
                .then_some(())
        },
    )
    .expect("old leader follows");
    for (term, nodes) in &leaders_by_term {
        assert_eq!(nodes.len(), 1, "term {term} had leaders {nodes:?}");
    }

    // SIGSTOP a broker past its session: it is fenced; SIGCONT it: its heartbeats unfence it.
    cluster.brokers[1].pause().expect("pause broker");
    let any = cluster.any_controller().expect("controller").addr;
    let state_of_2 = |addr| {
        let doc = http_json(addr, "/v1/brokers").ok()?;
        doc.as_array()?
            .iter()
            .find(|b| b["id"] == 2)
            .map(|b| b["state"].as_str().unwrap_or("").to_string())
    };
    wait_for(Duration::from_secs(10), "broker 2 fenced", || {
        (state_of_2(any)? == "fenced").then_some(())
    })
    .expect("fenced");
    cluster.brokers[1].resume().expect("resume broker");
    wait_for(Duration::from_secs(10), "broker 2 alive again", || {
        (state_of_2(any)? == "alive").then_some(())
    })
    .expect("unfenced");
}

/// The active controller confirms its leadership with a quorum before each decision, and
/// openraft gives each follower one heartbeat interval (50 ms) to answer. Followers that answer
/// late (a busy machine; here both SIGSTOPped for a second) must delay a metadata change, not
/// fail it: CI once saw AlterPartitionReassignments refused with "not enough for a quorum" on
/// a healthy but loaded compose cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waits_for_followers_that_answer_late() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A long election timeout: the paused followers must not stand for election on waking.
    let mut cluster = Cluster::start(
        dir.path(),
        3,
        0,
        &[
            "--broker-session-timeout-ms",
            "10000",
            "--raft-election-timeout-ms",
            "5000",
        ],
        &[],
    )
    .expect("cluster");
    // Every voter follows the same leader (a voter that stood in the first, split election
    // would otherwise stand again on waking, at its next election timeout).
    let active = wait_for(
        Duration::from_secs(20),
        "one leader all voters follow",
        || {
            let ids: Vec<Option<u64>> = cluster
                .controllers
                .iter()
                .map(|c| c.cluster().ok()?["controller_id"].as_u64())
                .collect();
            let first = ids[0]?;
            ids.iter().all(|id| *id == Some(first)).then_some(first)
        },
    )
    .expect("a settled quorum");
    // The broker knows only the active controller, so its request reaches the leader itself
    // (a follower would hold it while paused, then forward it once awake).
    let leader_addr = cluster.controllers[(active - 1) as usize].addr.to_string();
    cluster.brokers.push(
        integration_tests::BrokerProcess::start_with(
            &dir.path().join("broker-1"),
            [
                "--node-id",
                "1",
                "--quorum",
                &leader_addr,
                "--broker-heartbeat-interval-ms",
                "250",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
        .expect("broker"),
    );
    cluster
        .wait_brokers_alive(1, Duration::from_secs(30))
        .expect("broker registered");
    let broker = cluster.brokers[0].kafka;
    assert_eq!(create_topic(broker, "before-pause", 1, 1).await, 0);
    let followers: Vec<_> = cluster
        .controllers
        .iter()
        .filter(|c| c.id != active)
        .collect();
    for f in &followers {
        f.pause().expect("pause");
    }
    let started = Instant::now();
    let resume_later = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for f in &followers {
            f.resume().expect("resume");
        }
    };
    let (code, ()) = tokio::join!(create_topic(broker, "while-paused", 1, 1), resume_later);
    assert_eq!(
        code, 0,
        "the change failed instead of waiting for the quorum"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "committed without a quorum"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metadata(broker, "while-paused").await.topics[0].error_code != 0 {
        assert!(Instant::now() < deadline, "the topic never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cluster
            .active_controller(Duration::from_secs(10))
            .expect("active"),
        active,
        "the followers stood for election"
    );
}
