//! DeleteRecords (0-2): move a partition's log start offset forward (-1: to the high
//! watermark); fetching below it then gets OFFSET_OUT_OF_RANGE.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::leader_log;
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
                    let log = match leader_log(broker, &image, topic, p.partition_index) {
                        Ok(log) => log,
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
