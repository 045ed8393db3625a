//! The admin client's transaction calls, like `kafka-transactions.sh`: list the
//! transactional ids every coordinator holds, describe one (state, producer, partitions),
//! and describe the producers a partition leader knows (their open transactions' start).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest,
    TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{check, first, refused, Admin, AdminError};
use crate::cluster::{topic_name, FindCoordinatorError};
use crate::TopicPartition;

/// A transactional id as ListTransactions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
    /// CompleteAbort.
    pub state: String,
    /// The broker coordinating it.
    pub coordinator: i32,
}

/// A transactional id as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub coordinator: i32,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the open transaction began (ms since the epoch; -1 when none is open).
    pub start_time_ms: i64,
    pub partitions: Vec<TopicPartition>,
}

/// A producer with state on a partition (DescribeProducers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of its open transaction on the partition (-1: none): what holds the
    /// last stable offset back.
    pub current_txn_start_offset: i64,
}

impl Admin {
    /// Every transactional id any broker coordinates, sorted by id.
    pub async fn list_transactions(&mut self) -> Result<Vec<TransactionListing>, AdminError> {
        let md = self.cluster.metadata(Some(&[])).await?;
        let mut all: BTreeMap<String, TransactionListing> = BTreeMap::new();
        for b in &md.brokers {
            let r = self
                .send_to(b.node_id.0, ListTransactionsRequest::default(), 0)
                .await?;
            check(format!("broker {}", b.node_id.0), r.error_code, None)?;
            for t in r.transaction_states {
                all.insert(
                    t.transactional_id.to_string(),
                    TransactionListing {
                        transactional_id: t.transactional_id.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator: b.node_id.0,
                    },
                );
            }
        }
        Ok(all.into_values().collect())
    }

    /// The state of `transactional_id` at its coordinator.
    pub async fn describe_transaction(
        &mut self,
        transactional_id: &str,
    ) -> Result<TransactionDescription, AdminError> {
        self.cluster.metadata(Some(&[])).await?;
        let coordinator = match self.cluster.find_coordinator_of(transactional_id, 1).await {
            Ok(id) => id,
            Err(FindCoordinatorError::Client(e)) => return Err(e.into()),
            Err(FindCoordinatorError::Broker(error)) => {
                return Err(AdminError::Broker {
                    what: format!("transactional id '{transactional_id}'"),
                    error,
                })
            }
        };
        let req =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_string(transactional_id.to_string()),
            )]);
        let r = self.send_to(coordinator, req, 0).await?;
        let t = first(&r.transaction_states, "DescribeTransactions")?;
        check(
            format!("transactional id '{transactional_id}'"),
            t.error_code,
            None,
        )?;
        Ok(TransactionDescription {
            transactional_id: transactional_id.to_string(),
            coordinator,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(|p| TopicPartition::new(topic.topic.to_string(), *p))
                })
                .collect(),
        })
    }

    /// The producers partition `tp`'s leader has state for.
    pub async fn describe_producers(
        &mut self,
        tp: &TopicPartition,
    ) -> Result<Vec<ProducerState>, AdminError> {
        let req = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(topic_name(&tp.topic))
            .with_partition_indexes(vec![tp.partition])]);
        let r = self.leader_send(tp, req, 0).await?;
        let t = first(&r.topics, "DescribeProducers")?;
        let p = first(&t.partitions, "DescribeProducers")?;
        check(
            format!("partition {tp}"),
            p.error_code,
            p.error_message.as_deref(),
        )?;
        Ok(p.active_producers
            .iter()
            .map(|s| ProducerState {
                producer_id: s.producer_id.0,
                producer_epoch: s.producer_epoch,
                last_sequence: s.last_sequence,
                last_timestamp: s.last_timestamp,
                coordinator_epoch: s.coordinator_epoch,
                current_txn_start_offset: s.current_txn_start_offset,
            })
            .collect())
    }

    /// Aborts the open transaction that starts at `start_offset` on `tp`, as
    /// kafka-transactions.sh abort does for a hanging transaction: finds its producer with
    /// DescribeProducers and writes an ABORT marker for it straight to the partition's
    /// leader (WriteTxnMarkers), which needs ClusterAction on the cluster. Returns the
    /// producer it aborted.
    pub async fn abort_transaction(
        &mut self,
        tp: &TopicPartition,
        start_offset: i64,
    ) -> Result<ProducerState, AdminError> {
        let producers = self.describe_producers(tp).await?;
        let Some(p) = producers
            .into_iter()
            .find(|p| p.current_txn_start_offset == start_offset && start_offset >= 0)
        else {
            return Err(refused(
                format!("partition {tp}"),
                48, // INVALID_TXN_STATE
                Some(&format!(
                    "no open transaction starts at offset {start_offset}"
                )),
            ));
        };
        self.abort_producer_transaction(
            tp,
            p.producer_id,
            p.producer_epoch as i16,
            p.coordinator_epoch,
        )
        .await?;
        Ok(p)
    }

    /// Writes an ABORT marker for `producer_id` at `producer_epoch` on `tp`, as from
    /// coordinator epoch `coordinator_epoch` (kafka-transactions.sh abort with
    /// `--producer-id`, `--producer-epoch` and `--coordinator-epoch`).
    pub async fn abort_producer_transaction(
        &mut self,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), AdminError> {
        let req =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(producer_id.into())
                .with_producer_epoch(producer_epoch)
                .with_transaction_result(false)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partition_indexes(vec![tp.partition])])]);
        let r = self.leader_send(tp, req, 1).await?;
        let m = first(&r.markers, "WriteTxnMarkers")?;
        let t = first(&m.topics, "WriteTxnMarkers")?;
        let p = first(&t.partitions, "WriteTxnMarkers")?;
        check(format!("partition {tp}"), p.error_code, None)
    }
}
