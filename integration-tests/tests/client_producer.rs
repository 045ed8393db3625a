//! The library producer (`strom_client::producer`) against live brokers: batching, keyed
//! partitioning as Java's, sticky keyless partitioning, headers and timestamps round-trip,
//! immediate errors, and leader failover without loss or duplicates.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use integration_tests::checker::{self, Sent};
use integration_tests::producer::{self, leaders, read_all};
use integration_tests::{BrokerProcess, Cluster};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use strom_client::partitioner::partition_for_key;
use strom_client::producer::{Producer, ProducerConfig, ProducerError, ProducerRecord};
use strom_client::Connection;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create_topic(broker: SocketAddr, topic: &str, partitions: i32, rf: i16) {
    producer::create_replicated_topic(broker, topic, partitions, rf).await
}

/// Every record of one partition: (offset, key, value, headers, timestamp).
type Row = (i64, Option<String>, String, Vec<(String, String)>, i64);

/// The record batches of one partition from `offset` on, as one Fetch returns them.
async fn fetch_batches(
    conn: &mut Connection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Vec<kafka_protocol::records::RecordSet> {
    let r = conn
        .send(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_max_bytes(16 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(16 << 20)])]),
            12,
        )
        .await
        .expect("fetch");
    let mut data = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut data).expect("decode")
}

