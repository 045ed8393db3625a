//! The classic consumer group protocol: FindCoordinator (0-4), JoinGroup (0-9),
//! SyncGroup (0-5), Heartbeat (0-4), LeaveGroup (0-5), OffsetCommit (2-9), OffsetFetch (1-9),
//! ListGroups (0-5), DescribeGroups (0-5). Groups of the consumer protocol (KIP-848) share
//! the offsets, ListGroups, DescribeGroups and DeleteGroups here; their heartbeats are in
//! `consumer_groups`. The coordinator of a group is the leader of its
//! `__consumer_offsets` partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use metadata_quorum::controller::NewTopic;
use tracing::warn;

use super::{leader_log, str_bytes, topic_name};
use crate::group::{
    offsets_partition, Committed, JoinRequest, Reply, OFFSETS_PARTITIONS, OFFSETS_TOPIC,
};
use crate::log::PartitionLog;
use crate::Broker;

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// Creates `__consumer_offsets` (compacted, RF = min(3, live brokers)) if it is missing.
pub(crate) async fn ensure_offsets_topic(broker: &Broker) {
    let image = broker.image();
    if image.topic(OFFSETS_TOPIC).is_some() {
        return;
    }
    let rf = image.live_brokers().count().clamp(1, 3) as i16;
    let topic = NewTopic {
        name: OFFSETS_TOPIC.into(),
        num_partitions: OFFSETS_PARTITIONS,
        replication_factor: rf,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        ..Default::default()
    };
    if let Err(e) = broker.controller.create_topics(vec![topic], false).await {
        warn!(error = %e, "could not create __consumer_offsets");
    }
}

/// The offsets partition log of `group` if this broker coordinates it, loaded.
pub(crate) fn coordinator_log(broker: &Broker, group: &str) -> Result<Arc<PartitionLog>, i16> {
    let image = broker.image();
    let index = offsets_partition(group);
    let log =
        leader_log(broker, &image, image.topic(OFFSETS_TOPIC), index).map_err(|e| match e {
            ResponseError::NotLeaderOrFollower => NOT_COORDINATOR,
            _ => COORDINATOR_NOT_AVAILABLE,
        })?;
    broker
        .groups
        .ensure_loaded(&broker.groups_loaded, index, &log)
        .map_err(|_| COORDINATOR_NOT_AVAILABLE)?;
    Ok(log)
}

