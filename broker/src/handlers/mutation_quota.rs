//! The controller mutation quota (KIP-599, `controller_mutation_rate`): partitions created or
//! deleted per second by CreateTopics, CreatePartitions and DeleteTopics.
//!
//! The topics of a request are taken in order and each one's partitions are counted. Newer
//! versions (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+) are strict, as in
//! Kafka: once the principal's credit is spent, the topics that follow are answered
//! THROTTLING_QUOTA_EXCEEDED without being touched. Older versions cannot carry that error:
//! they are counted and only throttled.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::ResponseError;
use metadata_quorum::quota::QuotaIndex;

use super::str_bytes;
use crate::quota::QuotaKind;
use crate::Broker;

const MESSAGE: &str = "the controller mutation quota is spent: retry after the throttle time";

/// Who the mutations are counted against.
pub struct Mutator<'a> {
    pub broker: &'a Broker,
    pub quotas: &'a QuotaIndex,
    pub user: &'a str,
    pub client_id: &'a str,
}

/// What [`before`] took out of a strict request, to answer after it.
#[derive(Default)]
pub struct Refused {
    topics: Vec<RefusedTopic>,
}

enum RefusedTopic {
    Create(kafka_protocol::messages::TopicName),
    Partitions(kafka_protocol::messages::TopicName),
    Delete(Option<kafka_protocol::messages::TopicName>, uuid::Uuid),
}

impl Mutator<'_> {
    fn applies(&self) -> bool {
        self.quotas
            .client_quota(
                self.user,
                self.client_id,
                QuotaKind::ControllerMutation.key(),
            )
            .is_some()
    }

    fn spent(&self, now: u64) -> bool {
        !self.debt(now).is_zero()
    }

    fn debt(&self, now: u64) -> std::time::Duration {
        self.broker.quotas.record(
            self.quotas,
            QuotaKind::ControllerMutation,
            self.user,
            self.client_id,
            0.0,
            now,
        )
    }

    fn take(&self, partitions: f64, now: u64) -> std::time::Duration {
        self.broker.quotas.record(
            self.quotas,
            QuotaKind::ControllerMutation,
            self.user,
            self.client_id,
            partitions,
            now,
        )
    }

    /// Counts the partitions of each topic in order and, for a strict request, takes out of
    /// the request the topics that come after the credit is spent.
    pub fn before(&self, body: &mut RequestKind, version: i16) -> Refused {
        let mut refused = Refused::default();
        if !self.applies() {
            return refused;
        }
        let now = self.broker.quotas.now_ms();
        let image = self.broker.image();
        match body {
            RequestKind::CreateTopics(r) => {
                let strict = version >= 6;
                let count = !r.validate_only;
                r.topics.retain(|t| {
                    if strict && self.spent(now) {
                        refused.topics.push(RefusedTopic::Create(t.name.clone()));
                        return false;
                    }
                    let partitions = if !t.assignments.is_empty() {
                        t.assignments.len() as f64
                    } else if t.num_partitions > 0 {
                        f64::from(t.num_partitions)
                    } else {
                        f64::from(self.broker.config.num_partitions)
                    };
                    if count {
                        self.take(partitions, now);
                    }
                    true
                });
            }
            RequestKind::CreatePartitions(r) => {
                let strict = version >= 3;
                let count = !r.validate_only;
                r.topics.retain(|t| {
                    if strict && self.spent(now) {
                        refused
                            .topics
                            .push(RefusedTopic::Partitions(t.name.clone()));
                        return false;
                    }
                    let current = image
                        .topic(t.name.as_str())
                        .map_or(0, |x| x.partitions.len());
                    if count {
                        self.take(f64::from(t.count).max(0.0) - current as f64, now);
                    }
                    true
                });
            }
            RequestKind::DeleteTopics(r) => {
                let strict = version >= 5;
                let partitions = |name: Option<&str>, id: &uuid::Uuid| {
                    name.and_then(|n| image.topic(n))
                        .or_else(|| image.topic_by_id(id))
                        .map_or(0, |t| t.partitions.len()) as f64
                };
                if version >= 6 {
                    r.topics.retain(|t| {
                        if strict && self.spent(now) {
                            refused
                                .topics
                                .push(RefusedTopic::Delete(t.name.clone(), t.topic_id));
                            return false;
                        }
                        self.take(
                            partitions(t.name.as_deref().map(|n| n.as_str()), &t.topic_id),
                            now,
                        );
                        true
                    });
                } else {
                    r.topic_names.retain(|n| {
                        if strict && self.spent(now) {
                            refused
                                .topics
                                .push(RefusedTopic::Delete(Some(n.clone()), uuid::Uuid::nil()));
                            return false;
                        }
                        self.take(partitions(Some(n.as_str()), &uuid::Uuid::nil()), now);
                        true
                    });
                }
            }
            _ => {}
        }
        refused
    }

    /// After the request: the refused topics of a strict one are answered
    /// THROTTLING_QUOTA_EXCEEDED. Returns the throttle earned.
    pub fn after(&self, response: &mut ResponseKind, refused: Refused) -> std::time::Duration {
        if !self.applies() {
            return std::time::Duration::ZERO;
        }
        let now = self.broker.quotas.now_ms();
        let code = ResponseError::ThrottlingQuotaExceeded.code();
        match response {
            ResponseKind::CreateTopics(r) => {
                for t in refused.topics {
                    if let RefusedTopic::Create(name) = t {
                        r.topics.push(
                            CreatableTopicResult::default()
                                .with_name(name)
                                .with_error_code(code)
                                .with_error_message(Some(str_bytes(MESSAGE)))
                                .with_num_partitions(-1)
                                .with_replication_factor(-1),
                        );
                    }
                }
            }
            ResponseKind::CreatePartitions(r) => {
                for t in refused.topics {
                    if let RefusedTopic::Partitions(name) = t {
                        r.results.push(
                            CreatePartitionsTopicResult::default()
                                .with_name(name)
                                .with_error_code(code)
                                .with_error_message(Some(str_bytes(MESSAGE))),
                        );
                    }
                }
            }
            ResponseKind::DeleteTopics(r) => {
                for t in refused.topics {
                    if let RefusedTopic::Delete(name, id) = t {
                        r.responses.push(
                            DeletableTopicResult::default()
                                .with_name(name)
                                .with_topic_id(id)
                                .with_error_code(code)
                                .with_error_message(Some(str_bytes(MESSAGE))),
                        );
                    }
                }
            }
            _ => return std::time::Duration::ZERO,
        }
        self.debt(now)
    }
}
