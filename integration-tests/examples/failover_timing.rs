//! Measures failover on a 3-controller + 3-broker cluster of real processes:
//! - kill -9 the broker leading partition 0 -> a new leader visible in a Kafka Metadata answer;
//! - kill -9 the active controller -> another controller reports itself active.
//!
//! Each of them `tries` times (default 20), printing every try and the median and worst.
//!
//! cargo build --bins && cargo run -p integration-tests --example failover_timing -- \
//!     [tries] [broker_session_ms] [raft_election_timeout_ms]

use std::time::{Duration, Instant};

use integration_tests::{wait_for, Cluster};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_client::Connection;

fn topic(i: usize) -> TopicName {
    TopicName(StrBytes::from_string(format!("timing-{i}")))
}

async fn create(addr: std::net::SocketAddr, i: usize) -> anyhow::Result<()> {
    let mut conn = Connection::connect(addr).await?;
    let r = conn
        .send(
            CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(topic(i))
                .with_num_partitions(1)
                .with_replication_factor(3)]),
            7,
        )
        .await?;
    anyhow::ensure!(
        r.topics[0].error_code == 0,
        "create failed: {:?}",
        r.topics[0]
    );
    Ok(())
}

async fn leader_of_p0(addr: std::net::SocketAddr, i: usize) -> Option<i32> {
    let mut c = Connection::connect(addr).await.ok()?;
    let md = c
        .send(
            MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic(i)))
                ]))
                .with_allow_auto_topic_creation(false),
            12,
        )
        .await
        .ok()?;
    md.topics
        .first()?
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)
        .map(|p| p.leader_id.0)
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn summary(what: &str, mut ms: Vec<u128>) {
    ms.sort_unstable();
    let median = ms[ms.len() / 2];
    let worst = ms[ms.len() - 1];
    println!(
        "{what}: {} tries, median {median} ms, worst {worst} ms, all {ms:?}",
        ms.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let tries: usize = args.get(1).map_or(Ok(20), |s| s.parse())?;
    let session = args.get(2).cloned().unwrap_or_else(|| "1500".into());
    let election: u64 = args.get(3).map_or(Ok(500), |s| s.parse())?;
    let heartbeat = (election / 10).max(10).to_string();
    let election = election.to_string();
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(
        dir.path(),
        3,
        3,
        &[
            "--broker-session-timeout-ms",
            &session,
            "--raft-election-timeout-ms",
            &election,
            "--raft-heartbeat-ms",
            &heartbeat,
        ],
        &["--broker-heartbeat-interval-ms", "250"],
    )?;
    // A fresh RF-3 topic per try: without replication (yet) a fenced broker never rejoins an
    // ISR, so ISRs only shrink; each try needs one that still has three members.
    println!(
        "broker session timeout {session} ms, broker heartbeat 250 ms, raft election timeout {election} ms, raft heartbeat {heartbeat} ms"
    );

    let mut broker_ms = Vec::new();
    for i in 0..tries {
        let any = cluster.brokers[0].kafka;
        block(create(any, i))?;
        let leader = block(leader_of_p0(any, i));
        let leader = leader
            .filter(|l| *l > 0)
            .ok_or_else(|| anyhow::anyhow!("no leader for p0"))?;
        let observer = cluster.brokers[(leader as usize) % 3].kafka; // a broker that stays up
        cluster.brokers[(leader - 1) as usize].kill9()?;
        let t0 = Instant::now();
        wait_for(Duration::from_secs(30), "a new leader", || {
            block(leader_of_p0(observer, i)).filter(|l| *l > 0 && *l != leader)
        })?;
        let ms = t0.elapsed().as_millis();
        println!("broker try {i}: killed leader {leader}, new leader after {ms} ms");
        broker_ms.push(ms);
        cluster.brokers[(leader - 1) as usize].restart()?;
        cluster.wait_brokers_alive(3, Duration::from_secs(30))?;
    }

    let mut controller_ms = Vec::new();
    for i in 0..tries {
        let active = cluster.active_controller(Duration::from_secs(30))?;
        cluster.controllers[(active - 1) as usize].kill9()?;
        let t0 = Instant::now();
        let next = cluster.active_controller(Duration::from_secs(30))?;
        let ms = t0.elapsed().as_millis();
        println!("controller try {i}: killed {active}, {next} active after {ms} ms");
        controller_ms.push(ms);
        cluster.controllers[(active - 1) as usize].restart()?;
        // Settle before the next try: all three agree on one leader, which says it leads.
        let addrs: Vec<_> = cluster.controllers.iter().map(|c| c.addr).collect();
        wait_for(Duration::from_secs(30), "the quorum to settle", || {
            let docs: Vec<_> = addrs
                .iter()
                .filter_map(|a| integration_tests::http_json(*a, "/v1/cluster").ok())
                .collect();
            let leader = docs.first()?["controller_id"].as_u64()?;
            let agree = docs.len() == 3
                && docs
                    .iter()
                    .all(|d| d["controller_id"].as_u64() == Some(leader));
            let leads = docs
                .iter()
                .filter(|d| d["raft"]["state"] == "Leader")
                .count()
                == 1;
            (agree && leads).then_some(())
        })?;
    }
    summary(
        "partition leader failover (kill -9 broker -> new leader in Metadata)",
        broker_ms,
    );
    summary(
        "controller failover (kill -9 active controller -> new active)",
        controller_ms,
    );
    Ok(())
}
