//! The admin "describe" APIs of Kafka 3.x/4.x tools: DescribeCluster (0-2),
//! DescribeTopicPartitions (0, KIP-966, paginated with a cursor) and DescribeLogDirs (1-4).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use metadata_quorum::TopicImage;
use strom_storage::TopicPartition;

use super::{str_bytes, topic_name};
use crate::Broker;

/// Kafka's "authorized operations not requested".
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub fn describe_cluster(
    broker: &Broker,
    req: DescribeClusterRequest,
    version: i16,
    listener: &str,
) -> DescribeClusterResponse {
    let image = broker.image();
    // Endpoint type 2 asks for the controllers, which a broker does not serve (KIP-919:
    // clients ask the controllers themselves).
    if version >= 1 && req.endpoint_type == 2 {
        return DescribeClusterResponse::default()
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(
                "ask a controller for the controllers (endpoint type 2)",
            )))
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_id(str_bytes(image.cluster_id.clone()))
            .with_controller_id((-1).into());
    }
    let include_fenced = version >= 2 && req.include_fenced_brokers;
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        // As a KRaft broker answers: requests for the controller go to any broker, which
        // forwards them, so this broker stands in for it.
        .with_controller_id(broker.node_id.into())
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
        .with_brokers(
            image
                .brokers
                .values()
                .filter(|b| include_fenced || !b.fenced)
                .filter_map(|b| {
                    let e = super::client_endpoint(b, listener)?;
                    Some(
                        DescribeClusterBroker::default()
                            .with_broker_id(b.broker_id.into())
                            .with_host(str_bytes(e.host.clone()))
                            .with_port(e.port as i32)
                            .with_rack(b.rack.clone().map(str_bytes))
                            .with_is_fenced(b.fenced),
                    )
                })
                .collect(),
        )
}

fn partition_json(
    image: &metadata_quorum::MetadataImage,
    p: &metadata_quorum::PartitionImage,
) -> DescribeTopicPartitionsResponsePartition {
    let offline = p
        .replicas
        .iter()
        .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
        .map(|r| (*r).into())
        .collect();
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(if p.leader < 0 {
            ResponseError::LeaderNotAvailable.code()
        } else {
            0
        })
        .with_partition_index(p.partition as i32)
        .with_leader_id(p.leader.into())
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(p.replicas.iter().map(|r| (*r).into()).collect())
        .with_isr_nodes(p.isr.iter().map(|r| (*r).into()).collect())
        // No eligible leader replicas (KIP-966's ELR) are kept: empty, not unknown.
        .with_eligible_leader_replicas(Some(vec![]))
        .with_last_known_elr(Some(vec![]))
        .with_offline_replicas(offline)
}

/// DescribeTopicPartitions: the named topics (every topic when none is named), sorted by
/// name, from the cursor on, at most `response_partition_limit` partitions; `next_cursor`
/// names where the next page starts.
pub fn describe_topic_partitions(
    broker: &Broker,
    req: DescribeTopicPartitionsRequest,
    _version: i16,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let limit = if req.response_partition_limit <= 0 {
        2000
    } else {
        req.response_partition_limit as usize
    };
    let (start_topic, start_partition) = req.cursor.as_ref().map_or((String::new(), 0), |c| {
        (c.topic_name.to_string(), c.partition_index.max(0))
    });
    let mut budget = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.iter().filter(|n| **n >= start_topic) {
        let from = if *name == start_topic {
            start_partition as usize
        } else {
            0
        };
        let Some(t) = image.topic(name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(topic_name(name)))
                    .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
            );
            continue;
        };
        if budget == 0 {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(name))
                    .with_partition_index(from as i32),
            );
            break;
        }
        let partitions: Vec<_> = t.partitions.iter().skip(from).take(budget).collect();
        budget -= partitions.len();
        let end = from + partitions.len();
        topics.push(topic_entry(&image, t, &partitions));
        if end < t.partitions.len() {
            next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(name))
                    .with_partition_index(end as i32),
            );
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn topic_entry(
    image: &metadata_quorum::MetadataImage,
    t: &TopicImage,
    partitions: &[&metadata_quorum::PartitionImage],
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.topic_id)
        .with_is_internal(t.is_internal())
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
        .with_partitions(
            partitions
                .iter()
                .map(|p| partition_json(image, p))
                .collect(),
        )
}