pub async fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    if req.key_type == 1 {
        crate::txn::ops::ensure_topic(broker).await;
    } else {
        ensure_offsets_topic(broker).await;
    }
    let image = broker.image();
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let coordinators: Vec<Coordinator> = keys
        .iter()
        .map(|key| {
            let base = Coordinator::default().with_key(str_bytes(key.clone()));
            let (topic, index) = match req.key_type {
                0 => (OFFSETS_TOPIC, offsets_partition(key)),
                1 => {
                    if let Err(e) = crate::txn::ops::validate_id(key) {
                        return base.with_node_id((-1).into()).with_error_code(e.code());
                    }
                    (
                        crate::txn::TRANSACTION_TOPIC,
                        crate::txn::txn_partition(key),
                    )
                }
                _ => {
                    return base
                        .with_node_id((-1).into())
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes("unknown coordinator key type")))
                }
            };
            let leader = image
                .topic(topic)
                .and_then(|t| t.partitions.get(index as usize))
                .map_or(-1, |p| p.leader);
            // A fenced leader is on its way out: the client asks again rather than chase it.
            match image
                .brokers
                .get(&leader)
                .filter(|b| !b.fenced)
                .and_then(|b| super::client_endpoint(b, listener))
            {
                Some(e) => base
                    .with_node_id(leader.into())
                    .with_host(str_bytes(e.host.clone()))
                    .with_port(e.port as i32),
                None => base
                    .with_node_id((-1).into())
                    .with_error_code(COORDINATOR_NOT_AVAILABLE),
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

pub async fn join(
    broker: &Broker,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
) -> JoinGroupResponse {
    let fail = |code: i16, member: String| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(str_bytes(member))
    };
    if internal_group(req.group_id.as_str()) {
        return fail(
            ResponseError::InvalidGroupId.code(),
            req.member_id.to_string(),
        );
    }
    if let Err(code) = coordinator_log(broker, req.group_id.as_str()) {
        return fail(code, req.member_id.to_string());
    }
    if broker.share.groups.contains(req.group_id.as_str()) {
        return fail(
            ResponseError::InconsistentGroupProtocol.code(),
            req.member_id.to_string(),
        );
    }
    let rebalance = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let image = broker.image();
    let reply = broker.groups.join_with(
        JoinRequest {
            group_id: req.group_id.to_string(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: client_id.to_string(),
            host: String::new(),
            session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(rebalance.max(0) as u64),
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            // Kafka's JoinGroupRequest.requiresKnownMemberId: v4+ dynamic members only; a
            // static member joins at once.
            require_known_member_id: version >= 4 && req.group_instance_id.is_none(),
            supports_skip_assignment: version >= 9,
        },
        &super::consumer_groups::ImageTopics(&image),
    );
    let outcome = match reply {
        Reply::Now(o) => o,
        Reply::Later(rx) => match rx.await {
            Ok(o) => o,
            Err(_) => return fail(COORDINATOR_NOT_AVAILABLE, req.member_id.to_string()),
        },
    };
    JoinGroupResponse::default()
        .with_error_code(outcome.error)
        .with_generation_id(outcome.generation)
        .with_protocol_type(outcome.protocol_type.map(str_bytes))
        .with_protocol_name(outcome.protocol_name.map(str_bytes))
        .with_leader(str_bytes(outcome.leader))
        .with_skip_assignment(outcome.skip_assignment)
        .with_member_id(str_bytes(outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

pub async fn sync(broker: &Broker, req: SyncGroupRequest, _version: i16) -> SyncGroupResponse {
    let group = req.group_id.as_str();
    let log = match coordinator_log(broker, group) {
        Ok(log) => log,
        Err(code) => return SyncGroupResponse::default().with_error_code(code),
    };
    let synced = broker.groups.sync(
        group,
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    );
    // The leader's assignment: durable in __consumer_offsets (replicated as an acks=all
    // produce is) before any member gets it, so a new coordinator knows this generation.
    if let Some((generation, record)) = synced.store {
        match durable(&log, broker.groups.write_group(&log, group, Some(&record))).await {
            0 => broker.groups.stored(group, generation, true, 0),
            code => {
                let error = strom_client::error_name(code);
                warn!(group, generation, %error, "storing the group's assignment failed");
                // Members find the coordinator again, or retry the join.
                let code = match code {
                    NOT_COORDINATOR => NOT_COORDINATOR,
                    _ => COORDINATOR_NOT_AVAILABLE,
                };
                broker.groups.stored(group, generation, false, code);
            }
        }
    }
    let outcome = match synced.reply {
        Reply::Now(o) => o,
        // The wait ended without an answer (the coordinator moved, or this member sent
        // another SyncGroup): never "success with nothing assigned".
        Reply::Later(rx) => rx.await.unwrap_or_else(|_| crate::group::SyncOutcome {
            error: ResponseError::RebalanceInProgress.code(),
            ..Default::default()
        }),
    };
    SyncGroupResponse::default()
        .with_error_code(outcome.error)
        .with_protocol_type(outcome.protocol_type.map(str_bytes))
        .with_protocol_name(outcome.protocol_name.map(str_bytes))
        .with_assignment(outcome.assignment)
}

pub fn heartbeat(broker: &Broker, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let code = match coordinator_log(broker, req.group_id.as_str()) {
        Err(code) => code,
        Ok(_) => broker.groups.heartbeat(
            req.group_id.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
        ),
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave(broker: &Broker, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    if let Err(code) = coordinator_log(broker, req.group_id.as_str()) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let asked: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let answers = broker.groups.leave_members(req.group_id.as_str(), &asked);
    if version >= 3 {
        // Per member; the top-level error stays NONE even if some failed, as in Kafka.
        LeaveGroupResponse::default().with_members(
            asked
                .iter()
                .zip(&answers)
                .map(|((_, instance), (id, code))| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(id.clone()))
                        .with_group_instance_id(instance.clone().map(str_bytes))
                        .with_error_code(*code)
                })
                .collect(),
        )
    } else {
        LeaveGroupResponse::default().with_error_code(answers.first().map_or(0, |(_, c)| *c))
    }
}

/// (topic, partition, offset, leader epoch, metadata) of a commit request's partition.
pub(crate) type CommitPartition<'a> = (&'a str, i32, i64, i32, Option<&'a str>);

/// The offsets an OffsetCommit or TxnOffsetCommit commits: those of partitions that exist
/// (the others are answered UNKNOWN_TOPIC_OR_PARTITION on their own, as Kafka does).
pub(crate) fn commit_entries<'a>(
    image: &metadata_quorum::MetadataImage,
    partitions: impl Iterator<Item = CommitPartition<'a>>,
) -> Vec<(String, i32, Committed)> {
    let now = crate::log::now_ms();
    partitions
        .filter(|(t, p, ..)| super::partition_exists(image, t, *p))
        .map(|(t, p, offset, leader_epoch, metadata)| {
            (
                t.to_string(),
                p,
                Committed {
                    offset,
                    leader_epoch,
                    metadata: metadata.map(str::to_string),
                    commit_timestamp: now,
                },
            )
        })
        .collect()
}

/// The code of a group write to `log` (ending at the `Ok` offset): 0 once every in-sync
/// replica has it, as Kafka appends commits with acks=all; else what
/// [`coordinator_write_error`] makes of the refusal or of the wait's end (NOT_COORDINATOR
/// when leadership moved meanwhile, COORDINATOR_NOT_AVAILABLE when the replicas did not take
/// it in time).
pub(crate) async fn durable(
    log: &Arc<PartitionLog>,
    written: Result<i64, crate::error::LogError>,
) -> i16 {
    let refused = match written {
        Ok(end) => match super::produce::replicated(log, end, 1, Duration::from_secs(5)).await {
            Ok(()) => return 0,
            Err((e, _)) => e,
        },
        Err(e) => e.kafka_error(),
    };
    coordinator_write_error(refused)
}

/// What a coordinator answers when its `__consumer_offsets` partition refused a write with
/// `e`, as Kafka's group coordinator does: the partition is no longer led here
/// (NOT_COORDINATOR: the client finds the coordinator again), cannot take writes now
/// (COORDINATOR_NOT_AVAILABLE: the client retries), or the record is too large
/// (INVALID_COMMIT_OFFSET_SIZE); any other error as it is (a fenced transactional
/// producer's, say). A produce error such as NOT_LEADER_OR_FOLLOWER means nothing to a
/// client that committed offsets.
pub(crate) fn coordinator_write_error(e: ResponseError) -> i16 {
    use ResponseError as E;
    match e {
        E::NotLeaderOrFollower | E::KafkaStorageError => NOT_COORDINATOR,
        E::UnknownTopicOrPartition
        | E::NotEnoughReplicas
        | E::NotEnoughReplicasAfterAppend
        | E::RequestTimedOut => COORDINATOR_NOT_AVAILABLE,
        E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize => {
            E::InvalidCommitOffsetSize.code()
        }
        other => other.code(),
    }
}

/// A commit's code for one partition: UNKNOWN_TOPIC_OR_PARTITION if it does not exist,
/// else the request's `code`.
pub(crate) fn partition_code(
    image: &metadata_quorum::MetadataImage,
    topic: &str,
    partition: i32,
    code: i16,
) -> i16 {
    if super::partition_exists(image, topic, partition) {
        code
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    }
}

/// Whether `group` is one of the broker's own ids (a share group's state, `<group>\0share`):
/// no client may write or delete it.
pub(crate) fn internal_group(group: &str) -> bool {
    group.contains('\0')
}

/// Whether a share-partition snapshot commit comes from an older leader than the one whose
/// snapshot the group holds for the same topic (a deposed leader's write landing late):
/// FENCED_LEADER_EPOCH. The state of a deleted topic of the same name fences nothing.
fn share_state_fenced(broker: &Broker, group: &str, entries: &[(String, i32, Committed)]) -> bool {
    use crate::share::partition::snapshot_topic;
    entries.iter().any(|(t, p, c)| {
        broker.groups.committed(group, t, *p).is_some_and(|held| {
            held.leader_epoch > c.leader_epoch
                && held.metadata.as_deref().and_then(snapshot_topic)
                    == c.metadata.as_deref().and_then(snapshot_topic)
        })
    })
}

/// Commits share-partition snapshots of `group` (a `<group>\0share` id) to `log`, the epoch
/// check and the append under one lock, so two leaders' writes cannot both pass the check
/// and land in the wrong order. FENCED_LEADER_EPOCH, or the commit's durable code.
pub(crate) async fn commit_share_state(
    broker: &Broker,
    log: &Arc<PartitionLog>,
    group: &str,
    entries: Vec<(String, i32, Committed)>,
) -> i16 {
    // One lock per share group (the check is per group and partition).
    let lock = broker.share.commit_lock(group);
    let written = {
        let _one_at_a_time = lock.lock();
        if share_state_fenced(broker, group, &entries) {
            return ResponseError::FencedLeaderEpoch.code();
        }
        broker.groups.commit(log, group, entries)
    };
    durable(log, written).await
}

pub async fn offset_commit(
    broker: &Broker,
    req: OffsetCommitRequest,
    _version: i16,
    from_broker: bool,
) -> OffsetCommitResponse {
    let group = req.group_id.to_string();
    let internal = internal_group(&group);
    let code = match coordinator_log(broker, &group) {
        Err(code) => Err(code),
        Ok(_) if internal && !from_broker => Err(ResponseError::InvalidGroupId.code()),
        // A share group's state has no members to check (no group of that id can form).
        Ok(log) if internal => Ok(log),
        Ok(log) => match broker.groups.validate_commit(
            &group,
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
        ) {
            0 => Ok(log),
            code => Err(code),
        },
    };
    // A partition that does not exist is refused on its own (as Kafka does); the rest commit.
    let image = broker.image();
    let entries = commit_entries(
        &image,
        req.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_deref(),
                )
            })
        }),
    );
    let code = match code {
        Err(c) => c,
        Ok(log) if internal => commit_share_state(broker, &log, &group, entries).await,
        Ok(log) => durable(&log, broker.groups.commit(&log, &group, entries)).await,
    };
    OffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(partition_code(
                                        &image,
                                        t.name.as_str(),
                                        p.partition_index,
                                        code,
                                    ))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// A topic's partitions with their committed offsets (None: nothing committed) and an
