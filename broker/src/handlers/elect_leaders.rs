//! ElectLeaders (0-2): preferred and unclean leader election through the active controller
//! (`kafka-leader-election.sh`, AdminClient.electLeaders). Administrators only (Alter on the
//! cluster) when the authoriser is on.

use std::collections::BTreeMap;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name};
use crate::Broker;

/// Kafka's ElectionType.UNCLEAN (v1+; v0 is always preferred).
const UNCLEAN: i8 = 1;

pub async fn handle(
    broker: &Broker,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let unclean = version >= 1 && req.election_type == UNCLEAN;
    if version >= 1 && !matches!(req.election_type, 0 | UNCLEAN) {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let mut invalid = Vec::new();
    let partitions = req.topic_partitions.as_ref().map(|topics| {
        let mut out = Vec::new();
        for t in topics {
            for p in &t.partitions {
                match u32::try_from(*p) {
                    Ok(i) => out.push((t.topic.to_string(), i)),
                    Err(_) => invalid.push((t.topic.to_string(), *p)),
                }
            }
        }
        out
    });
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, p) in invalid {
        by_topic.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(p)
                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        );
    }
    match broker.controller.elect_leaders(unclean, partitions).await {
        Ok(results) => {
            for ((topic, p), r) in results {
                let (code, message) = match r {
                    Ok(()) => (0, None),
                    Err(e) => (e.kafka_code(), Some(str_bytes(e.to_string()))),
                };
                by_topic.entry(topic).or_default().push(
                    PartitionResult::default()
                        .with_partition_id(p as i32)
                        .with_error_code(code)
                        .with_error_message(message),
                );
            }
        }
        // v0 has no top-level error: the failure goes on every partition asked for.
        Err(e) if version == 0 => {
            for t in req.topic_partitions.iter().flatten() {
                for p in &t.partitions {
                    by_topic.entry(t.topic.to_string()).or_default().push(
                        PartitionResult::default()
                            .with_partition_id(*p)
                            .with_error_code(e.kafka_code())
                            .with_error_message(Some(str_bytes(e.to_string()))),
                    );
                }
            }
        }
        Err(e) => {
            return ElectLeadersResponse::default().with_error_code(e.kafka_code());
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(topic, results)| {
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&topic))
                    .with_partition_result(results)
            })
            .collect(),
    )
}
