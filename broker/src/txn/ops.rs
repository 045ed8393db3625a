//! The coordinator's operations that reach the rest of the broker: its `__transaction_state`
//! partition log, the replication wait before an answer, markers to partition leaders
//! (local or over the Kafka protocol), and the tick that loads partitions, resumes marker
//! writing and aborts timed-out transactions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, WriteTxnMarkersRequest};
use kafka_protocol::ResponseError;
use metadata_quorum::controller::NewTopic;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::state::{self, InitOutcome, TxnMetadata, TxnState};
use super::{txn_partition, TRANSACTION_PARTITIONS, TRANSACTION_TOPIC};
use crate::handlers::{leader_log, topic_name};
use crate::log::{now_ms, PartitionLog};
use crate::Broker;

/// How long a coordinator record may take to reach the in-sync replicas.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The client id brokers put on the WriteTxnMarkers requests they send each other; only
/// requests that carry a registered broker's are taken.
pub fn marker_client_id(node_id: i32) -> String {
    format!("strom-broker-{node_id}")
}

/// Creates `__transaction_state` (compacted, RF = min(configured, live brokers)) if missing.
pub async fn ensure_topic(broker: &Broker) {
    let image = broker.image();
    if image.topic(TRANSACTION_TOPIC).is_some() {
        return;
    }
    let live = image.live_brokers().count().max(1) as i16;
    let rf = broker
        .config
        .transaction_state_log_replication_factor
        .min(live);
    let topic = NewTopic {
        name: TRANSACTION_TOPIC.into(),
        num_partitions: TRANSACTION_PARTITIONS,
        replication_factor: rf,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        ..Default::default()
    };
    if let Err(e) = broker.controller.create_topics(vec![topic], false).await {
        warn!(error = %e, "could not create __transaction_state");
    }
}

/// The `__transaction_state` partition log of `transactional_id` if this broker is its
/// coordinator, loaded: NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE otherwise.
pub fn coordinator_log(
    broker: &Broker,
    transactional_id: &str,
) -> Result<Arc<PartitionLog>, ResponseError> {
    let image = broker.image();
    let index = txn_partition(transactional_id);
    let log =
        leader_log(broker, &image, image.topic(TRANSACTION_TOPIC), index).map_err(|e| match e {
            ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
            _ => ResponseError::CoordinatorNotAvailable,
        })?;
    broker
        .txns
        .ensure_loaded(index, &log)
        .map_err(|_| ResponseError::CoordinatorLoadInProgress)?;
    Ok(log)
}

/// Writes `transactional_id`'s record and waits until the in-sync replicas hold it, then
/// makes it the cached state. Callers hold the id's lock.
pub async fn persist(
    broker: &Broker,
    log: &Arc<PartitionLog>,
    transactional_id: &str,
    m: Option<&TxnMetadata>,
) -> Result<(), ResponseError> {
    let end = broker.txns.write(log, transactional_id, m).map_err(|e| {
        warn!(transactional_id, error = %e, "transaction record not written");
        ResponseError::CoordinatorNotAvailable
    })?;
    crate::handlers::replicated(log, end, 1, PERSIST_TIMEOUT)
        .await
        .map_err(|(e, msg)| {
            warn!(transactional_id, error = %msg, "transaction record not replicated");
            match e {
                ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                _ => ResponseError::CoordinatorNotAvailable,
            }
        })?;
    broker.txns.put(transactional_id, m.cloned());
    Ok(())
}

/// Checks a transactional id as Kafka does (non-empty), plus a length bound.
pub fn validate_id(transactional_id: &str) -> Result<(), ResponseError> {
    if transactional_id.is_empty() || transactional_id.len() > super::MAX_TRANSACTIONAL_ID_LEN {
        return Err(ResponseError::InvalidRequest);
    }
    Ok(())
}

