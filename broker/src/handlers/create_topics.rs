//! CreateTopics (2-7), including validate_only and explicit replica assignments.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use metadata_quorum::controller::NewTopic;

use super::str_bytes;
use crate::Broker;

/// Kafka's ConfigSource.DYNAMIC_TOPIC_CONFIG.
const SOURCE_TOPIC: i8 = 1;

pub async fn handle(
    broker: &Broker,
    req: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    let topics: Vec<NewTopic> = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index.max(0) as u32,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect::<BTreeMap<_, _>>(),
        })
        .collect();
    let n = topics.len();
    let results = match broker
        .controller
        .create_topics(topics, req.validate_only)
        .await
    {
        Ok(r) => r
            .into_iter()
            .map(|r| r.map_err(|e| (e.kafka_code(), e.to_string())))
            .collect(),
        Err(e) => (0..n)
            .map(|_| Err((e.kafka_code(), e.to_string())))
            .collect::<Vec<_>>(),
    };
    let out = req
        .topics
        .iter()
        .zip(results)
        .map(|(t, r)| {
            let base = CreatableTopicResult::default().with_name(t.name.clone());
            match r {
                Ok(c) => base
                    .with_topic_id(c.topic_id)
                    .with_num_partitions(c.num_partitions)
                    .with_replication_factor(c.replication_factor)
                    .with_configs(Some(
                        c.configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(k.clone()))
                                    .with_value(Some(str_bytes(v.clone())))
                                    .with_config_source(SOURCE_TOPIC)
                            })
                            .collect(),
                    )),
                Err((code, message)) => base
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(out)
}
