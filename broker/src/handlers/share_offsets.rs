//! Share-group offsets (KIP-932) at a share group's coordinator: DescribeShareGroupOffsets
//! (0), AlterShareGroupOffsets (0) and DeleteShareGroupOffsets (0), what
//! `kafka-share-groups.sh --describe --offsets / --reset-offsets / --delete-offsets` send;
//! and what the coordinator asks of each partition's leader to carry out the last two:
//! InitializeShareGroupState (0: an empty window at the new start, written at once) and
//! DeleteShareGroupState (0: forget the share-partition), taken only from brokers.
//!
//! A share-partition's window lives in its leader's memory and the leader writes it to the
//! coordinator. So a reset or a delete is done at the leader, under the group's write lock,
//! never by writing the durable state behind its back: the leader's next write would put
//! its old window back (docs/decisions/0022-share-groups.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::groups::coordinator_log;
use super::share::{
    commit_states, has_state, leader_of, share_log, start_offset, state_group, write_group,
    GROUP_ID_NOT_FOUND,
};
use super::{str_bytes, topic_name};
use crate::share::partition;
use crate::share::Snapshot;
use crate::Broker;

const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const LEADER_NOT_AVAILABLE: i16 = 5;
const REQUEST_TIMED_OUT: i16 = 7;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// How long a leader waits for its group's write lock before it gives up on a reset or
/// delete (another write of the group's state holds it, for at most its own 5 s).
const LEADER_LOCK_WAIT: Duration = Duration::from_secs(6);
/// How long the coordinator waits for a leader: the lock wait, then the leader's write.
const LEADER_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A share-partition (topic id, partition) to reset at a start offset, or (`None`) forget.
type StateOp = ((Uuid, i32), Option<i64>);

