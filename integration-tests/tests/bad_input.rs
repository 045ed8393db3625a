//! Bad input over a raw socket: each case must close (or answer) only the offending
//! connection, allocate nothing proportional to a claimed size, and leave the broker serving
//! a connection opened before it and one opened after it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use integration_tests::BrokerProcess;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, MetadataRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::protocol::{Decodable, Encodable};
use strom_client::{records, ClientError, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request header v1 (api key, version, correlation id, client id) followed by `body`.
fn request(api_key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&api_key.to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&7i32.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(body);
    frame(&b)
}

/// Sends `bytes` and expects the broker to close the connection without answering.
async fn expect_closed(broker: &BrokerProcess, bytes: &[u8]) {
    let mut s = TcpStream::connect(broker.kafka).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the broker should close the connection, not hang")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected a close, got {n} bytes");
}

async fn still_serves(conn: &mut Connection) {
    let r = conn
        .send(MetadataRequest::default().with_topics(None), 12)
        .await
        .expect("metadata on a healthy connection");
    assert_eq!(r.brokers.len(), 1);
}

fn batch(n: usize) -> Bytes {
    let batch: Vec<_> = (0..n)
        .map(|i| {
            let v = Bytes::from(vec![b'v'; 100]);
            records::record(i, Some(Bytes::from_static(b"k")), Some(v), 1000 + i as i64)
        })
        .collect();
    records::encode(&batch, records::Compression::None).expect("encode")
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    let mut before = Connection::connect(broker.kafka).await.expect("connect");
    still_serves(&mut before).await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-1i32).to_be_bytes().to_vec()),
        (
            "length over socket.request.max.bytes",
            (200i32 << 20).to_be_bytes().to_vec(),
        ),
        ("frame shorter than a header", frame(&[0, 3])),
        ("garbage", frame(&[0xde; 64])),
        ("unknown api key", request(999, 0, &[])),
        ("unsupported metadata version", request(3, 99, &[])),
        ("unsupported fetch version", request(1, 2, &[])),
        ("api strom does not serve", request(10, 0, &[])),
        ("truncated metadata body", request(3, 1, &[0, 0, 0, 5, 0])),
        // The transaction and describe APIs: truncated bodies, versions not served.
        ("truncated InitProducerId", request(22, 3, &[0, 5, b'a'])),
        (
            "truncated AddPartitionsToTxn",
            request(24, 3, &[0, 0, 0, 5, 0]),
        ),
        ("truncated AddOffsetsToTxn", request(25, 0, &[0, 9, b't'])),
        ("truncated EndTxn", request(26, 1, &[0, 0, 0, 5, 0])),
        (
            "truncated WriteTxnMarkers",
            request(27, 1, &[0, 0, 0, 5, 0]),
        ),
        (
            "truncated TxnOffsetCommit",
            request(28, 3, &[0, 0, 0, 5, 0]),
        ),
        ("truncated DescribeTransactions", request(65, 0, &[0x7f])),
        ("truncated ListTransactions", request(66, 0, &[0x7f])),
        ("truncated DescribeProducers", request(61, 0, &[0x7f])),
        ("truncated DescribeCluster", request(60, 1, &[])),
        ("truncated DescribeTopicPartitions", request(75, 0, &[0x7f])),
        ("truncated DescribeLogDirs", request(35, 1, &[0, 0, 0, 5])),
        ("truncated DescribeQuorum", request(55, 2, &[0x7f])),
        (
            "truncated UpdateFeatures",
            request(57, 1, &[0, 0, 0x75, 0x30, 2, 5]),
        ),
        ("unsupported UpdateFeatures version", request(57, 3, &[])),
        ("unsupported EndTxn version", request(26, 9, &[])),
        // Transaction version 2 (KIP-890 part 2): EndTxn v5, TxnOffsetCommit v5 and
        // AddPartitionsToTxn v5 are flexible versions; Produce v12 the add-on-write one.
        ("truncated EndTxn v5", request(26, 5, &[0, 4, b't'])),
        (
            "truncated TxnOffsetCommit v5",
            request(28, 5, &[0, 4, b't']),
        ),
        (
            "truncated AddPartitionsToTxn v5",
            request(24, 5, &[0, 0x7f]),
        ),
        ("truncated Produce v12", request(0, 12, &[0, 2, b't', 0xff])),
        ("unsupported Produce version", request(0, 14, &[])),
        // The consumer group protocol (KIP-848).
        ("truncated ConsumerGroupHeartbeat", request(68, 0, &[0x7f])),
        (
            "truncated ConsumerGroupHeartbeat v1",
            request(68, 1, &[0, 2, b'g', 0, 0, 0]),
        ),
        (
            "unsupported ConsumerGroupHeartbeat version",
            request(68, 2, &[]),
        ),
        ("truncated ConsumerGroupDescribe", request(69, 0, &[0x7f])),
        // Share groups (KIP-932): v1 only.
        ("truncated ShareGroupHeartbeat", request(76, 1, &[0x7f])),
        (
            "unsupported ShareGroupHeartbeat version",
            request(76, 0, &[]),
        ),
        ("truncated ShareFetch", request(78, 1, &[0, 0x7f])),
        ("unsupported ShareFetch version", request(78, 2, &[])),
        ("truncated ShareAcknowledge", request(79, 1, &[0, 0x7f])),
        ("truncated ShareGroupDescribe", request(77, 1, &[0x7f])),
        ("truncated AlterShareGroupOffsets", request(91, 0, &[0x7f])),
        (
            "truncated DeleteShareGroupOffsets",
            request(92, 0, &[0x03, b'g']),
        ),
        (
            "unsupported AlterShareGroupOffsets version",
            request(91, 1, &[]),
        ),
        (
            "truncated InitializeShareGroupState",
            request(83, 0, &[0x7f]),
        ),
        ("truncated DeleteShareGroupState", request(86, 0, &[0x02])),
        // Client telemetry (KIP-714) and ListConfigResources.
        (
            "truncated GetTelemetrySubscriptions",
            request(71, 0, &[0, 1, 2]),
        ),
        ("truncated PushTelemetry", request(72, 0, &[0, 1, 2, 3])),
        ("unsupported PushTelemetry version", request(72, 1, &[])),
        ("truncated ListConfigResources", request(74, 1, &[0, 0x7f])),
        (
            "unsupported ConsumerGroupDescribe version",
            request(69, 2, &[]),
        ),
        ("unsupported WriteTxnMarkers version", request(27, 0, &[])),
        // Metadata v0 claiming 2^31-1 topics in a few bytes: the patched decoder refuses it
        // before allocating (unpatched, this aborts the process).
        (
            "array count lie",
            request(3, 0, &[0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']),
        ),
        (
            "string length lie",
            request(3, 0, &[0, 0, 0, 1, 0x7f, 0xff, b'a']),
        ),
    ];
    for (what, bytes) in &cases {
        expect_closed(&broker, bytes).await;
        assert!(broker.is_running(), "broker died on: {what}");
        still_serves(&mut before).await;
        let mut after = Connection::connect(broker.kafka)
            .await
            .expect("connect after");
        still_serves(&mut after).await;
    }

    // A peer that announces 90 MiB and sends 10 bytes is parked, not served a 90 MiB buffer;
    // everyone else carries on.
    let mut liar = TcpStream::connect(broker.kafka).await.expect("connect");
    liar.write_all(&(90i32 << 20).to_be_bytes())
        .await
        .expect("write");
    liar.write_all(&[0u8; 10]).await.expect("write");
    still_serves(&mut before).await;
    drop(liar);
    broker.kill9().expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiversions_fallback_and_pipelined_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");

    // KIP-511: an ApiVersions version we do not speak gets a v0 answer with
    // UNSUPPORTED_VERSION and our version ranges.
    let mut raw = TcpStream::connect(broker.kafka).await.expect("connect");
    raw.write_all(&request(18, 77, &[])).await.expect("write");
    let mut conn = Connection::from_stream(raw);
    let frame = conn.read_frame().await.expect("an answer, not a close");
    assert_eq!(strom_client::correlation_id(&frame), Some(7));
    let mut body = frame.slice(4..);
    let resp = kafka_protocol::messages::ApiVersionsResponse::decode(&mut body, 0)
        .expect("a v0 ApiVersions response");
    assert_eq!(resp.error_code, 35);
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 3));

    // Requests pipelined on one connection are answered in order.
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let mut ids = Vec::new();
    for i in 0..50 {
        let id = if i % 2 == 0 {
            conn.write_request(&ApiVersionsRequest::default(), 3).await
        } else {
            conn.write_request(&MetadataRequest::default().with_topics(None), 9)
                .await
        };
        ids.push(id.expect("write"));
    }
    for (i, id) in ids.into_iter().enumerate() {
        if i % 2 == 0 {
            conn.read_response::<ApiVersionsRequest>(3, id)
                .await
                .expect("in order");
        } else {
            conn.read_response::<MetadataRequest>(9, id)
                .await
                .expect("in order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_get_error_codes_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--message-max-bytes", "2000"])
        .expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let code = |r: kafka_protocol::messages::ProduceResponse| {
        r.responses[0].partition_responses[0].error_code
    };

    let good = conn
        .send(produce("bad-batches", batch(3)), 9)
        .await
        .expect("produce");
    assert_eq!(code(good), 0);

    let mut corrupt = BytesMut::from(&batch(3)[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let r = conn
        .send(produce("bad-batches", corrupt.freeze()), 9)
        .await
        .expect("answered");
    assert_eq!(code(r), 2, "CORRUPT_MESSAGE");

    let r = conn
        .send(produce("bad-batches", batch(30)), 9)
        .await
        .expect("answered");
    assert_eq!(code(r), 10, "MESSAGE_TOO_LARGE");

    let r = conn
        .send(produce("bad-batches", Bytes::from_static(&[1, 2, 3])), 9)
        .await
        .expect("answered");
    assert_eq!(code(r), 2, "CORRUPT_MESSAGE for a stub of a batch");

    // Produce v2 is parsed and refused as Kafka 4 refuses it. The crate cannot encode v2, but
    // v2 is v3 without the transactional id (a null string, two bytes) in front.
    let mut v3 = BytesMut::new();
    produce("bad-batches", batch(1))
        .encode(&mut v3, 3)
        .expect("encode");
    let mut raw = TcpStream::connect(broker.kafka).await.expect("connect");
    raw.write_all(&request(0, 2, &v3[2..]))
        .await
        .expect("write");
    let mut old = Connection::from_stream(raw);
    let mut frame = old.read_frame().await.expect("an answer");
    let _correlation = frame.split_to(4);
    let r = ProduceResponse::decode(&mut frame, 3).expect("v2 response has the v3 layout");
    assert_eq!(code(r), 35, "UNSUPPORTED_VERSION");

    // Nothing but the first batch was written.
    let r = conn
        .send(produce("bad-batches", batch(1)), 9)
        .await
        .expect("produce");
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 3);

    // Clients cannot write the coordinator's internal topic.
    let fc = conn
        .send(
            kafka_protocol::messages::FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("some-group")),
            3,
        )
        .await
        .expect("find coordinator");
    assert_eq!(fc.error_code, 0, "the coordinator exists once asked for");
    let r = conn
        .send(produce("__consumer_offsets", batch(1)), 9)
        .await
        .expect("answered");
    assert_eq!(code(r), 17, "INVALID_TOPIC_EXCEPTION");

    // The connection is still good after all of it.
    let r: Result<_, ClientError> = conn
        .send(MetadataRequest::default().with_topics(None), 12)
        .await;
    assert!(r.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_fetches_only_from_registered_brokers() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest};

    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let r = conn
        .send(produce("replicas", batch(3)), 9)
        .await
        .expect("produce");
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let fetch = |replica: i32| {
        FetchRequest::default()
            .with_replica_id(BrokerId(replica))
            .with_max_wait_ms(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("replicas")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])])
    };
    // A replica id no broker registered: refused as a whole, nothing read.
    let r = conn.send(fetch(42), 12).await.expect("answered");
    assert_eq!(r.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED");
    assert!(r.responses.is_empty());
    // A consumer (replica id -1) reads as before.
    let r = conn.send(fetch(-1), 12).await.expect("answered");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.responses[0].partitions[0].high_watermark, 3);
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|b| !b.is_empty()));

    // OffsetForLeaderEpoch as a client asks it (KIP-320): epoch 0 ends at the log end; a
    // newer epoch than the broker's is UNKNOWN_LEADER_EPOCH.
    let ask = |current: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("replicas")))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(0)])])
    };
    let r = conn.send(ask(0), 4).await.expect("answered");
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 3));
    let r = conn.send(ask(5), 4).await.expect("answered");
    assert_eq!(
        r.topics[0].partitions[0].error_code, 75,
        "UNKNOWN_LEADER_EPOCH"
    );
    still_serves(&mut conn).await;
}

