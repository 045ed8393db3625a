//! DeleteRecords (0-2): move a partition's log start offset forward (-1: to the high
//! watermark); fetching below it then gets OFFSET_OUT_OF_RANGE.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use strom_storage::TopicPartition;

use crate::Broker;

pub fn handle(broker: &Broker, req: DeleteRecordsRequest, _version: i16) -> DeleteRecordsResponse {
    let image = broker.image();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = image.topic(t.name.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(topic) = topic else {
                        return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let Some(meta) = usize::try_from(p.partition_index)
                        .ok()
                        .and_then(|i| topic.partitions.get(i))
                    else {
                        return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if meta.leader != broker.node_id {
                        return base.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let log = match broker
                        .logs
                        .partition(&image, TopicPartition::new(topic.topic_id, meta.partition))
                    {
                        Ok(Some(log)) => log,
                        Ok(None) => {
                            return base.with_error_code(ResponseError::NotLeaderOrFollower.code())
                        }
                        Err(e) => return base.with_error_code(e.code()),
                    };
                    match log.delete_records_before(p.offset) {
                        Ok(low) => base.with_low_watermark(low),
                        Err(e) => base.with_error_code(e.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
