//! The consumer group protocol (KIP-848): ConsumerGroupHeartbeat (0-1) and
//! ConsumerGroupDescribe (0-1). The coordinator is the same as a classic group's (the leader
//! of the group's `__consumer_offsets` partition); the state machine is `group::consumer`.

use kafka_protocol::messages::consumer_group_describe_response;
use kafka_protocol::messages::consumer_group_heartbeat_response;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use metadata_quorum::MetadataImage;
use uuid::Uuid;

use super::groups::coordinator_log;
use super::{str_bytes, topic_name};
use crate::group::consumer::Assignment;
use crate::group::{Heartbeat, TopicSource};
use crate::Broker;

/// The cluster's topics as the group coordinator sees them.
pub(crate) struct ImageTopics<'a>(pub(crate) &'a MetadataImage);

impl TopicSource for ImageTopics<'_> {
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0
            .topic(name)
            .map(|t| (t.topic_id, t.partitions.len() as i32))
    }

    fn names(&self) -> Vec<String> {
        self.0
            .topics()
            .filter(|t| !t.is_internal())
            .map(|t| t.name.clone())
            .collect()
    }
}

/// The topics a member's regex may match: under the authorizer, only those its principal
/// may describe (as Kafka filters them).
struct VisibleTopics<'a> {
    image: &'a MetadataImage,
    broker: &'a Broker,
    session: &'a crate::security::Session,
}

impl TopicSource for VisibleTopics<'_> {
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
        ImageTopics(self.image).lookup(name)
    }

    fn names(&self) -> Vec<String> {
        let mut names = ImageTopics(self.image).names();
        if self.broker.authorizer.enabled {
            use metadata_quorum::acl::{operation, resource};
            names.retain(|n| {
                self.broker.authorizer.allows(
                    self.image,
                    self.session,
                    operation::DESCRIBE,
                    resource::TOPIC,
                    n,
                )
            });
        }
        names
    }
}

pub fn heartbeat(
    broker: &Broker,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: &str,
    session: &crate::security::Session,
) -> ConsumerGroupHeartbeatResponse {
    let host = session.peer.ip().to_string();
    let host = host.as_str();
    if super::groups::internal_group(req.group_id.as_str()) {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_member_epoch(req.member_epoch);
    }
    if let Err(code) = coordinator_log(broker, req.group_id.as_str()) {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_member_epoch(req.member_epoch);
    }
    if broker.share.groups.contains(req.group_id.as_str()) {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(69) // GROUP_ID_NOT_FOUND
            .with_error_message(Some(str_bytes(format!(
                "Group {} is a share group.",
                req.group_id.as_str()
            ))))
            .with_member_epoch(req.member_epoch);
    }
    let image = broker.image();
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut a = Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
        a
    });
    let outcome = broker.groups.consumer_heartbeat(
        Heartbeat {
            group_id: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            member_epoch: req.member_epoch,
            instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
            rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            topics: req
                .subscribed_topic_names
                .as_ref()
                .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
            regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
            assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
            owned,
            client_id: client_id.to_string(),
            host: host.to_string(),
            version,
        },
        &VisibleTopics {
            image: &image,
            broker,
            session,
        },
    );
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(outcome.error)
        .with_error_message(outcome.message.map(str_bytes))
        .with_member_id((!outcome.member_id.is_empty()).then(|| str_bytes(outcome.member_id)))
        .with_member_epoch(outcome.member_epoch)
        .with_heartbeat_interval_ms(outcome.heartbeat_interval_ms)
        .with_assignment(outcome.assignment.map(|a| {
            consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
                a.into_iter()
                    .map(|(id, ps)| {
                        consumer_group_heartbeat_response::TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        }))
}

pub fn describe(
    broker: &Broker,
    req: ConsumerGroupDescribeRequest,
    _version: i16,
) -> ConsumerGroupDescribeResponse {
    use consumer_group_describe_response::{DescribedGroup, Member, TopicPartitions};
    let image = broker.image();
    let assignment = |a: &Assignment, names: &std::collections::BTreeMap<Uuid, String>| {
        consumer_group_describe_response::Assignment::default().with_topic_partitions(
            a.iter()
                .map(|(id, ps)| {
                    let name = image
                        .topic_by_id(id)
                        .map(|t| t.name.clone())
                        .or_else(|| names.get(id).cloned())
                        .unwrap_or_default();
                    TopicPartitions::default()
                        .with_topic_id(*id)
                        .with_topic_name(topic_name(&name))
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect(),
        )
    };
    ConsumerGroupDescribeResponse::default().with_groups(
        req.group_ids
            .iter()
            .map(|g| {
                let base = DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_authorized_operations(i32::MIN);
                if let Err(code) = coordinator_log(broker, g.as_str()) {
                    return base.with_error_code(code);
                }
                let Some(v) = broker.groups.describe_consumer_group(g.as_str()) else {
                    let message = if broker.groups.describe(g.as_str()).is_some() {
                        format!("Group {} is not a consumer group.", g.as_str())
                    } else {
                        format!("Group {} not found.", g.as_str())
                    };
                    return base
                        .with_error_code(69) // GROUP_ID_NOT_FOUND
                        .with_error_message(Some(str_bytes(message)));
                };
                base.with_group_state(str_bytes(v.state))
                    .with_group_epoch(v.epoch)
                    .with_assignment_epoch(v.assignment_epoch)
                    .with_assignor_name(str_bytes(v.assignor.clone()))
                    .with_members(
                        v.members
                            .iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(str_bytes(m.member_id.clone()))
                                    .with_instance_id(m.instance_id.clone().map(str_bytes))
                                    .with_rack_id(m.rack_id.clone().map(str_bytes))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str_bytes(m.client_id.clone()))
                                    .with_client_host(str_bytes(m.host.clone()))
                                    .with_subscribed_topic_names(
                                        m.topics.iter().map(|t| topic_name(t)).collect(),
                                    )
                                    .with_subscribed_topic_regex(m.regex.clone().map(str_bytes))
                                    .with_assignment(assignment(&m.assigned, &v.topic_names))
                                    .with_target_assignment(assignment(&m.target, &v.topic_names))
                                    .with_member_type(m.member_type)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
