//! MirrorMaker 2's job with strom-connect, between two Strom clusters: a topic with three
//! partitions and a topic config is mirrored while a producer writes to it; a consumer group
//! that read part of it on the source is translated to the target (MirrorCheckpointConnector
//! with sync.group.offsets.enabled) and, resuming there, reads everything it had not read on
//! the source, nothing skipped. The mirrored partitions hold the source's records, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use integration_tests::{free_port, http_send, tail, AppProcess, BrokerProcess};
use strom_client::admin::{Admin, NewTopic};
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;

const RECORDS: usize = 30_000;
const PARTITIONS: i32 = 3;

type Rec = (
    i32,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

/// Every record of `topic`, per partition in order, until `n` in all.
async fn read_all(bootstrap: &str, topic: &str, n: usize) -> BTreeMap<i32, Vec<Rec>> {
    let mut cc = ConsumerConfig::new(bootstrap);
    cc.auto_offset_reset = OffsetReset::Earliest;
    let mut c = Consumer::new(cc).expect("consumer");
    c.assign(
        (0..PARTITIONS)
            .map(|p| TopicPartition::new(topic, p))
            .collect(),
    )
    .await
    .expect("assign");
    let mut out: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while total < n {
        assert!(Instant::now() < deadline, "{topic}: {total} of {n} records");
        for r in c.poll(Duration::from_millis(300)).await.unwrap_or_default() {
            let headers = r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec())))
                .collect();
            out.entry(r.partition).or_default().push((
                r.partition,
                r.key.map(|b| b.to_vec()),
                r.value.map(|b| b.to_vec()),
                headers,
            ));
            total += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_topic_and_a_translated_group_resume_on_the_target_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = BrokerProcess::start(&dir.path().join("source"), &[]).expect("source broker");
    let target = BrokerProcess::start(&dir.path().join("target"), &[]).expect("target broker");
    let (src, dst) = (source.kafka.to_string(), target.kafka.to_string());
    Admin::new(&src)
        .create_topic(
            &NewTopic::new("orders", PARTITIONS, 1).with_config("retention.ms", "123456789"),
        )
        .await
        .expect("topic");

    // The producer writes the first half, the group reads some of it on the source.
    let producer = Producer::new(ProducerConfig::new(&src))
        .await
        .expect("producer");
    let send = |i: usize| {
        ProducerRecord::new("orders", format!("order-{i}"))
            .with_key(format!("customer-{}", i % 97))
            .with_header("seq", i.to_string())
    };
    for i in 0..RECORDS / 2 {
        producer.send(send(i)).await.expect("send");
    }
    producer.flush().await;
    let mut cc = ConsumerConfig::new(&src);
    cc.group_id = Some("billing".into());
    cc.auto_offset_reset = OffsetReset::Earliest;
    cc.enable_auto_commit = false;
    let mut group = Consumer::new(cc).expect("group consumer");
    group.subscribe(&["orders"]).expect("subscribe");
    let mut read_on_source: BTreeSet<String> = BTreeSet::new();
    while read_on_source.len() < RECORDS / 4 {
        for r in group.poll(Duration::from_millis(300)).await.expect("poll") {
            read_on_source
                .insert(String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf8"));
        }
    }
    group.commit_sync().await.expect("commit");
    group.close().await;

    // The mirror runs while the rest is written.
    let port = free_port().expect("port");
    let worker = dir.path().join("worker.properties");
    std::fs::write(
        &worker,
        format!("bootstrap.servers={dst}\nlisteners=http://127.0.0.1:{port}\noffset.storage.file.filename={}\noffset.flush.interval.ms=500\n", dir.path().join("offsets.json").display()),
    )
    .expect("worker config");
    let common = format!("source.cluster.alias=src\nsource.cluster.bootstrap.servers={src}\ntarget.cluster.bootstrap.servers={dst}\n");
    let mirror = dir.path().join("mirror.properties");
    std::fs::write(&mirror, format!("name=mirror\nconnector.class=org.apache.kafka.connect.mirror.MirrorSourceConnector\n{common}topics=orders\nrefresh.topics.interval.ms=1000\ntasks.max=2\n")).expect("mirror config");
    let checkpoint = dir.path().join("checkpoint.properties");
    std::fs::write(&checkpoint, format!("name=checkpoint\nconnector.class=MirrorCheckpointConnector\n{common}groups=billing\nemit.checkpoints.interval.ms=1000\nsync.group.offsets.enabled=true\n")).expect("checkpoint config");
    let log = dir.path().join("worker.log");
    let mut proc = AppProcess::start_bin(
        "strom-connect",
        "STROM_CONNECT_BIN",
        vec![
            "standalone".into(),
            worker.display().to_string(),
            mirror.display().to_string(),
            checkpoint.display().to_string(),
        ],
        log.clone(),
    )
    .expect("worker");
    let rest = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_send(rest, "GET", "/", None).map(|r| r.0).ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "worker did not come up:\n{}",
            tail(&log, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in RECORDS / 2..RECORDS {
        producer.send(send(i)).await.expect("send");
        if i % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    producer.flush().await;

    // Data: the same records in the same partitions, in the same order; configs copied.
    let want = read_all(&src, "orders", RECORDS).await;
    let got = read_all(&dst, "src.orders", RECORDS).await;
    assert_eq!(got.len(), PARTITIONS as usize);
    for p in 0..PARTITIONS {
        assert!(
            got[&p] == want[&p],
            "partition {p} differs: {} vs {} records",
            got[&p].len(),
            want[&p].len()
        );
    }
    let mut admin = Admin::new(&dst);
    let configs = admin.describe_configs("src.orders").await.expect("configs");
    assert!(configs
        .iter()
        .any(|c| c.name == "retention.ms" && c.value.as_deref() == Some("123456789")));

    // The group's offsets arrive on the target, translated; resuming there reads the rest.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = admin
            .list_group_offsets("billing")
            .await
            .unwrap_or_default();
        if committed.len() == PARTITIONS as usize {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group was never synced:\n{}",
            tail(&log, 30)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut cc = ConsumerConfig::new(&dst);
    cc.group_id = Some("billing".into());
    cc.auto_offset_reset = OffsetReset::Latest;
    let mut resumed = Consumer::new(cc).expect("consumer on the target");
    resumed.subscribe(&["src.orders"]).expect("subscribe");
    let mut read_on_target: Vec<String> = Vec::new();
    let mut quiet = 0;
    while quiet < 6 {
        let batch = resumed
            .poll(Duration::from_millis(500))
            .await
            .expect("poll");
        quiet = if batch.is_empty() { quiet + 1 } else { 0 };
        read_on_target.extend(
            batch
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf8")),
        );
    }
    let everything: BTreeSet<String> = (0..RECORDS).map(|i| format!("order-{i}")).collect();
    let seen: BTreeSet<String> = read_on_source
        .iter()
        .cloned()
        .chain(read_on_target.iter().cloned())
        .collect();
    let missing: Vec<&String> = everything.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "the group skipped records after moving: {missing:?}"
    );
    let again = read_on_target
        .iter()
        .filter(|v| read_on_source.contains(*v))
        .count();
    eprintln!(
        "the group read {} records on the source, {} on the target ({again} of them again)",
        read_on_source.len(),
        read_on_target.len()
    );
    assert!(
        read_on_target.len() < RECORDS,
        "the group started over on the target"
    );
    proc.stop().expect("clean stop");
}