async fn read_partition(broker: SocketAddr, topic: &str, partition: i32) -> Vec<Row> {
    let mut conn = Connection::connect(broker).await.expect("connect");
    let batches = fetch_batches(&mut conn, topic, partition, 0).await;
    let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
    batches
        .into_iter()
        .flat_map(|s| s.records)
        .map(|r| {
            (
                r.offset,
                r.key.as_ref().map(text),
                r.value.as_ref().map(text).unwrap_or_default(),
                r.headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_ref().map(text).unwrap_or_default()))
                    .collect(),
                r.timestamp,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_partitions_and_round_trips_like_a_kafka_producer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    create_topic(broker.kafka, "lib", 4, 1).await;
    let producer = Producer::new(ProducerConfig::new(broker.kafka.to_string()))
        .await
        .expect("producer");
    assert!(producer.identity().is_some(), "idempotent by default");

    // 1,000 keyed records with headers and timestamps, sent without waiting in between.
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 60_000;
    let mut deliveries = Vec::new();
    for i in 0..1000 {
        let key = format!("key-{}", i % 50);
        let record = ProducerRecord::new("lib", format!("value-{i}"))
            .with_key(key.clone())
            .with_header("n", i.to_string())
            .with_timestamp(ts + i);
        deliveries.push((key, producer.send(record).await.expect("queued")));
    }
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (key, d) in deliveries {
        let meta = d.await.expect("delivered");
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), 4),
            "{key}"
        );
        per_partition
            .entry(meta.partition)
            .or_default()
            .push(meta.offset);
    }
    for (p, offsets) in &per_partition {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, &expected,
            "partition {p}: offsets in send order, no gaps"
        );
    }
    // What the broker holds is what was sent: key, value, header, timestamp, in order.
    let mut seen = 0;
    for p in 0..4 {
        let rows = read_partition(broker.kafka, "lib", p).await;
        assert_eq!(rows.len(), per_partition.get(&p).map_or(0, Vec::len));
        let mut last_n = -1i64;
        for (offset, key, value, headers, timestamp) in rows {
            let n: i64 = value.trim_start_matches("value-").parse().expect("n");
            assert!(n > last_n, "send order within the partition");
            last_n = n;
            assert_eq!(key.as_deref(), Some(format!("key-{}", n % 50).as_str()));
            assert_eq!(headers, vec![("n".to_string(), n.to_string())]);
            assert_eq!(timestamp, ts + n);
            assert!(offset >= 0);
            seen += 1;
        }
    }
    assert_eq!(seen, 1000);

    // Keyless records stick to a partition per batch and move on after each batch.
    let mut partitions = HashSet::new();
    for round in 0..4 {
        let mut ds = Vec::new();
        for i in 0..10 {
            ds.push(
                producer
                    .send(ProducerRecord::new("lib", format!("keyless-{round}-{i}")))
                    .await
                    .expect("queued"),
            );
        }
        let metas: Vec<_> = join_all(ds)
            .await
            .into_iter()
            .map(|m| m.expect("ok"))
            .collect();
        let first = metas[0].partition;
        assert!(
            metas.iter().all(|m| m.partition == first),
            "one batch, one partition"
        );
        partitions.insert(first);
    }
    assert!(
        partitions.len() > 1,
        "keyless batches rotate: {partitions:?}"
    );

    // Immediate errors: a missing topic, a partition out of range.
    assert!(matches!(
        producer
            .send(ProducerRecord::new("no-such-topic", "x"))
            .await,
        Err(ProducerError::UnknownTopic(_))
    ));
    assert!(matches!(
        producer
            .send(ProducerRecord::new("lib", "x").with_partition(9))
            .await,
        Err(ProducerError::UnknownPartition { .. })
    ));
    // A record over the broker's limit fails alone, with the broker's error.
    let big = producer
        .send(ProducerRecord::new("lib", vec![b'x'; 2 << 20]).with_partition(3))
        .await
        .expect("queued")
        .await;
    assert!(
        matches!(&big, Err(ProducerError::Broker { name, .. }) if name == "MESSAGE_TOO_LARGE"),
        "{big:?}"
    );
    producer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_leaders_across_kills_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Cluster::start(
        dir.path(),
        3,
        3,
        &["--broker-session-timeout-ms", "1500"],
        &["--broker-heartbeat-interval-ms", "250"],
    )
    .expect("cluster");
    let brokers: Vec<SocketAddr> = c.brokers.iter().map(|b| b.kafka).collect();
    create_topic(brokers[0], "failover", 3, 3).await;
    let bootstrap = brokers
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let producer = std::sync::Arc::new(
        Producer::new(ProducerConfig::new(bootstrap))
            .await
            .expect("producer"),
    );
    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < Duration::from_secs(12) {
                let value = format!("r-{i}");
                let d = producer
                    .send(
                        ProducerRecord::new("failover", value.clone())
                            .with_key(format!("k{}", i % 7)),
                    )
                    .await
                    .expect("queued");
                sent.push((i, value, d));
                i += 1;
                if i.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            sent
        })
    };
    // Kill partition 0's leader twice, restarting it in between.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = leaders(&brokers, "failover").await.expect("leaders")[&0];
        let i = brokers
            .iter()
            .position(|b| *b == leader)
            .expect("known broker");
        c.brokers[i].kill9().expect("kill");
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.brokers[i].restart().expect("restart");
    }
    let sent = sender.await.expect("sender");
    let mut history = Vec::new();
    for (seq, value, d) in sent {
        let meta = d
            .await
            .expect("every record is delivered despite the kills");
        history.push(Sent {
            producer: 1,
            partition: meta.partition,
            seq,
            value: value.into_bytes(),
            acked_offset: Some(meta.offset),
            acked_at_ms: None,
        });
    }
    let read = read_all(&brokers, "failover", &[0, 1, 2])
        .await
        .expect("read");
    let report = checker::check(&history, &read);
    eprintln!("library producer across 2 leader kills: {report}");
    assert!(report.ok(), "{report}");
    assert!(report.acked > 500, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_faster_than_acknowledged_share_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    create_topic(broker.kafka, "batched", 1, 1).await;
    let producer = Producer::new(ProducerConfig::new(broker.kafka.to_string()))
        .await
        .expect("producer");
    // 20,000 records of 100 bytes queued back to back: while one request is out, the next
    // batch fills from what waits (before the fix each record went out alone once its
    // linger had passed in the queue).
    let mut ds = Vec::new();
    for i in 0..20_000 {
        ds.push(
            producer
                .send(ProducerRecord::new("batched", format!("{i:0>100}")))
                .await
                .expect("queued"),
        );
    }
    for d in ds {
        d.await.expect("delivered");
    }
    producer.close().await;
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let mut batches = 0usize;
    let mut records = 0usize;
    let mut offset = 0i64;
    while records < 20_000 {
        let sets = fetch_batches(&mut conn, "batched", 0, offset).await;
        assert!(!sets.is_empty(), "all 20,000 are in the log");
        for s in sets {
            batches += 1;
            records += s.records.len();
            offset = s.records.last().map_or(offset, |r| r.offset + 1);
        }
    }
    eprintln!("20000 records in {batches} batches");
    assert!(
        batches <= 20_000 / 10,
        "{batches} batches for 20,000 records: the producer is not batching"
    );
}