/// InitProducerId with a transactional id: the producer id and epoch to answer with.
pub async fn init_producer_id(
    broker: &Arc<Broker>,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), ResponseError> {
    validate_id(transactional_id)?;
    if timeout_ms <= 0 || timeout_ms > broker.config.transaction_max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    ensure_topic(broker).await;
    let log = coordinator_log(broker, transactional_id)?;
    let _guard = broker.txns.lock(transactional_id).await;
    let current = broker.txns.get(transactional_id);
    let fresh = if state::needs_fresh_producer_id(current.as_ref()) {
        crate::handlers::allocate_producer_id(broker).await?
    } else {
        -1
    };
    match state::init(current.as_ref(), timeout_ms, expected, now_ms(), fresh)? {
        InitOutcome::Ready(m) => {
            persist(broker, &log, transactional_id, Some(&m)).await?;
            info!(
                transactional_id,
                producer_id = m.producer_id,
                producer_epoch = m.producer_epoch,
                "transactional producer initialised"
            );
            Ok((m.producer_id, m.producer_epoch))
        }
        InitOutcome::AbortFirst(m) => {
            persist(broker, &log, transactional_id, Some(&m)).await?;
            info!(
                transactional_id,
                producer_id = m.producer_id,
                producer_epoch = m.producer_epoch,
                "a new incarnation fenced the open transaction; aborting it"
            );
            spawn_completion(broker, transactional_id.to_string());
            Err(ResponseError::ConcurrentTransactions)
        }
        InitOutcome::Already {
            producer_id,
            producer_epoch,
        } => Ok((producer_id, producer_epoch)),
    }
}

/// AddPartitionsToTxn / AddOffsetsToTxn: puts `partitions` in the open transaction.
pub async fn add_partitions(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Result<(), ResponseError> {
    validate_id(transactional_id)?;
    let log = coordinator_log(broker, transactional_id)?;
    let _guard = broker.txns.lock(transactional_id).await;
    let current = broker.txns.get(transactional_id);
    match state::add_partitions(
        current.as_ref(),
        producer_id,
        producer_epoch,
        partitions,
        now_ms(),
    )? {
        None => Ok(()),
        Some(m) => persist(broker, &log, transactional_id, Some(&m)).await,
    }
}

/// AddPartitionsToTxn v4+ verify-only: whether each partition is in the open transaction.
pub fn verify_partitions(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Vec<Result<(), ResponseError>> {
    if let Err(e) = validate_id(transactional_id)
        .and_then(|_| coordinator_log(broker, transactional_id).map(|_| ()))
    {
        return partitions.iter().map(|_| Err(e)).collect();
    }
    let current = broker.txns.get(transactional_id);
    state::verify_partitions(current.as_ref(), producer_id, producer_epoch, partitions)
}

/// KIP-890 produce-time verification, for a partition leader about to append a
/// transactional batch that opens its producer's transaction there: is each partition in the
/// producer's ongoing transaction? With `add` (transaction version 2: Produce v12+,
/// TxnOffsetCommit v5+) the partitions are added to the transaction instead, as the client
/// no longer sends AddPartitionsToTxn. This broker's own coordinator answers directly;
/// another broker's is asked with AddPartitionsToTxn v4 (`verify_only` unless adding).
/// Codes are the ones a producer knows: INVALID_TXN_STATE (not in the transaction, or the
/// transaction ended), INVALID_PRODUCER_EPOCH (fenced), CONCURRENT_TRANSACTIONS (adding
/// while the previous transaction's markers are still being written, after retrying it here
/// for up to 100 ms, as Kafka does), and NOT_ENOUGH_REPLICAS, which it retries, when the
/// coordinator cannot be asked now (moving, loading, unreachable), as Kafka maps them.
pub async fn verify_for_produce(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    add: bool,
) -> Vec<Result<(), ResponseError>> {
    let concurrent = ResponseError::ConcurrentTransactions.code();
    let give_up = tokio::time::Instant::now() + Duration::from_millis(100);
    let codes = loop {
        let codes = coordinator_codes(
            broker,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            add,
        )
        .await;
        if !add || !codes.contains(&concurrent) || tokio::time::Instant::now() >= give_up {
            break codes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    codes
        .into_iter()
        .map(|code| match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced) => {
                Err(ResponseError::InvalidProducerEpoch)
            }
            Some(ResponseError::ConcurrentTransactions) if add => {
                Err(ResponseError::ConcurrentTransactions)
            }
            Some(
                ResponseError::InvalidTxnState
                | ResponseError::TransactionAbortable
                | ResponseError::InvalidProducerIdMapping
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::TransactionalIdAuthorizationFailed,
            ) => Err(ResponseError::InvalidTxnState),
            Some(_) => Err(ResponseError::NotEnoughReplicas),
        })
        .collect()
}

/// The transaction coordinator's code for each partition: checked (or, `add`, added) by this
/// broker's own coordinator or asked of the broker that leads the id's partition.
async fn coordinator_codes(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    add: bool,
) -> Vec<i16> {
    let image = broker.image();
    let leader = image
        .topic(TRANSACTION_TOPIC)
        .and_then(|t| t.partitions.get(txn_partition(transactional_id) as usize))
        .map(|p| p.leader);
    match leader {
        Some(l) if l == broker.node_id && add => {
            let code = add_partitions(
                broker,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            )
            .await
            .err()
            .map_or(0, |e| e.code());
            vec![code; partitions.len()]
        }
        Some(l) if l == broker.node_id => verify_partitions(
            broker,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        )
        .into_iter()
        .map(|r| r.err().map_or(0, |e| e.code()))
        .collect(),
        Some(l) if l >= 0 => {
            verify_remote(
                broker,
                l,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                add,
            )
            .await
        }
        _ => vec![ResponseError::CoordinatorNotAvailable.code(); partitions.len()],
    }
}

/// AddPartitionsToTxn v4 to broker `coordinator`, `verify_only` unless `add`: each
/// partition's code, in order.
async fn verify_remote(
    broker: &Broker,
    coordinator: i32,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    add: bool,
) -> Vec<i16> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(kafka_protocol::messages::TransactionalId(
                crate::handlers::str_bytes(transactional_id.to_string()),
            ))
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch)
            .with_verify_only(!add)
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps.clone())
                    })
                    .collect(),
            ),
    ]);
    let slot = broker
        .txns
        .verify_conns
        .lock()
        .entry((
            coordinator,
            txn_partition(transactional_id) as usize % super::VERIFY_CONNS,
        ))
        .or_default()
        .clone();
    let response = match broker_call(
        broker,
        coordinator,
        request,
        4,
        Duration::from_secs(5),
        Some(slot),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return vec![e.code(); partitions.len()],
    };
    if response.error_code != 0 {
        return vec![response.error_code; partitions.len()];
    }
    let mut by_partition: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for t in response
        .results_by_transaction
        .iter()
        .flat_map(|r| &r.topic_results)
    {
        for p in &t.results_by_partition {
            by_partition.insert(
                (t.name.to_string(), p.partition_index),
                p.partition_error_code,
            );
        }
    }
    partitions
        .iter()
        .map(|k| {
            by_partition
                .get(k)
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code())
        })
        .collect()
}