/// DescribeLogDirs: this broker's one log directory (its RocksDB instance) and the
/// partitions it holds there, with their sizes.
pub fn describe_log_dirs(
    broker: &Broker,
    req: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    let image = broker.image();
    let wanted = |topic: &str, p: i32| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| t.topic.as_str() == topic && t.partitions.contains(&p)),
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<DescribeLogDirsPartition>> =
        Default::default();
    for t in image.topics() {
        for p in &t.partitions {
            if !wanted(&t.name, p.partition as i32) {
                continue;
            }
            let Some(log) = broker
                .logs
                .get(&TopicPartition::new(t.topic_id, p.partition))
            else {
                continue;
            };
            let state = log.state();
            by_topic.entry(t.name.clone()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.partition as i32)
                    .with_partition_size(state.size_bytes as i64)
                    .with_offset_lag((log.high_watermark() - state.log_end_offset).max(0))
                    .with_is_future_key(false),
            );
        }
    }
    let dir = broker.config.data_dir.join("logs");
    let fs = crate::log_dir::fs_space(&broker.config.data_dir);
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(partitions)
                })
                .collect(),
        )
        // v4: the file system holding the data directory (-1 if it cannot be read).
        .with_total_bytes(fs.map_or(-1, |(total, _)| total as i64))
        .with_usable_bytes(fs.map_or(-1, |(_, usable)| usable as i64))])
}

/// The metadata log's topic, as DescribeQuorum names it.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeQuorum (0-2): the Raft quorum of the metadata log, asked of the active controller
/// (as a Kafka broker forwards it): leader, term, high watermark, each voter's progress, and
/// the brokers as observers; v2 adds the controllers' endpoints.
pub async fn describe_quorum(
    broker: &Broker,
    req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    use kafka_protocol::messages::describe_quorum_response::{
        Listener, Node, PartitionData, ReplicaState, TopicData,
    };
    let q = match broker.controller.describe_quorum().await {
        Ok(q) => q,
        Err(e) => {
            return DescribeQuorumResponse::default()
                .with_error_code(e.kafka_code())
                .with_error_message(Some(str_bytes(e.to_string())))
        }
    };
    let state = |r: &metadata_quorum::quorum::rpc::ReplicaProgress| {
        ReplicaState::default()
            .with_replica_id(BrokerId(r.replica_id))
            .with_log_end_offset(r.log_end_offset)
            .with_last_fetch_timestamp(r.last_fetch_timestamp)
            .with_last_caught_up_timestamp(if r.log_end_offset >= q.high_watermark {
                r.last_fetch_timestamp
            } else {
                -1
            })
    };
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = PartitionData::default().with_partition_index(p.partition_index);
                    if t.topic_name.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "only {METADATA_TOPIC} partition 0 has a quorum"
                            ))));
                    }
                    base.with_leader_id(BrokerId(q.leader_id))
                        .with_leader_epoch(q.leader_epoch)
                        .with_high_watermark(q.high_watermark)
                        .with_current_voters(q.voters.iter().map(state).collect())
                        .with_observers(q.observers.iter().map(state).collect())
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    let mut out = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        out = out.with_nodes(
            q.voter_addrs
                .iter()
                .filter_map(|(id, addr)| {
                    let (host, port) = addr.rsplit_once(':')?;
                    Some(Node::default().with_node_id(BrokerId(*id)).with_listeners(
                        vec![Listener::default()
                                .with_name(str_bytes("CONTROLLER"))
                                .with_host(str_bytes(host))
                                .with_port(port.parse().ok()?)],
                    ))
                })
                .collect(),
        );
    }
    out
}
