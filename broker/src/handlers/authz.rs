//! Authorisation of every request, before and after its handler: the resources a request
//! names are checked with the [`Authorizer`](crate::security::authorizer::Authorizer); denied
//! ones are taken out of the request and answered with Kafka's error codes
//! (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED,
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED), merged back into the handler's response. The
//! handlers themselves know nothing of ACLs.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use metadata_quorum::acl::{operation as op, resource};
use metadata_quorum::MetadataImage;

use super::str_bytes;
use crate::security::authorizer::CLUSTER_NAME;
use crate::security::Session;
use crate::Broker;

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;

/// What to add to the handler's response for what the request lost.
pub enum Denied {
    None,
    /// Topics (name, partitions) answered TOPIC_AUTHORIZATION_FAILED (or the code given).
    Topics(Vec<(TopicName, uuid::Uuid, Vec<i32>, i16)>),
    /// Named resources (coordinator keys, groups, transactional ids) answered with a code.
    Names(Vec<(String, i16)>),
    /// Config resources (type, name) answered with a code.
    Configs(Vec<(i8, String, i16)>),
}

/// The outcome of checking a request.
pub enum Check {
    /// Handle this (possibly narrowed) request, then merge `Denied` into the response.
    Handle(RequestKind, Denied),
    /// Answer this without handling.
    Answer(ResponseKind),
    /// Refuse the request by closing the connection (APIs without per-resource checks yet,
    /// for principals without Alter on the cluster).
    Refuse(&'static str),
}

struct Ctx<'a> {
    broker: &'a Broker,
    image: &'a MetadataImage,
    session: &'a Session,
}

impl Ctx<'_> {
    fn allows(&self, operation: i8, rt: i8, name: &str) -> bool {
        self.broker
            .authorizer
            .allows(self.image, self.session, operation, rt, name)
    }

    fn topic(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::TOPIC, name)
    }

    fn cluster(&self, operation: i8) -> bool {
        self.allows(operation, resource::CLUSTER, CLUSTER_NAME)
    }

    fn group(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::GROUP, name)
    }

    fn txn(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::TRANSACTIONAL_ID, name)
    }

    /// May this session create `topic` (Create on the cluster or on the topic)?
    fn may_create(&self, topic: &str) -> bool {
        self.cluster(op::CREATE) || self.topic(op::CREATE, topic)
    }
}

