//! Transactions over the wire, request by request, against a live broker: a transactional
//! offset commit that counts only once its transaction commits (and is unstable until then),
//! and bad input that must get Kafka's error code and change nothing — EndTxn for an unknown
//! id, TxnOffsetCommit from a stale generation or an unknown member, markers from a client,
//! over-long and empty transactional ids, a timeout above the maximum, transactional batches
//! without a transactional id, and control batches from a producer.

use std::time::Duration;

use bytes::Bytes;
use integration_tests::{http_json, BrokerProcess};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use strom_client::admin::{Admin, NewTopic};
use strom_client::{records, Connection};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn txn_id(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

async fn start() -> (tempfile::TempDir, BrokerProcess, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &[
            "--group-initial-rebalance-delay-ms",
            "0",
            "--transaction-max-timeout-ms",
            "60000",
        ],
    )
    .expect("start");
    let conn = Connection::connect(broker.kafka).await.expect("connect");
    (dir, broker, conn)
}

async fn create_topic(broker: &BrokerProcess, name: &str) {
    Admin::new(&broker.kafka.to_string())
        .create_topic(&NewTopic::new(name, 1, 1))
        .await
        .expect("create topic");
}

/// The broker must be the transaction coordinator (one broker: it is, once the topic exists).
async fn find_txn_coordinator(conn: &mut Connection, id: &str) -> FindCoordinatorResponse {
    let mut last = None;
    for _ in 0..100 {
        let r = conn
            .send(
                FindCoordinatorRequest::default()
                    .with_key(s(id))
                    .with_key_type(1),
                3,
            )
            .await
            .expect("find coordinator");
        if r.error_code == 0 {
            return r;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no transaction coordinator: {last:?}");
}

async fn init_producer_id(
    conn: &mut Connection,
    id: &str,
    timeout_ms: i32,
) -> InitProducerIdResponse {
    conn.send(
        InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
        3,
    )
    .await
    .expect("init producer id")
}

async fn end_txn(conn: &mut Connection, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    conn.send(
        EndTxnRequest::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_committed(commit),
        1,
    )
    .await
    .expect("end txn")
    .error_code
}

async fn describe_txn(
    conn: &mut Connection,
    id: &str,
) -> describe_transactions_response::TransactionState {
    conn.send(
        DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]),
        0,
    )
    .await
    .expect("describe transactions")
    .transaction_states
    .remove(0)
}

/// Joins `group` as its only member and completes the generation: (member id, generation).
async fn join_group(conn: &mut Connection, group: &str) -> (String, i32) {
    let join = |member: String| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(&member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::new())])
    };
    // As a client does: FindCoordinator first (it creates __consumer_offsets).
    let f = conn
        .send(FindCoordinatorRequest::default().with_key(s(group)), 3)
        .await
        .expect("find coordinator");
    assert_eq!(f.error_code, 0);
    let mut member = String::new();
    let mut joined = None;
    for _ in 0..50 {
        let r = conn.send(join(member.clone()), 5).await.expect("join");
        if r.error_code == code(ResponseError::MemberIdRequired) {
            member = r.member_id.to_string();
            continue;
        }
        if r.error_code == 0 {
            joined = Some(r);
            break;
        }
        // The group coordinator may still be loading.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let joined = joined.expect("joined the group");
    let member = joined.member_id.to_string();
    let sync = conn
        .send(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id(joined.generation_id)
                .with_member_id(s(&member))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(Bytes::new())]),
            3,
        )
        .await
        .expect("sync");
    assert_eq!(sync.error_code, 0);
    (member, joined.generation_id)
}

/// A TxnOffsetCommit of `offset` for partition 0 of `topic` by producer `(id, epoch)` as
/// member `(generation, member id)` of `group`.
fn txn_offset_commit(
    id: &str,
    group: &str,
    (pid, epoch): (i64, i16),
    (generation, member): (i32, &str),
    topic: &str,
    offset: i64,
) -> TxnOffsetCommitRequest {
    TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id(id))
        .with_group_id(GroupId(s(group)))
        .with_producer_id(pid.into())
        .with_producer_epoch(epoch)
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])])
}

/// (error code, committed offset) of partition 0 of `topic` for `group`.
async fn committed(conn: &mut Connection, group: &str, topic: &str, stable: bool) -> (i16, i64) {
    let r = conn
        .send(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_require_stable(stable)
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(vec![0])])),
            7,
        )
        .await
        .expect("offset fetch");
    assert_eq!(r.error_code, 0);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

/// Sends a TxnOffsetCommit of one partition; its error code.
async fn commit_offset(conn: &mut Connection, req: TxnOffsetCommitRequest) -> i16 {
    let r = conn.send(req, 3).await.expect("txn offset commit");
    r.topics[0].partitions[0].error_code
}