/// Sends `request` to broker `target` over the inter-broker listener, under this broker's
/// marker client id, and waits `timeout` at most, queueing for a shared connection
/// included. With `slot`, that connection is reused (and dropped after a failure);
/// without, a new one is opened. BROKER_NOT_AVAILABLE when `target` has no address,
/// NETWORK_EXCEPTION when the exchange fails, REQUEST_TIMED_OUT after `timeout`.
pub(crate) async fn broker_call<R: kafka_protocol::protocol::Request>(
    broker: &Broker,
    target: i32,
    request: R,
    version: i16,
    timeout: Duration,
    slot: Option<super::VerifyConn>,
) -> Result<R::Response, ResponseError> {
    let Some(addr) = broker
        .image()
        .brokers
        .get(&target)
        .and_then(|b| b.inter_broker_addr())
    else {
        return Err(ResponseError::BrokerNotAvailable);
    };
    let client_id = marker_client_id(broker.node_id);
    let deadline = tokio::time::Instant::now() + timeout;
    let failed = |e: strom_client::ClientError| {
        debug!(target, %addr, error = %e, "inter-broker request failed");
        ResponseError::NetworkException
    };
    let Some(slot) = slot else {
        let exchange = async {
            let conn = broker.inter_broker_security.connect(&addr).await?;
            conn.with_client_id(&client_id).send(request, version).await
        };
        return match tokio::time::timeout_at(deadline, exchange).await {
            Ok(r) => r.map_err(failed),
            Err(_) => Err(ResponseError::RequestTimedOut),
        };
    };
    let mut slot = tokio::time::timeout_at(deadline, slot.lock())
        .await
        .map_err(|_| ResponseError::RequestTimedOut)?;
    let exchange = async {
        if slot.as_ref().is_none_or(|(a, _)| *a != addr) {
            let conn = broker.inter_broker_security.connect(&addr).await?;
            *slot = Some((addr.clone(), conn.with_client_id(&client_id)));
        }
        let (_, conn) = slot.as_mut().expect("connected above");
        conn.send(request, version).await
    };
    let result = tokio::time::timeout_at(deadline, exchange).await;
    if !matches!(result, Ok(Ok(_))) {
        // A failed or cut-off exchange may leave an answer on the connection: not reused.
        *slot = None;
    }
    match result {
        Ok(r) => r.map_err(failed),
        Err(_) => Err(ResponseError::RequestTimedOut),
    }
}

