//! Produce (3-11 served; 0-2 parsed and refused, as Kafka 4 does). acks 0, 1 and -1: with a
//! single replica, "all in-sync replicas" is this broker, so -1 answers like 1.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use tracing::debug;

use super::{auto_create, leader_log, str_bytes};
use crate::log::batch;
use crate::metrics::Metrics;
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
    } else if req.transactional_id.is_some() {
        Some((
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported yet",
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
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for t in &req.topic_data {
        let topic = image.topic(t.name.as_str());
        let max_bytes = topic_config::int(
            &broker.config,
            topic.map(|t| t.as_ref()),
            configs::MAX_MESSAGE_BYTES,
        )
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(broker.config.message_max_bytes);
        let partitions = t
            .partition_data
            .iter()
            .map(|p| {
                if topic.is_some_and(|t| t.name == crate::group::OFFSETS_TOPIC) {
                    return error(
                        p.index,
                        ResponseError::InvalidTopicException,
                        Some("__consumer_offsets is written by the group coordinator only".into()),
                    );
                }
                let log = match leader_log(broker, &image, topic, p.index) {
                    Ok(log) => log,
                    Err(e) => return error(p.index, e, None),
                };
                let Some(records) = &p.records else {
                    return error(p.index, ResponseError::InvalidRecord, Some("records are null".into()));
                };
                let result = batch::parse_batches(records, max_bytes)
                    .and_then(|views| log.append(&views).map(|info| (info, views)));
                match result {
                    Ok((info, views)) => {
                        let n: i64 = views.iter().map(|v| v.records_count as i64).sum();
                        Metrics::add(&broker.metrics.produce_records, n as u64);
                        Metrics::add(&broker.metrics.produce_bytes, records.len() as u64);
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(info.log_start_offset)
                    }
                    Err(e) => {
                        debug!(topic = %t.name.as_str(), partition = p.index, error = %e, "produce refused");
                        error(p.index, e.kafka_error(), Some(e.to_string()))
                    }
                }
            })
            .collect();
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partitions),
        );
    }
    ProduceResponse::default().with_responses(responses)
}