#[test]
fn a_taken_port_is_named_at_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(integration_tests::broker_binary().expect("binary"))
        .args(["--dev", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--kafka-listen", &addr.to_string()])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--quorum-listen",
            &format!(
                "127.0.0.1:{}",
                integration_tests::free_port().expect("port")
            ),
        ])
        .output()
        .expect("run strom-broker");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: --kafka-listen {addr}: address in use")),
        "{stderr}"
    );
}

/// LeaveGroup v5 with several members, as Kafka's coordinator answers it: an older
/// incarnation of a static member is FENCED_INSTANCE_ID, an unknown instance is
/// UNKNOWN_MEMBER_ID (and neither removes anyone), a static member leaves by its instance id
/// alone; each entry echoes the request's ids and the top-level error stays NONE. A static
/// member's first JoinGroup (v5) is answered at once, with no MEMBER_ID_REQUIRED round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_group_answers_each_member_as_kafka_does() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::{
        DescribeGroupsRequest, FindCoordinatorRequest, GroupId, JoinGroupRequest, LeaveGroupRequest,
    };
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--group-initial-rebalance-delay-ms", "0"],
    )
    .expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let found = conn
        .send(FindCoordinatorRequest::default().with_key(s("leavers")), 3)
        .await
        .expect("find coordinator");
    assert_eq!(found.error_code, 0);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("leavers")))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_group_instance_id(Some(s("i1")))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::new())]);
    let mut joined = None;
    for _ in 0..50 {
        let r = conn.send(join.clone(), 5).await.expect("join");
        assert_ne!(r.error_code, 79, "MEMBER_ID_REQUIRED for a static member");
        if r.error_code == 0 {
            joined = Some(r);
            break;
        }
        // The group coordinator may still be loading __consumer_offsets.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let member = joined.expect("the static member joined").member_id;
    let who = |id: &str, instance: Option<&str>| {
        MemberIdentity::default()
            .with_member_id(s(id))
            .with_group_instance_id(instance.map(s))
    };
    let leave = |members| {
        LeaveGroupRequest::default()
            .with_group_id(GroupId(s("leavers")))
            .with_members(members)
    };
    let r = conn
        .send(
            leave(vec![who("stale", Some("i1")), who("", Some("nope"))]),
            5,
        )
        .await
        .expect("leave");
    assert_eq!(r.error_code, 0);
    let answers: Vec<(String, Option<String>, i16)> = r
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
                m.error_code,
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("stale".to_string(), Some("i1".to_string()), 82),
            (String::new(), Some("nope".to_string()), 25),
        ]
    );
    let describe = || DescribeGroupsRequest::default().with_groups(vec![GroupId(s("leavers"))]);
    let d = conn.send(describe(), 5).await.expect("describe");
    assert_eq!(d.groups[0].members.len(), 1, "nobody left");
    assert_eq!(d.groups[0].members[0].member_id, member);
    // By instance id alone: the static member leaves.
    let r = conn
        .send(leave(vec![who("", Some("i1"))]), 5)
        .await
        .expect("leave");
    assert_eq!(r.members[0].error_code, 0);
    let d = conn.send(describe(), 5).await.expect("describe");
    assert!(d.groups[0].members.is_empty());
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
}

