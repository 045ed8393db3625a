//! Transactions over the wire, request by request, against a live broker: a transactional
//! offset commit that counts only once its transaction commits (and is unstable until then),
//! and bad input that must get Kafka's error code and change nothing — EndTxn for an unknown
//! id, TxnOffsetCommit from a stale generation or an unknown member, markers from a client,
//! over-long and empty transactional ids, a timeout above the maximum, transactional batches
//! without a transactional id, and control batches from a producer.

use std::time::Duration;

use bytes::Bytes;
use integration_tests::{http_json, wait_for, BrokerProcess, Cluster};
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
    find_coordinator(conn, id, 1).await
}

/// The coordinator of `key` (`key_type` 0: a group, 1: a transactional id), once there is one.
async fn find_coordinator(
    conn: &mut Connection,
    key: &str,
    key_type: i8,
) -> FindCoordinatorResponse {
    let mut last = None;
    for _ in 0..100 {
        let r = conn
            .send(
                FindCoordinatorRequest::default()
                    .with_key(s(key))
                    .with_key_type(key_type),
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
    end_txn_at(conn, 1, id, (pid, epoch), commit)
        .await
        .error_code
}

/// EndTxn at `version` (5+: transaction version 2, which answers with the next epoch).
async fn end_txn_at(
    conn: &mut Connection,
    version: i16,
    id: &str,
    (pid, epoch): (i64, i16),
    commit: bool,
) -> EndTxnResponse {
    conn.send(
        EndTxnRequest::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_committed(commit),
        version,
    )
    .await
    .expect("end txn")
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
    // A client joins again when SyncGroup answers a retriable coordinator error (the
    // coordinator could not store the assignment yet).
    for _ in 0..10 {
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
        member = joined.member_id.to_string();
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
        if [
            code(ResponseError::CoordinatorNotAvailable),
            code(ResponseError::NotCoordinator),
            code(ResponseError::RebalanceInProgress),
        ]
        .contains(&sync.error_code)
        {
            eprintln!("SyncGroup answered {}; joining again", sync.error_code);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(sync.error_code, 0);
        return (member, joined.generation_id);
    }
    panic!("{group}: SyncGroup never succeeded");
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
    // The coordinator completes the transaction once every marker is written: the offsets'
    // marker can be read a moment before that.
    completed(&mut conn, id, "CompleteCommit").await;
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
        ["log_end_offset"]
        .clone();
    assert!(end_before.is_i64(), "{end_before}");
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
        ["log_end_offset"]
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
        ["log_end_offset"]
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

/// One transactional record of `pid` at `epoch` with sequence `seq` to `topic`-`partition`:
/// the partition's error code.
async fn produce_txn(
    conn: &mut Connection,
    id: &str,
    tp: (&str, i32),
    pid: i64,
    epoch: i16,
    seq: i32,
) -> i16 {
    produce_txn_at(conn, 9, id, tp, pid, epoch, seq).await
}

/// [`produce_txn`] at Produce `version` (12+: transaction version 2, the leader adds the
/// partition to the transaction).
async fn produce_txn_at(
    conn: &mut Connection,
    version: i16,
    id: &str,
    (topic, partition): (&str, i32),
    pid: i64,
    epoch: i16,
    seq: i32,
) -> i16 {
    let mut recs = vec![records::record(0, None, Some(Bytes::from_static(b"v")), 1)];
    records::idempotent(&mut recs, pid, epoch, seq);
    recs[0].transactional = true;
    let batch = records::encode(&recs, records::Compression::None).expect("encode");
    conn.send(
        ProduceRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]),
        version,
    )
    .await
    .expect("produce")
    .responses[0]
        .partition_responses[0]
        .error_code
}

async fn add_partition(
    conn: &mut Connection,
    id: &str,
    pid: i64,
    epoch: i16,
    (topic, partition): (&str, i32),
) -> i16 {
    conn.send(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(id))
            .with_v3_and_below_producer_id(pid.into())
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![partition]),
            ]),
        3,
    )
    .await
    .expect("add partitions")
    .results_by_topic_v3_and_below[0]
        .results_by_partition[0]
        .partition_error_code
}