/// EndTxn: decides the transaction (durably), then writes its markers in the background.
/// With `v2` (EndTxn v5+, transaction version 2) the epoch is bumped at every end and the
/// answer is the producer id and epoch the client goes on with; below v5 it is (-1, -1).
pub async fn end_txn(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    v2: bool,
) -> Result<(i64, i16), ResponseError> {
    validate_id(transactional_id)?;
    let log = coordinator_log(broker, transactional_id)?;
    let _guard = broker.txns.lock(transactional_id).await;
    let current = broker.txns.get(transactional_id);
    let (decided, answer) = if v2 {
        let fresh =
            if state::end_needs_fresh_producer_id(current.as_ref(), producer_id, producer_epoch) {
                crate::handlers::allocate_producer_id(broker).await?
            } else {
                -1
            };
        let ended = state::end_v2(
            current.as_ref(),
            producer_id,
            producer_epoch,
            commit,
            now_ms(),
            fresh,
        )?;
        (ended.next, (ended.producer_id, ended.producer_epoch))
    } else {
        let next = state::end(
            current.as_ref(),
            producer_id,
            producer_epoch,
            commit,
            now_ms(),
        )?;
        (next, (-1, -1))
    };
    let Some(m) = decided else {
        return Ok(answer);
    };
    persist(broker, &log, transactional_id, Some(&m)).await?;
    debug!(
        transactional_id,
        producer_id,
        producer_epoch = m.producer_epoch,
        state = m.state.name(),
        partitions = m.partitions.len(),
        tv2 = v2,
        "transaction decided"
    );
    spawn_completion(broker, transactional_id.to_string());
    Ok(answer)
}

/// Starts writing the markers of `transactional_id`'s decided transaction, unless a task
/// already does.
pub fn spawn_completion(broker: &Arc<Broker>, transactional_id: String) {
    if !broker.txns.start_completing(&transactional_id) {
        return;
    }
    let b = broker.clone();
    tokio::spawn(async move {
        complete(&b, &transactional_id).await;
        b.txns.done_completing(&transactional_id);
    });
}