/// error code (UNSTABLE_OFFSET_COMMIT while a transaction holds an offset of it).
type TopicOffsets = (String, Vec<(i32, Option<Committed>, i16)>);

/// Committed offsets of `group` for the asked partitions (None: every committed one).
/// With `require_stable` (v7+, what read_committed consumers send), a partition whose
/// offset an open transaction is committing answers UNSTABLE_OFFSET_COMMIT, so the consumer
/// retries instead of starting from an offset about to change.
fn fetch_group(
    broker: &Broker,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Vec<TopicOffsets>, i16> {
    coordinator_log(broker, group)?;
    // What is pending first, then the offsets: a transaction completing in between has its
    // offsets in the cache before it stops being pending, so a partition read as stable
    // never shows the offset from before its commit.
    let pending = if require_stable {
        broker.groups.pending_txn_partitions(group)
    } else {
        Default::default()
    };
    let code = |t: &str, p: i32| {
        if pending.contains(&(t.to_string(), p)) {
            ResponseError::UnstableOffsetCommit.code()
        } else {
            0
        }
    };
    Ok(match asked {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let rows = parts
                    .into_iter()
                    .map(|p| (p, broker.groups.committed(group, &t, p), code(&t, p)))
                    .collect();
                (t, rows)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>, i16)>> =
                BTreeMap::new();
            for (t, p, c) in broker.groups.committed_all(group) {
                let e = code(&t, p);
                by_topic.entry(t).or_default().push((p, Some(c), e));
            }
            by_topic.into_iter().collect()
        }
    })
}