/// DescribeShareGroupOffsets (0, `kafka-share-groups.sh --describe --offsets`): each
/// share-partition's start offset (SPSO) and the leader epoch it was written at, from the
/// group's durable state here at its coordinator; -1 for a partition the group has not
/// read (or whose topic was deleted and made again since). All the group's partitions
/// when the request names no topics.
pub fn describe_offsets(
    broker: &Broker,
    req: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    use describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as Group,
        DescribeShareGroupOffsetsResponsePartition as Partition,
        DescribeShareGroupOffsetsResponseTopic as Topic,
    };
    let image = broker.image();
    let groups = req
        .groups
        .iter()
        .map(|g| {
            let base = Group::default().with_group_id(g.group_id.clone());
            let id = g.group_id.as_str();
            if metadata_quorum::configs::check_group_id(id).is_err() {
                return base.with_error_code(ResponseError::InvalidGroupId.code());
            }
            if let Err(code) = coordinator_log(broker, id) {
                return base.with_error_code(code);
            }
            // (topic, partition) -> (start, leader epoch), for the topic as it is now (a
            // deleted topic's marker, offset -1, is no state).
            let state: BTreeMap<(String, i32), (i64, i32)> = broker
                .groups
                .committed_all(&state_group(id))
                .into_iter()
                .filter(|(_, _, c)| c.offset >= 0)
                .filter(|(t, _, c)| {
                    let written_for = c.metadata.as_deref().and_then(partition::snapshot_topic);
                    image.topic(t).map(|t| t.topic_id) == written_for
                })
                .map(|(t, p, c)| ((t, p), (c.offset, c.leader_epoch)))
                .collect();
            if state.is_empty() && !broker.share.groups.contains(id) {
                return base
                    .with_error_code(GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(str_bytes(format!(
                        "Group {id} is not a share group."
                    ))));
            }
            let wanted: Vec<(String, Vec<i32>)> = match &g.topics {
                Some(topics) => topics
                    .iter()
                    .map(|t| (t.topic_name.to_string(), t.partitions.clone()))
                    .collect(),
                None => {
                    let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (t, p) in state.keys() {
                        all.entry(t.clone()).or_default().push(*p);
                    }
                    all.into_iter().collect()
                }
            };
            base.with_topics(
                wanted
                    .into_iter()
                    .map(|(name, partitions)| {
                        let topic = image.topic(&name);
                        Topic::default()
                            .with_topic_name(topic_name(&name))
                            .with_topic_id(topic.map_or(Uuid::nil(), |t| t.topic_id))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|p| {
                                        let out = Partition::default().with_partition_index(p);
                                        let exists = topic.is_some_and(|t| {
                                            usize::try_from(p).is_ok_and(|i| i < t.partitions.len())
                                        });
                                        if !exists {
                                            return out
                                                .with_start_offset(-1)
                                                .with_leader_epoch(-1)
                                                .with_error_code(
                                                    ResponseError::UnknownTopicOrPartition.code(),
                                                );
                                        }
                                        let (start, epoch) = state
                                            .get(&(name.clone(), p))
                                            .copied()
                                            .unwrap_or((-1, -1));
                                        out.with_start_offset(start).with_leader_epoch(epoch)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

/// Whether `group`'s offsets may be changed now: the coordinator's log, or the top-level
/// error and its message. As Kafka: the group must be a share group (GROUP_ID_NOT_FOUND,
/// also for a classic or consumer group of that id) with no members (NON_EMPTY_GROUP).
/// A group this coordinator has state for but no members (after a failover, before any
/// member's heartbeat) counts as empty, unless a classic or consumer group has the id.
fn alterable(
    broker: &Broker,
    group: &str,
) -> Result<std::sync::Arc<crate::log::PartitionLog>, (i16, Option<String>)> {
    if metadata_quorum::configs::check_group_id(group).is_err() {
        return Err((ResponseError::InvalidGroupId.code(), None));
    }
    let log = coordinator_log(broker, group).map_err(|code| (code, None))?;
    match broker.share.groups.describe(group) {
        Some(g) if !g.members.is_empty() => Err((
            NON_EMPTY_GROUP,
            Some(format!(
                "Share group {group} has {} member(s): offsets can only be changed in an empty group.",
                g.members.len()
            )),
        )),
        Some(_) => Ok(log),
        // A classic or consumer group of that id is not a share group, whatever state a
        // share group of that name left.
        None if has_state(broker, group) && broker.groups.describe(group).is_none() => Ok(log),
        None => Err((
            GROUP_ID_NOT_FOUND,
            Some(format!("Group {group} is not a share group.")),
        )),
    }
}

/// AlterShareGroupOffsets (0, `kafka-share-groups.sh --reset-offsets --execute`): moves an
/// empty share group's start offset (SPSO) on the partitions named; each partition's
/// leader forgets the window it held and starts an empty one there. -1 starts where
/// `share.auto.offset.reset` says; an offset below the log start starts at the log start,
/// one past the high watermark at the high watermark. Errors per partition; the group's
/// own (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, ...) at the top and on every partition.
pub async fn alter_offsets(
    broker: &Broker,
    req: AlterShareGroupOffsetsRequest,
) -> AlterShareGroupOffsetsResponse {
    use alter_share_group_offsets_response::{
        AlterShareGroupOffsetsResponsePartition as Partition,
        AlterShareGroupOffsetsResponseTopic as Topic,
    };
    let group = req.group_id.as_str();
    let image = broker.image();
    let (top, message) = match alterable(broker, group) {
        Ok(_) => (0, None),
        Err(e) => e,
    };
    // (topic index, partition index) -> its code, or the reset to make.
    let mut codes: BTreeMap<(usize, usize), i16> = BTreeMap::new();
    let mut resets: Vec<(usize, usize, Uuid, i32, i64)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic = image.topic(&t.topic_name);
        for (pi, p) in t.partitions.iter().enumerate() {
            let exists = topic.is_some_and(|t| {
                usize::try_from(p.partition_index).is_ok_and(|i| i < t.partitions.len())
            });
            let code = if top != 0 {
                top
            } else if !exists {
                ResponseError::UnknownTopicOrPartition.code()
            } else if p.start_offset < -1 {
                INVALID_REQUEST
            } else {
                let id = topic.map_or(Uuid::nil(), |t| t.topic_id);
                resets.push((ti, pi, id, p.partition_index, p.start_offset));
                continue;
            };
            codes.insert((ti, pi), code);
        }
    }
    let done = at_leaders(
        broker,
        group,
        resets
            .iter()
            .map(|&(_, _, t, p, start)| ((t, p), Some(start)))
            .collect(),
    )
    .await;
    for (ti, pi, t, p, _) in resets {
        codes.insert(
            (ti, pi),
            done.get(&(t, p)).copied().unwrap_or(REQUEST_TIMED_OUT),
        );
    }
    AlterShareGroupOffsetsResponse::default()
        .with_error_code(top)
        .with_error_message(message.clone().map(str_bytes))
        .with_responses(
            req.topics
                .iter()
                .enumerate()
                .map(|(ti, t)| {
                    Topic::default()
                        .with_topic_name(t.topic_name.clone())
                        .with_topic_id(
                            image
                                .topic(&t.topic_name)
                                .map_or(Uuid::nil(), |x| x.topic_id),
                        )
                        .with_partitions(
                            t.partitions
                                .iter()
                                .enumerate()
                                .map(|(pi, p)| {
                                    let code = codes.get(&(ti, pi)).copied().unwrap_or(0);
                                    Partition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                        .with_error_message(
                                            (code != 0 && code == top)
                                                .then(|| message.clone().map(str_bytes))
                                                .flatten(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// DeleteShareGroupOffsets (0, `kafka-share-groups.sh --delete-offsets`): an empty share
/// group forgets the topics named, so its next read of them starts where
/// `share.auto.offset.reset` says. Each partition's leader forgets its window first, then
/// the leader replaces the durable state by a marker of none.
/// Errors per topic: UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist or that
/// the group has no state for, as Kafka.
pub async fn delete_offsets(
    broker: &Broker,
    req: DeleteShareGroupOffsetsRequest,
) -> DeleteShareGroupOffsetsResponse {
    use delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic as Topic;
    let group = req.group_id.as_str();
    if let Err((code, message)) = alterable(broker, group) {
        return DeleteShareGroupOffsetsResponse::default()
            .with_error_code(code)
            .with_error_message(message.map(str_bytes));
    }
    let image = broker.image();
    let state_id = state_group(group);
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.topic_name.as_str();
        let out = Topic::default().with_topic_name(t.topic_name.clone());
        let Some(topic) = image.topic(name) else {
            responses.push(
                out.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(str_bytes("This topic does not exist."))),
            );
            continue;
        };
        let out = out.with_topic_id(topic.topic_id);
        let held = broker.groups.committed_all(&state_id);
        let current = held.iter().any(|(n, _, c)| {
            n == name
                && c.offset >= 0
                && c.metadata.as_deref().and_then(partition::snapshot_topic) == Some(topic.topic_id)
        });
        if !current {
            responses.push(
                out.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(str_bytes(
                        "There is no offset information to delete.",
                    ))),
            );
            continue;
        }
        // Every partition's leader forgets its window and, under the same lock, replaces its
        // durable state by a marker of none (see `at_leader`).
        let forgotten = at_leaders(
            broker,
            group,
            (0..topic.partitions.len() as i32)
                .map(|p| ((topic.topic_id, p), None))
                .collect(),
        )
        .await;
        let code = forgotten.values().copied().find(|c| *c != 0).unwrap_or(0);
        responses.push(out.with_error_code(code));
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}

/// Resets (`Some(start)`) or forgets (`None`) share-partitions of `group` at their leaders,
/// one request per leader, side by side: each partition's code (LEADER_NOT_AVAILABLE
/// without a leader, REQUEST_TIMED_OUT if its leader did not answer).
async fn at_leaders(broker: &Broker, group: &str, ops: Vec<StateOp>) -> BTreeMap<(Uuid, i32), i16> {
    let image = broker.image();
    let mut out = BTreeMap::new();
    let mut by_leader: BTreeMap<i32, Vec<StateOp>> = BTreeMap::new();
    for (key, start) in ops {
        let (leader, _) = leader_of(broker, &key.0, key.1);
        if leader < 0 || !image.brokers.contains_key(&leader) {
            out.insert(key, LEADER_NOT_AVAILABLE);
        } else {
            by_leader.entry(leader).or_default().push((key, start));
        }
    }
    let calls = by_leader.into_iter().map(|(leader, ops)| async move {
        if leader == broker.node_id {
            let mut codes = Vec::with_capacity(ops.len());
            for (key, start) in ops {
                codes.push((key, at_leader(broker, group, key, start).await));
            }
            return codes;
        }
        let answered = if ops.iter().all(|(_, s)| s.is_some()) {
            initialize_request(broker, leader, group, &ops).await
        } else {
            delete_request(broker, leader, group, &ops).await
        };
        ops.into_iter()
            .map(|(key, _)| {
                let code = answered
                    .as_ref()
                    .and_then(|a| a.get(&key).copied())
                    .unwrap_or(REQUEST_TIMED_OUT);
                (key, code)
            })
            .collect()
    });
    for codes in futures::future::join_all(calls).await {
        out.extend(codes);
    }
    out
}

/// The InitializeShareGroupState of `ops` sent to `leader`: each partition's code.
async fn initialize_request(
    broker: &Broker,
    leader: i32,
    group: &str,
    ops: &[StateOp],
) -> Option<BTreeMap<(Uuid, i32), i16>> {
    use initialize_share_group_state_request::{InitializeStateData, PartitionData};
    let request = InitializeShareGroupStateRequest::default()
        .with_group_id(str_bytes(group))
        .with_topics(
            by_topic_id(ops, |p, start| {
                PartitionData::default()
                    .with_partition(p)
                    .with_start_offset(start.unwrap_or(-1))
            })
            .into_iter()
            .map(|(t, ps)| {
                InitializeStateData::default()
                    .with_topic_id(t)
                    .with_partitions(ps)
            })
            .collect(),
        );
    let r = call(broker, leader, request).await?;
    Some(
        r.results
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| ((t.topic_id, p.partition), p.error_code))
            })
            .collect(),
    )
}

/// `ops` grouped by topic id, each partition made into its request entry by `entry`.
fn by_topic_id<P>(
    ops: &[StateOp],
    entry: impl Fn(i32, Option<i64>) -> P,
) -> BTreeMap<Uuid, Vec<P>> {
    let mut topics: BTreeMap<Uuid, Vec<P>> = BTreeMap::new();
    for ((t, p), start) in ops {
        topics.entry(*t).or_default().push(entry(*p, *start));
    }
    topics
}

/// `request` to broker `node` over the inter-broker listener, under the broker's client id,
/// within [`LEADER_CALL_TIMEOUT`].
async fn call<R: kafka_protocol::protocol::Request>(
    broker: &Broker,
    node: i32,
    request: R,
) -> Option<R::Response> {
    crate::txn::ops::broker_call(broker, node, request, 0, LEADER_CALL_TIMEOUT, None)
        .await
        .ok()
}

/// The DeleteShareGroupState of `ops` sent to `leader`: each partition's code.
async fn delete_request(
    broker: &Broker,
    leader: i32,
    group: &str,
    ops: &[StateOp],
) -> Option<BTreeMap<(Uuid, i32), i16>> {
    use delete_share_group_state_request::{DeleteStateData, PartitionData};
    let request = DeleteShareGroupStateRequest::default()
        .with_group_id(str_bytes(group))
        .with_topics(
            by_topic_id(ops, |p, _| PartitionData::default().with_partition(p))
                .into_iter()
                .map(|(t, ps)| {
                    DeleteStateData::default()
                        .with_topic_id(t)
                        .with_partitions(ps)
                })
                .collect(),
        );
    let r = call(broker, leader, request).await?;
    Some(
        r.results
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| ((t.topic_id, p.partition), p.error_code))
            })
            .collect(),
    )
}

/// At the partition's leader: the share-partition of (`group`, `key`) reset to an empty
/// window at `start` (-1: where `share.auto.offset.reset` says; clamped to the log start
/// and the high watermark) and written to the coordinator before the answer, or (`None`)
/// forgotten. Under the group's write lock: no snapshot of the window before is written
/// after. A share-partition whose write failed is not served until a write succeeds.
async fn at_leader(
    broker: &Broker,
    group: &str,
    (topic, partition): (Uuid, i32),
    start: Option<i64>,
) -> i16 {
    let log = match share_log(broker, &topic, partition) {
        Ok(log) => log,
        Err(code) => return code,
    };
    let (_, epoch) = leader_of(broker, &topic, partition);
    let key = (group.to_string(), topic, partition);
    let lock = broker.share.persist_lock(group);
    let Ok(_writing) = tokio::time::timeout(LEADER_LOCK_WAIT, lock.lock()).await else {
        return REQUEST_TIMED_OUT;
    };
    // A share-partition being set up from state read before this is stale now.
    broker.share.bump_generation(group);
    let Some(start) = start else {
        broker.share.remove_partition(&key);
        // The durable state goes too, still under the lock: a ShareFetch that read it
        // before the generation moved sets nothing up from it, and one that reads it after
        // this finds none. The marker is at this leader's epoch, so a deposed leader's late
        // write stays fenced (a tombstone would leave nothing to check it against).
        let Some(name) = broker.image().topic_by_id(&topic).map(|t| t.name.clone()) else {
            return ResponseError::UnknownTopicOrPartition.code();
        };
        let marker = crate::group::Committed {
            offset: -1,
            leader_epoch: epoch,
            metadata: Some(format!("{} deleted", Snapshot::at(-1).to_metadata(topic))),
            commit_timestamp: crate::log::now_ms(),
        };
        if !commit_states(broker, group, vec![(name, partition, marker)]).await {
            return ResponseError::CoordinatorNotAvailable.code();
        }
        tracing::info!(group, %topic, partition, "share-partition state deleted");
        return 0;
    };
    let start = if start == -1 {
        start_offset(&log, &broker.share.config_of(group))
    } else {
        start
    };
    let bounds = (log.state().log_start_offset, log.high_watermark());
    broker
        .share
        .reset_partition(key.clone(), start, bounds, epoch);
    tracing::info!(group, %topic, partition, start, "share-partition start offset reset");
    if write_group(broker, group.to_string(), BTreeSet::from([key])).await {
        0
    } else {
        ResponseError::CoordinatorNotAvailable.code()
    }
}

/// InitializeShareGroupState (0), from a share group's coordinator to a partition's leader
/// (AlterShareGroupOffsets): each partition reset at its start offset. Only brokers are
/// served ([`refused_initialize`] for anyone else).
pub async fn initialize_state(
    broker: &Broker,
    req: InitializeShareGroupStateRequest,
    from_broker: bool,
) -> InitializeShareGroupStateResponse {
    use initialize_share_group_state_response::{InitializeStateResult, PartitionResult};
    if !from_broker {
        return refused_initialize(&req);
    }
    let group = req.group_id.as_str();
    let valid = metadata_quorum::configs::check_group_id(group).is_ok();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let code = if !valid || p.start_offset < -1 {
                INVALID_REQUEST
            } else {
                let key = (t.topic_id, p.partition);
                at_leader(broker, group, key, Some(p.start_offset)).await
            };
            partitions.push(
                PartitionResult::default()
                    .with_partition(p.partition)
                    .with_error_code(code),
            );
        }
        results.push(
            InitializeStateResult::default()
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    InitializeShareGroupStateResponse::default().with_results(results)
}

/// InitializeShareGroupState refused: every partition CLUSTER_AUTHORIZATION_FAILED (a
/// client, or a principal without ClusterAction).
pub fn refused_initialize(
    req: &InitializeShareGroupStateRequest,
) -> InitializeShareGroupStateResponse {
    use initialize_share_group_state_response::{InitializeStateResult, PartitionResult};
    InitializeShareGroupStateResponse::default().with_results(
        req.topics
            .iter()
            .map(|t| {
                InitializeStateResult::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionResult::default()
                                    .with_partition(p.partition)
                                    .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// DeleteShareGroupState (0), from a share group's coordinator to a partition's leader
/// (DeleteShareGroupOffsets): each partition's share-partition forgotten. Only brokers are
/// served ([`refused_delete`] for anyone else).
pub async fn delete_state(
    broker: &Broker,
    req: DeleteShareGroupStateRequest,
    from_broker: bool,
) -> DeleteShareGroupStateResponse {
    use delete_share_group_state_response::{DeleteStateResult, PartitionResult};
    if !from_broker {
        return refused_delete(&req);
    }
    let group = req.group_id.as_str();
    let valid = metadata_quorum::configs::check_group_id(group).is_ok();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let code = if valid {
                at_leader(broker, group, (t.topic_id, p.partition), None).await
            } else {
                INVALID_REQUEST
            };
            partitions.push(
                PartitionResult::default()
                    .with_partition(p.partition)
                    .with_error_code(code),
            );
        }
        results.push(
            DeleteStateResult::default()
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    DeleteShareGroupStateResponse::default().with_results(results)
}

/// DeleteShareGroupState refused: every partition CLUSTER_AUTHORIZATION_FAILED.
pub fn refused_delete(req: &DeleteShareGroupStateRequest) -> DeleteShareGroupStateResponse {
    use delete_share_group_state_response::{DeleteStateResult, PartitionResult};
    DeleteShareGroupStateResponse::default().with_results(
        req.topics
            .iter()
            .map(|t| {
                DeleteStateResult::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionResult::default()
                                    .with_partition(p.partition)
                                    .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
