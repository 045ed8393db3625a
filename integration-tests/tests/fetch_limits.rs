//! `--fetch-max-bytes` (Kafka's broker `fetch.max.bytes`): a Fetch answer carries at most
//! that many record bytes whatever the client asks, in whole batches, and always at least
//! the first batch, however large.

use bytes::Bytes;
use integration_tests::BrokerProcess;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use strom_client::{records, Connection};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// One batch of `n` records of 100-byte values.
fn batch(n: usize) -> Bytes {
    let rs: Vec<_> = (0..n)
        .map(|i| records::record(i, None, Some(Bytes::from(vec![b'v'; 100])), 1000))
        .collect();
    records::encode(&rs, records::Compression::None).expect("encode")
}

async fn produce(conn: &mut Connection, batch: Bytes) {
    let r = conn
        .send(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name("t"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch))])]),
            9,
        )
        .await
        .expect("produce");
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

/// The record bytes and batches one Fetch from `offset` answers, asking for 16 MB.
async fn fetch(conn: &mut Connection, offset: i64) -> (usize, Vec<i64>) {
    let r = conn
        .send(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_max_bytes(16 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(16 << 20)])]),
            12,
        )
        .await
        .expect("fetch");
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut data = p.records.clone().unwrap_or_default();
    let size = data.len();
    let sets = RecordBatchDecoder::decode_all(&mut data).expect("decode");
    let bases = sets
        .iter()
        .map(|s| s.records.first().map_or(-1, |r| r.offset))
        .collect();
    (size, bases)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_answer_is_capped_in_whole_batches_but_never_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fetch-max-bytes", "4096"])
        .expect("start");
    integration_tests::producer::create_replicated_topic(broker.kafka, "t", 1, 1).await;
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let one = batch(10);
    for _ in 0..10 {
        produce(&mut conn, one.clone()).await;
    }
    produce(&mut conn, batch(60)).await; // offsets 100..160, one batch over 6 KB
                                         // Ten batches of ~1.2 KB: an answer holds the three that fit in 4096 bytes.
    let (size, bases) = fetch(&mut conn, 0).await;
    assert!(size <= 4096, "{size} bytes");
    assert_eq!(bases, vec![0, 10, 20], "{size} bytes");
    // A batch larger than the cap still goes, alone: a consumer is never stuck.
    let (size, bases) = fetch(&mut conn, 100).await;
    assert_eq!(bases, vec![100]);
    assert!(size > 4096, "{size} bytes");
}