pub fn offset_fetch(broker: &Broker, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let asked = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let member = broker.groups.validate_fetch(
                    g.group_id.as_str(),
                    g.member_id.as_deref(),
                    g.member_epoch,
                );
                let fetched = match member {
                    0 => fetch_group(broker, g.group_id.as_str(), asked, req.require_stable),
                    code => Err(code),
                };
                match fetched {
                    Err(code) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(code),
                    Ok(rows) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_topics(
                            rows.into_iter()
                                .map(|(t, parts)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(topic_name(&t))
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|(p, c, code)| {
                                                    let c = c.unwrap_or_else(Committed::none);
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_error_code(code)
                                                        .with_committed_offset(c.offset)
                                                        .with_committed_leader_epoch(c.leader_epoch)
                                                        .with_metadata(Some(str_bytes(
                                                            c.metadata.unwrap_or_default(),
                                                        )))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    match fetch_group(
        broker,
        req.group_id.as_str(),
        asked,
        version >= 7 && req.require_stable,
    ) {
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
        Ok(rows) => OffsetFetchResponse::default().with_topics(
            rows.into_iter()
                .map(|(t, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, c, code)| {
                                    let c = c.unwrap_or_else(Committed::none);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_committed_offset(c.offset)
                                        .with_committed_leader_epoch(c.leader_epoch)
                                        .with_metadata(Some(str_bytes(
                                            c.metadata.unwrap_or_default(),
                                        )))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

/// ListGroups (0-5): v4 filters by state, v5 by type ("classic", "consumer"; KIP-848), both
/// case-insensitively as Kafka does.
pub fn list_groups(broker: &Broker, req: ListGroupsRequest, _version: i16) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let shares = broker
        .share
        .groups
        .list()
        .into_iter()
        .map(|(id, state)| (id, state, "share".to_string(), "share"));
    ListGroupsResponse::default().with_groups(
        broker
            .groups
            .list()
            .into_iter()
            .filter(|(id, _, _)| !broker.share.groups.contains(id))
            .map(|(id, state, pt)| {
                let kind = broker.groups.group_type(&id);
                (id, state, pt, kind)
            })
            .chain(shares)
            .filter(|(_, state, _, kind)| {
                (states.is_empty() || states.contains(&state.to_lowercase()))
                    && (types.is_empty() || types.iter().any(|t| t == kind))
            })
            .map(|(id, state, pt, kind)| {
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(id)))
                    .with_protocol_type(str_bytes(pt))
                    .with_group_state(str_bytes(state))
                    .with_group_type(str_bytes(kind))
            })
            .collect(),
    )
}

pub fn describe_groups(
    broker: &Broker,
    req: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    DescribeGroupsResponse::default().with_groups(
        req.groups
            .iter()
            .map(|g| {
                let base = DescribedGroup::default().with_group_id(g.clone());
                if let Err(code) = coordinator_log(broker, g.as_str()) {
                    return base.with_error_code(code);
                }
                match broker.groups.describe(g.as_str()) {
                    // A group known only by its committed offsets is Empty, as in Kafka.
                    None if !broker.groups.committed_all(g.as_str()).is_empty() => {
                        base.with_group_state(str_bytes("Empty"))
                    }
                    None => base.with_group_state(str_bytes("Dead")),
                    Some(d) => base
                        .with_group_state(str_bytes(d.state))
                        .with_protocol_type(str_bytes(d.protocol_type))
                        .with_protocol_data(str_bytes(d.protocol))
                        .with_members(
                            d.members
                                .into_iter()
                                .map(|(id, instance, client, host, meta, assignment)| {
                                    DescribedGroupMember::default()
                                        .with_member_id(str_bytes(id))
                                        .with_group_instance_id(instance.map(str_bytes))
                                        .with_client_id(str_bytes(client))
                                        .with_client_host(str_bytes(host))
                                        .with_member_metadata(meta)
                                        .with_member_assignment(assignment)
                                })
                                .collect(),
                        ),
                }
            })
            .collect(),
    )
}

/// Writes group records the coordinator's tick returned (groups that became empty, static
/// members back in their place, tombstones of deleted groups) to their `__consumer_offsets`
/// partitions; records of groups this broker no longer coordinates are dropped (their new
/// coordinator has its own view).
/// Writes a tick's group records in their order ([`crate::group::TickWrites`]); an
/// upgraded group's classic tombstone only once its consumer record is in the log.
pub fn write_group_records(broker: &Broker, writes: crate::group::TickWrites) {
    for (group, record) in writes.classic {
        let Ok(log) = coordinator_log(broker, &group) else {
            continue;
        };
        if let Err(e) = broker.groups.write_group(&log, &group, record.as_ref()) {
            warn!(group, error = %e, "could not write the group's record");
        }
    }
    let mut unwritten = BTreeSet::new();
    for (group, record) in writes.consumer {
        let Ok(log) = coordinator_log(broker, &group) else {
            if record.is_some() {
                unwritten.insert(group);
            }
            continue;
        };
        if let Err(e) = broker
            .groups
            .write_consumer_group(&log, &group, record.as_ref())
        {
            warn!(group, error = %e, "could not write the consumer group's record");
            // Only a failed record keeps the classic one alive; after a failed consumer
            // tombstone (the group is gone) the classic tombstone is still wanted.
            if record.is_some() {
                unwritten.insert(group);
            }
        }
    }
    for group in writes.upgraded {
        if unwritten.contains(&group) {
            // The classic record stays the group's latest: loading it is better than
            // loading nothing. The consumer record, once written, wins over it.
            continue;
        }
        let Ok(log) = coordinator_log(broker, &group) else {
            continue;
        };
        if let Err(e) = broker.groups.write_group(&log, &group, None) {
            warn!(group, error = %e, "could not write the upgraded group's classic tombstone");
        }
    }
}

pub fn delete_groups(
    broker: &Broker,
    req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    DeleteGroupsResponse::default().with_results(
        req.groups_names
            .iter()
            .map(|g| {
                let group = g.as_str();
                let code = match coordinator_log(broker, group) {
                    Err(code) => code,
                    // A share group's state is not a group to delete.
                    Ok(_) if internal_group(group) => ResponseError::InvalidGroupId.code(),
                    Ok(log) => match broker.groups.remove_group(group) {
                        0 => {
                            let all: Vec<(String, i32)> = broker
                                .groups
                                .committed_all(group)
                                .into_iter()
                                .map(|(t, p, _)| (t, p))
                                .collect();
                            match broker.groups.delete_offsets(&log, group, &all) {
                                Ok(_) => 0,
                                Err(e) => coordinator_write_error(e.kafka_error()),
                            }
                        }
                        code => code,
                    },
                };
                DeletableGroupResult::default()
                    .with_group_id(g.clone())
                    .with_error_code(code)
            })
            .collect(),
    )
}

pub fn offset_delete(
    broker: &Broker,
    req: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    use kafka_protocol::messages::offset_delete_response::{
        OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
    };
    let group = req.group_id.as_str();
    let log = match coordinator_log(broker, group) {
        Ok(_) if internal_group(group) => {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::InvalidGroupId.code())
        }
        Ok(log) => log,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let busy = broker.groups.consumes(group, t.name.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if busy {
                        86 // GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        match broker.groups.delete_offsets(
                            &log,
                            group,
                            &[(t.name.to_string(), p.partition_index)],
                        ) {
                            Ok(_) => 0,
                            Err(e) => coordinator_write_error(e.kafka_error()),
                        }
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LogError;

    #[test]
    fn a_refused_coordinator_write_answers_in_coordinator_terms() {
        let code = |e: LogError| coordinator_write_error(e.kafka_error());
        // The offsets partition moved away or was deleted under the group: find it again.
        assert_eq!(
            code(LogError::NotLeader { tp: "t".into() }),
            NOT_COORDINATOR
        );
        assert_eq!(
            code(LogError::ReplicaDeleted { tp: "t".into() }),
            NOT_COORDINATOR
        );
        assert_eq!(
            code(LogError::Storage {
                source: strom_storage::StorageError::Engine {
                    message: "disk".into(),
                },
            }),
            NOT_COORDINATOR
        );
        assert_eq!(
            code(LogError::MessageTooLarge { size: 2, max: 1 }),
            ResponseError::InvalidCommitOffsetSize.code()
        );
        // A fenced transactional producer is told so.
        assert_eq!(
            code(LogError::InvalidProducerEpoch {
                producer_id: 1,
                epoch: 0,
                current: 1,
            }),
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            coordinator_write_error(ResponseError::NotEnoughReplicas),
            COORDINATOR_NOT_AVAILABLE
        );
    }
}
