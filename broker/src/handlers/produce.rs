//! Produce (3-12 served; 0-2 parsed and refused, as Kafka 4 does). acks 0 and 1 answer once
//! the leader has the batch; acks -1 (all) refuses with NOT_ENOUGH_REPLICAS, appending
//! nothing, while the ISR is smaller than `min.insync.replicas`, and otherwise answers once
//! the high watermark has passed the batch: every in-sync replica has it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use tracing::debug;

use super::{auto_create, leader_log, str_bytes};
use crate::log::{batch, PartitionLog};
use crate::protocol::versions::PRODUCE_MIN_SERVED;
use crate::topic_config;
use crate::Broker;
use metadata_quorum::configs;

fn error(index: i32, e: ResponseError, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_error_message(message.map(str_bytes))
}

pub async fn handle(broker: &Broker, req: ProduceRequest, version: i16) -> ProduceResponse {
    let refuse_all = if version < PRODUCE_MIN_SERVED {
        Some((
            ResponseError::UnsupportedVersion,
            "produce v0-v2 are not supported; use v3 or later",
        ))
    } else if !matches!(req.acks, -1..=1) {
        Some((
            ResponseError::InvalidRequiredAcks,
            "acks must be -1, 0 or 1",
        ))
    } else {
        None
    };
    if let Some((e, msg)) = refuse_all {
        return ProduceResponse::default().with_responses(
            req.topic_data
                .iter()
                .map(|t| {
                    TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(
                            t.partition_data
                                .iter()
                                .map(|p| error(p.index, e, Some(msg.to_string())))
                                .collect(),
                        )
                })
                .collect(),
        );
    }

    let names: Vec<&str> = req.topic_data.iter().map(|t| t.name.as_str()).collect();
    let image = auto_create(broker, &names).await;
    // Produce v12+ is transaction version 2 (KIP-890 part 2): the client sends no
    // AddPartitionsToTxn, and the leader adds the partition, whatever the verification
    // setting says.
    let adding = version >= 12;
    let verifying = (broker.config.transaction_partition_verification_enable || adding)
        && req.transactional_id.is_some();
    let verified = verify_transaction(broker, &req, &image, adding).await;
    let acks_all = req.acks == -1;
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // acks=all answers wait for replication, all partitions at once.
    let mut waits = Vec::new();
    for (ti, t) in req.topic_data.iter().enumerate() {
        let topic = image.topic(t.name.as_str());
        let t_cfg = topic.map(|t| t.as_ref());
        let max_bytes = topic_config::int(&broker.config, t_cfg, configs::MAX_MESSAGE_BYTES)
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(broker.config.message_max_bytes);
        // Only acks=all consults min.insync.replicas.
        let min_isr = if acks_all {
            topic_config::int(&broker.config, t_cfg, configs::MIN_INSYNC_REPLICAS)
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(1)
        } else {
            0
        };
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        for (pi, p) in t.partition_data.iter().enumerate() {
            let guard = match verified.get(&(ti, pi)) {
                Some(Err((e, msg))) => {
                    partitions.push(error(p.index, *e, Some(msg.clone())));
                    continue;
                }
                Some(Ok(guard)) => Some(*guard),
                // Verification on, and no verification made for this partition: a
                // transactional batch may append only into a transaction already open here
                // at the append (guard 0 matches none), whatever the request's first batch
                // said and whatever a marker did meanwhile.
                None if verifying => Some(0),
                None => None,
            };
            if topic.is_some_and(|t| {
                t.name == crate::group::OFFSETS_TOPIC || t.name == crate::txn::TRANSACTION_TOPIC
            }) {
                partitions.push(error(
                    p.index,
                    ResponseError::InvalidTopicException,
                    Some(format!(
                        "{} is written by its coordinator only",
                        t.name.as_str()
                    )),
                ));
                continue;
            }
            let log = match leader_log(broker, &image, topic, p.index) {
                Ok(log) => log,
                Err(e) => {
                    partitions.push(error(p.index, e, None));
                    continue;
                }
            };
            let Some(records) = &p.records else {
                partitions.push(error(
                    p.index,
                    ResponseError::InvalidRecord,
                    Some("records are null".into()),
                ));
                continue;
            };
            if acks_all {
                let isr = log.isr_len().unwrap_or(0);
                if isr < min_isr {
                    partitions.push(error(
                        p.index,
                        ResponseError::NotEnoughReplicas,
                        Some(format!(
                            "{isr} in-sync replicas, min.insync.replicas is {min_isr}"
                        )),
                    ));
                    continue;
                }
            }
            let result = batch::parse_batches(records, max_bytes)
                .and_then(|views| {
                    if req.transactional_id.is_none() && views.iter().any(|v| v.is_transactional())
                    {
                        return Err(crate::error::LogError::InvalidRecord {
                            reason: "transactional batches need the request's transactional id"
                                .into(),
                        });
                    }
                    Ok(views)
                })
                .and_then(|views| {
                    match guard {
                        Some(g) => log.append_verified(&views, g),
                        None => log.append(&views),
                    }
                    .map(|info| (info, views))
                });
            match result {
                Ok((info, views)) => {
                    let n: i64 = views.iter().map(|v| v.records_count as i64).sum();
                    broker
                        .metrics
                        .produced(t.name.as_str(), n as u64, records.len() as u64);
                    let ok = PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(info.log_start_offset);
                    if acks_all && !broker.config.unsafe_ack_before_replication {
                        waits.push((ti, partitions.len(), log, info.last_offset + 1, min_isr));
                    }
                    partitions.push(ok);
                }
                Err(e) => {
                    debug!(topic = %t.name.as_str(), partition = p.index, error = %e, "produce refused");
                    partitions.push(error(p.index, e.kafka_error(), Some(e.to_string())));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partitions),
        );
    }
    let waiting = std::time::Instant::now();
    let outcomes = join_all(
        waits
            .iter()
            .map(|(_, _, log, required, min_isr)| replicated(log, *required, *min_isr, timeout)),
    )
    .await;
    if !waits.is_empty() {
        crate::metrics::waited(waiting);
    }
    for ((ti, pi, _, _, _), outcome) in waits.iter().zip(outcomes) {
        if let Err((e, msg)) = outcome {
            let index = responses[*ti].partition_responses[*pi].index;
            responses[*ti].partition_responses[*pi] = error(index, e, Some(msg));
        }
    }
    ProduceResponse::default().with_responses(responses)
}

/// What produce-time verification (KIP-890) decided, by (topic index, partition index): the
/// guard to append with, or the error to answer. Partitions absent from it need none: not
/// transactional, the producer's transaction is already open there, or verification is off.
type Verified = HashMap<(usize, usize), Result<u64, (ResponseError, String)>>;

/// Asks the transaction coordinator, in one request, about every partition of `req` whose
/// transactional batch would open its producer's transaction on this leader; with `add`
/// (Produce v12+), asks it to add them.
async fn verify_transaction(
    broker: &Broker,
    req: &ProduceRequest,
    image: &metadata_quorum::MetadataImage,
    add: bool,
) -> Verified {
    let mut out = Verified::new();
    let Some(id) = req.transactional_id.as_ref().map(|i| i.as_str()) else {
        return out;
    };
    if !broker.config.transaction_partition_verification_enable && !add {
        return out;
    }
    // Every partition whose (first) batch is transactional data: its key, name, log and
    // producer.
    let mut found = Vec::new();
    for (ti, t) in req.topic_data.iter().enumerate() {
        let topic = image.topic(t.name.as_str());
        for (pi, p) in t.partition_data.iter().enumerate() {
            let Some(producer) = p.records.as_deref().and_then(batch::peek_transactional) else {
                continue;
            };
            // Errors (not the leader, no such partition) are answered by the append path.
            if let Ok(log) = leader_log(broker, image, topic, p.index) {
                found.push(((ti, pi), (t.name.to_string(), p.index), log, producer));
            }
        }
    }
    let Some(&(_, _, _, (pid, epoch))) = found.first() else {
        return out;
    };
    if found.iter().any(|(_, _, _, p)| *p != (pid, epoch)) {
        for (key, ..) in found {
            out.insert(
                key,
                Err((
                    ResponseError::InvalidRecord,
                    "a transactional produce request carries one producer's batches".into(),
                )),
            );
        }
        return out;
    }
    let pending: Vec<_> = found
        .into_iter()
        .filter(|(_, _, log, _)| !log.transaction_open(pid, epoch))
        .map(|(key, tp, log, _)| {
            let guard = log.verification_guard(pid, epoch, add);
            (key, tp, log, guard)
        })
        .collect();
    if pending.is_empty() {
        return out;
    }
    let partitions: Vec<(String, i32)> = pending.iter().map(|(_, tp, _, _)| tp.clone()).collect();
    let results =
        crate::txn::ops::verify_for_produce(broker, id, pid, epoch, &partitions, add).await;
    for ((key, (topic, partition), log, guard), result) in pending.into_iter().zip(results) {
        let verdict = match result {
            Ok(()) => Ok(guard),
            Err(e) => {
                // Nothing will clear a guard whose verification failed for good. (After a
                // retriable failure it stays: another request of the producer may hold it,
                // verified.)
                if matches!(
                    e,
                    ResponseError::InvalidTxnState | ResponseError::InvalidProducerEpoch
                ) {
                    log.drop_verification_guard(pid, guard);
                }
                debug!(transactional_id = id, producer_id = pid, %topic, partition, error = ?e, "transactional batch not verified");
                let msg = match e {
                    ResponseError::InvalidTxnState => format!(
                        "{topic}-{partition} is not in producer {pid}'s ongoing transaction"
                    ),
                    ResponseError::ConcurrentTransactions => {
                        "the producer's previous transaction is still being completed".into()
                    }
                    _ => "the transaction coordinator could not verify the partition".into(),
                };
                Err((e, msg))
            }
        };
        out.insert(key, verdict);
    }
    out
}

/// Waits until the high watermark reaches `required` (every in-sync replica holds the batch),
/// as Kafka's delayed produce does: REQUEST_TIMED_OUT after `timeout`, NOT_LEADER_OR_FOLLOWER
/// if leadership moves meanwhile, NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below
/// `min_isr` by then.
pub(crate) async fn replicated(
    log: &Arc<PartitionLog>,
    required: i64,
    min_isr: usize,
    timeout: Duration,
) -> Result<(), (ResponseError, String)> {
    let epoch = log.leader_epoch();
    let mut hw = log.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if *hw.borrow_and_update() >= required {
            // The high watermark of this leadership: after losing it and leading again,
            // the batch may not be where it was.
            if log.leader_epoch() != epoch {
                return Err((
                    ResponseError::NotLeaderOrFollower,
                    "leadership moved before the in-sync replicas had the batch".into(),
                ));
            }
            return match log.isr_len() {
                Some(n) if n >= min_isr => Ok(()),
                Some(n) => Err((
                    ResponseError::NotEnoughReplicasAfterAppend,
                    format!("written, but the ISR shrank to {n} (min.insync.replicas {min_isr})"),
                )),
                None => Err((
                    ResponseError::NotLeaderOrFollower,
                    "leadership moved while the batch replicated".into(),
                )),
            };
        }
        if !log.is_leader() || log.leader_epoch() != epoch {
            return Err((
                ResponseError::NotLeaderOrFollower,
                "leadership moved before the in-sync replicas had the batch".into(),
            ));
        }
        // Woken by every HW move and by a lost leadership (`apply_metadata`).
        match tokio::time::timeout_at(deadline, hw.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err((
                    ResponseError::NotLeaderOrFollower,
                    "partition closed".into(),
                ))
            }
            Err(_) => {
                return Err((
                    ResponseError::RequestTimedOut,
                    format!("the in-sync replicas did not have the batch within {timeout:?}"),
                ))
            }
        }
    }
}
