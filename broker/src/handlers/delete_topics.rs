//! DeleteTopics (1-6): by name, or (v6) by name or topic id.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use metadata_quorum::controller::TopicRef;

use super::{str_bytes, topic_name};
use crate::Broker;

pub async fn handle(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let refs: Vec<TopicRef> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => TopicRef::Name(n.to_string()),
                None => TopicRef::Id(t.topic_id),
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| TopicRef::Name(n.to_string()))
            .collect()
    };
    let results = match broker.controller.delete_topics(refs.clone()).await {
        Ok(r) => r
            .into_iter()
            .map(|r| r.map_err(|e| (e.kafka_code(), e.to_string())))
            .collect(),
        Err(e) => refs
            .iter()
            .map(|_| Err((e.kafka_code(), e.to_string())))
            .collect::<Vec<_>>(),
    };
    let responses = refs
        .iter()
        .zip(results)
        .map(|(r, result)| match result {
            Ok(d) => DeletableTopicResult::default()
                .with_name(Some(topic_name(&d.name)))
                .with_topic_id(d.topic_id),
            Err((code, message)) => {
                let base = match r {
                    TopicRef::Name(n) => {
                        DeletableTopicResult::default().with_name(Some(topic_name(n)))
                    }
                    TopicRef::Id(id) => DeletableTopicResult::default().with_topic_id(*id),
                };
                base.with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
