//! Metadata (0-12): brokers, the cluster id, and topics with partition leadership.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use metadata_quorum::controller::validate_topic_name;
use metadata_quorum::{MetadataImage, TopicImage};
use uuid::Uuid;

use super::{auto_create, str_bytes, topic_name};
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted: Option<Vec<(Option<String>, Uuid)>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| (t.name.map(|n| n.to_string()), t.topic_id))
                .collect(),
        ),
    };
    let allow_auto = version < 4 || req.allow_auto_topic_creation;
    let image = match &wanted {
        Some(list) if allow_auto => {
            let names: Vec<&str> = list.iter().filter_map(|(n, _)| n.as_deref()).collect();
            auto_create(broker, &names).await
        }
        _ => broker.image(),
    };

    let topics = match wanted {
        None => image.topics().map(|t| topic_response(&image, t)).collect(),
        Some(list) => list
            .into_iter()
            .map(|(name, id)| {
                let found = match &name {
                    Some(n) => image.topic(n),
                    None => image.topic_by_id(&id),
                };
                match (found, name) {
                    (Some(t), _) => topic_response(&image, t),
                    (None, Some(n)) => {
                        let error = if validate_topic_name(&n).is_err() {
                            ResponseError::InvalidTopicException
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        MetadataResponseTopic::default()
                            .with_error_code(error.code())
                            .with_name(Some(topic_name(&n)))
                    }
                    (None, None) => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_topic_id(id),
                }
            })
            .collect(),
    };

    MetadataResponse::default()
        .with_brokers(
            image
                .live_brokers()
                .filter_map(|b| {
                    let e = super::client_endpoint(b, listener)?;
                    Some(
                        MetadataResponseBroker::default()
                            .with_node_id(b.broker_id.into())
                            .with_host(str_bytes(e.host.clone()))
                            .with_port(e.port as i32)
                            .with_rack(b.rack.clone().map(str_bytes)),
                    )
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(image.cluster_id.clone())))
        .with_controller_id(broker.node_id.into())
        .with_topics(topics)
}

fn topic_response(image: &MetadataImage, t: &TopicImage) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.topic_id)
        .with_is_internal(t.is_internal())
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    let offline: Vec<_> = p
                        .replicas
                        .iter()
                        .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                        .map(|r| (*r).into())
                        .collect();
                    let error = if p.leader < 0 {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    };
                    MetadataResponsePartition::default()
                        .with_error_code(error)
                        .with_partition_index(p.partition as i32)
                        .with_leader_id(p.leader.into())
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.iter().map(|r| (*r).into()).collect())
                        .with_isr_nodes(p.isr.iter().map(|r| (*r).into()).collect())
                        .with_offline_replicas(offline)
                })
                .collect(),
        )
}