/// AddOffsetsToTxn for `group` by producer `(pid, epoch)` of `id`; its error code.
async fn add_offsets(
    conn: &mut Connection,
    id: &str,
    (pid, epoch): (i64, i16),
    group: &str,
) -> i16 {
    conn.send(
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(s(group))),
        0,
    )
    .await
    .expect("add offsets")
    .error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_offsets_count_only_when_their_transaction_commits() {
    let (_dir, broker, mut conn) = start().await;
    create_topic(&broker, "in").await;
    let (id, group) = ("txn-offsets", "txn-group");
    find_txn_coordinator(&mut conn, id).await;
    let init = init_producer_id(&mut conn, id, 30_000).await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    let (member, generation) = join_group(&mut conn, group).await;

    assert_eq!(add_offsets(&mut conn, id, (pid, epoch), group).await, 0);

    // A stale generation and an unknown member are refused, and commit nothing.
    let stale = commit_offset(
        &mut conn,
        txn_offset_commit(id, group, (pid, epoch), (generation - 1, &member), "in", 7),
    )
    .await;
    assert_eq!(stale, code(ResponseError::IllegalGeneration));
    let ghost = commit_offset(
        &mut conn,
        txn_offset_commit(id, group, (pid, epoch), (generation, "ghost"), "in", 7),
    )
    .await;
    assert_eq!(ghost, code(ResponseError::UnknownMemberId));
    // An unknown topic: UNKNOWN_TOPIC_OR_PARTITION for it.
    let unknown = commit_offset(
        &mut conn,
        txn_offset_commit(id, group, (pid, epoch), (generation, &member), "nope", 7),
    )
    .await;
    assert_eq!(unknown, code(ResponseError::UnknownTopicOrPartition));
    assert_eq!(committed(&mut conn, group, "in", true).await, (0, -1));

    let ok = commit_offset(
        &mut conn,
        txn_offset_commit(id, group, (pid, epoch), (generation, &member), "in", 42),
    )
    .await;
    assert_eq!(ok, 0);
    // Pending: invisible, and unstable for a read_committed consumer.
    assert_eq!(committed(&mut conn, group, "in", false).await, (0, -1));
    assert_eq!(
        committed(&mut conn, group, "in", true).await.0,
        code(ResponseError::UnstableOffsetCommit)
    );
    let ongoing = describe_txn(&mut conn, id).await;
    assert_eq!(ongoing.transaction_state.as_str(), "Ongoing");
    assert_eq!(ongoing.topics[0].topic.as_str(), "__consumer_offsets");

    assert_eq!(end_txn(&mut conn, id, pid, epoch, true).await, 0);
    // The markers go out after EndTxn answers: poll until the offset is stable.
    assert_eq!(settled(&mut conn, group, "in").await, 42);
    let done = describe_txn(&mut conn, id).await;
    assert_eq!(done.transaction_state.as_str(), "CompleteCommit");
    // The HTTP API shows the transactional id too.
    let listed = http_json(broker.http, "/v1/transactions").expect("http");
    assert!(
        listed
            .as_array()
            .expect("array")
            .iter()
            .any(|t| t["transactional_id"] == id && t["state"] == "CompleteCommit"),
        "{listed}"
    );

    // Another transaction that aborts leaves 42 in place.
    assert_eq!(add_offsets(&mut conn, id, (pid, epoch), group).await, 0);
    let ok = commit_offset(
        &mut conn,
        txn_offset_commit(id, group, (pid, epoch), (generation, &member), "in", 99),
    )
    .await;
    assert_eq!(ok, 0);
    assert_eq!(end_txn(&mut conn, id, pid, epoch, false).await, 0);
    assert_eq!(settled(&mut conn, group, "in").await, 42);
}

