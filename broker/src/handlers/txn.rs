//! The transaction APIs: AddPartitionsToTxn (0-5; v4+ batched, from brokers only: a
//! verify-only check, or an add for transaction version 2), AddOffsetsToTxn (0-4), EndTxn
//! (0-5; v5 bumps the epoch at every end, KIP-890 part 2), WriteTxnMarkers (1, from brokers
//! only), TxnOffsetCommit (0-5, at the group coordinator; v5 adds the offsets partition to
//! the transaction itself), DescribeTransactions (0),
//! ListTransactions (0-1) and DescribeProducers (0). The coordinator's logic is in
//! [`crate::txn`]; this module maps requests to it and answers with Kafka's error codes.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use tracing::warn;

use super::{leader_log, str_bytes};
use crate::group::{offsets_partition, OFFSETS_TOPIC};
use crate::txn::ops;
use crate::txn::{TxnState, TRANSACTION_TOPIC};
use crate::Broker;

/// AddPartitionsToTxn results for `topics`, each partition's code from `code`.
fn results(
    topics: &[AddPartitionsToTxnTopic],
    mut code: impl FnMut(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code(t.name.as_str(), *p))
                        })
                        .collect(),
                )
        })
        .collect()
}

/// One transaction of an AddPartitionsToTxn: partitions that do not exist answer
/// UNKNOWN_TOPIC_OR_PARTITION and the rest OPERATION_NOT_ATTEMPTED, as Kafka answers;
/// otherwise all are added (or, `verify_only`, checked) together.
async fn add_one(
    broker: &Broker,
    id: &str,
    pid: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = broker.image();
    let exists = |t: &str, p: i32| super::partition_exists(&image, t, p) && t != TRANSACTION_TOPIC;
    let partitions: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    if !partitions.iter().all(|(t, p)| exists(t, *p)) {
        return results(topics, |t, p| {
            if exists(t, p) {
                ResponseError::OperationNotAttempted.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            }
        });
    }
    if verify_only {
        let mut verdicts = ops::verify_partitions(broker, id, pid, epoch, &partitions).into_iter();
        return results(topics, |_, _| {
            verdicts
                .next()
                .and_then(|r| r.err())
                .map_or(0, |e| e.code())
        });
    }
    let code = match ops::add_partitions(broker, id, pid, epoch, &partitions).await {
        Ok(()) => 0,
        Err(e) => e.code(),
    };
    results(topics, |_, _| code)
}