/// (log end offset, high watermark, last stable offset) of `topic`-`partition` (waits for
/// the broker to hold the partition's log).
fn offsets(broker: &BrokerProcess, (topic, partition): (&str, i32)) -> (i64, i64, i64) {
    for _ in 0..100 {
        let t = http_json(broker.http, &format!("/v1/topics/{topic}")).expect("topic");
        let o = &t["partitions"][partition as usize];
        let n = |k: &str| o[k].as_i64();
        if let (Some(end), Some(hw), Some(lso)) = (
            n("log_end_offset"),
            n("high_watermark"),
            n("last_stable_offset"),
        ) {
            return (end, hw, lso);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{topic}-{partition} has no log here");
}

/// KIP-890 produce-time verification: a transactional batch for a partition that is not in
/// its producer's ongoing transaction (never added, or arriving after the transaction was
/// aborted, as a late retry would) is refused with INVALID_TXN_STATE and appends nothing,
/// so no transaction is left open on the partition and its last stable offset keeps up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_batches_outside_their_transaction_are_refused() {
    let (_dir, broker, mut conn) = start().await;
    create_topic(&broker, "verified").await;
    find_txn_coordinator(&mut conn, "late").await;
    let init = init_producer_id(&mut conn, "late", 60000).await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);

    // Not added to the transaction: refused, nothing written.
    assert_eq!(
        produce_txn(&mut conn, "late", ("verified", 0), pid, epoch, 0).await,
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(offsets(&broker, ("verified", 0)), (0, 0, 0));
    // Nor behind a plain batch in the same records (only the first batch's header is read
    // before the append; the append checks every batch).
    let plain = records::encode(
        &[records::record(0, None, Some(Bytes::from_static(b"p")), 1)],
        records::Compression::None,
    )
    .expect("encode");
    let mut recs = vec![records::record(0, None, Some(Bytes::from_static(b"v")), 1)];
    records::idempotent(&mut recs, pid, epoch, 0);
    recs[0].transactional = true;
    let txn = records::encode(&recs, records::Compression::None).expect("encode");
    let both = Bytes::from([plain.as_ref(), txn.as_ref()].concat());
    let r = conn
        .send(
            ProduceRequest::default()
                .with_transactional_id(Some(txn_id("late")))
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(s("verified")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(both))])]),
            9,
        )
        .await
        .expect("produce");
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(offsets(&broker, ("verified", 0)), (0, 0, 0));

    // Added: taken, and the open transaction holds the last stable offset back.
    assert_eq!(
        add_partition(&mut conn, "late", pid, epoch, ("verified", 0)).await,
        0
    );
    assert_eq!(
        produce_txn(&mut conn, "late", ("verified", 0), pid, epoch, 0).await,
        0
    );
    assert_eq!(
        produce_txn(&mut conn, "late", ("verified", 0), pid, epoch, 1).await,
        0
    );
    assert_eq!(offsets(&broker, ("verified", 0)), (2, 2, 0));

    // Aborted; then a batch of the same producer and epoch arrives after the marker.
    assert_eq!(end_txn(&mut conn, "late", pid, epoch, false).await, 0);
    for _ in 0..100 {
        if describe_txn(&mut conn, "late")
            .await
            .transaction_state
            .as_str()
            == "CompleteAbort"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        offsets(&broker, ("verified", 0)),
        (3, 3, 3),
        "two records and the marker"
    );
    assert_eq!(
        produce_txn(&mut conn, "late", ("verified", 0), pid, epoch, 2).await,
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        offsets(&broker, ("verified", 0)),
        (3, 3, 3),
        "nothing appended: no transaction hangs"
    );

    // The producer's next transaction goes through as usual.
    assert_eq!(
        add_partition(&mut conn, "late", pid, epoch, ("verified", 0)).await,
        0
    );
    assert_eq!(
        produce_txn(&mut conn, "late", ("verified", 0), pid, epoch, 2).await,
        0
    );
    assert_eq!(end_txn(&mut conn, "late", pid, epoch, true).await, 0);
    for _ in 0..100 {
        if offsets(&broker, ("verified", 0)).2 == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(offsets(&broker, ("verified", 0)), (5, 5, 5));
}

