//! AlterPartitionReassignments (0-1) and ListPartitionReassignments (0), KIP-455: what
//! kafka-reassign-partitions.sh and AdminClient.alterPartitionReassignments send. Changes go
//! through the active controller; listings come from this broker's metadata image.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;
use metadata_quorum::controller::Reassignment;

use super::{str_bytes, topic_name};
use crate::Broker;

type Results = BTreeMap<String, Vec<ReassignablePartitionResponse>>;

fn partition_result(
    results: &mut Results,
    topic: &str,
    p: i32,
    code: i16,
    message: Option<String>,
) {
    results.entry(topic.to_string()).or_default().push(
        ReassignablePartitionResponse::default()
            .with_partition_index(p)
            .with_error_code(code)
            .with_error_message(message.map(str_bytes)),
    );
}

pub async fn alter(
    broker: &Broker,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    // v1 (KIP-860) may forbid changing a partition's replication factor.
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let image = broker.image();
    let mut results = Results::new();
    let mut wanted: Vec<Reassignment> = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let Ok(index) = u32::try_from(p.partition_index) else {
                partition_result(
                    &mut results,
                    &t.name,
                    p.partition_index,
                    ResponseError::UnknownTopicOrPartition.code(),
                    Some("no such partition".into()),
                );
                continue;
            };
            if let (false, Some(target)) = (allow_rf_change, &target) {
                let current = image
                    .topic(&t.name)
                    .and_then(|topic| topic.partitions.get(index as usize))
                    .map(|p| p.original_replicas().len());
                if current.is_some_and(|n| n != target.len()) {
                    partition_result(
                        &mut results,
                        &t.name,
                        p.partition_index,
                        ResponseError::InvalidReplicationFactor.code(),
                        Some(format!(
                            "the request would change the replication factor from {} to {} \
                             and allow_replication_factor_change is false",
                            current.unwrap_or_default(),
                            target.len()
                        )),
                    );
                    continue;
                }
            }
            wanted.push(((t.name.to_string(), index), target));
        }
    }
    if !wanted.is_empty() {
        match broker.controller.alter_reassignments(wanted).await {
            Ok(answers) => {
                for ((topic, index), r) in answers {
                    let (code, message) = match r {
                        Ok(()) => (0, None),
                        Err(e) => (e.kafka_code(), Some(e.to_string())),
                    };
                    partition_result(&mut results, &topic, index as i32, code, message);
                }
            }
            Err(e) => {
                return AlterPartitionReassignmentsResponse::default()
                    .with_error_code(e.kafka_code())
                    .with_error_message(Some(str_bytes(e.to_string())));
            }
        }
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(
            results
                .into_iter()
                .map(|(name, partitions)| {
                    ReassignableTopicResponse::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// The reassignments in progress among the partitions named (all with no topics); unknown
/// topics and partitions are left out, as Kafka does.
pub fn list(
    broker: &Broker,
    req: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let image = broker.image();
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let mut topics = Vec::new();
    for topic in image.topics() {
        let only = match &wanted {
            Some(w) => match w.get(&topic.name) {
                Some(ps) => Some(ps),
                None => continue,
            },
            None => None,
        };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .filter(|p| p.reassigning())
            .filter(|p| only.is_none_or(|ps| ps.contains(&(p.partition as i32))))
            .map(|p| {
                let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
                OngoingPartitionReassignment::default()
                    .with_partition_index(p.partition as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding_replicas))
                    .with_removing_replicas(ids(&p.removing_replicas))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(topic_name(&topic.name))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
