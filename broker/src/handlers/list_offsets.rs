//! ListOffsets (1-8): earliest (-2, and -4 "earliest local"), latest (-1), max timestamp
//! (-3, v7+) and by timestamp, the last through the time index. Under read_committed
//! (isolation level 1) "latest" is the last stable offset.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::leader_log;
use crate::error::LogError;
use crate::log::TimestampOffset;
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
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
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let fail = |e: ResponseError| base.clone().with_error_code(e.code());
                    let log = match leader_log(broker, &image, topic, p.partition_index) {
                        Ok(log) => log,
                        Err(e) => return fail(e),
                    };
                    if version >= 4 {
                        if let Err(e) = log.check_leader_epoch(p.current_leader_epoch) {
                            return fail(e.kafka_error());
                        }
                    }
                    let found: Result<Option<TimestampOffset>, LogError> = match p.timestamp {
                        LATEST => Ok(Some(TimestampOffset {
                            timestamp: -1,
                            offset: if req.isolation_level == 1 {
                                log.last_stable_offset()
                            } else {
                                log.high_watermark()
                            },
                        })),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some(TimestampOffset {
                            timestamp: -1,
                            offset: log.state().log_start_offset,
                        })),
                        MAX_TIMESTAMP if version >= 7 => log.offset_of_max_timestamp(),
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        _ => return fail(ResponseError::InvalidRequest),
                    };
                    let mut r = match found {
                        Ok(Some(f)) => base.with_timestamp(f.timestamp).with_offset(f.offset),
                        Ok(None) => base,
                        Err(e) => return fail(e.kafka_error()),
                    };
                    if version >= 4 {
                        r = r.with_leader_epoch(log.leader_epoch());
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
