//! Unit tests of the consumer without a broker: config checks, the join metadata, positions
//! as records are handed out.

use super::*;
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Encodable;

use crate::cluster::topic_name;

#[test]
fn config_validation_names_the_setting() {
    let mut c = ConsumerConfig::new("127.0.0.1:9092");
    assert!(c.validate().is_ok());
    c.heartbeat_interval = c.session_timeout;
    assert!(matches!(c.validate(), Err(ConsumerError::Config(m)) if m.contains("heartbeat")));
    let mut c = ConsumerConfig::new(" , ");
    assert!(c.validate().is_err());
    c.bootstrap = "x:1".into();
    c.group_instance_id = Some("i".into());
    assert!(c.validate().is_err(), "an instance id without a group");
}

#[tokio::test]
async fn subscribe_needs_a_group_and_seek_needs_an_assignment() {
    let mut c = Consumer::new(ConsumerConfig::new("127.0.0.1:1")).expect("consumer");
    assert!(matches!(c.subscribe(&["t"]), Err(ConsumerError::Config(_))));
    let tp = TopicPartition::new("t", 0);
    assert_eq!(c.seek(&tp, 5), Err(ConsumerError::NotAssigned(tp.clone())));
    c.assign(vec![tp.clone()]).await.expect("assign");
    c.seek(&tp, 5).expect("seek");
    assert_eq!(c.position(&tp).await, Ok(5));
    assert!(matches!(c.commit_async(), Err(ConsumerError::Config(_))));
}

#[test]
fn subscriptions_round_trip_through_the_join_metadata() {
    let mut config = ConsumerConfig::new("x:1");
    config.group_id = Some("g".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let c = Consumer::new(config).expect("consumer");
    let protocols = c
        .protocols(
            &["a".into(), "b".into()],
            &[TopicPartition::new("a", 1), TopicPartition::new("a", 3)],
            7,
        )
        .expect("protocols");
    assert_eq!(
        protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["range", "cooperative-sticky"]
    );
    let m = protocol::decode_subscription("m1", None, &protocols[0].1);
    assert_eq!(m.topics, ["a", "b"]);
    assert_eq!(
        m.owned,
        [TopicPartition::new("a", 1), TopicPartition::new("a", 3)]
    );
    assert_eq!(m.generation, 7);
    let garbage = protocol::decode_subscription("m2", None, &Bytes::from_static(&[0, 1, 0xff]));
    assert!(garbage.topics.is_empty());
}

#[test]
fn assignments_decode_and_an_empty_one_is_nothing() {
    assert!(protocol::decode_assignment(&Bytes::new())
        .expect("empty")
        .is_empty());
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        AssignedPartitions::default()
            .with_topic(topic_name("t"))
            .with_partitions(vec![0, 2]),
    ]);
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    a.encode(&mut buf, 1).expect("encode");
    let got = protocol::decode_assignment(&buf.freeze()).expect("decode");
    let want = [TopicPartition::new("t", 0), TopicPartition::new("t", 2)];
    assert_eq!(got.into_iter().collect::<Vec<_>>(), want);
    // What the leader encodes reads back the same.
    let ours = protocol::assignment(&want, None).expect("encode");
    assert_eq!(
        protocol::decode_assignment(&ours)
            .expect("decode")
            .into_iter()
            .collect::<Vec<_>>(),
        want
    );
    assert!(protocol::decode_assignment(&Bytes::from_static(&[0, 1, 0xff])).is_err());
}

fn state_with(records: &[i64], next_fetch: i64) -> PartitionState {
    let mut st = PartitionState::new(Position::Known(
        records.first().copied().unwrap_or(next_fetch),
    ));
    st.next_fetch = next_fetch;
    st.buffer = records
        .iter()
        .map(|o| ConsumerRecord {
            topic: "t".into(),
            partition: 0,
            offset: *o,
            timestamp: 0,
            key: None,
            value: None,
            headers: Vec::new(),
            leader_epoch: 0,
        })
        .collect();
    st
}

#[tokio::test]
async fn positions_move_as_records_are_returned_not_fetched() {
    let mut c = Consumer::new(ConsumerConfig::new("x:1")).expect("consumer");
    let tp = TopicPartition::new("t", 0);
    c.partitions
        .insert(tp.clone(), state_with(&[10, 11, 12, 14], 20));
    c.config.max_poll_records = 2;
    let first = c.drain(2);
    assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [10, 11]);
    assert_eq!(c.positions()[&tp], 12);
    let second = c.drain(10);
    assert_eq!(
        second.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [12, 14]
    );
    // The batch went on to offset 19 (compacted away): the next fetch starts at 20.
    assert_eq!(c.positions()[&tp], 20);
}

#[tokio::test]
async fn drain_takes_turns_between_partitions() {
    let mut c = Consumer::new(ConsumerConfig::new("x:1")).expect("consumer");
    let a = TopicPartition::new("t", 0);
    let b = TopicPartition::new("t", 1);
    c.partitions.insert(a.clone(), state_with(&[0, 1, 2], 3));
    let mut sb = state_with(&[0, 1, 2], 3);
    for r in sb.buffer.iter_mut() {
        r.partition = 1;
    }
    c.partitions.insert(b.clone(), sb);
    let first = c.drain(3);
    let second = c.drain(3);
    assert_ne!(first[0].partition, second[0].partition);
}

#[tokio::test]
async fn a_seek_drops_what_was_buffered() {
    let mut c = Consumer::new(ConsumerConfig::new("x:1")).expect("consumer");
    let tp = TopicPartition::new("t", 0);
    c.partitions.insert(tp.clone(), state_with(&[5, 6, 7], 8));
    c.seek(&tp, 2).expect("seek");
    assert!(c.drain(10).is_empty());
    assert_eq!(c.positions()[&tp], 2);
}
