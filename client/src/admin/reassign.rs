//! Partition reassignment (KIP-455), what kafka-reassign-partitions.sh sends:
//! AlterPartitionReassignments and ListPartitionReassignments; and UnregisterBroker, the last
//! step of retiring a broker once nothing is placed on it.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest,
    UnregisterBrokerRequest,
};

use super::{by_topic, check, Admin, AdminError};
use crate::cluster::topic_name;
use crate::{BrokerError, TopicPartition};

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl Admin {
    /// Removes `broker_id` from the cluster metadata (UnregisterBroker, what
    /// `kafka-cluster.sh unregister` sends). The controller refuses while any partition
    /// still has a replica on it.
    pub async fn unregister_broker(&mut self, broker_id: i32) -> Result<(), AdminError> {
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker_id));
        let r = self.any_send(req, 0).await?;
        check(
            format!("broker {broker_id}"),
            r.error_code,
            r.error_message.as_deref(),
        )
    }

    /// Starts (Some(replicas)) or cancels (None) reassignments; one result per partition.
    pub async fn alter_partition_reassignments(
        &mut self,
        targets: &[(TopicPartition, Option<Vec<i32>>)],
    ) -> Result<Vec<(TopicPartition, Result<(), BrokerError>)>, AdminError> {
        let topics = by_topic(targets.iter().map(|(tp, v)| (tp, v)))
            .into_iter()
            .map(|(t, parts)| {
                ReassignableTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, r)| {
                                ReassignablePartition::default()
                                    .with_partition_index(p)
                                    .with_replicas(r.map(|r| r.into_iter().map(BrokerId).collect()))
                            })
                            .collect(),
                    )
            })
            .collect();
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(60_000)
            .with_allow_replication_factor_change(true)
            .with_topics(topics);
        let r = self.any_send(req, 1).await?;
        check(
            "AlterPartitionReassignments",
            r.error_code,
            r.error_message.as_deref(),
        )?;
        let mut out = Vec::new();
        for t in r.responses {
            for p in t.partitions {
                let result = if p.error_code == 0 {
                    Ok(())
                } else {
                    Err(BrokerError::new(p.error_code, p.error_message.as_deref()))
                };
                out.push((
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    result,
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The reassignments in progress among `partitions` (every one with None).
    pub async fn list_partition_reassignments(
        &mut self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, OngoingReassignment>, AdminError> {
        let topics = partitions.map(|ps| {
            by_topic(ps.iter().map(|tp| (tp, &())))
                .into_iter()
                .map(|(t, parts)| {
                    ListPartitionReassignmentsTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(parts.into_iter().map(|(p, _)| p).collect())
                })
                .collect()
        });
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(60_000)
            .with_topics(topics);
        let r = self.any_send(req, 0).await?;
        check(
            "ListPartitionReassignments",
            r.error_code,
            r.error_message.as_deref(),
        )?;
        let ids = |v: Vec<BrokerId>| v.into_iter().map(|b| b.0).collect::<Vec<i32>>();
        let mut out = BTreeMap::new();
        for t in r.topics {
            for p in t.partitions {
                out.insert(
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    OngoingReassignment {
                        replicas: ids(p.replicas),
                        adding: ids(p.adding_replicas),
                        removing: ids(p.removing_replicas),
                    },
                );
            }
        }
        Ok(out)
    }
}