/// With `--transaction-partition-verification-enable false` the leader appends what it is
/// given, as before KIP-890: the late batch opens a transaction nobody will end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_verification_a_stray_batch_opens_a_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--transaction-partition-verification-enable", "false"],
    )
    .expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");
    create_topic(&broker, "unverified").await;
    find_txn_coordinator(&mut conn, "stray").await;
    let init = init_producer_id(&mut conn, "stray", 60000).await;
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert_eq!(
        produce_txn(&mut conn, "stray", ("unverified", 0), pid, epoch, 0).await,
        0
    );
    assert_eq!(
        offsets(&broker, ("unverified", 0)),
        (1, 1, 0),
        "the stable offset is stuck"
    );
}

/// One controller and two brokers, with `topic` (RF 1) created, and a connection to broker 1.
async fn two_brokers_with(
    (topic, partitions): (&str, i32),
) -> (tempfile::TempDir, Cluster, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::start(dir.path(), 1, 2, &[], &[]).expect("cluster");
    Admin::new(&c.brokers[0].kafka.to_string())
        .create_topic(&NewTopic::new(topic, partitions, 1))
        .await
        .expect("create topic");
    let first = Connection::connect(c.brokers[0].kafka)
        .await
        .expect("connect");
    (dir, c, first)
}

/// The same checks when the transaction coordinator is another broker than the partition's
/// leader: the leader asks it with AddPartitionsToTxn v4 (verify-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_verifies_with_a_coordinator_on_another_broker() {
    let (_dir, c, mut first) = two_brokers_with(("remote", 2)).await;
    let coordinator = find_txn_coordinator(&mut first, "far").await.node_id.0;
    let other = 3 - coordinator;
    let partition = wait_for(Duration::from_secs(10), "the topic's leaders", || {
        let t = http_json(c.brokers[0].http, "/v1/topics/remote").ok()?;
        (0..2).find(|&p| t["partitions"][p as usize]["leader"].as_i64() == Some(other as i64))
    })
    .expect("a partition led by the other broker");
    let tp = ("remote", partition);
    let leader = &c.brokers[other as usize - 1];
    let mut at_coordinator = Connection::connect(c.brokers[coordinator as usize - 1].kafka)
        .await
        .expect("connect");
    let mut at_leader = Connection::connect(leader.kafka).await.expect("connect");

    let init = init_producer_id(&mut at_coordinator, "far", 60000).await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert_eq!(
        produce_txn(&mut at_leader, "far", tp, pid, epoch, 0).await,
        code(ResponseError::InvalidTxnState),
        "not in the transaction"
    );
    assert_eq!(offsets(leader, tp), (0, 0, 0));
    assert_eq!(
        add_partition(&mut at_coordinator, "far", pid, epoch, tp).await,
        0
    );
    assert_eq!(
        produce_txn(&mut at_leader, "far", tp, pid, epoch, 0).await,
        0
    );
    assert_eq!(
        end_txn(&mut at_coordinator, "far", pid, epoch, false).await,
        0
    );
    let settled = wait_for(Duration::from_secs(10), "the abort marker", || {
        (offsets(leader, tp) == (2, 2, 2)).then_some(())
    });
    assert!(settled.is_ok(), "{:?}", offsets(leader, tp));
    assert_eq!(
        produce_txn(&mut at_leader, "far", tp, pid, epoch, 1).await,
        code(ResponseError::InvalidTxnState),
        "after the abort"
    );
    assert_eq!(offsets(leader, tp), (2, 2, 2), "nothing appended");
}

