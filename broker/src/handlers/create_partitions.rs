//! CreatePartitions (0-3): grow a topic; keyed records map by the new count afterwards.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let assignments = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = broker
            .controller
            .create_partitions(t.name.to_string(), t.count, assignments, req.validate_only)
            .await;
        let (code, message) = match outcome {
            Ok(Ok(())) => (0, None),
            Ok(Err(e)) => (e.kafka_code(), Some(e.to_string())),
            Err(e) => (e.kafka_code(), Some(e.to_string())),
        };
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}