/// Checks `body` for `session`. With the authoriser off everything passes untouched.
pub fn check(broker: &Broker, session: &Session, body: RequestKind, version: i16) -> Check {
    if !broker.authorizer.enabled {
        return Check::Handle(body, Denied::None);
    }
    let image = broker.image();
    let c = Ctx {
        broker,
        image: &image,
        session,
    };
    use RequestKind as K;
    match body {
        K::ApiVersions(_) | K::SaslHandshake(_) | K::SaslAuthenticate(_) => {
            Check::Handle(body, Denied::None)
        }
        K::Produce(mut r) => {
            if let Some(id) = r.transactional_id.as_ref() {
                if !c.txn(op::WRITE, id) {
                    let all = std::mem::take(&mut r.topic_data)
                        .into_iter()
                        .map(|t| {
                            let ps = t.partition_data.iter().map(|p| p.index).collect();
                            (t.name, uuid::Uuid::nil(), ps, TXN_DENIED)
                        })
                        .collect();
                    return Check::Handle(K::Produce(r), Denied::Topics(all));
                }
            }
            let mut denied = Vec::new();
            r.topic_data.retain(|t| {
                let name = t.name.as_str();
                let ok =
                    c.topic(op::WRITE, name) && (image.topic(name).is_some() || c.may_create(name));
                if !ok {
                    let code = if c.topic(op::WRITE, name) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        TOPIC_DENIED
                    };
                    let ps = t.partition_data.iter().map(|p| p.index).collect();
                    denied.push((t.name.clone(), uuid::Uuid::nil(), ps, code));
                }
                ok
            });
            Check::Handle(K::Produce(r), Denied::Topics(denied))
        }
        K::Fetch(mut r) => {
            if r.replica_id.0 >= 0 {
                if !c.cluster(op::CLUSTER_ACTION) {
                    return Check::Answer(ResponseKind::Fetch(
                        FetchResponse::default().with_error_code(CLUSTER_DENIED),
                    ));
                }
                return Check::Handle(K::Fetch(r), Denied::None);
            }
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let name = if version >= 13 {
                    image.topic_by_id(&t.topic_id).map(|x| x.name.clone())
                } else {
                    Some(t.topic.to_string())
                };
                // An unknown topic id is the handler's to answer (UNKNOWN_TOPIC_ID).
                let ok = name.as_deref().is_none_or(|n| c.topic(op::READ, n));
                if !ok {
                    let ps = t.partitions.iter().map(|p| p.partition).collect();
                    denied.push((t.topic.clone(), t.topic_id, ps, TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::Fetch(r), Denied::Topics(denied))
        }
        K::ListOffsets(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::DESCRIBE, &t.name);
                if !ok {
                    let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                    denied.push((t.name.clone(), uuid::Uuid::nil(), ps, TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::ListOffsets(r), Denied::Topics(denied))
        }
        K::OffsetForLeaderEpoch(mut r) => {
            if r.replica_id.0 >= 0 {
                if c.cluster(op::CLUSTER_ACTION) {
                    return Check::Handle(K::OffsetForLeaderEpoch(r), Denied::None);
                }
                r.replica_id = (-1).into();
            }
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::DESCRIBE, &t.topic);
                if !ok {
                    let ps = t.partitions.iter().map(|p| p.partition).collect();
                    denied.push((t.topic.clone(), uuid::Uuid::nil(), ps, TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::OffsetForLeaderEpoch(r), Denied::Topics(denied))
        }
        K::Metadata(mut r) => {
            let mut denied = Vec::new();
            if let Some(list) = r.topics.as_mut() {
                list.retain(|t| {
                    let Some(name) = t.name.as_ref() else {
                        return true;
                    };
                    let describe = c.topic(op::DESCRIBE, name);
                    let exists = image.topic(name).is_some();
                    if describe && (exists || c.may_create(name)) {
                        return true;
                    }
                    let code = if describe {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        TOPIC_DENIED
                    };
                    denied.push((name.clone(), uuid::Uuid::nil(), vec![], code));
                    false
                });
            }
            Check::Handle(K::Metadata(r), Denied::Topics(denied))
        }
        K::CreateTopics(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.may_create(&t.name);
                if !ok {
                    denied.push((t.name.clone(), uuid::Uuid::nil(), vec![], TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::CreateTopics(r), Denied::Topics(denied))
        }
        K::DeleteTopics(mut r) => {
            let mut denied = Vec::new();
            r.topic_names.retain(|n| {
                let ok = c.topic(op::DELETE, n);
                if !ok {
                    denied.push((n.clone(), uuid::Uuid::nil(), vec![], TOPIC_DENIED));
                }
                ok
            });
            r.topics.retain(|t| {
                let name = t
                    .name
                    .as_ref()
                    .map(|n| n.to_string())
                    .or_else(|| image.topic_by_id(&t.topic_id).map(|x| x.name.clone()));
                let ok = name.as_deref().is_none_or(|n| c.topic(op::DELETE, n));
                if !ok {
                    let tn = t.name.clone().unwrap_or_default();
                    denied.push((tn, t.topic_id, vec![], TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::DeleteTopics(r), Denied::Topics(denied))
        }
        // Groups: the group first, then the topics.
        K::JoinGroup(ref r) if !c.group(op::READ, &r.group_id) => Check::Answer(
            ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        K::SyncGroup(ref r) if !c.group(op::READ, &r.group_id) => Check::Answer(
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        K::Heartbeat(ref r) if !c.group(op::READ, &r.group_id) => Check::Answer(
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP_DENIED)),
        ),
        K::ConsumerGroupHeartbeat(ref r) if !c.group(op::READ, &r.group_id) => {
            Check::Answer(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_member_epoch(r.member_epoch),
            ))
        }
        K::ConsumerGroupHeartbeat(ref r)
            if r.subscribed_topic_names
                .iter()
                .flatten()
                .any(|t| !c.topic(op::DESCRIBE, t)) =>
        {
            Check::Answer(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(TOPIC_DENIED)
                    .with_member_epoch(r.member_epoch),
            ))
        }
        K::ConsumerGroupDescribe(mut r) => {
            let mut denied = Vec::new();
            r.group_ids.retain(|g| {
                let ok = c.group(op::DESCRIBE, g);
                if !ok {
                    denied.push((g.to_string(), GROUP_DENIED));
                }
                ok
            });
            Check::Handle(K::ConsumerGroupDescribe(r), Denied::Names(denied))
        }
        K::ShareGroupHeartbeat(ref r)
            if !c.group(op::READ, &r.group_id)
                || r.subscribed_topic_names
                    .iter()
                    .flatten()
                    .any(|t| !c.topic(op::DESCRIBE, t)) =>
        {
            let code = if c.group(op::READ, &r.group_id) {
                TOPIC_DENIED
            } else {
                GROUP_DENIED
            };
            Check::Answer(ResponseKind::ShareGroupHeartbeat(
                ShareGroupHeartbeatResponse::default()
                    .with_error_code(code)
                    .with_member_epoch(r.member_epoch),
            ))
        }
        K::ShareGroupDescribe(mut r) => {
            let mut denied = Vec::new();
            r.group_ids.retain(|g| {
                let ok = c.group(op::DESCRIBE, g);
                if !ok {
                    denied.push((g.to_string(), GROUP_DENIED));
                }
                ok
            });
            Check::Handle(K::ShareGroupDescribe(r), Denied::Names(denied))
        }
        K::DescribeShareGroupOffsets(mut r) => {
            // Groups it may not describe are answered with their error; topics it may not
            // describe are left out of the answer (as OffsetFetch's are).
            let mut denied = Vec::new();
            r.groups.retain(|g| {
                let ok = c.group(op::DESCRIBE, &g.group_id);
                if !ok {
                    denied.push((g.group_id.to_string(), GROUP_DENIED));
                }
                ok
            });
            Check::Handle(K::DescribeShareGroupOffsets(r), Denied::Names(denied))
        }
        K::AlterShareGroupOffsets(mut r) => {
            // Read on the group (else the whole request) and on each topic (else its
            // partitions), as Kafka.
            if !c.group(op::READ, &r.group_id) {
                return Check::Answer(ResponseKind::AlterShareGroupOffsets(
                    AlterShareGroupOffsetsResponse::default().with_error_code(GROUP_DENIED),
                ));
            }
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::READ, &t.topic_name);
                if !ok {
                    let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                    denied.push((t.topic_name.clone(), uuid::Uuid::nil(), ps, TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::AlterShareGroupOffsets(r), Denied::Topics(denied))
        }
        K::DeleteShareGroupOffsets(mut r) => {
            // Delete on the group, Read on each topic, as Kafka.
            if !c.group(op::DELETE, &r.group_id) {
                return Check::Answer(ResponseKind::DeleteShareGroupOffsets(
                    DeleteShareGroupOffsetsResponse::default().with_error_code(GROUP_DENIED),
                ));
            }
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::READ, &t.topic_name);
                if !ok {
                    denied.push((t.topic_name.clone(), uuid::Uuid::nil(), vec![], TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::DeleteShareGroupOffsets(r), Denied::Topics(denied))
        }
        // Between brokers only (the handlers also want a broker's client id).
        K::InitializeShareGroupState(ref r) if !c.cluster(op::CLUSTER_ACTION) => {
            Check::Answer(ResponseKind::InitializeShareGroupState(
                super::share_offsets::refused_initialize(r),
            ))
        }
        K::DeleteShareGroupState(ref r) if !c.cluster(op::CLUSTER_ACTION) => {
            Check::Answer(ResponseKind::DeleteShareGroupState(
                super::share_offsets::refused_delete(r),
            ))
        }
        b @ (K::InitializeShareGroupState(_) | K::DeleteShareGroupState(_)) => {
            Check::Handle(b, Denied::None)
        }
        K::ShareFetch(ref r) => match share_denied(
            &c,
            &image,
            r.group_id.as_ref(),
            r.topics.iter().map(|t| &t.topic_id),
        ) {
            Some(code) => Check::Answer(ResponseKind::ShareFetch(
                ShareFetchResponse::default().with_error_code(code),
            )),
            None => Check::Handle(body, Denied::None),
        },
        K::ShareAcknowledge(ref r) => match share_denied(
            &c,
            &image,
            r.group_id.as_ref(),
            r.topics.iter().map(|t| &t.topic_id),
        ) {
            Some(code) => Check::Answer(ResponseKind::ShareAcknowledge(
                ShareAcknowledgeResponse::default().with_error_code(code),
            )),
            None => Check::Handle(body, Denied::None),
        },
        K::LeaveGroup(ref r) if !c.group(op::READ, &r.group_id) => Check::Answer(
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        K::OffsetCommit(mut r) => {
            if !c.group(op::READ, &r.group_id) {
                let all = std::mem::take(&mut r.topics)
                    .into_iter()
                    .map(|t| {
                        let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                        (t.name, t.topic_id, ps, GROUP_DENIED)
                    })
                    .collect();
                return Check::Handle(K::OffsetCommit(r), Denied::Topics(all));
            }
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::READ, &t.name);
                if !ok {
                    let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                    denied.push((t.name.clone(), t.topic_id, ps, TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::OffsetCommit(r), Denied::Topics(denied))
        }
        K::OffsetFetch(r) => {
            // Group-level: a group the session may not describe is answered with its error;
            // topics it may not describe are left out (as Kafka filters them).
            let groups: Vec<String> = if version >= 8 {
                r.groups.iter().map(|g| g.group_id.to_string()).collect()
            } else {
                vec![r.group_id.to_string()]
            };
            if groups.iter().any(|g| !c.group(op::DESCRIBE, g)) {
                let mut resp = OffsetFetchResponse::default();
                if version >= 8 {
                    resp.groups = groups
                        .iter()
                        .map(|g| {
                            offset_fetch_response::OffsetFetchResponseGroup::default()
                                .with_group_id(GroupId(str_bytes(g.clone())))
                                .with_error_code(if c.group(op::DESCRIBE, g) {
                                    ResponseError::NotCoordinator.code()
                                } else {
                                    GROUP_DENIED
                                })
                        })
                        .collect();
                } else {
                    resp.error_code = GROUP_DENIED;
                }
                return Check::Answer(ResponseKind::OffsetFetch(resp));
            }
            Check::Handle(K::OffsetFetch(r), Denied::None)
        }
        K::FindCoordinator(r) => {
            let rt = if r.key_type == 1 {
                resource::TRANSACTIONAL_ID
            } else {
                resource::GROUP
            };
            let keys: Vec<String> = if version >= 4 {
                r.coordinator_keys.iter().map(|k| k.to_string()).collect()
            } else {
                vec![r.key.to_string()]
            };
            let code = if rt == resource::GROUP {
                GROUP_DENIED
            } else {
                TXN_DENIED
            };
            if keys.iter().all(|k| c.allows(op::DESCRIBE, rt, k)) {
                return Check::Handle(K::FindCoordinator(r), Denied::None);
            }
            if version < 4 {
                return Check::Answer(ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default()
                        .with_error_code(code)
                        .with_node_id((-1).into()),
                ));
            }
            let mut r = r;
            let mut denied = Vec::new();
            r.coordinator_keys.retain(|k| {
                let ok = c.allows(op::DESCRIBE, rt, k);
                if !ok {
                    denied.push((k.to_string(), code));
                }
                ok
            });
            Check::Handle(K::FindCoordinator(r), Denied::Names(denied))
        }
        K::InitProducerId(r) => {
            let ok = match r.transactional_id.as_ref() {
                Some(id) => c.txn(op::WRITE, id),
                // KIP-679: Write on any topic is enough to be idempotent.
                None => {
                    c.cluster(op::IDEMPOTENT_WRITE)
                        || broker
                            .authorizer
                            .allows_any(&image, session, op::WRITE, resource::TOPIC)
                }
            };
            if ok {
                return Check::Handle(K::InitProducerId(r), Denied::None);
            }
            let code = if r.transactional_id.is_some() {
                TXN_DENIED
            } else {
                CLUSTER_DENIED
            };
            Check::Answer(ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            ))
        }
        K::EndTxn(ref r) if !c.txn(op::WRITE, &r.transactional_id) => Check::Answer(
            ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(TXN_DENIED)),
        ),
        K::AddOffsetsToTxn(ref r) if !c.txn(op::WRITE, &r.transactional_id) => {
            Check::Answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(TXN_DENIED),
            ))
        }
        K::AddOffsetsToTxn(ref r) if !c.group(op::READ, &r.group_id) => {
            Check::Answer(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        K::AddPartitionsToTxn(mut r) if version < 4 => {
            let whole = if !c.txn(op::WRITE, &r.v3_and_below_transactional_id) {
                Some(TXN_DENIED)
            } else {
                None
            };
            let mut denied = Vec::new();
            r.v3_and_below_topics.retain(|t| {
                let code = whole.or_else(|| (!c.topic(op::WRITE, &t.name)).then_some(TOPIC_DENIED));
                if let Some(code) = code {
                    denied.push((
                        t.name.clone(),
                        uuid::Uuid::nil(),
                        t.partitions.clone(),
                        code,
                    ));
                }
                code.is_none()
            });
            if !denied.is_empty() {
                // Kafka answers the allowed partitions OPERATION_NOT_ATTEMPTED then.
                let mut all = denied;
                for t in std::mem::take(&mut r.v3_and_below_topics) {
                    all.push((t.name, uuid::Uuid::nil(), t.partitions, 55));
                }
                return Check::Handle(K::AddPartitionsToTxn(r), Denied::Topics(all));
            }
            Check::Handle(K::AddPartitionsToTxn(r), Denied::None)
        }
        K::AddPartitionsToTxn(r) => {
            // v4+ comes from brokers verifying a transactional produce.
            if c.cluster(op::CLUSTER_ACTION) {
                Check::Handle(K::AddPartitionsToTxn(r), Denied::None)
            } else {
                Check::Answer(ResponseKind::AddPartitionsToTxn(
                    AddPartitionsToTxnResponse::default().with_error_code(CLUSTER_DENIED),
                ))
            }
        }
        K::TxnOffsetCommit(mut r) => {
            let whole = if !c.txn(op::WRITE, &r.transactional_id) {
                Some(TXN_DENIED)
            } else if !c.group(op::READ, &r.group_id) {
                Some(GROUP_DENIED)
            } else {
                None
            };
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let code = whole.or_else(|| (!c.topic(op::READ, &t.name)).then_some(TOPIC_DENIED));
                if let Some(code) = code {
                    let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                    denied.push((t.name.clone(), uuid::Uuid::nil(), ps, code));
                }
                code.is_none()
            });
            Check::Handle(K::TxnOffsetCommit(r), Denied::Topics(denied))
        }
        K::WriteTxnMarkers(r) => {
            if c.cluster(op::CLUSTER_ACTION) {
                return Check::Handle(K::WriteTxnMarkers(r), Denied::None);
            }
            use kafka_protocol::messages::write_txn_markers_response::{
                WritableTxnMarkerPartitionResult, WritableTxnMarkerResult,
                WritableTxnMarkerTopicResult,
            };
            // Every partition CLUSTER_AUTHORIZATION_FAILED, as Kafka answers.
            let markers = r
                .markers
                .iter()
                .map(|m| {
                    WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|&p| {
                                                    WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(p)
                                                        .with_error_code(CLUSTER_DENIED)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            Check::Answer(ResponseKind::WriteTxnMarkers(
                WriteTxnMarkersResponse::default().with_markers(markers),
            ))
        }
        K::DescribeCluster(ref _r) if !c.cluster(op::DESCRIBE) => {
            Check::Answer(ResponseKind::DescribeCluster(
                DescribeClusterResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::CreateAcls(r) => {
            if c.cluster(op::ALTER) {
                return Check::Handle(K::CreateAcls(r), Denied::None);
            }
            Check::Answer(ResponseKind::CreateAcls(
                CreateAclsResponse::default().with_results(
                    r.creations
                        .iter()
                        .map(|_| {
                            create_acls_response::AclCreationResult::default()
                                .with_error_code(CLUSTER_DENIED)
                        })
                        .collect(),
                ),
            ))
        }
        K::DeleteAcls(r) => {
            if c.cluster(op::ALTER) {
                return Check::Handle(K::DeleteAcls(r), Denied::None);
            }
            Check::Answer(ResponseKind::DeleteAcls(
                DeleteAclsResponse::default().with_filter_results(
                    r.filters
                        .iter()
                        .map(|_| {
                            delete_acls_response::DeleteAclsFilterResult::default()
                                .with_error_code(CLUSTER_DENIED)
                        })
                        .collect(),
                ),
            ))
        }
        K::DescribeAcls(ref _r) if !c.cluster(op::DESCRIBE) => {
            Check::Answer(ResponseKind::DescribeAcls(
                DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::DescribeUserScramCredentials(ref _r) if !c.cluster(op::DESCRIBE) => {
            Check::Answer(ResponseKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::AlterUserScramCredentials(r) => {
            if c.cluster(op::ALTER) {
                return Check::Handle(K::AlterUserScramCredentials(r), Denied::None);
            }
            let mut users: Vec<String> = Vec::new();
            for n in r
                .deletions
                .iter()
                .map(|d| d.name.to_string())
                .chain(r.upsertions.iter().map(|u| u.name.to_string()))
            {
                if !users.contains(&n) {
                    users.push(n);
                }
            }
            Check::Answer(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .into_iter()
                        .map(|u| {
                            alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                                .with_user(str_bytes(u))
                                .with_error_code(CLUSTER_DENIED)
                        })
                        .collect(),
                ),
            ))
        }
        K::DescribeClientQuotas(ref _r) if !c.cluster(op::DESCRIBE_CONFIGS) => {
            Check::Answer(ResponseKind::DescribeClientQuotas(
                DescribeClientQuotasResponse::default()
                    .with_error_code(CLUSTER_DENIED)
                    .with_error_message(Some(str_bytes(
                        "DescribeClientQuotas needs DescribeConfigs on the cluster",
                    ))),
            ))
        }
        K::AlterClientQuotas(r) => {
            if c.cluster(op::ALTER_CONFIGS) {
                return Check::Handle(K::AlterClientQuotas(r), Denied::None);
            }
            Check::Answer(ResponseKind::AlterClientQuotas(
                AlterClientQuotasResponse::default().with_entries(
                    r.entries
                        .into_iter()
                        .map(|e| {
                            alter_client_quotas_response::EntryData::default()
                                .with_error_code(CLUSTER_DENIED)
                                .with_entity(
                                    e.entity
                                        .into_iter()
                                        .map(|p| {
                                            alter_client_quotas_response::EntityData::default()
                                                .with_entity_type(p.entity_type)
                                                .with_entity_name(p.entity_name)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            ))
        }
        // The requests that passed a guard above.
        b @ (K::JoinGroup(_)
        | K::SyncGroup(_)
        | K::Heartbeat(_)
        | K::LeaveGroup(_)
        | K::ConsumerGroupHeartbeat(_)
        | K::ShareGroupHeartbeat(_)
        // Client telemetry is open to every authenticated client, as in Kafka.
        | K::GetTelemetrySubscriptions(_)
        | K::PushTelemetry(_)
        | K::EndTxn(_)
        | K::AddOffsetsToTxn(_)
        | K::DescribeCluster(_)
        | K::DescribeAcls(_)
        | K::DescribeUserScramCredentials(_)
        | K::DescribeClientQuotas(_)) => Check::Handle(b, Denied::None),
        K::DescribeConfigs(mut r) => {
            let denied = retain_configs(&c, &mut r.resources, op::DESCRIBE_CONFIGS, |x| {
                (x.resource_type, x.resource_name.to_string())
            });
            Check::Handle(K::DescribeConfigs(r), Denied::Configs(denied))
        }
        K::AlterConfigs(mut r) => {
            let denied = retain_configs(&c, &mut r.resources, op::ALTER_CONFIGS, |x| {
                (x.resource_type, x.resource_name.to_string())
            });
            Check::Handle(K::AlterConfigs(r), Denied::Configs(denied))
        }
        K::IncrementalAlterConfigs(mut r) => {
            let denied = retain_configs(&c, &mut r.resources, op::ALTER_CONFIGS, |x| {
                (x.resource_type, x.resource_name.to_string())
            });
            Check::Handle(K::IncrementalAlterConfigs(r), Denied::Configs(denied))
        }
        K::CreatePartitions(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::ALTER, &t.name);
                if !ok {
                    denied.push((t.name.clone(), uuid::Uuid::nil(), vec![], TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::CreatePartitions(r), Denied::Topics(denied))
        }
        K::DeleteRecords(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::DELETE, &t.name);
                if !ok {
                    let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                    denied.push((t.name.clone(), uuid::Uuid::nil(), ps, TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::DeleteRecords(r), Denied::Topics(denied))
        }
        K::DescribeProducers(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::READ, &t.name);
                if !ok {
                    denied.push((
                        t.name.clone(),
                        uuid::Uuid::nil(),
                        t.partition_indexes.clone(),
                        TOPIC_DENIED,
                    ));
                }
                ok
            });
            Check::Handle(K::DescribeProducers(r), Denied::Topics(denied))
        }
        K::DescribeTopicPartitions(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::DESCRIBE, &t.name);
                if !ok {
                    denied.push((t.name.clone(), uuid::Uuid::nil(), vec![], TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::DescribeTopicPartitions(r), Denied::Topics(denied))
        }
        K::DescribeGroups(mut r) => {
            let mut denied = Vec::new();
            r.groups.retain(|g| {
                let ok = c.group(op::DESCRIBE, g);
                if !ok {
                    denied.push((g.to_string(), GROUP_DENIED));
                }
                ok
            });
            Check::Handle(K::DescribeGroups(r), Denied::Names(denied))
        }
        K::DeleteGroups(mut r) => {
            let mut denied = Vec::new();
            r.groups_names.retain(|g| {
                let ok = c.group(op::DELETE, g);
                if !ok {
                    denied.push((g.to_string(), GROUP_DENIED));
                }
                ok
            });
            Check::Handle(K::DeleteGroups(r), Denied::Names(denied))
        }
        K::OffsetDelete(mut r) => {
            if !c.group(op::DELETE, &r.group_id) {
                return Check::Answer(ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
                ));
            }
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = c.topic(op::READ, &t.name);
                if !ok {
                    let ps = t.partitions.iter().map(|p| p.partition_index).collect();
                    denied.push((t.name.clone(), uuid::Uuid::nil(), ps, TOPIC_DENIED));
                }
                ok
            });
            Check::Handle(K::OffsetDelete(r), Denied::Topics(denied))
        }
        K::DescribeTransactions(mut r) => {
            let mut denied = Vec::new();
            r.transactional_ids.retain(|id| {
                let ok = c.txn(op::DESCRIBE, id);
                if !ok {
                    denied.push((id.to_string(), TXN_DENIED));
                }
                ok
            });
            Check::Handle(K::DescribeTransactions(r), Denied::Names(denied))
        }
        // Listings are filtered afterwards ([`filter_response`]).
        b @ (K::ListGroups(_) | K::ListTransactions(_)) => Check::Handle(b, Denied::None),
        K::DescribeLogDirs(ref _r) if !c.cluster(op::DESCRIBE) => {
            Check::Answer(ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::DescribeLogDirs(r) => Check::Handle(K::DescribeLogDirs(r), Denied::None),
        K::DescribeQuorum(ref _r) if !c.cluster(op::DESCRIBE) => {
            Check::Answer(ResponseKind::DescribeQuorum(
                DescribeQuorumResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::DescribeQuorum(r) => Check::Handle(K::DescribeQuorum(r), Denied::None),
        // v0 has no top-level error code: a denied v0 request is refused below.
        K::ElectLeaders(ref _r) if !c.cluster(op::ALTER) && version >= 1 => {
            Check::Answer(ResponseKind::ElectLeaders(
                ElectLeadersResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::ElectLeaders(r) => Check::Handle(K::ElectLeaders(r), Denied::None),
        K::AlterPartitionReassignments(ref _r) if !c.cluster(op::ALTER) => {
            Check::Answer(ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::ListPartitionReassignments(ref _r) if !c.cluster(op::DESCRIBE) => {
            Check::Answer(ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::ListPartitionReassignments(r) => {
            Check::Handle(K::ListPartitionReassignments(r), Denied::None)
        }
        K::ListConfigResources(_) if !c.cluster(op::DESCRIBE_CONFIGS) => {
            Check::Answer(ResponseKind::ListConfigResources(
                ListConfigResourcesResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        K::ListConfigResources(r) => Check::Handle(K::ListConfigResources(r), Denied::None),
        K::UpdateFeatures(ref _r) if !c.cluster(op::ALTER) => {
            Check::Answer(ResponseKind::UpdateFeatures(
                UpdateFeaturesResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        // Anything not named above: administrators only.
        other => {
            if c.cluster(op::ALTER) {
                Check::Handle(other, Denied::None)
            } else {
                Check::Refuse("this API is open to principals with Alter on the cluster only while the authoriser is on")
            }
        }
    }
}

/// Why a ShareFetch or ShareAcknowledge is refused whole: no Read on its group
/// (GROUP_AUTHORIZATION_FAILED) or on one of its topics (TOPIC_AUTHORIZATION_FAILED).
fn share_denied<'a>(
    c: &Ctx<'_>,
    image: &MetadataImage,
    group: Option<&GroupId>,
    mut topics: impl Iterator<Item = &'a uuid::Uuid>,
) -> Option<i16> {
    if group.is_some_and(|g| !c.group(op::READ, g)) {
        return Some(GROUP_DENIED);
    }
    topics
        .any(|t| {
            image
                .topic_by_id(t)
                .is_some_and(|x| !c.topic(op::READ, &x.name))
        })
        .then_some(TOPIC_DENIED)
}

/// Keeps the config resources `op` is allowed on (topics: on the topic; brokers: on the
/// cluster) and returns the others with their error code.
fn retain_configs<T>(
    c: &Ctx<'_>,
    resources: &mut Vec<T>,
    operation: i8,
    key: impl Fn(&T) -> (i8, String),
) -> Vec<(i8, String, i16)> {
    let mut denied = Vec::new();
    resources.retain(|x| {
        let (rt, name) = key(x);
        let (ok, code) = match rt {
            2 => (c.topic(operation, &name), TOPIC_DENIED),
            32 => (c.group(operation, &name), GROUP_DENIED),
            _ => (c.cluster(operation), CLUSTER_DENIED),
        };
        if !ok {
            denied.push((rt, name, code));
        }
        ok
    });
    denied
}

/// Adds the answers for what [`check`] took out of the request.
pub fn merge(response: &mut ResponseKind, denied: Denied, version: i16) {
    let denied = match denied {
        Denied::None => return,
        Denied::Names(names) => {
            for (n, code) in names {
                match response {
                    ResponseKind::FindCoordinator(r) => r.coordinators.push(
                        Coordinator::default()
                            .with_key(str_bytes(n))
                            .with_node_id((-1).into())
                            .with_error_code(code),
                    ),
                    ResponseKind::ConsumerGroupDescribe(r) => r.groups.push(
                        consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(GroupId(str_bytes(n)))
                            .with_error_code(code)
                            .with_authorized_operations(i32::MIN),
                    ),
                    ResponseKind::ShareGroupDescribe(r) => r.groups.push(
                        share_group_describe_response::DescribedGroup::default()
                            .with_group_id(GroupId(str_bytes(n)))
                            .with_error_code(code)
                            .with_authorized_operations(i32::MIN),
                    ),
                    ResponseKind::DescribeShareGroupOffsets(r) => r.groups.push(
                        describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup::default()
                            .with_group_id(GroupId(str_bytes(n)))
                            .with_error_code(code),
                    ),
                    ResponseKind::DescribeGroups(r) => r.groups.push(
                        describe_groups_response::DescribedGroup::default()
                            .with_group_id(GroupId(str_bytes(n)))
                            .with_error_code(code)
                            .with_authorized_operations(i32::MIN),
                    ),
                    ResponseKind::DeleteGroups(r) => r.results.push(
                        delete_groups_response::DeletableGroupResult::default()
                            .with_group_id(GroupId(str_bytes(n)))
                            .with_error_code(code),
                    ),
                    ResponseKind::DescribeTransactions(r) => r.transaction_states.push(
                        describe_transactions_response::TransactionState::default()
                            .with_transactional_id(TransactionalId(str_bytes(n)))
                            .with_error_code(code)
                            .with_producer_id((-1).into())
                            .with_producer_epoch(-1),
                    ),
                    _ => {}
                }
            }
            return;
        }
        Denied::Configs(configs) => {
            for (rt, name, code) in configs {
                match response {
                    ResponseKind::DescribeConfigs(r) => r.results.push(
                        describe_configs_response::DescribeConfigsResult::default()
                            .with_resource_type(rt)
                            .with_resource_name(str_bytes(name))
                            .with_error_code(code),
                    ),
                    ResponseKind::AlterConfigs(r) => r.responses.push(
                        alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(rt)
                            .with_resource_name(str_bytes(name))
                            .with_error_code(code),
                    ),
                    ResponseKind::IncrementalAlterConfigs(r) => r.responses.push(
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(rt)
                            .with_resource_name(str_bytes(name))
                            .with_error_code(code),
                    ),
                    _ => {}
                }
            }
            return;
        }
        Denied::Topics(t) => t,
    };
    if denied.is_empty() {
        return;
    }
    match response {
        ResponseKind::Produce(r) => {
            for (name, _, ps, code) in denied {
                r.responses.push(
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_partition_responses(
                            ps.into_iter()
                                .map(|p| {
                                    PartitionProduceResponse::default()
                                        .with_index(p)
                                        .with_error_code(code)
                                        .with_base_offset(-1)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::Fetch(r) => {
            for (name, id, ps, code) in denied {
                r.responses.push(
                    FetchableTopicResponse::default()
                        .with_topic(name)
                        .with_topic_id(id)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_high_watermark(-1)
                                        .with_last_stable_offset(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::ListOffsets(r) => {
            for (name, _, ps, code) in denied {
                r.topics.push(
                    ListOffsetsTopicResponse::default()
                        .with_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_offset(-1)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::OffsetForLeaderEpoch(r) => {
            for (name, _, ps, code) in denied {
                r.topics.push(
                    OffsetForLeaderTopicResult::default()
                        .with_topic(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    EpochEndOffset::default()
                                        .with_partition(p)
                                        .with_error_code(code)
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::Metadata(r) => {
            for (name, _, _, code) in denied {
                r.topics.push(
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(code),
                );
            }
        }
        ResponseKind::CreateTopics(r) => {
            for (name, _, _, code) in denied {
                r.topics.push(
                    CreatableTopicResult::default()
                        .with_name(name)
                        .with_error_code(code)
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_topic_config_error_code(code),
                );
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for (name, id, _, code) in denied {
                r.responses.push(
                    DeletableTopicResult::default()
                        .with_name((!name.is_empty() || version < 6).then_some(name))
                        .with_topic_id(id)
                        .with_error_code(code),
                );
            }
        }
        ResponseKind::OffsetCommit(r) => {
            for (name, id, ps, code) in denied {
                r.topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::TxnOffsetCommit(r) => {
            for (name, _, ps, code) in denied {
                r.topics.push(
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::CreatePartitions(r) => {
            for (name, _, _, code) in denied {
                r.results.push(
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(name)
                        .with_error_code(code),
                );
            }
        }
        ResponseKind::DeleteRecords(r) => {
            for (name, _, ps, code) in denied {
                r.topics.push(
                    delete_records_response::DeleteRecordsTopicResult::default()
                        .with_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    delete_records_response::DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_low_watermark(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::DescribeProducers(r) => {
            for (name, _, ps, code) in denied {
                r.topics.push(
                    describe_producers_response::TopicResponse::default()
                        .with_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    describe_producers_response::PartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::DescribeTopicPartitions(r) => {
            for (name, _, _, code) in denied {
                r.topics.push(
                    describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(code)
                        .with_topic_authorized_operations(i32::MIN),
                );
            }
        }
        ResponseKind::AlterShareGroupOffsets(r) => {
            for (name, _, ps, code) in denied {
                r.responses.push(
                    alter_share_group_offsets_response::AlterShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    alter_share_group_offsets_response::AlterShareGroupOffsetsResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::DeleteShareGroupOffsets(r) => {
            for (name, _, _, code) in denied {
                r.responses.push(
                    delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(name)
                        .with_error_code(code),
                );
            }
        }
        ResponseKind::OffsetDelete(r) => {
            for (name, _, ps, code) in denied {
                r.topics.push(
                    offset_delete_response::OffsetDeleteResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    offset_delete_response::OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
        }
        ResponseKind::AddPartitionsToTxn(r) => {
            for (name, _, ps, code) in denied {
                r.results_by_topic_v3_and_below.push(
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(name)
                        .with_results_by_partition(
                            ps.into_iter()
                                .map(|p| {
                                    AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_partition_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
        }
        _ => {}
    }
}

/// Leaves out of Metadata and OffsetFetch answers the topics the session may not describe
/// (the denied entries [`merge`] adds come after this).
pub fn filter_response(broker: &Broker, session: &Session, response: &mut ResponseKind) {
    if !broker.authorizer.enabled {
        return;
    }
    let image = broker.image();
    let describe = |n: &str| {
        broker
            .authorizer
            .allows(&image, session, op::DESCRIBE, resource::TOPIC, n)
    };
    match response {
        ResponseKind::Metadata(r) => r
            .topics
            .retain(|t| t.name.as_ref().is_none_or(|n| describe(n))),
        ResponseKind::OffsetFetch(r) => {
            r.topics.retain(|t| describe(&t.name));
            for g in &mut r.groups {
                g.topics.retain(|t| describe(&t.name));
            }
        }
        ResponseKind::DescribeShareGroupOffsets(r) => {
            for g in &mut r.groups {
                g.topics.retain(|t| describe(&t.topic_name));
            }
        }
        ResponseKind::ListGroups(r) => r.groups.retain(|g| {
            broker
                .authorizer
                .allows(&image, session, op::DESCRIBE, resource::GROUP, &g.group_id)
        }),
        ResponseKind::ListTransactions(r) => r.transaction_states.retain(|t| {
            broker.authorizer.allows(
                &image,
                session,
                op::DESCRIBE,
                resource::TRANSACTIONAL_ID,
                &t.transactional_id,
            )
        }),
        _ => {}
    }
}

/// KIP-430: the operations bitfields a request asked for.
#[derive(Debug, Default, Clone, Copy)]
pub struct WantedOps {
    cluster: bool,
    topics: bool,
    groups: bool,
}

impl WantedOps {
    pub fn of(body: &RequestKind, version: i16) -> Self {
        match body {
            RequestKind::Metadata(r) => Self {
                cluster: r.include_cluster_authorized_operations && (8..=10).contains(&version),
                topics: r.include_topic_authorized_operations && version >= 8,
                groups: false,
            },
            RequestKind::DescribeCluster(r) => Self {
                cluster: r.include_cluster_authorized_operations,
                ..Self::default()
            },
            RequestKind::DescribeGroups(r) => Self {
                groups: r.include_authorized_operations && version >= 3,
                ..Self::default()
            },
            // Kafka always reports them here.
            RequestKind::DescribeTopicPartitions(_) => Self {
                topics: true,
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    fn any(self) -> bool {
        self.cluster || self.topics || self.groups
    }
}

/// The operations Kafka reports per resource type (`AclEntry.supportedOperations`).
const TOPIC_OPS: &[i8] = &[
    op::READ,
    op::WRITE,
    op::CREATE,
    op::DELETE,
    op::ALTER,
    op::DESCRIBE,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
];
const CLUSTER_OPS: &[i8] = &[
    op::CREATE,
    op::CLUSTER_ACTION,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
    op::IDEMPOTENT_WRITE,
    op::ALTER,
    op::DESCRIBE,
];
const GROUP_OPS: &[i8] = &[op::READ, op::DESCRIBE, op::DELETE];

/// Fills the authorised-operations bitfields (bit n: operation code n) the request asked for:
/// what the session's principal may do on each resource (everything without an authoriser).
pub fn fill_operations(
    broker: &Broker,
    session: &Session,
    response: &mut ResponseKind,
    wanted: WantedOps,
) {
    if !wanted.any() {
        return;
    }
    let image = broker.image();
    let bits = |ops: &[i8], rt: i8, name: &str| -> i32 {
        ops.iter()
            .filter(|o| broker.authorizer.allows(&image, session, **o, rt, name))
            .fold(0i32, |acc, o| acc | (1 << o))
    };
    let cluster = || bits(CLUSTER_OPS, resource::CLUSTER, CLUSTER_NAME);
    let topic = |name: &str| bits(TOPIC_OPS, resource::TOPIC, name);
    match response {
        ResponseKind::Metadata(r) => {
            if wanted.cluster {
                r.cluster_authorized_operations = cluster();
            }
            if wanted.topics {
                for t in &mut r.topics {
                    if let Some(n) = &t.name {
                        t.topic_authorized_operations = topic(n);
                    }
                }
            }
        }
        ResponseKind::DescribeCluster(r) if wanted.cluster => {
            r.cluster_authorized_operations = cluster();
        }
        ResponseKind::DescribeGroups(r) if wanted.groups => {
            for g in &mut r.groups {
                if g.error_code == 0 {
                    g.authorized_operations = bits(GROUP_OPS, resource::GROUP, &g.group_id);
                }
            }
        }
        ResponseKind::DescribeTopicPartitions(r) if wanted.topics => {
            for t in &mut r.topics {
                if let (Some(n), 0) = (&t.name, t.error_code) {
                    t.topic_authorized_operations = topic(n);
                }
            }
        }
        _ => {}
    }
}