/// A share group's durable state lives under `<group>\0share`: a client may not write or
/// delete it (INVALID_GROUP_ID), whatever it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_group_state_cannot_be_written_by_clients() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        CreateTopicsRequest, DeleteGroupsRequest, FindCoordinatorRequest, GroupId,
        OffsetCommitRequest,
    };
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let created = conn
        .send(
            CreateTopicsRequest::default().with_topics(vec![
                kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s("q")))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
            5,
        )
        .await
        .expect("create");
    assert_eq!(created.topics[0].error_code, 0);
    let group = "work\u{0}share";
    conn.send(FindCoordinatorRequest::default().with_key(s(group)), 3)
        .await
        .expect("find coordinator");
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("q")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1_000_000)
                .with_committed_metadata(Some(s("share-state/1 1000000")))])]);
    let mut code = -1;
    for _ in 0..50 {
        let r = conn.send(commit.clone(), 8).await.expect("commit");
        code = r.topics[0].partitions[0].error_code;
        if code != 14 && code != 15 {
            break; // not loading, not COORDINATOR_NOT_AVAILABLE
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, 24, "INVALID_GROUP_ID");
    let deleted = conn
        .send(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]),
            2,
        )
        .await
        .expect("delete groups");
    assert_eq!(deleted.results[0].error_code, 24);
    // Nor can a group of that id form (its members would block the brokers' writes).
    let join = conn
        .send(
            kafka_protocol::messages::JoinGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range")),
                ]),
            5,
        )
        .await
        .expect("join");
    assert_eq!(join.error_code, 24);
    still_serves(&mut conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_configs_need_a_group_id_and_known_names() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    let set = |group: &str, name: &str, value: &str| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(s(group))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(name))
                    .with_config_operation(0)
                    .with_value(Some(s(value)))]),
        ])
    };
    let describe = |group: &str| {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(32)
            .with_resource_name(s(group))
            .with_configuration_keys(None)])
    };
    // No group id, or the id of the brokers' internal share state: INVALID_REQUEST.
    for group in ["", "work\u{0}share"] {
        let r = conn
            .send(set(group, "share.record.lock.duration.ms", "5000"), 1)
            .await
            .expect("alter");
        assert_eq!(r.responses[0].error_code, 42, "{group:?}");
        let r = conn.send(describe(group), 4).await.expect("describe");
        assert_eq!(r.results[0].error_code, 42, "{group:?}");
    }
    // A topic config on a group, and a config with an operation that needs a value it
    // lacks: INVALID_CONFIG.
    let r = conn
        .send(set("g", "retention.ms", "1000"), 1)
        .await
        .expect("alter");
    assert_eq!(r.responses[0].error_code, 40);
    let mut no_value = set("g", "share.record.lock.duration.ms", "5000");
    no_value.resources[0].configs[0].value = None;
    let r = conn.send(no_value, 1).await.expect("alter");
    assert_eq!(r.responses[0].error_code, 40);
    // APPEND is for list configs.
    let mut append = set("g", "share.record.lock.duration.ms", "5000");
    append.resources[0].configs[0].config_operation = 2;
    let r = conn.send(append, 1).await.expect("alter");
    assert_eq!(r.responses[0].error_code, 40);
    // Nothing was set: every config of "g" is the broker's.
    let r = conn.send(describe("g"), 4).await.expect("describe");
    assert_eq!(r.results[0].error_code, 0);
    assert!(!r.results[0].configs.is_empty());
    assert!(
        r.results[0].configs.iter().all(|c| c.config_source == 5),
        "{:?}",
        r.results[0].configs
    );
    still_serves(&mut conn).await;
}
