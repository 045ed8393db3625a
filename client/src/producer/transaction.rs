//! The producer's side of transactions (KIP-98): its state, and the requests to the
//! transaction coordinator (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) and
//! to the group coordinator (TxnOffsetCommit), each retried while the coordinator moves,
//! loads or is busy finishing the previous transaction.
//!
//! ```text
//!   Uninitialized --init--> Ready --begin--> InTransaction --commit/abort--> Ready
//!                                                 | a send failed, or an abortable answer
//!                                                 v
//!                                           AbortableError --abort--> Ready
//!   any --fenced / fatal answer--> Fatal (every call fails; make a new producer)
//! ```
//!
//! Errors are classified as the Java client does: fenced (another producer with the same
//! `transactional.id` took over) and other fatal ones end the producer; abortable ones end
//! the transaction, which the application aborts and retries.
//!
//! Transaction version 2 (KIP-890 part 2) is used when the cluster finalized
//! `transaction.version` 2, as the Java client decides: partitions join the transaction with
//! the first Produce (v12) to them and the group's offsets partition with TxnOffsetCommit v5,
//! so neither AddPartitionsToTxn nor AddOffsetsToTxn is sent, and every EndTxn (v5) bumps the
//! epoch, which the answer carries and the next transaction uses.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::time::Instant;
use tracing::debug;

use super::{broker_error, ProducerError};
use crate::cluster::{topic_name, ClusterClient, FindCoordinatorError};
use crate::consumer::ConsumerGroupMetadata;
use crate::TopicPartition;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    Uninitialized,
    Ready,
    InTransaction,
    /// The open transaction cannot commit; abort it.
    AbortableError(ProducerError),
    /// The producer cannot go on.
    Fatal(ProducerError),
}

pub(super) struct TxnManager {
    pub id: String,
    timeout: Duration,
    request_timeout: Duration,
    retry_backoff: Duration,
    pub state: State,
    /// Partitions added to the open transaction (offsets partitions through AddOffsetsToTxn
    /// are not listed; `offsets_added` says one was).
    pub partitions: BTreeSet<TopicPartition>,
    offsets_added: bool,
    /// Transaction version 2 is in use (see the module doc).
    pub tv2: bool,
    cluster: ClusterClient,
}

/// Answers that mean "ask again, maybe elsewhere": the coordinator moved, is loading, or is
/// still writing the previous transaction's markers.
fn retry_coordinator(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress
                | ResponseError::ConcurrentTransactions
                | ResponseError::RequestTimedOut
                | ResponseError::NetworkException
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::UnstableOffsetCommit
        )
    )
}

/// The error a final non-zero answer means for the producer.
pub(super) fn classify(code: i16, what: &str) -> ProducerError {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch) => {
            ProducerError::Fenced(format!(
                "{what}: {} (another producer with this transactional.id took over)",
                crate::error_name(code)
            ))
        }
        Some(
            ResponseError::TransactionalIdAuthorizationFailed
            | ResponseError::ClusterAuthorizationFailed
            | ResponseError::InvalidTxnState
            | ResponseError::InvalidTransactionTimeout
            | ResponseError::UnsupportedVersion
            | ResponseError::UnsupportedForMessageFormat
            | ResponseError::InvalidRequest,
        ) => ProducerError::TransactionFatal(format!("{what}: {}", crate::error_name(code))),
        _ => ProducerError::TransactionAbortable(format!("{what}: {}", crate::error_name(code))),
    }
}

impl TxnManager {
    pub fn new(
        id: String,
        cluster: ClusterClient,
        timeout: Duration,
        request_timeout: Duration,
        retry_backoff: Duration,
    ) -> Self {
        Self {
            id,
            timeout,
            request_timeout,
            retry_backoff,
            state: State::Uninitialized,
            partitions: BTreeSet::new(),
            offsets_added: false,
            tv2: false,
            cluster,
        }
    }

    /// Whether the cluster finalized `transaction.version` 2 and serves the requests it
    /// needs (Produce v12, TxnOffsetCommit v5, EndTxn v5), from one broker's ApiVersions.
    /// Any failure to ask means version 1, which every broker serves.
    pub async fn detect_tv2(&mut self) -> bool {
        let req = crate::features::api_versions_request();
        let answer = match self.cluster.any().await {
            Ok(conn) => tokio::time::timeout(self.request_timeout, conn.send(req, 3)).await,
            Err(e) => Ok(Err(e)),
        };
        let Ok(Ok(r)) = answer else {
            return false;
        };
        let finalized = crate::features::FeatureMetadata::from_response(&r)
            .finalized(crate::features::TRANSACTION_VERSION);
        let serves = |key: ApiKey, version: i16| {
            r.api_keys
                .iter()
                .any(|k| k.api_key == key as i16 && k.max_version >= version)
        };
        r.error_code == 0
            && finalized >= 2
            && serves(ApiKey::Produce, 12)
            && serves(ApiKey::TxnOffsetCommit, 5)
            && serves(ApiKey::EndTxn, 5)
    }