/// Writes the markers of a PrepareCommit/PrepareAbort transaction to every partition in
/// it, retrying the ones that fail, then records CompleteCommit/CompleteAbort. Gives up
/// when this broker stops being the coordinator (the next one resumes).
async fn complete(broker: &Arc<Broker>, transactional_id: &str) {
    let index = txn_partition(transactional_id);
    let mut done: BTreeSet<(String, i32)> = BTreeSet::new();
    let mut backoff = Duration::from_millis(20);
    loop {
        let Some(m) = broker.txns.get(transactional_id) else {
            return;
        };
        if !m.state.is_preparing() {
            return;
        }
        let image = broker.image();
        let Ok(log) = leader_log(broker, &image, image.topic(TRANSACTION_TOPIC), index) else {
            debug!(
                transactional_id,
                "no longer the coordinator; markers left to the next"
            );
            return;
        };
        let coordinator_epoch = log.leader_epoch();
        if broker.txns.loaded_epoch(index) != Some(coordinator_epoch) {
            return;
        }
        let commit = m.state == TxnState::PrepareCommit;
        let pending: Vec<(String, i32)> = m.partitions.difference(&done).cloned().collect();
        if !pending.is_empty() {
            let results = write_markers(
                broker,
                m.producer_id,
                m.producer_epoch,
                commit,
                coordinator_epoch,
                &pending,
            )
            .await;
            for (tp, r) in results {
                match r {
                    Ok(()) => {
                        done.insert(tp);
                    }
                    Err(e) => debug!(
                        transactional_id,
                        topic = %tp.0,
                        partition = tp.1,
                        error = ?e,
                        "marker not written yet"
                    ),
                }
            }
        }
        if m.partitions.iter().all(|p| done.contains(p)) {
            let _guard = broker.txns.lock(transactional_id).await;
            match broker.txns.get(transactional_id) {
                Some(cur) if cur == m => {
                    let next = state::complete(&cur, now_ms());
                    match persist(broker, &log, transactional_id, Some(&next)).await {
                        Ok(()) => {
                            info!(
                                transactional_id,
                                producer_id = next.producer_id,
                                state = next.state.name(),
                                partitions = m.partitions.len(),
                                "transaction completed"
                            );
                            return;
                        }
                        Err(e) => warn!(transactional_id, error = ?e, "completion not recorded"),
                    }
                }
                _ => continue,
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Writes one marker to each of `partitions` at its current leader (this broker directly,
/// others with WriteTxnMarkers), all leaders at once. A partition of a topic that no longer
/// exists needs no marker.
async fn write_markers(
    broker: &Arc<Broker>,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    partitions: &[(String, i32)],
) -> Vec<((String, i32), Result<(), ResponseError>)> {
    let image = broker.image();
    let mut out = Vec::new();
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (topic, p) in partitions {
        let leader = image
            .topic(topic)
            .map(|t| t.partitions.get(*p as usize).map_or(-2, |m| m.leader));
        match leader {
            None | Some(-2) => out.push(((topic.clone(), *p), Ok(()))),
            Some(l) if l < 0 => {
                out.push(((topic.clone(), *p), Err(ResponseError::LeaderNotAvailable)))
            }
            Some(l) => by_leader
                .entry(l)
                .or_default()
                .entry(topic.clone())
                .or_default()
                .push(*p),
        }
    }
    let sends = by_leader.into_iter().map(|(leader, topics)| async move {
        if leader == broker.node_id {
            let mut results = Vec::new();
            for (topic, parts) in &topics {
                for (p, code) in write_markers_local(
                    broker,
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch,
                    topic,
                    parts,
                )
                .await
                {
                    results.push(((topic.clone(), p), code));
                }
            }
            results
        } else {
            write_markers_remote(
                broker,
                leader,
                producer_id,
                producer_epoch,
                commit,
                coordinator_epoch,
                topics,
            )
            .await
        }
    });
    for results in join_all(sends).await {
        for (tp, code) in results {
            let r =
                match code {
                    0 => Ok(()),
                    c if c == ResponseError::UnknownTopicOrPartition.code() => Ok(()),
                    c => Err(ResponseError::try_from_code(c)
                        .unwrap_or(ResponseError::UnknownServerError)),
                };
            out.push((tp, r));
        }
    }
    out
}

/// Writes markers to partitions this broker leads and waits for the in-sync replicas to
/// hold them; a marker in `__consumer_offsets` then settles the producer's pending offset
/// commits. Returns (partition, error code) for each.
pub async fn write_markers_local(
    broker: &Broker,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, i16)> {
    let image = broker.image();
    let t = image.topic(topic);
    let mut written = Vec::new();
    let mut out = Vec::new();
    for &p in partitions {
        let r = leader_log(broker, &image, t, p).and_then(|log| {
            log.write_marker(producer_id, producer_epoch, commit, coordinator_epoch)
                .map(|info| (log, info.last_offset + 1))
                .map_err(|e| {
                    debug!(topic, partition = p, error = %e, "marker refused");
                    e.kafka_error()
                })
        });
        match r {
            Ok((log, end)) => written.push((p, log, end)),
            Err(e) => out.push((p, e.code())),
        }
    }
    let waits = written
        .iter()
        .map(|(_, log, end)| crate::handlers::replicated(log, *end, 1, PERSIST_TIMEOUT));
    for ((p, _, _), r) in written.iter().zip(join_all(waits).await) {
        match r {
            Ok(()) => {
                if topic == crate::group::OFFSETS_TOPIC {
                    broker.groups.complete_txn(*p, producer_id, commit);
                }
                out.push((*p, 0));
            }
            Err((e, _)) => out.push((*p, e.code())),
        }
    }
    out
}

/// Sends one WriteTxnMarkers to broker `leader` for `topics`.
async fn write_markers_remote(
    broker: &Broker,
    leader: i32,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    topics: BTreeMap<String, Vec<i32>>,
) -> Vec<((String, i32), i16)> {
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(producer_id.into())
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(t, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(topic_name(t))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            )]);
    let response =
        match broker_call(broker, leader, request, 1, Duration::from_secs(10), None).await {
            Ok(r) => r,
            Err(e) => {
                return topics
                    .iter()
                    .flat_map(|(t, ps)| ps.iter().map(move |p| ((t.clone(), *p), e.code())))
                    .collect()
            }
        };
    response
        .markers
        .into_iter()
        .flat_map(|m| m.topics)
        .flat_map(|t| {
            let name = t.name.to_string();
            t.partitions
                .into_iter()
                .map(move |p| ((name.clone(), p.partition_index), p.error_code))
        })
        .collect()
}

/// The coordinator's background duties: load the `__transaction_state` partitions this
/// broker leads (and resume their decided transactions), abort transactions past their
/// timeout, forget idle transactional ids.
pub async fn tick(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cleanup = Duration::from_millis(
        broker
            .config
            .transaction_abort_timed_out_transaction_cleanup_interval_ms,
    );
    let mut last_cleanup = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let image = broker.image();
        let Some(topic) = image.topic(TRANSACTION_TOPIC) else {
            continue;
        };
        for p in &topic.partitions {
            if p.leader != broker.node_id {
                continue;
            }
            if let Ok(log) = leader_log(&broker, &image, Some(topic), p.partition as i32) {
                if let Err(e) = broker.txns.ensure_loaded(p.partition as i32, &log) {
                    warn!(partition = p.partition, error = %e, "transaction state not loaded");
                }
            }
        }
        for (id, m) in broker.txns.all() {
            if m.state.is_preparing() {
                spawn_completion(&broker, id);
            }
        }
        if last_cleanup.elapsed() >= cleanup {
            last_cleanup = tokio::time::Instant::now();
            abort_timed_out(&broker).await;
            expire_ids(&broker).await;
        }
    }
}

async fn abort_timed_out(broker: &Arc<Broker>) {
    let now = now_ms();
    for (id, m) in broker.txns.all() {
        if !state::timed_out(&m, now) {
            continue;
        }
        let Ok(log) = coordinator_log(broker, &id) else {
            continue;
        };
        let _guard = broker.txns.lock(&id).await;
        let Some(cur) = broker
            .txns
            .get(&id)
            .filter(|c| state::timed_out(c, now_ms()))
        else {
            continue;
        };
        let next = state::abort_timed_out(&cur, now_ms());
        match persist(broker, &log, &id, Some(&next)).await {
            Ok(()) => {
                info!(
                    transactional_id = %id,
                    producer_id = next.producer_id,
                    timeout_ms = cur.timeout_ms,
                    "aborting a transaction past its timeout"
                );
                spawn_completion(broker, id);
            }
            Err(e) => warn!(transactional_id = %id, error = ?e, "timed-out abort not recorded"),
        }
    }
}

async fn expire_ids(broker: &Arc<Broker>) {
    let expiration = broker.config.transactional_id_expiration_ms;
    for (id, m) in broker.txns.all() {
        if !state::expired(&m, now_ms(), expiration) {
            continue;
        }
        let Ok(log) = coordinator_log(broker, &id) else {
            continue;
        };
        let _guard = broker.txns.lock(&id).await;
        if broker
            .txns
            .get(&id)
            .is_some_and(|c| state::expired(&c, now_ms(), expiration))
        {
            match persist(broker, &log, &id, None).await {
                Ok(()) => info!(transactional_id = %id, "idle transactional id expired"),
                Err(e) => warn!(transactional_id = %id, error = ?e, "expiry not recorded"),
            }
        }
    }
}