/// The committed offset once no transaction holds it (OffsetFetch with require_stable
/// stops answering UNSTABLE_OFFSET_COMMIT), polled under a deadline.
async fn settled(conn: &mut Connection, group: &str, topic: &str) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (e, offset) = committed(conn, group, topic, true).await;
        if e == 0 {
            return offset;
        }
        assert_eq!(e, code(ResponseError::UnstableOffsetCommit));
        assert!(
            tokio::time::Instant::now() < deadline,
            "the transaction's offsets never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transactional_requests_get_kafka_errors_and_change_nothing() {
    let (_dir, broker, mut conn) = start().await;
    create_topic(&broker, "t").await;
    find_txn_coordinator(&mut conn, "real").await;

    // EndTxn for an id the coordinator never saw.
    assert_eq!(
        end_txn(&mut conn, "never-initialised", 12345, 0, true).await,
        code(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        describe_txn(&mut conn, "never-initialised")
            .await
            .error_code,
        code(ResponseError::TransactionalIdNotFound),
        "nothing was created for it"
    );

    // Empty and over-long ids; a timeout above transaction.max.timeout.ms.
    let long = "x".repeat(5000);
    for bad in ["", long.as_str()] {
        let r = init_producer_id(&mut conn, bad, 10_000).await;
        assert_eq!(
            r.error_code,
            code(ResponseError::InvalidRequest),
            "id of {} bytes",
            bad.len()
        );
        assert_eq!(r.producer_id.0, -1);
        let f = conn
            .send(
                FindCoordinatorRequest::default()
                    .with_key(s(bad))
                    .with_key_type(1),
                3,
            )
            .await
            .expect("find");
        assert_eq!(f.error_code, code(ResponseError::InvalidRequest));
    }
    let r = init_producer_id(&mut conn, "real", 60_001).await;
    assert_eq!(r.error_code, code(ResponseError::InvalidTransactionTimeout));
    assert_eq!(
        describe_txn(&mut conn, "real").await.error_code,
        code(ResponseError::TransactionalIdNotFound)
    );

    // A real producer, then EndTxn with a wrong producer id and with an old epoch.
    let init = init_producer_id(&mut conn, "real", 10_000).await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert_eq!(
        end_txn(&mut conn, "real", pid + 1, epoch, true).await,
        code(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        end_txn(&mut conn, "real", pid, epoch, true).await,
        code(ResponseError::InvalidTxnState),
        "no transaction is open"
    );
    let again = init_producer_id(&mut conn, "real", 10_000).await;
    assert_eq!(again.producer_epoch, epoch + 1);
    assert_eq!(
        end_txn(&mut conn, "real", pid, epoch, true).await,
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        describe_txn(&mut conn, "real")
            .await
            .transaction_state
            .as_str(),
        "Empty"
    );

    // Markers from a client (and from one claiming an unregistered broker's name) are refused.
    let end_before = http_json(broker.http, "/v1/topics/t").expect("topic")["partitions"][0]
        ["offsets"]["log_end_offset"]
        .clone();
    for client_id in [None, Some("strom-broker-99")] {
        let mut c = Connection::connect(broker.kafka).await.expect("connect");
        if let Some(id) = client_id {
            c = c.with_client_id(id);
        }
        let r = c
            .send(
                WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch + 1)
                    .with_transaction_result(true)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![WritableTxnMarkerTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0])])]),
                1,
            )
            .await
            .expect("markers");
        assert_eq!(
            r.markers[0].topics[0].partitions[0].error_code,
            code(ResponseError::ClusterAuthorizationFailed)
        );
    }
    let end_after = http_json(broker.http, "/v1/topics/t").expect("topic")["partitions"][0]
        ["offsets"]["log_end_offset"]
        .clone();
    assert_eq!(end_before, end_after, "no marker was written");

    // A transactional batch without a transactional id, and a control batch from a client.
    let mut recs = vec![records::record(0, None, Some(Bytes::from_static(b"v")), 1)];
    records::idempotent(&mut recs, pid, epoch + 1, 0);
    recs[0].transactional = true;
    let txn_batch = records::encode(&recs, records::Compression::None).expect("encode");
    recs[0].control = true;
    recs[0].key = Some(Bytes::from_static(&[0, 0, 0, 1]));
    let control_batch = records::encode(&recs, records::Compression::None).expect("encode");
    for (batch, with_id) in [(txn_batch, false), (control_batch, true)] {
        let r = conn
            .send(
                ProduceRequest::default()
                    .with_transactional_id(with_id.then(|| txn_id("real")))
                    .with_acks(1)
                    .with_timeout_ms(5000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch))])]),
                9,
            )
            .await
            .expect("produce");
        assert_eq!(
            r.responses[0].partition_responses[0].error_code,
            code(ResponseError::InvalidRecord)
        );
    }
    let end_last = http_json(broker.http, "/v1/topics/t").expect("topic")["partitions"][0]
        ["offsets"]["log_end_offset"]
        .clone();
    assert_eq!(end_before, end_last, "nothing was appended");

    // The broker still serves a normal transaction afterwards.
    let add = conn
        .send(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id("real"))
                .with_v3_and_below_producer_id(pid.into())
                .with_v3_and_below_producer_epoch(epoch + 1)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![0]),
                ]),
            3,
        )
        .await
        .expect("add partitions");
    assert_eq!(
        add.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    assert_eq!(end_txn(&mut conn, "real", pid, epoch + 1, false).await, 0);
}