    /// Fails unless the producer is in `want` (fatal and abortable states say why).
    pub fn check(&self, want: &State, call: &str) -> Result<(), ProducerError> {
        match &self.state {
            s if s == want => Ok(()),
            State::Fatal(e) => Err(e.clone()),
            State::AbortableError(e) if *want == State::InTransaction => Err(e.clone()),
            s => Err(ProducerError::TransactionState(format!(
                "{call} needs the producer {want:?}, but it is {s:?}"
            ))),
        }
    }

    /// Records an error: fatal ones end the producer, others the transaction.
    pub fn fail(&mut self, e: ProducerError) -> ProducerError {
        if e.is_fatal() {
            self.state = State::Fatal(e.clone());
        } else if matches!(self.state, State::InTransaction) {
            self.state = State::AbortableError(e.clone());
        }
        e
    }

    /// Sends a request made by `make` to the coordinator of `key` (`key_type` 1: this
    /// transactional id; 0: a group) until its answer (`code_of`) is final.
    async fn call<R: Request + Clone>(
        &mut self,
        key: &str,
        key_type: i8,
        request: R,
        version: i16,
        code_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response, ProducerError> {
        let deadline = Instant::now() + self.request_timeout.max(self.timeout);
        let mut last = String::from("none");
        loop {
            if Instant::now() >= deadline {
                return Err(ProducerError::Timeout(last));
            }
            let coordinator = match self.cluster.find_coordinator_of(key, key_type).await {
                Ok(id) => id,
                Err(FindCoordinatorError::Broker(e)) if !retry_coordinator(e.code) => {
                    return Err(classify(e.code, "FindCoordinator"));
                }
                Err(e) => {
                    last = e.to_string();
                    self.cluster.reset();
                    tokio::time::sleep(self.retry_backoff).await;
                    continue;
                }
            };
            let answer = match self.cluster.broker(coordinator).await {
                Ok(conn) => {
                    tokio::time::timeout(self.request_timeout, conn.send(request.clone(), version))
                        .await
                }
                Err(e) => Ok(Err(e)),
            };
            match answer {
                Ok(Ok(r)) => {
                    let code = code_of(&r);
                    if !retry_coordinator(code) {
                        return Ok(r);
                    }
                    last = crate::error_name(code);
                    debug!(key, error = %last, "coordinator asked to retry");
                    if code != ResponseError::ConcurrentTransactions.code() {
                        self.cluster.drop_broker(coordinator);
                    }
                }
                Ok(Err(e)) => {
                    last = e.to_string();
                    self.cluster.drop_broker(coordinator);
                }
                Err(_) => {
                    last = "the request timed out".into();
                    self.cluster.drop_broker(coordinator);
                }
            }
            tokio::time::sleep(self.retry_backoff).await;
        }
    }

    /// InitProducerId for this transactional id: the producer id and epoch (a bumped epoch
    /// that fences any previous producer with this id, whose open transaction is aborted).
    /// `current` is the id and epoch this producer already has (KIP-360), if any.
    pub async fn init_producer_id(
        &mut self,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ProducerError> {
        let (pid, epoch) = current.unwrap_or((-1, -1));
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                self.id.clone(),
            ))))
            .with_transaction_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch);
        let id = self.id.clone();
        let r = self.call(&id, 1, req, 3, |r| r.error_code).await?;
        if r.error_code != 0 {
            return Err(classify(r.error_code, "InitProducerId"));
        }
        Ok((r.producer_id.0, r.producer_epoch))
    }

    /// AddPartitionsToTxn for partitions not yet in the open transaction (with transaction
    /// version 2 they are only noted: the leader adds them when their first batch arrives).
    pub async fn add_partitions(
        &mut self,
        identity: (i64, i16),
        new: &[TopicPartition],
    ) -> Result<(), ProducerError> {
        let wanted: Vec<TopicPartition> = new
            .iter()
            .filter(|tp| !self.partitions.contains(*tp))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        if self.tv2 {
            self.partitions.extend(wanted);
            return Ok(());
        }
        let topics = crate::partitions_by_topic(&wanted)
            .into_iter()
            .map(|(t, ps)| {
                AddPartitionsToTxnTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(ps)
            })
            .collect();
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(
                self.id.clone(),
            )))
            .with_v3_and_below_producer_id(ProducerId(identity.0))
            .with_v3_and_below_producer_epoch(identity.1)
            .with_v3_and_below_topics(topics);
        let first_error = |r: &kafka_protocol::messages::AddPartitionsToTxnResponse| {
            r.results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter())
                .map(|p| p.partition_error_code)
                .find(|c| *c != 0 && *c != ResponseError::OperationNotAttempted.code())
                .unwrap_or(0)
        };
        let id = self.id.clone();
        let r = self.call(&id, 1, req, 3, first_error).await?;
        match first_error(&r) {
            0 => {
                self.partitions.extend(wanted);
                Ok(())
            }
            code => Err(classify(code, "AddPartitionsToTxn")),
        }
    }

    /// AddOffsetsToTxn, then TxnOffsetCommit at the group's coordinator (with transaction
    /// version 2, TxnOffsetCommit v5 alone: the group coordinator adds its partition).
    pub async fn send_offsets(
        &mut self,
        identity: (i64, i16),
        offsets: &[(TopicPartition, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<(), ProducerError> {
        if !self.tv2 {
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(self.id.clone())))
                .with_producer_id(ProducerId(identity.0))
                .with_producer_epoch(identity.1)
                .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())));
            let id = self.id.clone();
            let r = self.call(&id, 1, req, 3, |r| r.error_code).await?;
            if r.error_code != 0 {
                return Err(classify(r.error_code, "AddOffsetsToTxn"));
            }
        }
        self.offsets_added = true;
        let tps: Vec<TopicPartition> = offsets.iter().map(|(tp, _)| tp.clone()).collect();
        let topics = crate::partitions_by_topic(&tps)
            .into_iter()
            .map(|(t, ps)| {
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(
                        ps.into_iter()
                            .filter_map(|p| {
                                offsets
                                    .iter()
                                    .find(|(tp, _)| tp.topic == t && tp.partition == p)
                                    .map(|(_, o)| {
                                        TxnOffsetCommitRequestPartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(*o)
                                            .with_committed_leader_epoch(-1)
                                    })
                            })
                            .collect(),
                    )
            })
            .collect();
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(self.id.clone())))
            .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
            .with_producer_id(ProducerId(identity.0))
            .with_producer_epoch(identity.1)
            .with_generation_id(group.generation_id)
            .with_member_id(StrBytes::from_string(group.member_id.clone()))
            .with_group_instance_id(group.group_instance_id.clone().map(StrBytes::from_string))
            .with_topics(topics);
        let first_error = |r: &kafka_protocol::messages::TxnOffsetCommitResponse| {
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.error_code)
                .find(|c| *c != 0)
                .unwrap_or(0)
        };
        let version = if self.tv2 { 5 } else { 3 };
        let r = self
            .call(&group.group_id, 0, req, version, first_error)
            .await?;
        match first_error(&r) {
            0 => Ok(()),
            code => Err(classify(code, "TxnOffsetCommit")),
        }
    }

    /// EndTxn (when the transaction touched anything), then Ready for the next one. With
    /// transaction version 2 the answer is the producer id and epoch to go on with (the
    /// epoch bumped), which the caller makes the producer's.
    pub async fn end(
        &mut self,
        identity: (i64, i16),
        commit: bool,
    ) -> Result<Option<(i64, i16)>, ProducerError> {
        let mut next = None;
        if !self.partitions.is_empty() || self.offsets_added {
            let req = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(self.id.clone())))
                .with_producer_id(ProducerId(identity.0))
                .with_producer_epoch(identity.1)
                .with_committed(commit);
            let id = self.id.clone();
            let version = if self.tv2 { 5 } else { 1 };
            let r = self.call(&id, 1, req, version, |r| r.error_code).await?;
            if r.error_code != 0 {
                return Err(classify(r.error_code, "EndTxn"));
            }
            if self.tv2 && r.producer_id.0 >= 0 && r.producer_epoch >= 0 {
                next = Some((r.producer_id.0, r.producer_epoch));
            }
        }
        self.partitions.clear();
        self.offsets_added = false;
        self.state = State::Ready;
        Ok(next)
    }
}

/// Broker answers to a transactional produce that fence the producer.
pub(super) fn produce_error(code: i16, message: Option<String>) -> ProducerError {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch) => {
            classify(code, "Produce")
        }
        _ => broker_error(code, message),
    }
}