/// Waits until the coordinator says `id`'s transaction is in `state` (its markers written).
async fn completed(conn: &mut Connection, id: &str, state: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = describe_txn(conn, id).await;
        if t.transaction_state.as_str() == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never reached {state}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// EndTxn v5 (transaction version 2): (error code, producer id, epoch) of the answer.
async fn end_txn_v5(
    conn: &mut Connection,
    id: &str,
    (pid, epoch): (i64, i16),
    commit: bool,
) -> (i16, i64, i16) {
    let r = end_txn_at(conn, 5, id, (pid, epoch), commit).await;
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// Transaction version 2 (KIP-890 part 2) request by request, on two brokers, with one
/// partition led by the transaction coordinator and one by the other broker: the cluster
/// finalizes `transaction.version` 2; Produce v12 adds partitions to the transaction without
/// AddPartitionsToTxn (here and at a remote coordinator); TxnOffsetCommit v5 adds the
/// offsets partition without AddOffsetsToTxn; each EndTxn v5 bumps the epoch and answers
/// with it, a retry at the old epoch gets the same answer, and a late batch of an ended
/// transaction is fenced at every partition, so nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_version_2_over_the_wire() {
    let (_dir, c, mut first) = two_brokers_with(("v2", 2)).await;
    let versions = first
        .send(ApiVersionsRequest::default(), 3)
        .await
        .expect("api versions");
    let tv = versions
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| f.max_version_level);
    assert_eq!(tv, Some(2), "a new cluster finalizes transaction version 2");
    let max = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| k.max_version)
    };
    assert_eq!(max(ApiKey::Produce), Some(12));
    assert_eq!(max(ApiKey::EndTxn), Some(5));
    assert_eq!(max(ApiKey::TxnOffsetCommit), Some(5));
    assert_eq!(max(ApiKey::AddPartitionsToTxn), Some(5));

    let id = "v2-txn";
    let coordinator = find_txn_coordinator(&mut first, id).await.node_id.0;
    let leaders = wait_for(Duration::from_secs(10), "the topic's leaders", || {
        let t = http_json(c.brokers[0].http, "/v1/topics/v2").ok()?;
        let l: Vec<i64> = (0..2)
            .map(|p| t["partitions"][p]["leader"].as_i64())
            .collect::<Option<_>>()?;
        Some(l)
    })
    .expect("leaders");
    let mut at: Vec<Connection> = Vec::new();
    for b in &c.brokers {
        at.push(Connection::connect(b.kafka).await.expect("connect"));
    }
    let leader_of = |p: usize| leaders[p] as usize - 1;
    let broker_of = |p: usize| &c.brokers[leader_of(p)];
    let coord = coordinator as usize - 1;

    let init = init_producer_id(&mut at[coord], id, 60_000).await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    let e0 = init.producer_epoch;

    // Transaction 1: both partitions joined by their first batch (Produce v12).
    for p in 0..2 {
        let leader = leader_of(p);
        assert_eq!(
            produce_txn_at(&mut at[leader], 12, id, ("v2", p as i32), pid, e0, 0).await,
            0,
            "partition {p} (leader {}, coordinator {coordinator})",
            leader + 1
        );
    }
    let t = describe_txn(&mut at[coord], id).await;
    assert_eq!(t.transaction_state.as_str(), "Ongoing");
    let mut joined: Vec<(String, i32)> = t
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.to_string(), *p)))
        .collect();
    joined.sort();
    assert_eq!(joined, vec![("v2".to_string(), 0), ("v2".to_string(), 1)]);

    // TxnOffsetCommit v5 adds the group's offsets partition itself.
    let group = "v2-group";
    let group_coord = find_coordinator(&mut first, group, 0).await.node_id.0 as usize - 1;
    let r = at[group_coord]
        .send(
            txn_offset_commit(id, group, (pid, e0), (-1, ""), "v2", 7),
            5,
        )
        .await
        .expect("txn offset commit v5");
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let t = describe_txn(&mut at[coord], id).await;
    assert!(
        t.topics
            .iter()
            .any(|t| t.topic.as_str() == "__consumer_offsets"),
        "the offsets partition joined: {t:?}"
    );

    // EndTxn v5 commits and bumps the epoch; a retry at the old epoch gets the same answer
    // (or, while the markers are still going out, is asked to retry).
    assert_eq!(
        end_txn_v5(&mut at[coord], id, (pid, e0), true).await,
        (0, pid, e0 + 1)
    );
    let retry = end_txn_v5(&mut at[coord], id, (pid, e0), true).await;
    assert!(
        retry == (0, pid, e0 + 1) || retry.0 == code(ResponseError::ConcurrentTransactions),
        "a retry while the markers are written: {retry:?}"
    );
    completed(&mut at[coord], id, "CompleteCommit").await;
    for p in 0..2 {
        let settled = wait_for(Duration::from_secs(10), "the commit marker", || {
            (offsets(broker_of(p), ("v2", p as i32)) == (2, 2, 2)).then_some(())
        });
        assert!(
            settled.is_ok(),
            "{:?}",
            offsets(broker_of(p), ("v2", p as i32))
        );
    }
    assert_eq!(
        end_txn_v5(&mut at[coord], id, (pid, e0), true).await,
        (0, pid, e0 + 1),
        "a retry after completion"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while committed(&mut at[group_coord], group, "v2", true).await != (0, 7) {
        assert!(
            std::time::Instant::now() < deadline,
            "offset 7 never committed with the transaction"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A late batch of the ended transaction is fenced, and appends nothing.
    for p in 0..2 {
        let leader = leader_of(p);
        assert_eq!(
            produce_txn_at(&mut at[leader], 12, id, ("v2", p as i32), pid, e0, 1).await,
            code(ResponseError::InvalidProducerEpoch),
            "partition {p}"
        );
        assert_eq!(offsets(broker_of(p), ("v2", p as i32)), (2, 2, 2));
    }

    // Transaction 2 at the new epoch, from sequence 0; aborted, which bumps again.
    let e1 = e0 + 1;
    assert_eq!(
        produce_txn_at(&mut at[leader_of(0)], 12, id, ("v2", 0), pid, e1, 0).await,
        0
    );
    assert_eq!(
        end_txn_v5(&mut at[coord], id, (pid, e1), false).await,
        (0, pid, e1 + 1)
    );
    completed(&mut at[coord], id, "CompleteAbort").await;
    assert_eq!(
        offsets(broker_of(0), ("v2", 0)),
        (4, 4, 4),
        "data and marker"
    );

    // Nothing open: a commit is refused, an abort bumps the epoch.
    let e2 = e1 + 1;
    assert_eq!(
        end_txn_v5(&mut at[coord], id, (pid, e2), true).await.0,
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        end_txn_v5(&mut at[coord], id, (pid, e2), false).await,
        (0, pid, e2 + 1)
    );
    // A zombie at an old epoch is fenced; an unknown id has no mapping.
    assert_eq!(
        end_txn_v5(&mut at[coord], id, (pid, e0), false).await.0,
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        end_txn_v5(&mut at[coord], "v2-unknown", (pid, 0), true).await,
        (code(ResponseError::InvalidProducerIdMapping), -1, -1)
    );
    // The open-transaction state is gone everywhere: the stable offsets kept up.
    for p in 0..2 {
        let (end, hw, lso) = offsets(broker_of(p), ("v2", p as i32));
        assert_eq!((end, hw), (lso, lso), "partition {p}");
    }
}