pub async fn add_partitions(
    broker: &Broker,
    req: AddPartitionsToTxnRequest,
    version: i16,
    from_broker: bool,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let results = add_one(
            broker,
            req.v3_and_below_transactional_id.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    // v4+ is the brokers' batched form (KIP-890).
    if !from_broker {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add_one(
            broker,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            &t.topics,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

pub async fn add_offsets(
    broker: &Broker,
    req: AddOffsetsToTxnRequest,
    _version: i16,
) -> AddOffsetsToTxnResponse {
    super::groups::ensure_offsets_topic(broker).await;
    let partition = (
        OFFSETS_TOPIC.to_string(),
        offsets_partition(req.group_id.as_str()),
    );
    let code = match ops::add_partitions(
        broker,
        req.transactional_id.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        &[partition],
    )
    .await
    {
        Ok(()) => 0,
        // librdkafka treats PRODUCER_FENCED here as abortable; INVALID_PRODUCER_EPOCH, as
        // Kafka answered before KIP-588, makes it fatal, which a fenced producer is.
        Err(ResponseError::ProducerFenced) => ResponseError::InvalidProducerEpoch.code(),
        Err(e) => e.code(),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// EndTxn. v5+ is transaction version 2 (KIP-890 part 2), as Kafka reads it from the
/// version: the epoch is bumped and the answer carries the producer id and epoch to go on
/// with.
pub async fn end(broker: &Arc<Broker>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let (code, (pid, epoch)) = match ops::end_txn(
        broker,
        req.transactional_id.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.committed,
        version >= 5,
    )
    .await
    {
        Ok(identity) => (0, identity),
        Err(e) => (e.code(), (-1, -1)),
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(pid.into())
        .with_producer_epoch(epoch)
}

/// Whether a request's client id is one brokers use for WriteTxnMarkers and the
/// broker-to-broker AddPartitionsToTxn, naming a registered broker.
pub fn from_broker(broker: &Broker, client_id: &str) -> bool {
    client_id
        .strip_prefix("strom-broker-")
        .and_then(|id| id.parse::<i32>().ok())
        .is_some_and(|id| broker.image().brokers.contains_key(&id))
}

pub async fn write_markers(
    broker: &Broker,
    req: WriteTxnMarkersRequest,
    _version: i16,
    from_broker: bool,
) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in &m.topics {
            // Brokers' coordinators write markers; a client may too (an operator aborting a
            // hanging transaction) only when the authorizer granted it ClusterAction.
            let allowed = from_broker || broker.authorizer.enabled;
            let results: Vec<(i32, i16)> = if !allowed {
                warn!(
                    producer_id = m.producer_id.0,
                    "WriteTxnMarkers from a client refused: only brokers, or a principal with ClusterAction under the authorizer, write markers"
                );
                t.partition_indexes
                    .iter()
                    .map(|p| (*p, ResponseError::ClusterAuthorizationFailed.code()))
                    .collect()
            } else {
                ops::write_markers_local(
                    broker,
                    m.producer_id.0,
                    m.producer_epoch,
                    m.transaction_result,
                    m.coordinator_epoch,
                    t.name.as_str(),
                    &t.partition_indexes,
                )
                .await
            };
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        results
                            .into_iter()
                            .map(|(p, code)| {
                                WritableTxnMarkerPartitionResult::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    ),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// TxnOffsetCommit, at the group coordinator: the offsets are written as part of the
/// producer's transaction and count only once it commits (KIP-98; generation and member
/// checked as KIP-447 asks).
pub async fn offset_commit(
    broker: &Broker,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.to_string();
    let image = broker.image();
    let (generation, member, instance) = if version >= 3 {
        (
            req.generation_id,
            req.member_id.to_string(),
            req.group_instance_id.as_ref().map(|s| s.to_string()),
        )
    } else {
        (-1, String::new(), None)
    };
    let checked = super::groups::coordinator_log(broker, &group).and_then(|log| {
        if super::groups::internal_group(&group) {
            return Err(ResponseError::InvalidGroupId.code());
        }
        match broker.groups.validate_commit_for(
            &group,
            generation,
            &member,
            instance.as_deref(),
            true,
        ) {
            0 => Ok(log),
            code => Err(code),
        }
    });
    let entries = super::groups::commit_entries(
        &image,
        req.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_deref(),
                )
            })
        }),
    );
    // TxnOffsetCommit v5+ is transaction version 2: the client sent no AddOffsetsToTxn, so
    // the group's offsets partition is added to the transaction here first.
    let checked = match checked {
        Ok(log) if version >= 5 => add_offsets_partition(broker, &req, &group)
            .await
            .map(|()| log),
        other => other,
    };
    let code = match checked {
        Err(code) => code,
        Ok(log) => {
            let written = broker.groups.commit_txn(
                &log,
                offsets_partition(&group),
                &group,
                req.producer_id.0,
                req.producer_epoch,
                entries,
            );
            super::groups::durable(&log, written).await
        }
    };
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(super::groups::partition_code(
                                        &image,
                                        t.name.as_str(),
                                        p.partition_index,
                                        code,
                                    ))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Adds `group`'s offsets partition to the producer's transaction at its coordinator
/// (TxnOffsetCommit v5+), with the codes Kafka's group coordinator answers: a coordinator
/// that cannot be asked now is COORDINATOR_NOT_AVAILABLE, and the previous transaction
/// still completing is COORDINATOR_LOAD_IN_PROGRESS, both of which every client retries
/// (CONCURRENT_TRANSACTIONS is not one the Java client's TxnOffsetCommit handler knows).
async fn add_offsets_partition(
    broker: &Broker,
    req: &TxnOffsetCommitRequest,
    group: &str,
) -> Result<(), i16> {
    let partition = [(OFFSETS_TOPIC.to_string(), offsets_partition(group))];
    let verdict = ops::verify_for_produce(
        broker,
        req.transactional_id.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        &partition,
        true,
    )
    .await
    .pop()
    .unwrap_or(Err(ResponseError::UnknownServerError));
    match verdict {
        Ok(()) => Ok(()),
        Err(ResponseError::NotEnoughReplicas) => Err(ResponseError::CoordinatorNotAvailable.code()),
        Err(ResponseError::ConcurrentTransactions) => {
            Err(ResponseError::CoordinatorLoadInProgress.code())
        }
        Err(e) => Err(e.code()),
    }
}

fn described(
    id: &str,
    m: &crate::txn::TxnMetadata,
) -> describe_transactions_response::TransactionState {
    use describe_transactions_response::{TopicData, TransactionState};
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in &m.partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    TransactionState::default()
        .with_transactional_id(TransactionalId(str_bytes(id)))
        .with_transaction_state(str_bytes(m.state.name()))
        .with_transaction_timeout_ms(m.timeout_ms)
        .with_transaction_start_time_ms(m.start_ms)
        .with_producer_id(m.producer_id.into())
        .with_producer_epoch(m.producer_epoch)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicData::default()
                        .with_topic(super::topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

pub fn describe_transactions(
    broker: &Broker,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    use describe_transactions_response::TransactionState;
    DescribeTransactionsResponse::default().with_transaction_states(
        req.transactional_ids
            .iter()
            .map(|id| {
                let base = TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1);
                match ops::coordinator_log(broker, id.as_str()) {
                    Err(e) => base.with_error_code(e.code()),
                    Ok(_) => match broker.txns.get(id.as_str()) {
                        None => base.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                        Some(m) => described(id.as_str(), &m),
                    },
                }
            })
            .collect(),
    )
}

pub fn list_transactions(
    broker: &Broker,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    use list_transactions_response::TransactionState;
    let known: Vec<&str> = TxnState::ALL.iter().map(|s| s.name()).collect();
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|s| !known.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = crate::log::now_ms();
    let rows = broker
        .txns
        .all()
        .into_iter()
        .filter(|(_, m)| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == m.state.name())
        })
        .filter(|(_, m)| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        })
        // v1: only transactions running longer than duration_filter ms.
        .filter(|(_, m)| {
            version < 1
                || req.duration_filter < 0
                || (m.state == TxnState::Ongoing && now - m.start_ms > req.duration_filter)
        })
        .map(|(id, m)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(id)))
                .with_producer_id(m.producer_id.into())
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(rows)
}

pub fn describe_producers(
    broker: &Broker,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let image = broker.image();
    DescribeProducersResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                let topic = image.topic(t.name.as_str());
                TopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                let base = PartitionResponse::default().with_partition_index(*p);
                                match leader_log(broker, &image, topic, *p) {
                                    Err(e) => base.with_error_code(e.code()),
                                    Ok(log) => base.with_active_producers(
                                        log.producer_entries()
                                            .into_iter()
                                            .map(|(pid, e)| {
                                                ProducerState::default()
                                                    .with_producer_id(pid.into())
                                                    .with_producer_epoch(e.epoch as i32)
                                                    .with_last_sequence(e.last_sequence())
                                                    .with_last_timestamp(e.last_timestamp)
                                                    .with_coordinator_epoch(e.coordinator_epoch)
                                                    .with_current_txn_start_offset(
                                                        e.txn_first_offset.unwrap_or(-1),
                                                    )
                                            })
                                            .collect(),
                                    ),
                                }
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
