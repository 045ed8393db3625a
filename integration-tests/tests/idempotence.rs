//! Idempotent produce over the wire: InitProducerId, retries answered with their original
//! offsets, gaps refused, and the producer state surviving kill -9.

use bytes::Bytes;
use integration_tests::BrokerProcess;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_client::{records, Connection};

fn batch(pid: i64, epoch: i16, first_seq: i32, n: i32) -> Bytes {
    let mut batch: Vec<_> = (0..n)
        .map(|i| {
            let v = Bytes::from(format!("seq-{}", first_seq + i));
            records::record(i as usize, None, Some(v), 1)
        })
        .collect();
    records::idempotent(&mut batch, pid, epoch, first_seq);
    records::encode(&batch, records::Compression::Lz4).expect("encode")
}

/// (error code, base offset) of producing `records` with acks=-1.
async fn produce(conn: &mut Connection, records: Bytes) -> (i16, i64) {
    let r = conn
        .send(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("idem")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records))])]),
            9,
        )
        .await
        .expect("produce answered");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_deduplicated_across_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let init = conn
        .send(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .await
        .expect("init");
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    let second = conn
        .send(
            InitProducerIdRequest::default().with_transactional_id(None),
            4,
        )
        .await
        .expect("init");
    assert_ne!(second.producer_id.0, pid, "every producer gets its own id");
    let txn = conn
        .send(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(StrBytes::from_static_str("t").into())),
            4,
        )
        .await
        .expect("init");
    assert_ne!(txn.error_code, 0, "transactions are refused");

    assert_eq!(produce(&mut conn, batch(pid, 0, 0, 5)).await, (0, 0));
    assert_eq!(produce(&mut conn, batch(pid, 0, 5, 5)).await, (0, 5));
    // A retry of either gets its original offset and writes nothing.
    assert_eq!(produce(&mut conn, batch(pid, 0, 0, 5)).await, (0, 0));
    assert_eq!(produce(&mut conn, batch(pid, 0, 5, 5)).await, (0, 5));
    // A gap is refused.
    assert_eq!(
        produce(&mut conn, batch(pid, 0, 12, 1)).await.0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // An unknown producer that does not start at 0.
    assert_eq!(
        produce(&mut conn, batch(pid + 100, 0, 3, 1)).await.0,
        59,
        "UNKNOWN_PRODUCER_ID"
    );

    broker.kill9().expect("kill");
    broker.restart().expect("restart");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    assert_eq!(
        produce(&mut conn, batch(pid, 0, 5, 5)).await,
        (0, 5),
        "deduplicated after kill -9"
    );
    assert_eq!(produce(&mut conn, batch(pid, 0, 10, 2)).await, (0, 10));
    // A bumped epoch restarts the sequence; the old epoch is fenced.
    assert_eq!(produce(&mut conn, batch(pid, 1, 0, 1)).await, (0, 12));
    assert_eq!(
        produce(&mut conn, batch(pid, 0, 12, 1)).await.0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
}
